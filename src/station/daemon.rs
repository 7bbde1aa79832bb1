//! Station lifecycle: open the model and hardware, start one thread per stage, hand them
//! to the supervisor (`supervisor.rs`: ready, watchdog, fault output, counters, SIGHUP
//! reload, SIGTERM drain) and report once it has stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::actuate::Actuator;
use super::archive::Archive;
use super::counters::Counters;
use super::backends::{open_camera, Gpio};
use super::boundary::DigitalOut;
use super::notify::{watchdog_interval, Notifier};
use super::part::{read_live, Heartbeat, Live, SharedLive};
use super::supervisor::{Settings, Station, Supervisor};
use super::recorder::Recorder;
use super::records::RecordLog;
use super::stages::{CaptureStage, InferStage, StageCounts, TriggerSource, TriggerStage};
use crate::infer::default_models_dir;
use crate::platform::device::open_device;
use crate::config::{LightMode, StationConfig, TriggerMode};
use crate::infer::Detector;

pub struct RunOptions {
    /// The station file, for SIGHUP reloads.
    pub config_path: Option<PathBuf>,
    /// Print one line per part on stdout (the demo).
    pub echo_parts: bool,
}

pub struct RunSummary {
    pub counters: Counters,
    pub records: PathBuf,
}

pub fn run_station(cfg: StationConfig, opts: RunOptions) -> Result<RunSummary> {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("installing signal handlers")?;

    let device = open_device(cfg.model.device)?;
    let models_dir = cfg.model.models_dir.clone().unwrap_or_else(default_models_dir);
    let detector = Detector::load(&cfg.model.bundle, cfg.model.expert.as_deref(), &models_dir, &device)
        .with_context(|| format!("loading model {}", cfg.model.bundle.display()))?;
    // The first inference allocates and initialises everything: do it before READY so
    // the first part is not late because of it.
    let size = detector.meta.input_size;
    detector
        .infer(&[image::RgbImage::new(size, size)])
        .context("warm-up inference")?;
    let calibration = detector.meta.calibration.clone();
    let calibrated = match (cfg.decision.threshold, &calibration) {
        (Some(t), _) => t,
        (None, Some(c)) => c.threshold,
        (None, None) => anyhow::bail!(
            "model {} has no calibrated threshold: set decision.threshold",
            cfg.model.bundle.display()
        ),
    };
    let live: SharedLive = Arc::new(RwLock::new(Live::from_config(&cfg, calibrated)));
    let threshold = read_live(&live).decider.threshold;
    // Overlay colours as `infer` draws them: normal mean cold, the threshold mid-scale.
    let lo = calibration.as_ref().map_or(threshold * 0.5, |c| c.mean).min(threshold * 0.5);
    let overlay_range = (lo, 2.0 * threshold - lo);

    let (camera, replay_frames) = open_camera(&cfg)?;
    let gpio = Gpio::open(&cfg, epoch)?;
    let reject = gpio.output("reject", &cfg.outputs.reject)?;
    let pass = cfg.outputs.pass.as_ref().map(|o| gpio.output("pass", o)).transpose()?;
    let ready = cfg.outputs.ready.as_ref().map(|o| gpio.output("ready", o)).transpose()?;
    let fault = cfg.outputs.fault.as_ref().map(|o| gpio.output("fault", o)).transpose()?;
    let light = match (cfg.light.mode, &cfg.light.output) {
        (LightMode::None, _) | (_, None) => None,
        (mode, Some(line)) => Some((mode, gpio.output("light", line)?)),
    };
    let (strobe, mut always_on) = match light {
        Some((LightMode::Strobe, l)) => (Some(l), None),
        Some((_, l)) => (None, Some(l)),
        None => (None, None),
    };
    if let Some(l) = always_on.as_mut() {
        l.set(true)?;
    }
    let trigger = match cfg.trigger.mode {
        TriggerMode::Gpio => {
            let input = cfg.trigger.input.as_ref().context("trigger.line is required for mode = gpio")?;
            TriggerSource::Gpio(gpio.input(input, &cfg.gpio.inject_ms)?)
        }
        TriggerMode::FreeRun => TriggerSource::FreeRun,
        TriggerMode::Replay => TriggerSource::Replay(replay_frames),
    };
    let records = RecordLog::open(&cfg.records.dir, cfg.records.max_bytes, cfg.records.keep)?;
    let records_path = records.path();
    let archive = if cfg.archive.rejects || cfg.archive.pass_every > 0 {
        Some(Archive::open(&cfg.archive.dir, cfg.archive.max_files, cfg.archive.max_bytes).map_err(anyhow::Error::msg)?)
    } else {
        None
    };

    log::info!(
        "station {}: model {} ({}, threshold {threshold:.5}), camera {}, trigger {:?}, reject {} after {} ms for {} ms",
        cfg.station.name,
        cfg.model.bundle.display(),
        detector.meta.backbone,
        camera.describe(),
        cfg.trigger.mode,
        cfg.outputs.reject.line,
        cfg.outputs.reject_delay.as_millis(),
        cfg.outputs.reject_pulse.as_millis(),
    );

    // Wiring: trigger → capture → infer → actuator → recorder.
    let depth = cfg.pipeline.queue_depth;
    let (to_capture, capture_in) = crossbeam_channel::bounded(depth);
    let (to_infer, infer_in) = crossbeam_channel::bounded(depth);
    let (to_actuator, actuator_in) = crossbeam_channel::unbounded();
    let (to_recorder, recorder_in) = crossbeam_channel::unbounded();
    let counts = Arc::new(StageCounts::default());
    let counters = Arc::new(Mutex::new(Counters::default()));
    let abort = Arc::new(AtomicBool::new(false));
    let gpio_errors = Arc::new(AtomicU64::new(0));
    let beat = |name| Heartbeat::new(name, epoch);
    let beats = [beat("trigger"), beat("capture"), beat("infer"), beat("actuator"), beat("recorder")];
    for b in &beats {
        b.beat();
    }

    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| -> Result<JoinHandle<()>> {
        std::thread::Builder::new().name(name.into()).spawn(f).context("starting a stage thread")
    };
    let recorder = Recorder {
        station: cfg.station.name.clone(),
        log: records,
        archive,
        archive_rejects: cfg.archive.rejects,
        archive_pass_every: cfg.archive.pass_every,
        overlay_range,
        inbox: recorder_in,
        counters: counters.clone(),
        heartbeat: beats[4].clone(),
        echo: opts.echo_parts,
    };
    let recorder_thread = spawn("recorder", Box::new(move || recorder.run()))?;
    let actuator = Actuator {
        reject,
        pass,
        live: live.clone(),
        inbox: actuator_in,
        recorder: to_recorder,
        heartbeat: beats[3].clone(),
        abort: abort.clone(),
        gpio_errors: gpio_errors.clone(),
    };
    spawn("actuator", Box::new(move || actuator.run()))?;
    let infer = InferStage {
        detector,
        live: live.clone(),
        inbox: infer_in,
        to_actuator: to_actuator.clone(),
        counts: counts.clone(),
        heartbeat: beats[2].clone(),
    };
    spawn("infer", Box::new(move || infer.run()))?;
    let capture = CaptureStage {
        camera,
        strobe,
        live: live.clone(),
        inbox: capture_in,
        to_infer,
        to_actuator: to_actuator.clone(),
        counts: counts.clone(),
        heartbeat: beats[1].clone(),
        reconnect_initial: cfg.camera.reconnect_initial,
        reconnect_max: cfg.camera.reconnect_max,
    };
    spawn("capture", Box::new(move || capture.run()))?;
    let trigger = TriggerStage {
        source: trigger,
        live: live.clone(),
        to_capture,
        to_actuator,
        stop: stop.clone(),
        counts: counts.clone(),
        heartbeat: beats[0].clone(),
    };
    let trigger_thread = spawn("trigger", Box::new(move || trigger.run()))?;

    // Ready: model loaded, camera and GPIO open, every stage running. The supervisor runs
    // the station from here until it has stopped.
    let notifier = Notifier::from_env();
    let settings = Settings {
        station: cfg.station.name.clone(),
        watchdog: watchdog_interval(),
        status: notifier.active(),
        stall_timeout: cfg.pipeline.stall_timeout,
        drain_timeout: cfg.pipeline.drain_timeout,
    };
    let mut station = Running {
        cfg: &cfg,
        config_path: &opts.config_path,
        calibrated: calibration.as_ref().map(|c| c.threshold),
        live,
        stop,
        hup,
        abort,
        recorder_thread,
        trigger_thread,
        beats,
        counts,
        counters,
        gpio_errors,
        notifier,
        ready,
        fault,
    };
    Supervisor::start(settings, Instant::now(), &mut station).run(&mut station);

    set_line(&mut station.ready, false);
    set_line(&mut always_on, false);
    let counters = station.counters();
    log::info!("station {} stopped; counters: {counters}", cfg.station.name);
    Ok(RunSummary { counters, records: records_path })
}

/// The running station as the supervisor sees and drives it: the stage threads, the flags
/// they watch, the ready and fault outputs and the notify socket.
struct Running<'a> {
    cfg: &'a StationConfig,
    config_path: &'a Option<PathBuf>,
    calibrated: Option<f32>,
    live: SharedLive,
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    recorder_thread: JoinHandle<()>,
    trigger_thread: JoinHandle<()>,
    beats: [Arc<Heartbeat>; 5],
    counts: Arc<StageCounts>,
    counters: Arc<Mutex<Counters>>,
    gpio_errors: Arc<AtomicU64>,
    notifier: Notifier,
    ready: Option<Box<dyn DigitalOut>>,
    fault: Option<Box<dyn DigitalOut>>,
}

impl Station for Running<'_> {
    fn recorder_finished(&self) -> bool {
        self.recorder_thread.is_finished()
    }

    fn take_reload_request(&mut self) -> bool {
        self.hup.swap(false, Ordering::Relaxed)
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.trigger_thread.is_finished()
    }

    fn silences(&self) -> Vec<(&'static str, Duration)> {
        self.beats.iter().map(|b| (b.name, b.silent_for())).collect()
    }

    fn camera_down(&self) -> bool {
        self.counts.camera_down.load(Ordering::Relaxed)
    }

    fn counters_every(&self) -> Duration {
        read_live(&self.live).counters_every
    }

    /// The recorder's counters with the stages' own.
    fn counters(&self) -> Counters {
        let counts = &self.counts;
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        c.missed = counts.missed.load(Ordering::Relaxed);
        c.skipped = counts.skipped.load(Ordering::Relaxed);
        c.errors += counts.capture_errors.load(Ordering::Relaxed)
            + counts.infer_errors.load(Ordering::Relaxed)
            + self.gpio_errors.load(Ordering::Relaxed);
        c.camera_reconnects = counts.camera_reconnects.load(Ordering::Relaxed);
        c
    }

    fn reload(&mut self) {
        reload(self.config_path, self.cfg, &self.live, self.calibrated);
    }

    fn stop_triggers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn abort_in_flight(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    fn notify(&mut self, state: &str) {
        self.notifier.send(state);
    }

    fn set_ready(&mut self, on: bool) {
        set_line(&mut self.ready, on);
    }

    fn set_fault(&mut self, on: bool) {
        set_line(&mut self.fault, on);
    }

    /// Logged from here, so the lines keep this module as their target.
    fn log(&mut self, level: log::Level, message: &str) {
        log::log!(level, "{message}");
    }
}

fn set_line(line: &mut Option<Box<dyn DigitalOut>>, on: bool) {
    if let Some(l) = line.as_mut() {
        if let Err(e) = l.set(on) {
            log::error!("{e}");
        }
    }
}

/// SIGHUP: re-read the station file; apply decision and timing settings from the next
/// part; keep the old settings when the new file is invalid.
fn reload(path: &Option<PathBuf>, cfg: &StationConfig, live: &SharedLive, calibrated: Option<f32>) {
    let Some(path) = path else {
        log::warn!("SIGHUP: no station file to reload");
        return;
    };
    match crate::config::load(path) {
        Ok(new) => {
            let restart = crate::config::changes_needing_restart(cfg, &new);
            if !restart.is_empty() {
                log::warn!(
                    "{}: changed but needs a restart: {}",
                    path.display(),
                    restart.join(", ")
                );
            }
            let threshold = new.decision.threshold.or(calibrated).unwrap_or(read_live(live).decider.threshold);
            *live.write().unwrap_or_else(|p| p.into_inner()) = Live::from_config(&new, threshold);
            log::info!("{}: reloaded; decision and timing apply from the next part", path.display());
        }
        Err(errors) => {
            log::error!("{}: reload refused, keeping the running settings:\n{errors}", path.display());
        }
    }
}
