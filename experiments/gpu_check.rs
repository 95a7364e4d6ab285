//! CPU and GPU side by side, for `scripts/gpu-check.sh` (needs the `cuda` feature and a GPU).
//! Prints CSV rows `scan,measure,cpu,gpu,unit,note` on stdout.
//!
//! - `gpu_check decode FILE.minr NAME`: whole-scan decode time and voxels/s, one axial slice's
//!   latency, and whether every decoded value is bit-identical on CPU and GPU.
//! - `gpu_check synthetic NX,NY,NZ NAME`: the same for a random field of that shape (default
//!   preset), e.g. a 256³ volume.
//! - `gpu_check fit NX,NY,NZ NAME`: fitting throughput (forward + backward samples/s): candle on
//!   the CPU vs the grid and MLP kernels on the GPU.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::backend::BackendDevice;
use candle_core::{CudaDevice, CudaStorage, Device, Layout, Shape, Tensor};
use medinr::decoder::{Decoder, Evaluator, Region};
use medinr::gpu::cuda::{decode::DeviceField, grid, mlp};
use medinr::gpu::layout::MlpShape;
use medinr::study::{tensor_specs, Field, FieldConfig, GridLayout, Preset, TensorKind};

/// Samples per fit step: the batch size the trainer uses on a GPU-sized budget.
const FIT_BATCH: usize = 1 << 18;
/// Timed repetitions (after one warm-up) for the short measurements.
const REPEATS: usize = 5;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu_check: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dev = CudaDevice::new(0).context("no CUDA device")?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["decode", path, name] => {
            let d = Decoder::open(std::path::Path::new(path))
                .with_context(|| format!("opening {path}"))?;
            let config = d.file().head.field.clone();
            decode(&dev, name, &config, &d.file().dequantized(), d.shape())
        }
        ["synthetic", shape, name] => {
            let shape = parse_shape(shape)?;
            let (config, tensors) = random_field(shape);
            decode(&dev, name, &config, &tensors, shape)
        }
        ["fit", shape, name] => fit(&dev, name, parse_shape(shape)?),
        _ => {
            bail!("usage: gpu_check decode FILE NAME | synthetic NX,NY,NZ NAME | fit NX,NY,NZ NAME")
        }
    }
}

fn parse_shape(s: &str) -> Result<[usize; 4]> {
    let v: Vec<usize> = s
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("shape")?;
    match v[..] {
        [x, y, z] => Ok([x, y, z, 1]),
        [x, y, z, t] => Ok([x, y, z, t]),
        _ => bail!("shape is NX,NY,NZ[,NT]"),
    }
}

/// A field for `shape` with about 0.1 bit per voxel of parameters, random values.
fn random_field(shape: [usize; 4]) -> (FieldConfig, Vec<Vec<f32>>) {
    let voxels: usize = shape.iter().product();
    let config = FieldConfig::for_shape(shape, voxels / 16, &Preset::default());
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32) / ((1u64 << 24) as f32) * 2.0 - 1.0
    };
    let tensors = tensor_specs(&config)
        .iter()
        .map(|spec| {
            let scale = match spec.kind {
                TensorKind::Grid(_) => 1.0,
                TensorKind::Weight(k) => (6.0 / config.mlp_layers()[k].1 as f32).sqrt(),
            };
            (0..spec.len).map(|_| next() * scale).collect()
        })
        .collect();
    (config, tensors)
}

fn seconds<T>(f: impl Fn() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

/// Median of `REPEATS` timed runs after a warm-up.
fn median(f: impl Fn() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t: Vec<f64> = (0..REPEATS)
        .map(|_| seconds(&f).map(|(_, s)| s))
        .collect::<Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[REPEATS / 2])
}

fn decode(
    dev: &CudaDevice,
    name: &str,
    config: &FieldConfig,
    tensors: &[Vec<f32>],
    shape: [usize; 4],
) -> Result<()> {
    let eval = Evaluator::new(config, tensors)?;
    let gpu = DeviceField::new(dev, config, tensors)?;
    gpu.grid(shape, Region::Full)?; // warm-up: module load
    let ((cpu_v, _), cpu_s) = seconds(|| Ok(eval.grid(shape, Region::Full)?))?;
    let ((gpu_v, _), gpu_s) = seconds(|| Ok(gpu.grid(shape, Region::Full)?))?;
    let differ = cpu_v
        .iter()
        .zip(&gpu_v)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let voxels = cpu_v.len() as f64;
    println!(
        "{name},decode_identical,{},{},bool,{differ} of {} values differ",
        differ == 0,
        differ == 0,
        cpu_v.len()
    );
    println!("{name},decode_time,{cpu_s:.4},{gpu_s:.4},s,whole scan incl. copy back");
    println!(
        "{name},decode_rate,{:.0},{:.0},voxels/s,",
        voxels / cpu_s,
        voxels / gpu_s
    );
    let slice = Region::Slice {
        axis: 2,
        index: shape[2] / 2,
        frame: 0,
    };
    let cpu_slice = median(|| eval.grid(shape, slice).map(|_| ()).map_err(Into::into))?;
    let gpu_slice = median(|| gpu.grid(shape, slice).map(|_| ()).map_err(Into::into))?;
    println!(
        "{name},slice_latency,{:.3},{:.3},ms,middle axial slice, median of {REPEATS}",
        cpu_slice * 1e3,
        gpu_slice * 1e3
    );
    if differ != 0 {
        bail!("{name}: GPU decode differs from the CPU in {differ} values");
    }
    Ok(())
}

fn fit(dev: &CudaDevice, name: &str, shape: [usize; 4]) -> Result<()> {
    let (config, tensors) = random_field(shape);
    let layout = GridLayout::new(&config);
    let n = FIT_BATCH;
    let mut s = 1u64;
    let coords: Vec<f32> = (0..n * layout.dims)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32) / ((1u64 << 24) as f32)
        })
        .collect();

    // CPU: candle forward + backward of a squared error, as the trainer does.
    let field = Field::from_tensors(&config, &tensors, &Device::Cpu)?;
    let x = Tensor::from_vec(coords.clone(), (n, layout.dims), &Device::Cpu)?;
    let cpu = median(|| {
        let y = field.forward(&x)?;
        y.sqr()?.mean_all()?.backward()?;
        Ok(())
    })?;

    // GPU: grid forward, MLP forward, MLP backward, grid backward.
    let mlp_shape = MlpShape::new(&config);
    let levels = config.levels();
    let table = dev.clone_htod(&tensors[..levels].concat())?;
    let weights = dev.clone_htod(&tensors[levels..].concat())?;
    let c = CudaStorage::wrap_cuda_slice(dev.clone_htod(&coords)?, dev.clone());
    let cl = Layout::contiguous(Shape::from((n, layout.dims)));
    let t = CudaStorage::wrap_cuda_slice(table, dev.clone());
    let tl = Layout::contiguous(Shape::from((layout.entries, layout.features)));
    let step = || -> Result<()> {
        let (enc, _) = grid::cuda_fwd(&layout, &c, &cl, &t, &tl)?;
        let enc = enc.as_cuda_slice::<f32>()?;
        let fwd = mlp::forward(dev, &weights.slice(..), mlp_shape, &enc.slice(..))?;
        let g = mlp::backward(
            dev,
            &weights.slice(..),
            mlp_shape,
            &enc.slice(..),
            &fwd,
            &fwd.y.slice(..),
        )?;
        let gs = CudaStorage::wrap_cuda_slice(g.dx, dev.clone());
        let gl = Layout::contiguous(Shape::from((n, layout.width())));
        grid::cuda_bwd(&layout, &c, &cl, &gs, &gl)?;
        dev.synchronize()?;
        Ok(())
    };
    let gpu = median(step)?;
    println!(
        "{name},fit_rate,{:.0},{:.0},samples/s,forward+backward batch {n}",
        n as f64 / cpu,
        n as f64 / gpu
    );
    Ok(())
}
