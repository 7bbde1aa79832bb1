//! Reading the station file: TOML (parsed with spans, so every message has a line) into a
//! [`StationConfig`]. Every problem is collected, not just the first: a technician fixing
//! a file on a ladder should see all of them in one run.
//!
//! Each section has one small function that reads its keys with typed getters. A getter
//! records an error and returns `None` for a bad value, so the section falls back to its
//! default and reading goes on; the result is returned only when nothing was recorded.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::schema::*;
use crate::bundle::Bundle;
use crate::text::did_you_mean;
use crate::platform::device::DeviceChoice;
use crate::config::LineSpec;

/// One problem in a station file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; None when the problem has no place in the file (it could not be read).
    pub line: Option<usize>,
    /// Dotted key path, e.g. `reject.pulse_ms`; empty for a syntax error.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a station file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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
    let mut r = Reader::new(text, path, options);
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
    let config = r.station_config(&root);
    r.duplicate_lines();
    if r.errors.is_empty() {
        Ok(config)
    } else {
        Err(r.finish_errors())
    }
}

const SECTIONS: &[&str] = &[
    "station", "model", "camera", "light", "trigger", "decision", "gpio", "reject", "outputs",
    "records", "archive", "logging", "pipeline",
];
const STATION_KEYS: &[&str] = &["name"];
const MODEL_KEYS: &[&str] = &["bundle", "expert", "models_dir", "device"];
const CAMERA_KEYS: &[&str] = &[
    "source",
    "device",
    "width",
    "height",
    "fps",
    "format",
    "exposure_us",
    "gain",
    "white_balance_k",
    "timeout_ms",
    "reconnect_initial_ms",
    "reconnect_max_ms",
    "replay",
];
const REPLAY_KEYS: &[&str] = &["folder", "loop", "stall_after", "stall_ms"];
const LIGHT_KEYS: &[&str] = &["mode", "line", "active_low", "settle_ms"];
const TRIGGER_KEYS: &[&str] = &["mode", "line", "active_low", "debounce_ms", "rate_hz"];
const DECISION_KEYS: &[&str] = &[
    "threshold",
    "pixel_threshold",
    "min_area_px",
    "min_area_mm2",
    "mm_per_px",
];
const GPIO_KEYS: &[&str] = &["backend", "edge_log", "inject_ms"];
const REJECT_KEYS: &[&str] = &["line", "active_low", "delay_ms", "pulse_ms"];
const OUTPUTS_KEYS: &[&str] = &["pass", "ready", "fault"];
const PASS_KEYS: &[&str] = &["line", "active_low", "pulse_ms"];
const SIGNAL_KEYS: &[&str] = &["line", "active_low"];
const RECORDS_KEYS: &[&str] = &["dir", "max_mib", "keep"];
const ARCHIVE_KEYS: &[&str] = &["dir", "rejects", "pass_every", "max_files", "max_mib"];
const LOGGING_KEYS: &[&str] = &["level", "counters_every_s"];
const PIPELINE_KEYS: &[&str] = &[
    "queue_depth",
    "drain_timeout_ms",
    "stall_timeout_ms",
    "inject_infer_delay_ms",
];

/// Every table and its keys, to say where a key put in the wrong table belongs.
const TABLES: &[(&str, &[&str])] = &[
    ("station", STATION_KEYS),
    ("model", MODEL_KEYS),
    ("camera", CAMERA_KEYS),
    ("camera.replay", REPLAY_KEYS),
    ("light", LIGHT_KEYS),
    ("trigger", TRIGGER_KEYS),
    ("decision", DECISION_KEYS),
    ("gpio", GPIO_KEYS),
    ("reject", REJECT_KEYS),
    ("outputs.pass", PASS_KEYS),
    ("outputs.ready", SIGNAL_KEYS),
    ("outputs.fault", SIGNAL_KEYS),
    ("records", RECORDS_KEYS),
    ("archive", ARCHIVE_KEYS),
    ("logging", LOGGING_KEYS),
    ("pipeline", PIPELINE_KEYS),
];

const MIB: u64 = 1024 * 1024;

/// What an integer or number means, for "expected ..." and range messages.
#[derive(Clone, Copy)]
struct Unit {
    what: &'static str,
    sym: &'static str,
}

const MS: Unit = Unit {
    what: "an integer number of milliseconds",
    sym: " ms",
};
const SECONDS: Unit = Unit {
    what: "an integer number of seconds",
    sym: " s",
};
const MICROS: Unit = Unit {
    what: "an integer number of microseconds",
    sym: " µs",
};
const PIXELS: Unit = Unit {
    what: "an integer number of pixels",
    sym: " px",
};
const FPS: Unit = Unit {
    what: "an integer number of frames per second",
    sym: " fps",
};
const FRAMES: Unit = Unit {
    what: "an integer number of frames",
    sym: " frames",
};
const KELVIN: Unit = Unit {
    what: "an integer number of kelvin",
    sym: " K",
};
const MEBIBYTES: Unit = Unit {
    what: "an integer number of MiB",
    sym: " MiB",
};
const COUNT: Unit = Unit {
    what: "an integer",
    sym: "",
};
const SCORE: Unit = Unit {
    what: "a number (an anomaly score)",
    sym: "",
};
const HERTZ: Unit = Unit {
    what: "a number of hertz",
    sym: " Hz",
};
const MM2: Unit = Unit {
    what: "a number of square millimetres",
    sym: " mm²",
};
const MM_PER_PX: Unit = Unit {
    what: "a number of millimetres per pixel",
    sym: " mm/px",
};

/// A table of the file (possibly absent: then every key takes its default).
#[derive(Clone, Copy)]
struct Section<'d> {
    /// Dotted path, "" for the root.
    name: &'static str,
    table: Option<&'d dyn TableLike>,
    /// Line of the table's header (or of its key, for an inline or dotted table).
    line: Option<usize>,
}

impl<'d> Section<'d> {
    fn get(&self, key: &str) -> Option<&'d Item> {
        self.table.and_then(|t| t.get(key)).filter(|i| !i.is_none())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }
}

/// Where a GPIO line was used, to catch the same line given twice.
struct LineUse {
    spec: LineSpec,
    key: String,
    line: Option<usize>,
}

struct Reader<'a> {
    file: &'a Path,
    /// Relative paths in the file are relative to its folder.
    base: PathBuf,
    line_starts: Vec<usize>,
    check_files: bool,
    errors: Vec<ConfigError>,
    lines: Vec<LineUse>,
}

impl<'a> Reader<'a> {
    fn new(text: &str, file: &'a Path, options: LoadOptions) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            base: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            line_starts,
            check_files: options.check_files,
            errors: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn line_at(&self, offset: usize) -> Option<usize> {
        Some(self.line_starts.partition_point(|&s| s <= offset))
    }

    /// The line of a key's value, else of the key, else of its table.
    fn line_of(&self, sec: &Section, key: &str) -> Option<usize> {
        let value = sec.get(key).and_then(|i| i.span());
        let key_span = || sec.table.and_then(|t| t.key(key)).and_then(|k| k.span());
        value
            .or_else(key_span)
            .and_then(|s| self.line_at(s.start))
            .or(sec.line)
    }

    fn push(&mut self, key: String, line: Option<usize>, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            key,
            message,
        });
    }

    fn err(&mut self, sec: &Section, key: &str, message: String) {
        let line = self.line_of(sec, key);
        self.push(sec.path(key), line, message);
    }

    fn finish_errors(mut self) -> ConfigErrors {
        // Stable: errors on one line keep the order they were found in.
        self.errors.sort_by_key(|e| (e.line.is_none(), e.line));
        ConfigErrors {
            errors: self.errors,
        }
    }

    // --- tables -------------------------------------------------------------------------

    /// The sub-table `full` (a dotted path whose last part is a key of `parent`).
    fn section<'d>(
        &mut self,
        parent: &Section<'d>,
        full: &'static str,
        known: &[&str],
    ) -> Section<'d> {
        let leaf = full.rsplit('.').next().unwrap_or(full);
        let mut sec = Section {
            name: full,
            table: None,
            line: None,
        };
        let Some(item) = parent.get(leaf) else {
            return sec;
        };
        sec.line = self.line_of(parent, leaf);
        match item.as_table_like() {
            Some(table) => {
                sec.table = Some(table);
                self.unknown_keys(&sec, known);
            }
            None => {
                let got = describe(item);
                self.err(parent, leaf, format!("expected a table, got {got}"));
            }
        }
        sec
    }

    fn unknown_keys(&mut self, sec: &Section, known: &[&str]) {
        let Some(table) = sec.table else { return };
        for (key, item) in table.iter() {
            if known.contains(&key) {
                continue;
            }
            // At the top level a table is a section; a plain value is a stray key.
            let what = if sec.name.is_empty() && item.is_table_like() {
                "section"
            } else {
                "key"
            };
            let line = table
                .key(key)
                .and_then(|k| k.span())
                .and_then(|s| self.line_at(s.start))
                .or_else(|| self.line_of(sec, key));
            let homes: Vec<String> = TABLES
                .iter()
                .filter(|(name, keys)| *name != sec.name && keys.contains(&key))
                .map(|(name, _)| format!("[{name}]"))
                .collect();
            let message = match did_you_mean(key, known.iter().copied()) {
                Some(s) => format!("unknown {what}; did you mean `{s}`?"),
                None if !homes.is_empty() => {
                    format!("unknown {what}; it belongs in {}", homes.join(" or "))
                }
                None => format!("unknown {what} (known: {})", known.join(", ")),
            };
            self.push(sec.path(key), line, message);
        }
    }

    // --- typed getters: None when absent or bad (and then an error is recorded) ----------

    fn value<'d>(&mut self, sec: &Section<'d>, key: &str, expected: &str) -> Option<&'d Value> {
        let item = sec.get(key)?;
        if item.as_value().is_none() {
            self.wrong_type(sec, key, expected, item);
        }
        item.as_value()
    }

    fn wrong_type(&mut self, sec: &Section, key: &str, expected: &str, got: &Item) {
        let got = describe(got);
        self.err(sec, key, format!("expected {expected}, got {got}"));
    }

    fn string(&mut self, sec: &Section, key: &str, expected: &str) -> Option<String> {
        let v = self.value(sec, key, expected)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong_type(sec, key, expected, &Item::Value(v.clone()));
                None
            }
        }
    }

    fn boolean(&mut self, sec: &Section, key: &str) -> Option<bool> {
        let expected = "true or false";
        let v = self.value(sec, key, expected)?;
        if v.as_bool().is_none() {
            self.wrong_type(sec, key, expected, &Item::Value(v.clone()));
        }
        v.as_bool()
    }

    fn int(&mut self, sec: &Section, key: &str, unit: Unit, min: i64, max: i64) -> Option<i64> {
        let v = self.value(sec, key, unit.what)?;
        let Some(n) = v.as_integer() else {
            self.wrong_type(sec, key, unit.what, &Item::Value(v.clone()));
            return None;
        };
        let sym = unit.sym;
        let problem = if n < min && min == 1 {
            Some(format!("must be > 0{sym} (got {n})"))
        } else if n < min {
            Some(format!("must be >= {min}{sym} (got {n})"))
        } else if n > max {
            Some(format!("must be <= {max}{sym} (got {n})"))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.err(sec, key, message);
                None
            }
            None => Some(n),
        }
    }

    fn u32(&mut self, sec: &Section, key: &str, unit: Unit, min: i64) -> Option<u32> {
        self.int(sec, key, unit, min, u32::MAX.into())
            .map(|n| n as u32)
    }

    fn u64(&mut self, sec: &Section, key: &str, unit: Unit, min: i64) -> Option<u64> {
        self.int(sec, key, unit, min, i64::MAX).map(|n| n as u64)
    }

    fn ms(&mut self, sec: &Section, key: &str, min: i64) -> Option<Duration> {
        self.u64(sec, key, MS, min).map(Duration::from_millis)
    }

    /// A size in MiB, as bytes.
    fn mib(&mut self, sec: &Section, key: &str) -> Option<u64> {
        let max = (u64::MAX / MIB) as i64;
        self.int(sec, key, MEBIBYTES, 1, max)
            .map(|n| n as u64 * MIB)
    }

    /// A finite number (integers accepted); `positive` also rules out zero and below.
    fn float(&mut self, sec: &Section, key: &str, unit: Unit, positive: bool) -> Option<f64> {
        let v = self.value(sec, key, unit.what)?;
        let x = match v {
            Value::Float(f) => *f.value(),
            Value::Integer(i) => *i.value() as f64,
            _ => {
                self.wrong_type(sec, key, unit.what, &Item::Value(v.clone()));
                return None;
            }
        };
        if !x.is_finite() {
            let got = if x.is_nan() {
                "nan".to_string()
            } else {
                format!("{x}")
            };
            self.err(sec, key, format!("must be a finite number (got {got})"));
            return None;
        }
        if positive && x <= 0.0 {
            self.err(sec, key, format!("must be > 0{} (got {x})", unit.sym));
            return None;
        }
        Some(x)
    }

    /// A finite number that also fits an f32 (scores are f32).
    fn f32(&mut self, sec: &Section, key: &str, unit: Unit) -> Option<f32> {
        let x = self.float(sec, key, unit, false)?;
        if !(x as f32).is_finite() {
            self.err(sec, key, format!("too large (got {x})"));
            return None;
        }
        Some(x as f32)
    }

    fn choice(
        &mut self,
        sec: &Section,
        key: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
        let expected = format!("one of {}", quoted.join(", "));
        let s = self.string(sec, key, &expected)?;
        if let Some(o) = options.iter().find(|o| **o == s) {
            return Some(o);
        }
        let hint = match did_you_mean(&s, options.iter().copied()) {
            Some(o) => format!("; did you mean \"{o}\"?"),
            None => String::new(),
        };
        self.err(sec, key, format!("expected {expected}, got \"{s}\"{hint}"));
        None
    }

    fn path(&mut self, sec: &Section, key: &str) -> Option<PathBuf> {
        let s = self.string(sec, key, "a path (a string)")?;
        if s.trim().is_empty() {
            self.err(sec, key, "must not be empty".into());
            return None;
        }
        let p = PathBuf::from(s);
        Some(if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        })
    }

    fn gpio_line(&mut self, sec: &Section, key: &str) -> Option<LineSpec> {
        let s = self.string(sec, key, "a GPIO line (\"gpiochip0:17\" or a line name)")?;
        match s.parse::<LineSpec>() {
            Ok(spec) => {
                let line = self.line_of(sec, key);
                self.lines.push(LineUse {
                    spec: spec.clone(),
                    key: sec.path(key),
                    line,
                });
                Some(spec)
            }
            Err(message) => {
                self.err(sec, key, message);
                None
            }
        }
    }

    /// `[sec] line, active_low` as an output; `required` says why a missing line is an error.
    fn output_line(&mut self, sec: &Section, required: Option<String>) -> Option<OutputLine> {
        let line = self.gpio_line(sec, "line");
        let active_low = self.boolean(sec, "active_low").unwrap_or(false);
        if let (Some(why), false) = (required, sec.has("line")) {
            self.err(sec, "line", format!("required {why}"));
        }
        line.map(|line| OutputLine { line, active_low })
    }

    fn check_dir(&mut self, sec: &Section, key: &str, dir: &Path) {
        if self.check_files && !dir.is_dir() {
            self.err(sec, key, format!("no such folder: {}", dir.display()));
        }
    }

    fn check_file(&mut self, sec: &Section, key: &str, file: &Path) {
        if self.check_files && !file.is_file() {
            self.err(sec, key, format!("no such file: {}", file.display()));
        }
    }

    // --- sections -----------------------------------------------------------------------

    fn station_config(&mut self, root: &Section) -> StationConfig {
        let station = self.station(root);
        let model = self.model(root);
        let camera = self.camera(root);
        let light = self.light(root);
        let trigger = self.trigger(root, camera.source);
        let decision = self.decision(root);
        let gpio = self.gpio(root);
        let outputs = self.outputs(root);
        let records = self.records(root);
        let archive = self.archive(root);
        let logging = self.logging(root);
        let pipeline = self.pipeline(root);
        StationConfig {
            station,
            model,
            camera,
            light,
            trigger,
            decision,
            gpio,
            outputs,
            records,
            archive,
            logging,
            pipeline,
        }
    }

    fn station(&mut self, root: &Section) -> StationInfo {
        let s = self.section(root, "station", STATION_KEYS);
        let name = self
            .string(&s, "name", "a string")
            .unwrap_or_else(|| "station".into());
        if name.trim().is_empty() {
            self.err(&s, "name", "must not be empty".into());
        }
        StationInfo { name }
    }

    fn model(&mut self, root: &Section) -> ModelConfig {
        let s = self.section(root, "model", MODEL_KEYS);
        let bundle = self.path(&s, "bundle");
        match &bundle {
            Some(dir) if self.check_files => {
                if let Err(e) = Bundle::load_meta(dir) {
                    self.err(&s, "bundle", e.to_string());
                }
            }
            Some(_) => {}
            None if !s.has("bundle") => self.err(
                &s,
                "bundle",
                "required: the model bundle folder (written by `cdo-inspect train`)".into(),
            ),
            None => {}
        }
        let expert = self.path(&s, "expert");
        if let Some(p) = &expert {
            self.check_file(&s, "expert", p);
        }
        let models_dir = self.path(&s, "models_dir");
        if let Some(p) = &models_dir {
            self.check_dir(&s, "models_dir", p);
        }
        let device = match self.choice(&s, "device", &["cpu", "cuda"]) {
            Some("cuda") => DeviceChoice::Cuda,
            _ => DeviceChoice::Cpu,
        };
        ModelConfig {
            bundle: bundle.unwrap_or_default(),
            expert,
            models_dir,
            device,
        }
    }

    fn camera(&mut self, root: &Section) -> CameraConfig {
        let s = self.section(root, "camera", CAMERA_KEYS);
        let source = match self.choice(&s, "source", &["v4l2", "replay"]) {
            Some("replay") => CameraSource::Replay,
            _ => CameraSource::V4l2,
        };
        let device = self
            .string(
                &s,
                "device",
                "a device (\"/dev/video0\", an index, or part of its name)",
            )
            .unwrap_or_else(|| "/dev/video0".into());
        if device.trim().is_empty() {
            self.err(&s, "device", "must not be empty".into());
        }
        let width = self.u32(&s, "width", PIXELS, 1).unwrap_or(1280);
        let height = self.u32(&s, "height", PIXELS, 1).unwrap_or(960);
        let fps = self.u32(&s, "fps", FPS, 1).unwrap_or(30);
        let format = self
            .choice(&s, "format", &["mjpeg", "yuyv", "gray", "rgb"])
            .unwrap_or("mjpeg")
            .to_string();
        let exposure_us = self.u32(&s, "exposure_us", MICROS, 1);
        let gain = self.int(&s, "gain", COUNT, i64::MIN, i64::MAX);
        let white_balance_k = self.u32(&s, "white_balance_k", KELVIN, 1);
        let timeout = self
            .ms(&s, "timeout_ms", 1)
            .unwrap_or(Duration::from_millis(2000));
        let reconnect_initial = self.ms(&s, "reconnect_initial_ms", 1);
        let reconnect_max = self.ms(&s, "reconnect_max_ms", 1);
        if let (Some(initial), Some(max)) = (reconnect_initial, reconnect_max) {
            if max < initial {
                let message = format!(
                    "must be >= camera.reconnect_initial_ms ({} ms)",
                    initial.as_millis()
                );
                self.err(&s, "reconnect_max_ms", message);
            }
        }
        let replay = self.replay(&s, source);
        CameraConfig {
            source,
            device,
            width,
            height,
            fps,
            format,
            exposure_us,
            gain,
            white_balance_k,
            timeout,
            reconnect_initial: reconnect_initial.unwrap_or(Duration::from_millis(500)),
            reconnect_max: reconnect_max.unwrap_or(Duration::from_millis(30_000)),
            replay,
        }
    }

    fn replay(&mut self, camera: &Section, source: CameraSource) -> ReplayConfig {
        let s = self.section(camera, "camera.replay", REPLAY_KEYS);
        let folder = self.path(&s, "folder");
        if source == CameraSource::Replay {
            match &folder {
                Some(dir) => self.check_dir(&s, "folder", dir),
                None if !s.has("folder") => {
                    let line = s.line.or_else(|| self.line_of(camera, "source"));
                    let message = "required when camera.source = \"replay\"".to_string();
                    self.push(s.path("folder"), line, message);
                }
                None => {}
            }
        }
        ReplayConfig {
            folder: folder.unwrap_or_default(),
            looping: self.boolean(&s, "loop").unwrap_or(false),
            stall_after: self.u64(&s, "stall_after", FRAMES, 0),
            stall_for: self.ms(&s, "stall_ms", 0).unwrap_or(Duration::ZERO),
        }
    }

    fn light(&mut self, root: &Section) -> LightConfig {
        let s = self.section(root, "light", LIGHT_KEYS);
        let (mode, name) = match self.choice(&s, "mode", &["none", "strobe", "always_on"]) {
            Some("strobe") => (LightMode::Strobe, "strobe"),
            Some("always_on") => (LightMode::AlwaysOn, "always_on"),
            _ => (LightMode::None, "none"),
        };
        let required = (mode != LightMode::None)
            .then(|| format!("when light.mode = \"{name}\" (the light's output)"));
        let output = self.output_line_at_mode(&s, required);
        let settle = self
            .ms(&s, "settle_ms", 0)
            .unwrap_or(Duration::from_millis(5));
        LightConfig {
            mode,
            output,
            settle,
        }
    }

    /// Like [`Self::output_line`], but a missing line is reported at the `mode` key, which
    /// is what made it required.
    fn output_line_at_mode(&mut self, s: &Section, required: Option<String>) -> Option<OutputLine> {
        let missing = required.filter(|_| !s.has("line"));
        let out = self.output_line(s, None);
        if let Some(why) = missing {
            let line = self.line_of(s, "mode");
            self.push(s.path("line"), line, format!("required {why}"));
        }
        out
    }

    fn trigger(&mut self, root: &Section, source: CameraSource) -> TriggerConfig {
        let s = self.section(root, "trigger", TRIGGER_KEYS);
        let mode = match self.choice(&s, "mode", &["gpio", "free_run", "replay"]) {
            Some("gpio") => TriggerMode::Gpio,
            Some("replay") => TriggerMode::Replay,
            _ => TriggerMode::FreeRun,
        };
        let line = self.gpio_line(&s, "line");
        let active_low = self.boolean(&s, "active_low").unwrap_or(false);
        let debounce = self
            .ms(&s, "debounce_ms", 0)
            .unwrap_or(Duration::from_millis(5));
        let rate_hz = self.float(&s, "rate_hz", HERTZ, true).unwrap_or(2.0);
        if mode == TriggerMode::Gpio && !s.has("line") {
            let line = self.line_of(&s, "mode");
            let message = "required when trigger.mode = \"gpio\" (the part sensor's input)";
            self.push(s.path("line"), line, message.into());
        }
        if mode == TriggerMode::Replay && source != CameraSource::Replay {
            let message = "\"replay\" needs camera.source = \"replay\"".to_string();
            self.err(&s, "mode", message);
        }
        TriggerConfig {
            mode,
            input: line.map(|line| InputLine {
                line,
                active_low,
                debounce,
            }),
            rate_hz,
        }
    }

    fn decision(&mut self, root: &Section) -> DecisionConfig {
        let s = self.section(root, "decision", DECISION_KEYS);
        let threshold = self.f32(&s, "threshold", SCORE);
        let pixel_threshold = self.f32(&s, "pixel_threshold", SCORE);
        let px = self.u32(&s, "min_area_px", PIXELS, 1);
        let mm2 = self.float(&s, "min_area_mm2", MM2, true);
        let mm_per_px = self.float(&s, "mm_per_px", MM_PER_PX, true);
        if s.has("min_area_px") && s.has("min_area_mm2") {
            let message = "set only one of min_area_px and min_area_mm2".to_string();
            self.err(&s, "min_area_mm2", message);
        }
        if s.has("min_area_mm2") && !s.has("mm_per_px") {
            let line = self.line_of(&s, "min_area_mm2");
            let message = "required with min_area_mm2 (the camera's scale)".to_string();
            self.push(s.path("mm_per_px"), line, message);
        }
        let min_area = match (px, mm2, mm_per_px) {
            (Some(px), _, _) => Some(MinArea::Pixels(px)),
            (None, Some(mm2), Some(mm_per_px)) => {
                Some(MinArea::SquareMillimetres { mm2, mm_per_px })
            }
            _ => None,
        };
        DecisionConfig {
            threshold,
            min_area,
            pixel_threshold,
        }
    }

    fn gpio(&mut self, root: &Section) -> GpioConfig {
        let s = self.section(root, "gpio", GPIO_KEYS);
        let backend = match self.choice(&s, "backend", &["cdev", "simulated"]) {
            Some("simulated") => GpioBackend::Simulated,
            _ => GpioBackend::Cdev,
        };
        let edge_log = self.path(&s, "edge_log");
        let inject_ms = self.inject_ms(&s);
        if backend != GpioBackend::Simulated {
            for key in ["edge_log", "inject_ms"] {
                if s.has(key) {
                    let message = "only used with gpio.backend = \"simulated\"".to_string();
                    self.err(&s, key, message);
                }
            }
        }
        GpioConfig {
            backend,
            edge_log,
            inject_ms,
        }
    }

    fn inject_ms(&mut self, s: &Section) -> Vec<u64> {
        let expected = "an array of integer milliseconds, e.g. [100, 600]";
        let Some(v) = self.value(s, "inject_ms", expected) else {
            return Vec::new();
        };
        let Some(array) = v.as_array() else {
            self.wrong_type(s, "inject_ms", expected, &Item::Value(v.clone()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, element) in array.iter().enumerate() {
            let line = element.span().and_then(|sp| self.line_at(sp.start));
            let key = format!("{}[{i}]", s.path("inject_ms"));
            match element.as_integer() {
                Some(n) if n >= 0 => out.push(n as u64),
                Some(n) => self.push(key, line, format!("must be >= 0 ms (got {n})")),
                None => {
                    let got = describe(&Item::Value(element.clone()));
                    let message = format!("expected an integer number of milliseconds, got {got}");
                    self.push(key, line, message);
                }
            }
        }
        out
    }

    fn outputs(&mut self, root: &Section) -> OutputsConfig {
        let r = self.section(root, "reject", REJECT_KEYS);
        let why = "(the reject actuator's output)".to_string();
        let reject = self.output_line(&r, Some(why));
        let reject_delay = self
            .ms(&r, "delay_ms", 0)
            .unwrap_or(Duration::from_millis(300));
        let reject_pulse = self
            .ms(&r, "pulse_ms", 1)
            .unwrap_or(Duration::from_millis(100));

        let o = self.section(root, "outputs", OUTPUTS_KEYS);
        let pass_sec = self.section(&o, "outputs.pass", PASS_KEYS);
        let pass = self.optional_output(&pass_sec);
        let pass_pulse = self
            .ms(&pass_sec, "pulse_ms", 1)
            .unwrap_or(Duration::from_millis(50));
        let ready_sec = self.section(&o, "outputs.ready", SIGNAL_KEYS);
        let ready = self.optional_output(&ready_sec);
        let fault_sec = self.section(&o, "outputs.fault", SIGNAL_KEYS);
        let fault = self.optional_output(&fault_sec);
        OutputsConfig {
            // Placeholder only when an error was recorded: the config is then discarded.
            reject: reject.unwrap_or(OutputLine {
                line: LineSpec::Name(String::new()),
                active_low: false,
            }),
            reject_delay,
            reject_pulse,
            pass,
            pass_pulse,
            ready,
            fault,
        }
    }

    /// An optional output table: absent is fine, present needs its line.
    fn optional_output(&mut self, s: &Section) -> Option<OutputLine> {
        let required = s.table.map(|_| format!("when [{}] is present", s.name));
        self.output_line(s, required)
    }

    fn records(&mut self, root: &Section) -> RecordsConfig {
        let s = self.section(root, "records", RECORDS_KEYS);
        RecordsConfig {
            dir: self
                .path(&s, "dir")
                .unwrap_or_else(|| self.base.join("records")),
            max_bytes: self.mib(&s, "max_mib").unwrap_or(64 * MIB),
            keep: self.u32(&s, "keep", COUNT, 0).unwrap_or(10),
        }
    }

    fn archive(&mut self, root: &Section) -> ArchiveConfig {
        let s = self.section(root, "archive", ARCHIVE_KEYS);
        ArchiveConfig {
            dir: self
                .path(&s, "dir")
                .unwrap_or_else(|| self.base.join("archive")),
            rejects: self.boolean(&s, "rejects").unwrap_or(true),
            pass_every: self.u32(&s, "pass_every", COUNT, 0).unwrap_or(0),
            max_files: self.u64(&s, "max_files", COUNT, 1).unwrap_or(5000),
            max_bytes: self.mib(&s, "max_mib").unwrap_or(2048 * MIB),
        }
    }

    fn logging(&mut self, root: &Section) -> LoggingConfig {
        let s = self.section(root, "logging", LOGGING_KEYS);
        let expected = "a log level (\"info\") or filter (\"info,cdo_inspect=debug\")";
        let level = self
            .string(&s, "level", expected)
            .unwrap_or_else(|| "info".into());
        if let Err(message) = check_log_filter(&level) {
            self.err(&s, "level", message);
        }
        let counters_every = self.u64(&s, "counters_every_s", SECONDS, 1).unwrap_or(60);
        LoggingConfig {
            level,
            counters_every: Duration::from_secs(counters_every),
        }
    }

    fn pipeline(&mut self, root: &Section) -> PipelineConfig {
        let s = self.section(root, "pipeline", PIPELINE_KEYS);
        PipelineConfig {
            queue_depth: self.int(&s, "queue_depth", COUNT, 1, 1 << 20).unwrap_or(4) as usize,
            drain_timeout: self
                .ms(&s, "drain_timeout_ms", 0)
                .unwrap_or(Duration::from_secs(10)),
            stall_timeout: self
                .ms(&s, "stall_timeout_ms", 1)
                .unwrap_or(Duration::from_secs(5)),
            inject_infer_delay: self.ms(&s, "inject_infer_delay_ms", 0).unwrap_or_default(),
        }
    }

    /// One physical line driven or read by two keys is a wiring mistake in the file.
    fn duplicate_lines(&mut self) {
        let mut uses = std::mem::take(&mut self.lines);
        // Report the use further down the file, naming the one above it.
        uses.sort_by_key(|u| (u.line.is_none(), u.line));
        for (i, later) in uses.iter().enumerate() {
            let first = uses[..i].iter().find(|u| same_line(&u.spec, &later.spec));
            if let Some(first) = first {
                let at = first
                    .line
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                let message = format!("GPIO line {} is also used by {}{at}", later.spec, first.key);
                self.push(later.key.clone(), later.line, message);
            }
        }
    }
}

/// `/dev/gpiochip0:5` and `gpiochip0:5` are the same line.
fn same_line(a: &LineSpec, b: &LineSpec) -> bool {
    let norm = |s: &LineSpec| match s {
        LineSpec::ChipOffset { chip, offset } => LineSpec::ChipOffset {
            chip: chip.strip_prefix("/dev/").unwrap_or(chip).to_string(),
            offset: *offset,
        },
        other => other.clone(),
    };
    norm(a) == norm(b)
}

/// env_logger reads a bare word as a module name, so a misspelt level would silently log
/// nothing: every directive must be a level or `module=level`.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    if filter.trim().is_empty() {
        return Err("must not be empty".into());
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, l)| l)
            .trim();
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let hint = did_you_mean(level, LEVELS.iter().copied())
                .map(|l| format!("; did you mean \"{l}\"?"))
                .unwrap_or_default();
            return Err(format!(
                "\"{directive}\": expected a level ({}) or module=level{hint}",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// "a string (\"300 ms\")", "an integer", "a table": what a technician wrote.
fn describe(item: &Item) -> String {
    let name = item.type_name();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    match item.as_str() {
        Some(s) if s.chars().count() <= 40 => format!("{article} {name} (\"{s}\")"),
        _ => format!("{article} {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two required keys; cases append to it, so their own lines start at 5.
    const BASE: &str = "[model]\nbundle = \"bundle\"\n[reject]\nline = \"gpiochip0:20\"\n";
    const NO_FILES: LoadOptions = LoadOptions { check_files: false };

    fn errors(text: &str, options: LoadOptions) -> Vec<ConfigError> {
        match parse_with(text, Path::new("station.toml"), options) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.errors,
        }
    }

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        type Expected = &'static [(Option<usize>, &'static str, &'static str)];
        let cases: &[(&str, String, Expected)] = &[
            (
                "unknown key, with a did-you-mean",
                format!("{BASE}pulse_mss = 100\n"),
                &[(
                    Some(5),
                    "reject.pulse_mss",
                    "unknown key; did you mean `pulse_ms`?",
                )],
            ),
            (
                "unknown key, no near name: the known keys are listed",
                format!("{BASE}colour = 1\n"),
                &[(
                    Some(5),
                    "reject.colour",
                    "(known: line, active_low, delay_ms, pulse_ms)",
                )],
            ),
            (
                "a key in the wrong table",
                format!("{BASE}[trigger]\npulse_ms = 5\n"),
                &[(
                    Some(6),
                    "trigger.pulse_ms",
                    "unknown key; it belongs in [reject] or [outputs.pass]",
                )],
            ),
            (
                "a key outside any table",
                format!("queue_depth = 2\n{BASE}"),
                &[(
                    Some(1),
                    "queue_depth",
                    "unknown key; it belongs in [pipeline]",
                )],
            ),
            (
                "unknown section",
                format!("{BASE}[pipelin]\nqueue_depth = 2\n"),
                &[(
                    Some(5),
                    "pipelin",
                    "unknown section; did you mean `pipeline`?",
                )],
            ),
            (
                "wrong type",
                format!("{BASE}delay_ms = \"300\"\n"),
                &[(
                    Some(5),
                    "reject.delay_ms",
                    "expected an integer number of milliseconds, got a string (\"300\")",
                )],
            ),
            (
                "a float where an integer is needed",
                format!("{BASE}[camera]\nwidth = 1280.0\n"),
                &[(
                    Some(6),
                    "camera.width",
                    "expected an integer number of pixels, got a float",
                )],
            ),
            (
                "negative delay",
                format!("{BASE}delay_ms = -5\n"),
                &[(Some(5), "reject.delay_ms", "must be >= 0 ms (got -5)")],
            ),
            (
                "pulse width 0",
                format!("{BASE}pulse_ms = 0\n"),
                &[(Some(5), "reject.pulse_ms", "must be > 0 ms (got 0)")],
            ),
            (
                "threshold nan",
                format!("{BASE}[decision]\nthreshold = nan\n"),
                &[(
                    Some(6),
                    "decision.threshold",
                    "must be a finite number (got nan)",
                )],
            ),
            (
                "threshold inf",
                format!("{BASE}[decision]\nthreshold = -inf\n"),
                &[(
                    Some(6),
                    "decision.threshold",
                    "must be a finite number (got -inf)",
                )],
            ),
            (
                "rate 0",
                format!("{BASE}[trigger]\nrate_hz = 0\n"),
                &[(Some(6), "trigger.rate_hz", "must be > 0 Hz (got 0)")],
            ),
            (
                "queue depth 0",
                format!("{BASE}[pipeline]\nqueue_depth = 0\n"),
                &[(Some(6), "pipeline.queue_depth", "must be > 0 (got 0)")],
            ),
            (
                "the same GPIO line twice (a /dev path and a chip name)",
                format!("{BASE}[trigger]\nmode = \"gpio\"\nline = \"/dev/gpiochip0:20\"\n"),
                &[(
                    Some(7),
                    "trigger.line",
                    "GPIO line /dev/gpiochip0:20 is also used by reject.line (line 4)",
                )],
            ),
            (
                "trigger gpio without a line",
                format!("{BASE}[trigger]\nmode = \"gpio\"\n"),
                &[(
                    Some(6),
                    "trigger.line",
                    "required when trigger.mode = \"gpio\"",
                )],
            ),
            (
                "a misspelt choice",
                format!("{BASE}[trigger]\nmode = \"free-run\"\n"),
                &[(
                    Some(6),
                    "trigger.mode",
                    "got \"free-run\"; did you mean \"free_run\"?",
                )],
            ),
            (
                "trigger replay with a real camera",
                format!("{BASE}[trigger]\nmode = \"replay\"\n"),
                &[(Some(6), "trigger.mode", "needs camera.source = \"replay\"")],
            ),
            (
                "replay camera without a folder",
                format!("{BASE}[camera]\nsource = \"replay\"\n"),
                &[(
                    Some(6),
                    "camera.replay.folder",
                    "required when camera.source = \"replay\"",
                )],
            ),
            (
                "strobe without a line",
                format!("{BASE}[light]\nmode = \"strobe\"\n"),
                &[(
                    Some(6),
                    "light.line",
                    "required when light.mode = \"strobe\"",
                )],
            ),
            (
                "both minimum areas, and mm² without a scale",
                format!("{BASE}[decision]\nmin_area_px = 40\nmin_area_mm2 = 0.5\n"),
                &[
                    (
                        Some(7),
                        "decision.min_area_mm2",
                        "set only one of min_area_px and min_area_mm2",
                    ),
                    (Some(7), "decision.mm_per_px", "required with min_area_mm2"),
                ],
            ),
            (
                "injected edges on real GPIO",
                format!("{BASE}[gpio]\ninject_ms = [100, \"x\"]\n"),
                &[
                    (
                        Some(6),
                        "gpio.inject_ms[1]",
                        "expected an integer number of milliseconds",
                    ),
                    (
                        Some(6),
                        "gpio.inject_ms",
                        "only used with gpio.backend = \"simulated\"",
                    ),
                ],
            ),
            (
                "reconnect ceiling below the first wait",
                format!("{BASE}[camera]\nreconnect_initial_ms = 1000\nreconnect_max_ms = 100\n"),
                &[(
                    Some(7),
                    "camera.reconnect_max_ms",
                    "must be >= camera.reconnect_initial_ms",
                )],
            ),
            (
                "a misspelt log level",
                format!("{BASE}[logging]\nlevel = \"inf\"\n"),
                &[(Some(6), "logging.level", "did you mean \"info\"?")],
            ),
            (
                "a table where a value belongs",
                format!("{BASE}[camera]\nwidth = {{ px = 3 }}\n"),
                &[(Some(6), "camera.width", "got an inline table")],
            ),
            (
                "a value where a table belongs",
                format!("camera = 3\n{BASE}"),
                &[(Some(1), "camera", "expected a table, got an integer")],
            ),
            (
                "an optional output without its line",
                format!("{BASE}[outputs.fault]\nactive_low = true\n"),
                &[(
                    Some(5),
                    "outputs.fault.line",
                    "required when [outputs.fault] is present",
                )],
            ),
            (
                "two errors in one file, both reported in file order",
                format!("{BASE}pulse_ms = 0\n[camera]\nwidth = 0\n"),
                &[
                    (Some(5), "reject.pulse_ms", "must be > 0 ms (got 0)"),
                    (Some(7), "camera.width", "must be > 0 px (got 0)"),
                ],
            ),
            (
                "the required keys missing",
                "[station]\nname = \"x\"\n".to_string(),
                &[
                    (None, "model.bundle", "required"),
                    (None, "reject.line", "required"),
                ],
            ),
            (
                "dotted keys carry their lines too",
                "model.bundle = \"b\"\nreject.line = \"gpiochip0:20\"\nreject.pulse_ms = 0\n"
                    .to_string(),
                &[(Some(3), "reject.pulse_ms", "must be > 0 ms (got 0)")],
            ),
            (
                "an unknown key in a sub-table",
                format!("{BASE}[camera.replay]\nlop = true\n"),
                &[(Some(6), "camera.replay.lop", "did you mean `loop`?")],
            ),
            (
                "a syntax error is one error with its line",
                format!("{BASE}[camera\nwidth = 0\n"),
                &[(Some(5), "", "TOML syntax error")],
            ),
        ];
        for (name, text, expected) in cases {
            let got = errors(text, NO_FILES);
            let shown: Vec<String> = got.iter().map(|e| e.to_string()).collect();
            assert_eq!(got.len(), expected.len(), "{name}: {shown:#?}");
            for (e, (line, key, part)) in got.iter().zip(expected.iter()) {
                assert_eq!(
                    (e.line, e.key.as_str()),
                    (*line, *key),
                    "{name}: {shown:#?}"
                );
                assert!(e.message.contains(part), "{name}: {shown:#?}");
            }
        }
    }

    #[test]
    fn errors_display_as_file_line_key_message() {
        let e = &errors(&format!("{BASE}pulse_ms = 0\n"), NO_FILES)[0];
        assert_eq!(
            e.to_string(),
            "station.toml:5: reject.pulse_ms: must be > 0 ms (got 0)"
        );
        let syntax = &errors("[model\n", NO_FILES)[0];
        assert!(syntax
            .to_string()
            .starts_with("station.toml:1: TOML syntax error: "));
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
