//! medinr: medical volumes compressed into implicit neural representations.
//!
//! A scan is fitted by a small neural field (a multiresolution hash-grid encoding feeding an
//! MLP); the field's quantized, entropy-coded parameters are the compressed file, and decoding
//! evaluates the field anywhere: the whole scan on its own grid or another, a frame, a slice.
//!
//! The public API:
//! - [`volume`]: scans in and out ([`volume::read_nifti`], [`volume::write_nifti`],
//!   [`volume::Volume`], [`volume::Header`]).
//! - [`encoder`] (feature `train`, on by default): [`encoder::encode`] with
//!   [`encoder::EncodeOptions`] and the documented [`settings::EncoderSettings`].
//! - [`decoder`]: [`decoder::Decoder`] opens a `.minr` file and answers [`decoder::Region`]s.
//! - [`metrics`]: PSNR, SSIM and error figures.
//! - [`format`]: the parts of the file format a second decoder may reuse.
//! - [`residual`]: the residual layer (guaranteed worst-case error and lossless coding on top
//!   of a prediction), usable on its own.
//!
//! A build without default features (`--no-default-features`) is a decoder only: no candle,
//! no training code. The modules under [`study`] support medinr's own experiments and
//! benchmarks and are not a stable API.

#![deny(missing_docs)]

pub mod batch;
#[cfg(feature = "train")]
pub mod encoder;
pub mod settings;

pub mod decoder;
/// The CUDA kernels (`kernels/*.cu`): their host build, run against the Rust reference in
/// the tests, and (feature `cuda`) their launch on a GPU. Not a stable API.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod gpu;
pub mod metrics;
#[allow(missing_docs)]
// documented per item where it matters; error variants read as their messages
pub mod residual;
pub mod volume;

#[allow(missing_docs)]
pub(crate) mod codec;
#[allow(missing_docs)]
pub(crate) mod model;
#[cfg(feature = "train")]
#[allow(missing_docs)]
pub(crate) mod train;

mod atomic_file;
#[allow(missing_docs)]
mod render;

/// The parts of the `.minr` format that a second decoder may reuse, as `docs/FORMAT.md`
/// specifies them.
pub mod format {
    pub use crate::codec::container::FormatError;
    pub use crate::codec::entropy::decode_symbols;
    pub use crate::codec::payload::MinrFile;
}

/// Support for medinr's own command line, experiments and benchmarks: writing files
/// atomically, pictures of slices, the JPEG 2000 baseline and the fitting internals the speed
/// benchmarks time. Not a stable API.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod study {
    pub use crate::atomic_file::write_atomic;
    #[cfg(feature = "jpeg2000")]
    pub use crate::baseline::jpeg2000::{code_volume, J2kError, J2kMode, J2kResult};
    #[cfg(feature = "sz3")]
    pub use crate::baseline::sz3;
    pub use crate::codec::grid::encode_context_table;
    pub use crate::model::{tensor_specs, FieldConfig, GridLayout, Preset, TableShape, TensorKind};
    pub use crate::render::{
        encode_png, encode_png_as, plane_header, slice_header, slice_pixels, summary, summary_text,
        Summary,
    };
    #[cfg(feature = "train")]
    pub use crate::train::{trainer::RunPlan, Field, Sampler, Targets, Trainer};
}

#[cfg(feature = "jpeg2000")]
#[allow(missing_docs)]
mod baseline;

/// Whether this build can fit and decode on an NVIDIA GPU (the `cuda` feature).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");
