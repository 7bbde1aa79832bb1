//! The training settings, as `train` takes them (`[train]` in a TOML file) and as a bundle
//! records them: plain data, so that a bundle can be read without the training code.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::backbone::BackboneKind;

/// What fills a synthetic rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// Uniform 0..=255 per channel (the reference implementation).
    #[default]
    Uniform,
    /// Gaussian around mid-grey, sigma 64 (the paper's wording), clamped to 0..=255.
    Gaussian,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Rectangles per image are drawn uniformly from 0..=max_count (reference: 4).
    pub max_count: u32,
    pub noise: NoiseKind,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            max_count: 4,
            noise: NoiseKind::Uniform,
        }
    }
}

/// Training settings (`[train]` in a TOML file; every key optional).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub backbone: BackboneKind,
    /// The expert's pretrained weights; default `<models dir>/<the backbone's upstream file>`.
    pub expert_weights: Option<PathBuf>,
    pub epochs: usize,
    pub batch_size: usize,
    /// Square input size the images are resized to.
    pub image_size: u32,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// OOM focusing exponent; 0 switches OOM off.
    pub gamma: f64,
    /// Margin optimisation: push synthetic-anomaly discrepancies up.
    pub mom: bool,
    /// Overlap optimisation: reweight positions by their discrepancy.
    pub oom: bool,
    pub anomalies: AnomalyConfig,
    /// Share of the good images held out to calibrate the threshold.
    pub holdout_fraction: f64,
    /// Apprentice BatchNorm running-statistics momentum (PyTorch convention).
    pub bn_momentum: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::EfficientNetLite0,
            expert_weights: None,
            epochs: 50,
            batch_size: 8,
            image_size: 256,
            learning_rate: 2e-4,
            weight_decay: 1e-2,
            gamma: 2.0,
            mom: true,
            oom: true,
            anomalies: AnomalyConfig::default(),
            holdout_fraction: 0.1,
            bn_momentum: 0.1,
            seed: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("train.epochs must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("train.batch_size must be at least 1");
        }
        if self.image_size < 32 || self.image_size % 16 != 0 {
            bail!(
                "train.image_size must be a multiple of 16 and at least 32, got {}",
                self.image_size
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            bail!(
                "train.learning_rate must be positive, got {}",
                self.learning_rate
            );
        }
        if !(0.0..0.9).contains(&self.holdout_fraction) {
            bail!(
                "train.holdout_fraction must be in [0, 0.9), got {}",
                self.holdout_fraction
            );
        }
        if !(self.gamma >= 0.0 && self.gamma.is_finite()) {
            bail!("train.gamma must be >= 0, got {}", self.gamma);
        }
        Ok(())
    }

    /// Reads the `[train]` table of a TOML file (other tables, e.g. a station's, are left alone).
    pub fn from_file(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            train: Option<toml::Value>,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: File =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        let Some(train) = file.train else {
            return Ok(Self::default());
        };
        let cfg: Self = train
            .try_into()
            .with_context(|| format!("{}: invalid [train] table", path.display()))?;
        Ok(cfg)
    }
}

