//! `cdo-inspect check-config FILE`: validate a station file and explain every error, or
//! summarise what the station will do.

use std::path::PathBuf;

use anyhow::Result;

use crate::bundle::Bundle;
use crate::platform::device::DeviceChoice;
use crate::config::{self, CameraSource, LightMode, LoadOptions, StationConfig, TriggerMode};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The station file (e.g. /etc/cdo-inspect/station.toml).
    pub file: PathBuf,
    /// Do not check that the model bundle, expert file and replay folder exist (for a file
    /// written for another machine).
    #[arg(long)]
    pub skip_files: bool,
}

pub fn run(args: CheckConfigArgs) -> Result<i32> {
    let options = LoadOptions {
        check_files: !args.skip_files,
    };
    match config::load_with(&args.file, options) {
        Ok(station) => {
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
    [
        format!("  station  {}", s.station.name),
        format!(
            "  model    {} ({backbone}{threshold}) on {device}",
            s.model.bundle.display()
        ),
        format!("  camera   {camera}"),
        format!("  light    {light}"),
        format!("  trigger  {trigger}"),
        format!("  reject   {reject}"),
    ]
    .join("\n")
}
