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
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::bundle::{now_rfc3339, Bundle, BundleMeta, Calibration, TrainingRecord, FORMAT_VERSION};
use crate::imageio::{list_images, load_rgb};
use crate::infer::geometry::{frame_roi, Mask};
use crate::infer::tiling::TileGrid;
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
    /// Training samples (whole images, or tiles when tiled) per second.
    pub images_per_s: f64,
    pub eta_s: f64,
    /// Tiled training: the samples are tiles cut from `frames` training frames.
    pub tiled: bool,
    /// Samples done in this epoch, and per epoch.
    pub samples_in_epoch: usize,
    pub samples_per_epoch: usize,
    pub frames: usize,
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
    /// The training frames as the network sees them: untiled, the ROI resized to the
    /// input; tiled, the ROI resized by 1/scale (what `Detector::inspect_frame` cuts tiles
    /// from). Kept as 8-bit images; tiles are cut per batch.
    train: Vec<RgbImage>,
    /// The held-out frames, processed as `train` (untiled calibration runs on these).
    holdout: Vec<RgbImage>,
    /// Their files: tiled calibration reads each whole frame again and inspects it through
    /// `Detector::inspect_frame`, exactly as a station would.
    holdout_paths: Vec<PathBuf>,
    skipped: usize,
    fingerprint: String,
    /// The first readable frame's size, in source pixels.
    first_size: (u32, u32),
    /// The first readable frame's file: the reference frame of part alignment.
    first_path: PathBuf,
}

/// A frame as training sees it (see [`Dataset::train`]); refuses a frame that does not
/// hold the geometry's ROI (or one tile of it), naming both sizes.
fn prepare_frame(img: &RgbImage, cfg: &TrainConfig, path: &Path) -> Result<RgbImage> {
    let geometry = cfg.geometry();
    let roi = frame_roi(&geometry, img.width(), img.height())
        .with_context(|| format!("training image {}", path.display()))?;
    let cropped;
    let src = if (roi.x, roi.y, roi.w, roi.h) == (0, 0, img.width(), img.height()) {
        img
    } else {
        cropped = image::imageops::crop_imm(img, roi.x, roi.y, roi.w, roi.h).to_image();
        &cropped
    };
    let (w, h) = if cfg.tiled() {
        geometry.network_size(roi.w, roi.h)
    } else {
        (cfg.image_size, cfg.image_size)
    };
    if (w, h) == (src.width(), src.height()) && cfg.tiled() {
        return Ok(src.clone());
    }
    Ok(image::imageops::resize(src, w, h, image::imageops::FilterType::Triangle))
}

/// Untiled, a frame (its ROI) larger than twice the input on a side loses its fine detail
/// to the resize: the warning, or none.
pub fn shrink_warning(cfg: &TrainConfig, width: u32, height: u32) -> Option<String> {
    if cfg.tiled() {
        return None;
    }
    let (w, h) = cfg.roi.map(|r| (r.w, r.h)).unwrap_or((width, height));
    let factor = w.max(h) as f64 / cfg.image_size as f64;
    if factor <= 2.0 {
        return None;
    }
    // Features are compared at the input's resolution: a defect must cover about two
    // input pixels to show in the map.
    let vanish = (2.0 * factor).ceil() as u64;
    Some(format!(
        "training images are {w}x{h} and are resized to the {s}x{s} input, a {factor:.1}x shrink: \
         a defect narrower than ~{vanish} source pixels will vanish; to inspect at native \
         resolution train with --tile {s} (tiled inspection, `tile` in [train])",
        s = cfg.image_size
    ))
}

fn load_dataset(data: &TrainData, cfg: &TrainConfig) -> Result<Dataset> {
    let paths = match data {
        TrainData::Folder(dir) => list_images(dir)?,
        TrainData::Files(files) => files.clone(),
    };
    let mut images = Vec::with_capacity(paths.len());
    let mut used = Vec::with_capacity(paths.len());
    let mut names = Vec::new();
    let mut skipped = 0;
    let mut first_size = None;
    for path in &paths {
        match load_rgb(path) {
            Ok(img) => {
                if first_size.is_none() {
                    first_size = Some((img.width(), img.height()));
                    if let Some(w) = shrink_warning(cfg, img.width(), img.height()) {
                        log::warn!("{w}");
                    }
                }
                images.push(prepare_frame(&img, cfg, path)?);
                used.push(path.clone());
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
    let first_path = used[0].clone();
    let mut train = Vec::new();
    let mut holdout = Vec::new();
    let mut holdout_paths = Vec::new();
    for (i, (img, path)) in images.into_iter().zip(used).enumerate() {
        if hold.contains(&i) {
            holdout.push(img);
            holdout_paths.push(path);
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
        holdout_paths,
        skipped,
        fingerprint,
        first_size: first_size.unwrap_or((0, 0)),
        first_path,
    })
}

/// One training sample: frame index and the origin of its crop (0, 0 untiled: the
/// whole prepared frame).
type Sample = (usize, u32, u32);

/// The samples of one epoch, before shuffling. Untiled: every frame. Tiled: every frame
/// at every tile position of the inspection grid (`TileGrid`, as `inspect_frame` cuts
/// them), then as many crops again per frame at uniformly random origins, drawn afresh
/// each epoch from the seed, so the apprentice sees every alignment of the texture; the
/// same seed and epoch give the same crops (a resumed run sees what it would have).
fn epoch_samples(frames: &[RgbImage], cfg: &TrainConfig, epoch: usize) -> Vec<Sample> {
    let Some(t) = cfg.tile else {
        return (0..frames.len()).map(|i| (i, 0, 0)).collect();
    };
    let overlap = cfg.overlap.unwrap_or(0);
    let mut out = Vec::new();
    let mut counts = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        // `prepare_frame` refused a frame smaller than a tile.
        let grid = TileGrid::new(f.width(), f.height(), t, overlap);
        let origins = grid.map(|g| g.origins()).unwrap_or_default();
        counts.push(origins.len());
        out.extend(origins.into_iter().map(|(x, y)| (i, x, y)));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x711E_5A3D_C0DE);
    rng.set_stream(epoch as u64);
    for (i, f) in frames.iter().enumerate() {
        for _ in 0..counts[i] {
            let x = rng.gen_range(0..=f.width() - t);
            let y = rng.gen_range(0..=f.height() - t);
            out.push((i, x, y));
        }
    }
    out
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
        geometry: cfg.geometry(),
        upsampling: cfg.upsampling(),
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
    // The ignore mask: read (and checked against the ROI or the frames) before training.
    let mask = match &cfg.mask {
        Some(path) => {
            let m = Mask::load(path)?;
            let roi = cfg.roi.unwrap_or(crate::bundle::geometry::Roi {
                x: 0,
                y: 0,
                w: data.first_size.0,
                h: data.first_size.1,
            });
            m.check_covers(&roi)?;
            Some(m)
        }
        None => None,
    };
    let samples_per_epoch = epoch_samples(&data.train, cfg, 0).len();
    if let Some(t) = cfg.tile {
        log::info!(
            "tiled training: {} training frames cut into {} tiles of {t}x{t} per epoch ({} at the tile positions, {} at random shifts); calibration on {} held-out whole frames",
            data.train.len(),
            samples_per_epoch,
            samples_per_epoch / 2,
            samples_per_epoch - samples_per_epoch / 2,
            data.holdout.len()
        );
    }

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

    let n = samples_per_epoch;
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
        let samples = epoch_samples(&data.train, cfg, epoch);
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64 + 1),
        ));
        let mut epoch_loss = 0.0;
        let first_step = if epoch == start_epoch { start_step } else { 0 };
        for step in first_step..steps_per_epoch {
            let idx = &order[step * batch..(step + 1) * batch];
            let tiles: Vec<RgbImage>;
            let imgs: Vec<&RgbImage> = match cfg.tile {
                None => idx.iter().map(|&k| &data.train[samples[k].0]).collect(),
                Some(t) => {
                    tiles = idx
                        .iter()
                        .map(|&k| {
                            let (i, x, y) = samples[k];
                            image::imageops::crop_imm(&data.train[i], x, y, t, t).to_image()
                        })
                        .collect();
                    tiles.iter().collect()
                }
            };
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
                tiled: cfg.tiled(),
                samples_in_epoch: (step + 1) * batch,
                samples_per_epoch: n,
                frames: data.train.len(),
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
    let mut detector = Detector::from_state(meta, expert.net, state.clone(), device)?;
    let mut scores = Vec::new();
    if cfg.tiled() {
        // Whole held-out frames through exactly the inspection path: the score of each
        // frame's stitched map, so the threshold is a frame threshold.
        detector.set_mask(mask)?;
        for path in &data.holdout_paths {
            let frame = load_rgb(path)?;
            let r = detector
                .inspect_frame(&frame, cfg.batch_size.max(1))
                .with_context(|| format!("calibrating on {}", path.display()))?;
            scores.push(r.score);
        }
    } else {
        for chunk in data.holdout.chunks(cfg.batch_size.max(1)) {
            scores.extend(detector.infer(chunk)?.into_iter().map(|r| r.score));
        }
    }
    let mut meta = detector.meta;
    meta.calibration = Calibration::from_scores(&scores);
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let (Some(src), Some(name)) = (&cfg.mask, &meta.geometry.mask) {
        files.push((name.to_string_lossy().to_string(), src.clone()));
    }
    // With a region of interest, the first frame is kept as the reference that part
    // alignment finds each part against (it moves the region with the part).
    if cfg.roi.is_some() {
        let ext = data.first_path.extension().unwrap_or_default().to_string_lossy().to_lowercase();
        let name = format!("reference.{ext}");
        meta.geometry.reference = Some(PathBuf::from(&name));
        files.push((name, data.first_path.clone()));
    }
    let files: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (n.as_str(), p.as_path())).collect();
    Bundle::write_with_files(&job.out, &meta, &state, &files)?;
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
