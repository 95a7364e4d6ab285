//! The kernels on the GPU (feature `cuda`): PTX embedded at build time, launched on candle's
//! CUDA device through cudarc.
//!
//! - `grid`: the encoding op's device forward and backward on `CudaStorage`, the bodies of
//!   `HashGridEncode::cuda_fwd` / `HashGridScatter::cuda_fwd` in `field::op`.
//! - `mlp`: the fused MLP forward and backward for fitting.
//! - `decode`: the fused decoder, bit-identical to `decode::Evaluator`.

pub mod decode;
pub mod grid;
mod launch;
pub mod mlp;
pub mod ptx;

#[cfg(test)]
mod tests;
