//! ReLU6 as one elementwise pass. candle's `clamp` is a maximum then a minimum against
//! broadcast scalars, and its backward builds comparison masks for each: several
//! full-size temporaries per activation, which dominated EfficientNet training time.

use candle_core::{CpuStorage, CustomOp1, InplaceOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct Relu6;
/// d relu6(x) / dx: 1 inside (0, 6), else 0.
struct Relu6Grad;

fn map_f32(
    storage: &CpuStorage,
    layout: &Layout,
    f: impl Fn(f32) -> f32 + Sync,
) -> Result<(CpuStorage, Shape)> {
    let data = super::cpu_f32("relu6", "input", storage, layout)?;
    let out: Vec<f32> = data.iter().map(|&v| f(v)).collect();
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

impl CustomOp1 for Relu6 {
    fn name(&self) -> &'static str {
        "relu6"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(s, l, |v| v.clamp(0.0, 6.0))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::relu6(s, l)
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        if arg.device().is_cuda() {
            // One kernel: the gradient where 0 < x < 6.
            let grad = grad_res.contiguous()?;
            return Ok(Some(arg.apply_op2_no_bwd(&grad, &Relu6Backward)?));
        }
        let mask = arg.apply_op1_no_bwd(&Relu6Grad)?;
        Ok(Some(grad_res.mul(&mask)?))
    }
}

/// (x, grad) -> grad where 0 < x < 6, else 0: ReLU6's backward as one pass (on CUDA; the
/// CPU keeps its mask and product, and this is its twin for the parity test).
pub(crate) struct Relu6Backward;

impl candle_core::CustomOp2 for Relu6Backward {
    fn name(&self) -> &'static str {
        "relu6-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = super::cpu_f32("relu6-backward", "input", s1, l1)?;
        let g = super::cpu_f32("relu6-backward", "gradient", s2, l2)?;
        if x.len() != g.len() {
            candle_core::bail!(
                "relu6-backward: {} gradients for {} inputs",
                g.len(),
                x.len()
            );
        }
        let out = x
            .iter()
            .zip(g)
            .map(|(&v, &g)| if v > 0.0 && v < 6.0 { g } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::relu6_backward((s1, l1), (s2, l2))
    }
}

impl CustomOp1 for Relu6Grad {
    fn name(&self) -> &'static str {
        "relu6-grad"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(s, l, |v| if v > 0.0 && v < 6.0 { 1.0 } else { 0.0 })
    }
}

/// Whether the hand-written kernels run `x`: f32 on the CPU, or on CUDA in a `cuda` build.
pub(crate) fn own_device(x: &Tensor) -> bool {
    x.dtype() == candle_core::DType::F32
        && (x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda()))
}

/// min(max(x, 0), 6), differentiable; other devices and dtypes use candle's clamp.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    if own_device(x) {
        x.contiguous()?.apply_op1(Relu6)
    } else {
        x.clamp(0f32, 6f32)
    }
}

/// The activation that follows a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Relu6,
}

impl Act {
    /// The activation as candle ops (differentiable, any device).
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::None => Ok(x.clone()),
            Act::Relu => x.relu(),
            Act::Relu6 => relu6(x),
        }
    }
}

/// Per-channel bias (N x C x H x W) and activation in one pass, for frozen networks.
/// Separately they are two full passes over the activation, each writing a new tensor;
/// in place (`bias_act_in_place`) the pass also allocates nothing.
struct BiasAct {
    bias: Vec<f32>,
    act: Act,
}

impl BiasAct {
    /// The plane size, after checking that `l` is an N x C x H x W layout whose C matches
    /// the biases.
    fn plane(&self, l: &Layout) -> Result<usize> {
        let (_, c, h, w) = l.shape().dims4()?;
        if c != self.bias.len() || h * w == 0 {
            candle_core::bail!(
                "bias-act: {:?} does not fit {} biases",
                l.dims(),
                self.bias.len()
            );
        }
        Ok(h * w)
    }

    /// One plane of channel `ch`.
    fn apply_plane(&self, ch: usize, plane: &mut [f32]) {
        apply_plane(self.bias[ch % self.bias.len()], self.act, plane)
    }
}

/// One plane plus its channel's bias `bv`, then the activation: the same operations as
/// `x + b` then the activation, so results are bit-identical to the unfused ops.
fn apply_plane(bv: f32, act: Act, plane: &mut [f32]) {
    match act {
        Act::None => plane.iter_mut().for_each(|v| *v += bv),
        Act::Relu => plane.iter_mut().for_each(|v| *v = (*v + bv).max(0.0)),
        Act::Relu6 => plane
            .iter_mut()
            .for_each(|v| *v = (*v + bv).clamp(0.0, 6.0)),
    }
}

/// `bias_act` over an N x C x P buffer (`plane` = P values per channel plane), in parallel.
pub(crate) fn bias_act_planes(data: &mut [f32], bias: &[f32], plane: usize, act: Act) {
    if bias.is_empty() || plane == 0 {
        return;
    }
    data.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, p)| apply_plane(bias[i % bias.len()], act, p));
}

/// The activation's code in the CUDA kernels (common.cuh: ACT_NONE, ACT_RELU, ACT_RELU6).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn act_code(act: Act) -> i32 {
    match act {
        Act::None => 0,
        Act::Relu => 1,
        Act::Relu6 => 2,
    }
}

/// (y, bias) -> y = act(y + bias) in place, the bias a tensor on y's device: the CUDA
/// epilogue of a frozen layer (the CPU copies the C biases to the host instead).
struct BiasActDevice(Act);

impl candle_core::InplaceOp2 for BiasActDevice {
    fn name(&self) -> &'static str {
        "bias-act-device"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let bias = super::cpu_f32("bias-act", "bias", s2, l2)?.to_vec();
        let op = BiasAct { bias, act: self.0 };
        let plane = op.plane(l1)?;
        bias_act_planes(
            super::cpu_f32_mut("bias-act", "input", s1, l1)?,
            &op.bias,
            plane,
            op.act,
        );
        Ok(())
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        gpu::bias_act_in_place((s1, l1), (s2, l2), self.0)
    }
}

impl CustomOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = super::cpu_f32("bias-act", "input", s, l)?;
        let plane = self.plane(l)?;
        let mut out = data.to_vec();
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, p)| self.apply_plane(i, p));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

impl InplaceOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act-in-place"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let data = super::cpu_f32_mut("bias-act", "input", s, l)?;
        let plane = self.plane(l)?;
        data.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, p)| self.apply_plane(i, p));
        Ok(())
    }
}

/// Whether `bias_act` can run fused: CPU f32, 4-D, nothing to differentiate.
fn fusable(y: &Tensor, bias: &Tensor) -> bool {
    y.device().is_cpu() && fusable_on_device(y, bias)
}

/// [`fusable`] but on y's own device: f32, 4-D, nothing to differentiate.
fn fusable_on_device(y: &Tensor, bias: &Tensor) -> bool {
    y.dtype() == candle_core::DType::F32
        && bias.dtype() == candle_core::DType::F32
        && y.rank() == 4
        && !y.track_op()
        && !bias.track_op()
}

fn unfused(y: &Tensor, bias: &Tensor, act: Act) -> Result<Tensor> {
    act.apply(&y.broadcast_add(&bias.reshape((1, bias.dim(0)?, 1, 1))?)?)
}

/// `act(y + bias)` with the bias broadcast over channels (dim 1). One fused pass on the
/// CPU when nothing needs a gradient; candle's ops otherwise.
pub fn bias_act(y: &Tensor, bias: &Tensor, act: Act) -> Result<Tensor> {
    if fusable(y, bias) {
        let op = BiasAct {
            bias: bias.to_vec1::<f32>()?,
            act,
        };
        return y.contiguous()?.apply_op1_no_bwd(&op);
    }
    unfused(y, bias, act)
}

/// `bias_act` written over `y`'s own storage when it can run fused and `y` is contiguous:
/// no new buffer, which for a network's large activations saves an allocation, its
/// zeroing and a pass of memory traffic per layer. `y` must be a layer's fresh output that
/// nothing else holds (a view of another tensor would see the change).
pub fn bias_act_in_place(y: Tensor, bias: &Tensor, act: Act) -> Result<Tensor> {
    if cfg!(feature = "cuda")
        && y.device().is_cuda()
        && fusable_on_device(&y, bias)
        && y.is_contiguous()
        && bias.dims() == [y.dim(1)?]
    {
        y.inplace_op2(&bias.contiguous()?, &BiasActDevice(act))?;
        return Ok(y);
    }
    if fusable(&y, bias) && y.is_contiguous() {
        let op = BiasAct {
            bias: bias.to_vec1::<f32>()?,
            act,
        };
        y.inplace_op1(&op)?;
        return Ok(y);
    }
    bias_act(&y, bias, act)
}

/// The CUDA launches (src/model/kernels/cuda/activation.cu).
#[cfg(feature = "cuda")]
mod gpu {
    use super::Act;
    use crate::model::kernels::cuda::{elementwise, i32_of, i64_of, input, kernel, launch, output};
    use candle_core::{bail, CudaStorage, Layout, Result, Shape};

    pub(super) fn relu6(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let x = input("relu6", "input", s, l)?;
        let n = l.shape().elem_count();
        let mut out = output(&s.device, n)?;
        let f = kernel(&s.device, "activation", "relu6_fwd")?;
        launch!(f, elementwise(n); &x, &mut out, &i64_of(n));
        Ok((
            CudaStorage::wrap_cuda_slice(out, s.device.clone()),
            l.shape().clone(),
        ))
    }

    pub(super) fn relu6_backward(
        (xs, xl): (&CudaStorage, &Layout),
        (gs, gl): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let x = input("relu6-backward", "input", xs, xl)?;
        let g = input("relu6-backward", "gradient", gs, gl)?;
        let n = xl.shape().elem_count();
        if gl.shape().elem_count() != n {
            bail!(
                "relu6-backward: gradient {:?} for input {:?}",
                gl.dims(),
                xl.dims()
            )
        }
        let mut out = output(&xs.device, n)?;
        let f = kernel(&xs.device, "activation", "relu6_bwd")?;
        launch!(f, elementwise(n); &x, &g, &mut out, &i64_of(n));
        Ok((
            CudaStorage::wrap_cuda_slice(out, xs.device.clone()),
            xl.shape().clone(),
        ))
    }

    pub(super) fn bias_act_in_place(
        (ys, yl): (&mut CudaStorage, &Layout),
        (bs, bl): (&CudaStorage, &Layout),
        act: Act,
    ) -> Result<()> {
        let (_, c, h, w) = yl.shape().dims4()?;
        if bl.dims() != [c] {
            bail!(
                "bias-act: {:?} does not fit {:?} biases",
                yl.dims(),
                bl.dims()
            )
        }
        let n = yl.shape().elem_count();
        let bias = input("bias-act", "bias", bs, bl)?;
        let Some((start, end)) = yl.contiguous_offsets() else {
            bail!("bias-act: the output must be contiguous")
        };
        let dev = ys.device.clone();
        let mut y = ys.as_cuda_slice_mut::<f32>()?.slice_mut(start..end);
        let f = kernel(&dev, "activation", "bias_act_inplace")?;
        let code = super::act_code(act);
        launch!(f, elementwise(n); &mut y, &bias, &i32_of(c)?, &i64_of(h * w), &i64_of(n),
            &code);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{max_abs_diff, values};
    use candle_core::{DType, Device, Var};

    /// The CPU twins of the CUDA-only ops: ReLU6's one-pass backward against the mask
    /// and product, and the in-place bias with the bias as a tensor against bias_act.
    #[test]
    fn relu6_backward_and_device_bias_twins() {
        let x: Vec<f32> = (0..2 * 3 * 5 * 4)
            .map(|i| (i as f32 * 0.37).sin() * 9.0)
            .collect();
        let x = Tensor::from_vec(x, (2, 3, 5, 4), &Device::Cpu).unwrap();
        let g = (x.cos().unwrap() * 3.0).unwrap();
        let one_pass = x.apply_op2_no_bwd(&g, &Relu6Backward).unwrap();
        let masked = g.mul(&x.apply_op1_no_bwd(&Relu6Grad).unwrap()).unwrap();
        assert_eq!(max_abs_diff(&one_pass, &masked), 0.0);
        let b = Tensor::new(&[0.5f32, -1.25, 3.0], &Device::Cpu).unwrap();
        for act in [Act::None, Act::Relu, Act::Relu6] {
            let y = x.copy().unwrap();
            y.inplace_op2(&b, &BiasActDevice(act)).unwrap();
            assert_eq!(
                max_abs_diff(&y, &bias_act(&x, &b, act).unwrap()),
                0.0,
                "{act:?}"
            );
        }
    }

    #[test]
    fn fused_bias_act_is_bit_identical() {
        let data: Vec<f32> = (0..2 * 3 * 5 * 4)
            .map(|i| (i as f32 * 0.37).sin() * 9.0)
            .collect();
        let y = Tensor::from_vec(data, (2, 3, 5, 4), &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.5f32, -1.25, 3.0], &Device::Cpu).unwrap();
        for act in [Act::None, Act::Relu, Act::Relu6] {
            let fused = bias_act(&y, &b, act).unwrap();
            let plain = act
                .apply(&y.broadcast_add(&b.reshape((1, 3, 1, 1)).unwrap()).unwrap())
                .unwrap();
            let (f, p): (Vec<f32>, Vec<f32>) = (
                fused.flatten_all().unwrap().to_vec1().unwrap(),
                plain.flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(f, p, "{act:?}");
            // In place on a fresh copy: the same values, and in that copy's own storage.
            let fresh = (&y * 1.0).unwrap();
            let in_place = bias_act_in_place(fresh.clone(), &b, act).unwrap();
            let q: Vec<f32> = in_place.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(q, p, "{act:?} in place");
            let f2: Vec<f32> = fresh.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(f2, p, "{act:?} wrote over the given tensor");
        }
        // A non-contiguous input is not written over: the copying path runs instead.
        let t = y.transpose(2, 3).unwrap();
        let before: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let out = bias_act_in_place(t.clone(), &b, Act::Relu).unwrap();
        let after: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(before, after);
        let expected = Act::Relu
            .apply(&t.broadcast_add(&b.reshape((1, 3, 1, 1)).unwrap()).unwrap())
            .unwrap();
        assert_eq!(
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            expected.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        // With a gradient to track, candle's differentiable ops are used: the same values,
        // and d/dy of sum(relu6(y + b)) is 1 where 0 < y + b < 6, else 0.
        let v = Var::from_tensor(&y).unwrap();
        let out = bias_act(v.as_tensor(), &b, Act::Relu6).unwrap();
        assert_eq!(values(&out), values(&bias_act(&y, &b, Act::Relu6).unwrap()));
        let g = out.sum_all().unwrap().backward().unwrap();
        let shifted = values(&y.broadcast_add(&b.reshape((1, 3, 1, 1)).unwrap()).unwrap());
        let want: Vec<f32> = shifted
            .iter()
            .map(|&s| if s > 0.0 && s < 6.0 { 1.0 } else { 0.0 })
            .collect();
        let both_sides = want.contains(&0.0) && want.contains(&1.0);
        assert!(both_sides, "the inputs fall on both sides of the clamp");
        assert_eq!(values(g.get(v.as_tensor()).unwrap()), want);
    }

    #[test]
    fn matches_clamp_forward_and_backward() {
        let data: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 4.0).collect(); // -4 .. 11.75
        let x = Var::from_vec(data, (2, 2, 4, 4), &Device::Cpu).unwrap();
        let w = Tensor::arange(0f32, 64., &Device::Cpu)
            .unwrap()
            .reshape((2, 2, 4, 4))
            .unwrap();
        let ours = relu6(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().clamp(0f32, 6f32).unwrap();
        assert_eq!(max_abs_diff(&ours, &theirs), 0.0);
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (g1, g2) = (values(g1.get(&x).unwrap()), values(g2.get(&x).unwrap()));
        // The input gradient of sum(relu6(x) * w) is w where 0 < x < 6 and 0 elsewhere,
        // including at exactly 0 and 6 (`Relu6Grad`: the open interval). The inputs hit
        // both kinks exactly (-4 + 0.25 i is exact in f32).
        for (i, (&ours, &clamp)) in g1.iter().zip(&g2).enumerate() {
            let v = i as f32 * 0.25 - 4.0;
            let want = if v > 0.0 && v < 6.0 { i as f32 } else { 0.0 };
            assert_eq!(ours, want, "x = {v}");
            // candle's clamp agrees away from the kinks (at them it picks its own side).
            if v != 0.0 && v != 6.0 {
                assert_eq!(ours, clamp, "x = {v}");
            }
        }
        assert_eq!(g1[16], 0.0, "x = 0");
        assert_eq!(g1[17], 17.0, "x = 0.25");
        assert_eq!(g1[39], 39.0, "x = 5.75");
        assert_eq!(g1[40], 0.0, "x = 6");
    }

    #[test]
    fn relu6_gradient_is_one_inside_zero_outside() {
        // d relu6(x) / dx directly: the backward of sum(relu6(x)), on values on both sides
        // of both kinks, at the kinks, and at the extremes. (x, relu6(x), d/dx)
        let cases: [(f32, f32, f32); 12] = [
            (-1e30, 0.0, 0.0),
            (-6.0, 0.0, 0.0),
            (-1e-7, 0.0, 0.0),
            (0.0, 0.0, 0.0),
            (1e-7, 1e-7, 1.0),
            (0.5, 0.5, 1.0),
            (3.0, 3.0, 1.0),
            (5.999_999_5, 5.999_999_5, 1.0),
            (6.0, 6.0, 0.0),
            (6.000_001, 6.0, 0.0),
            (7.0, 6.0, 0.0),
            (1e30, 6.0, 0.0),
        ];
        let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
        let want: Vec<f32> = cases.iter().map(|c| c.2).collect();
        let x = Var::from_slice(&xs, (1, 1, 3, 4), &Device::Cpu).unwrap();
        let y = relu6(x.as_tensor()).unwrap();
        assert_eq!(values(&y), cases.iter().map(|c| c.1).collect::<Vec<_>>());
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(values(g.get(&x).unwrap()), want);
        // A strided input is made contiguous first: the same gradient, in the input's order.
        let t = Var::from_slice(&xs, (1, 1, 4, 3), &Device::Cpu).unwrap();
        let g = relu6(&t.as_tensor().transpose(2, 3).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(values(g.get(&t).unwrap()), want);
        // Other dtypes go through candle's clamp: the same gradient away from the kinks.
        let x64 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
        let g = relu6(x64.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g64 = values(g.get(&x64).unwrap());
        for (i, (&got, &want)) in g64.iter().zip(&want).enumerate() {
            if xs[i] != 0.0 && xs[i] != 6.0 {
                assert_eq!(got, want, "f64, x = {}", xs[i]);
            }
        }
    }
}
