//! Speed benchmark: fit throughput (training samples per second, forward + backward +
//! optimizer step), full-volume decode throughput, and single-slice latency, for the default
//! field on a real scan. Prints a table; `--compress` also times a whole compress at 0.1 bpv.
//!
//!     cargo run --release --bin speed -- [scan.nii.gz] [--compress]
//!
//! Targets on a 2-core machine: ≥ 2 M samples/s, ≥ 10 M voxels/s, one 181×217 slice
//! ≤ 50 ms, Colin27 compress at 0.1 bpv ≤ 10 min.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use medinr::decoder::{Evaluator, Region};
use medinr::encoder::{encode, EncodeOptions, RateTarget, Silent};
use medinr::settings::FitSettings;
use medinr::study::{Field, FieldConfig, Preset, RunPlan, Sampler, Targets, Trainer};
use medinr::volume::read_nifti;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data/mri_t1_colin27_1mm.nii.gz"));
    let volume = read_nifti(&path)?;
    let shape = volume.shape();
    let voxels = volume.data.len();
    let (lo, hi) = volume.data.finite_range().unwrap_or((0.0, 1.0));
    let targets = Targets::new(&volume.data, lo as f64, (hi - lo).max(1e-12));
    // The field compress builds for this scan at 0.1 bpv (4 bits planned per parameter).
    let parameters = voxels / 40;
    let preset = Preset::default();
    let mlp = FieldConfig::for_shape(shape, 1, &preset).mlp_parameters();
    let config = FieldConfig::for_shape(shape, parameters - mlp, &preset);
    println!("scan {} {:?}, {} voxels", path.display(), shape, voxels);
    println!(
        "field: {} levels × {} features, table {} entries, MLP {}×{}, {} parameters",
        config.levels(),
        config.features,
        config.table_size,
        config.hidden_layers,
        config.hidden_width,
        config.grid_parameters() + config.mlp_parameters()
    );
    println!("threads: {}", rayon::current_num_threads());
    println!();
    println!("{:<44} {:>14} {:>12}", "measure", "value", "target");

    // Fit throughput: warm up, then time steps.
    let field = Field::init(&config, 0, &Device::Cpu)?;
    let fit = FitSettings::default();
    let warm_up = RunPlan::main_fit(&fit, 10, fit.max_batch);
    let mut trainer = Trainer::new(&field, &fit, &warm_up)?;
    let mut sampler = Sampler::new(targets, shape, config.dims, 0);
    trainer.run(&field, &mut sampler, &warm_up, None, None, &mut Silent)?;
    let timed = RunPlan {
        steps: 60,
        ..warm_up.clone()
    };
    let t = Instant::now();
    trainer.run(&field, &mut sampler, &timed, None, None, &mut Silent)?;
    let rate = (timed.steps * timed.batch) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>12.2} M {:>12}",
        format!("fit samples/s (batch {})", timed.batch),
        rate / 1e6,
        "≥ 2 M"
    );

    // Decode throughput over the whole grid.
    let eval = Evaluator::new(&config, &field.tensors()?)?;
    let _ = eval.grid(
        shape,
        Region::Slice {
            axis: 2,
            index: 0,
            frame: 0,
        },
    )?;
    let t = Instant::now();
    let (values, _) = eval.grid(shape, Region::Full)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>12.2} M {:>12}",
        "decode voxels/s (full volume)",
        values.len() as f64 / secs / 1e6,
        "≥ 10 M"
    );

    // Slice latency: median over all three axes' middle slices, repeated.
    for (axis, name) in [(2, "axial"), (1, "coronal"), (0, "sagittal")] {
        let mut times = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let (s, _) = eval.grid(
                shape,
                Region::Slice {
                    axis,
                    index: shape[axis] / 2,
                    frame: 0,
                },
            )?;
            times.push(t.elapsed().as_secs_f64());
            std::hint::black_box(s);
        }
        times.sort_by(f64::total_cmp);
        let plane: Vec<String> = (0..3)
            .filter(|&a| a != axis)
            .map(|a| shape[a].to_string())
            .collect();
        println!(
            "{:<44} {:>11.2} ms {:>12}",
            format!("{name} slice {} latency (median of 21)", plane.join("×")),
            times[10] * 1e3,
            "≤ 50 ms"
        );
    }

    if args.iter().any(|a| a == "--compress") {
        let options = EncodeOptions {
            target: RateTarget::BitsPerVoxel(0.1),
            ..EncodeOptions::default()
        };
        let t = Instant::now();
        let (_, report) = encode(&volume, &options, &mut Silent)?;
        println!(
            "{:<44} {:>11.1} s {:>12}",
            format!("compress at 0.1 bpv ({:.2} dB)", report.quality.psnr_db),
            t.elapsed().as_secs_f64(),
            "≤ 600 s"
        );
    }
    Ok(())
}
