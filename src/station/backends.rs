//! Opens the station's hardware from its file: the camera (V4L2 or replay), the GPIO
//! lines (character device or simulated) with their polarity. The one place that knows
//! which backend is in use.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::boundary::{DigitalIn, DigitalOut, FrameSource, LineSpec};
use super::replay::ReplaySource;
use super::sim_gpio::SimGpio;
use crate::config::{CameraSource, GpioBackend, InputLine, OutputLine, StationConfig};

/// The camera, and for a replay that plays once, how many frames it holds (the replay
/// trigger stops after that many parts).
pub fn open_camera(cfg: &StationConfig) -> Result<(Box<dyn FrameSource>, Option<usize>)> {
    let c = &cfg.camera;
    match c.source {
        CameraSource::Replay => {
            let r = &c.replay;
            let src = ReplaySource::open(&r.folder, r.looping, r.stall_after, r.stall_for, c.timeout)?;
            let frames = (!r.looping).then(|| src.len());
            Ok((Box::new(src), frames))
        }
        CameraSource::V4l2 => Ok((open_v4l2(cfg)?, None)),
    }
}

#[cfg(feature = "camera")]
fn open_v4l2(cfg: &StationConfig) -> Result<Box<dyn FrameSource>> {
    use super::camera_v4l::{open, CameraSettings};
    let c = &cfg.camera;
    let settings = CameraSettings {
        device: c.device.clone(),
        width: c.width,
        height: c.height,
        fps: c.fps,
        format: c
            .format
            .parse()
            .map_err(|e| anyhow::anyhow!("camera.format: {e}"))?,
        exposure_us: c.exposure_us,
        gain: c.gain,
        white_balance_k: c.white_balance_k,
        timeout: c.timeout,
    };
    Ok(open(&settings)?)
}

#[cfg(not(feature = "camera"))]
fn open_v4l2(_cfg: &StationConfig) -> Result<Box<dyn FrameSource>> {
    anyhow::bail!("camera.source = \"v4l2\", but this binary was built without the `camera` feature")
}

/// The station's GPIO, one backend for all lines: the simulator exactly when
/// `gpio.backend = "simulated"` (the only key that picks it), else the character device.
pub struct Gpio {
    sim: Option<SimGpio>,
}

impl Gpio {
    pub fn open(cfg: &StationConfig, epoch: Instant) -> Result<Self> {
        let sim = match cfg.gpio.backend {
            GpioBackend::Simulated => Some(SimGpio::new(epoch, cfg.gpio.edge_log.as_deref())?),
            GpioBackend::Cdev => None,
        };
        Ok(Gpio { sim })
    }

    pub fn output(&self, role: &str, out: &OutputLine) -> Result<Box<dyn DigitalOut>> {
        match &self.sim {
            Some(sim) => Ok(sim.output(role, &out.line, out.active_low)),
            None => cdev_output(role, &out.line, out.active_low),
        }
    }

    /// The trigger input. Simulated inputs replay `gpio.inject_ms`.
    pub fn input(&self, input: &InputLine, inject: &[u64]) -> Result<Box<dyn DigitalIn>> {
        match &self.sim {
            Some(sim) => {
                let (line, tx) = sim.input(&input.line);
                sim.inject_pulses(&input.line, tx, inject.iter().map(|&ms| Duration::from_millis(ms)).collect());
                Ok(line)
            }
            None => cdev_input(&input.line, input.active_low, input.debounce),
        }
    }
}

fn cdev_output(role: &str, line: &LineSpec, active_low: bool) -> Result<Box<dyn DigitalOut>> {
    super::gpio_cdev::open_output(line, active_low, &format!("cdo-inspect {role}"))
        .with_context(|| format!("opening the {role} output"))
}

fn cdev_input(line: &LineSpec, active_low: bool, debounce: Duration) -> Result<Box<dyn DigitalIn>> {
    super::gpio_cdev::open_input(line, active_low, debounce, "cdo-inspect trigger")
        .context("opening the trigger input")
}
