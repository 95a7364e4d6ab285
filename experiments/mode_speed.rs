//! Encode and decode times of the fidelity modes side by side, from one run: the lossy field
//! alone at a size target, the encoder's default there (which may add a residual layer), a
//! worst-case error bound, and lossless, on each scan.
//!
//! ```text
//! cargo run --release --bin mode_speed -- [--effort 0.2] [--bpv 1] [--max-error 5]
//!     [scan.nii.gz ...]          (default: Colin27 and the chest CT in data/)
//! ```
//!
//! Per scan and mode: the encoder's whole `encode` call (fit, rate search, residual layer,
//! its own check), the file's size, then `Decoder::from_bytes` + the whole scan decoded, and
//! the middle axial slice of the first frame decoded on its own (the decoder already open),
//! each timed; quality (PSNR, max abs error) of the decoded scan against the original. Every
//! row of one run shares the machine's state, so the ratios between rows are what to read;
//! absolute times move with the machine's load. Prints a Markdown table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

#[path = "default_scans.rs"]
mod default_scans;
use medinr::decoder::{Decoder, Region};
use medinr::encoder::{encode, Bound, EncodeOptions, RateTarget, Silent};
use medinr::metrics;
use medinr::volume::read_nifti;

struct Args {
    effort: f64,
    bpv: f64,
    max_error: f64,
    scans: Vec<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        effort: 0.2,
        bpv: 1.0,
        max_error: 5.0,
        scans: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--effort" => a.effort = value()?.parse()?,
            "--bpv" => a.bpv = value()?.parse()?,
            "--max-error" => a.max_error = value()?.parse()?,
            _ if arg.starts_with("--") => bail!("unknown option {arg}"),
            _ => a.scans.push(arg.into()),
        }
    }
    if a.scans.is_empty() {
        a.scans = default_scans::default_scans(false);
    }
    Ok(a)
}

/// One mode of one run: its label and options.
fn modes(a: &Args) -> Vec<(String, EncodeOptions)> {
    let base = EncodeOptions {
        effort: a.effort,
        ..Default::default()
    };
    let field_share = RateTarget::BitsPerVoxel(base.settings.rate.bounded_field_bpv);
    let mut field_alone = base.clone();
    field_alone.target = RateTarget::BitsPerVoxel(a.bpv);
    field_alone.settings.rate.lossy_residual = false;
    field_alone.settings.transform.enabled = false;
    vec![
        (format!("lossy --bpv {}, field alone", a.bpv), field_alone),
        (
            format!("lossy --bpv {}", a.bpv),
            EncodeOptions {
                target: RateTarget::BitsPerVoxel(a.bpv),
                ..base.clone()
            },
        ),
        (
            format!("--max-error {}", a.max_error),
            EncodeOptions {
                target: field_share,
                bound: Some(Bound::MaxError(a.max_error)),
                ..base.clone()
            },
        ),
        (
            "--lossless".into(),
            EncodeOptions {
                target: field_share,
                bound: Some(Bound::Lossless),
                ..base
            },
        ),
    ]
}

fn run(a: &Args) -> Result<()> {
    println!(
        "| scan | mode | bpv | PSNR dB | max abs err | encode s | decode s | Mvox/s decoded | axial slice ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for path in &a.scans {
        let volume = read_nifti(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shape = volume.shape();
        let voxels: usize = shape.iter().product();
        let original = volume.data.to_f32();
        for (label, options) in modes(a) {
            let t = Instant::now();
            let (file, report) = encode(&volume, &options, &mut Silent)
                .with_context(|| format!("{name} {label}"))?;
            // What the encoder kept for a lossy target, so the row says what it times.
            let label = match (&report.transform, &report.lossy_residual, options.bound) {
                (_, _, Some(_)) => label,
                (Some(_), _, None) => format!("{label} (kept: wavelet transform layer)"),
                (None, Some(h), None) => {
                    format!(
                        "{label} (kept: field + residual, max error {})",
                        h.max_error
                    )
                }
                (None, None, None) => label,
            };
            let encode_s = t.elapsed().as_secs_f64();
            let bytes = file.to_bytes()?;
            let t = Instant::now();
            let decoder = Decoder::from_bytes(&bytes)?;
            let decoded = decoder.decode(None)?;
            let decode_s = t.elapsed().as_secs_f64();
            let slice = Region::Slice {
                axis: 2,
                index: shape[2] / 2,
                frame: 0,
            };
            let t = Instant::now();
            decoder.region(shape, slice)?;
            let slice_ms = t.elapsed().as_secs_f64() * 1e3;
            let q = metrics::compare(&original, &decoded.data.to_f32(), shape)?;
            if let Some(Bound::MaxError(d)) = options.bound {
                if q.max_abs_error > d {
                    bail!(
                        "{name} {label}: max error {} over the bound",
                        q.max_abs_error
                    );
                }
            }
            if options.bound == Some(Bound::Lossless) && q.max_abs_error != 0.0 {
                bail!(
                    "{name} {label}: not lossless (max error {})",
                    q.max_abs_error
                );
            }
            let psnr = if q.psnr_db.is_finite() {
                format!("{:.2}", q.psnr_db)
            } else {
                "∞".into()
            };
            println!(
                "| {name} | {label} | {:.4} | {psnr} | {} | {encode_s:.1} | {decode_s:.2} | {:.1} | {slice_ms:.1} |",
                bytes.len() as f64 * 8.0 / voxels as f64,
                q.max_abs_error,
                voxels as f64 / decode_s / 1e6,
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mode_speed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
