//! Metrics that see time: how well a decoded 4D series keeps each voxel's fluctuation around
//! its temporal mean, which is what fMRI analyses use (BOLD changes are ~1 % of the signal).
//!
//! Whole-volume PSNR hides that: replacing every voxel's time course by its temporal mean
//! removes all the information an fMRI study keeps and still scores a high PSNR. So every
//! figure here comes with, or is, a figure about the fluctuation, measured inside a
//! foreground mask (voxels outside the head have no signal to keep). Exact definitions, with
//! the same names, are in `docs/METRICS.md`.
//!
//! Layout as in [`super`]: flat buffers `[nx, ny, nz, nt]`, x fastest, t slowest, so voxel
//! `v`'s time course is `data[v + t·nvox]`. All accumulation is in `f64`.

use rayon::prelude::*;
use serde::Serialize;

use super::{check_finite, data_range, psnr_from_mse, MetricsError};

/// Automatic mask: a voxel is foreground when its temporal mean exceeds this fraction of the
/// robust maximum of all temporal means (0.1 keeps brain, drops air and most ghosting; the
/// usual AFNI/FSL-style intensity threshold for EPI).
pub const MASK_FRACTION: f64 = 0.1;
/// The robust maximum is this quantile (nearest rank) of the temporal means of all voxels, so
/// a few hot voxels (vessels, artefacts) do not set the threshold.
pub const MASK_ROBUST_QUANTILE: f64 = 0.99;
/// Edge of the cubic blocks whose mean time courses are the regions of the functional
/// connectivity matrix (8 voxels ≈ 2.5–3.5 cm at fMRI resolution: parcel-sized).
pub const FC_BLOCK: usize = 8;
/// A block is a region when at least this fraction of its nominal `FC_BLOCK³` voxels is
/// foreground (clipped edge blocks count against their nominal size).
pub const FC_MIN_FOREGROUND: f64 = 0.5;
/// Correlation-based figures need at least this many frames: with two, every de-meaned pair of
/// time courses correlates at exactly ±1, which says nothing.
pub const MIN_FRAMES_FOR_CORRELATION: usize = 3;

/// Where the foreground mask came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSource {
    /// [`auto_mask`] on the reference.
    Automatic,
    /// Given by the caller (e.g. `--mask`).
    Given,
}

/// Time-aware quality figures of a decoded 4D series against its reference
/// (definitions: `docs/METRICS.md`). `None` means "not defined for this input" (too few
/// frames, too few regions), never "perfect".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeSeriesComparison {
    /// Frames (length of the time axis).
    pub frames: usize,
    /// Foreground voxels (spatial) in the mask.
    pub mask_voxels: usize,
    /// How the mask was made.
    pub mask_source: MaskSource,
    /// The range used for every PSNR here: `max − min` of the whole reference.
    pub data_range: f64,
    /// PSNR of the decoded series over the whole 4D array (as `Comparison::psnr_db`).
    pub psnr_db: f64,
    /// PSNR of the temporal-mean baseline (every voxel's time course replaced by the
    /// reference's own temporal mean) over the whole array: a codec below this keeps less
    /// than a single 3D mean image would.
    pub temporal_mean_psnr_db: f64,
    /// PSNR of the decoded series over the mask's voxels only (all frames).
    pub mask_psnr_db: f64,
    /// Temporal-mean baseline PSNR over the mask's voxels only.
    pub mask_temporal_mean_psnr_db: f64,
    /// Largest absolute difference anywhere in the array.
    pub max_abs_error: f64,
    /// Median over mask voxels of the Pearson correlation of the de-meaned reference and
    /// decoded time courses (a flat decoded time course counts as 0).
    pub median_ts_correlation: Option<f64>,
    /// Mask voxels whose decoded time course is constant (correlation counted as 0).
    pub flat_decoded_voxels: usize,
    /// Mask voxels whose reference time course is constant (left out of the correlation and
    /// tSNR medians: there is no fluctuation to keep).
    pub flat_reference_voxels: usize,
    /// Median over mask voxels of decoded tSNR / reference tSNR (tSNR = mean / std over
    /// time). Above 1: the codec removed fluctuation; `+inf` when most decoded courses are
    /// flat.
    pub median_tsnr_ratio: Option<f64>,
    /// Regions (blocks) in the functional-connectivity matrices.
    pub fc_regions: usize,
    /// Pearson correlation of the upper triangles of the reference and decoded FC matrices.
    pub fc_correlation: Option<f64>,
    /// PSNR of each frame (volume) over the whole frame, on `data_range`.
    pub per_frame_psnr_db: Vec<f64>,
}

impl TimeSeriesComparison {
    /// Smallest per-frame PSNR (the worst volume); `None` without frames.
    pub fn min_frame_psnr_db(&self) -> Option<f64> {
        self.per_frame_psnr_db.iter().copied().reduce(f64::min)
    }
}

/// Temporal mean of every voxel (length `nx·ny·nz`).
pub fn temporal_mean(data: &[f32], nvox: usize, frames: usize) -> Vec<f64> {
    (0..nvox)
        .into_par_iter()
        .map(|v| {
            let s: f64 = (0..frames).map(|t| data[v + t * nvox] as f64).sum();
            s / frames as f64
        })
        .collect()
}

/// The automatic foreground mask of a 4D series: temporal mean > [`MASK_FRACTION`] × the
/// [`MASK_ROBUST_QUANTILE`] quantile (nearest rank) of all temporal means.
///
/// Fails with [`MetricsError::EmptyMask`] when no voxel passes (e.g. a non-positive scan).
pub fn auto_mask(reference: &[f32], shape: [usize; 4]) -> Result<Vec<bool>, MetricsError> {
    let (nvox, frames) = super::checked_dims(reference, reference, shape)?;
    check_finite("reference", reference)?;
    let means = temporal_mean(reference, nvox, frames);
    let mut sorted = means.clone();
    sorted.sort_by(f64::total_cmp);
    let rank = ((MASK_ROBUST_QUANTILE * nvox as f64).ceil() as usize).clamp(1, nvox);
    let threshold = MASK_FRACTION * sorted[rank - 1];
    let mask: Vec<bool> = means.iter().map(|&m| m > threshold).collect();
    if !mask.iter().any(|&m| m) {
        return Err(MetricsError::EmptyMask);
    }
    Ok(mask)
}

/// Whether every value of `a` is the same (exactly: a computed variance of a constant series
/// can be a rounding residue above 0).
fn is_constant(a: &[f64]) -> bool {
    a.iter().all(|&x| x == a[0])
}

/// Pearson correlation of two equally long series; `None` when either is constant
/// (zero variance), where the correlation is undefined.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n == 0 || is_constant(&a[..n]) || is_constant(&b[..n]) {
        return None;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a[..n].iter().zip(&b[..n]) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return None;
    }
    Some((sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0))
}

/// Median (mean of the two middle values for an even count); `None` when empty.
/// NaNs must not be present (they sort last under `total_cmp`).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        let (a, b) = (values[n / 2 - 1], values[n / 2]);
        if a == b {
            a
        } else {
            0.5 * (a + b)
        }
    })
}

/// One voxel's per-voxel figures: `(correlation or None if flat decoded, tSNR ratio)`, or
/// `None` when the reference course is constant.
fn voxel_figures(r: &[f64], t: &[f64]) -> Option<(Option<f64>, f64)> {
    let n = r.len() as f64;
    let mr = r.iter().sum::<f64>() / n;
    let mt = t.iter().sum::<f64>() / n;
    let vr = r.iter().map(|x| (x - mr) * (x - mr)).sum::<f64>() / n;
    let vt = t.iter().map(|x| (x - mt) * (x - mt)).sum::<f64>() / n;
    if is_constant(r) {
        return None;
    }
    // tSNR_t / tSNR_r = (mt / sd_t) / (mr / sd_r); +inf for a flat decoded course.
    let ratio = if is_constant(t) {
        f64::INFINITY
    } else {
        (mt / vt.sqrt()) / (mr / vr.sqrt())
    };
    Some((pearson(r, t), ratio))
}

/// The regions of the FC matrix: for each block (tiled from voxel 0 in [`FC_BLOCK`]-voxel
/// steps, edge blocks clipped) with ≥ [`FC_MIN_FOREGROUND`] of `FC_BLOCK³` foreground voxels,
/// the list of its foreground voxels (flat spatial indices).
pub fn fc_regions(mask: &[bool], dims: [usize; 3]) -> Vec<Vec<usize>> {
    let [nx, ny, nz] = dims;
    let need = (FC_MIN_FOREGROUND * (FC_BLOCK * FC_BLOCK * FC_BLOCK) as f64).ceil() as usize;
    let mut regions = Vec::new();
    for bz in (0..nz).step_by(FC_BLOCK) {
        for by in (0..ny).step_by(FC_BLOCK) {
            for bx in (0..nx).step_by(FC_BLOCK) {
                let mut voxels = Vec::new();
                for z in bz..(bz + FC_BLOCK).min(nz) {
                    for y in by..(by + FC_BLOCK).min(ny) {
                        for x in bx..(bx + FC_BLOCK).min(nx) {
                            let v = x + nx * (y + ny * z);
                            if mask[v] {
                                voxels.push(v);
                            }
                        }
                    }
                }
                if voxels.len() >= need {
                    regions.push(voxels);
                }
            }
        }
    }
    regions
}

/// Mean time course of each region.
fn region_courses(
    data: &[f32],
    regions: &[Vec<usize>],
    nvox: usize,
    frames: usize,
) -> Vec<Vec<f64>> {
    regions
        .par_iter()
        .map(|vox| {
            (0..frames)
                .map(|t| {
                    let s: f64 = vox.iter().map(|&v| data[v + t * nvox] as f64).sum();
                    s / vox.len() as f64
                })
                .collect()
        })
        .collect()
}

/// Upper triangle (row-major, diagonal excluded) of the Pearson correlation matrix of the
/// courses; an undefined entry (a constant course) counts as 0.
fn fc_upper(courses: &[Vec<f64>]) -> Vec<f64> {
    let n = courses.len();
    (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            ((i + 1)..n).map(move |j| pearson(&courses[i], &courses[j]).unwrap_or(0.0))
        })
        .collect()
}

/// Compare a decoded 4D series against its reference with the time-aware figures of
/// [`TimeSeriesComparison`] inside `mask` (one flag per spatial voxel, x fastest), or inside
/// [`auto_mask`] of the reference when `mask` is `None`.
///
/// Fails on shape/length mismatch, empty input, non-finite values, a mask of the wrong size
/// or an empty mask.
pub fn compare_timeseries(
    reference: &[f32],
    test: &[f32],
    shape: [usize; 4],
    mask: Option<&[bool]>,
) -> Result<TimeSeriesComparison, MetricsError> {
    let (nvox, frames) = super::checked_dims(reference, test, shape)?;
    check_finite("reference", reference)?;
    check_finite("test", test)?;
    let (mask, mask_source) = match mask {
        Some(m) => {
            if m.len() != nvox {
                return Err(MetricsError::MaskSize {
                    mask: m.len(),
                    voxels: nvox,
                });
            }
            if !m.iter().any(|&x| x) {
                return Err(MetricsError::EmptyMask);
            }
            (m.to_vec(), MaskSource::Given)
        }
        None => (auto_mask(reference, shape)?, MaskSource::Automatic),
    };
    let range = data_range(reference);
    let means = temporal_mean(reference, nvox, frames);

    // Squared errors of the decoded series and of the baseline, whole array and mask only.
    let (se, se_mask, base, base_mask, max_abs) = (0..nvox)
        .into_par_iter()
        .map(|v| {
            let (mut se, mut base, mut mx) = (0.0f64, 0.0f64, 0.0f64);
            for t in 0..frames {
                let r = reference[v + t * nvox] as f64;
                let d = r - test[v + t * nvox] as f64;
                let b = r - means[v];
                se += d * d;
                base += b * b;
                mx = mx.max(d.abs());
            }
            let m = if mask[v] { 1.0 } else { 0.0 };
            (se, se * m, base, base * m, mx)
        })
        .reduce(
            || (0.0, 0.0, 0.0, 0.0, 0.0),
            |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3, a.4.max(b.4)),
        );
    let n_all = reference.len() as f64;
    let mask_voxels = mask.iter().filter(|&&m| m).count();
    let n_mask = (mask_voxels * frames) as f64;

    let per_frame_psnr_db = (0..frames)
        .into_par_iter()
        .map(|t| {
            let (r, d) = (
                &reference[t * nvox..(t + 1) * nvox],
                &test[t * nvox..(t + 1) * nvox],
            );
            let ss: f64 = r
                .iter()
                .zip(d)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            psnr_from_mse(ss / nvox as f64, range)
        })
        .collect();

    // Per-voxel correlation and tSNR ratio inside the mask.
    let per_voxel: Vec<Option<(Option<f64>, f64)>> = (0..nvox)
        .into_par_iter()
        .filter(|&v| mask[v])
        .map(|v| {
            let r: Vec<f64> = (0..frames)
                .map(|t| reference[v + t * nvox] as f64)
                .collect();
            let d: Vec<f64> = (0..frames).map(|t| test[v + t * nvox] as f64).collect();
            voxel_figures(&r, &d)
        })
        .collect();
    let flat_reference_voxels = per_voxel.iter().filter(|x| x.is_none()).count();
    let kept: Vec<(Option<f64>, f64)> = per_voxel.into_iter().flatten().collect();
    let flat_decoded_voxels = kept.iter().filter(|(c, _)| c.is_none()).count();
    let mut ratios: Vec<f64> = kept.iter().map(|&(_, r)| r).collect();
    let median_tsnr_ratio = median(&mut ratios);
    let correlation_defined = frames >= MIN_FRAMES_FOR_CORRELATION;
    let median_ts_correlation = if correlation_defined {
        let mut c: Vec<f64> = kept.iter().map(|&(c, _)| c.unwrap_or(0.0)).collect();
        median(&mut c)
    } else {
        None
    };

    let regions = fc_regions(&mask, [shape[0], shape[1], shape[2]]);
    let fc_correlation = if correlation_defined && regions.len() >= 3 {
        let r = fc_upper(&region_courses(reference, &regions, nvox, frames));
        let d = fc_upper(&region_courses(test, &regions, nvox, frames));
        pearson(&r, &d)
    } else {
        None
    };

    Ok(TimeSeriesComparison {
        frames,
        mask_voxels,
        mask_source,
        data_range: range,
        psnr_db: psnr_from_mse(se / n_all, range),
        temporal_mean_psnr_db: psnr_from_mse(base / n_all, range),
        mask_psnr_db: psnr_from_mse(se_mask / n_mask, range),
        mask_temporal_mean_psnr_db: psnr_from_mse(base_mask / n_mask, range),
        max_abs_error: max_abs,
        median_ts_correlation,
        flat_decoded_voxels,
        flat_reference_voxels,
        median_tsnr_ratio,
        fc_regions: regions.len(),
        fc_correlation,
        per_frame_psnr_db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic standard-normal-ish noise (sum of 12 uniforms − 6).
    fn gauss(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        move || {
            let mut acc = 0.0;
            for _ in 0..12 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                acc += (s >> 11) as f64 / (1u64 << 53) as f64;
            }
            acc - 6.0
        }
    }

    /// A 16×16×8 "head" (foreground box 2..14 × 2..14 × all z at intensity 1000, air 0 + tiny
    /// noise elsewhere) with unit-variance fluctuations in the foreground, `frames` long.
    fn series(frames: usize, seed: u64) -> (Vec<f32>, [usize; 4]) {
        let shape = [16, 16, 8, frames];
        let nvox = 16 * 16 * 8;
        let mut g = gauss(seed);
        let mut v = vec![0f32; nvox * frames];
        // A shared slow signal per 8×8×8 block so FC matrices have structure.
        let block_signal: Vec<Vec<f64>> =
            (0..4).map(|_| (0..frames).map(|_| g()).collect()).collect();
        for t in 0..frames {
            for z in 0..8 {
                for y in 0..16 {
                    for x in 0..16 {
                        let i = x + 16 * (y + 16 * z);
                        let fg = (2..14).contains(&x) && (2..14).contains(&y);
                        let b = (x / 8) + 2 * (y / 8);
                        v[i + t * nvox] = if fg {
                            (1000.0 + 10.0 * block_signal[b][t] + 10.0 * g()) as f32
                        } else {
                            (1.0 + 0.1 * g()) as f32
                        };
                    }
                }
            }
        }
        (v, shape)
    }

    #[test]
    fn identical_series_are_perfect() {
        let (r, shape) = series(40, 1);
        let c = compare_timeseries(&r, &r, shape, None).unwrap();
        assert_eq!(c.mask_source, MaskSource::Automatic);
        assert_eq!(c.mask_voxels, 12 * 12 * 8);
        assert!(c.psnr_db.is_infinite());
        assert!(c.temporal_mean_psnr_db.is_finite());
        assert_eq!(c.median_ts_correlation, Some(1.0));
        assert!((c.median_tsnr_ratio.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(c.fc_regions, 4);
        assert!((c.fc_correlation.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(c.max_abs_error, 0.0);
        assert_eq!(c.flat_decoded_voxels, 0);
    }

    /// Reference fluctuation σ² = 10² + 10² = 200 per voxel; adding independent noise of
    /// σ_n = 10√2 (equal power) gives correlation 1/√(1 + σ_n²/σ²) = 1/√2.
    #[test]
    fn known_noise_gives_known_correlation() {
        let (r, shape) = series(400, 2);
        let mut g = gauss(99);
        let sn = 200f64.sqrt();
        let d: Vec<f32> = r.iter().map(|&x| (x as f64 + sn * g()) as f32).collect();
        let c = compare_timeseries(&r, &d, shape, None).unwrap();
        let corr = c.median_ts_correlation.unwrap();
        assert!((corr - 0.5f64.sqrt()).abs() < 0.03, "corr {corr}");
        // The decoded std is √2 × the reference's, the mean unchanged: tSNR ratio 1/√2.
        let ratio = c.median_tsnr_ratio.unwrap();
        assert!((ratio - 0.5f64.sqrt()).abs() < 0.03, "ratio {ratio}");
        assert!(c.fc_correlation.unwrap() < 1.0);
    }

    #[test]
    fn temporal_mean_decoded_scores_baseline_psnr_and_zero_correlation() {
        let (r, shape) = series(30, 3);
        let nvox = 16 * 16 * 8;
        let means = temporal_mean(&r, nvox, 30);
        let d: Vec<f32> = (0..r.len()).map(|i| means[i % nvox] as f32).collect();
        let c = compare_timeseries(&r, &d, shape, None).unwrap();
        // Decoding to the baseline scores the baseline's PSNR (up to f32 rounding).
        assert!((c.psnr_db - c.temporal_mean_psnr_db).abs() < 1e-3);
        assert!((c.mask_psnr_db - c.mask_temporal_mean_psnr_db).abs() < 1e-3);
        // Every decoded course is flat: correlation counted as 0, tSNR ratio infinite.
        assert_eq!(c.flat_decoded_voxels, c.mask_voxels);
        assert_eq!(c.median_ts_correlation, Some(0.0));
        assert_eq!(c.median_tsnr_ratio, Some(f64::INFINITY));
        assert_eq!(c.fc_correlation, None);
    }

    #[test]
    fn scaled_copy_keeps_tsnr_and_correlation() {
        let (r, shape) = series(30, 4);
        let d: Vec<f32> = r.iter().map(|&x| 2.0 * x).collect();
        let c = compare_timeseries(&r, &d, shape, None).unwrap();
        assert!((c.median_tsnr_ratio.unwrap() - 1.0).abs() < 1e-9);
        assert!((c.median_ts_correlation.unwrap() - 1.0).abs() < 1e-9);
        // Doubling the fluctuation only (mean kept) halves tSNR.
        let nvox = 16 * 16 * 8;
        let means = temporal_mean(&r, nvox, 30);
        let d: Vec<f32> = (0..r.len())
            .map(|i| (2.0 * r[i] as f64 - means[i % nvox]) as f32)
            .collect();
        let c = compare_timeseries(&r, &d, shape, None).unwrap();
        assert!((c.median_tsnr_ratio.unwrap() - 0.5).abs() < 1e-4);
    }

    #[test]
    fn two_frames_leave_correlations_undefined() {
        let (r, shape) = series(2, 5);
        let c = compare_timeseries(&r, &r, shape, None).unwrap();
        assert_eq!(c.median_ts_correlation, None);
        assert_eq!(c.fc_correlation, None);
        assert!(c.median_tsnr_ratio.is_some());
        assert_eq!(c.per_frame_psnr_db.len(), 2);
    }

    #[test]
    fn per_frame_psnr_sees_one_bad_frame() {
        let (r, shape) = series(5, 6);
        let nvox = 16 * 16 * 8;
        let mut d = r.clone();
        for x in &mut d[3 * nvox..4 * nvox] {
            *x += 5.0;
        }
        let c = compare_timeseries(&r, &d, shape, None).unwrap();
        let range = c.data_range;
        let expected = 10.0 * (range * range / 25.0).log10();
        assert!((c.per_frame_psnr_db[3] - expected).abs() < 1e-3);
        assert!(c.per_frame_psnr_db[0].is_infinite());
        assert_eq!(c.min_frame_psnr_db(), Some(c.per_frame_psnr_db[3]));
        assert!((c.max_abs_error - 5.0).abs() < 1e-3);
    }

    #[test]
    fn auto_mask_follows_the_documented_threshold() {
        // Temporal means 0..99 (constant in time): robust max = 99th of 100 sorted (nearest
        // rank ⌈0.99·100⌉ = 99 → value 98); threshold 9.8: means 10..99 are foreground.
        let data: Vec<f32> = (0..2).flat_map(|_| (0..100).map(|i| i as f32)).collect();
        let m = auto_mask(&data, [100, 1, 1, 2]).unwrap();
        assert_eq!(m.iter().filter(|&&x| x).count(), 90);
        assert!(!m[9] && m[10]);
        let zeros = vec![0f32; 200];
        assert_eq!(
            auto_mask(&zeros, [100, 1, 1, 2]),
            Err(MetricsError::EmptyMask)
        );
    }

    #[test]
    fn given_masks_are_checked() {
        let (r, shape) = series(4, 7);
        let wrong = vec![true; 10];
        assert!(matches!(
            compare_timeseries(&r, &r, shape, Some(&wrong)),
            Err(MetricsError::MaskSize { mask: 10, .. })
        ));
        let empty = vec![false; 16 * 16 * 8];
        assert_eq!(
            compare_timeseries(&r, &r, shape, Some(&empty)),
            Err(MetricsError::EmptyMask)
        );
        let mut one = vec![false; 16 * 16 * 8];
        one[5 + 16 * 5] = true;
        let c = compare_timeseries(&r, &r, shape, Some(&one)).unwrap();
        assert_eq!((c.mask_voxels, c.mask_source), (1, MaskSource::Given));
        assert_eq!(c.fc_regions, 0);
    }

    #[test]
    fn pearson_and_median_edge_cases() {
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[], &[]), None);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(
            median(&mut [f64::INFINITY, f64::INFINITY]),
            Some(f64::INFINITY)
        );
    }
}
