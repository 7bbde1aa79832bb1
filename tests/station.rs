//! The station daemon end to end: the real binary, a real trained model, the replay
//! camera over real image files and the simulated GPIO, whose edge log is the evidence
//! for pulse timing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{records, signal, station_log, wait_exit, wait_for, whole_records};
use serde_json::Value;

/// Pulse start tolerance: the edge must come within this of trigger + delay. Generous
/// for a shared CI machine; the measured figures are in the records (`late_us`).
const TOLERANCE_US: i64 = 30_000;

/// A station folder: `line/` holds the given images as `NNNN_<kind>.png`.
fn line_folder(root: &Path, parts: &[(&Path, &str)]) -> PathBuf {
    let line = root.join("line");
    std::fs::create_dir_all(&line).unwrap();
    for (i, (src, kind)) in parts.iter().enumerate() {
        std::fs::copy(src, line.join(format!("{:04}_{kind}.png", i + 1))).unwrap();
    }
    line
}

/// Writes `station.toml` in `root`: the fixture's model, the replay camera, simulated
/// GPIO with `gpio_extra` keys, and the `extra` sections.
fn station_file(root: &Path, gpio_extra: &str, extra: &str) -> PathBuf {
    let f = common::line_model();
    let text = format!(
        r#"[station]
name = "test"
[model]
bundle = "{bundle}"
models_dir = "{models}"
[camera]
source = "replay"
timeout_ms = 200
reconnect_initial_ms = 100
reconnect_max_ms = 200
[gpio]
backend = "simulated"
edge_log = "edges.jsonl"
{gpio_extra}
[outputs.ready]
line = "gpiochip0:23"
{extra}
"#,
        bundle = f.bundle.display(),
        models = common::models_dir().display(),
    );
    let path = root.join("station.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path) -> Child {
    start_with(config, &[])
}

fn start_with(config: &Path, env: &[(&str, String)]) -> Child {
    let dir = config.parent().unwrap();
    common::cdo_verb("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap()
}

fn edges(dir: &Path) -> Vec<cdo_inspect::station::sim_gpio::EdgeRecord> {
    cdo_inspect::station::sim_gpio::read_edge_log(&dir.join("edges.jsonl")).unwrap()
}

fn verdicts_by_kind(recs: &[Value]) -> Vec<(String, String)> {
    recs.iter()
        .map(|r| {
            let origin = r["origin"].as_str().unwrap_or("-");
            let kind = origin.split_once('_').map_or("-", |(_, k)| k.trim_end_matches(".png"));
            (kind.to_string(), r["verdict"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn every_trigger_is_one_record_and_defects_are_rejected_on_time() {
    let f = common::line_model();
    let tmp = tempfile::tempdir().unwrap();
    let parts: Vec<(&Path, &str)> = vec![
        (&f.good[0], "good"),
        (&f.defects[0], "defect"),
        (&f.good[1], "good"),
        (&f.defects[1], "defect"),
        (&f.good[2], "good"),
        (&f.defects[2], "defect"),
    ];
    line_folder(tmp.path(), &parts);
    let delay_ms = 1500;
    let config = station_file(
        tmp.path(),
        "inject_ms = [500, 1100, 1700, 2300, 2900, 3500]",
        &format!(
            "[camera.replay]\nfolder = \"line\"\n[trigger]\nmode = \"gpio\"\nline = \"sensor\"\n\
             [reject]\nline = \"gpiochip0:22\"\ndelay_ms = {delay_ms}\npulse_ms = 100\n"
        ),
    );

    // Stand in for systemd: a notify socket and a 400 ms watchdog.
    let notify_path = tmp.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut child = start_with(
        &config,
        &[
            ("NOTIFY_SOCKET", notify_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".to_string()),
        ],
    );
    let mut messages: Vec<String> = Vec::new();
    let drain_notify = |messages: &mut Vec<String>| {
        let mut buf = [0u8; 512];
        while let Ok(n) = notify.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    // Stop while the last part is still in flight: it must be drained, not lost.
    wait_for("five records", tmp.path(), Duration::from_secs(120), || records(tmp.path()).len() >= 5);
    drain_notify(&mut messages);
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, tmp.path(), Duration::from_secs(20)), 0, "{}", station_log(tmp.path()));
    drain_notify(&mut messages);
    let first = |m: &str| messages.iter().position(|x| x.starts_with(m));
    assert_eq!(first("READY=1"), Some(0), "{messages:?}");
    assert!(messages.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3, "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("STATUS=parts ")), "{messages:?}");
    assert!(first("STOPPING=1").is_some(), "{messages:?}");

    let recs = whole_records(tmp.path());
    let ids: Vec<u64> = recs.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6], "{}", station_log(tmp.path()));
    // Every part got a real verdict, the station's equals score > threshold, and every
    // defective part was rejected.
    for (r, (kind, verdict)) in recs.iter().zip(verdicts_by_kind(&recs)) {
        assert_eq!(r["fail_safe"], false, "{r}");
        let over = r["score"].as_f64().unwrap() > r["threshold"].as_f64().unwrap();
        assert_eq!(verdict == "reject", over, "{r}");
        if kind == "defect" {
            assert_eq!(verdict, "reject", "{r}");
        }
    }
    // Each reject pulse starts at its trigger edge + delay, within the tolerance.
    let log = edges(tmp.path());
    let triggers: Vec<i64> =
        log.iter().filter(|e| e.role == "trigger" && e.asserted).map(|e| e.t_us as i64).collect();
    let pulses: Vec<i64> =
        log.iter().filter(|e| e.role == "reject" && e.asserted).map(|e| e.t_us as i64).collect();
    assert_eq!(triggers.len(), 6);
    let rejected: Vec<usize> = (0..6).filter(|&i| recs[i]["verdict"] == "reject").collect();
    assert_eq!(pulses.len(), rejected.len(), "{log:?}");
    for (&i, &pulse) in rejected.iter().zip(&pulses) {
        let late = pulse - (triggers[i] + delay_ms * 1000);
        assert!((0..TOLERANCE_US).contains(&late), "part {}: pulse {late} µs after due", i + 1);
    }
    // Ready went high at start and low at shutdown.
    let ready: Vec<bool> = log.iter().filter(|e| e.role == "ready").map(|e| e.asserted).collect();
    assert_eq!(ready, vec![true, false]);
}

/// Runs a replay-triggered station over `parts` until the replay ends; its records.
fn run_replay(root: &Path, parts: &[(&Path, &str)], extra: &str) -> Vec<Value> {
    line_folder(root, parts);
    let config = station_file(root, "", extra);
    let mut child = start(&config);
    let code = wait_exit(&mut child, root, Duration::from_secs(180));
    assert_eq!(code, 0, "{}", station_log(root));
    whole_records(root)
}

#[test]
fn a_corrupt_frame_and_a_stalled_camera_fail_safe_and_the_station_goes_on() {
    let f = common::line_model();
    let tmp = tempfile::tempdir().unwrap();
    let corrupt = tmp.path().join("corrupt.png");
    let bytes = std::fs::read(&f.good[0]).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let mut parts: Vec<(&Path, &str)> = vec![(&f.good[0], "good"), (&corrupt, "corrupt")];
    parts.extend((0..10).map(|i| (f.good[i % f.good.len()].as_path(), "good")));
    // The camera stops delivering after 3 frames for 0.6 s; triggers keep coming at 5 Hz.
    let recs = run_replay(
        tmp.path(),
        &parts,
        "[camera.replay]\nfolder = \"line\"\nstall_after = 3\nstall_ms = 600\n\
         [trigger]\nmode = \"replay\"\nrate_hz = 5\n\
         [reject]\nline = \"gpiochip0:22\"\ndelay_ms = 3000\npulse_ms = 50\n",
    );
    // One record per trigger: one per replayed file.
    assert_eq!(recs.len(), parts.len(), "{}", station_log(tmp.path()));
    let reasons: Vec<&str> = recs.iter().map(|r| r["reason"].as_str().unwrap_or("")).collect();
    assert!(reasons[1].contains("corrupt frame 0002_corrupt.png"), "{reasons:?}");
    let camera_faults = reasons.iter().filter(|r| r.contains("camera")).count();
    assert!(camera_faults >= 1, "{reasons:?}");
    for r in &recs {
        if r["reason"].is_string() {
            assert_eq!((r["verdict"].as_str(), r["fail_safe"].as_bool()), (Some("reject"), Some(true)));
        }
    }
    // After the stall the camera came back and parts were inspected again.
    assert!(station_log(tmp.path()).contains("camera back"), "{}", station_log(tmp.path()));
    assert!(recs.last().unwrap()["score"].is_number(), "{}", recs.last().unwrap());
}

#[test]
fn a_verdict_later_than_its_pulse_is_a_reject_at_the_deadline() {
    let f = common::line_model();
    let tmp = tempfile::tempdir().unwrap();
    let parts: Vec<(&Path, &str)> = vec![(&f.good[0], "good"), (&f.good[1], "good")];
    let recs = run_replay(
        tmp.path(),
        &parts,
        "[camera.replay]\nfolder = \"line\"\n[trigger]\nmode = \"replay\"\nrate_hz = 1\n\
         [reject]\nline = \"gpiochip0:22\"\ndelay_ms = 300\npulse_ms = 50\n\
         [pipeline]\ninject_infer_delay_ms = 800\n",
    );
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r["verdict"], "reject", "{r}");
        assert_eq!(r["fail_safe"], true, "{r}");
        assert!(r["reason"].as_str().unwrap().contains("not ready"), "{r}");
        // The model's own verdict came later and is kept.
        assert_eq!(r["late_verdict"], "pass", "{r}");
    }
    let log = edges(tmp.path());
    assert_eq!(log.iter().filter(|e| e.role == "reject" && e.asserted).count(), 2);
}

#[test]
fn a_full_archive_disk_is_recorded_and_loses_no_part() {
    let f = common::line_model();
    let tmp = tempfile::tempdir().unwrap();
    // A 64 KiB filesystem fills after a frame or two (mounting needs root); without root,
    // a read-only archive folder makes every write fail the same way.
    let archive = tmp.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&archive)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("tmpfs mount refused: using a read-only archive folder instead");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let archive_dir = archive.clone();
    let parts: Vec<(&Path, &str)> = (0..4).map(|i| (f.good[i].as_path(), "good")).collect();
    let result = std::panic::catch_unwind(|| {
        run_replay(
            tmp.path(),
            &parts,
            &format!(
                "[camera.replay]\nfolder = \"line\"\n[trigger]\nmode = \"replay\"\nrate_hz = 4\n\
                 [reject]\nline = \"gpiochip0:22\"\ndelay_ms = 3000\npulse_ms = 50\n\
                 [archive]\ndir = \"{}\"\npass_every = 1\n",
                archive_dir.display()
            ),
        )
    });
    if mounted {
        let _ = Command::new("umount").arg(&archive).status();
    }
    let recs = result.unwrap();
    assert_eq!(recs.len(), 4);
    let failed = recs
        .iter()
        .filter(|r| r["reason"].as_str().is_some_and(|s| s.contains("archive failed")))
        .count();
    assert!(failed >= 1, "{recs:?}");
    // An archive failure does not change the verdict.
    assert!(recs.iter().all(|r| r["score"].is_number()));
}

#[test]
fn sighup_applies_a_good_file_and_keeps_the_running_settings_on_a_bad_one() {
    let f = common::line_model();
    let tmp = tempfile::tempdir().unwrap();
    line_folder(tmp.path(), &[(&f.good[0], "good"), (&f.good[1], "good")]);
    let sections = |threshold: &str| {
        format!(
            "[camera.replay]\nfolder = \"line\"\nloop = true\n[trigger]\nmode = \"replay\"\nrate_hz = 4\n\
             [reject]\nline = \"gpiochip0:22\"\ndelay_ms = 3000\npulse_ms = 50\n[decision]\n{threshold}\n"
        )
    };
    let config = station_file(tmp.path(), "", &sections(""));
    let mut child = start(&config);
    let dir = tmp.path();
    wait_for("a first record", dir, Duration::from_secs(120), || !records(dir).is_empty());
    let calibrated = records(dir)[0]["threshold"].as_f64().unwrap();

    // A bad file: refused, errors logged, the station keeps running on the old settings.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("pulse_ms = 50", "pulse_ms = 0"))
        .unwrap();
    signal(&child, libc::SIGHUP);
    wait_for("the refusal", dir, Duration::from_secs(10), || station_log(dir).contains("reload refused"));
    assert!(station_log(dir).contains("reject.pulse_ms"), "{}", station_log(dir));
    let seen = records(dir).len();
    wait_for("more records", dir, Duration::from_secs(60), || records(dir).len() >= seen + 2);
    assert!(records(dir).iter().all(|r| r["threshold"].as_f64() == Some(calibrated)));

    // A good file with a new threshold (scores lie in [0, 2]; 1.5 is exact in f32):
    // applied from the next part on.
    station_file(tmp.path(), "", &sections("threshold = 1.5"));
    signal(&child, libc::SIGHUP);
    wait_for("the reload", dir, Duration::from_secs(10), || station_log(dir).contains("reloaded"));
    wait_for("a part at the new threshold", dir, Duration::from_secs(60), || {
        records(dir).iter().any(|r| r["threshold"].as_f64() == Some(1.5))
    });
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_exit(&mut child, dir, Duration::from_secs(20)), 0);
    // No part lost across the reloads: ids run without gaps.
    let ids: Vec<u64> = whole_records(dir).iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}

#[test]
fn the_demo_runs_a_whole_station_and_summarises_it() {
    let f = common::line_model();
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    // The fixture's model stands in for the one the demo would train (minutes).
    copy_dir(&f.bundle, &demo.join("model"));
    let out = common::cdo_verb("demo")
        .arg("--dir")
        .arg(&demo)
        .arg("--texture")
        .arg(common::photo_path("brick.png"))
        .arg("--models-dir")
        .arg(common::models_dir())
        .output()
        .unwrap();
    let stdout = common::stdout(&out);
    assert!(out.status.success(), "{stdout}\n{}", common::stderr(&out));
    let line_parts = std::fs::read_dir(demo.join("line")).unwrap().count();
    let recs = whole_records(&demo);
    assert_eq!(recs.len(), line_parts);
    let part_lines = stdout
        .lines()
        .filter(|l| l.strip_prefix("part ").is_some_and(|r| r.trim_start().starts_with(|c: char| c.is_ascii_digit())))
        .count();
    assert_eq!(part_lines, line_parts, "{stdout}");
    assert!(stdout.contains("corrupt-frame"), "{stdout}");
    // The demo turns the operator view on and says where it is.
    assert!(stdout.contains("operator view: http://127.0.0.1:8080/"), "{stdout}");
    assert!(stdout.contains("pulse start after its due time"), "{stdout}");
    assert!(demo.join("gpio-edges.jsonl").is_file());
    assert!(std::fs::read_dir(demo.join("archive")).unwrap().count() > 0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
