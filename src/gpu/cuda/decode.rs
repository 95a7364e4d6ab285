//! The fused decoder on the device: a field's parameters uploaded once, then any region of any
//! output grid evaluated one voxel per thread, bit-identical to `decode::Evaluator::grid`.

use candle_core::cuda::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::CudaDevice;

use super::launch::{config, function, wrap};
use super::ptx;
use crate::decoder::Region;
use crate::gpu::layout::{gpu_levels, level_bytes, GpuRegion, MlpShape};
use crate::model::{check_tensors, FieldConfig, GridLayout};
use crate::train::TrainError as FieldError;

/// A field resident on the device.
pub struct DeviceField {
    dev: CudaDevice,
    levels: CudaSlice<u8>,
    table: CudaSlice<f32>,
    weights: CudaSlice<f32>,
    dims: usize,
    features: usize,
    n_levels: u32,
    mlp: MlpShape,
}

impl DeviceField {
    /// Uploads the parameters (file order, see `field::tensor_specs`).
    pub fn new(
        dev: &CudaDevice,
        config: &FieldConfig,
        tensors: &[Vec<f32>],
    ) -> Result<DeviceField, FieldError> {
        check_tensors(config, tensors)?;
        let layout = GridLayout::new(config);
        let levels = config.levels();
        Ok(DeviceField {
            dev: dev.clone(),
            levels: dev.clone_htod(&level_bytes(&gpu_levels(&layout)))?,
            table: dev.clone_htod(&tensors[..levels].concat())?,
            weights: dev.clone_htod(&tensors[levels..].concat())?,
            dims: config.dims,
            features: config.features,
            n_levels: levels as u32,
            mlp: MlpShape::new(config),
        })
    }

    /// Normalised values on a grid of `shape` restricted to `region`, as
    /// `decode::Evaluator::grid` returns them.
    pub fn grid(
        &self,
        shape: [usize; 4],
        region: Region,
    ) -> Result<(Vec<f32>, [usize; 4]), FieldError> {
        let Some(r) = GpuRegion::new(shape, region) else {
            return Err(candle_core::Error::Msg(format!(
                "region {region:?} is outside the grid {shape:?}"
            ))
            .into());
        };
        let n = r.voxels();
        let mut out = self.dev.alloc_zeros::<f32>(n)?;
        if n > 0 {
            let name = format!("decode_grid_{}_{}", self.dims, self.features);
            let func = function(&self.dev, &ptx::DECODE, &name)?;
            let n64 = n as u64;
            let stream = self.dev.cuda_stream();
            let mut b = stream.launch_builder(&func);
            b.arg(&self.levels)
                .arg(&self.n_levels)
                .arg(&self.table)
                .arg(&self.weights)
                .arg(&self.mlp.hidden_width)
                .arg(&self.mlp.hidden_layers)
                .arg(&r)
                .arg(&n64)
                .arg(&mut out);
            // SAFETY: argument types and order match `decode_grid_D_F`; the parameters were
            // checked against a validated configuration; `out` holds the region's voxels.
            unsafe { b.launch(config(n, 1)?) }.map_err(wrap)?;
        }
        Ok((self.dev.clone_dtoh(&out)?, r.count.map(|c| c as usize)))
    }

    /// Normalised values at `coords` (`n × dims`), as `decode::Evaluator::evaluate`.
    pub fn evaluate(&self, coords: &[f32]) -> Result<Vec<f32>, FieldError> {
        let n = coords.len() / self.dims;
        let coords = self.dev.clone_htod(&coords[..n * self.dims])?;
        let mut out = self.dev.alloc_zeros::<f32>(n)?;
        if n > 0 {
            let name = format!("decode_points_{}_{}", self.dims, self.features);
            let func = function(&self.dev, &ptx::DECODE, &name)?;
            let n64 = n as u64;
            let stream = self.dev.cuda_stream();
            let mut b = stream.launch_builder(&func);
            b.arg(&self.levels)
                .arg(&self.n_levels)
                .arg(&self.table)
                .arg(&self.weights)
                .arg(&self.mlp.hidden_width)
                .arg(&self.mlp.hidden_layers)
                .arg(&coords)
                .arg(&n64)
                .arg(&mut out);
            // SAFETY: as in `grid`, for `decode_points_D_F`.
            unsafe { b.launch(config(n, 1)?) }.map_err(wrap)?;
        }
        Ok(self.dev.clone_dtoh(&out)?)
    }
}
