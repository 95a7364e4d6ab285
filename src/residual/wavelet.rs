//! The CDF 9/7 wavelet (the irreversible JPEG 2000 filter pair) by lifting, in 1D and as a
//! separable multi-level transform of a 3D block with its own number of levels per axis.
//!
//! Every step is plain IEEE-754 `f64` arithmetic in a fixed order (no fused multiply-add),
//! so the synthesis — the only part a decoder runs — gives the same bits on every machine;
//! docs/FORMAT.md ("Transform layer") lists the steps. The analysis needs no such care: the
//! encoder quantizes what it computes and the decoder only ever sees the quantized result.
//!
//! Borders use whole-sample symmetric extension (`x[-1] = x[1]`, `x[n] = x[n-2]`), which
//! lifting handles for any length ≥ 2; a length-1 line is left as it is.

/// The four lifting coefficients (predict, update, predict, update).
pub const LIFTING: [f64; 4] = [
    -1.586_134_342_059_924,
    -0.052_980_118_572_961,
    0.882_911_075_530_934,
    0.443_506_852_043_971,
];
/// Scaling of the low-pass (×) and high-pass (÷) outputs, which makes both filters close to
/// orthonormal (DC gain √2), so one quantizer step costs about the same error in every band.
pub const ZETA: f64 = 1.149_604_398_860_241;

/// Parity of the samples each lifting step updates (odd: predict, even: update).
const PARITY: [usize; 4] = [1, 0, 1, 0];

#[inline]
fn mirror(j: isize, len: usize) -> usize {
    if j < 0 {
        1
    } else if j as usize >= len {
        len - 2
    } else {
        j as usize
    }
}

/// One lifting step on `len` rows of `w` values (row-major in `buf`): every row of the given
/// parity gets `coef · (left + right)` added (`forward`, analysis) or taken away (synthesis).
fn lift(buf: &mut [f64], len: usize, w: usize, coef: f64, parity: usize, forward: bool) {
    let mut j = parity;
    while j < len {
        let l = mirror(j as isize - 1, len);
        let r = mirror(j as isize + 1, len);
        for k in 0..w {
            let s = buf[l * w + k] + buf[r * w + k];
            if forward {
                buf[j * w + k] += coef * s;
            } else {
                buf[j * w + k] -= coef * s;
            }
        }
        j += 2;
    }
}

/// Analysis of `len` rows of `w` independent lines: afterwards the first `ceil(len/2)` rows
/// hold the low band, the rest the high band. `scratch` is resized as needed.
pub fn analyze(buf: &mut [f64], len: usize, w: usize, scratch: &mut Vec<f64>) {
    if len < 2 {
        return;
    }
    for (c, p) in LIFTING.iter().zip(PARITY) {
        lift(buf, len, w, *c, p, true);
    }
    let lows = len.div_ceil(2);
    scratch.clear();
    scratch.extend_from_slice(&buf[..len * w]);
    for j in 0..len {
        let (dst, scale) = if j % 2 == 0 {
            (j / 2, ZETA)
        } else {
            (lows + j / 2, 1.0 / ZETA)
        };
        for k in 0..w {
            buf[dst * w + k] = scratch[j * w + k] * scale;
        }
    }
}

/// Synthesis, the exact inverse order of [`analyze`]: rows interleaved back, the low band
/// divided by `ZETA` and the high band multiplied by it, then the lifting steps undone last
/// to first.
pub fn synthesize(buf: &mut [f64], len: usize, w: usize, scratch: &mut Vec<f64>) {
    if len < 2 {
        return;
    }
    let lows = len.div_ceil(2);
    scratch.clear();
    scratch.extend_from_slice(&buf[..len * w]);
    for j in 0..len {
        let src = if j % 2 == 0 { j / 2 } else { lows + j / 2 };
        for k in 0..w {
            let v = scratch[src * w + k];
            buf[j * w + k] = if j % 2 == 0 { v / ZETA } else { v * ZETA };
        }
    }
    for (c, p) in LIFTING.iter().zip(PARITY).rev() {
        lift(buf, len, w, *c, p, false);
    }
}

/// Shape of a block and the number of decomposition levels along each axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decomposition {
    /// Block size (x fastest, then y, then z).
    pub dims: [usize; 3],
    /// Levels per axis; an axis takes part in level `l` while `l < levels[axis]`.
    pub levels: [usize; 3],
}

impl Decomposition {
    /// The most levels of any axis.
    pub fn depth(&self) -> usize {
        self.levels.iter().copied().max().unwrap_or(0)
    }

    /// Extent along `axis` of the low region that level `l` transforms (`l = depth` gives
    /// the final low band).
    pub fn low_extent(&self, axis: usize, l: usize) -> usize {
        let mut n = self.dims[axis];
        for _ in 0..l.min(self.levels[axis]) {
            n = n.div_ceil(2);
        }
        n
    }

    /// Whether level `l` splits `axis`.
    pub fn splits(&self, axis: usize, l: usize) -> bool {
        l < self.levels[axis] && self.low_extent(axis, l) >= 2
    }
}

/// Applies `f(buf, len, w)` along `axis` over the region `ext` of a block of `dims`,
/// gathering each group of lines into a row-major buffer and scattering it back.
fn along(
    data: &mut [f64],
    dims: [usize; 3],
    ext: [usize; 3],
    axis: usize,
    f: &mut dyn FnMut(&mut [f64], usize, usize),
) {
    let [nx, ny, _] = dims;
    let [ex, ey, ez] = ext;
    let mut buf = Vec::new();
    match axis {
        0 => {
            for z in 0..ez {
                for y in 0..ey {
                    let o = (z * ny + y) * nx;
                    f(&mut data[o..o + ex], ex, 1);
                }
            }
        }
        _ => {
            // Lines along y (one group per slice) or along z (one group per row): `at(o, k)`
            // is where sample k of the lines of group o starts.
            let (groups, len): (usize, usize) = if axis == 1 { (ez, ey) } else { (ey, ez) };
            let at = |o: usize, k: usize| {
                if axis == 1 {
                    (o * ny + k) * nx
                } else {
                    (k * ny + o) * nx
                }
            };
            for o in 0..groups {
                buf.clear();
                for k in 0..len {
                    let s = at(o, k);
                    buf.extend_from_slice(&data[s..s + ex]);
                }
                f(&mut buf, len, ex);
                for k in 0..len {
                    let s = at(o, k);
                    data[s..s + ex].copy_from_slice(&buf[k * ex..(k + 1) * ex]);
                }
            }
        }
    }
}

/// Forward transform in place: level by level on the low region, x then y then z.
pub fn forward(data: &mut [f64], d: Decomposition) {
    let mut scratch = Vec::new();
    for l in 0..d.depth() {
        let ext = [d.low_extent(0, l), d.low_extent(1, l), d.low_extent(2, l)];
        for axis in 0..3 {
            if d.splits(axis, l) {
                along(data, d.dims, ext, axis, &mut |b, len, w| {
                    analyze(b, len, w, &mut scratch)
                });
            }
        }
    }
}

/// Inverse transform in place: levels from the coarsest, z then y then x within each.
pub fn inverse(data: &mut [f64], d: Decomposition) {
    let mut scratch = Vec::new();
    for l in (0..d.depth()).rev() {
        let ext = [d.low_extent(0, l), d.low_extent(1, l), d.low_extent(2, l)];
        for axis in (0..3).rev() {
            if d.splits(axis, l) {
                along(data, d.dims, ext, axis, &mut |b, len, w| {
                    synthesize(b, len, w, &mut scratch)
                });
            }
        }
    }
}

/// Squared L2 norm of the 1D synthesis function of a coefficient: `high` selects the band
/// split off at level `level` (else the final low band after `levels` levels) of a line of
/// length `n`, for a coefficient near the middle of its band. Used to weight quantizer steps
/// so that one step of error in any band costs the same squared error in the scan.
pub fn synthesis_energy(n: usize, levels: usize, level: usize, high: bool) -> f64 {
    let d = Decomposition {
        dims: [n, 1, 1],
        levels: [levels, 0, 0],
    };
    let (start, len) = if high {
        let lo = d.low_extent(0, level + 1);
        (lo, d.low_extent(0, level) - lo)
    } else {
        (0, d.low_extent(0, levels))
    };
    if len == 0 {
        return 1.0;
    }
    let mut x = vec![0.0; n];
    x[start + len / 2] = 1.0;
    inverse(&mut x, d);
    x.iter().map(|v| v * v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize) -> Vec<f64> {
        let mut s = 12345u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 4096) as f64 - 2048.0
            })
            .collect()
    }

    #[test]
    fn reconstructs_every_length_and_level_mix() {
        for dims in [[1, 1, 1], [2, 3, 1], [7, 5, 3], [16, 9, 6], [33, 2, 17]] {
            for levels in [[0, 0, 0], [1, 1, 0], [3, 2, 1], [5, 5, 5]] {
                let d = Decomposition { dims, levels };
                let n = dims.iter().product();
                let orig = pseudo(n);
                let mut x = orig.clone();
                forward(&mut x, d);
                inverse(&mut x, d);
                let err = x
                    .iter()
                    .zip(&orig)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(err < 1e-9, "{dims:?} {levels:?}: {err}");
            }
        }
    }

    #[test]
    fn low_band_of_a_constant_has_gain_root_two_per_level() {
        let mut x = vec![3.0; 32];
        let mut s = Vec::new();
        analyze(&mut x, 32, 1, &mut s);
        assert!((x[5] - 3.0 * std::f64::consts::SQRT_2).abs() < 1e-9);
        assert!(x[16 + 5].abs() < 1e-9);
    }

    #[test]
    fn filters_are_close_to_orthonormal() {
        for level in 0..4 {
            let e = synthesis_energy(256, 4, level, true);
            assert!((0.8..1.25).contains(&e), "level {level}: {e}");
        }
        let e = synthesis_energy(256, 4, 0, false);
        assert!((0.8..1.25).contains(&e), "low: {e}");
    }
}
