//! Uniform scalar quantization of the field's tensors: `symbol = round(value / step)` on
//! encoding, `value = symbol · step` on decoding (`docs/FORMAT.md`). How the steps are chosen
//! is rate control's business (`crate::encoder::rate`).

/// Symbols are kept within ±2^30 so any i32 arithmetic on them is safe.
#[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
const SYMBOL_LIMIT: f32 = (1 << 30) as f32;

/// `round(v / step)`, clamped.
#[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
pub fn quantize(values: &[f32], step: f32) -> Vec<i32> {
    values
        .iter()
        .map(|&v| (v / step).round().clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT) as i32)
        .collect()
}

/// `symbol · step` in f32, as a decoder computes it.
pub fn dequantize(symbols: &[i32], step: f32) -> Vec<f32> {
    symbols.iter().map(|&s| s as f32 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_round_trip_error_is_half_a_step() {
        let v = [0.013f32, -0.2, 0.0049, 7.0];
        let q = quantize(&v, 0.01);
        assert_eq!(q, vec![1, -20, 0, 700]);
        for (a, b) in v.iter().zip(dequantize(&q, 0.01)) {
            assert!((a - b).abs() <= 0.005 + 1e-6);
        }
    }
}
