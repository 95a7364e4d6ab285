//! medinr: medical volumes compressed into implicit neural representations.
//!
//! A scan is fitted by a small neural field (a multiresolution hash-grid encoding feeding an
//! MLP); the field's quantized, entropy-coded parameters are the compressed file. Modules:
//! `volume` (scans in and out), `field` (the network), `fit` (training), `codec` (quantization,
//! entropy coding, the file), `decode` (inference-only evaluation), `encoder`/`decoder` (the
//! two pipelines), `metrics`, and `baseline` (JPEG 2000 for comparison).

pub mod atomic_file;
pub mod baseline;
pub mod codec;
pub mod decode;
pub mod decoder;
pub mod encoder;
pub mod field;
pub mod fit;
pub mod metrics;
pub mod render;
pub mod residual;
pub mod volume;
