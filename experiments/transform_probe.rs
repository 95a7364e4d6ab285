//! Transform-layer probe: rate and distortion of the wavelet subband coder on whole scans.
//!
//! ```text
//! cargo run --release --bin transform_probe -- [--steps 4,8,16] [--chunk-z N]
//!     [--levels LX,LY,LZ] [--rounding R] [--outlier-sigmas K] [--outlier-share S] [--outliers]
//!     [--stream-version 3|4] scan.nii.gz ...
//! ```
//!
//! Each scan is coded as a transform stream with no field (`residual::encode_transform`):
//! chunks of `chunk-z` slices per frame, each transformed (CDF 9/7, `levels` per axis),
//! quantized with the base step weighted per band by its synthesis energy and coded; then
//! decoded again; `--stream-version 3` codes the high bands with version 3's models (no
//! sign or parent contexts) for comparison. Prints one Markdown row per step: bits per voxel of the stream (header,
//! band tables and all), PSNR on the scan's range, maximum error, encode and decode seconds.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use medinr::residual::{self, Contexts, Kind, Options, OutlierBound, TransformOptions};
use medinr::volume::read_nifti;

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(s.split(',')
        .map(|v| v.parse::<T>())
        .collect::<Result<_, _>>()?)
}

fn main() -> Result<()> {
    let mut steps: Vec<f64> = vec![2.0, 4.0, 8.0, 16.0, 32.0];
    let mut chunk_z = 16usize;
    let mut levels = vec![5u8, 5, 1];
    let mut rounding = 0.5f64;
    let mut outliers = false;
    let mut sigmas = 0.0f64;
    let mut share = 0.01f64;
    let mut contexts = Contexts::ActivityParentSigns;
    let mut scans = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--steps" => steps = list(&value()?)?,
            "--chunk-z" => chunk_z = value()?.parse()?,
            "--levels" => levels = list(&value()?)?,
            "--rounding" => rounding = value()?.parse()?,
            "--outliers" => outliers = true,
            "--outlier-sigmas" => sigmas = value()?.parse()?,
            "--outlier-share" => share = value()?.parse()?,
            "--stream-version" => {
                contexts = match value()?.as_str() {
                    "3" => Contexts::Activity,
                    "4" => Contexts::ActivityParentSigns,
                    v => bail!("--stream-version takes 3 or 4, not {v}"),
                }
            }
            _ if arg.starts_with("--") => bail!("unknown option {arg}"),
            _ => scans.push(PathBuf::from(arg)),
        }
    }
    println!("| scan | chunk z | levels | rounding | step | bpv | PSNR dB | max error | encode s | decode s |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for scan in &scans {
        let vol = read_nifti(scan).with_context(|| format!("reading {}", scan.display()))?;
        let [nx, ny, nz, nt] = vol.shape();
        let orig = vol.data.to_f32();
        let (lo, hi) = vol.data.finite_range().context("no finite voxels")?;
        let kind = Kind::Integer {
            min: lo.round() as i64,
            max: hi.round() as i64,
        };
        let transform = |base_step: f64| TransformOptions {
            levels: [levels[0], levels[1], levels[2]],
            base_step,
            rounding,
            outliers: if sigmas > 0.0 {
                OutlierBound::Tail { sigmas, share }
            } else {
                OutlierBound::None
            },
            contexts,
        };
        let options = Options {
            chunk_z: chunk_z.min(nz),
            chunk_t: 1,
        };
        let shape = [nx, ny, nz, nt];
        for &step in &steps {
            let t0 = Instant::now();
            let data: &[f32] = &orig;
            let stream =
                residual::encode_transform(&data, None, shape, kind, &transform(step), &options)?;
            let enc_s = t0.elapsed().as_secs_f64();
            let bytes = stream.len();
            let t1 = Instant::now();
            let decoded = residual::decode(&stream, None)?;
            let dec_s = t1.elapsed().as_secs_f64();
            let (mut se, mut maxe) = (0.0f64, 0.0f64);
            for (r, o) in decoded.iter().zip(&orig) {
                let e = (r - o) as f64;
                se += e * e;
                maxe = maxe.max(e.abs());
            }
            let n = orig.len() as f64;
            let range = (hi - lo) as f64;
            let psnr = 10.0 * (range * range / (se / n)).log10();
            let name = scan.file_name().unwrap_or_default().to_string_lossy();
            println!(
                "| {name} | {chunk_z} | {levels:?} | {rounding} | {step} | {:.4} | {psnr:.2} | {maxe} | {enc_s:.1} | {dec_s:.1} |",
                bytes as f64 * 8.0 / n
            );
            if outliers {
                // Voxels beyond multiples of the RMSE: what an outlier list would carry.
                let rmse = (se / n).sqrt();
                let counts: Vec<String> = [3.0, 4.0, 5.0, 6.0, 8.0]
                    .iter()
                    .map(|k| {
                        let t = k * rmse;
                        let c = decoded
                            .iter()
                            .zip(&orig)
                            .filter(|(r, o)| ((*r - *o) as f64).abs() > t)
                            .count();
                        format!("{k}σ={t:.1}: {c}")
                    })
                    .collect();
                println!("  outliers: {}", counts.join(", "));
            }
        }
    }
    Ok(())
}
