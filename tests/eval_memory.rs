//! Memory bound for scoring a full-size category: 100 test images of 1024x1024 (the
//! largest MVTec AD categories) must score within 2 GiB. Scoring 100 such images is a
//! measurement for a benchmark, not a test; this test measures the binary's peak memory
//! on two small categories of native-size images (real texture tiles upscaled, with defect
//! masks) and checks what the 100-image case follows from it: the memory each added image
//! costs is the 8 bytes per pixel of the metrics (nothing else accumulates per image), and
//! the peak projected to 100 images stays within 2 GiB.

mod common;

use std::path::Path;

use cdo_inspect::sample_data::{build_surface_dataset, SampleSpec};

const SIDE: u32 = 1024;

/// `from` (a sample dataset: test/, ground_truth/, train/good) at 1024x1024 in `to`:
/// test images bilinear-upscaled, masks nearest-upscaled; the training images (not read
/// when a bundle is scored, but part of the layout) copied as they are.
fn upscaled(from: &Path, to: &Path) {
    fn up_dir(from: &Path, to: &Path, nearest: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                up_dir(&p, &to.join(p.file_name().unwrap()), nearest);
                continue;
            }
            let filter = if nearest {
                image::imageops::FilterType::Nearest
            } else {
                image::imageops::FilterType::Triangle
            };
            image::open(&p)
                .unwrap()
                .resize_exact(SIDE, SIDE, filter)
                .save(to.join(p.file_name().unwrap()))
                .unwrap();
        }
    }
    up_dir(&from.join("test"), &to.join("test"), false);
    up_dir(&from.join("ground_truth"), &to.join("ground_truth"), true);
    let train = to.join("train/good");
    std::fs::create_dir_all(&train).unwrap();
    for entry in std::fs::read_dir(from.join("train/good")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, train.join(p.file_name().unwrap())).unwrap();
    }
}

/// Scores `category` of `root` with `bundle` through the binary: (test images, peak RSS).
fn score(root: &Path, category: &str, bundle: &Path, json: &Path) -> (u64, u64) {
    let out = common::cdo_verb("eval")
        .args(["--category", category, "--model"])
        .arg(bundle)
        .arg("--data")
        .arg(root)
        .arg("--json")
        .arg(json)
        .env("CDO_MODELS_DIR", common::models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::output_text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let result = &report["categories"][0];
    assert_eq!(result["category"], category, "{report}");
    // The pixel metrics were computed over every pixel.
    assert!(result["pixel_auroc"].is_number(), "{report}");
    (
        result["test_images"].as_u64().unwrap(),
        report["peak_rss_bytes"].as_u64().expect("peak RSS (Linux)"),
    )
}

#[test]
fn scoring_100_native_1024px_images_fits_in_2_gib() {
    let tmp = tempfile::tempdir().unwrap();
    let texture = common::photo_path("gravel.png");
    let spec = |test_good, test_defect| SampleSpec {
        tile: 128,
        train_good: 8,
        test_good,
        test_defect,
        seed: 9,
    };
    // 1 + 3 x 1 and 6 + 3 x 2 test images (three defect types).
    let (small, large) = (tmp.path().join("small"), tmp.path().join("large"));
    build_surface_dataset(&texture, &small, &spec(1, 1)).unwrap();
    build_surface_dataset(&texture, &large, &spec(6, 2)).unwrap();
    let root = tmp.path().join("native");
    upscaled(&small, &root.join("few"));
    upscaled(&large, &root.join("more"));

    // A model trained briefly on the small tiles; what is measured is the scoring.
    let bundle = tmp.path().join("bundle");
    let config = tmp.path().join("train.toml");
    std::fs::write(
        &config,
        "[train]\nimage_size = 64\nholdout_fraction = 0.25\n",
    )
    .unwrap();
    let train = common::cdo_verb("train")
        .args(["--epochs", "1", "--data"])
        .arg(large.join("train/good"))
        .arg("--out")
        .arg(&bundle)
        .arg("--config")
        .arg(&config)
        .env("CDO_MODELS_DIR", common::models_dir())
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", common::output_text(&train));

    let (few, peak_few) = score(&root, "few", &bundle, &tmp.path().join("few.json"));
    let (more, peak_more) = score(&root, "more", &bundle, &tmp.path().join("more.json"));
    assert_eq!((few, more), (4, 12));
    let pixels_per_image = (SIDE * SIDE) as f64;
    let per_image = (peak_more as f64 - peak_few as f64) / (more - few) as f64;
    let per_pixel = per_image / pixels_per_image;
    let projected = peak_few as f64 + (100 - few) as f64 * per_image;
    let mib = |b: f64| b / 1048576.0;
    eprintln!(
        "peak RSS: {few} images {:.0} MiB, {more} images {:.0} MiB: {per_pixel:.2} bytes per \
         added pixel; 100 images projected {:.0} MiB",
        mib(peak_few as f64),
        mib(peak_more as f64),
        mib(projected)
    );
    // What grows with the images is the metrics' 8 bytes per pixel. Under 6 would mean the
    // peak is set by something that does not grow (and the projection measures nothing);
    // over 10, something else is kept per image.
    assert!(
        (6.0..=10.0).contains(&per_pixel),
        "{per_pixel:.2} bytes per added pixel (peaks {peak_few} and {peak_more} bytes)"
    );
    assert!(
        projected < (2u64 << 30) as f64,
        "100 images would need {:.0} MiB",
        mib(projected)
    );
}
