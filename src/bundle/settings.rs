//! The training settings, as `train` takes them (`[train]` in a TOML file) and as a bundle
//! records them: plain data, so that a bundle can be read without the training code.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::geometry::{Geometry, Roi, Tiles};
use crate::model::backbone::BackboneKind;
use crate::model::kernels::resize::Upsampling;

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
    /// Inspection geometry (kept in the bundle as `[geometry]`): tiled inspection with
    /// square tiles of this side, the network input (`image_size` must equal it; a `tile`
    /// without `image_size` sets it). None = the frame (ROI) resized to `image_size`.
    pub tile: Option<u32>,
    /// Network pixels shared by neighbouring tiles (tiles only; default 0).
    pub overlap: Option<u32>,
    /// The inspected rectangle of every frame, in source pixels.
    pub roi: Option<Roi>,
    /// Source pixels per network pixel before tiling (tiles only; default 1).
    pub scale: Option<f32>,
    /// Ignore mask image (the ROI's size in source pixels; black = never inspect),
    /// copied into the bundle folder (tiles only).
    pub mask: Option<PathBuf>,
    /// Where each feature level's discrepancy is placed in the map (calibration and the
    /// bundle; the loss keeps the reference's); default `receptive_field` (`align_corners`
    /// is the reference's, which puts a small defect's peak up to 15 px off it at 256 px).
    pub upsampling: Option<Upsampling>,
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
            tile: None,
            overlap: None,
            roi: None,
            scale: None,
            mask: None,
            upsampling: None,
        }
    }
}

/// Input sizes a model can be trained and run at: square, a multiple of 16 (the stride of
/// the deepest CDO feature level), from 32 (where that level is still a 2x2 grid) to 1024.
/// 1024 is 4x the paper's 256 on each side: its map already resolves about 0.1 mm on a
/// 100 mm part, while both networks' features already take 16x the memory and time of
/// 256 px per image. Larger sizes only make a station run out of memory (an input size
/// of 100000 asked for a 30 GB buffer).
pub const MIN_IMAGE_SIZE: u32 = 32;
pub const MAX_IMAGE_SIZE: u32 = 1024;
pub const IMAGE_SIZE_STEP: u32 = 16;

/// Checks a square input size (`train.image_size`, a bundle's `input_size`).
pub fn check_image_size(size: u32) -> Result<(), String> {
    if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&size) || !size.is_multiple_of(IMAGE_SIZE_STEP) {
        return Err(format!(
            "must be a multiple of {IMAGE_SIZE_STEP} from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, got {size}"
        ));
    }
    Ok(())
}

/// `Err` naming the range unless `lo <= x <= hi`.
fn check_int(x: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&x) {
        Ok(())
    } else {
        Err(format!("must be from {lo} to {hi}, got {x}"))
    }
}

/// `Err` naming the range unless `lo <= x <= hi` (NaN is outside every range).
fn check_f64(x: f64, lo: f64, hi: f64) -> Result<(), String> {
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(())
    } else {
        Err(format!("must be a finite number in [{lo}, {hi}], got {x}"))
    }
}

impl TrainConfig {
    /// The inspection geometry these settings ask for, as the bundle records it: the mask
    /// by its file name in the bundle folder.
    /// The placement of the levels in the map: the key, else the receptive field.
    pub fn upsampling(&self) -> Upsampling {
        self.upsampling.unwrap_or(Upsampling::ReceptiveField)
    }

    pub fn geometry(&self) -> Geometry {
        Geometry {
            roi: self.roi,
            scale: self.scale.unwrap_or(1.0),
            tile: self.tile.map(|size| Tiles {
                size,
                overlap: self.overlap.unwrap_or(0),
            }),
            mask: self.mask.as_ref().map(|m| {
                m.file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| m.clone())
            }),
            reference: None,
        }
    }

    /// Whether inspection (and so training) is tiled.
    pub fn tiled(&self) -> bool {
        self.tile.is_some()
    }

    /// Every setting outside the range a real training run could use, as (key in the
    /// `[train]` table, problem). Pure: `train` checks its settings with it before
    /// training, and a bundle's recorded settings are checked with it when it is read.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, r: Result<(), String>| {
            if let Err(m) = r {
                out.push((key, m));
            }
        };
        // A few hundred good images at the paper's 50 epochs is a few thousand steps;
        // 10 000 epochs is far past any run that still learns.
        check("epochs", check_int(self.epochs as u64, 1, 10_000));
        // Both networks' activations for every image of a batch are held at once: the
        // paper trains with 8, and 256 already fills a large GPU at 256 px.
        check("batch_size", check_int(self.batch_size as u64, 1, 256));
        check("image_size", check_image_size(self.image_size));
        // AdamW: the paper uses 2e-4, the demo 3e-3; a step of 1 overshoots every weight.
        check(
            "learning_rate",
            if self.learning_rate > 0.0 && self.learning_rate <= 1.0 {
                Ok(())
            } else {
                Err(format!(
                    "must be a finite number in (0, 1], got {}",
                    self.learning_rate
                ))
            },
        );
        check("weight_decay", check_f64(self.weight_decay, 0.0, 1.0));
        // OOM focusing exponent: the paper uses 2; at 10 only the very worst pixels count.
        check("gamma", check_f64(self.gamma, 0.0, 10.0));
        check(
            "holdout_fraction",
            if (0.0..0.9).contains(&self.holdout_fraction) {
                Ok(())
            } else {
                Err(format!(
                    "must be a number in [0, 0.9), got {}",
                    self.holdout_fraction
                ))
            },
        );
        // PyTorch convention: the weight of the new batch in the running statistics.
        check("bn_momentum", check_f64(self.bn_momentum, 0.0, 1.0));
        // Rectangles per image (reference: 4; 64 is 16 times that).
        check("anomalies.max_count", check_int(self.anomalies.max_count.into(), 0, 64));
        // The geometry, by the bundle's own rules (`bundle::geometry`), under the `[train]`
        // keys that set it.
        if self.overlap.is_some() && self.tile.is_none() {
            out.push(("overlap", "applies to tiles only: set tile too".to_string()));
        }
        if let Some(m) = &self.mask {
            if m.file_name().is_none() {
                out.push(("mask", format!("must name an image file, got \"{}\"", m.display())));
            }
        }
        self.geometry().problems(self.image_size, &mut |field: &str, m: String| {
            let (key, sub) = match field {
                "geometry.tile.size" => ("tile", None),
                "geometry.tile.overlap" => ("overlap", None),
                "geometry.scale" => ("scale", None),
                "geometry.mask" => ("mask", None),
                f => ("roi", f.strip_prefix("geometry.roi.")),
            };
            let m = m
                .replace("the bundle's input_size", "image_size")
                .replace("geometry.tile", "tile")
                .replace("geometry.", "");
            out.push((key, match sub {
                Some(s) => format!("{s} {m}"),
                None => m,
            }));
        });
        out
    }

    /// [`Self::problems`] as one error: `train.KEY: problem`, every problem, `; `-separated.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if !problems.is_empty() {
            let all: Vec<String> = problems
                .iter()
                .map(|(key, m)| format!("train.{key}: {m}"))
                .collect();
            bail!("{}", all.join("; "));
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
        let sets_size = train.get("image_size").is_some();
        let mut cfg: Self = train
            .try_into()
            .with_context(|| format!("{}: invalid [train] table", path.display()))?;
        // `tile` is the network input: it sets `image_size` unless that is given too (then
        // the two must agree, see `problems`).
        if let (Some(t), false) = (cfg.tile, sets_size) {
            cfg.image_size = t;
        }
        // A relative mask path is relative to the file that names it.
        if let Some(m) = &cfg.mask {
            if m.is_relative() {
                if let Some(dir) = path.parent() {
                    cfg.mask = Some(dir.join(m));
                }
            }
        }
        Ok(cfg)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    type Edit = fn(&mut TrainConfig);

    #[test]
    fn the_defaults_and_the_edges_of_every_range_pass() {
        assert!(TrainConfig::default().problems().is_empty());
        let edges: &[Edit] = &[
            |c| c.epochs = 1,
            |c| c.epochs = 10_000,
            |c| c.batch_size = 1,
            |c| c.batch_size = 256,
            |c| c.image_size = 32,
            |c| c.image_size = 1024,
            |c| c.learning_rate = 1.0,
            |c| c.weight_decay = 0.0,
            |c| c.weight_decay = 1.0,
            |c| c.gamma = 0.0,
            |c| c.gamma = 10.0,
            |c| c.holdout_fraction = 0.0,
            |c| c.holdout_fraction = 0.89,
            |c| c.bn_momentum = 0.0,
            |c| c.bn_momentum = 1.0,
            |c| c.anomalies.max_count = 0,
            |c| c.anomalies.max_count = 64,
        ];
        for (i, edit) in edges.iter().enumerate() {
            let mut c = TrainConfig::default();
            edit(&mut c);
            assert_eq!(c.problems(), vec![], "edge {i}");
            c.validate().unwrap();
        }
    }

    /// Each bad value alone: one problem, at its key, and `validate` says `train.KEY: ...`.
    #[test]
    fn every_bad_value_is_refused_naming_its_key() {
        let cases: &[(&str, &str, Edit)] = &[
            ("epochs", "must be from 1 to 10000, got 0", |c| c.epochs = 0),
            ("epochs", "must be from 1 to 10000, got 10001", |c| c.epochs = 10_001),
            ("batch_size", "must be from 1 to 256, got 0", |c| c.batch_size = 0),
            ("batch_size", "must be from 1 to 256, got 100000", |c| c.batch_size = 100_000),
            ("image_size", "must be a multiple of 16 from 32 to 1024, got 100", |c| c.image_size = 100),
            ("image_size", "must be a multiple of 16 from 32 to 1024, got 16", |c| c.image_size = 16),
            ("image_size", "must be a multiple of 16 from 32 to 1024, got 100000", |c| c.image_size = 100_000),
            ("learning_rate", "must be a finite number in (0, 1], got 0", |c| c.learning_rate = 0.0),
            ("learning_rate", "must be a finite number in (0, 1], got NaN", |c| c.learning_rate = f64::NAN),
            ("learning_rate", "must be a finite number in (0, 1], got 2", |c| c.learning_rate = 2.0),
            ("weight_decay", "must be a finite number in [0, 1], got -0.1", |c| c.weight_decay = -0.1),
            ("weight_decay", "must be a finite number in [0, 1], got inf", |c| c.weight_decay = f64::INFINITY),
            ("gamma", "must be a finite number in [0, 10], got NaN", |c| c.gamma = f64::NAN),
            ("gamma", "must be a finite number in [0, 10], got 11", |c| c.gamma = 11.0),
            ("holdout_fraction", "must be a number in [0, 0.9), got 0.9", |c| c.holdout_fraction = 0.9),
            ("holdout_fraction", "must be a number in [0, 0.9), got NaN", |c| c.holdout_fraction = f64::NAN),
            ("bn_momentum", "must be a finite number in [0, 1], got 1.5", |c| c.bn_momentum = 1.5),
            ("anomalies.max_count", "must be from 0 to 64, got 65", |c| c.anomalies.max_count = 65),
        ];
        for (key, message, edit) in cases {
            let mut c = TrainConfig::default();
            edit(&mut c);
            assert_eq!(c.problems(), vec![(*key, message.to_string())]);
            assert_eq!(c.validate().unwrap_err().to_string(), format!("train.{key}: {message}"));
        }
    }

    /// The geometry keys, checked by the bundle's geometry rules under their `[train]` keys.
    #[test]
    fn the_geometry_keys_are_checked_by_the_bundles_rules() {
        let tiled = TrainConfig {
            image_size: 64,
            tile: Some(64),
            overlap: Some(16),
            roi: Some(Roi { x: 0, y: 0, w: 320, h: 256 }),
            scale: Some(2.0),
            mask: Some("/masks/part.png".into()),
            ..Default::default()
        };
        assert_eq!(tiled.problems(), vec![]);
        let g = tiled.geometry();
        assert_eq!(g.tile, Some(Tiles { size: 64, overlap: 16 }));
        assert_eq!(g.mask, Some(PathBuf::from("part.png")));
        assert_eq!(TrainConfig::default().geometry(), Geometry::default());
        let cases: &[(&str, &str, Edit)] = &[
            ("tile", "must be image_size (64), got 128", |c| c.tile = Some(128)),
            ("overlap", "must be below half the tile size (32), got 32", |c| c.overlap = Some(32)),
            ("roi", "w must be a side of source pixels from 1 to 16384, got 0", |c| c.roi.as_mut().unwrap().w = 0),
            ("roi", "320x100 source px at scale 2 is 160x50 network px, smaller than one 64x64 tile", |c| c.roi.as_mut().unwrap().h = 100),
            ("scale", "must be a finite number of source pixels per network pixel in [1, 16], got 0.5", |c| c.scale = Some(0.5)),
        ];
        for (key, message, edit) in cases {
            let mut c = tiled.clone();
            edit(&mut c);
            assert_eq!(c.problems(), vec![(*key, message.to_string())]);
        }
        let untiled = TrainConfig { overlap: Some(8), mask: Some("m.png".into()), ..Default::default() };
        let keys: Vec<&str> = untiled.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, vec!["overlap", "mask"]);
    }

    #[test]
    fn a_tile_in_the_file_sets_the_input_size_unless_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[train]\ntile = 128\nroi = { x = 1, y = 2, w = 300, h = 200 }\nmask = \"m.png\"\n").unwrap();
        let cfg = TrainConfig::from_file(&path).unwrap();
        assert_eq!((cfg.image_size, cfg.tile), (128, Some(128)));
        assert_eq!(cfg.roi, Some(Roi { x: 1, y: 2, w: 300, h: 200 }));
        assert_eq!(cfg.mask, Some(dir.path().join("m.png")));
        std::fs::write(&path, "[train]\ntile = 128\nimage_size = 64\n").unwrap();
        let cfg = TrainConfig::from_file(&path).unwrap();
        assert_eq!(cfg.problems(), vec![("tile", "must be image_size (64), got 128".to_string())]);
    }
}
