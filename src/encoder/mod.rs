//! Compression (the `train` feature): scan in, `.minr` file out. Normalise the intensities,
//! size the field for the rate, fit it, choose quantization steps that meet the rate (or the
//! PSNR), fine-tune with the quantizer in the loop, assemble the file and check it by decoding
//! it with `Decoder` itself.
//!
//! Rate control lives in `rate` (the searches) and `steps` (the step arithmetic); every tuning
//! constant is in `crate::settings::EncoderSettings`.

mod check;
mod hybrid;
mod mean;
mod probe;
mod rate;
mod steps;
mod transform;

use std::time::Instant;

use serde::Serialize;

pub use crate::model::Preset;
pub use crate::settings::{EncoderSettings, SettingsError};
pub use crate::train::{Device, Phase, Progress, Silent, TrainError};
pub use hybrid::HybridChoice;
use hybrid::LossyLayer;
pub use transform::TransformChoice;

use crate::codec::container::FormatError;
use crate::codec::payload::{Head, MinrFile, QuantTensor};
use crate::codec::quantize::quantize;
use crate::decoder::{DecodeError, Decoder};
use crate::metrics;
use crate::model::{FieldConfig, ModelError};
use crate::train::trainer::RunPlan;
use crate::train::{Field, QuantSteps, Sampler, Targets, Trainer};
use crate::volume::{Volume, Voxels};

/// What the file must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum RateTarget {
    /// Bits per voxel of the compressed file.
    BitsPerVoxel(f64),
    /// Original size (voxels × stored bits) over compressed size.
    Ratio(f64),
    /// Peak signal-to-noise ratio on the scan's own range, in dB.
    Psnr(f64),
}

/// A guarantee on every decoded voxel (on the original grid), met by coding what the field
/// misses as a residual layer (`crate::residual`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Bound {
    /// `|decoded − original| ≤ D` for every voxel, D in the scan's stored units (integer
    /// scans use ⌊D⌋).
    MaxError(f64),
    /// Decoded voxels identical to the originals (float scans: the same bit patterns).
    Lossless,
}

/// A region of interest of a bounded file: a tighter bound inside a mask than the
/// [`Bound::MaxError`] that holds elsewhere. The mask is stored in the file's residual layer.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionOfInterest {
    /// Inside where true, x fastest: one flag per voxel of a frame (`nx·ny·nz`, the same mask
    /// for every frame) or one per voxel of the scan.
    pub mask: Vec<bool>,
    /// `|decoded − original| ≤ max_error` inside the mask (integer scans use ⌊D⌋); at most
    /// the outer bound; 0 means exact.
    pub max_error: f64,
}

/// How to compress.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// The size or quality to reach.
    pub target: RateTarget,
    /// Seed of the weight initialisation and the voxel sampling: the same input, options and
    /// seed give a byte-identical file.
    pub seed: u64,
    /// Multiplies the number of optimisation steps (1 = default).
    pub effort: f64,
    /// Replace NaN/±inf voxels with this value instead of refusing the scan.
    pub nan_fill: Option<f32>,
    /// Network architecture; `None` picks one for the rate (`settings.architecture`).
    pub preset: Option<Preset>,
    /// Every tuning constant of the encoder.
    pub settings: EncoderSettings,
    /// Where the fit runs.
    pub device: Device,
    /// A worst-case error bound or lossless coding; `None` is the field alone (lossy). With a
    /// bound, `target` sets the field's share of the file.
    pub bound: Option<Bound>,
    /// A tighter bound inside a region; needs `bound` to be a [`Bound::MaxError`].
    pub roi: Option<RegionOfInterest>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            target: RateTarget::BitsPerVoxel(0.1),
            seed: 0,
            effort: 1.0,
            nan_fill: None,
            preset: None,
            settings: EncoderSettings::default(),
            device: Device::Cpu,
            bound: None,
            roi: None,
        }
    }
}

/// What a compress run did, for the CLI and experiments.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeReport {
    /// Size of the file in bytes.
    pub bytes: usize,
    /// The size asked for, for size targets.
    pub target_bytes: Option<usize>,
    /// Compressed bits per voxel.
    pub bits_per_voxel: f64,
    /// Stored voxel data over compressed size.
    pub ratio: f64,
    /// PSNR / SSIM / errors of the decoded file against the input (the decoder's own output).
    pub quality: metrics::Comparison,
    /// PSNR of the fitted field before quantization, on a random subset of voxels: the gap to
    /// `quality.psnr_db` is what quantization and the rate cost.
    pub unquantized_psnr_db: f64,
    /// Seconds spent in optimisation.
    pub fit_seconds: f64,
    /// Seconds for the whole run.
    pub total_seconds: f64,
    /// Optimiser steps taken (fit and fine-tuning).
    pub steps: usize,
    /// The chosen grid quantization step.
    pub grid_step: f32,
    /// Stored parameters.
    pub parameters: usize,
    /// The field's architecture.
    pub config: FieldConfig,
    /// Bytes of the residual layer (bounded and lossless modes).
    pub residual_bytes: Option<usize>,
    /// Whether the residual layer predicts from the field (else from decoded neighbours
    /// alone, which was smaller for this scan).
    pub residual_uses_field: Option<bool>,
    /// For a lossy size target met by the field plus a residual (`encoder::hybrid`): the bound
    /// it reached and how; `None` when the field alone was the better file.
    pub lossy_residual: Option<HybridChoice>,
    /// For a lossy size target met by the wavelet transform layer (`encoder::transform`):
    /// how it was set; `None` when another file was better.
    pub transform: Option<TransformChoice>,
    /// For a lossy size target where the field plus a residual was tried: the PSNR (stored
    /// units) of the field-alone file it was weighed against, so one run shows both.
    pub field_alone_psnr_db: Option<f64>,
    /// Bytes of the temporal mean held apart from the field (section MEAN), for series.
    pub mean_bytes: Option<usize>,
}

/// Why a scan could not be compressed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The scan holds NaN or infinite voxels and no fill value was given.
    #[error("the scan has {count} NaN or infinite voxels (first at x={}, y={}, z={}, t={}); a field cannot represent them — pass a fill value (--nan-fill) to replace them", first[0], first[1], first[2], first[3])]
    NonFinite {
        /// How many.
        count: usize,
        /// The first one's position.
        first: [usize; 4],
    },
    /// The target or another option is out of range.
    #[error("invalid target: {0}")]
    BadTarget(String),
    /// The encoder settings are out of range.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The asked size is below the smallest file the scan can have.
    #[error("{target} bytes were asked for, but the smallest file this scan can have is {minimum} bytes (headers and network); ask for a higher rate")]
    TargetTooSmall {
        /// Bytes asked for.
        target: usize,
        /// The smallest possible file.
        minimum: usize,
    },
    /// No field tried reached the asked PSNR.
    #[error("PSNR {asked:.2} dB is out of reach: the best field tried reached {best:.2} dB")]
    PsnrUnreachable {
        /// PSNR asked for.
        asked: f64,
        /// Best PSNR reached.
        best: f64,
    },
    /// The field's configuration or parameters are inconsistent.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The fit failed.
    #[error(transparent)]
    Training(#[from] TrainError),
    /// The file could not be assembled.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Quality could not be measured.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// The file just made does not decode (a bug: please report it).
    #[error("the file just written does not decode")]
    SelfCheck(#[from] DecodeError),
    /// The region of interest does not fit the scan or the bound.
    #[error("invalid region of interest: {0}")]
    Roi(String),
    /// The residual layer could not be coded.
    #[error(transparent)]
    Residual(#[from] crate::residual::ResidualError),
    /// The decoded file misses its guaranteed bound (a bug: please report it).
    #[error("the file just written decodes with max error {got}, above its bound {bound} (a bug: please report it)")]
    BoundViolated {
        /// Measured max abs error.
        got: f64,
        /// The bound.
        bound: f64,
    },
    /// The field options (`Preset`: levels, features, MLP) are out of range.
    #[error("invalid field options")]
    Preset(#[source] ModelError),
    /// The explicit architecture's MLP alone has more parameters than the target allows.
    #[error("the MLP asked for (--hidden) alone has {mlp} parameters, more than the {budget} the target allows; choose a smaller MLP or a higher rate")]
    ArchitectureTooLarge {
        /// Parameters of the MLP.
        mlp: usize,
        /// Parameters the target allows (at the planned bits per parameter).
        budget: usize,
    },
    /// The scan's value range is wider than f32 can hold, so it cannot be normalised.
    #[error("the scan's values span [{min:e}, {max:e}], a range wider than f32 can represent ({:e}); medinr cannot normalise it", f32::MAX)]
    RangeTooWide {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// The asked size is at least the scan's own stored size: a field that large is never
    /// better than storing the scan itself.
    #[error("{target} bytes were asked for, but the scan's stored data is only {stored} bytes: a file that large is never useful; ask for a lower rate (below {max_bpv} bpv)")]
    TargetTooLarge {
        /// Bytes asked for.
        target: usize,
        /// The scan's stored (uncompressed) data size.
        stored: usize,
        /// The stored bits per voxel, the useful maximum.
        max_bpv: usize,
    },
}

/// Largest `effort`: 100× the default steps is already far past where quality stops
/// improving (the fit's learning rate has decayed long before), and it bounds a run's time.
pub const MAX_EFFORT: f64 = 100.0;

/// How many times a bounded file's field share grows (by half, or to an eighth above the
/// smallest field) when the smallest field planned for it does not fit it.
const BOUNDED_FIELD_RETRIES: usize = 4;

/// Compresses `volume`.
pub fn encode(
    volume: &Volume,
    options: &EncodeOptions,
    progress: &mut dyn Progress,
) -> Result<(MinrFile, EncodeReport), EncodeError> {
    let start = Instant::now();
    options.settings.validate()?;
    if !(options.effort.is_finite() && options.effort > 0.0 && options.effort <= MAX_EFFORT) {
        return Err(EncodeError::BadTarget(format!(
            "effort {} must be in (0, {MAX_EFFORT}]",
            options.effort
        )));
    }
    if let Some(preset) = &options.preset {
        preset
            .validate()
            .map_err(|e| EncodeError::Preset(ModelError::from(e)))?;
    }
    let shape = volume.shape();
    check_roi(options, shape)?;
    let filled = fill_non_finite(volume, options.nan_fill)?;
    let data = filled.as_ref().unwrap_or(&volume.data);
    let voxels = data.len();
    let (value_min, value_max) = value_range(data);
    let scale = (value_max - value_min) as f32;
    if !scale.is_finite() {
        return Err(EncodeError::RangeTooWide {
            min: value_min,
            max: value_max,
        });
    }
    let stored_bits = volume.header.datatype().bytes() * 8;
    let target_bytes = match options.target {
        RateTarget::BitsPerVoxel(bpv) if bpv > 0.0 && bpv.is_finite() => {
            Some((bpv * voxels as f64 / 8.0).round() as usize)
        }
        RateTarget::Ratio(r) if r > 0.0 && r.is_finite() => {
            Some((stored_bits as f64 * voxels as f64 / 8.0 / r).round() as usize)
        }
        RateTarget::Psnr(p) if p > 0.0 && p.is_finite() => None,
        t => {
            return Err(EncodeError::BadTarget(format!(
                "{t:?} must be positive and finite"
            )))
        }
    };
    let stored_bytes = stored_bits * voxels / 8;
    if let Some(target) = target_bytes.filter(|&t| t >= stored_bytes) {
        return Err(EncodeError::TargetTooLarge {
            target,
            stored: stored_bytes,
            max_bpv: stored_bits,
        });
    }
    let datatype = volume.header.datatype();
    // Series: the temporal mean coded apart, the field fitted to the rest (and, with a bound,
    // field and mean together predicting the residual layer).
    let series = &options.settings.series;
    let separated = mean::separate(data, shape, datatype, target_bytes, series)?;
    let foreground = match &separated {
        Some(m) if series.foreground_share > 0.0 => m.foreground(shape),
        _ => Vec::new(),
    };
    let whole = Targets::new(data, value_min, scale);
    let targets = match &separated {
        Some(m) => Targets::dynamic(data, m.mean.values(), m.mean.offset, m.mean.scale as f32),
        None => whole,
    };
    let nifti_header = volume.header.to_bytes();
    let mut meta = serde_json::json!({
        "encoder": concat!("medinr ", env!("CARGO_PKG_VERSION")),
        "target": options.target,
        "effort": options.effort,
        "settings": options.settings.changes_from_default(),
        "bound": options.bound,
    });
    // Only with a region of interest, so that every other file's `meta` is as before.
    if let Some(roi) = &options.roi {
        meta["roi_max_error"] = roi.max_error.into();
    }
    // A file without the mean, should mean and field not fit the target together.
    let meta_field_alone = meta.to_string();
    if let Some(m) = &separated {
        meta["temporal_mean_max_error"] = m.max_error.into();
    }
    let meta = meta.to_string();

    let mut ctx = Fit {
        shape,
        targets,
        data,
        options,
        settings: &options.settings,
        value_min,
        value_max,
        datatype: volume.header.datatype().nifti_code(),
        nifti_header: &nifti_header,
        meta: &meta,
        mean: separated.as_ref(),
        foreground: &foreground,
        fit_seconds: 0.0,
        steps: 0,
        planned_steps: 0,
        unquantized_psnr: f64::NAN,
        guarantee: None,
    };
    // One fit and its fine-tunes, unless a retry adds more (then `fit` raises the total).
    ctx.planned_steps = ctx.fit_steps();
    progress.total(ctx.planned_steps);

    let (mut file, grid_step, config) = match (target_bytes, options.target) {
        // With a bound the residual carries the fidelity: a field share below the smallest
        // possible field becomes the smallest field.
        (Some(bytes), _) if options.bound.is_some() => {
            // The field is sized from its share, so a larger share plans a larger field with a
            // larger minimum: grow the share until the field fits it (a few tries at most).
            let mut share = bytes;
            let mut tries = 0;
            loop {
                match ctx.fit_to_size(share, progress) {
                    Err(EncodeError::TargetTooSmall { minimum, .. })
                        if tries < BOUNDED_FIELD_RETRIES =>
                    {
                        tries += 1;
                        share = (minimum + minimum / 8).max(share + share / 2);
                    }
                    other => break other?,
                }
            }
        }
        (Some(bytes), _) => match ctx.fit_to_size(bytes, progress) {
            // The mean and the smallest field together are over a small target: the field
            // alone, as for a scan without a mean.
            Err(EncodeError::TargetTooSmall { .. }) if ctx.mean.is_some() => {
                ctx.mean = None;
                ctx.foreground = &[];
                ctx.targets = whole;
                ctx.meta = &meta_field_alone;
                ctx.fit_to_size(bytes, progress)?
            }
            other => other?,
        },
        (None, RateTarget::Psnr(p)) => ctx.fit_to_psnr(p, progress)?,
        _ => unreachable!("every target is either a size or a PSNR"),
    };
    progress.phase(Phase::Check, 0);
    let mut residual_uses_field = None;
    let mut lossy_residual = None;
    let mut transform = None;
    let mut field_alone_psnr_db = None;
    if let Some(bound) = options.bound {
        let (bounded, uses_field) = ctx.residual(&file, bound, volume.header.datatype())?;
        file = bounded;
        residual_uses_field = Some(uses_field);
    } else if let (Some(bytes), true) = (target_bytes, options.settings.rate.lossy_residual) {
        let mse = ctx.mse(&file)?;
        field_alone_psnr_db = Some(metrics::psnr_from_mse(mse, ctx.stored_range()));
        let spacing = volume.header.spacing();
        let (best, layer) =
            ctx.best_at_size(file, mse, bytes, volume.header.datatype(), spacing)?;
        file = best;
        match layer {
            LossyLayer::Hybrid(c) => {
                residual_uses_field = Some(c.uses_field);
                ctx.guarantee = Some(c.max_error);
                lossy_residual = Some(c);
            }
            LossyLayer::Transform(c) => {
                residual_uses_field = Some(false);
                ctx.guarantee = c.max_error;
                transform = Some(c);
            }
            LossyLayer::FieldAlone => {}
        }
    }
    let bytes = file.to_bytes()?.len();
    // Reported in physical units (after scl_slope/scl_inter), as `medinr compare` does.
    let units = (volume.header.scl_slope(), volume.header.scl_inter());
    let quality = ctx.check(&file, units, true, progress)?;
    let report = EncodeReport {
        bytes,
        target_bytes,
        bits_per_voxel: metrics::bits_per_voxel(bytes as u64, voxels as u64),
        ratio: metrics::compression_ratio(voxels as u64, stored_bits as u64, bytes as u64),
        quality,
        unquantized_psnr_db: ctx.unquantized_psnr,
        fit_seconds: ctx.fit_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
        steps: ctx.steps,
        grid_step,
        parameters: config.grid_parameters() + config.mlp_parameters(),
        config,
        residual_bytes: file.residual.as_ref().map(Vec::len),
        residual_uses_field,
        lossy_residual,
        transform,
        field_alone_psnr_db,
        mean_bytes: file.mean.as_ref().map(Vec::len),
    };
    Ok((file, report))
}

/// Checks the region of interest against the bound and the scan's shape, before any work.
fn check_roi(options: &EncodeOptions, shape: [usize; 4]) -> Result<(), EncodeError> {
    let Some(roi) = &options.roi else {
        return Ok(());
    };
    let outer = match options.bound {
        Some(Bound::MaxError(d)) if d > 0.0 => d,
        _ => {
            return Err(EncodeError::Roi(
                "it needs an error bound above 0 outside it (--max-error D with D > 0)".into(),
            ))
        }
    };
    if !(roi.max_error.is_finite() && (0.0..=outer).contains(&roi.max_error)) {
        return Err(EncodeError::Roi(format!(
            "its bound {} must be a finite value from 0 to the bound outside it, {outer}",
            roi.max_error
        )));
    }
    let frame = shape[0] * shape[1] * shape[2];
    if roi.mask.len() != frame && roi.mask.len() != frame * shape[3] {
        return Err(EncodeError::Roi(format!(
            "the mask has {} voxels; the scan {shape:?} needs {frame} (one frame) or {}",
            roi.mask.len(),
            frame * shape[3]
        )));
    }
    Ok(())
}

/// The scan's values with non-finite voxels replaced (`Some`, a copy), or `None` when it has
/// none; refused when it has some and no fill value is given.
fn fill_non_finite(volume: &Volume, fill: Option<f32>) -> Result<Option<Voxels>, EncodeError> {
    let (count, first) = volume.non_finite_count();
    if count == 0 {
        return Ok(None);
    }
    match fill {
        Some(v) if v.is_finite() => Ok(Some(volume.data.filled(v))),
        _ => Err(EncodeError::NonFinite {
            count,
            first: first.unwrap_or([0; 4]),
        }),
    }
}

/// Smallest and largest value; a constant scan gets a unit range so normalisation is defined.
fn value_range(data: &Voxels) -> (f64, f64) {
    let (lo, hi) = data.finite_range().unwrap_or((0.0, 0.0));
    let (lo, hi) = (lo as f64, hi as f64);
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}

/// State shared by the steps of one compress run.
struct Fit<'a> {
    shape: [usize; 4],
    /// The stored values normalised as the field sees them.
    targets: Targets<'a>,
    /// The stored values (non-finite ones filled).
    data: &'a Voxels,
    options: &'a EncodeOptions,
    settings: &'a EncoderSettings,
    value_min: f64,
    value_max: f64,
    datatype: i16,
    nifti_header: &'a [u8],
    meta: &'a str,
    /// The series' temporal mean, when the field is fitted to the dynamic part alone.
    mean: Option<&'a mean::SeparatedMean>,
    /// Voxels of a frame the fit draws `series.foreground_share` of its batches from.
    foreground: &'a [u32],
    fit_seconds: f64,
    steps: usize,
    /// Optimiser steps the job is now expected to take in all (for [`Progress::total`]).
    planned_steps: usize,
    unquantized_psnr: f64,
    /// The bound a lossy file met by the field plus a residual guarantees (`hybrid`), checked
    /// on every voxel by the self-check like a bound asked for.
    guarantee: Option<f64>,
}

impl Fit<'_> {
    fn voxels(&self) -> usize {
        self.targets.len()
    }

    /// The scan's range in stored units (1 for a constant scan), as PSNR is measured.
    fn stored_range(&self) -> f64 {
        self.value_max - self.value_min
    }

    /// The main fit's plan: batches of a fraction of the scan (a power of two within the
    /// settings' bounds), steps scaled by the effort and, for very large scans, their size.
    fn plan(&self) -> RunPlan {
        let s = &self.settings.fit;
        let batch = ((self.voxels() as f64 * s.batch_fraction) as usize)
            .max(1)
            .next_power_of_two()
            .clamp(s.min_batch, s.max_batch);
        let scale = self.options.effort * s.size_step_factor(self.voxels());
        let steps = ((s.steps as f64 * scale).round() as usize).max(s.min_steps);
        RunPlan::main_fit(s, steps, batch)
    }

    fn head(&self, config: &FieldConfig) -> Head {
        Head {
            shape: self.shape.map(|n| n as u32),
            datatype: self.datatype,
            value_min: self.value_min,
            value_max: self.value_max,
            seed: self.options.seed,
            field: config.clone(),
        }
    }

    /// Fits a field with about `parameters` parameters.
    fn fit(
        &mut self,
        parameters: usize,
        progress: &mut dyn Progress,
    ) -> Result<Field, EncodeError> {
        let preset = self
            .options
            .preset
            .clone()
            .unwrap_or_else(|| self.settings.architecture.preset_for(parameters));
        let probe = FieldConfig::for_shape(self.shape, 1, &preset);
        // An explicit architecture whose MLP alone exceeds the budget cannot land near the
        // target: say so now rather than after a long fit that the size search then rejects.
        if self.options.preset.is_some() && probe.mlp_parameters() > parameters {
            return Err(EncodeError::ArchitectureTooLarge {
                mlp: probe.mlp_parameters(),
                budget: parameters,
            });
        }
        let grid_budget = parameters.saturating_sub(probe.mlp_parameters()).max(64);
        let static_levels = self.settings.architecture.static_levels(preset.levels);
        let config = FieldConfig::for_series(self.shape, grid_budget, &preset, static_levels);
        let device = self.options.device.candle()?;
        let field = Field::init(&config, self.options.seed, &device)?;
        let plan = self.plan();
        // A retry (another fit) brings its own fine-tunes: extend the job's total.
        let needed = self.steps + self.fit_steps();
        if needed > self.planned_steps {
            self.planned_steps = needed;
            progress.total(needed);
        }
        let mut trainer = Trainer::new(&field, &self.settings.fit, &plan)?;
        let mut sampler = Sampler::new(self.targets, self.shape, config.dims, self.options.seed)
            .with_foreground(self.foreground, self.settings.series.foreground_share);
        let t = Instant::now();
        trainer.run(&field, &mut sampler, &plan, None, None, progress)?;
        self.fit_seconds += t.elapsed().as_secs_f64();
        self.steps += plan.steps;
        Ok(field)
    }

    /// Optimiser steps of one fit and its fine-tunes: two for a size target with the rate
    /// term (the rate-term run, then the usual one), else one.
    fn fit_steps(&self) -> usize {
        let fine_tunes = match self.options.target {
            RateTarget::Psnr(_) => 1,
            _ if self.settings.fine_tune.rate_term => 2,
            _ => 1,
        };
        self.plan().steps + fine_tunes * self.fine_tune_plan().steps
    }

    /// Quantization-aware fine-tuning at the given steps: a short run at a low learning rate
    /// with rounding in the forward pass, so the weights settle where quantization puts them;
    /// with `rate` (per-entry weights of the grid's rate term, `rate::rate_weights`) the loss
    /// also prices the bits of the grid's symbols.
    fn fine_tune(
        &mut self,
        field: &Field,
        steps: &[f32],
        rate: Option<&candle_core::Tensor>,
        progress: &mut dyn Progress,
    ) -> Result<(), EncodeError> {
        let plan = self.fine_tune_plan();
        let q = QuantSteps::new(field, steps)?;
        let mut trainer = Trainer::new(field, &self.settings.fit, &plan)?;
        let mut sampler = Sampler::new(
            self.targets,
            self.shape,
            field.config().dims,
            self.options.seed ^ 1,
        )
        .with_foreground(self.foreground, self.settings.series.foreground_share);
        let start = Instant::now();
        trainer.run(field, &mut sampler, &plan, Some(&q), rate, progress)?;
        self.fit_seconds += start.elapsed().as_secs_f64();
        self.steps += plan.steps;
        Ok(())
    }

    /// The fine-tune's plan: a fraction of the main fit's steps at a lower learning rate.
    fn fine_tune_plan(&self) -> RunPlan {
        let t = &self.settings.fine_tune;
        let mut plan = self.plan();
        plan.steps = ((plan.steps as f64 * t.steps_fraction) as usize).max(t.min_steps);
        plan.grid_lr *= t.lr_factor;
        plan.mlp_lr *= t.lr_factor;
        plan.final_lr_fraction = t.final_lr_fraction;
        plan
    }

    fn assemble(&self, config: &FieldConfig, tensors: &[Vec<f32>], steps: &[f32]) -> MinrFile {
        MinrFile {
            head: self.head(config),
            nifti_header: self.nifti_header.to_vec(),
            tensors: tensors
                .iter()
                .zip(steps)
                .map(|(t, &step)| QuantTensor {
                    step,
                    symbols: quantize(t, step),
                })
                .collect(),
            meta: Some(self.meta.to_string()),
            residual: None,
            mean: self.mean_section().map(<[u8]>::to_vec),
            context_tables: self.settings.rate.context_tables,
        }
    }

    /// The `MEAN` section every file of this run carries, if any.
    fn mean_section(&self) -> Option<&[u8]> {
        self.mean.map(|m| m.section.as_slice())
    }

    /// Bytes every section but TENS and RESI takes (for rate control).
    fn fixed_bytes(&self, config: &FieldConfig) -> usize {
        crate::codec::payload::overhead(
            &self.head(config),
            self.nifti_header,
            Some(self.meta),
            self.mean_section(),
        )
    }

    /// The stored value of field output `y` at voxel `index` of the scan, as the decoder
    /// makes it (with the temporal mean, when the field holds the dynamic part alone).
    fn stored_at(&self, y: f32, index: usize, datatype: Option<crate::volume::DataType>) -> f32 {
        match self.mean {
            Some(m) => {
                let frame = self.shape[0] * self.shape[1] * self.shape[2];
                m.mean.stored(m.mean.at_index(index % frame), y, datatype)
            }
            None => crate::decoder::to_stored(y, self.value_min, self.value_max, datatype),
        }
    }

    /// The tensors of `config` as rate control sizes them: tables keep their shape, and so
    /// are sized as the writer codes them (context-coded where that is shorter), unless
    /// `rate.context_tables` is off.
    fn coded_specs(&self, config: &FieldConfig) -> Vec<crate::model::TensorSpec> {
        let mut specs = crate::model::tensor_specs(config);
        if !self.settings.rate.context_tables {
            for s in &mut specs {
                s.table = None;
            }
        }
        specs
    }

    /// `file`'s field requantized to about the smallest file its architecture allows (the
    /// coarsest grid step that is still above the all-zero minimum by an eighth), with no
    /// refit: a coarse preview of the scan at almost no cost.
    fn smallest(&self, file: &MinrFile) -> Result<MinrFile, EncodeError> {
        use steps::{minimum_size, search_grid_step, steps_for, StepPlan};
        let config = &file.head.field;
        let specs = self.coded_specs(config);
        let tensors = file.dequantized();
        let plan = StepPlan {
            level_scales: vec![1.0; config.levels()],
            mlp_divisor: self.settings.rate.default_mlp_step_divisor,
        };
        let fixed = self.fixed_bytes(config);
        let minimum = minimum_size(&specs, &tensors, &plan, fixed);
        let iterations = self.settings.rate.size_search_iterations;
        match search_grid_step(
            &specs,
            &tensors,
            &plan,
            minimum + minimum / 8,
            fixed,
            iterations,
        ) {
            Some(found) if found.bytes < file.to_bytes()?.len() => {
                let steps = steps_for(&specs, &tensors, found.grid_step, &plan);
                Ok(self.assemble(config, &tensors, &steps))
            }
            _ => Ok(file.clone()),
        }
    }

    /// The residual layer of the scan at `mode`, chunk by chunk: the values read from the scan
    /// as stored and, with a `field`, each chunk's prediction made exactly as the decoder will
    /// make it (`Decoder::chunk_prediction`), so no copy of the scan or of the prediction is
    /// held whole.
    pub(super) fn code_residual(
        &self,
        field: Option<&Decoder>,
        mode: crate::residual::Mode,
        kind: crate::residual::Kind,
        roi: Option<&crate::residual::Roi>,
        options: &crate::residual::Options,
    ) -> Result<Vec<u8>, EncodeError> {
        use crate::residual::{encode_chunked, ChunkPrediction, ChunkRegion, ResidualError};
        let predict = |region: &ChunkRegion| match field {
            Some(f) => f
                .chunk_prediction(region)
                .map_err(|e| ResidualError::Prediction(e.to_string())),
            None => Err(ResidualError::Prediction("no field to predict from".into())),
        };
        let prediction: Option<ChunkPrediction> = field.is_some().then_some(&predict);
        Ok(encode_chunked(
            self.data, prediction, self.shape, mode, kind, roi, options,
        )?)
    }

    /// Adds a residual layer to `file` so every voxel meets `bound`. Two files are made and
    /// the smaller kept: the field as fitted with a residual predicted from it, and the field
    /// requantized to a coarse preview (`smallest`) with a residual predicted from decoded
    /// neighbours alone. Returns the file and whether its residual uses the field.
    fn residual(
        &self,
        file: &MinrFile,
        bound: Bound,
        datatype: crate::volume::DataType,
    ) -> Result<(MinrFile, bool), EncodeError> {
        use crate::residual::{Mode, Options, Roi};
        let mode = match bound {
            Bound::Lossless => Mode::Lossless,
            Bound::MaxError(d) => Mode::Bound { max_error: d },
        };
        // The scan's own range (not the datatype's): predictions are clamped to it, and
        // i32/u32 scans stay within what the coder's f32 values hold exactly.
        let kind = self.residual_kind(datatype);
        let roi = self.options.roi.as_ref().map(|r| Roi {
            mask: &r.mask,
            max_error: r.max_error,
        });
        let options = Options::default();
        let field = Decoder::from_file(file.clone(), 0)?;
        let code = |with_field: bool| {
            let predictor = with_field.then_some(&field);
            self.code_residual(predictor, mode, kind, roi.as_ref(), &options)
        };
        let mut with_field = file.clone();
        with_field.residual = Some(code(true)?);
        let mut alone = self.smallest(file)?;
        alone.residual = Some(code(false)?);
        Ok(if alone.to_bytes()?.len() < with_field.to_bytes()?.len() {
            (alone, false)
        } else {
            (with_field, true)
        })
    }
}
