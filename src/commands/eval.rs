//! `cdo-inspect eval`: score models on an MVTec AD-layout dataset (or MVTec 3D-AD's RGB
//! images, or VisA), train one model per category first (benchmark mode), or run the
//! paper's OOM/MOM ablation.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::train::{damaged_expert, interrupt_flag, GeometryOptions, TrainOptions, TrainProgress};
use super::{check_detector, check_device, check_output_dir, check_output_file, Problems};
use crate::eval::dataset::{list_categories, load_category, Category};
use crate::eval::report::{ablation_table, csv, mean_row, table, AblationRow, JsonReport};
use crate::eval::scoring::{score_category, CategoryResult};
use crate::platform::memory::peak_rss_bytes;
use crate::infer::Detector;
use crate::train::{train, TrainConfig, TrainData, TrainJob, TrainOutcome};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Dataset root (MVTec AD layout: <root>/<category>/train/good, test/..., ground_truth/...).
    #[arg(long)]
    pub data: PathBuf,
    /// Score this trained bundle on --category.
    #[arg(long, conflicts_with_all = ["train", "ablation"], requires = "category")]
    pub model: Option<PathBuf>,
    /// The category --model is scored on.
    #[arg(long)]
    pub category: Option<String>,
    /// Benchmark mode: train one model per category (on all its train/good images), then score it.
    #[arg(long)]
    pub train: bool,
    /// Run the four cases of the paper's ablation (neither, OOM only, MOM only, both).
    #[arg(long, conflicts_with = "train")]
    pub ablation: bool,
    /// Categories to run in benchmark/ablation mode (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Keep the trained bundles here (<dir>/<category>, or <dir>/<case>/<category>);
    /// default: a temporary directory that is removed afterwards.
    #[arg(long)]
    pub models_out: Option<PathBuf>,
    /// Write every test map as 32-bit float TIFF at the source size:
    /// <dir>/<category>/test/<defect>/<id>.tiff (the official evaluation scripts' layout).
    #[arg(long)]
    pub maps_out: Option<PathBuf>,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the results as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[command(flatten)]
    pub options: TrainOptions,
    /// The inspection geometry of the bundles trained in benchmark/ablation mode (a
    /// `--model` bundle has its own).
    #[command(flatten)]
    pub geometry: GeometryOptions,
}

fn score_progress(category: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} images {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("scoring {category}"));
    bar
}

fn score(
    detector: &Detector,
    category: &Category,
    maps_out: Option<&Path>,
) -> Result<CategoryResult> {
    let bar = score_progress(&category.name);
    let (result, _) = score_category(detector, category, maps_out, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if bar.is_hidden() && (done % 20 == 0 || done == total) {
            log::info!("{}: scored {done}/{total} test images", category.name);
        }
    })?;
    bar.finish_and_clear();
    Ok(result)
}

/// Trains on a category's good training images and scores it.
fn train_and_score(
    cfg: &TrainConfig,
    args: &EvalArgs,
    category: &Category,
    bundle: &Path,
    device: &candle_core::Device,
    stop: &AtomicBool,
) -> Result<Option<CategoryResult>> {
    let job = TrainJob {
        data: TrainData::Files(category.train.clone()),
        out: bundle.to_path_buf(),
        config: cfg.clone(),
        models_dir: args.options.models_dir(),
        restart: false,
        device: device.clone(),
    };
    let progress = TrainProgress::new();
    let started = std::time::Instant::now();
    let outcome = train(&job, stop, &mut |r| progress.step(r));
    progress.finish();
    if let TrainOutcome::Interrupted { state } = outcome
        .map_err(|e| damaged_expert(e, &args.options.models_folder()))
        .with_context(|| format!("training {}", category.name))?
    {
        println!(
            "interrupted while training {}; state in {}",
            category.name,
            state.display()
        );
        return Ok(None);
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let detector = Detector::load(
        bundle,
        cfg.expert_weights.as_deref(),
        &args.options.models_dir(),
        device,
    )?;
    let mut result = score(&detector, category, args.maps_out.as_deref())?;
    result.train_seconds = Some(train_seconds);
    Ok(Some(result))
}

/// Categories to run: the ones asked for, else all in the dataset.
fn chosen_categories(args: &EvalArgs) -> Result<Vec<Category>> {
    let names = if args.categories.is_empty() {
        list_categories(&args.data)?
    } else {
        args.categories.clone()
    };
    names
        .iter()
        .map(|n| Ok(load_category(&args.data, n)?))
        .collect()
}

fn write_outputs(args: &EvalArgs, results: &[CategoryResult]) -> Result<()> {
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let report = JsonReport {
            categories: results,
            mean: mean_row(results),
            peak_rss_bytes: peak_rss_bytes(),
        };
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Where bundles go: the user's directory, or a temporary one removed on drop.
struct BundleRoot {
    path: PathBuf,
    temporary: bool,
}

impl BundleRoot {
    fn new(keep: Option<&Path>) -> Result<Self> {
        Ok(match keep {
            Some(p) => Self {
                path: p.to_path_buf(),
                temporary: false,
            },
            None => {
                let path = std::env::temp_dir().join(format!("cdo-eval-{}", std::process::id()));
                std::fs::create_dir_all(&path)?;
                Self {
                    path,
                    temporary: true,
                }
            }
        })
    }
}

impl Drop for BundleRoot {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Every input of `eval`, before any work: all problems in one report. Returns the
/// device, the loaded detector (with `--model`), the categories and the training settings
/// (benchmark and ablation).
#[allow(clippy::type_complexity)]
fn check_inputs(
    args: &EvalArgs,
) -> Result<(
    candle_core::Device,
    Option<Detector>,
    Vec<Category>,
    Option<TrainConfig>,
)> {
    if args.model.is_none() && !args.train && !args.ablation {
        bail!("eval needs --model BUNDLE --category C, or --train (benchmark), or --ablation");
    }
    let mut problems = Problems::new("eval");
    let categories = match &args.model {
        Some(_) => load_category(&args.data, args.category.as_deref().unwrap_or_default())
            .map(|c| vec![c])
            .map_err(anyhow::Error::from),
        None => chosen_categories(args),
    };
    let categories = categories.unwrap_or_else(|e| {
        problems.push(format!("--data: {e:#}"));
        Vec::new()
    });
    let device = check_device(args.options.device, &mut problems);
    let mut detector = None;
    let mut train_cfg = None;
    match &args.model {
        Some(model) => {
            let given = args.geometry.given();
            if !given.is_empty() {
                problems.push(format!(
                    "{} set the geometry of the bundles --train and --ablation train; --model {} inspects with the geometry it was trained with",
                    given.join(", "),
                    model.display()
                ));
            }
            detector = check_detector(
                model,
                args.options.expert.as_deref(),
                &args.options.models_folder(),
                device.as_ref(),
                &mut problems,
            )
        }
        None => train_cfg = args.options.check(&args.geometry, &mut problems),
    }
    if let Some(dir) = &args.models_out {
        check_output_dir("--models-out", dir, &mut problems);
    }
    if let Some(dir) = &args.maps_out {
        check_output_dir("--maps-out", dir, &mut problems);
    }
    if let Some(file) = &args.json {
        check_output_file("--json", file, &mut problems);
    }
    if let Some(file) = &args.csv {
        check_output_file("--csv", file, &mut problems);
    }
    problems.finish()?;
    let Some(device) = device else {
        bail!("eval: the device was not checked");
    };
    Ok((device, detector, categories, train_cfg))
}

pub fn run(args: EvalArgs) -> Result<i32> {
    let (device, detector, categories, train_cfg) = check_inputs(&args)?;
    if let Some(detector) = detector {
        let results = vec![score(&detector, &categories[0], args.maps_out.as_deref())?];
        print!("{}", table(&results));
        report_memory();
        write_outputs(&args, &results)?;
        return Ok(0);
    }
    let Some(mut base) = train_cfg else {
        bail!("eval: the training settings were not checked");
    };
    // The benchmark trains on every train/good image; calibration is not part of it.
    base.holdout_fraction = 0.0;
    let bundles = BundleRoot::new(args.models_out.as_deref())?;
    // One handler for the whole run (a process can install only one).
    let stop = interrupt_flag();

    let cases: Vec<(&str, bool, bool)> = if args.ablation {
        vec![
            ("neither", false, false),
            ("OOM only", true, false),
            ("MOM only", false, true),
            ("both", true, true),
        ]
    } else {
        vec![("", base.oom && base.gamma > 0.0, base.mom)]
    };
    let mut rows = Vec::new();
    for (case, oom, mom) in cases {
        let cfg = TrainConfig {
            oom,
            mom,
            ..base.clone()
        };
        let mut results = Vec::new();
        for (i, category) in categories.iter().enumerate() {
            log::info!(
                "{}{} ({}/{}): training on {} images, {} test images",
                if case.is_empty() {
                    String::new()
                } else {
                    format!("[{case}] ")
                },
                category.name,
                i + 1,
                categories.len(),
                category.train.len(),
                category.test.len()
            );
            let dir = if case.is_empty() {
                bundles.path.clone()
            } else {
                bundles.path.join(case.replace(' ', "-"))
            };
            match train_and_score(
                &cfg,
                &args,
                category,
                &dir.join(&category.name),
                &device,
                &stop,
            )? {
                Some(r) => results.push(r),
                None => return Ok(130),
            }
        }
        if !case.is_empty() {
            println!("== {case}");
        }
        print!("{}", table(&results));
        rows.push(AblationRow {
            case: case.to_string(),
            oom,
            mom,
            mean: mean_row(&results),
            categories: results,
        });
    }
    report_memory();
    if args.ablation {
        println!("\n{}", ablation_table(&rows));
        let all: Vec<CategoryResult> = rows
            .iter()
            .flat_map(|r| {
                r.categories.iter().map(move |c| CategoryResult {
                    category: format!("{} [{}]", c.category, r.case),
                    ..c.clone()
                })
            })
            .collect();
        write_outputs(&args, &all)?;
    } else {
        write_outputs(&args, &rows[0].categories)?;
    }
    Ok(0)
}

fn report_memory() {
    if let Some(bytes) = peak_rss_bytes() {
        println!(
            "peak memory (RSS): {:.0} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
}
