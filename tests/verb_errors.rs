//! The verbs' errors as a newcomer meets them: run from an empty folder, every input is
//! checked before any work and every problem reported at once, each cause said once,
//! with where model files were looked for and the command that fetches them.

mod common;

use std::path::Path;
use std::process::Output;

const LITE0: &str = "efficientnet-lite0-57934424.pth";

/// `cdo-inspect <args>` run in `dir`, with no `CDO_MODELS_DIR` unless given.
fn cdo_in(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = common::cdo_command();
    c.args(args).current_dir(dir).env_remove("CDO_MODELS_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

/// Exit 1, and no OS error said twice in a row (an error type that both prints its cause
/// and returns it as its source).
#[track_caller]
fn assert_failed_once(out: &Output) -> String {
    let text = common::output_text(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in text.lines() {
        let mut causes: Vec<&str> = line.split("(os error ").collect();
        causes.pop();
        for pair in causes.windows(2) {
            let tail = |s: &str| s.rsplit(": ").next().unwrap_or("").to_string();
            assert_ne!(tail(pair[0]), tail(pair[1]), "a cause said twice:\n{line}");
        }
    }
    text
}

#[test]
fn train_in_an_empty_folder_reports_missing_data_and_weights_together() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cdo_in(tmp.path(), &[], &["train", "--data", "nothere", "--out", "bundle"]);
    let text = assert_failed_once(&out);
    // Both problems, in one run.
    assert!(text.contains("2 problems"), "{text}");
    let cwd = tmp.path().canonicalize().unwrap();
    assert!(
        text.contains("--data nothere: no such folder") && text.contains(&format!("{}", cwd.join("nothere").display())),
        "{text}"
    );
    // Where it looked for the weights and how that folder was chosen ...
    let models = cwd.join("models");
    assert!(text.contains(&format!("models/{LITE0}")), "{text}");
    assert!(text.contains(&models.display().to_string()), "{text}");
    assert!(text.contains("the default, ./models in the current directory"), "{text}");
    assert!(text.contains("--models-dir") && text.contains("CDO_MODELS_DIR"), "{text}");
    // ... and the command that fetches them, into that folder.
    assert!(text.contains(&format!("models/fetch.sh {}", models.display())), "{text}");
    // The OS error once: for the weights file that was opened.
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn the_models_folder_says_how_it_was_chosen() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("weights");
    std::fs::create_dir_all(&empty).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..2 {
        image::RgbImage::new(8, 8).save(data.join(format!("{i}.png"))).unwrap();
    }
    let d = data.display().to_string();
    let e = empty.display().to_string();
    let out = cdo_in(tmp.path(), &[("CDO_MODELS_DIR", &empty)], &["train", "--data", &d, "--out", "b"]);
    let text = assert_failed_once(&out);
    assert!(text.contains(&format!("{e} (from $CDO_MODELS_DIR")), "{text}");
    let out = cdo_in(tmp.path(), &[], &["train", "--data", &d, "--out", "b", "--models-dir", &e]);
    let text = assert_failed_once(&out);
    assert!(text.contains(&format!("{e} (given by --models-dir)")), "{text}");
    // A torchvision backbone: which file to put where.
    let out = cdo_in(tmp.path(), &[], &["train", "--data", &d, "--out", "b", "--models-dir", &e, "--backbone", "resnet18"]);
    let text = assert_failed_once(&out);
    assert!(
        text.contains(&format!("download torchvision's resnet18-f37072fd.pth (https://download.pytorch.org/models/resnet18-f37072fd.pth) into {e}")),
        "{text}"
    );
}

#[test]
fn infer_and_eval_report_every_bad_input_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let maps = file.join("maps").display().to_string();
    let out = cdo_in(tmp.path(), &[], &["infer", "--model", "nobundle", "--out", &maps, "missing.png"]);
    let text = assert_failed_once(&out);
    assert!(text.contains("3 problems"), "{text}");
    assert!(text.contains("--model: nobundle is not a model bundle"), "{text}");
    assert!(text.contains("image missing.png: No such file or directory"), "{text}");
    assert!(text.contains(&format!("--out: cannot create {maps}: {} is a file", file.display())), "{text}");

    let json = file.join("r.json").display().to_string();
    let out = cdo_in(tmp.path(), &[], &["eval", "--data", "nodata", "--train", "--json", &json]);
    let text = assert_failed_once(&out);
    assert!(text.contains("3 problems"), "{text}");
    assert!(text.contains("--data: dataset root nodata does not exist"), "{text}");
    assert!(text.contains(&format!("models/fetch.sh {}", tmp.path().canonicalize().unwrap().join("models").display())), "{text}");
    assert!(text.contains(&format!("--json {json}: ")), "{text}");
}

/// `eval --train` takes `train`'s geometry flags, checked by the same rules; a `--model`
/// bundle inspects with its own geometry, so the flags are refused there.
#[test]
fn eval_checks_the_geometry_flags_as_train_does() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cdo_in(tmp.path(), &[], &["eval", "--data", "nodata", "--train", "--overlap", "16"]);
    let text = assert_failed_once(&out);
    assert!(text.contains("train.overlap: applies to tiles only: set tile too"), "{text}");
    let out = cdo_in(tmp.path(), &[], &["train", "--data", "nodata", "--out", "b", "--overlap", "16"]);
    let text = assert_failed_once(&out);
    assert!(text.contains("train.overlap: applies to tiles only: set tile too"), "{text}");

    let out = cdo_in(
        tmp.path(),
        &[],
        &["eval", "--data", "nodata", "--model", "bundle", "--category", "c", "--tile", "128", "--scale", "2"],
    );
    let text = assert_failed_once(&out);
    assert!(
        text.contains("--tile, --scale set the geometry of the bundles --train and --ablation train; --model bundle inspects with the geometry it was trained with"),
        "{text}"
    );
}

/// A damaged weights file: the checkpoint reader's message, the cause said once.
#[test]
fn a_damaged_expert_file_is_named_with_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..2 {
        image::RgbImage::new(8, 8).save(data.join(format!("{i}.png"))).unwrap();
    }
    let expert = tmp.path().join(LITE0);
    std::fs::write(&expert, b"not weights").unwrap();
    let d = data.display().to_string();
    let m = tmp.path().display().to_string();
    let out = cdo_in(tmp.path(), &[], &["train", "--data", &d, "--out", "b", "--models-dir", &m]);
    let text = assert_failed_once(&out);
    assert_eq!(text.matches(&expert.display().to_string()).count(), 1, "{text}");
}
