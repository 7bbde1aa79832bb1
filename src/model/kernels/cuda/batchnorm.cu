// Training-mode BatchNorm (src/model/kernels/batchnorm.rs) with its statistics kept on the
// device: x is B x C x P; `stats` is 3 x C (mean, 1/sqrt(var + eps), biased var).
// Per-channel reductions run one block per channel in a fixed order, in double.
#include "common.cuh"

extern "C" __global__ void bn_stats(const float* x, float* stats, int B, int C, long long P,
                                    double eps) {
    extern __shared__ double scratch[];
    int c = blockIdx.x;
    double s = 0.0, ss = 0.0;
    for (int b = 0; b < B; ++b) {
        const float* xp = x + ((long long)b * C + c) * P;
        for (long long p = threadIdx.x; p < P; p += blockDim.x) {
            double v = xp[p];
            s += v;
            ss += v * v;
        }
    }
    s = block_sum(s, scratch);
    ss = block_sum(ss, scratch);
    if (threadIdx.x == 0) {
        double n = (double)B * (double)P;
        double mean = s / n;
        double var = ss / n - mean * mean;
        if (var < 0.0) var = 0.0;
        stats[c] = (float)mean;
        stats[C + c] = (float)(1.0 / sqrt(var + eps));
        stats[2 * C + c] = (float)var;
    }
}

// y = act(gamma (x - mean) inv + beta), as scale and shift like the CPU kernel.
extern "C" __global__ void bn_forward(const float* x, const float* gamma, const float* beta,
                                      const float* stats, float* y, int C, long long P,
                                      long long n, int act) {
    FOR_EACH(i, n) {
        int c = (int)((i / P) % C);
        float scale = gamma[c] * stats[C + c];
        float shift = beta[c] - stats[c] * scale;
        y[i] = apply_act(x[i] * scale + shift, act);
    }
}

// dz = dy where the activation's output y is inside its range, else 0.
extern "C" __global__ void bn_act_grad(const float* dy, const float* y, float* dz, long long n,
                                       int act) {
    FOR_EACH(i, n) { dz[i] = act_inside(y[i], act) ? dy[i] : 0.0f; }
}

// [dbeta; dgamma] (2 x C): sums of dz and dz * x_hat per channel.
extern "C" __global__ void bn_param_grads(const float* x, const float* dz, const float* stats,
                                          float* out, int B, int C, long long P) {
    extern __shared__ double scratch[];
    int c = blockIdx.x;
    float mean = stats[c], inv = stats[C + c];
    double db = 0.0, dg = 0.0;
    for (int b = 0; b < B; ++b) {
        long long base = ((long long)b * C + c) * P;
        for (long long p = threadIdx.x; p < P; p += blockDim.x) {
            float g = dz[base + p];
            db += g;
            dg += (double)(g * ((x[base + p] - mean) * inv));
        }
    }
    db = block_sum(db, scratch);
    dg = block_sum(dg, scratch);
    if (threadIdx.x == 0) {
        out[c] = (float)db;
        out[C + c] = (float)dg;
    }
}

// dx = gamma inv (dz - dbeta / N - x_hat dgamma / N); packed is 3 x C: gamma, dbeta, dgamma.
extern "C" __global__ void bn_input_grad(const float* x, const float* dz, const float* packed,
                                         const float* stats, float* dx, int B, int C,
                                         long long P, long long n) {
    float count = (float)((double)B * (double)P);
    FOR_EACH(i, n) {
        int c = (int)((i / P) % C);
        float mean = stats[c], inv = stats[C + c];
        float k = packed[c] * inv;
        float mb = packed[C + c] / count;
        float mg = packed[2 * C + c] / count;
        dx[i] = k * (dz[i] - mb - (x[i] - mean) * inv * mg);
    }
}
