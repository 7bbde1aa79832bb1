//! The span-aware typed reader under every section of the station file: its errors
//! ([`ConfigError`], [`ConfigErrors`]), its tables ([`Section`]) with unknown-key checks
//! and did-you-mean, and typed getters that give every problem the line it is on.
//!
//! A getter records an error and returns `None` for a bad value, so the caller falls back
//! to its default and reading goes on. What the station file's sections are, and their
//! keys, is `super::sections`; this file knows only how to read a value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::schema::OutputLine;
use crate::text::did_you_mean;
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

pub(super) const MIB: u64 = 1024 * 1024;

/// What an integer or number means, for "expected ..." and range messages.
#[derive(Clone, Copy)]
pub(super) struct Unit {
    what: &'static str,
    sym: &'static str,
    /// Said after a range message, why the range is what it is ("" for none).
    why: &'static str,
}

pub(super) const MS: Unit = Unit {
    what: "an integer number of milliseconds",
    sym: " ms",
    why: "",
};
pub(super) const SECONDS: Unit = Unit {
    what: "an integer number of seconds",
    sym: " s",
    why: "",
};
pub(super) const MICROS: Unit = Unit {
    what: "an integer number of microseconds",
    sym: " µs",
    why: "",
};
pub(super) const PIXELS: Unit = Unit {
    what: "an integer number of pixels",
    sym: " px",
    why: "",
};
pub(super) const FPS: Unit = Unit {
    what: "an integer number of frames per second",
    sym: " fps",
    why: "",
};
pub(super) const FRAMES: Unit = Unit {
    what: "an integer number of frames",
    sym: " frames",
    why: "",
};
pub(super) const KELVIN: Unit = Unit {
    what: "an integer number of kelvin",
    sym: " K",
    why: "",
};
pub(super) const MEBIBYTES: Unit = Unit {
    what: "an integer number of MiB",
    sym: " MiB",
    why: "",
};
pub(super) const COUNT: Unit = Unit {
    what: "an integer",
    sym: "",
    why: "",
};
pub(super) const SCORE: Unit = Unit {
    what: "a number (an anomaly score)",
    sym: "",
    why: "; an anomaly score lies in [0, 2]",
};
pub(super) const TILES: Unit = Unit {
    what: "an integer number of tiles",
    sym: " tiles",
    why: "",
};
pub(super) const CONFIDENCE: Unit = Unit {
    what: "a number (an alignment confidence)",
    sym: "",
    why: "; an alignment confidence lies in [0, 1]",
};
pub(super) const HERTZ: Unit = Unit {
    what: "a number of hertz",
    sym: " Hz",
    why: "",
};
pub(super) const MM2: Unit = Unit {
    what: "a number of square millimetres",
    sym: " mm²",
    why: "",
};
pub(super) const MM_PER_PX: Unit = Unit {
    what: "a number of millimetres per pixel",
    sym: " mm/px",
    why: "",
};

/// A table of the file (possibly absent: then every key takes its default).
#[derive(Clone, Copy)]
pub(super) struct Section<'d> {
    /// Dotted path, "" for the root.
    pub(super) name: &'static str,
    pub(super) table: Option<&'d dyn TableLike>,
    /// Line of the table's header (or of its key, for an inline or dotted table).
    pub(super) line: Option<usize>,
}

impl<'d> Section<'d> {
    pub(super) fn get(&self, key: &str) -> Option<&'d Item> {
        self.table.and_then(|t| t.get(key)).filter(|i| !i.is_none())
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }
}

/// Where a GPIO line was used, to catch the same line given twice.
pub(super) struct LineUse {
    pub(super) spec: LineSpec,
    /// The dotted key that named it.
    pub(super) key: String,
    pub(super) line: Option<usize>,
}

/// Every table of a file and its keys, to say where a key put in the wrong table belongs.
pub(super) type Tables = &'static [(&'static str, &'static [&'static str])];

pub(super) struct Reader<'a> {
    file: &'a Path,
    /// Relative paths in the file are relative to its folder.
    pub(super) base: PathBuf,
    line_starts: Vec<usize>,
    /// Check that the files and folders named exist.
    pub(super) check_files: bool,
    tables: Tables,
    pub(super) errors: Vec<ConfigError>,
    /// Every GPIO line read so far, for the cross-section check that none is used twice.
    pub(super) lines: Vec<LineUse>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &str, file: &'a Path, check_files: bool, tables: Tables) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            base: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            line_starts,
            check_files,
            tables,
            errors: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// The station file being read.
    pub(super) fn file(&self) -> &Path {
        self.file
    }

    pub(super) fn line_at(&self, offset: usize) -> Option<usize> {
        Some(self.line_starts.partition_point(|&s| s <= offset))
    }

    /// The line of a key's value, else of the key, else of its table.
    pub(super) fn line_of(&self, sec: &Section, key: &str) -> Option<usize> {
        let value = sec.get(key).and_then(|i| i.span());
        let key_span = || sec.table.and_then(|t| t.key(key)).and_then(|k| k.span());
        value
            .or_else(key_span)
            .and_then(|s| self.line_at(s.start))
            .or(sec.line)
    }

    pub(super) fn push(&mut self, key: String, line: Option<usize>, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            key,
            message,
        });
    }

    pub(super) fn err(&mut self, sec: &Section, key: &str, message: String) {
        let line = self.line_of(sec, key);
        self.push(sec.path(key), line, message);
    }

    pub(super) fn finish_errors(mut self) -> ConfigErrors {
        // Stable: errors on one line keep the order they were found in.
        self.errors.sort_by_key(|e| (e.line.is_none(), e.line));
        ConfigErrors {
            errors: self.errors,
        }
    }

    // --- tables -------------------------------------------------------------------------

    /// The sub-table `full` (a dotted path whose last part is a key of `parent`).
    pub(super) fn section<'d>(
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

    pub(super) fn unknown_keys(&mut self, sec: &Section, known: &[&str]) {
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
            let homes: Vec<String> = self
                .tables
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

    pub(super) fn value<'d>(&mut self, sec: &Section<'d>, key: &str, expected: &str) -> Option<&'d Value> {
        let item = sec.get(key)?;
        if item.as_value().is_none() {
            self.wrong_type(sec, key, expected, item);
        }
        item.as_value()
    }

    pub(super) fn wrong_type(&mut self, sec: &Section, key: &str, expected: &str, got: &Item) {
        let got = describe(got);
        self.err(sec, key, format!("expected {expected}, got {got}"));
    }

    pub(super) fn string(&mut self, sec: &Section, key: &str, expected: &str) -> Option<String> {
        let v = self.value(sec, key, expected)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong_type(sec, key, expected, &Item::Value(v.clone()));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, sec: &Section, key: &str) -> Option<bool> {
        let expected = "true or false";
        let v = self.value(sec, key, expected)?;
        if v.as_bool().is_none() {
            self.wrong_type(sec, key, expected, &Item::Value(v.clone()));
        }
        v.as_bool()
    }

    /// An integer in `min..=max`.
    pub(super) fn int(&mut self, sec: &Section, key: &str, unit: Unit, min: i64, max: i64) -> Option<i64> {
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
                self.err(sec, key, format!("{message}{}", unit.why));
                None
            }
            None => Some(n),
        }
    }

    pub(super) fn u32(&mut self, sec: &Section, key: &str, unit: Unit, min: u32, max: u32) -> Option<u32> {
        self.int(sec, key, unit, min.into(), max.into())
            .map(|n| n as u32)
    }

    pub(super) fn u64(&mut self, sec: &Section, key: &str, unit: Unit, min: u32, max: u32) -> Option<u64> {
        self.int(sec, key, unit, min.into(), max.into()).map(|n| n as u64)
    }

    /// Milliseconds in `min..=max`, as a duration.
    pub(super) fn ms(&mut self, sec: &Section, key: &str, min: u32, max: u32) -> Option<Duration> {
        self.u64(sec, key, MS, min, max).map(Duration::from_millis)
    }

    /// A size in MiB in `1..=max`, as bytes.
    pub(super) fn mib(&mut self, sec: &Section, key: &str, max: u32) -> Option<u64> {
        self.int(sec, key, MEBIBYTES, 1, max.into())
            .map(|n| n as u64 * MIB)
    }

    /// A finite number in `min..=max` (integers accepted).
    pub(super) fn float(&mut self, sec: &Section, key: &str, unit: Unit, min: f64, max: f64) -> Option<f64> {
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
        let sym = unit.sym;
        let problem = if x < min {
            Some(format!("must be >= {}{sym} (got {})", number(min), number(x)))
        } else if x > max {
            Some(format!("must be <= {}{sym} (got {})", number(max), number(x)))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.err(sec, key, format!("{message}{}", unit.why));
                None
            }
            None => Some(x),
        }
    }

    /// [`Self::float`] as an f32 (scores are f32; the range must fit one).
    pub(super) fn f32(&mut self, sec: &Section, key: &str, unit: Unit, min: f32, max: f32) -> Option<f32> {
        self.float(sec, key, unit, min.into(), max.into())
            .map(|x| x as f32)
    }

    pub(super) fn choice(
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

    pub(super) fn path(&mut self, sec: &Section, key: &str) -> Option<PathBuf> {
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

    pub(super) fn gpio_line(&mut self, sec: &Section, key: &str) -> Option<LineSpec> {
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
    pub(super) fn output_line(&mut self, sec: &Section, required: Option<String>) -> Option<OutputLine> {
        let line = self.gpio_line(sec, "line");
        let active_low = self.boolean(sec, "active_low").unwrap_or(false);
        if let (Some(why), false) = (required, sec.has("line")) {
            self.err(sec, "line", format!("required {why}"));
        }
        line.map(|line| OutputLine { line, active_low })
    }

    pub(super) fn check_dir(&mut self, sec: &Section, key: &str, dir: &Path) {
        if self.check_files && !dir.is_dir() {
            self.err(sec, key, format!("no such folder: {}", dir.display()));
        }
    }

    pub(super) fn check_file(&mut self, sec: &Section, key: &str, file: &Path) {
        if self.check_files && !file.is_file() {
            self.err(sec, key, format!("no such file: {}", file.display()));
        }
    }
}

/// A number as a technician would write it: `0.01`, `1000`, but `1e-300` rather than
/// three hundred zeros.
fn number(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-6..1e15).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// "a string (\"300 ms\")", "an integer", "a table": what a technician wrote.
pub(super) fn describe(item: &Item) -> String {
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
    use crate::config::testing::{assert_cases, errors, Expected, BASE, NO_FILES};

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
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
                &[(Some(6), "trigger.rate_hz", "must be >= 0.01 Hz (got 0)")],
            ),
            (
                "a delay no line has: no pulse would ever fire",
                format!("{BASE}delay_ms = 9223372036854775807\n"),
                &[(
                    Some(5),
                    "reject.delay_ms",
                    "must be <= 60000 ms (got 9223372036854775807)",
                )],
            ),
            (
                "a rate whose period overflows a Duration",
                format!("{BASE}[trigger]\nrate_hz = 1e-300\n"),
                &[(Some(6), "trigger.rate_hz", "must be >= 0.01 Hz (got 1e-300)")],
            ),
            (
                "a rate no trigger reaches",
                format!("{BASE}[trigger]\nrate_hz = 1e300\n"),
                &[(Some(6), "trigger.rate_hz", "must be <= 1000 Hz (got 1e300)")],
            ),
            (
                "a threshold no score reaches: every part would pass",
                format!("{BASE}[decision]\nthreshold = 1e30\n"),
                &[(
                    Some(6),
                    "decision.threshold",
                    "must be <= 2 (got 1e30); an anomaly score lies in [0, 2]",
                )],
            ),
            (
                "a negative pixel threshold",
                format!("{BASE}[decision]\npixel_threshold = -0.5\n"),
                &[(
                    Some(6),
                    "decision.pixel_threshold",
                    "must be >= 0 (got -0.5); an anomaly score lies in [0, 2]",
                )],
            ),
            (
                "queue depth 0",
                format!("{BASE}[pipeline]\nqueue_depth = 0\n"),
                &[(Some(6), "pipeline.queue_depth", "must be > 0 (got 0)")],
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
                "two errors in one file, both reported in file order",
                format!("{BASE}pulse_ms = 0\n[camera]\nwidth = 0\n"),
                &[
                    (Some(5), "reject.pulse_ms", "must be > 0 ms (got 0)"),
                    (Some(7), "camera.width", "must be >= 16 px (got 0)"),
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
        ];
        assert_cases(cases);
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
}
