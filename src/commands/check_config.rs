//! `cdo-inspect check-config FILE`: validate a station file and explain every error, then
//! run every start-up check of `run` short of taking the hardware (see
//! `station::preflight`), or summarise what the station will do. OK means the station
//! will start.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::bundle::Bundle;
use crate::platform::device::DeviceChoice;
use crate::config::{self, CameraSource, ConfigError, LightMode, LoadOptions, StationConfig, TriggerMode};
use crate::station::preflight::{preflight, Problem};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The station file (e.g. /etc/cdo-inspect/station.toml).
    pub file: PathBuf,
    /// Do not check that the model bundle, expert file and replay folder exist, nor run the
    /// start-up checks (model loaded, devices and folders): for a file written for another
    /// machine.
    #[arg(long)]
    pub skip_files: bool,
}

pub fn run(args: CheckConfigArgs) -> Result<i32> {
    let options = LoadOptions {
        check_files: !args.skip_files,
    };
    match config::load_with(&args.file, options) {
        Ok(station) => {
            if options.check_files {
                let problems = preflight(&station);
                if !problems.is_empty() {
                    let text = std::fs::read_to_string(&args.file).unwrap_or_default();
                    for p in &problems {
                        println!("{}", as_config_error(&args.file, &text, p));
                    }
                    let n = problems.len();
                    let plural = if n == 1 { "" } else { "s" };
                    eprintln!(
                        "{}: {n} problem{plural}: the station would not start",
                        args.file.display()
                    );
                    return Ok(1);
                }
            }
            println!("{}: OK", args.file.display());
            println!("{}", summary(&station, options.check_files));
            Ok(0)
        }
        Err(errors) => {
            println!("{errors}");
            let n = errors.errors.len();
            let plural = if n == 1 { "" } else { "s" };
            eprintln!("{}: {n} error{plural}", args.file.display());
            Ok(1)
        }
    }
}

/// A start-up problem in the style of the file's errors: `file:line: key: message`, with
/// the line of the key in the file (or of its table, for a key left at its default).
fn as_config_error(file: &Path, text: &str, p: &Problem) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: key_line(text, &p.key),
        key: p.key.clone(),
        message: p.message.clone(),
    }
}

/// The 1-based line of a dotted key (`camera.replay.folder`) in station-file text; for a
/// key not written there, the line of the deepest table of its path that is.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut found = None;
    for segment in key.split('.') {
        let Some((k, item)) = table.get_key_value(segment) else {
            break;
        };
        if let Some(span) = k.span() {
            found = Some(span.start);
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    found.map(|at| text[..at.min(text.len())].matches('\n').count() + 1)
}

/// What the station will do, in the words a technician checks against the machine.
fn summary(s: &StationConfig, bundle_checked: bool) -> String {
    let bundle = if bundle_checked {
        Bundle::load_meta(&s.model.bundle).ok()
    } else {
        None
    };
    let threshold = match (s.decision.threshold, &bundle) {
        (Some(t), _) => format!("threshold {t} (station file)"),
        (None, Some(b)) => match &b.meta.calibration {
            Some(c) => format!("threshold {} (bundle calibration)", c.threshold),
            None => "no threshold: the bundle is uncalibrated".into(),
        },
        (None, None) => "threshold: the bundle's, not read with --skip-files".into(),
    };
    let backbone = bundle
        .as_ref()
        .map(|b| format!("{}, ", b.meta.backbone))
        .unwrap_or_default();
    let geometry = match &bundle {
        Some(b) => b.meta.geometry.describe(b.meta.input_size),
        None => "the bundle's geometry, not read with --skip-files".into(),
    };
    let a = &s.alignment;
    let alignment = if a.enabled {
        format!("on: minimum confidence {}, largest move {} px", a.min_confidence, a.max_shift_px)
    } else {
        "off".to_string()
    };
    let device = match s.model.device {
        DeviceChoice::Cpu => "cpu",
        DeviceChoice::Cuda => "cuda",
    };
    let c = &s.camera;
    let camera = match c.source {
        CameraSource::V4l2 => format!(
            "{} {}x{} {} @ {} fps",
            c.device, c.width, c.height, c.format, c.fps
        ),
        CameraSource::Replay => format!(
            "replay of {}{}",
            c.replay.folder.display(),
            if c.replay.looping { ", looping" } else { "" }
        ),
    };
    let light = match (&s.light.mode, &s.light.output) {
        (LightMode::None, _) => "none".to_string(),
        (mode, Some(out)) => format!(
            "{} on {}, settle {} ms",
            if *mode == LightMode::Strobe {
                "strobe"
            } else {
                "always on"
            },
            out.line,
            s.light.settle.as_millis()
        ),
        (_, None) => "no line".to_string(),
    };
    let t = &s.trigger;
    let trigger = match (t.mode, &t.input) {
        (TriggerMode::Gpio, Some(i)) => format!(
            "part sensor on {}{}, debounce {} ms",
            i.line,
            if i.active_low { " (active low)" } else { "" },
            i.debounce.as_millis()
        ),
        (TriggerMode::Gpio, None) => "part sensor (no line)".to_string(),
        (TriggerMode::FreeRun, _) => format!("free run at {} Hz", t.rate_hz),
        (TriggerMode::Replay, _) => format!("one part per replayed frame, {} Hz", t.rate_hz),
    };
    let o = &s.outputs;
    let reject = format!(
        "{}{}, {} ms after the trigger, {} ms pulse",
        o.reject.line,
        if o.reject.active_low {
            " (active low)"
        } else {
            ""
        },
        o.reject_delay.as_millis(),
        o.reject_pulse.as_millis()
    );
    let mut lines = vec![
        format!("  station  {}", s.station.name),
        format!(
            "  model    {} ({backbone}{threshold}) on {device}",
            s.model.bundle.display()
        ),
        format!("  inspect  {geometry}, {} tiles per batch", s.model.batch),
        format!("  align    {alignment}"),
        format!("  camera   {camera}"),
        format!("  light    {light}"),
        format!("  trigger  {trigger}"),
        format!("  reject   {reject}"),
    ];
    if let Some(w) = &s.web {
        let writes = if w.reset_token.is_some() { "counter reset with the token" } else { "read-only" };
        lines.push(format!("  web      http://{}/ and /metrics ({writes})", w.listen));
    }
    if let Some(m) = &s.mqtt {
        let tls = if m.ca_file.is_some() { ", TLS" } else { "" };
        lines.push(format!("  mqtt     {}:{}{tls}, {}/parts and {}/state, QoS {}", m.host, m.port, m.topic_prefix, m.topic_prefix, m.qos));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::key_line;

    #[test]
    fn a_key_is_found_on_its_line_or_its_table_s() {
        let text = "[model]\nbundle = \"b\"\n\n[camera.replay]\nfolder = \"f\"\n\
                    [outputs]\nfault = { line = \"gpiochip0:5\" }\n";
        assert_eq!(key_line(text, "model.bundle"), Some(2));
        assert_eq!(key_line(text, "model.device"), Some(1));
        assert_eq!(key_line(text, "camera.replay.folder"), Some(5));
        assert_eq!(key_line(text, "outputs.fault.line"), Some(7));
        assert_eq!(key_line(text, "records.dir"), None);
    }
}
