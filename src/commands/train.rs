//! `cdo-inspect train`: teach the apprentice from a folder of good images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::{check_device, check_image_folder, check_output_dir, check_weights_file, Problems};
use crate::infer::default_models_dir;
use crate::infer::detector::{weights_fix, ModelsDir};
use crate::bundle::geometry::Roi;
use crate::model::checkpoint::CheckpointError;
use crate::platform::device::DeviceChoice;
use crate::model::backbone::BackboneKind;
use crate::train::{expert_path, train, StepReport, TrainConfig, TrainData, TrainJob, TrainOutcome};

/// Training settings shared by `train` and `eval --train` (with [`GeometryOptions`]).
#[derive(Debug, clap::Args)]
pub struct TrainOptions {
    /// TOML file whose [train] table sets the training options (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, value_enum)]
    pub backbone: Option<BackboneKind>,
    /// Expert weights file (default: the backbone's upstream file in the models dir).
    #[arg(long)]
    pub expert: Option<PathBuf>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// OOM focusing exponent (0 switches OOM off).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Switch margin optimisation (MOM) off: the ST baseline's normal-only loss.
    #[arg(long)]
    pub no_mom: bool,
    /// Switch overlap optimisation (OOM) off.
    #[arg(long)]
    pub no_oom: bool,
    /// Directory holding expert weights [default: $CDO_MODELS_DIR or ./models].
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

/// The inspection geometry `train` decides and records in the bundle (the same keys in
/// the `[train]` table; flags override them).
#[derive(Debug, Default, clap::Args)]
pub struct GeometryOptions {
    /// Tiled inspection: cut the frame (its ROI, scaled) into square tiles of SIZE network
    /// pixels, the network input (sets the input size). Without it the frame is resized
    /// to the input.
    #[arg(long, value_name = "SIZE")]
    pub tile: Option<u32>,
    /// Network pixels shared by neighbouring tiles (below half a tile).
    #[arg(long, value_name = "PX")]
    pub overlap: Option<u32>,
    /// The inspected rectangle of every frame, in source pixels: left, top, width, height.
    #[arg(long, value_name = "X,Y,W,H", value_parser = parse_roi)]
    pub roi: Option<Roi>,
    /// Source pixels per network pixel before tiling (2 halves the ROI).
    #[arg(long, value_name = "F")]
    pub scale: Option<f32>,
    /// Ignore mask image, the ROI's size in source pixels: black = never inspect (copied
    /// into the bundle).
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
}

/// `X,Y,W,H` in source pixels.
fn parse_roi(s: &str) -> Result<Roi, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some(&[x, y, w, h]) => Ok(Roi { x, y, w, h }),
        _ => Err(format!(
            "expected X,Y,W,H: four whole numbers of source pixels (left, top, width, height), got \"{s}\""
        )),
    }
}

impl GeometryOptions {
    /// The geometry flags given, by name (for refusing them where a bundle's geometry
    /// applies).
    pub fn given(&self) -> Vec<&'static str> {
        let Self { tile, overlap, roi, scale, mask } = self;
        [
            ("--tile", tile.is_some()),
            ("--overlap", overlap.is_some()),
            ("--roi", roi.is_some()),
            ("--scale", scale.is_some()),
            ("--mask", mask.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// The flags over `cfg` (`--tile` sets the input size too).
    pub fn apply(&self, cfg: &mut TrainConfig) {
        if let Some(t) = self.tile {
            cfg.tile = Some(t);
            cfg.image_size = t;
        }
        if let Some(v) = self.overlap {
            cfg.overlap = Some(v);
        }
        if let Some(v) = self.roi {
            cfg.roi = Some(v);
        }
        if let Some(v) = self.scale {
            cfg.scale = Some(v);
        }
        if let Some(v) = &self.mask {
            cfg.mask = Some(v.clone());
        }
    }
}

impl TrainOptions {
    /// The settings: the file's `[train]` table, the flags over it, the geometry flags
    /// over those; validated.
    pub fn config(&self, geometry: &GeometryOptions) -> Result<TrainConfig> {
        let mut cfg = match &self.config {
            Some(path) => TrainConfig::from_file(path)?,
            None => TrainConfig::default(),
        };
        if let Some(v) = self.epochs {
            cfg.epochs = v;
        }
        if let Some(v) = self.backbone {
            cfg.backbone = v;
        }
        if let Some(v) = &self.expert {
            cfg.expert_weights = Some(v.clone());
        }
        if let Some(v) = self.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = self.gamma {
            cfg.gamma = v;
        }
        if self.no_mom {
            cfg.mom = false;
        }
        if self.no_oom {
            cfg.oom = false;
        }
        geometry.apply(&mut cfg);
        if let Some(m) = &cfg.mask {
            if !m.is_file() {
                anyhow::bail!("mask {}: no such file", m.display());
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }

    /// The models folder and how it was chosen, for messages.
    pub fn models_folder(&self) -> ModelsDir {
        ModelsDir::choose(self.models_dir.as_deref(), "--models-dir")
    }

    /// Checks the training settings (with the geometry flags of `train` and `eval
    /// --train`) and that the expert weights they name open (the default file in the
    /// models folder, `--expert`, or the config's `expert_weights`).
    pub fn check(&self, geometry: &GeometryOptions, problems: &mut Problems) -> Option<TrainConfig> {
        let cfg = problems.take(self.config(geometry))?;
        let dir = self.models_folder();
        let (path, given) = match (&self.expert, &cfg.expert_weights) {
            (Some(p), _) => (p.clone(), Some("--expert".to_string())),
            (None, Some(p)) => {
                let file = self.config.as_deref().unwrap_or(Path::new("--config"));
                (p.clone(), Some(format!("expert_weights in {}:", file.display())))
            }
            (None, None) => (expert_path(&cfg, &dir.path), None),
        };
        check_weights_file(&path, given.as_deref(), &dir, problems);
        Some(cfg)
    }
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Folder of good images (png, jpg, bmp, tiff; any size, resized).
    #[arg(long)]
    pub data: PathBuf,
    /// Model bundle directory to write (replaced atomically when training completes).
    #[arg(long)]
    pub out: PathBuf,
    /// Discard a saved partial run of this bundle instead of resuming it.
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub options: TrainOptions,
    #[command(flatten)]
    pub geometry: GeometryOptions,
}

/// Ctrl-C / SIGTERM raise the flag: training finishes its step, saves, and returns.
/// A second interrupt exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: saving state after this step (press again to abort)");
    });
    stop
}

/// A progress bar on a terminal, one log line every 10 steps otherwise (journald).
pub struct TrainProgress {
    bar: ProgressBar,
}

impl TrainProgress {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self { bar }
    }

    pub fn step(&self, r: &StepReport) {
        let syn = r
            .mean_synthetic
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into());
        let rate = if r.tiled {
            format!(
                "{:.1} tiles/s, {}/{} tiles of {} frames this epoch",
                r.images_per_s, r.samples_in_epoch, r.samples_per_epoch, r.frames
            )
        } else {
            format!("{:.1} img/s", r.images_per_s)
        };
        let line = format!(
            "epoch {}/{} loss {:.4} d_normal {:.4} d_synth {} {rate} ETA {}",
            r.epoch,
            r.epochs,
            r.loss,
            r.mean_normal,
            syn,
            humantime::format_duration(std::time::Duration::from_secs(r.eta_s as u64))
        );
        self.bar.set_length(r.total_steps);
        self.bar.set_position(r.step);
        if self.bar.is_hidden() {
            if r.step % 10 == 0 || r.step == r.total_steps {
                log::info!("step {}/{} {line}", r.step, r.total_steps);
            }
        } else {
            self.bar.set_message(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Default for TrainProgress {
    fn default() -> Self {
        Self::new()
    }
}

/// A damaged expert file (it opened, so the checks passed, but does not read as weights):
/// the reader's message, and how to get the file again.
pub fn damaged_expert(e: anyhow::Error, dir: &ModelsDir) -> anyhow::Error {
    match e.downcast_ref::<CheckpointError>() {
        Some(CheckpointError::Io { .. }) | None => e,
        Some(c) => {
            let file = c.path().file_name().unwrap_or_default().to_string_lossy().to_string();
            let folder = c.path().parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let known = [
                BackboneKind::EfficientNetLite0,
                BackboneKind::ResNet18,
                BackboneKind::WideResNet50_2,
            ]
            .iter()
            .any(|b| b.default_weights_file() == file);
            if known && folder == dir.path {
                anyhow::anyhow!("{e:#}; delete it and {}", weights_fix(&file, &dir.path))
            } else {
                e
            }
        }
    }
}

pub fn run(args: TrainArgs) -> Result<i32> {
    // Every input, before any work: all problems in one report.
    let mut problems = Problems::new("train");
    check_image_folder("--data", &args.data, 2, &mut problems);
    let config = args.options.check(&args.geometry, &mut problems);
    if args.out.is_file() {
        problems.push(format!(
            "--out {} is a file; give the folder to write the model bundle to",
            args.out.display()
        ));
    } else if args.out.exists() {
        // An earlier bundle there is replaced: the new one is written beside it first.
        let parent = match args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p,
            None => Path::new("."),
        };
        check_output_dir("--out", parent, &mut problems);
    } else {
        check_output_dir("--out", &args.out, &mut problems);
    }
    let device = check_device(args.options.device, &mut problems);
    problems.finish()?;
    let (Some(config), Some(device)) = (config, device) else {
        anyhow::bail!("train: the settings or the device were not checked");
    };
    let job = TrainJob {
        data: TrainData::Folder(args.data.clone()),
        out: args.out.clone(),
        config,
        models_dir: args.options.models_dir(),
        restart: args.restart,
        device,
    };
    let stop = interrupt_flag();
    let progress = TrainProgress::new();
    let outcome = train(&job, &stop, &mut |r| progress.step(r));
    progress.finish();
    let outcome = outcome.map_err(|e| damaged_expert(e, &args.options.models_folder()))?;
    match outcome {
        TrainOutcome::Finished {
            bundle,
            calibration,
        } => {
            match calibration {
                Some(c) => println!(
                    "model bundle written to {} (threshold {:.5} from {} held-out good images: mean {:.5}, max {:.5})",
                    bundle.display(),
                    c.threshold,
                    c.count,
                    c.mean,
                    c.max
                ),
                None => println!(
                    "model bundle written to {} (no images held out: set a threshold per station)",
                    bundle.display()
                ),
            }
            Ok(0)
        }
        TrainOutcome::Interrupted { state } => {
            println!(
                "interrupted; state saved in {}; run the same command to resume",
                state.display()
            );
            Ok(130)
        }
    }
}
