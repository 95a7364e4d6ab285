// Grid encoding kernels: forward (gather + interpolation) and backward (gradient scatter),
// one thread per (sample, level): x of the launch grid runs over samples, y over levels.
// Kernel names are `grid_forward_D_F` / `grid_backward_D_F` (D axes, F features).
// Compiled without nvcc, the file instead provides `medinr_host_grid_*`, loops over the same
// per-thread bodies, for the Rust tests.

#include "grid.cuh"

#ifdef __CUDACC__

#define MEDINR_GRID_KERNELS(D, F)                                                          \
    extern "C" __global__ void grid_forward_##D##_##F(                                     \
        const GridLevel* levels, u32 n_levels, const float* table, const float* coords,    \
        u64 n, float* out) {                                                               \
        u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;                                \
        u32 l = blockIdx.y;                                                                \
        if (i >= n || l >= n_levels) return;                                               \
        grid_forward_one<D, F>(levels[l], table, coords + i * D,                           \
                               out + i * (u64)n_levels * F + (u64)l * F);                  \
    }                                                                                      \
    extern "C" __global__ void grid_backward_##D##_##F(                                    \
        const GridLevel* levels, u32 n_levels, const float* coords, const float* grad_out, \
        u64 n, float* grad_table) {                                                        \
        u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;                                \
        u32 l = blockIdx.y;                                                                \
        if (i >= n || l >= n_levels) return;                                               \
        grid_backward_one<D, F>(levels[l], coords + i * D,                                 \
                                grad_out + i * (u64)n_levels * F + (u64)l * F, grad_table);\
    }

MEDINR_GRID_KERNELS(3, 1)
MEDINR_GRID_KERNELS(3, 2)
MEDINR_GRID_KERNELS(3, 4)
MEDINR_GRID_KERNELS(3, 8)
MEDINR_GRID_KERNELS(4, 1)
MEDINR_GRID_KERNELS(4, 2)
MEDINR_GRID_KERNELS(4, 4)
MEDINR_GRID_KERNELS(4, 8)

#else

// Encodes `n` samples (`coords`: n × dims) into `out` (n × levels·features). Returns 0, or -1
// for an unsupported (dims, features).
extern "C" int medinr_host_grid_forward(const GridLevel* levels, u32 n_levels, u32 dims,
                                        u32 features, const float* table, const float* coords,
                                        u64 n, float* out) {
#define CALL(D, F)                                                                     \
    for (u64 i = 0; i < n; i++)                                                        \
        for (u32 l = 0; l < n_levels; l++)                                             \
            grid_forward_one<D, F>(levels[l], table, coords + i * D,                   \
                                   out + i * (u64)n_levels * F + (u64)l * F)
    MEDINR_DISPATCH_DF(dims, features, CALL);
#undef CALL
}

// Adds the table gradient for `grad_out` (n × levels·features) to `grad_table`, samples in
// order, then levels, then corners. Returns 0, or -1 for an unsupported (dims, features).
extern "C" int medinr_host_grid_backward(const GridLevel* levels, u32 n_levels, u32 dims,
                                         u32 features, const float* coords,
                                         const float* grad_out, u64 n, float* grad_table) {
#define CALL(D, F)                                                                     \
    for (u64 i = 0; i < n; i++)                                                        \
        for (u32 l = 0; l < n_levels; l++)                                             \
            grid_backward_one<D, F>(levels[l], coords + i * D,                         \
                                    grad_out + i * (u64)n_levels * F + (u64)l * F,     \
                                    grad_table)
    MEDINR_DISPATCH_DF(dims, features, CALL);
#undef CALL
}

#endif
