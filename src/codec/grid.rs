//! Context coding of the grid's tables: symbol-stream mode 4 (format 5.0).
//!
//! The ANS streams of mode 3 code every table as if its entries were independent draws from
//! one distribution. A dense level is a regular grid of latent values whose neighbours are
//! not independent: where the scan is flat the fit leaves them near zero, where it has
//! detail they are all busy. Mode 4 codes a table with the residual layer's adaptive binary
//! range coder (`residual::rangecoder`, `residual::symbol`), each symbol in the context of
//! what the decoder already has (the idea of Cool-chic's and C3's entropy models, with
//! adaptive counts instead of a fitted network, so decoding stays integer arithmetic):
//! - a **dense** level is visited vertex by vertex (x fastest), each feature in the context of
//!   the magnitudes of the same feature at the causal neighbours (W, N, the previous slice,
//!   the previous frame);
//! - a **hashed** level has no neighbourhood (colliding vertices share an entry), so its
//!   entries are coded in order, each feature after the first in the context of the entry's
//!   previous feature; the gain there is the adaptive model alone.
//!
//! Each feature has its own models. The writer keeps whichever of mode 4 and the usual
//! streams is shorter, per table. docs/FORMAT.md ("Mode 4: context-coded tables")
//! specifies it.

use super::container::FormatError;
use super::entropy::{decode_symbols, encode_symbols, MODE_CONTEXT};
use crate::model::TableShape;
use crate::residual::engine::activity_class;
use crate::residual::rangecoder::{Decoder, Encoder};
use crate::residual::symbol::{self, SymbolModels};

/// Largest magnitude a context reads, so a decoder keeps 2 bytes per symbol: the activity
/// class saturates far below it (at 6144), so a saturated sum gives the same class.
const SATURATE: u32 = u16::MAX as u32;

/// Visits a table's symbols in coding order, passing `code` each one's activity class and
/// index in the table, and recording the magnitude of what it returns. One loop for the
/// encoder (which returns the symbol it codes) and the decoder (which returns the symbol it
/// reads), so the two cannot drift apart.
fn traverse(shape: &TableShape, mut code: impl FnMut(usize, usize) -> i32) {
    let f_count = shape.features;
    let mut mag = vec![0u16; shape.symbols()];
    let saturated = |s: i32| s.unsigned_abs().min(SATURATE) as u16;
    let m = |i: usize, mag: &[u16]| u64::from(mag[i]);
    let Some(v) = shape.dense else {
        for i in 0..shape.symbols() {
            let a = if i % f_count > 0 {
                2 * m(i - 1, &mag)
            } else {
                0
            };
            mag[i] = saturated(code(activity_class(a), i));
        }
        return;
    };
    let strides = [1, v[0], v[0] * v[1], v[0] * v[1] * v[2]].map(|s| s * f_count);
    let mut i = 0usize;
    for t in 0..v[3] {
        for z in 0..v[2] {
            for y in 0..v[1] {
                for x in 0..v[0] {
                    for _ in 0..f_count {
                        let mut a = 0u64;
                        if x > 0 {
                            a += 2 * m(i - strides[0], &mag);
                        }
                        if y > 0 {
                            a += 2 * m(i - strides[1], &mag);
                        }
                        if z > 0 {
                            a += m(i - strides[2], &mag);
                        }
                        if t > 0 {
                            a += m(i - strides[3], &mag);
                        }
                        mag[i] = saturated(code(activity_class(a), i));
                        i += 1;
                    }
                }
            }
        }
    }
}

/// The mode-4 stream of a table (entry-major, `shape.symbols()` symbols), whether or not it
/// is the shorter one ([`encode_table`] chooses; this is for tests of other decoders).
pub fn encode_context_table(symbols: &[i32], shape: &TableShape) -> Vec<u8> {
    let mut models = vec![SymbolModels::default(); shape.features];
    let mut enc = Encoder::new();
    traverse(shape, |class, i| {
        let s = symbols[i];
        symbol::encode(
            &mut enc,
            &mut models[i % shape.features],
            class,
            i64::from(s),
        );
        s
    });
    let mut out = vec![MODE_CONTEXT];
    out.extend(enc.finish());
    out
}

/// Codes one grid table: the shorter of the usual symbol stream and mode 4.
pub fn encode_table(symbols: &[i32], shape: &TableShape) -> Vec<u8> {
    debug_assert_eq!(symbols.len(), shape.symbols());
    let usual = encode_symbols(symbols);
    if usual.len() <= 2 {
        // Empty or constant: nothing is shorter.
        return usual;
    }
    let context = encode_context_table(symbols, shape);
    if context.len() < usual.len() {
        context
    } else {
        usual
    }
}

/// Whether a table's stream is mode 4 (which needs format 5.0).
pub fn is_context_coded(stream: &[u8]) -> bool {
    stream.first() == Some(&MODE_CONTEXT)
}

/// Decodes a grid table's stream, any mode; mode 4 only where `context_allowed` (format
/// 5.0 files).
pub fn decode_table(
    bytes: &[u8],
    shape: &TableShape,
    context_allowed: bool,
) -> Result<Vec<i32>, FormatError> {
    if !is_context_coded(bytes) {
        return decode_symbols(bytes, shape.symbols());
    }
    let invalid = |reason: &str| FormatError::Invalid {
        what: "context-coded table",
        context: "symbol stream".into(),
        detail: reason.into(),
    };
    if !context_allowed {
        return Err(invalid("mode 4 needs format 5.0"));
    }
    let mut dec = Decoder::new(&bytes[1..]).ok_or_else(|| invalid("range coder start"))?;
    let mut out = vec![0i32; shape.symbols()];
    let mut models = vec![SymbolModels::default(); shape.features];
    let mut in_range = true;
    traverse(shape, |class, i| {
        let k = symbol::decode(&mut dec, &mut models[i % shape.features], class);
        let s = i32::try_from(k).unwrap_or_else(|_| {
            in_range = false;
            0
        });
        out[i] = s;
        s
    });
    if !in_range {
        return Err(invalid("a symbol outside the i32 range"));
    }
    if !dec.finish() {
        return Err(invalid("the range coder did not end where the stream does"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn laplace(rng: &mut ChaCha8Rng, scale: f64) -> i32 {
        let u: f64 = rng.random_range(-0.5..0.5);
        (-scale * u.signum() * (1.0 - 2.0 * u.abs()).ln()).round() as i32
    }

    /// A dense 3D level whose symbols are busy in one corner and near zero elsewhere (a field
    /// with detail in one place), a 4D one, and a hashed one.
    fn tables() -> Vec<(TableShape, Vec<i32>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let dense = TableShape {
            dense: Some([20, 16, 10, 1]),
            entries: 3200,
            features: 2,
        };
        let d: Vec<i32> = (0..6400)
            .map(|i| {
                let x = (i / 2) % 20;
                laplace(&mut rng, if x < 6 { 30.0 } else { 0.3 })
            })
            .collect();
        let series = TableShape {
            dense: Some([5, 4, 3, 6]),
            entries: 360,
            features: 1,
        };
        let s: Vec<i32> = (0..360).map(|_| laplace(&mut rng, 2.0)).collect();
        let hashed = TableShape {
            dense: None,
            entries: 500,
            features: 4,
        };
        let mut h: Vec<i32> = (0..2000).map(|_| laplace(&mut rng, 2.0)).collect();
        h[17] = i32::MAX;
        h[18] = i32::MIN;
        vec![(dense, d), (series, s), (hashed, h)]
    }

    #[test]
    fn tables_round_trip_in_mode_4() {
        for (shape, symbols) in tables() {
            let bytes = encode_context_table(&symbols, &shape);
            assert!(is_context_coded(&bytes));
            assert_eq!(decode_table(&bytes, &shape, true).unwrap(), symbols);
            // Refused in a file before 5.0, cut short, or with a byte too many.
            assert!(decode_table(&bytes, &shape, false).is_err());
            assert!(decode_table(&bytes[..bytes.len() - 1], &shape, true).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_table(&longer, &shape, true).is_err());
        }
    }

    #[test]
    fn the_writer_keeps_the_shorter_stream() {
        let (shape, symbols) = tables().swap_remove(0);
        let written = encode_table(&symbols, &shape);
        assert!(
            is_context_coded(&written),
            "spatial context should pay here"
        );
        assert!(written.len() < encode_symbols(&symbols).len());
        assert_eq!(decode_table(&written, &shape, true).unwrap(), symbols);
        // A constant table stays mode 1, readable by any version.
        let zeros = vec![0; shape.symbols()];
        let written = encode_table(&zeros, &shape);
        assert!(!is_context_coded(&written));
        assert_eq!(decode_table(&written, &shape, false).unwrap(), zeros);
    }
}
