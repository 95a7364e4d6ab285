//! Lossy size targets coded by the wavelet transform layer.
//!
//! A field saturates at high rates, and even a predictive residual on it spends its bits on
//! every voxel alike. A transform coder spends them where the scan's energy is — JPEG 2000's
//! and SPERR's advantage on CT and MRI. So for a size target the encoder also codes the scan
//! as a transform stream (`crate::residual::encode_transform`, residual stream version 4)
//! beside a placeholder field of a few dozen bytes (the format needs a field; no decoder
//! evaluates this one, other grids being interpolated from the decoded scan), the base step
//! searched so the file lands on the target, and keeps it when it beats the other files
//! (`hybrid::best_at_size`).
//!
//! Geometry: slices are transformed across (3D) unless they lie more than
//! `TransformSettings::anisotropy_limit` times further apart than the in-plane spacing
//! (thick-slice CT), then each slice is coded on its own (2D), in chunks small enough at the
//! target rate that one slice (which decodes its chunk) stays fast. Frames are never transformed
//! across: each frame is its own block, one chunk per frame group of slices, so a slice of
//! one frame decodes from that frame's chunk alone.

use super::{EncodeError, Fit};
use crate::codec::payload::{MinrFile, QuantTensor};
use crate::model::{config::MAX_DIMS, FieldConfig};
use crate::residual::{encode_transform, Contexts, Kind, Options, OutlierBound, TransformOptions};
use crate::settings::TransformSettings;

/// How a transform file was made, for the report and `meta`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TransformChoice {
    /// The base quantizer step (stored units).
    pub base_step: f64,
    /// Wavelet levels along x, y, z.
    pub levels: [u8; 3],
    /// The worst-case error the outlier lists guarantee (integer scans), stored units.
    pub max_error: Option<f64>,
    /// Slices per chunk.
    pub chunk_slices: usize,
}

/// A file tried at one step, with its size.
struct Trial {
    file: MinrFile,
    choice: TransformChoice,
    bytes: usize,
}

/// The first step tried, as a fraction of the scan's range (about 1 bpv on 16-bit CT).
const FIRST_STEP_FRACTION: f64 = 1.0 / 256.0;
/// Steps tried are within `range · [MIN_STEP_FRACTION, MAX_STEP_FRACTION]`: below, the file is
/// near lossless and a finer step only grows it; above, everything quantizes to the mean.
const MIN_STEP_FRACTION: f64 = 1e-7;
const MAX_STEP_FRACTION: f64 = 64.0;

/// Slices per chunk of a scan coded slice by slice at about `slice_bits` per slice:
/// `chunk_slices_2d`, halved while the chunk would hold more than `chunk_bits_2d` bits.
fn chunk_slices_2d(s: &TransformSettings, slice_bits: f64) -> usize {
    let mut chunk = s.chunk_slices_2d;
    while chunk > 1 && chunk as f64 * slice_bits > s.chunk_bits_2d {
        chunk = chunk.div_ceil(2);
    }
    chunk
}

impl Fit<'_> {
    /// The wavelet levels and chunking for a scan of voxel `spacing` coded in about `target`
    /// bytes.
    fn transform_geometry(&self, spacing: [f64; 4], target: usize) -> ([u8; 3], usize) {
        let s = &self.settings.transform;
        let in_plane = spacing[0].abs().max(spacing[1].abs());
        // NaN spacing (an unset header) counts as isotropic.
        let thick = spacing[2].abs() > s.anisotropy_limit * in_plane;
        if thick {
            let [_, _, nz, nt] = self.shape;
            let slice_bits = 8.0 * target as f64 / (nz * nt).max(1) as f64;
            let chunk = chunk_slices_2d(s, slice_bits);
            ([s.levels_in_plane, s.levels_in_plane, 0], chunk)
        } else {
            let l = s.levels_in_plane;
            ([l, l, s.levels_through], s.chunk_slices_3d)
        }
    }

    /// The transform file of at most `target` bytes (and at least the size floor when the
    /// search gets there), built on the smallest version of `lossy`'s field; `None` when the
    /// layer is disabled or not even the coarsest step fits.
    pub(super) fn transform_at_size(
        &self,
        lossy: &MinrFile,
        target: usize,
        kind: Kind,
        spacing: [f64; 4],
    ) -> Result<Option<(MinrFile, TransformChoice)>, EncodeError> {
        let s = &self.settings.transform;
        if !s.enabled {
            return Ok(None);
        }
        let base = self.placeholder(lossy);
        let (levels, chunk_slices) = self.transform_geometry(spacing, target);
        let options = Options {
            chunk_z: chunk_slices.min(self.shape[2]),
            chunk_t: 1,
        };
        let outliers = match kind {
            Kind::Integer { .. } if s.outlier_sigmas > 0.0 => OutlierBound::Tail {
                sigmas: s.outlier_sigmas,
                share: s.outlier_share,
            },
            _ => OutlierBound::None,
        };
        let trial = |base_step: f64| -> Result<Trial, EncodeError> {
            let transform = TransformOptions {
                levels,
                base_step,
                rounding: s.rounding,
                outliers,
                contexts: Contexts::ActivityParentSigns,
            };
            let stream = encode_transform(self.data, None, self.shape, kind, &transform, &options)?;
            let max_error = crate::residual::StreamHeader::read(&stream)?
                .transform
                .and_then(|t| t.outlier_bound)
                .map(f64::from);
            let choice = TransformChoice {
                base_step,
                levels,
                max_error,
                chunk_slices: options.chunk_z,
            };
            let mut file = base.clone();
            file.residual = Some(stream);
            file.meta = Some(self.transform_meta(&choice));
            let bytes = file.to_bytes()?.len();
            Ok(Trial {
                file,
                choice,
                bytes,
            })
        };
        let range = self.stored_range().max(f64::MIN_POSITIVE);
        let floor =
            (s.size_floor.max(self.settings.rate.size_floor) * target as f64).ceil() as usize;
        // Bracket: `hi` fits, `lo` does not (or is the finest step tried).
        let mut step = range * FIRST_STEP_FRACTION;
        let mut t = trial(step)?;
        let (mut lo, mut hi, mut fits);
        if t.bytes <= target {
            fits = t;
            hi = step;
            loop {
                step /= 4.0;
                if step < range * MIN_STEP_FRACTION {
                    return Ok(Some((fits.file, fits.choice)));
                }
                t = trial(step)?;
                if t.bytes > target {
                    lo = step;
                    break;
                }
                (fits, hi) = (t, step);
            }
        } else {
            lo = step;
            loop {
                step *= 4.0;
                if step > range * MAX_STEP_FRACTION {
                    return Ok(None);
                }
                t = trial(step)?;
                if t.bytes <= target {
                    (fits, hi) = (t, step);
                    break;
                }
                lo = step;
            }
        }
        for _ in 0..s.search_iterations {
            if fits.bytes >= floor {
                break;
            }
            let mid = (lo * hi).sqrt();
            let t = trial(mid)?;
            if t.bytes <= target {
                (fits, hi) = (t, mid);
            } else {
                lo = mid;
            }
        }
        Ok(Some((fits.file, fits.choice)))
    }

    /// The field a transform file carries. Its voxels come from the transform stream alone
    /// and other grids are interpolated from the decoded scan, so no decoder evaluates the
    /// field; the format has one, so it is the least a field can be: one level of one cell,
    /// one feature, one hidden unit, every parameter zero (a few dozen bytes, where even the
    /// smallest version of a fitted field takes kilobytes: 2.6 KB on the chest CT, a tenth
    /// of a file at 0.025 bpv on Colin27). No temporal mean either: the stream codes the scan
    /// itself. `lossy` gives the field's dimensions.
    fn placeholder(&self, lossy: &MinrFile) -> MinrFile {
        let dims = lossy.head.field.dims;
        let mut cell = [0u32; MAX_DIMS];
        cell[..dims].fill(1);
        let config = FieldConfig {
            dims,
            features: 1,
            table_size: 1 << dims,
            resolutions: vec![cell],
            hidden_width: 1,
            hidden_layers: 1,
        };
        let tensors = crate::model::tensor_specs(&config)
            .into_iter()
            .map(|spec| QuantTensor {
                step: 1.0,
                symbols: vec![0; spec.len],
            })
            .collect();
        MinrFile {
            head: self.head(&config),
            nifti_header: self.nifti_header.to_vec(),
            tensors,
            meta: None,
            residual: None,
            mean: None,
            context_tables: false,
        }
    }

    /// `meta` of a transform file: the run's own, plus how the layer was set.
    fn transform_meta(&self, choice: &TransformChoice) -> String {
        self.meta_with(|meta| {
            // The file carries no temporal mean (see `placeholder`).
            if let Some(m) = meta.as_object_mut() {
                m.remove("temporal_mean_max_error");
            }
            meta["transform"] = serde_json::json!(choice);
            if let Some(d) = choice.max_error {
                meta["bound"] = serde_json::json!({ "MaxError": d });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_of_slices_shrink_as_the_rate_grows() {
        let s = TransformSettings::default();
        let plane = 512.0 * 512.0;
        // A 512² CT slice: 16 slices up to 0.5 bpv, 8 at 1 bpv, 4 at 2, never below one.
        assert_eq!(chunk_slices_2d(&s, 0.25 * plane), 16);
        assert_eq!(chunk_slices_2d(&s, 0.5 * plane), 16);
        assert_eq!(chunk_slices_2d(&s, plane), 8);
        assert_eq!(chunk_slices_2d(&s, 2.0 * plane), 4);
        assert_eq!(chunk_slices_2d(&s, 1e12), 1);
        // Small slices keep the full chunk even near lossless.
        assert_eq!(chunk_slices_2d(&s, 6.0 * 64.0 * 64.0), 16);
    }
}
