//! The kernels compiled for the host (see `build.rs`): the same per-thread bodies the GPU
//! runs, looped over the "threads" in order. They exist to test the kernels against the Rust
//! reference without a GPU; the Rust CPU paths stay the production code on the CPU.
//!
//! The safe wrappers check every length, because the C side trusts them.

use super::layout::{GpuLevel, GpuRegion, MlpShape};
use crate::model::GridLayout;

mod ffi {
    use super::{GpuLevel, GpuRegion, MlpShape};

    extern "C" {
        pub fn medinr_host_grid_forward(
            levels: *const GpuLevel,
            n_levels: u32,
            dims: u32,
            features: u32,
            table: *const f32,
            coords: *const f32,
            n: u64,
            out: *mut f32,
        ) -> i32;
        pub fn medinr_host_grid_backward(
            levels: *const GpuLevel,
            n_levels: u32,
            dims: u32,
            features: u32,
            coords: *const f32,
            grad_out: *const f32,
            n: u64,
            grad_table: *mut f32,
        ) -> i32;
        pub fn medinr_host_mlp_forward(
            weights: *const f32,
            shape: MlpShape,
            x: *const f32,
            n: u64,
            acts: *mut f32,
            y: *mut f32,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn medinr_host_mlp_backward(
            weights: *const f32,
            shape: MlpShape,
            x: *const f32,
            acts: *const f32,
            dy: *const f32,
            n: u64,
            chunk: u64,
            deltas: *mut f32,
            dx: *mut f32,
            partial: *mut f32,
            wgrad: *mut f32,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn medinr_host_decode_grid(
            levels: *const GpuLevel,
            n_levels: u32,
            dims: u32,
            features: u32,
            table: *const f32,
            weights: *const f32,
            hidden_width: u32,
            hidden_layers: u32,
            region: *const GpuRegion,
            n: u64,
            out: *mut f32,
        ) -> i32;
        #[allow(clippy::too_many_arguments)]
        pub fn medinr_host_decode_points(
            levels: *const GpuLevel,
            n_levels: u32,
            dims: u32,
            features: u32,
            table: *const f32,
            weights: *const f32,
            hidden_width: u32,
            hidden_layers: u32,
            coords: *const f32,
            n: u64,
            out: *mut f32,
        ) -> i32;
    }
}

/// A grid layout as the kernels take it.
pub struct HostGrid {
    levels: Vec<GpuLevel>,
    dims: usize,
    features: usize,
    table_len: usize,
}

impl HostGrid {
    pub fn new(layout: &GridLayout) -> HostGrid {
        HostGrid {
            levels: super::layout::gpu_levels(layout),
            dims: layout.dims,
            features: layout.features,
            table_len: layout.table_len(),
        }
    }

    fn width(&self) -> usize {
        self.levels.len() * self.features
    }

    fn samples(&self, coords: &[f32]) -> usize {
        assert!(
            coords.len().is_multiple_of(self.dims),
            "coordinates are rows of {}",
            self.dims
        );
        coords.len() / self.dims
    }

    /// `kernels/grid.cu` forward: `coords` (`n × dims`) into `out` (`n × width`).
    pub fn forward(&self, table: &[f32], coords: &[f32], out: &mut [f32]) {
        let n = self.samples(coords);
        assert_eq!(table.len(), self.table_len);
        assert_eq!(out.len(), n * self.width());
        // SAFETY: every buffer has the length the kernel indexes (checked above); the levels
        // come from a validated layout, so corner indices stay inside the table.
        let rc = unsafe {
            ffi::medinr_host_grid_forward(
                self.levels.as_ptr(),
                self.levels.len() as u32,
                self.dims as u32,
                self.features as u32,
                table.as_ptr(),
                coords.as_ptr(),
                n as u64,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "unsupported dims/features");
    }

    /// `kernels/grid.cu` backward: adds the table gradient for `grad_out` to `grad_table`.
    pub fn backward(&self, coords: &[f32], grad_out: &[f32], grad_table: &mut [f32]) {
        let n = self.samples(coords);
        assert_eq!(grad_out.len(), n * self.width());
        assert_eq!(grad_table.len(), self.table_len);
        // SAFETY: as in `forward`.
        let rc = unsafe {
            ffi::medinr_host_grid_backward(
                self.levels.as_ptr(),
                self.levels.len() as u32,
                self.dims as u32,
                self.features as u32,
                coords.as_ptr(),
                grad_out.as_ptr(),
                n as u64,
                grad_table.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "unsupported dims/features");
    }

    /// `kernels/decode.cu` over a box of the output grid.
    pub fn decode_grid(
        &self,
        table: &[f32],
        weights: &[f32],
        mlp: MlpShape,
        region: GpuRegion,
    ) -> Vec<f32> {
        self.check_field(table, weights, mlp);
        let n = region.voxels();
        let mut out = vec![0f32; n];
        // SAFETY: lengths checked; the kernel writes `n` outputs.
        let rc = unsafe {
            ffi::medinr_host_decode_grid(
                self.levels.as_ptr(),
                self.levels.len() as u32,
                self.dims as u32,
                self.features as u32,
                table.as_ptr(),
                weights.as_ptr(),
                mlp.hidden_width,
                mlp.hidden_layers,
                &region,
                n as u64,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "unsupported dims/features");
        out
    }

    /// `kernels/decode.cu` at arbitrary points (`coords`: `n × dims`).
    pub fn decode_points(
        &self,
        table: &[f32],
        weights: &[f32],
        mlp: MlpShape,
        coords: &[f32],
    ) -> Vec<f32> {
        self.check_field(table, weights, mlp);
        let n = self.samples(coords);
        let mut out = vec![0f32; n];
        // SAFETY: lengths checked; the kernel writes `n` outputs.
        let rc = unsafe {
            ffi::medinr_host_decode_points(
                self.levels.as_ptr(),
                self.levels.len() as u32,
                self.dims as u32,
                self.features as u32,
                table.as_ptr(),
                weights.as_ptr(),
                mlp.hidden_width,
                mlp.hidden_layers,
                coords.as_ptr(),
                n as u64,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "unsupported dims/features");
        out
    }

    fn check_field(&self, table: &[f32], weights: &[f32], mlp: MlpShape) {
        assert_eq!(table.len(), self.table_len);
        assert_eq!(mlp.in_width as usize, self.width());
        check_mlp(weights, mlp);
    }
}

fn check_mlp(weights: &[f32], mlp: MlpShape) {
    assert!(
        mlp.hidden_layers >= 1,
        "the MLP has at least one hidden layer"
    );
    let widest = mlp.in_width.max(mlp.hidden_width);
    assert!(
        widest as usize <= MAX_WIDTH,
        "layer wider than the kernels' buffers"
    );
    assert_eq!(weights.len(), mlp.weights());
}

/// `MEDINR_MAX_WIDTH` in `kernels/common.cuh`.
pub const MAX_WIDTH: usize = 256;

/// What `mlp_forward` keeps for backward.
pub struct MlpForward {
    pub y: Vec<f32>,
    /// Post-ReLU hidden activations, `n × hidden_layers·hidden_width`.
    pub acts: Vec<f32>,
}

/// `kernels/mlp.cu` forward of `x` (`n × in_width`).
pub fn mlp_forward(weights: &[f32], mlp: MlpShape, x: &[f32]) -> MlpForward {
    check_mlp(weights, mlp);
    assert!(x.len().is_multiple_of(mlp.in_width as usize));
    let n = x.len() / mlp.in_width as usize;
    let mut y = vec![0f32; n];
    let mut acts = vec![0f32; n * mlp.activations()];
    // SAFETY: lengths checked against the shape the kernel indexes with.
    unsafe {
        ffi::medinr_host_mlp_forward(
            weights.as_ptr(),
            mlp,
            x.as_ptr(),
            n as u64,
            acts.as_mut_ptr(),
            y.as_mut_ptr(),
        )
    };
    MlpForward { y, acts }
}

/// Gradients from `mlp_backward`.
pub struct MlpGradients {
    /// Gradient of the input, `n × in_width`.
    pub dx: Vec<f32>,
    /// Gradient of every weight, file order.
    pub weights: Vec<f32>,
}

/// `kernels/mlp.cu` backward for upstream gradients `dy`, with the weight gradient reduced
/// over chunks of `chunk` samples as the device does.
pub fn mlp_backward(
    weights: &[f32],
    mlp: MlpShape,
    x: &[f32],
    fwd: &MlpForward,
    dy: &[f32],
    chunk: usize,
) -> MlpGradients {
    check_mlp(weights, mlp);
    let n = dy.len();
    assert!(chunk > 0);
    assert_eq!(x.len(), n * mlp.in_width as usize);
    assert_eq!(fwd.acts.len(), n * mlp.activations());
    let mut deltas = vec![0f32; n * mlp.activations()];
    let mut dx = vec![0f32; x.len()];
    let mut partial = vec![0f32; n.div_ceil(chunk) * mlp.weights()];
    let mut wgrad = vec![0f32; mlp.weights()];
    // SAFETY: lengths checked against the shape the kernel indexes with.
    unsafe {
        ffi::medinr_host_mlp_backward(
            weights.as_ptr(),
            mlp,
            x.as_ptr(),
            fwd.acts.as_ptr(),
            dy.as_ptr(),
            n as u64,
            chunk as u64,
            deltas.as_mut_ptr(),
            dx.as_mut_ptr(),
            partial.as_mut_ptr(),
            wgrad.as_mut_ptr(),
        )
    };
    MlpGradients { dx, weights: wgrad }
}
