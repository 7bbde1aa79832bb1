//! How the process runs: `[station]` (its name), `[logging]` and `[pipeline]`.

use std::time::Duration;

use crate::config::reader::{Reader, Section, COUNT, SECONDS};
use crate::config::schema::*;
use crate::text::did_you_mean;

pub(super) const STATION_KEYS: &[&str] = &["name"];
pub(super) const LOGGING_KEYS: &[&str] = &["level", "counters_every_s"];
pub(super) const PIPELINE_KEYS: &[&str] = &[
    "queue_depth",
    "drain_timeout_ms",
    "stall_timeout_ms",
    "inject_infer_delay_ms",
];

impl Reader<'_> {
    pub(in crate::config) fn station(&mut self, root: &Section) -> StationInfo {
        let s = self.section(root, "station", STATION_KEYS);
        let name = self
            .string(&s, "name", "a string")
            .unwrap_or_else(|| "station".into());
        if name.trim().is_empty() {
            self.err(&s, "name", "must not be empty".into());
        }
        StationInfo { name }
    }

    pub(in crate::config) fn logging(&mut self, root: &Section) -> LoggingConfig {
        let s = self.section(root, "logging", LOGGING_KEYS);
        let expected = "a log level (\"info\") or filter (\"info,cdo_inspect=debug\")";
        let level = self
            .string(&s, "level", expected)
            .unwrap_or_else(|| "info".into());
        if let Err(message) = check_log_filter(&level) {
            self.err(&s, "level", message);
        }
        // Once a second to once a day.
        let counters_every = self
            .u64(&s, "counters_every_s", SECONDS, 1, 86_400)
            .unwrap_or(60);
        LoggingConfig {
            level,
            counters_every: Duration::from_secs(counters_every),
        }
    }

    pub(in crate::config) fn pipeline(&mut self, root: &Section) -> PipelineConfig {
        let s = self.section(root, "pipeline", PIPELINE_KEYS);
        PipelineConfig {
            // Each waiting part holds a frame (up to 200 MB at 8192x8192): a few are
            // enough to ride out a slow inference, 256 is far beyond any real line.
            queue_depth: self.int(&s, "queue_depth", COUNT, 1, 256).unwrap_or(4) as usize,
            // Up to 5 minutes: systemd kills a service that takes longer to stop
            // (TimeoutStopSec) whatever this says.
            drain_timeout: self
                .ms(&s, "drain_timeout_ms", 0, 300_000)
                .unwrap_or(Duration::from_secs(10)),
            // At least two supervisor ticks (50 ms each), at most 5 minutes.
            stall_timeout: self
                .ms(&s, "stall_timeout_ms", 100, 300_000)
                .unwrap_or(Duration::from_secs(5)),
            // Test hook: up to a minute per inference.
            inject_infer_delay: self
                .ms(&s, "inject_infer_delay_ms", 0, 60_000)
                .unwrap_or_default(),
        }
    }
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

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_cases, Expected, BASE};

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "a misspelt log level",
                format!("{BASE}[logging]\nlevel = \"inf\"\n"),
                &[(Some(6), "logging.level", "did you mean \"info\"?")],
            ),
        ];
        assert_cases(cases);
    }
}
