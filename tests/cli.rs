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
        .env("CDO_MODELS_DIR", common::models_dir())
        .env("RUST_LOG", "info")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

/// `cdo-inspect <args>` that must succeed and print only on stdout (help, version).
fn help(args: &[&str]) -> String {
    let o = common::cdo_command()
        .args(args)
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    assert_eq!(common::stderr(&o), "", "{args:?}");
    common::stdout(&o)
}

/// Whether `help` names `flag` as a flag of its own (`--out` in `--out <OUT>`, not in
/// `--out-dir` or in prose such as "(--out)").
fn names_flag(help: &str, flag: &str) -> bool {
    help.split_whitespace()
        .any(|w| w == flag || w.strip_suffix(',') == Some(flag))
}

/// Every verb: its exact usage line and the flags its help must name (the key ones of
/// `src/commands/*.rs`; the runtime flags for the verbs that load a model).
const VERBS: &[(&str, &str, &[&str])] = &[
    (
        "run",
        "cdo-inspect run --config <CONFIG>",
        &["-c", "--config"],
    ),
    (
        "demo",
        "cdo-inspect demo [OPTIONS]",
        &["--dir", "--texture", "--models-dir"],
    ),
    (
        "train",
        "cdo-inspect train [OPTIONS] --data <DATA> --out <OUT>",
        &[
            "--data",
            "--out",
            "--restart",
            "--config",
            "--epochs",
            "--backbone",
            "--expert",
            "--batch-size",
            "--seed",
            "--gamma",
            "--no-mom",
            "--no-oom",
            "--models-dir",
            "--device",
            "--tile",
            "--overlap",
            "--roi",
            "--scale",
            "--mask",
        ],
    ),
    (
        "infer",
        "cdo-inspect infer [OPTIONS] --model <MODEL> <IMAGES>...",
        &[
            "--model",
            "--out",
            "--threshold",
            "--expert",
            "--models-dir",
            "--device",
        ],
    ),
    (
        "eval",
        "cdo-inspect eval [OPTIONS] --data <DATA>",
        &[
            "--data",
            "--model",
            "--category",
            "--train",
            "--ablation",
            "--categories",
            "--models-out",
            "--maps-out",
            "--json",
            "--csv",
            "--config",
            "--epochs",
            "--backbone",
            "--no-mom",
            "--no-oom",
            "--device",
            "--tile",
            "--overlap",
            "--roi",
            "--scale",
            "--mask",
        ],
    ),
    (
        "sample-data",
        "cdo-inspect sample-data [OPTIONS] --texture <TEXTURE> --out <OUT>",
        &[
            "--texture",
            "--out",
            "--tile",
            "--train-good",
            "--test-good",
            "--test-defect",
            "--seed",
            "--frame",
            "--jitter",
        ],
    ),
    (
        "check-config",
        "cdo-inspect check-config [OPTIONS] <FILE>",
        &["--skip-files"],
    ),
    (
        "bench",
        "cdo-inspect bench [OPTIONS]",
        &[
            "--model",
            "--backbone",
            "--size",
            "--batch",
            "--iterations",
            "--warmup",
            "--train-iterations",
            "--image",
            "--expert",
            "--models-dir",
            "--device",
            "--json",
        ],
    ),
];

#[test]
fn every_verb_has_help_naming_its_flags() {
    // The top-level help lists every verb, each with the one-line summary its own help
    // starts with.
    let top = help(&["--help"]);
    assert!(top.contains("Usage: cdo-inspect <COMMAND>"), "{top}");
    let listed: Vec<&str> = top
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut want: Vec<&str> = VERBS.iter().map(|(v, _, _)| *v).collect();
    want.push("help");
    assert_eq!(listed, want, "{top}");

    for (verb, usage, flags) in VERBS {
        let h = help(&[verb, "--help"]);
        let summary = h.lines().next().unwrap();
        let line = top
            .lines()
            .find(|l| l.split_whitespace().next() == Some(verb))
            .unwrap();
        assert_eq!(
            line.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" "),
            summary
        );
        let got_usage = h.lines().find_map(|l| l.strip_prefix("Usage: "));
        assert_eq!(got_usage, Some(*usage), "{verb}:\n{h}");
        for flag in *flags {
            assert!(
                names_flag(&h, flag),
                "`{verb} --help` does not name {flag}:\n{h}"
            );
        }
        assert!(names_flag(&h, "--help"), "{verb}:\n{h}");
        // The device choice says what it can be.
        if flags.contains(&"--device") {
            assert!(h.contains("[possible values: cpu, cuda]"), "{verb}:\n{h}");
        }
    }

    // The defaults shown are the library's.
    let h = help(&["sample-data", "--help"]);
    let spec = cdo_inspect::sample_data::SampleSpec::default();
    for (flag, value) in [
        ("--tile", spec.tile.to_string()),
        ("--train-good", spec.train_good.to_string()),
        ("--test-good", spec.test_good.to_string()),
        ("--test-defect", spec.test_defect.to_string()),
        ("--seed", spec.seed.to_string()),
    ] {
        let line = h
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("{flag} missing:\n{h}"));
        assert!(line.ends_with(&format!("[default: {value}]")), "{line}");
    }

    assert_eq!(
        help(&["--version"]),
        format!("cdo-inspect {}\n", env!("CARGO_PKG_VERSION"))
    );
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
