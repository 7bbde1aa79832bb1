//! ResNet18 and WideResNet50-2 with torchvision's tensor names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.downsample.0` ...), so torchvision checkpoints load as they
//! are. CDO taps layer1..layer3 (strides 4, 8, 16); layer4 and the classifier never run.

use candle_core::{Result, Tensor};

use super::layers::{check_input, Act, ConvBn, ConvSpec, Mode, ParamSource};
use super::kernels::maxpool::max_pool2d;
use super::kernels::note_candle_op;

const BN_EPS: f64 = 1e-5;

/// Tensors after the last tap.
pub const AFTER_LAST_TAP: [&str; 2] = ["layer4.", "fc."];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetKind {
    ResNet18,
    WideResNet50_2,
}

impl ResNetKind {
    pub fn tap_channels(self) -> [usize; 3] {
        match self {
            ResNetKind::ResNet18 => [64, 128, 256],
            ResNetKind::WideResNet50_2 => [256, 512, 1024],
        }
    }
}

/// A BasicBlock (two 3x3) or a Bottleneck (1x1, 3x3, 1x1), plus the optional projection.
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (i, c) in self.convs.iter().enumerate() {
            let act = if i < last { Act::Relu } else { Act::None };
            h = c.forward_act(&h, mode, act)?;
        }
        let identity = match &self.downsample {
            Some(d) => d.forward(x, mode)?,
            None => x.clone(),
        };
        // Two candle ops: the addition and the ReLU.
        note_candle_op(x.device());
        note_candle_op(x.device());
        (h + identity)?.relu()
    }

    fn fold_bn(&mut self) -> Result<()> {
        for c in &mut self.convs {
            c.fold_bn()?;
        }
        if let Some(d) = &mut self.downsample {
            d.fold_bn()?;
        }
        Ok(())
    }
}

/// The backbone up to its last tap (layer3).
pub struct ResNet {
    stem: ConvBn,
    layers: Vec<Vec<Block>>,
}

/// One convolution with its BatchNorm, under torchvision's names (`{conv}`, `{bn}`);
/// padding k/2 as torchvision's 1x1, 3x3 and 7x7 layers.
struct Conv<'a> {
    src: &'a mut dyn ParamSource,
    bn_momentum: f64,
}

impl Conv<'_> {
    #[allow(clippy::too_many_arguments)]
    fn bn(&mut self, conv: &str, bn: &str, cin: usize, cout: usize, k: usize, stride: usize) -> Result<ConvBn> {
        let spec = ConvSpec { cin, cout, k, stride, padding: k / 2, depthwise: false };
        ConvBn::new(&mut *self.src, conv, Some(bn), spec, BN_EPS, self.bn_momentum)
    }

    /// `{block}.conv{i}` with `{block}.bn{i}`.
    fn numbered(&mut self, block: &str, i: usize, cin: usize, cout: usize, k: usize, stride: usize) -> Result<ConvBn> {
        self.bn(&format!("{block}.conv{i}"), &format!("{block}.bn{i}"), cin, cout, k, stride)
    }

    /// ResNet18's BasicBlock: two 3x3 convolutions, the first strided.
    fn basic_block(&mut self, block: &str, cin: usize, planes: usize, stride: usize) -> Result<Vec<ConvBn>> {
        Ok(vec![
            self.numbered(block, 1, cin, planes, 3, stride)?,
            self.numbered(block, 2, planes, planes, 3, 1)?,
        ])
    }

    /// The Bottleneck (torchvision v1.5: the stride on the 3x3): 1x1 down to `width`, 3x3,
    /// 1x1 up to `cout`.
    fn bottleneck(&mut self, block: &str, cin: usize, width: usize, cout: usize, stride: usize) -> Result<Vec<ConvBn>> {
        Ok(vec![
            self.numbered(block, 1, cin, width, 1, 1)?,
            self.numbered(block, 2, width, width, 3, stride)?,
            self.numbered(block, 3, width, cout, 1, 1)?,
        ])
    }

    /// The projection of the identity path (`{block}.downsample.0` and `.1`) where the
    /// block changes the shape.
    fn downsample(&mut self, block: &str, cin: usize, cout: usize, stride: usize) -> Result<Option<ConvBn>> {
        if stride == 1 && cin == cout {
            return Ok(None);
        }
        let (conv, bn) = (format!("{block}.downsample.0"), format!("{block}.downsample.1"));
        self.bn(&conv, &bn, cin, cout, 1, stride).map(Some)
    }
}

impl ResNet {
    /// Builds the stem (`conv1`, `bn1`) and layer1..layer3.
    pub fn new(src: &mut dyn ParamSource, kind: ResNetKind, bn_momentum: f64) -> Result<Self> {
        let mut conv = Conv { src, bn_momentum };
        let stem = conv.bn("conv1", "bn1", 3, 64, 7, 2)?;
        // Blocks per layer, output channels per `planes`, bottleneck width per `planes`.
        let (repeats, expansion, width_factor): ([usize; 3], usize, usize) = match kind {
            ResNetKind::ResNet18 => ([2, 2, 2], 1, 1),
            ResNetKind::WideResNet50_2 => ([3, 4, 6], 4, 2),
        };
        let mut cin = 64;
        let mut layers = Vec::new();
        for (li, (&n, planes)) in repeats.iter().zip([64usize, 128, 256]).enumerate() {
            let mut blocks = Vec::new();
            for bi in 0..n {
                let stride = if bi == 0 && li > 0 { 2 } else { 1 };
                let name = format!("layer{}.{bi}", li + 1);
                let cout = planes * expansion;
                let convs = match kind {
                    ResNetKind::ResNet18 => conv.basic_block(&name, cin, planes, stride)?,
                    ResNetKind::WideResNet50_2 => {
                        conv.bottleneck(&name, cin, planes * width_factor, cout, stride)?
                    }
                };
                let downsample = conv.downsample(&name, cin, cout, stride)?;
                blocks.push(Block { convs, downsample });
                cin = cout;
            }
            layers.push(blocks);
        }
        Ok(Self { stem, layers })
    }

    pub fn fold_bn(&mut self) -> Result<()> {
        self.stem.fold_bn()?;
        for b in self.layers.iter_mut().flatten() {
            b.fold_bn()?;
        }
        Ok(())
    }

    pub fn features(&self, x: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        check_input(x)?;
        let h = self.stem.forward_act(x, mode, Act::Relu)?;
        // 3x3/2 max-pool with padding 1, differentiable (candle's pool has no backward
        // for overlapping windows).
        let mut h = max_pool2d(&h, 3, 2, 1)?;
        let mut taps = Vec::with_capacity(3);
        for layer in &self.layers {
            for block in layer {
                h = block.forward(&h, mode)?;
            }
            taps.push(h.clone());
        }
        Ok(taps)
    }
}
