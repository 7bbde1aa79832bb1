//! Training-mode BatchNorm2d as dedicated CPU kernels with a hand-written backward.
//! Written with candle's broadcasting ops, every backward pass sums gradients over the
//! broadcast batch and spatial axes with a slow strided reduction: a third of all
//! training time. Here each pass walks the contiguous (B, C, H*W) planes once.
//!
//! Forward: x̂ = (x − μ) / sqrt(σ² + eps), y = γ x̂ + β (μ, σ² over batch and space).
//! Backward: dβ = Σ dy, dγ = Σ dy x̂, dx = γ / sqrt(σ² + eps) · (dy − dβ/N − x̂ dγ/N).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::activation::Act;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::cpu_f32("batchnorm", what, s, l)
}

/// (batch, channels, plane size) of a B x C x H x W layout.
fn bcp(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.shape().dims();
    if d.len() != 4 {
        candle_core::bail!("batchnorm: expected B x C x H x W, got {d:?}");
    }
    Ok((d[0], d[1], d[2] * d[3]))
}

/// Per-channel mean and 1/sqrt(var + eps) (biased variance), accumulated in f64.
fn channel_stats(x: &[f32], b: usize, c: usize, p: usize, eps: f64) -> Vec<(f32, f32, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut s, mut ss) = (0f64, 0f64);
            for bi in 0..b {
                let plane = &x[(bi * c + ch) * p..(bi * c + ch + 1) * p];
                let (mut ps, mut pss) = (0f32, 0f32);
                for &v in plane {
                    ps += v;
                    pss += v * v;
                }
                s += ps as f64;
                ss += pss as f64;
            }
            let n = (b * p) as f64;
            let mean = s / n;
            let var = (ss / n - mean * mean).max(0.0);
            (mean as f32, (1.0 / (var + eps).sqrt()) as f32, var)
        })
        .collect()
}

/// `n` floats written chunk by chunk in parallel by `fill(chunk index, chunk)`, not
/// zeroed first: at training sizes zeroing an output took as long as a pass over it.
///
/// # Safety
/// `fill` must write every value of each chunk it is given.
unsafe fn written(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, o)| fill(i, o));
    // SAFETY: every chunk was written (the caller's promise).
    out.set_len(n);
    out
}

/// A B x C x P output from `f(channel, plane index, plane)` over every (batch, channel)
/// plane in parallel.
///
/// # Safety
/// `f` must write every value of the plane it is given.
unsafe fn per_plane(
    b: usize,
    c: usize,
    p: usize,
    f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    written(b * c * p, p.max(1), |i, o| f(i % c, i, o))
}

/// Batch statistics per channel: mean, 1/sqrt(var + eps) and the biased variance. Computed
/// once per forward pass and kept in the ops, so the backward pass does not walk `x` again:
/// on the host for the CPU kernels, as the 3 x C tensor `Stats` made on a GPU (no copy to
/// the host per layer).
#[derive(Clone)]
enum BatchStats {
    Host(Vec<(f32, f32, f64)>),
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Device(Tensor),
}

impl BatchStats {
    fn host(&self) -> Result<&[(f32, f32, f64)]> {
        match self {
            BatchStats::Host(v) => Ok(v),
            BatchStats::Device(_) => candle_core::bail!("batchnorm: statistics are on a GPU"),
        }
    }
}

/// (x) -> the statistics' carrier; run once, on the host data.
struct Stats {
    eps: f64,
}

impl CustomOp1 for Stats {
    fn name(&self) -> &'static str {
        "bn-stats"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::stats(s, l, self.eps)
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, p) = bcp(l)?;
        let st = channel_stats(f32_slice(s, l, "x")?, b, c, p, self.eps);
        // 3 x C: mean, 1/sqrt(var + eps), var.
        let mut out: Vec<f32> = st.iter().map(|s| s.0).collect();
        out.extend(st.iter().map(|s| s.1));
        out.extend(st.iter().map(|s| s.2 as f32));
        Ok((CpuStorage::F32(out), Shape::from((3, c))))
    }
}

/// y = act(γ (x − μ) / σ + β) with the batch statistics.
struct Forward {
    stats: BatchStats,
    act: Act,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "bn-train"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
        bs: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::forward(&self.stats, (xs, xl), (gs, gl), (bs, bl), self.act)
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, p) = bcp(xl)?;
        let x = f32_slice(xs, xl, "x")?;
        let gamma = f32_slice(gs, gl, "weight")?;
        let beta = f32_slice(bs, bl, "bias")?;
        let st = self.stats.host()?;
        // SAFETY: each plane of p values is zipped with x's plane of p values.
        let out = unsafe {
            per_plane(b, c, p, |ch, i, o| {
                let (mean, inv, _) = st[ch];
                let scale = gamma[ch] * inv;
                let shift = beta[ch] - mean * scale;
                let xs = &x[i * p..(i + 1) * p];
                match self.act {
                    Act::None => o.iter_mut().zip(xs).for_each(|(o, &v)| {
                        o.write(v * scale + shift);
                    }),
                    Act::Relu => o.iter_mut().zip(xs).for_each(|(o, &v)| {
                        o.write((v * scale + shift).max(0.0));
                    }),
                    Act::Relu6 => o.iter_mut().zip(xs).for_each(|(o, &v)| {
                        o.write((v * scale + shift).clamp(0.0, 6.0));
                    }),
                }
            })
        };
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // Through the activation first: its derivative is 1 where the output is strictly
        // inside its range (PyTorch's convention at the kinks), else 0.
        let dz = match self.act {
            Act::None => dy,
            act => dy.apply_op2_no_bwd(y, &ActGrad(act))?,
        };
        // 2 x C: dβ, dγ.
        let param_grads = x.apply_op2_no_bwd(&dz, &ParamGrads(self.stats.clone()))?;
        let packed = Tensor::cat(&[&gamma.unsqueeze(0)?, &param_grads], 0)?;
        let dx = x.apply_op3_no_bwd(&dz, &packed, &InputGrad(self.stats.clone()))?;
        Ok((
            Some(dx),
            Some(param_grads.get(1)?),
            Some(param_grads.get(0)?),
        ))
    }
}

/// (dy, y) -> dy where the activation's output is inside its linear range, else 0.
struct ActGrad(Act);

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "bn-act-grad"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        ds: &candle_core::CudaStorage,
        dl: &Layout,
        ys: &candle_core::CudaStorage,
        yl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::act_grad((ds, dl), (ys, yl), self.0)
    }
    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dy = f32_slice(ds, dl, "grad")?;
        let y = f32_slice(ys, yl, "output")?;
        if y.len() != dy.len() {
            candle_core::bail!(
                "bn-act-grad: {} gradients for {} outputs",
                dy.len(),
                y.len()
            );
        }
        let out = match self.0 {
            Act::None => dy.to_vec(),
            Act::Relu => masked(dy, y, |v| v > 0.0),
            Act::Relu6 => masked(dy, y, |v| v > 0.0 && v < 6.0),
        };
        Ok((CpuStorage::F32(out), dl.shape().clone()))
    }
}

/// `dy` where `inside(y)`, else 0 (`dy` and `y` of one length). Generic, so the test is
/// inlined into the loop rather than called per value.
fn masked(dy: &[f32], y: &[f32], inside: impl Fn(f32) -> bool + Sync) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    // SAFETY: each chunk is zipped with dy's and y's values at the same positions, of
    // which there are as many as the chunk has (the lengths are equal).
    unsafe {
        written(dy.len(), CHUNK, |i, o| {
            let r = i * CHUNK..i * CHUNK + o.len();
            for ((o, &g), &y) in o.iter_mut().zip(&dy[r.clone()]).zip(&y[r]) {
                o.write(if inside(y) { g } else { 0.0 });
            }
        })
    }
}

/// (x, dz) -> [dβ; dγ] (2 x C).
struct ParamGrads(BatchStats);

impl CustomOp2 for ParamGrads {
    fn name(&self) -> &'static str {
        "bn-param-grads"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ds: &candle_core::CudaStorage,
        dl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::param_grads(&self.0, (xs, xl), (ds, dl))
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, p) = bcp(xl)?;
        let x = f32_slice(xs, xl, "x")?;
        let dy = f32_slice(ds, dl, "grad")?;
        let st = self.0.host()?;
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, inv, _) = st[ch];
                let (mut db, mut dg) = (0f64, 0f64);
                for bi in 0..b {
                    let r = (bi * c + ch) * p..(bi * c + ch + 1) * p;
                    let (mut pb, mut pg) = (0f32, 0f32);
                    for (&g, &v) in dy[r.clone()].iter().zip(&x[r]) {
                        pb += g;
                        pg += g * (v - mean) * inv;
                    }
                    db += pb as f64;
                    dg += pg as f64;
                }
                (db as f32, dg as f32)
            })
            .collect();
        let mut out: Vec<f32> = sums.iter().map(|s| s.0).collect();
        out.extend(sums.iter().map(|s| s.1));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// (x, dz, [γ; dβ; dγ]) -> dx.
struct InputGrad(BatchStats);

impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "bn-input-grad"
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ds: &candle_core::CudaStorage,
        dl: &Layout,
        ps: &candle_core::CudaStorage,
        pl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::input_grad(&self.0, (xs, xl), (ds, dl), (ps, pl))
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, p) = bcp(xl)?;
        let x = f32_slice(xs, xl, "x")?;
        let dy = f32_slice(ds, dl, "grad")?;
        let packed = f32_slice(ps, pl, "params")?;
        let (gamma, dbeta, dgamma) = (&packed[..c], &packed[c..2 * c], &packed[2 * c..3 * c]);
        let st = self.0.host()?;
        let n = (b * p) as f32;
        // SAFETY: each plane of p values is zipped with dy's and x's planes of p values.
        let out = unsafe {
            per_plane(b, c, p, |ch, i, o| {
                let (mean, inv, _) = st[ch];
                let k = gamma[ch] * inv;
                let mb = dbeta[ch] / n;
                let mg = dgamma[ch] / n;
                let r = i * p..(i + 1) * p;
                for ((o, &g), &v) in o.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                    o.write(k * (g - mb - (v - mean) * inv * mg));
                }
            })
        };
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// Whether the fast kernels apply (f32 on the CPU, or on CUDA in a `cuda` build);
/// elsewhere callers use tensor ops.
pub fn fast_path(x: &Tensor) -> bool {
    x.dtype() == DType::F32
        && (x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda()))
}

/// A training-mode BatchNorm pass: the output and the batch statistics.
pub struct TrainOutput {
    /// `act(BN(x))`, differentiable wrt x, weight and bias.
    pub y: Tensor,
    /// Batch mean per channel (no gradient).
    pub mean: Tensor,
    /// Biased batch variance per channel (no gradient).
    pub var: Tensor,
}

/// Training-mode BatchNorm followed by `act`, as one op: the statistics are computed once
/// (for the output, both gradients and the running averages), and the activation costs
/// neither a tensor of its own nor a node in the gradient graph.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    act: Act,
) -> Result<TrainOutput> {
    let x = x.contiguous()?;
    let st = x.apply_op1_no_bwd(&Stats { eps })?;
    let stats = if x.device().is_cpu() {
        let host = st.to_vec2::<f32>()?;
        BatchStats::Host(
            host[0]
                .iter()
                .zip(&host[1])
                .zip(&host[2])
                .map(|((&m, &i), &v)| (m, i, v as f64))
                .collect(),
        )
    } else {
        BatchStats::Device(st.clone())
    };
    let y = x.apply_op3(weight, bias, Forward { stats, act })?;
    Ok(TrainOutput {
        y,
        mean: st.get(0)?,
        var: st.get(2)?,
    })
}

/// The CUDA launches (src/model/kernels/cuda/batchnorm.cu).
#[cfg(feature = "cuda")]
mod gpu {
    use super::{bcp, Act, BatchStats};
    use crate::model::kernels::activation::act_code;
    use crate::model::kernels::cuda::{
        elementwise, i32_of, i64_of, input, kernel, launch, output, reduction,
    };
    use candle_core::{bail, CudaStorage, Layout, Result, Shape, Storage};

    type Operand<'a> = (&'a CudaStorage, &'a Layout);

    fn wrap(
        out: candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>,
        like: &CudaStorage,
    ) -> CudaStorage {
        CudaStorage::wrap_cuda_slice(out, like.device.clone())
    }

    /// Runs `f` with the device statistics' data (3 x C).
    fn with_stats<T>(
        stats: &BatchStats,
        c: usize,
        f: impl FnOnce(&candle_core::cuda_backend::cudarc::driver::CudaView<f32>) -> Result<T>,
    ) -> Result<T> {
        let BatchStats::Device(t) = stats else {
            bail!("batchnorm: statistics are on the host, the data on a GPU")
        };
        if t.dims() != [3, c] {
            bail!("batchnorm: statistics {:?} for {c} channels", t.dims())
        }
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cuda(s) = &*storage else {
            bail!("batchnorm: statistics are not on a GPU")
        };
        f(&input("batchnorm", "statistics", s, layout)?)
    }

    pub(super) fn stats(s: &CudaStorage, l: &Layout, eps: f64) -> Result<(CudaStorage, Shape)> {
        let (b, c, p) = bcp(l)?;
        let x = input("bn-stats", "x", s, l)?;
        let mut out = output(&s.device, 3 * c)?;
        let f = kernel(&s.device, "batchnorm", "bn_stats")?;
        launch!(f, reduction(c); &x, &mut out, &i32_of(b)?, &i32_of(c)?, &i64_of(p), &eps);
        Ok((wrap(out, s), Shape::from((3, c))))
    }

    pub(super) fn forward(
        stats: &BatchStats,
        (xs, xl): Operand,
        (gs, gl): Operand,
        (bs, bl): Operand,
        act: Act,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, p) = bcp(xl)?;
        let n = xl.shape().elem_count();
        let x = input("bn-train", "x", xs, xl)?;
        let gamma = input("bn-train", "weight", gs, gl)?;
        let beta = input("bn-train", "bias", bs, bl)?;
        let mut y = output(&xs.device, n)?;
        let f = kernel(&xs.device, "batchnorm", "bn_forward")?;
        with_stats(stats, c, |st| {
            launch!(f, elementwise(n); &x, &gamma, &beta, st, &mut y, &i32_of(c)?, &i64_of(p),
                &i64_of(n), &act_code(act));
            Ok(())
        })?;
        Ok((wrap(y, xs), xl.shape().clone()))
    }

    pub(super) fn act_grad(
        (ds, dl): Operand,
        (ys, yl): Operand,
        act: Act,
    ) -> Result<(CudaStorage, Shape)> {
        let n = dl.shape().elem_count();
        if yl.shape().elem_count() != n {
            bail!("bn-act-grad: {n} gradients for {:?} outputs", yl.dims())
        }
        let dy = input("bn-act-grad", "grad", ds, dl)?;
        let y = input("bn-act-grad", "output", ys, yl)?;
        let mut dz = output(&ds.device, n)?;
        let f = kernel(&ds.device, "batchnorm", "bn_act_grad")?;
        launch!(f, elementwise(n); &dy, &y, &mut dz, &i64_of(n), &act_code(act));
        Ok((wrap(dz, ds), dl.shape().clone()))
    }

    pub(super) fn param_grads(
        stats: &BatchStats,
        (xs, xl): Operand,
        (ds, dl): Operand,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, p) = bcp(xl)?;
        let x = input("bn-param-grads", "x", xs, xl)?;
        let dz = input("bn-param-grads", "grad", ds, dl)?;
        let mut out = output(&xs.device, 2 * c)?;
        let f = kernel(&xs.device, "batchnorm", "bn_param_grads")?;
        with_stats(stats, c, |st| {
            launch!(f, reduction(c); &x, &dz, st, &mut out, &i32_of(b)?, &i32_of(c)?,
                &i64_of(p));
            Ok(())
        })?;
        Ok((wrap(out, xs), Shape::from((2, c))))
    }

    pub(super) fn input_grad(
        stats: &BatchStats,
        (xs, xl): Operand,
        (ds, dl): Operand,
        (ps, pl): Operand,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, p) = bcp(xl)?;
        let n = xl.shape().elem_count();
        let x = input("bn-input-grad", "x", xs, xl)?;
        let dz = input("bn-input-grad", "grad", ds, dl)?;
        let packed = input("bn-input-grad", "params", ps, pl)?;
        let mut dx = output(&xs.device, n)?;
        let f = kernel(&xs.device, "batchnorm", "bn_input_grad")?;
        with_stats(stats, c, |st| {
            launch!(f, elementwise(n); &x, &dz, &packed, st, &mut dx, &i32_of(b)?, &i32_of(c)?,
                &i64_of(p), &i64_of(n));
            Ok(())
        })?;
        Ok((wrap(dx, xs), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs_diff;
    use candle_core::{Device, Var};

    /// The same layer with candle's tensor ops, as the reference.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let c = w.dim(0).unwrap();
        let mean = x
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let var = centred
            .sqr()
            .unwrap()
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap();
        centred
            .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&w.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    }

    #[test]
    fn forward_backward_and_stats_match_tensor_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0.5f32, 2., (3, 5, 6, 7), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 5, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 5, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1., (3, 5, 6, 7), &dev).unwrap();
        let eps = 1e-3;
        for act in [Act::None, Act::Relu, Act::Relu6] {
            let out =
                batch_norm_train(x.as_tensor(), w.as_tensor(), b.as_tensor(), eps, act).unwrap();
            let theirs = act
                .apply(&reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), eps))
                .unwrap();
            assert!(max_abs_diff(&out.y, &theirs) < 1e-5, "{act:?}");
            let g1 = (&out.y * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &w, &b] {
                let d = max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-4, "{act:?}: gradient differs by {d}");
            }
            let rmean = x
                .as_tensor()
                .transpose(0, 1)
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .mean(1)
                .unwrap();
            let rvar = x
                .as_tensor()
                .transpose(0, 1)
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .broadcast_sub(&rmean.unsqueeze(1).unwrap())
                .unwrap()
                .sqr()
                .unwrap()
                .mean(1)
                .unwrap();
            assert!(max_abs_diff(&out.mean, &rmean) < 1e-5 && max_abs_diff(&out.var, &rvar) < 1e-4);
            assert!(!out.mean.track_op() && !out.var.track_op());
        }
    }
}
