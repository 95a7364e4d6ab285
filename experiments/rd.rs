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
use medinr::baseline::jpeg2000::{code_volume, J2kError, J2kMode};
use medinr::decoder::Decoder;
use medinr::encoder::{encode, EncodeError, EncodeOptions, RateTarget};
use medinr::field::FieldConfig;
use medinr::fit::Silent;
use medinr::metrics::{self, Comparison};
use medinr::render::slice_pixels;
use medinr::volume::{read_nifti, Volume};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// medinr only: what the encoder itself measured, fit details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    medinr: Option<MedinrDetails>,
    /// Middle axial slice of the decoded scan, for the picture.
    #[serde(skip)]
    slice: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MedinrDetails {
    encoder_psnr_db: Option<f64>,
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
    rates: Vec<f64>,
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
    let data_range = metrics::data_range(&volume.data);
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

    let bd = bd_for(&rows);
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
        rates: ctx.rates.clone(),
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
    Ok(dir)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    medinr::atomic_file::write_atomic(path, bytes, true)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_row(r: &Row) {
    println!(
        "  {:<9} {:>9} {:>9.4} bpv {:>9} B  PSNR {:>7}  SSIM {:.4}  max {:>9.1}  enc {:>7.2} s  dec {:>6.3} s",
        r.codec,
        r.target_bpv.map_or("lossless".into(), |b| format!("{b}")),
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

fn ratio(stored_bits: usize, voxels: usize, bytes: u64) -> f64 {
    (stored_bits * voxels) as f64 / (bytes as f64 * 8.0)
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
        ratio: ratio(volume.header.datatype().bytes() * 8, voxels, bytes),
        psnr_db: finite(c.psnr_db),
        ssim: c.ssim,
        max_abs_error: c.max_abs_error,
        mae: c.mae,
        rmse: c.rmse,
        encode_s: 0.0,
        decode_s: 0.0,
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
    check_decoded(MEDINR, volume, &decoded.data, decoded.shape())?;
    let c = metrics::compare(&volume.data, &decoded.data, volume.shape())?;

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
        field_summary(&report.config, report.parameters),
        bytes.len() as u64,
        volume,
        &c,
    );
    (row.encode_s, row.decode_s) = (encode_s, decode_s);
    row.medinr = Some(MedinrDetails {
        encoder_psnr_db: finite(report.quality.psnr_db),
        fit_s: report.fit_seconds,
        steps: report.steps,
        parameters: report.parameters,
        grid_step: report.grid_step,
        field: serde_json::to_value(&report.config)?,
    });
    row.slice = at.take(&decoded.data);
    Ok(Ok((row, warning)))
}

fn same_psnr(a: f64, b: f64) -> bool {
    (a.is_infinite() && b.is_infinite() && a.signum() == b.signum()) || (a - b).abs() <= 1e-6
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
    let r = code_volume(&volume.data, shape, integer, mode)
        .map_err(|e: J2kError| anyhow!(e).context(format!("JPEG 2000 {mode:?}")))?;
    check_decoded("JPEG 2000", volume, &r.decoded, shape)?;
    let c = metrics::compare(&volume.data, &r.decoded, shape)?;
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
    row.slice = at.take(&r.decoded);
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// Bjøntegaard

/// Piecewise cubic Hermite interpolant with Fritsch–Carlson slopes (as scipy's
/// `PchipInterpolator`): monotone where the data are, no overshoot, exact integrals.
#[derive(Debug, Clone)]
struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
}

impl Pchip {
    /// `x` strictly increasing, at least two points.
    fn new(x: &[f64], y: &[f64]) -> Option<Pchip> {
        let n = x.len();
        if n < 2 || y.len() != n || x.windows(2).any(|w| w[1] <= w[0]) {
            return None;
        }
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let m: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut d = vec![0.0; n];
        if n == 2 {
            d = vec![m[0], m[0]];
        } else {
            for k in 1..n - 1 {
                if m[k - 1] * m[k] > 0.0 {
                    let w1 = 2.0 * h[k] + h[k - 1];
                    let w2 = h[k] + 2.0 * h[k - 1];
                    d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k]);
                }
            }
            d[0] = Self::edge(h[0], h[1], m[0], m[1]);
            d[n - 1] = Self::edge(h[n - 2], h[n - 3], m[n - 2], m[n - 3]);
        }
        Some(Pchip {
            x: x.to_vec(),
            y: y.to_vec(),
            d,
        })
    }

    /// One-sided three-point slope at an end, limited to keep the shape.
    fn edge(h0: f64, h1: f64, m0: f64, m1: f64) -> f64 {
        let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
        if sign(d) != sign(m0) {
            0.0
        } else if sign(m0) != sign(m1) && d.abs() > 3.0 * m0.abs() {
            3.0 * m0
        } else {
            d
        }
    }

    fn lo(&self) -> f64 {
        self.x[0]
    }

    fn hi(&self) -> f64 {
        self.x[self.x.len() - 1]
    }

    /// ∫ from `a` to `b` (both within the data range, `a ≤ b`).
    fn integral(&self, a: f64, b: f64) -> f64 {
        // Antiderivatives of the Hermite basis h00, h10, h01, h11 on t ∈ [0, 1].
        let f = |t: f64| {
            let (t2, t3, t4) = (t * t, t * t * t, t * t * t * t);
            [
                t4 / 2.0 - t3 + t,
                t4 / 4.0 - 2.0 * t3 / 3.0 + t2 / 2.0,
                -t4 / 2.0 + t3,
                t4 / 4.0 - t3 / 3.0,
            ]
        };
        let mut total = 0.0;
        for k in 0..self.x.len() - 1 {
            let (x0, x1) = (self.x[k], self.x[k + 1]);
            let (s, e) = (a.max(x0), b.min(x1));
            if e <= s {
                continue;
            }
            let h = x1 - x0;
            let (f0, f1) = (f((s - x0) / h), f((e - x0) / h));
            let c = [self.y[k], h * self.d[k], self.y[k + 1], h * self.d[k + 1]];
            total += h * (0..4).map(|i| c[i] * (f1[i] - f0[i])).sum::<f64>();
        }
        total
    }
}

fn sign(v: f64) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// Average of `test − anchor` over the overlap of two curves given as (x, y) points, and the
/// overlap. `None` when a curve has fewer than two distinct x or the curves do not overlap.
fn bd_average(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Option<(f64, [f64; 2])> {
    let fit = |pts: &[(f64, f64)]| {
        let mut p: Vec<(f64, f64)> = pts.to_vec();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p.dedup_by(|b, a| (b.0 - a.0).abs() <= 1e-12 * a.0.abs().max(1.0));
        let (x, y): (Vec<f64>, Vec<f64>) = p.into_iter().unzip();
        Pchip::new(&x, &y)
    };
    let (a, t) = (fit(anchor)?, fit(test)?);
    let (lo, hi) = (a.lo().max(t.lo()), a.hi().min(t.hi()));
    if hi <= lo {
        return None;
    }
    Some((
        (t.integral(lo, hi) - a.integral(lo, hi)) / (hi - lo),
        [lo, hi],
    ))
}

/// A Bjøntegaard figure and the interval it was averaged over (`None`: no overlap).
type BdFigure = Option<(f64, [f64; 2])>;

/// BD-rate (percent, over a PSNR interval) and BD-PSNR (dB, over a bpv interval) of `test`
/// against `anchor`; points are (bpv, PSNR).
fn bjontegaard(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> (BdFigure, BdFigure) {
    let swap =
        |p: &[(f64, f64)]| -> Vec<(f64, f64)> { p.iter().map(|&(r, q)| (q, r.log10())).collect() };
    let log =
        |p: &[(f64, f64)]| -> Vec<(f64, f64)> { p.iter().map(|&(r, q)| (r.log10(), q)).collect() };
    let rate = bd_average(&swap(anchor), &swap(test))
        .map(|(avg, psnr)| ((10f64.powf(avg) - 1.0) * 100.0, psnr));
    let psnr = bd_average(&log(anchor), &log(test))
        .map(|(avg, [a, b])| (avg, [10f64.powf(a), 10f64.powf(b)]));
    (rate, psnr)
}

/// Lossy (bpv, PSNR) points of one codec, by rate.
fn curve(rows: &[Row], codec: &str) -> Vec<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.codec == codec && r.target_bpv.is_some())
        .filter_map(|r| Some((r.bpv, r.psnr_db?)))
        .filter(|&(b, _)| b > 0.0)
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p
}

fn bd_for(rows: &[Row]) -> Bd {
    let (anchor, test) = (curve(rows, J2K), curve(rows, MEDINR));
    let (rate, psnr) = bjontegaard(&anchor, &test);
    let mut notes = Vec::new();
    for (name, c) in [("JPEG 2000", &anchor), ("medinr", &test)] {
        if c.windows(2).any(|w| w[1].1 <= w[0].1) {
            notes.push(format!(
                "{name}'s PSNR does not increase with rate at every point; BD-rate treats rate \
                 as a function of PSNR and is less reliable"
            ));
        }
        if c.len() < 2 {
            notes.push(format!("{name} has fewer than two lossy points"));
        }
    }
    if rate.is_none() {
        notes.push("BD-rate: the PSNR ranges of the two codecs do not overlap".into());
    }
    if psnr.is_none() {
        notes.push("BD-PSNR: the rate ranges of the two codecs do not overlap".into());
    }
    Bd {
        method: BD_METHOD.into(),
        anchor: J2K.into(),
        test: MEDINR.into(),
        bd_rate_percent: rate.map(|r| r.0),
        bd_psnr_db: psnr.map(|p| p.0),
        psnr_overlap_db: rate.map(|r| r.1),
        bpv_overlap: psnr.map(|p| p.1),
        notes,
    }
}

// ---------------------------------------------------------------------------------------------
// CSV and summary

const CSV_HEADER: &str = "scan,codec,mode,target_bpv,params,bytes,bpv,ratio,psnr_db,ssim,\
max_abs_error,mae,rmse,encode_s,decode_s";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.6},{:.4},{},{:.6},{},{:.6},{:.6},{:.4},{:.4}",
            csv_field(&r.scan),
            r.codec,
            r.mode,
            r.target_bpv.map_or("lossless".into(), |b| b.to_string()),
            csv_field(&r.params),
            r.bytes,
            r.bpv,
            r.ratio,
            r.psnr_db.map_or("inf".into(), |p| format!("{p:.4}")),
            r.ssim,
            r.max_abs_error,
            r.mae,
            r.rmse,
            r.encode_s,
            r.decode_s
        );
    }
    out
}

fn fmt_psnr(p: Option<f64>) -> String {
    p.map_or("inf".into(), |p| format!("{p:.2}"))
}

fn fmt_opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or("n/a".into(), |v| format!("{v:+.digits$}{unit}"))
}

/// Regenerates `<out>/README.md` from every `<out>/*/rd.json`.
fn write_summary(out: &Path) -> Result<()> {
    let mut reports = Vec::new();
    let mut unreadable = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("rd.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let json = dir.join("rd.json");
        match std::fs::read_to_string(&json)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok(serde_json::from_str::<ScanReport>(&s)?))
        {
            Ok(r) => {
                let folder = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                reports.push((folder, r));
            }
            Err(e) => unreadable.push(format!("{}: {e}", json.display())),
        }
    }
    let text = summary_markdown(&reports, &unreadable);
    write(&out.join("README.md"), text.as_bytes())?;
    println!(
        "summary of {} scan(s) -> {}",
        reports.len(),
        out.join("README.md").display()
    );
    Ok(())
}

fn summary_markdown(reports: &[(String, ScanReport)], unreadable: &[String]) -> String {
    let mut s = String::new();
    s += "# Rate–distortion study: medinr vs per-slice JPEG 2000\n\n";
    s += "Generated by `experiments/rd.rs` (`cargo run --release --bin rd -- …`) from every \
          `*/rd.json` in this folder; each scan's section names the command and machine that \
          produced it. PSNR is on each scan's own range (max − min of the stored values), SSIM \
          is the mean over axial slices (`medinr compare`'s definitions), both against the \
          stored voxel values. medinr rows come from decoding the written bytes with the \
          library's `Decoder`; JPEG 2000 codes every axial slice of every frame as its own \
          codestream, as a PACS stores a series. bpv = compressed bits per voxel; ratio = \
          stored bits / compressed bits. Times are wall-clock seconds on all \
          cores: medinr encode = the whole `encode` call (fit, rate search, its own check), \
          medinr decode = `Decoder::from_bytes` + decoding the whole scan; JPEG 2000 = all \
          slices, coded in parallel (in rd.csv / rd.json).\n\n";
    let _ = writeln!(s, "**BD-rate / BD-PSNR**: {BD_METHOD}. Negative BD-rate = medinr needs fewer bits than JPEG 2000 for the same PSNR; positive BD-PSNR = medinr has higher PSNR at the same rate. `n/a` = the curves do not overlap.\n");
    s += "| scan | shape | type | BD-rate | BD-PSNR | JPEG 2000 lossless |\n|---|---|---|---:|---:|---:|\n";
    for (folder, r) in reports {
        let lossless = r
            .rows
            .iter()
            .find(|x| x.codec == J2K && x.target_bpv.is_none())
            .map_or("".into(), |x| {
                format!("{:.3} bpv ({:.2}:1)", x.bpv, x.ratio)
            });
        let _ = writeln!(
            s,
            "| [{}](#{}) | {} | {} | {} | {} | {} |",
            r.scan,
            anchor_id(&r.scan),
            shape_text(r.shape),
            r.datatype,
            fmt_opt(r.bd.bd_rate_percent, 1, " %"),
            fmt_opt(r.bd.bd_psnr_db, 2, " dB"),
            lossless
        );
        let _ = folder;
    }
    s += "\n";
    for (folder, r) in reports {
        scan_section(&mut s, folder, r);
    }
    if !unreadable.is_empty() {
        s += "## Unreadable results\n\n";
        for u in unreadable {
            let _ = writeln!(s, "- {u}");
        }
    }
    s
}

fn anchor_id(scan: &str) -> String {
    scan.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

fn shape_text(shape: [usize; 4]) -> String {
    let dims = if shape[3] > 1 {
        &shape[..]
    } else {
        &shape[..3]
    };
    dims.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

fn scan_section(s: &mut String, folder: &str, r: &ScanReport) {
    let _ = writeln!(s, "## {}\n", r.scan);
    let _ = writeln!(
        s,
        "`{}`: {} {}, {} voxels, stored {} bits per voxel, range {}. medinr effort {}, seed {}.\n",
        r.path,
        shape_text(r.shape),
        r.datatype,
        r.voxels,
        r.stored_bits,
        r.data_range,
        r.effort,
        r.seed
    );
    let _ = writeln!(
        s,
        "![PSNR vs rate]({folder}/rd.png)\n\nPlots: [rd.png]({folder}/rd.png), \
         [rd.svg]({folder}/rd.svg), [slice.png]({folder}/slice.png) ({}); data: \
         [rd.csv]({folder}/rd.csv), [rd.json]({folder}/rd.json).\n",
        if r.slice.axis.is_empty() {
            "middle axial slice".to_string()
        } else {
            format!(
                "axial slice z={}, frame {}, at {} bpv",
                r.slice.index, r.slice.frame, r.slice.target_bpv
            )
        }
    );
    *s += "| target bpv | medinr bpv | medinr PSNR (dB) | medinr SSIM | JPEG 2000 bpv | JPEG 2000 PSNR (dB) | JPEG 2000 SSIM |\n";
    *s += "|---:|---:|---:|---:|---:|---:|---:|\n";
    let mut targets: Vec<f64> = r.rows.iter().filter_map(|x| x.target_bpv).collect();
    targets.sort_by(f64::total_cmp);
    targets.dedup();
    let cell = |codec: &str, t: Option<f64>| -> [String; 3] {
        match r
            .rows
            .iter()
            .find(|x| x.codec == codec && x.target_bpv == t)
        {
            Some(x) => [
                format!("{:.4}", x.bpv),
                fmt_psnr(x.psnr_db),
                format!("{:.4}", x.ssim),
            ],
            None => ["–".into(), "–".into(), "–".into()],
        }
    };
    for t in targets {
        let [mb, mp, ms] = cell(MEDINR, Some(t));
        let [jb, jp, js] = cell(J2K, Some(t));
        let _ = writeln!(s, "| {t} | {mb} | {mp} | {ms} | {jb} | {jp} | {js} |");
    }
    let [jb, jp, js] = cell(J2K, None);
    let _ = writeln!(s, "| lossless | | | | {jb} | {jp} | {js} |");
    *s += "\n";
    let _ = writeln!(
        s,
        "**BD-rate (medinr vs JPEG 2000): {}**{}; **BD-PSNR: {}**{}.\n",
        fmt_opt(r.bd.bd_rate_percent, 1, " %"),
        r.bd.psnr_overlap_db.map_or(String::new(), |[a, b]| format!(
            " over PSNR {a:.2}–{b:.2} dB"
        )),
        fmt_opt(r.bd.bd_psnr_db, 2, " dB"),
        r.bd.bpv_overlap
            .map_or(String::new(), |[a, b]| format!(" over {a:.4}–{b:.4} bpv")),
    );
    for n in r.bd.notes.iter().chain(&r.skipped).chain(&r.warnings) {
        let _ = writeln!(s, "- {n}");
    }
    if !(r.bd.notes.is_empty() && r.skipped.is_empty() && r.warnings.is_empty()) {
        *s += "\n";
    }
    let m = &r.machine;
    let _ = writeln!(
        s,
        "Command: `{}`  \nMachine: {} ({}), {} cores, {} threads{}, {}  \nDate: {}{}\n",
        r.command,
        m.cpu,
        m.arch,
        m.cores,
        m.threads,
        m.memory_gib
            .map_or(String::new(), |g| format!(", {g:.0} GiB")),
        m.os,
        r.date_utc,
        r.git
            .as_deref()
            .map_or(String::new(), |g| format!(", commit {g}"))
    );
}

// ---------------------------------------------------------------------------------------------
// Provenance

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn command_line() -> String {
    std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn output_of(cmd: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| {
            l.starts_with("model name") || l.starts_with("Model") || l.starts_with("cpu model")
        })
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / (1024.0 * 1024.0));
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: rayon::current_num_threads(),
        arch: output_of("uname", &["-m"]).unwrap_or_else(|| std::env::consts::ARCH.into()),
        cpu,
        os: output_of("uname", &["-sr"]).unwrap_or_else(|| std::env::consts::OS.into()),
        memory_gib,
    }
}

fn git_describe() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let head = output_of("git", &["-C", dir, "rev-parse", "--short", "HEAD"])?;
    let dirty = output_of(
        "git",
        &["-C", dir, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_some();
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// Current time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

// ---------------------------------------------------------------------------------------------
// Pictures: text

/// A built-in 5×7 bitmap font (8 rows: the last is for descenders), drawn by this file, so
/// PNG text needs no system font. Rows top to bottom, `#` = ink.
const GLYPHS: &[(char, &str)] = &[
    ('0', ".###. #...# #..## #.#.# ##..# #...# .###."),
    ('1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('2', ".###. #...# ....# ...#. ..#.. .#... #####"),
    ('3', "####. ....# ....# .###. ....# ....# ####."),
    ('4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."),
    ('5', "##### #.... ####. ....# ....# #...# .###."),
    ('6', "..##. .#... #.... ####. #...# #...# .###."),
    ('7', "##### ....# ...#. ..#.. .#... .#... .#..."),
    ('8', ".###. #...# #...# .###. #...# #...# .###."),
    ('9', ".###. #...# #...# .#### ....# ...#. .##.."),
    ('A', ".###. #...# #...# ##### #...# #...# #...#"),
    ('B', "####. #...# #...# ####. #...# #...# ####."),
    ('C', ".###. #...# #.... #.... #.... #...# .###."),
    ('D', "####. #...# #...# #...# #...# #...# ####."),
    ('E', "##### #.... #.... ####. #.... #.... #####"),
    ('F', "##### #.... #.... ####. #.... #.... #...."),
    ('G', ".###. #...# #.... #.### #...# #...# .####"),
    ('H', "#...# #...# #...# ##### #...# #...# #...#"),
    ('I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('J', "..### ...#. ...#. ...#. ...#. #..#. .##.."),
    ('K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"),
    ('L', "#.... #.... #.... #.... #.... #.... #####"),
    ('M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"),
    ('N', "#...# #...# ##..# #.#.# #..## #...# #...#"),
    ('O', ".###. #...# #...# #...# #...# #...# .###."),
    ('P', "####. #...# #...# ####. #.... #.... #...."),
    ('Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"),
    ('R', "####. #...# #...# ####. #.#.. #..#. #...#"),
    ('S', ".#### #.... #.... .###. ....# ....# ####."),
    ('T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('U', "#...# #...# #...# #...# #...# #...# .###."),
    ('V', "#...# #...# #...# #...# #...# .#.#. ..#.."),
    ('W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."),
    ('X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
    ('Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."),
    ('Z', "##### ....# ...#. ..#.. .#... #.... #####"),
    ('a', "..... ..... .###. ....# .#### #...# .####"),
    ('b', "#.... #.... #.##. ##..# #...# #...# ####."),
    ('c', "..... ..... .###. #.... #.... #...# .###."),
    ('d', "....# ....# .##.# #..## #...# #...# .####"),
    ('e', "..... ..... .###. #...# ##### #.... .###."),
    ('f', "..##. .#..# .#... ###.. .#... .#... .#..."),
    ('g', "..... ..... .#### #...# #...# .#### ....# .###."),
    ('h', "#.... #.... #.##. ##..# #...# #...# #...#"),
    ('i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."),
    ('j', "...#. ..... ..##. ...#. ...#. ...#. #..#. .##.."),
    ('k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."),
    ('l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('m', "..... ..... ##.#. #.#.# #.#.# #...# #...#"),
    ('n', "..... ..... #.##. ##..# #...# #...# #...#"),
    ('o', "..... ..... .###. #...# #...# #...# .###."),
    ('p', "..... ..... ####. #...# #...# ####. #.... #...."),
    ('q', "..... ..... .##.# #..## #...# .#### ....# ....#"),
    ('r', "..... ..... #.##. ##..# #.... #.... #...."),
    ('s', "..... ..... .###. #.... .###. ....# ####."),
    ('t', ".#... .#... ###.. .#... .#... .#..# ..##."),
    ('u', "..... ..... #...# #...# #...# #..## .##.#"),
    ('v', "..... ..... #...# #...# #...# .#.#. ..#.."),
    ('w', "..... ..... #...# #...# #.#.# #.#.# .#.#."),
    ('x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"),
    ('y', "..... ..... #...# #...# #...# .#### ....# .###."),
    ('z', "..... ..... ##### ...#. ..#.. .#... #####"),
    (' ', ""),
    ('!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."),
    ('"', ".#.#. .#.#. .#.#."),
    ('#', ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#."),
    ('%', "##... ##..# ...#. ..#.. .#... #..## ...##"),
    ('&', ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#"),
    ('\'', "..#.. ..#.. .#..."),
    ('(', "...#. ..#.. .#... .#... .#... ..#.. ...#."),
    (')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
    ('*', "..... ..#.. #.#.# .###. #.#.# ..#.. ....."),
    ('+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."),
    (',', "..... ..... ..... ..... ..... .##.. ..#.. .#..."),
    ('-', "..... ..... ..... ##### ..... ..... ....."),
    ('.', "..... ..... ..... ..... ..... .##.. .##.."),
    ('/', "..... ....# ...#. ..#.. .#... #.... ....."),
    (':', "..... .##.. .##.. ..... .##.. .##.. ....."),
    (';', "..... .##.. .##.. ..... .##.. ..#.. .#..."),
    ('<', "...#. ..#.. .#... #.... .#... ..#.. ...#."),
    ('=', "..... ..... ##### ..... ##### ..... ....."),
    ('>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."),
    ('?', ".###. #...# ....# ...#. ..#.. ..... ..#.."),
    ('[', ".###. .#... .#... .#... .#... .#... .###."),
    (']', ".###. ...#. ...#. ...#. ...#. ...#. .###."),
    ('_', "..... ..... ..... ..... ..... ..... #####"),
    ('|', "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('~', "..... ..... .#... #.#.# ...#. ..... ....."),
    ('^', "..#.. .#.#. #...#"),
];

/// Glyph advance in font pixels: 5 wide + 1 space.
const CELL_W: i32 = 6;
/// Cap height in font pixels (what text is aligned on).
const CAP_H: i32 = 7;

fn glyph(c: char) -> [u8; 8] {
    let c = match c {
        '×' => 'x',
        '–' | '—' | '−' => '-',
        c => c,
    };
    let rows = GLYPHS
        .iter()
        .find(|g| g.0 == c)
        .map_or(".###. #...# ....# ...#. ..#.. ..... ..#..", |g| g.1);
    let mut out = [0u8; 8];
    for (i, row) in rows
        .split(' ')
        .filter(|r| !r.is_empty())
        .take(8)
        .enumerate()
    {
        for (j, ch) in row.chars().take(5).enumerate() {
            if ch == '#' {
                out[i] |= 1 << (4 - j);
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Align {
    Start,
    Middle,
    End,
}

/// Text placed on a picture, in pixels. `(x, y)` is the anchor: `h` aligns horizontally, and
/// vertically the cap-height box is centred on `y`. `vertical` rotates it 90° anticlockwise.
#[derive(Debug, Clone)]
struct Label {
    x: i32,
    y: i32,
    text: String,
    scale: i32,
    color: RGBColor,
    h: Align,
    vertical: bool,
}

impl Label {
    fn new(x: i32, y: i32, text: impl Into<String>, scale: i32, h: Align) -> Label {
        Label {
            x,
            y,
            text: text.into(),
            scale,
            color: BLACK,
            h,
            vertical: false,
        }
    }

    fn width(&self) -> i32 {
        (self.text.chars().count() as i32 * CELL_W - 1).max(0) * self.scale
    }

    /// Draws into an RGB buffer of `width` pixels per row.
    fn raster(&self, buf: &mut [u8], width: usize) {
        let height = (buf.len() / 3 / width) as i32;
        let s = self.scale;
        let start = match self.h {
            Align::Start => 0,
            Align::Middle => -self.width() / 2,
            Align::End => -self.width(),
        };
        let top = -CAP_H * s / 2;
        let RGBColor(r, g, b) = self.color;
        for (k, c) in self.text.chars().enumerate() {
            let rows = glyph(c);
            for (i, bits) in rows.iter().enumerate() {
                for j in 0..5 {
                    if bits & (1 << (4 - j)) == 0 {
                        continue;
                    }
                    for dy in 0..s {
                        for dx in 0..s {
                            // (u, v): along and across the text direction.
                            let u = start + (k as i32 * CELL_W + j) * s + dx;
                            let v = top + i as i32 * s + dy;
                            let (px, py) = if self.vertical {
                                (self.x + v, self.y - u)
                            } else {
                                (self.x + u, self.y + v)
                            };
                            if px >= 0 && py >= 0 && (px as usize) < width && py < height {
                                let o = (py as usize * width + px as usize) * 3;
                                buf[o..o + 3].copy_from_slice(&[r, g, b]);
                            }
                        }
                    }
                }
            }
        }
    }

    fn svg(&self) -> String {
        let anchor = match self.h {
            Align::Start => "start",
            Align::Middle => "middle",
            Align::End => "end",
        };
        let RGBColor(r, g, b) = self.color;
        let rotate = if self.vertical {
            format!(" transform=\"rotate(-90 {} {})\"", self.x, self.y)
        } else {
            String::new()
        };
        let text = self
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!(
            "<text x=\"{}\" y=\"{}\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" \
             font-size=\"{}\" text-anchor=\"{anchor}\" dominant-baseline=\"central\" \
             fill=\"#{r:02x}{g:02x}{b:02x}\"{rotate}>{text}</text>\n",
            self.x,
            self.y,
            10 * self.scale
        )
    }
}

fn encode_rgb_png(width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>> {
    Ok(medinr::render::encode_png_as(
        width,
        height,
        rgb,
        png::ColorType::Rgb,
    )?)
}

// ---------------------------------------------------------------------------------------------
// Pictures: PSNR vs rate

const PLOT_W: u32 = 960;
const PLOT_H: u32 = 750;
const MEDINR_COLOR: RGBColor = RGBColor(31, 119, 180);
const J2K_COLOR: RGBColor = RGBColor(214, 39, 40);
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);

type Curve = (String, RGBColor, Vec<(f64, f64)>);

struct RdPlot {
    title: String,
    subtitle: String,
    /// Name, colour, (bpv, PSNR) points.
    curves: Vec<Curve>,
    notes: Vec<String>,
}

impl RdPlot {
    fn from_report(r: &ScanReport) -> RdPlot {
        let mut notes = Vec::new();
        if let Some(l) = r
            .rows
            .iter()
            .find(|x| x.codec == J2K && x.target_bpv.is_none())
        {
            notes.push(format!(
                "JPEG 2000 lossless: {:.3} bpv ({:.2}:1)",
                l.bpv, l.ratio
            ));
        }
        notes.push(format!(
            "BD-rate {}, BD-PSNR {} (medinr vs JPEG 2000)",
            fmt_opt(r.bd.bd_rate_percent, 1, " %"),
            fmt_opt(r.bd.bd_psnr_db, 2, " dB")
        ));
        RdPlot {
            title: format!("{}: PSNR vs rate", r.scan),
            subtitle: format!(
                "{} {}, PSNR on the scan's range {}; medinr effort {}",
                shape_text(r.shape).replace('×', "x"),
                r.datatype,
                r.data_range,
                r.effort
            ),
            curves: vec![
                ("medinr".into(), MEDINR_COLOR, curve(&r.rows, MEDINR)),
                (
                    "JPEG 2000 (per slice, 9/7)".into(),
                    J2K_COLOR,
                    curve(&r.rows, J2K),
                ),
            ],
            notes,
        }
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.curves.iter().flat_map(|c| c.2.iter().copied());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return ((0.01, 10.0), (0.0, 50.0));
        }
        let (y0, y1) = if y1 - y0 < 2.0 {
            (y0 - 1.0, y1 + 1.0)
        } else {
            (y0, y1)
        };
        let pad = (y1 - y0) * 0.08;
        ((x0 / 1.3, x1 * 1.3), (y0 - pad, y1 + pad))
    }

    /// Draws lines and markers; returns the text to put on top (same for PNG and SVG).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Vec<Label>> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e}");
        let ((x0, x1), (y0, y1)) = self.ranges();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(root)
            .margin_left(96)
            .margin_right(36)
            .margin_top(112)
            .margin_bottom(134)
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(e)?;
        let mut labels = Vec::new();
        let xt = log_ticks(x0, x1);
        let yt = linear_ticks(y0, y1);
        for &t in &xt {
            chart
                .draw_series(LineSeries::new([(t, y0), (t, y1)], GRID_COLOR))
                .map_err(e)?;
            let (px, py) = chart.backend_coord(&(t, y0));
            labels.push(Label::new(px, py + 16, tick_text(t), 2, Align::Middle));
        }
        for &t in &yt {
            chart
                .draw_series(LineSeries::new([(x0, t), (x1, t)], GRID_COLOR))
                .map_err(e)?;
            let (px, py) = chart.backend_coord(&(x0, t));
            labels.push(Label::new(px - 8, py, tick_text(t), 2, Align::End));
        }
        chart
            .plotting_area()
            .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(e)?;
        for (k, (_, color, pts)) in self.curves.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(e)?;
            let style = color.filled();
            if k == 0 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 5, style)))
                    .map_err(e)?;
            } else {
                chart
                    .draw_series(pts.iter().map(|&p| TriangleMarker::new(p, 7, style)))
                    .map_err(e)?;
            }
        }
        let (left, bottom) = chart.backend_coord(&(x0, y0));
        let (right, top) = chart.backend_coord(&(x1, y1));
        labels.push(Label::new(
            (left + right) / 2,
            bottom + 46,
            "rate (bits per voxel, log scale)",
            2,
            Align::Middle,
        ));
        let mut yl = Label::new(26, (top + bottom) / 2, "PSNR (dB)", 2, Align::Middle);
        yl.vertical = true;
        labels.push(yl);
        labels.push(Label::new(
            (left + right) / 2,
            24,
            self.title.clone(),
            3,
            Align::Middle,
        ));
        labels.push(Label::new(
            (left + right) / 2,
            56,
            self.subtitle.clone(),
            2,
            Align::Middle,
        ));
        // Legend in one row above the plot, notes in one row below it: nothing hides data.
        let mut x = left;
        for (k, (name, color, _)) in self.curves.iter().enumerate() {
            let y = 88;
            root.draw(&PathElement::new(
                vec![(x, y), (x + 40, y)],
                color.stroke_width(2),
            ))
            .map_err(e)?;
            if k == 0 {
                root.draw(&Circle::new((x + 20, y), 5, color.filled()))
            } else {
                root.draw(&TriangleMarker::new((x + 20, y), 7, color.filled()))
            }
            .map_err(e)?;
            let label = Label::new(x + 50, y, name.clone(), 2, Align::Start);
            x += 50 + label.width() + 40;
            labels.push(label);
        }
        for (k, n) in self.notes.iter().enumerate() {
            let y = bottom + 78 + 24 * k as i32;
            labels.push(Label::new(
                (left + right) / 2,
                y,
                n.clone(),
                2,
                Align::Middle,
            ));
        }
        Ok(labels)
    }

    fn png(&self) -> Result<Vec<u8>> {
        let (w, h) = (PLOT_W as usize, PLOT_H as usize);
        let mut buf = vec![255u8; w * h * 3];
        let labels = {
            let root = BitMapBackend::with_buffer(&mut buf, (PLOT_W, PLOT_H)).into_drawing_area();
            let labels = self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("drawing the plot: {e}"))?;
            labels
        };
        for l in &labels {
            l.raster(&mut buf, w);
        }
        encode_rgb_png(w, h, &buf)
    }

    fn svg(&self) -> Result<String> {
        let mut svg = String::new();
        let labels = {
            let root = SVGBackend::with_string(&mut svg, (PLOT_W, PLOT_H)).into_drawing_area();
            let labels = self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("drawing the plot: {e}"))?;
            labels
        };
        let text: String = labels.iter().map(Label::svg).collect();
        let end = svg
            .rfind("</svg>")
            .ok_or_else(|| anyhow!("SVG without </svg>"))?;
        svg.insert_str(end, &text);
        Ok(svg)
    }
}

/// 1-2-5 ticks within [lo, hi].
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut e = lo.log10().floor() as i32;
    while 10f64.powi(e) <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        e += 1;
    }
    out
}

/// About six round ticks within [lo, hi].
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 6.0;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p);
    let mut out = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

fn tick_text(v: f64) -> String {
    let s = format!("{:.6}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

// ---------------------------------------------------------------------------------------------
// Pictures: the slice side by side

fn heat(level: u8) -> [u8; 3] {
    let t = level as f64 / 255.0;
    let c = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(3.0 * t), c(3.0 * t - 1.0), c(3.0 * t - 2.0)]
}

fn percentile(values: &[f32], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize] as f64
}

fn slice_picture(volume: &Volume, report: &mut ScanReport, at: SliceAt) -> Result<Vec<u8>> {
    let target = report
        .rates
        .iter()
        .copied()
        .filter(|&r| {
            report
                .rows
                .iter()
                .filter(|x| x.target_bpv == Some(r))
                .count()
                == 2
        })
        .min_by(|a, b| {
            (a.ln() - SLICE_RATE.ln())
                .abs()
                .total_cmp(&(b.ln() - SLICE_RATE.ln()).abs())
        })
        .ok_or_else(|| anyhow!("no rate at which both codecs ran"))?;
    let find = |codec: &str| {
        report
            .rows
            .iter()
            .find(|x| x.codec == codec && x.target_bpv == Some(target))
            .expect("both codecs ran at the chosen rate")
    };
    let (m, j) = (find(MEDINR), find(J2K));
    let original = at.take(&volume.data);
    for r in [m, j] {
        if r.slice.len() != original.len() {
            bail!(
                "{} slice has {} values, expected {}",
                r.codec,
                r.slice.len(),
                original.len()
            );
        }
    }
    let (lo, hi) = original.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| {
        (a.min(v as f64), b.max(v as f64))
    });
    let err = |s: &[f32]| -> Vec<f32> {
        s.iter()
            .zip(&original)
            .map(|(a, b)| (a - b).abs())
            .collect()
    };
    let (em, ej) = (err(&m.slice), err(&j.slice));
    let mut emax = percentile(&em, 0.995).max(percentile(&ej, 0.995));
    if emax <= 0.0 {
        emax = em.iter().chain(&ej).fold(0.0f32, |a, &b| a.max(b)) as f64;
    }
    if emax <= 0.0 {
        emax = 1.0;
    }
    let pshape = [at.nx, at.ny, 1, 1];
    let grey = |s: &[f32]| -> (usize, usize, Vec<[u8; 3]>) {
        let (w, h, p) = slice_pixels(s, pshape, 2, lo, hi);
        (w, h, p.into_iter().map(|g| [g, g, g]).collect())
    };
    let heatmap = |s: &[f32]| -> (usize, usize, Vec<[u8; 3]>) {
        let (w, h, p) = slice_pixels(s, pshape, 2, 0.0, emax);
        (w, h, p.into_iter().map(heat).collect())
    };
    let line2 = |r: &Row| format!("{:.4} bpv {} dB", r.bpv, fmt_psnr(r.psnr_db));
    let panels = [
        (
            grey(&original),
            "original".to_string(),
            format!("window {lo}..{hi}"),
        ),
        (grey(&m.slice), "medinr".into(), line2(m)),
        (grey(&j.slice), "JPEG 2000".into(), line2(j)),
        (
            heatmap(&em),
            "|error| medinr".into(),
            format!("heat scale 0..{}", tick_text(emax)),
        ),
        (
            heatmap(&ej),
            "|error| JPEG 2000".into(),
            format!("heat scale 0..{}", tick_text(emax)),
        ),
    ];
    let (pw, ph) = (panels[0].0 .0, panels[0].0 .1);
    // Panels at least 240 pixels and as wide as their captions (scale-2 text).
    let caption = |t: &str| Label::new(0, 0, t, 2, Align::Start).width() as usize + 12;
    let widest = panels
        .iter()
        .map(|p| caption(&p.1).max(caption(&p.2)))
        .max()
        .unwrap_or(0);
    let zoom = 240usize
        .div_ceil(pw.max(ph))
        .max(widest.div_ceil(pw))
        .max(1);
    let (zw, zh) = (pw * zoom, ph * zoom);
    let frame = if report.shape[3] > 1 {
        format!(", frame {} of {}", at.t, report.shape[3])
    } else {
        String::new()
    };
    let footer_text = format!(
        "{}: axial slice z={} of {}{frame}, target {} bpv (bpv and PSNR: whole scan)",
        report.scan, at.z, report.shape[2], target
    );
    let (gap, header, footer) = (12usize, 56usize, 34usize);
    let width = (panels.len() * zw + (panels.len() + 1) * gap).max(caption(&footer_text) + gap);
    let height = header + zh + footer + gap;
    let mut buf = vec![255u8; width * height * 3];
    let mut labels = Vec::new();
    for (k, ((w, h, px), l1, l2)) in panels.iter().enumerate() {
        let x0 = gap + k * (zw + gap);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let c = px[(y / zoom) * w + x / zoom];
                let o = ((header + y) * width + x0 + x) * 3;
                buf[o..o + 3].copy_from_slice(&c);
            }
        }
        let cx = (x0 + zw / 2) as i32;
        labels.push(Label::new(cx, 16, l1.clone(), 2, Align::Middle));
        labels.push(Label::new(cx, 38, l2.clone(), 2, Align::Middle));
    }
    labels.push(Label::new(
        gap as i32,
        (header + zh + gap + 10) as i32,
        footer_text,
        2,
        Align::Start,
    ));
    for l in &labels {
        l.raster(&mut buf, width);
    }
    report.slice = SliceInfo {
        axis: "z".into(),
        index: at.z,
        frame: at.t,
        target_bpv: target,
        window: [lo, hi],
        error_scale_max: emax,
    };
    encode_rgb_png(width, height, &buf)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Reference values from scipy 1.17: `PchipInterpolator(x, y)`, its `.derivative()(x)`,
    /// `.integrate(0.5, 3.2)` and `.integrate(0, 4)`.
    #[test]
    fn pchip_matches_scipy() {
        let x = [0.0, 1.0, 2.5, 3.0, 4.0];
        let cases: [([f64; 5], [f64; 5], f64, f64); 2] = [
            (
                [1.0, 2.0, 2.2, 4.0, 4.1],
                [
                    1.3466666666666667,
                    0.24793388429752083,
                    0.30422535211267626,
                    0.21744966442952945,
                    0.0,
                ],
                6.422364317212028,
                10.350935047177947,
            ),
            (
                // Not monotone: zero slopes at the turning points.
                [1.0, 3.0, 2.0, 2.5, 5.0],
                [
                    3.066666666666667,
                    0.0,
                    0.0,
                    1.3636363636363638,
                    3.4999999999999996,
                ],
                6.769564141414142,
                10.67411616161616,
            ),
        ];
        for (y, d, part, full) in cases {
            let p = Pchip::new(&x, &y).unwrap();
            for (a, b) in p.d.iter().zip(d) {
                assert!(close(*a, b, 1e-12), "{:?} vs {d:?}", p.d);
            }
            assert!(close(p.integral(0.5, 3.2), part, 1e-12));
            assert!(close(p.integral(0.0, 4.0), full, 1e-12));
        }
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
