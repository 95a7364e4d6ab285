//! Inference-only evaluation of a field: no autograd, no trainable state, in tiles so memory
//! stays bounded whatever the output size. A slice evaluates only the slice's coordinates.
//!
//! The grid encoding runs the same CPU kernel as training (fixed summation order); the MLP
//! runs through candle's matmul (gemm), which does not split the short inner dimension across
//! threads, so a voxel's value does not depend on the tile it was computed in.

use candle_core::{Device, Tensor};

use crate::field::grid::axis_coordinates;
use crate::field::{tensor_specs, FieldConfig, FieldError, GridLayout};

/// Voxels evaluated per tile.
const TILE: usize = 1 << 16;

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

/// A field ready to be evaluated.
pub struct Evaluator {
    config: FieldConfig,
    layout: GridLayout,
    table: Vec<f32>,
    weights: Vec<Tensor>,
}

impl Evaluator {
    /// Builds the evaluator from parameters in file order (see `field::tensor_specs`).
    pub fn new(config: &FieldConfig, tensors: &[Vec<f32>]) -> Result<Evaluator, FieldError> {
        config.validate()?;
        let specs = tensor_specs(config);
        if specs.len() != tensors.len() {
            return Err(FieldError::TensorCount {
                expected: specs.len(),
                got: tensors.len(),
            });
        }
        for (spec, t) in specs.iter().zip(tensors) {
            if spec.len != t.len() {
                return Err(FieldError::TensorLength {
                    name: spec.name(),
                    got: t.len(),
                    expected: spec.len,
                });
            }
        }
        let levels = config.levels();
        let table = tensors[..levels].concat();
        let weights = config
            .mlp_layers()
            .into_iter()
            .zip(&tensors[levels..])
            .map(|((outputs, inputs), w)| {
                Tensor::from_slice(w, (outputs, inputs), &Device::Cpu)?
                    .t()?
                    .contiguous()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Evaluator {
            config: config.clone(),
            layout: GridLayout::new(config),
            table,
            weights,
        })
    }

    pub fn config(&self) -> &FieldConfig {
        &self.config
    }

    /// Normalised field values at `coords` (`n × dims`).
    pub fn evaluate(&self, coords: &[f32]) -> Result<Vec<f32>, FieldError> {
        let dims = self.config.dims;
        let n = coords.len() / dims;
        let mut out = Vec::with_capacity(n);
        let width = self.layout.width();
        let mut encoded = vec![0f32; TILE.min(n.max(1)) * width];
        for tile in coords.chunks(TILE * dims) {
            let m = tile.len() / dims;
            let enc = &mut encoded[..m * width];
            self.layout.forward(&self.table, tile, enc);
            out.extend(self.mlp(enc, m)?);
        }
        Ok(out)
    }

    fn mlp(&self, encoded: &[f32], m: usize) -> Result<Vec<f32>, FieldError> {
        let mut x = Tensor::from_slice(encoded, (m, self.layout.width()), &Device::Cpu)?;
        let last = self.weights.len() - 1;
        for (k, w) in self.weights.iter().enumerate() {
            x = x.matmul(w)?;
            if k < last {
                x = x.relu()?;
            }
        }
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
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
        let plane = out_shape[0] * out_shape[1];
        let total: usize = out_shape.iter().product();
        let mut out = Vec::with_capacity(total);
        let mut coords = Vec::with_capacity(TILE.max(plane) * dims);
        // One z-plane at a time keeps coordinate buffers small; planes are gathered into
        // tiles of about TILE voxels.
        for t in ranges[3].clone() {
            for z in ranges[2].clone() {
                for y in ranges[1].clone() {
                    for x in ranges[0].clone() {
                        coords.push(axes[0][x]);
                        coords.push(axes[1][y]);
                        coords.push(axes[2][z]);
                        if dims == 4 {
                            coords.push(axes[3][t]);
                        }
                    }
                }
                if coords.len() >= TILE * dims {
                    out.extend(self.evaluate(&coords)?);
                    coords.clear();
                }
            }
        }
        if !coords.is_empty() {
            out.extend(self.evaluate(&coords)?);
        }
        Ok((out, out_shape))
    }
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
