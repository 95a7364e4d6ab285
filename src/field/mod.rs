//! The neural field: a multiresolution hash-grid encoding feeding a small ReLU MLP with one
//! output. `Field` holds trainable parameters for fitting; decoding uses the same tensors
//! through the inference-only path in `crate::decode`.

pub mod activation;
pub mod config;
pub mod grid;
pub mod hashgrid;
pub mod op;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use config::{ConfigError, FieldConfig, Preset};
pub use hashgrid::GridLayout;
use op::HashGridEncode;

/// Why a field could not be built or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("tensor {name} has {got} values, the field configuration needs {expected}")]
    TensorLength {
        name: String,
        got: usize,
        expected: usize,
    },
    #[error("expected {expected} tensors, got {got}")]
    TensorCount { expected: usize, got: usize },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What one stored tensor is; the order of `tensor_specs` is the order in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// The table of grid level `l` (`entries × features`, entry-major).
    Grid(usize),
    /// Weight matrix of MLP layer `k` (`outputs × inputs`, row-major). The MLP has no biases,
    /// as in tiny-cuda-nn: the grid supplies offsets, and fewer tensors cost less to store.
    Weight(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub kind: TensorKind,
    pub len: usize,
}

impl TensorSpec {
    pub fn name(&self) -> String {
        match self.kind {
            TensorKind::Grid(l) => format!("grid.{l}"),
            TensorKind::Weight(k) => format!("mlp.{k}.weight"),
        }
    }
}

/// The tensors of a configuration in file order: every grid level, then each MLP layer's
/// weight matrix.
pub fn tensor_specs(config: &FieldConfig) -> Vec<TensorSpec> {
    let mut specs: Vec<TensorSpec> = (0..config.levels())
        .map(|l| TensorSpec {
            kind: TensorKind::Grid(l),
            len: config.level_entries(l) as usize * config.features,
        })
        .collect();
    for (k, (outputs, inputs)) in config.mlp_layers().into_iter().enumerate() {
        specs.push(TensorSpec {
            kind: TensorKind::Weight(k),
            len: outputs * inputs,
        });
    }
    specs
}

/// Checks a configuration and that `tensors` (file order) have the counts and lengths it
/// needs.
pub fn check_tensors(config: &FieldConfig, tensors: &[Vec<f32>]) -> Result<(), FieldError> {
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
    Ok(())
}

/// A trainable field.
pub struct Field {
    config: FieldConfig,
    layout: Arc<GridLayout>,
    table: Var,
    weights: Vec<Var>,
}

impl Field {
    /// A freshly initialised field: tables uniform in ±1e-4 (as instant-ngp), MLP weights
    /// Kaiming-uniform; all drawn from a ChaCha8 stream seeded with `seed`.
    pub fn init(config: &FieldConfig, seed: u64, device: &Device) -> Result<Field, FieldError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let tensors = tensor_specs(config)
            .iter()
            .map(|spec| match spec.kind {
                TensorKind::Grid(_) => (0..spec.len)
                    .map(|_| rng.random_range(-1e-4f32..1e-4))
                    .collect(),
                TensorKind::Weight(k) => {
                    let (_, inputs) = config.mlp_layers()[k];
                    let bound = (6.0 / inputs as f32).sqrt();
                    (0..spec.len)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect()
                }
            })
            .collect::<Vec<Vec<f32>>>();
        Field::from_tensors(config, &tensors, device)
    }

    /// A field with the given parameters (file order, see `tensor_specs`).
    pub fn from_tensors(
        config: &FieldConfig,
        tensors: &[Vec<f32>],
        device: &Device,
    ) -> Result<Field, FieldError> {
        check_tensors(config, tensors)?;
        let layout = Arc::new(GridLayout::new(config));
        let levels = config.levels();
        let table: Vec<f32> = tensors[..levels].concat();
        let table = Var::from_vec(table, (layout.entries, layout.features), device)?;
        let mut weights = Vec::new();
        for (k, (outputs, inputs)) in config.mlp_layers().into_iter().enumerate() {
            weights.push(Var::from_vec(
                tensors[levels + k].clone(),
                (outputs, inputs),
                device,
            )?);
        }
        Ok(Field {
            config: config.clone(),
            layout,
            table,
            weights,
        })
    }

    pub fn config(&self) -> &FieldConfig {
        &self.config
    }

    pub fn layout(&self) -> &Arc<GridLayout> {
        &self.layout
    }

    /// Parameters of the grid (trained with a higher learning rate, no weight decay).
    pub fn grid_vars(&self) -> Vec<Var> {
        vec![self.table.clone()]
    }

    /// Parameters of the MLP.
    pub fn mlp_vars(&self) -> Vec<Var> {
        self.weights.clone()
    }

    /// Predicted normalised intensities `[n]` at `coords` (`[n, dims]`, in [0, 1]).
    pub fn forward(&self, coords: &Tensor) -> Result<Tensor, FieldError> {
        let weights: Vec<Tensor> = self.weights.iter().map(|w| w.as_tensor().clone()).collect();
        self.forward_with(coords, self.table.as_tensor(), &weights)
    }

    /// The forward pass with every tensor passed through `quantizer` first (quantization-aware
    /// fine-tuning: values are rounded in the forward pass, gradients pass straight through).
    pub fn forward_quantized(
        &self,
        coords: &Tensor,
        steps: &QuantSteps,
    ) -> Result<Tensor, FieldError> {
        let table = straight_through(self.table.as_tensor(), &steps.table)?;
        let weights = self
            .weights
            .iter()
            .zip(&steps.weights)
            .map(|(w, &s)| straight_through_scalar(w.as_tensor(), s))
            .collect::<Result<Vec<_>, _>>()?;
        self.forward_with(coords, &table, &weights)
    }

    fn forward_with(
        &self,
        coords: &Tensor,
        table: &Tensor,
        weights: &[Tensor],
    ) -> Result<Tensor, FieldError> {
        let op = HashGridEncode {
            layout: self.layout.clone(),
        };
        let mut x = coords.apply_op2(table, op)?;
        let last = weights.len() - 1;
        for (k, w) in weights.iter().enumerate() {
            x = x.matmul(&w.t()?)?;
            if k < last {
                x = x.apply_op1(activation::Relu)?;
            }
        }
        Ok(x.squeeze(1)?)
    }

    /// Mean squared gain of the output with respect to each level's features over `coords`
    /// (`Σ_f mean_n (∂y_n/∂feature_{l,f})²`, one value per level): how strongly the MLP
    /// listens to each level. Used to give each level its own quantization step.
    pub fn level_gains(&self, coords: &Tensor) -> Result<Vec<f64>, FieldError> {
        let op = HashGridEncode {
            layout: self.layout.clone(),
        };
        let encoded = Var::from_tensor(&coords.apply_op2(self.table.as_tensor(), op)?.detach())?;
        let mut x = encoded.as_tensor().clone();
        let last = self.weights.len() - 1;
        for (k, w) in self.weights.iter().enumerate() {
            x = x.matmul(&w.as_tensor().detach().t()?)?;
            if k < last {
                x = x.apply_op1(activation::Relu)?;
            }
        }
        let grads = x.sum_all()?.backward()?;
        let n = coords.dim(0)?.max(1) as f64;
        let per_feature = match grads.get(encoded.as_tensor()) {
            Some(g) => g.sqr()?.sum(0)?.to_vec1::<f32>()?,
            None => vec![0f32; self.layout.width()],
        };
        Ok(per_feature
            .chunks(self.layout.features)
            .map(|c| c.iter().map(|&v| v as f64).sum::<f64>() / n)
            .collect())
    }

    /// All parameters in file order (see `tensor_specs`).
    pub fn tensors(&self) -> Result<Vec<Vec<f32>>, FieldError> {
        let table = self.table.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::new();
        for lv in &self.layout.levels {
            let start = lv.offset * self.layout.features;
            out.push(table[start..start + lv.size as usize * self.layout.features].to_vec());
        }
        for w in &self.weights {
            out.push(w.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Quantization steps laid out for the fake-quantized forward pass.
pub struct QuantSteps {
    /// One step per table entry row (`[entries, 1]`), so each level keeps its own step.
    table: Tensor,
    weights: Vec<f32>,
}

impl QuantSteps {
    /// `steps` holds one step per tensor in file order.
    pub fn new(field: &Field, steps: &[f32]) -> Result<QuantSteps, FieldError> {
        let specs = tensor_specs(&field.config);
        if steps.len() != specs.len() {
            return Err(FieldError::TensorCount {
                expected: specs.len(),
                got: steps.len(),
            });
        }
        let levels = field.config.levels();
        let mut rows = Vec::with_capacity(field.layout.entries);
        for (lv, &s) in field.layout.levels.iter().zip(steps) {
            rows.extend(std::iter::repeat_n(s, lv.size as usize));
        }
        let table = Tensor::from_vec(rows, (field.layout.entries, 1), field.table.device())?;
        Ok(QuantSteps {
            table,
            weights: steps[levels..].to_vec(),
        })
    }
}

fn straight_through(t: &Tensor, step: &Tensor) -> Result<Tensor, FieldError> {
    let q = t.broadcast_div(step)?.round()?.broadcast_mul(step)?;
    Ok((t + (q - t)?.detach())?)
}

fn straight_through_scalar(t: &Tensor, step: f32) -> Result<Tensor, FieldError> {
    let q = ((t / step as f64)?.round()? * step as f64)?;
    Ok((t + (q - t)?.detach())?)
}

/// Coordinates of voxel centres as a tensor of shape `[n, dims]`.
pub fn coords_tensor(coords: Vec<f32>, dims: usize, device: &Device) -> Result<Tensor, FieldError> {
    let n = coords.len() / dims;
    Ok(Tensor::from_vec(coords, (n, dims), device)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autograd_gradient_reaches_the_table() {
        let config = FieldConfig::for_shape([8, 8, 8, 1], 2000, &Preset::default());
        let field = Field::init(&config, 1, &Device::Cpu).unwrap();
        let coords = coords_tensor(vec![0.1, 0.2, 0.3, 0.9, 0.5, 0.4], 3, &Device::Cpu).unwrap();
        let y = field.forward(&coords).unwrap();
        assert_eq!(y.dims(), &[2]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(field.table.as_tensor()).unwrap();
        let nonzero = g
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .filter(|v| **v != 0.0)
            .count();
        assert!(nonzero > 0);
    }

    #[test]
    fn tensors_round_trip_through_from_tensors() {
        let config = FieldConfig::for_shape([9, 7, 5, 3], 3000, &Preset::default());
        let field = Field::init(&config, 5, &Device::Cpu).unwrap();
        let t = field.tensors().unwrap();
        let again = Field::from_tensors(&config, &t, &Device::Cpu).unwrap();
        assert_eq!(again.tensors().unwrap(), t);
        let specs = tensor_specs(&config);
        assert_eq!(specs.len(), t.len());
        assert!(specs.iter().zip(&t).all(|(s, t)| s.len == t.len()));
    }
}
