//! Random fields for the kernel tests: configurations with dense and hashed levels, 3D and
//! 4D, every feature count, and parameters large enough that the MLP's ReLUs switch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{tensor_specs, FieldConfig, Preset, TensorKind};

/// A random field: configuration and parameters in file order.
pub struct RandomField {
    pub config: FieldConfig,
    pub tensors: Vec<Vec<f32>>,
}

impl RandomField {
    /// The concatenated grid tables.
    pub fn table(&self) -> Vec<f32> {
        self.tensors[..self.config.levels()].concat()
    }

    /// The concatenated MLP weights.
    pub fn weights(&self) -> Vec<f32> {
        self.tensors[self.config.levels()..].concat()
    }
}

/// A field for a scan of `shape`, with `features` per level and a grid budget small enough
/// that the finer levels are hashed.
pub fn random_field(
    shape: [usize; 4],
    features: usize,
    hidden: (usize, usize),
    seed: u64,
) -> RandomField {
    let preset = Preset {
        levels: 5,
        features,
        base_resolution: 2,
        hidden_width: hidden.0,
        hidden_layers: hidden.1,
    };
    let config = FieldConfig::for_shape(shape, 600 * features, &preset);
    config.validate().expect("test configuration is valid");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tensors = tensor_specs(&config)
        .iter()
        .map(|spec| {
            let bound = match spec.kind {
                TensorKind::Grid(_) => 1.0,
                TensorKind::Weight(k) => (6.0 / config.mlp_layers()[k].1 as f32).sqrt(),
            };
            (0..spec.len)
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        })
        .collect();
    RandomField { config, tensors }
}

/// `n` random points in [0, 1]^dims, plus the corners 0 and 1 on every axis.
pub fn random_coords(n: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut coords: Vec<f32> = (0..n * dims)
        .map(|_| rng.random_range(0f32..=1.0))
        .collect();
    coords.extend(std::iter::repeat_n(0.0, dims));
    coords.extend(std::iter::repeat_n(1.0, dims));
    coords
}

/// Bit patterns, for exact comparisons that also tell −0 from +0.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
