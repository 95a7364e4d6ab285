// The field's MLP (bias-free, ReLU between layers, one linear output), one sample per thread:
// every layer's activations stay in the thread's own buffers, so a sample goes through all
// layers in one kernel ("fused", as tiny-cuda-nn's fully fused MLP; here in f32 with plain
// FMAs rather than half-precision tensor-core tiles, because decoding must be bit-exact).
//
// Weights are in file order: layer k's matrix is `outputs_k × inputs_k`, row-major, the
// matrices one after another (first hidden layer first, the 1-output layer last).
// Every output is `acc = fma(W[j][i], x[i], acc)` over i increasing from acc = 0 —
// docs/FORMAT.md "MLP", the same chain as src/decode/mod.rs.
#pragma once

#include "common.cuh"

// The widths of an MLP: `in_width` = levels × features, `hidden_layers` ≥ 1 hidden layers of
// `hidden_width`, then one output.
struct MlpShape {
    u32 in_width;
    u32 hidden_width;
    u32 hidden_layers;
};

MEDINR_HD u32 mlp_inputs(MlpShape s, u32 k) { return k == 0 ? s.in_width : s.hidden_width; }

MEDINR_HD u32 mlp_outputs(MlpShape s, u32 k) { return k < s.hidden_layers ? s.hidden_width : 1u; }

// Offset of layer k's matrix in the concatenated weights.
MEDINR_HD size_t mlp_offset(MlpShape s, u32 k) {
    if (k == 0) return 0;
    return (size_t)s.hidden_width * s.in_width +
           (size_t)(k - 1) * s.hidden_width * s.hidden_width;
}

// Total weights of all layers.
MEDINR_HD size_t mlp_weights(MlpShape s) {
    return mlp_offset(s, s.hidden_layers) + (size_t)s.hidden_width;
}

// Forward for one sample: returns the output. When `acts` is not null, the post-ReLU hidden
// activations are stored there (`hidden_layers × hidden_width`, layer-major) for backward.
MEDINR_HD float mlp_forward_one(const float* W, MlpShape s, const float* x, float* acts) {
    float a[MEDINR_MAX_WIDTH];
    float b[MEDINR_MAX_WIDTH];
    const float* in = x;
    u32 inputs = s.in_width;
    for (u32 k = 0; k < s.hidden_layers; k++) {
        float* out = (k % 2 == 0) ? a : b;
        const float* Wk = W + mlp_offset(s, k);
        for (u32 j = 0; j < s.hidden_width; j++) {
            float acc = 0.0f;
            for (u32 i = 0; i < inputs; i++) acc = fma_rn(Wk[(size_t)j * inputs + i], in[i], acc);
            out[j] = relu(acc);
            if (acts) acts[(size_t)k * s.hidden_width + j] = out[j];
        }
        in = out;
        inputs = s.hidden_width;
    }
    const float* Wo = W + mlp_offset(s, s.hidden_layers);
    float acc = 0.0f;
    for (u32 i = 0; i < inputs; i++) acc = fma_rn(Wo[i], in[i], acc);
    return acc;
}

// Backward of the data path for one sample, given its stored activations and the upstream
// gradient `dy` of the output: writes each hidden layer's pre-activation gradient
// (`deltas`, same layout as `acts`; ReLU passes where the activation is > 0, as the fused ReLU
// of src/field/activation.rs) and, when `dx` is not null, the gradient of the input.
MEDINR_HD void mlp_backward_one(const float* W, MlpShape s, const float* acts, float dy,
                                float* deltas, float* dx) {
    const u32 H = s.hidden_width;
    float g[MEDINR_MAX_WIDTH];
    float d[MEDINR_MAX_WIDTH];
    const float* Wo = W + mlp_offset(s, s.hidden_layers);
    for (u32 i = 0; i < H; i++) g[i] = mul_rn(Wo[i], dy);
    for (u32 kk = s.hidden_layers; kk > 0; kk--) {
        u32 k = kk - 1;
        for (u32 j = 0; j < H; j++) {
            d[j] = acts[(size_t)k * H + j] > 0.0f ? g[j] : 0.0f;
            deltas[(size_t)k * H + j] = d[j];
        }
        if (k == 0 && !dx) break;
        u32 inputs = mlp_inputs(s, k);
        float* into = k == 0 ? dx : g;
        const float* Wk = W + mlp_offset(s, k);
        for (u32 i = 0; i < inputs; i++) {
            float acc = 0.0f;
            for (u32 j = 0; j < H; j++) acc = fma_rn(Wk[(size_t)j * inputs + i], d[j], acc);
            into[i] = acc;
        }
    }
}

// One weight's gradient summed over samples [n0, n1): `Σ_n delta_k[n][j] · in_k[n][i]`, where
// `in_0` is the input `x`, `in_k` the activations of hidden layer k − 1, and the output
// layer's delta is `dy`. `widx` indexes the concatenated weights.
MEDINR_HD float mlp_wgrad_partial(MlpShape s, size_t widx, const float* x, const float* acts,
                                  const float* deltas, const float* dy, size_t n0, size_t n1) {
    u32 k = 0;
    while (k < s.hidden_layers && widx >= mlp_offset(s, k + 1)) k++;
    const u32 inputs = mlp_inputs(s, k);
    const size_t local = widx - mlp_offset(s, k);
    const u32 j = (u32)(local / inputs);
    const u32 i = (u32)(local % inputs);
    const size_t act_row = (size_t)s.hidden_layers * s.hidden_width;
    float acc = 0.0f;
    for (size_t n = n0; n < n1; n++) {
        float in = k == 0 ? x[n * s.in_width + i] : acts[n * act_row + (size_t)(k - 1) * s.hidden_width + i];
        float delta = k == s.hidden_layers ? dy[n] : deltas[n * act_row + (size_t)k * s.hidden_width + j];
        acc = fma_rn(delta, in, acc);
    }
    return acc;
}

// Sums the per-chunk partial gradients of weight `widx` in chunk order
// (`partial[c · total + widx]`), so the result does not depend on scheduling.
MEDINR_HD float mlp_wgrad_reduce_one(const float* partial, size_t total, u32 chunks,
                                     size_t widx) {
    float acc = 0.0f;
    for (u32 c = 0; c < chunks; c++) acc = add_rn(acc, partial[(size_t)c * total + widx]);
    return acc;
}
