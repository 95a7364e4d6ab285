//! Residual-layer probe: bits per voxel of the residual coder, alone and on top of a field.
//!
//! ```text
//! cargo run --release --bin residual_probe -- [--minr-dir DIR] [--rates 0.05,0.2]
//!     [--bounds 0,1,2,4,5,12,16] [--chunk-z N] [--chunk-t N] [scan.nii.gz ...]
//! ```
//!
//! For each scan (default: Colin27, the chest CT, and the rapidtide resting-state fMRI when
//! `../shared/data` has it) and each field — none (causal prediction only), and
//! `<minr-dir>/<scan stem>_<rate>.minr` for each rate that exists — the scan is coded with
//! every bound (0 = lossless), decoded again, and checked: the run fails if any decoded value
//! is further than the bound from the original. Prints one Markdown table row per case:
//! field bpv (the .minr file), residual bpv, their total, the maximum error, and encode and
//! decode speed of the residual layer (field evaluation not included).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

#[path = "default_scans.rs"]
mod default_scans;
use medinr::decoder::Decoder;
use medinr::residual::{self, Kind, Mode, Options};
use medinr::volume::read_nifti;

struct Args {
    minr_dir: PathBuf,
    rates: Vec<String>,
    bounds: Vec<f64>,
    options: Options,
    scans: Vec<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        minr_dir: PathBuf::from("/tmp/rminr"),
        rates: vec!["0.05".into(), "0.2".into()],
        bounds: vec![0.0, 1.0, 2.0, 4.0, 5.0, 12.0, 16.0],
        options: Options::default(),
        scans: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--minr-dir" => a.minr_dir = value()?.into(),
            "--rates" => a.rates = value()?.split(',').map(String::from).collect(),
            "--bounds" => {
                a.bounds = value()?
                    .split(',')
                    .map(|s| s.parse::<f64>())
                    .collect::<Result<_, _>>()?
            }
            "--chunk-z" => a.options.chunk_z = value()?.parse()?,
            "--chunk-t" => a.options.chunk_t = value()?.parse()?,
            _ if arg.starts_with("--") => bail!("unknown option {arg}"),
            _ => a.scans.push(arg.into()),
        }
    }
    if a.scans.is_empty() {
        a.scans = default_scans::default_scans(true);
    }
    Ok(a)
}

fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.trim_end_matches(".gz")
        .trim_end_matches(".nii")
        .to_string()
}

fn probe(args: &Args) -> Result<()> {
    println!("| scan | field | bound D | field bpv | residual bpv | total bpv | max error | encode Mvox/s | decode Mvox/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for scan in &args.scans {
        let vol = read_nifti(scan).with_context(|| format!("reading {}", scan.display()))?;
        let shape = vol.shape();
        let voxels = vol.data.len() as f64;
        let kind = Kind::of(vol.header.datatype());
        let mut fields: Vec<(String, f64, Option<Vec<f32>>)> = vec![("none".into(), 0.0, None)];
        for rate in &args.rates {
            let path = args.minr_dir.join(format!("{}_{rate}.minr", stem(scan)));
            if !path.exists() {
                continue;
            }
            let decoder =
                Decoder::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let bpv = decoder.file_bytes() as f64 * 8.0 / voxels;
            let pred = decoder.decode(None)?.data.to_f32();
            fields.push((format!("{rate} bpv"), bpv, Some(pred)));
        }
        for (name, field_bpv, pred) in &fields {
            for &d in &args.bounds {
                let mode = if d == 0.0 {
                    Mode::Lossless
                } else {
                    Mode::Bound { max_error: d }
                };
                let t0 = Instant::now();
                let bytes = residual::encode_with(
                    &vol.data.to_f32(),
                    pred.as_deref(),
                    shape,
                    mode,
                    kind,
                    &args.options,
                )?;
                let enc_s = t0.elapsed().as_secs_f64();
                let t1 = Instant::now();
                let back = residual::decode(&bytes, pred.as_deref())?;
                let dec_s = t1.elapsed().as_secs_f64();
                let max_err = vol
                    .data
                    .to_f32()
                    .iter()
                    .zip(&back)
                    .map(|(&a, &b)| (a as f64 - b as f64).abs())
                    .fold(0.0, f64::max);
                if max_err > d {
                    bail!(
                        "{}: max error {max_err} exceeds the bound {d}",
                        scan.display()
                    );
                }
                let res_bpv = bytes.len() as f64 * 8.0 / voxels;
                println!(
                    "| {} | {name} | {} | {field_bpv:.3} | {res_bpv:.3} | {:.3} | {max_err} | {:.1} | {:.1} |",
                    stem(scan),
                    if d == 0.0 { "lossless".to_string() } else { d.to_string() },
                    field_bpv + res_bpv,
                    voxels / enc_s / 1e6,
                    voxels / dec_s / 1e6,
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| probe(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("residual_probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
