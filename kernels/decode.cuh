// The fused decoder: one voxel per thread, grid encoding then MLP, reproducing
// `decode::Evaluator` bit for bit (docs/FORMAT.md "Evaluating the field").
#pragma once

#include "grid.cuh"
#include "mlp.cuh"

// A box of the output grid, as `decode::Region` resolves it: the whole grid has `shape`
// (`[nx, ny, nz, nt]`), the box starts at `start` and spans `count` voxels per axis; voxels are
// numbered x fastest. Laid out as `gpu::layout::GpuRegion`.
struct DecodeRegion {
    u32 shape[4];
    u32 start[4];
    u32 count[4];
};

// The field at one point `u` (D coordinates in [0, 1]).
template <int D, int F>
MEDINR_HD float field_eval(const GridLevel* levels, u32 n_levels, const float* table,
                           const float* W, MlpShape s, const float* u) {
    float z[MEDINR_MAX_WIDTH];
    for (u32 l = 0; l < n_levels; l++) grid_forward_one<D, F>(levels[l], table, u, z + l * F);
    return mlp_forward_one(W, s, z, 0);
}

// Coordinate of voxel i on an axis of n voxels: `f32(i) / f32(n − 1)`, 0 when n = 1.
MEDINR_HD float axis_coordinate(u32 i, u32 n) {
    return n <= 1u ? 0.0f : div_rn((float)i, (float)(n - 1u));
}

// The field at voxel `v` (x fastest) of `region`.
template <int D, int F>
MEDINR_HD float decode_voxel(const GridLevel* levels, u32 n_levels, const float* table,
                             const float* W, MlpShape s, const DecodeRegion& r, u64 v) {
    float u[MEDINR_MAX_DIMS];
    for (int a = 0; a < D; a++) {
        u32 i = r.start[a] + (u32)(v % r.count[a]);
        v /= r.count[a];
        u[a] = axis_coordinate(i, r.shape[a]);
    }
    return field_eval<D, F>(levels, n_levels, table, W, s, u);
}
