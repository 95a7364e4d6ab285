//! Fitting a field (the `train` feature): the trainable `Field` over candle tensors, the
//! hash-grid encoding and ReLU as candle custom ops, fake quantization for quantization-aware
//! fine-tuning, voxel batches and the optimisation loop. Only the encoder uses this module;
//! decoding never does, and a build without the `train` feature has no candle at all.

pub mod encoding_op;
pub mod fake_quant;
pub mod field;
pub mod relu_op;
pub mod sampler;
pub mod trainer;

pub use fake_quant::QuantSteps;
pub use field::Field;
pub use sampler::{Sampler, Targets};
pub use trainer::{Phase, Progress, Silent, Trainer};

use candle_core::{CpuStorage, Layout};

use crate::model::ModelError;

/// Why a fit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The field's configuration or parameters are inconsistent.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tensor backend (candle, CPU or CUDA) failed; the message is the backend's.
    #[error("tensor computation failed: {0}")]
    Backend(String),
    /// The GPU could not be opened: no device, no driver, or a build without CUDA.
    #[error("cannot open CUDA device {ordinal}: {message}")]
    Device { ordinal: usize, message: String },
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Backend(e.to_string())
    }
}

/// Where the fit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Device {
    /// The CPU, all cores (rayon).
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (needs a build with the `cuda` feature).
    Cuda(usize),
}

impl Device {
    /// The candle device this stands for.
    pub(crate) fn candle(self) -> Result<candle_core::Device, TrainError> {
        match self {
            Device::Cpu => Ok(candle_core::Device::Cpu),
            Device::Cuda(ordinal) => {
                candle_core::Device::new_cuda(ordinal).map_err(|e| TrainError::Device {
                    ordinal,
                    message: e.to_string(),
                })
            }
        }
    }

    /// Opens the device once, so that a missing GPU or driver is reported before any work
    /// (the CPU always opens).
    pub fn probe(self) -> Result<(), TrainError> {
        self.candle().map(drop)
    }
}

/// The contiguous f32 data a custom op's input layout describes, or an error naming `what`.
pub(crate) fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn the_cpu_always_opens() {
        assert!(Device::Cpu.probe().is_ok());
    }

    /// Without the `cuda` feature candle refuses every GPU; the error names the device.
    #[test]
    #[cfg(not(feature = "cuda"))]
    fn a_gpu_that_cannot_open_is_an_error_naming_it() {
        let e = Device::Cuda(0).probe().unwrap_err();
        assert!(matches!(e, TrainError::Device { ordinal: 0, .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("cannot open CUDA device 0: "),
            "{e}"
        );
    }
}
