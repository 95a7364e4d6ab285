//! `FieldConfig`: everything that describes the network. It is written into every file, so a
//! decoder needs nothing else to rebuild the field.

use serde::{Deserialize, Serialize};

/// Largest number of input axes (x, y, z, t).
pub const MAX_DIMS: usize = 4;
/// Limits a decoder enforces before allocating anything a file asks for.
pub const MAX_LEVELS: usize = 32;
pub const MAX_FEATURES: usize = 8;
pub const MAX_TABLE_SIZE: u32 = 1 << 24;
pub const MAX_HIDDEN_WIDTH: usize = 256;
pub const MAX_HIDDEN_LAYERS: usize = 8;
/// At most 2^28 grid parameters (1 GiB of f32): checked before a decoder allocates tables.
pub const MAX_GRID_PARAMETERS: usize = 1 << 28;

/// Why a field configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("field has {0} input axes; only 3 (x,y,z) or 4 (x,y,z,t) are supported")]
    Dims(usize),
    #[error("field has {0} levels; 1..={MAX_LEVELS} are supported")]
    Levels(usize),
    #[error("field has {0} features per level; 1, 2, 4 or 8 are supported")]
    Features(usize),
    #[error("hash table size {0} is outside 1..={MAX_TABLE_SIZE}")]
    TableSize(u32),
    #[error("level {level} has resolution {res} on axis {axis}; it must be 1..=65535")]
    Resolution { level: usize, axis: usize, res: u32 },
    #[error("field has {0} grid parameters; at most {MAX_GRID_PARAMETERS} are supported")]
    TooLarge(usize),
    #[error("MLP of {layers} hidden layers × {width} is outside 1..={MAX_HIDDEN_LAYERS} × 1..={MAX_HIDDEN_WIDTH}")]
    Mlp { layers: usize, width: usize },
}

/// The multiresolution hash-grid encoding and the MLP behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldConfig {
    /// Input axes: 3 for a volume, 4 for a time series.
    pub dims: usize,
    /// Features stored per grid vertex at each level.
    pub features: usize,
    /// Largest number of entries one level's table may hold; levels with fewer vertices are
    /// stored densely, larger ones are hashed into exactly this many entries.
    pub table_size: u32,
    /// Cells per axis at each level, coarsest first (`resolutions[l][a]`, unused axes = 0).
    pub resolutions: Vec<[u32; MAX_DIMS]>,
    /// Width of each hidden layer of the MLP.
    pub hidden_width: usize,
    /// Number of hidden (ReLU) layers; the output layer is linear with one output.
    pub hidden_layers: usize,
}

impl FieldConfig {
    pub fn levels(&self) -> usize {
        self.resolutions.len()
    }

    /// Length of the encoded feature vector that feeds the MLP.
    pub fn encoded_width(&self) -> usize {
        self.levels() * self.features
    }

    /// Checks the bounds a decoder relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(3..=MAX_DIMS).contains(&self.dims) {
            return Err(ConfigError::Dims(self.dims));
        }
        if self.resolutions.is_empty() || self.levels() > MAX_LEVELS {
            return Err(ConfigError::Levels(self.levels()));
        }
        if !self.features.is_power_of_two() || self.features > MAX_FEATURES {
            return Err(ConfigError::Features(self.features));
        }
        if self.table_size == 0 || self.table_size > MAX_TABLE_SIZE {
            return Err(ConfigError::TableSize(self.table_size));
        }
        for (level, res) in self.resolutions.iter().enumerate() {
            for (axis, &r) in res.iter().enumerate().take(self.dims) {
                if r == 0 || r > 65535 {
                    return Err(ConfigError::Resolution {
                        level,
                        axis,
                        res: r,
                    });
                }
            }
        }
        if self.grid_parameters() > MAX_GRID_PARAMETERS {
            return Err(ConfigError::TooLarge(self.grid_parameters()));
        }
        if self.hidden_layers == 0
            || self.hidden_layers > MAX_HIDDEN_LAYERS
            || self.hidden_width == 0
            || self.hidden_width > MAX_HIDDEN_WIDTH
        {
            return Err(ConfigError::Mlp {
                layers: self.hidden_layers,
                width: self.hidden_width,
            });
        }
        Ok(())
    }

    /// Number of table entries of level `l`: all its vertices when they fit (dense), else
    /// `table_size` (hashed).
    pub fn level_entries(&self, l: usize) -> u32 {
        let vertices = self.level_vertices(l);
        if vertices <= self.table_size as u64 {
            vertices as u32
        } else {
            self.table_size
        }
    }

    /// Vertices of level `l`'s full grid: Π (res + 1).
    pub fn level_vertices(&self, l: usize) -> u64 {
        self.resolutions[l][..self.dims]
            .iter()
            .fold(1u64, |acc, &r| acc.saturating_mul(r as u64 + 1))
    }

    /// Shapes of the MLP layers as (outputs, inputs), first hidden layer first, output last.
    pub fn mlp_layers(&self) -> Vec<(usize, usize)> {
        let mut shapes = Vec::with_capacity(self.hidden_layers + 1);
        let mut inputs = self.encoded_width();
        for _ in 0..self.hidden_layers {
            shapes.push((self.hidden_width, inputs));
            inputs = self.hidden_width;
        }
        shapes.push((1, inputs));
        shapes
    }

    /// Total number of grid parameters (floats in all tables).
    pub fn grid_parameters(&self) -> usize {
        (0..self.levels())
            .map(|l| self.level_entries(l) as usize * self.features)
            .sum()
    }

    /// Total number of MLP parameters (weights; the MLP has no biases).
    pub fn mlp_parameters(&self) -> usize {
        self.mlp_layers().iter().map(|&(o, i)| o * i).sum()
    }

    /// Builds a configuration for a scan of `shape` (`[nx, ny, nz, nt]`) whose grid holds about
    /// `grid_budget` parameters. Levels grow geometrically per axis from a coarse base to the
    /// voxel grid itself (finest resolution = n − 1 cells, so voxel centres sit on vertices);
    /// the time axis of a series is capped by its frame count the same way.
    pub fn for_shape(shape: [usize; 4], grid_budget: usize, preset: &Preset) -> FieldConfig {
        FieldConfig::for_series(shape, grid_budget, preset, 0)
    }

    /// Like [`FieldConfig::for_shape`], with `static_levels` of a 4D scan's levels *static*:
    /// one cell along time (a value at the first and last frame, linear in between), their
    /// spatial resolution growing from the base to the voxel grid over those levels alone.
    /// They hold the anatomy — the temporal mean and a slow drift — at full resolution
    /// without spending table entries on time; the other levels span space and time as in
    /// the joint layout and hold what varies. Ignored for 3D scans; at most `levels − 1`.
    pub fn for_series(
        shape: [usize; 4],
        grid_budget: usize,
        preset: &Preset,
        static_levels: usize,
    ) -> FieldConfig {
        let dims = if shape[3] > 1 { 4 } else { 3 };
        let levels = preset.levels;
        let static_levels = if dims == 4 {
            static_levels.min(levels.saturating_sub(1))
        } else {
            0
        };
        let dynamic = levels - static_levels;
        let mut resolutions = vec![[0u32; MAX_DIMS]; levels];
        for (axis, &n) in shape.iter().enumerate().take(dims) {
            let finest = (n.saturating_sub(1)).clamp(1, 65535) as f64;
            let base = (preset.base_resolution as f64).min(finest);
            let (statics, dynamics) = resolutions.split_at_mut(static_levels);
            for (l, r) in geometric_resolutions(base, finest, static_levels).enumerate() {
                statics[l][axis] = if axis == 3 { 1 } else { r };
            }
            for (l, r) in geometric_resolutions(base, finest, dynamic).enumerate() {
                dynamics[l][axis] = r;
            }
        }
        let mut config = FieldConfig {
            dims,
            features: preset.features,
            table_size: 1,
            resolutions,
            hidden_width: preset.hidden_width,
            hidden_layers: preset.hidden_layers,
        };
        // Largest table size whose grid fits the budget (grid size is monotone in it).
        let (mut lo, mut hi) = (1u32, MAX_TABLE_SIZE);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            config.table_size = mid;
            if config.grid_parameters() <= grid_budget.max(1) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        config.table_size = lo;
        config
    }
}

/// `count` resolutions growing geometrically from `base` to `finest` (the last is `finest`).
fn geometric_resolutions(base: f64, finest: f64, count: usize) -> impl Iterator<Item = u32> {
    let growth = if count > 1 {
        (finest / base).powf(1.0 / (count - 1) as f64)
    } else {
        1.0
    };
    (0..count).map(move |l| {
        let r = if l + 1 == count {
            finest
        } else {
            (base * growth.powi(l as i32)).round()
        };
        r.clamp(1.0, 65535.0) as u32
    })
}

/// Architecture choices that are not derived from the scan.
/// In settings files a preset is given whole (every field), so a partial one cannot silently
/// mix two presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Grid levels, coarse to fine (1..=32).
    pub levels: usize,
    /// Features per grid vertex: 1, 2, 4 or 8.
    pub features: usize,
    /// Cells per axis of the coarsest level (at least 1; capped by the scan's own size).
    pub base_resolution: u32,
    /// Width of each hidden MLP layer (1..=256).
    pub hidden_width: usize,
    /// Hidden MLP layers (1..=8).
    pub hidden_layers: usize,
}

impl Preset {
    /// Checks the preset against the limits a decoder enforces.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            return Err(ConfigError::Levels(self.levels));
        }
        if ![1, 2, 4, 8].contains(&self.features) {
            return Err(ConfigError::Features(self.features));
        }
        if self.base_resolution == 0 || self.base_resolution > 65535 {
            return Err(ConfigError::Resolution {
                level: 0,
                axis: 0,
                res: self.base_resolution,
            });
        }
        if !(1..=MAX_HIDDEN_LAYERS).contains(&self.hidden_layers)
            || !(1..=MAX_HIDDEN_WIDTH).contains(&self.hidden_width)
        {
            return Err(ConfigError::Mlp {
                layers: self.hidden_layers,
                width: self.hidden_width,
            });
        }
        Ok(())
    }
}

impl Default for Preset {
    fn default() -> Self {
        Preset {
            levels: 16,
            features: 2,
            base_resolution: 4,
            hidden_width: 32,
            hidden_layers: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_levels_span_space_once_along_time() {
        let shape = [64, 64, 29, 260];
        let joint = FieldConfig::for_shape(shape, 500_000, &Preset::default());
        assert_eq!(
            joint,
            FieldConfig::for_series(shape, 500_000, &Preset::default(), 0)
        );
        let c = FieldConfig::for_series(shape, 500_000, &Preset::default(), 6);
        c.validate().unwrap();
        assert_eq!(c.levels(), 16);
        // Six static levels: one cell along time, space from the base to the voxel grid.
        for l in 0..6 {
            assert_eq!(c.resolutions[l][3], 1, "level {l}");
        }
        assert_eq!(c.resolutions[0][..3], [4, 4, 4]);
        assert_eq!(c.resolutions[5][..3], [63, 63, 28]);
        // Ten dynamic levels as the joint layout builds them over ten levels.
        assert_eq!(c.resolutions[6], [4, 4, 4, 4]);
        assert_eq!(c.resolutions[15], [63, 63, 28, 259]);
        assert!(c.grid_parameters() <= 500_000);
        // A 3D scan has no time: the same as the joint layout.
        let flat = [64, 64, 29, 1];
        assert_eq!(
            FieldConfig::for_series(flat, 50_000, &Preset::default(), 6),
            FieldConfig::for_shape(flat, 50_000, &Preset::default())
        );
        // Never every level static.
        let all = FieldConfig::for_series(shape, 500_000, &Preset::default(), 99);
        assert_eq!(all.resolutions[15][3], 259);
        assert_eq!(all.resolutions[14][3], 1);
    }

    #[test]
    fn resolutions_run_from_base_to_voxel_grid() {
        let c = FieldConfig::for_shape([181, 217, 181, 1], 200_000, &Preset::default());
        c.validate().unwrap();
        assert_eq!(c.dims, 3);
        assert_eq!(c.resolutions[0][..3], [4, 4, 4]);
        assert_eq!(c.resolutions[15][..3], [180, 216, 180]);
        for w in c.resolutions.windows(2) {
            assert!(w[1][0] >= w[0][0]);
        }
        assert!(c.grid_parameters() <= 200_000);
        assert!(c.grid_parameters() > 190_000, "{}", c.grid_parameters());
    }

    #[test]
    fn time_axis_is_capped_by_frame_count() {
        let c = FieldConfig::for_shape([32, 20, 12, 2], 10_000, &Preset::default());
        assert_eq!(c.dims, 4);
        assert!(c.resolutions.iter().all(|r| r[3] == 1));
    }

    #[test]
    fn coarse_levels_are_dense() {
        let c = FieldConfig::for_shape([64, 64, 64, 1], 50_000, &Preset::default());
        assert_eq!(c.level_entries(0), 125);
        assert_eq!(c.level_entries(15), c.table_size);
    }

    #[test]
    fn validate_rejects_nonsense() {
        let mut c = FieldConfig::for_shape([10, 10, 10, 1], 1000, &Preset::default());
        c.features = 3;
        assert_eq!(c.validate(), Err(ConfigError::Features(3)));
    }
}
