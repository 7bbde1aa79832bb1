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
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("relu6: only f32 on the CPU fast path");
    };
    let data = match layout.contiguous_offsets() {
        Some((a, b)) => &data[a..b],
        None => candle_core::bail!("relu6: input must be contiguous"),
    };
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
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let mask = arg.apply_op1_no_bwd(&Relu6Grad)?;
        Ok(Some(grad_res.mul(&mask)?))
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

/// min(max(x, 0), 6), differentiable; other devices and dtypes use candle's clamp.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
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
    /// The plane size, after checking that `l` is a contiguous N x C x H x W layout whose
    /// C matches the biases; and the contiguous range.
    fn plane(&self, l: &Layout) -> Result<(usize, usize, usize)> {
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("bias-act: input must be contiguous");
        };
        let (_, c, h, w) = l.shape().dims4()?;
        if c != self.bias.len() || h * w == 0 {
            candle_core::bail!(
                "bias-act: {:?} does not fit {} biases",
                l.dims(),
                self.bias.len()
            );
        }
        Ok((h * w, a, b))
    }

    /// One plane of channel `ch`: the same operations as `x + b` then the activation, so
    /// results are bit-identical to the unfused ops.
    fn apply_plane(&self, ch: usize, plane: &mut [f32]) {
        let bv = self.bias[ch % self.bias.len()];
        match self.act {
            Act::None => plane.iter_mut().for_each(|v| *v += bv),
            Act::Relu => plane.iter_mut().for_each(|v| *v = (*v + bv).max(0.0)),
            Act::Relu6 => plane
                .iter_mut()
                .for_each(|v| *v = (*v + bv).clamp(0.0, 6.0)),
        }
    }
}

impl CustomOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("bias-act: only f32 on the CPU fast path");
        };
        let (plane, a, b) = self.plane(l)?;
        let mut out = data[a..b].to_vec();
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
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("bias-act: only f32 on the CPU fast path");
        };
        let (plane, a, b) = self.plane(l)?;
        data[a..b]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, p)| self.apply_plane(i, p));
        Ok(())
    }
}

/// Whether `bias_act` can run fused: CPU f32, 4-D, nothing to differentiate.
fn fusable(y: &Tensor, bias: &Tensor) -> bool {
    y.device().is_cpu()
        && y.dtype() == candle_core::DType::F32
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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
        // With a gradient to track, candle's differentiable ops are used.
        let v = Var::from_tensor(&y).unwrap();
        let g = bias_act(v.as_tensor(), &b, Act::Relu6)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(v.as_tensor()).is_some());
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
        let diff = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (g1, g2) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
        // Away from the kinks at exactly 0 and 6 the gradients agree.
        let a: Vec<f32> = g1.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = g2.flatten_all().unwrap().to_vec1().unwrap();
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            let v = i as f32 * 0.25 - 4.0;
            if v != 0.0 && v != 6.0 {
                assert_eq!(a, b, "x = {v}");
            }
        }
    }
}
