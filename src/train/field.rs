//! The trainable field: the grid tables and MLP weights as candle variables, the forward pass
//! through the encoding op and the MLP, and the per-level sensitivity used by rate control.
//! Decoding evaluates the same parameters without candle (`crate::decoder`).

use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::encoding_op::HashGridEncode;
use super::fake_quant::{straight_through, straight_through_scalar, QuantSteps};
use super::{relu_op, TrainError};
use crate::model::{check_tensors, tensor_specs, FieldConfig, GridLayout, ModelError, TensorKind};

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
    pub fn init(config: &FieldConfig, seed: u64, device: &Device) -> Result<Field, TrainError> {
        config.validate().map_err(ModelError::from)?;
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
    ) -> Result<Field, TrainError> {
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

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        self.table.device()
    }

    /// Parameters of the grid (trained with a higher learning rate, no weight decay).
    pub fn grid_vars(&self) -> Vec<Var> {
        vec![self.table.clone()]
    }

    /// The grid's flat table (`[entries, features]`, levels one after another).
    pub fn grid_table(&self) -> &Tensor {
        self.table.as_tensor()
    }

    /// Parameters of the MLP.
    pub fn mlp_vars(&self) -> Vec<Var> {
        self.weights.clone()
    }

    /// Predicted normalised intensities `[n]` at `coords` (`[n, dims]`, in [0, 1]).
    pub fn forward(&self, coords: &Tensor) -> Result<Tensor, TrainError> {
        let weights: Vec<Tensor> = self.weights.iter().map(|w| w.as_tensor().clone()).collect();
        self.forward_with(coords, self.table.as_tensor(), &weights)
    }

    /// The forward pass with every tensor passed through `quantizer` first (quantization-aware
    /// fine-tuning: values are rounded in the forward pass, gradients pass straight through).
    pub fn forward_quantized(
        &self,
        coords: &Tensor,
        steps: &QuantSteps,
    ) -> Result<Tensor, TrainError> {
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
    ) -> Result<Tensor, TrainError> {
        let encoded = coords.apply_op2(table, self.encoding())?;
        Ok(mlp(encoded, weights)?.squeeze(1)?)
    }

    fn encoding(&self) -> HashGridEncode {
        HashGridEncode {
            layout: self.layout.clone(),
        }
    }

    /// Mean squared gain of the output with respect to each level's features over `coords`
    /// (`Σ_f mean_n (∂y_n/∂feature_{l,f})²`, one value per level): how strongly the MLP
    /// listens to each level. Used to give each level its own quantization step.
    pub fn level_gains(&self, coords: &Tensor) -> Result<Vec<f64>, TrainError> {
        let encoded = coords.apply_op2(self.table.as_tensor(), self.encoding())?;
        let encoded = Var::from_tensor(&encoded.detach())?;
        let weights: Vec<Tensor> = self
            .weights
            .iter()
            .map(|w| w.as_tensor().detach())
            .collect();
        let grads = mlp(encoded.as_tensor().clone(), &weights)?
            .sum_all()?
            .backward()?;
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
    pub fn tensors(&self) -> Result<Vec<Vec<f32>>, TrainError> {
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

/// The MLP on encoded features `[n, width]`: `x · Wᵀ` per layer, ReLU between layers, the
/// output layer linear. Training's forward pass and the sensitivity measure share it.
fn mlp(mut x: Tensor, weights: &[Tensor]) -> candle_core::Result<Tensor> {
    let last = weights.len().saturating_sub(1);
    for (k, w) in weights.iter().enumerate() {
        x = x.matmul(&w.t()?)?;
        if k < last {
            // The fused ReLU op is CPU-only; on a GPU candle's own ReLU is fast enough.
            x = if x.device().is_cpu() {
                x.apply_op1(relu_op::Relu)?
            } else {
                x.relu()?
            };
        }
    }
    Ok(x)
}

/// Coordinates of voxel centres as a tensor of shape `[n, dims]`.
pub fn coords_tensor(coords: Vec<f32>, dims: usize, device: &Device) -> Result<Tensor, TrainError> {
    let n = coords.len() / dims;
    Ok(Tensor::from_vec(coords, (n, dims), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preset;

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
        check_tensors(&config, &t).unwrap();
    }
}
