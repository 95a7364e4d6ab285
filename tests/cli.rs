//! End-to-end tests of the `medinr` command line on the sample scans in `data/`: the real
//! binary, real files, and the exit codes and messages a script or a person relies on.
//!
//! Every compress runs at a small `--effort` so the whole file stays quick on two cores.
//! Quality floors sit several dB below what was measured (seed 0; see each constant), so
//! they catch a broken codec without flaking.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use medinr::volume::{read_nifti, write_nifti, Header, Volume};
use serde_json::Value;

/// Effort used by the quick compresses (≈110 optimiser steps).
const EFFORT: &str = "0.05";

/// PSNR floors at 2 bpv, effort 0.05. Measured over seeds 0..8: big-endian MRI
/// 27.0–27.3 dB, NIfTI-2 4D 22.9–24.2 dB, small fMRI 24.1–25.3 dB.
const FLOOR_BE_MRI_2BPV: f64 = 22.0;
const FLOOR_NIFTI2_2BPV: f64 = 18.0;
const FLOOR_FMRI_2BPV: f64 = 20.0;
/// Colin27 at 0.1 bpv, effort 0.02: measured 21.8 dB.
const FLOOR_COLIN_0_1BPV: f64 = 17.0;
/// A PSNR target the big-endian MRI reaches at effort 0.05 (files of 1.8–2.1 kB, 24.8–25.1 dB
/// over seeds 0..6).
const REACHABLE_PSNR: f64 = 24.0;

const BE_MRI: &str = "mri_small_bigendian_i16.nii";
const NIFTI2_4D: &str = "nifti2_small_4d.nii.gz";
const FMRI: &str = "fmri_small_4d_f64.nii";
const COLIN: &str = "mri_t1_colin27_1mm.nii.gz";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temp dir")
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `medinr` with `args`. Never accepts a panic (exit code 101) or a death by signal.
fn medinr<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(env!("CARGO_BIN_EXE_medinr"))
        .args(&args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("cannot start medinr");
    let run = Run {
        args: shown,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.code().is_some(),
        "medinr {} was killed by a signal: {}",
        run.args,
        run.stderr
    );
    assert!(
        run.code != 101 && !run.stderr.contains("panicked"),
        "medinr {} panicked (exit {}):\n{}",
        run.args,
        run.code,
        run.stderr
    );
    run
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "medinr {} failed:\n{}",
            self.args, self.stderr
        );
        self
    }

    /// Asserts the exit code and that stderr holds `phrase`, as one `medinr: error:` message.
    fn fails(self, code: i32, phrase: &str) -> Run {
        assert_eq!(
            self.code, code,
            "medinr {}: expected exit {code}, stderr:\n{}",
            self.args, self.stderr
        );
        assert!(
            self.stderr.contains(phrase),
            "medinr {}: stderr lacks {phrase:?}:\n{}",
            self.args,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "medinr {}: stdout is not JSON ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

/// `compress INPUT -o OUTPUT --json -q --effort 0.05 EXTRA...`; returns the JSON report.
fn compress(input: &Path, output: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<&OsStr> = vec![
        "compress".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--json".as_ref(),
        "-q".as_ref(),
    ];
    if !extra.contains(&"--effort") {
        args.extend([OsStr::new("--effort"), OsStr::new(EFFORT)]);
    }
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    let report = medinr(args).ok().json();
    assert_eq!(
        report["bytes"].as_u64(),
        Some(fs::metadata(output).unwrap().len()),
        "report size differs from the file written"
    );
    report
}

fn info(minr: &Path) -> Value {
    medinr([OsStr::new("info"), minr.as_os_str(), OsStr::new("--json")])
        .ok()
        .json()
}

fn compare(reference: &Path, test: &Path) -> Value {
    medinr([
        OsStr::new("compare"),
        reference.as_os_str(),
        test.as_os_str(),
        OsStr::new("--json"),
    ])
    .ok()
    .json()
}

fn decompress(minr: &Path, output: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "decompress".as_ref(),
        minr.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    medinr(args)
}

fn slice(minr: &Path, output: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "slice".as_ref(),
        minr.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    medinr(args)
}

/// Compresses a sample at 2 bpv into `dir` and returns the `.minr` path.
fn compressed(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.minr"));
    compress(&data(name), &out, &["--bpv", "2"]);
    out
}

/// Compresses a sample at 2 bpv into `dir` as the field alone (no residual layer, which
/// applies on the original grid only), for tests of how the field itself resamples.
fn compressed_field_alone(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.field.minr"));
    let settings = dir.join("field-alone.json");
    fs::write(
        &settings,
        r#"{"rate":{"lossy_residual":false},"transform":{"enabled":false}}"#,
    )
    .unwrap();
    let s = settings.to_str().unwrap();
    compress(&data(name), &out, &["--bpv", "2", "--settings", s]);
    out
}

/// Names in `dir` that look like medinr's temp files (`.NAME.tmp.PID.N`).
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

fn assert_no_temp_files(dir: &Path) {
    let left = temp_files(dir);
    assert!(left.is_empty(), "temp files left in {dir:?}: {left:?}");
}

fn voxels(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

/// World position of voxel `ijk` under a 3×4 affine.
fn world(a: &[[f64; 4]; 3], ijk: [f64; 3]) -> [f64; 3] {
    let mut w = [0.0; 3];
    for (r, row) in a.iter().enumerate() {
        w[r] = row[0] * ijk[0] + row[1] * ijk[1] + row[2] * ijk[2] + row[3];
    }
    w
}

fn assert_close3(a: [f64; 3], b: [f64; 3], tol: f64, what: &str) {
    assert!(
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol),
        "{what}: {a:?} vs {b:?}"
    );
}

/// Every header field medinr promises to restore, then the bytes themselves.
fn assert_same_header(a: &Header, b: &Header) {
    assert_eq!(a.shape(), b.shape(), "shape");
    assert_eq!(a.dim(), b.dim(), "dim");
    assert_eq!(a.pixdim, b.pixdim, "pixdim");
    assert_eq!(a.datatype(), b.datatype(), "datatype");
    assert_eq!(a.affine(), b.affine(), "affine");
    assert_eq!(a.qform_code, b.qform_code, "qform_code");
    assert_eq!(a.sform_code, b.sform_code, "sform_code");
    assert_eq!(
        (a.quatern_b, a.quatern_c, a.quatern_d),
        (b.quatern_b, b.quatern_c, b.quatern_d),
        "quaternion"
    );
    assert_eq!(
        (a.qoffset_x, a.qoffset_y, a.qoffset_z),
        (b.qoffset_x, b.qoffset_y, b.qoffset_z),
        "qoffset"
    );
    assert_eq!(
        [a.srow_x, a.srow_y, a.srow_z],
        [b.srow_x, b.srow_y, b.srow_z],
        "srow"
    );
    assert_eq!(a.scl_slope.to_bits(), b.scl_slope.to_bits(), "scl_slope");
    assert_eq!(a.scl_inter.to_bits(), b.scl_inter.to_bits(), "scl_inter");
    assert_eq!(a.descrip, b.descrip, "descrip");
    assert_eq!(a.xyzt_units, b.xyzt_units, "xyzt_units");
    assert_eq!(a.is_big_endian(), b.is_big_endian(), "byte order");
    assert_eq!(a.is_nifti2(), b.is_nifti2(), "NIfTI version");
    assert_eq!(a.vox_offset(), b.vox_offset(), "vox_offset");
    assert_eq!(a.extension_bytes(), b.extension_bytes(), "extensions");
    assert!(a.to_bytes() == b.to_bytes(), "header bytes differ");
}

struct Expect {
    shape: [usize; 4],
    datatype: &'static str,
    nifti_version: u64,
    byte_order: &'static str,
    floor_db: f64,
}

/// compress (2 bpv) → info → decompress → compare, checking header identity and quality.
fn round_trip(name: &str, decoded_name: &str, e: Expect) {
    let dir = tempdir();
    let input = data(name);
    let minr = dir.path().join("scan.minr");
    let report = compress(&input, &minr, &["--bpv", "2"]);

    let i = info(&minr);
    let shape: Vec<u64> = e.shape.iter().map(|&n| n as u64).collect();
    assert_eq!(i["shape"], serde_json::json!(shape));
    assert_eq!(i["datatype"], e.datatype);
    assert_eq!(i["nifti_version"], e.nifti_version);
    assert_eq!(i["byte_order"], e.byte_order);
    // At 2 bpv the field plus a residual may be the better file (format 2.0), or the
    // wavelet transform layer (4.0); a series may hold its temporal mean apart (3.0).
    let version = if !report["transform"].is_null() {
        "4.0"
    } else if !report["mean_bytes"].is_null() {
        "3.0"
    } else if report["lossy_residual"].is_null() {
        "1.0"
    } else {
        "2.0"
    };
    assert_eq!(i["format_version"], version);
    assert_eq!(i["file_bytes"], report["bytes"]);
    let bpv = i["bits_per_voxel"].as_f64().unwrap();
    assert!((0.97 * 2.0..=2.0 + 1e-3).contains(&bpv), "info bpv {bpv}");
    let expected_bpv = fs::metadata(&minr).unwrap().len() as f64 * 8.0 / voxels(e.shape) as f64;
    assert!((bpv - expected_bpv).abs() < 1e-9);
    // The text form names the rate too.
    let text = medinr([OsStr::new("info"), minr.as_os_str()]).ok();
    assert!(text.stdout.contains("bpv"), "{}", text.stdout);

    let decoded = dir.path().join(decoded_name);
    decompress(&minr, &decoded, &[]).ok();
    let original = read_nifti(&input).unwrap();
    let restored = read_nifti(&decoded).unwrap();
    assert_same_header(&original.header, &restored.header);
    assert_eq!(restored.data.len(), voxels(e.shape));

    let c = compare(&input, &decoded);
    let psnr = c["psnr_db"].as_f64().unwrap();
    assert!(psnr.is_finite(), "PSNR {psnr}");
    assert!(
        psnr > e.floor_db,
        "{name}: PSNR {psnr:.2} dB at 2 bpv is below the floor {} dB",
        e.floor_db
    );
    assert_eq!(c["voxels"], voxels(e.shape) as u64);
    // compress reports the quality of the decoder's own output: the same number.
    let reported = report["quality"]["psnr_db"].as_f64().unwrap();
    assert!(
        (reported - psnr).abs() < 0.05,
        "compress reported {reported:.3} dB, compare measured {psnr:.3} dB"
    );
    assert_no_temp_files(dir.path());
}

#[test]
fn round_trip_big_endian_i16_keeps_header() {
    round_trip(
        BE_MRI,
        "decoded.nii",
        Expect {
            shape: [33, 41, 25, 1],
            datatype: "i16",
            nifti_version: 1,
            byte_order: "big-endian",
            floor_db: FLOOR_BE_MRI_2BPV,
        },
    );
}

#[test]
fn round_trip_nifti2_4d_keeps_header_and_extension() {
    round_trip(
        NIFTI2_4D,
        "decoded.nii.gz",
        Expect {
            shape: [32, 20, 12, 2],
            datatype: "i16",
            nifti_version: 2,
            byte_order: "little-endian",
            floor_db: FLOOR_NIFTI2_2BPV,
        },
    );
}

#[test]
fn round_trip_scaled_fmri_keeps_scl_slope() {
    let h = read_nifti(&data(FMRI)).unwrap().header;
    assert!(
        h.scl_slope != 0.0 && h.scl_slope != 1.0,
        "sample lost its scaling"
    );
    round_trip(
        FMRI,
        "decoded.nii",
        Expect {
            shape: [17, 21, 3, 20],
            datatype: "i16",
            nifti_version: 1,
            byte_order: "little-endian",
            floor_db: FLOOR_FMRI_2BPV,
        },
    );
}

/// A series whose voxels differ mostly by their mean holds the mean apart (format 3.0) and
/// beats both the temporal-mean baseline and the same rate without the mean held apart; its
/// slices and other grids include the mean.
#[test]
fn series_hold_their_temporal_mean_apart_and_beat_the_temporal_mean() {
    let dir = tempdir();
    let input = data(FMRI);
    let minr = dir.path().join("mean.minr");
    // The field alone beside the mean (no residual layer), so other grids compare exactly.
    let field_only = dir.path().join("field-only.json");
    fs::write(
        &field_only,
        r#"{"rate":{"lossy_residual":false},"transform":{"enabled":false}}"#,
    )
    .unwrap();
    let f = field_only.to_str().unwrap();
    let report = compress(&input, &minr, &["--bpv", "2", "--settings", f]);
    assert!(
        report["mean_bytes"].as_u64().is_some_and(|b| b > 0),
        "{report}"
    );
    let i = info(&minr);
    assert_eq!(i["format_version"], "3.0");
    assert!(
        i["mode"].as_str().unwrap().contains("temporal mean apart"),
        "{i}"
    );
    let decoded = dir.path().join("mean.nii");
    decompress(&minr, &decoded, &[]).ok();
    let c = compare(&input, &decoded);
    let psnr = c["psnr_db"].as_f64().unwrap();
    let baseline = c["timeseries"]["temporal_mean_psnr_db"].as_f64().unwrap();
    assert!(
        psnr > baseline,
        "PSNR {psnr:.2} dB is not above the temporal mean's {baseline:.2} dB"
    );

    let settings = dir.path().join("no-mean.json");
    fs::write(
        &settings,
        r#"{"series":{"separate_mean":false},"rate":{"lossy_residual":false},"transform":{"enabled":false}}"#,
    )
    .unwrap();
    let alone = dir.path().join("alone.minr");
    let s = settings.to_str().unwrap();
    let r = compress(&input, &alone, &["--bpv", "2", "--settings", s]);
    assert!(r["mean_bytes"].is_null());
    let decoded_alone = dir.path().join("alone.nii");
    decompress(&alone, &decoded_alone, &[]).ok();
    let psnr_alone = compare(&input, &decoded_alone)["psnr_db"].as_f64().unwrap();
    assert!(
        psnr > psnr_alone,
        "mean apart {psnr:.2} dB, field alone {psnr_alone:.2} dB"
    );

    // A slice is the plane of the full decode; a finer grid (the mean interpolated between
    // voxels) meets the original grid's voxels where their centres coincide.
    let plane = dir.path().join("plane.nii");
    slice(
        &minr,
        &plane,
        &["--axis", "z", "--index", "1", "--frame", "5"],
    )
    .ok();
    let full = read_nifti(&decoded).unwrap().data.to_f32();
    let got = read_nifti(&plane).unwrap().data.to_f32();
    let [nx, ny, nz, _] = [17, 21, 3, 20];
    let start = nx * ny * (1 + nz * 5);
    assert_eq!(got, full[start..start + nx * ny]);
    let fine = dir.path().join("fine.nii");
    decompress(&minr, &fine, &["--shape", "33,41,5"]).ok();
    let fine = read_nifti(&fine).unwrap();
    let v = fine.data.to_f32();
    // Voxel (32, 40, 4) of the finer grid sits on voxel (16, 20, 2) of the original.
    let corner = |t: usize| v[32 + 33 * (40 + 41 * (4 + 5 * t))];
    let own = |t: usize| full[16 + nx * (20 + ny * (2 + nz * t))];
    for t in [0, 7, 19] {
        assert_eq!(corner(t), own(t), "frame {t}");
    }
}

/// File size for a target of `bytes`: at most that, and within 3 % below it.
fn assert_size_within_3_percent(actual: u64, target: f64, what: &str) {
    let target = target.round();
    assert!(
        actual as f64 <= target && actual as f64 >= 0.97 * target,
        "{what}: {actual} bytes for a target of {target} bytes"
    );
}

#[test]
fn bpv_target_lands_within_3_percent() {
    let dir = tempdir();
    for name in [BE_MRI, NIFTI2_4D, FMRI] {
        let n = voxels(read_nifti(&data(name)).unwrap().shape()) as f64;
        for bpv in [2.0, 4.0] {
            let out = dir.path().join(format!("{name}.{bpv}.minr"));
            let r = compress(&data(name), &out, &["--bpv", &bpv.to_string()]);
            let size = fs::metadata(&out).unwrap().len();
            assert_size_within_3_percent(size, bpv * n / 8.0, &format!("{name} --bpv {bpv}"));
            assert_eq!(r["target_bytes"].as_f64().unwrap(), (bpv * n / 8.0).round());
        }
    }
}

/// Compresses `scan` at `bpv` into `output` as the field alone (residual and transform layers
/// off), with the settings file beside `output`; returns the report.
fn compress_field_alone(scan: &Path, output: &Path, bpv: &str) -> Value {
    let off = output.with_extension("settings.json");
    fs::write(
        &off,
        r#"{"rate":{"lossy_residual":false},"transform":{"enabled":false}}"#,
    )
    .unwrap();
    compress(
        scan,
        output,
        &["--bpv", bpv, "--settings", off.to_str().unwrap()],
    )
}

#[test]
fn high_rate_targets_use_a_residual_when_it_beats_the_field_alone() {
    // At 3 bpv the field alone saturates on the small MRI; the encoder also tries the field
    // plus a residual layer at a searched bound and must keep the better file: it lands on
    // the target, beats the field-alone file (made with the hybrid switched off) and meets
    // the bound it reports on every voxel, also when one slice is decoded alone.
    let dir = tempdir();
    let scan = data(BE_MRI);
    let original = read_nifti(&scan).unwrap();
    let n = voxels(original.shape()) as f64;
    let alone = dir.path().join("alone.minr");
    let r_alone = compress_field_alone(&scan, &alone, "3");
    assert!(r_alone["lossy_residual"].is_null());
    assert_eq!(info(&alone)["format_version"], "1.0");
    // The transform layer off: this test is about the hybrid (it has its own below).
    let no_transform = dir.path().join("no_transform.json");
    fs::write(&no_transform, r#"{"transform":{"enabled":false}}"#).unwrap();
    let hybrid = dir.path().join("hybrid.minr");
    let r = compress(
        &scan,
        &hybrid,
        &["--bpv", "3", "--settings", no_transform.to_str().unwrap()],
    );
    assert_size_within_3_percent(
        fs::metadata(&hybrid).unwrap().len(),
        3.0 * n / 8.0,
        "hybrid",
    );
    let choice = &r["lossy_residual"];
    let bound = choice["max_error"].as_f64().expect("a residual at 3 bpv");
    assert!(
        r["quality"]["psnr_db"].as_f64().unwrap() > r_alone["quality"]["psnr_db"].as_f64().unwrap(),
        "hybrid {r} not better than the field alone {r_alone}"
    );
    let out = dir.path().join("hybrid.nii");
    decompress(&hybrid, &out, &[]).ok();
    let decoded = read_nifti(&out).unwrap();
    let err = max_abs_difference(&original.data.to_f32(), &decoded.data.to_f32());
    assert!(
        err <= bound,
        "max error {err} above the reported bound {bound}"
    );
    assert_eq!(r["quality"]["max_abs_error"].as_f64().unwrap(), err);
    // One slice alone decodes as that plane of the whole scan.
    let [nx, ny, _, _] = original.shape();
    let plane = dir.path().join("z7.nii");
    slice(&hybrid, &plane, &["--axis", "z", "--index", "7"]).ok();
    let plane = read_nifti(&plane).unwrap().data.to_f32();
    assert_eq!(
        plane,
        decoded.data.to_f32()[7 * nx * ny..8 * nx * ny].to_vec()
    );
}

#[test]
fn transform_layer_wins_where_it_is_better_and_decodes_slices_and_other_grids() {
    // At 1 bpv a wavelet transform of the small MRI beats the field alone (made with both
    // layers off): the encoder keeps the transform file (format 4.0), which lands on the
    // target, reports the decoder's own quality, decodes one slice alone as that plane of the
    // whole scan, and samples another grid from the decoded scan.
    let dir = tempdir();
    let scan = data(BE_MRI);
    let original = read_nifti(&scan).unwrap();
    let n = voxels(original.shape()) as f64;
    let alone = dir.path().join("alone.minr");
    let r_alone = compress_field_alone(&scan, &alone, "1");
    let minr = dir.path().join("transform.minr");
    let r = compress(&scan, &minr, &["--bpv", "1"]);
    assert!(!r["transform"].is_null(), "no transform layer: {r}");
    assert!(r["lossy_residual"].is_null());
    assert_size_within_3_percent(fs::metadata(&minr).unwrap().len(), n / 8.0, "transform");
    let psnr = r["quality"]["psnr_db"].as_f64().unwrap();
    let psnr_alone = r_alone["quality"]["psnr_db"].as_f64().unwrap();
    assert!(
        psnr > psnr_alone + 3.0,
        "transform {psnr:.2} dB, field alone {psnr_alone:.2} dB"
    );
    let i = info(&minr);
    assert_eq!(i["format_version"], "4.0");
    assert!(i["mode"].as_str().unwrap().contains("wavelet"), "{i}");
    let out = dir.path().join("transform.nii");
    decompress(&minr, &out, &[]).ok();
    let decoded = read_nifti(&out).unwrap();
    assert_same_header(&original.header, &decoded.header);
    let c = compare(&scan, &out);
    assert!(
        (c["psnr_db"].as_f64().unwrap() - psnr).abs() < 0.05,
        "{c} vs {r}"
    );
    // Integer scan: the outlier lists guarantee the reported worst-case error.
    let bound = r["transform"]["max_error"]
        .as_f64()
        .expect("an outlier bound");
    let err = max_abs_difference(&original.data.to_f32(), &decoded.data.to_f32());
    assert!(err <= bound, "max error {err} above the bound {bound}");
    assert!(i["mode"].as_str().unwrap().contains("max-error"), "{i}");
    let [nx, ny, nz, _] = original.shape();
    let plane = dir.path().join("z7.nii");
    slice(&minr, &plane, &["--axis", "z", "--index", "7"]).ok();
    let plane = read_nifti(&plane).unwrap().data.to_f32();
    assert_eq!(
        plane,
        decoded.data.to_f32()[7 * nx * ny..8 * nx * ny].to_vec()
    );
    // Twice as many slices: every other one of them is a slice of the scan (corner-aligned
    // coordinates), and the ones between lie between their neighbours.
    let fine = dir.path().join("fine.nii");
    let shape = format!("{nx},{ny},{}", 2 * nz - 1);
    decompress(&minr, &fine, &["--shape", &shape]).ok();
    let fine = read_nifti(&fine).unwrap().data.to_f32();
    let whole = decoded.data.to_f32();
    let s = nx * ny;
    assert_eq!(fine[14 * s..15 * s], whole[7 * s..8 * s]);
    for i in 0..s {
        let (a, b) = (whole[7 * s + i], whole[8 * s + i]);
        let m = fine[15 * s + i];
        assert!(
            m >= a.min(b) - 0.5 && m <= a.max(b) + 0.5,
            "voxel {i}: {m} not between {a} and {b}"
        );
    }
}

#[test]
fn ratio_target_lands_within_3_percent() {
    let dir = tempdir();
    for name in [BE_MRI, NIFTI2_4D, FMRI] {
        let v = read_nifti(&data(name)).unwrap();
        // The ratio is against the stored data: voxels × stored bits (all three are i16).
        let stored_bytes = voxels(v.shape()) as f64 * v.header.datatype().bytes() as f64;
        for ratio in [8.0, 16.0] {
            let out = dir.path().join(format!("{name}.r{ratio}.minr"));
            compress(&data(name), &out, &["--ratio", &ratio.to_string()]);
            let size = fs::metadata(&out).unwrap().len();
            assert_size_within_3_percent(
                size,
                stored_bytes / ratio,
                &format!("{name} --ratio {ratio}"),
            );
            let reported = info(&out)["ratio"].as_f64().unwrap();
            assert!(
                reported >= ratio * 0.999 && reported <= ratio / 0.97,
                "{name}: info ratio {reported} for --ratio {ratio}"
            );
        }
    }
}

#[test]
fn psnr_target_is_met() {
    let dir = tempdir();
    let minr = dir.path().join("q.minr");
    let psnr = REACHABLE_PSNR.to_string();
    let r = compress(&data(BE_MRI), &minr, &["--psnr", &psnr]);
    assert!(r["quality"]["psnr_db"].as_f64().unwrap() >= REACHABLE_PSNR);
    let decoded = dir.path().join("q.nii");
    decompress(&minr, &decoded, &[]).ok();
    let measured = compare(&data(BE_MRI), &decoded)["psnr_db"]
        .as_f64()
        .unwrap();
    assert!(
        measured >= REACHABLE_PSNR,
        "--psnr {REACHABLE_PSNR} gave {measured:.3} dB"
    );
    // A PSNR target should not cost a rate far above what reaching it needs (measured ~0.5 bpv).
    assert!(r["bits_per_voxel"].as_f64().unwrap() < 2.0, "{r}");
}

#[test]
fn unreachable_targets_exit_4_and_write_nothing() {
    let dir = tempdir();
    let out = dir.path().join("x.minr");
    let e = EFFORT;
    medinr([
        "compress".as_ref(),
        data(BE_MRI).as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
        "--effort".as_ref(),
        e.as_ref(),
        "--bpv".as_ref(),
        "0.05".as_ref(),
    ])
    .fails(4, "ask for a higher rate");
    medinr([
        "compress".as_ref(),
        data(BE_MRI).as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
        "--effort".as_ref(),
        "0.02".as_ref(),
        "--psnr".as_ref(),
        "60".as_ref(),
    ])
    .fails(4, "out of reach");
    assert!(!out.exists());
    assert_no_temp_files(dir.path());
}

#[test]
fn invalid_targets_are_usage_errors() {
    let dir = tempdir();
    let out = dir.path().join("x.minr");
    let input = data(BE_MRI);
    let base = |extra: &[&str]| {
        let mut a: Vec<&OsStr> = vec![
            "compress".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "-q".as_ref(),
        ];
        a.extend(extra.iter().map(|s| OsStr::new(*s)));
        medinr(a)
    };
    base(&["--bpv=-1"]).fails(2, "must be positive");
    base(&["--ratio", "0"]).fails(2, "must be positive");
    base(&["--psnr", "inf"]).fails(2, "must be positive and finite");
    base(&["--bpv", "2", "--ratio", "3"]).fails(2, "cannot be used with");
    assert!(!out.exists());
    assert_no_temp_files(dir.path());
}

#[test]
fn decompress_to_another_grid_keeps_the_field_of_view() {
    let dir = tempdir();
    for (name, shape_arg, expect) in [
        (BE_MRI, "17,21,13", [17usize, 21, 13, 1]),
        (NIFTI2_4D, "16,10,6", [16, 10, 6, 2]),
        (NIFTI2_4D, "63,39,23,3", [63, 39, 23, 3]),
    ] {
        let minr = dir.path().join(format!("{name}.minr"));
        if !minr.exists() {
            compress(&data(name), &minr, &["--bpv", "2"]);
        }
        let out = dir.path().join(format!("{name}.{shape_arg}.nii.gz"));
        decompress(&minr, &out, &["--shape", shape_arg]).ok();
        let original = read_nifti(&data(name)).unwrap().header;
        let v = read_nifti(&out).unwrap();
        assert_eq!(v.shape(), expect, "--shape {shape_arg}");
        assert_eq!(v.data.len(), voxels(expect));
        assert_eq!(v.header.datatype(), original.datatype());
        assert_eq!(v.header.descrip, original.descrip);
        assert_eq!(v.header.is_nifti2(), original.is_nifti2());
        let o = original.shape();
        let last = |s: [usize; 4]| [s[0] as f64 - 1.0, s[1] as f64 - 1.0, s[2] as f64 - 1.0];
        let (a, b) = (original.affine(), v.header.affine());
        assert_close3(
            world(&a, [0.0; 3]),
            world(&b, [0.0; 3]),
            1e-3,
            "first voxel",
        );
        assert_close3(
            world(&a, last(o)),
            world(&b, last(expect)),
            1e-3,
            "last voxel",
        );
    }
    assert_no_temp_files(dir.path());
}

/// Width and height from a PNG's IHDR, after checking the signature and decoding it.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!((frame.width, frame.height), (w, h));
    let pixels = &buf[..frame.buffer_size()];
    assert!(
        pixels.iter().any(|&p| p != pixels[0]),
        "{path:?} is a blank picture: {:?} {:?}",
        frame,
        &pixels[..pixels.len().min(64)]
    );
    (w, h)
}

#[test]
fn slice_to_png_has_the_plane_size_on_each_axis() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let [nx, ny, nz, _] = [33u32, 41, 25, 1];
    for (axis, size) in [("x", (ny, nz)), ("y", (nx, nz)), ("z", (nx, ny))] {
        let out = dir.path().join(format!("{axis}.png"));
        slice(&minr, &out, &["--axis", axis]).ok();
        assert_eq!(png_size(&out), size, "axis {axis}");
        let out = dir.path().join(format!("{axis}.win.png"));
        slice(
            &minr,
            &out,
            &["--axis", axis, "--index", "12", "--window=8000,16000"],
        )
        .ok();
        assert_eq!(png_size(&out), size, "axis {axis}, windowed");
    }
    assert_no_temp_files(dir.path());
}

#[test]
fn slice_to_nifti_equals_the_plane_of_a_full_decompress() {
    let dir = tempdir();
    // A lossy file, and a bounded one whose slices go through the residual layer chunk by
    // chunk: both must equal the plane of the whole decode.
    for (name, mode) in [
        (BE_MRI, "--bpv=2"),
        (NIFTI2_4D, "--bpv=2"),
        (NIFTI2_4D, "--max-error=1"),
    ] {
        let minr = dir.path().join(format!("{name}{mode}.minr"));
        compress(&data(name), &minr, &[mode]);
        let name = &format!("{name}{mode}");
        let full_path = dir.path().join(format!("{name}.full.nii"));
        decompress(&minr, &full_path, &[]).ok();
        let full = read_nifti(&full_path).unwrap();
        let shape = full.shape();
        let frames: Vec<usize> = (0..shape[3]).collect();
        for axis in 0..3 {
            for index in [0, shape[axis] / 2, shape[axis] - 1] {
                for &frame in &frames {
                    let out = dir
                        .path()
                        .join(format!("{name}.{axis}.{index}.{frame}.nii.gz"));
                    let (ax, ix, fr) =
                        (["x", "y", "z"][axis], index.to_string(), frame.to_string());
                    slice(&minr, &out, &["--axis", ax, "--index", &ix, "--frame", &fr]).ok();
                    let s = read_nifti(&out).unwrap();
                    let mut expect_shape = shape;
                    expect_shape[axis] = 1;
                    expect_shape[3] = 1;
                    assert_eq!(s.shape(), expect_shape, "{name} axis {ax} index {index}");
                    let [nx, ny, nz, _] = shape;
                    let mut plane = Vec::new();
                    for z in 0..nz {
                        for y in 0..ny {
                            for x in 0..nx {
                                if [x, y, z][axis] == index {
                                    plane.push(full.data.get(x + nx * (y + ny * (z + nz * frame))));
                                }
                            }
                        }
                    }
                    assert!(
                        s.data.to_f32() == plane,
                        "{name}: slice {ax}={index} frame {frame} differs from the full decode"
                    );
                    // The slice sits where that plane lies in the original's world space.
                    let mut ijk = [0.0; 3];
                    ijk[axis] = index as f64;
                    assert_close3(
                        world(&s.header.affine(), [0.0; 3]),
                        world(&full.header.affine(), ijk),
                        1e-3,
                        "slice origin",
                    );
                    assert_eq!(s.header.datatype(), full.header.datatype());
                }
            }
        }
    }
    assert_no_temp_files(dir.path());
}

#[test]
fn slice_outside_the_scan_is_exit_2() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let minr4 = compressed(dir.path(), NIFTI2_4D);
    let out = dir.path().join("s.png");
    slice(&minr, &out, &["--axis", "x", "--index", "33"])
        .fails(2, "slice 33 does not exist on axis x");
    slice(&minr, &out, &["--axis", "y", "--index", "41"])
        .fails(2, "slice 41 does not exist on axis y");
    slice(&minr, &out, &["--axis", "z", "--index", "1000"])
        .fails(2, "slice 1000 does not exist on axis z");
    slice(&minr, &out, &["--frame", "1"]).fails(2, "frame 1 does not exist");
    slice(&minr4, &out, &["--frame", "2"]).fails(2, "frame 2 does not exist");
    slice(&minr4, &out, &["--frame", "1"]).ok();
    fs::remove_file(&out).unwrap();
    slice(&minr, &dir.path().join("s.txt"), &[]).fails(2, "must end in .png, .nii or .nii.gz");
    assert!(!out.exists());
    assert_no_temp_files(dir.path());
}

/// (offset, payload length) of each section of a `.minr` file, END included.
fn sections(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        out.push((pos, len));
        if &bytes[pos..pos + 4] == b"END " {
            break;
        }
        pos += 12 + len;
    }
    out
}

/// info, decompress and slice all refuse `bad` with exit 3 and `phrase`, writing nothing.
fn assert_refused(dir: &Path, bad: &Path, phrase: &str) {
    medinr([OsStr::new("info"), bad.as_os_str()]).fails(3, phrase);
    let out = dir.join("out.nii");
    decompress(bad, &out, &[]).fails(3, phrase);
    let png = dir.join("out.png");
    slice(bad, &png, &[]).fails(3, phrase);
    assert!(!out.exists() && !png.exists());
    assert_no_temp_files(dir);
}

#[test]
fn truncated_minr_is_refused() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let bytes = fs::read(&minr).unwrap();
    let n = bytes.len();
    let bad = dir.path().join("cut.minr");
    for cut in [
        0,
        5,
        8,
        11,
        12,
        16,
        20,
        100,
        n / 3,
        n / 2,
        n - 13,
        n - 5,
        n - 1,
    ] {
        fs::write(&bad, &bytes[..cut]).unwrap();
        let phrase = if cut < 8 { "bad magic" } else { "truncated" };
        assert_refused(dir.path(), &bad, phrase);
    }
}

#[test]
fn bit_flipped_minr_fails_its_checksum() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let bytes = fs::read(&minr).unwrap();
    let bad = dir.path().join("flip.minr");
    let secs = sections(&bytes);
    assert!(secs.len() >= 4, "sections {secs:?}");
    for &(pos, len) in &secs {
        // First, middle and last payload byte, and the CRC.
        let mut offsets = vec![pos + 8 + len];
        if len > 0 {
            offsets.extend([pos + 8, pos + 8 + len / 2, pos + 8 + len - 1]);
        }
        for off in offsets {
            for mask in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[off] ^= mask;
                fs::write(&bad, &b).unwrap();
                assert_refused(dir.path(), &bad, "checksum mismatch");
            }
        }
    }
    // Damage to the framing (tags, lengths, magic, version) is refused too, if not as a
    // checksum error.
    for off in [0, 3, 9, secs[1].0, secs[1].0 + 5, secs[2].0 + 4] {
        let mut b = bytes.clone();
        b[off] ^= 0x40;
        fs::write(&bad, &b).unwrap();
        assert_refused(dir.path(), &bad, "medinr: error:");
    }
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(n: usize, mut s: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

#[test]
fn random_bytes_are_neither_minr_nor_nifti() {
    let dir = tempdir();
    let bad = dir.path().join("noise.minr");
    fs::write(&bad, noise(5000, 0x1234_5678_9abc_def1)).unwrap();
    assert_refused(dir.path(), &bad, "not a .minr file (bad magic)");
    let out = dir.path().join("x.minr");
    medinr([
        "compress".as_ref(),
        bad.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
    ])
    .fails(3, "not a NIfTI file");
    let nii = dir.path().join("noise.nii");
    fs::write(&nii, noise(4000, 99)).unwrap();
    medinr([
        OsStr::new("compare"),
        data(BE_MRI).as_os_str(),
        nii.as_os_str(),
    ])
    .fails(3, "not a NIfTI file");
    // A .minr given where a NIfTI is expected.
    let minr = compressed(dir.path(), BE_MRI);
    medinr([
        "compress".as_ref(),
        minr.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
    ])
    .fails(3, "not a NIfTI file");
    assert!(!out.exists());
    assert_no_temp_files(dir.path());
}

fn compress_fails(dir: &Path, input: &Path, code: i32, phrase: &str) {
    let out = dir.join("never.minr");
    medinr([
        "compress".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
        "--effort".as_ref(),
        EFFORT.as_ref(),
        "--bpv".as_ref(),
        "2".as_ref(),
    ])
    .fails(code, phrase);
    assert!(!out.exists());
    assert_no_temp_files(dir);
}

#[test]
fn nifti_whose_header_lies_about_its_size_is_refused() {
    let dir = tempdir();
    let bytes = fs::read(data(BE_MRI)).unwrap();
    let bad = dir.path().join("short.nii");
    for (cut, phrase) in [
        (0, "truncated"),
        (3, "truncated"),
        (200, "a NIfTI-1 header needs 348 bytes"),
        (350, "truncated"),
        (30_000, "67650 bytes"),
        (bytes.len() - 1, "truncated"),
    ] {
        fs::write(&bad, &bytes[..cut]).unwrap();
        compress_fails(dir.path(), &bad, 3, phrase);
        medinr([
            OsStr::new("compare"),
            data(BE_MRI).as_os_str(),
            bad.as_os_str(),
        ])
        .fails(3, phrase);
    }
    // Whole file, but dim[3] doubled (big-endian i16 at offset 46).
    let mut b = bytes.clone();
    b[46..48].copy_from_slice(&50i16.to_be_bytes());
    fs::write(&bad, &b).unwrap();
    compress_fails(dir.path(), &bad, 3, "truncated: header says 67650 voxels");
    // A cut gzip stream: inside the deflate data, and only the 8-byte trailer (CRC-32 and
    // length) missing.
    let gz = fs::read(data(NIFTI2_4D)).unwrap();
    let bad = dir.path().join("short.nii.gz");
    for cut in [100, gz.len() / 2, gz.len() - 30, gz.len() - 8, gz.len() - 4] {
        fs::write(&bad, &gz[..cut]).unwrap();
        compress_fails(dir.path(), &bad, 3, "gzip");
    }
}

#[test]
fn corrupted_gzip_fails_its_crc() {
    let dir = tempdir();
    let gz = fs::read(data(NIFTI2_4D)).unwrap();
    let bad = dir.path().join("bad_crc.nii.gz");
    // The stored CRC-32 of the uncompressed data (gzip trailer, bytes -8..-4).
    let mut b = gz.clone();
    let n = b.len();
    b[n - 6] ^= 0xff;
    fs::write(&bad, &b).unwrap();
    compress_fails(dir.path(), &bad, 3, "gzip");
    // A voxel byte changed inside a stored (uncompressed) deflate block: the stream still
    // inflates, only the CRC tells.
    let raw = {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    let mut stored = enc.finish().unwrap();
    let mid = stored.len() / 2;
    stored[mid] ^= 0x01;
    fs::write(&bad, &stored).unwrap();
    compress_fails(dir.path(), &bad, 3, "gzip");
}

#[test]
fn unsupported_datatype_is_refused() {
    let dir = tempdir();
    // Big-endian NIfTI-1: datatype is the i16 at offset 70, stored big-endian.
    let mut be = fs::read(data(BE_MRI)).unwrap();
    assert_eq!(i16::from_be_bytes([be[70], be[71]]), 4, "sample is not i16");
    be[70..72].copy_from_slice(&32i16.to_be_bytes());
    let bad = dir.path().join("complex_be.nii");
    fs::write(&bad, &be).unwrap();
    compress_fails(
        dir.path(),
        &bad,
        3,
        "unsupported NIfTI datatype 32 (DT_COMPLEX64)",
    );
    // Little-endian NIfTI-1.
    let mut le = fs::read(data(FMRI)).unwrap();
    assert_eq!(i16::from_le_bytes([le[70], le[71]]), 4, "sample is not i16");
    le[70..72].copy_from_slice(&32i16.to_le_bytes());
    let bad = dir.path().join("complex_le.nii");
    fs::write(&bad, &le).unwrap();
    compress_fails(dir.path(), &bad, 3, "unsupported NIfTI datatype 32");
    medinr([
        OsStr::new("compare"),
        data(FMRI).as_os_str(),
        bad.as_os_str(),
    ])
    .fails(3, "unsupported NIfTI datatype 32");
}

/// The big-endian sample as f32 (same header otherwise), with `bad` voxels set.
fn float_scan_with(path: &Path, bad: &[([usize; 3], f32)]) {
    let v = read_nifti(&data(BE_MRI)).unwrap();
    let mut raw = v.header.to_bytes();
    raw[70..72].copy_from_slice(&16i16.to_be_bytes()); // datatype f32
    raw[72..74].copy_from_slice(&32i16.to_be_bytes()); // bitpix
    let header = Header::from_bytes(&raw).unwrap();
    assert_eq!(header.datatype().name(), "f32");
    let [nx, ny, _, _] = header.shape();
    let mut data = v.data.to_f32();
    for &([x, y, z], value) in bad {
        data[x + nx * (y + ny * z)] = value;
    }
    write_nifti(
        path,
        &Volume {
            data: data.into(),
            header,
        },
        false,
    )
    .unwrap();
}

#[test]
fn nan_voxels_need_nan_fill() {
    let dir = tempdir();
    let scan = dir.path().join("nan.nii");
    float_scan_with(&scan, &[([5, 6, 7], f32::NAN), ([8, 9, 10], f32::INFINITY)]);
    assert!(read_nifti(&scan)
        .unwrap()
        .data
        .to_f32()
        .iter()
        .any(|v| v.is_nan()));
    compress_fails(
        dir.path(),
        &scan,
        3,
        "the scan has 2 NaN or infinite voxels (first at x=5, y=6, z=7, t=0)",
    );
    compress_fails(dir.path(), &scan, 3, "--nan-fill");

    let minr = dir.path().join("filled.minr");
    compress(&scan, &minr, &["--bpv", "2", "--nan-fill", "0"]);
    let out = dir.path().join("filled.nii");
    decompress(&minr, &out, &[]).ok();
    let v = read_nifti(&out).unwrap();
    assert_eq!(v.header.datatype().name(), "f32");
    assert!(v.data.to_f32().iter().all(|x| x.is_finite()));
    assert_no_temp_files(dir.path());
}

#[test]
fn existing_output_needs_force() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let keep = b"do not overwrite me".to_vec();
    let target = dir.path().join("existing");
    let input = data(BE_MRI);

    // compress
    let out = target.with_extension("minr");
    fs::write(&out, &keep).unwrap();
    let args = |force: bool| {
        let mut a: Vec<&OsStr> = vec![
            "compress".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "-q".as_ref(),
            "--effort".as_ref(),
            EFFORT.as_ref(),
            "--bpv".as_ref(),
            "1".as_ref(),
        ];
        if force {
            a.push("--force".as_ref());
        }
        a
    };
    medinr(args(false)).fails(5, "exists; pass --force");
    assert_eq!(fs::read(&out).unwrap(), keep);
    medinr(args(true)).ok();
    info(&out);

    // decompress
    let out = target.with_extension("nii");
    fs::write(&out, &keep).unwrap();
    decompress(&minr, &out, &[]).fails(5, "exists; pass --force");
    assert_eq!(fs::read(&out).unwrap(), keep);
    decompress(&minr, &out, &["--force"]).ok();
    assert_eq!(read_nifti(&out).unwrap().shape(), [33, 41, 25, 1]);

    // slice
    let out = target.with_extension("png");
    fs::write(&out, &keep).unwrap();
    slice(&minr, &out, &[]).fails(5, "exists; pass --force");
    assert_eq!(fs::read(&out).unwrap(), keep);
    slice(&minr, &out, &["--force"]).ok();
    png_size(&out);

    assert_no_temp_files(dir.path());
}

#[test]
fn output_equal_to_input_is_refused() {
    let dir = tempdir();
    let nii = dir.path().join("in.nii");
    fs::copy(data(BE_MRI), &nii).unwrap();
    let nii_bytes = fs::read(&nii).unwrap();
    let minr = compressed(dir.path(), BE_MRI);
    let minr_bytes = fs::read(&minr).unwrap();
    // The same file spelt another way.
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let nii_alias = sub.join("..").join("in.nii");
    let minr_alias = dir.path().join(".").join(minr.file_name().unwrap());

    for (output, force) in [(&nii, false), (&nii, true), (&nii_alias, true)] {
        let mut a: Vec<&OsStr> = vec![
            "compress".as_ref(),
            nii.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            "-q".as_ref(),
        ];
        if force {
            a.push("--force".as_ref());
        }
        medinr(a).fails(5, "is the input file");
    }
    for output in [&minr, &minr_alias] {
        decompress(&minr, output, &["--force"]).fails(5, "is the input file");
        slice(&minr, output, &["--force"]).fails(5, "is the input file");
    }
    assert_eq!(fs::read(&nii).unwrap(), nii_bytes);
    assert_eq!(fs::read(&minr).unwrap(), minr_bytes);
    assert_no_temp_files(dir.path());
}

#[test]
fn unwritable_output_fails_cleanly() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    // A directory where the file should go (with --force, so medinr tries to replace it),
    // and a directory that does not exist.
    let occupied = dir.path().join("occupied.nii");
    fs::create_dir(&occupied).unwrap();
    fs::write(occupied.join("keep"), b"k").unwrap();
    let occupied_png = dir.path().join("occupied.png");
    fs::create_dir(&occupied_png).unwrap();
    let missing = dir.path().join("no").join("such").join("dir.nii");
    for run in [
        decompress(&minr, &occupied, &["--force"]),
        slice(&minr, &occupied_png, &["--force"]),
        decompress(&minr, &missing, &[]),
    ] {
        assert_ne!(run.code, 0, "medinr {} succeeded", run.args);
        // Exit 3 means "an input file is unreadable, corrupted or unsupported"; the input
        // here is fine, the output is the problem.
        assert!(
            run.code == 1 || run.code == 5,
            "medinr {}: exit {} for an unwritable output:\n{}",
            run.args,
            run.code,
            run.stderr
        );
        assert!(
            run.stderr.starts_with("medinr: error: writing "),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.matches("os error").count() <= 1,
            "the OS error is repeated:\n{}",
            run.stderr
        );
    }
    assert_eq!(fs::read(occupied.join("keep")).unwrap(), b"k");
    assert_no_temp_files(dir.path());
    assert_no_temp_files(&occupied);
}

#[test]
fn same_seed_gives_identical_files() {
    let dir = tempdir();
    for name in [BE_MRI, NIFTI2_4D] {
        let file = |seed: &str, k: usize| {
            let out = dir.path().join(format!("{name}.{seed}.{k}.minr"));
            compress(&data(name), &out, &["--bpv", "1", "--seed", seed]);
            fs::read(out).unwrap()
        };
        let a = file("7", 0);
        let b = file("7", 1);
        assert!(a == b, "{name}: seed 7 twice gave different files");
        assert!(file("8", 0) != a, "{name}: the seed has no effect");
    }
}

#[test]
fn compare_refuses_different_shapes() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let out = dir.path().join("plane.nii");
    slice(&minr, &out, &[]).ok();
    medinr([
        OsStr::new("compare"),
        data(BE_MRI).as_os_str(),
        out.as_os_str(),
    ])
    .fails(3, "shapes differ");
}

/// The one full-size scan (181×217×181): compress, one slice, a coarse grid, full compare.
#[test]
fn colin27_whole_head() {
    let dir = tempdir();
    let minr = dir.path().join("colin.minr");
    let r = compress(&data(COLIN), &minr, &["--bpv", "0.1", "--effort", "0.02"]);
    let n = 181.0 * 217.0 * 181.0;
    assert_size_within_3_percent(
        fs::metadata(&minr).unwrap().len(),
        0.1 * n / 8.0,
        "colin27 --bpv 0.1",
    );
    let png = dir.path().join("axial.png");
    slice(&minr, &png, &["--axis", "z"]).ok();
    assert_eq!(png_size(&png), (181, 217));

    let decoded = dir.path().join("colin.nii.gz");
    decompress(&minr, &decoded, &[]).ok();
    let original = read_nifti(&data(COLIN)).unwrap();
    assert_same_header(&original.header, &read_nifti(&decoded).unwrap().header);
    let psnr = compare(&data(COLIN), &decoded)["psnr_db"].as_f64().unwrap();
    assert!(
        psnr > FLOOR_COLIN_0_1BPV,
        "colin27: PSNR {psnr:.2} dB at 0.1 bpv"
    );
    let reported = r["quality"]["psnr_db"].as_f64().unwrap();
    assert!((reported - psnr).abs() < 0.05, "{reported} vs {psnr}");
    assert_no_temp_files(dir.path());
}

/// Max |a − b| over stored values.
fn max_abs_difference(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
fn max_error_bounds_hold_on_every_sample() {
    // Every committed scan, D ∈ {0, 1, 4, 16} in stored units, through the CLI: the decoded
    // stored values are within D of the original, and D = 0 gives identical values (for
    // float scans, identical bit patterns).
    let dir = tempdir();
    let mut names: Vec<String> = fs::read_dir(data(""))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".nii") || n.ends_with(".nii.gz"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        let original = read_nifti(&data(name)).unwrap();
        for d in [0u32, 1, 4, 16] {
            let minr = dir.path().join(format!("{name}.{d}.minr"));
            let bound = d.to_string();
            let report = compress(
                &data(name),
                &minr,
                &["--max-error", &bound, "--effort", "0.02"],
            );
            let out = dir.path().join(format!("{name}.{d}.nii"));
            decompress(&minr, &out, &[]).ok();
            let decoded = read_nifti(&out).unwrap();
            assert_eq!(decoded.shape(), original.shape());
            let err = max_abs_difference(&original.data.to_f32(), &decoded.data.to_f32());
            println!(
                "{name} D={d}: {:.3} bpv, max error {err}",
                report["bits_per_voxel"].as_f64().unwrap()
            );
            if d == 0 {
                let same = original
                    .data
                    .to_f32()
                    .iter()
                    .zip(&decoded.data.to_f32())
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{name}: lossless file does not decode to the original"
                );
            } else {
                assert!(err <= d as f64, "{name}: max error {err} > {d}");
            }
            assert_eq!(info(&minr)["format_version"], "2.0");
        }
    }
    assert_no_temp_files(dir.path());
}

// ---------------------------------------------------------------------------------------
// Hardening: one probe per class of defect found by the hostile review (see each test).
// ---------------------------------------------------------------------------------------

/// A `.minr` container from its sections (magic, version 1.0, CRC'd sections, `END `), as
/// `docs/FORMAT.md` frames it, so a test can craft files whose checksums are valid.
fn container(sections: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x89, b'M', b'I', b'N', b'R', 0x0D, 0x0A, 0x1A, 1, 0, 0, 0];
    for (tag, payload) in sections.iter().chain([(*b"END ", Vec::new())].iter()) {
        out.extend(tag);
        out.extend((payload.len() as u32).to_le_bytes());
        out.extend(payload);
        let mut crc = crc32fast::Hasher::new();
        crc.update(tag);
        crc.update(payload);
        out.extend(crc.finalize().to_le_bytes());
    }
    out
}

/// HEAD payload (FORMAT.md "HEAD"): an i16 scan of `shape`, a 3-axis field.
fn head(shape: [u32; 4], features: u8, table_size: u32, res: &[u32], mlp: (u16, u8)) -> Vec<u8> {
    let mut h = Vec::new();
    for n in shape {
        h.extend(n.to_le_bytes());
    }
    h.extend(4u16.to_le_bytes()); // i16
    h.extend(0f64.to_le_bytes());
    h.extend(1000f64.to_le_bytes());
    h.extend(0u64.to_le_bytes());
    h.extend([3, features]);
    h.extend(table_size.to_le_bytes());
    h.push(res.len() as u8);
    for &r in res {
        for _ in 0..3 {
            h.extend(r.to_le_bytes());
        }
    }
    h.extend(mlp.0.to_le_bytes());
    h.push(mlp.1);
    h
}

/// NIFT payload: the big-endian MRI's header regridded to `shape`, zlib-compressed.
fn nift(shape: [usize; 4]) -> Vec<u8> {
    use std::io::Write;
    let header = read_nifti(&data(BE_MRI))
        .unwrap()
        .header
        .with_shape(shape)
        .unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&header.to_bytes()).unwrap();
    z.finish().unwrap()
}

/// TENS payload: `lengths.len()` tensors, each a constant stream of zeros (mode 1, symbol
/// 0): two bytes that decode to any number of values.
fn constant_tens(count: usize) -> Vec<u8> {
    let mut t = vec![count as u8];
    for _ in 0..count {
        t.extend(1f32.to_le_bytes());
        t.extend([2, 1, 0]); // length 2, MODE_CONSTANT, symbol 0
    }
    t
}

/// A file at every limit FORMAT.md allows: 2 hashed levels of 2^24 entries × 8 features
/// (2^28 grid values, 1 GiB as f32), an MLP of 8 layers × 256, constant streams. A few
/// hundred bytes on disk; `shape` is the scan it claims.
fn maximal_minr(shape: [u32; 4]) -> Vec<u8> {
    container(&[
        (*b"HEAD", head(shape, 8, 1 << 24, &[4096, 8192], (256, 8))),
        (*b"NIFT", nift(shape.map(|n| n as usize))),
        (*b"TENS", constant_tens(2 + 9)),
    ])
}

/// Peak resident memory (KiB) of `medinr args`, measured by GNU time; `None` where
/// `/usr/bin/time` is missing.
fn peak_rss_kib(args: &[&OsStr]) -> Option<(i32, u64)> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_medinr"))
        .args(args)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr.lines().last()?.trim().parse().ok()?;
    Some((out.status.code().unwrap_or(-1), kib))
}

/// Defect 2: the maximal file made `info` and `decompress` use 3.2 GB (symbols, values and
/// table side by side). `info` must not decode tensors; decoding holds the parameters once
/// (1 GiB at the format's limits: symbols become values in place, levels are read where they
/// were decoded), plus the program's own few MiB.
#[test]
fn maximal_file_stays_within_the_stated_memory() {
    let dir = tempdir();
    let minr = dir.path().join("max.minr");
    fs::write(&minr, maximal_minr([4, 4, 4, 1])).unwrap();
    let out = dir.path().join("max.nii");
    let info_args = [OsStr::new("info"), minr.as_os_str()];
    let dec_args = [
        OsStr::new("decompress"),
        minr.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ];
    let (Some((info_code, info_kib)), Some((dec_code, dec_kib))) =
        (peak_rss_kib(&info_args), peak_rss_kib(&dec_args))
    else {
        eprintln!("no /usr/bin/time: peak memory not measured");
        return;
    };
    eprintln!("peak RSS: info {info_kib} KiB, decompress {dec_kib} KiB");
    assert_eq!(info_code, 0, "info failed on the maximal file");
    assert_eq!(dec_code, 0, "decompress failed on the maximal file");
    assert!(info_kib < 64 * 1024, "info used {info_kib} KiB");
    // Measured 1.02 GiB (1,066,408 KiB; was 3.2 GB, then 2.07 GiB with a flat table copy).
    assert!(
        dec_kib < (1024 + 64) * 1024,
        "decompress used {dec_kib} KiB"
    );
}

/// Defect 1: sizes from a flag or a file aborted on allocation. A grid over the budget is
/// refused with its size named (exit 2 for --shape, 3 for a file claiming it); below the
/// budget, a memory limit gives an error (exit 1), not SIGABRT.
#[test]
fn oversized_grids_are_refused_and_allocation_failures_are_errors() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let out = dir.path().join("o.nii");
    decompress(&minr, &out, &["--shape", "100000,100000,100000"]).fails(2, "budget");
    // A file whose own grid is 32767×32767×2 (2^31 voxels, 8 GiB as f32).
    let big = dir.path().join("big.minr");
    fs::write(
        &big,
        container(&[
            (*b"HEAD", head([32767, 32767, 2, 1], 2, 64, &[4], (16, 1))),
            (*b"NIFT", nift([32767, 32767, 2, 1])),
            (*b"TENS", constant_tens(3)),
        ]),
    )
    .unwrap();
    assert!(fs::metadata(&big).unwrap().len() < 1000);
    decompress(&big, &out, &[]).fails(3, "budget");
    // 10^9 voxels (4 GB as f32) under a 4 GB address-space limit.
    let cmd = format!(
        "ulimit -v 4000000 && exec '{}' decompress '{}' -o '{}' --shape 1000,1000,1000",
        env!("CARGO_BIN_EXE_medinr"),
        minr.display(),
        out.display()
    );
    let run = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot allocate"), "{stderr}");
    assert!(!out.exists());
    assert_no_temp_files(dir.path());
}

/// A NIfTI file of `values` as a 4×2×1 scan of NIfTI datatype `code` (768 u32, 8 i32), in
/// the big-endian MRI's byte order.
fn int_scan(path: &Path, code: i16, values: [i64; 8]) {
    let header = read_nifti(&data(BE_MRI))
        .unwrap()
        .header
        .with_shape([4, 2, 1, 1])
        .unwrap();
    let mut bytes = header.to_bytes();
    bytes[70..72].copy_from_slice(&code.to_be_bytes());
    bytes[72..74].copy_from_slice(&32i16.to_be_bytes()); // bitpix
    bytes.resize(header.vox_offset(), 0);
    for v in values {
        bytes.extend((v as u32).to_be_bytes());
    }
    fs::write(path, bytes).unwrap();
}

/// Defect 3: u32/i32 values past 2^24 were rounded to f32 (compare of files differing by 1
/// reported 2). They are refused, by every command that reads NIfTI.
#[test]
fn integers_beyond_f32_precision_are_refused_not_rounded() {
    let dir = tempdir();
    let (a, b) = (dir.path().join("a.nii"), dir.path().join("b.nii"));
    let base = (1i64 << 24) + 1;
    int_scan(&a, 768, [base, base + 2, 5, 6, 7, 8, 9, 10]);
    int_scan(&b, 768, [base + 1, base + 2, 5, 6, 7, 8, 9, 10]);
    medinr([OsStr::new("compare"), a.as_os_str(), b.as_os_str()]).fails(3, "2^24");
    let c = dir.path().join("c.nii");
    int_scan(&c, 8, [-(1 << 30), 0, 1, 2, 3, 4, 5, 6]);
    compress_fails(dir.path(), &c, 3, "2^24");
    // Within ±2^24 integers stay exact: a difference of 1 is reported as 1.
    let (d, e) = (dir.path().join("d.nii"), dir.path().join("e.nii"));
    int_scan(&d, 8, [-(1 << 24), 0, 1, 2, 3, 4, 5, 1 << 24]);
    int_scan(&e, 8, [-(1 << 24) + 1, 0, 1, 2, 3, 4, 5, 1 << 24]);
    assert_eq!(compare(&d, &e)["max_abs_error"].as_f64(), Some(1.0));
}

/// Defect 4: ±3e38 overflowed the normalisation and compressed to a constant with exit 0.
#[test]
fn value_range_wider_than_f32_is_refused() {
    let dir = tempdir();
    let scan = dir.path().join("wide.nii");
    float_scan_with(&scan, &[([0, 0, 0], 3e38), ([1, 0, 0], -3e38)]);
    compress_fails(dir.path(), &scan, 3, "range wider than f32");
}

/// Defect 5: `--force` renamed a regular file over device nodes. Never, with or without it.
#[test]
fn non_regular_outputs_are_refused_even_with_force() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let null = Path::new("/dev/null");
    let fifo = dir.path().join("fifo.nii");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    decompress(&minr, &fifo, &["--force"]).fails(5, "not a regular file");
    slice(&minr, null, &["--force"]).fails(2, "must end in");
    let run = medinr([
        OsStr::new("compress"),
        data(BE_MRI).as_os_str(),
        OsStr::new("-o"),
        null.as_os_str(),
        OsStr::new("--force"),
        OsStr::new("-q"),
    ]);
    run.fails(5, "not a regular file");
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(null).unwrap().file_type().is_char_device());
    // A directory named like the output is refused too.
    let d = dir.path().join("d.nii");
    fs::create_dir(&d).unwrap();
    decompress(&minr, &d, &["--force"]).fails(5, "directory");
}

/// Defect 6: a bad output path was found only after the fit. Now before reading the input:
/// the effort below would take minutes if the fit ran.
#[test]
fn bad_output_paths_fail_before_any_work() {
    let dir = tempdir();
    let start = std::time::Instant::now();
    for (out, code, phrase) in [
        (dir.path().join("nosuchdir/x.minr"), 5, "does not exist"),
        (dir.path().to_path_buf(), 5, "exists"),
    ] {
        medinr([
            OsStr::new("compress"),
            data(COLIN).as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
            OsStr::new("--effort"),
            OsStr::new("50"),
            OsStr::new("-q"),
        ])
        .fails(code, phrase);
    }
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}

/// Defect 7: runs without an end or far past the target. Out-of-range efforts are usage
/// errors, an MLP larger than the target is refused before the fit, and a target at or
/// above the scan's own size is refused (exit 4).
#[test]
fn unbounded_or_useless_runs_are_refused_up_front() {
    let dir = tempdir();
    let out = dir.path().join("x.minr");
    for effort in ["0", "-1", "nan", "inf", "1e6"] {
        medinr([
            OsStr::new("compress"),
            data(BE_MRI).as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
            OsStr::new("--effort"),
            OsStr::new(effort),
            OsStr::new("-q"),
        ])
        .fails(2, "effort");
    }
    let start = std::time::Instant::now();
    let run = medinr([
        "compress",
        data(COLIN).to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--levels",
        "8",
        "--features",
        "8",
        "--hidden",
        "256x8",
        "--bpv",
        "0.01",
        "-q",
    ]);
    run.fails(4, "MLP");
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
    medinr([
        "compress",
        data(BE_MRI).to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--bpv",
        "1e9",
        "-q",
    ])
    .fails(4, "never useful");
    assert!(!out.exists());
}

/// Defect 8: a kill during the final fsync left `.NAME.tmp.PID.N` forever. The next write
/// to the same output removes temp files of dead writers.
#[test]
fn stale_temp_files_are_cleaned_by_the_next_run() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let out = dir.path().join("o.nii");
    // The temp name a writer with (dead) pid 0 would have left.
    fs::write(dir.path().join(".o.nii.tmp.0.0"), b"half").unwrap();
    decompress(&minr, &out, &[]).ok();
    assert_no_temp_files(dir.path());
}

/// Defect 9: misleading messages and exit codes.
#[test]
fn usage_errors_are_named_as_such() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let out = dir.path().join("x.minr");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "compress".to_string(),
            data(BE_MRI).display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "-q".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        medinr(a)
    };
    base(&["--nan-fill", "nan"]).fails(2, "finite fill value");
    base(&["--levels", "0", "--features", "2", "--hidden", "16x1"]).fails(2, "0 levels");
    slice(&minr, &dir.path().join("s.png"), &["--window", "nan,100"]).fails(2, "finite");
    decompress(&minr, &dir.path().join("x.png"), &[]).fails(2, "must end in .nii");
    assert!(!dir.path().join("x.png").exists());
    // A nested error shows each cause once.
    let missing = dir.path().join("missing.minr");
    let run = decompress(&missing, &dir.path().join("y.nii"), &[]);
    let run = run.fails(3, "cannot read");
    let os_msg = "No such file or directory";
    assert_eq!(run.stderr.matches(os_msg).count(), 1, "{}", run.stderr);
}

/// What a new user tripped over: silent success, a 4th spacing on a 3D scan, flags without
/// help, exit codes missing from --help.
#[test]
fn cli_says_what_it_did_and_documents_itself() {
    let dir = tempdir();
    let minr = compressed(dir.path(), BE_MRI);
    let run = decompress(&minr, &dir.path().join("o.nii"), &[]).ok();
    assert!(run.stderr.contains("wrote"), "{}", run.stderr);
    let run = slice(&minr, &dir.path().join("s.png"), &[]).ok();
    assert!(run.stderr.contains("wrote"), "{}", run.stderr);
    let quiet = decompress(&minr, &dir.path().join("q.nii"), &["-q"]).ok();
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{quiet:?}"
    );
    // -q means the same for compress: nothing on success.
    let input = data(BE_MRI);
    let q_minr = dir.path().join("q.minr");
    let quiet = medinr([
        OsStr::new("compress"),
        input.as_os_str(),
        OsStr::new("-o"),
        q_minr.as_os_str(),
        OsStr::new("-q"),
        OsStr::new("--effort"),
        OsStr::new(EFFORT),
        OsStr::new("--bpv"),
        OsStr::new("2"),
    ])
    .ok();
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{quiet:?}"
    );
    let text = medinr([OsStr::new("info"), minr.as_os_str()]).ok().stdout;
    let scan = text.lines().find(|l| l.starts_with("scan")).unwrap();
    assert_eq!(scan.matches('×').count(), 3 + 2, "{scan}");
    for cmd in ["compress", "decompress", "slice", "info", "compare"] {
        let help = medinr([cmd, "--help"]).ok().stdout;
        assert!(help.contains("Exit codes"), "{cmd} --help: {help}");
        for flag in ["--force", "--json", "--device", "--axis"] {
            if let Some(pos) = help.find(&format!("{flag} ")) {
                let line = help[pos..].lines().next().unwrap();
                let next = help[pos..].lines().nth(1).unwrap_or("");
                let described = line.split_whitespace().count() > 2
                    || (!next.trim().is_empty() && !next.trim().starts_with('-'));
                assert!(described, "{cmd}: {flag} has no help: {line}");
            }
        }
    }
}

/// World position of voxel `ijk` under a header's affine.
fn world_of(h: &Header, ijk: [f64; 3]) -> [f64; 3] {
    world(&h.affine(), ijk)
}

#[test]
fn oblique_plane_along_an_axis_equals_the_axial_slice() {
    // 33×41×25 at 2 mm: a plane through the centre of slice z = 12, perpendicular to the z
    // voxel axis, 33×41 pixels at 2 mm, must evaluate the very same coordinates.
    let dir = tempdir();
    let minr = compressed_field_alone(dir.path(), BE_MRI);
    let original = read_nifti(&data(BE_MRI)).unwrap();
    let h = &original.header;
    let [nx, ny, _, _] = h.shape();
    let center = world_of(h, [(nx - 1) as f64 / 2.0, (ny - 1) as f64 / 2.0, 12.0]);
    let a = h.affine();
    let normal = [a[0][2], a[1][2], a[2][2]];
    let fmt = |p: [f64; 3]| format!("{},{},{}", p[0], p[1], p[2]);
    let axial = dir.path().join("axial.nii");
    slice(&minr, &axial, &["--axis", "z", "--index", "12"]).ok();
    let oblique = dir.path().join("oblique.nii");
    slice(
        &minr,
        &oblique,
        &[
            "--center",
            &fmt(center),
            "--normal",
            &fmt(normal),
            "--size",
            &format!("{nx},{ny}"),
            "--spacing",
            &h.spacing()[0].to_string(),
        ],
    )
    .ok();
    let (s, o) = (read_nifti(&axial).unwrap(), read_nifti(&oblique).unwrap());
    assert_eq!(o.shape(), [nx, ny, 1, 1]);
    assert!(
        s.data.to_f32() == o.data.to_f32(),
        "the oblique plane differs from the axial slice"
    );
    // Both place pixel (0, 0) at the same point of the world.
    assert_close3(
        world_of(&o.header, [0.0; 3]),
        world_of(&s.header, [0.0; 3]),
        1e-6,
        "plane origin",
    );
    // A tilted plane through three points decodes too, with the size the points span.
    let p0 = world_of(h, [0.0, 0.0, 5.0]);
    let p1 = world_of(h, [32.0, 0.0, 20.0]);
    let p2 = world_of(h, [0.0, 40.0, 5.0]);
    let tilted = dir.path().join("tilted.png");
    let pts = format!("{}:{}:{}", fmt(p0), fmt(p1), fmt(p2));
    slice(&minr, &tilted, &["--points", &pts, "--spacing", "1"]).ok();
    let (w, hgt) = png_size(&tilted);
    assert_eq!(hgt, 81, "40 voxels of 2 mm at 1 mm spacing");
    assert!(w > 70, "{w}");
}

#[test]
fn roi_and_like_decode_what_they_name() {
    let dir = tempdir();
    // A bounded 4D file, so the box goes through the residual layer chunk by chunk.
    let minr = dir.path().join("b.minr");
    compress(&data(NIFTI2_4D), &minr, &["--max-error", "2"]);
    let full_path = dir.path().join("full.nii");
    decompress(&minr, &full_path, &[]).ok();
    let full = read_nifti(&full_path).unwrap();
    let [nx, ny, nz, _] = full.shape();
    let roi_path = dir.path().join("roi.nii");
    decompress(&minr, &roi_path, &["--roi", "3:20,2:11,4:9,1:2"]).ok();
    let roi = read_nifti(&roi_path).unwrap();
    assert_eq!(roi.shape(), [17, 9, 5, 1]);
    let mut expect = Vec::new();
    for z in 4..9 {
        for y in 2..11 {
            for x in 3..20 {
                expect.push(full.data.get(x + nx * (y + ny * (z + nz))));
            }
        }
    }
    assert!(
        roi.data.to_f32() == expect,
        "the box differs from that box of the full decode"
    );
    assert_close3(
        world_of(&roi.header, [0.0; 3]),
        world_of(&full.header, [3.0, 2.0, 4.0]),
        1e-6,
        "box origin",
    );
    // Outside the scan is a usage error.
    decompress(
        &minr,
        &dir.path().join("bad.nii"),
        &["--roi", "0:99,0:2,0:2"],
    )
    .fails(2, "axis x");
    // Resampling a field onto its own scan's grid is the full decode.
    let lossy = compressed_field_alone(dir.path(), BE_MRI);
    let own = dir.path().join("own.nii");
    decompress(&lossy, &own, &[]).ok();
    let like = dir.path().join("like.nii");
    decompress(&lossy, &like, &["--like", data(BE_MRI).to_str().unwrap()]).ok();
    let (own, like) = (read_nifti(&own).unwrap(), read_nifti(&like).unwrap());
    assert_eq!(like.shape(), own.shape());
    assert!(
        like.data.to_f32() == own.data.to_f32(),
        "resampling onto its own grid changed voxels"
    );
}

#[test]
fn a_killed_batch_resumes_and_compresses_each_scan_once() {
    let dir = tempdir();
    let src = dir.path().join("scans");
    let out = dir.path().join("out");
    fs::create_dir(&src).unwrap();
    for (name, from) in [
        ("a.nii", BE_MRI),
        ("b.nii", FMRI),
        ("c.nii.gz", NIFTI2_4D),
        ("d.nii", BE_MRI),
    ] {
        fs::copy(data(from), src.join(name)).unwrap();
    }
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["batch", src.to_str().unwrap(), "--out"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(out.to_str().unwrap().to_string());
        v.extend(["--bpv", "2", "--effort", "0.05"].map(String::from));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Killed (SIGKILL) at several moments: once r scans are journalled, after a further
    // delay that varies, so kills land between scans, mid-fit and around the writes.
    let journalled = || {
        fs::read_to_string(out.join("medinr-batch.jsonl"))
            .map(|j| j.lines().count())
            .unwrap_or(0)
    };
    for (r, extra_ms) in [(0usize, 300u64), (1, 0), (1, 900), (2, 50), (3, 10)] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_medinr"))
            .args(args(&[]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while journalled() < r && t.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(extra_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let last = medinr(args(&[])).ok();
    assert!(last.stderr.contains("batch:"), "{}", last.stderr);
    let journal = fs::read_to_string(out.join("medinr-batch.jsonl")).unwrap();
    for stem in ["a", "b", "c", "d"] {
        let minr = out.join(format!("{stem}.minr"));
        assert!(info(&minr)["file_bytes"].as_u64().unwrap() > 0);
        let lines = journal
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).is_ok())
            .filter(|l| l.contains(&format!("{stem}.minr")))
            .count();
        assert_eq!(lines, 1, "{stem}: {lines} journal entries\n{journal}");
    }
    let csv = fs::read_to_string(out.join("medinr-batch.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert_no_temp_files(&out);
    // A second run finds everything done; shards split the list.
    let again = medinr(args(&[])).ok();
    assert!(again.stderr.contains("0 compressed"), "{}", again.stderr);
    let shard_out = dir.path().join("shard");
    let run = medinr([
        "batch",
        src.to_str().unwrap(),
        "--out",
        shard_out.to_str().unwrap(),
        "--bpv",
        "2",
        "--effort",
        "0.05",
        "--shard",
        "1/2",
    ])
    .ok();
    assert!(run.stderr.contains("2 compressed"), "{}", run.stderr);
    assert!(shard_out.join("b.minr").exists() && shard_out.join("d.minr").exists());
    assert!(!shard_out.join("a.minr").exists());
}

// ---------------------------------------------------------------------------------------
// Region of interest: --roi-mask / --roi-max-error, and compare --mask.
// ---------------------------------------------------------------------------------------

/// Writes a mask on `scan`'s grid with `frames` frames (1, or the scan's): 1 inside the box
/// `lo .. hi` (x, y, z, ends exclusive), 0 elsewhere. Returns the mask as flags.
fn write_box_mask(
    scan: &Volume,
    path: &Path,
    lo: [usize; 3],
    hi: [usize; 3],
    frames: usize,
) -> Vec<bool> {
    let [nx, ny, nz, _] = scan.shape();
    let mut inside = Vec::with_capacity(nx * ny * nz * frames);
    for _ in 0..frames {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let p = [x, y, z];
                    inside.push((0..3).all(|a| lo[a] <= p[a] && p[a] < hi[a]));
                }
            }
        }
    }
    let header = scan.header.with_shape([nx, ny, nz, frames]).unwrap();
    let data: Vec<f32> = inside.iter().map(|&b| b as u8 as f32).collect();
    write_nifti(
        path,
        &Volume {
            data: data.into(),
            header,
        },
        true,
    )
    .unwrap();
    inside
}

/// Max abs error inside and outside `mask` (one frame long, or one flag per voxel).
fn inside_outside_errors(a: &[f32], b: &[f32], mask: &[bool]) -> (f64, f64) {
    let mut worst = [0f64; 2];
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let inside = mask[i % mask.len()];
        let e = (*x as f64 - *y as f64).abs();
        worst[inside as usize] = worst[inside as usize].max(e);
    }
    (worst[1], worst[0])
}

#[test]
fn roi_bounds_hold_inside_and_outside_and_parts_decode_alike() {
    // D_out = 16 everywhere, D_in ∈ {1, 0} inside a box: checked on the decoded voxels, by
    // `compare --mask`, in `info`; a slice and a --roi box equal that part of the whole
    // decode. A 3D scan with a 3D mask, a 4D scan with a 3D mask and with a 4D mask.
    let dir = tempdir();
    for (name, frames_of_mask) in [(BE_MRI, 1), (NIFTI2_4D, 1), (NIFTI2_4D, 2)] {
        let original = read_nifti(&data(name)).unwrap();
        let shape = original.shape();
        let mask_path = dir
            .path()
            .join(format!("{name}.{frames_of_mask}.mask.nii.gz"));
        let mask = write_box_mask(
            &original,
            &mask_path,
            [4, 5, 3],
            [20, 16, 9],
            frames_of_mask,
        );
        for d_in in [1u32, 0] {
            let tag = format!("{name}.{frames_of_mask}.{d_in}");
            let minr = dir.path().join(format!("{tag}.minr"));
            let inner = d_in.to_string();
            let report = compress(
                &data(name),
                &minr,
                &[
                    "--max-error",
                    "16",
                    "--roi-mask",
                    mask_path.to_str().unwrap(),
                    "--roi-max-error",
                    &inner,
                ],
            );
            let full_path = dir.path().join(format!("{tag}.nii"));
            decompress(&minr, &full_path, &[]).ok();
            let full = read_nifti(&full_path).unwrap();
            assert_eq!(full.shape(), shape);
            let (inside, outside) =
                inside_outside_errors(&original.data.to_f32(), &full.data.to_f32(), &mask);
            println!(
                "{tag}: {:.3} bpv, max error inside {inside}, outside {outside}",
                report["bits_per_voxel"].as_f64().unwrap()
            );
            assert!(inside <= d_in as f64, "{tag}: inside {inside} > {d_in}");
            assert!(outside <= 16.0, "{tag}: outside {outside} > 16");
            if d_in == 0 {
                for (i, (a, b)) in original
                    .data
                    .to_f32()
                    .iter()
                    .zip(&full.data.to_f32())
                    .enumerate()
                {
                    if mask[i % mask.len()] {
                        assert_eq!(a.to_bits(), b.to_bits(), "{tag}: voxel {i}");
                    }
                }
            }

            // The same figures through `compare --mask --json` (these samples have no
            // scaling, so physical units are the stored ones).
            assert_eq!(original.header.scl_slope(), 1.0, "{name}");
            let c = medinr([
                OsStr::new("compare"),
                data(name).as_os_str(),
                full_path.as_os_str(),
                OsStr::new("--mask"),
                mask_path.as_os_str(),
                OsStr::new("--json"),
            ])
            .ok()
            .json();
            assert_eq!(c["mask"]["inside"]["max_abs_error"].as_f64(), Some(inside));
            assert_eq!(
                c["mask"]["outside"]["max_abs_error"].as_f64(),
                Some(outside)
            );
            let n_in = mask.iter().filter(|&&b| b).count() * shape[3] / frames_of_mask;
            assert_eq!(c["mask"]["inside"]["voxels"].as_u64(), Some(n_in as u64));

            let i = info(&minr);
            let roi = &i["residual"]["roi"];
            assert_eq!(roi["max_error_inside"].as_f64(), Some(d_in as f64), "{i}");
            assert_eq!(roi["max_error_outside"].as_f64(), Some(16.0));
            assert!(i["mode"].as_str().unwrap().contains("region of interest"));

            // A slice through the box and a --roi box across its edge decode through the
            // residual chunk by chunk: equal to that part of the whole decode.
            let [nx, ny, nz, nt] = shape;
            let frame = nt - 1;
            let at = |x: usize, y: usize, z: usize, t: usize| {
                full.data.get(x + nx * (y + ny * (z + nz * t)))
            };
            let out = dir.path().join(format!("{tag}.slice.nii"));
            let (z, fr) = (5usize.to_string(), frame.to_string());
            slice(&minr, &out, &["--axis", "z", "--index", &z, "--frame", &fr]).ok();
            let s = read_nifti(&out).unwrap();
            let plane: Vec<f32> = (0..ny)
                .flat_map(|y| (0..nx).map(move |x| (x, y)))
                .map(|(x, y)| at(x, y, 5, frame))
                .collect();
            assert!(
                s.data.to_f32() == plane,
                "{tag}: slice differs from the full decode"
            );
            let out = dir.path().join(format!("{tag}.box.nii"));
            let roi_arg = format!("2:22,3:18,1:10,0:{nt}");
            decompress(&minr, &out, &["--roi", &roi_arg]).ok();
            let b = read_nifti(&out).unwrap();
            let mut part = Vec::new();
            for t in 0..nt {
                for z in 1..10 {
                    for y in 3..18 {
                        for x in 2..22 {
                            part.push(at(x, y, z, t));
                        }
                    }
                }
            }
            assert!(
                b.data.to_f32() == part,
                "{tag}: --roi box differs from the full decode"
            );
        }
    }
    assert_no_temp_files(dir.path());
}

#[test]
fn roi_flags_and_masks_are_checked_up_front() {
    let dir = tempdir();
    let original = read_nifti(&data(BE_MRI)).unwrap();
    let mask = dir.path().join("mask.nii.gz");
    write_box_mask(&original, &mask, [1, 1, 1], [5, 5, 5], 1);
    // A mask on another grid.
    let other = read_nifti(&data(NIFTI2_4D)).unwrap();
    let wrong = dir.path().join("wrong.nii.gz");
    write_box_mask(&other, &wrong, [1, 1, 1], [5, 5, 5], 1);
    let out = dir.path().join("out.minr");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "compress",
            data(BE_MRI).to_str().unwrap().to_owned().leak(),
            "-o",
            out.to_str().unwrap().to_owned().leak(),
            "-q",
            "--effort",
            "0.02",
        ];
        args.extend_from_slice(extra);
        medinr(args)
    };
    let m = mask.to_str().unwrap();
    run(&[
        "--max-error",
        "8",
        "--roi-mask",
        wrong.to_str().unwrap(),
        "--roi-max-error",
        "1",
    ])
    .fails(3, "must be on the scan's grid");
    run(&["--max-error", "8", "--roi-mask", m]).fails(2, "--roi-max-error");
    run(&["--max-error", "8", "--roi-max-error", "1"]).fails(2, "--roi-mask");
    run(&["--roi-mask", m, "--roi-max-error", "1"]).fails(2, "needs --max-error");
    run(&["--lossless", "--roi-mask", m, "--roi-max-error", "0"]).fails(2, "bound above 0");
    run(&["--max-error", "4", "--roi-mask", m, "--roi-max-error", "5"])
        .fails(2, "--roi-max-error 5");
    run(&["--max-error", "4", "--roi-mask", m, "--roi-max-error", "-1"])
        .fails(2, "--roi-max-error -1");
    assert!(!out.exists(), "a refused run wrote its output");
    // compare --mask: on a 3D scan now, but on the scan's grid only.
    let same = data(BE_MRI);
    medinr([
        OsStr::new("compare"),
        same.as_os_str(),
        same.as_os_str(),
        OsStr::new("--mask"),
        wrong.as_os_str(),
    ])
    .fails(3, "must be on the scan's grid");
    let text = medinr([
        OsStr::new("compare"),
        same.as_os_str(),
        same.as_os_str(),
        OsStr::new("--mask"),
        mask.as_os_str(),
    ])
    .ok()
    .stdout;
    assert!(
        text.contains("inside  mask: PSNR inf dB  max abs error 0"),
        "{text}"
    );
}
