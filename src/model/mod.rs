//! What a field *is*, with no training machinery: its configuration and limits, where voxels
//! sit in its coordinate space, the hash-grid layout and CPU encoding kernels, and the list of
//! stored tensors. The decoder needs only this module; training (`crate::train`, behind the
//! `train` feature) builds on it. Nothing here depends on candle.

pub mod config;
pub mod coords;
pub mod hashgrid;
pub mod tensors;

pub use config::{ConfigError, FieldConfig, Preset};
pub use hashgrid::GridLayout;
#[cfg(feature = "train")]
pub use tensors::TensorSpec;
pub use tensors::{check_tensors, tensor_specs, TableShape, TensorKind};

/// Why a set of parameters does not describe a field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The configuration itself is outside what medinr supports.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A tensor has the wrong number of values for its place in the configuration.
    #[error("tensor {name} has {got} values, the field configuration needs {expected}")]
    TensorLength {
        /// The tensor's name (`grid.3`, `mlp.0.weight`).
        name: String,
        /// Values present.
        got: usize,
        /// Values the configuration needs.
        expected: usize,
    },
    /// Memory for the parameters or an output grid could not be had (sizes come from a file
    /// or a request, so this is an error, not an abort).
    #[error("cannot allocate {bytes} bytes for {what}")]
    Allocation {
        /// What the memory was for.
        what: &'static str,
        /// Bytes asked for.
        bytes: usize,
    },
    /// There are more or fewer tensors than the configuration has.
    #[error("expected {expected} tensors, got {got}")]
    TensorCount {
        /// Tensors the configuration has.
        expected: usize,
        /// Tensors present.
        got: usize,
    },
}
