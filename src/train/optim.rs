//! AdamW (decoupled weight decay, as torch.optim.AdamW) with its moment estimates exposed
//! by name, so an interrupted training run resumes exactly where it stopped.

use candle_core::{backprop::GradStore, Result, Tensor, Var};

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        // The paper's learning rate; the rest are PyTorch's AdamW defaults.
        Self {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

pub struct AdamW {
    cfg: AdamWConfig,
    vars: Vec<(String, Var)>,
    m: Vec<Var>,
    v: Vec<Var>,
    pub step: u64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let zeros = |var: &Var| Var::zeros(var.shape(), var.dtype(), var.device());
        let m = vars.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?;
        let v = vars.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?;
        Ok(Self {
            cfg,
            vars,
            m,
            v,
            step: 0,
        })
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = &self.cfg;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let m = ((self.m[i].as_tensor() * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((self.v[i].as_tensor() * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let decayed = (var.as_tensor() * (1.0 - c.lr * c.weight_decay))?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + c.eps)?)?;
            var.set(&(decayed - (update * c.lr)?)?)?;
            self.m[i].set(&m)?;
            self.v[i].set(&v)?;
        }
        Ok(())
    }

    /// The moment estimates by name (`<var>.adam_m`, `<var>.adam_v`) for a resume file.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.vars.len());
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.push((format!("{name}.adam_m"), self.m[i].as_tensor().clone()));
            out.push((format!("{name}.adam_v"), self.v[i].as_tensor().clone()));
        }
        out
    }

    pub fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            for (suffix, slot) in [("adam_m", &self.m[i]), ("adam_v", &self.v[i])] {
                let key = format!("{name}.{suffix}");
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("resume state has no `{key}`"))
                })?;
                slot.set(&t.to_device(slot.device())?)?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One AdamW step by hand: with m0 = v0 = 0 the first update is lr * sign(g) (plus decay).
    #[test]
    fn first_step_matches_the_closed_form() {
        let w = Var::from_slice(&[1.0f32, -2.0, 0.5], 3, &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], cfg).unwrap();
        let loss = (w.as_tensor() * Tensor::new(&[3.0f32, -1.0, 0.0], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let got: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        // w * (1 - lr*wd) - lr * g/|g| (g = 0 gives no update beyond the decay).
        let want = [1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1, 0.5 * 0.95];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        let state = opt.state();
        assert_eq!(state.len(), 2);
        assert_eq!(state[0].0, "w.adam_m");
    }
}
