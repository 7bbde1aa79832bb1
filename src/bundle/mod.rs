//! A trained model bundle: a directory with the apprentice's weights (safetensors, the same
//! tensor names as the backbone's upstream checkpoints) and `model.toml` saying everything
//! needed to use it: backbone, which expert file (by SHA-256) it was trained against, input
//! size, normalisation, training settings, and the calibration of normal scores with the
//! default threshold. Written to a temporary directory and renamed into place, so a crash
//! never leaves half a model.

pub mod geometry;
pub mod settings;

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::backbone::BackboneKind;
use crate::model::postprocess::ScoreMethod;
use crate::model::kernels::resize::Upsampling;
use geometry::Geometry;
use settings::TrainConfig;

pub const META_FILE: &str = "model.toml";
pub const WEIGHTS_FILE: &str = "apprentice.safetensors";
pub const FORMAT_VERSION: u32 = 1;

/// The largest anomaly score there is. The CDO anomaly map is a mean over levels of
/// 1 − cos(expert, apprentice) features, and a cosine lies in [−1, 1], so every map value,
/// and every image score (a mean or maximum of map values), lies in [0, 2]. A threshold
/// outside [0, 2] can never work: above 2 every part passes, below 0 every part is
/// rejected (and NaN passes every part).
pub const MAX_SCORE: f32 = 2.0;

/// Checks a threshold an image score or map value is compared with, wherever it comes
/// from (a bundle's calibration, the station file, the command line).
pub fn check_threshold(x: f32) -> Result<(), String> {
    if x.is_finite() && (0.0..=MAX_SCORE).contains(&x) {
        Ok(())
    } else {
        Err(format!(
            "must be a finite anomaly score in [0, {MAX_SCORE}], got {x}"
        ))
    }
}

/// A threshold typed on the command line (a clap `value_parser`): a number that passes
/// [`check_threshold`].
pub fn parse_threshold(s: &str) -> Result<f32, String> {
    let x: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number, got \"{s}\""))?;
    check_threshold(x)?;
    Ok(x)
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path} is not a model bundle (no {META_FILE}); train one with `cdo-inspect train`")]
    NotABundle { path: PathBuf },
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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

impl TrainingRecord {
    /// The record of a pair that was never trained (a fresh apprentice for `bench` or a
    /// test): the settings and nothing done.
    pub fn untrained(config: TrainConfig) -> Self {
        Self {
            config,
            images_used: 0,
            images_skipped: 0,
            images_held_out: 0,
            steps: 0,
            final_loss: f64::NAN,
            seconds: 0.0,
        }
    }
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
    /// How a frame is inspected (region of interest, scale, tiles, ignore mask). Absent in
    /// every bundle written before tiling, which reads as the whole frame resized to the
    /// input; not written when it is that default, so such bundles stay byte for byte
    /// as before.
    #[serde(default, skip_serializing_if = "Geometry::is_default")]
    pub geometry: Geometry,
    /// Where each feature level's discrepancy is placed in the map. Absent in bundles
    /// written before it was a choice, which were all trained and calibrated with the
    /// reference's align corners; not written for that value, so they stay byte for byte.
    #[serde(default, skip_serializing_if = "is_align_corners")]
    pub upsampling: Upsampling,
}

fn is_align_corners(u: &Upsampling) -> bool {
    *u == Upsampling::AlignCorners
}

impl BundleMeta {
    /// Every value outside what a bundle written by `train` can hold, as `field: problem`
    /// (`calibration.threshold: must be a finite anomaly score in [0, 2], got NaN`). Pure;
    /// empty for a good bundle. A bundle of another format version gets that one problem
    /// only: its other fields may mean something else.
    pub fn problems(&self) -> Vec<String> {
        if self.format_version != FORMAT_VERSION {
            return vec![format!(
                "format_version: bundle format version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            )];
        }
        let mut out = Vec::new();
        let mut bad = |field: &str, problem: String| out.push(format!("{field}: {problem}"));

        if !is_plain_file_name(&self.expert_file) {
            bad(
                "expert_file",
                format!(
                    "must be a plain file name (no folder, no `..`), got \"{}\"",
                    self.expert_file.escape_debug()
                ),
            );
        }
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if !(self.expert_sha256.len() == 64 && self.expert_sha256.chars().all(hex)) {
            bad(
                "expert_sha256",
                format!(
                    "must be 64 lowercase hex digits (a SHA-256), got \"{}\"",
                    self.expert_sha256.escape_debug()
                ),
            );
        }
        let size_ok = settings::check_image_size(self.input_size);
        if let Err(e) = &size_ok {
            bad("input_size", e.clone());
        }
        for (c, &m) in self.mean.iter().enumerate() {
            // A channel mean of pixel values scaled to [0, 1].
            if !(m.is_finite() && (0.0..=1.0).contains(&m)) {
                bad(&format!("mean[{c}]"), format!("must be a finite number in [0, 1], got {m}"));
            }
        }
        for (c, &sd) in self.std.iter().enumerate() {
            // A channel standard deviation of values in [0, 1]; 0 would divide by zero.
            if !(sd.is_finite() && sd > 0.0 && sd <= 1.0) {
                bad(&format!("std[{c}]"), format!("must be a finite number in (0, 1], got {sd}"));
            }
        }
        // Beyond half the map a Gaussian flattens it to its mean: no defect stands out.
        let max_sigma = self.input_size as f32 / 2.0;
        let sigma = self.smoothing_sigma;
        if !(sigma.is_finite() && sigma >= 0.0 && (size_ok.is_err() || sigma <= max_sigma)) {
            bad(
                "smoothing_sigma",
                format!("must be a finite number of pixels in [0, input_size / 2 = {max_sigma}], got {sigma}"),
            );
        }
        match self.score {
            ScoreMethod::TopFraction(f) if !(f > 0.0 && f <= 1.0) => bad(
                "score.top_fraction",
                format!("must be a fraction of the map in (0, 1], got {f}"),
            ),
            _ => {}
        }
        if let Some(c) = &self.calibration {
            c.problems(&mut bad);
        }
        for (key, problem) in self.training.config.problems() {
            bad(&format!("training.config.{key}"), problem);
        }
        self.geometry.problems(self.input_size, &mut bad);
        out
    }

    /// [`Self::problems`] as one message, `; `-separated.
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Calibration {
    fn problems(&self, bad: &mut impl FnMut(&str, String)) {
        if let Err(e) = check_threshold(self.threshold) {
            bad("calibration.threshold", e);
        }
        if self.count == 0 || self.count != self.scores.len() {
            bad(
                "calibration.count",
                format!(
                    "must be the number of calibration.scores ({}, at least 1), got {}",
                    self.scores.len(),
                    self.count
                ),
            );
        }
        for (field, x) in [("mean", self.mean), ("min", self.min), ("max", self.max)] {
            if !x.is_finite() {
                bad(&format!("calibration.{field}"), format!("must be a finite number, got {x}"));
            }
        }
        if !(self.std.is_finite() && self.std >= 0.0) {
            bad("calibration.std", format!("must be a finite number >= 0, got {}", self.std));
        }
        if self.min > self.max {
            bad(
                "calibration.min",
                format!("must not be above calibration.max ({}), got {}", self.max, self.min),
            );
        }
        // One message for the first bad score, not one per score.
        if let Some((i, x)) = self.scores.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            bad(&format!("calibration.scores[{i}]"), format!("must be a finite number, got {x}"));
        }
    }
}

/// A file name with no folder in it: what a bundle names its expert by (it is looked up
/// in the models folder, so `../x` or `/etc/x` would read a file from elsewhere).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
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
        let text = std::fs::read_to_string(&meta_path).map_err(|error| BundleError::Read {
            path: meta_path.clone(),
            error,
        })?;
        let meta: BundleMeta = toml::from_str(&text).map_err(|e| BundleError::Invalid {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        // Every value that reaches a decision (the threshold, the score) or an allocation
        // (the input size) is checked here, on every path a bundle is read by.
        meta.validate().map_err(|message| BundleError::Invalid {
            path: meta_path,
            message,
        })?;
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
        Self::write_with_files(dir, meta, tensors, &[])
    }

    /// [`Self::write`], copying `files` (name in the bundle folder, source path) into the
    /// new bundle before it replaces the old one (the geometry's ignore mask).
    pub fn write_with_files(
        dir: &Path,
        meta: &BundleMeta,
        tensors: &[(String, Tensor)],
        files: &[(&str, &Path)],
    ) -> Result<(), BundleError> {
        let werr = |message: String| BundleError::Write {
            path: dir.to_path_buf(),
            message,
        };
        // Never write what `load_meta` would refuse.
        meta.validate()
            .map_err(|m| werr(format!("invalid {META_FILE}: {m}")))?;
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
            for (name, src) in files {
                if !is_plain_file_name(name) {
                    return Err(werr(format!("{name}: not a plain file name")));
                }
                std::fs::copy(src, tmp.join(name))
                    .map_err(|e| werr(format!("cannot copy {}: {e}", src.display())))?;
            }
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

/// What `train` writes, every value in range (for tests here and in `config`).
#[cfg(test)]
pub(crate) fn example_meta() -> BundleMeta {
    BundleMeta {
        format_version: FORMAT_VERSION,
        created: "2026-12-01T12:00:00Z".into(),
        backbone: BackboneKind::EfficientNetLite0,
        expert_file: "efficientnet-lite0-57934424.pth".into(),
        expert_sha256: "0123456789abcdef".repeat(4),
        input_size: 256,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        smoothing_sigma: 4.0,
        score: ScoreMethod::default(),
        calibration: Calibration::from_scores(&[0.2, 0.25, 0.3]),
        training: TrainingRecord {
            config: TrainConfig::default(),
            images_used: 10,
            images_skipped: 0,
            images_held_out: 3,
            steps: 100,
            final_loss: 0.1,
            seconds: 1.0,
        },
        geometry: Geometry::default(),
        upsampling: Upsampling::ReceptiveField,
    }
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

    fn good_meta() -> BundleMeta {
        example_meta()
    }

    type Edit = fn(&mut BundleMeta);

    #[test]
    fn a_good_meta_and_the_edges_of_every_range_pass() {
        assert_eq!(good_meta().problems(), Vec::<String>::new());
        let edges: &[(&str, Edit)] = &[
            ("no calibration", |m| m.calibration = None),
            ("threshold 0", |m| m.calibration.as_mut().unwrap().threshold = 0.0),
            ("threshold 2", |m| m.calibration.as_mut().unwrap().threshold = 2.0),
            ("input size 32", |m| {
                m.input_size = 32;
                m.training.config.image_size = 32;
            }),
            ("input size 1024", |m| {
                m.input_size = 1024;
                m.training.config.image_size = 1024;
            }),
            ("score max", |m| m.score = ScoreMethod::Max),
            ("top fraction 1", |m| m.score = ScoreMethod::TopFraction(1.0)),
            ("no smoothing", |m| m.smoothing_sigma = 0.0),
            ("sigma half the input", |m| m.smoothing_sigma = 128.0),
            ("mean 0 std 1", |m| {
                m.mean = [0.0; 3];
                m.std = [1.0; 3];
            }),
            ("an expert file name with dots", |m| m.expert_file = "lite0.v2.pth".into()),
        ];
        for (name, edit) in edges {
            let mut m = good_meta();
            edit(&mut m);
            assert_eq!(m.problems(), Vec::<String>::new(), "{name}");
        }
    }

    /// Each bad value alone: exactly one problem, naming its field.
    #[test]
    fn every_bad_value_is_refused_naming_its_field() {
        let cases: &[(&str, Edit)] = &[
            ("format_version: bundle format version 2 is not supported", |m| m.format_version = 2),
            ("expert_file: must be a plain file name", |m| m.expert_file = "../../etc/passwd".into()),
            ("expert_file: must be a plain file name", |m| m.expert_file = "/models/x.pth".into()),
            ("expert_file: must be a plain file name", |m| m.expert_file = "models\\x.pth".into()),
            ("expert_file: must be a plain file name", |m| m.expert_file = "..".into()),
            ("expert_file: must be a plain file name", |m| m.expert_file = String::new()),
            ("expert_sha256: must be 64 lowercase hex digits", |m| m.expert_sha256 = "abc".into()),
            ("expert_sha256: must be 64 lowercase hex digits", |m| m.expert_sha256 = "0".repeat(65)),
            ("expert_sha256: must be 64 lowercase hex digits", |m| m.expert_sha256 = "G".repeat(64)),
            ("expert_sha256: must be 64 lowercase hex digits", |m| m.expert_sha256 = "A".repeat(64)),
            ("input_size: must be a multiple of 16 from 32 to 1024, got 100000", |m| m.input_size = 100_000),
            ("input_size: must be a multiple of 16 from 32 to 1024, got 100", |m| m.input_size = 100),
            ("input_size: must be a multiple of 16 from 32 to 1024, got 16", |m| m.input_size = 16),
            ("input_size: must be a multiple of 16 from 32 to 1024, got 0", |m| m.input_size = 0),
            ("mean[1]: must be a finite number in [0, 1], got NaN", |m| m.mean[1] = f32::NAN),
            ("mean[0]: must be a finite number in [0, 1], got 255", |m| m.mean[0] = 255.0),
            ("std[2]: must be a finite number in (0, 1], got 0", |m| m.std[2] = 0.0),
            ("std[0]: must be a finite number in (0, 1], got inf", |m| m.std[0] = f32::INFINITY),
            ("std[1]: must be a finite number in (0, 1], got -0.2", |m| m.std[1] = -0.2),
            ("smoothing_sigma: must be a finite number of pixels in [0, input_size / 2 = 128], got NaN", |m| m.smoothing_sigma = f32::NAN),
            ("smoothing_sigma: ", |m| m.smoothing_sigma = -1.0),
            ("smoothing_sigma: ", |m| m.smoothing_sigma = 129.0),
            ("score.top_fraction: must be a fraction of the map in (0, 1], got 0", |m| m.score = ScoreMethod::TopFraction(0.0)),
            ("score.top_fraction: must be a fraction of the map in (0, 1], got 1.5", |m| m.score = ScoreMethod::TopFraction(1.5)),
            ("score.top_fraction: must be a fraction of the map in (0, 1], got NaN", |m| m.score = ScoreMethod::TopFraction(f64::NAN)),
            ("calibration.threshold: must be a finite anomaly score in [0, 2], got NaN", |m| m.calibration.as_mut().unwrap().threshold = f32::NAN),
            ("calibration.threshold: must be a finite anomaly score in [0, 2], got inf", |m| m.calibration.as_mut().unwrap().threshold = f32::INFINITY),
            ("calibration.threshold: must be a finite anomaly score in [0, 2], got 1000000000000000000000000000000", |m| m.calibration.as_mut().unwrap().threshold = 1e30),
            ("calibration.threshold: must be a finite anomaly score in [0, 2], got 2.01", |m| m.calibration.as_mut().unwrap().threshold = 2.01),
            ("calibration.threshold: must be a finite anomaly score in [0, 2], got -0.1", |m| m.calibration.as_mut().unwrap().threshold = -0.1),
            ("calibration.count: must be the number of calibration.scores (3, at least 1), got 7", |m| m.calibration.as_mut().unwrap().count = 7),
            ("calibration.count: must be the number of calibration.scores (0, at least 1), got 0", |m| {
                let c = m.calibration.as_mut().unwrap();
                c.count = 0;
                c.scores.clear();
            }),
            ("calibration.mean: must be a finite number, got NaN", |m| m.calibration.as_mut().unwrap().mean = f32::NAN),
            ("calibration.std: must be a finite number >= 0, got -1", |m| m.calibration.as_mut().unwrap().std = -1.0),
            ("calibration.min: must not be above calibration.max", |m| m.calibration.as_mut().unwrap().min = 0.31),
            ("calibration.max: must be a finite number, got inf", |m| m.calibration.as_mut().unwrap().max = f32::INFINITY),
            ("calibration.scores[1]: must be a finite number, got NaN", |m| {
                let c = m.calibration.as_mut().unwrap();
                c.scores[1] = f32::NAN;
                c.scores[2] = f32::NAN;
            }),
            ("training.config.epochs: must be from 1 to 10000, got 0", |m| m.training.config.epochs = 0),
            ("training.config.image_size: must be a multiple of 16", |m| m.training.config.image_size = 2048),
            ("training.config.learning_rate: ", |m| m.training.config.learning_rate = f64::NAN),
        ];
        for (expected, edit) in cases {
            let mut m = good_meta();
            edit(&mut m);
            let problems = m.problems();
            assert_eq!(problems.len(), 1, "{expected}: {problems:?}");
            assert!(problems[0].starts_with(expected), "{expected}: {problems:?}");
            assert_eq!(m.validate(), Err(problems[0].clone()));
        }
        // Several bad values: every one is named.
        let mut m = good_meta();
        m.input_size = 100_000;
        m.calibration.as_mut().unwrap().threshold = f32::NAN;
        let all = m.validate().unwrap_err();
        assert!(all.contains("input_size: ") && all.contains("; calibration.threshold: "), "{all}");
    }

    fn write_meta(dir: &Path, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(META_FILE), text).unwrap();
        std::fs::write(dir.join(WEIGHTS_FILE), b"").unwrap();
    }

    /// A bundle file edited by hand (or by fault injection) is refused when it is read,
    /// with the file and the field: every command reads bundles through `load_meta`.
    #[test]
    fn load_meta_refuses_out_of_range_values_naming_the_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let good = toml::to_string(&good_meta()).unwrap();
        write_meta(tmp.path(), &good);
        assert_eq!(Bundle::load_meta(tmp.path()).unwrap().meta, good_meta());

        let threshold = good.lines().find(|l| l.starts_with("threshold = ")).unwrap();
        let cases = [
            (threshold, "threshold = nan", "calibration.threshold: must be a finite anomaly score in [0, 2], got NaN"),
            (threshold, "threshold = inf", "calibration.threshold: must be a finite anomaly score in [0, 2], got inf"),
            (threshold, "threshold = 1e30", "calibration.threshold: must be a finite anomaly score in [0, 2], got 1000000000000000000000000000000"),
            ("input_size = 256", "input_size = 100000", "input_size: must be a multiple of 16 from 32 to 1024, got 100000"),
            ("top_fraction = 0.01", "top_fraction = 0.0", "score.top_fraction: must be a fraction of the map in (0, 1], got 0"),
            ("smoothing_sigma = 4.0", "smoothing_sigma = nan", "smoothing_sigma: must be a finite number of pixels in [0, input_size / 2 = 128], got NaN"),
        ];
        for (from, to, expected) in cases {
            assert!(good.contains(from), "{from} not in:\n{good}");
            write_meta(tmp.path(), &good.replacen(from, to, 1));
            let err = Bundle::load_meta(tmp.path()).err().expect(to).to_string();
            let path = tmp.path().join(META_FILE);
            assert_eq!(err, format!("{}: {expected}", path.display()), "{to}");
        }
    }

    /// `train` can never write a bundle that `load_meta` would refuse; a good one round-trips.
    #[test]
    fn write_refuses_an_invalid_meta_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        let mut bad = good_meta();
        bad.calibration.as_mut().unwrap().threshold = 5.0;
        let err = Bundle::write(&dir, &bad, &[]).unwrap_err().to_string();
        assert!(err.contains("invalid model.toml: calibration.threshold: must be a finite anomaly score in [0, 2], got 5"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

        Bundle::write(&dir, &good_meta(), &[]).unwrap();
        assert_eq!(Bundle::load_meta(&dir).unwrap().meta, good_meta());
    }

    #[test]
    fn thresholds_from_anywhere_are_anomaly_scores() {
        assert_eq!(parse_threshold("0.35"), Ok(0.35));
        assert_eq!(parse_threshold("0"), Ok(0.0));
        assert_eq!(parse_threshold("2"), Ok(2.0));
        for bad in ["nan", "NaN", "inf", "-inf", "1e30", "2.5", "-0.01"] {
            let e = parse_threshold(bad).unwrap_err();
            assert!(e.starts_with("must be a finite anomaly score in [0, 2], got "), "{bad}: {e}");
        }
        assert_eq!(parse_threshold("high"), Err("expected a number, got \"high\"".into()));
    }
}
