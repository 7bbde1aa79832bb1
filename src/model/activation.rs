//! ReLU6 as one elementwise pass. candle's `clamp` is a maximum then a minimum against
//! broadcast scalars, and its backward builds comparison masks for each: several
//! full-size temporaries per activation, which dominated EfficientNet training time.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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
