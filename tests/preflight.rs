//! `check-config` runs every start-up check of `run` (the model loaded and validated,
//! devices and folders openable or creatable), so its OK means the station will start:
//! a station file that `run` would refuse is refused here, naming the key and the thing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use candle_core::Device;
use cdo_inspect::bundle::WEIGHTS_FILE;
use cdo_inspect::train::{train, TrainConfig, TrainData, TrainJob, TrainOutcome};

/// A real bundle, trained once for all tests here with the smallest settings (64 px, one
/// step on four tiles of a real photograph, one held out to calibrate): the checks read
/// its weights for real, its quality does not matter.
struct Fixture {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    frames: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::create_dir_all(&good).unwrap();
        let photo = common::photo("brick.png");
        for i in 0..4u32 {
            let tile = image::imageops::crop_imm(&photo, 64 * i, 0, 64, 64).to_image();
            tile.save(good.join(format!("{i}.png"))).unwrap();
        }
        let bundle = dir.path().join("bundle");
        let job = TrainJob {
            data: TrainData::Folder(good.clone()),
            out: bundle.clone(),
            config: TrainConfig {
                epochs: 1,
                image_size: 64,
                batch_size: 4,
                holdout_fraction: 0.25,
                ..Default::default()
            },
            models_dir: common::models_dir(),
            restart: false,
            device: Device::Cpu,
        };
        let outcome = train(&job, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert!(matches!(outcome, TrainOutcome::Finished { calibration: Some(_), .. }));
        Fixture {
            _dir: dir,
            bundle,
            frames: good,
        }
    })
}

/// The `[model]`, `[records]` and `[camera]`/`[gpio]` lines of a station that would start:
/// the fixture's bundle, the real expert's folder, a replay camera, simulated GPIO.
struct Station {
    bundle: PathBuf,
    models_dir: PathBuf,
    device: &'static str,
    records: PathBuf,
    hardware: String,
}

impl Station {
    fn good(root: &Path) -> Self {
        let f = fixture();
        Station {
            bundle: f.bundle.clone(),
            models_dir: common::models_dir(),
            device: "cpu",
            records: root.join("records"),
            hardware: format!(
                "[camera]\nsource = \"replay\"\n[camera.replay]\nfolder = \"{}\"\n\
                 [trigger]\nmode = \"replay\"\n[gpio]\nbackend = \"simulated\"\n",
                f.frames.display()
            ),
        }
    }

    fn write(&self, root: &Path) -> PathBuf {
        let text = format!(
            "[station]\nname = \"preflight\"\n\
             [model]\nbundle = \"{}\"\nmodels_dir = \"{}\"\ndevice = \"{}\"\n\
             {}\
             [reject]\nline = \"cdo-test-no-such-chip:20\"\n\
             [records]\ndir = \"{}\"\n\
             [archive]\ndir = \"{}\"\n",
            self.bundle.display(),
            self.models_dir.display(),
            self.device,
            self.hardware,
            self.records.display(),
            root.join("archive").display(),
        );
        let path = root.join("station.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn check_config(station: &Path) -> Output {
    common::cdo_verb("check-config")
        .arg(station)
        .env_remove("CDO_MODELS_DIR")
        .output()
        .expect("binary runs")
}

/// Refused: exit 1, every expected `(key, text)` on one line of its own that names the
/// station file, and nothing else reported.
#[track_caller]
fn assert_refused(out: &Output, station: &Path, expected: &[(&str, &str)]) {
    let text = common::output_text(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let stdout = common::stdout(out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (key, what) in expected {
        let prefix = format!("{}", station.display());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(&format!(": {key}: ")) && l.contains(what)),
            "no line with {key} and `{what}`:\n{text}"
        );
    }
    assert!(!text.contains(": OK"), "{text}");
    assert!(common::stderr(out).contains("the station would not start"), "{text}");
}

#[test]
fn a_station_that_will_start_is_ok() {
    let tmp = tempfile::tempdir().unwrap();
    let station = Station::good(tmp.path()).write(tmp.path());
    let out = check_config(&station);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", common::output_text(&out));
    assert!(text.starts_with(&format!("{}: OK\n", station.display())), "{text}");
    // The summary reads the bundle's calibrated threshold.
    assert!(
        text.contains("efficientnet-lite0, threshold ") && text.contains(" (bundle calibration)"),
        "{text}"
    );
    // The records folder was created (and its probe removed), as `run` creates it.
    let records = tmp.path().join("records");
    assert!(records.is_dir());
    assert_eq!(std::fs::read_dir(&records).unwrap().count(), 0);
}

/// A copy of the fixture's bundle in `root` with its apprentice weights cut in half.
fn truncated_bundle(root: &Path) -> PathBuf {
    let bundle = root.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    for entry in std::fs::read_dir(&fixture().bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bundle.join(entry.file_name())).unwrap();
    }
    let weights = bundle.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    bundle
}

/// A copy of the fixture's bundle whose `model.toml` records a region of interest of
/// `side` px square at (8, 8).
fn bundle_with_roi(root: &Path, side: u32) -> PathBuf {
    let bundle = root.join(format!("bundle-roi-{side}"));
    std::fs::create_dir_all(&bundle).unwrap();
    for entry in std::fs::read_dir(&fixture().bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bundle.join(entry.file_name())).unwrap();
    }
    let meta = bundle.join("model.toml");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(!text.contains("[geometry]"));
    std::fs::write(&meta, format!("{text}\n[geometry.roi]\nx = 8\ny = 8\nw = {side}\nh = {side}\n")).unwrap();
    bundle
}

#[test]
fn a_bundle_with_a_region_of_interest_runs_on_frames_that_hold_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Station::good(tmp.path());
    s.bundle = bundle_with_roi(tmp.path(), 48);
    let station = s.write(tmp.path());
    let out = check_config(&station);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", common::output_text(&out));
    assert!(text.contains("  inspect  the region 48x48 at (8, 8) resized to 64x64, 8 tiles per batch\n"), "{text}");
    assert!(text.contains("  align    off\n"), "{text}");
}

#[test]
fn frames_smaller_than_the_bundle_s_region_of_interest_are_refused_naming_both_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Station::good(tmp.path());
    s.bundle = bundle_with_roi(tmp.path(), 60);
    let station = s.write(tmp.path());
    // The replayed frames are 64x64: a 60 px ROI at (8, 8) needs 68x68.
    assert_refused(
        &check_config(&station),
        &station,
        &[("camera.replay.folder", "frame 64x64 is smaller than the bundle's region of interest 60x60 at (8, 8) (it needs a frame of at least 68x68)")],
    );
}

#[test]
fn alignment_without_a_reference_frame_in_the_bundle_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Station::good(tmp.path());
    s.hardware.push_str("[alignment]\nenabled = true\n");
    let station = s.write(tmp.path());
    assert_refused(&check_config(&station), &station, &[("alignment.enabled", "has no reference frame")]);
}

#[test]
fn truncated_apprentice_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Station::good(tmp.path());
    s.bundle = truncated_bundle(tmp.path());
    let station = s.write(tmp.path());
    assert_refused(&check_config(&station), &station, &[("model.bundle", WEIGHTS_FILE)]);
}

#[test]
fn an_expert_missing_from_the_models_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("models");
    std::fs::create_dir_all(&empty).unwrap();
    let mut s = Station::good(tmp.path());
    s.models_dir = empty.clone();
    let station = s.write(tmp.path());
    let out = check_config(&station);
    assert_refused(&out, &station, &[("model.models_dir", "efficientnet-lite0-57934424.pth")]);
    // Where it looked, and how to get the file there.
    let text = common::stdout(&out);
    assert!(text.contains(&format!("{} (given by model.models_dir)", empty.display())), "{text}");
    assert!(text.contains(&format!("models/fetch.sh {}", empty.display())), "{text}");
}

#[test]
fn cuda_on_a_cpu_only_build_is_refused() {
    if candle_core::utils::cuda_is_available() {
        return; // a CUDA build: cuda is a valid choice there
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Station::good(tmp.path());
    s.device = "cuda";
    let station = s.write(tmp.path());
    assert_refused(
        &check_config(&station),
        &station,
        &[("model.device", "built without the `cuda` feature")],
    );
}

#[test]
fn a_records_folder_that_cannot_be_created_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let mut s = Station::good(tmp.path());
    s.records = file.join("records");
    let station = s.write(tmp.path());
    assert_refused(
        &check_config(&station),
        &station,
        &[("records.dir", &format!("{} is a file, not a folder", file.display()))],
    );
}

/// Every problem in one run, not just the first: the model's (the expert missing does not
/// hide the damaged bundle), the camera's, the GPIO's and the folders'.
#[test]
fn every_problem_is_reported_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let mut s = Station::good(tmp.path());
    s.bundle = truncated_bundle(tmp.path());
    s.models_dir = tmp.path().to_path_buf();
    s.records = file.join("records");
    s.hardware = "[camera]\nsource = \"v4l2\"\ndevice = \"/dev/cdo-test-no-such-camera\"\n\
                  [gpio]\nbackend = \"cdev\"\n"
        .into();
    let station = s.write(tmp.path());
    let camera = if cfg!(feature = "camera") {
        ("camera.device", "/dev/cdo-test-no-such-camera does not exist")
    } else {
        ("camera.source", "without the `camera` feature")
    };
    assert_refused(
        &check_config(&station),
        &station,
        &[
            ("model.models_dir", "efficientnet-lite0-57934424.pth"),
            ("model.bundle", WEIGHTS_FILE),
            camera,
            ("reject.line", "no gpiochip named or labelled `cdo-test-no-such-chip`"),
            ("records.dir", "is a file, not a folder"),
        ],
    );
}
