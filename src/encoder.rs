//! Compression: scan in, `.minr` file out. Normalise the intensities, size the field for the
//! rate, fit it, find the quantization step that meets the rate (or the PSNR), fine-tune with
//! the quantizer in the loop, and assemble the file.

use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use crate::codec::container::FormatError;
use crate::codec::payload::{overhead, Head, MinrFile, QuantTensor};
use crate::codec::quantize::{
    dequantize, quantize, search_grid_step, steps_for, tensors_size, StepPlan,
    DEFAULT_MLP_STEP_DIVISOR, MLP_STEP_DIVISORS,
};
use crate::decode::{Evaluator, Region};
use crate::field::{tensor_specs, Field, FieldConfig, FieldError, Preset, QuantSteps};
use crate::fit::{FitSettings, Progress, Sampler, Trainer};
use crate::metrics;
use crate::volume::Volume;

/// Bits one stored parameter costs after quantization and entropy coding, as planned before
/// the fit: it sets the field's size for a rate (fewer bits per parameter = a larger field
/// quantized more coarsely). The step search then makes the file exactly the asked size.
pub const DEFAULT_BITS_PER_PARAMETER: f64 = 3.5;
/// A PSNR target is sought with the step search on this many voxels before the full check.
const PSNR_PROBE_VOXELS: usize = 1 << 20;
/// How often the field is enlarged when a PSNR target is out of reach.
const PSNR_ATTEMPTS: usize = 3;

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

/// How to compress.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub target: RateTarget,
    pub seed: u64,
    /// Multiplies the number of optimisation steps (1 = default).
    pub effort: f64,
    /// Replace NaN/±inf voxels with this value instead of refusing the scan.
    pub nan_fill: Option<f32>,
    /// Network architecture; `None` picks one for the rate.
    pub preset: Option<Preset>,
    /// Planned bits per stored parameter (see `DEFAULT_BITS_PER_PARAMETER`).
    pub bits_per_parameter: f64,
    pub device: Device,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            target: RateTarget::BitsPerVoxel(0.1),
            seed: 0,
            effort: 1.0,
            nan_fill: None,
            preset: None,
            bits_per_parameter: DEFAULT_BITS_PER_PARAMETER,
            device: Device::Cpu,
        }
    }
}

/// What a compress run did, for the CLI and experiments.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeReport {
    pub bytes: usize,
    pub target_bytes: Option<usize>,
    pub bits_per_voxel: f64,
    pub ratio: f64,
    /// PSNR / SSIM / errors of the decoded file against the input (the decoder's own output).
    pub quality: metrics::Comparison,
    /// PSNR of the fitted field before quantization, on a random subset of voxels: the gap to
    /// `quality.psnr_db` is what quantization and the rate cost.
    pub unquantized_psnr_db: f64,
    pub fit_seconds: f64,
    pub total_seconds: f64,
    pub steps: usize,
    pub grid_step: f32,
    pub parameters: usize,
    pub config: FieldConfig,
}

/// Why a scan could not be compressed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the scan has {count} NaN or infinite voxels (first at x={}, y={}, z={}, t={}); a field cannot represent them — pass a fill value (--nan-fill) to replace them", first[0], first[1], first[2], first[3])]
    NonFinite { count: usize, first: [usize; 4] },
    #[error("invalid target: {0}")]
    BadTarget(String),
    #[error("{target} bytes were asked for, but the smallest file this scan can have is {minimum} bytes (headers and network); ask for a higher rate")]
    TargetTooSmall { target: usize, minimum: usize },
    #[error("PSNR {asked:.2} dB is out of reach: the best field tried reached {best:.2} dB")]
    PsnrUnreachable { asked: f64, best: f64 },
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("the file just written does not decode: {0}")]
    SelfCheck(#[from] crate::decoder::DecodeError),
}

/// Compresses `volume`.
pub fn encode(
    volume: &Volume,
    options: &EncodeOptions,
    progress: &mut dyn Progress,
) -> Result<(MinrFile, EncodeReport), EncodeError> {
    let start = Instant::now();
    let data = finite_data(volume, options.nan_fill)?;
    let shape = volume.shape();
    let voxels = data.len();
    let (value_min, value_max) = value_range(&data);
    let scale = (value_max - value_min) as f32;
    let targets: Vec<f32> = data
        .iter()
        .map(|&v| ((v as f64 - value_min) as f32) / scale)
        .collect();
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
    let nifti_header = volume.header.to_bytes();
    let meta = serde_json::json!({
        "encoder": concat!("medinr ", env!("CARGO_PKG_VERSION")),
        "target": options.target,
        "effort": options.effort,
    })
    .to_string();

    let mut ctx = Fit {
        shape,
        targets: &targets,
        data: &data,
        options,
        value_min,
        value_max,
        datatype: volume.header.datatype().nifti_code(),
        nifti_header: &nifti_header,
        meta: &meta,
        fit_seconds: 0.0,
        steps: 0,
        unquantized_psnr: f64::NAN,
    };

    let (file, grid_step, config) = match (target_bytes, options.target) {
        (Some(bytes), _) => ctx.fit_to_size(bytes, progress)?,
        (None, RateTarget::Psnr(p)) => ctx.fit_to_psnr(p, progress)?,
        _ => unreachable!("every target is either a size or a PSNR"),
    };
    let bytes = file.to_bytes()?.len();
    let decoded = ctx.decode_stored(&file, Region::Full)?;
    let quality = metrics::compare(&data, &decoded, shape)?;
    let report = EncodeReport {
        bytes,
        target_bytes,
        bits_per_voxel: bytes as f64 * 8.0 / voxels as f64,
        ratio: (stored_bits * voxels) as f64 / (bytes as f64 * 8.0),
        quality,
        unquantized_psnr_db: ctx.unquantized_psnr,
        fit_seconds: ctx.fit_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
        steps: ctx.steps,
        grid_step,
        parameters: config.grid_parameters() + config.mlp_parameters(),
        config,
    };
    Ok((file, report))
}

/// The scan's values, with non-finite voxels refused or replaced.
fn finite_data(volume: &Volume, fill: Option<f32>) -> Result<Vec<f32>, EncodeError> {
    let (count, first) = volume.non_finite_count();
    if count == 0 {
        return Ok(volume.data.clone());
    }
    match fill {
        Some(v) if v.is_finite() => Ok(volume
            .data
            .iter()
            .map(|&x| if x.is_finite() { x } else { v })
            .collect()),
        _ => Err(EncodeError::NonFinite {
            count,
            first: first.unwrap_or([0; 4]),
        }),
    }
}

/// Smallest and largest value; a constant scan gets a unit range so normalisation is defined.
fn value_range(data: &[f32]) -> (f64, f64) {
    let (lo, hi) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = (lo as f64, hi as f64);
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}

/// Architecture for a parameter budget: the default, trimmed for very small files where the
/// MLP and the level count would otherwise eat the whole budget.
fn preset_for(parameters: usize) -> Preset {
    let mut preset = Preset::default();
    if parameters < 40_000 {
        preset.levels = 12;
        preset.hidden_width = 16;
        preset.hidden_layers = 1;
    }
    if parameters < 4_000 {
        preset.levels = 8;
        preset.hidden_width = 8;
    }
    preset
}

/// State shared by the steps of one compress run.
struct Fit<'a> {
    shape: [usize; 4],
    targets: &'a [f32],
    data: &'a [f32],
    options: &'a EncodeOptions,
    value_min: f64,
    value_max: f64,
    datatype: i16,
    nifti_header: &'a [u8],
    meta: &'a str,
    fit_seconds: f64,
    steps: usize,
    unquantized_psnr: f64,
}

impl Fit<'_> {
    fn voxels(&self) -> usize {
        self.targets.len()
    }

    /// Batch size and step count: batches of up to 2^16 voxels but no more than a sixteenth
    /// of the scan, so small scans take small, quick steps.
    fn settings(&self) -> FitSettings {
        let mut s = FitSettings::default();
        s.batch = (self.voxels() / 16)
            .next_power_of_two()
            .clamp(1024, s.batch);
        s.steps = ((s.steps as f64 * self.options.effort).round() as usize).max(10);
        s
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
            .unwrap_or_else(|| preset_for(parameters));
        let probe = FieldConfig::for_shape(self.shape, 1, &preset);
        let grid_budget = parameters.saturating_sub(probe.mlp_parameters()).max(64);
        let config = FieldConfig::for_shape(self.shape, grid_budget, &preset);
        let device = &self.options.device;
        let field = Field::init(&config, self.options.seed, device)?;
        let settings = self.settings();
        let mut trainer = Trainer::new(&field, &settings, device)?;
        let mut sampler = Sampler::new(self.targets, self.shape, config.dims, self.options.seed);
        let t = Instant::now();
        trainer.run(&field, &mut sampler, &settings, None, progress)?;
        self.fit_seconds += t.elapsed().as_secs_f64();
        self.steps += settings.steps;
        Ok(field)
    }

    /// Quantization-aware fine-tuning at the given steps: a short run at a low learning rate
    /// with rounding in the forward pass, so the weights settle where quantization puts them.
    fn fine_tune(
        &mut self,
        field: &Field,
        steps: &[f32],
        progress: &mut dyn Progress,
    ) -> Result<(), EncodeError> {
        let mut settings = self.settings();
        settings.steps = (settings.steps / 8).max(5);
        settings.grid_lr *= 0.1;
        settings.mlp_lr *= 0.1;
        settings.final_lr_fraction = 0.2;
        let device = &self.options.device;
        let q = QuantSteps::new(field, steps)?;
        let mut trainer = Trainer::new(field, &settings, device)?;
        let mut sampler = Sampler::new(
            self.targets,
            self.shape,
            field.config().dims,
            self.options.seed ^ 1,
        );
        let t = Instant::now();
        trainer.run(field, &mut sampler, &settings, Some(&q), progress)?;
        self.fit_seconds += t.elapsed().as_secs_f64();
        self.steps += settings.steps;
        Ok(())
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
        }
    }

    /// Fit, then make the file `target` bytes (within 3 %, never above).
    fn fit_to_size(
        &mut self,
        target: usize,
        progress: &mut dyn Progress,
    ) -> Result<(MinrFile, f32, FieldConfig), EncodeError> {
        let parameters = (target as f64 * 8.0 / self.options.bits_per_parameter) as usize;
        let field = self.fit(parameters, progress)?;
        let config = field.config().clone();
        let specs = tensor_specs(&config);
        let fixed = overhead(&self.head(&config), self.nifti_header, Some(self.meta));
        let search = |tensors: &[Vec<f32>], plan: &StepPlan| {
            search_grid_step(&specs, tensors, plan, target, fixed).ok_or_else(|| {
                let zeros = steps_for(&specs, tensors, f32::MAX, plan);
                EncodeError::TargetTooSmall {
                    target,
                    minimum: fixed + tensors_size(tensors, &zeros),
                }
            })
        };
        let tensors = field.tensors()?;
        let level_scales = self.level_scales(&field)?;
        let probe = ProbeSet::new(self.shape, PSNR_PROBE_VOXELS, self.options.seed);
        self.unquantized_psnr = self.probe_psnr(&config, &tensors, None, &probe)?;
        // How finely to store the MLP against the grid: keep the split that reaches the best
        // quality at this size, judged on the probe voxels.
        let mut best: Option<(f64, StepPlan, f32)> = None;
        let mut last_error = None;
        for mlp_divisor in MLP_STEP_DIVISORS {
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
        let (steps, grid_step) = if size <= target && size as f64 >= 0.97 * target as f64 {
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
    fn fit_to_psnr(
        &mut self,
        psnr: f64,
        progress: &mut dyn Progress,
    ) -> Result<(MinrFile, f32, FieldConfig), EncodeError> {
        let mut parameters = (self.voxels() / 40).max(2000);
        let mut best = f64::NEG_INFINITY;
        for _ in 0..PSNR_ATTEMPTS {
            let field = self.fit(parameters, progress)?;
            let config = field.config().clone();
            let specs = tensor_specs(&config);
            let tensors = field.tensors()?;
            let probe = ProbeSet::new(self.shape, PSNR_PROBE_VOXELS, self.options.seed);
            let plan = StepPlan {
                level_scales: self.level_scales(&field)?,
                mlp_divisor: DEFAULT_MLP_STEP_DIVISOR,
            };
            let unquantized = self.probe_psnr(&config, &tensors, None, &probe)?;
            self.unquantized_psnr = unquantized;
            best = best.max(unquantized);
            if unquantized < psnr + 0.3 {
                parameters *= 3;
                continue;
            }
            // Largest step meeting the target on the probe voxels.
            let (mut lo, mut hi) = (1e-7f32, 1.0f32);
            for _ in 0..24 {
                let mid = (lo * hi).sqrt();
                let steps = steps_for(&specs, &tensors, mid, &plan);
                if self.probe_psnr(&config, &tensors, Some(&steps), &probe)? >= psnr + 0.05 {
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
            for _ in 0..20 {
                let steps = steps_for(&specs, &tuned, step, &plan);
                let file = self.assemble(&config, &tuned, &steps);
                let decoded = self.decode_stored(&file, Region::Full)?;
                let achieved = metrics::psnr(self.data, &decoded, metrics::data_range(self.data));
                if achieved >= psnr {
                    return Ok((file, step, config));
                }
                best = best.max(achieved);
                step *= 0.85;
            }
            parameters *= 3;
        }
        Err(EncodeError::PsnrUnreachable { asked: psnr, best })
    }

    /// Relative quantization steps per grid level from each level's sensitivity: the MLP's
    /// mean squared gain for that level's features times the voxels each table entry serves
    /// (`voxels / entries`), measured on a probe of voxel centres.
    fn level_scales(&self, field: &Field) -> Result<Vec<f32>, EncodeError> {
        let config = field.config();
        let probe = ProbeSet::new(self.shape, 1 << 16, self.options.seed ^ 2);
        let coords = probe.coords(self.shape, config.dims);
        let n = coords.len() / config.dims;
        let x = candle_core::Tensor::from_vec(coords, (n, config.dims), &self.options.device)
            .map_err(FieldError::from)?;
        let gains = field.level_gains(&x)?;
        let sensitivity: Vec<f64> = gains
            .iter()
            .enumerate()
            .map(|(l, g)| g * self.voxels() as f64 / config.level_entries(l) as f64)
            .collect();
        Ok(crate::codec::quantize::level_scales(&sensitivity))
    }

    /// PSNR on the probe voxels, in stored values, of the field quantized with `steps` (or
    /// as it is, with `None`).
    fn probe_psnr(
        &self,
        config: &FieldConfig,
        tensors: &[Vec<f32>],
        steps: Option<&[f32]>,
        probe: &ProbeSet,
    ) -> Result<f64, EncodeError> {
        let deq: Vec<Vec<f32>> = match steps {
            Some(steps) => tensors
                .iter()
                .zip(steps)
                .map(|(t, &s)| dequantize(&quantize(t, s), s))
                .collect(),
            None => tensors.to_vec(),
        };
        let eval = Evaluator::new(config, &deq)?;
        let predicted = eval.evaluate(&probe.coords(self.shape, config.dims))?;
        let datatype = crate::volume::DataType::from_nifti_code(self.datatype).ok();
        let test: Vec<f32> = predicted
            .iter()
            .map(|&y| crate::decoder::to_stored(y, self.value_min, self.value_max, datatype))
            .collect();
        let reference: Vec<f32> = probe.indices.iter().map(|&i| self.data[i]).collect();
        Ok(metrics::psnr(
            &reference,
            &test,
            metrics::data_range(self.data),
        ))
    }

    /// Decodes a file exactly as the decoder will: through `Decoder` itself.
    fn decode_stored(&self, file: &MinrFile, region: Region) -> Result<Vec<f32>, EncodeError> {
        let decoder = crate::decoder::Decoder::from_file(file.clone(), 0)?;
        Ok(decoder.region(self.shape, region)?.0)
    }
}

/// A fixed random subset of voxels used to judge quality quickly during a search.
struct ProbeSet {
    indices: Vec<usize>,
}

impl ProbeSet {
    fn new(shape: [usize; 4], count: usize, seed: u64) -> ProbeSet {
        use rand::{Rng, SeedableRng};
        let total: usize = shape.iter().product();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9);
        let indices = if total <= count {
            (0..total).collect()
        } else {
            (0..count).map(|_| rng.random_range(0..total)).collect()
        };
        ProbeSet { indices }
    }

    fn coords(&self, shape: [usize; 4], dims: usize) -> Vec<f32> {
        use crate::field::grid::axis_coordinate;
        let [nx, ny, nz, nt] = shape;
        let mut out = Vec::with_capacity(self.indices.len() * dims);
        for &i in &self.indices {
            out.push(axis_coordinate(i % nx, nx));
            out.push(axis_coordinate((i / nx) % ny, ny));
            out.push(axis_coordinate((i / (nx * ny)) % nz, nz));
            if dims == 4 {
                out.push(axis_coordinate(i / (nx * ny * nz), nt));
            }
        }
        out
    }
}
