//! The large-4D benchmark: `medinr compress` on a series of about 10^9 voxels, with its peak
//! memory against the raw size, wall time, rate and quality.
//!
//! No long 4D series ships with any public package we found, so one is derived from a real
//! 3D scan and says so: every frame is the scan moved by a small rigid motion (sub-millimetre
//! translations, a fraction of a degree about z, slow and smooth as head motion in a good
//! fMRI run), with a slow signal drift, a smooth block-design "activation" in one blob, and
//! a little white noise, stored as i16 in an uncompressed `.nii` written frame by frame.
//!
//! ```text
//! cargo build --release --bin medinr --bin large_series
//! target/release/large_series --source ../shared/data/mri_t1_colin27_1mm.nii.gz \
//!     --frames 141 --work /tmp/medinr-large --bpv 0.05 [--effort 1] [--out results/large_series] \
//!     [--medinr target/release/medinr]
//! ```
//!
//! It runs the real CLI (`target/release/medinr compress --json`) under `/usr/bin/time -v`
//! for the peak resident set size, then measures the file: the compress report's PSNR, SSIM
//! and worst error (the encoder's own self-check over every voxel), the temporal-mean
//! baseline's PSNR on the whole series, and the time-series figures (`docs/METRICS.md`) on a
//! central box decoded from the file alone (`Decoder::decode_box`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use medinr::decoder::Decoder;
use medinr::metrics;
use medinr::volume::{read_nifti, DataType, Header, Volume, Voxels};

/// How the series is derived from the source scan (documented in the results).
mod derivation {
    /// Peak translation per axis, in voxels (1 mm voxels: millimetres).
    pub const TRANSLATION_VOXELS: [f64; 3] = [0.6, 0.4, 0.3];
    /// Periods of the translations, in frames (incommensurate, so the path never repeats).
    pub const TRANSLATION_PERIODS: [f64; 3] = [47.0, 31.0, 71.0];
    /// Peak rotation about z, in degrees, and its period in frames.
    pub const ROTATION_DEGREES: f64 = 0.3;
    pub const ROTATION_PERIOD: f64 = 53.0;
    /// Signal drift over the whole run (fraction of the signal).
    pub const DRIFT: f64 = 0.01;
    /// Activation: peak fractional change, blob radius (voxels), block period (frames).
    pub const ACTIVATION: f64 = 0.03;
    pub const BLOB_RADIUS: f64 = 12.0;
    pub const BLOCK_PERIOD: f64 = 20.0;
    /// White noise σ as a fraction of the source's range.
    pub const NOISE: f64 = 0.0025;
    /// Repetition time written into pixdim[4], seconds.
    pub const TR_SECONDS: f64 = 2.0;
    /// Seed of the noise.
    pub const SEED: u64 = 20261125;
}

struct Args {
    source: PathBuf,
    frames: usize,
    work: PathBuf,
    bpv: f64,
    effort: f64,
    out: Option<PathBuf>,
    medinr: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        source: PathBuf::from("data/mri_t1_colin27_1mm.nii.gz"),
        frames: 141,
        work: std::env::temp_dir().join("medinr-large"),
        bpv: 0.05,
        effort: 1.0,
        out: None,
        medinr: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/medinr"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--source" => a.source = value()?.into(),
            "--frames" => a.frames = value()?.parse()?,
            "--work" => a.work = value()?.into(),
            "--bpv" => a.bpv = value()?.parse()?,
            "--effort" => a.effort = value()?.parse()?,
            "--out" => a.out = Some(value()?.into()),
            "--medinr" => a.medinr = value()?.into(),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    // The commit is taken now: the run is long, and the tree may move on meanwhile.
    let commit = git_head();
    std::fs::create_dir_all(&a.work)?;
    let source = read_nifti(&a.source).with_context(|| format!("reading {:?}", a.source))?;
    let [nx, ny, nz, _] = source.shape();
    let series = a.work.join(format!(
        "derived_{}_{}frames.nii",
        stem(&a.source),
        a.frames
    ));
    let shape = [nx, ny, nz, a.frames];
    let voxels: usize = shape.iter().product();
    let raw_bytes = voxels * 2;
    if !series.exists() {
        let t = Instant::now();
        derive(&source, a.frames, &series)?;
        eprintln!(
            "derived {} ({:?}, {:.2} G voxels) in {:.0} s",
            series.display(),
            shape,
            voxels as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    }
    drop(source);

    // Compress with the real CLI, measured from outside.
    let minr = a.work.join("derived.minr");
    let medinr = &a.medinr;
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(medinr)
        .args(["compress", "--json", "--force", "--bpv"])
        .arg(a.bpv.to_string())
        .arg("--effort")
        .arg(a.effort.to_string())
        .arg(&series)
        .arg("-o")
        .arg(&minr)
        .output()
        .context("running medinr compress under /usr/bin/time")?;
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("compress failed:\n{stderr}");
    }
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .context("no peak RSS in /usr/bin/time's output")?
        .trim()
        .parse()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let peak = peak_kib as f64 * 1024.0;
    let limit = 2.0 * raw_bytes as f64 + (1u64 << 30) as f64;

    // Figures of the file against the series.
    let reference = read_nifti(&series)?;
    let baseline = temporal_mean_psnr(&reference.data, shape);
    let decoder = Decoder::open(&minr)?;
    let (start, end) = central_box(shape, [64, 64, 32]);
    let decoded = decoder.decode_box(start, end)?;
    let cropped = crop(&reference, start, end);
    let box_shape = decoded.shape();
    let ts = metrics::compare_timeseries(&cropped, &decoded.data.to_f32(), box_shape, None)?;

    let q = &report["quality"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let mut md = String::new();
    md += "# Large 4D series: memory, time, rate, quality\n\n";
    md += &format!(
        "A **derived** series (no long 4D series ships with any public package we found): \
         `{}` moved by a small rigid motion per frame (translations up to {:?} voxels, \
         rotation up to {}° about z), with a {}% drift, a {}% block-design activation in a \
         blob of radius {} voxels (period {} frames), and white noise σ = {}% of the range; \
         i16, {} frames, TR {} s. See `experiments/large_series.rs`.\n\n",
        a.source.display(),
        derivation::TRANSLATION_VOXELS,
        derivation::ROTATION_DEGREES,
        derivation::DRIFT * 100.0,
        derivation::ACTIVATION * 100.0,
        derivation::BLOB_RADIUS,
        derivation::BLOCK_PERIOD,
        derivation::NOISE * 100.0,
        a.frames,
        derivation::TR_SECONDS
    );
    md += "| figure | value |\n|---|---|\n";
    md += &format!(
        "| shape | {:?} ({:.3} G voxels) |\n",
        shape,
        voxels as f64 / 1e9
    );
    md += &format!("| raw size (i16) | {:.2} GiB |\n", gib(raw_bytes as f64));
    md += &format!(
        "| **peak RSS of `medinr compress`** | **{:.2} GiB** ({:.2} bytes per voxel) |\n",
        gib(peak),
        peak / voxels as f64
    );
    md += &format!(
        "| limit: 2 × raw + 1 GiB | {:.2} GiB — {} |\n",
        gib(limit),
        if peak <= limit { "met" } else { "**not met**" }
    );
    md += &format!("| wall time | {:.0} s ({:.1} min) |\n", wall, wall / 60.0);
    md += &format!(
        "| fit time (optimiser) | {:.0} s |\n",
        f(&report["fit_seconds"])
    );
    md += &format!(
        "| rate | {:.4} bpv ({} bytes, ratio {:.0}:1; asked {} bpv) |\n",
        f(&report["bits_per_voxel"]),
        report["bytes"],
        f(&report["ratio"]),
        a.bpv
    );
    md += &format!(
        "| PSNR / SSIM (every voxel) | {:.2} dB / {:.4} |\n",
        f(&q["psnr_db"]),
        f(&q["ssim"])
    );
    md += &format!("| max abs error | {:.0} |\n", f(&q["max_abs_error"]));
    md += &format!(
        "| temporal-mean baseline PSNR (every voxel) | {:.2} dB |\n",
        baseline
    );
    md += &format!(
        "| central box {:?}: PSNR / temporal-mean PSNR (foreground) | {:.2} / {:.2} dB |\n",
        box_shape, ts.mask_psnr_db, ts.mask_temporal_mean_psnr_db
    );
    md += &format!(
        "| central box: median time-course correlation | {} |\n",
        ts.median_ts_correlation
            .map_or("n/a".to_string(), |c| format!("{c:.3}"))
    );
    md += &format!(
        "\nCommand: `target/release/large_series --source {} --frames {} --bpv {} --effort {}`; \
         machine: {}; commit {}; {}.\n",
        a.source.display(),
        a.frames,
        a.bpv,
        a.effort,
        machine(),
        commit,
        utc_now()
    );
    println!("{md}");
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("README.md"), &md)?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
    }
    Ok(())
}

/// Writes the derived series frame by frame (only one frame in memory at a time).
fn derive(source: &Volume, frames: usize, path: &Path) -> Result<()> {
    use derivation::*;
    let [nx, ny, nz, _] = source.shape();
    let values = source.data.to_f32();
    let (lo, hi) = source.data.finite_range().unwrap_or((0.0, 1.0));
    let range = (hi - lo).max(1.0) as f64;
    let mut header = Header::new(DataType::I16, [nx, ny, nz, frames])?;
    header.set_affine(source.header.affine());
    header.qform_code = source.header.qform_code.max(1);
    header.sform_code = source.header.sform_code.max(1);
    header.pixdim[4] = TR_SECONDS;
    header.descrip = [0; 80];
    let d = b"medinr derived 4D benchmark series";
    header.descrip[..d.len()].copy_from_slice(d);
    // Stored values scaled to use i16 well, scl_slope keeps the source's units.
    let gain = (16000.0 / hi.abs().max(lo.abs()).max(1.0) as f64).min(1.0e3);
    header.scl_slope = 1.0 / gain;
    header.scl_inter = 0.0;
    let tmp = path.with_extension("nii.part");
    let mut w = BufWriter::with_capacity(1 << 24, File::create(&tmp)?);
    w.write_all(&header.to_bytes())?;
    let centre = [nx as f64 / 2.0, ny as f64 / 2.0, nz as f64 / 2.0];
    let blob = [nx as f64 * 0.6, ny as f64 * 0.55, nz as f64 * 0.6];
    let sample = |x: f64, y: f64, z: f64| -> f64 {
        let (x0, y0, z0) = (x.floor(), y.floor(), z.floor());
        let mut acc = 0.0;
        for (dz, wz) in [(0, 1.0 - (z - z0)), (1, z - z0)] {
            for (dy, wy) in [(0, 1.0 - (y - y0)), (1, y - y0)] {
                for (dx, wx) in [(0, 1.0 - (x - x0)), (1, x - x0)] {
                    let (i, j, k) = (x0 as i64 + dx, y0 as i64 + dy, z0 as i64 + dz);
                    if i >= 0
                        && j >= 0
                        && k >= 0
                        && (i as usize) < nx
                        && (j as usize) < ny
                        && (k as usize) < nz
                    {
                        let v = values[i as usize + nx * (j as usize + ny * k as usize)];
                        acc += wx * wy * wz * v as f64;
                    }
                }
            }
        }
        acc
    };
    for t in 0..frames {
        let tau = std::f64::consts::TAU;
        let tf = t as f64;
        let shift: Vec<f64> = (0..3)
            .map(|a| TRANSLATION_VOXELS[a] * (tau * tf / TRANSLATION_PERIODS[a] + a as f64).sin())
            .collect();
        let angle = ROTATION_DEGREES.to_radians() * (tau * tf / ROTATION_PERIOD).sin();
        let (s, c) = angle.sin_cos();
        let drift = 1.0 + DRIFT * tf / frames.max(1) as f64;
        let block = 0.5 - 0.5 * (tau * tf / BLOCK_PERIOD).cos();
        let frame: Vec<i16> = (0..nz)
            .into_par_iter()
            .flat_map_iter(|z| {
                let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ ((t * nz + z) as u64) << 1);
                let mut out = Vec::with_capacity(nx * ny);
                for y in 0..ny {
                    for x in 0..nx {
                        let (px, py) = (x as f64 - centre[0], y as f64 - centre[1]);
                        let sx = c * px - s * py + centre[0] + shift[0];
                        let sy = s * px + c * py + centre[1] + shift[1];
                        let sz = z as f64 + shift[2];
                        let r2 = (x as f64 - blob[0]).powi(2)
                            + (y as f64 - blob[1]).powi(2)
                            + (z as f64 - blob[2]).powi(2);
                        let act =
                            1.0 + ACTIVATION * block * (-r2 / (2.0 * BLOB_RADIUS.powi(2))).exp();
                        // Box–Muller noise.
                        let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                        let n = (-2.0 * (1.0 - u1).ln()).sqrt() * (tau * u2).cos();
                        let v = sample(sx, sy, sz) * drift * act + n * NOISE * range;
                        out.push((v * gain).round().clamp(-32768.0, 32767.0) as i16);
                    }
                }
                out
            })
            .collect();
        let mut frame_bytes = Vec::with_capacity(frame.len() * 2);
        Voxels::I16(frame).encode_into(DataType::I16, false, &mut frame_bytes);
        w.write_all(&frame_bytes)?;
    }
    w.into_inner()?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// PSNR (on the series' range) of predicting every frame by the voxel's temporal mean: the
/// trivial baseline a 4D codec must beat. Two passes over the stored values, one mean per voxel.
fn temporal_mean_psnr(data: &Voxels, shape: [usize; 4]) -> f64 {
    let frame = shape[0] * shape[1] * shape[2];
    let frames = shape[3];
    let mean: Vec<f64> = (0..frame)
        .into_par_iter()
        .map(|i| {
            (0..frames)
                .map(|t| data.get(i + frame * t) as f64)
                .sum::<f64>()
                / frames as f64
        })
        .collect();
    let sum_sq: f64 = (0..frame)
        .into_par_iter()
        .map(|i| {
            (0..frames)
                .map(|t| (data.get(i + frame * t) as f64 - mean[i]).powi(2))
                .sum::<f64>()
        })
        .sum();
    let (lo, hi) = data.finite_range().unwrap_or((0.0, 1.0));
    let range = ((hi - lo) as f64).max(1.0);
    10.0 * (range * range / (sum_sq / (frame * frames) as f64)).log10()
}

/// A box of at most `size` voxels per spatial axis at the centre of the scan, all frames.
fn central_box(shape: [usize; 4], size: [usize; 3]) -> ([usize; 4], [usize; 4]) {
    let mut start = [0; 4];
    let mut end = shape;
    for a in 0..3 {
        let n = size[a].min(shape[a]);
        start[a] = (shape[a] - n) / 2;
        end[a] = start[a] + n;
    }
    (start, end)
}

/// The values of `volume` in the box `start .. end`, x fastest.
fn crop(volume: &Volume, start: [usize; 4], end: [usize; 4]) -> Vec<f32> {
    let [nx, ny, nz, _] = volume.shape();
    let mut out = Vec::new();
    for t in start[3]..end[3] {
        for z in start[2]..end[2] {
            for y in start[1]..end[1] {
                for x in start[0]..end[0] {
                    out.push(volume.data.get(x + nx * (y + ny * (z + nz * t))));
                }
            }
        }
    }
    out
}

fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or("scan".into(), |n| n.to_string_lossy().to_string());
    name.trim_end_matches(".gz")
        .trim_end_matches(".nii")
        .to_string()
}

/// The machine in words: CPU model, cores, memory.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|m| m.trim().trim_end_matches(" kB").parse::<f64>().ok())
            })
        })
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib / (1 << 20) as f64)
        });
    format!("{cpu}, {} threads, {mem}", rayon::current_num_threads())
}

/// The commit the binary was built from (build.rs), not the tree's at run time.
fn git_head() -> String {
    env!("MEDINR_BUILD_COMMIT").to_string()
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
