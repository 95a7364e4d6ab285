//! Real scans from data/ (and ../shared/data when present): known facts and exact round trips.

use super::test_support::{sample, sample_files};
use super::tests_synthetic::cross_check_with_nifti_crate;
use super::{read_nifti, read_nifti_bytes, voxels, write_nifti, DataType};

#[test]
fn known_facts_about_the_samples() {
    let colin = read_nifti(&sample("mri_t1_colin27_1mm.nii.gz")).unwrap();
    assert_eq!(colin.shape(), [181, 217, 181, 1]);
    assert_eq!(colin.ndim(), 3);
    assert_eq!(colin.header.datatype(), DataType::U8);
    assert_eq!(colin.header.spacing()[..3], [1.0, 1.0, 1.0]);

    let ct = read_nifti(&sample("ct_chest_lung2.nii.gz")).unwrap();
    assert_eq!(ct.shape(), [512, 512, 61, 1]);
    assert_eq!(ct.header.datatype(), DataType::I16);
    let min = ct
        .data
        .to_f32()
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    assert!(
        min * ct.header.scl_slope() as f32 + (ct.header.scl_inter() as f32) < -500.0,
        "HU min {min}"
    );

    let be = read_nifti(&sample("mri_small_bigendian_i16.nii")).unwrap();
    assert!(be.header.is_big_endian() && !be.header.is_nifti2());
    assert_eq!(be.shape(), [33, 41, 25, 1]);
    assert_eq!(be.header.datatype(), DataType::I16);
    assert!(be.data.to_f32().iter().any(|&v| v < 0.0));

    let n2 = read_nifti(&sample("nifti2_small_4d.nii.gz")).unwrap();
    assert!(n2.header.is_nifti2() && !n2.header.is_big_endian());
    assert_eq!(n2.shape(), [32, 20, 12, 2]);
    assert_eq!(n2.ndim(), 4);
    assert_eq!(n2.header.datatype(), DataType::I16);
    assert!(!n2.header.extension_bytes().is_empty());

    // Named "f64" after how nibabel loads it: stored as i16 with scl_slope/scl_inter.
    let f = read_nifti(&sample("fmri_small_4d_f64.nii")).unwrap();
    assert_eq!(f.shape(), [17, 21, 3, 20]);
    assert_eq!(f.header.datatype(), DataType::I16);
    assert!(f.header.scl_slope() != 1.0);

    let bold = read_nifti(&sample("fmri_bold_4d.nii.gz")).unwrap();
    assert_eq!(bold.shape(), [128, 96, 24, 2]);
}

#[test]
fn every_sample_round_trips_exactly() {
    let files = sample_files();
    assert!(files.len() >= 6, "sample data missing: {files:?}");
    let dir = tempfile::tempdir().unwrap();
    for (i, path) in files.iter().enumerate() {
        let (header, orig_voxels) = read_nifti_bytes(path).unwrap();
        let vol = read_nifti(path).unwrap();
        assert_eq!(vol.header, header);
        assert_eq!(vol.data.len(), header.voxel_count());

        // Header bytes are the file's first vox_offset bytes, verbatim.
        let original = std::fs::read(path).unwrap();
        let original = if original.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::MultiGzDecoder::new(&original[..]),
                &mut out,
            )
            .unwrap();
            out
        } else {
            original
        };
        assert_eq!(
            header.to_bytes(),
            original[..header.vox_offset()],
            "{path:?}"
        );

        let name = path.file_name().unwrap().to_string_lossy();
        let out = dir.path().join(format!("{i}_{name}"));
        write_nifti(&out, &vol, false).unwrap();
        let (h2, voxels2) = read_nifti_bytes(&out).unwrap();
        assert_eq!(h2.to_bytes(), header.to_bytes(), "{path:?}: header bytes");
        let dt = header.datatype();
        let expected = if matches!(dt, DataType::F64 | DataType::I32 | DataType::U32) {
            voxels::encode(&vol.data.to_f32(), dt, header.is_big_endian()) // through f32, documented loss
        } else {
            orig_voxels.clone()
        };
        assert_eq!(voxels2, expected, "{path:?}: voxel bytes");
        let again = read_nifti(&out).unwrap();
        assert!(
            again
                .data
                .to_f32()
                .iter()
                .zip(&vol.data.to_f32())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{path:?}: voxel values"
        );
        if !header.is_nifti2() && header.voxel_count() < 1_000_000 {
            cross_check_with_nifti_crate(path, &vol);
        }
        std::fs::remove_file(&out).unwrap();
    }
}

/// The in-memory reader (used by the fuzz target `nifti`) reads exactly what the file reader
/// reads, plain and gzipped, and refuses a truncated scan with the same error.
#[test]
fn reading_from_memory_matches_reading_the_file() {
    for name in ["mri_small_bigendian_i16.nii", "nifti2_small_4d.nii.gz"] {
        let path = sample(name);
        let bytes = std::fs::read(&path).expect("sample");
        let from_file = read_nifti(&path).expect("reads");
        let from_memory = super::read_nifti_from_memory(&bytes, &path).expect("reads");
        assert_eq!(from_file, from_memory, "{name}");
    }
    let bytes = std::fs::read(sample("mri_small_bigendian_i16.nii")).expect("sample");
    let cut = &bytes[..bytes.len() - 1];
    assert!(matches!(
        super::read_nifti_from_memory(cut, std::path::Path::new("cut.nii")),
        Err(super::VolumeError::Truncated { .. })
    ));
}
