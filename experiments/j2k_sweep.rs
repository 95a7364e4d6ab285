//! Rate–distortion sweep of the per-slice JPEG 2000 baseline on one scan.
//!
//! ```text
//! j2k_sweep <scan.nii[.gz]> --bpv 0.05,0.1,0.25,0.5 [--lossless]
//! ```
//!
//! Codes every axial slice at each target rate (irreversible 9/7) and, with
//! `--lossless`, once more with the reversible 5/3 wavelet, then prints size,
//! quality (PSNR on the scan's own range, SSIM) and timings. The full study against medinr,
//! with tables and plots, is `rd` (experiments/rd.rs).

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use medinr::metrics;
use medinr::study::{code_volume, J2kMode};
use medinr::volume::read_nifti;

const USAGE: &str = "usage: j2k_sweep <scan.nii[.gz]> --bpv 0.05,0.1,0.25,0.5 [--lossless]";

struct Args {
    path: PathBuf,
    rates: Vec<f64>,
    lossless: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut path = None;
    let mut rates = Vec::new();
    let mut lossless = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bpv" => {
                let list = it.next().ok_or("--bpv needs a comma-separated list")?;
                for r in list.split(',').filter(|s| !s.is_empty()) {
                    let v: f64 = r.trim().parse().map_err(|_| format!("bad rate {r:?}"))?;
                    rates.push(v);
                }
            }
            "--lossless" => lossless = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => {
                if path.replace(PathBuf::from(s)).is_some() {
                    return Err(format!("only one scan, please\n{USAGE}"));
                }
            }
        }
    }
    let path = path.ok_or(USAGE)?;
    if rates.is_empty() && !lossless {
        return Err(format!("nothing to do\n{USAGE}"));
    }
    Ok(Args {
        path,
        rates,
        lossless,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    // Stored values (before scl_slope/scl_inter), as `rd` and `medinr compare` use them.
    let volume = read_nifti(&args.path)?;
    let shape = volume.shape();
    let datatype = volume.header.datatype();
    let voxels = volume.data.len();
    let range = metrics::data_range(&volume.data.to_f32());
    let is_integer = datatype.is_integer() && range < 65536.0;
    println!(
        "{}: shape {:?}, {}{}, {} voxels, range {} (PSNR peak), {} slices coded as J2K codestreams",
        args.path.display(),
        shape,
        datatype.name(),
        if is_integer {
            ""
        } else {
            " (quantised to 16 bits)"
        },
        voxels,
        range,
        shape[2] * shape[3],
    );
    println!(
        "{:>10} {:>10} {:>11} {:>9} {:>8} {:>9} {:>8} {:>8} {:>5}",
        "target_bpv", "actual_bpv", "bytes", "psnr_db", "ssim", "max_abs", "enc_s", "dec_s", "bits"
    );
    let modes = args
        .rates
        .iter()
        .map(|&bpv| J2kMode::Lossy { bpv })
        .chain(args.lossless.then_some(J2kMode::Lossless));
    for mode in modes {
        let r = code_volume(&volume.data.to_f32(), shape, is_integer, mode)?;
        let c = metrics::compare(&volume.data.to_f32(), &r.decoded, shape)?;
        let target = match mode {
            J2kMode::Lossy { bpv } => format!("{bpv}"),
            J2kMode::Lossless => "lossless".into(),
        };
        println!(
            "{:>10} {:>10.4} {:>11} {:>9.3} {:>8.5} {:>9.1} {:>8.3} {:>8.3} {:>5}",
            target,
            r.bits_per_voxel(),
            r.bytes,
            c.psnr_db,
            c.ssim,
            c.max_abs_error,
            r.encode_seconds,
            r.decode_seconds,
            r.bits_per_sample,
        );
    }
    Ok(())
}
