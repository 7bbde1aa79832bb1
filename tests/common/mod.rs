//! Shared helpers for the integration tests: where the fetched real files are, and the
//! real binary as a command.
#![allow(dead_code)]

pub mod outside;
pub mod tiny;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The EfficientNet-Lite0 ImageNet weights fetched by models/fetch.sh.
pub fn lite0_weights() -> PathBuf {
    cdo_inspect::platform::threads::tune_allocator();
    let p = root().join("models/efficientnet-lite0-57934424.pth");
    assert!(
        p.is_file(),
        "{} missing: run models/fetch.sh (the test script does)",
        p.display()
    );
    p
}

/// The folder holding the fetched expert weights (what `CDO_MODELS_DIR` points the binary
/// at); checks that the Lite0 file is there.
pub fn models_dir() -> PathBuf {
    lite0_weights().parent().unwrap().to_path_buf()
}

/// A real photograph fetched by scripts/fetch-sample-images.sh.
pub fn photo_path(name: &str) -> PathBuf {
    let p = root().join("testdata/images").join(name);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-sample-images.sh (the test script does)",
        p.display()
    );
    p
}

pub fn photo(name: &str) -> image::RgbImage {
    image::open(photo_path(name))
        .expect("sample photo decodes")
        .to_rgb8()
}

/// The real binary as a `Command`. When the tests run under an emulator (the aarch64
/// build under qemu-user, see scripts/test-arm64.sh), child processes must go through it
/// too: `CDO_TEST_RUNNER` holds that command line (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`).
pub fn cdo_command() -> std::process::Command {
    let bin = env!("CARGO_BIN_EXE_cdo-inspect");
    let runner = std::env::var("CDO_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut c = std::process::Command::new(emulator);
            c.args(words).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

/// The largest |a - b| over all elements, as f32; the shapes must be equal.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "max_abs_diff: shapes differ");
    max_abs(&(a - b).unwrap())
}

/// The largest |x| over all elements, as f32.
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `cdo-inspect <verb> ...`: the real binary (through the emulator where there is one)
/// with the verb as its first argument.
pub fn cdo_verb(verb: &str) -> std::process::Command {
    let mut c = cdo_command();
    c.arg(verb);
    c
}

/// What a run printed on stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a run printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything a run printed: stdout, then stderr (for assertion messages and searches).
pub fn output_text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// The log of a station started by a test, which sends its stderr to `dir/stderr.log`.
pub fn station_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

/// The records of a station started by a test in `dir` (`records/parts.jsonl`), one JSON
/// value per whole line.
///
/// The station appends each record with one `write`, yet a reader polling the file can
/// still catch that write half copied: Linux does not make a read of a regular file
/// atomic against a write. So a last line without its newline is a write in progress,
/// left for the next read, while every whole line must be JSON. Once the station has
/// stopped, [`whole_records`] also refuses that unfinished last line.
pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    parse_records(&read_records(dir))
}

/// [`records`] for a station that has stopped: the file must end with a whole line.
pub fn whole_records(dir: &Path) -> Vec<serde_json::Value> {
    let text = read_records(dir);
    assert!(text.is_empty() || text.ends_with('\n'), "the records end with a torn line: {:?}", text.lines().last());
    parse_records(&text)
}

fn read_records(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("records/parts.jsonl")).unwrap_or_default()
}

/// The whole lines of `text` (up to its last newline) as JSON.
fn parse_records(text: &str) -> Vec<serde_json::Value> {
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn or bad record line ({e}): {l:?}")))
        .collect()
}

/// Polls `done` until it holds; after `timeout`, fails naming `what`, with the log of the
/// station in `dir`.
pub fn wait_for(what: &str, dir: &Path, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(
            t0.elapsed() < timeout,
            "timed out waiting for {what}; log:\n{}",
            station_log(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the station process to exit by itself; its exit code (-1 for a signal).
pub fn wait_exit(child: &mut Child, dir: &Path, timeout: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            panic!("station did not exit; log:\n{}", station_log(dir));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Cuts a sample dataset from the brick photograph into `dir/data` (`sample-data` with
/// `sample_args`) and trains a bundle on its good tiles into `dir/model` through the
/// binary, with `train_toml` as the training file; the data folder and the bundle.
pub fn sample_bundle(dir: &Path, sample_args: &[&str], train_toml: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    let out = cdo_verb("sample-data")
        .arg("--texture")
        .arg(photo_path("brick.png"))
        .arg("--out")
        .arg(&data)
        .args(sample_args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = dir.join("train.toml");
    std::fs::write(&cfg, train_toml).unwrap();
    let bundle = dir.join("model");
    let out = cdo_verb("train")
        .arg("--data")
        .arg(data.join("train/good"))
        .arg("--out")
        .arg(&bundle)
        .arg("--config")
        .arg(&cfg)
        .env("CDO_MODELS_DIR", models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (data, bundle)
}

/// The station tests' line model, trained once per test binary: 40 good 128 px tiles cut
/// from the brick photograph, with good and contaminated test tiles to replay.
pub struct LineModel {
    _dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub good: Vec<PathBuf>,
    /// Contamination: what this small model separates cleanly from good brick
    /// (scratches and spots overlap the good scores at this training size).
    pub defects: Vec<PathBuf>,
}

pub fn line_model() -> &'static LineModel {
    static MODEL: std::sync::OnceLock<LineModel> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (data, bundle) = sample_bundle(
            dir.path(),
            &["--tile", "128", "--train-good", "40", "--test-good", "4", "--test-defect", "3", "--seed", "11"],
            "[train]\nimage_size = 128\nlearning_rate = 3e-3\nepochs = 30\nholdout_fraction = 0.2\nseed = 5\n",
        );
        let list = |kind: &str| cdo_inspect::imageio::list_images(&data.join("test").join(kind)).unwrap();
        LineModel { bundle, good: list("good"), defects: list("contamination"), _dir: dir }
    })
}

/// Trains a bundle in-process into `out` from the good images in the folder `data`, on the
/// CPU with the fetched expert, uninterrupted.
pub fn train_folder(data: &Path, out: &Path, config: cdo_inspect::train::TrainConfig) -> cdo_inspect::train::TrainOutcome {
    use cdo_inspect::train::{train, TrainData, TrainJob};
    let job = TrainJob {
        data: TrainData::Folder(data.to_path_buf()),
        out: out.to_path_buf(),
        config,
        models_dir: models_dir(),
        restart: false,
        device: candle_core::Device::Cpu,
    };
    train(&job, &std::sync::atomic::AtomicBool::new(false), &mut |_| {}).unwrap()
}
