//! Quality inside and outside a region of interest (a mask): the figures that check a file
//! compressed with `--roi-mask` / `--roi-max-error`, and `medinr compare --mask`.

use serde::Serialize;

use super::{check_finite, checked_dims, data_range, psnr_from_mse, MetricsError};

/// Error figures over one side of a mask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionStats {
    /// Voxels on this side (at least 1).
    pub voxels: usize,
    /// PSNR in dB over the reference's range **of the whole scan** (so inside and outside are
    /// on one scale, and comparable with the whole-scan PSNR); `+inf` when identical
    /// (serde_json writes that as `null`).
    pub psnr_db: f64,
    /// Largest absolute voxel difference.
    pub max_abs_error: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Root-mean-square error.
    pub rmse: f64,
}

/// [`RegionStats`] inside and outside a mask; a side without any voxel is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionComparison {
    /// Figures over the voxels inside the mask.
    pub inside: Option<RegionStats>,
    /// Figures over the voxels outside it.
    pub outside: Option<RegionStats>,
    /// The range used for both PSNRs (`max − min` of the whole reference, or 1).
    pub data_range: f64,
}

/// Compares `test` against `reference` separately inside the mask (`true`) and outside it.
/// `mask` has one flag per voxel of a frame (`nx·ny·nz`, applied to every frame) or one per
/// voxel of the scan, x fastest. Fails on a shape or mask size mismatch, empty input, or any
/// non-finite value.
pub fn compare_regions(
    reference: &[f32],
    test: &[f32],
    shape: [usize; 4],
    mask: &[bool],
) -> Result<RegionComparison, MetricsError> {
    let (frame, frames) = checked_dims(reference, test, shape)?;
    if mask.len() != frame && mask.len() != frame * frames {
        return Err(MetricsError::RegionMaskSize {
            mask: mask.len(),
            frame,
            scan: frame * frames,
        });
    }
    check_finite("reference", reference)?;
    check_finite("test", test)?;
    let range = data_range(reference);
    // Per side: count, sum |e|, sum e², max |e|.
    let mut acc = [(0usize, 0f64, 0f64, 0f64); 2];
    for (i, (&a, &b)) in reference.iter().zip(test).enumerate() {
        let inside = mask[if mask.len() == frame { i % frame } else { i }];
        let e = (a as f64 - b as f64).abs();
        let s = &mut acc[inside as usize];
        s.0 += 1;
        s.1 += e;
        s.2 += e * e;
        s.3 = s.3.max(e);
    }
    let stats = |(n, sum_abs, sum_sq, max): (usize, f64, f64, f64)| {
        (n > 0).then(|| {
            let mse = sum_sq / n as f64;
            RegionStats {
                voxels: n,
                psnr_db: psnr_from_mse(mse, range),
                max_abs_error: max,
                mae: sum_abs / n as f64,
                rmse: mse.sqrt(),
            }
        })
    };
    Ok(RegionComparison {
        inside: stats(acc[1]),
        outside: stats(acc[0]),
        data_range: range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_and_outside_figures_are_exact() {
        // Range 0..=100 over 101 voxels; the first 10 are inside and off by 1, the rest off
        // by 4 except one off by 10.
        let a: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        let mut b: Vec<f32> = a.iter().map(|v| v + 4.0).collect();
        for v in &mut b[..10] {
            *v -= 3.0;
        }
        b[50] = a[50] - 10.0;
        let mask: Vec<bool> = (0..101).map(|i| i < 10).collect();
        let c = compare_regions(&a, &b, [101, 1, 1, 1], &mask).unwrap();
        assert_eq!(c.data_range, 100.0);
        let inside = c.inside.unwrap();
        assert_eq!(inside.voxels, 10);
        assert_eq!(inside.max_abs_error, 1.0);
        assert_eq!(inside.mae, 1.0);
        assert!((inside.psnr_db - 40.0).abs() < 1e-12);
        let outside = c.outside.unwrap();
        assert_eq!(outside.voxels, 91);
        assert_eq!(outside.max_abs_error, 10.0);
        let mse = (90.0 * 16.0 + 100.0) / 91.0;
        assert!((outside.rmse - f64::sqrt(mse)).abs() < 1e-12);
        assert!((outside.psnr_db - 10.0 * (10000.0 / mse).log10()).abs() < 1e-12);
        assert!((outside.mae - (90.0 * 4.0 + 10.0) / 91.0).abs() < 1e-12);
    }

    #[test]
    fn a_frame_mask_applies_to_every_frame_and_empty_sides_are_none() {
        // 2 voxels per frame, 3 frames; voxel 1 of each frame is inside.
        let a = [0.0f32, 10.0, 0.0, 10.0, 0.0, 10.0];
        let b = [2.0f32, 10.0, 0.0, 9.0, 0.0, 10.0];
        let c = compare_regions(&a, &b, [2, 1, 1, 3], &[false, true]).unwrap();
        let (i, o) = (c.inside.unwrap(), c.outside.unwrap());
        assert_eq!((i.voxels, i.max_abs_error), (3, 1.0));
        assert_eq!((o.voxels, o.max_abs_error), (3, 2.0));
        // A per-voxel mask of the whole scan, all inside: nothing outside.
        let c = compare_regions(&a, &a, [2, 1, 1, 3], &[true; 6]).unwrap();
        assert!(c.outside.is_none());
        assert!(c.inside.unwrap().psnr_db.is_infinite());
        // A mask of neither size is refused.
        assert_eq!(
            compare_regions(&a, &b, [2, 1, 1, 3], &[true; 4]),
            Err(MetricsError::RegionMaskSize {
                mask: 4,
                frame: 2,
                scan: 6
            })
        );
    }
}
