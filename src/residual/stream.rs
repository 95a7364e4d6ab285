//! The byte layout of a residual stream: a fixed header, the chunk table, the chunks.
//! docs/FORMAT.md ("Residual layer") is the specification; this is its reference reader and
//! writer. Nothing read here is trusted before it is checked, and every count is bounded
//! before anything is allocated from it.

use super::domain::{Domain, MAX_BOUND, MAX_INTEGER_SPAN};
use super::error::ResidualError;
use super::subband::Contexts;
use std::ops::Range;

/// First four bytes of a residual stream ("MIRS": medinr residual stream).
pub const MAGIC: [u8; 4] = *b"MIRS";
/// The layout version of a stream without a region of interest (written for every such
/// stream, so older readers keep reading it).
pub const VERSION: u8 = 1;
/// The layout version of a stream with a region of interest (flag bit 1, the 24-byte ROI
/// extension of the header, a mask per chunk). Version-1 readers refuse it by its version.
pub const VERSION_ROI: u8 = 2;
/// The layout version of a transform stream (`super::transform`): the 8-byte transform
/// extension of the header, chunks of wavelet-coded blocks. Older readers refuse it by its
/// version; files holding one are written as format 4.0.
pub const VERSION_TRANSFORM: u8 = 3;
/// The layout version of a transform stream whose high bands are coded with version 4's
/// contexts (`subband::Contexts::ActivityParentSigns`): the same layout as version 3, other
/// models, so version-3 readers refuse it by its version.
pub const VERSION_TRANSFORM_CONTEXTS: u8 = 4;
/// Bytes of the fixed header (version 1).
pub const HEADER_BYTES: usize = 56;
/// Bytes of the transform extension that follows the fixed header in a version-3 stream.
pub const TRANSFORM_EXTENSION_BYTES: usize = 8;
/// Most decomposition levels along one axis of a transform stream (2^12 samples would be
/// needed to use them all).
pub const MAX_TRANSFORM_LEVELS: u8 = 12;
/// Bytes of the ROI extension that follows the fixed header in a version-2 stream.
pub const ROI_EXTENSION_BYTES: usize = 24;
/// Bytes of one chunk-table entry (length and CRC-32, both u32).
pub const TABLE_ENTRY_BYTES: usize = 8;
/// Most voxels a stream may describe.
pub const MAX_VOXELS: u64 = 1 << 36;
/// Most voxels in one chunk (what decoding one chunk allocates).
pub const MAX_CHUNK_VOXELS: u64 = 1 << 30;

const DOMAIN_INTEGER: u8 = 0;
const DOMAIN_FLOAT_LATTICE: u8 = 1;
const DOMAIN_FLOAT_BITS: u8 = 2;
const FLAG_FIELD: u8 = 1;
const FLAG_ROI: u8 = 2;
const FLAG_SHARED_MASK: u8 = 4;
/// Version 3: the blocks carry outlier lists (bit 1, the ROI bit of version 2).
const FLAG_OUTLIERS: u8 = 2;

/// The region-of-interest part of a version-2 header: a second, looser bound outside a mask
/// that every chunk codes before its residuals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoiHeader {
    /// Quantizer half-width outside the mask (inside it is the domain's `d`: the integer
    /// domain's bound, 0 for the float lattice).
    pub d_out: i64,
    /// The bound guaranteed inside the mask, in stored units (informative: the decoder does
    /// not need it; 0 = exact).
    pub bound_in: f64,
    /// The bound guaranteed outside the mask (informative).
    pub bound_out: f64,
    /// One mask for every frame (coded in the first frame of each chunk only), else a mask
    /// per frame.
    pub shared_mask: bool,
}

/// The transform part of a version-3 header: how every block of the stream is decomposed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformHeader {
    /// Wavelet levels along x, y and z (an axis is split at level `l` while `l` is below its
    /// count and the low region along it still has two samples).
    pub levels: [u8; 3],
    /// The base quantizer step the encoder chose (informative: every band's step is in the
    /// chunks; > 0 and finite).
    pub base_step: f32,
    /// Integer domain with outlier lists (flag bit 1): every block ends with one, and every
    /// decoded voxel is within this many stored units of the original (the header's bound
    /// field holds it; each block's own bound is at most it).
    pub outlier_bound: Option<u32>,
    /// How the high bands are modelled: version 3's activity classes, or version 4's
    /// contexts (the stream version says which).
    pub contexts: Contexts,
}

/// The header: what the stream codes and how it is cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamHeader {
    /// `[nx, ny, nz, nt]` of the scan.
    pub shape: [usize; 4],
    pub domain: Domain,
    /// True when the stream was coded against a field prediction, which decoding then needs.
    pub uses_field: bool,
    /// Slices per chunk (the last chunk of a frame may have fewer).
    pub chunk_z: usize,
    /// Frames per chunk (the last may have fewer).
    pub chunk_t: usize,
    /// A region of interest with its own bound (version 2), or none (version 1).
    pub roi: Option<RoiHeader>,
    /// A transform stream's decomposition (version 3): the chunks hold wavelet-coded blocks,
    /// not predictive residuals. Its domain is `Integer` with `d = 0` (decoded values are
    /// rounded and clamped into `lo ..= hi`) or `FloatBits` (decoded values as computed).
    pub transform: Option<TransformHeader>,
}

/// The part of the scan a chunk covers: all of x and y, slices `z`, frames `t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRegion {
    pub z: Range<usize>,
    pub t: Range<usize>,
}

impl StreamHeader {
    /// Bytes of the header: 56, plus the ROI or the transform extension when there is one.
    pub fn bytes(&self) -> usize {
        HEADER_BYTES
            + self.roi.map_or(0, |_| ROI_EXTENSION_BYTES)
            + self.transform.map_or(0, |_| TRANSFORM_EXTENSION_BYTES)
    }

    /// The layout version this header is written with.
    pub fn version(&self) -> u8 {
        match (&self.roi, &self.transform) {
            (_, Some(t)) if t.contexts == Contexts::Activity => VERSION_TRANSFORM,
            (_, Some(_)) => VERSION_TRANSFORM_CONTEXTS,
            (Some(_), None) => VERSION_ROI,
            (None, None) => VERSION,
        }
    }

    /// Chunks along z and along t.
    pub fn chunk_grid(&self) -> (usize, usize) {
        (
            self.shape[2].div_ceil(self.chunk_z),
            self.shape[3].div_ceil(self.chunk_t),
        )
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        let (cz, ct) = self.chunk_grid();
        cz * ct
    }

    /// Region of chunk `index` (chunks are numbered z fastest, then t); `index` must be valid.
    pub fn chunk_region(&self, index: usize) -> ChunkRegion {
        let (cz, _) = self.chunk_grid();
        let (zi, ti) = (index % cz, index / cz);
        let z0 = zi * self.chunk_z;
        let t0 = ti * self.chunk_t;
        ChunkRegion {
            z: z0..(z0 + self.chunk_z).min(self.shape[2]),
            t: t0..(t0 + self.chunk_t).min(self.shape[3]),
        }
    }

    /// Checks the limits that both writer and reader rely on.
    pub fn validate(&self) -> Result<(), ResidualError> {
        let [nx, ny, nz, nt] = self.shape;
        let total = self
            .shape
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64))
            .filter(|&v| v <= MAX_VOXELS);
        if self.shape.iter().any(|&n| n == 0 || n > u32::MAX as usize) || total.is_none() {
            return Err(ResidualError::InvalidShape(self.shape));
        }
        if self.chunk_z == 0 || self.chunk_z > nz {
            return Err(ResidualError::InvalidChunkSize(self.chunk_z));
        }
        if self.chunk_t == 0 || self.chunk_t > nt {
            return Err(ResidualError::InvalidChunkSize(self.chunk_t));
        }
        if (nx * ny) as u64 * (self.chunk_z * self.chunk_t) as u64 > MAX_CHUNK_VOXELS {
            return Err(ResidualError::InvalidChunkSize(self.chunk_z * self.chunk_t));
        }
        match self.domain {
            Domain::Integer { lo, hi, d } => {
                if lo > hi || (hi as i128 - lo as i128) > MAX_INTEGER_SPAN as i128 {
                    return Err(ResidualError::InvalidRange { min: lo, max: hi });
                }
                if !(0..=MAX_BOUND).contains(&d) {
                    return Err(ResidualError::InvalidBound(d as f64));
                }
            }
            Domain::FloatLattice { bound } => {
                if !(bound.is_finite() && bound > 0.0) {
                    return Err(ResidualError::InvalidBound(bound));
                }
            }
            Domain::FloatBits => {}
        }
        if let Some(t) = &self.transform {
            let domain_ok = matches!(
                self.domain,
                Domain::Integer { d: 0, .. } | Domain::FloatBits
            );
            if self.roi.is_some() || !domain_ok {
                return Err(ResidualError::Invalid(
                    "a transform stream has no region of interest and codes integers with d = 0 or floats as they are",
                ));
            }
            if t.levels.iter().any(|&l| l > MAX_TRANSFORM_LEVELS)
                || !(t.base_step.is_finite() && t.base_step > 0.0)
            {
                return Err(ResidualError::Invalid("invalid transform parameters"));
            }
            let integer = matches!(self.domain, Domain::Integer { .. });
            if t.outlier_bound
                .is_some_and(|b| !integer || b > super::transform::MAX_OUTLIER_BOUND)
            {
                return Err(ResidualError::Invalid(
                    "outlier lists need the integer domain and a bound of at most 2^30",
                ));
            }
        }
        if let Some(roi) = &self.roi {
            let d = self.domain.d();
            let informative_ok = roi.bound_in.is_finite()
                && roi.bound_out.is_finite()
                && 0.0 <= roi.bound_in
                && roi.bound_in <= roi.bound_out;
            match self.domain {
                Domain::FloatBits => {
                    return Err(ResidualError::Invalid(
                        "a region of interest needs a bound outside it",
                    ))
                }
                _ if roi.d_out < d => {
                    return Err(ResidualError::Invalid(
                        "the bound outside the region of interest is smaller than the one inside",
                    ))
                }
                _ if roi.d_out > MAX_BOUND => {
                    return Err(ResidualError::InvalidBound(roi.d_out as f64))
                }
                Domain::Integer { .. }
                    if roi.bound_in != d as f64 || roi.bound_out != roi.d_out as f64 =>
                {
                    return Err(ResidualError::Invalid(
                        "region-of-interest bounds differ from the quantizer's",
                    ))
                }
                _ if !informative_ok => {
                    return Err(ResidualError::Invalid("invalid region-of-interest bounds"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Appends the header bytes (56, or 80 with a region of interest).
    pub fn write(&self, out: &mut Vec<u8>) {
        let outlier_bound = self.transform.and_then(|t| t.outlier_bound);
        let (code, lo, hi, bound) = match self.domain {
            Domain::Integer { lo, hi, d } => (
                DOMAIN_INTEGER,
                lo,
                hi,
                outlier_bound.map_or(d as u64, u64::from),
            ),
            Domain::FloatLattice { bound } => (DOMAIN_FLOAT_LATTICE, 0, 0, bound.to_bits()),
            Domain::FloatBits => (DOMAIN_FLOAT_BITS, 0, 0, 0),
        };
        let mut flags = if self.uses_field { FLAG_FIELD } else { 0 };
        if outlier_bound.is_some() {
            flags |= FLAG_OUTLIERS;
        }
        if let Some(roi) = &self.roi {
            flags |= FLAG_ROI;
            if roi.shared_mask {
                flags |= FLAG_SHARED_MASK;
            }
        }
        out.extend_from_slice(&MAGIC);
        out.push(self.version());
        out.push(code);
        out.push(flags);
        out.push(0);
        for n in self.shape {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        out.extend_from_slice(&(self.chunk_z as u32).to_le_bytes());
        out.extend_from_slice(&(self.chunk_t as u32).to_le_bytes());
        out.extend_from_slice(&lo.to_le_bytes());
        out.extend_from_slice(&hi.to_le_bytes());
        out.extend_from_slice(&bound.to_le_bytes());
        if let Some(roi) = &self.roi {
            out.extend_from_slice(&(roi.d_out as u64).to_le_bytes());
            out.extend_from_slice(&roi.bound_in.to_bits().to_le_bytes());
            out.extend_from_slice(&roi.bound_out.to_bits().to_le_bytes());
        }
        if let Some(t) = &self.transform {
            out.extend_from_slice(&t.levels);
            out.push(0);
            out.extend_from_slice(&t.base_step.to_bits().to_le_bytes());
        }
    }

    /// Parses and validates the header at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<StreamHeader, ResidualError> {
        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err(ResidualError::BadMagic);
        }
        if bytes.len() < HEADER_BYTES {
            return Err(ResidualError::Truncated("header"));
        }
        let version = bytes[4];
        if ![
            VERSION,
            VERSION_ROI,
            VERSION_TRANSFORM,
            VERSION_TRANSFORM_CONTEXTS,
        ]
        .contains(&version)
        {
            return Err(ResidualError::UnsupportedVersion(version));
        }
        let has_roi = version == VERSION_ROI;
        let has_transform = version >= VERSION_TRANSFORM;
        if (has_roi && bytes.len() < HEADER_BYTES + ROI_EXTENSION_BYTES)
            || (has_transform && bytes.len() < HEADER_BYTES + TRANSFORM_EXTENSION_BYTES)
        {
            return Err(ResidualError::Truncated("header"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let (code, flags) = (bytes[5], bytes[6]);
        // Version 1 knows the field flag only; version 2 also the ROI flag (required) and the
        // shared-mask flag; versions 3 and 4 the field and outlier flags.
        let known = if has_roi {
            FLAG_FIELD | FLAG_ROI | FLAG_SHARED_MASK
        } else if has_transform {
            FLAG_FIELD | FLAG_OUTLIERS
        } else {
            FLAG_FIELD
        };
        let roi_flag = flags & FLAG_ROI != 0 && !has_transform;
        if flags & !known != 0 || roi_flag != has_roi || bytes[7] != 0 {
            return Err(ResidualError::Invalid("unknown flags"));
        }
        let (lo, hi, mut bound) = (u64_at(32) as i64, u64_at(40) as i64, u64_at(48));
        // A transform stream's bound field is its outlier bound (flag bit 1), else 0.
        let outliers = has_transform && flags & FLAG_OUTLIERS != 0;
        let outlier_bound = if outliers {
            let b = u32::try_from(bound)
                .map_err(|_| ResidualError::Invalid("outlier bound too large"))?;
            bound = 0;
            Some(b)
        } else {
            None
        };
        let domain = match code {
            DOMAIN_INTEGER => {
                if bound > MAX_BOUND as u64 {
                    return Err(ResidualError::Invalid("error bound too large"));
                }
                Domain::Integer {
                    lo,
                    hi,
                    d: bound as i64,
                }
            }
            DOMAIN_FLOAT_LATTICE if lo == 0 && hi == 0 => Domain::FloatLattice {
                bound: f64::from_bits(bound),
            },
            DOMAIN_FLOAT_BITS if lo == 0 && hi == 0 && bound == 0 => Domain::FloatBits,
            DOMAIN_FLOAT_LATTICE | DOMAIN_FLOAT_BITS => {
                return Err(ResidualError::Invalid("nonzero unused header fields"))
            }
            _ => return Err(ResidualError::Invalid("unknown domain")),
        };
        let header = StreamHeader {
            shape: [u32_at(8), u32_at(12), u32_at(16), u32_at(20)].map(|v| v as usize),
            domain,
            uses_field: flags & FLAG_FIELD != 0,
            chunk_z: u32_at(24) as usize,
            chunk_t: u32_at(28) as usize,
            roi: has_roi.then(|| RoiHeader {
                // Validated below (a value beyond i64 becomes negative and is refused).
                d_out: u64_at(56) as i64,
                bound_in: f64::from_bits(u64_at(64)),
                bound_out: f64::from_bits(u64_at(72)),
                shared_mask: flags & FLAG_SHARED_MASK != 0,
            }),
            transform: has_transform.then(|| TransformHeader {
                levels: [bytes[56], bytes[57], bytes[58]],
                base_step: f32::from_bits(u32_at(60)),
                outlier_bound,
                contexts: if version == VERSION_TRANSFORM {
                    Contexts::Activity
                } else {
                    Contexts::ActivityParentSigns
                },
            }),
        };
        if has_transform && bytes[59] != 0 {
            return Err(ResidualError::Invalid("nonzero reserved header byte"));
        }
        header.validate()?;
        Ok(header)
    }
}

/// One entry of the chunk table: where the chunk's bytes are and their CRC-32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    pub bytes: Range<usize>,
    pub crc: u32,
}

/// Bytes of the CRC-32 that follows the chunk table and covers the header and the table.
pub const INDEX_CRC_BYTES: usize = 4;

/// Appends the chunk table (lengths and CRCs of `chunks`) and the index CRC to `out`, which
/// holds the header.
pub fn write_table(out: &mut Vec<u8>, chunks: &[Vec<u8>]) -> Result<(), ResidualError> {
    for c in chunks {
        let len = u32::try_from(c.len()).map_err(|_| ResidualError::InvalidChunkSize(c.len()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(c).to_le_bytes());
    }
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads the chunk table after the header, checks the index CRC, and checks that the chunks
/// exactly fill the rest of `bytes`.
pub fn read_table(bytes: &[u8], header: &StreamHeader) -> Result<Vec<ChunkEntry>, ResidualError> {
    let count = header.chunk_count();
    let start = header.bytes();
    let rest = bytes.len() - start;
    if rest < INDEX_CRC_BYTES || count > (rest - INDEX_CRC_BYTES) / TABLE_ENTRY_BYTES {
        return Err(ResidualError::Truncated("chunk table"));
    }
    let index_end = start + count * TABLE_ENTRY_BYTES;
    let c = index_end;
    let stored = u32::from_le_bytes([bytes[c], bytes[c + 1], bytes[c + 2], bytes[c + 3]]);
    if crc32fast::hash(&bytes[..index_end]) != stored {
        return Err(ResidualError::IndexChecksum);
    }
    let mut pos = index_end + INDEX_CRC_BYTES;
    let mut table = Vec::with_capacity(count);
    for c in 0..count {
        let o = start + c * TABLE_ENTRY_BYTES;
        let len = u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[o + 4], bytes[o + 5], bytes[o + 6], bytes[o + 7]]);
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or(ResidualError::Truncated("chunk data"))?;
        table.push(ChunkEntry {
            bytes: pos..end,
            crc,
        });
        pos = end;
    }
    if pos != bytes.len() {
        return Err(ResidualError::Invalid(
            "trailing bytes after the last chunk",
        ));
    }
    Ok(table)
}
