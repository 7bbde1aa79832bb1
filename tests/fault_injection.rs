//! Fault injection through the real binary, one test per class of fault in the README's
//! "What the station guarantees": every part triggered before a `kill -9` is recorded at
//! the next start, ids continue across restarts, each record names the model, station
//! file and software; a full or removed records disk raises the fault output, rejects
//! every part and recovers by itself; a dead stage exits non-zero with the fault raised;
//! outside text cannot forge a log line or bloat a record; a second daemon on the same
//! station is refused; a bundle or station value outside its limits never starts a
//! station nor reaches a running one through SIGHUP.
//!
//! The model is a tiny one trained here in a second (its verdicts do not matter).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{records, signal, station_log, wait_exit, wait_for, whole_records};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CRASH_REASON: &str = "station stopped before this part's verdict (crash?)";

struct Model {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    good: Vec<PathBuf>,
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (data, bundle) = common::sample_bundle(
            dir.path(),
            &["--tile", "64", "--train-good", "8", "--test-good", "3", "--test-defect", "1", "--seed", "3"],
            "[train]\nimage_size = 64\nepochs = 2\nholdout_fraction = 0.25\nseed = 5\n",
        );
        let good = cdo_inspect::imageio::list_images(&data.join("test/good")).unwrap();
        Model { _dir: dir, bundle, good }
    })
}

/// `root/line/` with the model's good tiles as `NNNN_good.png`.
fn good_line(root: &Path, n: usize) {
    let line = root.join("line");
    std::fs::create_dir_all(&line).unwrap();
    let m = model();
    for i in 0..n {
        std::fs::copy(&m.good[i % m.good.len()], line.join(format!("{:04}_good.png", i + 1))).unwrap();
    }
}

/// Writes `root/station.toml`: replay camera over `line/`, replay trigger at `rate_hz`,
/// simulated GPIO with ready and fault outputs, and `extra`.
fn station_file(root: &Path, name: &str, looping: bool, rate_hz: u32, delay_ms: u32, extra: &str) -> PathBuf {
    let text = format!(
        r#"[station]
name = "{name}"
[model]
bundle = "{bundle}"
models_dir = "{models}"
[camera]
source = "replay"
timeout_ms = 200
[camera.replay]
folder = "line"
loop = {looping}
[trigger]
mode = "replay"
rate_hz = {rate_hz}
[reject]
line = "gpiochip0:22"
delay_ms = {delay_ms}
pulse_ms = 20
[gpio]
backend = "simulated"
edge_log = "edges.jsonl"
[outputs.ready]
line = "gpiochip0:23"
[outputs.fault]
line = "gpiochip0:24"
{extra}
"#,
        bundle = model().bundle.display(),
        models = common::models_dir().display(),
    );
    let path = root.join("station.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path, env: &[(&str, &str)]) -> Child {
    let dir = config.parent().unwrap();
    common::cdo_verb("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap()
}

fn ids(recs: &[Value]) -> Vec<u64> {
    recs.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

/// The logical states an output went through, in order.
fn states(dir: &Path, role: &str) -> Vec<bool> {
    cdo_inspect::station::sim_gpio::read_edge_log(&dir.join("edges.jsonl"))
        .unwrap_or_default()
        .iter()
        .filter(|e| e.role == role)
        .map(|e| e.asserted)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Sorted ids are 1..=n, each once: parts = records.
#[track_caller]
fn assert_every_id_once(recs: &[Value]) {
    let mut v = ids(recs);
    v.sort();
    assert_eq!(v, (1..=v.len() as u64).collect::<Vec<_>>(), "ids are not 1..=n, each once");
}

#[test]
fn a_killed_station_leaves_no_part_uncounted_and_ids_continue_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    good_line(dir, 3);
    // A long reject delay keeps a dozen parts in flight at any time.
    let config = station_file(dir, "line 7", true, 10, 1500, "");
    let first_sha = sha256_hex(&std::fs::read(&config).unwrap());
    let mut child = start(&config, &[]);
    wait_for("three records", dir, Duration::from_secs(60), || records(dir).len() >= 3);
    child.kill().unwrap(); // kill -9
    child.wait().unwrap();
    // The lines written before the kill (a line cut by it would be removed at the start).
    let before: Vec<Value> = std::fs::read_to_string(dir.join("records/parts.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let journal = std::fs::read_to_string(dir.join("records/inflight.jsonl")).unwrap();
    let journalled = journal.lines().filter(|l| l.starts_with(r#"{"id":"#)).count();
    assert!(journalled > before.len(), "parts in flight at the kill are journalled:\n{journal}");
    let first_log = station_log(dir);

    // Start again, replaying the line once: the parts left in flight get their records
    // first, then the ids go on.
    let config = station_file(dir, "line 7", false, 10, 200, "");
    let second_sha = sha256_hex(&std::fs::read(&config).unwrap());
    let mut child = start(&config, &[]);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(60)), 0, "{}", station_log(dir));
    let log = station_log(dir);
    assert!(log.contains("had no record (crash?)"), "{log}");
    let recs = whole_records(dir);
    assert_every_id_once(&recs);
    let crashed: Vec<&Value> = recs.iter().filter(|r| r["reason"] == CRASH_REASON).collect();
    assert!(!crashed.is_empty(), "{recs:?}");
    let max_first = ids(&before).into_iter().chain(ids(&crashed.iter().map(|r| (*r).clone()).collect::<Vec<_>>())).max().unwrap();
    let second_run: Vec<u64> = recs[before.len() + crashed.len()..].iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(second_run, (max_first + 1..=max_first + 3).collect::<Vec<_>>(), "ids continue after the crash");
    for r in &crashed {
        assert_eq!((r["verdict"].as_str(), r["fail_safe"].as_bool()), (Some("reject"), Some(true)), "{r}");
        assert!(r["pulse"].is_null(), "no pulse went out for it: {r}");
        // Named with the run that triggered it.
        assert_eq!(r["station_sha256"], first_sha.as_str(), "{r}");
    }

    // Every record names the model (sha256sum of model.toml then the weights), the
    // station file in effect and the software; so does each start-up log line.
    let bundle = &model().bundle;
    let mut bytes = std::fs::read(bundle.join("model.toml")).unwrap();
    bytes.extend(std::fs::read(bundle.join("apprentice.safetensors")).unwrap());
    let model_sha = sha256_hex(&bytes);
    for r in &recs {
        assert_eq!(r["model_sha256"], model_sha.as_str(), "{r}");
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"), "{r}");
    }
    for r in &recs[before.len() + crashed.len()..] {
        assert_eq!(r["station_sha256"], second_sha.as_str(), "{r}");
    }
    for (log, sha) in [(&first_log, &first_sha), (&log, &second_sha)] {
        let line = log.lines().find(|l| l.contains("station line 7:")).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains(&model_sha) && line.contains(sha.as_str()), "{line}");
        assert!(line.contains(&format!("cdo-inspect {}", env!("CARGO_PKG_VERSION"))), "{line}");
    }
}

/// A tmpfs mounted on a folder for the test's length (we run as root); None, with the
/// reason printed, where mounting is not allowed.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                eprintln!("skipped: cannot mount a tmpfs ({})", common::stderr(&o).trim());
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` with one file, until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&block[..1]);
    path
}

#[test]
fn a_full_records_disk_rejects_every_part_with_the_fault_raised_and_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(_mount) = Tmpfs::mount(&dir.join("records"), "256k") else { return };
    good_line(dir, 3);
    let config = station_file(dir, "full disk", true, 20, 300, "");
    let mut child = start(&config, &[]);
    wait_for("three records", dir, Duration::from_secs(60), || records(dir).len() >= 3);
    let filler = fill(&dir.join("records"));
    wait_for("the records fault", dir, Duration::from_secs(10), || {
        station_log(dir).contains("rejecting every part fail-safe and keeping the records in memory")
    });
    wait_for("the fault output", dir, Duration::from_secs(5), || states(dir, "fault") == [true]);
    // Parts go on being inspected and rejected meanwhile (the actuator needs no disk).
    let rejects = |dir: &Path| states(dir, "reject").iter().filter(|&&a| a).count();
    let rejects_then = rejects(dir);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(rejects(dir) >= rejects_then + 10, "rejects kept firing: {} then {}", rejects_then, rejects(dir));
    assert_eq!(states(dir, "ready"), [true, false], "ready dropped while records fail");
    std::fs::remove_file(&filler).unwrap();
    wait_for("recovery", dir, Duration::from_secs(10), || station_log(dir).contains("records: writable again"));
    let n = records(dir).len();
    wait_for("records after the recovery", dir, Duration::from_secs(10), || records(dir).len() >= n + 3);
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(20)), 0, "{}", station_log(dir));

    let log = station_log(dir);
    // Logged once per change, not per part.
    assert_eq!(log.matches("rejecting every part fail-safe and keeping the records").count(), 1, "{log}");
    assert_eq!(log.matches("records: writable again").count(), 1, "{log}");
    assert_eq!(states(dir, "fault"), [true, false]);
    assert_eq!(states(dir, "ready"), [true, false, true, false]);
    // No torn line, every part once, and the parts of the outage rejected with the reason.
    let recs = whole_records(dir);
    assert_every_id_once(&recs);
    let outage: Vec<&Value> =
        recs.iter().filter(|r| r["reason"].as_str().is_some_and(|s| s.contains("records cannot be written"))).collect();
    assert!(outage.len() >= 10, "{} parts rejected for the records: {log}", outage.len());
    for r in &outage {
        assert_eq!((r["verdict"].as_str(), r["fail_safe"].as_bool()), (Some("reject"), Some(true)), "{r}");
        assert!(r["reason"].as_str().unwrap().contains("No space left on device"), "{r}");
    }
}

#[test]
fn a_removed_records_folder_is_noticed_and_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    good_line(dir, 2);
    let config = station_file(dir, "removed", true, 20, 100, "");
    let mut child = start(&config, &[]);
    wait_for("two records", dir, Duration::from_secs(60), || records(dir).len() >= 2);
    std::fs::remove_dir_all(dir.join("records")).unwrap();
    wait_for("records in a new file", dir, Duration::from_secs(10), || records(dir).len() >= 3);
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(20)), 0, "{}", station_log(dir));
    let log = station_log(dir);
    assert!(log.contains("parts.jsonl was removed or replaced"), "{log}");
    assert!(dir.join("records/inflight.jsonl").is_file());
    // The new file goes on where the old one stopped: ids ascending, none twice.
    let v = ids(&whole_records(dir));
    assert!(v.windows(2).all(|w| w[0] < w[1]) && v[0] > 1, "{v:?}");
}

#[test]
fn a_panicking_stage_exits_non_zero_with_the_fault_raised_and_its_parts_are_counted() {
    for stage in ["recorder", "infer"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        good_line(dir, 3);
        let config = station_file(dir, "panics", true, 10, 300, "");
        let mut child = start(&config, &[("CDO_INJECT_PANIC", &format!("{stage}:3"))]);
        let code = wait_exit(&mut child, dir, Duration::from_secs(60));
        let log = station_log(dir);
        assert_ne!(code, 0, "{log}");
        assert!(log.contains(&format!("stage {stage} panicked: injected fault")), "{log}");
        assert_eq!(states(dir, "fault").last(), Some(&true), "{stage}: the fault output is left raised");
        assert_eq!(states(dir, "ready").last(), Some(&false));
        // The next start accounts for every part of the failed run.
        let config = station_file(dir, "panics", false, 10, 200, "");
        let mut child = start(&config, &[]);
        assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(60)), 0, "{}", station_log(dir));
        assert_every_id_once(&whole_records(dir));
    }
}

#[test]
fn outside_text_cannot_forge_a_log_line_or_bloat_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let line = dir.join("line");
    std::fs::create_dir_all(&line).unwrap();
    let good = &model().good[0];
    // Replayed file names with a newline and a terminal escape, one of them corrupt.
    let forged = "0001_good\n[2099-01-01T00:00:00.000Z ERROR cdo_inspect] forged.png";
    std::fs::copy(good, line.join(forged)).unwrap();
    let corrupt = "0002_corrupt\u{1b}[2J\r.png";
    std::fs::write(line.join(corrupt), b"not a png").unwrap();
    let long_name = format!("0003_{}.png", "x".repeat(240));
    std::fs::copy(good, line.join(&long_name)).unwrap();
    let config = station_file(dir, "line 1", false, 10, 200, "");
    let mut child = start(&config, &[]);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(60)), 0, "{}", station_log(dir));
    let log = station_log(dir);
    assert!(!log.lines().any(|l| l.starts_with("[2099")), "a forged log line:\n{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log:?}");
    assert!(log.contains(r"0002_corrupt\u{1b}[2J\r.png"), "{log}");
    let recs = whole_records(dir);
    assert_eq!(recs.len(), 3);
    // Records keep the origin (JSON escapes it), the corrupt frame's included.
    assert_eq!(recs[0]["origin"], forged);
    assert_eq!(recs[1]["origin"], corrupt);
    assert!(recs[1]["reason"].as_str().unwrap().contains("corrupt frame"), "{}", recs[1]);

    // A station name with a newline and a megabyte name: escaped in the log and capped
    // in the records (or refused by the station file's checks, which is as good).
    for name in ["evil\\n[2099-01-01T00:00:00.000Z ERROR cdo_inspect] forged".to_string(), "n".repeat(1 << 20)] {
        let sub = dir.join(format!("named{}", name.len()));
        std::fs::create_dir_all(sub.join("line")).unwrap();
        std::fs::copy(good, sub.join("line/0001_good.png")).unwrap();
        let config = station_file(&sub, &name, false, 10, 200, "");
        let mut child = start(&config, &[]);
        let code = wait_exit(&mut child, &sub, Duration::from_secs(60));
        let log = station_log(&sub);
        assert!(!log.lines().any(|l| l.starts_with("[2099")), "a forged log line:\n{log}");
        assert!(log.len() < 100_000, "the name bloats the log: {} bytes", log.len());
        if code != 0 {
            assert!(log.contains("station.name"), "{log}");
            continue;
        }
        let recs = records(&sub);
        assert_eq!(recs.len(), 1);
        assert!(recs[0]["station"].as_str().unwrap().chars().count() <= 256, "{}", recs[0]["station"]);
    }
}

#[test]
fn a_second_daemon_on_the_same_station_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    good_line(dir, 4);
    let config = station_file(dir, "lock", true, 5, 100, "");
    let mut first = start(&config, &[]);
    wait_for("the first station's records", dir, Duration::from_secs(60), || !records(dir).is_empty());
    let second = common::cdo_verb("run").arg("--config").arg(&config).output().unwrap();
    let text = common::stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("is in use by another cdo-inspect (PID {})", first.id())),
        "{text}"
    );
    // The refused one wrote nothing: every record is the first station's, each id once.
    signal(&first, libc::SIGTERM);
    assert_eq!(wait_exit(&mut first, dir, Duration::from_secs(30)), 0, "{}", station_log(dir));
    let recs = whole_records(dir);
    assert_every_id_once(&recs);
    assert!(recs.iter().all(|r| r["station"] == "lock"));
}

/// A copy of the test model whose `model.toml` has `key = value` in place of its line.
fn edited_bundle(root: &Path, key: &str, value: &str) -> PathBuf {
    let bundle = root.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    for entry in std::fs::read_dir(&model().bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bundle.join(entry.file_name())).unwrap();
    }
    let meta = bundle.join("model.toml");
    let text = std::fs::read_to_string(&meta).unwrap();
    let prefix = format!("{key} = ");
    let mut replaced = 0;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                replaced += 1;
                format!("{prefix}{value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "{key} in {text}");
    std::fs::write(&meta, edited.join("\n")).unwrap();
    bundle
}

#[test]
fn a_bundle_value_outside_its_limits_starts_no_station_and_inspects_nothing() {
    for (key, value, message) in [
        ("threshold", "nan", "calibration.threshold: must be a finite anomaly score in [0, 2]"),
        ("threshold", "1e30", "calibration.threshold: must be a finite anomaly score in [0, 2]"),
        ("input_size", "100000", "input_size"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        good_line(dir, 2);
        let bundle = edited_bundle(dir, key, value);
        let config = station_file(dir, "bad-bundle", false, 5, 100, "");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(&format!("bundle = \"{}\"", model().bundle.display()), &format!("bundle = \"{}\"", bundle.display()));
        std::fs::write(&config, text).unwrap();
        let what = format!("{key} = {value}");

        let check = common::cdo_verb("check-config").arg(&config).output().unwrap();
        assert_eq!(check.status.code(), Some(1), "{what}: {}", common::output_text(&check));
        assert!(common::stdout(&check).contains(message), "{what}: {}", common::stdout(&check));

        let mut run = start(&config, &[]);
        assert_eq!(wait_exit(&mut run, dir, Duration::from_secs(60)), 1, "{what}: {}", station_log(dir));
        assert!(station_log(dir).contains(message), "{what}: {}", station_log(dir));
        assert!(whole_records(dir).is_empty(), "{what}: a part was inspected");

        let infer = common::cdo_verb("infer")
            .arg("--model")
            .arg(&bundle)
            .arg(&model().good[0])
            .env("CDO_MODELS_DIR", common::models_dir())
            .output()
            .unwrap();
        assert_ne!(infer.status.code(), Some(0), "{what}: {}", common::output_text(&infer));
        assert!(common::stderr(&infer).contains(message), "{what}: {}", common::stderr(&infer));
    }
}

#[test]
fn timing_values_outside_their_limits_are_refused_at_start_and_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    good_line(dir, 4);
    // A reject delay no line has (2^63 - 1 ms): no pulse would ever fire.
    let config = station_file(dir, "timing", true, 5, 100, "");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("delay_ms = 100", "delay_ms = 9223372036854775807")).unwrap();
    let check = common::cdo_verb("check-config").arg(&config).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(common::stdout(&check).contains("reject.delay_ms: must be <= 60000"), "{}", common::stdout(&check));
    let mut run = start(&config, &[]);
    assert_eq!(wait_exit(&mut run, dir, Duration::from_secs(30)), 1, "{}", station_log(dir));
    assert!(whole_records(dir).is_empty());

    // A running station offered a trigger rate of 1e-300 Hz by SIGHUP keeps its own.
    std::fs::write(&config, &good).unwrap();
    let mut run = start(&config, &[]);
    wait_for("records", dir, Duration::from_secs(60), || records(dir).len() >= 2);
    std::fs::write(&config, good.replace("rate_hz = 5", "rate_hz = 1e-300")).unwrap();
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGHUP) }, 0);
    wait_for("the refused reload", dir, Duration::from_secs(30), || station_log(dir).contains("trigger.rate_hz"));
    let before = records(dir).len();
    wait_for("parts after the refused reload", dir, Duration::from_secs(30), || records(dir).len() >= before + 3);
    signal(&run, libc::SIGTERM);
    assert_eq!(wait_exit(&mut run, dir, Duration::from_secs(30)), 0, "{}", station_log(dir));
    assert_every_id_once(&whole_records(dir));
}
