//! EfficientNet-Lite0 with the efficientnet_pytorch tensor names (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv` ...). Lite variant: no squeeze-excite, ReLU6, BatchNorm eps
//! 1e-3, symmetric padding k/2, fixed stem (32) and head (1280).

use candle_core::{DType, Result, Tensor};

use super::layers::{check_input, Act, ConvBn, ConvSpec, Linear, Mode, ParamSource};
use super::kernels::mbconv::FusedMbConv;
use super::kernels::note_candle_op;
use super::kernels::stem::FusedStem;

const BN_EPS: f64 = 1e-3;

/// (kernel, stride, expand ratio, output channels, repeats) per stage.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];
const STEM: usize = 32;
const HEAD: usize = 1280;

/// The last block of each stride-4/8/16 group: the CDO taps.
pub const TAP_BLOCKS: [usize; 3] = [2, 4, 10];
pub const TAP_CHANNELS: [usize; 3] = [24, 40, 112];

/// Tensors after the last tap; a checkpoint may hold them, the tapped model never runs them.
pub const AFTER_LAST_TAP: [&str; 8] = [
    "_blocks.11.",
    "_blocks.12.",
    "_blocks.13.",
    "_blocks.14.",
    "_blocks.15.",
    "_conv_head.",
    "_bn1.",
    "_fc.",
];

struct MbBlock {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
    cin: usize,
    k: usize,
    stride: usize,
    /// The same block as one fused CPU kernel, once BatchNorm is folded (frozen, f32, CPU).
    fused: Option<FusedMbConv>,
}

impl MbBlock {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if let (Mode::Eval, Some(f)) = (mode, &self.fused) {
            if x.device().is_cpu() && x.dtype() == DType::F32 {
                return f.forward(x);
            }
        }
        let mut h = x.clone();
        if let Some(e) = &self.expand {
            h = e.forward_act(&h, mode, Act::Relu6)?;
        }
        h = self.depthwise.forward_act(&h, mode, Act::Relu6)?;
        h = self.project.forward(&h, mode)?;
        if self.residual {
            note_candle_op(x.device());
            h = (h + x)?;
        }
        Ok(h)
    }

    fn fold_bn(&mut self) -> Result<()> {
        if let Some(e) = &mut self.expand {
            e.fold_bn()?;
        }
        self.depthwise.fold_bn()?;
        self.project.fold_bn()?;
        let expand = match &self.expand {
            Some(e) => match e.folded_host()? {
                Some(d) => Some(d),
                None => return Ok(()),
            },
            None => None,
        };
        if let (Some(dw), Some(pr)) = (self.depthwise.folded_host()?, self.project.folded_host()?) {
            self.fused = Some(FusedMbConv::new(
                self.cin,
                self.k,
                self.stride,
                expand,
                dw,
                pr,
            )?);
        }
        Ok(())
    }
}

pub struct EfficientNetLite0 {
    stem: ConvBn,
    /// The stem as one direct CPU kernel, once BatchNorm is folded (frozen, f32, CPU).
    fused_stem: Option<FusedStem>,
    blocks: Vec<MbBlock>,
    head: Option<(ConvBn, Linear)>,
}

impl EfficientNetLite0 {
    /// Builds the blocks up to the last tap; with `classifier` also the rest and the
    /// ImageNet head.
    pub fn new(src: &mut dyn ParamSource, classifier: bool, bn_momentum: f64) -> Result<Self> {
        let m = bn_momentum;
        let stem = ConvBn::new(
            src,
            "_conv_stem",
            Some("_bn0"),
            ConvSpec {
                cin: 3,
                cout: STEM,
                k: 3,
                stride: 2,
                padding: 1,
                depthwise: false,
            },
            BN_EPS,
            m,
        )?;
        let last = if classifier {
            usize::MAX
        } else {
            TAP_BLOCKS[2]
        };
        let mut blocks = Vec::new();
        let mut cin = STEM;
        let mut idx = 0;
        'stages: for &(k, stride, expand, cout, repeats) in STAGES.iter() {
            for r in 0..repeats {
                if idx > last {
                    break 'stages;
                }
                let s = if r == 0 { stride } else { 1 };
                let p = format!("_blocks.{idx}");
                let mid = cin * expand;
                let expand_conv = if expand != 1 {
                    Some(ConvBn::new(
                        src,
                        &format!("{p}._expand_conv"),
                        Some(&format!("{p}._bn0")),
                        ConvSpec::pointwise(cin, mid),
                        BN_EPS,
                        m,
                    )?)
                } else {
                    None
                };
                let depthwise = ConvBn::new(
                    src,
                    &format!("{p}._depthwise_conv"),
                    Some(&format!("{p}._bn1")),
                    ConvSpec {
                        cin: mid,
                        cout: mid,
                        k,
                        stride: s,
                        padding: k / 2,
                        depthwise: true,
                    },
                    BN_EPS,
                    m,
                )?;
                let project = ConvBn::new(
                    src,
                    &format!("{p}._project_conv"),
                    Some(&format!("{p}._bn2")),
                    ConvSpec::pointwise(mid, cout),
                    BN_EPS,
                    m,
                )?;
                blocks.push(MbBlock {
                    expand: expand_conv,
                    depthwise,
                    project,
                    residual: s == 1 && cin == cout,
                    cin,
                    k,
                    stride: s,
                    fused: None,
                });
                cin = cout;
                idx += 1;
            }
        }
        let head = if classifier {
            let conv = ConvBn::new(
                src,
                "_conv_head",
                Some("_bn1"),
                ConvSpec::pointwise(cin, HEAD),
                BN_EPS,
                m,
            )?;
            Some((conv, Linear::new(src, "_fc", HEAD, 1000)?))
        } else {
            None
        };
        Ok(Self {
            stem,
            fused_stem: None,
            blocks,
            head,
        })
    }

    pub fn fold_bn(&mut self) -> Result<()> {
        self.stem.fold_bn()?;
        if let Some(conv) = self.stem.folded_host()? {
            self.fused_stem = Some(FusedStem::new(3, 3, 2, conv)?);
        }
        for b in &mut self.blocks {
            b.fold_bn()?;
        }
        if let Some((conv, _)) = &mut self.head {
            conv.fold_bn()?;
        }
        Ok(())
    }

    /// The stem: conv 3x3 stride 2, BatchNorm, ReLU6.
    fn stem_forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match (&self.fused_stem, mode) {
            (Some(f), Mode::Eval) if x.device().is_cpu() => f.forward(x),
            _ => self.stem.forward_act(x, mode, Act::Relu6),
        }
    }

    /// The three CDO feature maps (strides 4, 8, 16).
    pub fn features(&self, x: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        check_input(x)?;
        let mut h = self.stem_forward(x, mode)?;
        let mut taps = Vec::with_capacity(3);
        for (i, block) in self.blocks.iter().enumerate().take(TAP_BLOCKS[2] + 1) {
            h = block.forward(&h, mode)?;
            if TAP_BLOCKS.contains(&i) {
                taps.push(h.clone());
            }
        }
        Ok(taps)
    }

    /// ImageNet logits (B x 1000); only for a model built with `classifier`.
    pub fn classify(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x)?;
        let Some((conv, fc)) = &self.head else {
            candle_core::bail!("model was built without its classifier head");
        };
        let mut h = self.stem_forward(x, Mode::Eval)?;
        for block in &self.blocks {
            h = block.forward(&h, Mode::Eval)?;
        }
        let h = conv.forward_act(&h, Mode::Eval, Act::Relu6)?;
        let pooled = h.mean(3)?.mean(2)?;
        fc.forward(&pooled)
    }
}
