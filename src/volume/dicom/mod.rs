//! DICOM input: a series (a folder of single-frame files, one enhanced multi-frame file, or
//! a single image) read into a [`Volume`](super::Volume) with a NIfTI header built from the
//! DICOM geometry, so the rest of medinr (compress, decompress, metrics) sees a NIfTI scan.
//!
//! What the reader does (`read_dicom`, with the default `dicom` feature):
//!
//! - **Slices are ordered by position**: each image's Image Position (Patient) projected on
//!   the slice normal (row cosine × column cosine of Image Orientation (Patient)), never by
//!   file name or Instance Number. Enhanced multi-frame files take position, orientation,
//!   pixel spacing and rescale from the Per-frame or Shared Functional Groups.
//! - **Time**: several images at each position, the same number at every position, make a
//!   4D scan (x, y, z, t); at a position they are ordered by Temporal Position Identifier
//!   (or Index), Trigger Time / Frame Acquisition Number, Acquisition Number, Instance
//!   Number, then file and frame order.
//! - **Geometry** in NIfTI's convention: DICOM patient coordinates are LPS, NIfTI's are RAS,
//!   so x and y are negated. Voxel (i, j, k) = (column, row, slice); the affine's columns
//!   are row cosine × column spacing (Pixel Spacing\[1\]), column cosine × row spacing (Pixel
//!   Spacing\[0\]), slice normal × slice spacing (measured from the positions), the origin
//!   the first slice's position. sform and qform hold the same matrix, both with code 1
//!   (scanner). A single image without position or orientation (secondary capture, some
//!   stripped enhanced files) is read with unit spacing (or Pixel Spacing and Spacing
//!   Between Slices when present) and codes 0 (geometry unknown).
//! - **Values** are the stored integers (Bits Allocated 8/16/32, Pixel Representation,
//!   Bits Stored honoured by masking and sign extension), with Rescale Slope/Intercept in
//!   scl_slope/scl_inter (Hounsfield units for CT). Different rescales per image are refused.
//! - **Transfer syntaxes**: uncompressed (implicit/explicit little endian, explicit big
//!   endian), deflated, RLE lossless, JPEG baseline/extended/lossless, all decoded in pure
//!   Rust. JPEG-LS and JPEG 2000 (and anything else) are refused, naming the syntax.
//! - **Refused, with a [`DicomProblem`](super::DicomProblem)**: non-DICOM or non-image
//!   files, several series in one folder, differing rows/columns/orientation/spacing/pixel
//!   format, unevenly spaced slices beyond [`SPACING_TOLERANCE`] (a missing slice), slices
//!   stepping off the normal beyond [`TILT_TOLERANCE_DEG`] and [`POSITION_ROUNDING_MM`] (gantry tilt, shear), uneven
//!   numbers of images per position, colour (multi-sample) images, and sizes beyond
//!   [`MAX_DECODED_BYTES`]. Every size read from a file is checked before it is allocated.
//!
//! In a folder, every regular file is read except hidden ones (names starting with `.`)
//! and `DICOMDIR`; a file that is not DICOM is an error rather than silently skipped.
//! Sub-folders are not searched.

use std::io::Read;
use std::path::Path;

#[cfg(feature = "dicom")]
mod lengths;
#[cfg(feature = "dicom")]
mod read;
#[cfg(feature = "dicom")]
pub use read::read_dicom;

/// Largest accepted deviation of any slice step from the mean step, as a fraction of the
/// mean (1 %), on top of [`POSITION_ROUNDING_MM`]: beyond it the series has a missing slice
/// or variable spacing. (A missing slice doubles a step, far beyond either allowance.)
pub const SPACING_TOLERANCE: f64 = 0.01;

/// Rounding allowed in Image Position (Patient) (mm). Scanners often write positions to
/// 0.1 mm: the sample MR series' 7 mm steps vary from 6.958 to 7.071 mm (±1 %) and its slices
/// sit up to 0.09 mm off a straight line, from rounding alone.
pub const POSITION_ROUNDING_MM: f64 = 0.1;

/// Largest accepted angle (degrees) between the stack's direction (first to last slice)
/// and the slice normal; each slice may also sit off the line through the first slice by
/// this angle plus [`POSITION_ROUNDING_MM`]. Beyond it the stack is tilted (gantry tilt) or
/// sheared, not a rectilinear grid.
pub const TILT_TOLERANCE_DEG: f64 = 0.1;

/// Largest accepted difference between two images' orientation cosines or relative pixel
/// spacings (DICOM writes them as decimal strings of limited precision).
pub const ORIENTATION_TOLERANCE: f64 = 1e-4;

/// Images closer than this (mm) are at the same position (frames of one slice over time).
pub const SAME_POSITION_MM: f64 = 1e-3;

/// Largest decoded pixel data accepted from one file, and for the whole series (16 GiB).
pub const MAX_DECODED_BYTES: u64 = 16 << 30;

/// True when `path` looks like DICOM input: a folder (a series), a file with `DICM` at byte
/// 128 (the Part 10 preamble), or a name ending in `.dcm` / `.dicom` (case-insensitive).
/// Anything else is taken for NIfTI.
pub fn is_dicom_input(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    ext == "dcm" || ext == "dicom" || has_dicm_preamble(path)
}

/// True when the file has the DICOM Part 10 preamble: 128 bytes, then `DICM`.
pub fn has_dicm_preamble(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| &head[128..] == b"DICM")
        .unwrap_or(false)
}

/// Without the `dicom` feature: DICOM input is refused with a message saying so.
#[cfg(not(feature = "dicom"))]
pub fn read_dicom(path: &Path) -> Result<super::Volume, super::VolumeError> {
    Err(super::VolumeError::Dicom {
        file: path.to_path_buf(),
        problem: Box::new(super::DicomProblem::NotDicom {
            file: path.to_path_buf(),
            reason: "this medinr was built without the `dicom` feature".into(),
        }),
    })
}
