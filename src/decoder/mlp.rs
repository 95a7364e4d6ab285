//! The MLP for inference: bias-free layers, ReLU between them, each output accumulated as an
//! ordered chain of fused multiply-adds (`acc = fma(w, x, acc)` over the inputs in increasing
//! order, from 0), as `docs/FORMAT.md` specifies. The arithmetic is the same in every kernel, so
//! the AVX2 build and the portable one give identical bits (tested below).
//!
//! The kernel is chosen once per process (`MlpKernel::selected`): AVX2+FMA where the CPU has
//! both, else portable; the environment variable `MEDINR_SIMD=portable` (or `avx2`, refused
//! where unsupported) overrides the choice, for testing and for comparing speed.

use std::sync::OnceLock;

/// Voxels pushed through the MLP together (independent chains keep the FMA units busy).
pub const BLOCK: usize = 16;

/// Environment variable that overrides the kernel choice.
pub const SIMD_ENV: &str = "MEDINR_SIMD";

/// One MLP layer for inference: weights transposed to `[inputs][outputs]`.
pub struct Layer {
    inputs: usize,
    outputs: usize,
    weights_t: Vec<f32>,
    relu: bool,
}

impl Layer {
    /// A layer from its stored weight matrix (`outputs × inputs`, row-major).
    pub fn new(outputs: usize, inputs: usize, weights: &[f32], relu: bool) -> Layer {
        let mut weights_t = vec![0f32; weights.len()];
        for j in 0..outputs {
            for i in 0..inputs {
                weights_t[i * outputs + j] = weights[j * inputs + i];
            }
        }
        Layer {
            inputs,
            outputs,
            weights_t,
            relu,
        }
    }

    /// Outputs of the layer.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
}

/// Which compiled form of the MLP runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKernel {
    /// Plain Rust; `f32::mul_add` is the exact software fma where the CPU has no FMA unit.
    Portable,
    /// The same code compiled for AVX2 + FMA (x86-64 only).
    Avx2,
}

impl MlpKernel {
    /// The best kernel this CPU supports.
    pub fn detect() -> MlpKernel {
        if Self::Avx2.supported() {
            MlpKernel::Avx2
        } else {
            MlpKernel::Portable
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            MlpKernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            MlpKernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            MlpKernel::Avx2 => false,
        }
    }

    /// The kernel for this process: `MEDINR_SIMD` if set to a supported kernel, else
    /// `detect()`; decided once.
    pub fn selected() -> MlpKernel {
        static SELECTED: OnceLock<MlpKernel> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let asked = std::env::var(SIMD_ENV).ok();
            match asked.as_deref().map(str::trim) {
                Some("portable") => MlpKernel::Portable,
                Some("avx2") if MlpKernel::Avx2.supported() => MlpKernel::Avx2,
                _ => MlpKernel::detect(),
            }
        })
    }

    /// Runs `encoded` (`n × width`, n = `out.len()`) through `layers`, `BLOCK` samples at a
    /// time; `widest` is the widest layer or encoding.
    pub fn run(
        self,
        layers: &[Layer],
        widest: usize,
        encoded: &[f32],
        width: usize,
        out: &mut [f32],
    ) {
        let mut a = vec![0f32; BLOCK * widest];
        let mut b = vec![0f32; BLOCK * widest];
        let blocks = encoded.chunks(BLOCK * width).zip(out.chunks_mut(BLOCK));
        match self {
            // `selected()` only yields Avx2 where supported; a hand-made one is checked here,
            // once per call rather than per block.
            #[cfg(target_arch = "x86_64")]
            MlpKernel::Avx2 if self.supported() => {
                for (enc, out) in blocks {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { mlp_block_avx2(layers, enc, out, &mut a, &mut b) }
                }
            }
            _ => {
                for (enc, out) in blocks {
                    mlp_block_generic(layers, enc, out, &mut a, &mut b);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mlp_block_avx2(
    layers: &[Layer],
    encoded: &[f32],
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
) {
    mlp_block_generic(layers, encoded, out, a, b);
}

/// One layer for a layer width known at compile time: `V` samples at a time keep `V × W`
/// accumulators in registers while the inputs stream past, so `V × W / 8` independent FMA
/// chains hide the FMA latency. Every output still sums its inputs in order from 0.
#[inline(always)]
fn layer_fixed<const W: usize, const V: usize>(layer: &Layer, input: &[f32], out: &mut [f32]) {
    let inputs = layer.inputs;
    let full = out.len() / W / V * V;
    let (head, tail) = out.split_at_mut(full * W);
    for (group, out) in head.chunks_exact_mut(V * W).enumerate() {
        samples_fixed::<W, V>(layer, &input[group * V * inputs..], out);
    }
    // A partial block's last samples, one at a time.
    for (v, out) in tail.chunks_exact_mut(W).enumerate() {
        samples_fixed::<W, 1>(layer, &input[(full + v) * inputs..], out);
    }
}

/// `G` samples (`input`: `G × inputs`, `out`: `G × W`) through one layer. `G` is a constant,
/// so the accumulators stay in registers (with a run-time count they went through memory,
/// which made the 1-wide output layer a third of the MLP's time).
#[inline(always)]
fn samples_fixed<const W: usize, const G: usize>(layer: &Layer, input: &[f32], out: &mut [f32]) {
    let inputs = layer.inputs;
    let mut acc = [[0f32; W]; G];
    for k in 0..inputs {
        let w = &layer.weights_t[k * W..(k + 1) * W];
        for (v, acc) in acc.iter_mut().enumerate() {
            let xk = input[v * inputs + k];
            for (a, &wj) in acc.iter_mut().zip(w) {
                *a = wj.mul_add(xk, *a);
            }
        }
    }
    for (out, acc) in out.chunks_exact_mut(W).zip(&acc) {
        out.copy_from_slice(acc);
    }
}

/// One layer of any width (same arithmetic as `layer_fixed`).
#[inline(always)]
fn layer_any(layer: &Layer, input: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for k in 0..layer.inputs {
        let w = &layer.weights_t[k * layer.outputs..(k + 1) * layer.outputs];
        for (v, acc) in out.chunks_exact_mut(layer.outputs).enumerate() {
            let xk = input[v * layer.inputs + k];
            for (acc, &wj) in acc.iter_mut().zip(w) {
                *acc = wj.mul_add(xk, *acc);
            }
        }
    }
}

/// The MLP on a block of samples: for every output, `acc = fma(w, x, acc)` over the inputs
/// in increasing order from `acc = 0`, then ReLU on hidden layers.
#[inline(always)]
fn mlp_block_generic(
    layers: &[Layer],
    encoded: &[f32],
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
) {
    let n = out.len();
    let mut input: &[f32] = encoded;
    let (mut cur, mut next) = (a, b);
    for layer in layers {
        let o = &mut cur[..n * layer.outputs];
        match layer.outputs {
            1 => layer_fixed::<1, 16>(layer, input, o),
            8 => layer_fixed::<8, 4>(layer, input, o),
            16 => layer_fixed::<16, 4>(layer, input, o),
            32 => layer_fixed::<32, 2>(layer, input, o),
            64 => layer_fixed::<64, 1>(layer, input, o),
            _ => layer_any(layer, input, o),
        }
        if layer.relu {
            for v in o.iter_mut() {
                *v = v.max(0.0);
            }
        }
        std::mem::swap(&mut cur, &mut next);
        input = &next[..n * layer.outputs];
    }
    out.copy_from_slice(&input[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::coords::test_values;

    /// Values in [-1, 1), so ReLU cuts some activations.
    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        test_values(n, seed)
            .into_iter()
            .map(|v| 2.0 * v - 1.0)
            .collect()
    }

    /// Every kernel this CPU supports gives the same bits as the portable one, for the fixed
    /// widths (1, 8, 16, 32, 64) and an odd one, with partial blocks.
    #[test]
    fn kernels_agree_bit_for_bit() {
        for (width, hidden) in [(32, 8), (24, 16), (32, 32), (16, 64), (8, 20), (2, 1)] {
            let layers = vec![
                Layer::new(hidden, width, &lcg(hidden * width, 1), true),
                Layer::new(hidden, hidden, &lcg(hidden * hidden, 2), true),
                Layer::new(1, hidden, &lcg(hidden, 3), false),
            ];
            let n = 37;
            let encoded = lcg(n * width, 4);
            let widest = width.max(hidden);
            let mut reference = vec![0f32; n];
            MlpKernel::Portable.run(&layers, widest, &encoded, width, &mut reference);
            // The portable kernel is the ordered FMA chain of FORMAT.md, written out here.
            for v in 0..n {
                let mut x: Vec<f32> = encoded[v * width..(v + 1) * width].to_vec();
                for layer in &layers {
                    let mut y = vec![0f32; layer.outputs];
                    for (j, y) in y.iter_mut().enumerate() {
                        for (i, &xi) in x.iter().enumerate() {
                            *y = layer.weights_t[i * layer.outputs + j].mul_add(xi, *y);
                        }
                        if layer.relu {
                            *y = y.max(0.0);
                        }
                    }
                    x = y;
                }
                assert_eq!(x[0].to_bits(), reference[v].to_bits(), "sample {v}");
            }
            for kernel in [MlpKernel::Avx2] {
                if !kernel.supported() {
                    eprintln!("{kernel:?} not supported on this CPU; skipped");
                    continue;
                }
                let mut out = vec![0f32; n];
                kernel.run(&layers, widest, &encoded, width, &mut out);
                let same = out
                    .iter()
                    .zip(&reference)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{kernel:?} differs from the portable kernel ({width}→{hidden})"
                );
            }
        }
    }
}
