//! The station's hardware sections: `[camera]` (and `[camera.replay]`), `[light]`,
//! `[trigger]`, `[gpio]`, `[reject]` and `[outputs]`.

use std::time::Duration;

use toml_edit::Item;

use crate::config::reader::{
    describe, Reader, Section, COUNT, FPS, FRAMES, HERTZ, KELVIN, MICROS, PIXELS,
};
use crate::config::schema::*;
use crate::config::LineSpec;

pub(super) const CAMERA_KEYS: &[&str] = &[
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
pub(super) const REPLAY_KEYS: &[&str] = &["folder", "loop", "stall_after", "stall_ms"];
pub(super) const LIGHT_KEYS: &[&str] = &["mode", "line", "active_low", "settle_ms"];
pub(super) const TRIGGER_KEYS: &[&str] = &["mode", "line", "active_low", "debounce_ms", "rate_hz"];
pub(super) const GPIO_KEYS: &[&str] = &["backend", "edge_log", "inject_ms"];
pub(super) const REJECT_KEYS: &[&str] = &["line", "active_low", "delay_ms", "pulse_ms"];
pub(super) const OUTPUTS_KEYS: &[&str] = &["pass", "ready", "fault"];
pub(super) const PASS_KEYS: &[&str] = &["line", "active_low", "pulse_ms"];
pub(super) const SIGNAL_KEYS: &[&str] = &["line", "active_low"];

impl Reader<'_> {
    pub(in crate::config) fn camera(&mut self, root: &Section) -> CameraConfig {
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

    pub(in crate::config) fn light(&mut self, root: &Section) -> LightConfig {
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

    pub(in crate::config) fn trigger(&mut self, root: &Section, source: CameraSource) -> TriggerConfig {
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

    pub(in crate::config) fn gpio(&mut self, root: &Section) -> GpioConfig {
        let s = self.section(root, "gpio", GPIO_KEYS);
        let chosen = self.choice(&s, "backend", &["cdev", "simulated"]);
        let backend = match chosen {
            Some("simulated") => GpioBackend::Simulated,
            _ => GpioBackend::Cdev,
        };
        let edge_log = self.path(&s, "edge_log");
        let inject_ms = self.inject_ms(&s);
        // `backend` alone picks the backend: a simulator-only key never turns a station's
        // GPIO into a simulation (its reject actuator would silently stop firing). With
        // "cdev", set or by default, each such key is an error that says so; a bad backend
        // has its own error already.
        let bad_backend = s.has("backend") && chosen.is_none();
        if backend != GpioBackend::Simulated && !bad_backend {
            let why = if s.has("backend") {
                let at = self
                    .line_of(&s, "backend")
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                format!("gpio.backend is \"cdev\"{at}")
            } else {
                "gpio.backend is not set, so it is \"cdev\"".to_string()
            };
            for key in ["edge_log", "inject_ms"] {
                if s.has(key) {
                    let message = format!("only used with gpio.backend = \"simulated\"; {why}");
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

    pub(in crate::config) fn outputs(&mut self, root: &Section) -> OutputsConfig {
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::schema::GpioBackend;
    use crate::config::testing::{assert_cases, Expected, BASE, NO_FILES};
    use crate::config::parse_with;

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
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
                "an optional output without its line",
                format!("{BASE}[outputs.fault]\nactive_low = true\n"),
                &[(
                    Some(5),
                    "outputs.fault.line",
                    "required when [outputs.fault] is present",
                )],
            ),
        ];
        assert_cases(cases);
    }

    /// `gpio.backend` alone picks the backend: the simulator's own keys never switch to
    /// it, and with "cdev" (set or by default) each is an error at its own line that says
    /// where the backend was chosen. A misspelt backend gets one error, its own.
    #[test]
    fn gpio_backend_alone_picks_the_simulated_backend() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "edge log with gpio.backend = \"cdev\" set",
                format!("{BASE}[gpio]\nbackend = \"cdev\"\nedge_log = \"edges.log\"\n"),
                &[(
                    Some(7),
                    "gpio.edge_log",
                    "only used with gpio.backend = \"simulated\"; gpio.backend is \"cdev\" (line 6)",
                )],
            ),
            (
                "both simulator keys with gpio.backend left out",
                format!("{BASE}[gpio]\nedge_log = \"edges.log\"\ninject_ms = [100]\n"),
                &[
                    (
                        Some(6),
                        "gpio.edge_log",
                        "only used with gpio.backend = \"simulated\"; gpio.backend is not set, so it is \"cdev\"",
                    ),
                    (
                        Some(7),
                        "gpio.inject_ms",
                        "gpio.backend is not set, so it is \"cdev\"",
                    ),
                ],
            ),
            (
                "a misspelt backend is its own one error",
                format!("{BASE}[gpio]\nbackend = \"simulate\"\nedge_log = \"edges.log\"\n"),
                &[(
                    Some(6),
                    "gpio.backend",
                    "got \"simulate\"; did you mean \"simulated\"?",
                )],
            ),
        ];
        assert_cases(cases);

        let simulated = format!("{BASE}[gpio]\nbackend = \"simulated\"\nedge_log = \"edges.log\"\n");
        let c = parse_with(&simulated, Path::new("/st/station.toml"), NO_FILES).unwrap();
        assert_eq!(c.gpio.backend, GpioBackend::Simulated);
        assert_eq!(c.gpio.edge_log.as_deref(), Some(Path::new("/st/edges.log")));
        let unset = parse_with(BASE, Path::new("station.toml"), NO_FILES).unwrap();
        assert_eq!(unset.gpio.backend, GpioBackend::Cdev);
    }
}
