//! Lossy size targets where a coded residual beats the field alone.
//!
//! At high rates a field saturates (hash collisions, the fit's budget) while a predictive
//! residual coder keeps gaining about 6 dB per bit per voxel. So for a size target the encoder
//! also tries the field as a predictor plus the residual layer (`crate::residual`), its bound
//! searched so that the file lands on the target, and keeps whichever file is better.
//!
//! Rate control. Integer scans have integer bounds, and one step of the bound moves the rate
//! by `log2((2D + 3) / (2D + 1))` bits per voxel — 13 % of the file at 1 bpv on the chest CT.
//! To land within the size floor, the file time-shares two neighbouring bounds: `D` on most
//! voxels and `D − 1` on the first `p` voxels of every frame (in file order), coded as the
//! residual layer's region of interest (stream version 2). `p` is found by regula falsi on
//! the size, which is close to linear in it. Float scans have continuous bounds and need no
//! prefix. The file guarantees `|decoded − original| ≤ D` on every voxel, which the
//! self-check verifies; `meta` records it (`"bound"`, `"roi_max_error"`, `"lossy_residual"`).
//!
//! Which predictor: the smallest field with a residual predicted from decoded neighbours
//! alone, and the fitted field requantized to each share of the target in
//! `RateSettings::hybrid_field_shares`, predicting. A candidate is only pursued when, at the
//! bound whose uniform quantization error equals the field-alone file's MSE, it already fits:
//! otherwise it cannot be the better file at this size.

use super::transform::TransformChoice;
use super::{EncodeError, Fit};
use crate::codec::payload::MinrFile;
use crate::codec::quantize::quantize;
use crate::decoder::Decoder;
use crate::model::{tensor_specs, TensorKind};
use crate::residual::{Kind, Mode, Options, Roi};

/// How a hybrid file was made, for the report and `meta`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HybridChoice {
    /// The bound every voxel meets (stored units).
    pub max_error: f64,
    /// Voxels at the start of every frame held to `max_error − 1` instead (integer scans).
    pub prefix_voxels: usize,
    /// Whether the residual predicts from the field (else from decoded neighbours alone).
    pub uses_field: bool,
}

/// What carries a lossy file's fidelity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossyLayer {
    /// The field alone.
    FieldAlone,
    /// The field (or its smallest version) plus a bounded residual.
    Hybrid(HybridChoice),
    /// The smallest field plus a wavelet transform stream.
    Transform(TransformChoice),
}

/// The float bound's bisection starts from a bracket of 10^4 (`equal · 1e-4 … equal`), so it
/// gets this many trials beyond `hybrid_prefix_iterations` to narrow it (2^-8 in log terms).
const FLOAT_BRACKET_TRIALS: usize = 8;

/// A file tried at one bound, with its size.
struct Trial {
    file: MinrFile,
    choice: HybridChoice,
    bytes: usize,
}

/// One predictor for the residual: the file whose field it carries, and whether the residual
/// uses that field's prediction.
struct Predictor {
    file: MinrFile,
    uses_field: bool,
}

impl Fit<'_> {
    /// The best of `lossy` (the field alone at `target` bytes, with MSE `lossy_mse` in stored
    /// units), field-plus-residual files and the transform file (`encoder::transform`; voxel
    /// `spacing` sets its geometry) of at most `target` bytes, by MSE. Returns the file and,
    /// when it is not the field alone, how it was made.
    pub(super) fn best_at_size(
        &self,
        lossy: MinrFile,
        lossy_mse: f64,
        target: usize,
        datatype: crate::volume::DataType,
        spacing: [f64; 4],
    ) -> Result<(MinrFile, LossyLayer), EncodeError> {
        let kind = self.residual_kind(datatype);
        let mut best: Option<(f64, MinrFile, LossyLayer)> = None;
        for predictor in self.predictors(&lossy, target)? {
            let Some(Trial { file, choice, .. }) =
                self.fit_bound(&predictor, target, lossy_mse, kind)?
            else {
                continue;
            };
            // Exact quality of the candidate, in stored units, to compare with the field alone.
            let mse = self.mse(&file)?;
            if mse < lossy_mse && best.as_ref().is_none_or(|(m, _, _)| mse < *m) {
                best = Some((mse, file, LossyLayer::Hybrid(choice)));
            }
        }
        if let Some((file, choice)) = self.transform_at_size(&lossy, target, kind, spacing)? {
            let mse = self.mse(&file)?;
            if mse < lossy_mse && best.as_ref().is_none_or(|(m, _, _)| mse < *m) {
                best = Some((mse, file, LossyLayer::Transform(choice)));
            }
        }
        Ok(match best {
            Some((_, file, layer)) => (file, layer),
            None => (lossy, LossyLayer::FieldAlone),
        })
    }

    /// Mean squared error of `file` over the whole scan, in stored units.
    pub(super) fn mse(&self, file: &MinrFile) -> Result<f64, EncodeError> {
        let q = self.check(file, (1.0, 0.0), false, &mut super::Silent)?;
        Ok(q.rmse * q.rmse)
    }

    /// The residual layer's kind of values: integer scans within their own range.
    pub(super) fn residual_kind(&self, datatype: crate::volume::DataType) -> Kind {
        match Kind::of(datatype) {
            Kind::Integer { .. } => Kind::Integer {
                min: self.value_min.round() as i64,
                max: self.value_max.round() as i64,
            },
            float => float,
        }
    }

    /// The predictors worth a residual at `target` bytes: the smallest field, not predicting,
    /// and the fitted field at each configured share of the target, predicting.
    fn predictors(&self, lossy: &MinrFile, target: usize) -> Result<Vec<Predictor>, EncodeError> {
        let mut out = vec![Predictor {
            file: self.smallest(lossy)?,
            uses_field: false,
        }];
        for &share in &self.settings.rate.hybrid_field_shares {
            let bytes = (target as f64 * share) as usize;
            if let Some(file) = self.requantized(lossy, bytes)? {
                out.push(Predictor {
                    file,
                    uses_field: true,
                });
            }
        }
        Ok(out)
    }

    /// `file`'s field with every grid step multiplied by one factor (the MLP as it is), the
    /// factor searched so that the file is as large as possible within `bytes`; `None` when
    /// even all-zero grids exceed `bytes`.
    fn requantized(&self, file: &MinrFile, bytes: usize) -> Result<Option<MinrFile>, EncodeError> {
        let specs = tensor_specs(&file.head.field);
        let values = file.dequantized();
        let with_factor = |c: f32| {
            let mut f = file.clone();
            for ((t, spec), v) in f.tensors.iter_mut().zip(&specs).zip(&values) {
                if let TensorKind::Grid(_) = spec.kind {
                    t.step *= c;
                    t.symbols = quantize(v, t.step);
                }
            }
            f
        };
        let size = |f: &MinrFile| f.to_bytes().map(|b| b.len());
        if size(file)? <= bytes {
            return Ok(Some(file.clone()));
        }
        let (mut lo, mut hi) = (1.0f32, 2.0f32);
        // Grow the factor until the file fits (all-zero grids at the latest).
        loop {
            if size(&with_factor(hi))? <= bytes {
                break;
            }
            if hi > 1e12 {
                return Ok(None);
            }
            lo = hi;
            hi *= 4.0;
        }
        for _ in 0..self.settings.rate.size_search_iterations.min(24) {
            let mid = (lo * hi).sqrt();
            if size(&with_factor(mid))? <= bytes {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(Some(with_factor(hi)))
    }

    /// The predictor's file with the residual bound searched so the whole file is at most
    /// `target` bytes and as close to it as the size floor asks; `None` when no bound at
    /// least as fine as the field alone's error (MSE `lossy_mse`) fits.
    fn fit_bound(
        &self,
        predictor: &Predictor,
        target: usize,
        lossy_mse: f64,
        kind: Kind,
    ) -> Result<Option<Trial>, EncodeError> {
        let field = Decoder::from_file(predictor.file.clone(), 0)?;
        let field = predictor.uses_field.then_some(&field);
        let frame = self.shape[0] * self.shape[1] * self.shape[2];
        let floor = (self.settings.rate.size_floor * target as f64).ceil() as usize;
        // One trial: the file with the residual at bound `d` (and `d − 1` on `prefix` voxels).
        let trial = |d: f64, prefix: usize| -> Result<Trial, EncodeError> {
            let mask: Vec<bool>;
            let roi = if prefix > 0 {
                mask = (0..frame).map(|i| i < prefix).collect();
                Some(Roi {
                    mask: &mask,
                    max_error: d - 1.0,
                })
            } else {
                None
            };
            let mode = if d == 0.0 && matches!(kind, Kind::Integer { .. }) {
                Mode::Lossless
            } else {
                Mode::Bound { max_error: d }
            };
            let stream =
                self.code_residual(field, mode, kind, roi.as_ref(), &Options::default())?;
            let choice = HybridChoice {
                max_error: d,
                prefix_voxels: prefix,
                uses_field: predictor.uses_field,
            };
            let mut file = predictor.file.clone();
            file.residual = Some(stream);
            file.meta = Some(self.hybrid_meta(&choice));
            let bytes = file.to_bytes()?.len();
            Ok(Trial {
                file,
                choice,
                bytes,
            })
        };
        match kind {
            Kind::Integer { .. } => {
                // The bound whose uniform error, ((2D + 1)² − 1) / 12, matches the field alone.
                let equal = (((12.0 * lossy_mse + 1.0).sqrt() - 1.0) / 2.0)
                    .floor()
                    .max(0.0);
                let coarsest = trial(equal, 0)?;
                if coarsest.bytes > target {
                    return Ok(None);
                }
                // Smallest integer bound that fits: `hi` fits, `lo` does not (or is 0).
                let (mut lo, mut hi) = (0.0f64, equal);
                let mut fits = coarsest;
                let mut above: Option<usize> = None;
                if hi > 0.0 {
                    let lossless = trial(0.0, 0)?;
                    if lossless.bytes <= target {
                        return Ok(Some(lossless));
                    }
                    above = Some(lossless.bytes);
                }
                while hi - lo > 1.0 {
                    let mid = ((lo + hi) / 2.0).floor();
                    let t = trial(mid, 0)?;
                    if t.bytes <= target {
                        hi = mid;
                        fits = t;
                    } else {
                        lo = mid;
                        above = Some(t.bytes);
                    }
                }
                let d = hi;
                let low = fits.bytes;
                let (Some(high), true) = (above, low < floor && d >= 1.0) else {
                    return Ok(Some(fits));
                };
                // Time-share with d − 1 on a prefix of each frame (regula falsi on the size).
                let (mut p_lo, mut s_lo, mut p_hi, mut s_hi) = (0usize, low, frame, high);
                for _ in 0..self.settings.rate.hybrid_prefix_iterations {
                    if p_hi - p_lo < 2 {
                        break;
                    }
                    let goal = (floor + target) as f64 / 2.0;
                    let ratio = (goal - s_lo as f64) / (s_hi.saturating_sub(s_lo)).max(1) as f64;
                    let step = ((p_hi - p_lo) as f64 * ratio.clamp(0.0, 1.0)) as usize;
                    let p = (p_lo + step).clamp(p_lo + 1, p_hi - 1);
                    let t = trial(d, p)?;
                    if t.bytes <= target {
                        (p_lo, s_lo) = (p, t.bytes);
                        let done = t.bytes >= floor;
                        fits = t;
                        if done {
                            break;
                        }
                    } else {
                        (p_hi, s_hi) = (p, t.bytes);
                    }
                }
                Ok(Some(fits))
            }
            Kind::Float => {
                // Continuous bounds: bisect log D between one the field alone matches and a
                // fine one.
                let equal = (3.0 * lossy_mse).sqrt();
                if !(equal > 0.0 && equal.is_finite()) {
                    return Ok(None);
                }
                let coarsest = trial(equal, 0)?;
                if coarsest.bytes > target {
                    return Ok(None);
                }
                let (mut lo, mut hi) = (equal * 1e-4, equal);
                let mut fits = coarsest;
                for _ in 0..self.settings.rate.hybrid_prefix_iterations + FLOAT_BRACKET_TRIALS {
                    if fits.bytes >= floor {
                        break;
                    }
                    let mid = (lo * hi).sqrt();
                    let t = trial(mid, 0)?;
                    if t.bytes <= target {
                        hi = mid;
                        fits = t;
                    } else {
                        lo = mid;
                    }
                }
                Ok(Some(fits))
            }
        }
    }

    /// `meta` of a hybrid file: the run's own, plus the bound it guarantees and how it was met.
    fn hybrid_meta(&self, choice: &HybridChoice) -> String {
        self.meta_with(|meta| {
            meta["bound"] = serde_json::json!({ "MaxError": choice.max_error });
            if choice.prefix_voxels > 0 {
                meta["roi_max_error"] = (choice.max_error - 1.0).into();
            }
            meta["lossy_residual"] = serde_json::json!({
                "prefix_voxels": choice.prefix_voxels,
                "uses_field": choice.uses_field,
            });
        })
    }

    /// The run's own `meta` with `edit` applied: what a file made another way records.
    pub(super) fn meta_with(&self, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut meta: serde_json::Value =
            serde_json::from_str(self.meta).unwrap_or_else(|_| serde_json::json!({}));
        edit(&mut meta);
        meta.to_string()
    }
}
