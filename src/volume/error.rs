//! The one error type of the `volume` module.
//!
//! Every variant names the file it is about (`file`), so a message is useful on its own.
//! Errors raised without a file at hand (e.g. [`super::DataType::from_nifti_code`] or
//! [`super::Header::from_bytes`]) carry an empty path, and the reader fills it in with
//! [`VolumeError::in_file`].

use std::path::{Path, PathBuf};

/// What went wrong reading or writing a scan (NIfTI, or DICOM input).
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
    /// A DICOM file or series that medinr cannot turn into a volume; `problem` says why.
    /// `file` is the file or folder given (the problem names the offending file when it is
    /// one of a folder's).
    #[error("{}", dicom_message(.file, .problem))]
    Dicom {
        /// The file or folder concerned.
        file: PathBuf,
        /// What is wrong (boxed: it is large, and errors travel in `Result`s everywhere).
        problem: Box<DicomProblem>,
    },
}

/// "path: DICOM: problem", without the path when the problem already starts with it.
fn dicom_message(file: &std::path::Path, problem: &DicomProblem) -> String {
    let text = problem.to_string();
    if !file.as_os_str().is_empty() && text.starts_with(&file.display().to_string()) {
        format!("DICOM: {text}")
    } else {
        format!("{}DICOM: {text}", prefix(file))
    }
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
            | VolumeError::InvalidShape { file, .. }
            | VolumeError::Dicom { file, .. } => file,
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
            | VolumeError::InvalidShape { file, .. }
            | VolumeError::Dicom { file, .. } => file,
        }
    }
}

/// Why a DICOM file or series was refused (see `volume::dicom` for what is supported).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DicomProblem {
    /// Not a DICOM Part 10 file (no `DICM` at byte 128), or it does not parse.
    #[error("{file}: not a DICOM file ({reason})")]
    NotDicom {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A DICOM file without an image (no Pixel Data, or no Rows/Columns): a report, a
    /// DICOMDIR, a presentation state, ...
    #[error("{file}: not an image ({reason})")]
    NotImage {
        /// The file concerned.
        file: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A folder with no DICOM files.
    #[error("no DICOM files in the folder")]
    Empty,
    /// The pixel data is compressed with a transfer syntax this build cannot decode.
    #[error("{file}: transfer syntax {name} ({uid}) cannot be decoded by this build (supported: uncompressed little/big endian, deflate, RLE lossless, JPEG baseline/extended/lossless); convert the series first, e.g. `gdcmconv --raw` or `dcmdjpeg`")]
    UnsupportedTransferSyntax {
        /// The file concerned.
        file: PathBuf,
        /// The transfer syntax UID.
        uid: String,
        /// Its name ("JPEG 2000 Image Compression", ...), or "unknown".
        name: String,
    },
    /// The decoder of a supported transfer syntax failed (corrupt or unusual stream).
    #[error("{file}: pixel data cannot be decoded: {reason}")]
    Undecodable {
        /// The file concerned.
        file: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// Colour or other multi-sample pixels; medinr compresses one value per voxel.
    #[error("{file}: {samples} samples per pixel ({photometric}); only single-sample (MONOCHROME1/2, PALETTE indices) images are supported")]
    MultiSample {
        /// The file concerned.
        file: PathBuf,
        /// Samples per pixel.
        samples: u16,
        /// Photometric Interpretation.
        photometric: String,
    },
    /// A pixel layout medinr does not handle (bits allocated not 8/16/32, high bit not
    /// bits stored − 1, ...), or a required attribute missing or out of range.
    #[error("{file}: {reason}")]
    BadAttribute {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Files of a folder (or frames of a file) that cannot be stacked: different rows,
    /// columns, orientation, pixel spacing or pixel format.
    #[error("{first} and {other} differ in {what}: {detail}")]
    Mismatch {
        /// A file with the first value.
        first: PathBuf,
        /// A file with another.
        other: PathBuf,
        /// Which attribute.
        what: &'static str,
        /// The two values.
        detail: String,
    },
    /// A folder holding more than one series (Series Instance UID differs).
    #[error("the folder holds {count} series ({first} has {first_uid}, {other} has {other_uid}); put each series in its own folder")]
    MultipleSeries {
        /// Number of distinct Series Instance UIDs.
        count: usize,
        /// A file of the first series.
        first: PathBuf,
        /// Its UID.
        first_uid: String,
        /// A file of another series.
        other: PathBuf,
        /// Its UID.
        other_uid: String,
    },
    /// Slice positions are not evenly spaced (beyond the tolerance): a slice is missing,
    /// or the series has variable spacing.
    #[error("slice positions are not evenly spaced: {detail} (tolerance {:.0} % of the mean step + {} mm); a slice may be missing", 100.0 * crate::volume::dicom::SPACING_TOLERANCE, crate::volume::dicom::POSITION_ROUNDING_MM)]
    UnevenSpacing {
        /// Where the spacing breaks.
        detail: String,
    },
    /// The slices do not step along the slice normal (gantry tilt, or a sheared stack):
    /// the volume is not a rectilinear grid.
    #[error("{detail}; at most {}° (plus {} mm of position rounding) is accepted: resample the series first", crate::volume::dicom::TILT_TOLERANCE_DEG, crate::volume::dicom::POSITION_ROUNDING_MM)]
    Tilted {
        /// How far off the stack is.
        detail: String,
    },
    /// Several images at one position but not the same number at every position (an
    /// incomplete time series), or several time points that cannot be told apart.
    #[error("cannot form volumes: {detail}")]
    UnevenFrames {
        /// What is uneven.
        detail: String,
    },
    /// Rescale slope/intercept differ between slices; NIfTI has one scaling per scan.
    #[error("rescale slope/intercept differ between images ({first} vs {other}); medinr keeps stored values with one NIfTI scl_slope/scl_inter and cannot represent this")]
    RescaleVaries {
        /// One (slope, intercept).
        first: String,
        /// Another.
        other: String,
    },
    /// The image is larger than medinr accepts, or its size overflows.
    #[error("{file}: too large: {reason}")]
    TooLarge {
        /// The file concerned.
        file: PathBuf,
        /// Which sizes.
        reason: String,
    },
}
