//! The PTX that `build.rs` compiled from `kernels/*.cu` with nvcc, one module per kernel file
//! and architecture.

/// One kernel file's PTX for each target architecture.
pub struct KernelModule {
    /// Module name in candle's cache of custom modules (the architecture is appended).
    pub name: &'static str,
    /// For compute capability 9.0 and newer (Hopper: H100, H200).
    pub sm_90: &'static str,
    /// For 8.x (Ampere, Ada); the driver JIT-compiles it.
    pub sm_80: &'static str,
}

macro_rules! module {
    ($name:literal) => {
        KernelModule {
            name: concat!("medinr_", $name),
            sm_90: include_str!(concat!(env!("OUT_DIR"), "/", $name, "_sm_90.ptx")),
            sm_80: include_str!(concat!(env!("OUT_DIR"), "/", $name, "_sm_80.ptx")),
        }
    };
}

/// `kernels/grid.cu`: `grid_forward_D_F`, `grid_backward_D_F`.
pub const GRID: KernelModule = module!("grid");
/// `kernels/mlp.cu`: `mlp_forward`, `mlp_backward`, `mlp_wgrad_partial`, `mlp_wgrad_reduce`.
pub const MLP: KernelModule = module!("mlp");
/// `kernels/decode.cu`: `decode_grid_D_F`, `decode_points_D_F`.
pub const DECODE: KernelModule = module!("decode");
