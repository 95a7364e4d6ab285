//! Fitting a field to a scan: batches of voxels (`sampler`), the optimisation loop (`trainer`).

pub mod sampler;
pub mod trainer;

pub use sampler::Sampler;
pub use trainer::{FitSettings, Progress, Silent, Trainer};
