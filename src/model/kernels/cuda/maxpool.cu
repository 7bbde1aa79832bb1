// Max-pooling with -inf padding and its backward (src/model/kernels/maxpool.rs): PyTorch's
// semantics, the gradient of each output going to the first maximum of its window in
// row-major order.
#include "common.cuh"

// Index in the plane of the first maximum of output (oy, ox)'s window; NaN wins, as on the
// CPU.
__device__ __forceinline__ int window_argmax(const float* plane, int H, int W, int oy, int ox,
                                             int k, int stride, int pad) {
    int y0 = oy * stride - pad, x0 = ox * stride - pad;
    float best = -INFINITY;
    int at = -1;
    for (int y = max(y0, 0); y < min(y0 + k, H); ++y) {
        for (int x = max(x0, 0); x < min(x0 + k, W); ++x) {
            int i = y * W + x;
            float v = plane[i];
            if (at < 0 || v > best || (isnan(v) && !isnan(best))) {
                best = v;
                at = i;
            }
        }
    }
    return at;
}

extern "C" __global__ void maxpool_fwd(const float* x, float* out, int BC, int H, int W,
                                       int OH, int OW, int k, int stride, int pad) {
    long long n = (long long)BC * OH * OW;
    FOR_EACH(i, n) {
        int ox = (int)(i % OW), oy = (int)((i / OW) % OH);
        const float* plane = x + (i / ((long long)OW * OH)) * H * W;
        out[i] = plane[window_argmax(plane, H, W, oy, ox, k, stride, pad)];
    }
}

// Gather form: each input position adds the gradients of the outputs whose window's first
// maximum it is, in the outputs' row-major order (the CPU kernel's order).
extern "C" __global__ void maxpool_bwd(const float* x, const float* g, float* gx, int BC, int H,
                                       int W, int OH, int OW, int k, int stride, int pad) {
    long long n = (long long)BC * H * W;
    FOR_EACH(i, n) {
        int ix = (int)(i % W), iy = (int)((i / W) % H);
        long long bc = i / ((long long)W * H);
        const float* plane = x + bc * H * W;
        const float* gp = g + bc * OH * OW;
        int me = iy * W + ix;
        // Outputs whose window [o*stride - pad, o*stride - pad + k) holds iy (and ix).
        int oy_lo = max(0, (iy + pad - k + stride) / stride);
        int oy_hi = min(OH - 1, (iy + pad) / stride);
        int ox_lo = max(0, (ix + pad - k + stride) / stride);
        int ox_hi = min(OW - 1, (ix + pad) / stride);
        float acc = 0.0f;
        for (int oy = oy_lo; oy <= oy_hi; ++oy)
            for (int ox = ox_lo; ox <= ox_hi; ++ox)
                if (window_argmax(plane, H, W, oy, ox, k, stride, pad) == me)
                    acc += gp[oy * OW + ox];
        gx[i] = acc;
    }
}
