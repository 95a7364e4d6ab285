//! Rate control: fit a field, then meet the target — a size (the grid step searched so the
//! file is at most the target and within `size_floor` of it, the MLP precision chosen by
//! quality) or a PSNR (the coarsest step that still meets it on every voxel, the field
//! enlarged when it cannot). Every constant comes from `RateSettings`.

use super::probe::ProbeSet;
use super::steps::{minimum_size, search_grid_step, steps_for, tensors_size, StepPlan};
use super::{EncodeError, Fit, Phase, Progress, Silent};
use crate::codec::payload::MinrFile;
use crate::model::{tensor_specs, FieldConfig};

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
        let specs = tensor_specs(&config);
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
        let steps = steps_for(&specs, &tensors, grid_step, &plan);
        self.fine_tune(&field, &steps, progress)?;
        let tuned = field.tensors()?;
        let size = fixed + tensors_size(&tuned, &steps);
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
            let specs = tensor_specs(&config);
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
            self.fine_tune(&field, &steps, progress)?;
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
