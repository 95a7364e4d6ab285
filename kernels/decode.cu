// The fused decode kernels: one voxel (or point) per thread, grid encoding and MLP together,
// bit-identical to `decode::Evaluator`. `decode_grid_D_F` evaluates a box of the output grid
// (x fastest), `decode_points_D_F` arbitrary coordinates.
// Compiled without nvcc, the file instead provides `medinr_host_decode_*` for the Rust tests.

#include "decode.cuh"

#ifdef __CUDACC__

#define MEDINR_DECODE_KERNELS(D, F)                                                       \
    extern "C" __global__ void decode_grid_##D##_##F(                                     \
        const GridLevel* levels, u32 n_levels, const float* table, const float* W,        \
        u32 hidden_width, u32 hidden_layers, DecodeRegion region, u64 n, float* out) {    \
        u64 v = (u64)blockIdx.x * blockDim.x + threadIdx.x;                               \
        if (v >= n) return;                                                               \
        MlpShape s = {n_levels * F, hidden_width, hidden_layers};                         \
        out[v] = decode_voxel<D, F>(levels, n_levels, table, W, s, region, v);            \
    }                                                                                     \
    extern "C" __global__ void decode_points_##D##_##F(                                   \
        const GridLevel* levels, u32 n_levels, const float* table, const float* W,        \
        u32 hidden_width, u32 hidden_layers, const float* coords, u64 n, float* out) {    \
        u64 v = (u64)blockIdx.x * blockDim.x + threadIdx.x;                               \
        if (v >= n) return;                                                               \
        MlpShape s = {n_levels * F, hidden_width, hidden_layers};                         \
        out[v] = field_eval<D, F>(levels, n_levels, table, W, s, coords + v * D);         \
    }

MEDINR_DECODE_KERNELS(3, 1)
MEDINR_DECODE_KERNELS(3, 2)
MEDINR_DECODE_KERNELS(3, 4)
MEDINR_DECODE_KERNELS(3, 8)
MEDINR_DECODE_KERNELS(4, 1)
MEDINR_DECODE_KERNELS(4, 2)
MEDINR_DECODE_KERNELS(4, 4)
MEDINR_DECODE_KERNELS(4, 8)

#else

// The `n` voxels of `region` (n = product of its counts) into `out`. Returns 0, or -1 for an
// unsupported (dims, features).
extern "C" int medinr_host_decode_grid(const GridLevel* levels, u32 n_levels, u32 dims,
                                       u32 features, const float* table, const float* W,
                                       u32 hidden_width, u32 hidden_layers,
                                       const DecodeRegion* region, u64 n, float* out) {
    MlpShape s = {n_levels * features, hidden_width, hidden_layers};
#define CALL(D, F)             \
    for (u64 v = 0; v < n; v++) \
        out[v] = decode_voxel<D, F>(levels, n_levels, table, W, s, *region, v)
    MEDINR_DISPATCH_DF(dims, features, CALL);
#undef CALL
}

// The field at `n` points (`coords`: n × dims) into `out`.
extern "C" int medinr_host_decode_points(const GridLevel* levels, u32 n_levels, u32 dims,
                                         u32 features, const float* table, const float* W,
                                         u32 hidden_width, u32 hidden_layers,
                                         const float* coords, u64 n, float* out) {
    MlpShape s = {n_levels * features, hidden_width, hidden_layers};
#define CALL(D, F)             \
    for (u64 v = 0; v < n; v++) \
        out[v] = field_eval<D, F>(levels, n_levels, table, W, s, coords + v * D)
    MEDINR_DISPATCH_DF(dims, features, CALL);
#undef CALL
}

#endif
