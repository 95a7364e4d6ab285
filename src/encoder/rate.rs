//! Rate control: fit a field, then meet the target — a size (the grid step searched so the
//! file is at most the target and within `size_floor` of it, the MLP precision chosen by
//! quality) or a PSNR (the coarsest step that still meets it on every voxel, the field
//! enlarged when it cannot). Every constant comes from `RateSettings`.

use super::probe::ProbeSet;
use super::steps::{minimum_size, search_grid_step, steps_for, tensors_size, StepPlan};
use super::{EncodeError, Fit, Phase, Progress, Silent};
use crate::codec::payload::MinrFile;
use crate::model::FieldConfig;
use crate::train::Field;

impl Fit<'_> {
    /// Fit, then make the file `target` bytes (within 3 %, never above).
    pub(super) fn fit_to_size(
        &mut self,
        target: usize,
        progress: &mut dyn Progress,
    ) -> Result<(MinrFile, f32, FieldConfig), EncodeError> {
        let settings = self.settings;
        let rate = &settings.rate;
        // The temporal mean's section comes out of the field's share.
        let mean_bytes = self.mean_section().map_or(0, <[u8]>::len);
        let parameters =
            (target.saturating_sub(mean_bytes) as f64 * 8.0 / rate.bits_per_parameter) as usize;
        let field = self.fit(parameters, progress)?;
        progress.phase(Phase::Quantize, 0);
        let config = field.config().clone();
        let specs = self.coded_specs(&config);
        let fixed = self.fixed_bytes(&config);
        let search = |tensors: &[Vec<f32>], plan: &StepPlan| {
            search_grid_step(
                &specs,
                tensors,
                plan,
                target,
                fixed,
                rate.size_search_iterations,
            )
            .ok_or_else(|| EncodeError::TargetTooSmall {
                target,
                minimum: minimum_size(&specs, tensors, plan, fixed),
            })
        };
        let tensors = field.tensors()?;
        let level_scales = self.level_scales(&field)?;
        let probe = ProbeSet::new(self.shape, rate.probe_voxels, self.options.seed);
        self.unquantized_psnr = self.probe_psnr(&config, &tensors, None, &probe)?;
        // How finely to store the MLP against the grid: keep the split that reaches the best
        // quality at this size, judged on the probe voxels.
        let mut best: Option<(f64, StepPlan, f32)> = None;
        let mut last_error = None;
        for &mlp_divisor in &rate.mlp_step_divisors {
            let plan = StepPlan {
                level_scales: level_scales.clone(),
                mlp_divisor,
            };
            let found = match search(&tensors, &plan) {
                Ok(found) => found,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let steps = steps_for(&specs, &tensors, found.grid_step, &plan);
            let psnr = self.probe_psnr(&config, &tensors, Some(&steps), &probe)?;
            if best.as_ref().is_none_or(|(p, _, _)| psnr > *p) {
                best = Some((psnr, plan, found.grid_step));
            }
        }
        let Some((_, plan, grid_step)) = best else {
            return Err(last_error.unwrap_or(EncodeError::TargetTooSmall {
                target,
                minimum: fixed,
            }));
        };
        let mut steps = steps_for(&specs, &tensors, grid_step, &plan);
        let mut grid_step = grid_step;
        // The rate term: a fine-tune that prices the grid's bits at the rate–distortion slope
        // of this operating point leaves fewer and smaller symbols, so the step search can
        // then afford a finer step for the same size.
        if settings.fine_tune.rate_term {
            let price =
                self.rate_price(&config, &tensors, &specs, &plan, grid_step, fixed, &probe)?;
            if let Some(price) = price {
                let weights = rate_weights(&field, &tensors, &steps, price / self.voxels() as f64)?;
                self.fine_tune(&field, &steps, Some(&weights), progress)?;
                let tuned = field.tensors()?;
                grid_step = search(&tuned, &plan)?.grid_step;
                steps = steps_for(&specs, &tuned, grid_step, &plan);
            }
        }
        self.fine_tune(&field, &steps, None, progress)?;
        let tuned = field.tensors()?;
        let size = fixed + tensors_size(&specs, &tuned, &steps);
        // Fine-tuning moves the weights a little; keep its steps unless the size drifted.
        let (steps, grid_step) = if size <= target && size as f64 >= rate.size_floor * target as f64
        {
            (steps, grid_step)
        } else {
            let again = search(&tuned, &plan)?;
            (
                steps_for(&specs, &tuned, again.grid_step, &plan),
                again.grid_step,
            )
        };
        Ok((self.assemble(&config, &tuned, &steps), grid_step, config))
    }

    /// The price of a bit at this operating point: how much the mean squared error (on the
    /// normalised values the fit sees) grows per bit per voxel saved, measured by quantizing
    /// the field at `grid_step` and at a coarser step (`RateSettings::slope_step_ratio`) on
    /// the probe voxels and sizing both files; times `FineTuneSettings::rate_price_factor`.
    /// `None` when the coarser step saves nothing.
    #[allow(clippy::too_many_arguments)]
    fn rate_price(
        &self,
        config: &FieldConfig,
        tensors: &[Vec<f32>],
        specs: &[crate::model::TensorSpec],
        plan: &StepPlan,
        grid_step: f32,
        fixed: usize,
        probe: &ProbeSet,
    ) -> Result<Option<f64>, EncodeError> {
        let ratio = self.settings.fine_tune.slope_step_ratio as f32;
        let point = |step: f32| -> Result<(f64, f64), EncodeError> {
            let steps = steps_for(specs, tensors, step, plan);
            let psnr = self.probe_psnr(config, tensors, Some(&steps), probe)?;
            let bits = (fixed + tensors_size(specs, tensors, &steps)) as f64 * 8.0;
            // The fit's loss is on values normalised by the stored range, as PSNR is.
            Ok((10f64.powf(-psnr / 10.0), bits / self.voxels() as f64))
        };
        let (mse_fine, bpv_fine) = point(grid_step)?;
        let (mse_coarse, bpv_coarse) = point(grid_step * ratio)?;
        let saved = bpv_fine - bpv_coarse;
        // No slope where the coarser step saves nothing or costs no error (or a NaN).
        let slope_exists = saved > 0.0 && mse_coarse >= mse_fine;
        if !slope_exists {
            return Ok(None);
        }
        Ok(Some(
            (mse_coarse - mse_fine) / saved * self.settings.fine_tune.rate_price_factor,
        ))
    }

    /// Fit, then use the coarsest step that still meets `psnr` on the whole scan; enlarge the
    /// field when the target is out of its reach.
    pub(super) fn fit_to_psnr(
        &mut self,
        psnr: f64,
        progress: &mut dyn Progress,
    ) -> Result<(MinrFile, f32, FieldConfig), EncodeError> {
        let settings = self.settings;
        let rate = &settings.rate;
        let mut parameters =
            (self.voxels() / rate.psnr_voxels_per_parameter).max(rate.psnr_min_parameters);
        let mut best = f64::NEG_INFINITY;
        for _ in 0..rate.psnr_field_attempts {
            let field = self.fit(parameters, progress)?;
            progress.phase(Phase::Quantize, 0);
            let config = field.config().clone();
            let specs = self.coded_specs(&config);
            let tensors = field.tensors()?;
            let probe = ProbeSet::new(self.shape, rate.probe_voxels, self.options.seed);
            let plan = StepPlan {
                level_scales: self.level_scales(&field)?,
                mlp_divisor: rate.default_mlp_step_divisor,
            };
            let unquantized = self.probe_psnr(&config, &tensors, None, &probe)?;
            self.unquantized_psnr = unquantized;
            best = best.max(unquantized);
            if unquantized < psnr + rate.psnr_fit_margin_db {
                parameters = parameters.saturating_mul(rate.psnr_field_growth);
                continue;
            }
            // Largest step meeting the target on the probe voxels.
            let (mut lo, mut hi) = (1e-7f32, 1.0f32);
            for _ in 0..rate.psnr_step_iterations {
                let mid = (lo * hi).sqrt();
                let steps = steps_for(&specs, &tensors, mid, &plan);
                if self.probe_psnr(&config, &tensors, Some(&steps), &probe)?
                    >= psnr + rate.psnr_probe_margin_db
                {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let steps = steps_for(&specs, &tensors, lo, &plan);
            self.fine_tune(&field, &steps, None, progress)?;
            let tuned = field.tensors()?;
            // Confirm on every voxel; tighten the step until the whole scan meets the target.
            let mut step = lo;
            for _ in 0..rate.psnr_tighten_attempts {
                let steps = steps_for(&specs, &tuned, step, &plan);
                let file = self.assemble(&config, &tuned, &steps);
                let achieved = self.check(&file, (1.0, 0.0), false, &mut Silent)?.psnr_db;
                if achieved >= psnr {
                    return Ok((file, step, config));
                }
                best = best.max(achieved);
                step *= rate.psnr_step_tighten;
            }
            parameters = parameters.saturating_mul(rate.psnr_field_growth);
        }
        Err(EncodeError::PsnrUnreachable { asked: psnr, best })
    }
}

/// The rate term's weight for every table entry (`[entries, 1]`, the trainer's layout):
/// a Laplace model of level `l`'s symbols `u = θ / Δ_l`, with scale `b_l` their mean
/// magnitude (at least [`MIN_LAPLACE_SCALE`]), charges `|u| / (b_l · ln 2)` bits for an
/// entry, so the weight of each of its features' magnitudes is
/// `price_per_voxel / (Δ_l · b_l · ln 2)`.
fn rate_weights(
    field: &Field,
    tensors: &[Vec<f32>],
    steps: &[f32],
    price_per_voxel: f64,
) -> Result<candle_core::Tensor, EncodeError> {
    let layout = field.layout();
    let mut rows = Vec::with_capacity(layout.entries);
    for ((lv, t), &step) in layout.levels.iter().zip(tensors).zip(steps) {
        let mean = t.iter().map(|v| (v / step).abs() as f64).sum::<f64>() / t.len().max(1) as f64;
        let b = mean.max(MIN_LAPLACE_SCALE);
        let w = price_per_voxel / (step as f64 * b * std::f64::consts::LN_2);
        rows.extend(std::iter::repeat_n(w as f32, lv.size as usize));
    }
    candle_core::Tensor::from_vec(rows, (layout.entries, 1), field.device())
        .map_err(|e| EncodeError::Training(e.into()))
}

/// Smallest Laplace scale (in quantizer steps) the rate term assumes for a level, so that a
/// level whose symbols are nearly all zero is not priced without bound.
const MIN_LAPLACE_SCALE: f64 = 0.25;
