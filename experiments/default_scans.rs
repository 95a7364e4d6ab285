//! The scans the experiments study when none are given: Colin27 and the chest CT from
//! `data/`, and, where `../shared/data` has it, the resting-state fMRI.

use std::path::{Path, PathBuf};

/// Colin27 and the chest CT; with `series`, the rapidtide resting-state fMRI too when present.
pub fn default_scans(series: bool) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scans = vec![
        root.join("data/mri_t1_colin27_1mm.nii.gz"),
        root.join("data/ct_chest_lung2.nii.gz"),
    ];
    let fmri = root.join("../shared/data/fmri_rest_4d_rapidtide.nii.gz");
    if series && fmri.exists() {
        scans.push(fmri);
    }
    scans
}
