//! The grid encoding on the device, on candle storage: what the encoding op's `cuda_fwd`
//! calls. Forward writes `[n, levels·features]`; backward scatters with atomic adds into a
//! zeroed `[entries, features]` gradient (so, unlike the CPU backward, the float sum order
//! varies between runs — training does not need it bit-exact, decoding never scatters).

use candle_core::cuda::cudarc::driver::PushKernelArg;
use candle_core::{CudaStorage, Layout, Shape};

use super::launch::{config, function, view, wrap};
use super::ptx;
use crate::gpu::layout::{gpu_levels, level_bytes};
use crate::model::GridLayout;

fn rows(len: usize, width: usize, what: &str) -> candle_core::Result<usize> {
    if width == 0 || !len.is_multiple_of(width) {
        candle_core::bail!("hash-grid {what}: {len} values are not rows of {width}");
    }
    Ok(len / width)
}

/// `encode(coords [n, dims], table [entries, features]) -> [n, levels·features]` on the
/// device: the body of `HashGridEncode::cuda_fwd`.
pub fn cuda_fwd(
    layout: &GridLayout,
    coords: &CudaStorage,
    coords_layout: &Layout,
    table: &CudaStorage,
    table_layout: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = coords.device.clone();
    let coords = view(coords, coords_layout, "hash-grid coordinates")?;
    let table = view(table, table_layout, "hash-grid table")?;
    if table.len() != layout.table_len() {
        candle_core::bail!(
            "hash-grid table has {} values, layout needs {}",
            table.len(),
            layout.table_len()
        );
    }
    let n = rows(coords.len(), layout.dims, "coordinates")?;
    let width = layout.width();
    let mut out = dev.alloc_zeros::<f32>(n * width)?;
    if n > 0 {
        let levels = dev.clone_htod(&level_bytes(&gpu_levels(layout)))?;
        let name = format!("grid_forward_{}_{}", layout.dims, layout.features);
        let func = function(&dev, &ptx::GRID, &name)?;
        let (n_levels, n64) = (layout.levels.len() as u32, n as u64);
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&levels)
            .arg(&n_levels)
            .arg(&table)
            .arg(&coords)
            .arg(&n64)
            .arg(&mut out);
        // SAFETY: argument types and order match `grid_forward_D_F`; the buffers have the
        // lengths it indexes (checked above), the levels come from a validated layout.
        unsafe { b.launch(config(n, n_levels)?) }.map_err(wrap)?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev),
        Shape::from((n, width)),
    ))
}

/// `scatter(coords [n, dims], grad_out [n, levels·features]) -> grad_table [entries,
/// features]` on the device: the body of `HashGridScatter::cuda_fwd`.
pub fn cuda_bwd(
    layout: &GridLayout,
    coords: &CudaStorage,
    coords_layout: &Layout,
    grad: &CudaStorage,
    grad_layout: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = coords.device.clone();
    let coords = view(coords, coords_layout, "hash-grid coordinates")?;
    let grad = view(grad, grad_layout, "hash-grid gradient")?;
    let n = rows(coords.len(), layout.dims, "coordinates")?;
    if grad.len() != n * layout.width() {
        candle_core::bail!(
            "hash-grid gradient has {} values for {n} samples",
            grad.len()
        );
    }
    let mut grad_table = dev.alloc_zeros::<f32>(layout.table_len())?;
    if n > 0 {
        let levels = dev.clone_htod(&level_bytes(&gpu_levels(layout)))?;
        let name = format!("grid_backward_{}_{}", layout.dims, layout.features);
        let func = function(&dev, &ptx::GRID, &name)?;
        let (n_levels, n64) = (layout.levels.len() as u32, n as u64);
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&levels)
            .arg(&n_levels)
            .arg(&coords)
            .arg(&grad)
            .arg(&n64)
            .arg(&mut grad_table);
        // SAFETY: as in `cuda_fwd`, for `grid_backward_D_F`.
        unsafe { b.launch(config(n, n_levels)?) }.map_err(wrap)?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(grad_table, dev),
        Shape::from((layout.entries, layout.features)),
    ))
}
