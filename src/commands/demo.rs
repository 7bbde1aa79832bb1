//! `cdo-inspect demo`: a whole station on one machine with no hardware. It makes a
//! production line's frames of one part from a real photograph (good parts, and parts
//! with small painted defects), trains a tiled model on good frames if there is none,
//! lays the test parts (plus one corrupt frame) out as the line, writes a station file
//! with the replay camera and simulated GPIO, runs the station over the line, and prints
//! each part's verdict and a summary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::train::{interrupt_flag, TrainProgress};
use crate::infer::default_models_dir;
use crate::platform::device::{open_device, DeviceChoice};
use crate::sample_data::{build_line_dataset, LineSpec};
use crate::station::daemon::{run_station, RunOptions};
use crate::train::{train, TrainConfig, TrainData, TrainJob, TrainOutcome};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for everything the demo makes (data, model, line, records, archive).
    #[arg(long, default_value = "demo-station")]
    pub dir: PathBuf,
    /// The photograph the part is cut from (brick: a regular, ribbed surface, closer to a
    /// moulded part than the gravel photograph), at least 512x512.
    #[arg(long, default_value = "testdata/images/brick.png")]
    pub texture: PathBuf,
    /// Default: $CDO_MODELS_DIR or ./models.
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

/// The demo's part: 464x464 frames at the photograph's native resolution (the sample
/// photographs are 512x512; the part moves by up to 24 px in its fixture), 24 good frames
/// to train and calibrate on, 8 good and 3 defective per kind on the line. The line's
/// specification: defects of 60 px and more (an 8 px spot, a 30 px scratch), 0.03 % of
/// the frame; the largest are about 0.3 %. Its spots are dark (burn marks, oil): on this
/// photograph a light spot sits on or beside its near-white mortar and looks like it, and
/// the demo's model caught 3 of 12 such spots (README, *The demo's limits*).
pub const LINE: LineSpec = LineSpec {
    width: 464,
    height: 464,
    jitter: 24,
    train_good: 24,
    test_good: 8,
    test_defect: 3,
    min_defect_px: 60,
    light_spots: false,
    seed: 11,
};

/// Training settings of the demo: tiled inspection at native resolution (128 px tiles
/// overlapping by 16 px: 16 tiles per frame), a third of the good frames held out to
/// calibrate the threshold on whole frames, and a higher learning rate than the paper's
/// so that a usable model trains in about 5 minutes on two cores. A real station keeps the
/// paper's defaults and trains on a few hundred good parts.
pub fn demo_train_config() -> TrainConfig {
    TrainConfig {
        image_size: 128,
        tile: Some(128),
        overlap: Some(16),
        learning_rate: 3e-3,
        epochs: 12,
        holdout_fraction: 1.0 / 3.0,
        seed: 5,
        ..TrainConfig::default()
    }
}

pub fn run(args: DemoArgs) -> Result<i32> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = dir.join("data");
    if !data.join("train/good").is_dir() {
        println!(
            "making {}x{} frames of a part from {} into {}",
            LINE.width,
            LINE.height,
            args.texture.display(),
            data.display()
        );
        build_line_dataset(&args.texture, &data, &LINE)?;
    }
    let model = dir.join("model");
    if !model.join("model.toml").is_file() {
        println!("training the demo model into {} (about 5 minutes on two cores)", model.display());
        let job = TrainJob {
            data: TrainData::Folder(data.join("train/good")),
            out: model.clone(),
            config: demo_train_config(),
            models_dir: args.models_dir.clone().unwrap_or_else(default_models_dir),
            restart: false,
            device: open_device(DeviceChoice::Cpu)?,
        };
        let progress = TrainProgress::new();
        let outcome = train(&job, &interrupt_flag(), &mut |r| progress.step(r))?;
        progress.finish();
        if let TrainOutcome::Interrupted { state } = outcome {
            println!("interrupted; training state saved in {}", state.display());
            return Ok(130);
        }
    }
    let line = dir.join("line");
    if !line.is_dir() {
        lay_out_line(&data, &line)?;
    }
    let station_file = dir.join("station.toml");
    if !station_file.is_file() {
        let models = args.models_dir.clone().unwrap_or_else(default_models_dir);
        let models = std::path::absolute(&models).unwrap_or(models);
        std::fs::write(&station_file, demo_station_toml(&models))
            .with_context(|| format!("writing {}", station_file.display()))?;
    }
    let cfg = crate::config::load(&station_file)
        .map_err(|e| anyhow::anyhow!("{}:\n{e}", station_file.display()))?;
    let records_file = cfg.records.dir.join(crate::station::records::RECORD_FILE);
    let earlier = std::fs::read_to_string(&records_file).map(|t| t.lines().count()).unwrap_or(0);
    let edge_log = cfg.gpio.edge_log.clone();
    let archive = cfg.archive.dir.clone();
    println!("running the station in {} (edit station.toml to change it)", dir.display());
    if let Some(web) = &cfg.web {
        println!("operator view: http://{}/ while the station runs (metrics: /metrics)", web.listen);
    }
    let summary = run_station(
        cfg,
        RunOptions { config_path: Some(station_file.clone()), echo_parts: true },
    )?;
    println!("\n{}", summary.counters);
    let report = crate::station::summary::RunReport::from_records(&records_file, earlier)?;
    print!("{report}");
    println!("records:      {}", records_file.display());
    println!("archive:      {}", archive.display());
    if let Some(edges) = edge_log {
        println!("GPIO edges:   {}", edges.display());
    }
    Ok(0)
}

/// Copies the test parts into one folder in a shuffled (seeded) order, named
/// `NNNN_<kind>.png` so a person reading a record sees what the part really was, and
/// adds one corrupt frame to show the fail-safe path.
fn lay_out_line(data: &Path, line: &Path) -> Result<()> {
    let mut parts: Vec<(PathBuf, String)> = Vec::new();
    let test = data.join("test");
    for entry in std::fs::read_dir(&test).with_context(|| format!("reading {}", test.display()))? {
        let kind_dir = entry?.path();
        let kind = kind_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        for img in crate::imageio::list_images(&kind_dir)? {
            parts.push((img, kind.clone()));
        }
    }
    parts.sort();
    parts.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(LINE.seed));
    let corrupt_at = parts.len() / 2;
    std::fs::create_dir_all(line)?;
    for (i, (src, kind)) in parts.iter().enumerate() {
        let n = i + usize::from(i >= corrupt_at) + 1;
        std::fs::copy(src, line.join(format!("{n:04}_{kind}.png")))
            .with_context(|| format!("copying {}", src.display()))?;
    }
    // A truncated PNG: what a damaged frame looks like.
    let first = std::fs::read(&parts[0].0)?;
    std::fs::write(line.join(format!("{:04}_corrupt-frame.png", corrupt_at + 1)), &first[..first.len() / 3])?;
    Ok(())
}

fn demo_station_toml(models_dir: &Path) -> String {
    format!(
        r#"# The demo station: replayed parts, simulated GPIO, CPU. Written by `cdo-inspect demo`;
# edit it and run the demo again. Every key is explained in config/station.example.toml.
[station]
name = "demo"

[model]
bundle = "model"
models_dir = "{models}"
device = "cpu"

[camera]
source = "replay"

[camera.replay]
folder = "line"          # parts in file-name order
loop = false             # one pass, then the station drains and stops

[trigger]
mode = "replay"          # one part per replayed frame
rate_hz = 1.0            # a part a second: its 16 tiles take a few hundred ms on two cores

[gpio]
backend = "simulated"
edge_log = "gpio-edges.jsonl"   # every output edge with its time (µs since start)

[reject]
line = "gpiochip0:22"
delay_ms = 5000          # trigger to reject pulse: the part's travel to the rejector,
                         # and the verdict's deadline (generous: two busy cores can take
                         # seconds for a part's 16 tiles; a late verdict rejects it)
pulse_ms = 100

[outputs.ready]
line = "gpiochip0:23"

[outputs.fault]
line = "gpiochip0:24"

[records]
dir = "records"

[archive]
dir = "archive"
pass_every = 5           # also keep every 5th passed part

[logging]
level = "info"           # used by `cdo-inspect run --config` on this file

[web]
listen = "127.0.0.1:8080"   # the operator view; camera.replay.loop = true keeps it running
"#,
        models = models_dir.display()
    )
}
