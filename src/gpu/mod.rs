//! The CUDA kernels of `kernels/` and the Rust around them.
//!
//! Every kernel's per-thread work is a `__host__ __device__` function, and `build.rs` always
//! compiles the kernel sources for the host too; `host` calls that build (loops over the
//! "threads") so `cargo test` checks the kernels against the Rust reference — encoding and
//! decoding bit for bit — on machines without a GPU. With the `cuda` feature, `cuda` embeds the
//! PTX and launches the kernels on candle's CUDA device.

pub mod host;
pub mod layout;

#[cfg(feature = "cuda")]
pub mod cuda;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_decode;
#[cfg(test)]
mod tests_grid;
#[cfg(test)]
mod tests_mlp;
