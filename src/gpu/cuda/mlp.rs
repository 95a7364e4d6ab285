//! The fused MLP on the device, for fitting: forward keeps the hidden activations, backward
//! returns the input gradient (for the grid's backward) and the weight gradient.

use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView, PushKernelArg};
use candle_core::CudaDevice;

use super::launch::{config, function, wrap};
use super::ptx;
use crate::gpu::layout::MlpShape;

/// Samples summed by one thread of the weight-gradient pass: large enough that the partial
/// buffer (`⌈n / chunk⌉ × weights`) stays small, small enough that a training batch of 2^18
/// samples still gives 64 chunks × weights threads.
pub const WGRAD_CHUNK: usize = 4096;

/// Forward results kept for backward.
pub struct DeviceMlpForward {
    pub y: CudaSlice<f32>,
    /// Post-ReLU hidden activations, `n × hidden_layers·hidden_width`.
    pub acts: CudaSlice<f32>,
}

/// Gradients of one backward pass.
pub struct DeviceMlpGradients {
    /// `n × in_width`.
    pub dx: CudaSlice<f32>,
    /// Every weight, file order.
    pub weights: CudaSlice<f32>,
}

fn samples(x: &CudaView<'_, f32>, shape: MlpShape) -> candle_core::Result<usize> {
    let w = shape.in_width as usize;
    if w == 0 || !x.len().is_multiple_of(w) {
        candle_core::bail!("MLP input of {} values is not rows of {w}", x.len());
    }
    Ok(x.len() / w)
}

fn check(weights: &CudaView<'_, f32>, shape: MlpShape) -> candle_core::Result<()> {
    let widest = shape.in_width.max(shape.hidden_width) as usize;
    if shape.hidden_layers == 0 || widest > crate::gpu::host::MAX_WIDTH {
        candle_core::bail!("MLP {shape:?} is outside what the kernels support");
    }
    if weights.len() != shape.weights() {
        candle_core::bail!(
            "MLP has {} weights, {shape:?} needs {}",
            weights.len(),
            shape.weights()
        );
    }
    Ok(())
}

/// `kernels/mlp.cu` `mlp_forward` over `x` (`n × in_width`).
pub fn forward(
    dev: &CudaDevice,
    weights: &CudaView<'_, f32>,
    shape: MlpShape,
    x: &CudaView<'_, f32>,
) -> candle_core::Result<DeviceMlpForward> {
    check(weights, shape)?;
    let n = samples(x, shape)?;
    let mut y = dev.alloc_zeros::<f32>(n)?;
    let mut acts = dev.alloc_zeros::<f32>(n * shape.activations())?;
    if n > 0 {
        let func = function(dev, &ptx::MLP, "mlp_forward")?;
        let n64 = n as u64;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(weights)
            .arg(&shape.in_width)
            .arg(&shape.hidden_width)
            .arg(&shape.hidden_layers)
            .arg(x)
            .arg(&n64)
            .arg(&mut acts)
            .arg(&mut y);
        // SAFETY: argument types and order match `mlp_forward`; lengths checked above.
        unsafe { b.launch(config(n, 1)?) }.map_err(wrap)?;
    }
    Ok(DeviceMlpForward { y, acts })
}

/// `kernels/mlp.cu` backward for upstream gradients `dy` (`n`).
pub fn backward(
    dev: &CudaDevice,
    weights: &CudaView<'_, f32>,
    shape: MlpShape,
    x: &CudaView<'_, f32>,
    fwd: &DeviceMlpForward,
    dy: &CudaView<'_, f32>,
) -> candle_core::Result<DeviceMlpGradients> {
    check(weights, shape)?;
    let n = samples(x, shape)?;
    if dy.len() != n || fwd.acts.len() != n * shape.activations() {
        candle_core::bail!(
            "MLP backward: {} upstream gradients for {n} samples",
            dy.len()
        );
    }
    let mut deltas = dev.alloc_zeros::<f32>(n * shape.activations())?;
    let mut dx = dev.alloc_zeros::<f32>(n * shape.in_width as usize)?;
    let total = shape.weights();
    let mut wgrad = dev.alloc_zeros::<f32>(total)?;
    if n == 0 {
        return Ok(DeviceMlpGradients { dx, weights: wgrad });
    }
    let (n64, chunk64) = (n as u64, WGRAD_CHUNK as u64);
    let func = function(dev, &ptx::MLP, "mlp_backward")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&func);
    b.arg(weights)
        .arg(&shape.in_width)
        .arg(&shape.hidden_width)
        .arg(&shape.hidden_layers)
        .arg(&fwd.acts)
        .arg(dy)
        .arg(&n64)
        .arg(&mut deltas)
        .arg(&mut dx);
    // SAFETY: argument types and order match `mlp_backward`; lengths checked above.
    unsafe { b.launch(config(n, 1)?) }.map_err(wrap)?;

    let chunks = n.div_ceil(WGRAD_CHUNK) as u32;
    let mut partial = dev.alloc_zeros::<f32>(chunks as usize * total)?;
    let func = function(dev, &ptx::MLP, "mlp_wgrad_partial")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&func);
    b.arg(&shape.in_width)
        .arg(&shape.hidden_width)
        .arg(&shape.hidden_layers)
        .arg(x)
        .arg(&fwd.acts)
        .arg(&deltas)
        .arg(dy)
        .arg(&n64)
        .arg(&chunk64)
        .arg(&mut partial);
    // SAFETY: as above, for `mlp_wgrad_partial`; `partial` holds chunks × weights.
    unsafe { b.launch(config(total, chunks)?) }.map_err(wrap)?;

    let func = function(dev, &ptx::MLP, "mlp_wgrad_reduce")?;
    let total64 = total as u64;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&func);
    b.arg(&total64).arg(&chunks).arg(&partial).arg(&mut wgrad);
    // SAFETY: as above, for `mlp_wgrad_reduce`.
    unsafe { b.launch(config(total, 1)?) }.map_err(wrap)?;
    Ok(DeviceMlpGradients { dx, weights: wgrad })
}
