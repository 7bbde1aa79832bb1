// The anomaly map on the device (src/model/cdo.rs anomaly_maps_host and
// src/model/postprocess.rs gaussian_smooth_in_place): per level 1 - cos(e, a) over the
// channels, bilinear upsampling to the input size (align corners, or receptive field: see
// resize.rs Upsampling), the mean over the
// levels, then scipy's gaussian_filter (truncate 4, mode 'reflect'). Arithmetic is written
// with explicit roundings (__fadd_rn, __dmul_rn ...) so no multiply-add is contracted, as
// on the CPU.
#include "common.cuh"

// 1 - e.a / (sqrt(|e|^2 + eps^2) sqrt(|a|^2 + eps^2)) at every position of a B x C x P
// level, summed over the channels in order, in double.
extern "C" __global__ void cos_discrepancy(const float* e, const float* a, float* out, int B,
                                           int C, long long P, double eps2) {
    long long n = (long long)B * P;
    FOR_EACH(i, n) {
        long long b = i / P, p = i % P;
        const float* ep = e + b * C * P + p;
        const float* ap = a + b * C * P + p;
        double ee = 0.0, aa = 0.0, ea = 0.0;
        for (int c = 0; c < C; ++c) {
            double x = ep[(long long)c * P], y = ap[(long long)c * P];
            ee = __dadd_rn(ee, __dmul_rn(x, x));
            aa = __dadd_rn(aa, __dmul_rn(y, y));
            ea = __dadd_rn(ea, __dmul_rn(x, y));
        }
        out[i] = (float)(1.0 - ea / (sqrt(ee + eps2) * sqrt(aa + eps2)));
    }
}

// resize.rs source_coord: output o samples o (n_in - 1) / (n_out - 1) (align corners) or
// o n_in / n_out (receptive field, held past the last cell); lower index, upper index and
// the upper one's weight (computed in double, used as f32).
__device__ __forceinline__ void source_coord(int o, int n_in, int n_out, int receptive_field,
                                             int* i0, int* i1, float* f) {
    if (n_out <= 1 || n_in <= 1) {
        *i0 = 0;
        *i1 = 0;
        *f = 0.0f;
        return;
    }
    double x = receptive_field ? (double)o * (double)n_in / (double)n_out
                               : (double)o * (double)(n_in - 1) / (double)(n_out - 1);
    int x0 = min((int)floor(x), n_in - 1);
    int x1 = min(x0 + 1, n_in - 1);
    *i0 = x0;
    *i1 = x1;
    *f = x1 == x0 ? 0.0f : (float)(x - (double)x0);
}

// One level's discrepancy plane (h x w) at output (oy, ox): horizontal blends of the two
// source rows, then the vertical blend (the CPU's BilinearRows order).
__device__ __forceinline__ float bilinear_at(const float* plane, int h, int w, int out_h,
                                             int out_w, int oy, int ox, int rf) {
    int y0, y1, x0, x1;
    float fy, fx;
    source_coord(oy, h, out_h, rf, &y0, &y1, &fy);
    source_coord(ox, w, out_w, rf, &x0, &x1, &fx);
    const float* r0 = plane + (long long)y0 * w;
    const float* r1 = plane + (long long)y1 * w;
    float a = __fadd_rn(r0[x0], __fmul_rn(__fsub_rn(r0[x1], r0[x0]), fx));
    float b = __fadd_rn(r1[x0], __fmul_rn(__fsub_rn(r1[x1], r1[x0]), fx));
    return __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), fy));
}

// The raw map, B x out_h x out_w: the levels' upsampled planes added in order onto 0, then
// times 1 / levels. Up to four levels (d1..d3 unused beyond `levels`).
extern "C" __global__ void upsample_mean(const float* d0, int h0, int w0, const float* d1, int h1,
                                         int w1, const float* d2, int h2, int w2,
                                         const float* d3, int h3, int w3, int levels,
                                         float* out, int B, int out_h, int out_w,
                                         int receptive_field) {
    long long plane = (long long)out_h * out_w;
    long long n = (long long)B * plane;
    float inv = 1.0f / (float)levels;
    FOR_EACH(i, n) {
        long long b = i / plane;
        int oy = (int)((i % plane) / out_w), ox = (int)(i % out_w);
        float acc = 0.0f;
        acc = __fadd_rn(acc, bilinear_at(d0 + b * h0 * w0, h0, w0, out_h, out_w, oy, ox,
                                               receptive_field));
        if (levels > 1)
            acc = __fadd_rn(acc, bilinear_at(d1 + b * h1 * w1, h1, w1, out_h, out_w, oy, ox,
                                               receptive_field));
        if (levels > 2)
            acc = __fadd_rn(acc, bilinear_at(d2 + b * h2 * w2, h2, w2, out_h, out_w, oy, ox,
                                               receptive_field));
        if (levels > 3)
            acc = __fadd_rn(acc, bilinear_at(d3 + b * h3 * w3, h3, w3, out_h, out_w, oy, ox,
                                               receptive_field));
        out[i] = __fmul_rn(acc, inv);
    }
}

// scipy's 'reflect' (half-sample symmetric, period 2n).
__device__ __forceinline__ int reflect(int i, int n) {
    int p = 2 * n;
    int m = ((i % p) + p) % p;
    return m >= n ? p - 1 - m : m;
}

// scipy's _gaussian_kernel1d (order 0, radius r = int(4 sigma + 0.5)) into shared memory,
// normalised to sum 1; computed by the block's first thread, in the CPU's order.
__device__ void gaussian_taps(double* k, double sigma, int r) {
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int i = 0; i <= 2 * r; ++i) {
            double x = (double)(i - r);
            k[i] = exp(-0.5 / (sigma * sigma) * x * x);
            s += k[i];
        }
        for (int i = 0; i <= 2 * r; ++i) k[i] /= s;
    }
    __syncthreads();
}

// Pass 1, along rows: tmp (double) = sum_t k[t] map[y, reflect(x + t - r)].
extern "C" __global__ void gauss_rows(const float* map, double* tmp, int B, int h, int w,
                                      double sigma, int r) {
    extern __shared__ double k[];
    gaussian_taps(k, sigma, r);
    long long n = (long long)B * h * w;
    FOR_EACH(i, n) {
        int x = (int)(i % w);
        const float* row = map + (i - x);
        double acc = 0.0;
        for (int t = 0; t <= 2 * r; ++t)
            acc = __dadd_rn(acc, __dmul_rn((double)row[reflect(x + t - r, w)], k[t]));
        tmp[i] = acc;
    }
}

// Pass 2, along columns: out (f32) = sum_t k[t] tmp[reflect(y + t - r), x], rounded once.
extern "C" __global__ void gauss_cols(const double* tmp, float* out, int B, int h, int w,
                                      double sigma, int r) {
    extern __shared__ double k[];
    gaussian_taps(k, sigma, r);
    long long plane = (long long)h * w;
    long long n = (long long)B * plane;
    FOR_EACH(i, n) {
        long long b = i / plane;
        int y = (int)((i % plane) / w), x = (int)(i % w);
        const double* col = tmp + b * plane + x;
        double acc = 0.0;
        for (int t = 0; t <= 2 * r; ++t)
            acc = __dadd_rn(acc, __dmul_rn(col[(long long)reflect(y + t - r, h) * w], k[t]));
        out[i] = (float)acc;
    }
}
