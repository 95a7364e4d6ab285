// MLP kernels for fitting: forward (one sample per thread, storing hidden activations),
// backward of the data path (one sample per thread: per-layer deltas and the input gradient
// for the grid's backward), and the weight gradient as a deterministic two-pass reduction
// (per-chunk partial sums, one thread per (weight, chunk), then a fixed-order sum of the
// chunks) instead of atomics, so a fit step gives the same gradient on every run.
// Compiled without nvcc, the file instead provides `medinr_host_mlp_*` for the Rust tests.

#include "mlp.cuh"

#ifdef __CUDACC__

extern "C" __global__ void mlp_forward(const float* W, u32 in_width, u32 hidden_width,
                                       u32 hidden_layers, const float* x, u64 n, float* acts,
                                       float* y) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    MlpShape s = {in_width, hidden_width, hidden_layers};
    float* a = acts ? acts + i * (u64)hidden_layers * hidden_width : 0;
    y[i] = mlp_forward_one(W, s, x + i * in_width, a);
}

extern "C" __global__ void mlp_backward(const float* W, u32 in_width, u32 hidden_width,
                                        u32 hidden_layers, const float* acts, const float* dy,
                                        u64 n, float* deltas, float* dx) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    MlpShape s = {in_width, hidden_width, hidden_layers};
    u64 row = (u64)hidden_layers * hidden_width;
    mlp_backward_one(W, s, acts + i * row, dy[i], deltas + i * row,
                     dx ? dx + i * in_width : 0);
}

// x of the launch grid: weights; y: chunks of `chunk` samples.
extern "C" __global__ void mlp_wgrad_partial(u32 in_width, u32 hidden_width, u32 hidden_layers,
                                             const float* x, const float* acts,
                                             const float* deltas, const float* dy, u64 n,
                                             u64 chunk, float* partial) {
    MlpShape s = {in_width, hidden_width, hidden_layers};
    u64 total = mlp_weights(s);
    u64 w = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u64 c = blockIdx.y;
    if (w >= total) return;
    u64 n0 = c * chunk;
    u64 n1 = n0 + chunk < n ? n0 + chunk : n;
    partial[c * total + w] = n0 < n1 ? mlp_wgrad_partial(s, w, x, acts, deltas, dy, n0, n1) : 0.0f;
}

extern "C" __global__ void mlp_wgrad_reduce(u64 total, u32 chunks, const float* partial,
                                            float* wgrad) {
    u64 w = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= total) return;
    wgrad[w] = mlp_wgrad_reduce_one(partial, total, chunks, w);
}

#else

// Forward of `n` samples; `acts` (n × hidden_layers·hidden_width) may be null.
extern "C" void medinr_host_mlp_forward(const float* W, MlpShape s, const float* x, u64 n,
                                        float* acts, float* y) {
    u64 row = (u64)s.hidden_layers * s.hidden_width;
    for (u64 i = 0; i < n; i++) y[i] = mlp_forward_one(W, s, x + i * s.in_width, acts ? acts + i * row : 0);
}

// Backward of `n` samples: deltas (n × hidden_layers·hidden_width), dx (n × in_width, may be
// null), and the weight gradient `wgrad` (all weights, file order) reduced over `chunk`-sample
// chunks exactly as the device does (`partial` holds chunks × weights floats).
extern "C" void medinr_host_mlp_backward(const float* W, MlpShape s, const float* x,
                                         const float* acts, const float* dy, u64 n, u64 chunk,
                                         float* deltas, float* dx, float* partial,
                                         float* wgrad) {
    u64 row = (u64)s.hidden_layers * s.hidden_width;
    for (u64 i = 0; i < n; i++)
        mlp_backward_one(W, s, acts + i * row, dy[i], deltas + i * row, dx ? dx + i * s.in_width : 0);
    u64 total = mlp_weights(s);
    u32 chunks = (u32)((n + chunk - 1) / chunk);
    for (u32 c = 0; c < chunks; c++) {
        u64 n0 = (u64)c * chunk;
        u64 n1 = n0 + chunk < n ? n0 + chunk : n;
        for (u64 w = 0; w < total; w++)
            partial[(u64)c * total + w] = mlp_wgrad_partial(s, w, x, acts, deltas, dy, n0, n1);
    }
    for (u64 w = 0; w < total; w++) wgrad[w] = mlp_wgrad_reduce_one(partial, total, chunks, w);
}

#endif
