//! Transform streams (residual stream version 3): the scan, or what the field misses of it,
//! coded by a wavelet transform instead of voxel by voxel.
//!
//! At rates where the error may be of the order of the scan's noise, a predictive coder with
//! a uniform bound spends bits evenly on every voxel; a transform coder spends them where the
//! energy is, which is what lets JPEG 2000 and SPERR win there. Each chunk is cut into one
//! block per frame (all of x and y, the chunk's slices); each block is the values minus the
//! prediction (the field's, or none) minus the block's mean, transformed by the CDF 9/7
//! wavelet ([`super::wavelet`]), quantized per band with a dead zone and a reconstruction
//! offset, and coded by [`super::subband`]. There is no bound: the file's quality is what the
//! encoder's step gives, and the encoder's self-check measures it.
//!
//! Block layout (docs/FORMAT.md, "Transform layer"): the mean (f32), then per band in coding
//! order its step (f32) and reconstruction offset (i16), then the coded length (u32) and the
//! coded bytes. A chunk is its blocks, frame after frame.

use super::engine::ChunkShape;
use super::error::ResidualError;
use super::subband::{self, BandQuantizer};
use super::wavelet::{self, Decomposition};
use super::{Domain, TransformHeader};

/// Encoder choices of a transform stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformOptions {
    /// Wavelet levels along x, y and z (each at most `stream::MAX_TRANSFORM_LEVELS`).
    pub levels: [u8; 3],
    /// The base quantizer step, in stored units: every band gets it divided by the square
    /// root of its synthesis energy, so that a step costs the same error in every band.
    pub base_step: f64,
    /// Dead-zone rounding of the quantizer, `q = ⌊|c|/step + rounding⌋` (0.5 is plain
    /// rounding; smaller widens the zero bin, which pays at these rates).
    pub rounding: f64,
}

/// Bytes of a block before its band table: the mean.
const MEAN_BYTES: usize = 4;
/// Bytes of one band's entry in the band table (step f32, offset i16).
const BAND_ENTRY_BYTES: usize = 6;
/// Bytes of the coded length after the band table.
const LENGTH_BYTES: usize = 4;

/// The decomposition of a block of a chunk of shape `cs`.
pub(super) fn decomposition(header: &TransformHeader, cs: ChunkShape) -> Decomposition {
    Decomposition {
        dims: [cs.nx, cs.ny, cs.nz],
        levels: header.levels.map(usize::from),
    }
}

/// Per-band steps for a base step: `base / √(energy)`, the energy the product over the split
/// axes of the 1D synthesis energies of the band's filters.
pub fn band_steps(d: Decomposition, base: f64) -> Vec<f32> {
    subband::bands(d)
        .iter()
        .map(|b| {
            let mut e = 1.0;
            for a in 0..3 {
                if d.dims[a] < 2 || d.levels[a] == 0 {
                    continue;
                }
                let high = b.orientation >> a & 1 == 1;
                e *= if high {
                    wavelet::synthesis_energy(d.dims[a], d.levels[a], b.level, true)
                } else {
                    wavelet::synthesis_energy(d.dims[a], (b.level + 1).min(d.levels[a]), 0, false)
                };
            }
            (base / e.sqrt()) as f32
        })
        .collect()
}

/// Codes one block: `values` (stored units, x fastest, `d.dims`) minus `prediction` (the
/// same shape, or none), appended to `out`. Fails with the block index of a value (or
/// difference) that is not finite.
pub(super) fn encode_block(
    values: &[f32],
    prediction: Option<&[f32]>,
    d: Decomposition,
    steps: &[f32],
    rounding: f64,
    out: &mut Vec<u8>,
) -> Result<(), usize> {
    let mut coef: Vec<f64> = match prediction {
        Some(p) => values
            .iter()
            .zip(p)
            .map(|(&v, &p)| v as f64 - p as f64)
            .collect(),
        None => values.iter().map(|&v| v as f64).collect(),
    };
    if let Some(bad) = coef.iter().position(|c| !c.is_finite()) {
        return Err(bad);
    }
    let mean = (coef.iter().sum::<f64>() / coef.len().max(1) as f64) as f32;
    for c in &mut coef {
        *c -= mean as f64;
    }
    wavelet::forward(&mut coef, d);
    let (q, quantizers) = subband::quantize_block(&coef, d, steps, rounding);
    out.extend_from_slice(&mean.to_bits().to_le_bytes());
    for qz in &quantizers {
        out.extend_from_slice(&qz.step.to_bits().to_le_bytes());
        out.extend_from_slice(&qz.offset.to_le_bytes());
    }
    let coded = subband::encode_block(&q, d);
    out.extend_from_slice(&(coded.len() as u32).to_le_bytes());
    out.extend_from_slice(&coded);
    Ok(())
}

/// Decodes the block at `*pos` of `data` into stored values (advancing `pos`): the inverse
/// transform plus the mean plus the prediction, rounded half away from zero and clamped
/// into the range for integer domains. `None` when the bytes are not a valid block.
pub(super) fn decode_block(
    data: &[u8],
    pos: &mut usize,
    d: Decomposition,
    prediction: Option<&[f32]>,
    domain: Domain,
) -> Option<Vec<f32>> {
    let bands = subband::bands(d);
    let mut take = |n: usize| -> Option<&[u8]> {
        let end = pos.checked_add(n).filter(|&e| e <= data.len())?;
        let s = &data[*pos..end];
        *pos = end;
        Some(s)
    };
    let f32_of = |b: &[u8]| f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mean = f32_of(take(MEAN_BYTES)?);
    if !mean.is_finite() {
        return None;
    }
    let table = take(bands.len() * BAND_ENTRY_BYTES)?;
    let mut quantizers = Vec::with_capacity(bands.len());
    for e in table.chunks_exact(BAND_ENTRY_BYTES) {
        let step = f32_of(e);
        let offset = i16::from_le_bytes([e[4], e[5]]);
        if !(step.is_finite() && step > 0.0 && (-2048..=2047).contains(&offset)) {
            return None;
        }
        quantizers.push(BandQuantizer { step, offset });
    }
    let len = take(LENGTH_BYTES)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let q = subband::decode_block(take(len)?, d)?;
    let mut r = subband::dequantize_block(&q, d, &quantizers);
    wavelet::inverse(&mut r, d);
    let value = |i: usize, x: f64| -> f32 {
        let x = match prediction {
            Some(p) => p[i] as f64 + mean as f64 + x,
            None => mean as f64 + x,
        };
        match domain {
            Domain::Integer { lo, hi, .. } => x.round().clamp(lo as f64, hi as f64) as f32,
            _ => x as f32,
        }
    };
    Some(r.iter().enumerate().map(|(i, &x)| value(i, x)).collect())
}

/// Codes a chunk: its frames' blocks in order. `values` and `prediction` are in chunk order
/// (frames, slices, x fastest); `index_of` maps a chunk index to the scan's.
pub(super) fn encode_chunk(
    values: &[f32],
    prediction: Option<&[f32]>,
    header: &TransformHeader,
    cs: ChunkShape,
    options: &TransformOptions,
    index_of: impl Fn(usize) -> usize,
) -> Result<Vec<u8>, ResidualError> {
    let d = decomposition(header, cs);
    let steps = band_steps(d, options.base_step);
    let block = cs.nx * cs.ny * cs.nz;
    let mut out = Vec::new();
    for t in 0..cs.nt {
        let range = t * block..(t + 1) * block;
        encode_block(
            &values[range.clone()],
            prediction.map(|p| &p[range.clone()]),
            d,
            &steps,
            options.rounding,
            &mut out,
        )
        .map_err(|i| ResidualError::NonFinite(index_of(range.start + i)))?;
    }
    Ok(out)
}

/// Decodes chunk `index` (its bytes `data`, CRC already checked) into stored values in chunk
/// order.
pub(super) fn decode_chunk(
    data: &[u8],
    index: usize,
    header: &TransformHeader,
    cs: ChunkShape,
    prediction: Option<&[f32]>,
    domain: Domain,
) -> Result<Vec<f32>, ResidualError> {
    let d = decomposition(header, cs);
    let block = cs.nx * cs.ny * cs.nz;
    let mut out = Vec::with_capacity(cs.voxels());
    let mut pos = 0;
    for t in 0..cs.nt {
        let p = prediction.map(|p| &p[t * block..(t + 1) * block]);
        let values =
            decode_block(data, &mut pos, d, p, domain).ok_or(ResidualError::CorruptChunk(index))?;
        out.extend(values);
    }
    if pos != data.len() {
        return Err(ResidualError::CorruptChunk(index));
    }
    Ok(out)
}
