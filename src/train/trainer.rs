//! The fit: mean-squared error on random voxel batches, AdamW (candle-nn) with a higher
//! learning rate for the grid than for the MLP, an exponential learning-rate decay, and an
//! optional quantization-aware phase.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::sampler::Sampler;
use super::{Field, QuantSteps, TrainError};
use crate::settings::FitSettings;

/// One optimisation run: how many steps of which batch, at which learning rates. The encoder
/// derives it from `FitSettings`, the scan size and the effort.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Optimiser steps.
    pub steps: usize,
    /// Voxels per batch.
    pub batch: usize,
    /// First learning rate of the grid tables.
    pub grid_lr: f64,
    /// First learning rate of the MLP.
    pub mlp_lr: f64,
    /// Learning rate at the last step as a fraction of the first (exponential decay).
    pub final_lr_fraction: f64,
}

impl RunPlan {
    /// A main-fit plan of `steps` steps of `batch` voxels at the learning rates of `settings`.
    pub fn main_fit(settings: &FitSettings, steps: usize, batch: usize) -> RunPlan {
        RunPlan {
            steps,
            batch,
            grid_lr: settings.grid_lr,
            mlp_lr: settings.mlp_lr,
            final_lr_fraction: settings.final_lr_fraction,
        }
    }
}

/// Told about progress every few steps; the CLI draws a bar, tests ignore it.
pub trait Progress {
    /// The optimiser steps of the whole job as now planned (the main fit plus the
    /// quantization-aware fine-tune), called before the first step and again whenever a
    /// retry (a larger field for a PSNR target, or the smallest field for a bound) adds steps,
    /// so one bar can cover the job.
    fn total(&mut self, _steps: usize) {}
    /// A phase begins; `steps` is its optimiser steps (0 for phases without steps).
    fn phase(&mut self, _phase: Phase, _steps: usize) {}
    /// Step `step` of `steps` of the current run is done; `batch_loss` is the mean squared
    /// error of that step's training batch on the normalised values (not a measure of the
    /// whole scan, which only the final check gives).
    fn update(&mut self, step: usize, steps: usize, batch_loss: f64);
    /// In the [`Phase::Check`]: `voxels` of the `total` the self-check decodes and compares
    /// are done (its cost grows with the scan, unlike the fit's).
    fn checked(&mut self, _voxels: usize, _total: usize) {}
}

/// What the encoder is doing, for [`Progress::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fitting the field (optimiser steps).
    Fit,
    /// Choosing the quantization steps for the target (probe evaluations, no optimiser steps).
    Quantize,
    /// Quantization-aware fine-tuning (optimiser steps).
    FineTune,
    /// After the last optimiser step: final quantization, the residual layer if any, and the
    /// self-check that decodes the real file and measures it (no optimiser steps).
    Check,
}

/// Ignores progress.
pub struct Silent;

impl Progress for Silent {
    fn update(&mut self, _: usize, _: usize, _: f64) {}
}

/// Optimisers and state of one fit.
pub struct Trainer {
    grid_opt: AdamW,
    mlp_opt: AdamW,
    device: Device,
}

impl Trainer {
    /// Optimisers for `field` with the AdamW constants of `settings` and the learning rates
    /// of `plan`.
    pub fn new(
        field: &Field,
        settings: &FitSettings,
        plan: &RunPlan,
    ) -> Result<Trainer, TrainError> {
        let params = |lr: f64, weight_decay: f64| ParamsAdamW {
            lr,
            beta1: settings.beta1,
            beta2: settings.beta2,
            eps: settings.eps,
            weight_decay,
        };
        let grid_opt = AdamW::new(field.grid_vars(), params(plan.grid_lr, 0.0))?;
        let mlp_opt = AdamW::new(
            field.mlp_vars(),
            params(plan.mlp_lr, settings.mlp_weight_decay),
        )?;
        Ok(Trainer {
            grid_opt,
            mlp_opt,
            device: field.device().clone(),
        })
    }

    /// Runs `plan.steps` optimiser steps, optionally with fake quantization in the loop and
    /// a rate term on the grid (`rate`: one weight per table entry, `[entries, 1]`, so the
    /// loss gains `Σ weight_e · Σ_f |table[e, f]|`, the bits a Laplace model of each level's
    /// symbols charges, per voxel, times the rate's price); returns the mean loss of the last
    /// tenth of the steps.
    pub fn run(
        &mut self,
        field: &Field,
        sampler: &mut Sampler,
        plan: &RunPlan,
        quant: Option<&QuantSteps>,
        rate: Option<&Tensor>,
        progress: &mut dyn Progress,
    ) -> Result<f64, TrainError> {
        let settings = plan;
        let dims = field.config().dims;
        let mut coords = Vec::with_capacity(settings.batch * dims);
        let mut values = Vec::with_capacity(settings.batch);
        let decay = settings.final_lr_fraction.ln() / settings.steps.max(1) as f64;
        let (grid_lr, mlp_lr) = (settings.grid_lr, settings.mlp_lr);
        let tail_start = settings.steps - settings.steps / 10;
        let phase = if quant.is_some() {
            Phase::FineTune
        } else {
            Phase::Fit
        };
        progress.phase(phase, settings.steps);
        let (mut tail_sum, mut tail_n) = (0.0, 0usize);
        for step in 0..settings.steps {
            let factor = (decay * step as f64).exp();
            self.grid_opt.set_learning_rate(grid_lr * factor);
            self.mlp_opt.set_learning_rate(mlp_lr * factor);
            sampler.fill(&mut coords, &mut values, settings.batch);
            let x = Tensor::from_slice(&coords, (settings.batch, dims), &self.device)?;
            let y = Tensor::from_slice(&values, settings.batch, &self.device)?;
            let pred = match quant {
                Some(q) => field.forward_quantized(&x, q)?,
                None => field.forward(&x)?,
            };
            let mut loss = (pred - y)?.sqr()?.mean_all()?;
            if let Some(w) = rate {
                let bits = field.grid_table().abs()?.broadcast_mul(w)?.sum_all()?;
                loss = (loss + bits)?;
            }
            let grads = loss.backward()?;
            self.grid_opt.step(&grads)?;
            self.mlp_opt.step(&grads)?;
            if step % 20 == 0 || step + 1 == settings.steps || step >= tail_start {
                let l = loss.to_scalar::<f32>()? as f64;
                if step >= tail_start {
                    tail_sum += l;
                    tail_n += 1;
                }
                progress.update(step + 1, settings.steps, l);
            }
        }
        Ok(if tail_n > 0 {
            tail_sum / tail_n as f64
        } else {
            f64::NAN
        })
    }
}
