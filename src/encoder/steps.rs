//! Quantization steps for every tensor from one searched grid step, and the search for the
//! grid step that makes a file a given size.
//!
//! Grid level `l` gets step `Δ · scale_l`. The scales come from each level's sensitivity
//! (`level_scales`): an entry of a coarse level is interpolated into many voxels and so moves
//! the error far more than an entry of a fine one. High-rate theory puts the MSE optimum where
//! `sensitivity_l · step_l²` is the same for every level. Each MLP matrix gets a fixed fine
//! step relative to its RMS, since the MLP is small and errors there affect every voxel.

use crate::codec::bytes::varint_len;
use rayon::prelude::*;

use crate::codec::entropy::encoded_len;
use crate::codec::grid::encode_table;
use crate::codec::quantize::quantize;
use crate::model::{TensorKind, TensorSpec};

/// How every tensor's step follows from the one searched grid step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// Relative step of each grid level (see `level_scales`).
    pub level_scales: Vec<f32>,
    /// MLP matrix step = its RMS / this.
    pub mlp_divisor: f32,
}

/// Relative grid steps from per-level sensitivities (any positive scale; the mean scale is 1
/// in log terms): `scale_l = sqrt(geomean(s) / s_l)`. Levels with no measurable sensitivity
/// get the coarsest scale of the others.
pub fn level_scales(sensitivity: &[f64]) -> Vec<f32> {
    let positive: Vec<f64> = sensitivity
        .iter()
        .copied()
        .filter(|s| *s > 0.0 && s.is_finite())
        .collect();
    if positive.is_empty() {
        return vec![1.0; sensitivity.len()];
    }
    let log_mean = positive.iter().map(|s| s.ln()).sum::<f64>() / positive.len() as f64;
    let coarsest = positive.iter().fold(f64::INFINITY, |m, &s| m.min(s));
    sensitivity
        .iter()
        .map(|&s| {
            let s = if s > 0.0 && s.is_finite() {
                s
            } else {
                coarsest
            };
            ((log_mean - s.ln()) / 2.0).exp() as f32
        })
        .collect()
}

/// Steps for every tensor (file order) given the grid step and the plan.
pub fn steps_for(
    specs: &[TensorSpec],
    tensors: &[Vec<f32>],
    grid_step: f32,
    plan: &StepPlan,
) -> Vec<f32> {
    let scales = &plan.level_scales;
    specs
        .iter()
        .zip(tensors)
        .map(|(spec, t)| match spec.kind {
            TensorKind::Grid(l) => grid_step * scales.get(l).copied().unwrap_or(1.0),
            TensorKind::Weight(_) => {
                let rms = (t.iter().map(|v| v * v).sum::<f32>() / t.len().max(1) as f32).sqrt();
                (rms / plan.mlp_divisor).max(1e-12)
            }
        })
        .collect()
}

/// Bytes the TENS payload takes for these tensors and steps: a tensor whose spec has a
/// table shape is a table that takes the shorter of its context-coded and usual stream, as
/// the file will have it (specs without shapes size the usual streams alone). Tensors are
/// sized in parallel.
pub fn tensors_size(specs: &[TensorSpec], tensors: &[Vec<f32>], steps: &[f32]) -> usize {
    let streams: usize = tensors
        .par_iter()
        .zip(steps)
        .enumerate()
        .map(|(i, (t, &s))| {
            let symbols = quantize(t, s);
            let n = match specs.get(i).and_then(|spec| spec.table) {
                Some(table) => encode_table(&symbols, &table).len(),
                None => encoded_len(&symbols),
            };
            4 + varint_len(n as u64) + n
        })
        .sum();
    varint_len(tensors.len() as u64) + streams
}

/// Bytes of the smallest file these tensors can make under `plan`: every grid symbol zero
/// (the coarsest step), `overhead` being everything besides the TENS payload.
pub fn minimum_size(
    specs: &[TensorSpec],
    tensors: &[Vec<f32>],
    plan: &StepPlan,
    overhead: usize,
) -> usize {
    overhead + tensors_size(specs, tensors, &steps_for(specs, tensors, f32::MAX, plan))
}

/// The outcome of a step search.
#[derive(Debug, Clone, Copy)]
pub struct StepSearch {
    /// The grid step found.
    pub grid_step: f32,
    /// The file size it gives (checked by the tests; rate control re-measures after
    /// fine-tuning).
    #[cfg_attr(not(test), allow(dead_code))]
    pub bytes: usize,
}

/// Finds the grid step whose file is closest to `target` bytes without exceeding it,
/// `overhead` being everything in the file besides the TENS payload. Returns `None` when even
/// the coarsest step (every grid symbol zero) is larger than the target.
pub fn search_grid_step(
    specs: &[TensorSpec],
    tensors: &[Vec<f32>],
    plan: &StepPlan,
    target: usize,
    overhead: usize,
    iterations: usize,
) -> Option<StepSearch> {
    let size =
        |step: f32| overhead + tensors_size(specs, tensors, &steps_for(specs, tensors, step, plan));
    let min_scale = plan
        .level_scales
        .iter()
        .fold(f32::INFINITY, |m, &s| m.min(s))
        .clamp(1e-6, 1.0);
    let max_abs = tensors
        .iter()
        .zip(specs)
        .filter(|(_, s)| matches!(s.kind, TensorKind::Grid(_)))
        .flat_map(|(t, _)| t.iter())
        .fold(0f32, |m, v| m.max(v.abs()))
        / min_scale;
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
    for _ in 0..iterations {
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
                table: None,
            },
            TensorSpec {
                kind: TensorKind::Grid(1),
                len: 20000,
                table: None,
            },
            TensorSpec {
                kind: TensorKind::Weight(0),
                len: 64,
                table: None,
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
    fn search_hits_the_target_size_closely() {
        let (specs, tensors) = (specs(), tensors());
        for target in [3_000usize, 8_000, 20_000] {
            let plan = StepPlan {
                level_scales: vec![1.0, 0.5],
                mlp_divisor: 64.0,
            };
            let found = search_grid_step(&specs, &tensors, &plan, target, 100, 40).unwrap();
            assert!(found.bytes <= target);
            assert!(
                found.bytes as f64 > 0.97 * target as f64,
                "{target}: {found:?}"
            );
        }
    }

    #[test]
    fn impossible_targets_are_reported() {
        let plan = StepPlan {
            level_scales: vec![1.0, 1.0],
            mlp_divisor: 64.0,
        };
        assert!(search_grid_step(&specs(), &tensors(), &plan, 10, 100, 40).is_none());
    }

    #[test]
    fn more_sensitive_levels_get_finer_steps() {
        let scales = level_scales(&[100.0, 1.0, 0.0]);
        assert!((scales[0] * 10.0 - scales[1]).abs() < 1e-5);
        assert!((scales[0] * scales[1] - 1.0).abs() < 1e-5);
        assert_eq!(scales[2], scales[1]);
        assert_eq!(level_scales(&[0.0, 0.0]), vec![1.0, 1.0]);
    }
}
