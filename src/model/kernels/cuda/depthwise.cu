// Depthwise 2-D convolution (src/model/kernels/depthwise.rs): the forward pass with an
// optional per-channel bias and activation epilogue, the input gradient in gather form and
// the weight gradient as a per-channel reduction. x: B x C x H x W, w: C x 1 x KH x KW,
// symmetric zero padding, OH = (H + 2 pad - KH) / stride + 1.
#include "common.cuh"

// out[b,c,oy,ox] = act(sum_{ky,kx} x[b,c,oy*s+ky-pad, ox*s+kx-pad] w[c,ky,kx] + bias[c]).
// Taps are summed in row-major order, as the CPU kernel does.
extern "C" __global__ void depthwise_fwd(const float* x, const float* w, const float* bias,
                                         float* out, int B, int C, int H, int W, int KH,
                                         int KW, int stride, int pad, int OH, int OW,
                                         int has_bias, int act) {
    long long n = (long long)B * C * OH * OW;
    FOR_EACH(i, n) {
        int ox = (int)(i % OW);
        int oy = (int)((i / OW) % OH);
        long long bc = i / ((long long)OW * OH);
        int c = (int)(bc % C);
        const float* xp = x + bc * H * W;
        const float* wp = w + (long long)c * KH * KW;
        float acc = 0.0f;
        for (int ky = 0; ky < KH; ++ky) {
            int iy = oy * stride + ky - pad;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < KW; ++kx) {
                int ix = ox * stride + kx - pad;
                if (ix < 0 || ix >= W) continue;
                acc += xp[iy * W + ix] * wp[ky * KW + kx];
            }
        }
        if (has_bias) acc += bias[c];
        out[i] = apply_act(acc, act);
    }
}

// The input gradient T(g, w), gathered: each input position sums the output gradients of
// the windows that cover it (no atomics).
extern "C" __global__ void depthwise_grad_input(const float* go, const float* w, float* gx,
                                                int B, int C, int H, int W, int KH, int KW,
                                                int stride, int pad, int OH, int OW) {
    long long n = (long long)B * C * H * W;
    FOR_EACH(i, n) {
        int ix = (int)(i % W);
        int iy = (int)((i / W) % H);
        long long bc = i / ((long long)W * H);
        int c = (int)(bc % C);
        const float* gp = go + bc * OH * OW;
        const float* wp = w + (long long)c * KH * KW;
        float acc = 0.0f;
        for (int ky = 0; ky < KH; ++ky) {
            int ty = iy + pad - ky;
            if (ty < 0 || ty % stride != 0) continue;
            int oy = ty / stride;
            if (oy >= OH) continue;
            for (int kx = 0; kx < KW; ++kx) {
                int tx = ix + pad - kx;
                if (tx < 0 || tx % stride != 0) continue;
                int ox = tx / stride;
                if (ox >= OW) continue;
                acc += gp[oy * OW + ox] * wp[ky * KW + kx];
            }
        }
        gx[i] = acc;
    }
}

// The weight gradient Wg(x, g): one block per (channel, tap), summing x * g over the batch
// and the output plane in a fixed order (per-thread partial sums, then a tree), in double
// as the CPU kernel's batch sum is.
extern "C" __global__ void depthwise_grad_weight(const float* x, const float* go, float* gw,
                                                 int B, int C, int H, int W, int KH, int KW,
                                                 int stride, int pad, int OH, int OW) {
    extern __shared__ double scratch[];
    int c = blockIdx.x / (KH * KW);
    int tap = blockIdx.x % (KH * KW);
    int ky = tap / KW, kx = tap % KW;
    long long plane = (long long)OH * OW;
    double acc = 0.0;
    for (int b = 0; b < B; ++b) {
        const float* xp = x + ((long long)b * C + c) * H * W;
        const float* gp = go + ((long long)b * C + c) * plane;
        for (long long p = threadIdx.x; p < plane; p += blockDim.x) {
            int oy = (int)(p / OW), ox = (int)(p % OW);
            int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            acc += (double)xp[iy * W + ix] * (double)gp[p];
        }
    }
    double total = block_sum(acc, scratch);
    if (threadIdx.x == 0) gw[blockIdx.x] = (float)total;
}
