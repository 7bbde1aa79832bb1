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

use crate::infer::geometry::{frame_roi, GeometryError};
use crate::infer::preprocess::{batch_tensor, image_to_chw};
use crate::infer::tiling::{finish_stitched, TileGrid};
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
    /// On a GPU: what one inference of the batch launched (the last iteration).
    pub gpu_launches: Option<GpuLaunches>,
}

/// The GPU work of one inference of a batch, preprocessing to scores.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GpuLaunches {
    /// Launches of the crate's own CUDA kernels (counted at each launch).
    pub own_kernels: u64,
    /// Candle operations on the GPU (the 1x1 convolutions' GEMMs, k x k convolutions,
    /// residual additions), each one launch or more of candle's or cuBLAS's.
    pub candle_ops: u64,
}

impl GpuLaunches {
    /// The counters now, to subtract from a later reading.
    fn now() -> Option<Self> {
        Some(GpuLaunches {
            own_kernels: crate::model::kernels::cuda_launches()?,
            candle_ops: crate::model::kernels::candle_ops_on_gpu(),
        })
    }

    fn since(start: Option<Self>) -> Option<Self> {
        let (start, end) = (start?, Self::now()?);
        Some(GpuLaunches {
            own_kernels: end.own_kernels - start.own_kernels,
            candle_ops: end.candle_ops - start.candle_ops,
        })
    }
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
    /// Whole frames inspected with the bundle's geometry (`--frame`, `--tile`, or a bundle
    /// with a geometry); none otherwise.
    pub frame_run: Option<FrameRun>,
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
    let mut gpu_launches = None;
    for it in 0..warmup + iterations {
        let mut ms = [0f64; STAGES.len()];
        let counted = if device.is_cpu() { None } else { GpuLaunches::now() };
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
        sync(&device)?;
        mark(5);
        let results = detector.finish_all(raw)?;
        mark(6);
        let rejected = results
            .iter()
            .filter(|r| rejects(black_box(r.score), threshold))
            .count();
        black_box(rejected);
        mark(7);
        gpu_launches = GpuLaunches::since(counted);
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
        gpu_launches,
    })
}

/// The stages of one frame inspected with the bundle's geometry, in the order
/// `Detector::inspect_frame` runs them (the JSON names): `cut_scale` is the ROI's crop, its
/// resize by 1/scale, the tiles' cut and normalisation and their batches' upload;
/// `model` both networks on every batch; `discrepancy_upsample` the tiles' raw maps;
/// `stitch` their max-blend into one map; `smoothing_score` the mask, the smoothing and the
/// image score. Untiled, the ROI is one image resized to the input and `stitch` is empty.
pub const FRAME_STAGES: [&str; 6] = [
    "decode",
    "cut_scale",
    "model",
    "discrepancy_upsample",
    "stitch",
    "smoothing_score",
];

/// A whole frame inspected with the bundle's geometry, timed stage by stage.
#[derive(Debug, Clone, Serialize)]
pub struct FrameRun {
    /// Tiles run through the networks at a time.
    pub batch: usize,
    /// Tiles per frame (0: the ROI resized to the input whole).
    pub tiles: usize,
    /// The map's size in network pixels.
    pub map_width: u32,
    pub map_height: u32,
    pub stages: Vec<StageStats>,
    /// Decode to score, per frame.
    pub end_to_end: Stats,
    /// Median end-to-end milliseconds per frame.
    pub ms_per_frame: f64,
    /// Tiles per second from `ms_per_frame` (0 untiled).
    pub tiles_per_s: f64,
    /// Of the inspection after decoding (sum of the stages' medians but `decode`), the
    /// share outside the networks: cutting and scaling, discrepancy, stitching, smoothing
    /// and scoring.
    pub outside_networks_share: f64,
    /// The image score of the last iteration (the same as `Detector::inspect_frame`'s).
    pub score: f32,
    /// `tiles` times one image's network and map time in a batch of `batch` images
    /// (`batch_n`'s model, discrepancy and smoothing medians over its batch): what the
    /// tiles would cost as separate images. Set by the caller; none untiled.
    pub tiles_as_images_ms: Option<f64>,
    /// The inspection after decoding over `tiles_as_images_ms`.
    pub tiled_over_images: Option<f64>,
}

impl FrameRun {
    pub fn stage(&self, name: &str) -> Option<&Stats> {
        self.stages.iter().find(|s| s.stage == name).map(|s| &s.stats)
    }

    /// The inspection's median milliseconds after decoding (sum of the stages' medians).
    pub fn inspect_ms(&self) -> f64 {
        self.stages
            .iter()
            .filter(|s| s.stage != "decode")
            .map(|s| s.stats.median_ms)
            .sum()
    }

    /// Fills `tiles_as_images_ms` and the ratio from a run of whole images at this batch.
    pub fn compare_with_images(&mut self, images: &BatchRun) {
        if self.tiles == 0 {
            return;
        }
        let per_image = (images.model_ms() + images.postprocess_ms()) / images.batch as f64;
        let ms = per_image * self.tiles as f64;
        self.tiles_as_images_ms = Some(ms);
        self.tiled_over_images = Some(self.inspect_ms() / ms);
    }
}

/// Inspects `frame` with `detector`'s geometry `warmup + iterations` times, as
/// `Detector::inspect_frame` does (the same calls in the same order, tiles `batch` at a
/// time), timing every stage, with the detector's ignore mask (required when the
/// geometry names one).
pub fn run_frame(
    detector: &Detector,
    frame: &Frame,
    batch: usize,
    warmup: usize,
    iterations: usize,
) -> Result<FrameRun> {
    let device = detector.device().clone();
    let geometry = detector.meta.geometry.clone();
    let size = detector.meta.input_size;
    let mask = match (&geometry.mask, detector.mask()) {
        (None, _) => None,
        (Some(_), Some(m)) => Some(m),
        (Some(name), None) => {
            return Err(InferError::from(GeometryError::MaskNotLoaded {
                name: name.display().to_string(),
            })
            .into())
        }
    };
    let batch = batch.max(1);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(iterations); FRAME_STAGES.len()];
    let mut end_to_end = Vec::with_capacity(iterations);
    let (mut tiles, mut map_w, mut map_h, mut score) = (0, 0, 0, f32::NAN);
    for it in 0..warmup + iterations {
        let mut ms = [0f64; FRAME_STAGES.len()];
        let start = Instant::now();
        let img = decode(frame)?;
        ms[0] = start.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let roi = frame_roi(&geometry, img.width(), img.height()).map_err(InferError::from)?;
        let cropped;
        let src = if (roi.x, roi.y, roi.w, roi.h) == (0, 0, img.width(), img.height()) {
            &img
        } else {
            cropped = image::imageops::crop_imm(&img, roi.x, roi.y, roi.w, roi.h).to_image();
            &cropped
        };
        let (grid, chw) = match geometry.tile {
            None => (None, vec![image_to_chw(src, size)]),
            Some(tl) => {
                if let Some(m) = mask {
                    m.source.check_covers(&roi).map_err(InferError::from)?;
                }
                let (nw, nh) = geometry.network_size(roi.w, roi.h);
                let resized;
                let scaled = if (nw, nh) == (roi.w, roi.h) {
                    src
                } else {
                    resized = image::imageops::resize(src, nw, nh, image::imageops::FilterType::Triangle);
                    &resized
                };
                let grid = TileGrid::new(nw, nh, tl.size, tl.overlap).ok_or_else(|| {
                    InferError::from(GeometryError::FrameSmallerThanTile {
                        width: img.width(),
                        height: img.height(),
                        scale: geometry.scale,
                        network_w: nw,
                        network_h: nh,
                        tile: tl.size,
                    })
                })?;
                use rayon::prelude::*;
                let chw: Vec<Vec<f32>> = grid
                    .origins()
                    .par_iter()
                    .map(|&(x, y)| {
                        let tile = image::imageops::crop_imm(scaled, x, y, tl.size, tl.size).to_image();
                        image_to_chw(&tile, size)
                    })
                    .collect();
                (Some(grid), chw)
            }
        };
        ms[1] += t.elapsed().as_secs_f64() * 1e3;
        let mut raw = Vec::with_capacity(chw.len());
        for chunk in chw.chunks(batch) {
            let t = Instant::now();
            let x = batch_tensor(chunk, size, &device)?;
            sync(&device)?;
            ms[1] += t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let (fe, fa) = detector.features_pair(&x);
            let (fe, fa) = (fe?, fa?);
            sync(&device)?;
            ms[2] += t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            raw.extend(detector.raw_maps(&fe, &fa)?.into_host()?);
            ms[3] += t.elapsed().as_secs_f64() * 1e3;
        }
        drop(chw);
        let n_tiles = grid.as_ref().map_or(0, |g| g.len());
        let (s, w, h) = match grid {
            None => {
                let t = Instant::now();
                let r = detector.finish(raw.pop().expect("one map for one image"));
                ms[5] = t.elapsed().as_secs_f64() * 1e3;
                (r.score, size, size)
            }
            Some(grid) => {
                let t = Instant::now();
                let mut map = grid.stitch(&raw);
                drop(raw);
                ms[4] = t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                let s = finish_stitched(
                    &mut map,
                    grid.width as usize,
                    grid.height as usize,
                    detector.meta.smoothing_sigma,
                    mask.map(|m| m.at(grid.width, grid.height)),
                    detector.meta.score,
                );
                black_box(&map);
                ms[5] = t.elapsed().as_secs_f64() * 1e3;
                (s, grid.width, grid.height)
            }
        };
        (tiles, map_w, map_h, score) = (n_tiles, w, h, s);
        let total = start.elapsed().as_secs_f64() * 1e3;
        if it >= warmup {
            for (v, m) in samples.iter_mut().zip(ms) {
                v.push(m);
            }
            end_to_end.push(total);
        }
    }
    let end_to_end = Stats::from_ms(&end_to_end);
    let stages: Vec<StageStats> = FRAME_STAGES
        .iter()
        .zip(&samples)
        .map(|(name, s)| StageStats {
            stage: name.to_string(),
            stats: Stats::from_ms(s),
        })
        .collect();
    let median = |name: &str| {
        stages
            .iter()
            .find(|s| s.stage == name)
            .map_or(0.0, |s| s.stats.median_ms)
    };
    let outside = median("cut_scale") + median("discrepancy_upsample") + median("stitch") + median("smoothing_score");
    let outside_networks_share = outside / (outside + median("model"));
    let ms_per_frame = end_to_end.median_ms;
    Ok(FrameRun {
        batch,
        tiles,
        map_width: map_w,
        map_height: map_h,
        stages,
        tiles_per_s: tiles as f64 / (ms_per_frame / 1e3),
        ms_per_frame,
        outside_networks_share,
        end_to_end,
        score,
        tiles_as_images_ms: None,
        tiled_over_images: None,
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
    for run in [b1, bn] {
        if let Some(l) = run.gpu_launches {
            let _ = writeln!(
                t,
                "GPU launches per inference (batch {}): {} own kernels + {} candle ops",
                run.batch, l.own_kernels, l.candle_ops
            );
        }
    }
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
    if let Some(f) = &r.frame_run {
        let _ = writeln!(
            t,
            "whole frame ({}x{} network px, {} tiles, batch {}): {:.1} ms per frame, {:.1} tiles/s, {:.1} % outside the networks",
            f.map_width,
            f.map_height,
            f.tiles,
            f.batch,
            f.ms_per_frame,
            f.tiles_per_s,
            100.0 * f.outside_networks_share
        );
        for s in &f.stages {
            let _ = writeln!(
                t,
                "  {:<22} {:>10.3} ms median {:>10.3} ms p99",
                s.stage, s.stats.median_ms, s.stats.p99_ms
            );
        }
        if let (Some(ms), Some(ratio)) = (f.tiles_as_images_ms, f.tiled_over_images) {
            let _ = writeln!(
                t,
                "  the tiles as {} separate images at batch {}: {:.1} ms; frame (after decoding) / that: {:.2}",
                f.tiles, r.batch_n.batch, ms, ratio
            );
        }
    }
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
