//! Station lifecycle: open the model and hardware, account for the parts the last run
//! left unrecorded (`journal.rs`), start one thread per stage, hand them to the supervisor
//! (`supervisor.rs`: ready, watchdog, fault output, counters, SIGHUP reload, SIGTERM
//! drain, dead stages) and report once it has stopped.
//!
//! How a run ends: `Ok` after a clean stop (every part recorded); otherwise, after the
//! station has stopped, an error [`StationFailed`] (the process exits non-zero, so that
//! systemd's `Restart=on-failure` restarts it): a stage died (panicked or ended unasked;
//! the fault output is left raised), a stage did not stop within the drain timeout and
//! its grace, or records were still unwritten at the end (their parts stay in the
//! journal and get a record at the next start).

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
use super::identity::{file_sha256, model_sha256, RunIdentity, VERSION};
use super::journal::{self, Journal};
use super::notify::{watchdog_interval, Notifier};
use super::lock::StationLock;
use super::part::{read_live, Heartbeat, Live, SharedLive};
use super::outside::{Identity, Outside, Shared};
use super::preflight;
use super::supervisor::{Ended, Settings, Station, Supervisor};
use super::recorder::Recorder;
use super::records::{record_text, RecordLog, RecordsHealth};
use super::stages::{CaptureStage, InferStage, StageCounts, TriggerSource, TriggerStage};
use crate::config::{LightMode, StationConfig, TriggerMode};
use crate::text::{escape_controls, for_log};

/// Exit status for a stage that died (EX_SOFTWARE).
pub const EXIT_STAGE_FAILED: i32 = 70;
/// Exit status for records still unwritten at the end (EX_IOERR).
pub const EXIT_RECORDS_UNWRITTEN: i32 = 74;
/// Exit status for a stage that did not stop in time (EX_TEMPFAIL).
pub const EXIT_GAVE_UP: i32 = 75;

/// A run that ended in error, after the station stopped: why (control characters
/// escaped), and the exit status it asks for. Returned as the error of [`run_station`];
/// `main` exits 1 on any error, which is enough for `Restart=on-failure`, and a caller
/// that wants the distinct status downcasts to this type.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StationFailed {
    pub code: i32,
    pub message: String,
}

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

    // One daemon per station, decided before anything touches the records.
    let _lock = StationLock::acquire(&cfg.records.dir)?;
    // The start-up checks `check-config` runs, so that its OK means this start succeeds;
    // they load the model and run its first inference (which allocates and initialises
    // everything, so the first part is not late because of it).
    let checked = preflight::check(&cfg);
    if !checked.problems.is_empty() {
        let list: Vec<String> = checked.problems.iter().map(|p| format!("  {}", escape_controls(&p.to_string()))).collect();
        anyhow::bail!("the station cannot start:\n{}", list.join("\n"));
    }
    let detector = checked.detector.context("the start-up checks loaded no model")?;
    let aligner = checked.aligner;
    // What every record says the parts were inspected with. The model is hashed once,
    // as loaded (a bundle is replaced whole, by a rename, never changed in place).
    let run_identity = RunIdentity {
        model_sha256: model_sha256(&cfg.model.bundle)
            .with_context(|| format!("hashing model {}", cfg.model.bundle.display()))?,
        station_sha256: opts
            .config_path
            .as_deref()
            .map(|p| file_sha256(p).with_context(|| format!("hashing {}", p.display())))
            .transpose()?,
        version: VERSION.to_string(),
    };
    let calibration = detector.meta.calibration.clone();
    let calibrated = match (cfg.decision.threshold, &calibration) {
        (Some(t), _) => t,
        (None, Some(c)) => c.threshold,
        (None, None) => anyhow::bail!(
            "model {} has no calibrated threshold: set decision.threshold",
            cfg.model.bundle.display()
        ),
    };
    let mut first_live = Live::from_config(&cfg, calibrated);
    first_live.station_sha256 = run_identity.station_sha256.as_deref().map(Arc::from);
    let live: SharedLive = Arc::new(RwLock::new(first_live));
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
    let station_name = record_text(&cfg.station.name);
    let mut records = RecordLog::open(&cfg.records.dir, cfg.records.max_bytes, cfg.records.keep)?;
    let records_path = records.path();
    let journal = Arc::new(Mutex::new(start_journal(&mut records, &station_name, &run_identity)?));
    let health = Arc::new(RecordsHealth::default());
    let archive = if cfg.archive.rejects || cfg.archive.pass_every > 0 {
        Some(Archive::open(&cfg.archive.dir, cfg.archive.max_files, cfg.archive.max_bytes).map_err(anyhow::Error::msg)?)
    } else {
        None
    };

    log::info!(
        "station {}: cdo-inspect {VERSION}, model {} ({}, sha256 {}, threshold {threshold:.5}), station file sha256 {}, camera {}, trigger {:?}, reject {} after {} ms for {} ms, part ids from {}",
        for_log(&cfg.station.name),
        for_log(&cfg.model.bundle.display().to_string()),
        detector.meta.backbone,
        run_identity.model_sha256,
        run_identity.station_sha256.as_deref().unwrap_or("-"),
        for_log(&camera.describe()),
        cfg.trigger.mode,
        cfg.outputs.reject.line,
        cfg.outputs.reject_delay.as_millis(),
        cfg.outputs.reject_pulse.as_millis(),
        journal.lock().unwrap_or_else(|p| p.into_inner()).next_id(),
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
    // The web view and MQTT, when the station file turns them on.
    let outside = Outside::start(
        cfg.web.as_ref(),
        cfg.mqtt.as_ref(),
        (cfg.archive.rejects || cfg.archive.pass_every > 0).then(|| cfg.archive.dir.clone()),
        Identity {
            station: station_name.clone(),
            version: run_identity.version.clone(),
            model_sha256: run_identity.model_sha256.clone(),
            model: record_text(&cfg.model.bundle.display().to_string()),
            backbone: detector.meta.backbone.to_string(),
            threshold,
            pixel_threshold: cfg.decision.pixel_threshold.unwrap_or(threshold),
            overlay_range,
            reject_delay: cfg.outputs.reject_delay,
            started_wall: std::time::SystemTime::now(),
            started: epoch,
        },
        counts.clone(),
    );
    let recorder = Recorder {
        station: station_name.clone(),
        run: run_identity.clone(),
        log: records,
        journal: journal.clone(),
        health: health.clone(),
        archive,
        archive_rejects: cfg.archive.rejects,
        archive_pass_every: cfg.archive.pass_every,
        overlay_range,
        inbox: recorder_in,
        counters: counters.clone(),
        heartbeat: beats[4].clone(),
        echo: opts.echo_parts,
        observer: outside.as_ref().and_then(Outside::observer),
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
        health: health.clone(),
    };
    let actuator_thread = spawn("actuator", Box::new(move || actuator.run()))?;
    let infer = InferStage {
        detector,
        batch: cfg.model.batch as usize,
        aligner,
        live: live.clone(),
        inbox: infer_in,
        to_actuator: to_actuator.clone(),
        counts: counts.clone(),
        heartbeat: beats[2].clone(),
    };
    let infer_thread = spawn("infer", Box::new(move || infer.run()))?;
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
    let capture_thread = spawn("capture", Box::new(move || capture.run()))?;
    let trigger = TriggerStage {
        source: trigger,
        live: live.clone(),
        to_capture,
        to_actuator,
        stop: stop.clone(),
        counts: counts.clone(),
        heartbeat: beats[0].clone(),
        journal: journal.clone(),
        health: health.clone(),
    };
    let trigger_thread = spawn("trigger", Box::new(move || trigger.run()))?;

    // Ready: model loaded, camera and GPIO open, every stage running. The supervisor runs
    // the station from here until it has stopped.
    let notifier = Notifier::from_env();
    let settings = Settings {
        station: station_name.clone(),
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
        threads: vec![
            ("trigger", Some(trigger_thread)),
            ("capture", Some(capture_thread)),
            ("infer", Some(infer_thread)),
            ("actuator", Some(actuator_thread)),
            ("recorder", Some(recorder_thread)),
        ],
        trigger_ended: false,
        recorder_ended: false,
        health: health.clone(),
        beats,
        counts,
        counters,
        gpio_errors,
        notifier,
        ready,
        fault,
        outside: outside.as_ref().map(Outside::shared),
    };
    let ended = Supervisor::start(settings, Instant::now(), &mut station).run(&mut station);

    set_line(&mut station.ready, false);
    set_line(&mut always_on, false);
    if let Some(o) = outside {
        o.stop();
    }
    let counters = station.counters();
    log::info!("station {} stopped; counters: {counters}", for_log(&cfg.station.name));
    let unwritten = health.unwritten.load(Ordering::Relaxed);
    // The caller logs the error (escaped here: it may quote a panic message).
    let failed = |code, message: String| -> Result<RunSummary> {
        Err(StationFailed { code, message: escape_controls(&message) }.into())
    };
    match ended {
        Ended::Failed(why) => failed(EXIT_STAGE_FAILED, format!("station stopped: {why}")),
        Ended::GaveUp => failed(EXIT_GAVE_UP, "station stopped: a stage did not stop within the drain timeout".into()),
        Ended::Recorded if unwritten > 0 => failed(
            EXIT_RECORDS_UNWRITTEN,
            format!("station stopped with {unwritten} records unwritten (they are in the journal)"),
        ),
        Ended::Recorded => {
            // Every part is recorded: leave a journal with none open.
            if let Err(e) = journal.lock().unwrap_or_else(|p| p.into_inner()).compact() {
                log::warn!("{}", for_log(&e));
            }
            Ok(RunSummary { counters, records: records_path })
        }
    }
}

/// Gives every part the last run journalled but never recorded its record (rejected,
/// fail-safe: see `journal.rs`), then starts this run's journal, ids continuing. A
/// station that cannot write them does not start (systemd retries).
fn start_journal(records: &mut RecordLog, station: &str, run: &RunIdentity) -> Result<Journal> {
    let dir = records.dir().to_path_buf();
    let recovered = journal::recover(&dir)?;
    if !recovered.unrecorded.is_empty() {
        for u in &recovered.unrecorded {
            records.append(&u.record(station)).context("recording the parts the last run left")?;
        }
        let ids: Vec<String> = recovered.unrecorded.iter().take(20).map(|u| u.id.to_string()).collect();
        let more = recovered.unrecorded.len().saturating_sub(ids.len());
        log::warn!(
            "records: {} parts triggered before the station last stopped had no record (crash?); recorded them as rejected, fail-safe: ids {}{}",
            recovered.unrecorded.len(),
            ids.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
    }
    Ok(Journal::start(&dir, run.clone(), recovered.next_id)?)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "(no message)".to_string(),
        },
    };
    record_text(&text)
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
    /// The stage threads in pipeline order; taken (joined) once finished.
    threads: Vec<(&'static str, Option<JoinHandle<()>>)>,
    trigger_ended: bool,
    recorder_ended: bool,
    health: Arc<RecordsHealth>,
    beats: [Arc<Heartbeat>; 5],
    counts: Arc<StageCounts>,
    counters: Arc<Mutex<Counters>>,
    gpio_errors: Arc<AtomicU64>,
    notifier: Notifier,
    ready: Option<Box<dyn DigitalOut>>,
    fault: Option<Box<dyn DigitalOut>>,
    /// The web view and MQTT, told the station's state.
    outside: Option<Arc<Shared>>,
}

impl Station for Running<'_> {
    fn recorder_finished(&self) -> bool {
        self.recorder_ended
    }

    /// Joins the threads that have finished (at once: they have), with the panic message
    /// of one that panicked.
    fn ended_stages(&mut self) -> Vec<(&'static str, Option<String>)> {
        let mut ended = Vec::new();
        for (name, slot) in &mut self.threads {
            if !slot.as_ref().is_some_and(|h| h.is_finished()) {
                continue;
            }
            let Some(handle) = slot.take() else { continue };
            ended.push((*name, handle.join().err().map(panic_message)));
            match *name {
                "trigger" => self.trigger_ended = true,
                "recorder" => self.recorder_ended = true,
                _ => {}
            }
        }
        ended
    }

    fn records_fault(&self) -> Option<String> {
        self.health.fault()
    }

    fn take_reload_request(&mut self) -> bool {
        self.hup.swap(false, Ordering::Relaxed)
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.trigger_ended
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
        if let Some(o) = &self.outside {
            o.status.set_ready(on);
        }
    }

    fn fault_changed(&mut self, why: Option<&str>) {
        if let Some(o) = &self.outside {
            o.status.set_fault(why);
        }
    }

    fn set_fault(&mut self, on: bool) {
        set_line(&mut self.fault, on);
    }

    /// Logged from here, so the lines keep this module as their target; escaped, so no
    /// text in it (a station name, a panic message) can start a line of its own.
    fn log(&mut self, level: log::Level, message: &str) {
        log::log!(level, "{}", escape_controls(message));
    }
}

fn set_line(line: &mut Option<Box<dyn DigitalOut>>, on: bool) {
    if let Some(l) = line.as_mut() {
        if let Err(e) = l.set(on) {
            log::error!("{}", for_log(&e.to_string()));
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
                    for_log(&path.display().to_string()),
                    restart.join(", ")
                );
            }
            let threshold = new.decision.threshold.or(calibrated).unwrap_or(read_live(live).decider.threshold);
            let mut next = Live::from_config(&new, threshold);
            // The records of the parts decided from now on name the file as it is now.
            next.station_sha256 = match file_sha256(path) {
                Ok(sha) => Some(Arc::from(sha)),
                Err(e) => {
                    log::warn!("{}: cannot hash it: {e}", for_log(&path.display().to_string()));
                    None
                }
            };
            let sha = next.station_sha256.as_deref().unwrap_or("-").to_string();
            *live.write().unwrap_or_else(|p| p.into_inner()) = next;
            log::info!(
                "{}: reloaded (sha256 {sha}); decision and timing apply from the next part",
                for_log(&path.display().to_string())
            );
        }
        Err(errors) => {
            // One error a line, each indented and escaped: no line can pass for a log entry.
            let lines: Vec<String> =
                errors.to_string().lines().map(|l| format!("  {}", escape_controls(l))).collect();
            log::error!(
                "{}: reload refused, keeping the running settings:\n{}",
                for_log(&path.display().to_string()),
                lines.join("\n")
            );
        }
    }
}
