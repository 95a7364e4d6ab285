//! The `medinr` command line: argument parsing, progress, messages and exit codes. All the
//! work happens in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
#[cfg(feature = "train")]
use indicatif::{ProgressBar, ProgressStyle};

use medinr::decoder::{DecodeError, Decoder, Plane, Region};
#[cfg(feature = "train")]
use medinr::encoder::{
    encode, Bound, Device, EncodeError, EncodeOptions, Phase, Preset, Progress, RateTarget,
    RegionOfInterest,
};
use medinr::metrics;
#[cfg(feature = "train")]
use medinr::settings::EncoderSettings;
use medinr::study::{self as render, write_atomic};
use medinr::volume::{read_nifti, write_nifti, Volume, VolumeError, Voxels};

/// candle allocates a fresh buffer for every intermediate tensor; the system allocator hands
/// those large buffers back to the kernel each time, and the page faults cost more than the
/// arithmetic. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes, so scripts can tell failures apart.
mod exit {
    pub const FAILURE: u8 = 1;
    /// Bad command-line usage (clap uses 2 too).
    pub const USAGE: u8 = 2;
    /// An input file is unreadable, corrupted or unsupported.
    pub const BAD_INPUT: u8 = 3;
    /// The asked rate or quality cannot be met.
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    pub const TARGET: u8 = 4;
    /// The output exists (no --force) or would overwrite the input.
    pub const OUTPUT: u8 = 5;
}

/// Shown under every `--help`.
const EXIT_CODES: &str = "Exit codes: 0 success, 1 other failure (including out of memory), 2 bad usage, 3 unreadable, corrupted or unsupported input, 4 rate or quality target cannot be met, 5 output exists (no --force), is the input or is not a regular file.";

#[derive(Parser)]
#[command(
    name = "medinr",
    version,
    about = "Compress medical volumes (CT, MRI, 4D) into implicit neural representations",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a neural field to a NIfTI scan and write it as a .minr file.
    Compress(CompressArgs),
    /// Decode a .minr file to NIfTI (original grid and header, or another --shape).
    Decompress(DecompressArgs),
    /// Decode one slice to PNG (windowed) or NIfTI, without decoding the rest.
    Slice(SliceArgs),
    /// Describe a .minr file: geometry, field, sections, rate.
    Info(InfoArgs),
    /// Compare two NIfTI scans: PSNR (on the first scan's range), SSIM, max abs error, MAE;
    /// for 4D scans also the time-series figures (temporal-mean baseline, time-course
    /// correlation, tSNR ratio, connectivity; docs/METRICS.md).
    Compare(CompareArgs),
    /// Compress every scan of a folder or manifest into an output folder; a killed run
    /// resumes where it stopped (journal in the output folder); --shard splits the list.
    Batch(BatchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// The CPU (all cores).
    Cpu,
    /// The first NVIDIA GPU (builds with the `cuda` feature only).
    Cuda,
    /// CUDA when this build has it and a GPU opens, else the CPU (said on stderr).
    Auto,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
struct CompressArgs {
    /// Input scan: .nii or .nii.gz, or DICOM: a series folder (one file per slice, one
    /// series), an enhanced multi-frame file, or a single image (.dcm, or any file with the
    /// DICM marker).
    input: PathBuf,
    /// Output .minr file.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Seed of the fit (weights initialisation and sampling).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Multiplies the number of optimisation steps (more = slower, better), in (0, 100].
    #[arg(long, default_value_t = 1.0, value_parser = parse_effort, allow_hyphen_values = true)]
    effort: f64,
    /// Replace NaN/infinite voxels with this finite value (otherwise such scans are refused).
    #[arg(long, value_parser = parse_fill, allow_hyphen_values = true)]
    nan_fill: Option<f32>,
    /// Where to fit.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Planned bits per stored parameter: trades field size against quantization precision
    /// (advanced; default 3.5, as in the settings).
    #[arg(long)]
    bits_per_parameter: Option<f64>,
    /// Encoder settings as JSON (advanced): any subset of the documented settings; the rest
    /// keep their defaults. The settings used are recorded in the file (`medinr info`).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Grid levels (advanced; default chosen for the rate).
    #[arg(long, requires_all = ["features", "hidden"])]
    levels: Option<usize>,
    /// Features per grid level: 1, 2, 4 or 8 (advanced).
    #[arg(long, requires = "levels")]
    features: Option<usize>,
    /// MLP as WIDTHxLAYERS hidden, e.g. 32x2 (advanced).
    #[arg(long, requires = "levels", value_parser = parse_hidden)]
    hidden: Option<(usize, usize)>,
    /// Overwrite the output if it exists (regular files only).
    #[arg(long)]
    force: bool,
    /// Print the report as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
    /// Print nothing on success (no progress bar, no report), like the other commands' -q.
    #[arg(short, long)]
    quiet: bool,
    /// Region of interest: a NIfTI mask on the scan's grid (nonzero = inside; 3D, applied to
    /// every frame, or 4D like the scan) where --roi-max-error holds instead of --max-error.
    /// The mask is stored in the file. Needs --max-error and --roi-max-error.
    #[arg(long, value_name = "MASK", requires = "roi_max_error")]
    roi_mask: Option<PathBuf>,
    /// The bound inside --roi-mask: |decoded − original| ≤ D there (stored units, integer
    /// scans use ⌊D⌋; 0 = exact), 0 ≤ D ≤ --max-error.
    #[arg(
        long,
        value_name = "D",
        requires = "roi_mask",
        allow_hyphen_values = true
    )]
    roi_max_error: Option<f64>,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
struct DecompressArgs {
    /// Input .minr file.
    input: PathBuf,
    /// Output NIfTI (.nii or .nii.gz).
    #[arg(short, long)]
    output: PathBuf,
    /// Output grid, e.g. 362,434,362 (or 4 values for a series); default: the original grid.
    /// At most 2^30 voxels.
    #[arg(long, value_parser = parse_shape, conflicts_with_all = ["roi", "like"])]
    shape: Option<Shape>,
    /// Only a box of the original grid, X0:X1,Y0:Y1,Z0:Z1[,T0:T1] (voxel indices, ends
    /// exclusive); only that box is decoded.
    #[arg(long, value_parser = parse_roi, conflicts_with = "like")]
    roi: Option<([usize; 4], [usize; 4])>,
    /// Resample onto the grid of this scan (its shape and affine), e.g. to overlay on it; the
    /// field alone (a residual layer's bound holds on the original grid only).
    #[arg(long)]
    like: Option<PathBuf>,
    /// Accepted for symmetry with compress: decoding always runs on the CPU (its bit-exact
    /// evaluator is the reference); `cuda` is refused by a build without CUDA.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Overwrite the output if it exists (regular files only).
    #[arg(long)]
    force: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Axis {
    /// Sagittal planes (constant x).
    X,
    /// Coronal planes (constant y).
    Y,
    /// Axial planes (constant z).
    Z,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
struct SliceArgs {
    /// Input .minr file.
    input: PathBuf,
    /// Axis the slice is perpendicular to.
    #[arg(long, value_enum, default_value = "z")]
    axis: Axis,
    /// Slice index along the axis (default: the middle slice).
    #[arg(long)]
    index: Option<usize>,
    /// Frame of a 4D series.
    #[arg(long, default_value_t = 0)]
    frame: usize,
    /// Oblique plane: its centre in world millimetres, X,Y,Z (with --normal).
    #[arg(long, value_parser = parse_point, allow_hyphen_values = true, requires = "normal", conflicts_with_all = ["index", "points"])]
    center: Option<[f64; 3]>,
    /// Oblique plane: its normal in world coordinates, X,Y,Z (with --center).
    #[arg(long, value_parser = parse_point, allow_hyphen_values = true, requires = "center")]
    normal: Option<[f64; 3]>,
    /// Oblique plane through three points in world millimetres, X0,Y0,Z0:X1,Y1,Z1:X2,Y2,Z2:
    /// the first is pixel (0,0), rows run towards the second, columns towards the third.
    #[arg(long, value_parser = parse_points, allow_hyphen_values = true, conflicts_with = "index")]
    points: Option<[[f64; 3]; 3]>,
    /// Oblique plane size in pixels, W,H (with --center; default 256,256).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Oblique plane pixel spacing in mm (default: the scan's smallest voxel size).
    #[arg(long)]
    spacing: Option<f64>,
    /// Output: .png (8-bit, windowed) or .nii / .nii.gz (stored values, with geometry).
    #[arg(short, long)]
    output: PathBuf,
    /// Display window for PNG as CENTER,WIDTH in stored values (default: the scan's full range).
    #[arg(long, value_parser = parse_window, allow_hyphen_values = true)]
    window: Option<(f64, f64)>,
    /// Accepted for symmetry with compress: decoding always runs on the CPU.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Overwrite the output if it exists (regular files only).
    #[arg(long)]
    force: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
struct InfoArgs {
    /// Input .minr file (only its description is read; the parameters are not decoded).
    input: PathBuf,
    /// Print the description as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
struct CompareArgs {
    /// Reference scan (.nii or .nii.gz); PSNR uses its value range.
    reference: PathBuf,
    /// Scan to compare with it (same grid).
    test: PathBuf,
    /// A mask on the scan's grid, inside where nonzero (3D, or 4D like the scan): PSNR and
    /// errors are also reported inside and outside it. For 4D scans a 3D mask is also the
    /// foreground of the time-series figures (default: the automatic mask, temporal mean
    /// above 0.1 × the 99th percentile of temporal means; docs/METRICS.md).
    #[arg(long, value_name = "MASK")]
    mask: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// An output grid given on the command line (3 or 4 sizes).
#[derive(Clone)]
struct Shape(Vec<usize>);

fn parse_shape(s: &str) -> Result<Shape, String> {
    let v: Result<Vec<usize>, _> = s.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match v {
        Ok(v) if (3..=4).contains(&v.len()) && v.iter().all(|&n| n > 0) => Ok(Shape(v)),
        _ => Err(format!(
            "'{s}' is not a shape like 362,434,362 (3 or 4 positive integers)"
        )),
    }
}

fn parse_point(s: &str) -> Result<[f64; 3], String> {
    let v: Result<Vec<f64>, _> = s.split(',').map(|p| p.trim().parse::<f64>()).collect();
    match v {
        Ok(v) if v.len() == 3 && v.iter().all(|x| x.is_finite()) => Ok([v[0], v[1], v[2]]),
        _ => Err(format!("'{s}' is not X,Y,Z (three finite numbers, mm)")),
    }
}

fn parse_points(s: &str) -> Result<[[f64; 3]; 3], String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [a, b, c] => Ok([parse_point(a)?, parse_point(b)?, parse_point(c)?]),
        _ => Err(format!(
            "'{s}' is not three points X0,Y0,Z0:X1,Y1,Z1:X2,Y2,Z2"
        )),
    }
}

/// `X0:X1,Y0:Y1,Z0:Z1[,T0:T1]`; a missing T range means every frame (end = usize::MAX,
/// narrowed to the scan by the caller).
fn parse_roi(s: &str) -> Result<([usize; 4], [usize; 4]), String> {
    let err = || format!("'{s}' is not X0:X1,Y0:Y1,Z0:Z1[,T0:T1] (voxel ranges, ends exclusive)");
    let parts: Vec<&str> = s.split(',').collect();
    if !(3..=4).contains(&parts.len()) {
        return Err(err());
    }
    let mut start = [0usize; 4];
    let mut end = [usize::MAX; 4];
    for (a, p) in parts.iter().enumerate() {
        let (lo, hi) = p.split_once(':').ok_or_else(err)?;
        start[a] = lo.trim().parse().map_err(|_| err())?;
        end[a] = hi.trim().parse().map_err(|_| err())?;
        if start[a] >= end[a] {
            return Err(err());
        }
    }
    Ok((start, end))
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    match s
        .split_once(',')
        .map(|(w, h)| (w.trim().parse::<usize>(), h.trim().parse::<usize>()))
    {
        Some((Ok(w), Ok(h))) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("'{s}' is not W,H (two positive integers)")),
    }
}

fn parse_hidden(s: &str) -> Result<(usize, usize), String> {
    match s
        .split_once('x')
        .map(|(w, l)| (w.parse::<usize>(), l.parse::<usize>()))
    {
        Some((Ok(w), Ok(l))) if w > 0 && l > 0 => Ok((w, l)),
        _ => Err(format!("'{s}' is not WIDTHxLAYERS, e.g. 32x2")),
    }
}

fn parse_window(s: &str) -> Result<(f64, f64), String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [c, w] => match (c.trim().parse::<f64>(), w.trim().parse::<f64>()) {
            (Ok(c), Ok(w)) if c.is_finite() && w.is_finite() && w > 0.0 => Ok((c, w)),
            _ => Err(format!(
                "'{s}' is not CENTER,WIDTH with a finite center and a positive, finite width"
            )),
        },
        _ => Err(format!("'{s}' is not CENTER,WIDTH")),
    }
}

/// `--effort`: finite, positive and at most the encoder's bound, checked before any work.
fn parse_effort(s: &str) -> Result<f64, String> {
    let max = medinr_max_effort();
    match s.trim().parse::<f64>() {
        Ok(e) if e.is_finite() && e > 0.0 && e <= max => Ok(e),
        _ => Err(format!("'{s}' is not an effort in (0, {max}]")),
    }
}

#[cfg(feature = "train")]
fn medinr_max_effort() -> f64 {
    medinr::encoder::MAX_EFFORT
}

#[cfg(not(feature = "train"))]
fn medinr_max_effort() -> f64 {
    100.0
}

/// `--nan-fill`: the value that replaces NaN/infinite voxels must itself be finite.
fn parse_fill(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a finite fill value")),
    }
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        Failure {
            code: classify(&error),
            error,
        }
    }
}

/// Picks the exit code from the library error at the root of a failure.
fn classify(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        #[cfg(feature = "train")]
        if let Some(e) = cause.downcast_ref::<EncodeError>() {
            return match e {
                EncodeError::NonFinite { .. } | EncodeError::RangeTooWide { .. } => exit::BAD_INPUT,
                EncodeError::TargetTooSmall { .. }
                | EncodeError::TargetTooLarge { .. }
                | EncodeError::ArchitectureTooLarge { .. }
                | EncodeError::PsnrUnreachable { .. } => exit::TARGET,
                EncodeError::BadTarget(_) | EncodeError::Settings(_) | EncodeError::Preset(_) => {
                    exit::USAGE
                }
                _ => exit::FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<DecodeError>() {
            return match e {
                DecodeError::Request(_) | DecodeError::Regrid(_) | DecodeError::TooLarge { .. } => {
                    exit::USAGE
                }
                DecodeError::Io { .. } => exit::BAD_INPUT,
                DecodeError::Format(_)
                | DecodeError::Header(_)
                | DecodeError::Inconsistent { .. } => exit::BAD_INPUT,
                _ => exit::FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<VolumeError>() {
            return match e {
                VolumeError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    exit::OUTPUT
                }
                _ => exit::BAD_INPUT,
            };
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return exit::OUTPUT;
            }
        }
        if cause.downcast_ref::<OutputRefused>().is_some() {
            return exit::OUTPUT;
        }
        if cause.downcast_ref::<metrics::MetricsError>().is_some() {
            return exit::BAD_INPUT;
        }
    }
    exit::FAILURE
}

/// The output path would overwrite an input, or exists without --force.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OutputRefused(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compress(a) => compress(a),
        Command::Decompress(a) => decompress(a),
        Command::Slice(a) => slice(a),
        Command::Info(a) => info(a),
        Command::Compare(a) => compare(a),
        Command::Batch(a) => batch(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("medinr: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// A failed write: exit 5 when the output exists (a race with another writer), else 1 — an
/// unwritable output is not a problem with the input.
fn write_failure(output: &Path, error: anyhow::Error) -> Failure {
    let exists = error.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
    });
    Failure {
        code: if exists { exit::OUTPUT } else { exit::FAILURE },
        error: error.context(format!("writing {}", output.display())),
    }
}

/// Checks the output before any work, so a bad path fails in a second, not after the fit:
/// its name ends in one of `extensions` (when given; exit 2), it is not an input, it does not
/// exist unless `force`, and then only as a regular file (never a device, FIFO or directory),
/// and its directory exists and takes a new file (exit 5).
fn check_output(
    output: &Path,
    inputs: &[&Path],
    force: bool,
    extensions: &[&str],
) -> Result<(), Failure> {
    for input in inputs {
        if same_file(output, input) {
            return Err(OutputRefused(format!(
                "output {} is the input file; medinr never overwrites its input",
                output.display()
            ))
            .into());
        }
    }
    let name = output.to_string_lossy().to_lowercase();
    if !extensions.is_empty() && !extensions.iter().any(|e| name.ends_with(e)) {
        return Err(Failure {
            code: exit::USAGE,
            error: anyhow!(
                "output {} must end in {}",
                output.display(),
                match extensions {
                    [one] => one.to_string(),
                    [init @ .., last] => format!("{} or {last}", init.join(", ")),
                    [] => String::new(),
                }
            ),
        });
    }
    if let Ok(meta) = output.symlink_metadata() {
        if !force {
            return Err(OutputRefused(format!(
                "output {} exists; pass --force to overwrite it",
                output.display()
            ))
            .into());
        }
        let target = std::fs::metadata(output).unwrap_or(meta);
        if !target.is_file() {
            return Err(OutputRefused(format!(
                "writing {}: it is {}, not a regular file; medinr writes only regular files",
                output.display(),
                if target.is_dir() {
                    "a directory"
                } else {
                    "a device, FIFO or socket"
                }
            ))
            .into());
        }
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(OutputRefused(format!(
            "writing {}: directory {} does not exist",
            output.display(),
            dir.display()
        ))
        .into());
    }
    // Can a file be created there? Probe with a name of the atomic writer's temp pattern
    // (`.NAME.tmp.PID.N`), so a run killed right here leaves nothing the next run keeps.
    let file_name = output.file_name().map(|n| n.to_string_lossy().into_owned());
    let probe = dir.join(format!(
        ".{}.tmp.{}.{}",
        file_name.unwrap_or_default(),
        std::process::id(),
        u64::MAX
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(OutputRefused(format!(
            "writing {}: cannot create a file in {}: {e}",
            output.display(),
            dir.display()
        ))
        .into()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The device to fit on; `cuda` is refused by a build without CUDA support, and fails here,
/// before any work, where the GPU or its driver cannot be opened (`auto` then uses the CPU).
#[cfg(feature = "train")]
fn device(arg: DeviceArg) -> Result<Device, Failure> {
    check_device(arg)?;
    Ok(match arg {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Auto if !medinr::CUDA_BUILT => {
            eprintln!("medinr: --device auto: this build has no CUDA support; fitting on the CPU");
            Device::Cpu
        }
        DeviceArg::Cuda => {
            Device::Cuda(0)
                .probe()
                .map_err(|e| anyhow!("--device cuda: {e}"))?;
            Device::Cuda(0)
        }
        DeviceArg::Auto => match Device::Cuda(0).probe() {
            Ok(()) => Device::Cuda(0),
            Err(e) => {
                eprintln!("medinr: --device auto: {e}; fitting on the CPU");
                Device::Cpu
            }
        },
    })
}

/// Refuses `--device cuda` where this build has no CUDA support. (Decoding always runs on the
/// CPU: its bit-exact evaluator is the reference.)
fn check_device(arg: DeviceArg) -> Result<(), Failure> {
    match arg {
        DeviceArg::Cuda if !medinr::CUDA_BUILT => Err(Failure {
            code: exit::USAGE,
            error: anyhow!(
                "this medinr was built without CUDA support (build with --features cuda)"
            ),
        }),
        _ => Ok(()),
    }
}

/// One bar for the whole compress job: its length is every optimiser step planned (fit and
/// fine-tune, extended if the encoder retries), so the ETA covers both runs; the prefix names
/// the phase; after the last step a spinner says the file is being checked (quantization,
/// residual coding, decoding the real file), which has no step count. The loss shown is the
/// training batch's, and says so: the scan's quality is only known from the final check.
#[cfg(feature = "train")]
struct Bar {
    bar: Option<ProgressBar>,
    /// Steps of the runs finished before the current one.
    done_before: u64,
    /// Steps of the current run so far.
    in_run: u64,
}

#[cfg(feature = "train")]
impl Bar {
    fn new(show: bool) -> Bar {
        let bar = show.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            // Named before the fit announces itself (the total is set first).
            bar.set_prefix("start");
            bar
        });
        Bar {
            bar,
            done_before: 0,
            in_run: 0,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(feature = "train")]
impl Progress for Bar {
    fn total(&mut self, steps: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(steps as u64);
        }
    }

    fn phase(&mut self, phase: Phase, _steps: usize) {
        let Some(bar) = &self.bar else { return };
        self.done_before += self.in_run;
        self.in_run = 0;
        let (prefix, message) = match phase {
            Phase::Fit => ("fit", ""),
            Phase::Quantize => ("quantize", "choosing quantization steps"),
            Phase::FineTune => ("fine-tune", ""),
            Phase::Check => ("check", "checking the file (quantize, decode, measure)"),
        };
        // Message first: a frame drawn between the two calls then shows the old phase's
        // name with the new phase's message, not a stale message under the new name.
        bar.set_message(message);
        bar.set_prefix(prefix);
        if phase == Phase::Check {
            bar.set_style(
                ProgressStyle::with_template("{prefix:>9} {spinner} {msg}  {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            // The time shown is this phase's, not the job's.
            bar.reset_elapsed();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
    }

    fn update(&mut self, step: usize, _steps: usize, batch_loss: f64) {
        let Some(bar) = &self.bar else { return };
        self.in_run = step as u64;
        bar.set_position(self.done_before + self.in_run);
        let psnr = -10.0 * batch_loss.max(1e-20).log10();
        bar.set_message(format!(
            "batch loss {batch_loss:.2e}  batch PSNR {psnr:.1} dB"
        ));
    }

    fn checked(&mut self, voxels: usize, total: usize) {
        let Some(bar) = &self.bar else { return };
        if bar.length() != Some(total as u64) {
            // The self-check's own bar: its cost is the scan's size, so it gets an ETA too.
            bar.disable_steady_tick();
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {percent}% of the voxels decoded and compared  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_length(total as u64);
            bar.reset_eta();
        }
        bar.set_position(voxels as u64);
    }
}

/// What `compress` and `batch` answer in a build without the encoder.
#[cfg(not(feature = "train"))]
fn decoder_only() -> Failure {
    Failure {
        code: exit::USAGE,
        error: anyhow!("this medinr is a decoder only (built without the `train` feature)"),
    }
}

#[cfg(not(feature = "train"))]
fn compress(_: CompressArgs) -> Result<(), Failure> {
    Err(decoder_only())
}

/// The scan to compress: DICOM (a folder, a `.dcm` name or the DICM marker) or NIfTI.
#[cfg(feature = "train")]
fn read_input(path: &Path) -> Result<Volume, VolumeError> {
    if medinr::volume::is_dicom_input(path) {
        medinr::volume::read_dicom(path)
    } else {
        read_nifti(path)
    }
}

/// Reads `--settings` (or the defaults) and applies `--bits-per-parameter` on top.
#[cfg(feature = "train")]
fn encoder_settings(path: Option<&Path>, bits: Option<f64>) -> Result<EncoderSettings, Failure> {
    let mut settings = match path {
        None => EncoderSettings::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Failure {
                code: exit::BAD_INPUT,
                error: anyhow!("cannot read settings {}: {e}", p.display()),
            })?;
            EncoderSettings::from_json(&text).map_err(|e| Failure {
                code: exit::USAGE,
                error: anyhow!("{}: {e}", p.display()),
            })?
        }
    };
    if let Some(bits) = bits {
        settings.rate.bits_per_parameter = bits;
    }
    settings.validate().map_err(|e| Failure {
        code: exit::USAGE,
        error: e.into(),
    })?;
    Ok(settings)
}

/// The rate target and the guarantee from the command line's `[--bpv, --ratio, --psnr]`,
/// `--max-error` and `--lossless` (clap has already refused conflicting combinations).
#[cfg(feature = "train")]
fn target_and_bound(
    t: &TargetArgs,
    settings: &EncoderSettings,
) -> Result<(RateTarget, Option<Bound>), Failure> {
    let (bpv, ratio, psnr, max_error, lossless) = (t.bpv, t.ratio, t.psnr, t.max_error, t.lossless);
    let bound = match (max_error, lossless) {
        (Some(d), _) if !(d.is_finite() && d >= 0.0) => {
            return Err(Failure {
                code: exit::USAGE,
                error: anyhow!("--max-error {d} must be a finite value ≥ 0"),
            })
        }
        (Some(0.0), _) => Some(Bound::Lossless),
        (Some(d), _) => Some(Bound::MaxError(d)),
        (None, true) => Some(Bound::Lossless),
        (None, false) => None,
    };
    let target = match (bpv, ratio, psnr) {
        (Some(b), _, _) => RateTarget::BitsPerVoxel(b),
        (_, Some(r), _) => RateTarget::Ratio(r),
        (_, _, Some(p)) => RateTarget::Psnr(p),
        _ if bound.is_some() => RateTarget::BitsPerVoxel(settings.rate.bounded_field_bpv),
        _ => RateTarget::BitsPerVoxel(0.1),
    };
    Ok((target, bound))
}

/// `--roi-mask` and `--roi-max-error` (clap has already made each require the other): they
/// need `--max-error D` with `D > 0`, and `0 ≤ --roi-max-error ≤ D`. Checked before reading
/// anything.
#[cfg(feature = "train")]
fn check_roi_flags(a: &CompressArgs, bound: Option<Bound>) -> Result<(), Failure> {
    let Some(inner) = a.roi_max_error else {
        return Ok(());
    };
    let usage = |error| {
        Err(Failure {
            code: exit::USAGE,
            error,
        })
    };
    match bound {
        Some(Bound::MaxError(outer)) if !(inner.is_finite() && (0.0..=outer).contains(&inner)) => {
            usage(anyhow!(
                "--roi-max-error {inner} must be a finite value from 0 to --max-error {outer}"
            ))
        }
        Some(Bound::MaxError(_)) => Ok(()),
        Some(Bound::Lossless) => usage(anyhow!(
            "--roi-mask needs a bound above 0 outside the region (--max-error D with D > 0); \
             with --lossless or --max-error 0 the whole scan is already exact"
        )),
        None => usage(anyhow!(
            "--roi-mask needs --max-error (the bound outside the region)"
        )),
    }
}

/// Reads a mask NIfTI for a scan of `shape`: inside where nonzero. It must have the scan's
/// x, y, z shape and either one frame (then it holds for every frame) or the scan's frames.
fn read_mask(path: &Path, shape: [usize; 4]) -> Result<Vec<bool>, Failure> {
    let m = read_nifti(path).with_context(|| format!("reading mask {}", path.display()))?;
    let ms = m.shape();
    if ms[..3] != shape[..3] || (ms[3] != 1 && ms[3] != shape[3]) {
        let frames = if shape[3] > 1 {
            format!(" (or {:?} with one mask per frame)", shape)
        } else {
            String::new()
        };
        return Err(Failure {
            code: exit::BAD_INPUT,
            error: anyhow!(
                "mask {} has shape {:?}; it must be on the scan's grid: {:?}{frames}",
                path.display(),
                ms,
                &shape[..3],
            ),
        });
    }
    Ok(m.data.to_f32().iter().map(|&x| x != 0.0).collect())
}

#[cfg(feature = "train")]
fn compress(a: CompressArgs) -> Result<(), Failure> {
    check_output(&a.output, &[&a.input], a.force, &[])?;
    let settings = encoder_settings(a.settings.as_deref(), a.bits_per_parameter)?;
    let (target, bound) = target_and_bound(&a.target, &settings)?;
    check_roi_flags(&a, bound)?;
    let volume = read_input(&a.input)?;
    let roi = match (&a.roi_mask, a.roi_max_error) {
        (Some(path), Some(max_error)) => Some(RegionOfInterest {
            mask: read_mask(path, volume.shape())?,
            max_error,
        }),
        _ => None,
    };
    let options = EncodeOptions {
        target,
        seed: a.seed,
        effort: a.effort,
        nan_fill: a.nan_fill,
        preset: match (a.levels, a.features, a.hidden) {
            (Some(levels), Some(features), Some((hidden_width, hidden_layers))) => Some(Preset {
                levels,
                features,
                hidden_width,
                hidden_layers,
                ..Preset::default()
            }),
            _ => None,
        },
        settings,
        device: device(a.device)?,
        bound,
        roi,
    };
    let mut progress = Bar::new(!a.quiet && !a.json);
    let encoded = encode(&volume, &options, &mut progress);
    progress.finish();
    let (file, report) = encoded.with_context(|| format!("compressing {}", a.input.display()))?;
    let bytes = file.to_bytes()?;
    write_atomic(&a.output, &bytes, a.force).map_err(|e| write_failure(&a.output, e.into()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !a.quiet {
        let q = &report.quality;
        println!(
            "{} -> {}: {} bytes, {:.4} bpv, ratio {:.1}:1\n  PSNR {:.2} dB  SSIM {:.4}  max abs error {}  MAE {:.3}  (physical units; before quantization {:.2} dB)\n  fit {:.1} s ({} steps), total {:.1} s, {} parameters",
            a.input.display(),
            a.output.display(),
            report.bytes,
            report.bits_per_voxel,
            report.ratio,
            q.psnr_db,
            q.ssim,
            q.max_abs_error,
            q.mae,
            report.unquantized_psnr_db,
            report.fit_seconds,
            report.steps,
            report.total_seconds,
            report.parameters
        );
        if let Some(t) = &report.transform {
            println!(
                "  smallest field + wavelet transform layer ({} bytes, levels {:?}, step {:.4}{}): it beat the field alone and the field plus a residual at this size",
                report.residual_bytes.unwrap_or(0),
                t.levels,
                t.base_step,
                match t.max_error {
                    Some(d) => format!(", every voxel within {d} of the original"),
                    None => String::new(),
                }
            );
        }
        if let Some(h) = &report.lossy_residual {
            println!(
                "  field + residual layer ({} bytes, predicted {}): every voxel within {} of the original{}; it beat the field alone at this size",
                report.residual_bytes.unwrap_or(0),
                if h.uses_field { "from the field" } else { "from decoded neighbours" },
                h.max_error,
                if h.prefix_voxels > 0 {
                    format!(" ({} on the first {} voxels of each frame)", h.max_error - 1.0, h.prefix_voxels)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

fn decompress(a: DecompressArgs) -> Result<(), Failure> {
    check_output(&a.output, &[&a.input], a.force, &[".nii", ".nii.gz"])?;
    check_device(a.device)?;
    let decoder =
        Decoder::open(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let shape = match &a.shape {
        None => None,
        Some(Shape(s)) => {
            let orig = decoder.shape();
            let mut full = [s[0], s[1], s[2], orig[3]];
            if s.len() == 4 {
                full[3] = s[3];
            }
            Some(full)
        }
    };
    if decoder.has_residual()
        && !decoder.has_transform()
        && shape.is_some_and(|s| s != decoder.shape())
    {
        eprintln!(
            "medinr: note: {} carries a residual layer for its original grid only; on another \
             grid it decodes the field alone, without the error bound",
            a.input.display()
        );
    }
    if let Some((start, mut end)) = a.roi {
        if end[3] == usize::MAX {
            end[3] = decoder.shape()[3];
        }
        let volume = decoder.decode_box(start, end)?;
        return finish_decompress(&a, &volume);
    }
    if let Some(reference) = &a.like {
        let r =
            read_nifti(reference).with_context(|| format!("reading {}", reference.display()))?;
        if decoder.has_residual() && !decoder.has_transform() {
            eprintln!(
                "medinr: note: resampling decodes the field alone; the residual layer's bound \
                 holds on the original grid only"
            );
        }
        let volume = decoder.resample_like(&r.header)?;
        return finish_decompress(&a, &volume);
    }
    let own_grid = shape.is_none();
    let volume = decoder.decode(shape).map_err(|e| {
        let mut f = Failure::from(e);
        // Too large on the file's own grid is the file's doing, not the command line's.
        if own_grid && f.code == exit::USAGE {
            f.code = exit::BAD_INPUT;
        }
        f
    })?;
    finish_decompress(&a, &volume)
}

/// Writes a decoded volume and says so.
fn finish_decompress(a: &DecompressArgs, volume: &Volume) -> Result<(), Failure> {
    write_nifti(&a.output, volume, a.force).map_err(|e| write_failure(&a.output, e.into()))?;
    if !a.quiet {
        let s = volume.shape();
        eprintln!(
            "wrote {}: {}×{}×{}×{} {}",
            a.output.display(),
            s[0],
            s[1],
            s[2],
            s[3],
            volume.header.datatype().name()
        );
    }
    Ok(())
}

fn slice(a: SliceArgs) -> Result<(), Failure> {
    check_output(
        &a.output,
        &[&a.input],
        a.force,
        &[".png", ".nii", ".nii.gz"],
    )?;
    check_device(a.device)?;
    let decoder =
        Decoder::open(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    if a.center.is_some() || a.points.is_some() {
        return oblique(&a, &decoder);
    }
    let shape = decoder.shape();
    let axis = a.axis as usize;
    let index = a.index.unwrap_or(shape[axis] / 2);
    let region = Region::Slice {
        axis,
        index,
        frame: a.frame,
    };
    let (values, out_shape) = decoder.region(shape, region)?;
    write_plane(&a, &decoder, values, out_shape, axis, || {
        render::slice_header(decoder.header(), axis, index, a.frame)
    })?;
    if !a.quiet {
        let plane: Vec<String> = (0..3)
            .filter(|&k| k != axis)
            .map(|k| out_shape[k].to_string())
            .collect();
        eprintln!(
            "wrote {}: slice {index} on axis {} of frame {} ({})",
            a.output.display(),
            ["x", "y", "z"][axis],
            a.frame,
            plane.join("×")
        );
    }
    Ok(())
}

/// Writes a decoded plane (`shape` with a 1 on `axis`) as an 8-bit PNG windowed by
/// `--window` (default: the scan's range), or as NIfTI with the header `header` makes.
fn write_plane(
    a: &SliceArgs,
    decoder: &Decoder,
    values: Vec<f32>,
    shape: [usize; 4],
    axis: usize,
    header: impl FnOnce() -> Result<medinr::volume::Header, VolumeError>,
) -> Result<(), Failure> {
    let name = a.output.to_string_lossy().to_lowercase();
    if name.ends_with(".png") {
        let head = &decoder.file().head;
        let (lo, hi) = match a.window {
            Some((c, w)) => (c - w / 2.0, c + w / 2.0),
            None => (head.value_min, head.value_max),
        };
        let (w, h, pixels) = render::slice_pixels(&values, shape, axis, lo, hi);
        let png = render::encode_png(w, h, &pixels)?;
        write_atomic(&a.output, &png, a.force).map_err(|e| write_failure(&a.output, e.into()))?;
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        let header = header()?;
        let volume = Volume {
            data: Voxels::from_f32(values, header.datatype()),
            header,
        };
        write_nifti(&a.output, &volume, a.force).map_err(|e| write_failure(&a.output, e.into()))?;
    } else {
        return Err(Failure {
            code: exit::USAGE,
            error: anyhow!(
                "output {} must end in .png, .nii or .nii.gz",
                a.output.display()
            ),
        });
    }
    Ok(())
}

/// `slice --center/--normal` or `--points`: a plane in world space, the field alone.
fn oblique(a: &SliceArgs, decoder: &Decoder) -> Result<(), Failure> {
    let spacing = a.spacing.unwrap_or_else(|| {
        let s = decoder.header().spacing();
        s[..3]
            .iter()
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min)
    });
    let plane = match (a.center, a.normal, a.points) {
        (Some(c), Some(n), _) => {
            let (w, h) = a.size.unwrap_or((256, 256));
            Plane::through(decoder.header(), c, n, w, h, spacing)?
        }
        (_, _, Some(p)) => Plane::from_points(p, spacing)?,
        _ => {
            return Err(Failure {
                code: exit::USAGE,
                error: anyhow!("an oblique plane needs --center and --normal, or --points"),
            })
        }
    };
    let values = decoder.plane(&plane, a.frame)?;
    let (w, h) = (plane.width, plane.height);
    write_plane(a, decoder, values, [w, h, 1, 1], 2, || {
        render::plane_header(decoder.header(), &plane)
    })?;
    if !a.quiet {
        eprintln!(
            "wrote {}: oblique plane {w}×{h} at {spacing} mm of frame {} ({})",
            a.output.display(),
            a.frame,
            if decoder.has_transform() {
                "interpolated from the decoded scan"
            } else if decoder.has_residual() {
                "the field alone; the residual layer's bound holds on the original grid only"
            } else {
                "the field alone"
            }
        );
    }
    Ok(())
}

fn info(a: InfoArgs) -> Result<(), Failure> {
    let bytes = std::fs::read(&a.input).map_err(|e| Failure {
        code: exit::BAD_INPUT,
        error: anyhow!("cannot read {}: {e}", a.input.display()),
    })?;
    let (file, header) =
        Decoder::describe(&bytes).with_context(|| format!("reading {}", a.input.display()))?;
    let summary = render::summary(&file, &header, &bytes)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render::summary_text(&summary));
    }
    Ok(())
}

fn compare(a: CompareArgs) -> Result<(), Failure> {
    let r =
        read_nifti(&a.reference).with_context(|| format!("reading {}", a.reference.display()))?;
    let t = read_nifti(&a.test).with_context(|| format!("reading {}", a.test.display()))?;
    if r.shape() != t.shape() {
        return Err(Failure {
            code: exit::BAD_INPUT,
            error: anyhow!("shapes differ: {:?} vs {:?}", r.shape(), t.shape()),
        });
    }
    let shape = r.shape();
    let mask = match &a.mask {
        Some(path) => Some(read_mask(path, shape)?),
        None => None,
    };
    let frame = shape[0] * shape[1] * shape[2];
    let physical = |v: &Volume| {
        metrics::physical(&v.data.to_f32(), v.header.scl_slope(), v.header.scl_inter())
    };
    let (pr, pt) = (physical(&r), physical(&t));
    let c = metrics::compare(&pr, &pt, shape)?;
    let regions = match &mask {
        Some(m) => Some(metrics::compare_regions(&pr, &pt, shape, m)?),
        None => None,
    };
    // The time-series figures take a one-frame mask as their foreground; a mask per frame
    // leaves them on the automatic one.
    let foreground = mask.as_deref().filter(|m| m.len() == frame);
    let ts = if shape[3] >= 2 {
        Some(metrics::compare_timeseries(&pr, &pt, shape, foreground)?)
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&c)?;
        if let (Some(ts), Some(obj)) = (&ts, v.as_object_mut()) {
            obj.insert("timeseries".into(), serde_json::to_value(ts)?);
        }
        if let (Some(regions), Some(obj)) = (&regions, v.as_object_mut()) {
            obj.insert("mask".into(), serde_json::to_value(regions)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "PSNR {:.3} dB (range {})  SSIM {:.5}  max abs error {}  MAE {:.4}  RMSE {:.4}  ({} voxels, physical units)",
            c.psnr_db, c.data_range, c.ssim, c.max_abs_error, c.mae, c.rmse, c.voxels
        );
        if let Some(regions) = &regions {
            print!("{}", regions_text(regions));
        }
        if let Some(ts) = &ts {
            print!("{}", timeseries_text(ts));
        }
    }
    Ok(())
}

/// What a compressed file must achieve: one rate target, optionally a guarantee.
#[derive(Args)]
struct TargetArgs {
    /// Target rate in bits per voxel (default 0.1 when no target is given).
    #[arg(long, conflicts_with_all = ["ratio", "psnr"])]
    bpv: Option<f64>,
    /// Target compression ratio against the stored data size.
    #[arg(long, conflicts_with = "psnr")]
    ratio: Option<f64>,
    /// Target PSNR in dB (on the scan's own value range).
    #[arg(long)]
    psnr: Option<f64>,
    /// Guarantee |decoded − original| ≤ D for every voxel, D in stored units (integer scans
    /// use ⌊D⌋): the field plus a coded residual. A rate flag then sets the field's share.
    #[arg(long, conflicts_with_all = ["lossless", "psnr"])]
    max_error: Option<f64>,
    /// Decode to exactly the original voxels (the field plus a coded residual).
    #[arg(long, conflicts_with = "psnr")]
    lossless: bool,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
struct BatchArgs {
    /// A folder (its .nii / .nii.gz / .dcm files, and each sub-folder holding DICOM files as
    /// one series) or a manifest (one path per line, relative to the manifest's folder;
    /// # comments).
    source: PathBuf,
    /// Output folder for the .minr files, the journal (medinr-batch.jsonl) and the summary
    /// (medinr-batch.csv); created if missing.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Multiplies the number of optimisation steps.
    #[arg(long, default_value_t = 1.0)]
    effort: f64,
    /// Seed of every fit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Encoder settings as JSON (see compress --help).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// This process's share of the list, I/N (0-based); default from SLURM_ARRAY_TASK_ID,
    /// SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT in a Slurm job array, else all.
    #[arg(long)]
    shard: Option<String>,
    /// Only the per-scan lines, no per-scan progress.
    #[arg(short, long)]
    quiet: bool,
}

#[cfg(not(feature = "train"))]
fn batch(_: BatchArgs) -> Result<(), Failure> {
    Err(decoder_only())
}

#[cfg(feature = "train")]
fn batch(a: BatchArgs) -> Result<(), Failure> {
    use medinr::batch::{plan, Entry, Journal, Shard, SUMMARY};
    use std::time::Instant;
    let usage = |e: medinr::batch::BatchError| Failure {
        code: exit::USAGE,
        error: e.into(),
    };
    let shard = match &a.shard {
        Some(s) => Shard::parse(s).map_err(usage)?,
        None => Shard::from_slurm(|k| std::env::var(k).ok())
            .map_err(usage)?
            .unwrap_or(Shard::ALL),
    };
    let settings = encoder_settings(a.settings.as_deref(), None)?;
    let (target, bound) = target_and_bound(&a.target, &settings)?;
    if !(a.effort.is_finite() && a.effort > 0.0) {
        return Err(Failure {
            code: exit::USAGE,
            error: anyhow!("--effort {} must be positive and finite", a.effort),
        });
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Failure {
        code: exit::FAILURE,
        error: anyhow!("cannot create {}: {e}", a.out.display()),
    })?;
    let jobs = plan(&a.source, &a.out, shard).map_err(|e| Failure {
        code: exit::BAD_INPUT,
        error: e.into(),
    })?;
    let mut journal = Journal::open(&a.out)?;
    let options = EncodeOptions {
        target,
        seed: a.seed,
        effort: a.effort,
        nan_fill: None,
        preset: None,
        settings,
        device: Device::Cpu,
        bound,
        roi: None,
    };
    let total = jobs.len();
    let start = Instant::now();
    let (mut compressed, mut failed) = (0usize, 0usize);
    for (k, job) in jobs.iter().enumerate() {
        let label = format!("[{}/{total}] {}", k + 1, job.input.display());
        if journal.done(job).is_some() {
            eprintln!("{label}: done earlier");
            continue;
        }
        // Written but not journalled (killed between the two): check it and record it.
        if let Ok(bytes) = std::fs::read(&job.output) {
            if let Ok((_, header)) = Decoder::describe(&bytes) {
                let voxels = header.voxel_count() as f64;
                journal.record(Entry {
                    input: job.input.display().to_string(),
                    output: job.output.display().to_string(),
                    bytes: bytes.len() as u64,
                    bits_per_voxel: bytes.len() as f64 * 8.0 / voxels.max(1.0),
                    psnr_db: None,
                    max_abs_error: None,
                    seconds: 0.0,
                })?;
                eprintln!("{label}: found complete from an interrupted run");
                continue;
            }
        }
        let t = Instant::now();
        let result = read_input(&job.input)
            .map_err(anyhow::Error::from)
            .and_then(|v| encode(&v, &options, &mut medinr::encoder::Silent).map_err(Into::into))
            .and_then(|(file, report)| {
                let bytes = file.to_bytes()?;
                write_atomic(&job.output, &bytes, true)?;
                Ok(report)
            });
        match result {
            Ok(report) => {
                journal.record(Entry {
                    input: job.input.display().to_string(),
                    output: job.output.display().to_string(),
                    bytes: report.bytes as u64,
                    bits_per_voxel: report.bits_per_voxel,
                    psnr_db: Some(report.quality.psnr_db),
                    max_abs_error: Some(report.quality.max_abs_error),
                    seconds: t.elapsed().as_secs_f64(),
                })?;
                compressed += 1;
                let left = jobs.len() - k - 1;
                let per = start.elapsed().as_secs_f64() / compressed as f64;
                eprintln!(
                    "{label}: {:.4} bpv, PSNR {:.2} dB, {:.1} s (ETA {:.0} s for {left} more)",
                    report.bits_per_voxel,
                    report.quality.psnr_db,
                    t.elapsed().as_secs_f64(),
                    per * left as f64
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{label}: failed: {e:#}");
            }
        }
    }
    let summary = a.out.join(SUMMARY);
    write_atomic(&summary, journal.csv().as_bytes(), true)
        .map_err(|e| write_failure(&summary, e.into()))?;
    if !a.quiet {
        eprintln!(
            "batch: {compressed} compressed, {} done earlier, {failed} failed; summary {}",
            total - compressed - failed,
            summary.display()
        );
    }
    if failed > 0 {
        return Err(Failure {
            code: exit::FAILURE,
            error: anyhow!("{failed} of {total} scans failed (run again to retry them)"),
        });
    }
    Ok(())
}

/// The inside/outside figures of `compare --mask` as text lines.
fn regions_text(c: &metrics::RegionComparison) -> String {
    let line = |name: &str, side: &Option<metrics::RegionStats>| match side {
        Some(r) => format!(
            "{name} mask: PSNR {:.3} dB  max abs error {}  MAE {:.4}  RMSE {:.4}  ({} voxels)\n",
            r.psnr_db, r.max_abs_error, r.mae, r.rmse, r.voxels
        ),
        None => format!("{name} mask: no voxel\n"),
    };
    line("inside ", &c.inside) + &line("outside", &c.outside)
}

/// The time-series figures of `compare` as text lines (undefined figures say why).
fn timeseries_text(ts: &metrics::TimeSeriesComparison) -> String {
    let opt = |x: Option<f64>, why: &str| match x {
        Some(v) => format!("{v:.4}"),
        None => format!("undefined ({why})"),
    };
    let few = format!(
        "needs ≥ {} frames",
        metrics::timeseries::MIN_FRAMES_FOR_CORRELATION
    );
    let fc_why = if ts.frames < metrics::timeseries::MIN_FRAMES_FOR_CORRELATION {
        few.clone()
    } else {
        format!("{} regions, or a flat course", ts.fc_regions)
    };
    let (lo, hi) = ts
        .per_frame_psnr_db
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    let source = match ts.mask_source {
        metrics::MaskSource::Automatic => "automatic",
        metrics::MaskSource::Given => "given",
    };
    format!(
        "time series ({} frames, {} mask, {} voxels):\n\
         \x20 PSNR {:.3} dB vs temporal-mean baseline {:.3} dB (whole array); in mask {:.3} vs {:.3} dB\n\
         \x20 median time-course correlation {}  ({} flat decoded, {} flat original voxels)\n\
         \x20 median tSNR ratio (decoded/original) {}\n\
         \x20 FC correlation ({} blocks of {}³) {}\n\
         \x20 per-frame PSNR {:.3} .. {:.3} dB\n",
        ts.frames,
        source,
        ts.mask_voxels,
        ts.psnr_db,
        ts.temporal_mean_psnr_db,
        ts.mask_psnr_db,
        ts.mask_temporal_mean_psnr_db,
        opt(ts.median_ts_correlation, &few),
        ts.flat_decoded_voxels,
        ts.flat_reference_voxels,
        opt(ts.median_tsnr_ratio, "no fluctuating voxel"),
        ts.fc_regions,
        metrics::timeseries::FC_BLOCK,
        opt(ts.fc_correlation, &fc_why),
        lo,
        hi,
    )
}
