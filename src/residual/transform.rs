//! Transform streams (residual stream versions 3 and 4): the scan, or what the field misses of it,
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

use std::ops::Range;

use super::engine::ChunkShape;
use super::error::ResidualError;
use super::rangecoder::{Decoder, Encoder};
use super::subband::{self, BandQuantizer, Contexts};
use super::symbol::{self, SymbolModels};
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
    /// Worst-case error of integer scans: voxels the transform leaves further off are
    /// corrected by an outlier list (SPERR's idea), so every voxel is within the bound.
    pub outliers: OutlierBound,
    /// How the high bands are modelled: [`Contexts::ActivityParentSigns`] (stream version
    /// 4) is what medinr writes; [`Contexts::Activity`] writes version 3 (for comparisons).
    pub contexts: Contexts,
}

/// The worst-case error a transform stream of an integer scan guarantees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutlierBound {
    /// No outlier list: the error is what the step gives.
    None,
    /// `|decoded − original| ≤ D` on every voxel (`D` a whole number ≥ 0).
    Fixed(u32),
    /// Per block, `D = ⌈sigmas · RMSE⌉` of the block's own transform error, raised where
    /// needed so that the list costs at most `share` of the block's coefficient bits (at
    /// about [`BITS_PER_OUTLIER`] each): only the far tail of the error is corrected, and
    /// at low rates, where the tail is long, the bound is looser rather than the file worse.
    Tail { sigmas: f64, share: f64 },
}

/// What one listed outlier costs, about (a gap and a correction; measured 17–25 bits on the
/// chest CT), for the budget of [`OutlierBound::Tail`].
pub const BITS_PER_OUTLIER: f64 = 20.0;

/// Model classes of the outlier list.
const CLASS_COUNT: usize = 0;
const CLASS_GAP: usize = 1;
const CLASS_CORRECTION: usize = 2;

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
    options: &TransformOptions,
    domain: Domain,
    out: &mut Vec<u8>,
) -> Result<u32, usize> {
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
    let (q, quantizers) = subband::quantize_block(&coef, d, steps, options.rounding);
    out.extend_from_slice(&mean.to_bits().to_le_bytes());
    for qz in &quantizers {
        out.extend_from_slice(&qz.step.to_bits().to_le_bytes());
        out.extend_from_slice(&qz.offset.to_le_bytes());
    }
    let coded = subband::encode_block(&q, d, options.contexts);
    out.extend_from_slice(&(coded.len() as u32).to_le_bytes());
    out.extend_from_slice(&coded);
    // Outlier lists (integer scans only): the decoder's reconstruction, then the voxels it
    // leaves beyond the bound.
    let (Domain::Integer { lo, hi, .. }, false) = (domain, options.outliers == OutlierBound::None)
    else {
        return Ok(0);
    };
    let recon = reconstruct(
        &q,
        0,
        &quantizers,
        d,
        mean,
        prediction,
        domain,
        0..d.dims[2],
    );
    let bound = match options.outliers {
        OutlierBound::Fixed(b) => b,
        OutlierBound::Tail { sigmas, share } => {
            let mut errors: Vec<f64> = recon
                .iter()
                .zip(values)
                .map(|(&r, &v)| (r as f64 - v as f64).abs())
                .collect();
            let se: f64 = errors.iter().map(|e| e * e).sum();
            let rmse = (se / values.len().max(1) as f64).sqrt();
            let mut bound = (sigmas * rmse).ceil();
            // The (budget + 1)-th largest error: at most `budget` voxels lie beyond it.
            let budget = (share * 8.0 * coded.len() as f64 / BITS_PER_OUTLIER) as usize;
            if budget < errors.len() {
                let (_, nth, _) = errors.select_nth_unstable_by(budget, |a, b| b.total_cmp(a));
                bound = bound.max(nth.ceil());
            }
            bound.clamp(0.0, MAX_OUTLIER_BOUND as f64) as u32
        }
        OutlierBound::None => unreachable!("returned above"),
    };
    let q_step = 2 * bound as i64 + 1;
    let mut list = Vec::new();
    for (i, (&r, &v)) in recon.iter().zip(values).enumerate() {
        let e = v as f64 - r as f64;
        if e.abs() > bound as f64 {
            let m = ((e.abs() + bound as f64) / q_step as f64).floor() as i64;
            let k = if e < 0.0 { -m } else { m };
            debug_assert!(
                (r as f64 + (k * q_step) as f64).clamp(lo as f64, hi as f64) - v as f64
                    <= bound as f64
            );
            list.push((i, k));
        }
    }
    let mut enc = Encoder::new();
    let mut models = SymbolModels::default();
    symbol::encode(&mut enc, &mut models, CLASS_COUNT, list.len() as i64);
    let mut next = 0usize;
    for &(i, k) in &list {
        symbol::encode(&mut enc, &mut models, CLASS_GAP, (i - next) as i64);
        symbol::encode(&mut enc, &mut models, CLASS_CORRECTION, k);
        next = i + 1;
    }
    let coded = enc.finish();
    out.extend_from_slice(&bound.to_le_bytes());
    out.extend_from_slice(&(coded.len() as u32).to_le_bytes());
    out.extend_from_slice(&coded);
    Ok(bound)
}

/// Largest outlier bound a block may carry (a bound beyond any 33-bit range is pointless).
pub const MAX_OUTLIER_BOUND: u32 = 1 << 30;

/// Whether the transform splits z (else each slice is its own 2D transform).
fn splits_z(d: Decomposition) -> bool {
    (0..d.depth()).any(|l| d.splits(2, l))
}

/// Slices `z` of a block's decoded values from its quantized coefficients: dequantized,
/// inverse transformed, plus mean and prediction (the whole block's), mapped to the domain.
/// `q` holds the block's slices from `q_first` on ([`q_slices`]: all of them when the
/// decomposition splits z, else those of `z`, each its own 2D transform, so only the slices
/// asked for are transformed back — what makes one slice of a chunk cheap).
#[allow(clippy::too_many_arguments)]
fn reconstruct(
    q: &[i64],
    q_first: usize,
    quantizers: &[BandQuantizer],
    d: Decomposition,
    mean: f32,
    prediction: Option<&[f32]>,
    domain: Domain,
    z: Range<usize>,
) -> Vec<f32> {
    let plane = d.dims[0] * d.dims[1];
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
    if splits_z(d) {
        let mut r = subband::dequantize_block(q, d, quantizers);
        wavelet::inverse(&mut r, d);
        let range = z.start * plane..z.end * plane;
        return r[range.clone()]
            .iter()
            .zip(range)
            .map(|(&x, i)| value(i, x))
            .collect();
    }
    let slice = Decomposition {
        dims: [d.dims[0], d.dims[1], 1],
        levels: d.levels,
    };
    let mut out = Vec::with_capacity(z.len() * plane);
    for k in z {
        let at = (k - q_first) * plane;
        let mut r = subband::dequantize_block(&q[at..at + plane], slice, quantizers);
        wavelet::inverse(&mut r, slice);
        out.extend(r.iter().enumerate().map(|(i, &x)| value(k * plane + i, x)));
    }
    out
}

/// The slices of a block whose quantized values [`reconstruct`] needs for slices `z`.
fn q_slices(d: Decomposition, z: Range<usize>) -> Range<usize> {
    if splits_z(d) {
        0..d.dims[2]
    } else {
        z
    }
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
    header: &TransformHeader,
    z: Range<usize>,
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
    let first = z.start * d.dims[0] * d.dims[1];
    let n = d.dims.iter().product::<usize>();
    let kept = q_slices(d, z.clone());
    let q = subband::decode_block(take(len)?, d, kept.clone(), header.contexts)?;
    let mut values = reconstruct(&q, kept.start, &quantizers, d, mean, prediction, domain, z);
    let (Some(limit), Domain::Integer { lo, hi, .. }) = (header.outlier_bound, domain) else {
        return Some(values);
    };
    let b = take(LENGTH_BYTES)?;
    let bound = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if bound > limit {
        return None;
    }
    let len = take(LENGTH_BYTES)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let mut dec = Decoder::new(take(len)?)?;
    let mut models = SymbolModels::default();
    let count = symbol::decode(&mut dec, &mut models, CLASS_COUNT);
    if !(0..=n as i64).contains(&count) {
        return None;
    }
    let q_step = 2 * bound as i64 + 1;
    let max_k = (hi - lo) / q_step + 1;
    let mut next = 0usize;
    for _ in 0..count {
        let gap = symbol::decode(&mut dec, &mut models, CLASS_GAP);
        let k = symbol::decode(&mut dec, &mut models, CLASS_CORRECTION);
        let i = usize::try_from(gap).ok()?.checked_add(next)?;
        if i >= n || k == 0 || k.abs() > max_k {
            return None;
        }
        // Outliers of slices not asked for are read (the list is one stream) and skipped.
        if let Some(v) = i.checked_sub(first).and_then(|j| values.get_mut(j)) {
            *v = (*v as i64 + k * q_step).clamp(lo, hi) as f32;
        }
        next = i + 1;
    }
    dec.finish().then_some(values)
}

/// Codes a chunk: its frames' blocks in order. `values` and `prediction` are in chunk order
/// (frames, slices, x fastest); `index_of` maps a chunk index to the scan's.
pub(super) fn encode_chunk(
    values: &[f32],
    prediction: Option<&[f32]>,
    header: &TransformHeader,
    cs: ChunkShape,
    options: &TransformOptions,
    domain: Domain,
    index_of: impl Fn(usize) -> usize,
) -> Result<(Vec<u8>, u32), ResidualError> {
    let d = decomposition(header, cs);
    let steps = band_steps(d, options.base_step);
    let block = cs.nx * cs.ny * cs.nz;
    let mut out = Vec::new();
    let mut bound = 0;
    for t in 0..cs.nt {
        let range = t * block..(t + 1) * block;
        let b = encode_block(
            &values[range.clone()],
            prediction.map(|p| &p[range.clone()]),
            d,
            &steps,
            options,
            domain,
            &mut out,
        )
        .map_err(|i| ResidualError::NonFinite(index_of(range.start + i)))?;
        bound = bound.max(b);
    }
    Ok((out, bound))
}

/// Decodes slices `z` (counted from the chunk's first) of chunk `index` (its bytes `data`,
/// CRC already checked) into stored values in chunk order (frames, slices, x fastest).
/// `prediction` covers the whole chunk. Every block is read and checked whole; only the
/// slices asked for are transformed back when the transform does not split z.
pub(super) fn decode_chunk(
    data: &[u8],
    index: usize,
    header: &TransformHeader,
    cs: ChunkShape,
    prediction: Option<&[f32]>,
    domain: Domain,
    z: Range<usize>,
) -> Result<Vec<f32>, ResidualError> {
    let d = decomposition(header, cs);
    let block = cs.nx * cs.ny * cs.nz;
    let mut out = Vec::with_capacity(cs.nx * cs.ny * z.len() * cs.nt);
    let mut pos = 0;
    for t in 0..cs.nt {
        let p = prediction.map(|p| &p[t * block..(t + 1) * block]);
        let values = decode_block(data, &mut pos, d, p, domain, header, z.clone())
            .ok_or(ResidualError::CorruptChunk(index))?;
        out.extend(values);
    }
    if pos != data.len() {
        return Err(ResidualError::CorruptChunk(index));
    }
    Ok(out)
}
