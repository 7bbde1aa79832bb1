//! The benchmark mode end to end, through the real binary: a two-category MVTec AD-layout
//! dataset built at test time from real texture photographs (defects painted into the test
//! images, masks beside them), `eval --train` with a short schedule, maps exported in the
//! official layout, and the JSON/CSV results.

mod common;

use cdo_inspect::eval::dataset::{build_benchmark_dataset, load_category};
use cdo_inspect::imageio::{load_rgb, read_f32_tiff};
use cdo_inspect::sample_data::SampleSpec;

#[test]
fn eval_train_scores_real_textures_above_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mvtec");
    let spec = SampleSpec {
        tile: 128,
        train_good: 16,
        test_good: 4,
        test_defect: 2,
        seed: 21,
    };
    let images = common::photo_path("gravel.png")
        .parent()
        .unwrap()
        .to_path_buf();
    let categories = build_benchmark_dataset(&images, &root, &spec).unwrap();
    assert_eq!(categories.len(), 2);

    let config = tmp.path().join("train.toml");
    std::fs::write(
        &config,
        "[train]\nimage_size = 128\nlearning_rate = 3e-3\nseed = 5\n",
    )
    .unwrap();
    let (maps, json, csv) = (
        tmp.path().join("maps"),
        tmp.path().join("r.json"),
        tmp.path().join("r.csv"),
    );
    let out = common::cdo_command()
        .args(["eval", "--train", "--epochs", "25", "--data"])
        .arg(&root)
        .arg("--config")
        .arg(&config)
        .arg("--maps-out")
        .arg(&maps)
        .arg("--json")
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .env("CDO_MODELS_DIR", common::lite0_weights().parent().unwrap())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    eprintln!("{text}");
    assert!(text.contains("AU-PRO") && text.contains("mean"), "{text}");

    // Every test image has its map, at the source image's size, in the official layout.
    for name in &categories {
        let category = load_category(&root, name).unwrap();
        for s in &category.test {
            let path = maps
                .join(name)
                .join("test")
                .join(&s.defect)
                .join(format!("{}.tiff", s.id));
            let (_, w, h) = read_f32_tiff(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((w, h), load_rgb(&s.image).unwrap().dimensions());
        }
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mean = &report["mean"];
    let get = |k: &str| {
        mean[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {report}"))
    };
    // Chance is 0.5 for pixel AUROC and about 0.15 for AU-PRO at FPR 0.3 (a random map's
    // PRO curve follows the FPR: the integral of x up to 0.3, divided by 0.3). These are
    // the figures this short schedule separates clearly (about 0.85 and 0.55 here). The
    // image AUROC rests on 4 good and 6 defective images per category, which is too few
    // to bound reliably; it must only be present.
    assert!(get("pixel_auroc") > 0.75, "{report}");
    assert!(get("au_pro") > 0.3, "{report}");
    assert!((0.0..=1.0).contains(&get("image_auroc")), "{report}");
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        2 + categories.len()
    );
}
