//! Offline CDO training of the apprentice from a folder of good images: synthetic
//! anomalies, the MOM/OOM loss against the frozen expert, AdamW. Interruptible and resumable
//! (state saved at every epoch end and on interrupt), reproducible from a seed.

pub mod optim;
pub mod synthetic;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::bundle::{now_rfc3339, Bundle, BundleMeta, Calibration, TrainingRecord, FORMAT_VERSION};
use crate::imageio::{list_images, load_rgb};
use crate::infer::Detector;
use crate::model::backbone::{
    Expert, Network, TrainableApprentice, IMAGENET_MEAN, IMAGENET_STD,
};
use crate::model::cdo::{cdo_loss, LossConfig, LossOutput};
use crate::model::layers::Mode;
use crate::model::postprocess::ScoreMethod;
use crate::infer::preprocess::{batch_tensor, image_to_chw};
use optim::{AdamW, AdamWConfig};
pub use crate::bundle::settings::TrainConfig;

impl TrainConfig {
    /// AdamW with this run's learning rate and weight decay.
    pub fn optimiser(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.learning_rate,
            weight_decay: self.weight_decay,
            ..Default::default()
        }
    }

    pub fn loss(&self) -> LossConfig {
        LossConfig {
            gamma: self.gamma,
            mom: self.mom,
            oom: self.oom,
        }
    }
}

/// The good images to train on.
#[derive(Debug, Clone)]
pub enum TrainData {
    /// Every image file in a folder (not recursive).
    Folder(PathBuf),
    /// An explicit list (a benchmark split).
    Files(Vec<PathBuf>),
}

impl std::fmt::Display for TrainData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainData::Folder(p) => write!(f, "{}", p.display()),
            TrainData::Files(v) => write!(f, "{} listed files", v.len()),
        }
    }
}

/// What `train` was asked to do.
pub struct TrainJob {
    pub data: TrainData,
    pub out: PathBuf,
    pub config: TrainConfig,
    pub models_dir: PathBuf,
    /// Discard a saved partial run instead of resuming it.
    pub restart: bool,
    pub device: Device,
}

pub enum TrainOutcome {
    Finished {
        bundle: PathBuf,
        calibration: Option<Calibration>,
    },
    Interrupted {
        state: PathBuf,
    },
}

/// Per-step figures, for the progress display and logs.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub epoch: usize,
    pub epochs: usize,
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub mean_normal: f64,
    pub mean_synthetic: Option<f64>,
    pub images_per_s: f64,
    pub eta_s: f64,
}

/// Where the resume state of a run writing `out` lives.
pub fn state_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bundle".into());
    out.with_file_name(format!("{name}.partial"))
}

#[derive(Debug, Serialize, Deserialize)]
struct ResumeState {
    config: TrainConfig,
    expert_sha256: String,
    data_fingerprint: String,
    /// Where to go on: epoch and step within it (earlier steps are done), optimiser step.
    epoch: usize,
    step_in_epoch: usize,
    step: u64,
    last_loss: f64,
    seconds: f64,
}

struct Dataset {
    train: Vec<RgbImage>,
    holdout: Vec<RgbImage>,
    skipped: usize,
    fingerprint: String,
}

fn load_dataset(data: &TrainData, cfg: &TrainConfig) -> Result<Dataset> {
    let paths = match data {
        TrainData::Folder(dir) => list_images(dir)?,
        TrainData::Files(files) => files.clone(),
    };
    let mut images = Vec::with_capacity(paths.len());
    let mut names = Vec::new();
    let mut skipped = 0;
    for path in &paths {
        match load_rgb(path) {
            Ok(img) => {
                images.push(image::imageops::resize(
                    &img,
                    cfg.image_size,
                    cfg.image_size,
                    image::imageops::FilterType::Triangle,
                ));
                // Name and size: a resumed run must see the same images.
                let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                names.push(format!("{name}:{size}"));
            }
            Err(e) => {
                log::warn!("skipping unreadable training image: {e}");
                skipped += 1;
            }
        }
    }
    if images.len() < 2 {
        bail!(
            "{}: need at least 2 readable good images to train, found {} ({} unreadable)",
            data,
            images.len(),
            skipped
        );
    }
    // Hold out a seeded random share for calibration (at least one image when there are 4+).
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x05EE_D0F4_011D));
    let mut n_hold = (images.len() as f64 * cfg.holdout_fraction).round() as usize;
    if cfg.holdout_fraction > 0.0 && images.len() >= 4 {
        n_hold = n_hold.max(1);
    }
    let hold: std::collections::HashSet<usize> = order[..n_hold].iter().copied().collect();
    let mut train = Vec::new();
    let mut holdout = Vec::new();
    for (i, img) in images.into_iter().enumerate() {
        if hold.contains(&i) {
            holdout.push(img);
        } else {
            train.push(img);
        }
    }
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for n in &names {
            h.update(n.as_bytes());
            h.update([0]);
        }
        format!("{:x}", h.finalize())
    };
    Ok(Dataset {
        train,
        holdout,
        skipped,
        fingerprint,
    })
}

fn step_rng(seed: u64, epoch: usize, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(((epoch as u64) << 32) | step as u64);
    rng
}

/// One training batch: images with synthetic anomalies, normalised, and their masks.
pub fn make_batch(
    images: &[&RgbImage],
    cfg: &TrainConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let s = cfg.image_size;
    let mut chw = Vec::with_capacity(images.len());
    let mut masks = Vec::with_capacity(images.len() * (s * s) as usize);
    for img in images {
        let mut img = (*img).clone();
        let rects = synthetic::draw_rects(rng, s, s, &cfg.anomalies);
        masks.extend(synthetic::apply(rng, &mut img, &rects, cfg.anomalies.noise));
        chw.push(image_to_chw(&img, s));
    }
    let x = batch_tensor(&chw, s, device)?;
    let mask = Tensor::from_vec(masks, (images.len(), 1, s as usize, s as usize), device)?;
    Ok((x, mask))
}

/// One optimisation step: both forward passes, the CDO loss, backward, AdamW on the
/// apprentice.
pub fn train_step(
    expert: &Network,
    apprentice: &Network,
    opt: &mut AdamW,
    x: &Tensor,
    mask: &Tensor,
    loss: &LossConfig,
) -> Result<LossOutput> {
    let fe = expert.features(x, Mode::Eval)?;
    let fa = apprentice.features(x, Mode::Train)?;
    let out = cdo_loss(&fe, &fa, Some(mask), loss)?;
    let grads = out.total.backward()?;
    opt.step(&grads)?;
    Ok(out)
}

/// The bundle description of a pair trained with `cfg` against `expert_file` (no
/// calibration yet).
pub fn bundle_meta(
    cfg: &TrainConfig,
    expert_file: &Path,
    expert_sha256: &str,
    training: TrainingRecord,
) -> BundleMeta {
    BundleMeta {
        format_version: FORMAT_VERSION,
        created: now_rfc3339(),
        backbone: cfg.backbone,
        expert_file: expert_file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string(),
        expert_sha256: expert_sha256.to_string(),
        input_size: cfg.image_size,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        smoothing_sigma: 4.0,
        score: ScoreMethod::default(),
        calibration: None,
        training,
        geometry: Default::default(),
    }
}

/// The expert weights path for a config.
pub fn expert_path(cfg: &TrainConfig, models_dir: &Path) -> PathBuf {
    cfg.expert_weights
        .clone()
        .unwrap_or_else(|| models_dir.join(cfg.backbone.default_weights_file()))
}

/// Trains, calls `on_step` after every step, stops cleanly when `stop` is raised.
pub fn train(
    job: &TrainJob,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepReport),
) -> Result<TrainOutcome> {
    let cfg = &job.config;
    cfg.validate()?;
    let device = &job.device;
    let expert_file = expert_path(cfg, &job.models_dir);
    let expert = Expert::load(cfg.backbone, &expert_file, device)?;
    log::info!(
        "expert {} loaded from {} (sha256 {})",
        cfg.backbone,
        expert_file.display(),
        &expert.sha256[..12]
    );

    let data = load_dataset(&job.data, cfg)?;
    log::info!(
        "{} training images, {} held out for calibration, {} unreadable skipped, from {}",
        data.train.len(),
        data.holdout.len(),
        data.skipped,
        job.data
    );

    let apprentice = TrainableApprentice::new(cfg.backbone, cfg.seed, cfg.bn_momentum, device)?;
    let mut opt = AdamW::new(apprentice.params.clone(), cfg.optimiser())?;

    // Resume a partial run of the same job if there is one.
    let state_dir = state_dir(&job.out);
    let mut start_epoch = 0;
    let mut start_step = 0;
    let mut seconds_before = 0.0;
    let mut last_loss = f64::NAN;
    if job.restart {
        let _ = std::fs::remove_dir_all(&state_dir);
    } else if state_dir.join("state.toml").is_file() {
        let text = std::fs::read_to_string(state_dir.join("state.toml"))?;
        let st: ResumeState = toml::from_str(&text).with_context(|| {
            format!(
                "{}: damaged resume state (use --restart)",
                state_dir.display()
            )
        })?;
        let mut same = st.config.clone();
        same.epochs = cfg.epochs; // more (or fewer) epochs may be asked on resume
        if same != *cfg
            || st.expert_sha256 != expert.sha256
            || st.data_fingerprint != data.fingerprint
        {
            bail!(
                "{} holds a partial run with other settings, expert or images; pass --restart to discard it",
                state_dir.display()
            );
        }
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load(state_dir.join("state.safetensors"), device)?;
        apprentice.load_state(&tensors)?;
        opt.load_state(&tensors, st.step)?;
        start_epoch = st.epoch;
        start_step = st.step_in_epoch;
        seconds_before = st.seconds;
        last_loss = st.last_loss;
        log::info!(
            "resuming from {} at epoch {}, step {} of the epoch",
            state_dir.display(),
            st.epoch + 1,
            st.step_in_epoch + 1
        );
    }

    let n = data.train.len();
    let batch = cfg.batch_size.min(n);
    let steps_per_epoch = n / batch; // drop the last partial batch (BatchNorm needs a batch)
    let total_steps = (steps_per_epoch * cfg.epochs) as u64;
    let started = Instant::now();
    let mut images_done = 0usize;
    let save_state =
        |epoch: usize, step_in_epoch: usize, last_loss: f64, opt: &AdamW| -> Result<()> {
            let mut tensors: HashMap<String, Tensor> =
                apprentice.state_dict().into_iter().collect();
            tensors.extend(opt.state());
            let tmp = state_dir.with_extension("partial-tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
            candle_core::safetensors::save(&tensors, tmp.join("state.safetensors"))?;
            let st = ResumeState {
                config: cfg.clone(),
                expert_sha256: expert.sha256.clone(),
                data_fingerprint: data.fingerprint.clone(),
                epoch,
                step_in_epoch,
                step: opt.step,
                last_loss,
                seconds: seconds_before + started.elapsed().as_secs_f64(),
            };
            std::fs::write(tmp.join("state.toml"), toml::to_string(&st)?)?;
            let _ = std::fs::remove_dir_all(&state_dir);
            std::fs::rename(&tmp, &state_dir)?;
            Ok(())
        };

    for epoch in start_epoch..cfg.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64 + 1),
        ));
        let mut epoch_loss = 0.0;
        let first_step = if epoch == start_epoch { start_step } else { 0 };
        for step in first_step..steps_per_epoch {
            let idx = &order[step * batch..(step + 1) * batch];
            let imgs: Vec<&RgbImage> = idx.iter().map(|&i| &data.train[i]).collect();
            let mut rng = step_rng(cfg.seed, epoch, step);
            let (x, mask) = make_batch(&imgs, cfg, &mut rng, device)?;
            let out = train_step(
                &expert.net,
                &apprentice.net,
                &mut opt,
                &x,
                &mask,
                &cfg.loss(),
            )?;
            let loss = out
                .total
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            if !loss.is_finite() {
                bail!("training diverged at epoch {} step {} (loss {loss}); lower train.learning_rate", epoch + 1, step + 1);
            }
            epoch_loss += loss;
            last_loss = loss;
            images_done += batch;
            let elapsed = started.elapsed().as_secs_f64();
            let done = opt.step;
            let steps_this_run =
                (done - (start_epoch * steps_per_epoch + start_step) as u64).max(1);
            on_step(&StepReport {
                epoch: epoch + 1,
                epochs: cfg.epochs,
                step: done,
                total_steps,
                loss,
                mean_normal: out.mean_normal_d,
                mean_synthetic: out.mean_synthetic_d,
                images_per_s: images_done as f64 / elapsed.max(1e-9),
                eta_s: elapsed / steps_this_run as f64 * total_steps.saturating_sub(done) as f64,
            });
            if stop.load(Ordering::SeqCst) {
                // The epoch's order and anomalies derive from the seed, so a resumed run
                // continues exactly as an uninterrupted one would.
                save_state(epoch, step + 1, last_loss, &opt)?;
                return Ok(TrainOutcome::Interrupted {
                    state: state_dir.clone(),
                });
            }
        }
        log::info!(
            "epoch {}/{}: mean loss {:.5}",
            epoch + 1,
            cfg.epochs,
            epoch_loss / steps_per_epoch.max(1) as f64
        );
        save_state(epoch + 1, 0, last_loss, &opt)?;
    }
    let seconds = seconds_before + started.elapsed().as_secs_f64();

    // Calibrate on the held-out good images with the finished apprentice.
    let record = TrainingRecord {
        config: cfg.clone(),
        images_used: data.train.len(),
        images_skipped: data.skipped,
        images_held_out: data.holdout.len(),
        steps: opt.step,
        final_loss: last_loss,
        seconds,
    };
    let meta = bundle_meta(cfg, &expert_file, &expert.sha256, record);
    let state = apprentice.state_dict();
    let detector = Detector::from_state(meta, expert.net, state.clone(), device)?;
    let mut scores = Vec::new();
    for chunk in data.holdout.chunks(cfg.batch_size.max(1)) {
        scores.extend(detector.infer(chunk)?.into_iter().map(|r| r.score));
    }
    let mut meta = detector.meta;
    meta.calibration = Calibration::from_scores(&scores);
    Bundle::write(&job.out, &meta, &state)?;
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(TrainOutcome::Finished {
        bundle: job.out.clone(),
        calibration: meta.calibration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn train_table_is_read_and_other_tables_left_alone() {
        let (_d, path) = write("[station]\nname = \"line 3\"\n[train]\nepochs = 7\ngamma = 1.0\n[train.anomalies]\nnoise = \"gaussian\"\n");
        let cfg = TrainConfig::from_file(&path).unwrap();
        assert_eq!(cfg.epochs, 7);
        assert_eq!(cfg.gamma, 1.0);
        assert_eq!(cfg.anomalies.noise, synthetic::NoiseKind::Gaussian);
        assert_eq!(cfg.batch_size, TrainConfig::default().batch_size);
    }

    #[test]
    fn typos_and_bad_values_name_the_file_and_key() {
        let (_d, path) = write("[train]\nepoch = 7\n");
        let err = format!("{:#}", TrainConfig::from_file(&path).unwrap_err());
        assert!(
            err.contains("station.toml") && err.contains("epoch"),
            "{err}"
        );
        let (_d, path) = write("[train]\nlearning_rate = \"fast\"\n");
        let err = format!("{:#}", TrainConfig::from_file(&path).unwrap_err());
        assert!(
            err.contains("station.toml") && err.contains("learning_rate"),
            "{err}"
        );
        let cfg = TrainConfig {
            image_size: 100,
            ..Default::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("image_size"));
    }
}
