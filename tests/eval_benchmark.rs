//! The benchmark mode end to end, through the real binary: a two-category MVTec AD-layout
//! dataset built at test time from real texture photographs (defects painted into the test
//! images, masks beside them), `eval --train` with a short schedule, maps exported in the
//! official layout, and the JSON/CSV results.

mod common;

use std::fs;

use cdo_inspect::eval::dataset::{list_categories, load_category, load_mask, DatasetLayout};
use cdo_inspect::imageio::{load_rgb, read_f32_tiff};
use cdo_inspect::sample_data::{build_benchmark_dataset, SampleSpec};

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
        .env("CDO_MODELS_DIR", common::models_dir())
        .output()
        .unwrap();
    let text = common::output_text(&out);
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

/// The real photographs fetched by `scripts/fetch-sample-images.sh`.
#[test]
fn benchmark_dataset_from_real_photographs_reads_back() {
    let images = common::root().join("testdata/images");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let spec = SampleSpec {
        tile: 64,
        train_good: 6,
        test_good: 3,
        test_defect: 2,
        seed: 5,
    };
    let names = build_benchmark_dataset(&images, &out, &spec).unwrap_or_else(|e| {
        panic!("{e} (run scripts/fetch-sample-images.sh first)");
    });
    assert_eq!(names, ["grass", "gravel"]);
    assert_eq!(list_categories(&out).unwrap(), names);
    for name in &names {
        let c = load_category(&out, name).unwrap();
        assert_eq!(c.layout, DatasetLayout::MvtecAd);
        assert_eq!(c.train.len(), spec.train_good);
        assert_eq!(c.test.len(), spec.test_good + 3 * spec.test_defect);
        let defects: Vec<&str> = c.test.iter().map(|s| s.defect.as_str()).collect();
        assert_eq!(
            defects,
            [
                "good",
                "good",
                "good",
                "contamination",
                "contamination",
                "scratch",
                "scratch",
                "spot",
                "spot"
            ]
        );
        for s in &c.test {
            let m = load_mask(s, spec.tile, spec.tile).unwrap();
            let n = m.iter().filter(|&&v| v).count();
            assert_eq!(s.is_good(), n == 0, "{}", s.image.display());
        }
    }
    // Same inputs, same files.
    let again = dir.path().join("again");
    build_benchmark_dataset(&images, &again, &spec).unwrap();
    for name in &names {
        for s in load_category(&out, name).unwrap().test {
            let rel = s.image.strip_prefix(&out).unwrap();
            assert_eq!(
                fs::read(&s.image).unwrap(),
                fs::read(again.join(rel)).unwrap()
            );
        }
    }

    // A missing photograph is reported before anything is written.
    let empty = dir.path().join("no-images");
    fs::create_dir_all(&empty).unwrap();
    let e = build_benchmark_dataset(&empty, &dir.path().join("x"), &spec).unwrap_err();
    assert!(e.to_string().contains("grass.png"), "{e}");
    assert!(!dir.path().join("x").exists());
}
