//! The byte layout of a residual stream: a fixed header, the chunk table, the chunks.
//! docs/FORMAT.md ("Residual layer") is the specification; this is its reference reader and
//! writer. Nothing read here is trusted before it is checked, and every count is bounded
//! before anything is allocated from it.

use super::domain::{Domain, MAX_BOUND, MAX_INTEGER_SPAN};
use super::error::ResidualError;
use std::ops::Range;

/// First four bytes of a residual stream ("MIRS": medinr residual stream).
pub const MAGIC: [u8; 4] = *b"MIRS";
/// The layout version this code reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_BYTES: usize = 56;
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
}

/// The part of the scan a chunk covers: all of x and y, slices `z`, frames `t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRegion {
    pub z: Range<usize>,
    pub t: Range<usize>,
}

impl StreamHeader {
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
        Ok(())
    }

    /// Appends the 56 header bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        let (code, lo, hi, bound) = match self.domain {
            Domain::Integer { lo, hi, d } => (DOMAIN_INTEGER, lo, hi, d as u64),
            Domain::FloatLattice { bound } => (DOMAIN_FLOAT_LATTICE, 0, 0, bound.to_bits()),
            Domain::FloatBits => (DOMAIN_FLOAT_BITS, 0, 0, 0),
        };
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(code);
        out.push(if self.uses_field { FLAG_FIELD } else { 0 });
        out.push(0);
        for n in self.shape {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        out.extend_from_slice(&(self.chunk_z as u32).to_le_bytes());
        out.extend_from_slice(&(self.chunk_t as u32).to_le_bytes());
        out.extend_from_slice(&lo.to_le_bytes());
        out.extend_from_slice(&hi.to_le_bytes());
        out.extend_from_slice(&bound.to_le_bytes());
    }

    /// Parses and validates the header at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<StreamHeader, ResidualError> {
        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err(ResidualError::BadMagic);
        }
        if bytes.len() < HEADER_BYTES {
            return Err(ResidualError::Truncated("header"));
        }
        if bytes[4] != VERSION {
            return Err(ResidualError::UnsupportedVersion(bytes[4]));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let (code, flags) = (bytes[5], bytes[6]);
        if flags & !FLAG_FIELD != 0 || bytes[7] != 0 {
            return Err(ResidualError::Invalid("unknown flags"));
        }
        let (lo, hi, bound) = (u64_at(32) as i64, u64_at(40) as i64, u64_at(48));
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
        };
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
    let rest = bytes.len() - HEADER_BYTES;
    if rest < INDEX_CRC_BYTES || count > (rest - INDEX_CRC_BYTES) / TABLE_ENTRY_BYTES {
        return Err(ResidualError::Truncated("chunk table"));
    }
    let index_end = HEADER_BYTES + count * TABLE_ENTRY_BYTES;
    let c = index_end;
    let stored = u32::from_le_bytes([bytes[c], bytes[c + 1], bytes[c + 2], bytes[c + 3]]);
    if crc32fast::hash(&bytes[..index_end]) != stored {
        return Err(ResidualError::IndexChecksum);
    }
    let mut pos = index_end + INDEX_CRC_BYTES;
    let mut table = Vec::with_capacity(count);
    for c in 0..count {
        let o = HEADER_BYTES + c * TABLE_ENTRY_BYTES;
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
