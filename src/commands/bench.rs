//! `cdo-inspect bench`: per-stage timings, throughput, a training step and peak memory,
//! as a table and optionally JSON.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::ModelArgs;
use crate::platform::device::open_device;
use crate::bench::{run_frame, run_inference, run_training, table, Frame, FrameInfo, Report};
use crate::bundle::geometry::{Geometry, Tiles};
use crate::bundle::TrainingRecord;
use crate::platform::memory::peak_rss_bytes;
use crate::infer::{resolve_expert, Detector};
use crate::model::backbone::{BackboneKind, Expert, Network, TrainableApprentice};
use crate::train::{bundle_meta, TrainConfig};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model bundle to time (default: a fresh pair of --backbone).
    #[arg(long, conflicts_with = "backbone")]
    pub model: Option<PathBuf>,
    /// Backbone of a fresh pair: the expert's pretrained weights when they are in the models
    /// dir, random ones otherwise (same speed); the apprentice is random [default:
    /// efficientnet-lite0].
    #[arg(long, value_enum)]
    pub backbone: Option<BackboneKind>,
    /// Input size of a fresh pair (a bundle has its own).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Second batch size measured (besides 1).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Measured iterations at each batch size.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Iterations run first and discarded (caches, allocator, thread pool).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Measured training steps (batch 8); 0 skips training.
    #[arg(long, default_value_t = 10)]
    pub train_iterations: usize,
    /// Encoded image decoded by every iteration [default: a generated 640x480 PNG].
    #[arg(long, conflicts_with = "frame")]
    pub image: Option<PathBuf>,
    /// A generated frame of this size (WxH, e.g. 2048x1536), also inspected whole with
    /// the bundle's geometry (or --tile's): ms per frame, tiles per second and the share
    /// of time outside the networks.
    #[arg(long, value_parser = parse_frame_size)]
    pub frame: Option<(u32, u32)>,
    /// A fresh pair inspects frames in tiles of this side (network pixels; it becomes the
    /// input size, instead of --size).
    #[arg(long, conflicts_with = "model")]
    pub tile: Option<u32>,
    /// Network pixels shared by neighbouring tiles of --tile (below half a tile).
    #[arg(long, requires = "tile", default_value_t = 0)]
    pub overlap: u32,
    // --expert defaults to the bundle's file, or the backbone's, in the models dir.
    #[command(flatten)]
    pub runtime: ModelArgs,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<i32> {
    if args.batch == 0 || args.iterations == 0 {
        bail!("--batch and --iterations must be at least 1");
    }
    let device = open_device(args.runtime.device)?;
    let models_dir = args.runtime.models_dir();
    let pair = load_pair(&args, &models_dir, &device)?;
    let frame = load_frame(args.image.as_deref(), args.frame.unwrap_or((640, 480)))?;
    let decoded = crate::bench::decode(&frame)?;
    let threshold = pair
        .detector
        .meta
        .calibration
        .as_ref()
        .map_or(f32::MAX, |c| c.threshold); // the decision costs the same either way

    log::info!(
        "timing {} at batch 1 and {} ({} iterations each after {} warm-up)",
        pair.detector.meta.backbone,
        args.batch,
        args.iterations,
        args.warmup
    );
    let batch1 = run_inference(
        &pair.detector,
        &frame,
        1,
        args.warmup,
        args.iterations,
        threshold,
    )?;
    let batch_n = run_inference(
        &pair.detector,
        &frame,
        args.batch,
        args.warmup,
        args.iterations,
        threshold,
    )?;
    let mut frame_run = None;
    if args.frame.is_some() || !pair.detector.meta.geometry.is_default() {
        log::info!("timing whole frames with the geometry ({} iterations)", args.iterations);
        let mut run = run_frame(
            &pair.detector,
            &frame,
            args.batch,
            args.warmup,
            args.iterations,
        )?;
        run.compare_with_images(&batch_n);
        frame_run = Some(run);
    }
    let mut cfg = TrainConfig {
        backbone: pair.detector.meta.backbone,
        image_size: pair.detector.meta.input_size,
        ..TrainConfig::default()
    };
    cfg.validate()?;
    let mut train_error = None;
    let train_step = if args.train_iterations > 0 {
        log::info!("timing {} training steps", args.train_iterations);
        // The detector's networks are inference-only; training needs its own expert.
        let expert = load_expert(&pair.expert_source, cfg.backbone, &device)?;
        cfg.seed = 1;
        let warmup = args.warmup.min(2);
        match run_training(
            &expert,
            &cfg,
            &decoded,
            &device,
            warmup,
            args.train_iterations,
        ) {
            Ok(run) => Some(run),
            // Reported, not fatal: the inference figures still stand.
            Err(e) => {
                // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
                let first = format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                log::warn!("{} training step failed: {first}", cfg.backbone);
                train_error = Some(first);
                None
            }
        }
    } else {
        None
    };
    let report = Report {
        implementation: "cdo-inspect".into(),
        backbone: pair.detector.meta.backbone,
        expert_weights: pair.expert_source.describe(),
        apprentice_weights: pair.apprentice.clone(),
        device: format!("{:?}", args.runtime.device).to_lowercase(),
        threads: rayon::current_num_threads(),
        input_size: pair.detector.meta.input_size,
        frame: FrameInfo {
            source: frame.source.clone(),
            width: decoded.width(),
            height: decoded.height(),
        },
        warmup: args.warmup,
        postprocess_share: batch1.postprocess_ms() / batch1.model_ms(),
        frame_run,
        batch1,
        batch_n,
        train_step,
        train_error,
        peak_rss_bytes: peak_rss_bytes(),
    };
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(0)
}

/// Where the expert's weights come from.
enum ExpertSource {
    File(PathBuf),
    /// No pretrained file: random weights, same architecture and cost.
    Random(PathBuf),
}

impl ExpertSource {
    fn describe(&self) -> String {
        match self {
            ExpertSource::File(p) => p.display().to_string(),
            ExpertSource::Random(p) => {
                format!("random weights ({} not found; speed only)", p.display())
            }
        }
    }
}

struct Pair {
    detector: Detector,
    expert_source: ExpertSource,
    apprentice: String,
}

const EXPERT_SEED: u64 = 7;

fn load_expert(src: &ExpertSource, kind: BackboneKind, device: &Device) -> Result<Network> {
    Ok(match src {
        ExpertSource::File(p) => Expert::load(kind, p, device)?.net,
        ExpertSource::Random(_) => Network::fresh_frozen(kind, EXPERT_SEED, device)?,
    })
}

fn load_pair(args: &BenchArgs, models_dir: &Path, device: &Device) -> Result<Pair> {
    if let Some(bundle) = &args.model {
        let detector = Detector::load(bundle, args.runtime.expert.as_deref(), models_dir, device)?;
        let expert = resolve_expert(
            &detector.meta,
            bundle,
            args.runtime.expert.as_deref(),
            models_dir,
        )?;
        return Ok(Pair {
            detector,
            expert_source: ExpertSource::File(expert),
            apprentice: format!("trained, {}", bundle.display()),
        });
    }
    let kind = args.backbone.unwrap_or(BackboneKind::EfficientNetLite0);
    let cfg = TrainConfig {
        backbone: kind,
        image_size: args.tile.unwrap_or(args.size),
        ..TrainConfig::default()
    };
    cfg.validate()?;
    let geometry = match args.tile {
        None => Geometry::default(),
        Some(size) => {
            let g = Geometry {
                tile: Some(Tiles { size, overlap: args.overlap }),
                ..Geometry::default()
            };
            let mut problems = Vec::new();
            g.problems(size, &mut |field: &str, p: String| problems.push(format!("{field} {p}")));
            if !problems.is_empty() {
                bail!("--tile {size} --overlap {}: {}", args.overlap, problems.join("; "));
            }
            g
        }
    };
    let path = args
        .runtime
        .expert
        .clone()
        .unwrap_or_else(|| models_dir.join(kind.default_weights_file()));
    // An explicitly named file must exist; the default one may be absent.
    let (source, expert, sha) = if args.runtime.expert.is_some() || path.is_file() {
        let e = Expert::load(kind, &path, device)?;
        (ExpertSource::File(path.clone()), e.net, e.sha256)
    } else {
        log::warn!(
            "{} not found: the {kind} expert gets random weights (timings are valid, scores are not)",
            path.display()
        );
        let net = Network::fresh_frozen(kind, EXPERT_SEED, device)?;
        (ExpertSource::Random(path.clone()), net, String::new())
    };
    let record = TrainingRecord::untrained(cfg.clone());
    let mut meta = bundle_meta(&cfg, &path, &sha, record);
    meta.geometry = geometry;
    let apprentice = TrainableApprentice::new(kind, cfg.seed, cfg.bn_momentum, device)?;
    let detector = Detector::from_state(meta, expert, apprentice.state_dict(), device)?;
    Ok(Pair {
        detector,
        expert_source: source,
        apprentice: "random weights (untrained; same cost)".into(),
    })
}

/// `WxH` (e.g. `2048x1536`), each side 1 to 16384.
pub(super) fn parse_frame_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("expected WIDTHxHEIGHT in pixels (e.g. 2048x1536), got `{s}`");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=16384).contains(v))
            .ok_or_else(bad)
    };
    Ok((side(w)?, side(h)?))
}

/// The encoded frame: a file's bytes, or a generated noisy `width` x `height` PNG (noise
/// keeps the decoder honest: a smooth picture would compress, and decode, unrealistically
/// well).
fn load_frame(path: Option<&Path>, (width, height): (u32, u32)) -> Result<Frame> {
    if let Some(p) = path {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        return Ok(Frame {
            bytes,
            source: p.display().to_string(),
        });
    }
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state >> 59) as u8; // 0..31 of noise over a gradient
        image::Rgb([
            (x as u64 * 200 / width as u64) as u8 + n,
            (y as u64 * 200 / height as u64) as u8 + n,
            128 + n,
        ])
    });
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(Frame {
        bytes,
        source: format!("generated {width}x{height} PNG"),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_frame_size;

    #[test]
    fn frame_sizes() {
        assert_eq!(parse_frame_size("2048x1536"), Ok((2048, 1536)));
        assert_eq!(parse_frame_size("320X256"), Ok((320, 256)));
        for bad in ["2048", "0x10", "10x", "ax3", "20000x10"] {
            assert!(parse_frame_size(bad).unwrap_err().contains("WIDTHxHEIGHT"), "{bad}");
        }
    }
}
