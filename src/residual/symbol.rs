//! Binarisation of the quantized residual `k` into context-coded bits.
//!
//! `k = 0` is one bit ("zero flag"); otherwise a sign bit, then `v = |k|` as an Elias-gamma
//! code: the exponent `n = floor(log2 v)` in unary, then the `n` bits of `v` below its
//! leading one. Every bit but the low mantissa bits has its own adaptive model, chosen by the
//! voxel's activity class, so each class learns its own distribution (a discretised,
//! adaptive Laplace-like law) without any floating point.

use super::rangecoder::{BitModel, Decoder, Encoder};

/// Number of activity classes (see `engine::activity_class`).
pub const CLASSES: usize = 26;
/// Unary exponent bits with their own model; longer exponents share the last one.
pub const EXPONENT_MODELS: usize = 20;
/// Largest exponent: `|k| < 2^(MAX_EXPONENT+1)`. The unary code of `n = MAX_EXPONENT` has no
/// terminating 0, and a decoder never reads more, so a corrupt stream cannot loop.
pub const MAX_EXPONENT: u32 = 40;
/// Mantissa bits (below the leading one) that are context-coded; the rest are equiprobable.
pub const MODELLED_MANTISSA_BITS: u32 = 2;

/// The adaptive models of one chunk, all starting at probability 1/2.
#[derive(Clone)]
pub struct SymbolModels {
    pub escape: [BitModel; CLASSES],
    zero: [BitModel; CLASSES],
    sign: [BitModel; CLASSES],
    exponent: [[BitModel; EXPONENT_MODELS]; CLASSES],
    /// Per class and exponent: first mantissa bit, then the second given the first.
    mantissa: [[[BitModel; 3]; EXPONENT_MODELS]; CLASSES],
}

impl Default for SymbolModels {
    fn default() -> Self {
        let m = BitModel::new();
        SymbolModels {
            escape: [m; CLASSES],
            zero: [m; CLASSES],
            sign: [m; CLASSES],
            exponent: [[m; EXPONENT_MODELS]; CLASSES],
            mantissa: [[[m; 3]; EXPONENT_MODELS]; CLASSES],
        }
    }
}

fn exponent_model(n: u32) -> usize {
    (n as usize).min(EXPONENT_MODELS - 1)
}

/// Writes `k` (|k| < 2^(MAX_EXPONENT+1)) in class `class`.
pub fn encode(enc: &mut Encoder, m: &mut SymbolModels, class: usize, k: i64) {
    enc.bit(&mut m.zero[class], k != 0);
    if k == 0 {
        return;
    }
    enc.bit(&mut m.sign[class], k < 0);
    encode_magnitude(enc, m, class, k.unsigned_abs());
}

/// [`encode`] with the sign coded by `sign` instead of the class's sign model (the
/// transform layer's sign contexts).
pub fn encode_with_sign(
    enc: &mut Encoder,
    m: &mut SymbolModels,
    class: usize,
    sign: &mut BitModel,
    k: i64,
) {
    enc.bit(&mut m.zero[class], k != 0);
    if k == 0 {
        return;
    }
    enc.bit(sign, k < 0);
    encode_magnitude(enc, m, class, k.unsigned_abs());
}

/// The exponent and mantissa of `v = |k| ≥ 1`.
fn encode_magnitude(enc: &mut Encoder, m: &mut SymbolModels, class: usize, v: u64) {
    let n = 63 - v.leading_zeros();
    for j in 0..n {
        enc.bit(&mut m.exponent[class][exponent_model(j)], true);
    }
    if n < MAX_EXPONENT {
        enc.bit(&mut m.exponent[class][exponent_model(n)], false);
    }
    let mm = &mut m.mantissa[class][exponent_model(n)];
    let mut first = false;
    for i in 0..n.min(MODELLED_MANTISSA_BITS) {
        let b = (v >> (n - 1 - i)) & 1 == 1;
        let model = if i == 0 { 0 } else { 1 + first as usize };
        enc.bit(&mut mm[model], b);
        first = b;
    }
    if n > MODELLED_MANTISSA_BITS {
        let rest = n - MODELLED_MANTISSA_BITS;
        enc.bits(v & ((1u64 << rest) - 1), rest);
    }
}

/// Reads a `k` written by [`encode`] with the same models and class. The zero flag, by
/// far the most frequent outcome in a transform's high bands, is inlined into the caller.
#[inline]
pub fn decode(dec: &mut Decoder, m: &mut SymbolModels, class: usize) -> i64 {
    if !dec.bit(&mut m.zero[class]) {
        return 0;
    }
    decode_nonzero(dec, m, class)
}

/// [`decode`] for a `k` written by [`encode_with_sign`] with the same `sign` model.
#[inline]
pub fn decode_with_sign(
    dec: &mut Decoder,
    m: &mut SymbolModels,
    class: usize,
    sign: &mut BitModel,
) -> i64 {
    if !dec.bit(&mut m.zero[class]) {
        return 0;
    }
    let negative = dec.bit(sign);
    decode_magnitude(dec, m, class, negative)
}

/// The rest of [`decode`] once the zero flag said `k ≠ 0`.
#[inline(never)]
fn decode_nonzero(dec: &mut Decoder, m: &mut SymbolModels, class: usize) -> i64 {
    let negative = dec.bit(&mut m.sign[class]);
    decode_magnitude(dec, m, class, negative)
}

/// The exponent and mantissa of a nonzero `k` whose sign was read.
#[inline(never)]
fn decode_magnitude(dec: &mut Decoder, m: &mut SymbolModels, class: usize, negative: bool) -> i64 {
    let mut n = 0u32;
    while n < MAX_EXPONENT && dec.bit(&mut m.exponent[class][exponent_model(n)]) {
        n += 1;
    }
    let mm = &mut m.mantissa[class][exponent_model(n)];
    let mut v = 1u64;
    let mut first = false;
    for i in 0..n.min(MODELLED_MANTISSA_BITS) {
        let model = if i == 0 { 0 } else { 1 + first as usize };
        let b = dec.bit(&mut mm[model]);
        v = (v << 1) | b as u64;
        first = b;
    }
    if n > MODELLED_MANTISSA_BITS {
        let rest = n - MODELLED_MANTISSA_BITS;
        v = (v << rest) | dec.bits(rest);
    }
    // v < 2^41, so the conversion is exact.
    if negative {
        -(v as i64)
    } else {
        v as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_in_every_class() {
        let values: Vec<i64> = (-300..300)
            .chain([1 << 20, -(1 << 33), (1 << 41) - 1, -((1 << 41) - 1)])
            .collect();
        let mut enc = Encoder::new();
        let mut m = SymbolModels::default();
        for (i, &k) in values.iter().enumerate() {
            encode(&mut enc, &mut m, i % CLASSES, k);
        }
        let bytes = enc.finish();
        let mut dec = Decoder::new(&bytes).unwrap();
        let mut m = SymbolModels::default();
        for (i, &k) in values.iter().enumerate() {
            assert_eq!(decode(&mut dec, &mut m, i % CLASSES), k);
        }
        assert!(dec.finish());
    }
}
