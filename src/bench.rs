//! `bench`: how long each stage of an inspection takes, end-to-end throughput, and one
//! training step.
//!
//! The stages are the detector's own (`Detector::preprocess`, `expert_features`, ...), called
//! in the order `infer` calls them, so what is timed is what a station runs. Warm-up
//! iterations are run and discarded; medians and 99th percentiles are over the rest.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::infer::verdict::rejects;
use crate::infer::{Detector, InferError};
use crate::model::backbone::{BackboneKind, Network, TrainableApprentice};
use crate::train::optim::AdamW;
use crate::train::{make_batch, train_step, TrainConfig};

/// The stages of one inspection, in pipeline order (the JSON names).
///
/// `expert` and `apprentice` run at the same time on the CPU (as `infer` runs them): each
/// is its own network's wall time, and `model` is the pair's.
pub const STAGES: [&str; 8] = [
    "decode",
    "preprocess",
    "expert",
    "apprentice",
    "model",
    "discrepancy_upsample",
    "smoothing_score",
    "decision",
];

/// Summary of one set of timings, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub samples: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl Stats {
    /// Median (mean of the middle two for an even count) and nearest-rank 99th percentile.
    pub fn from_ms(samples: &[f64]) -> Stats {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Stats {
                samples: 0,
                median_ms: f64::NAN,
                p99_ms: f64::NAN,
                mean_ms: f64::NAN,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
        Stats {
            samples: n,
            median_ms: median,
            p99_ms: v[rank - 1],
            mean_ms: v.iter().sum::<f64>() / n as f64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStats {
    pub stage: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// Inference at one batch size: each stage's time per batch and the whole pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRun {
    pub batch: usize,
    pub stages: Vec<StageStats>,
    pub end_to_end: Stats,
    /// Frames per second from the median end-to-end time of a batch.
    pub frames_per_s: f64,
}

impl BatchRun {
    pub fn stage(&self, name: &str) -> Option<&Stats> {
        self.stages
            .iter()
            .find(|s| s.stage == name)
            .map(|s| &s.stats)
    }

    /// Median wall time of both networks per batch.
    pub fn model_ms(&self) -> f64 {
        self.stage("model").map_or(f64::NAN, |s| s.median_ms)
    }

    /// Median post-processing time (discrepancy, upsampling, smoothing, score) per batch.
    pub fn postprocess_ms(&self) -> f64 {
        self.stage("discrepancy_upsample")
            .map_or(f64::NAN, |s| s.median_ms)
            + self
                .stage("smoothing_score")
                .map_or(f64::NAN, |s| s.median_ms)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainRun {
    pub batch: usize,
    pub step: Stats,
}

/// The frame every iteration decodes: an encoded image held in memory (no disk I/O in the
/// timing).
pub struct Frame {
    pub bytes: Vec<u8>,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    pub source: String,
    pub width: u32,
    pub height: u32,
}

/// Everything one `bench` run measured; the JSON written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub implementation: String,
    pub backbone: BackboneKind,
    pub expert_weights: String,
    pub apprentice_weights: String,
    pub device: String,
    pub threads: usize,
    pub input_size: u32,
    pub frame: FrameInfo,
    pub warmup: usize,
    pub batch1: BatchRun,
    pub batch_n: BatchRun,
    pub train_step: Option<TrainRun>,
    /// Why the training step could not be timed, when it was asked for and failed.
    pub train_error: Option<String>,
    /// Post-processing time over model time, at batch 1.
    pub postprocess_share: f64,
    pub peak_rss_bytes: Option<u64>,
}

pub fn decode(frame: &Frame) -> Result<RgbImage> {
    let img = image::load_from_memory(&frame.bytes)
        .with_context(|| format!("cannot decode the frame {}", frame.source))?;
    Ok(img.to_rgb8())
}

/// Waits for queued device work, so a stage's time is its own (a no-op on the CPU).
fn sync(device: &Device) -> Result<()> {
    Ok(device.synchronize()?)
}

/// Runs the inspection pipeline on `batch` copies of `frame`, `warmup + iterations` times,
/// timing every stage of every measured iteration.
pub fn run_inference(
    detector: &Detector,
    frame: &Frame,
    batch: usize,
    warmup: usize,
    iterations: usize,
    threshold: f32,
) -> Result<BatchRun> {
    let device = detector.device().clone();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(iterations); STAGES.len()];
    let mut end_to_end = Vec::with_capacity(iterations);
    for it in 0..warmup + iterations {
        let mut ms = [0f64; STAGES.len()];
        let start = Instant::now();
        let mut lap = start;
        let mut mark = |stage: usize| {
            let now = Instant::now();
            ms[stage] = (now - lap).as_secs_f64() * 1e3;
            lap = now;
        };
        let images = (0..batch)
            .map(|_| decode(frame))
            .collect::<Result<Vec<_>>>()?;
        mark(0);
        let x = detector.preprocess(&images)?;
        sync(&device)?;
        mark(1);
        // The same pairing as `Detector::features_pair`, with each network's own time.
        type Features = std::result::Result<Vec<candle_core::Tensor>, InferError>;
        let timed = |f: &(dyn Fn() -> Features + Sync)| {
            let t = Instant::now();
            let out = f();
            let synced = sync(&device);
            (out, synced, t.elapsed().as_secs_f64() * 1e3)
        };
        let expert = || detector.expert_features(&x);
        let apprentice = || detector.apprentice_features(&x);
        let ((fe, se, expert_ms), (fa, sa, apprentice_ms)) = if device.is_cpu() {
            rayon::join(|| timed(&expert), || timed(&apprentice))
        } else {
            (timed(&expert), timed(&apprentice))
        };
        let (fe, fa, _, _) = (fe?, fa?, se?, sa?);
        mark(4);
        let raw = detector.raw_maps(&fe, &fa)?;
        mark(5);
        let results = detector.finish_all(raw);
        mark(6);
        let rejected = results
            .iter()
            .filter(|r| rejects(black_box(r.score), threshold))
            .count();
        black_box(rejected);
        mark(7);
        // The two networks overlap: each one's own time replaces the laps.
        (ms[2], ms[3]) = (expert_ms, apprentice_ms);
        let total = start.elapsed().as_secs_f64() * 1e3;
        if it >= warmup {
            for (s, v) in samples.iter_mut().zip(ms) {
                s.push(v);
            }
            end_to_end.push(total);
        }
    }
    let end_to_end = Stats::from_ms(&end_to_end);
    Ok(BatchRun {
        batch,
        stages: STAGES
            .iter()
            .zip(&samples)
            .map(|(name, s)| StageStats {
                stage: name.to_string(),
                stats: Stats::from_ms(s),
            })
            .collect(),
        frames_per_s: batch as f64 / (end_to_end.median_ms / 1e3),
        end_to_end,
    })
}

/// Times training steps (both forward passes, loss, backward, AdamW) of a fresh apprentice
/// against `expert`, on one batch cut from `frame` with synthetic anomalies.
pub fn run_training(
    expert: &Network,
    cfg: &TrainConfig,
    frame: &RgbImage,
    device: &Device,
    warmup: usize,
    iterations: usize,
) -> Result<TrainRun> {
    let apprentice = TrainableApprentice::new(cfg.backbone, cfg.seed, cfg.bn_momentum, device)?;
    let mut opt = AdamW::new(apprentice.params.clone(), cfg.optimiser())?;
    let s = cfg.image_size;
    let img = image::imageops::resize(frame, s, s, image::imageops::FilterType::Triangle);
    let images = vec![&img; cfg.batch_size];
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (x, mask) = make_batch(&images, cfg, &mut rng, device)?;
    let mut steps = Vec::with_capacity(iterations);
    for it in 0..warmup + iterations {
        let start = Instant::now();
        let out = train_step(expert, &apprentice.net, &mut opt, &x, &mask, &cfg.loss())?;
        // Reading the loss waits for the step on any device.
        black_box(
            out.total
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?,
        );
        if it >= warmup {
            steps.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(TrainRun {
        batch: cfg.batch_size,
        step: Stats::from_ms(&steps),
    })
}

/// The report as a table for people.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} bench: {}, {}x{}, {}, {} threads",
        r.implementation, r.backbone, r.input_size, r.input_size, r.device, r.threads
    );
    let _ = writeln!(
        t,
        "expert: {}; apprentice: {}",
        r.expert_weights, r.apprentice_weights
    );
    let _ = writeln!(
        t,
        "frame: {} ({}x{}); warm-up {} iterations excluded",
        r.frame.source, r.frame.width, r.frame.height, r.warmup
    );
    let (b1, bn) = (&r.batch1, &r.batch_n);
    let _ = writeln!(
        t,
        "{:<22} {:>12} {:>10} {:>12} {:>10}",
        "ms per batch",
        "b1 median",
        "b1 p99",
        format!("b{} median", bn.batch),
        format!("b{} p99", bn.batch)
    );
    let row = |t: &mut String, name: &str, a: &Stats, b: &Stats| {
        let _ = writeln!(
            t,
            "{name:<22} {:>12.3} {:>10.3} {:>12.3} {:>10.3}",
            a.median_ms, a.p99_ms, b.median_ms, b.p99_ms
        );
    };
    for (a, b) in b1.stages.iter().zip(&bn.stages) {
        row(&mut t, &a.stage, &a.stats, &b.stats);
    }
    row(&mut t, "end to end", &b1.end_to_end, &bn.end_to_end);
    let _ = writeln!(
        t,
        "{:<22} {:>12.1} {:>10} {:>12.1} {:>10}",
        "frames/s", b1.frames_per_s, "", bn.frames_per_s, ""
    );
    let _ = writeln!(
        t,
        "samples: {} (batch 1), {} (batch {})",
        b1.end_to_end.samples, bn.end_to_end.samples, bn.batch
    );
    let _ = writeln!(
        t,
        "post-processing / model time (batch 1): {:.1} %",
        100.0 * r.postprocess_share
    );
    match &r.train_step {
        Some(tr) => {
            let _ = writeln!(
                t,
                "training step (batch {}): median {:.1} ms, p99 {:.1} ms ({} steps)",
                tr.batch, tr.step.median_ms, tr.step.p99_ms, tr.step.samples
            );
        }
        None => {
            let why = r.train_error.as_deref().unwrap_or("not asked for");
            let _ = writeln!(t, "training step: not measured ({why})");
        }
    }
    if let Some(b) = r.peak_rss_bytes {
        let _ = writeln!(t, "peak memory (RSS): {} MiB", b >> 20);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn median_and_p99() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Stats::from_ms(&v);
        assert_eq!(s.samples, 100);
        assert_eq!(s.median_ms, 50.5);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.mean_ms, 50.5);
        let s = Stats::from_ms(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median_ms, s.p99_ms), (2.0, 3.0));
        assert!(Stats::from_ms(&[]).median_ms.is_nan());
    }
}
