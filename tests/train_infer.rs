//! Training and inference end to end on real photographs: a surface dataset cut from a
//! real texture photo (defects painted into test tiles), a short training run on the real
//! Lite0 expert, the bundle on disk, and inference through it. Small settings (128 px,
//! few epochs) keep it inside CI's budget on 2 cores.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use cdo_inspect::bundle::{Bundle, META_FILE};
use cdo_inspect::imageio::{list_images, load_rgb};
use cdo_inspect::infer::{Detector, InferError};
use cdo_inspect::sample_data::{build_surface_dataset, SampleSpec};
use cdo_inspect::train::{train, TrainConfig, TrainData, TrainJob, TrainOutcome};

/// 20 good training tiles of the brick photograph, and 24 good and 24 defective test
/// tiles (8 of each kind). Brick, not `sample-data`'s default gravel: this small model
/// ranks brick's defects well above its good tiles (image AUROC 0.90-0.93 over training
/// seeds 5-9), while on gravel, whose stones look like painted spots, it reached only
/// 0.61-0.70, too close to a model trained 2 steps (0.31-0.59) to test anything.
fn dataset(dir: &Path) -> PathBuf {
    let spec = SampleSpec {
        tile: 128,
        train_good: 20,
        test_good: 24,
        test_defect: 8,
        seed: 11,
    };
    build_surface_dataset(&common::photo_path("brick.png"), dir, &spec).unwrap();
    dir.to_path_buf()
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        image_size: 128,
        batch_size: 8,
        learning_rate: 3e-3,
        holdout_fraction: 0.2,
        seed: 5,
        ..Default::default()
    }
}

fn job(data: &Path, out: &Path, cfg: TrainConfig) -> TrainJob {
    TrainJob {
        data: TrainData::Folder(data.join("train/good")),
        out: out.to_path_buf(),
        config: cfg,
        models_dir: common::models_dir(),
        restart: false,
        device: Device::Cpu,
    }
}

fn run(job: &TrainJob) -> TrainOutcome {
    train(job, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

fn scores(detector: &Detector, dir: &Path) -> Vec<f32> {
    let images: Vec<_> = list_images(dir)
        .unwrap()
        .iter()
        .map(|p| load_rgb(p).unwrap())
        .collect();
    detector
        .infer(&images)
        .unwrap()
        .into_iter()
        .map(|r| r.score)
        .collect()
}

#[test]
fn trained_model_scores_defects_above_good_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("surface"));
    let out = tmp.path().join("bundle");
    // 120 steps. Measured on these 72 test tiles, training seeds 5-9: AUROC 0.898-0.925
    // (contamination 1.0, scratches 0.91-0.95, spots 0.77-0.83); trained 2 steps (seeds
    // 5, 6): 0.48 and 0.42. The bound of 0.8 below sits between the two with room for
    // the order of float sums to change.
    let TrainOutcome::Finished { calibration, .. } = run(&job(&data, &out, config(60))) else {
        panic!("not interrupted, so it finishes")
    };
    let calibration = calibration.expect("20 images with 20% held out give a calibration");
    assert_eq!(calibration.count, 4);

    let detector = Detector::load(&out, None, &common::models_dir(), &Device::Cpu).unwrap();
    let good = scores(&detector, &data.join("test/good"));
    let mut defect = Vec::new();
    for kind in std::fs::read_dir(data.join("test")).unwrap() {
        let kind = kind.unwrap().path();
        if kind.file_name().unwrap() != "good" {
            defect.extend(scores(&detector, &kind));
        }
    }
    // Image-level AUROC: the share of (defect, good) pairs ordered correctly.
    let pairs = good.len() * defect.len();
    let correct: f32 = defect
        .iter()
        .flat_map(|d| {
            good.iter().map(move |g| {
                if d > g {
                    1.0
                } else if d == g {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    let auroc = correct / pairs as f32;
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    eprintln!("good {good:?}\ndefect {defect:?}\nAUROC {auroc}");
    assert!(
        mean(&defect) > mean(&good),
        "defects must score higher on average"
    );
    assert!(
        auroc >= 0.8,
        "AUROC {auroc} (good {good:?}, defect {defect:?})"
    );
}

#[test]
fn interrupted_training_resumes_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("surface"));
    let cfg = TrainConfig {
        holdout_fraction: 0.0,
        ..config(2)
    };

    let straight = tmp.path().join("straight");
    run(&job(&data, &straight, cfg.clone()));

    // Stop after the third step (mid-epoch 2), then run the same job again.
    let resumed = tmp.path().join("resumed");
    let j = job(&data, &resumed, cfg);
    let stop = AtomicBool::new(false);
    let outcome = train(&j, &stop, &mut |r| {
        if r.step == 3 {
            stop.store(true, Ordering::SeqCst)
        }
    })
    .unwrap();
    assert!(matches!(outcome, TrainOutcome::Interrupted { .. }));
    assert!(!resumed.exists(), "no bundle before training completes");
    run(&j);

    let a = candle_core::safetensors::load(straight.join("apprentice.safetensors"), &Device::Cpu)
        .unwrap();
    let b = candle_core::safetensors::load(resumed.join("apprentice.safetensors"), &Device::Cpu)
        .unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let diff = (ta - &b[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff == 0.0, "{name} differs by {diff}");
    }
    let ma = Bundle::load_meta(&straight).unwrap().meta;
    let mb = Bundle::load_meta(&resumed).unwrap().meta;
    assert_eq!(ma.training.steps, mb.training.steps);
}

#[test]
fn unreadable_training_images_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("surface"));
    let good = data.join("train/good");
    std::fs::write(
        good.join("zz_corrupt.png"),
        b"\x89PNG\r\n\x1a\nthis is not the rest of a png",
    )
    .unwrap();
    let out = tmp.path().join("bundle");
    run(&job(
        &data,
        &out,
        TrainConfig {
            holdout_fraction: 0.0,
            ..config(1)
        },
    ));
    let meta = Bundle::load_meta(&out).unwrap().meta;
    assert_eq!(meta.training.images_skipped, 1);
    assert_eq!(meta.training.images_used, 20);
}

#[test]
fn bundle_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("surface"));
    let out = tmp.path().join("bundle");
    run(&job(
        &data,
        &out,
        TrainConfig {
            holdout_fraction: 0.0,
            ..config(1)
        },
    ));

    // Round trip: the written metadata reads back as written.
    let meta = Bundle::load_meta(&out).unwrap().meta;
    assert_eq!(
        meta.training.config,
        TrainConfig {
            holdout_fraction: 0.0,
            ..config(1)
        }
    );
    assert_eq!(meta.expert_file, "efficientnet-lite0-57934424.pth");

    // Not a bundle at all.
    let err = Detector::load(&data, None, &common::models_dir(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&data.display().to_string()) && err.contains("not a model bundle"),
        "{err}"
    );

    // An expert file other than the one trained against.
    let other = tmp.path().join("other-expert.pth");
    let mut bytes = std::fs::read(common::lite0_weights()).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1; // one bit in the last stored weight
    std::fs::write(&other, bytes).unwrap();
    let err = Detector::load(&out, Some(&other), &common::models_dir(), &Device::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, InferError::ExpertMismatch { .. }), "{err}");
    assert!(err.to_string().contains("other-expert.pth"), "{err}");

    // A damaged metadata file.
    let text = std::fs::read_to_string(out.join(META_FILE)).unwrap();
    std::fs::write(
        out.join(META_FILE),
        text.replace("input_size", "input_sise"),
    )
    .unwrap();
    let err = Detector::load(&out, None, &common::models_dir(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(META_FILE) && err.contains("input_size"),
        "{err}"
    );
}
