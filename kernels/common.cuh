// Shared by every kernel file: the host/device qualifiers and the few arithmetic primitives
// whose rounding docs/FORMAT.md prescribes.
//
// The same sources build twice: with nvcc into PTX (the GPU kernels), and with a host C++
// compiler (`-x c++ -ffp-contract=off`) into a static library that the Rust tests call, so
// every per-thread body is checked on the CPU against the Rust reference. Nothing here may
// let either compiler change the arithmetic: products and sums go through `mul_rn`/`add_rn`
// (never contracted: `__fmul_rn`/`__fadd_rn` on the device, plain operators under
// `-ffp-contract=off` on the host), and the only fused multiply-add is the explicit `fma_rn`.
#pragma once

#ifdef __CUDACC__
#define MEDINR_HD __host__ __device__ __forceinline__
#else
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#define MEDINR_HD static inline
#endif

#ifdef __CUDACC__
typedef unsigned int u32;
typedef unsigned long long u64;
#else
typedef uint32_t u32;
typedef uint64_t u64;
#endif

// Largest number of input axes (x, y, z, t), as `MAX_DIMS` in src/field/config.rs.
#define MEDINR_MAX_DIMS 4
// Largest MLP layer width (`MAX_HIDDEN_WIDTH`) and encoded width (32 levels × 8 features):
// the per-thread activation buffers are this long.
#define MEDINR_MAX_WIDTH 256

// One level of the grid, laid out as `gpu::layout::GpuLevel` on the Rust side (72 bytes,
// 8-aligned, no padding). Mirrors `field::hashgrid::LevelLayout`.
struct GridLevel {
    u32 res[MEDINR_MAX_DIMS];
    float resf[MEDINR_MAX_DIMS];
    u32 strides[MEDINR_MAX_DIMS];
    // ceil(2^64 / size): Lemire's fastmod constant.
    u64 fastmod;
    u32 size;
    u32 hashed;
    // First entry of this level in the flat table.
    u64 offset;
};

MEDINR_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

MEDINR_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

MEDINR_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

MEDINR_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

// IEEE 754 fusedMultiplyAdd in binary32: `a·b + c` rounded once.
MEDINR_HD float fma_rn(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return fmaf(a, b, c);
#endif
}

// The high 64 bits of a 64×64-bit product.
MEDINR_HD u64 mulhi64(u64 a, u64 b) {
#ifdef __CUDA_ARCH__
    return __umul64hi(a, b);
#else
    return (u64)(((unsigned __int128)a * b) >> 64);
#endif
}

// `h mod d` given `m = ceil(2^64 / d)` (Lemire, Kaser & Kurz 2019), as `fast_mod` in
// hashgrid.rs: exact for every u32 `h`.
MEDINR_HD u32 fast_mod(u32 h, u64 m, u32 d) {
    return (u32)mulhi64(m * (u64)h, (u64)d);
}

// Rust's saturating `p as u32`: truncation toward zero, NaN and negatives to 0, too large to
// u32::MAX. A plain C cast is undefined outside the range, so spell it out.
MEDINR_HD u32 f32_to_u32_sat(float p) {
    if (!(p > 0.0f)) return 0u;
    if (p >= 4294967296.0f) return 0xffffffffu;
    return (u32)p;
}

MEDINR_HD u32 min_u32(u32 a, u32 b) { return a < b ? a : b; }

// ReLU as docs/FORMAT.md states it: everything not greater than 0 (NaN included) becomes +0.
MEDINR_HD float relu(float x) { return x > 0.0f ? x : 0.0f; }

// Adds `v` to `*p`: an atomic add on the device (threads scatter into shared tables), a plain
// add on the host, where the batch wrapper runs the "threads" one after another in order.
MEDINR_HD void accumulate(float* p, float v) {
#ifdef __CUDA_ARCH__
    atomicAdd(p, v);
#else
    *p = *p + v;
#endif
}
