//! Every tuning constant of the encoder in one documented, serialisable place.
//!
//! `EncoderSettings::default()` is what `medinr compress` uses; each field's doc comment gives
//! its default and what it trades. The settings a file was made with are written into its
//! `meta` section (JSON: those that differ from the defaults of the encoder version named
//! beside them), and `medinr compress --settings FILE.json` reads a (partial) set
//! back, so an experiment can be repeated or varied without editing code. Settings never
//! affect decoding: everything a decoder needs is in the file's own sections.

use serde::{Deserialize, Serialize};

use crate::model::Preset;

/// All encoder settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderSettings {
    /// The main fit.
    pub fit: FitSettings,
    /// Quantization-aware fine-tuning after the quantization steps are chosen.
    pub fine_tune: FineTuneSettings,
    /// Rate control: sizing the field, choosing steps, meeting a size or a PSNR.
    pub rate: RateSettings,
    /// The network architecture chosen for a parameter budget.
    pub architecture: ArchitectureSettings,
    /// Series (4D): the temporal mean held apart from the field.
    pub series: SeriesSettings,
    /// The wavelet transform layer tried for lossy size targets.
    pub transform: TransformSettings,
}

/// The transform layer (`encoder::transform`): for a lossy size target the encoder also codes
/// the scan as a wavelet transform stream (CDF 9/7, context-coded subbands) beside the
/// smallest field, its step searched to land on the target, and keeps it when it beats the
/// other files. Defaults measured on the chest CT and Colin27 with `transform_probe`
/// (`results/transform/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSettings {
    /// Try the transform layer at all (default true).
    pub enabled: bool,
    /// Wavelet levels along x and y (default 5: a 512² slice ends in a 16² low band; 4 and 6
    /// measured within 0.05 dB).
    pub levels_in_plane: u8,
    /// Wavelet levels along z where slices are close enough to transform across (default 5).
    pub levels_through: u8,
    /// Slices further apart than this many times the in-plane spacing are coded one by one
    /// (no transform along z; default 2: on the chest CT, 0.7 × 0.7 × 5 mm, levels along z
    /// cost 0.2 dB at 0.5 bpv, on isotropic MRI they gain about 1 dB).
    pub anisotropy_limit: f64,
    /// Slices per chunk when slices are coded one by one (default 16: the context models'
    /// restart cost stays small while one slice still decodes a small chunk) …
    pub chunk_slices_2d: usize,
    /// … halved while a chunk would hold more than about this many coded bits at the size
    /// target: one slice decodes its whole chunk, and the time that takes grows with the
    /// chunk's bits (default 2.2 M bits: a 512² slice of the chest CT from a cold start in
    /// about 0.1 s at 1 bpv, `results/latency/`; 16 slices there took 0.16 s; chunks of 8
    /// instead of 16 cost 0.6 % of the size at 1 bpv).
    pub chunk_bits_2d: f64,
    /// Slices per chunk when transformed along z (default 64: Colin27 at 0.1 bpv, 32 slices
    /// 0.3 dB worse, the whole scan 0.1 dB better).
    pub chunk_slices_3d: usize,
    /// Dead-zone rounding `r` of the quantizer, `q = ⌊|c|/step + r⌋` (default 0.4; 0.3 and
    /// 0.5 measured worse on the chest CT at 0.5 and 1 bpv).
    pub rounding: f64,
    /// Size trials of the step search (default 24) …
    pub search_iterations: usize,
    /// … which stops once the file is at least this fraction of the target (default 0.995,
    /// tighter than `rate.size_floor`: a trial costs a second, and on Colin27 at 0.1 bpv the
    /// 2 % the general floor leaves unspent were 0.1 dB).
    pub size_floor: f64,
    /// Integer scans: voxels whose transform error exceeds this many times their block's RMSE
    /// are corrected by an outlier list, so the file guarantees that worst-case error
    /// (default 4: on the chest CT at 0.5 bpv 0.07 % of the voxels, the maximum error 61 →
    /// 30; 0 = no outlier lists) …
    pub outlier_sigmas: f64,
    /// … with the bound raised where the list would cost more than this share of a block's
    /// coefficient bits (default 0.01: at 0.1 bpv on the chest CT 4 RMSE alone would list so
    /// many voxels that the file lost 2.5 dB).
    pub outlier_share: f64,
}

impl Default for TransformSettings {
    fn default() -> Self {
        TransformSettings {
            enabled: true,
            levels_in_plane: 5,
            levels_through: 5,
            anisotropy_limit: 2.0,
            chunk_slices_2d: 16,
            chunk_bits_2d: 2.2e6,
            chunk_slices_3d: 64,
            rounding: 0.4,
            search_iterations: 24,
            size_floor: 0.995,
            outlier_sigmas: 4.0,
            outlier_share: 0.01,
        }
    }
}

/// Series: the temporal mean coded on its own (section `MEAN`) and the field fitted to the
/// dynamic part `v − mean` alone, so the anatomy — which the temporal-mean baseline already
/// gets right — costs the field nothing and its parameters go to what varies in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeriesSettings {
    /// Hold the mean apart for files of series (default true): lossy, bounded and lossless,
    /// where field and mean together predict the residual layer.
    pub separate_mean: bool,
    /// Only for series of at least this many frames (default 8): with fewer, one frame's worth
    /// of mean is too large a share of the file.
    pub min_frames: usize,
    /// The mean image is coded within this fraction of the dynamic part's RMS (integer scans:
    /// its floor; 0 = exact; default 0.05, adding 0.1 % to the error variance at most).
    pub mean_error_fraction: f64,
    /// Where the mean at that bound is over its share of a size target (below), the bound is
    /// doubled up to this fraction of the dynamic RMS (default 1: the mean's error then adds
    /// at most a third of the dynamic variance, still far better than a field alone at such a
    /// rate); past it, the field alone.
    pub coarsest_mean_fraction: f64,
    /// … and kept only when its section is at most this share of a size target (default 0.8:
    /// even a weak field beside the mean starts at the temporal-mean baseline, which a field
    /// alone at such a rate rarely reaches).
    pub mean_max_share: f64,
    /// Only for series whose temporal mean explains at least this fraction of the variance
    /// about the series' grand mean (default 0.9: fMRI ≥ 0.99; a diffusion series, whose
    /// frames differ by their weighting, 0.08 — `results/timeseries/mean_separated.md`).
    pub mean_min_explained: f64,
    /// With the mean apart, this share of each training batch is drawn from the series'
    /// foreground (the automatic mask of `docs/METRICS.md` on the mean image), the rest
    /// uniformly, so the field's parameters go where the signal is (0 = uniform; default 0.5:
    /// rest fMRI at 0.1 bpv, effort 0.1, +0.16 dB, time-course correlation 0.27 → 0.31).
    pub foreground_share: f64,
}

impl Default for SeriesSettings {
    fn default() -> Self {
        SeriesSettings {
            separate_mean: true,
            min_frames: 8,
            mean_error_fraction: 0.05,
            mean_max_share: 0.8,
            coarsest_mean_fraction: 1.0,
            mean_min_explained: 0.9,
            foreground_share: 0.5,
        }
    }
}

/// The main fit: AdamW on random voxel batches with an exponential learning-rate decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitSettings {
    /// Optimiser steps at effort 1 (default 2000); `--effort` multiplies it.
    pub steps: usize,
    /// Fewest steps whatever the effort (default 10).
    pub min_steps: usize,
    /// Scans with more voxels than this get more steps (default 2^25, about 3.4 × 10^7: no
    /// scan in `data/` is larger, so their fits are unchanged): a larger scan at the same rate
    /// has a larger field, and a batch reaches a smaller share of it.
    pub size_reference_voxels: usize,
    /// The steps grow as √(voxels / `size_reference_voxels`), at most by this factor (default
    /// 4): a 10^9-voxel series fits 4× longer than a brain scan, not 30×, so an overnight run
    /// stays overnight.
    pub max_size_step_factor: f64,
    /// Largest batch in voxels (default 65536).
    pub max_batch: usize,
    /// Smallest batch in voxels (default 1024).
    pub min_batch: usize,
    /// A batch is at most this fraction of the scan (default 1/16), rounded up to a power of
    /// two, so small scans take small, quick steps.
    pub batch_fraction: f64,
    /// Learning rate of the grid tables (default 1e-2).
    pub grid_lr: f64,
    /// Learning rate of the MLP weights (default 5e-3).
    pub mlp_lr: f64,
    /// Learning rate at the last step as a fraction of the first (default 0.05).
    pub final_lr_fraction: f64,
    /// AdamW β1 (default 0.9).
    pub beta1: f64,
    /// AdamW β2 (default 0.99, as instant-ngp).
    pub beta2: f64,
    /// AdamW ε (default 1e-15, as instant-ngp: grid entries see rare, small gradients).
    pub eps: f64,
    /// Weight decay of the MLP (default 1e-6; the grid has none).
    pub mlp_weight_decay: f64,
}

impl FitSettings {
    /// How many times the steps of a scan of `voxels` are the base steps (from 1 to
    /// `max_size_step_factor`; see `size_reference_voxels`).
    pub fn size_step_factor(&self, voxels: usize) -> f64 {
        (voxels as f64 / self.size_reference_voxels as f64)
            .sqrt()
            .clamp(1.0, self.max_size_step_factor)
    }
}

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings {
            steps: 2000,
            min_steps: 10,
            size_reference_voxels: 1 << 25,
            max_size_step_factor: 4.0,
            max_batch: 1 << 16,
            min_batch: 1024,
            batch_fraction: 1.0 / 16.0,
            grid_lr: 1e-2,
            mlp_lr: 5e-3,
            final_lr_fraction: 0.05,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-15,
            mlp_weight_decay: 1e-6,
        }
    }
}

/// Quantization-aware fine-tuning: a short run at a low learning rate with rounding in the
/// forward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineTuneSettings {
    /// Steps as a fraction of the main fit's (default 1/8).
    pub steps_fraction: f64,
    /// Fewest steps (default 5).
    pub min_steps: usize,
    /// Learning rates as a fraction of the main fit's (default 0.1).
    pub lr_factor: f64,
    /// Final learning rate as a fraction of the first (default 0.2).
    pub final_lr_fraction: f64,
    /// For size targets, first a fine-tune with a rate term: the loss also prices the bits
    /// of the grid's symbols (a Laplace model per level) at the rate–distortion slope of the
    /// operating point, then the step is searched again and the usual fine-tune follows
    /// (default true).
    pub rate_term: bool,
    /// The rate term's price of a bit as a multiple of the measured slope (default 1).
    pub rate_price_factor: f64,
    /// The slope is measured between the chosen grid step and this multiple of it
    /// (default 1.25).
    pub slope_step_ratio: f64,
}

impl Default for FineTuneSettings {
    fn default() -> Self {
        FineTuneSettings {
            steps_fraction: 0.125,
            min_steps: 5,
            lr_factor: 0.1,
            final_lr_fraction: 0.2,
            rate_term: true,
            rate_price_factor: 1.0,
            slope_step_ratio: 1.25,
        }
    }
}

/// Rate control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateSettings {
    /// Bits one stored parameter is planned to cost (default 2.0; 3.5 before the rate-term
    /// fine-tune and context-coded tables, which make a larger, more coarsely quantized field
    /// pay: Colin27 at 0.1 bpv, effort 0.5, field alone 32.51 dB at 2.0 against 31.95 at 3.5,
    /// 32.08 at 1.0 and 30.34 at 0.6): it sizes the field before the fit. Fewer bits per
    /// parameter means a larger field quantized more coarsely. The step search then makes the
    /// file the asked size.
    pub bits_per_parameter: f64,
    /// A size target is met when the file is at most the target and at least this fraction
    /// of it (default 0.97).
    pub size_floor: f64,
    /// MLP steps are the matrix RMS divided by one of these; the encoder keeps whichever gives
    /// the best quality at the asked size (default 8, 16, 32, 64, 128).
    pub mlp_step_divisors: Vec<f32>,
    /// The divisor used where no search is made (PSNR targets; default 64).
    pub default_mlp_step_divisor: f32,
    /// Bisection steps of the grid-step search for a size (default 40; it also stops once the
    /// bracket is within 0.05 %).
    pub size_search_iterations: usize,
    /// Random voxels on which quality is judged during searches (default 2^20).
    pub probe_voxels: usize,
    /// Voxels on which each level's sensitivity is measured (default 2^16).
    pub sensitivity_voxels: usize,
    /// A PSNR target: the first field gets one parameter per this many voxels (default 40).
    pub psnr_voxels_per_parameter: usize,
    /// A PSNR target: the first field has at least this many parameters (default 2000).
    pub psnr_min_parameters: usize,
    /// A PSNR target: the unquantized field must beat it by this much, else the field is
    /// enlarged (default 0.3 dB).
    pub psnr_fit_margin_db: f64,
    /// A PSNR target: the step search on probe voxels aims this far above it (default 0.05 dB).
    pub psnr_probe_margin_db: f64,
    /// A PSNR target: bisection steps of the step search (default 24).
    pub psnr_step_iterations: usize,
    /// A PSNR target: when the whole scan misses it, the step is multiplied by this
    /// (default 0.85) …
    pub psnr_step_tighten: f32,
    /// … at most this many times (default 20).
    pub psnr_tighten_attempts: usize,
    /// A PSNR target: fields tried before giving up (default 3) …
    pub psnr_field_attempts: usize,
    /// … each this many times larger than the last (default 3).
    pub psnr_field_growth: usize,
    /// With a worst-case error bound or lossless coding and no rate given, the field gets
    /// this many bits per voxel and the residual layer the rest (default 0.05).
    pub bounded_field_bpv: f64,
    /// Lossy size targets also try the field plus a coded residual whose bound is searched
    /// to land on the target, and keep the better file (`encoder::hybrid`; default true).
    pub lossy_residual: bool,
    /// Shares of the target given to the fitted field when it predicts the residual of such a
    /// file (each in (0, 1); the smallest field with a residual from decoded neighbours alone
    /// is always tried too; default 0.1).
    pub hybrid_field_shares: Vec<f64>,
    /// Size trials that place the time-shared bound's prefix (integer scans) or refine a float
    /// bound (default 8).
    pub hybrid_prefix_iterations: usize,
    /// Context-code the grid's tables (symbol-stream mode 4, format 5.0) where that is
    /// shorter than the usual streams (default false: it saves 4–5 % of the grid's bytes on
    /// Colin27 and the chest CT, but at 0.1 bpv, effort 0.5, the field it buys measured
    /// 32.51 dB against 32.57 without, within a fit's noise, so files stay readable by
    /// format 4.x readers; true writes format 5.0 files whenever a table is shorter in
    /// mode 4).
    pub context_tables: bool,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            bits_per_parameter: 2.0,
            size_floor: 0.97,
            mlp_step_divisors: vec![8.0, 16.0, 32.0, 64.0, 128.0],
            default_mlp_step_divisor: 64.0,
            size_search_iterations: 40,
            probe_voxels: 1 << 20,
            sensitivity_voxels: 1 << 16,
            psnr_voxels_per_parameter: 40,
            psnr_min_parameters: 2000,
            psnr_fit_margin_db: 0.3,
            psnr_probe_margin_db: 0.05,
            psnr_step_iterations: 24,
            psnr_step_tighten: 0.85,
            psnr_tighten_attempts: 20,
            psnr_field_attempts: 3,
            psnr_field_growth: 3,
            bounded_field_bpv: 0.05,
            lossy_residual: true,
            hybrid_field_shares: vec![0.1],
            hybrid_prefix_iterations: 8,
            context_tables: false,
        }
    }
}

/// The architecture for a parameter budget: the default, trimmed for very small files where
/// the MLP and the level count would otherwise eat the whole budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchitectureSettings {
    /// Used from `small_below` parameters up (default 16 levels × 2 features, base 4, MLP 32×2).
    pub default: Preset,
    /// Budgets under this many parameters use `small` (default 40 000).
    pub small_below: usize,
    /// For small budgets (default 12 levels, MLP 16×1).
    pub small: Preset,
    /// Budgets under this many parameters use `tiny` (default 4 000).
    pub tiny_below: usize,
    /// For tiny budgets (default 8 levels, MLP 8×1).
    pub tiny: Preset,
    /// 4D scans: the fraction of grid levels that are static — one cell along time, full
    /// spatial resolution — so the anatomy (temporal mean, slow drift) is held apart from
    /// what varies; the other levels span space and time (`FieldConfig::for_series`).
    /// 0 = every level spans time (the joint layout). Default 0.5 (results/timeseries/static_levels.md).
    pub static_level_fraction: f64,
}

impl ArchitectureSettings {
    /// Static levels of a `levels`-level field under [`Self::static_level_fraction`].
    pub fn static_levels(&self, levels: usize) -> usize {
        (self.static_level_fraction * levels as f64).round() as usize
    }
}

impl Default for ArchitectureSettings {
    fn default() -> Self {
        let default = Preset::default();
        let small = Preset {
            levels: 12,
            hidden_width: 16,
            hidden_layers: 1,
            ..default.clone()
        };
        let tiny = Preset {
            levels: 8,
            hidden_width: 8,
            ..small.clone()
        };
        ArchitectureSettings {
            default,
            small_below: 40_000,
            static_level_fraction: 0.5,
            small,
            tiny_below: 4_000,
            tiny,
        }
    }
}

impl ArchitectureSettings {
    /// The preset for a budget of `parameters`.
    pub fn preset_for(&self, parameters: usize) -> Preset {
        if parameters < self.tiny_below {
            self.tiny.clone()
        } else if parameters < self.small_below {
            self.small.clone()
        } else {
            self.default.clone()
        }
    }
}

/// Why a settings file was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid encoder settings: {0}")]
pub struct SettingsError(pub String);

impl EncoderSettings {
    /// Reads settings from JSON; fields left out keep their defaults, unknown fields are
    /// refused (a typo must not silently do nothing).
    pub fn from_json(text: &str) -> Result<EncoderSettings, SettingsError> {
        let s: EncoderSettings =
            serde_json::from_str(text).map_err(|e| SettingsError(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// The settings that differ from the defaults, as JSON (an empty object when none do).
    /// This is what a file records: the encoder's version names the defaults, and the full
    /// set would cost hundreds of bytes in a file that may be only a few kilobytes.
    pub fn changes_from_default(&self) -> serde_json::Value {
        fn diff(ours: serde_json::Value, default: serde_json::Value) -> Option<serde_json::Value> {
            // A preset is recorded whole: it is read back whole (no field of it defaults).
            let is_preset = |v: &serde_json::Value| v.get("hidden_layers").is_some();
            match (ours, default) {
                (a, b) if is_preset(&a) => (a != b).then_some(a),
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    let changed: serde_json::Map<String, serde_json::Value> = a
                        .into_iter()
                        .filter_map(|(k, v)| {
                            let d = b.get(&k).cloned().unwrap_or(serde_json::Value::Null);
                            diff(v, d).map(|v| (k, v))
                        })
                        .collect();
                    (!changed.is_empty()).then_some(serde_json::Value::Object(changed))
                }
                (a, b) => (a != b).then_some(a),
            }
        }
        let as_json = |s: &EncoderSettings| serde_json::to_value(s).unwrap_or_default();
        diff(as_json(self), as_json(&EncoderSettings::default()))
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
    }

    /// Checks that every value is in a range the encoder can work with.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |what: &str| Err(SettingsError(what.to_string()));
        let f = &self.fit;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if f.steps == 0 || f.min_batch == 0 || f.max_batch < f.min_batch {
            return bad("fit: steps must be ≥ 1 and 1 ≤ min_batch ≤ max_batch");
        }
        if f.max_batch > 1 << 24 {
            return bad("fit: max_batch is at most 2^24");
        }
        if f.size_reference_voxels == 0
            || !(f.max_size_step_factor.is_finite()
                && (1.0..=100.0).contains(&f.max_size_step_factor))
        {
            return bad(
                "fit: size_reference_voxels must be ≥ 1 and max_size_step_factor in [1, 100]",
            );
        }
        if !(positive(f.batch_fraction) && f.batch_fraction <= 1.0) {
            return bad("fit: batch_fraction must be in (0, 1]");
        }
        let rates_ok = [f.grid_lr, f.mlp_lr, f.final_lr_fraction, f.eps]
            .into_iter()
            .all(positive);
        let betas_ok = (0.0..1.0).contains(&f.beta1) && (0.0..1.0).contains(&f.beta2);
        let decay_ok = f.mlp_weight_decay.is_finite() && f.mlp_weight_decay >= 0.0;
        if !(rates_ok && betas_ok && decay_ok) {
            return bad(
                "fit: learning rates, ε and the final fraction must be positive, β in [0, 1)",
            );
        }
        let t = &self.fine_tune;
        if ![t.steps_fraction, t.lr_factor, t.final_lr_fraction]
            .into_iter()
            .all(positive)
        {
            return bad("fine_tune: fractions and factors must be positive");
        }
        let r = &self.rate;
        let slope_ok = t.slope_step_ratio > 1.0 && t.slope_step_ratio.is_finite();
        if !(positive(t.rate_price_factor) && slope_ok) {
            return bad("fine_tune: rate_price_factor must be positive, slope_step_ratio above 1");
        }
        if !positive(r.bits_per_parameter) || r.bits_per_parameter > 64.0 {
            return bad("rate: bits_per_parameter must be in (0, 64]");
        }
        if !(r.size_floor > 0.0 && r.size_floor < 1.0) {
            return bad("rate: size_floor must be in (0, 1)");
        }
        let divisor_ok = |d: &f32| d.is_finite() && *d > 0.0;
        if r.mlp_step_divisors.is_empty()
            || !r.mlp_step_divisors.iter().all(divisor_ok)
            || !divisor_ok(&r.default_mlp_step_divisor)
        {
            return bad("rate: MLP step divisors must be positive (and at least one given)");
        }
        if r.probe_voxels == 0
            || r.sensitivity_voxels == 0
            || r.psnr_voxels_per_parameter == 0
            || r.size_search_iterations > 200
            || r.psnr_step_iterations > 200
            || r.psnr_tighten_attempts > 200
            || r.psnr_field_attempts == 0
            || r.psnr_field_attempts > 10
            || r.psnr_field_growth < 2
            || r.hybrid_prefix_iterations > 200
        {
            return bad("rate: counts out of range (probes ≥ 1, searches ≤ 200 steps, 1–10 field attempts growing ≥ 2×)");
        }
        if r.hybrid_field_shares
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0 && *s < 1.0))
        {
            return bad("rate: hybrid_field_shares must each be in (0, 1)");
        }
        if !positive(r.bounded_field_bpv) {
            return bad("rate: bounded_field_bpv must be positive");
        }
        if !(r.psnr_step_tighten > 0.0 && r.psnr_step_tighten < 1.0) {
            return bad("rate: psnr_step_tighten must be in (0, 1)");
        }
        let w = &self.transform;
        if w.levels_in_plane > 12
            || w.levels_through > 12
            || w.chunk_slices_2d == 0
            || w.chunk_slices_3d == 0
            || !(w.chunk_bits_2d.is_finite() && w.chunk_bits_2d > 0.0)
            || w.search_iterations > 200
            || !(w.rounding.is_finite() && (0.0..=0.5).contains(&w.rounding))
            || !(w.anisotropy_limit.is_finite() && w.anisotropy_limit >= 1.0)
            || !(w.outlier_sigmas.is_finite() && w.outlier_sigmas >= 0.0)
            || !(w.outlier_share.is_finite() && w.outlier_share >= 0.0)
            || !(w.size_floor > 0.0 && w.size_floor < 1.0)
        {
            return bad("transform: levels ≤ 12, chunks ≥ 1 slice, chunk_bits_2d > 0, rounding in [0, 0.5], anisotropy_limit ≥ 1, ≤ 200 trials, outlier_sigmas ≥ 0, size_floor in (0, 1)");
        }
        let m = &self.series;
        if m.min_frames < 2
            || !(m.mean_error_fraction.is_finite() && (0.0..=1.0).contains(&m.mean_error_fraction))
            || !(m.mean_max_share.is_finite() && m.mean_max_share > 0.0 && m.mean_max_share < 1.0)
            || !(m.mean_min_explained.is_finite() && (0.0..=1.0).contains(&m.mean_min_explained))
            || !(m.foreground_share.is_finite() && (0.0..=1.0).contains(&m.foreground_share))
            || !(m.coarsest_mean_fraction.is_finite()
                && m.coarsest_mean_fraction >= m.mean_error_fraction
                && m.coarsest_mean_fraction <= 10.0)
        {
            return bad("series: min_frames ≥ 2, mean_error_fraction, mean_min_explained and foreground_share in [0, 1], mean_max_share in (0, 1), coarsest_mean_fraction from mean_error_fraction to 10");
        }
        let a = &self.architecture;
        for p in [&a.default, &a.small, &a.tiny] {
            p.validate()
                .map_err(|e| SettingsError(format!("architecture: {e}")))?;
        }
        if !(0.0..1.0).contains(&a.static_level_fraction) {
            return bad("architecture: static_level_fraction must be in [0, 1)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_json() {
        let s = EncoderSettings::default();
        s.validate().unwrap();
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(EncoderSettings::from_json(&text).unwrap(), s);
    }

    #[test]
    fn partial_settings_keep_the_other_defaults() {
        let s = EncoderSettings::from_json(r#"{"fit": {"steps": 500}}"#).unwrap();
        assert_eq!(s.fit.steps, 500);
        assert_eq!(s.fit.grid_lr, FitSettings::default().grid_lr);
        assert_eq!(s.rate, RateSettings::default());
    }

    #[test]
    fn only_changed_settings_are_recorded() {
        let mut s = EncoderSettings::default();
        assert_eq!(s.changes_from_default(), serde_json::json!({}));
        s.fit.steps = 500;
        s.architecture.tiny.levels = 6;
        assert_eq!(
            s.changes_from_default(),
            serde_json::json!({"fit": {"steps": 500}, "architecture": {"tiny": {
                "levels": 6, "features": 2, "base_resolution": 4, "hidden_width": 8,
                "hidden_layers": 1}}})
        );
        let back = EncoderSettings::from_json(&s.changes_from_default().to_string()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn typos_and_nonsense_are_refused() {
        assert!(EncoderSettings::from_json(r#"{"fit": {"stpes": 500}}"#).is_err());
        assert!(EncoderSettings::from_json(r#"{"fit": {"grid_lr": -1}}"#).is_err());
        assert!(EncoderSettings::from_json(r#"{"rate": {"size_floor": 1.5}}"#).is_err());
        assert!(EncoderSettings::from_json(r#"{"rate": {"mlp_step_divisors": []}}"#).is_err());
    }

    #[test]
    fn only_very_large_scans_fit_longer_and_within_the_cap() {
        let f = FitSettings::default();
        assert_eq!(f.size_step_factor(512 * 512 * 61), 1.0);
        assert_eq!(f.size_step_factor(1 << 25), 1.0);
        assert!((f.size_step_factor(1 << 27) - 2.0).abs() < 1e-12);
        assert_eq!(f.size_step_factor(1 << 30), 4.0);
        assert!(EncoderSettings::from_json(r#"{"fit": {"max_size_step_factor": 0.5}}"#).is_err());
    }

    #[test]
    fn budgets_pick_their_preset() {
        let a = ArchitectureSettings::default();
        assert_eq!(a.preset_for(100_000), Preset::default());
        assert_eq!(a.preset_for(10_000).levels, 12);
        assert_eq!(a.preset_for(1_000).hidden_width, 8);
    }
}
