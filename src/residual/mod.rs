//! Residual layer: guaranteed worst-case error and lossless coding on top of the field.
//!
//! The neural field predicts every voxel; this layer codes what the field misses, so that
//! the decoded scan is within a chosen absolute error `D` of the original (or identical to
//! it). It is a closed-loop predictive coder in the tradition of JPEG-LS, CALIC and SZ: each
//! voxel is predicted from the field and from already *reconstructed* neighbours (W, N, NW,
//! NE in the slice, the previous slice, the previous frame), the prediction error is
//! quantized with step `2D + 1` (integers) and coded with an adaptive binary range coder in
//! contexts of local activity. See docs/FORMAT.md, chapter "Residual layer".
//!
//! The scan is cut into chunks (a few slices of a few frames) coded independently, so one
//! slice is decoded from its chunk and the field prediction of that chunk alone.
//!
//! A stream may carry a region of interest ([`encode_roi`], stream version 2): a mask, coded at
//! the start of each chunk in contexts of its coded neighbours, and a second quantizer, so that
//! voxels inside the mask meet a tighter bound than the rest.
//!
//! ```text
//! let bytes = residual::encode(&orig, Some(&field), shape, Mode::Bound { max_error: 2.0 },
//!                              Kind::Integer { min: 0, max: 255 })?;
//! let values = residual::decode(&bytes, Some(&field))?;          // the whole scan
//! let reader = residual::Reader::open(&bytes)?;                   // or chunk by chunk
//! let c = reader.chunk_of(z, t);
//! let part = reader.decode_chunk(c, Some(&field_of_region(reader.chunk_region(c))))?;
//! ```
//!
//! Candle-free by design: the prediction comes in as plain stored values.

mod domain;
pub(crate) mod engine;
mod error;
pub(crate) mod rangecoder;
mod stream;
mod subband;
pub(crate) mod symbol;
mod transform;
mod wavelet;

#[cfg(test)]
mod tests;

pub use domain::Domain;
pub use error::ResidualError;
pub use stream::{ChunkRegion, RoiHeader, StreamHeader, TransformHeader};
pub use subband::Contexts;
pub use transform::{OutlierBound, TransformOptions};

use std::ops::Range;

use crate::volume::{DataType, Voxels};

use engine::{ChunkRoi, ChunkShape, DecodeIo, EncodeIo, LatticeCheck};
use rangecoder::Encoder;
use rayon::prelude::*;
use stream::ChunkEntry;

/// Default slices per chunk: 16 keeps the restart cost (models learning afresh, a first
/// slice without the previous one) small while one slice still decodes quickly.
pub const DEFAULT_CHUNK_Z: usize = 16;
/// Default frames per chunk of a 4D scan (the first frame of a chunk has no previous frame).
pub const DEFAULT_CHUNK_T: usize = 16;

/// Memory the encoder may give to chunks being coded at once (bytes): 768 MiB, two chunks
/// of a 512×512 CT, one of a long 4D series.
const ENCODE_MEMORY_BUDGET: usize = 768 << 20;
/// Bytes a chunk being coded holds per voxel: the value and the field's prediction (f32
/// each), both in the coder's domain and the reconstruction (i64 each), the voxel's index in
/// the scan, its mask flag, the coder's output and the prediction's evaluation buffers
/// (about 50 measured on the chest CT, rounded up).
const BYTES_PER_CODED_VOXEL: usize = 64;

/// What the decoded values must satisfy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// `|decoded − original| ≤ max_error` for every voxel. Integer scans use `D =
    /// floor(max_error)`; for float scans `max_error = 0` means [`Mode::Lossless`].
    Bound { max_error: f64 },
    /// Decoded values identical to the originals (float scans: the same bit patterns).
    Lossless,
}

/// The stored type of the scan's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Integer values within `min ..= max` (the datatype's range, or the scan's own; field
    /// predictions outside it are clamped into it). With a bound `D > 0` the range must lie
    /// within ±2^24 (f32 holds every integer there), so pass the scan's own range for
    /// i32/u32 scans.
    Integer { min: i64, max: i64 },
    /// f32 values (f64 scans as medinr holds them, in f32).
    Float,
}

impl Kind {
    /// The kind of a NIfTI datatype: integer types with their full range, or float.
    pub fn of(datatype: DataType) -> Kind {
        if datatype.is_integer() {
            let (min, max) = datatype.range();
            Kind::Integer {
                min: min as i64,
                max: max as i64,
            }
        } else {
            Kind::Float
        }
    }
}

/// A region of interest: a tighter bound inside a mask than the [`Mode::Bound`] outside it.
#[derive(Clone, Copy, Debug)]
pub struct Roi<'a> {
    /// True inside, x fastest: either one flag per voxel of the scan, or one per voxel of a
    /// frame (`nx·ny·nz`), then the same mask holds for every frame.
    pub mask: &'a [bool],
    /// The bound inside, `0 ≤ max_error ≤` the outer bound; 0 means exact. Integer scans use
    /// `⌊max_error⌋`.
    pub max_error: f64,
}

/// Encoder settings (chunking); decoders read them from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Slices per chunk (clamped to the scan's slice count).
    pub chunk_z: usize,
    /// Frames per chunk (clamped to the scan's frame count).
    pub chunk_t: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_z: DEFAULT_CHUNK_Z,
            chunk_t: DEFAULT_CHUNK_T,
        }
    }
}

fn domain_for(mode: Mode, kind: Kind) -> Result<Domain, ResidualError> {
    let bound = match mode {
        Mode::Lossless => 0.0,
        Mode::Bound { max_error } => {
            if !(max_error.is_finite() && max_error >= 0.0) {
                return Err(ResidualError::InvalidBound(max_error));
            }
            max_error
        }
    };
    Ok(match kind {
        Kind::Integer { min, max } => {
            if min > max || (max as i128 - min as i128) > domain::MAX_INTEGER_SPAN as i128 {
                return Err(ResidualError::InvalidRange { min, max });
            }
            // A bound beyond the range is as good as the range itself; one beyond MAX_BOUND
            // is stored as MAX_BOUND (a tighter guarantee; see there why).
            let d = bound
                .floor()
                .min((max - min) as f64)
                .min(domain::MAX_BOUND as f64) as i64;
            let limit = domain::MAX_BOUNDED_MAGNITUDE;
            if d > 0 && (min < -limit || max > limit) {
                return Err(ResidualError::RangeTooWideForBound { min, max });
            }
            Domain::Integer {
                lo: min,
                hi: max,
                d,
            }
        }
        Kind::Float if bound == 0.0 => Domain::FloatBits,
        Kind::Float => Domain::FloatLattice { bound },
    })
}

/// The domain and ROI header of a stream with a region of interest: `outer` is the bound
/// outside the mask, `inner` inside it.
///
/// Integer scans quantize with `d = ⌊inner⌋` inside and `d_out = ⌊outer⌋` outside (both
/// capped as in [`domain_for`]). Float scans work on the lattice of step `2·inner` (or
/// `2·outer` when `inner` is 0), coded exactly inside and with `d_out =
/// ⌊(outer/inner − 1)/2⌋` outside, so that `(2·d_out + 1)·inner ≤ outer`; every voxel whose
/// reconstruction misses its bound after f32 rounding is escaped (with `inner = 0`: every
/// inside voxel not exactly on the lattice).
fn roi_domain(outer: f64, inner: f64, kind: Kind) -> Result<(Domain, RoiHeader), ResidualError> {
    for b in [outer, inner] {
        if !(b.is_finite() && b >= 0.0) {
            return Err(ResidualError::InvalidBound(b));
        }
    }
    if inner > outer {
        return Err(ResidualError::RoiBoundAboveOuter { inner, outer });
    }
    match kind {
        Kind::Integer { .. } => {
            let outside = domain_for(Mode::Bound { max_error: outer }, kind)?;
            let d_out = outside.d();
            let d_in = (inner.floor() as i64).min(d_out);
            let Domain::Integer { lo, hi, .. } = outside else {
                unreachable!("an integer kind gives the integer domain")
            };
            Ok((
                Domain::Integer { lo, hi, d: d_in },
                RoiHeader {
                    d_out,
                    bound_in: d_in as f64,
                    bound_out: d_out as f64,
                    shared_mask: false,
                },
            ))
        }
        Kind::Float if outer == 0.0 => Err(ResidualError::InvalidBound(outer)),
        Kind::Float => {
            let lattice = if inner > 0.0 { inner } else { outer };
            let d_out = if inner > 0.0 {
                ((outer / inner - 1.0) / 2.0)
                    .floor()
                    .clamp(0.0, domain::MAX_BOUND as f64) as i64
            } else {
                0
            };
            Ok((
                Domain::FloatLattice { bound: lattice },
                RoiHeader {
                    d_out,
                    bound_in: inner,
                    bound_out: outer,
                    shared_mask: false,
                },
            ))
        }
    }
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), ResidualError> {
    if got != expected {
        return Err(ResidualError::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Indices of chunk `region` in the full scan, in chunk order (t, z, then the slice).
fn region_ranges(
    shape: [usize; 4],
    region: &ChunkRegion,
) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let slice = shape[0] * shape[1];
    region.t.clone().flat_map(move |t| {
        region.z.clone().map(move |z| {
            let start = (t * shape[2] + z) * slice;
            start..start + slice
        })
    })
}

fn chunk_shape(header: &StreamHeader, region: &ChunkRegion) -> ChunkShape {
    ChunkShape {
        nx: header.shape[0],
        ny: header.shape[1],
        nz: region.z.len(),
        nt: region.t.len(),
    }
}

/// The field prediction of a chunk in the domain (empty without a field).
fn field_in_domain(domain: &Domain, prediction: Option<&[f32]>) -> Result<Vec<i64>, ResidualError> {
    match prediction {
        None => Ok(Vec::new()),
        Some(p) => p
            .iter()
            .enumerate()
            .map(|(i, &v)| domain.prediction(i, v))
            .collect(),
    }
}

/// Codes `original` (stored values, x fastest, shape `[nx, ny, nz, nt]`) against the field's
/// `prediction` of it (stored values; for integer kinds already rounded and clamped), or
/// against causal neighbours alone when `prediction` is `None`. Default chunking.
pub fn encode(
    original: &[f32],
    prediction: Option<&[f32]>,
    shape: [usize; 4],
    mode: Mode,
    kind: Kind,
) -> Result<Vec<u8>, ResidualError> {
    encode_with(original, prediction, shape, mode, kind, &Options::default())
}

/// [`encode`] with explicit [`Options`].
pub fn encode_with(
    original: &[f32],
    prediction: Option<&[f32]>,
    shape: [usize; 4],
    mode: Mode,
    kind: Kind,
    options: &Options,
) -> Result<Vec<u8>, ResidualError> {
    encode_slices(original, prediction, shape, mode, kind, None, options)
}

/// [`encode_with`] with a region of interest: every voxel inside `roi.mask` is within
/// `roi.max_error` of the original, every other one within `mode`'s bound, which must be a
/// [`Mode::Bound`]. The mask is stored in the stream (a version-2 stream).
pub fn encode_roi(
    original: &[f32],
    prediction: Option<&[f32]>,
    shape: [usize; 4],
    mode: Mode,
    kind: Kind,
    roi: &Roi,
    options: &Options,
) -> Result<Vec<u8>, ResidualError> {
    encode_slices(original, prediction, shape, mode, kind, Some(roi), options)
}

/// Where the encoder reads the scan's stored values: a buffer of f32, or a scan's
/// [`Voxels`] in their own type, a chunk at a time.
pub trait Samples: Sync {
    /// Number of values.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values `start .. start + out.len()`, into `out`.
    fn read(&self, start: usize, out: &mut [f32]);
}

impl Samples for &[f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
    fn read(&self, start: usize, out: &mut [f32]) {
        out.copy_from_slice(&self[start..start + out.len()]);
    }
}

impl Samples for Voxels {
    fn len(&self) -> usize {
        Voxels::len(self)
    }
    fn read(&self, start: usize, out: &mut [f32]) {
        Voxels::read(self, start, out)
    }
}

/// The field's prediction of one chunk (stored values, in chunk order: frames, slices, then
/// each slice x fastest), made when the chunk is coded.
pub type ChunkPrediction<'a> = &'a (dyn Fn(&ChunkRegion) -> Result<Vec<f32>, ResidualError> + Sync);

/// The slice-based entry points: the prediction of each chunk gathered from `prediction`.
fn encode_slices(
    original: &[f32],
    prediction: Option<&[f32]>,
    shape: [usize; 4],
    mode: Mode,
    kind: Kind,
    roi: Option<&Roi>,
    options: &Options,
) -> Result<Vec<u8>, ResidualError> {
    let Some(p) = prediction else {
        return encode_chunked(&original, None, shape, mode, kind, roi, options);
    };
    let total = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
    check_len(
        "prediction",
        p.len(),
        total.ok_or(ResidualError::InvalidShape(shape))?,
    )?;
    let gather = |region: &ChunkRegion| -> Result<Vec<f32>, ResidualError> {
        Ok(region_ranges(shape, region)
            .flat_map(|r| p[r].iter().copied())
            .collect())
    };
    encode_chunked(&original, Some(&gather), shape, mode, kind, roi, options)
}

/// [`encode_with`] / [`encode_roi`] for scans too large to hold more than once: the values
/// are read a chunk at a time from `original`, and the field's prediction of each chunk is
/// made by `prediction` when that chunk is coded, so memory grows with the chunks in flight,
/// not with the scan.
pub fn encode_chunked(
    original: &dyn Samples,
    prediction: Option<ChunkPrediction>,
    shape: [usize; 4],
    mode: Mode,
    kind: Kind,
    roi: Option<&Roi>,
    options: &Options,
) -> Result<Vec<u8>, ResidualError> {
    let (domain, roi_header) = match (roi, mode) {
        (None, _) => (domain_for(mode, kind)?, None),
        (Some(_), Mode::Lossless) => return Err(ResidualError::RoiNeedsBound),
        (Some(r), Mode::Bound { max_error }) => {
            let (domain, mut h) = roi_domain(max_error, r.max_error, kind)?;
            let frame = shape[0] * shape[1] * shape[2];
            h.shared_mask = r.mask.len() == frame && shape[3] > 1;
            (domain, Some(h))
        }
    };
    let header = StreamHeader {
        shape,
        domain,
        uses_field: prediction.is_some(),
        chunk_z: options.chunk_z.min(shape[2]),
        chunk_t: options.chunk_t.min(shape[3]),
        roi: roi_header,
        transform: None,
    };
    if options.chunk_z == 0 || options.chunk_t == 0 {
        return Err(ResidualError::InvalidChunkSize(0));
    }
    header.validate()?;
    let total: usize = shape.iter().product();
    check_len("original", original.len(), total)?;
    if let Some(r) = roi {
        let frame = shape[0] * shape[1] * shape[2];
        if r.mask.len() != frame {
            check_len("mask", r.mask.len(), total)?;
        }
    }
    // Float lattice with a region of interest: lattice indices without the bound check,
    // which the encoder makes per voxel against the voxel's own bound.
    let check = match (&roi_header, domain) {
        (Some(h), Domain::FloatLattice { .. }) => Some(LatticeCheck {
            domain,
            inside: h.bound_in,
            outside: h.bound_out,
        }),
        _ => None,
    };

    let code_chunk = |c: usize| -> Result<Vec<u8>, ResidualError> {
        let region = header.chunk_region(c);
        let cs = chunk_shape(&header, &region);
        let (raw, offset, pred) = read_chunk(original, prediction, &header, &region)?;
        let values = raw
            .iter()
            .zip(&offset)
            .map(|(&x, &i)| match check {
                Some(_) => Ok(domain::lattice_index(x, domain)),
                None => domain.original(i, x),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let field =
            field_in_domain(&domain, pred.as_deref()).map_err(|e| remap_index(e, &offset))?;
        let mask: Vec<bool> = match roi {
            None => Vec::new(),
            Some(r) if r.mask.len() == total => offset.iter().map(|&i| r.mask[i]).collect(),
            Some(r) => {
                let frame = shape[0] * shape[1] * shape[2];
                offset.iter().map(|&i| r.mask[i % frame]).collect()
            }
        };
        let mut io = EncodeIo {
            values: &values,
            raw: &raw,
            mask: &mask,
            check,
            enc: Encoder::new(),
        };
        let chunk_roi = match &header.roi {
            Some(h) => {
                engine::code_mask(cs, h.shared_mask, &mut io);
                Some(ChunkRoi {
                    mask: &mask,
                    d_out: h.d_out,
                })
            }
            None => None,
        };
        engine::run(cs, &domain, &field, chunk_roi, &mut io)?;
        Ok(io.enc.finish())
    };
    code_all(&header, &code_chunk)
}

/// A chunk's stored values (chunk order), their indices in the scan, and the field's
/// prediction of the chunk when there is a field.
type ChunkInput = (Vec<f32>, Vec<usize>, Option<Vec<f32>>);

fn read_chunk(
    original: &dyn Samples,
    prediction: Option<ChunkPrediction>,
    header: &StreamHeader,
    region: &ChunkRegion,
) -> Result<ChunkInput, ResidualError> {
    let cs = chunk_shape(header, region);
    let mut raw = vec![0f32; cs.voxels()];
    let mut offset = Vec::with_capacity(cs.voxels());
    for range in region_ranges(header.shape, region) {
        let at = offset.len();
        original.read(range.start, &mut raw[at..at + range.len()]);
        offset.extend(range);
    }
    let pred = match prediction {
        Some(predict) => {
            let p = predict(region)?;
            check_len("chunk prediction", p.len(), cs.voxels())?;
            Some(p)
        }
        None => None,
    };
    Ok((raw, offset, pred))
}

/// Codes every chunk with `code_chunk` and assembles the stream: header, table, chunks.
fn code_all(
    header: &StreamHeader,
    code_chunk: &(dyn Fn(usize) -> Result<Vec<u8>, ResidualError> + Sync),
) -> Result<Vec<u8>, ResidualError> {
    let chunks = code_chunks(header, code_chunk)?;
    assemble(header, &chunks)
}

/// Every chunk of `header`'s grid coded by `code_chunk`, in order.
fn code_chunks(
    header: &StreamHeader,
    code_chunk: &(dyn Fn(usize) -> Result<Vec<u8>, ResidualError> + Sync),
) -> Result<Vec<Vec<u8>>, ResidualError> {
    let shape = header.shape;
    // Chunks in parallel, but no more at once than the memory budget holds: a chunk of a
    // large series is millions of voxels, and a many-core machine would otherwise hold one
    // per core.
    let largest = header.chunk_z * header.chunk_t * shape[0] * shape[1];
    let in_flight = (ENCODE_MEMORY_BUDGET / (largest * BYTES_PER_CODED_VOXEL).max(1)).max(1);
    let all: Vec<usize> = (0..header.chunk_count()).collect();
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(all.len());
    for group in all.chunks(in_flight) {
        let coded: Vec<Vec<u8>> = group
            .par_iter()
            .map(|&c| code_chunk(c))
            .collect::<Result<_, ResidualError>>()?;
        chunks.extend(coded);
    }
    Ok(chunks)
}

/// The stream: header, chunk table, chunks.
fn assemble(header: &StreamHeader, chunks: &[Vec<u8>]) -> Result<Vec<u8>, ResidualError> {
    let mut out =
        Vec::with_capacity(header.bytes() + chunks.iter().map(|c| c.len() + 8).sum::<usize>());
    header.write(&mut out);
    stream::write_table(&mut out, chunks)?;
    for c in chunks {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// A transform stream (stream version 4, [`transform`]) of `original`, read a chunk at a
/// time as in [`encode_chunked`]: the values minus the field's `prediction` (or the values
/// themselves) wavelet-coded at `transform`'s step. Integer kinds decode rounded and clamped
/// into `min ..= max`; there is no error bound. Fails on non-finite values.
pub fn encode_transform(
    original: &dyn Samples,
    prediction: Option<ChunkPrediction>,
    shape: [usize; 4],
    kind: Kind,
    transform: &TransformOptions,
    options: &Options,
) -> Result<Vec<u8>, ResidualError> {
    // The lossless domain: integers in their range (d = 0), or floats as they are.
    let domain = domain_for(Mode::Lossless, kind)?;
    if options.chunk_z == 0 || options.chunk_t == 0 {
        return Err(ResidualError::InvalidChunkSize(0));
    }
    let integer = matches!(domain, Domain::Integer { .. });
    let outlier_bound = match transform.outliers {
        OutlierBound::None => None,
        _ if !integer => {
            return Err(ResidualError::Invalid(
                "outlier lists (a worst-case error) need an integer scan",
            ))
        }
        OutlierBound::Fixed(b) => Some(b.min(transform::MAX_OUTLIER_BOUND)),
        OutlierBound::Tail { sigmas, share }
            if sigmas.is_finite() && sigmas >= 0.0 && share.is_finite() && share >= 0.0 =>
        {
            Some(0)
        }
        OutlierBound::Tail { .. } => {
            return Err(ResidualError::Invalid(
                "outlier sigmas and share must be finite and ≥ 0",
            ))
        }
    };
    let mut t = TransformHeader {
        levels: transform.levels,
        base_step: transform.base_step as f32,
        outlier_bound,
        contexts: transform.contexts,
    };
    if !(transform.rounding.is_finite() && (0.0..=0.5).contains(&transform.rounding)) {
        return Err(ResidualError::Invalid(
            "transform rounding must be in [0, 0.5]",
        ));
    }
    let mut header = StreamHeader {
        shape,
        domain,
        uses_field: prediction.is_some(),
        chunk_z: options.chunk_z.min(shape[2]),
        chunk_t: options.chunk_t.min(shape[3]),
        roi: None,
        transform: Some(t),
    };
    header.validate()?;
    let total: usize = shape.iter().product();
    check_len("original", original.len(), total)?;
    // The stream's bound is the largest of its blocks' (known once they are coded).
    let largest = std::sync::atomic::AtomicU32::new(0);
    let code_chunk = |c: usize| -> Result<Vec<u8>, ResidualError> {
        let region = header.chunk_region(c);
        let cs = chunk_shape(&header, &region);
        let (raw, offset, pred) = read_chunk(original, prediction, &header, &region)?;
        let (bytes, bound) =
            transform::encode_chunk(&raw, pred.as_deref(), &t, cs, transform, domain, |i| {
                offset[i]
            })?;
        largest.fetch_max(bound, std::sync::atomic::Ordering::Relaxed);
        Ok(bytes)
    };
    let chunks = code_chunks(&header, &code_chunk)?;
    if let Some(b) = &mut t.outlier_bound {
        *b = largest.into_inner();
    }
    header.transform = Some(t);
    assemble(&header, &chunks)
}

/// Whether `bytes` starts like a transform stream (stream version 3 or 4), which needs format 4.0
/// of the container.
pub fn is_transform_stream(bytes: &[u8]) -> bool {
    bytes.len() > 4
        && bytes[..4] == stream::MAGIC
        && [
            stream::VERSION_TRANSFORM,
            stream::VERSION_TRANSFORM_CONTEXTS,
        ]
        .contains(&bytes[4])
}

/// Reports a chunk-local voxel index as its index in the scan.
fn remap_index(e: ResidualError, offset: &[usize]) -> ResidualError {
    match e {
        ResidualError::ValueOutOfRange {
            what,
            index,
            value,
            min,
            max,
        } => ResidualError::ValueOutOfRange {
            what,
            index: offset.get(index).copied().unwrap_or(index),
            value,
            min,
            max,
        },
        e => e,
    }
}

/// A parsed residual stream: header and chunk table checked, chunks decoded on demand.
pub struct Reader<'a> {
    bytes: &'a [u8],
    header: StreamHeader,
    table: Vec<ChunkEntry>,
}

impl<'a> Reader<'a> {
    /// Parses the header and the chunk table (which must exactly cover the rest of `bytes`).
    pub fn open(bytes: &'a [u8]) -> Result<Reader<'a>, ResidualError> {
        let header = StreamHeader::read(bytes)?;
        let table = stream::read_table(bytes, &header)?;
        Ok(Reader {
            bytes,
            header,
            table,
        })
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    pub fn chunk_count(&self) -> usize {
        self.table.len()
    }

    /// Slices and frames covered by chunk `index` (all of x and y).
    pub fn chunk_region(&self, index: usize) -> Result<ChunkRegion, ResidualError> {
        self.check_index(index)?;
        Ok(self.header.chunk_region(index))
    }

    /// The chunk holding slice `z` of frame `t`.
    pub fn chunk_of(&self, z: usize, t: usize) -> Result<usize, ResidualError> {
        let [_, _, nz, nt] = self.header.shape;
        let (cz, _) = self.header.chunk_grid();
        let index = if z < nz && t < nt {
            (t / self.header.chunk_t) * cz + z / self.header.chunk_z
        } else {
            usize::MAX
        };
        self.check_index(index)?;
        Ok(index)
    }

    fn check_index(&self, index: usize) -> Result<(), ResidualError> {
        if index >= self.table.len() {
            return Err(ResidualError::NoSuchChunk {
                index,
                count: self.table.len(),
            });
        }
        Ok(())
    }

    /// Decodes chunk `index`. `prediction` is the field's prediction of the chunk's region
    /// only (`[nx, ny, z.len(), t.len()]`, x fastest), required exactly when the stream was
    /// coded with one. Returns the region's values in the same order.
    pub fn decode_chunk(
        &self,
        index: usize,
        prediction: Option<&[f32]>,
    ) -> Result<Vec<f32>, ResidualError> {
        let z = self.chunk_region(index)?.z;
        self.decode_chunk_slices(index, prediction, z)
    }

    /// Slices `z` (scan indices, within the chunk's) of chunk `index`, in the chunk's order
    /// (frames, slices, x fastest); `prediction` as for [`Reader::decode_chunk`], the whole
    /// chunk's. The chunk is read and checked whole; a transform stream that does not split
    /// z transforms back only these slices, which is what makes one slice cheap.
    pub fn decode_chunk_slices(
        &self,
        index: usize,
        prediction: Option<&[f32]>,
        z: Range<usize>,
    ) -> Result<Vec<f32>, ResidualError> {
        let region = self.chunk_region(index)?;
        if z.start < region.z.start || z.end > region.z.end || z.is_empty() {
            return Err(ResidualError::SlicesOutsideChunk {
                index,
                start: z.start,
                end: z.end,
                first: region.z.start,
                last: region.z.end,
            });
        }
        let local = z.start - region.z.start..z.end - region.z.start;
        let cs = chunk_shape(&self.header, &region);
        if prediction.is_some() != self.header.uses_field {
            return Err(ResidualError::PredictionPresence);
        }
        if let Some(p) = prediction {
            check_len("prediction", p.len(), cs.voxels())?;
        }
        let entry = &self.table[index];
        let data = &self.bytes[entry.bytes.clone()];
        if crc32fast::hash(data) != entry.crc {
            return Err(ResidualError::ChunkChecksum(index));
        }
        let domain = self.header.domain;
        if let Some(t) = &self.header.transform {
            return transform::decode_chunk(data, index, t, cs, prediction, domain, local);
        }
        let field = field_in_domain(&domain, prediction)?;
        let dec = rangecoder::Decoder::new(data).ok_or(ResidualError::CorruptChunk(index))?;
        let mut io = DecodeIo { dec };
        let mask = match &self.header.roi {
            Some(h) => engine::code_mask(cs, h.shared_mask, &mut io),
            None => Vec::new(),
        };
        let roi = self.header.roi.map(|h| ChunkRoi {
            mask: &mask,
            d_out: h.d_out,
        });
        let out = engine::run(cs, &domain, &field, roi, &mut io)
            .map_err(|_| ResidualError::CorruptChunk(index))?;
        if !io.dec.finish() {
            return Err(ResidualError::CorruptChunk(index));
        }
        let mut values: Vec<f32> = out.values.iter().map(|&v| domain.value(v)).collect();
        for (i, bits) in out.escapes {
            values[i] = f32::from_bits(bits);
        }
        if local.len() == cs.nz {
            return Ok(values);
        }
        let plane = cs.nx * cs.ny;
        Ok(values
            .chunks_exact(plane * cs.nz)
            .flat_map(|frame| &frame[local.start * plane..local.end * plane])
            .copied()
            .collect())
    }

    /// Decodes every chunk (in parallel) into the whole scan. `prediction` covers the scan.
    pub fn decode_all(&self, prediction: Option<&[f32]>) -> Result<Vec<f32>, ResidualError> {
        let shape = self.header.shape;
        let total: usize = shape.iter().product();
        if let Some(p) = prediction {
            check_len("prediction", p.len(), total)?;
        }
        let parts: Vec<Vec<f32>> = (0..self.chunk_count())
            .into_par_iter()
            .map(|c| {
                let region = self.header.chunk_region(c);
                let pred = prediction.map(|p| {
                    region_ranges(shape, &region)
                        .flat_map(|r| p[r].iter().copied())
                        .collect::<Vec<f32>>()
                });
                self.decode_chunk(c, pred.as_deref())
            })
            .collect::<Result<_, _>>()?;
        let mut out = vec![0f32; total];
        for (c, part) in parts.iter().enumerate() {
            let region = self.header.chunk_region(c);
            let mut src = part.as_slice();
            for r in region_ranges(shape, &region) {
                let (head, tail) = src.split_at(r.len());
                out[r].copy_from_slice(head);
                src = tail;
            }
        }
        Ok(out)
    }
}

/// Decodes a whole stream; `prediction` is the field's prediction of the whole scan.
pub fn decode(bytes: &[u8], prediction: Option<&[f32]>) -> Result<Vec<f32>, ResidualError> {
    Reader::open(bytes)?.decode_all(prediction)
}
