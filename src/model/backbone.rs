//! The backbones a station can use, and building the frozen expert and the apprentice.

use std::path::Path;

use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, CheckpointError};
use super::efficientnet_lite::{self, EfficientNetLite0};
use super::layers::{Fresh, FromCheckpoint, Mode, ParamSource};
use super::resnet::{self, ResNet, ResNetKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum BackboneKind {
    #[serde(rename = "efficientnet-lite0")]
    #[value(name = "efficientnet-lite0")]
    EfficientNetLite0,
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    #[serde(rename = "wide-resnet50-2")]
    #[value(name = "wide-resnet50-2")]
    WideResNet50_2,
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl BackboneKind {
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::EfficientNetLite0 => "efficientnet-lite0",
            BackboneKind::ResNet18 => "resnet18",
            BackboneKind::WideResNet50_2 => "wide-resnet50-2",
        }
    }

    /// The upstream file name under `models/` (as published: fetched for Lite0, dropped in
    /// by the user for torchvision's ResNets).
    pub fn default_weights_file(self) -> &'static str {
        match self {
            BackboneKind::EfficientNetLite0 => "efficientnet-lite0-57934424.pth",
            BackboneKind::ResNet18 => "resnet18-f37072fd.pth",
            BackboneKind::WideResNet50_2 => "wide_resnet50_2-95faca4d.pth",
        }
    }

    pub fn tap_channels(self) -> [usize; 3] {
        match self {
            BackboneKind::EfficientNetLite0 => efficientnet_lite::TAP_CHANNELS,
            BackboneKind::ResNet18 => ResNetKind::ResNet18.tap_channels(),
            BackboneKind::WideResNet50_2 => ResNetKind::WideResNet50_2.tap_channels(),
        }
    }

    fn after_last_tap(self) -> &'static [&'static str] {
        match self {
            BackboneKind::EfficientNetLite0 => &efficientnet_lite::AFTER_LAST_TAP,
            _ => &resnet::AFTER_LAST_TAP,
        }
    }
}

/// A backbone truncated after its last tap.
pub enum Network {
    Lite0(EfficientNetLite0),
    ResNet(ResNet),
}

impl Network {
    fn build(kind: BackboneKind, src: &mut dyn ParamSource, bn_momentum: f64) -> Result<Self> {
        Ok(match kind {
            BackboneKind::EfficientNetLite0 => {
                Network::Lite0(EfficientNetLite0::new(src, false, bn_momentum)?)
            }
            BackboneKind::ResNet18 => {
                Network::ResNet(ResNet::new(src, ResNetKind::ResNet18, bn_momentum)?)
            }
            BackboneKind::WideResNet50_2 => {
                Network::ResNet(ResNet::new(src, ResNetKind::WideResNet50_2, bn_momentum)?)
            }
        })
    }

    /// Builds from a checkpoint for inference (BatchNorm folded). `extra_allowed` lists
    /// tensor prefixes the file may hold beyond what the truncated network uses.
    pub fn from_checkpoint(
        kind: BackboneKind,
        checkpoint: Checkpoint,
        extra_allowed: &[&str],
        device: &Device,
    ) -> std::result::Result<Self, CheckpointError> {
        let path = checkpoint.path.clone();
        let mut src = FromCheckpoint::new(checkpoint, device);
        let built = Network::build(kind, &mut src, 0.0);
        let mut net = match built {
            Ok(net) => net,
            Err(e) => {
                return Err(src.error.take().unwrap_or(CheckpointError::Corrupt {
                    path,
                    reason: e.to_string(),
                }))
            }
        };
        src.checkpoint.finish(extra_allowed)?;
        net.fold_bn().map_err(|e| CheckpointError::Corrupt {
            path,
            reason: e.to_string(),
        })?;
        Ok(net)
    }

    /// A randomly initialised network ready for inference (BatchNorm folded): the same
    /// computation as a pretrained one, for timing backbones whose weights are not at hand.
    pub fn fresh_frozen(kind: BackboneKind, seed: u64, device: &Device) -> Result<Self> {
        let mut net = Network::build(kind, &mut Fresh::new(seed, device), 0.0)?;
        net.fold_bn()?;
        Ok(net)
    }

    pub fn fold_bn(&mut self) -> Result<()> {
        match self {
            Network::Lite0(n) => n.fold_bn(),
            Network::ResNet(n) => n.fold_bn(),
        }
    }

    /// The three CDO feature maps at strides 4, 8 and 16.
    pub fn features(&self, x: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        match self {
            Network::Lite0(n) => n.features(x, mode),
            Network::ResNet(n) => n.features(x, mode),
        }
    }
}

/// The frozen, ImageNet-pretrained expert.
pub struct Expert {
    pub kind: BackboneKind,
    pub sha256: String,
    pub net: Network,
}

impl Expert {
    pub fn load(
        kind: BackboneKind,
        path: &Path,
        device: &Device,
    ) -> std::result::Result<Self, CheckpointError> {
        Self::from_checkpoint(kind, Checkpoint::load(path)?, device)
    }

    pub fn from_checkpoint(
        kind: BackboneKind,
        checkpoint: Checkpoint,
        device: &Device,
    ) -> std::result::Result<Self, CheckpointError> {
        let sha256 = checkpoint.sha256.clone();
        let net = Network::from_checkpoint(kind, checkpoint, kind.after_last_tap(), device)?;
        Ok(Self { kind, sha256, net })
    }
}

/// An apprentice being trained: the network plus its variables by (torchvision-style) name.
pub struct TrainableApprentice {
    pub net: Network,
    pub params: Vec<(String, Var)>,
    pub buffers: Vec<(String, Var)>,
}

impl TrainableApprentice {
    /// Random initialisation (PyTorch's default scheme), reproducible from `seed`.
    pub fn new(kind: BackboneKind, seed: u64, bn_momentum: f64, device: &Device) -> Result<Self> {
        let mut src = Fresh::new(seed, device);
        let net = Network::build(kind, &mut src, bn_momentum)?;
        Ok(Self {
            net,
            params: src.params,
            buffers: src.buffers,
        })
    }

    /// Every tensor of the apprentice (weights and BN statistics) by name.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .chain(self.buffers.iter())
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Overwrites every variable from a state dict (resuming a run); names and shapes must match.
    pub fn load_state(&self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.params.iter().chain(self.buffers.iter()) {
            let t = state.get(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("checkpoint has no tensor `{name}`"))
            })?;
            if t.dims() != var.dims() {
                candle_core::bail!(
                    "tensor `{name}`: shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            var.set(&t.to_device(var.device())?)?;
        }
        Ok(())
    }
}

/// ImageNet normalisation of an RGB batch in [0, 1] (B x 3 x H x W).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// EfficientNet-Lite0 with its ImageNet classifier head, every tensor of the file used:
/// the proof that the expert is the real network, not just a loadable one.
pub fn load_lite0_classifier(
    path: &Path,
    device: &Device,
) -> std::result::Result<EfficientNetLite0, CheckpointError> {
    let checkpoint = Checkpoint::load(path)?;
    let file = checkpoint.path.clone();
    let mut src = FromCheckpoint::new(checkpoint, device);
    let built = EfficientNetLite0::new(&mut src, true, 0.0);
    let mut net = built.map_err(|e| {
        src.error.take().unwrap_or(CheckpointError::Corrupt {
            path: file.clone(),
            reason: e.to_string(),
        })
    })?;
    src.checkpoint.finish(&[])?;
    net.fold_bn().map_err(|e| CheckpointError::Corrupt {
        path: file,
        reason: e.to_string(),
    })?;
    Ok(net)
}
