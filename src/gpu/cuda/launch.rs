//! What every launch needs: the function from the right PTX, launch shapes, error mapping,
//! and contiguous device views of candle storage.

use candle_core::cuda::cudarc::driver::{CudaFunction, CudaView, DeviceRepr, LaunchConfig};
use candle_core::{CudaDevice, CudaStorage, Layout};

use super::ptx::KernelModule;
use crate::gpu::layout::GpuRegion;

/// Threads per block for the one-thread-per-item kernels. 128 keeps several blocks per SM
/// resident even though every thread carries its layer buffers in local memory.
pub const BLOCK: u32 = 128;

// SAFETY: `GpuRegion` is `repr(C)` plain data, laid out as `struct DecodeRegion`.
unsafe impl DeviceRepr for GpuRegion {}

/// Wraps a driver error as candle's CUDA error.
pub fn wrap<E: std::error::Error + Send + Sync + 'static>(e: E) -> candle_core::Error {
    candle_core::Error::Cuda(Box::new(e))
}

/// The kernel `name` of `module`, from the PTX for the device's compute capability; launch it
/// on `dev.cuda_stream()` (candle's stream, so it is ordered with candle's own work).
pub fn function(
    dev: &CudaDevice,
    module: &KernelModule,
    name: &str,
) -> candle_core::Result<CudaFunction> {
    let (major, _) = dev
        .cuda_stream()
        .context()
        .compute_capability()
        .map_err(wrap)?;
    let (ptx, arch) = match major {
        9.. => (module.sm_90, "sm_90"),
        8 => (module.sm_80, "sm_80"),
        _ => candle_core::bail!(
            "medinr's kernels need compute capability 8.0 or newer, found {major}.x"
        ),
    };
    let func = dev.get_or_load_custom_func(name, &format!("{}_{arch}", module.name), ptx)?;
    Ok(func.into_cuda_function())
}

/// A one-dimensional launch over `n` items (`y` blocks in the second dimension).
pub fn config(n: usize, y: u32) -> candle_core::Result<LaunchConfig> {
    let blocks = n.div_ceil(BLOCK as usize);
    let Ok(blocks) = u32::try_from(blocks) else {
        candle_core::bail!("{n} items are too many for one launch");
    };
    Ok(LaunchConfig {
        grid_dim: (blocks, y, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The contiguous f32 data a layout describes, as a device view.
pub fn view<'a>(
    storage: &'a CudaStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<CudaView<'a, f32>> {
    let slice = storage.as_cuda_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}
