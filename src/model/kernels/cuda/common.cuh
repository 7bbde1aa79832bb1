// Shared by the project's CUDA kernels (src/model/kernels/cuda/*.cu). Each kernel is the
// twin of a CPU kernel in src/model/kernels/ and follows its semantics exactly; the sums
// that the CPU runs in a fixed order run in a fixed order here too (no atomics), so a
// result does not depend on scheduling.
#pragma once

// Grid-stride loop over `n` elements.
#define FOR_EACH(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

// The activations a convolution's epilogue applies (src/model/kernels/activation.rs, Act).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_RELU6 2

// Rust's f32::max(0) / clamp(0, 6): a NaN stays NaN (fmaxf would turn it into 0).
__device__ __forceinline__ float apply_act(float v, int act) {
    if (act == ACT_RELU) return v < 0.0f ? 0.0f : v;
    if (act == ACT_RELU6) return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    return v;
}

// Where the activation passes its gradient: strictly inside its range (PyTorch's
// convention at the kinks).
__device__ __forceinline__ bool act_inside(float y, int act) {
    if (act == ACT_RELU) return y > 0.0f;
    if (act == ACT_RELU6) return y > 0.0f && y < 6.0f;
    return true;
}

// A block's sum of one double per thread, in a fixed tree order (blockDim.x a power of two,
// at most 1024). `scratch` holds blockDim.x doubles. Every thread gets the total.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) scratch[threadIdx.x] += scratch[threadIdx.x + s];
        __syncthreads();
    }
    double total = scratch[0];
    __syncthreads();
    return total;
}
