//! Inference-only evaluation of a field: no autograd, no trainable state, in tiles so memory
//! stays bounded whatever the output size. A slice evaluates only the slice's coordinates.
//!
//! Evaluation is bit-exact and deterministic: the grid encoding sums corners in a fixed order
//! (`field::hashgrid`), and the MLP below accumulates each output as a chain of fused
//! multiply-adds over its inputs in increasing order, starting from 0 — on every machine
//! (hardware FMA where the CPU has it, the exact software `fma` elsewhere) and whatever the
//! tiling or thread count. `docs/FORMAT.md` states the same rule, so a second decoder can
//! reproduce medinr's output exactly; an error-bounded residual layer can rely on it.

use rayon::prelude::*;

use crate::field::grid::axis_coordinates;
use crate::field::{check_tensors, FieldConfig, FieldError, GridLayout};

/// Voxels evaluated by one parallel task.
const TASK: usize = 1 << 13;
/// Voxels pushed through the MLP together (independent chains keep the FMA units busy).
const BLOCK: usize = 16;

/// What part of the output grid to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Every voxel of every frame.
    Full,
    /// One frame of a series (all of a 3D scan when `frame == 0`).
    Frame(usize),
    /// One plane: `axis` 0 = x (sagittal), 1 = y (coronal), 2 = z (axial), at `index`, in `frame`.
    Slice {
        axis: usize,
        index: usize,
        frame: usize,
    },
}

/// One MLP layer for inference: weights transposed to `[inputs][outputs]`.
struct Layer {
    inputs: usize,
    outputs: usize,
    weights_t: Vec<f32>,
    relu: bool,
}

/// A field ready to be evaluated.
pub struct Evaluator {
    config: FieldConfig,
    layout: GridLayout,
    table: Vec<f32>,
    layers: Vec<Layer>,
    widest: usize,
}

impl Evaluator {
    /// Builds the evaluator from parameters in file order (see `field::tensor_specs`).
    pub fn new(config: &FieldConfig, tensors: &[Vec<f32>]) -> Result<Evaluator, FieldError> {
        check_tensors(config, tensors)?;
        let levels = config.levels();
        let shapes = config.mlp_layers();
        let last = shapes.len() - 1;
        let layers: Vec<Layer> = shapes
            .into_iter()
            .zip(&tensors[levels..])
            .enumerate()
            .map(|(k, ((outputs, inputs), w))| {
                let mut weights_t = vec![0f32; w.len()];
                for j in 0..outputs {
                    for i in 0..inputs {
                        weights_t[i * outputs + j] = w[j * inputs + i];
                    }
                }
                Layer {
                    inputs,
                    outputs,
                    weights_t,
                    relu: k < last,
                }
            })
            .collect();
        let layout = GridLayout::new(config);
        let widest = layers
            .iter()
            .map(|l| l.outputs)
            .chain([layout.width()])
            .max()
            .unwrap_or(1);
        Ok(Evaluator {
            config: config.clone(),
            table: tensors[..levels].concat(),
            layout,
            layers,
            widest,
        })
    }

    pub fn config(&self) -> &FieldConfig {
        &self.config
    }

    /// Normalised field values at `coords` (`n × dims`), in parallel.
    pub fn evaluate(&self, coords: &[f32]) -> Result<Vec<f32>, FieldError> {
        let dims = self.config.dims;
        let n = coords.len() / dims;
        let mut out = vec![0f32; n];
        out.par_chunks_mut(TASK)
            .zip(coords.par_chunks(TASK * dims))
            .for_each(|(out, coords)| self.evaluate_sequential(coords, out));
        Ok(out)
    }

    /// Evaluates consecutive samples on this thread (grid rows benefit from cell reuse).
    fn evaluate_sequential(&self, coords: &[f32], out: &mut [f32]) {
        let width = self.layout.width();
        let mut encoded = vec![0f32; out.len() * width];
        self.layout
            .forward_coherent(&self.table, coords, &mut encoded);
        let mut a = vec![0f32; BLOCK * self.widest];
        let mut b = vec![0f32; BLOCK * self.widest];
        for (enc, out) in encoded.chunks(BLOCK * width).zip(out.chunks_mut(BLOCK)) {
            mlp_block(&self.layers, enc, out, &mut a, &mut b);
        }
    }

    /// Normalised values on a regular grid of `shape` (`[nx, ny, nz, nt]`) covering the scan's
    /// field of view, restricted to `region`; x fastest. Returns the values and the shape of
    /// what was produced.
    pub fn grid(
        &self,
        shape: [usize; 4],
        region: Region,
    ) -> Result<(Vec<f32>, [usize; 4]), FieldError> {
        let dims = self.config.dims;
        let axes = shape.map(axis_coordinates);
        let (ranges, out_shape) = region_ranges(shape, region);
        let row = out_shape[0];
        let total: usize = out_shape.iter().product();
        let mut out = vec![0f32; total];
        let rows_per_task = (TASK / row.max(1)).max(1);
        let (ny, nz) = (out_shape[1], out_shape[2]);
        out.par_chunks_mut(rows_per_task * row)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * rows_per_task;
                let mut coords = Vec::with_capacity(out.len() * dims);
                for r in first..first + out.len() / row {
                    let y = ranges[1].start + r % ny;
                    let z = ranges[2].start + (r / ny) % nz;
                    let t = ranges[3].start + r / (ny * nz);
                    for x in ranges[0].clone() {
                        coords.extend_from_slice(&[axes[0][x], axes[1][y], axes[2][z]]);
                        if dims == 4 {
                            coords.push(axes[3][t]);
                        }
                    }
                }
                self.evaluate_sequential(&coords, out);
            });
        Ok((out, out_shape))
    }
}

/// Runs up to `BLOCK` encoded samples through the MLP; `a`/`b` are scratch of
/// `BLOCK × widest layer`.
fn mlp_block(layers: &[Layer], encoded: &[f32], out: &mut [f32], a: &mut [f32], b: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { mlp_block_avx2(layers, encoded, out, a, b) };
            return;
        }
    }
    mlp_block_generic(layers, encoded, out, a, b);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mlp_block_avx2(
    layers: &[Layer],
    encoded: &[f32],
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
) {
    mlp_block_generic(layers, encoded, out, a, b);
}

/// One layer for a layer width known at compile time: `V` samples at a time keep `V × W`
/// accumulators in registers while the inputs stream past, so `V × W / 8` independent FMA
/// chains hide the FMA latency. Every output still sums its inputs in order from 0.
#[inline(always)]
fn layer_fixed<const W: usize, const V: usize>(layer: &Layer, input: &[f32], out: &mut [f32]) {
    let inputs = layer.inputs;
    let samples = out.len() / W;
    let mut v0 = 0;
    while v0 < samples {
        let group = V.min(samples - v0);
        let mut acc = [[0f32; W]; V];
        for k in 0..inputs {
            let w = &layer.weights_t[k * W..(k + 1) * W];
            for (v, acc) in acc.iter_mut().enumerate().take(group) {
                let xk = input[(v0 + v) * inputs + k];
                for (a, &wj) in acc.iter_mut().zip(w) {
                    *a = wj.mul_add(xk, *a);
                }
            }
        }
        for (v, acc) in acc.iter().enumerate().take(group) {
            out[(v0 + v) * W..(v0 + v + 1) * W].copy_from_slice(acc);
        }
        v0 += group;
    }
}

/// One layer of any width (same arithmetic as `layer_fixed`).
#[inline(always)]
fn layer_any(layer: &Layer, input: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for k in 0..layer.inputs {
        let w = &layer.weights_t[k * layer.outputs..(k + 1) * layer.outputs];
        for (v, acc) in out.chunks_exact_mut(layer.outputs).enumerate() {
            let xk = input[v * layer.inputs + k];
            for (acc, &wj) in acc.iter_mut().zip(w) {
                *acc = wj.mul_add(xk, *acc);
            }
        }
    }
}

/// The MLP on a block of samples: for every output, `acc = fma(w, x, acc)` over the inputs
/// in increasing order from `acc = 0`, then ReLU on hidden layers.
#[inline(always)]
fn mlp_block_generic(
    layers: &[Layer],
    encoded: &[f32],
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
) {
    let n = out.len();
    let mut input: &[f32] = encoded;
    let (mut cur, mut next) = (a, b);
    for layer in layers {
        let o = &mut cur[..n * layer.outputs];
        match layer.outputs {
            1 => layer_fixed::<1, 16>(layer, input, o),
            8 => layer_fixed::<8, 4>(layer, input, o),
            16 => layer_fixed::<16, 4>(layer, input, o),
            32 => layer_fixed::<32, 2>(layer, input, o),
            64 => layer_fixed::<64, 1>(layer, input, o),
            _ => layer_any(layer, input, o),
        }
        if layer.relu {
            for v in o.iter_mut() {
                *v = v.max(0.0);
            }
        }
        std::mem::swap(&mut cur, &mut next);
        input = &next[..n * layer.outputs];
    }
    out.copy_from_slice(&input[..n]);
}

/// Index ranges per axis and the resulting shape for a region of a grid.
fn region_ranges(shape: [usize; 4], region: Region) -> ([std::ops::Range<usize>; 4], [usize; 4]) {
    let mut ranges = shape.map(|n| 0..n);
    match region {
        Region::Full => {}
        Region::Frame(t) => ranges[3] = t..t + 1,
        Region::Slice { axis, index, frame } => {
            ranges[axis] = index..index + 1;
            ranges[3] = frame..frame + 1;
        }
    }
    let out_shape = [0, 1, 2, 3].map(|a| ranges[a].len());
    (ranges, out_shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{Field, Preset};
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_the_training_forward_pass() {
        let config = FieldConfig::for_shape([11, 9, 7, 1], 3000, &Preset::default());
        let field = Field::init(&config, 3, &Device::Cpu).unwrap();
        let tensors = field.tensors().unwrap();
        let eval = Evaluator::new(&config, &tensors).unwrap();
        let (values, shape) = eval.grid([11, 9, 7, 1], Region::Full).unwrap();
        assert_eq!(shape, [11, 9, 7, 1]);
        let coords: Vec<f32> = values
            .iter()
            .enumerate()
            .flat_map(|(i, _)| {
                [
                    crate::field::grid::axis_coordinate(i % 11, 11),
                    crate::field::grid::axis_coordinate((i / 11) % 9, 9),
                    crate::field::grid::axis_coordinate(i / 99, 7),
                ]
            })
            .collect();
        let x = Tensor::from_vec(coords, (values.len(), 3), &Device::Cpu).unwrap();
        let trained = field.forward(&x).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in values.iter().zip(&trained) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn a_slice_equals_that_plane_of_the_full_grid() {
        let config = FieldConfig::for_shape([13, 10, 6, 3], 4000, &Preset::default());
        let field = Field::init(&config, 4, &Device::Cpu).unwrap();
        let eval = Evaluator::new(&config, &field.tensors().unwrap()).unwrap();
        let shape = [13, 10, 6, 3];
        let (full, _) = eval.grid(shape, Region::Full).unwrap();
        for axis in 0..3 {
            let index = shape[axis] / 2;
            let (slice, s) = eval
                .grid(
                    shape,
                    Region::Slice {
                        axis,
                        index,
                        frame: 2,
                    },
                )
                .unwrap();
            assert_eq!(s[axis], 1);
            let mut k = 0;
            for z in 0..s[2] {
                for y in 0..s[1] {
                    for x in 0..s[0] {
                        let mut p = [x, y, z, 2];
                        p[axis] = index;
                        let i = p[0] + 13 * (p[1] + 10 * (p[2] + 6 * p[3]));
                        assert!((full[i] - slice[k]).abs() < 1e-6);
                        k += 1;
                    }
                }
            }
        }
    }
}
