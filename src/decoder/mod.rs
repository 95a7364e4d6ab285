//! Decompression: `.minr` file in, voxels out — the whole scan on its own grid or any other,
//! one frame, or one slice — with the original NIfTI header restored.
//!
//! `Decoder` opens and verifies a file; `evaluator` evaluates the field on grids, frames and
//! slices; `mlp` holds the MLP kernels. Nothing here depends on the training stack.

pub mod evaluator;
pub mod mean;
pub mod mlp;
mod regrid;
pub mod resample;

use rayon::prelude::*;
use std::path::Path;

pub use crate::model::FieldConfig;
pub use evaluator::Evaluator;
pub use mean::{MeanError, TemporalMean};
pub use resample::Plane;

use crate::codec::container::FormatError;
use crate::codec::payload::MinrFile;
use crate::model::ModelError;
use crate::residual::{self, ResidualError};
use crate::volume::{DataType, Header, Volume, VolumeError, Voxels};

/// What part of the output grid to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Every voxel of every frame.
    Full,
    /// One frame of a series (all of a 3D scan when `frame == 0`).
    Frame(usize),
    /// One plane: `axis` 0 = x (sagittal), 1 = y (coronal), 2 = z (axial), at `index`, in `frame`.
    Slice {
        /// 0 = x, 1 = y, 2 = z.
        axis: usize,
        /// Position along the axis.
        index: usize,
        /// Frame of a series (0 for a 3D scan).
        frame: usize,
    },
    /// A box: voxels `start[a] .. end[a]` on each axis (x, y, z, t), ends exclusive.
    Box {
        /// First voxel on each axis.
        start: [usize; 4],
        /// One past the last voxel on each axis.
        end: [usize; 4],
    },
}

/// Largest output a decode may produce (voxels): the memory budget of a decode. The voxels are
/// held as f32 (4 GiB at this cap) and encoded once more for writing (up to 8 GiB for f64), so
/// a typo in `--shape` or a file claiming a 65536×65536 grid is refused with its size named
/// instead of aborting on allocation. Below the cap, allocations are fallible
/// ([`DecodeError::Model`] with `ModelError::Allocation`), so a smaller memory limit also
/// gives an error, not an abort. 2^30 voxels is 8× the largest scan in `data/` upsampled
/// twice per axis (Colin27 at 0.5 mm is 1.1 × 10^8 voxels).
pub const MAX_OUTPUT_VOXELS: usize = 1 << 30;

/// Why a file could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The path as given.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes are not a valid `.minr` file (framing, checksums, payloads).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The NIfTI header stored in the file does not parse.
    #[error("the stored NIfTI header is damaged: {0}")]
    Header(VolumeError),
    /// A NIfTI header for the requested grid cannot be made.
    #[error("no NIfTI header can describe the requested grid: {0}")]
    Regrid(VolumeError),
    /// The stored header and the field disagree about the scan.
    #[error("the stored NIfTI header describes {header:?} {header_type} but the field was fitted to {field:?} code {field_type}: the file is inconsistent")]
    Inconsistent {
        /// Shape in the stored header.
        header: [usize; 4],
        /// Shape the field was fitted to.
        field: [usize; 4],
        /// Datatype in the stored header.
        header_type: String,
        /// Datatype code the field was fitted to.
        field_type: i16,
    },
    /// The stored parameters do not fit the stored configuration.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The request (grid, frame, slice) is outside what the file can answer.
    #[error("invalid request: {0}")]
    Request(String),
    /// The residual layer is damaged or does not match the scan.
    #[error("the residual layer (section RESI) cannot be decoded: {0}")]
    Residual(#[from] ResidualError),
    /// The temporal mean (section MEAN) is damaged or does not match the scan.
    #[error("the temporal mean (section MEAN) cannot be decoded: {0}")]
    Mean(#[from] MeanError),
    /// The grid to produce is over the decode's memory budget ([`MAX_OUTPUT_VOXELS`]).
    #[error("a {}×{}×{}×{} grid is {voxels} voxels ({} GiB as f32), more than the decoder's budget of {MAX_OUTPUT_VOXELS} voxels", shape[0], shape[1], shape[2], shape[3], (*voxels as f64 * 4.0 / (1u64 << 30) as f64).round())]
    TooLarge {
        /// The grid asked for.
        shape: [usize; 4],
        /// Its voxel count (saturated at `u128::MAX`, which no grid reaches).
        voxels: u128,
    },
}

/// An opened, verified `.minr` file.
pub struct Decoder {
    file: MinrFile,
    header: Header,
    /// The field, built when the file is opened, or on first use for a file whose voxels
    /// never need it (a transform stream coded without the field's prediction).
    evaluator: std::sync::OnceLock<Evaluator>,
    /// TENS of such a file, kept for that first use.
    deferred_tensors: Option<Vec<u8>>,
    /// The series' temporal mean, when the field holds the dynamic part alone.
    mean: Option<TemporalMean>,
    bytes: usize,
    /// The decoded scan on its own grid, kept once made (transform files on other grids).
    decoded: std::sync::OnceLock<Vec<f32>>,
}

impl Decoder {
    /// Reads and verifies a `.minr` file.
    pub fn open(path: &Path) -> Result<Decoder, DecodeError> {
        let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Decoder::from_bytes(&bytes)
    }

    /// Parses and verifies everything (checksums, payloads, header/field consistency) before
    /// any voxel is produced.
    ///
    /// The field's tensors of a file whose voxels do not depend on it are checksummed now
    /// and decoded on first use (see `with_tensors`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Decoder, DecodeError> {
        let (file, tens) = MinrFile::parse_deferring_tensors(bytes)?;
        Decoder::with_tensors(file, Tensors::Payload(tens), bytes.len())
    }

    /// The field's evaluator, built from the deferred tensors on first use.
    fn evaluator(&self) -> Result<&Evaluator, DecodeError> {
        if let Some(e) = self.evaluator.get() {
            return Ok(e);
        }
        let tens = self.deferred_tensors.as_deref().unwrap_or_default();
        let evaluator = evaluator_of(&self.file, tens)?;
        Ok(self.evaluator.get_or_init(|| evaluator))
    }

    /// Parses and verifies a file's description — framing, checksums, HEAD, the stored NIfTI
    /// header and its agreement with the field — without decoding the parameters, so it needs
    /// no more memory than the file itself. The returned file's `tensors` is empty.
    pub fn describe(bytes: &[u8]) -> Result<(MinrFile, Header), DecodeError> {
        let file = MinrFile::parse_without_tensors(bytes)?;
        let header = checked_header(&file)?;
        Ok((file, header))
    }

    /// A decoder for a file already in memory (`bytes`: its size on disk, for reports). The
    /// decoder keeps the file's description; its tensors move into the evaluator (one copy
    /// of the parameters, dequantized in place), so [`Decoder::file`]'s `tensors` is empty.
    pub fn from_file(mut file: MinrFile, bytes: usize) -> Result<Decoder, DecodeError> {
        let tensors = file.take_dequantized();
        Decoder::with_tensors(file, Tensors::Decoded(tensors), bytes)
    }

    /// The checks and parts every decoder shares. The field is built now, unless the file's
    /// voxels do not depend on it (a transform stream coded without its prediction): then its
    /// tensors are kept as they are in the file and decoded only if something asks for the
    /// field, so a slice of such a file costs what its chunk costs, not the field's millions
    /// of parameters too.
    fn with_tensors(
        file: MinrFile,
        tensors: Tensors,
        bytes: usize,
    ) -> Result<Decoder, DecodeError> {
        let header = checked_header(&file)?;
        let field_shape = file.head.shape.map(|n| n as usize);
        let mut independent = false;
        if let Some(bytes) = &file.residual {
            let stream = residual::Reader::open(bytes)?;
            if stream.header().shape != field_shape {
                return Err(DecodeError::Residual(ResidualError::Invalid(
                    "its shape differs from the scan's shape in HEAD",
                )));
            }
            independent = stream.header().transform.is_some() && !stream.header().uses_field;
        }
        let evaluator = std::sync::OnceLock::new();
        let mut deferred_tensors = None;
        match tensors {
            Tensors::Payload(tens) if independent => deferred_tensors = Some(tens),
            Tensors::Payload(tens) => {
                let _ = evaluator.set(evaluator_of(&file, &tens)?);
            }
            Tensors::Decoded(t) => {
                let _ = evaluator.set(Evaluator::from_owned(&file.head.field, t)?);
            }
        }
        let mean = match &file.mean {
            Some(section) => Some(TemporalMean::parse(section, field_shape)?),
            None => None,
        };
        Ok(Decoder {
            file,
            header,
            evaluator,
            deferred_tensors,
            mean,
            bytes,
            decoded: std::sync::OnceLock::new(),
        })
    }

    /// The parsed file (without its tensors, which the evaluator holds).
    pub fn file(&self) -> &MinrFile {
        &self.file
    }

    /// The original NIfTI header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.bytes
    }

    /// Shape of the original scan.
    pub fn shape(&self) -> [usize; 4] {
        self.header.shape()
    }

    /// The whole scan on its own grid (`shape = None`) or on another grid covering the same
    /// field of view, with the header adjusted to that grid.
    pub fn decode(&self, shape: Option<[usize; 4]>) -> Result<Volume, DecodeError> {
        let shape = shape.unwrap_or(self.shape());
        check_budget(shape)?;
        let header = if shape == self.shape() {
            self.header.clone()
        } else {
            self.header.with_shape(shape).map_err(DecodeError::Regrid)?
        };
        let (data, _) = self.region(shape, Region::Full)?;
        let data = Voxels::from_f32(data, header.datatype());
        Ok(Volume { data, header })
    }

    /// A box of the scan on its own grid (`start .. end` per axis, ends exclusive) with a header
    /// that places it where it lies in the original's world space. Only the box is evaluated
    /// (and, with a residual layer, only the chunks it touches are decoded).
    pub fn decode_box(&self, start: [usize; 4], end: [usize; 4]) -> Result<Volume, DecodeError> {
        let (data, shape) = self.region(self.shape(), Region::Box { start, end })?;
        let header = self
            .header
            .crop(start, shape)
            .map_err(DecodeError::Regrid)?;
        let data = Voxels::from_f32(data, header.datatype());
        Ok(Volume { data, header })
    }

    /// Stored voxel values of a region of a grid of `shape`; returns them with the region's
    /// shape. A slice evaluates only that slice.
    pub fn region(
        &self,
        shape: [usize; 4],
        region: Region,
    ) -> Result<(Vec<f32>, [usize; 4]), DecodeError> {
        check_request(shape, region)?;
        if self.file.residual.is_some() && shape == self.shape() {
            return self.region_with_residual(region);
        }
        if self.has_transform() {
            return self.transform_on_grid(shape, region);
        }
        let (values, out_shape) = self.evaluator()?.grid(shape, region)?;
        let datatype = Some(self.header.datatype());
        let Some(mean) = &self.mean else {
            let (lo, hi) = (self.file.head.value_min, self.file.head.value_max);
            return Ok((
                values
                    .into_iter()
                    .map(|y| to_stored(y, lo, hi, datatype))
                    .collect(),
                out_shape,
            ));
        };
        // The mean of every voxel of one frame of the region, then added frame by frame.
        let (ranges, _) = evaluator::region_ranges(shape, region);
        let frame_mean = mean.on_grid(shape, &ranges);
        let values = values
            .chunks(frame_mean.len().max(1))
            .flat_map(|frame| {
                frame
                    .iter()
                    .zip(&frame_mean)
                    .map(|(&y, &m)| mean.stored(m, y, datatype))
            })
            .collect();
        Ok((values, out_shape))
    }
}

impl Decoder {
    /// Whether decoding on the original grid reproduces the original within a bound (or
    /// exactly): the file has a residual layer. Other grids get the field alone.
    pub fn has_residual(&self) -> bool {
        self.file.residual.is_some()
    }

    /// The field's prediction of one residual chunk (slices `z` of frames `t`), in stored
    /// values, x fastest — exactly what the encoder predicted.
    /// (The encoder codes its residual against this same function.)
    pub(crate) fn chunk_prediction(
        &self,
        region: &residual::ChunkRegion,
    ) -> Result<Vec<f32>, DecodeError> {
        let shape = self.shape();
        let mut out = Vec::with_capacity(shape[0] * shape[1] * region.z.len() * region.t.len());
        for t in region.t.clone() {
            for z in region.z.clone() {
                let slice = Region::Slice {
                    axis: 2,
                    index: z,
                    frame: t,
                };
                let (values, _) = self.evaluator()?.grid(shape, slice)?;
                let plane = shape[0] * shape[1];
                out.extend(
                    values
                        .into_iter()
                        .enumerate()
                        .map(|(i, y)| self.stored(y, || z * plane + i)),
                );
            }
        }
        Ok(out)
    }

    /// Stored values of the field at field coordinates (`n × dims`), the field alone (with
    /// the temporal mean interpolated there, when the file has one).
    fn evaluate_stored(&self, coords: &[f32]) -> Result<Vec<f32>, DecodeError> {
        let dims = self.file.head.field.dims;
        if self.has_transform() {
            return self.sample_decoded(coords, dims);
        }
        let values = self.evaluator()?.evaluate(coords)?;
        let datatype = Some(self.header.datatype());
        Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, y)| match &self.mean {
                Some(mean) => {
                    let u = [coords[i * dims], coords[i * dims + 1], coords[i * dims + 2]];
                    mean.stored(mean.at(u), y, datatype)
                }
                None => self.stored(y, || 0),
            })
            .collect())
    }

    /// The stored value for field output `y` at a voxel of the own grid (`index` in its
    /// frame, asked for only when the file has a temporal mean).
    fn stored(&self, y: f32, index: impl FnOnce() -> usize) -> f32 {
        let datatype = Some(self.header.datatype());
        match &self.mean {
            Some(mean) => mean.stored(mean.at_index(index()), y, datatype),
            None => {
                let (lo, hi) = (self.file.head.value_min, self.file.head.value_max);
                to_stored(y, lo, hi, datatype)
            }
        }
    }

    /// A region on the original grid through the residual layer: only the chunks the region
    /// touches are decoded (in parallel), each against the field's prediction of that chunk
    /// alone, and of each only the slices the region needs are reconstructed where the
    /// stream allows it.
    fn region_with_residual(&self, region: Region) -> Result<(Vec<f32>, [usize; 4]), DecodeError> {
        let bytes = self.file.residual.as_deref().unwrap_or_default();
        let stream = residual::Reader::open(bytes)?;
        let shape = self.shape();
        let [nx, ny, _, _] = shape;
        let (ranges, out_shape) = evaluator::region_ranges(shape, region);
        let mut needed = Vec::new();
        for c in 0..stream.chunk_count() {
            let cr = stream.chunk_region(c)?;
            let z = cr.z.start.max(ranges[2].start)..cr.z.end.min(ranges[2].end);
            let t = cr.t.start.max(ranges[3].start)..cr.t.end.min(ranges[3].end);
            if !z.is_empty() && !t.is_empty() {
                needed.push((c, cr, z, t));
            }
        }
        let decoded: Vec<Vec<f32>> = needed
            .par_iter()
            .map(|(c, cr, z, _)| {
                let prediction = if stream.header().uses_field {
                    Some(self.chunk_prediction(cr)?)
                } else {
                    None
                };
                Ok(stream.decode_chunk_slices(*c, prediction.as_deref(), z.clone())?)
            })
            .collect::<Result<_, DecodeError>>()?;
        let mut out = vec![0f32; out_shape.iter().product()];
        for ((_, cr, z, t), values) in needed.iter().zip(&decoded) {
            for ti in t.clone() {
                for zi in z.clone() {
                    for yi in ranges[1].clone() {
                        let src = nx * (yi + ny * ((zi - z.start) + z.len() * (ti - cr.t.start)));
                        let dst = out_shape[0]
                            * ((yi - ranges[1].start)
                                + out_shape[1]
                                    * ((zi - ranges[2].start)
                                        + out_shape[2] * (ti - ranges[3].start)));
                        let row = &values[src + ranges[0].start..src + ranges[0].end];
                        out[dst..dst + out_shape[0]].copy_from_slice(row);
                    }
                }
            }
        }
        Ok((out, out_shape))
    }
}

/// The field of `file` from its TENS payload `tens`.
fn evaluator_of(file: &MinrFile, tens: &[u8]) -> Result<Evaluator, DecodeError> {
    Ok(Evaluator::from_owned(
        &file.head.field,
        file.decode_tensor_payload(tens)?,
    )?)
}

/// A file's field parameters as a decoder gets them.
enum Tensors {
    /// Decoded and dequantized already.
    Decoded(Vec<Vec<f32>>),
    /// The file's TENS payload, checksummed but not decoded.
    Payload(Vec<u8>),
}

/// The stored NIfTI header, checked against the field's shape and datatype.
fn checked_header(file: &MinrFile) -> Result<Header, DecodeError> {
    let header = Header::from_bytes(&file.nifti_header).map_err(DecodeError::Header)?;
    let field_shape = file.head.shape.map(|n| n as usize);
    if header.shape() != field_shape || header.datatype().nifti_code() != file.head.datatype {
        return Err(DecodeError::Inconsistent {
            header: header.shape(),
            field: field_shape,
            header_type: header.datatype().name().to_string(),
            field_type: file.head.datatype,
        });
    }
    Ok(header)
}

/// Refuses a grid over the memory budget, before any header or buffer is made for it.
pub fn check_budget(shape: [usize; 4]) -> Result<(), DecodeError> {
    let voxels = shape.iter().map(|&n| n as u128).product::<u128>();
    if voxels > MAX_OUTPUT_VOXELS as u128 {
        return Err(DecodeError::TooLarge { shape, voxels });
    }
    Ok(())
}

fn check_request(shape: [usize; 4], region: Region) -> Result<(), DecodeError> {
    if shape.contains(&0) {
        return Err(DecodeError::Request(format!(
            "shape {shape:?} has a zero dimension"
        )));
    }
    match region {
        Region::Full => check_budget(shape)?,
        Region::Frame(_) => check_budget([shape[0], shape[1], shape[2], 1])?,
        // A slice's own size is bounded by the two in-plane axes.
        Region::Slice { axis, .. } => {
            let mut plane = [shape[0], shape[1], shape[2], 1];
            plane[axis.min(2)] = 1;
            check_budget(plane)?
        }
        Region::Box { start, end } => {
            check_budget([0, 1, 2, 3].map(|a| end[a].saturating_sub(start[a])))?
        }
    }
    match region {
        Region::Full => Ok(()),
        Region::Frame(t) if t < shape[3] => Ok(()),
        Region::Frame(t) => Err(DecodeError::Request(format!(
            "frame {t} does not exist (the scan has {} frame{})",
            shape[3],
            if shape[3] == 1 { "" } else { "s" }
        ))),
        Region::Slice { axis, index, frame } => {
            if axis > 2 {
                Err(DecodeError::Request(format!(
                    "axis {axis} is not x, y or z"
                )))
            } else if index >= shape[axis] {
                Err(DecodeError::Request(format!(
                    "slice {index} does not exist on axis {} (0..{})",
                    ["x", "y", "z"][axis],
                    shape[axis]
                )))
            } else if frame >= shape[3] {
                Err(DecodeError::Request(format!(
                    "frame {frame} does not exist (the scan has {} frame{})",
                    shape[3],
                    if shape[3] == 1 { "" } else { "s" }
                )))
            } else {
                Ok(())
            }
        }
        Region::Box { start, end } => {
            for a in 0..4 {
                if !(start[a] < end[a] && end[a] <= shape[a]) {
                    return Err(DecodeError::Request(format!(
                        "region {}..{} on axis {} is empty or outside 0..{}",
                        start[a],
                        end[a],
                        ["x", "y", "z", "t"][a],
                        shape[a]
                    )));
                }
            }
            Ok(())
        }
    }
}

/// Maps a field output to a stored voxel value: de-normalise, then for integer types round to
/// nearest (ties away from zero) and clamp to the type's range.
pub fn to_stored(y: f32, value_min: f64, value_max: f64, datatype: Option<DataType>) -> f32 {
    stored_value(value_min + y as f64 * (value_max - value_min), datatype)
}

/// A de-normalised value in the stored type: integer types round to nearest (ties away from
/// zero) and clamp to the type's range; float types take the f32 nearest.
pub fn stored_value(v: f64, datatype: Option<DataType>) -> f32 {
    match datatype {
        Some(dt) if dt.is_integer() => {
            let (lo, hi) = dt.range();
            v.round().clamp(lo, hi) as f32
        }
        _ => v as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_are_rounded_and_clamped() {
        assert_eq!(to_stored(0.5, 0.0, 255.0, Some(DataType::U8)), 128.0);
        assert_eq!(to_stored(1.3, 0.0, 255.0, Some(DataType::U8)), 255.0);
        assert_eq!(to_stored(-0.1, 0.0, 255.0, Some(DataType::U8)), 0.0);
        assert_eq!(
            to_stored(0.0, -1024.0, 3071.0, Some(DataType::I16)),
            -1024.0
        );
        assert_eq!(to_stored(0.25, 0.0, 1.0, Some(DataType::F32)), 0.25);
    }

    #[test]
    fn requests_outside_the_grid_are_refused() {
        assert!(check_request(
            [10, 10, 10, 1],
            Region::Slice {
                axis: 2,
                index: 10,
                frame: 0
            }
        )
        .is_err());
        assert!(check_request([10, 10, 10, 1], Region::Frame(1)).is_err());
        assert!(check_request([0, 10, 10, 1], Region::Full).is_err());
        assert!(check_request([1 << 20, 1 << 20, 1 << 20, 1], Region::Full).is_err());
        assert!(check_request(
            [10, 10, 10, 2],
            Region::Slice {
                axis: 0,
                index: 9,
                frame: 1
            }
        )
        .is_ok());
    }
}
