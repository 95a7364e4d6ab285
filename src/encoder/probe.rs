//! Judging quality quickly during the rate searches: a fixed random subset of voxels, the
//! PSNR of a (quantized) field on it, and each grid level's sensitivity.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::steps::level_scales;
use super::{EncodeError, Fit};
use crate::codec::quantize::{dequantize, quantize};
use crate::decoder::Evaluator;
use crate::metrics;
use crate::model::coords::{axis_coordinates, push_voxel_coordinates};
use crate::model::FieldConfig;
use crate::train::field::coords_tensor;
use crate::train::Field;
use crate::volume::DataType;

/// A fixed random subset of voxels used to judge quality quickly during a search.
pub(super) struct ProbeSet {
    indices: Vec<usize>,
}

impl ProbeSet {
    pub(super) fn new(shape: [usize; 4], count: usize, seed: u64) -> ProbeSet {
        let total: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9);
        let indices = if total <= count {
            (0..total).collect()
        } else {
            (0..count).map(|_| rng.random_range(0..total)).collect()
        };
        ProbeSet { indices }
    }

    /// Field coordinates of the probe voxels (`n × dims`).
    pub(super) fn coords(&self, shape: [usize; 4], dims: usize) -> Vec<f32> {
        let axes = shape.map(axis_coordinates);
        let mut out = Vec::with_capacity(self.indices.len() * dims);
        for &i in &self.indices {
            push_voxel_coordinates(i, shape, dims, &axes, &mut out);
        }
        out
    }
}

impl Fit<'_> {
    /// Relative quantization steps per grid level from each level's sensitivity: the MLP's
    /// mean squared gain for that level's features times the voxels each table entry serves
    /// (`voxels / entries`), measured on a probe of voxel centres.
    pub(super) fn level_scales(&self, field: &Field) -> Result<Vec<f32>, EncodeError> {
        let config = field.config();
        let probe = ProbeSet::new(
            self.shape,
            self.settings.rate.sensitivity_voxels,
            self.options.seed ^ 2,
        );
        let coords = probe.coords(self.shape, config.dims);
        let x = coords_tensor(coords, config.dims, field.device())?;
        let gains = field.level_gains(&x)?;
        let sensitivity: Vec<f64> = gains
            .iter()
            .enumerate()
            .map(|(l, g)| g * self.voxels() as f64 / config.level_entries(l) as f64)
            .collect();
        Ok(level_scales(&sensitivity))
    }

    /// PSNR on the probe voxels, in stored values, of the field quantized with `steps` (or
    /// as it is, with `None`).
    pub(super) fn probe_psnr(
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
        let datatype = DataType::from_nifti_code(self.datatype).ok();
        let test: Vec<f32> = predicted
            .iter()
            .zip(&probe.indices)
            .map(|(&y, &i)| self.stored_at(y, i, datatype))
            .collect();
        let reference: Vec<f32> = probe.indices.iter().map(|&i| self.data.get(i)).collect();
        Ok(metrics::psnr(&reference, &test, self.stored_range()))
    }
}
