//! `cdo-inspect check-config` as a technician runs it: every error of a bad station file,
//! one per line with file, line and key, exit 1; a summary and exit 0 for a good one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use cdo_inspect::bundle::{self, BundleMeta, Calibration, TrainingRecord};
use cdo_inspect::model::backbone::BackboneKind;
use cdo_inspect::model::postprocess::ScoreMethod;
use cdo_inspect::train::TrainConfig;
use common::stdout;

fn check_config(args: &[&Path]) -> Output {
    common::cdo_verb("check-config")
        .args(args)
        .output()
        .expect("binary runs")
}

/// A bundle folder that `Bundle::load_meta` accepts: real metadata, placeholder weights
/// (check-config reads only the metadata).
fn write_bundle(dir: &Path, threshold_scores: &[f32]) {
    std::fs::create_dir_all(dir).unwrap();
    let meta = BundleMeta {
        format_version: bundle::FORMAT_VERSION,
        created: "2026-12-01T12:00:00Z".into(),
        backbone: BackboneKind::EfficientNetLite0,
        expert_file: "efficientnet-lite0-57934424.pth".into(),
        expert_sha256: "0".repeat(64),
        input_size: 256,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        smoothing_sigma: 4.0,
        score: ScoreMethod::Max,
        calibration: Calibration::from_scores(threshold_scores),
        training: TrainingRecord {
            config: TrainConfig::default(),
            images_used: 10,
            images_skipped: 0,
            images_held_out: 2,
            steps: 100,
            final_loss: 0.1,
            seconds: 1.0,
        },
        geometry: Default::default(),
        upsampling: Default::default(),
    };
    std::fs::write(dir.join(bundle::META_FILE), toml::to_string(&meta).unwrap()).unwrap();
    std::fs::write(dir.join(bundle::WEIGHTS_FILE), b"").unwrap();
}

fn station_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("station.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_good_station_file_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(&dir.path().join("models/current"), &[0.5, 0.5]);
    let path = station_file(
        dir.path(),
        "[station]\nname = \"line3-bumper\"\n[model]\nbundle = \"models/current\"\n\
         [trigger]\nmode = \"gpio\"\nline = \"gpiochip0:17\"\n\
         [reject]\nline = \"gpiochip0:20\"\ndelay_ms = 250\n",
    );
    // A file written for the line's machine, checked elsewhere: the file alone.
    let out = check_config(&[Path::new("--skip-files"), &path]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with(&format!("{}: OK\n", path.display())),
        "{text}"
    );
    assert!(text.contains("station  line3-bumper"), "{text}");
    assert!(
        text.contains("models/current (threshold: the bundle's, not read with --skip-files) on cpu"),
        "{text}"
    );
    assert!(
        text.contains("camera   /dev/video0 1280x960 mjpeg @ 30 fps"),
        "{text}"
    );
    assert!(
        text.contains("trigger  part sensor on gpiochip0:17"),
        "{text}"
    );
    assert!(
        text.contains("reject   gpiochip0:20, 250 ms after the trigger, 100 ms pulse"),
        "{text}"
    );

    // On this machine (no camera, no GPIO chip, and a bundle trained against another
    // expert file) the same station would not start: every reason, at its key's line.
    let out = check_config(&[&path]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let f = path.display();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with(&format!("{f}:3: model.models_dir: expert weights "))
            && lines[0].contains("but the bundle ")
            && lines[0].ends_with("use the same expert file (or retrain)"),
        "{text}"
    );
    assert!(lines[1].starts_with(&format!("{f}: camera.device: /dev/video0 does not exist")), "{text}");
    assert!(lines[2].starts_with(&format!("{f}:9: reject.line: no gpiochip named or labelled `gpiochip0`")), "{text}");
    assert!(lines[3].starts_with(&format!("{f}:7: trigger.line: no gpiochip named or labelled `gpiochip0`")), "{text}");
    assert!(
        common::stderr(&out).contains("4 problems: the station would not start"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn every_error_is_printed_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = station_file(
        dir.path(),
        "[model]\nbundle = \"nowhere\"\n[trigger]\nmode = \"gpio\"\n\
         [reject]\nline = \"gpiochip0:20\"\npulse_ms = 0\ndelay = 300\n",
    );
    let out = check_config(&[&path]);
    let f = path.display();
    let nowhere = dir.path().join("nowhere");
    let expected = format!(
        "{f}:2: model.bundle: {} is not a model bundle (no model.toml); train one with `cdo-inspect train`\n\
         {f}:4: trigger.line: required when trigger.mode = \"gpio\" (the part sensor's input)\n\
         {f}:7: reject.pulse_ms: must be > 0 ms (got 0)\n\
         {f}:8: reject.delay: unknown key; did you mean `delay_ms`?\n",
        nowhere.display()
    );
    assert_eq!(stdout(&out), expected);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("4 errors"));
}

#[test]
fn a_syntax_error_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = station_file(dir.path(), "[model]\nbundle = \"b\"\n\n[reject\n");
    let out = check_config(&[&path]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let prefix = format!("{}:4: TOML syntax error: ", path.display());
    assert!(text.starts_with(&prefix), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn the_shipped_example_checks_when_its_files_are_not_looked_for() {
    let example = common::root().join("config/station.example.toml");
    let skip = Path::new("--skip-files");
    let out = check_config(&[&example, skip]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Checked for real, its bundle (not installed here) is the one error.
    let out = check_config(&[&example]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(": model.bundle: /var/lib/cdo-inspect/models/current is not a model bundle")
    );
}

#[test]
fn a_missing_station_file_is_reported() {
    let out = check_config(&[Path::new("/nonexistent/station.toml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("/nonexistent/station.toml: cannot read the station file"));
}

/// The outside interfaces: a web server for the network needs a token, an inline MQTT
/// password a file others cannot read; once both are right, the summary names them.
#[test]
fn check_config_refuses_an_open_web_server_and_a_readable_mqtt_password() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let base = "[model]\nbundle = \"b\"\n[reject]\nline = \"gpiochip0:20\"\n";
    let path = station_file(
        dir.path(),
        &format!("{base}[web]\nlisten = \"0.0.0.0:8080\"\n[mqtt]\nhost = \"broker\"\nusername = \"st1\"\npassword = \"s3cret\"\n"),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let skip = Path::new("--skip-files");
    let out = check_config(&[skip, &path]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let f = path.display();
    assert!(text.contains(&format!("{f}:6: web.listen: 0.0.0.0:8080 is reachable from other machines: set reset_token")), "{text}");
    assert!(text.contains(&format!("{f}:10: mqtt.password: given inline in a file everybody on this machine can read (mode 644)")), "{text}");
    assert!(!text.contains("s3cret"), "the password is never printed: {text}");

    std::fs::write(
        &path,
        format!("{base}[web]\nlisten = \"0.0.0.0:8080\"\nreset_token = \"0123456789abcdef0123\"\n[mqtt]\nhost = \"broker\"\nusername = \"st1\"\npassword = \"s3cret\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = check_config(&[skip, &path]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("web      http://0.0.0.0:8080/ and /metrics (counter reset with the token)"), "{text}");
    assert!(text.contains("mqtt     broker:1883, cdo-inspect/station/parts and cdo-inspect/station/state, QoS 1"), "{text}");
}
