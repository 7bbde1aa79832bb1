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

// The limits of every number in these sections: what a real line could have, each with
// its reason. The example file (config/station.example.toml) documents each range.

/// Camera width and height: 8192 px covers every V4L2 (USB/CSI) sensor up to 40 MP; one
/// 8192x8192 RGB frame is already 200 MB. Below 16 px nothing can be inspected.
pub(super) const FRAME_SIDE: (u32, u32) = (16, 8192);
/// Industrial cameras run up to a few hundred frames per second.
const FPS_RANGE: (u32, u32) = (1, 1000);
/// Manual exposure up to 1 s: longer blurs any part that moves.
const EXPOSURE_US: (u32, u32) = (1, 1_000_000);
/// Colour temperatures of real light sources (candle 1900 K, blue sky 10000 K).
const WHITE_BALANCE_K: (u32, u32) = (1000, 15_000);
/// A frame-grab timeout: 10 ms (a 100+ fps camera) to a minute (a long exposure on a
/// slow bus); the grab thread blocks this long at most.
const CAMERA_TIMEOUT_MS: (u32, u32) = (10, 60_000);
/// The first wait before reopening a lost camera, and the ceiling it doubles up to: at
/// most a minute, and five minutes (a camera unplugged longer needs a person anyway).
const RECONNECT_INITIAL_MS: (u32, u32) = (10, 60_000);
const RECONNECT_MAX_MS: (u32, u32) = (10, 300_000);
/// Replay test hook: frames before a stall (over a week at 1000 fps), and its length.
const STALL_AFTER: (u32, u32) = (0, 1_000_000_000);
const STALL_MS: (u32, u32) = (0, 300_000);
/// Strobe settle: LED drivers settle in microseconds to milliseconds; a second is the
/// most any light needs, and the capture stage sleeps this long for every part.
const SETTLE_MS: (u32, u32) = (0, 1000);
/// Sensor debounce: contacts bounce for a few ms; a second would merge parts.
const DEBOUNCE_MS: (u32, u32) = (0, 1000);
/// Timer and replay trigger rate: one part every 100 s to 1000 parts a second.
const RATE_HZ: (f64, f64) = (0.01, 1000.0);
/// Simulated trigger edges: within the first hour after start-up.
const INJECT_MS_MAX: i64 = 3_600_000;
/// Trigger to reject pulse: a part's travel to the rejector (conveyors move tens of cm
/// per second; a minute is a very long line). Also the deadline for the verdict.
const REJECT_DELAY_MS: (u32, u32) = (0, 60_000);
/// Pulse widths: a solenoid or air valve needs 10-500 ms; 10 s at most.
const PULSE_MS: (u32, u32) = (1, 10_000);

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
        let (lo, hi) = FRAME_SIDE;
        let width = self.u32(&s, "width", PIXELS, lo, hi).unwrap_or(1280);
        let height = self.u32(&s, "height", PIXELS, lo, hi).unwrap_or(960);
        let fps = self.u32(&s, "fps", FPS, FPS_RANGE.0, FPS_RANGE.1).unwrap_or(30);
        let format = self
            .choice(&s, "format", &["mjpeg", "yuyv", "gray", "rgb"])
            .unwrap_or("mjpeg")
            .to_string();
        let exposure_us = self.u32(&s, "exposure_us", MICROS, EXPOSURE_US.0, EXPOSURE_US.1);
        // V4L2 integer controls are 32-bit; the camera clamps to its own range.
        let gain = self.int(&s, "gain", COUNT, i32::MIN.into(), i32::MAX.into());
        let (lo, hi) = WHITE_BALANCE_K;
        let white_balance_k = self.u32(&s, "white_balance_k", KELVIN, lo, hi);
        let (lo, hi) = CAMERA_TIMEOUT_MS;
        let timeout = self
            .ms(&s, "timeout_ms", lo, hi)
            .unwrap_or(Duration::from_millis(2000));
        let (lo, hi) = RECONNECT_INITIAL_MS;
        let reconnect_initial = self.ms(&s, "reconnect_initial_ms", lo, hi);
        let (lo, hi) = RECONNECT_MAX_MS;
        let reconnect_max = self.ms(&s, "reconnect_max_ms", lo, hi);
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
            stall_after: self.u64(&s, "stall_after", FRAMES, STALL_AFTER.0, STALL_AFTER.1),
            stall_for: self
                .ms(&s, "stall_ms", STALL_MS.0, STALL_MS.1)
                .unwrap_or(Duration::ZERO),
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
            .ms(&s, "settle_ms", SETTLE_MS.0, SETTLE_MS.1)
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
            .ms(&s, "debounce_ms", DEBOUNCE_MS.0, DEBOUNCE_MS.1)
            .unwrap_or(Duration::from_millis(5));
        let (lo, hi) = RATE_HZ;
        let rate_hz = self.float(&s, "rate_hz", HERTZ, lo, hi).unwrap_or(2.0);
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
                Some(n) if (0..=INJECT_MS_MAX).contains(&n) => out.push(n as u64),
                Some(n) if n < 0 => self.push(key, line, format!("must be >= 0 ms (got {n})")),
                Some(n) => {
                    let message = format!("must be <= {INJECT_MS_MAX} ms (got {n})");
                    self.push(key, line, message);
                }
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
            .ms(&r, "delay_ms", REJECT_DELAY_MS.0, REJECT_DELAY_MS.1)
            .unwrap_or(Duration::from_millis(300));
        let reject_pulse = self
            .ms(&r, "pulse_ms", PULSE_MS.0, PULSE_MS.1)
            .unwrap_or(Duration::from_millis(100));

        let o = self.section(root, "outputs", OUTPUTS_KEYS);
        let pass_sec = self.section(&o, "outputs.pass", PASS_KEYS);
        let pass = self.optional_output(&pass_sec);
        let pass_pulse = self
            .ms(&pass_sec, "pulse_ms", PULSE_MS.0, PULSE_MS.1)
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
