//! A trained model bundle: a directory with the apprentice's weights (safetensors, the same
//! tensor names as the backbone's upstream checkpoints) and `model.toml` saying everything
//! needed to use it: backbone, which expert file (by SHA-256) it was trained against, input
//! size, normalisation, training settings, and the calibration of normal scores with the
//! default threshold. Written to a temporary directory and renamed into place, so a crash
//! never leaves half a model.

pub mod settings;

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::backbone::BackboneKind;
use crate::model::postprocess::ScoreMethod;
use settings::TrainConfig;

pub const META_FILE: &str = "model.toml";
pub const WEIGHTS_FILE: &str = "apprentice.safetensors";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path} is not a model bundle (no {META_FILE}); train one with `cdo-inspect train`")]
    NotABundle { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write bundle {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// Statistics of the image scores of held-out good images, and the threshold derived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    /// How `threshold` was derived from the scores.
    pub rule: String,
    pub threshold: f32,
    pub count: usize,
    pub mean: f32,
    pub std: f32,
    pub min: f32,
    pub max: f32,
    /// Every held-out score, for an engineer who wants another rule.
    pub scores: Vec<f32>,
}

impl Calibration {
    /// Threshold = mean + 3 standard deviations of the held-out good scores, and never
    /// below their maximum: no held-out good part is rejected, and a part must stand out
    /// from the normal spread to be.
    pub fn from_scores(scores: &[f32]) -> Option<Self> {
        if scores.is_empty() {
            return None;
        }
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
        let var = scores
            .iter()
            .map(|&s| (s as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0).max(1.0);
        let std = var.sqrt();
        let max = scores.iter().cloned().fold(f32::MIN, f32::max);
        let min = scores.iter().cloned().fold(f32::MAX, f32::min);
        let threshold = ((mean + 3.0 * std) as f32).max(max);
        Some(Self {
            rule: "max(mean + 3 std, max) of held-out good scores".into(),
            threshold,
            count: scores.len(),
            mean: mean as f32,
            std: std as f32,
            min,
            max,
            scores: scores.to_vec(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainingRecord {
    pub config: TrainConfig,
    pub images_used: usize,
    pub images_skipped: usize,
    pub images_held_out: usize,
    pub steps: u64,
    pub final_loss: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleMeta {
    pub format_version: u32,
    pub created: String,
    pub backbone: BackboneKind,
    /// File name of the expert weights it was trained against, and their SHA-256.
    pub expert_file: String,
    pub expert_sha256: String,
    pub input_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Gaussian smoothing of the anomaly map, in pixels of the input size.
    pub smoothing_sigma: f32,
    pub score: ScoreMethod,
    pub calibration: Option<Calibration>,
    pub training: TrainingRecord,
}

pub struct Bundle {
    pub dir: PathBuf,
    pub meta: BundleMeta,
}

impl Bundle {
    pub fn load_meta(dir: &Path) -> Result<Bundle, BundleError> {
        let meta_path = dir.join(META_FILE);
        if !meta_path.is_file() {
            return Err(BundleError::NotABundle {
                path: dir.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&meta_path).map_err(|source| BundleError::Read {
            path: meta_path.clone(),
            source,
        })?;
        let meta: BundleMeta = toml::from_str(&text).map_err(|e| BundleError::Invalid {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(BundleError::Invalid {
                path: meta_path,
                message: format!(
                    "bundle format version {} is not supported (this build reads {FORMAT_VERSION})",
                    meta.format_version
                ),
            });
        }
        if !dir.join(WEIGHTS_FILE).is_file() {
            return Err(BundleError::Invalid {
                path: dir.to_path_buf(),
                message: format!("{WEIGHTS_FILE} is missing"),
            });
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    /// Writes `meta` and `tensors` as a bundle at `dir`, replacing any bundle there only
    /// once the new one is complete on disk.
    pub fn write(
        dir: &Path,
        meta: &BundleMeta,
        tensors: &[(String, Tensor)],
    ) -> Result<(), BundleError> {
        let werr = |message: String| BundleError::Write {
            path: dir.to_path_buf(),
            message,
        };
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| werr(e.to_string()))?;
        let name = dir
            .file_name()
            .ok_or_else(|| werr("not a directory name".into()))?;
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| werr(e.to_string()))?;
        let result = (|| {
            let map: std::collections::HashMap<String, Tensor> = tensors.iter().cloned().collect();
            candle_core::safetensors::save(&map, tmp.join(WEIGHTS_FILE))
                .map_err(|e| werr(e.to_string()))?;
            let text = toml::to_string_pretty(meta).map_err(|e| werr(e.to_string()))?;
            let header = "# cdo-inspect model bundle: written by `cdo-inspect train`; the threshold can be\n\
                          # overridden per station rather than edited here.\n";
            std::fs::write(tmp.join(META_FILE), format!("{header}{text}"))
                .map_err(|e| werr(e.to_string()))?;
            sync_dir(&tmp);
            // Swap: move an old bundle aside, move the new one in, then delete the old one.
            let old = parent.join(format!(
                ".{}.old-{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            let had_old = dir.exists();
            if had_old {
                std::fs::rename(dir, &old).map_err(|e| werr(e.to_string()))?;
            }
            std::fs::rename(&tmp, dir).map_err(|e| werr(e.to_string()))?;
            if had_old {
                let _ = std::fs::remove_dir_all(&old);
            }
            sync_dir(&parent);
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }
}

/// Flushes file data and directory entries so a power cut after training keeps the bundle.
fn sync_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(f) = std::fs::File::open(e.path()) {
                let _ = f.sync_all();
            }
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Wall-clock time as RFC 3339 (UTC), for records a person reads.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_rule() {
        let c = Calibration::from_scores(&[1.0, 2.0, 3.0]).unwrap();
        assert!((c.mean - 2.0).abs() < 1e-6 && (c.std - 1.0).abs() < 1e-6);
        assert!((c.threshold - 5.0).abs() < 1e-6);
        // A single score: std 0, the threshold is that score.
        let c = Calibration::from_scores(&[0.4]).unwrap();
        assert_eq!(c.threshold, 0.4);
        assert!(Calibration::from_scores(&[]).is_none());
    }
}
