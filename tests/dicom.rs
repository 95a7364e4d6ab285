//! DICOM input end to end: the real `medinr` binary compresses the sample DICOMs in
//! `data/dicom`, decompresses them to NIfTI, and the NIfTI's geometry must equal an
//! independent reader's (pydicom) within 1e-4; plus the refusals a user meets.
//!
//! The reference affines below were printed by `tests/dicom_reference.py` (pydicom 3.0.2,
//! numpy 2.4.6), which sorts the images and builds the LPS→RAS affine on its own; run with
//! `--medinr target/release/medinr` it also compares medinr's output through nibabel.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use medinr::volume::{read_dicom, read_nifti, DataType, DicomProblem, VolumeError};

/// Quick compresses: enough to carry the header, not to judge quality.
const EFFORT: &str = "0.02";

/// mr_series: 20 oblique MR slices (256², i16), 7.0005 mm apart.
const MR_SERIES: [[f64; 4]; 3] = [
    [-0.859375000, 0.000000000, 0.000000000, 110.500000000],
    [0.000000000, -0.851606250, 0.939176300, 78.306300000],
    [0.000000000, 0.115292031, 6.937239273, -72.757500000],
];
/// CT_small.dcm: one CT slice (128², i16, rescale intercept −1024).
const CT_SMALL: [[f64; 4]; 3] = [
    [-0.661468000, 0.000000000, 0.000000000, 158.135803000],
    [0.000000000, -0.661468000, 0.000000000, 179.035797000],
    [0.000000000, 0.000000000, 5.000000000, -75.699997000],
];
/// eCT_Supplemental.dcm: enhanced CT, 2 frames (512², u16), row cosine −x, frames stored
/// in descending z.
const ECT_SUPPLEMENTAL: [[f64; 4]; 3] = [
    [0.388672000, 0.000000000, 0.000000000, -99.500000000],
    [0.000000000, -0.388672000, 0.000000000, 301.500000000],
    [0.000000000, 0.000000000, -10.000000000, -149.000000000],
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/dicom")
        .join(name)
}

struct Run {
    code: i32,
    stderr: String,
}

fn medinr(args: &[&Path]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_medinr"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("cannot start medinr");
    let code = out.status.code().expect("medinr killed by a signal");
    assert_ne!(code, 101, "medinr panicked");
    Run {
        code,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// compress (1 bpv, or lossless) then decompress; returns the output NIfTI's path.
fn round_trip(input: &Path, dir: &Path, lossless: bool) -> PathBuf {
    let (minr, nii) = (dir.join("a.minr"), dir.join("a.nii"));
    let mut args = vec![
        p("compress"),
        input,
        p("-o"),
        &minr,
        p("--bpv"),
        p("1"),
        p("--effort"),
        p(EFFORT),
        p("--quiet"),
    ];
    if lossless {
        args.push(p("--lossless"));
    }
    let run = medinr(&args);
    assert_eq!(run.code, 0, "compress {}: {}", input.display(), run.stderr);
    let run = medinr(&[p("decompress"), &minr, p("-o"), &nii, p("--quiet")]);
    assert_eq!(run.code, 0, "decompress: {}", run.stderr);
    nii
}

fn assert_affine(got: [[f64; 4]; 3], want: [[f64; 4]; 3], what: &str) {
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (got[r][c] - want[r][c]).abs() < 1e-4,
                "{what}: affine[{r}][{c}] = {} but pydicom says {}\n{got:?}",
                got[r][c],
                want[r][c]
            );
        }
    }
}

/// Checks the output NIfTI's header against the reference.
fn check_geometry(
    nii: &Path,
    shape: [usize; 4],
    dt: DataType,
    affine: [[f64; 4]; 3],
    scl: (f64, f64),
) -> medinr::volume::Volume {
    let v = read_nifti(nii).unwrap();
    let h = &v.header;
    assert_eq!(h.shape(), shape);
    assert_eq!(h.datatype(), dt);
    assert_eq!((h.sform_code, h.qform_code), (1, 1));
    assert_affine(h.affine(), affine, "sform");
    assert_affine(h.qform_affine(), affine, "qform");
    for axis in 0..3 {
        let len = affine
            .iter()
            .map(|row| row[axis].powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            (h.pixdim[axis + 1] - len).abs() < 1e-4,
            "pixdim {:?}",
            h.pixdim
        );
    }
    assert_eq!((h.scl_slope, h.scl_inter), scl);
    v
}

#[test]
fn series_geometry_matches_pydicom_and_lossless_values_are_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let series = data("mr_series");
    let nii = round_trip(&series, tmp.path(), true);
    let out = check_geometry(
        &nii,
        [256, 256, 20, 1],
        DataType::I16,
        MR_SERIES,
        (1.0, 0.0),
    );
    let original = read_dicom(&series).unwrap();
    assert_eq!(original.header.shape(), [256, 256, 20, 1]);
    assert!(
        out.data.to_f32() == original.data.to_f32(),
        "lossless values differ"
    );
    // Independently of the reader: brain_001 is the first slice along the normal, and its
    // file ends with its 256×256 little-endian i16 pixels.
    let bytes = fs::read(series.join("brain_001.dcm")).unwrap();
    let plane = &bytes[bytes.len() - 256 * 256 * 2..];
    let first: Vec<f32> = plane
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
        .collect();
    assert!(
        out.data.to_f32()[..256 * 256] == first[..],
        "slice 0 is not brain_001"
    );
}

#[test]
fn single_image_and_enhanced_multiframe_geometry_matches_pydicom() {
    let tmp = tempfile::tempdir().unwrap();
    let nii = round_trip(&data("CT_small.dcm"), tmp.path(), false);
    let v = check_geometry(
        &nii,
        [128, 128, 1, 1],
        DataType::I16,
        CT_SMALL,
        (1.0, -1024.0),
    );
    assert!(v.header.description().starts_with("DICOM CT"));
    let tmp = tempfile::tempdir().unwrap();
    let nii = round_trip(&data("eCT_Supplemental.dcm"), tmp.path(), false);
    check_geometry(
        &nii,
        [512, 512, 2, 1],
        DataType::U16,
        ECT_SUPPLEMENTAL,
        (1.0, -1024.0),
    );
}

#[test]
fn multiframe_without_geometry_keeps_frames_in_order_with_unknown_geometry() {
    // emri_small.dcm carries no position/orientation at all: frames in file order, spacing
    // from Spacing Between Slices, geometry codes 0.
    let v = read_dicom(&data("emri_small.dcm")).unwrap();
    let h = &v.header;
    assert_eq!(h.shape(), [64, 64, 10, 1]);
    assert_eq!(h.datatype(), DataType::U16);
    assert_eq!((h.sform_code, h.qform_code), (0, 0));
    assert_eq!(h.spacing()[..3], [1.0, 1.0, 1.2]);
    // Bits Stored 12: every value fits in 12 bits.
    assert!(v.data.to_f32().iter().all(|&x| (0.0..4096.0).contains(&x)));
}

/// Copies the series into a new folder, leaving out the files `skip` names.
fn copy_series(dir: &Path, skip: &[&str]) -> PathBuf {
    let out = dir.join("series");
    fs::create_dir_all(&out).unwrap();
    for e in fs::read_dir(data("mr_series")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !skip.contains(&name.as_str()) {
            fs::copy(e.path(), out.join(&name)).unwrap();
        }
    }
    out
}

fn problem(path: &Path) -> DicomProblem {
    match read_dicom(path) {
        Err(VolumeError::Dicom { problem, .. }) => *problem,
        Err(e) => panic!("{} gave another error: {e}", path.display()),
        Ok(v) => panic!("{} read as {:?}", path.display(), v.shape()),
    }
}

/// The CLI refuses `input` with exit code 3 and a message containing `needle`.
fn cli_refuses(input: &Path, needle: &str) {
    let out = input.with_extension("minr");
    let run = medinr(&[p("compress"), input, p("-o"), &out, p("--quiet")]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains(needle), "{}", run.stderr);
    assert!(!out.exists());
}

#[test]
fn a_folder_mixing_two_series_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_series(tmp.path(), &[]);
    fs::copy(data("CT_small.dcm"), dir.join("zz_ct.dcm")).unwrap();
    assert!(matches!(
        problem(&dir),
        DicomProblem::MultipleSeries { count: 2, .. }
    ));
    cli_refuses(&dir, "2 series");
}

#[test]
fn a_missing_slice_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_series(tmp.path(), &["brain_010.dcm"]);
    assert!(matches!(problem(&dir), DicomProblem::UnevenSpacing { .. }));
    cli_refuses(&dir, "not evenly spaced");
    // The first or last slice missing is just a shorter series.
    fs::remove_file(dir.join("brain_020.dcm")).unwrap();
    fs::copy(data("mr_series/brain_010.dcm"), dir.join("brain_010.dcm")).unwrap();
    assert_eq!(read_dicom(&dir).unwrap().shape(), [256, 256, 19, 1]);
}

#[test]
fn an_unsupported_transfer_syntax_is_named() {
    let path = data("ct_jpeg2000.dcm");
    assert!(matches!(
        problem(&path),
        DicomProblem::UnsupportedTransferSyntax { ref uid, .. } if uid == "1.2.840.10008.1.2.4.91"
    ));
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("ct_jpeg2000.dcm");
    fs::copy(&path, &copy).unwrap();
    cli_refuses(&copy, "JPEG 2000");
}

#[test]
fn non_dicom_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("notes.dcm");
    fs::write(&text, "not an image\n".repeat(20)).unwrap();
    assert!(matches!(problem(&text), DicomProblem::NotDicom { .. }));
    cli_refuses(&text, "not a DICOM file");
    // medinr's own outputs beside the slices are passed over: compressing a series into
    // its own folder, and decoding it there, leaves the folder readable.
    let dir = copy_series(tmp.path(), &[]);
    let minr = dir.join("series.minr");
    let run = medinr(&[
        p("compress"),
        &dir,
        p("-o"),
        &minr,
        p("--effort"),
        p(EFFORT),
        p("-q"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let nii = dir.join("series.nii.gz");
    let run = medinr(&[p("decompress"), &minr, p("-o"), &nii, p("-q")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read_dicom(&dir).unwrap().shape(), [256, 256, 20, 1]);
    // Any other stray file in a series folder is named, not skipped.
    fs::write(dir.join("readme.txt"), "hello").unwrap();
    match problem(&dir) {
        DicomProblem::NotDicom { file, .. } => assert!(file.ends_with("readme.txt")),
        other => panic!("{other}"),
    }
    // An empty folder.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(problem(&empty), DicomProblem::Empty);
}

#[test]
fn repeated_positions_make_a_time_series_and_uneven_repeats_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_series(tmp.path(), &[]);
    for k in 1..=20 {
        let name = format!("brain_{k:03}.dcm");
        fs::copy(dir.join(&name), dir.join(format!("t2_{name}"))).unwrap();
    }
    let v = read_dicom(&dir).unwrap();
    assert_eq!(v.shape(), [256, 256, 20, 2]);
    let values = v.data.to_f32();
    let (a, b) = values.split_at(values.len() / 2);
    assert!(a == b);
    fs::remove_file(dir.join("t2_brain_007.dcm")).unwrap();
    assert!(matches!(problem(&dir), DicomProblem::UnevenFrames { .. }));
}

#[test]
fn tilted_or_sheared_stacks_and_varying_rescales_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_series(tmp.path(), &[]);
    // Shift every slice 1 mm further along x than the previous one: a 8° gantry tilt.
    let edit = |k: usize, f: &dyn Fn(&mut dicom_object::DefaultDicomObject)| {
        let path = dir.join(format!("brain_{k:03}.dcm"));
        let mut obj = dicom_object::open_file(&path).unwrap();
        f(&mut obj);
        obj.write_to_file(&path).unwrap();
    };
    for k in 1..=20 {
        edit(k, &|obj| {
            let pos = obj
                .element(tags::IMAGE_POSITION_PATIENT)
                .unwrap()
                .to_multi_float64()
                .unwrap();
            let shifted = format!("{}\\{}\\{}", pos[0] + k as f64, pos[1], pos[2]);
            obj.put(DataElement::new(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                PrimitiveValue::from(shifted),
            ));
        });
    }
    assert!(matches!(problem(&dir), DicomProblem::Tilted { .. }));
    cli_refuses(&dir, "gantry tilt");

    let dir2 = tmp.path().join("rescale");
    fs::rename(copy_series(tmp.path(), &[]), &dir2).unwrap();
    let path = dir2.join("brain_005.dcm");
    let mut obj = dicom_object::open_file(&path).unwrap();
    obj.put(DataElement::new(
        tags::RESCALE_SLOPE,
        VR::DS,
        PrimitiveValue::from("2"),
    ));
    obj.write_to_file(&path).unwrap();
    assert!(matches!(problem(&dir2), DicomProblem::RescaleVaries { .. }));
}

#[test]
fn batch_takes_each_series_folder_as_one_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("scans");
    fs::create_dir_all(src.join("ct_one")).unwrap();
    fs::copy(data("CT_small.dcm"), src.join("ct_one/img.dcm")).unwrap();
    let out = tmp.path().join("out");
    let run = medinr(&[
        p("batch"),
        &src,
        p("--out"),
        &out,
        p("--bpv"),
        p("1"),
        p("--effort"),
        p(EFFORT),
        p("--quiet"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(out.join("ct_one.minr").is_file());
    // A series folder itself is not a batch folder.
    let run = medinr(&[p("batch"), &src.join("ct_one"), p("--out"), &out]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("looks like one series"),
        "{}",
        run.stderr
    );
}

/// Found by the `dicom` fuzz target: small files (one deflated) whose element headers claim gigabytes made
/// dicom-rs zero-fill 3 GB before reading. Every declared length is now checked against the
/// file first; the file is refused at once, naming the element, in little memory.
#[test]
fn a_file_claiming_more_bytes_than_it_has_is_refused_in_little_memory() {
    for name in [
        "dicom_claims_3gb.dcm",
        "dicom_deflated_claims_2gb.dcm",
        "dicom_meta_group_length_2gb.dcm",
        "dicom_un_undefined_4gb.dcm",
    ] {
        refused_in_little_memory(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/fuzz")
                .join(name),
        );
    }
}

fn refused_in_little_memory(crafted: &Path) {
    assert!(fs::metadata(crafted).unwrap().len() < 64 * 1024);
    match problem(crafted) {
        DicomProblem::NotDicom { reason, .. } => assert!(reason.contains("declares"), "{reason}"),
        other => panic!("{other}"),
    }
    cli_refuses(crafted, "declares");
    // Peak memory of the refusal, where /usr/bin/time exists.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.minr");
    if let Ok(run) = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_medinr"))
        .arg("compress")
        .arg(crafted)
        .arg("-o")
        .arg(&out)
        .output()
    {
        let stderr = String::from_utf8_lossy(&run.stderr);
        if let Some(kib) = stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u64>().ok())
        {
            assert!(kib < 256 * 1024, "refusing the file used {kib} KiB");
        }
    }
}
