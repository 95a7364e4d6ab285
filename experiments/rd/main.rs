//! Rate–distortion study: medinr against what PACS stores (per-slice JPEG 2000), scan by scan.
//!
//! ```text
//! cargo run --release --bin rd -- [--quick] [--rates 0.025,0.05,0.1,0.25,0.5,1] [--effort E]
//!                                 [--seed S] [--out results] scan.nii.gz ...
//! cargo run --release --bin rd -- --summary-only [--out results]
//! ```
//!
//! For every scan: medinr at each target rate (the written bytes decoded again with
//! [`Decoder`], exactly as a user would), JPEG 2000 (irreversible 9/7, one codestream per
//! axial slice of every frame) at the same target rates, and JPEG 2000 lossless (reversible
//! 5/3) once. Every decoded output goes through the same [`metrics::compare`] against the
//! scan's stored values. Writes, under `--out`:
//!
//! * `<scan>/rd.csv`, `<scan>/rd.json`: one row per codec and rate, plus the scan, the
//!   command line, the machine and the Bjøntegaard figures (JSON);
//! * `<scan>/rd.png`, `<scan>/rd.svg`: PSNR against bits per voxel (log axis), one curve per
//!   codec;
//! * `<scan>/slice.png`: the middle axial slice (middle frame) — original, medinr, JPEG 2000
//!   at 0.1 bpv (or the nearest rate run) and both absolute-error maps on one colour scale;
//! * `README.md`: regenerated from every `<out>/*/rd.json`, so scans studied by earlier runs
//!   stay in the summary.
//!
//! `--quick` studies `data/mri_small_bigendian_i16.nii` (unless scans are given) at 0.5, 1
//! and 2 bpv with effort 0.2: a few seconds, for the test `tests/rd_quick.rs`.
//!
//! The run fails (exit code 1) when a codec's decoded output has the wrong length or shape,
//! when JPEG 2000 "lossless" is not exact on an integer scan, or when a scan cannot be read.
//!
//! Text in the pictures is drawn with a small built-in bitmap font (PNG) or as SVG `<text>`
//! elements, so no system font is needed: plotters draws only lines and markers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use medinr::decoder::Decoder;
use medinr::encoder::{encode, EncodeError, EncodeOptions, RateTarget, Silent};
use medinr::metrics::{self, Comparison};
use medinr::study::{code_volume, slice_pixels, FieldConfig, J2kError, J2kMode};
use medinr::volume::{read_nifti, Volume};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

mod bd;
mod bounded;
mod plot;
mod report;

use bd::*;
use bounded::*;
use plot::*;
use report::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_RATES: [f64; 6] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const QUICK_RATES: [f64; 3] = [0.5, 1.0, 2.0];
const QUICK_EFFORT: f64 = 0.2;
const QUICK_SCAN: &str = "data/mri_small_bigendian_i16.nii";
/// Rate of the side-by-side slice picture (or the nearest one run).
const SLICE_RATE: f64 = 0.1;
const MEDINR: &str = "medinr";
const J2K: &str = "jpeg2000";
/// How the Bjøntegaard figures are computed (written into every rd.json and the README).
const BD_METHOD: &str = "Bjøntegaard with piecewise cubic Hermite (PCHIP, Fritsch–Carlson) \
interpolation of PSNR vs log10(bpv) (BD-PSNR) and of log10(bpv) vs PSNR (BD-rate), integrated \
exactly over the overlapping interval; anchor JPEG 2000, test medinr; lossy points only";

#[derive(Parser, Debug)]
#[command(
    name = "rd",
    about = "Rate–distortion study: medinr vs per-slice JPEG 2000, tables and plots in --out"
)]
struct Args {
    /// A small scan (data/mri_small_bigendian_i16.nii unless scans are given) at 0.5, 1, 2 bpv
    /// with effort 0.2.
    #[arg(long)]
    quick: bool,
    /// Target rates in bits per voxel, comma-separated.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<f64>>,
    /// medinr effort (multiplies the optimisation steps; default 1, 0.2 with --quick).
    #[arg(long)]
    effort: Option<f64>,
    /// medinr seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worst-case error bounds (stored units) at which to run medinr's bounded mode
    /// (`--max-error D`; 0 = lossless), comma-separated; none by default.
    #[arg(long, value_delimiter = ',')]
    max_errors: Option<Vec<f64>>,
    /// Also run SZ3 at every nonzero bound of --max-errors (needs `--features sz3`).
    #[arg(long)]
    sz3: bool,
    /// Output folder; results of scans already there are kept.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Only regenerate <out>/README.md from every <out>/*/rd.json.
    #[arg(long)]
    summary_only: bool,
    /// NIfTI scans (.nii or .nii.gz).
    scans: Vec<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Records

/// One codec at one setting on one scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    scan: String,
    codec: String,
    /// Target bits per voxel; `None` for lossless.
    target_bpv: Option<f64>,
    /// "lossy" or "lossless".
    mode: String,
    /// Codec settings in words (medinr: the field; JPEG 2000: wavelet and sample precision).
    params: String,
    bytes: u64,
    bpv: f64,
    /// Stored bits (voxels × bits of the stored type) over compressed bits.
    ratio: f64,
    /// `None` when the decoded scan is identical to the original (infinite PSNR).
    psnr_db: Option<f64>,
    ssim: f64,
    max_abs_error: f64,
    mae: f64,
    rmse: f64,
    encode_s: f64,
    decode_s: f64,
    /// Bounded rows: the worst-case error asked (0 for medinr's lossless row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_error_bound: Option<f64>,
    /// 4D scans of three frames or more: the time-series figures (docs/METRICS.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeseries: Option<TsFigures>,
    /// medinr only: what the encoder itself measured, fit details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    medinr: Option<MedinrDetails>,
    /// Middle axial slice of the decoded scan, for the picture.
    #[serde(skip)]
    slice: Vec<f32>,
}

/// Time-series figures of one decoded 4D scan in the automatic foreground mask
/// (`metrics::compare_timeseries`, defined in docs/METRICS.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TsFigures {
    mask_voxels: usize,
    mask_psnr_db: Option<f64>,
    /// PSNR of replacing every voxel's time course by its temporal mean (whole array).
    temporal_mean_psnr_db: f64,
    mask_temporal_mean_psnr_db: f64,
    median_ts_correlation: Option<f64>,
    median_tsnr_ratio: Option<f64>,
    fc_correlation: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MedinrDetails {
    encoder_psnr_db: Option<f64>,
    /// PSNR of the field-alone file the encoder weighed the kept file against (its own
    /// measure, stored units), when another layer was tried: the ablation of the layers.
    #[serde(default)]
    field_alone_psnr_db: Option<f64>,
    fit_s: f64,
    steps: usize,
    parameters: usize,
    grid_step: f32,
    field: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Machine {
    cores: usize,
    threads: usize,
    arch: String,
    cpu: String,
    os: String,
    memory_gib: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Bd {
    method: String,
    anchor: String,
    test: String,
    /// Average rate difference of medinr against JPEG 2000 at equal PSNR, in percent
    /// (negative: medinr needs fewer bits).
    bd_rate_percent: Option<f64>,
    /// Average PSNR difference of medinr against JPEG 2000 at equal rate, in dB.
    bd_psnr_db: Option<f64>,
    psnr_overlap_db: Option<[f64; 2]>,
    bpv_overlap: Option<[f64; 2]>,
    /// The trivial baseline's PSNR (4D: the temporal mean; 3D: the scan's mean) is above
    /// every lossy point of both codecs, so no BD figure between them says anything
    /// (reported, never as a win).
    #[serde(default)]
    below_trivial_baseline: bool,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SliceInfo {
    axis: String,
    index: usize,
    frame: usize,
    target_bpv: f64,
    window: [f64; 2],
    error_scale_max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScanReport {
    scan: String,
    path: String,
    shape: [usize; 4],
    datatype: String,
    voxels: usize,
    stored_bits: usize,
    data_range: f64,
    /// 4D: PSNR of the temporal-mean baseline (every voxel's time course replaced by its
    /// mean: one 3D image, a few hundredths of a bit per voxel).
    #[serde(default)]
    temporal_mean_psnr_db: Option<f64>,
    /// The trivial baseline of every scan: each voxel replaced by the scan's mean
    /// (`metrics::constant_baseline`), its PSNR and worst-case error.
    #[serde(default)]
    constant_psnr_db: Option<f64>,
    #[serde(default)]
    constant_max_error: Option<f64>,
    rates: Vec<f64>,
    #[serde(default)]
    max_errors: Vec<f64>,
    effort: f64,
    seed: u64,
    command: String,
    machine: Machine,
    date_utc: String,
    #[serde(default)]
    git: Option<String>,
    rows: Vec<Row>,
    bd: Bd,
    #[serde(default)]
    slice: SliceInfo,
    /// Rates a codec could not be run at, and why.
    #[serde(default)]
    skipped: Vec<String>,
    /// Self-checks that did not fail the run but deserve a look.
    #[serde(default)]
    warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Main

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Studies every scan; `Ok(false)` when some scan failed (the others are still written).
fn run(args: &Args) -> Result<bool> {
    if args.summary_only {
        write_summary(&args.out)?;
        return Ok(true);
    }
    let scans = if args.scans.is_empty() && args.quick {
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(QUICK_SCAN)]
    } else if args.scans.is_empty() {
        bail!("no scan given (or use --quick)");
    } else {
        args.scans.clone()
    };
    let mut rates = match (&args.rates, args.quick) {
        (Some(r), _) => r.clone(),
        (None, true) => QUICK_RATES.to_vec(),
        (None, false) => DEFAULT_RATES.to_vec(),
    };
    if rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("rates must be positive and finite: {rates:?}");
    }
    let mut max_errors = args.max_errors.clone().unwrap_or_default();
    if max_errors.iter().any(|d| !(d.is_finite() && *d >= 0.0)) {
        bail!("error bounds must be finite and ≥ 0: {max_errors:?}");
    }
    max_errors.sort_by(f64::total_cmp);
    max_errors.dedup();
    if args.sz3 && !cfg!(feature = "sz3") {
        bail!("--sz3: this rd was built without SZ3 (scripts/sz3-setup.sh, then --features sz3)");
    }
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let effort = args
        .effort
        .unwrap_or(if args.quick { QUICK_EFFORT } else { 1.0 });
    if !(effort.is_finite() && effort > 0.0) {
        bail!("effort must be positive and finite");
    }
    let mut stems = BTreeMap::new();
    for s in &scans {
        let stem = scan_stem(s);
        if let Some(prev) = stems.insert(stem.clone(), s.clone()) {
            bail!(
                "{} and {} would both be written to {stem}/",
                prev.display(),
                s.display()
            );
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let context = RunContext {
        command: command_line(),
        machine: machine(),
        date_utc: utc_now(),
        git: git_describe(),
        rates,
        max_errors,
        sz3: args.sz3,
        effort,
        seed: args.seed,
    };
    println!(
        "{} scan(s), rates {:?} bpv, effort {effort}, {} threads on {}",
        scans.len(),
        context.rates,
        context.machine.threads,
        context.machine.cpu
    );
    let mut ok = true;
    for path in &scans {
        let t = Instant::now();
        match study_scan(path, &context, &args.out) {
            Ok(dir) => println!(
                "{}: done in {:.1} s -> {}",
                path.display(),
                t.elapsed().as_secs_f64(),
                dir.display()
            ),
            Err(e) => {
                eprintln!("error: {}: {e:#}", path.display());
                ok = false;
            }
        }
    }
    write_summary(&args.out)?;
    Ok(ok)
}

struct RunContext {
    command: String,
    machine: Machine,
    date_utc: String,
    git: Option<String>,
    rates: Vec<f64>,
    max_errors: Vec<f64>,
    sz3: bool,
    effort: f64,
    seed: u64,
}

/// File name without `.nii`/`.nii.gz`.
fn scan_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scan".into());
    for ext in [".nii.gz", ".nii", ".gz"] {
        if let Some(s) = name.strip_suffix(ext) {
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    name
}

// ---------------------------------------------------------------------------------------------
// One scan

fn study_scan(path: &Path, ctx: &RunContext, out: &Path) -> Result<PathBuf> {
    let volume = read_nifti(path).with_context(|| format!("cannot read {}", path.display()))?;
    let stem = scan_stem(path);
    let shape = volume.shape();
    let voxels = volume.data.len();
    if shape.iter().product::<usize>() != voxels {
        bail!("header shape {shape:?} does not match {voxels} voxels read");
    }
    let datatype = volume.header.datatype();
    let stored_bits = datatype.bytes() * 8;
    let (count, first) = volume.non_finite_count();
    if count > 0 {
        bail!("{count} NaN/infinite voxels (first at {first:?}); neither codec can be compared on them");
    }
    let values = volume.data.to_f32();
    let data_range = metrics::data_range(&values);
    let constant = metrics::constant_baseline(&values, data_range);
    drop(values);
    // JPEG 2000 codes stored integers directly when they fit its 16-bit samples; anything else
    // (floats, 32-bit integers of wide range) is quantised to 16 bits by the baseline.
    let j2k_integer = datatype.is_integer() && data_range < 65536.0;
    println!(
        "{}: {:?} {}, {voxels} voxels, range {data_range}",
        path.display(),
        shape,
        datatype.name()
    );

    let slice_at = SliceAt::middle(shape);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    for &bpv in &ctx.rates {
        match run_medinr(&volume, &stem, bpv, ctx, slice_at)? {
            Ok((row, warning)) => {
                print_row(&row);
                warnings.extend(warning);
                rows.push(row);
            }
            Err(reason) => {
                println!("  medinr at {bpv} bpv skipped: {reason}");
                skipped.push(format!("medinr at {bpv} bpv: {reason}"));
            }
        }
        let row = run_j2k(
            &volume,
            &stem,
            J2kMode::Lossy { bpv },
            j2k_integer,
            slice_at,
        )?;
        print_row(&row);
        if row.bpv > bpv * 1.03 {
            warnings.push(format!(
                "JPEG 2000 at {bpv} bpv needed {:.4} bpv: on {}×{} slices the per-slice \
                 codestream headers alone exceed that budget",
                row.bpv, shape[0], shape[1]
            ));
        }
        rows.push(row);
    }
    let lossless = run_j2k(&volume, &stem, J2kMode::Lossless, j2k_integer, slice_at)?;
    print_row(&lossless);
    if j2k_integer && lossless.max_abs_error != 0.0 {
        bail!(
            "JPEG 2000 lossless is not exact on this integer scan (max abs error {})",
            lossless.max_abs_error
        );
    }
    rows.push(lossless);
    for &d in &ctx.max_errors {
        let row = run_medinr_bounded(&volume, &stem, d, ctx, slice_at)?;
        print_row(&row);
        rows.push(row);
        if ctx.sz3 && d > 0.0 {
            let row = run_sz3(&volume, &stem, d, slice_at)?;
            print_row(&row);
            rows.push(row);
        }
    }

    let temporal_mean_psnr_db = rows
        .iter()
        .find_map(|r| r.timeseries.as_ref().map(|t| t.temporal_mean_psnr_db));
    // The stronger trivial baseline: a 4D scan's temporal mean, else the constant.
    let trivial = match temporal_mean_psnr_db {
        Some(p) => Some(("temporal-mean", p)),
        None => constant.map(|(p, _)| ("constant (scan mean)", p)),
    };
    let bd = bd_for(&rows, trivial);
    if let (Some(r), Some(p)) = (bd.bd_rate_percent, bd.bd_psnr_db) {
        println!("  BD-rate medinr vs JPEG 2000: {r:+.1} %, BD-PSNR {p:+.2} dB");
    }
    let dir = out.join(&stem);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut report = ScanReport {
        scan: stem.clone(),
        path: path.display().to_string(),
        shape,
        datatype: datatype.name().to_string(),
        voxels,
        stored_bits,
        data_range,
        temporal_mean_psnr_db,
        constant_psnr_db: constant.map(|c| c.0),
        constant_max_error: constant.map(|c| c.1),
        rates: ctx.rates.clone(),
        max_errors: ctx.max_errors.clone(),
        effort: ctx.effort,
        seed: ctx.seed,
        command: ctx.command.clone(),
        machine: ctx.machine.clone(),
        date_utc: ctx.date_utc.clone(),
        git: ctx.git.clone(),
        rows,
        bd,
        slice: SliceInfo::default(),
        skipped,
        warnings,
    };
    write(
        &dir.join("slice.png"),
        &slice_picture(&volume, &mut report, slice_at)?,
    )?;
    write(&dir.join("rd.csv"), csv(&report.rows).as_bytes())?;
    write(
        &dir.join("rd.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let plot = RdPlot::from_report(&report);
    write(&dir.join("rd.png"), &plot.png()?)?;
    write(&dir.join("rd.svg"), plot.svg()?.as_bytes())?;
    if let Some(plot) = RdPlot::timeseries_from_report(&report) {
        write(&dir.join("tscorr.png"), &plot.png()?)?;
        write(&dir.join("tscorr.svg"), plot.svg()?.as_bytes())?;
    }
    Ok(dir)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    medinr::study::write_atomic(path, bytes, true)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_row(r: &Row) {
    let setting = match (r.target_bpv, r.max_error_bound) {
        (Some(b), _) => format!("{b}"),
        (None, Some(d)) if d > 0.0 => format!("D={d}"),
        _ => "lossless".into(),
    };
    let ts = r.timeseries.as_ref().map_or(String::new(), |t| {
        format!(
            "  corr {}  FC {}",
            fmt_num(t.median_ts_correlation, 4),
            fmt_num(t.fc_correlation, 4)
        )
    });
    println!(
        "  {:<14} {:>9} {:>9.4} bpv {:>9} B  PSNR {:>7}  SSIM {:.4}  max {:>9.1}  enc {:>7.2} s  dec {:>6.3} s{ts}",
        r.codec,
        setting,
        r.bpv,
        r.bytes,
        fmt_psnr(r.psnr_db),
        r.ssim,
        r.max_abs_error,
        r.encode_s,
        r.decode_s
    );
}

/// Where the picture's slice lies: middle axial slice of the middle frame.
#[derive(Debug, Clone, Copy)]
struct SliceAt {
    nx: usize,
    ny: usize,
    z: usize,
    t: usize,
    offset: usize,
}

impl SliceAt {
    fn middle(shape: [usize; 4]) -> SliceAt {
        let [nx, ny, nz, nt] = shape;
        let (z, t) = (nz / 2, nt / 2);
        SliceAt {
            nx,
            ny,
            z,
            t,
            offset: (t * nz + z) * nx * ny,
        }
    }

    fn take(&self, data: &[f32]) -> Vec<f32> {
        data[self.offset..self.offset + self.nx * self.ny].to_vec()
    }
}

/// Checks a decoded scan against the original's length and shape (fatal on mismatch).
fn check_decoded(codec: &str, original: &Volume, decoded: &[f32], shape: [usize; 4]) -> Result<()> {
    if shape != original.shape() || decoded.len() != original.data.len() {
        bail!(
            "{codec} decoded {} values of shape {shape:?}, expected {} of shape {:?}",
            decoded.len(),
            original.data.len(),
            original.shape()
        );
    }
    Ok(())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn row_from(
    scan: &str,
    codec: &str,
    target_bpv: Option<f64>,
    params: String,
    bytes: u64,
    volume: &Volume,
    c: &Comparison,
) -> Row {
    let voxels = volume.data.len();
    Row {
        scan: scan.to_string(),
        codec: codec.to_string(),
        target_bpv,
        mode: if target_bpv.is_some() {
            "lossy"
        } else {
            "lossless"
        }
        .into(),
        params,
        bytes,
        bpv: metrics::bits_per_voxel(bytes, voxels as u64),
        ratio: metrics::compression_ratio(
            voxels as u64,
            volume.header.datatype().bytes() as u64 * 8,
            bytes,
        ),
        psnr_db: finite(c.psnr_db),
        ssim: c.ssim,
        max_abs_error: c.max_abs_error,
        mae: c.mae,
        rmse: c.rmse,
        encode_s: 0.0,
        decode_s: 0.0,
        max_error_bound: None,
        timeseries: None,
        medinr: None,
        slice: Vec::new(),
    }
}

/// medinr at one rate: encode, write bytes, decode them with `Decoder`, compare. The inner
/// `Err` is a rate this scan cannot be coded at (skipped); the outer one fails the scan.
#[allow(clippy::type_complexity)]
fn run_medinr(
    volume: &Volume,
    scan: &str,
    bpv: f64,
    ctx: &RunContext,
    at: SliceAt,
) -> Result<std::result::Result<(Row, Option<String>), String>> {
    let options = EncodeOptions {
        target: RateTarget::BitsPerVoxel(bpv),
        effort: ctx.effort,
        seed: ctx.seed,
        ..EncodeOptions::default()
    };
    let t = Instant::now();
    let (file, report) = match encode(volume, &options, &mut Silent) {
        Ok(x) => x,
        Err(e @ EncodeError::TargetTooSmall { .. }) => return Ok(Err(e.to_string())),
        Err(e) => return Err(anyhow!(e).context(format!("medinr at {bpv} bpv"))),
    };
    let bytes = file.to_bytes().context("medinr: serialising the file")?;
    let encode_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let decoded = Decoder::from_bytes(&bytes)
        .and_then(|d| d.decode(None))
        .with_context(|| format!("medinr at {bpv} bpv: decoding the written bytes"))?;
    let decode_s = t.elapsed().as_secs_f64();
    check_decoded(MEDINR, volume, &decoded.data.to_f32(), decoded.shape())?;
    let c = metrics::compare(
        &volume.data.to_f32(),
        &decoded.data.to_f32(),
        volume.shape(),
    )?;

    let mut warning = None;
    if (report.bytes as u64) != bytes.len() as u64 || !same_psnr(report.quality.psnr_db, c.psnr_db)
    {
        warning = Some(format!(
            "medinr at {bpv} bpv: the encoder reported {} bytes / {:.4} dB, decoding the written \
             file gives {} bytes / {:.4} dB",
            report.bytes,
            report.quality.psnr_db,
            bytes.len(),
            c.psnr_db
        ));
    }
    let mut row = row_from(
        scan,
        MEDINR,
        Some(bpv),
        format!(
            "{}{}",
            layer_summary(&report),
            field_summary(&report.config, report.parameters)
        ),
        bytes.len() as u64,
        volume,
        &c,
    );
    (row.encode_s, row.decode_s) = (encode_s, decode_s);
    row.medinr = Some(MedinrDetails {
        encoder_psnr_db: finite(report.quality.psnr_db),
        field_alone_psnr_db: report.field_alone_psnr_db.and_then(finite),
        fit_s: report.fit_seconds,
        steps: report.steps,
        parameters: report.parameters,
        grid_step: report.grid_step,
        field: serde_json::to_value(&report.config)?,
    });
    row.timeseries = timeseries_of(volume, &decoded.data.to_f32())?;
    row.slice = at.take(&decoded.data.to_f32());
    Ok(Ok((row, warning)))
}

fn same_psnr(a: f64, b: f64) -> bool {
    (a.is_infinite() && b.is_infinite() && a.signum() == b.signum()) || (a - b).abs() <= 1e-6
}

/// What carries the file's fidelity when it is not the field alone, as the start of a row's
/// `params`: "wavelet transform layer …; fitted field weighed against it: " or "field + residual …; ".
fn layer_summary(report: &medinr::encoder::EncodeReport) -> String {
    match (&report.transform, &report.lossy_residual) {
        (Some(t), _) => format!(
            "wavelet transform layer, levels {}x{}x{}, base step {:.3}, {} slices per chunk{}; \
             fitted field weighed against it: ",
            t.levels[0],
            t.levels[1],
            t.levels[2],
            t.base_step,
            t.chunk_slices,
            t.max_error
                .map_or(String::new(), |d| format!(", max error {d}"))
        ),
        (None, Some(h)) => format!(
            "field + residual, max error {}{}, {}; field: ",
            h.max_error,
            if h.prefix_voxels > 0 {
                format!(
                    " ({} on {} voxels per frame)",
                    h.max_error - 1.0,
                    h.prefix_voxels
                )
            } else {
                String::new()
            },
            if h.uses_field {
                "predicted from the field"
            } else {
                "predicted from decoded neighbours"
            }
        ),
        (None, None) => String::new(),
    }
}

/// "3-D hash grid 16×2, table 2^14, MLP 2×64, 123456 parameters".
fn field_summary(c: &FieldConfig, parameters: usize) -> String {
    let table = if c.table_size.is_power_of_two() {
        format!("2^{}", c.table_size.trailing_zeros())
    } else {
        c.table_size.to_string()
    };
    format!(
        "{}-D hash grid {} levels x {} features, table {table}, MLP {} x {}, {parameters} parameters",
        c.dims,
        c.levels(),
        c.features,
        c.hidden_layers,
        c.hidden_width
    )
}

fn run_j2k(volume: &Volume, scan: &str, mode: J2kMode, integer: bool, at: SliceAt) -> Result<Row> {
    let shape = volume.shape();
    let r = code_volume(&volume.data.to_f32(), shape, integer, mode)
        .map_err(|e: J2kError| anyhow!(e).context(format!("JPEG 2000 {mode:?}")))?;
    check_decoded("JPEG 2000", volume, &r.decoded, shape)?;
    let c = metrics::compare(&volume.data.to_f32(), &r.decoded, shape)?;
    let (target, wavelet) = match mode {
        J2kMode::Lossy { bpv } => (Some(bpv), "irreversible 9/7"),
        J2kMode::Lossless => (None, "reversible 5/3"),
    };
    let params = format!(
        "per-slice J2K codestreams, {wavelet}, {}-bit samples{}",
        r.bits_per_sample,
        if integer {
            ""
        } else {
            " (quantised to 16 bits)"
        }
    );
    let mut row = row_from(scan, J2K, target, params, r.bytes, volume, &c);
    (row.encode_s, row.decode_s) = (r.encode_seconds, r.decode_seconds);
    row.timeseries = timeseries_of(volume, &r.decoded)?;
    row.slice = at.take(&r.decoded);
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// Bjøntegaard

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn bd_rate_of_a_constant_rate_saving_is_exact() {
        // The test codec reaches every PSNR of the anchor with 20 % fewer bits.
        let anchor = [
            (0.05, 30.0),
            (0.1, 33.5),
            (0.25, 37.0),
            (0.5, 39.2),
            (1.0, 41.0),
        ];
        let test: Vec<(f64, f64)> = anchor.iter().map(|&(r, q)| (r * 0.8, q)).collect();
        let (rate, psnr) = bjontegaard(&anchor, &test);
        let (r, over) = rate.unwrap();
        assert!(close(r, -20.0, 1e-9), "{r}");
        assert_eq!(over, [30.0, 41.0]);
        assert!(psnr.unwrap().0 > 0.0);
    }

    #[test]
    fn bd_psnr_of_a_constant_gain_is_exact() {
        let anchor = [(0.05, 30.0), (0.1, 33.5), (0.25, 37.0), (0.5, 39.2)];
        let test: Vec<(f64, f64)> = anchor.iter().map(|&(r, q)| (r, q + 1.5)).collect();
        let (rate, psnr) = bjontegaard(&anchor, &test);
        assert!(close(psnr.unwrap().0, 1.5, 1e-9));
        assert!(rate.unwrap().0 < 0.0);
    }

    #[test]
    fn bd_uses_only_the_overlap() {
        // Anchor: PSNR = 30 + 5 log10(R) on R ∈ [1, 100]; test: 32 + 5 log10(R) on [10, 1000].
        // Overlap in log-rate [1, 2]: +2 dB. Overlap in PSNR [37, 40]: log-rate differs by
        // −0.4, so BD-rate = 10^−0.4 − 1 = −60.189 %.
        let anchor = [(1.0, 30.0), (100.0, 40.0)];
        let test = [(10.0, 37.0), (1000.0, 47.0)];
        let (rate, psnr) = bjontegaard(&anchor, &test);
        let (r, pr) = rate.unwrap();
        let (p, br) = psnr.unwrap();
        assert!(close(r, (10f64.powf(-0.4) - 1.0) * 100.0, 1e-9), "{r}");
        assert!(close(p, 2.0, 1e-9));
        assert_eq!(pr, [37.0, 40.0]);
        assert!(close(br[0], 10.0, 1e-9) && close(br[1], 100.0, 1e-9));
    }

    #[test]
    fn bd_without_overlap_is_none() {
        let anchor = [(0.1, 30.0), (0.2, 32.0)];
        let test = [(1.0, 40.0), (2.0, 42.0)];
        assert_eq!(bjontegaard(&anchor, &test), (None, None));
        assert_eq!(bjontegaard(&anchor[..1], &test).0, None);
    }

    #[test]
    fn glyphs_are_well_formed() {
        for (c, rows) in GLYPHS {
            let rows: Vec<&str> = rows.split(' ').filter(|r| !r.is_empty()).collect();
            assert!(rows.len() <= 8, "{c:?}");
            assert!(rows.iter().all(|r| r.len() == 5), "{c:?}");
        }
    }

    #[test]
    fn ticks_and_dates() {
        assert_eq!(log_ticks(0.02, 1.3), vec![0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        assert_eq!(
            linear_ticks(20.0, 32.0),
            vec![20.0, 22.0, 24.0, 26.0, 28.0, 30.0, 32.0]
        );
        assert_eq!(tick_text(0.025), "0.025");
        assert_eq!(tick_text(30.0), "30");
        assert_eq!(scan_stem(Path::new("a/b/ct.nii.gz")), "ct");
        assert_eq!(scan_stem(Path::new("mri.nii")), "mri");
        assert!(utc_now().ends_with("UTC"));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
