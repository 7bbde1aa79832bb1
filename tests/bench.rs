//! `cdo-inspect bench` through the real binary, with tiny iteration counts: the JSON holds
//! every stage with a positive, finite time. Speed itself is never asserted.

mod common;

fn bench(args: &[&str]) -> std::process::Output {
    common::cdo_verb("bench")
        .args(args)
        .env("CDO_MODELS_DIR", common::models_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

fn positive(v: &serde_json::Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

#[test]
fn json_has_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let photo = common::photo_path("chelsea.png");
    let o = bench(&[
        "--size",
        "64",
        "--batch",
        "2",
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--train-iterations",
        "1",
        "--image",
        photo.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = common::stdout(&o);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["backbone"], "efficientnet-lite0");
    assert_eq!(r["input_size"], 64);
    for (run, batch) in [("batch1", 1), ("batch_n", 2)] {
        assert_eq!(r[run]["batch"], batch);
        let stages = r[run]["stages"].as_array().unwrap();
        let names: Vec<&str> = stages
            .iter()
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        assert_eq!(names, cdo_inspect::bench::STAGES);
        for s in stages {
            for key in ["median_ms", "p99_ms"] {
                positive(&s[key], &format!("{run} {} {key}", s["stage"]));
            }
            assert_eq!(s["samples"], 2);
        }
        let e2e = positive(&r[run]["end_to_end"]["median_ms"], "end to end");
        let fps = positive(&r[run]["frames_per_s"], "frames/s");
        assert!((fps - batch as f64 * 1e3 / e2e).abs() < 1e-6 * fps);
    }
    positive(&r["train_step"]["step"]["median_ms"], "training step");
    assert_eq!(r["train_step"]["batch"], 8);
    positive(&r["peak_rss_bytes"], "peak RSS");
    positive(&r["postprocess_share"], "post-processing share");
    // The table for people names every stage too.
    for stage in cdo_inspect::bench::STAGES {
        assert!(out.contains(stage), "{stage} missing from\n{out}");
    }
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let o = bench(&["--device", "cuda", "--iterations", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::output_text(&o));
    assert_eq!(common::stdout(&o), "");
    // main logs the error chain (`log::error!("{e:#}")`) and exits 1: one line,
    // `[<time> ERROR cdo_inspect] <message>`, and nothing else.
    let err = common::stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    let (prefix, message) = lines[0]
        .split_once("] ")
        .unwrap_or_else(|| panic!("not a log line: {err}"));
    assert!(
        prefix.starts_with('[') && prefix.ends_with(" ERROR cdo_inspect"),
        "{err}"
    );
    assert_eq!(
        message,
        "device = cuda, but this binary was built without the `cuda` feature"
    );
}
