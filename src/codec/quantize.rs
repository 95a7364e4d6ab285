//! Uniform scalar quantization of the field's tensors, and the search for the grid step that
//! makes the file the asked size.
//!
//! Every grid level shares one step Δ (each table entry moves the output about equally, so
//! equal steps are close to MSE-optimal at a given rate); each MLP matrix gets a fixed fine
//! step relative to its RMS, since the MLP is small and errors there affect every voxel.

use crate::codec::bytes::varint_len;
use crate::codec::entropy::encoded_len;
use crate::field::{TensorKind, TensorSpec};

/// MLP steps are the matrix RMS divided by this.
const MLP_STEP_DIVISOR: f32 = 64.0;
/// Symbols are kept within ±2^30 so any i32 arithmetic on them is safe.
const SYMBOL_LIMIT: f32 = (1 << 30) as f32;

/// `round(v / step)`, clamped.
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

/// Steps for every tensor (file order) given the grid step.
pub fn steps_for(specs: &[TensorSpec], tensors: &[Vec<f32>], grid_step: f32) -> Vec<f32> {
    specs
        .iter()
        .zip(tensors)
        .map(|(spec, t)| match spec.kind {
            TensorKind::Grid(_) => grid_step,
            TensorKind::Weight(_) => {
                let rms = (t.iter().map(|v| v * v).sum::<f32>() / t.len().max(1) as f32).sqrt();
                (rms / MLP_STEP_DIVISOR).max(1e-12)
            }
        })
        .collect()
}

/// Bytes the TENS payload takes for these tensors and steps.
pub fn tensors_size(tensors: &[Vec<f32>], steps: &[f32]) -> usize {
    let mut total = varint_len(tensors.len() as u64);
    for (t, &s) in tensors.iter().zip(steps) {
        let n = encoded_len(&quantize(t, s));
        total += 4 + varint_len(n as u64) + n;
    }
    total
}

/// The outcome of a step search.
#[derive(Debug, Clone, Copy)]
pub struct StepSearch {
    pub grid_step: f32,
    pub bytes: usize,
}

/// Finds the grid step whose file is closest to `target` bytes without exceeding it,
/// `overhead` being everything in the file besides the TENS payload. Returns `None` when even
/// the coarsest step (every grid symbol zero) is larger than the target.
pub fn search_grid_step(
    specs: &[TensorSpec],
    tensors: &[Vec<f32>],
    target: usize,
    overhead: usize,
) -> Option<StepSearch> {
    let size = |step: f32| overhead + tensors_size(tensors, &steps_for(specs, tensors, step));
    let max_abs = tensors
        .iter()
        .zip(specs)
        .filter(|(_, s)| matches!(s.kind, TensorKind::Grid(_)))
        .flat_map(|(t, _)| t.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    // Coarsest useful step: every grid value rounds to zero.
    let (mut coarse, mut fine) = ((4.0 * max_abs).max(1e-6), 1e-7f32);
    let coarse_size = size(coarse);
    if coarse_size > target {
        return None;
    }
    if size(fine) <= target {
        return Some(StepSearch {
            grid_step: fine,
            bytes: size(fine),
        });
    }
    // Size falls as the step grows: bisect in log space.
    for _ in 0..40 {
        let mid = (coarse * fine).sqrt();
        if size(mid) <= target {
            coarse = mid;
        } else {
            fine = mid;
        }
        if coarse / fine < 1.0005 {
            break;
        }
    }
    Some(StepSearch {
        grid_step: coarse,
        bytes: size(coarse),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<TensorSpec> {
        vec![
            TensorSpec {
                kind: TensorKind::Grid(0),
                len: 5000,
            },
            TensorSpec {
                kind: TensorKind::Grid(1),
                len: 20000,
            },
            TensorSpec {
                kind: TensorKind::Weight(0),
                len: 64,
            },
        ]
    }

    fn tensors() -> Vec<Vec<f32>> {
        specs()
            .iter()
            .enumerate()
            .map(|(k, s)| {
                (0..s.len)
                    .map(|i| (((i * 7919 + k * 31) % 2001) as f32 - 1000.0) / 1000.0 * 0.01)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn quantize_round_trip_error_is_half_a_step() {
        let v = [0.013f32, -0.2, 0.0049, 7.0];
        let q = quantize(&v, 0.01);
        assert_eq!(q, vec![1, -20, 0, 700]);
        for (a, b) in v.iter().zip(dequantize(&q, 0.01)) {
            assert!((a - b).abs() <= 0.005 + 1e-6);
        }
    }

    #[test]
    fn search_hits_the_target_size_closely() {
        let (specs, tensors) = (specs(), tensors());
        for target in [3_000usize, 8_000, 20_000] {
            let found = search_grid_step(&specs, &tensors, target, 100).unwrap();
            assert!(found.bytes <= target);
            assert!(
                found.bytes as f64 > 0.97 * target as f64,
                "{target}: {found:?}"
            );
        }
    }

    #[test]
    fn impossible_targets_are_reported() {
        assert!(search_grid_step(&specs(), &tensors(), 10, 100).is_none());
    }
}
