// ReLU6 and the per-channel bias + activation epilogue (src/model/kernels/activation.rs).
#include "common.cuh"

// y = act(y + bias[c]) over an N x C x P tensor, in place.
extern "C" __global__ void bias_act_inplace(float* y, const float* bias, int C, long long P,
                                            long long n, int act) {
    FOR_EACH(i, n) {
        int c = (int)((i / P) % C);
        y[i] = apply_act(y[i] + bias[c], act);
    }
}

// out = min(max(x, 0), 6).
extern "C" __global__ void relu6_fwd(const float* x, float* out, long long n) {
    FOR_EACH(i, n) { out[i] = apply_act(x[i], ACT_RELU6); }
}

// ReLU6's backward: the gradient where 0 < x < 6, else 0.
extern "C" __global__ void relu6_bwd(const float* x, const float* g, float* out, long long n) {
    FOR_EACH(i, n) { out[i] = act_inside(x[i], ACT_RELU6) ? g[i] : 0.0f; }
}
