//! The real binary, as a technician runs it: help on every verb, sample data, a short
//! training run, and `infer` writing maps and overlays, with a corrupt image among the
//! inputs and a folder that is not a bundle.

mod common;

use std::path::Path;
use std::process::Output;

use cdo_inspect::imageio::{load_rgb, read_f32_tiff};

fn cdo(args: &[&str]) -> Output {
    common::cdo_command()
        .args(args)
        .env("CDO_MODELS_DIR", common::lite0_weights().parent().unwrap())
        .env("RUST_LOG", "info")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_verb_has_help() {
    for verb in [
        &["--help"][..],
        &["train", "--help"],
        &["infer", "--help"],
        &["sample-data", "--help"],
        &["bench", "--help"],
    ] {
        let o = cdo(verb);
        assert!(o.status.success(), "{verb:?}: {}", text(&o));
        assert!(text(&o).contains("Usage"), "{verb:?}: {}", text(&o));
    }
    let o = cdo(&["--version"]);
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn train_then_infer_writes_maps_and_reports_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p).display().to_string();
    let texture = common::photo_path("gravel.png").display().to_string();
    let o = cdo(&[
        "sample-data",
        "--texture",
        &texture,
        "--out",
        &t("data"),
        "--train-good",
        "8",
        "--test-good",
        "2",
        "--test-defect",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    std::fs::write(
        tmp.path().join("train.toml"),
        "[train]\nimage_size = 64\nholdout_fraction = 0.25\n",
    )
    .unwrap();
    let o = cdo(&[
        "train",
        "--data",
        &t("data/train/good"),
        "--out",
        &t("bundle"),
        "--epochs",
        "1",
        "--config",
        &t("train.toml"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("model bundle written to"), "{}", text(&o));

    // A corrupt file among good ones: it is named, the others are still inspected.
    std::fs::write(
        tmp.path().join("broken.png"),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR truncated",
    )
    .unwrap();
    let good = t("data/test/good/000.png");
    let scratch = t("scratch.png");
    std::fs::copy(t("data/test/scratch/000.png"), &scratch).unwrap();
    // Two inputs with one stem would overwrite each other's maps: refused up front.
    let o = cdo(&[
        "infer",
        "--model",
        &t("bundle"),
        "--out",
        &t("maps"),
        &good,
        &t("data/test/scratch/000.png"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("share the name `000`"), "{}", text(&o));
    let o = cdo(&[
        "infer",
        "--model",
        &t("bundle"),
        "--out",
        &t("maps"),
        &good,
        &t("broken.png"),
        &scratch,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("broken.png") && out.contains("ERROR"), "{out}");
    assert!(
        out.contains("3 images: ") && out.contains("1 errors"),
        "{out}"
    );

    // Maps at the source image's size, overlays beside them.
    for (stem, src) in [("000", &good), ("scratch", &scratch)] {
        let (map, w, h) = read_f32_tiff(&tmp.path().join(format!("maps/{stem}.tiff"))).unwrap();
        let src = load_rgb(Path::new(src)).unwrap();
        assert_eq!((w, h), src.dimensions());
        assert!(map.iter().all(|v| v.is_finite() && *v >= 0.0));
        let overlay = load_rgb(&tmp.path().join(format!("maps/{stem}_overlay.png"))).unwrap();
        assert_eq!(overlay.dimensions(), src.dimensions());
    }

    // A threshold override decides the verdicts.
    let o = cdo(&["infer", "--model", &t("bundle"), "--threshold", "0", &good]);
    assert!(
        o.status.success() && text(&o).contains("REJECT"),
        "{}",
        text(&o)
    );

    // Not a bundle.
    let o = cdo(&["infer", "--model", &t("data"), &good]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a model bundle"), "{}", text(&o));
}
