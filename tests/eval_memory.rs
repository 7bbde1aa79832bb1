//! Memory check for scoring a full-size category: 100 test images of 1024x1024 (the
//! largest MVTec AD categories), real texture tiles upscaled, with defect masks. Scoring
//! must stay within 2 GiB. Slow (a few minutes on 2 cores), so it is run on demand:
//!
//!     cargo test --release --test eval_memory -- --ignored --nocapture

mod common;

use cdo_inspect::sample_data::{build_surface_dataset, SampleSpec};

#[test]
#[ignore]
fn scoring_100_native_1024px_images_stays_within_2_gib() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    let spec = SampleSpec {
        tile: 128,
        train_good: 8,
        test_good: 40,
        test_defect: 20,
        seed: 9,
    };
    build_surface_dataset(&common::photo_path("gravel.png"), &small, &spec).unwrap();

    // The same layout at 1024x1024: images bilinear-upscaled, masks nearest-upscaled.
    let root = tmp.path().join("big");
    let cat = root.join("surface");
    let up = |from: &std::path::Path, to: &std::path::Path, nearest: bool| {
        for entry in std::fs::read_dir(from).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                up_dir(&p, &to.join(p.file_name().unwrap()), nearest);
            }
        }
    };
    fn up_dir(from: &std::path::Path, to: &std::path::Path, nearest: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let p = entry.unwrap().path();
            let img = image::open(&p).unwrap();
            let filter = if nearest {
                image::imageops::FilterType::Nearest
            } else {
                image::imageops::FilterType::Triangle
            };
            img.resize_exact(1024, 1024, filter)
                .save(to.join(p.file_name().unwrap()))
                .unwrap();
        }
    }
    up(&small.join("test"), &cat.join("test"), false);
    up(&small.join("ground_truth"), &cat.join("ground_truth"), true);
    up_dir(&small.join("train/good"), &cat.join("train/good"), false);

    // A model trained briefly on the small tiles; what is measured is the scoring.
    let bundle = tmp.path().join("bundle");
    let models = common::lite0_weights().parent().unwrap().to_path_buf();
    let train = common::cdo_command()
        .args(["train", "--epochs", "1", "--data"])
        .arg(small.join("train/good"))
        .arg("--out")
        .arg(&bundle)
        .env("CDO_MODELS_DIR", &models)
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );

    let json = tmp.path().join("r.json");
    let started = std::time::Instant::now();
    let out = common::cdo_command()
        .args(["eval", "--category", "surface", "--model"])
        .arg(&bundle)
        .arg("--data")
        .arg(&root)
        .arg("--json")
        .arg(&json)
        .env("CDO_MODELS_DIR", &models)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let peak = report["peak_rss_bytes"].as_u64().unwrap();
    let images = report["categories"][0]["test_images"].as_u64().unwrap();
    eprintln!(
        "{text}\n{images} images of 1024x1024 scored in {:.1} s, peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        peak as f64 / 1048576.0
    );
    assert_eq!(images, 100);
    assert!(peak < 2 << 30, "peak RSS {peak} bytes");
}
