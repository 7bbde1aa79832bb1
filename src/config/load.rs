//! Reading the station file: TOML (parsed with spans, so every message has a line) into a
//! [`StationConfig`]. Every problem is collected, not just the first: a technician fixing
//! a file on a ladder should see all of them in one run.
//!
//! The entry points are here. Each section has one small function in `super::sections`
//! that reads its keys with the typed getters of `super::reader`. A getter records an
//! error and returns `None` for a bad value, so the section falls back to its default and
//! reading goes on; the result is returned only when nothing was recorded.

use std::path::Path;

use toml_edit::{ImDocument, TableLike};

use super::reader::{ConfigError, ConfigErrors, Reader, Section};
use super::schema::*;
use super::sections::{SECTIONS, TABLES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Check that the model bundle, expert file, models folder and replay folder exist.
    /// Off only to check a file written for another machine (or the shipped example).
    pub check_files: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { check_files: true }
    }
}

/// Reads and validates a station file, checking that the files it names exist.
pub fn load(path: &Path) -> Result<StationConfig, ConfigErrors> {
    load_with(path, LoadOptions::default())
}

pub fn load_with(path: &Path, options: LoadOptions) -> Result<StationConfig, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&text, path, options),
        Err(e) => Err(ConfigErrors {
            errors: vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("cannot read the station file: {e}"),
            }],
        }),
    }
}

/// Validates station-file text; `path` names it in messages, and relative paths in it are
/// resolved against its folder. Checks that the files it names exist.
pub fn parse(text: &str, path: &Path) -> Result<StationConfig, ConfigErrors> {
    parse_with(text, path, LoadOptions::default())
}

pub fn parse_with(
    text: &str,
    path: &Path,
    options: LoadOptions,
) -> Result<StationConfig, ConfigErrors> {
    let mut r = Reader::new(text, path, options.check_files, TABLES);
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().and_then(|s| r.line_at(s.start));
            // The message may span lines ("invalid key\nexpected ..."): keep one line each.
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            r.push(String::new(), line, format!("TOML syntax error: {message}"));
            return Err(r.finish_errors());
        }
    };
    let root = Section {
        name: "",
        table: Some(doc.as_table() as &dyn TableLike),
        line: None,
    };
    r.unknown_keys(&root, SECTIONS);
    let config = station_config(&mut r, &root);
    r.duplicate_lines();
    if r.errors.is_empty() {
        Ok(config)
    } else {
        Err(r.finish_errors())
    }
}

/// Every section, each falling back to its defaults where it has errors.
fn station_config(r: &mut Reader, root: &Section) -> StationConfig {
    let station = r.station(root);
    let model = r.model(root);
    let camera = r.camera(root);
    let light = r.light(root);
    let trigger = r.trigger(root, camera.source);
    let decision = r.decision(root, &camera);
    let alignment = r.alignment(root);
    let gpio = r.gpio(root);
    let outputs = r.outputs(root);
    let records = r.records(root);
    let archive = r.archive(root);
    let logging = r.logging(root);
    let pipeline = r.pipeline(root);
    let web = r.web(root);
    let mqtt = r.mqtt(root, &station.name);
    StationConfig {
        station,
        model,
        camera,
        light,
        trigger,
        decision,
        alignment,
        gpio,
        outputs,
        records,
        archive,
        logging,
        pipeline,
        web,
        mqtt,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::reader::MIB;
    use crate::config::testing::{assert_cases, Expected, BASE, NO_FILES};
    use crate::config::LineSpec;
    use crate::platform::device::DeviceChoice;

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "a syntax error is one error with its line",
                format!("{BASE}[camera\nwidth = 0\n"),
                &[(Some(5), "", "TOML syntax error")],
            ),
        ];
        assert_cases(cases);
    }

    #[test]
    fn files_named_must_exist_when_checked() {
        let dir = tempfile::tempdir().unwrap();
        let station = dir.path().join("station.toml");
        let text = "[model]\nbundle = \"bundle\"\nexpert = \"expert.pth\"\n\
                    [reject]\nline = \"gpiochip0:20\"\n\
                    [camera]\nsource = \"replay\"\n[camera.replay]\nfolder = \"frames\"\n";
        let got = parse(text, &station).unwrap_err().errors;
        let bundle = dir.path().join("bundle");
        let shown: Vec<String> = got.iter().map(|e| e.to_string()).collect();
        assert_eq!(got.len(), 3, "{shown:#?}");
        assert_eq!(
            (got[0].line, got[0].key.as_str()),
            (Some(2), "model.bundle")
        );
        // Bundle::load_meta's own message, passed through.
        let not_a_bundle = format!("{} is not a model bundle (no model.toml)", bundle.display());
        assert!(got[0].message.starts_with(&not_a_bundle), "{shown:#?}");
        assert_eq!(
            (got[1].line, got[1].key.as_str()),
            (Some(3), "model.expert")
        );
        assert!(got[1].message.starts_with("no such file: "), "{shown:#?}");
        assert_eq!(
            (got[2].line, got[2].key.as_str()),
            (Some(9), "camera.replay.folder")
        );
        assert!(got[2].message.starts_with("no such folder: "), "{shown:#?}");
        // The same file is fine when files are not checked.
        assert!(parse_with(text, &station, NO_FILES).is_ok());
    }

    #[test]
    fn a_missing_station_file_is_one_error() {
        let got = load(Path::new("/nonexistent/station.toml"))
            .unwrap_err()
            .errors;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].line, got[0].key.as_str()), (None, ""));
        assert!(got[0].message.starts_with("cannot read the station file"));
    }

    /// A file with only the required keys: every other setting is its documented default,
    /// and relative paths hang off the station file's folder.
    #[test]
    fn defaults_fill_in() {
        let path = Path::new("/etc/cdo-inspect/station.toml");
        let got = parse_with(BASE, path, NO_FILES).unwrap();
        let ms = Duration::from_millis;
        let expected = StationConfig {
            station: StationInfo {
                name: "station".into(),
            },
            model: ModelConfig {
                bundle: "/etc/cdo-inspect/bundle".into(),
                expert: None,
                models_dir: None,
                device: DeviceChoice::Cpu,
                batch: 8,
            },
            camera: CameraConfig {
                source: CameraSource::V4l2,
                device: "/dev/video0".into(),
                width: 1280,
                height: 960,
                fps: 30,
                format: "mjpeg".into(),
                exposure_us: None,
                gain: None,
                white_balance_k: None,
                timeout: ms(2000),
                reconnect_initial: ms(500),
                reconnect_max: ms(30_000),
                replay: ReplayConfig {
                    folder: PathBuf::new(),
                    looping: false,
                    stall_after: None,
                    stall_for: Duration::ZERO,
                },
            },
            light: LightConfig {
                mode: LightMode::None,
                output: None,
                settle: ms(5),
            },
            trigger: TriggerConfig {
                mode: TriggerMode::FreeRun,
                input: None,
                rate_hz: 2.0,
            },
            decision: DecisionConfig {
                threshold: None,
                min_area: None,
                pixel_threshold: None,
            },
            alignment: AlignmentConfig {
                enabled: false,
                min_confidence: 0.5,
                max_shift_px: 64,
            },
            gpio: GpioConfig {
                backend: GpioBackend::Cdev,
                edge_log: None,
                inject_ms: vec![],
            },
            outputs: OutputsConfig {
                reject: OutputLine {
                    line: LineSpec::ChipOffset {
                        chip: "gpiochip0".into(),
                        offset: 20,
                    },
                    active_low: false,
                },
                reject_delay: ms(300),
                reject_pulse: ms(100),
                pass: None,
                pass_pulse: ms(50),
                ready: None,
                fault: None,
            },
            records: RecordsConfig {
                dir: "/etc/cdo-inspect/records".into(),
                max_bytes: 64 * MIB,
                keep: 10,
            },
            archive: ArchiveConfig {
                dir: "/etc/cdo-inspect/archive".into(),
                rejects: true,
                pass_every: 0,
                max_files: 5000,
                max_bytes: 2048 * MIB,
            },
            logging: LoggingConfig {
                level: "info".into(),
                counters_every: Duration::from_secs(60),
            },
            pipeline: PipelineConfig {
                queue_depth: 4,
                drain_timeout: ms(10_000),
                stall_timeout: ms(5000),
                inject_infer_delay: Duration::ZERO,
            },
            web: None,
            mqtt: None,
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn a_full_station_file_parses_into_its_values() {
        let text = r#"
[station]
name = "line3-bumper"
[model]
bundle = "/models/current"
expert = "weights/lite0.pth"
device = "cuda"
[camera]
source = "replay"
exposure_us = 800
gain = -2
[camera.replay]
folder = "frames"
loop = true
stall_after = 10
stall_ms = 3000
[light]
mode = "strobe"
line = "PQ.05"
active_low = true
settle_ms = 2
[trigger]
mode = "replay"
rate_hz = 5
[decision]
threshold = 0.4
min_area_mm2 = 0.5
mm_per_px = 0.05
[gpio]
backend = "simulated"
edge_log = "edges.log"
inject_ms = [100, 600]
[reject]
line = "gpiochip1:3"
delay_ms = 0
pulse_ms = 40
[outputs.pass]
line = "gpiochip1:4"
pulse_ms = 20
[outputs]
fault = { line = "gpiochip1:5", active_low = true }
[logging]
level = "warn,cdo_inspect=debug"
"#;
        let c = parse_with(text, Path::new("/srv/st/station.toml"), NO_FILES).unwrap();
        assert_eq!(c.station.name, "line3-bumper");
        assert_eq!(c.model.bundle, PathBuf::from("/models/current"));
        assert_eq!(
            c.model.expert,
            Some(PathBuf::from("/srv/st/weights/lite0.pth"))
        );
        assert_eq!(c.model.device, DeviceChoice::Cuda);
        assert_eq!(c.camera.source, CameraSource::Replay);
        assert_eq!((c.camera.exposure_us, c.camera.gain), (Some(800), Some(-2)));
        let replay = &c.camera.replay;
        assert_eq!(replay.folder, PathBuf::from("/srv/st/frames"));
        assert!(replay.looping);
        assert_eq!(
            (replay.stall_after, replay.stall_for),
            (Some(10), Duration::from_secs(3))
        );
        let light = c.light.output.as_ref().unwrap();
        assert_eq!(
            (c.light.mode, light.line.clone()),
            (LightMode::Strobe, LineSpec::Name("PQ.05".into()))
        );
        assert!(light.active_low);
        assert_eq!(c.light.settle, Duration::from_millis(2));
        assert_eq!(
            (c.trigger.mode, c.trigger.rate_hz),
            (TriggerMode::Replay, 5.0)
        );
        assert_eq!(c.decision.threshold, Some(0.4));
        assert_eq!(
            c.decision.min_area,
            Some(MinArea::SquareMillimetres {
                mm2: 0.5,
                mm_per_px: 0.05
            })
        );
        assert_eq!(c.gpio.backend, GpioBackend::Simulated);
        assert_eq!(c.gpio.edge_log, Some(PathBuf::from("/srv/st/edges.log")));
        assert_eq!(c.gpio.inject_ms, vec![100, 600]);
        let o = &c.outputs;
        assert_eq!(o.reject.line.to_string(), "gpiochip1:3");
        assert_eq!(
            (o.reject_delay, o.reject_pulse),
            (Duration::ZERO, Duration::from_millis(40))
        );
        assert_eq!(o.pass.as_ref().unwrap().line.to_string(), "gpiochip1:4");
        assert_eq!(o.pass_pulse, Duration::from_millis(20));
        assert!(o.ready.is_none());
        let fault = o.fault.as_ref().unwrap();
        assert_eq!(
            (fault.line.to_string(), fault.active_low),
            ("gpiochip1:5".into(), true)
        );
        assert_eq!(c.logging.level, "warn,cdo_inspect=debug");
    }

    /// The shipped example parses, and every value it shows uncommented is the default
    /// (its comments say so) except the keys a package must set.
    #[test]
    fn the_example_station_file_parses_and_shows_the_defaults() {
        let text = include_str!("../../config/station.example.toml");
        let path = Path::new("/etc/cdo-inspect/station.toml");
        let example = parse_with(text, path, NO_FILES).unwrap_or_else(|e| panic!("{e}"));
        let mut defaults = parse_with(BASE, path, NO_FILES).unwrap();
        defaults.model.bundle = "/var/lib/cdo-inspect/models/current".into();
        defaults.records.dir = "/var/lib/cdo-inspect/records".into();
        defaults.archive.dir = "/var/lib/cdo-inspect/archive".into();
        assert_eq!(example, defaults);
    }

    /// Every number of the station file and its limits: (table, key, lowest, highest,
    /// just below, just above, other keys the value needs, after it in its table).
    const LIMITS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
        ("camera", "width", "16", "8192", "15", "8193", ""),
        ("camera", "height", "16", "8192", "15", "8193", ""),
        ("camera", "fps", "1", "1000", "0", "1001", ""),
        ("camera", "exposure_us", "1", "1000000", "0", "1000001", ""),
        ("camera", "gain", "-2147483648", "2147483647", "-2147483649", "2147483648", ""),
        ("camera", "white_balance_k", "1000", "15000", "999", "15001", ""),
        ("camera", "timeout_ms", "10", "60000", "9", "60001", ""),
        ("camera", "reconnect_initial_ms", "10", "60000", "9", "60001", "reconnect_max_ms = 300000\n"),
        ("camera", "reconnect_max_ms", "10", "300000", "9", "300001", "reconnect_initial_ms = 10\n"),
        ("camera.replay", "stall_after", "0", "1000000000", "-1", "1000000001", ""),
        ("camera.replay", "stall_ms", "0", "300000", "-1", "300001", ""),
        ("light", "settle_ms", "0", "1000", "-1", "1001", ""),
        ("trigger", "debounce_ms", "0", "1000", "-1", "1001", ""),
        ("trigger", "rate_hz", "0.01", "1000", "0.0099", "1000.1", ""),
        ("decision", "threshold", "0", "2", "-0.001", "2.001", ""),
        ("decision", "pixel_threshold", "0", "2", "-0.001", "2.001", ""),
        ("decision", "min_area_px", "1", "67108864", "0", "67108865", "[camera]\nwidth = 8192\nheight = 8192\n"),
        ("decision", "min_area_mm2", "0.000001", "1000000", "0.0000009", "1000000.1", "mm_per_px = 10\n"),
        ("decision", "mm_per_px", "0.001", "10", "0.0009", "10.001", ""),
        ("model", "batch", "1", "64", "0", "65", ""),
        ("alignment", "min_confidence", "0", "1", "-0.001", "1.001", ""),
        ("alignment", "max_shift_px", "1", "4096", "0", "4097", ""),
        ("gpio", "inject_ms", "0", "3600000", "-1", "3600001", "backend = \"simulated\"\n"),
        ("reject", "delay_ms", "0", "60000", "-1", "60001", ""),
        ("reject", "pulse_ms", "1", "10000", "0", "10001", ""),
        ("outputs.pass", "pulse_ms", "1", "10000", "0", "10001", "line = \"gpiochip0:21\"\n"),
        ("records", "max_mib", "1", "4096", "0", "4097", ""),
        ("records", "keep", "0", "1000", "-1", "1001", ""),
        ("archive", "pass_every", "0", "1000000", "-1", "1000001", ""),
        ("archive", "max_files", "1", "1000000", "0", "1000001", ""),
        ("archive", "max_mib", "1", "1048576", "0", "1048577", ""),
        ("logging", "counters_every_s", "1", "86400", "0", "86401", ""),
        ("pipeline", "queue_depth", "1", "256", "0", "257", ""),
        ("pipeline", "drain_timeout_ms", "0", "300000", "-1", "300001", ""),
        ("pipeline", "stall_timeout_ms", "100", "300000", "99", "300001", ""),
        ("pipeline", "inject_infer_delay_ms", "0", "60000", "-1", "60001", ""),
        ("web", "recent_parts", "1", "1000", "0", "1001", ""),
        ("web", "trend_parts", "10", "10000", "9", "10001", ""),
        ("mqtt", "port", "1", "65535", "0", "65536", "host = \"broker\"\n"),
        ("mqtt", "qos", "0", "2", "-1", "3", "host = \"broker\"\n"),
        ("mqtt", "buffer_parts", "1", "1000000", "0", "1000001", "host = \"broker\"\n"),
        ("mqtt", "keep_alive_s", "5", "3600", "4", "3601", "host = \"broker\"\n"),
    ];

    /// A file with `table.key = value` (and what it needs), in the smallest valid file.
    fn with_value(table: &str, key: &str, value: &str, needs: &str) -> String {
        let value = if key == "inject_ms" { format!("[{value}]") } else { value.to_string() };
        // BASE has [model] first.
        if table == "model" {
            return BASE.replacen("[model]\n", &format!("[model]\n{key} = {value}\n{needs}"), 1);
        }
        // BASE ends in [reject].
        let header = if table == "reject" { String::new() } else { format!("[{table}]\n") };
        format!("{BASE}{header}{key} = {value}\n{needs}")
    }

    /// A key line of the example, set or commented out: `key = value`, `# key = value`.
    fn example_key(line: &str) -> Option<(&str, &str)> {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let (key, value) = line.split_once(" = ")?;
        key.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            .then_some((key, value))
    }

    /// The example's comment for `table.key`: the comment lines above its key line (over
    /// the lines of keys that share one comment).
    fn example_comment(text: &str, table: &str, key: &str) -> Option<String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut current = "";
        let mut at = None;
        for (i, line) in lines.iter().enumerate() {
            let header = line.strip_prefix("# ").unwrap_or(line);
            if header.starts_with('[') && header.ends_with(']') {
                current = &header[1..header.len() - 1];
            } else if current == table && example_key(line).is_some_and(|(k, _)| k == key) {
                at = Some(i);
                break;
            }
        }
        let mut comment = Vec::new();
        for line in lines[..at?].iter().rev() {
            if example_key(line).is_some() {
                if comment.is_empty() {
                    continue;
                }
                break;
            }
            match line.strip_prefix('#') {
                Some(c) => comment.push(c.trim()),
                None => break,
            }
        }
        comment.reverse();
        Some(comment.join(" "))
    }

    /// Every number has a lowest and a highest value: both are accepted, one step beyond
    /// either is an error at the key that names the range, and the example file's comment
    /// for the key gives the same range. Every number the example shows has limits here.
    #[test]
    fn every_number_has_limits_and_the_example_documents_them() {
        let example = include_str!("../../config/station.example.toml");
        for &(table, key, lo, hi, below, above, needs) in LIMITS {
            let name = format!("{table}.{key}");
            for ok in [lo, hi] {
                let text = with_value(table, key, ok, needs);
                if let Err(e) = parse_with(&text, Path::new("station.toml"), NO_FILES) {
                    panic!("{name} = {ok} refused:\n{e}\nin:\n{text}");
                }
            }
            for bad in [below, above] {
                let text = with_value(table, key, bad, needs);
                let got = crate::config::testing::errors(&text, NO_FILES);
                let shown: Vec<String> = got.iter().map(|e| e.to_string()).collect();
                assert_eq!(got.len(), 1, "{name} = {bad}: {shown:#?}");
                assert!(got[0].key.starts_with(&name), "{name} = {bad}: {shown:#?}");
                assert!(got[0].message.starts_with("must be "), "{name} = {bad}: {shown:#?}");
                // "must be >= 16 px", "must be <= 8192 px"; a lowest value of 1 is "> 0".
                let limit = match (bad == below, lo) {
                    (true, "1") => "> 0".to_string(),
                    (true, _) => format!(">= {lo}"),
                    (false, _) => format!("<= {hi}"),
                };
                assert!(got[0].message.contains(&limit), "{name} = {bad}: {shown:#?}");
            }
            let comment = example_comment(example, table, key)
                .unwrap_or_else(|| panic!("{name} is not in the example file"));
            let range = format!("{lo} to {hi}");
            assert!(comment.contains(&range), "the example's comment for {name} does not say \"{range}\": {comment}");
        }
        // Every number in the example (set or commented out) is one of the above.
        let mut current = "";
        for line in example.lines() {
            let header = line.strip_prefix("# ").unwrap_or(line);
            if header.starts_with('[') && header.ends_with(']') {
                current = &header[1..header.len() - 1];
                continue;
            }
            let Some((key, value)) = example_key(line) else { continue };
            let value = value.trim_start_matches('[');
            if value.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                assert!(
                    LIMITS.iter().any(|&(t, k, ..)| (t, k) == (current, key)),
                    "{current}.{key} is a number with no limits in LIMITS"
                );
            }
        }
    }

    /// A minimum defect area larger than the camera's frame would reject nothing: it is
    /// an error for a V4L2 camera (whose frames are width x height), not for a replay.
    #[test]
    fn a_minimum_area_must_fit_in_the_frame() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "more pixels than a 1280x960 frame",
                format!("{BASE}[decision]\nmin_area_px = 1228801\n"),
                &[(
                    Some(6),
                    "decision.min_area_px",
                    "must be <= the camera's frame (1280x960 = 1228800 px; got 1228801)",
                )],
            ),
            (
                "more mm² than a 640x480 frame at 0.1 mm/px",
                format!("{BASE}[camera]\nwidth = 640\nheight = 480\n[decision]\nmin_area_mm2 = 3073\nmm_per_px = 0.1\n"),
                &[(
                    Some(9),
                    "decision.min_area_mm2",
                    "must be <= the camera's frame (640x480 px at 0.1 mm/px = ",
                )],
            ),
        ];
        assert_cases(cases);
        let ok = |extra: &str| parse_with(&format!("{BASE}{extra}"), Path::new("s.toml"), NO_FILES);
        assert!(ok("[decision]\nmin_area_px = 1228800\n").is_ok());
        assert!(ok("[decision]\nmin_area_mm2 = 3072\nmm_per_px = 0.1\n[camera]\nwidth = 640\nheight = 480\n").is_ok());
        let replay = "[camera]\nsource = \"replay\"\n[camera.replay]\nfolder = \"f\"\n";
        assert!(ok(&format!("[decision]\nmin_area_px = 2000000\n{replay}")).is_ok());
    }

    /// Whatever a technician types, the answer is a result, never a panic, and every
    /// error points somewhere: every prefix of the example, and odd values in every key.
    #[test]
    fn no_input_panics_and_every_error_has_a_place() {
        let text = include_str!("../../config/station.example.toml");
        let path = Path::new("station.toml");
        let mut inputs: Vec<String> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .map(|i| text[..i].to_string())
            .collect();
        let odd = [
            "-1",
            "0",
            "nan",
            "-inf",
            "\"\"",
            "[]",
            "{}",
            "true",
            "9223372036854775807",
        ];
        for (n, line) in text.lines().enumerate() {
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            for value in odd {
                let mut lines: Vec<&str> = text.lines().collect();
                let replaced = format!("{key} = {value}");
                lines[n] = &replaced;
                inputs.push(lines.join("\n"));
            }
        }
        let mut failed = 0;
        for input in &inputs {
            if let Err(e) = parse_with(input, path, NO_FILES) {
                failed += 1;
                for e in &e.errors {
                    assert_eq!(e.file, path);
                    assert!(e.line.is_some() || !e.key.is_empty(), "{e} in:\n{input}");
                }
            }
        }
        // Both outcomes were exercised.
        assert!(
            failed > 0 && failed < inputs.len(),
            "{failed} of {}",
            inputs.len()
        );
    }
}
