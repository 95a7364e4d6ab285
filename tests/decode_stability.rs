//! Files written by earlier medinr builds must keep decoding to exactly the same voxels.
//!
//! The three files below in `tests/fixtures` were written by the format-version-1 encoder
//! (commit e799944, `medinr compress data/<scan> --bpv 1 --effort 0.2 --seed 7`); the
//! `resi_*.minr` files beside them are `tests/format_reference.rs`'s residual fixtures. Each is decoded through the
//! real CLI, on its own grid and resampled to 20×17×9, and the output NIfTI bytes are compared
//! with the FNV-1a-64 digests that build produced. A change to the evaluator, the dequantizer,
//! the entropy decoder or the NIfTI writer that moves a single bit fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// FNV-1a, 64-bit: a digest small enough to write into the test.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn decoded_digest(minr: &str, extra: &[&str]) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("decoded.nii");
    let status = Command::new(env!("CARGO_BIN_EXE_medinr"))
        .arg("decompress")
        .arg(fixture(minr))
        .arg("-o")
        .arg(&out)
        .args(extra)
        .output()
        .expect("run medinr");
    assert!(
        status.status.success(),
        "decompress {minr} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    fnv1a64(&std::fs::read(&out).expect("decoded file"))
}

/// Checks that `minr` decodes, on its own grid and resampled to 20×17×9, to the voxels
/// whose digests were recorded when the fixture was written.
fn assert_decodes_as_recorded(minr: &str, own_grid: u64, resampled: u64) {
    assert_eq!(
        decoded_digest(minr, &[]),
        own_grid,
        "{minr} on its own grid"
    );
    assert_eq!(
        decoded_digest(minr, &["--shape", "20,17,9"]),
        resampled,
        "{minr} resampled"
    );
}

#[test]
fn version_1_files_decode_to_the_same_voxels() {
    let cases = [
        (
            "mri_small_bigendian_i16.minr",
            0xc2e2_0b84_0bf3_f3ec,
            0x6dda_79f2_cde8_6cc7,
        ),
        (
            "fmri_small_4d_f64.minr",
            0x7206_330d_5096_3fe1,
            0x2b88_68ec_cb80_7af0,
        ),
        (
            "nifti2_small_4d.minr",
            0x9c98_5b6b_8a68_a5e9,
            0x3488_5e86_0175_d4e3,
        ),
    ];
    for (minr, own_grid, resampled) in cases {
        assert_decodes_as_recorded(minr, own_grid, resampled);
    }
}

/// Format 3.0 (the temporal mean in `MEAN`): `fmri_small_mean.minr`, written by the commit
/// that introduced the format (`medinr compress data/fmri_small_4d_f64.nii --bpv 2 --effort
/// 0.1 --settings S`, S = `{"rate":{"lossy_residual":false}}`; `tests/format_reference.rs`
/// checks it against the reference decoder); the resampled grid interpolates the mean.
#[test]
fn version_3_files_decode_to_the_same_voxels() {
    assert_decodes_as_recorded(
        "fmri_small_mean.minr",
        0x8f18_75df_c411_2aa5,
        0xd802_fa0a_e8bc_506a,
    );
}

/// Format 4.0 with a transform stream of version 3 (sign bits coded in their magnitude's
/// class, before stream version 4 gave them contexts of their own):
/// `transform_v3_mri_small.minr`, written at commit 1a03d41 (`medinr compress
/// data/mri_small_bigendian_i16.nii --bpv 1 --effort 0.1`); the resampled grid interpolates
/// the decoded scan.
#[test]
fn transform_version_3_streams_decode_to_the_same_voxels() {
    assert_decodes_as_recorded(
        "transform_v3_mri_small.minr",
        0xfdfe_5047_7dd0_113f,
        0x6e3d_eec5_98fa_0d1a,
    );
}
