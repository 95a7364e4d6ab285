//! Fake quantization for quantization-aware fine-tuning: tensors are rounded to their
//! quantization step in the forward pass while gradients pass straight through, so the weights
//! settle where the stored (quantized) values will put them.

use candle_core::Tensor;

use super::{Field, TrainError};
use crate::model::tensor_specs;

/// Quantization steps laid out for the fake-quantized forward pass.
pub struct QuantSteps {
    /// One step per table entry row (`[entries, 1]`), so each level keeps its own step.
    pub(super) table: Tensor,
    pub(super) weights: Vec<f32>,
}

impl QuantSteps {
    /// `steps` holds one step per tensor in file order.
    pub fn new(field: &Field, steps: &[f32]) -> Result<QuantSteps, TrainError> {
        let specs = tensor_specs(field.config());
        if steps.len() != specs.len() {
            return Err(crate::model::ModelError::TensorCount {
                expected: specs.len(),
                got: steps.len(),
            }
            .into());
        }
        let levels = field.config().levels();
        let mut rows = Vec::with_capacity(field.layout().entries);
        for (lv, &s) in field.layout().levels.iter().zip(steps) {
            rows.extend(std::iter::repeat_n(s, lv.size as usize));
        }
        let table = Tensor::from_vec(rows, (field.layout().entries, 1), field.device())?;
        Ok(QuantSteps {
            table,
            weights: steps[levels..].to_vec(),
        })
    }
}

/// `t` rounded to multiples of `step` (one step per row) in the forward pass, identity in the
/// backward pass.
pub(super) fn straight_through(t: &Tensor, step: &Tensor) -> Result<Tensor, TrainError> {
    let q = t.broadcast_div(step)?.round()?.broadcast_mul(step)?;
    Ok((t + (q - t)?.detach())?)
}

/// `straight_through` with one step for the whole tensor.
pub(super) fn straight_through_scalar(t: &Tensor, step: f32) -> Result<Tensor, TrainError> {
    let q = ((t / step as f64)?.round()? * step as f64)?;
    Ok((t + (q - t)?.detach())?)
}
