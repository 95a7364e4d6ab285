//! The one error type of the `volume` module.
//!
//! Every variant names the file it is about (`file`), so a message is useful on its own.
//! Errors raised without a file at hand (e.g. [`super::DataType::from_nifti_code`] or
//! [`super::Header::from_bytes`]) carry an empty path, and the reader fills it in with
//! [`VolumeError::in_file`].

use std::path::{Path, PathBuf};

/// What went wrong reading or writing a NIfTI scan.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The operating system refused a read or write.
    /// (The OS error is the `source`, printed by the caller's error chain, not repeated here.)
    #[error("{}{action}", prefix(.file))]
    Io {
        /// The file concerned.
        file: PathBuf,
        /// What was being done.
        action: &'static str,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The gzip stream is corrupt or ends early.
    #[error("{}gzip stream is broken", prefix(.file))]
    Gzip {
        /// The file concerned.
        file: PathBuf,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Neither a NIfTI-1 nor a NIfTI-2 single-file header.
    #[error("{}not a NIfTI file: {reason}", prefix(.file))]
    NotNifti {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `.hdr`/`.img` pair (magic `ni1`/`ni2`); only single `.nii`/`.nii.gz` files are supported.
    #[error(
        "{}separate .hdr/.img NIfTI pairs are not supported; convert to a single .nii or .nii.gz file",
        prefix(.file)
    )]
    HeaderPair {
        /// The file concerned.
        file: PathBuf,
    },
    /// A datatype code we do not handle (complex, RGB, 64-bit integers, ...).
    #[error("{}unsupported NIfTI datatype {code} ({name}); supported: u8 i8 u16 i16 u32 i32 f32 f64", prefix(.file))]
    UnsupportedDataType {
        /// The file concerned.
        file: PathBuf,
        /// The NIfTI datatype code.
        code: i16,
        /// What the code stands for.
        name: &'static str,
    },
    /// `dim[]` is out of range, has more than 4 non-trivial axes, or its product overflows.
    #[error("{}bad dimensions: {reason}", prefix(.file))]
    BadDims {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Some other header field is inconsistent (vox_offset, scaling, ...).
    #[error("{}bad header: {reason}", prefix(.file))]
    BadHeader {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file ends before the header or the voxel data does.
    #[error("{}truncated: {detail}", prefix(.file))]
    Truncated {
        /// The file concerned.
        file: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// The voxel buffer does not match the header's shape (when writing).
    #[error("{}voxel count {got} does not match the header shape {shape:?} ({expected} voxels)", prefix(.file))]
    ShapeMismatch {
        /// The file concerned.
        file: PathBuf,
        /// Values present.
        got: usize,
        /// Values expected.
        expected: usize,
        /// The shape concerned.
        shape: [usize; 4],
    },
    /// An integer voxel is beyond ±2^24, where f32 (medinr's working type) stops holding
    /// every integer: reading it would silently change it, so the scan is refused.
    #[error("{}voxel {index} holds {value}, beyond ±2^24 (16777216): medinr works in f32, which cannot hold every integer past that, so {datatype} scans must stay within ±2^24", prefix(.file))]
    InexactInteger {
        /// The file concerned.
        file: PathBuf,
        /// Flat index of the first such voxel.
        index: usize,
        /// Its stored value.
        value: i64,
        /// The datatype's name.
        datatype: &'static str,
    },
    /// A requested new grid cannot be represented (zero axis, too large for NIfTI-1, ...).
    #[error("{}invalid shape {shape:?}: {reason}", prefix(.file))]
    InvalidShape {
        /// The file concerned.
        file: PathBuf,
        /// The shape concerned.
        shape: [usize; 4],
        /// What is wrong.
        reason: String,
    },
}

/// "path: " or nothing when no path is known.
fn prefix(file: &Path) -> String {
    if file.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", file.display())
    }
}

impl VolumeError {
    /// Attach `path` to an error that was raised without one (keeps an existing path).
    pub fn in_file(mut self, path: &Path) -> Self {
        let file = match &mut self {
            VolumeError::Io { file, .. }
            | VolumeError::Gzip { file, .. }
            | VolumeError::NotNifti { file, .. }
            | VolumeError::HeaderPair { file }
            | VolumeError::UnsupportedDataType { file, .. }
            | VolumeError::BadDims { file, .. }
            | VolumeError::BadHeader { file, .. }
            | VolumeError::Truncated { file, .. }
            | VolumeError::ShapeMismatch { file, .. }
            | VolumeError::InexactInteger { file, .. }
            | VolumeError::InvalidShape { file, .. } => file,
        };
        if file.as_os_str().is_empty() {
            *file = path.to_path_buf();
        }
        self
    }

    /// The file the error is about (empty when unknown).
    pub fn file(&self) -> &Path {
        match self {
            VolumeError::Io { file, .. }
            | VolumeError::Gzip { file, .. }
            | VolumeError::NotNifti { file, .. }
            | VolumeError::HeaderPair { file }
            | VolumeError::UnsupportedDataType { file, .. }
            | VolumeError::BadDims { file, .. }
            | VolumeError::BadHeader { file, .. }
            | VolumeError::Truncated { file, .. }
            | VolumeError::ShapeMismatch { file, .. }
            | VolumeError::InexactInteger { file, .. }
            | VolumeError::InvalidShape { file, .. } => file,
        }
    }
}
