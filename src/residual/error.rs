//! Errors of the residual layer: invalid arguments when encoding, invalid streams when decoding.

use thiserror::Error;

/// Everything that can go wrong encoding or decoding a residual stream.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ResidualError {
    #[error("the field's prediction of a chunk could not be made: {0}")]
    Prediction(String),
    #[error("invalid shape {0:?}: every axis needs at least one voxel and the count must fit")]
    InvalidShape([usize; 4]),
    #[error("{what} has {got} values but the shape needs {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("invalid error bound {0}: it must be finite, ≥ 0 and at most 2^28")]
    InvalidBound(f64),
    #[error("an error bound needs integer values within ±2^24 (f32 is inexact beyond), but the range is {min} … {max}; code losslessly or pass the scan's own range")]
    RangeTooWideForBound { min: i64, max: i64 },
    #[error("invalid integer range {min} … {max}")]
    InvalidRange { min: i64, max: i64 },
    #[error("{what} value {value} at voxel {index} is not an integer within {min} … {max}")]
    ValueOutOfRange {
        what: &'static str,
        index: usize,
        value: f32,
        min: i64,
        max: i64,
    },
    #[error("invalid chunk size {0}: a chunk needs at least one slice and one frame, no more than the scan has, and at most 2^30 voxels")]
    InvalidChunkSize(usize),
    #[error("the stream was coded with a field prediction but none was given (or the reverse)")]
    PredictionPresence,
    #[error("not a residual stream (bad magic)")]
    BadMagic,
    #[error("residual stream version {0} is not supported (this medinr reads versions 1 to 3)")]
    UnsupportedVersion(u8),
    #[error("truncated residual stream: {0}")]
    Truncated(&'static str),
    #[error("invalid residual stream: {0}")]
    Invalid(&'static str),
    #[error(
        "checksum mismatch in the residual stream's header or chunk table: the stream is corrupted"
    )]
    IndexChecksum,
    #[error("checksum mismatch in residual chunk {0}: the stream is corrupted")]
    ChunkChecksum(usize),
    #[error("residual chunk {0} does not decode: the stream is corrupted")]
    CorruptChunk(usize),
    #[error("the bound inside the region of interest ({inner}) must not exceed the bound outside it ({outer})")]
    RoiBoundAboveOuter { inner: f64, outer: f64 },
    #[error("a region of interest needs an error bound outside it, not lossless coding")]
    RoiNeedsBound,
    #[error("the transform layer needs finite values, but voxel {0} is not finite")]
    NonFinite(usize),
    #[error("slices {start}..{end} are not within chunk {index}'s slices {first}..{last}")]
    SlicesOutsideChunk {
        index: usize,
        start: usize,
        end: usize,
        first: usize,
        last: usize,
    },
    #[error("chunk {index} out of range: the stream has {count} chunks")]
    NoSuchChunk { index: usize, count: usize },
}
