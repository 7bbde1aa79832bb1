//! The few layers the backbones need, written once and built either from a pretrained
//! checkpoint (the frozen expert) or from fresh trainable variables (the apprentice).
//! Tensor names follow the upstream implementations so a checkpoint's state dict and the
//! apprentice's saved weights share one naming.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::kernels::batchnorm;
use super::checkpoint::{Checkpoint, CheckpointError};
use super::kernels::depthwise::{depthwise_conv2d, depthwise_conv2d_bias_act};
use super::kernels::note_candle_op;
use super::kernels::im2col;

/// How a parameter is initialised when it is created rather than loaded (PyTorch's defaults).
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Conv/linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a = sqrt 5).
    FanInUniform {
        fan_in: usize,
    },
    Const(f32),
}

/// Where layer parameters come from.
pub trait ParamSource {
    /// A trainable parameter (conv/linear weight, BN affine).
    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor>;
    /// A non-trainable buffer (BN running statistics), updated in place while training.
    fn buffer(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Var>;
}

/// Parameters read from a checkpoint; the first missing or mis-shaped tensor is an error
/// naming the file, the tensor and both shapes.
pub struct FromCheckpoint {
    pub checkpoint: Checkpoint,
    pub device: Device,
    /// Set when a tensor was missing or mis-shaped; the typed error survives candle's
    /// string-only error type this way.
    pub error: Option<CheckpointError>,
}

impl FromCheckpoint {
    pub fn new(checkpoint: Checkpoint, device: &Device) -> Self {
        Self {
            checkpoint,
            device: device.clone(),
            error: None,
        }
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.checkpoint.take(name, shape) {
            // Detached: a checkpoint's tensors are constants here even when they came from
            // a trainer's variables (calibration right after training). A tracked weight
            // would make every forward pass record a gradient graph, keep each
            // intermediate activation alive until the output is dropped, and rule out the
            // fused no-gradient kernels.
            Ok(t) => Ok(t.to_device(&self.device)?.detach()),
            Err(e) => {
                let msg = e.to_string();
                self.error.get_or_insert(e);
                Err(candle_core::Error::Msg(msg))
            }
        }
    }
}

impl ParamSource for FromCheckpoint {
    fn param(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor> {
        self.take(name, shape)
    }
    fn buffer(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Var> {
        Var::from_tensor(&self.take(name, shape)?)
    }
}

/// Fresh, seeded parameters for training. Keeps every variable by name so the trainer can
/// hand the trainable ones to the optimiser and save all of them.
pub struct Fresh {
    rng: ChaCha8Rng,
    device: Device,
    pub params: Vec<(String, Var)>,
    pub buffers: Vec<(String, Var)>,
}

impl Fresh {
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
            params: Vec::new(),
            buffers: Vec::new(),
        }
    }

    fn make(&mut self, shape: &[usize], init: Init) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match init {
            Init::Const(v) => vec![v; n],
            Init::FanInUniform { fan_in } => {
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| self.rng.gen_range(-bound..bound)).collect()
            }
        };
        Var::from_tensor(&Tensor::from_vec(data, shape, &self.device)?)
    }
}

impl ParamSource for Fresh {
    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let var = self.make(shape, init)?;
        self.params.push((name.to_string(), var.clone()));
        Ok(var.as_tensor().clone())
    }
    fn buffer(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        let var = self.make(shape, init)?;
        self.buffers.push((name.to_string(), var.clone()));
        Ok(var)
    }
}

/// Whether a forward pass trains (batch statistics, running-stat updates) or infers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// BatchNorm2d with PyTorch semantics (biased batch variance for normalising, unbiased for
/// the running estimate).
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    pub fn new(
        src: &mut dyn ParamSource,
        prefix: &str,
        c: usize,
        eps: f64,
        momentum: f64,
    ) -> Result<Self> {
        Ok(Self {
            weight: src.param(&format!("{prefix}.weight"), &[c], Init::Const(1.0))?,
            bias: src.param(&format!("{prefix}.bias"), &[c], Init::Const(0.0))?,
            running_mean: src.buffer(&format!("{prefix}.running_mean"), &[c], Init::Const(0.0))?,
            running_var: src.buffer(&format!("{prefix}.running_var"), &[c], Init::Const(1.0))?,
            eps,
            momentum,
        })
    }

    /// Per-channel scale and shift equivalent to this layer in eval mode.
    fn eval_affine(&self) -> Result<(Tensor, Tensor)> {
        let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        Ok((scale, shift))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_act(x, mode, Act::None)
    }

    /// `act(BN(x))`. In training on the CPU the activation runs inside BatchNorm's own
    /// kernel (one op, one tensor, one node in the gradient graph).
    pub fn forward_act(&self, x: &Tensor, mode: Mode, act: Act) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        match mode {
            Mode::Eval => {
                let (scale, shift) = self.eval_affine()?;
                act.apply(
                    &x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
                        .broadcast_add(&shift.reshape((1, c, 1, 1))?)?,
                )
            }
            Mode::Train => {
                let (b, _, h, w) = x.dims4()?;
                let n = (b * h * w) as f64;
                let (out, mean, var) = if batchnorm::fast_path(x) {
                    let t =
                        batchnorm::batch_norm_train(x, &self.weight, &self.bias, self.eps, act)?;
                    (t.y, t.mean, t.var)
                } else {
                    // Reduce the contiguous spatial axis first, then the small batch axis.
                    let channel_mean = |t: &Tensor| -> Result<Tensor> {
                        t.flatten_from(2)?
                            .mean_keepdim(2)?
                            .mean_keepdim(0)?
                            .unsqueeze(3)
                    };
                    let mean = channel_mean(x)?;
                    let centred = x.broadcast_sub(&mean)?;
                    let var = channel_mean(&centred.sqr()?)?;
                    let out = centred
                        .broadcast_div(&(&var + self.eps)?.sqrt()?)?
                        .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
                        .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
                    (act.apply(&out)?, mean.flatten_all()?, var.flatten_all()?)
                };
                // Running statistics: exponential moving average, no gradient.
                let m = self.momentum;
                let mean = mean.detach();
                let unbiased = (var.detach() * (n / (n - 1.0).max(1.0)))?;
                self.running_mean
                    .set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
                self.running_var
                    .set(&((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?)?;
                Ok(out)
            }
        }
    }
}

/// A convolution, optionally followed by BatchNorm. Depthwise convolutions (groups equal
/// to channels) use a dedicated kernel instead of candle's one-convolution-per-group path.
pub struct ConvBn {
    weight: Tensor,
    bias: Option<Tensor>,
    bn: Option<BatchNorm>,
    stride: usize,
    padding: usize,
    depthwise: bool,
}

pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub depthwise: bool,
}

impl ConvSpec {
    /// A 1x1, stride-1 convolution (channel mixing).
    pub fn pointwise(cin: usize, cout: usize) -> Self {
        Self {
            cin,
            cout,
            k: 1,
            stride: 1,
            padding: 0,
            depthwise: false,
        }
    }
}

impl ConvBn {
    /// `conv_name` is the conv's tensor prefix, `bn_name` the BatchNorm's (None: no BN).
    pub fn new(
        src: &mut dyn ParamSource,
        conv_name: &str,
        bn_name: Option<&str>,
        spec: ConvSpec,
        bn_eps: f64,
        bn_momentum: f64,
    ) -> Result<Self> {
        let cin_per_group = if spec.depthwise { 1 } else { spec.cin };
        let fan_in = cin_per_group * spec.k * spec.k;
        let weight = src.param(
            &format!("{conv_name}.weight"),
            &[spec.cout, cin_per_group, spec.k, spec.k],
            Init::FanInUniform { fan_in },
        )?;
        let bn = match bn_name {
            Some(name) => Some(BatchNorm::new(src, name, spec.cout, bn_eps, bn_momentum)?),
            None => None,
        };
        Ok(Self {
            weight,
            bias: None,
            bn,
            stride: spec.stride,
            padding: spec.padding,
            depthwise: spec.depthwise,
        })
    }

    /// Folds eval-mode BatchNorm into the convolution's weight and bias: one pass over the
    /// activation instead of two, same result up to rounding. Only for frozen models.
    pub fn fold_bn(&mut self) -> Result<()> {
        if let Some(bn) = self.bn.take() {
            let (scale, shift) = bn.eval_affine()?;
            let cout = self.weight.dim(0)?;
            // Detached: the running statistics are variables (updated in place while
            // training), and a folded model is frozen; see `FromCheckpoint::take`.
            self.weight = self
                .weight
                .broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?
                .detach();
            self.bias = Some(
                match &self.bias {
                    Some(b) => ((b * &scale)? + shift)?,
                    None => shift,
                }
                .detach(),
            );
        }
        Ok(())
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_act(x, mode, Act::None)
    }

    /// A folded layer's weight (flattened, PyTorch order) and bias as host f32, for the
    /// fused CPU kernels; None when BatchNorm is not folded or the layer is elsewhere.
    pub fn folded_host(&self) -> Result<Option<super::kernels::mbconv::Dense>> {
        match (&self.bias, &self.bn) {
            (Some(b), None)
                if self.weight.device().is_cpu() && self.weight.dtype() == DType::F32 =>
            {
                Ok(Some(super::kernels::mbconv::Dense {
                    weight: self.weight.flatten_all()?.to_vec1()?,
                    bias: b.to_vec1()?,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The convolution, its BatchNorm, then `act`.
    pub fn forward_act(&self, x: &Tensor, mode: Mode, act: Act) -> Result<Tensor> {
        let (cout, _, k, _) = self.weight.dims4()?;
        if let (true, Some(b), None) = (self.depthwise, &self.bias, &self.bn) {
            // A frozen layer: on CUDA one kernel with the bias and activation as epilogue.
            return depthwise_conv2d_bias_act(x, &self.weight, b, act, self.stride, self.padding);
        }
        if !self.depthwise {
            note_candle_op(x.device());
        }
        let y = if self.depthwise {
            depthwise_conv2d(x, &self.weight, self.stride, self.padding)?
        } else if k == 1 && self.stride == 1 && self.padding == 0 {
            // A 1x1 convolution is a matrix product over channels. As a matmul it runs on
            // the GEMM kernels forwards and backwards, where candle's conv2d would copy
            // through im2col and train through its much slower conv_transpose2d.
            let (b, cin, h, w) = x.dims4()?;
            let wm = self.weight.reshape((cout, cin))?;
            let x3 = x.reshape((b, cin, h * w))?;
            let y = if x.device().is_cuda() {
                // One batched GEMM whose weight has batch stride 0 (cuBLAS takes it);
                // broadcast_matmul would first copy the weight once per image.
                wm.broadcast_as((b, cout, cin))?.matmul(&x3)?
            } else {
                wm.broadcast_matmul(&x3)?
            };
            y.reshape((b, cout, h, w))?
        } else {
            im2col::conv2d(x, &self.weight, self.stride, self.padding)?
        };
        match (&self.bias, &self.bn) {
            // Folded BatchNorm: bias and activation in one pass.
            // `y` is this layer's fresh output: written over, no new buffer.
            (Some(b), None) => bias_act_in_place(y, b, act),
            (Some(b), Some(bn)) => bn.forward_act(&bias_act(&y, b, Act::None)?, mode, act),
            (None, Some(bn)) => bn.forward_act(&y, mode, act),
            (None, None) => act.apply(&y),
        }
    }
}

/// A fully connected classifier layer (only used by the ImageNet check).
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn new(src: &mut dyn ParamSource, name: &str, cin: usize, cout: usize) -> Result<Self> {
        let init = Init::FanInUniform { fan_in: cin };
        Ok(Self {
            weight: src.param(&format!("{name}.weight"), &[cout, cin], init)?,
            bias: src.param(&format!("{name}.bias"), &[cout], init)?,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

pub use super::kernels::activation::{bias_act, bias_act_in_place, relu6, Act};

/// Checks that a tensor is 4-D f32 (the backbones' input contract).
pub fn check_input(x: &Tensor) -> Result<()> {
    let (_, c, _, _) = x.dims4()?;
    if c != 3 || x.dtype() != DType::F32 {
        candle_core::bail!(
            "backbone input must be B x 3 x H x W f32, got {:?} {:?}",
            x.dims(),
            x.dtype()
        );
    }
    Ok(())
}
