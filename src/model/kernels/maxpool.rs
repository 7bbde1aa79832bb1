//! Max-pooling with overlapping windows and padding (ResNet's 3x3 / stride 2 / padding 1
//! stem pool), with a backward pass. candle's `max_pool2d` has no padding and no backward
//! for overlapping windows (kernel != stride), so ResNet apprentices could not be trained.
//!
//! PyTorch semantics: padding is -inf (never the maximum), and the gradient of each output
//! goes to the first maximum of its window in row-major order. Other devices and dtypes
//! run candle's pool on a zero-padded input, which is the same forward pass for
//! non-negative inputs (after a ReLU), without a backward.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Window geometry, shared by the forward and the backward op.
#[derive(Clone, Copy, Debug)]
struct Pool {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Pool {
    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Index (in the input plane) of the first maximum of output `(oy, ox)`'s window.
    #[inline]
    fn argmax(&self, plane: &[f32], h: usize, w: usize, oy: usize, ox: usize) -> usize {
        let y0 = (oy * self.stride) as isize - self.pad as isize;
        let x0 = (ox * self.stride) as isize - self.pad as isize;
        let (mut best, mut at) = (f32::NEG_INFINITY, usize::MAX);
        for y in y0.max(0)..(y0 + self.k as isize).min(h as isize) {
            for x in x0.max(0)..(x0 + self.k as isize).min(w as isize) {
                let i = y as usize * w + x as usize;
                let v = plane[i];
                // `>` keeps the first maximum; NaN propagates as in PyTorch.
                if at == usize::MAX || v > best || v.is_nan() && !best.is_nan() {
                    (best, at) = (v, i);
                }
            }
        }
        at
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::cpu_f32("max-pool", what, s, l)
}

struct MaxPool(Pool);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::forward(self.0, s, l)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "input")?;
        let (b, c, h, w) = l.shape().dims4()?;
        let (oh, ow) = (self.0.out_size(h), self.0.out_size(w));
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, plane)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        o[oy * ow + ox] = plane[self.0.argmax(plane, h, w, oy, ox)];
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &MaxPoolGrad(self.0))?))
    }
}

/// (input, output gradient) -> input gradient: each output's gradient added at its
/// window's first maximum.
struct MaxPoolGrad(Pool);

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "max-pool-grad"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::backward(self.0, (s1, l1), (s2, l2))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "input")?;
        let g = contiguous_f32(s2, l2, "gradient")?;
        let (b, c, h, w) = l1.shape().dims4()?;
        let (oh, ow) = (self.0.out_size(h), self.0.out_size(w));
        if l2.dims() != [b, c, oh, ow] {
            bail!("max-pool-grad: gradient {:?}, expected {:?}", l2.dims(), [b, c, oh, ow])
        }
        let mut gx = vec![0f32; b * c * h * w];
        gx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(g.par_chunks(oh * ow)))
            .for_each(|(gxp, (plane, gp))| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        gxp[self.0.argmax(plane, h, w, oy, ox)] += gp[oy * ow + ox];
                    }
                }
            });
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

/// Max-pool of a (B, C, H, W) tensor with a `k` x `k` window, `stride` and `pad` rows and
/// columns of -inf padding on each side, like `torch.nn.functional.max_pool2d`.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if k == 0 || stride == 0 || pad > k / 2 || h + 2 * pad < k || w + 2 * pad < k {
        bail!(
            "max_pool2d: window {k}, stride {stride}, padding {pad} do not fit {:?}",
            x.dims()
        )
    }
    let pool = Pool { k, stride, pad };
    if super::activation::own_device(x) {
        return x.contiguous()?.apply_op1(MaxPool(pool));
    }
    x.pad_with_zeros(2, pad, pad)?
        .pad_with_zeros(3, pad, pad)?
        .max_pool2d_with_stride(k, stride)
}

/// The CUDA launches (src/model/kernels/cuda/maxpool.cu).
#[cfg(feature = "cuda")]
mod gpu {
    use super::Pool;
    use crate::model::kernels::cuda::{elementwise, i32_of, input, kernel, launch, output};
    use candle_core::{bail, CudaStorage, Layout, Result, Shape};

    /// (B*C, H, W, OH, OW, k, stride, pad) as the kernels' ints, and the output's dims.
    fn geometry(pool: Pool, l: &Layout) -> Result<([i32; 8], [usize; 4])> {
        let (b, c, h, w) = l.shape().dims4()?;
        let (oh, ow) = (pool.out_size(h), pool.out_size(w));
        let mut args = [0i32; 8];
        for (a, v) in args
            .iter_mut()
            .zip([b * c, h, w, oh, ow, pool.k, pool.stride, pool.pad])
        {
            *a = i32_of(v)?;
        }
        Ok((args, [b, c, oh, ow]))
    }

    pub(super) fn forward(pool: Pool, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let x = input("max-pool", "input", s, l)?;
        let ([bc, h, w, oh, ow, k, st, p], dims) = geometry(pool, l)?;
        let n = dims.iter().product();
        let mut out = output(&s.device, n)?;
        let f = kernel(&s.device, "maxpool", "maxpool_fwd")?;
        launch!(f, elementwise(n); &x, &mut out, &bc, &h, &w, &oh, &ow, &k, &st, &p);
        Ok((CudaStorage::wrap_cuda_slice(out, s.device.clone()), Shape::from(dims.to_vec())))
    }

    pub(super) fn backward(
        pool: Pool,
        (xs, xl): (&CudaStorage, &Layout),
        (gs, gl): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let ([bc, h, w, oh, ow, k, st, p], dims) = geometry(pool, xl)?;
        if gl.dims() != dims {
            bail!("max-pool-grad: gradient {:?}, expected {dims:?}", gl.dims())
        }
        let x = input("max-pool-grad", "input", xs, xl)?;
        let g = input("max-pool-grad", "gradient", gs, gl)?;
        let n = xl.shape().elem_count();
        let mut gx = output(&xs.device, n)?;
        let f = kernel(&xs.device, "maxpool", "maxpool_bwd")?;
        launch!(f, elementwise(n); &x, &g, &mut gx, &bc, &h, &w, &oh, &ow, &k, &st, &p);
        Ok((CudaStorage::wrap_cuda_slice(gx, xs.device.clone()), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(dims: (usize, usize, usize, usize), seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..dims.0 * dims.1 * dims.2 * dims.3)
            .map(|_| rng.gen_range(-3.0f32..3.0))
            .collect()
    }

    #[test]
    fn forward_matches_zero_padded_pool_on_relu_output() {
        for (h, w) in [(8, 8), (7, 9), (64, 64)] {
            let dims = (2, 3, h, w);
            let x = Tensor::from_vec(random(dims, 1), dims, &Device::Cpu)
                .unwrap()
                .relu()
                .unwrap();
            let ours = max_pool2d(&x, 3, 2, 1).unwrap();
            let candle = x
                .pad_with_zeros(2, 1, 1)
                .unwrap()
                .pad_with_zeros(3, 1, 1)
                .unwrap()
                .max_pool2d_with_stride(3, 2)
                .unwrap();
            assert_eq!(ours.dims(), candle.dims(), "{h}x{w}");
            let (a, b): (Vec<f32>, Vec<f32>) = (
                ours.flatten_all().unwrap().to_vec1().unwrap(),
                candle.flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(a, b, "{h}x{w}");
        }
    }

    #[test]
    fn padding_is_minus_infinity() {
        // All negative: zero padding would win at the borders, -inf padding never does.
        let x = Tensor::new(&[[[[-1f32, -2.], [-3., -4.]]]], &Device::Cpu).unwrap();
        let y = max_pool2d(&x, 3, 2, 1).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [-1.0]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dims = (1, 2, 7, 6);
        let data = random(dims, 7);
        let x = Var::from_vec(data.clone(), dims, &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
        let wts = Tensor::from_vec(
            random((1, 2, 4, 3), 8),
            y.dims(),
            &Device::Cpu,
        )
        .unwrap();
        let loss = |t: &Tensor| -> f64 {
            (max_pool2d(t, 3, 2, 1).unwrap() * &wts)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let grads = (y * &wts).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // Random values are distinct, so the pool is differentiable at them.
        let eps = 1e-3f32;
        for i in 0..data.len() {
            let mut plus = data.clone();
            plus[i] += eps;
            let mut minus = data.clone();
            minus[i] -= eps;
            let fd = (loss(&Tensor::from_vec(plus, dims, &Device::Cpu).unwrap())
                - loss(&Tensor::from_vec(minus, dims, &Device::Cpu).unwrap()))
                / (2.0 * eps as f64);
            assert!((fd - g[i] as f64).abs() < 1e-3, "x[{i}]: fd {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_maximum() {
        let x = Var::from_vec(vec![5f32; 16], (1, 1, 4, 4), &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // Windows start at rows/columns -1 and 1: their first in-bounds cells are (0,0),
        // (0,1), (1,0) and (1,1).
        let mut want = vec![0f32; 16];
        for i in [0, 1, 4, 5] {
            want[i] = 1.0;
        }
        assert_eq!(g, want);
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&x, 3, 2, 0).is_err());
        assert!(max_pool2d(&x, 3, 0, 1).is_err());
        assert!(max_pool2d(&x, 3, 2, 2).is_err());
    }
}
