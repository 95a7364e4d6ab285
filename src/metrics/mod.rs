//! Quality metrics for comparing a decoded volume against its reference.
//!
//! Volumes are flat `&[f32]` buffers with shape `[nx, ny, nz, nt]`, x varying
//! fastest, then y, z, t (`nt = 1` for 3D scans).
//!
//! Conventions (chosen to match how imaging papers report codec quality):
//! * PSNR uses the reference scan's own dynamic range (`max - min`), not the
//!   maximum of its storage type, so a 12-bit CT in an `i16` file is not
//!   flattered by a 65535 peak.
//! * SSIM is the Wang et al. (2004) index computed exactly like scikit-image's
//!   `structural_similarity(gaussian_weights=True, sigma=1.5,
//!   use_sample_covariance=False, data_range=R)` on every axial (x–y) slice,
//!   then averaged over all slices.
//! * Every accumulation is done in `f64`.
//!
//! For 4D series, [`timeseries`] adds figures that see time (temporal-mean baseline, voxel
//! time-course correlation, tSNR ratio, connectivity); `docs/METRICS.md` defines them all.

pub mod region;
pub mod timeseries;

pub use region::{compare_regions, RegionComparison, RegionStats};
pub use timeseries::{compare_timeseries, MaskSource, TimeSeriesComparison};

use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

/// Why two volumes could not be compared.
#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    /// The shape does not describe the buffers (product of dims ≠ length).
    #[error(
        "shape {shape:?} describes {expected} voxels but the buffers hold {reference} (reference) and {test} (test)"
    )]
    ShapeMismatch {
        /// The shape concerned.
        shape: [usize; 4],
        /// Values expected.
        expected: usize,
        /// Values in the reference.
        reference: usize,
        /// Values in the test.
        test: usize,
    },
    /// The two buffers have different lengths.
    #[error("reference has {reference} voxels but test has {test}")]
    LengthMismatch {
        /// Values in the reference.
        reference: usize,
        /// Values in the test.
        test: usize,
    },
    /// NaN or ±inf in one of the volumes; metrics would be meaningless.
    #[error("{which} volume has {count} non-finite values (first at index {first_index})")]
    NonFinite {
        /// Which input.
        which: &'static str,
        /// How many.
        count: usize,
        /// Flat index of the first one.
        first_index: usize,
    },
    /// Nothing to compare.
    #[error("volumes are empty")]
    Empty,
    /// A given foreground mask does not have one flag per spatial voxel.
    #[error("the mask has {mask} voxels but one frame of the scan has {voxels}")]
    MaskSize {
        /// Voxels in the mask.
        mask: usize,
        /// Voxels per frame of the scan.
        voxels: usize,
    },
    /// A region mask has neither one flag per voxel of a frame nor one per voxel of the scan.
    #[error("the mask has {mask} voxels but the scan needs {frame} (one frame) or {scan}")]
    RegionMaskSize {
        /// Voxels in the mask.
        mask: usize,
        /// Voxels per frame of the scan.
        frame: usize,
        /// Voxels of the scan.
        scan: usize,
    },
    /// The foreground mask selects no voxel, so masked figures are undefined.
    #[error("the foreground mask is empty (no voxel selected)")]
    EmptyMask,
}

/// All quality figures for one reference/test pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// PSNR in dB over the reference's range; `+inf` when identical
    /// (serde_json writes that as `null`).
    pub psnr_db: f64,
    /// Mean SSIM over all axial slices.
    pub ssim: f64,
    /// Largest absolute voxel difference.
    pub max_abs_error: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Root-mean-square error.
    pub rmse: f64,
    /// The range used for PSNR and SSIM (`max - min` of the reference, or 1).
    pub data_range: f64,
    /// Number of voxels compared.
    pub voxels: usize,
}

/// Gaussian window σ used by SSIM (Wang et al.; scikit-image default).
pub const SSIM_SIGMA: f64 = 1.5;
/// Kernel truncation in σ (scipy/skimage default, gives an 11×11 window).
pub const SSIM_TRUNCATE: f64 = 3.5;
/// SSIM luminance stabiliser constant.
pub const SSIM_K1: f64 = 0.01;
/// SSIM contrast stabiliser constant.
pub const SSIM_K2: f64 = 0.03;

/// Stored values in physical units (`v · slope + inter`, NIfTI's scl_slope/scl_inter), the
/// one unit medinr reports quality in: the compress report and `medinr compare` agree. The
/// identity scaling returns the values unchanged.
pub fn physical(values: &[f32], slope: f64, inter: f64) -> Vec<f32> {
    let mut out = values.to_vec();
    to_physical(&mut out, slope, inter);
    out
}

/// [`physical`] in place (nothing to do for the identity scaling).
pub fn to_physical(values: &mut [f32], slope: f64, inter: f64) {
    if slope == 1.0 && inter == 0.0 {
        return;
    }
    for v in values.iter_mut() {
        *v = physical_value(*v, slope, inter);
    }
}

/// One stored value in physical units (see [`physical`]).
#[inline]
pub fn physical_value(stored: f32, slope: f64, inter: f64) -> f32 {
    (stored as f64 * slope + inter) as f32
}

/// Voxels per frame and frames of `shape`, checking both buffers against it.
pub(crate) fn checked_dims(
    reference: &[f32],
    test: &[f32],
    shape: [usize; 4],
) -> Result<(usize, usize), MetricsError> {
    if reference.len() != test.len() {
        return Err(MetricsError::LengthMismatch {
            reference: reference.len(),
            test: test.len(),
        });
    }
    let expected = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(reference.len()) {
        return Err(MetricsError::ShapeMismatch {
            shape,
            expected: expected.unwrap_or(usize::MAX),
            reference: reference.len(),
            test: test.len(),
        });
    }
    if reference.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok((shape[0] * shape[1] * shape[2], shape[3]))
}

/// Compare `test` against `reference`: PSNR, SSIM and error statistics.
///
/// Fails on a shape/length mismatch, empty input, or any non-finite value.
pub fn compare(
    reference: &[f32],
    test: &[f32],
    shape: [usize; 4],
) -> Result<Comparison, MetricsError> {
    checked_dims(reference, test, shape)?;
    let mut all = Accumulator::new(shape, data_range(reference), true);
    all.add(reference, test)?;
    all.finish()
}

/// The figures of [`compare`], accumulated over whole axial slices in order, so that a scan
/// can be compared a slab at a time without holding a decoded copy of all of it. `data_range`
/// must be known first: it is the reference's (see [`data_range`]).
#[derive(Debug, Clone)]
pub struct Accumulator {
    shape: [usize; 4],
    range: f64,
    /// The SSIM window and constants; `None` when only the error figures are wanted.
    ssim: Option<(Vec<f64>, f64, f64)>,
    sum_abs: f64,
    sum_sq: f64,
    max_abs: f64,
    ssim_sum: f64,
    voxels: usize,
}

impl Accumulator {
    /// For a scan of `shape` whose reference spans `data_range`; `with_ssim` false skips SSIM
    /// (then reported as NaN), which is most of the cost.
    pub fn new(shape: [usize; 4], data_range: f64, with_ssim: bool) -> Accumulator {
        let ssim = with_ssim.then(|| {
            (
                gaussian_kernel(SSIM_SIGMA, SSIM_TRUNCATE),
                (SSIM_K1 * data_range).powi(2),
                (SSIM_K2 * data_range).powi(2),
            )
        });
        Accumulator {
            shape,
            range: data_range,
            ssim,
            sum_abs: 0.0,
            sum_sq: 0.0,
            max_abs: 0.0,
            ssim_sum: 0.0,
            voxels: 0,
        }
    }

    /// Adds the next whole axial slices (x fastest, a multiple of `nx·ny` values each).
    /// Fails on non-finite values, buffers of different length, a partial slice, or more
    /// voxels than the shape has.
    pub fn add(&mut self, reference: &[f32], test: &[f32]) -> Result<(), MetricsError> {
        let plane = self.shape[0] * self.shape[1];
        let total: usize = self.shape.iter().product();
        if reference.len() != test.len() {
            return Err(MetricsError::LengthMismatch {
                reference: reference.len(),
                test: test.len(),
            });
        }
        if plane == 0
            || !reference.len().is_multiple_of(plane)
            || self.voxels + reference.len() > total
        {
            return Err(MetricsError::ShapeMismatch {
                shape: self.shape,
                expected: total,
                reference: self.voxels + reference.len(),
                test: self.voxels + test.len(),
            });
        }
        check_finite("reference", reference)?;
        check_finite("test", test)?;
        let (sum_abs, sum_sq, max_abs) = reference
            .par_chunks(1 << 16)
            .zip(test.par_chunks(1 << 16))
            .map(|(r, t)| {
                let mut sa = 0.0f64;
                let mut ss = 0.0f64;
                let mut mx = 0.0f64;
                for (&a, &b) in r.iter().zip(t) {
                    let d = (a as f64 - b as f64).abs();
                    sa += d;
                    ss += d * d;
                    mx = mx.max(d);
                }
                (sa, ss, mx)
            })
            .reduce(
                || (0.0, 0.0, 0.0),
                |x, y| (x.0 + y.0, x.1 + y.1, x.2.max(y.2)),
            );
        self.sum_abs += sum_abs;
        self.sum_sq += sum_sq;
        self.max_abs = self.max_abs.max(max_abs);
        if let Some((kernel, c1, c2)) = &self.ssim {
            let [nx, ny, _, _] = self.shape;
            self.ssim_sum += ssim_sum(reference, test, nx, ny, kernel, *c1, *c2);
        }
        self.voxels += reference.len();
        Ok(())
    }

    /// Voxels added so far.
    pub fn voxels(&self) -> usize {
        self.voxels
    }

    /// The figures, once every voxel of the shape has been added.
    pub fn finish(&self) -> Result<Comparison, MetricsError> {
        let total: usize = self.shape.iter().product();
        if total == 0 {
            return Err(MetricsError::Empty);
        }
        if self.voxels != total {
            return Err(MetricsError::ShapeMismatch {
                shape: self.shape,
                expected: total,
                reference: self.voxels,
                test: self.voxels,
            });
        }
        let n = total as f64;
        let mse = self.sum_sq / n;
        let slices = (total / (self.shape[0] * self.shape[1])) as f64;
        Ok(Comparison {
            psnr_db: psnr_from_mse(mse, self.range),
            ssim: match self.ssim {
                Some(_) => self.ssim_sum / slices,
                None => f64::NAN,
            },
            max_abs_error: self.max_abs,
            mae: self.sum_abs / n,
            rmse: mse.sqrt(),
            data_range: self.range,
            voxels: total,
        })
    }
}

/// Count non-finite values and report the first one.
pub(crate) fn check_finite(which: &'static str, v: &[f32]) -> Result<(), MetricsError> {
    let count = v.par_iter().filter(|x| !x.is_finite()).count();
    if count == 0 {
        return Ok(());
    }
    let first_index = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
    Err(MetricsError::NonFinite {
        which,
        count,
        first_index,
    })
}

/// Peak signal-to-noise ratio `10 log10(range² / MSE)` in dB.
///
/// Returns `+inf` for identical inputs. Buffers of different length are
/// compared over their common prefix (use [`compare`] for checked input).
pub fn psnr(reference: &[f32], test: &[f32], data_range: f64) -> f64 {
    let n = reference.len().min(test.len());
    if n == 0 {
        return f64::INFINITY;
    }
    let sum_sq: f64 = reference[..n]
        .par_chunks(1 << 16)
        .zip(test[..n].par_chunks(1 << 16))
        .map(|(r, t)| {
            r.iter()
                .zip(t)
                .map(|(&a, &b)| {
                    let d = a as f64 - b as f64;
                    d * d
                })
                .sum::<f64>()
        })
        .sum();
    psnr_from_mse(sum_sq / n as f64, data_range)
}

pub(crate) fn psnr_from_mse(mse: f64, range: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (range * range / mse).log10()
    }
}

/// The trivial baseline of a scan: every voxel replaced by the scan's mean (one number, a few
/// bytes). Returns its PSNR on `data_range` and its worst-case error; a codec's point below
/// it is a failure whatever its rate. Finite values only; `None` for an empty scan.
pub fn constant_baseline(reference: &[f32], data_range: f64) -> Option<(f64, f64)> {
    let finite = || {
        reference
            .par_iter()
            .filter(|x| x.is_finite())
            .map(|&x| x as f64)
    };
    let n = finite().count();
    if n == 0 {
        return None;
    }
    let mean = finite().sum::<f64>() / n as f64;
    let mse = finite().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    let max_error = finite().map(|x| (x - mean).abs()).reduce(|| 0.0, f64::max);
    Some((psnr_from_mse(mse, data_range), max_error))
}

/// The reference's own dynamic range `max - min` (finite values only);
/// 1 when the volume is constant or empty, so PSNR/SSIM stay defined.
pub fn data_range(reference: &[f32]) -> f64 {
    let (lo, hi) = reference
        .par_iter()
        .filter(|x| x.is_finite())
        .fold(
            || (f64::INFINITY, f64::NEG_INFINITY),
            |(lo, hi), &x| (lo.min(x as f64), hi.max(x as f64)),
        )
        .reduce(
            || (f64::INFINITY, f64::NEG_INFINITY),
            |a, b| (a.0.min(b.0), a.1.max(b.1)),
        );
    let r = hi - lo;
    if r.is_finite() && r > 0.0 {
        r
    } else {
        1.0
    }
}

/// Compressed size expressed as bits per voxel (0 for an empty volume).
pub fn bits_per_voxel(bytes: u64, voxels: u64) -> f64 {
    if voxels == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / voxels as f64
    }
}

/// Compression ratio: the stored voxel data (voxels × bits per stored value) over the
/// compressed size (infinite for an empty file).
pub fn compression_ratio(voxels: u64, stored_bits: u64, bytes: u64) -> f64 {
    (voxels * stored_bits) as f64 / (bytes as f64 * 8.0)
}

/// Mean structural similarity over all axial (x–y) slices.
///
/// Per slice this reproduces scikit-image's Gaussian-weighted SSIM: window
/// σ = 1.5 truncated at 3.5σ (11×11), `K1 = 0.01`, `K2 = 0.03`, population
/// (co)variances, scipy `reflect` boundary handling, and the mean taken over
/// the interior after cropping 5 pixels from each border. Slices with a side
/// of 10 pixels or fewer (where scikit-image refuses to run) are still
/// computed: the filter uses the same reflected boundary and the crop is
/// skipped along that side, so the mean covers the whole side.
///
/// Returns NaN when the buffers do not match `shape`.
pub fn ssim(reference: &[f32], test: &[f32], shape: [usize; 4], data_range: f64) -> f64 {
    let [nx, ny, nz, nt] = shape;
    let plane = nx * ny;
    let slices = nz * nt;
    if plane == 0
        || slices == 0
        || reference.len() != plane * slices
        || test.len() != reference.len()
    {
        return f64::NAN;
    }
    let kernel = gaussian_kernel(SSIM_SIGMA, SSIM_TRUNCATE);
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    ssim_sum(reference, test, nx, ny, &kernel, c1, c2) / slices as f64
}

/// Sum of the slices' mean SSIM over whole `nx × ny` slices, in parallel.
fn ssim_sum(r: &[f32], t: &[f32], nx: usize, ny: usize, k: &[f64], c1: f64, c2: f64) -> f64 {
    r.par_chunks(nx * ny)
        .zip(t.par_chunks(nx * ny))
        .map(|(r, t)| ssim_slice(r, t, nx, ny, k, c1, c2))
        .sum()
}

/// Normalised 1D Gaussian kernel exactly as scipy.ndimage builds it.
fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as i64;
    let w: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// scipy.ndimage `reflect` index mapping (d c b a | a b c d | d c b a),
/// valid for any offset and any length `n ≥ 1`.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m >= n { period - 1 - m } else { m }) as usize
}

/// Half-open index range kept after skimage's border crop.
fn crop_range(n: usize, pad: usize) -> (usize, usize) {
    if n > 2 * pad {
        (pad, n - pad)
    } else {
        (0, n)
    }
}

/// Mean SSIM map of one slice (see [`ssim`]).
fn ssim_slice(r: &[f32], t: &[f32], nx: usize, ny: usize, k: &[f64], c1: f64, c2: f64) -> f64 {
    let rad = k.len() / 2;
    let plane = nx * ny;
    // Horizontal pass: five moments filtered along x, all rows.
    let mut h = vec![[0.0f64; 5]; plane];
    let mut row = vec![[0.0f64; 5]; nx + 2 * rad];
    for y in 0..ny {
        for (j, slot) in row.iter_mut().enumerate() {
            let i = y * nx + reflect(j as i64 - rad as i64, nx);
            let a = r[i] as f64;
            let b = t[i] as f64;
            *slot = [a, b, a * a, b * b, a * b];
        }
        for x in 0..nx {
            let mut acc = [0.0f64; 5];
            for (w, v) in k.iter().zip(&row[x..x + k.len()]) {
                for m in 0..5 {
                    acc[m] += w * v[m];
                }
            }
            h[y * nx + x] = acc;
        }
    }
    // Vertical pass only where the map is averaged.
    let (x0, x1) = crop_range(nx, rad);
    let (y0, y1) = crop_range(ny, rad);
    let mut sum = 0.0f64;
    let mut acc = vec![[0.0f64; 5]; x1 - x0];
    for y in y0..y1 {
        acc.iter_mut().for_each(|a| *a = [0.0; 5]);
        for (d, w) in k.iter().enumerate() {
            let src = reflect(y as i64 + d as i64 - rad as i64, ny) * nx;
            for (a, v) in acc.iter_mut().zip(&h[src + x0..src + x1]) {
                for m in 0..5 {
                    a[m] += w * v[m];
                }
            }
        }
        for a in &acc {
            let [ux, uy, uxx, uyy, uxy] = *a;
            let vx = uxx - ux * ux;
            let vy = uyy - uy * uy;
            let vxy = uxy - ux * uy;
            let num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2);
            let den = (ux * ux + uy * uy + c1) * (vx + vy + c2);
            sum += num / den;
        }
    }
    sum / ((x1 - x0) * (y1 - y0)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers in [0, 1) (xorshift64*).
    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed.max(1);
        move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Smooth synthetic 2D image, values 0..=255 in integer steps.
    fn smooth(nx: usize, ny: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(nx * ny);
        for y in 0..ny {
            for x in 0..nx {
                let f = 128.0
                    + 60.0 * ((x as f64) * 0.07).sin() * ((y as f64) * 0.05).cos()
                    + 40.0 * (((x + 2 * y) as f64) * 0.013).sin();
                v.push(f.round() as f32);
            }
        }
        v
    }

    #[test]
    fn identical_is_perfect() {
        let a = smooth(40, 30);
        let c = compare(&a, &a, [40, 30, 1, 1]).unwrap();
        assert!(c.psnr_db.is_infinite() && c.psnr_db > 0.0);
        assert!((c.ssim - 1.0).abs() < 1e-12);
        assert_eq!(c.max_abs_error, 0.0);
        assert_eq!(c.voxels, 1200);
    }

    #[test]
    fn constant_baseline_is_the_mean_image_compared_like_any_decoded_scan() {
        let a = smooth(40, 30);
        let range = data_range(&a);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let flat = vec![mean as f32; a.len()];
        let (p, max) = constant_baseline(&a, range).unwrap();
        assert!((p - psnr(&a, &flat, range)).abs() < 1e-4, "{p}");
        let want = a
            .iter()
            .map(|&v| (v as f64 - mean).abs())
            .fold(0.0, f64::max);
        assert!((max - want).abs() < 1e-9);
        // Non-finite voxels are left out; nothing finite, no baseline.
        let mut b = a.clone();
        b.push(f32::NAN);
        assert_eq!(constant_baseline(&b, range), Some((p, max)));
        assert_eq!(constant_baseline(&[f32::NAN], 1.0), None);
    }

    #[test]
    fn constant_offset_psnr_is_exact() {
        // Range 0..=100, every voxel off by 2 → MSE 4 → PSNR = 10 log10(10000/4).
        let a: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        let b: Vec<f32> = a.iter().map(|v| v + 2.0).collect();
        let c = compare(&a, &b, [101, 1, 1, 1]).unwrap();
        let want = 10.0 * (10000.0f64 / 4.0).log10();
        assert!((c.psnr_db - want).abs() < 1e-12, "{} vs {want}", c.psnr_db);
        assert_eq!(c.data_range, 100.0);
        assert_eq!(c.mae, 2.0);
        assert_eq!(c.rmse, 2.0);
        assert_eq!(c.max_abs_error, 2.0);
        assert!((psnr(&a, &b, 100.0) - want).abs() < 1e-12);
    }

    #[test]
    fn constant_reference_uses_unit_range() {
        assert_eq!(data_range(&[3.0; 10]), 1.0);
        assert_eq!(data_range(&[-1024.0, 3071.0]), 4095.0);
        assert_eq!(bits_per_voxel(1000, 8000), 1.0);
        assert_eq!(bits_per_voxel(1, 0), 0.0);
    }

    #[test]
    fn errors_are_reported() {
        let a = vec![0.0f32; 8];
        assert_eq!(
            compare(&a, &a[..7], [8, 1, 1, 1]),
            Err(MetricsError::LengthMismatch {
                reference: 8,
                test: 7
            })
        );
        assert!(matches!(
            compare(&a, &a, [3, 3, 1, 1]),
            Err(MetricsError::ShapeMismatch { .. })
        ));
        let mut b = a.clone();
        b[5] = f32::NAN;
        b[7] = f32::INFINITY;
        assert_eq!(
            compare(&a, &b, [2, 2, 2, 1]),
            Err(MetricsError::NonFinite {
                which: "test",
                count: 2,
                first_index: 5
            })
        );
    }

    #[test]
    fn ssim_decreases_with_noise() {
        let (nx, ny) = (64, 48);
        let a = smooth(nx, ny);
        let range = data_range(&a);
        let mut last = 1.0 + 1e-9;
        for sigma in [1.0, 4.0, 10.0, 25.0, 60.0] {
            let mut r = rng(7);
            let b: Vec<f32> = a
                .iter()
                .map(|&v| v + (sigma * (r() - 0.5) * 3.464) as f32)
                .collect();
            let s = ssim(&a, &b, [nx, ny, 1, 1], range);
            assert!(s < last, "sigma {sigma}: {s} !< {last}");
            assert!(s > 0.0 || sigma > 20.0);
            last = s;
        }
    }

    /// Reference images shared with the scikit-image check below: an
    /// integer-valued smooth pattern and a deterministic distortion of it.
    fn skimage_pair(nx: usize, ny: usize) -> (Vec<f32>, Vec<f32>) {
        let mut a = Vec::with_capacity(nx * ny);
        let mut b = Vec::with_capacity(nx * ny);
        for y in 0..ny {
            for x in 0..nx {
                let (xf, yf) = (x as f64, y as f64);
                let v = (100.0 + 80.0 * (xf * 0.21).sin() * (yf * 0.13).cos() + yf).round();
                let d = (((x * 7 + y * 13) % 11) as f64 - 5.0) * 3.0;
                a.push(v as f32);
                b.push((v + d) as f32);
            }
        }
        (a, b)
    }

    #[test]
    fn ssim_matches_scikit_image() {
        // Numbers from scikit-image 0.26 `structural_similarity(a, b,
        // gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        // data_range=R)` on the same images built in Python (float64).
        // Rows are y, columns x (x fastest, as in our layout). 11×12 checks
        // the border crop at the smallest size scikit-image accepts.
        let cases = [
            (64, 48, 206.0, 0.789162868134741),
            (33, 71, 225.0, 0.7936219379442144),
            (128, 128, 255.0, 0.806569505483443),
            (11, 12, 80.0, 0.7708756989710446),
        ];
        for (nx, ny, range, want) in cases {
            let (a, b) = skimage_pair(nx, ny);
            let got = ssim(&a, &b, [nx, ny, 1, 1], range);
            assert!(
                (got - want).abs() < 1e-9,
                "{nx}x{ny} R={range}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn slab_by_slab_accumulation_equals_one_comparison() {
        let shape = [23, 17, 6, 2];
        let n: usize = shape.iter().product();
        let mut r = rng(7);
        let a: Vec<f32> = (0..n).map(|_| (r() * 1000.0).round() as f32).collect();
        let b: Vec<f32> = a.iter().map(|&x| x + (r() * 20.0 - 10.0) as f32).collect();
        let whole = compare(&a, &b, shape).unwrap();
        let plane = 23 * 17;
        let mut acc = Accumulator::new(shape, data_range(&a), true);
        for (ra, rb) in a.chunks(plane * 5).zip(b.chunks(plane * 5)) {
            acc.add(ra, rb).unwrap();
        }
        let slabs = acc.finish().unwrap();
        assert_eq!(slabs.max_abs_error, whole.max_abs_error);
        assert!((slabs.psnr_db - whole.psnr_db).abs() < 1e-9);
        assert!((slabs.ssim - whole.ssim).abs() < 1e-12);
        assert!((slabs.mae - whole.mae).abs() < 1e-9);
        // A partial slice, too many voxels, and too few are refused.
        let mut bad = Accumulator::new(shape, 1.0, false);
        assert!(bad.add(&a[..plane + 1], &b[..plane + 1]).is_err());
        assert!(bad.finish().is_err());
        bad.add(&a, &b).unwrap();
        assert!(bad.add(&a[..plane], &b[..plane]).is_err());
        assert!(bad.finish().unwrap().ssim.is_nan());
    }
}
