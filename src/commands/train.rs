//! `cdo-inspect train`: teach the apprentice from a folder of good images.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::{default_models_dir, open_device, DeviceChoice};
use crate::model::backbone::BackboneKind;
use crate::train::{train, TrainConfig, TrainJob, TrainOutcome};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Folder of good images (png, jpg, bmp, tiff; any size, resized).
    #[arg(long)]
    pub data: PathBuf,
    /// Model bundle directory to write (replaced atomically when training completes).
    #[arg(long)]
    pub out: PathBuf,
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
    /// Discard a saved partial run of this bundle instead of resuming it.
    #[arg(long)]
    pub restart: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

impl TrainArgs {
    pub fn config(&self) -> Result<TrainConfig> {
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
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(args: TrainArgs) -> Result<i32> {
    let job = TrainJob {
        data: args.data.clone(),
        out: args.out.clone(),
        config: args.config()?,
        models_dir: args.models_dir.clone().unwrap_or_else(default_models_dir),
        restart: args.restart,
        device: open_device(args.device)?,
    };
    // Ctrl-C / SIGTERM: finish the current step, save the state, exit; rerun to resume.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: saving state after this step (press again to abort)");
        });
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut on_step = |r: &crate::train::StepReport| {
        bar.set_length(r.total_steps);
        bar.set_position(r.step);
        let syn = r
            .mean_synthetic
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into());
        bar.set_message(format!(
            "epoch {}/{} loss {:.4} d_normal {:.4} d_synth {} {:.1} img/s ETA {}",
            r.epoch,
            r.epochs,
            r.loss,
            r.mean_normal,
            syn,
            r.images_per_s,
            humantime::format_duration(std::time::Duration::from_secs(r.eta_s as u64))
        ));
        if bar.is_hidden() && (r.step % 10 == 0 || r.step == r.total_steps) {
            log::info!(
                "step {}/{} epoch {}/{} loss {:.4} d_normal {:.4} d_synth {} {:.1} img/s ETA {:.0}s",
                r.step, r.total_steps, r.epoch, r.epochs, r.loss, r.mean_normal, syn, r.images_per_s, r.eta_s
            );
        }
    };
    let outcome = train(&job, &stop, &mut on_step);
    bar.finish_and_clear();
    match outcome? {
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
