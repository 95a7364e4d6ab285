// The multiresolution grid encoding, one (sample, level) per thread: the arithmetic of
// src/field/hashgrid.rs and docs/FORMAT.md "Grid encoding", to the bit.
//
// Forward: cell, corner indices (dense strides or the XOR hash with fastmod), the weights over
// the axes other than x, the two x-edge sums over m in increasing order, then the blend along
// x. Backward: the full 2^D corner weights (running products in axis order, as
// `corner_weights`) times the upstream gradient, scattered into the table gradient.
#pragma once

#include "common.cuh"

// Spatial-hash primes per axis (Teschner et al. / instant-ngp).
#define MEDINR_PRIME1 2654435761u
#define MEDINR_PRIME2 805459861u
#define MEDINR_PRIME3 3674653429u

MEDINR_HD u32 hash_prime(int a) {
    return a == 0 ? 1u : a == 1 ? MEDINR_PRIME1 : a == 2 ? MEDINR_PRIME2 : MEDINR_PRIME3;
}

// Cell `c` and fraction `w` of coordinate `u` at one level: `p = u·R`,
// `c = min(trunc(p), R − 1)`, `w = p − c`.
template <int D>
MEDINR_HD void grid_cell(const GridLevel& lv, const float* u, u32* c, float* w) {
    for (int a = 0; a < D; a++) {
        float p = mul_rn(u[a], lv.resf[a]);
        c[a] = min_u32(f32_to_u32_sat(p), lv.res[a] - 1u);
        w[a] = sub_rn(p, (float)c[a]);
    }
}

// Table indices (within the level) of the cell's 2^D corners; corner k takes the upper vertex
// on axis a when bit a of k is set.
template <int D>
MEDINR_HD void grid_corner_indices(const GridLevel& lv, const u32* c, u32* index) {
    index[0] = 0u;
    int n = 1;
    for (int a = 0; a < D; a++) {
        u32 scale = lv.hashed ? hash_prime(a) : lv.strides[a];
        u32 lo = c[a] * scale;
        u32 hi = (c[a] + 1u) * scale;
        for (int k = 0; k < n; k++) {
            u32 i = index[k];
            if (lv.hashed) {
                index[k] = i ^ lo;
                index[k + n] = i ^ hi;
            } else {
                index[k] = i + lo;
                index[k + n] = i + hi;
            }
        }
        n *= 2;
    }
    if (lv.hashed) {
        for (int k = 0; k < n; k++) index[k] = fast_mod(index[k], lv.fastmod, lv.size);
    }
}

// The features interpolated over every axis but x on the cell's lower (edges[0..F]) and
// upper (edges[F..2F]) x edge: `e_s = Σ_m ρ_m · T[corner s + 2m]`, m increasing from 0,
// multiply then add, `ρ_m` the running product over axes 1.. in order.
template <int D, int F>
MEDINR_HD void grid_edges(const GridLevel& lv, const float* level, const u32* c, const float* w,
                          float* edges) {
    u32 index[1 << D];
    grid_corner_indices<D>(lv, c, index);
    float rest[1 << (D - 1)];
    rest[0] = 1.0f;
    int n = 1;
    for (int a = 1; a < D; a++) {
        for (int m = 0; m < n; m++) {
            float wm = rest[m];
            rest[m] = mul_rn(wm, sub_rn(1.0f, w[a]));
            rest[m + n] = mul_rn(wm, w[a]);
        }
        n *= 2;
    }
    for (int f = 0; f < 2 * F; f++) edges[f] = 0.0f;
    for (int m = 0; m < n; m++) {
        for (int s = 0; s < 2; s++) {
            const float* row = level + (size_t)index[s + 2 * m] * F;
            for (int f = 0; f < F; f++) {
                edges[s * F + f] = add_rn(edges[s * F + f], mul_rn(rest[m], row[f]));
            }
        }
    }
}

// `(1 − w_x)·e_0 + w_x·e_1` per feature, both products rounded before the add.
template <int F>
MEDINR_HD void grid_blend_x(const float* edges, float wx, float* out) {
    for (int f = 0; f < F; f++) {
        out[f] = add_rn(mul_rn(sub_rn(1.0f, wx), edges[f]), mul_rn(wx, edges[F + f]));
    }
}

// Forward for one sample at one level: writes the level's F features to `out`.
// `table` is the whole flat table (`entries × F`).
template <int D, int F>
MEDINR_HD void grid_forward_one(const GridLevel& lv, const float* table, const float* u,
                                float* out) {
    u32 c[D];
    float w[D];
    grid_cell<D>(lv, u, c, w);
    float edges[2 * F];
    grid_edges<D, F>(lv, table + (size_t)lv.offset * F, c, w, edges);
    grid_blend_x<F>(edges, w[0], out);
}

// Backward for one sample at one level: adds `weight_k · g[f]` to every corner's row of
// `grad_table` (the whole flat table gradient), corners in order k = 0 … 2^D − 1.
template <int D, int F>
MEDINR_HD void grid_backward_one(const GridLevel& lv, const float* u, const float* g,
                                 float* grad_table) {
    u32 c[D];
    float w[D];
    grid_cell<D>(lv, u, c, w);
    u32 index[1 << D];
    grid_corner_indices<D>(lv, c, index);
    float weight[1 << D];
    weight[0] = 1.0f;
    int n = 1;
    for (int a = 0; a < D; a++) {
        for (int k = 0; k < n; k++) {
            float wk = weight[k];
            weight[k] = mul_rn(wk, sub_rn(1.0f, w[a]));
            weight[k + n] = mul_rn(wk, w[a]);
        }
        n *= 2;
    }
    float* level = grad_table + (size_t)lv.offset * F;
    for (int k = 0; k < n; k++) {
        float* row = level + (size_t)index[k] * F;
        for (int f = 0; f < F; f++) accumulate(&row[f], mul_rn(weight[k], g[f]));
    }
}

// Calls `BODY<D, F>` (a template-name macro argument) with D ∈ {3, 4}, F ∈ {1, 2, 4, 8};
// returns 0 on success, -1 for an unsupported combination.
#define MEDINR_DISPATCH_DF(dims, features, CALL)                     \
    do {                                                             \
        if ((dims) == 3 && (features) == 1) { CALL(3, 1); return 0; } \
        if ((dims) == 3 && (features) == 2) { CALL(3, 2); return 0; } \
        if ((dims) == 3 && (features) == 4) { CALL(3, 4); return 0; } \
        if ((dims) == 3 && (features) == 8) { CALL(3, 8); return 0; } \
        if ((dims) == 4 && (features) == 1) { CALL(4, 1); return 0; } \
        if ((dims) == 4 && (features) == 2) { CALL(4, 2); return 0; } \
        if ((dims) == 4 && (features) == 4) { CALL(4, 4); return 0; } \
        if ((dims) == 4 && (features) == 8) { CALL(4, 8); return 0; } \
        return -1;                                                   \
    } while (0)
