//! Inference-only evaluation of a field: the grid encoding (`model::hashgrid`) then the MLP
//! kernels (`super::mlp`), in tiles so memory stays bounded whatever the output size. A slice
//! evaluates only the slice's coordinates.
//!
//! Evaluation is bit-exact and deterministic: the grid encoding sums corners in a fixed order
//! (`field::hashgrid`), and the MLP below accumulates each output as a chain of fused
//! multiply-adds over its inputs in increasing order, starting from 0 — on every machine
//! (hardware FMA where the CPU has it, the exact software `fma` elsewhere) and whatever the
//! tiling or thread count. `docs/FORMAT.md` states the same rule, so a second decoder can
//! reproduce medinr's output exactly; an error-bounded residual layer can rely on it.

use rayon::prelude::*;

use super::mlp::{Layer, MlpKernel};
use super::Region;
use crate::model::coords::axis_coordinates;
use crate::model::{check_tensors, FieldConfig, GridLayout, ModelError};

/// Voxels evaluated by one parallel task.
const TASK: usize = 1 << 13;

/// Voxels encoded before the MLP runs over them: their encodings (`width` floats each, 128 KiB
/// for 32) stay in the L2 cache between the two, and a task's scratch memory stays small,
/// which matters for a short process: every fresh page costs a fault.
const ENCODE_BLOCK: usize = 1 << 10;

/// A field ready to be evaluated.
pub struct Evaluator {
    config: FieldConfig,
    layout: GridLayout,
    /// One table per grid level, kept as decoded (`size · features` floats each).
    tables: Vec<Vec<f32>>,
    layers: Vec<Layer>,
    widest: usize,
    kernel: MlpKernel,
}

impl Evaluator {
    /// Builds the evaluator from parameters in file order (see `field::tensor_specs`).
    pub fn new(config: &FieldConfig, tensors: &[Vec<f32>]) -> Result<Evaluator, ModelError> {
        Evaluator::from_owned(config, tensors.to_vec())
    }

    /// Like [`Evaluator::new`], consuming the parameters: each grid level stays in the buffer
    /// it was decoded into, never copied, so a file at the format's limits (2^28 grid values,
    /// 1 GiB) holds its parameters once.
    pub fn from_owned(
        config: &FieldConfig,
        mut tensors: Vec<Vec<f32>>,
    ) -> Result<Evaluator, ModelError> {
        check_tensors(config, &tensors)?;
        let levels = config.levels();
        let tables: Vec<Vec<f32>> = tensors.drain(..levels).collect();
        let shapes = config.mlp_layers();
        let last = shapes.len() - 1;
        let layers: Vec<Layer> = shapes
            .into_iter()
            .zip(&tensors)
            .enumerate()
            .map(|(k, ((outputs, inputs), w))| Layer::new(outputs, inputs, w, k < last))
            .collect();
        let layout = GridLayout::new(config);
        let widest = layers
            .iter()
            .map(|l| l.outputs())
            .chain([layout.width()])
            .max()
            .unwrap_or(1);
        Ok(Evaluator {
            config: config.clone(),
            tables,
            layout,
            layers,
            widest,
            kernel: MlpKernel::selected(),
        })
    }

    /// The field's configuration.
    pub fn config(&self) -> &FieldConfig {
        &self.config
    }

    /// Normalised field values at `coords` (`n × dims`), in parallel.
    pub fn evaluate(&self, coords: &[f32]) -> Result<Vec<f32>, ModelError> {
        let dims = self.config.dims;
        let n = coords.len() / dims;
        let mut out = vec![0f32; n];
        out.par_chunks_mut(TASK)
            .zip(coords.par_chunks(TASK * dims))
            .for_each(|(out, coords)| self.evaluate_sequential(coords, out));
        Ok(out)
    }

    /// Evaluates consecutive samples on this thread (runs along x benefit from cell reuse),
    /// `ENCODE_BLOCK` at a time.
    fn evaluate_sequential(&self, coords: &[f32], out: &mut [f32]) {
        let (dims, width) = (self.config.dims, self.layout.width());
        let mut encoded = vec![0f32; out.len().min(ENCODE_BLOCK) * width];
        let tables = self.level_tables();
        for (out, coords) in out
            .chunks_mut(ENCODE_BLOCK)
            .zip(coords.chunks(ENCODE_BLOCK * dims))
        {
            let encoded = &mut encoded[..out.len() * width];
            self.layout.forward_coherent(&tables, coords, encoded);
            self.kernel
                .run(&self.layers, self.widest, encoded, width, out);
        }
    }

    /// The grid levels' tables as the encoders take them.
    fn level_tables(&self) -> Vec<&[f32]> {
        self.tables.iter().map(Vec::as_slice).collect()
    }

    /// Normalised values on a regular grid of `shape` (`[nx, ny, nz, nt]`) covering the scan's
    /// field of view, restricted to `region`; x fastest. Returns the values and the shape of
    /// what was produced.
    pub fn grid(
        &self,
        shape: [usize; 4],
        region: Region,
    ) -> Result<(Vec<f32>, [usize; 4]), ModelError> {
        let dims = self.config.dims;
        let axes = shape.map(axis_coordinates);
        let (ranges, out_shape) = region_ranges(shape, region);
        let row = out_shape[0];
        let total: usize = out_shape.iter().product();
        let mut out = output_buffer(total)?;
        out.resize(total, 0.0);
        // Every row runs along x over the same coordinates.
        let plan = self.layout.row_plan(&axes[0][ranges[0].clone()]);
        let width = self.layout.width();
        let rows_per_task = (TASK / row.max(1)).max(1);
        let rows_per_block = (ENCODE_BLOCK / row.max(1)).max(1);
        let (ny, nz) = (out_shape[1], out_shape[2]);
        out.par_chunks_mut(rows_per_task * row)
            .enumerate()
            .for_each(|(task, out)| {
                let tables = self.level_tables();
                let mut encoded = vec![0f32; rows_per_block.min(out.len() / row) * row * width];
                for (block, out) in out.chunks_mut(rows_per_block * row).enumerate() {
                    let first = task * rows_per_task + block * rows_per_block;
                    let encoded = &mut encoded[..out.len() * width];
                    for (r, encoded) in (first..).zip(encoded.chunks_exact_mut(row * width)) {
                        let y = ranges[1].start + r % ny;
                        let z = ranges[2].start + (r / ny) % nz;
                        let t = ranges[3].start + r / (ny * nz);
                        let rest = [axes[1][y], axes[2][z], axes[3][t]];
                        self.layout
                            .forward_row(&tables, &plan, &rest[..dims - 1], encoded);
                    }
                    self.kernel
                        .run(&self.layers, self.widest, encoded, width, out);
                }
            });
        Ok((out, out_shape))
    }
}

/// An empty buffer with room for `total` decoded voxels, or the allocation error.
pub(crate) fn output_buffer(total: usize) -> Result<Vec<f32>, ModelError> {
    let mut out: Vec<f32> = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| ModelError::Allocation {
            what: "the decoded voxels",
            bytes: total.saturating_mul(4),
        })?;
    Ok(out)
}

/// Index ranges per axis and the resulting shape for a region of a grid.
pub(crate) fn region_ranges(
    shape: [usize; 4],
    region: Region,
) -> ([std::ops::Range<usize>; 4], [usize; 4]) {
    let mut ranges = shape.map(|n| 0..n);
    match region {
        Region::Full => {}
        Region::Frame(t) => ranges[3] = t..t + 1,
        Region::Slice { axis, index, frame } => {
            ranges[axis] = index..index + 1;
            ranges[3] = frame..frame + 1;
        }
        Region::Box { start, end } => {
            for a in 0..4 {
                ranges[a] = start[a]..end[a];
            }
        }
    }
    let out_shape = [0, 1, 2, 3].map(|a| ranges[a].len());
    (ranges, out_shape)
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use super::*;
    use crate::model::Preset;
    use crate::train::Field;
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
                    crate::model::coords::axis_coordinate(i % 11, 11),
                    crate::model::coords::axis_coordinate((i / 11) % 9, 9),
                    crate::model::coords::axis_coordinate(i / 99, 7),
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
