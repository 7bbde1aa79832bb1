//! The trigger, capture and inference stages. Each is a thread that owns its hardware
//! (sensor input, camera and light, model) and passes parts on through bounded channels.
//! A part that cannot go on (queue full, camera fault, corrupt frame, inference error)
//! goes straight to the actuator marked fail-safe, with the reason.
//!
//! The trigger stage takes each part's id from the journal (`journal.rs`), which writes
//! it down before the part goes anywhere, so that a crash cannot lose a part uncounted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::actuate::{Expect, ToActuator};
use super::boundary::{CaptureError, DigitalIn, DigitalOut, FrameSource, InputEdge};
use super::journal::{self, Journal};
use super::part::{inject_panic, ms, read_live, wall_time, Heartbeat, Part, SharedLive};
use super::records::RecordsHealth;
use super::alignment::Aligner;
use crate::infer::Detector;
use crate::text::for_log;

/// How long a stage waits for work before it beats its heartbeat again.
const IDLE_POLL: Duration = Duration::from_millis(100);

pub enum TriggerSource {
    /// A part sensor.
    Gpio(Box<dyn DigitalIn>),
    /// A timer; ticks that find the camera busy are skipped.
    FreeRun,
    /// One part per replayed frame at the configured rate; `Some(n)` stops after n.
    Replay(Option<usize>),
}

/// Counts shared between the stages and the supervisor.
#[derive(Default)]
pub struct StageCounts {
    pub missed: AtomicU64,
    pub skipped: AtomicU64,
    pub capture_errors: AtomicU64,
    pub infer_errors: AtomicU64,
    pub camera_reconnects: AtomicU64,
    pub camera_down: AtomicBool,
}

pub struct TriggerStage {
    pub source: TriggerSource,
    pub live: SharedLive,
    pub to_capture: Sender<Part>,
    pub to_actuator: Sender<ToActuator>,
    pub stop: Arc<AtomicBool>,
    pub counts: Arc<StageCounts>,
    pub heartbeat: Arc<Heartbeat>,
    /// Hands out the part ids and journals each part.
    pub journal: Arc<Mutex<Journal>>,
    /// Told when the journal cannot be written (the actuator then rejects every part).
    pub health: Arc<RecordsHealth>,
}

impl TriggerStage {
    pub fn run(mut self) {
        let mut next_tick = Instant::now();
        let mut emitted = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            self.heartbeat.beat();
            let live = read_live(&self.live);
            let period = Duration::from_secs_f64(1.0 / live.rate_hz);
            let (kind, at) = match &mut self.source {
                TriggerSource::Gpio(input) => match input.wait_edge(IDLE_POLL) {
                    Ok(Some(ev)) if ev.edge == InputEdge::Asserted => ("gpio", ev.at),
                    Ok(_) => continue,
                    Err(e) => {
                        log::error!("trigger input: {}", for_log(&e.to_string()));
                        std::thread::sleep(IDLE_POLL);
                        continue;
                    }
                },
                TriggerSource::FreeRun | TriggerSource::Replay(_) => {
                    if let TriggerSource::Replay(Some(n)) = self.source {
                        if emitted >= n {
                            break;
                        }
                    }
                    let now = Instant::now();
                    if now < next_tick {
                        std::thread::sleep((next_tick - now).min(IDLE_POLL));
                        continue;
                    }
                    next_tick += period;
                    // After a long stall, do not fire a burst to catch up.
                    if next_tick < now {
                        next_tick = now + period;
                    }
                    if matches!(self.source, TriggerSource::FreeRun) && !self.to_capture.is_empty()
                    {
                        self.counts.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let kind = if matches!(self.source, TriggerSource::FreeRun) { "timer" } else { "replay" };
                    (kind, now)
                }
            };
            emitted += 1;
            inject_panic("trigger", emitted as u64);
            let wall = wall_time(at);
            // Journalled before the actuator hears of it; a part the journal could not
            // take is still inspected, and rejected while the journal fails.
            let (id, journalled) =
                self.journal.lock().unwrap_or_else(|p| p.into_inner()).begin(kind, wall);
            journal::report(&self.health, &journalled);
            let part = Part::new(id, kind, at, wall, &live);
            let expect = Expect {
                id: part.id,
                trigger: kind,
                triggered_at: part.triggered_at,
                triggered_wall: part.triggered_wall,
                due: part.due,
                station_sha256: part.station_sha256.clone(),
            };
            if self.to_actuator.send(ToActuator::Expect(expect)).is_err() {
                break;
            }
            if let Err(TrySendError::Full(part)) = self.to_capture.try_send(part) {
                self.counts.missed.fetch_add(1, Ordering::Relaxed);
                let part = part.fail("missed trigger: camera busy (capture queue full)");
                let _ = self.to_actuator.send(ToActuator::Done(Box::new(part)));
            }
        }
        self.heartbeat.finish();
    }
}

pub struct CaptureStage {
    pub camera: Box<dyn FrameSource>,
    /// Switched on for each capture (strobe); None when the light is not ours to switch.
    pub strobe: Option<Box<dyn DigitalOut>>,
    pub live: SharedLive,
    pub inbox: Receiver<Part>,
    pub to_infer: Sender<Part>,
    pub to_actuator: Sender<ToActuator>,
    pub counts: Arc<StageCounts>,
    pub heartbeat: Arc<Heartbeat>,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl CaptureStage {
    pub fn run(mut self) {
        let mut backoff = self.reconnect_initial;
        let mut retry_at: Option<Instant> = None;
        let mut handled = 0u64;
        loop {
            self.heartbeat.beat();
            if let Some(at) = retry_at {
                if Instant::now() >= at {
                    match self.camera.reopen() {
                        Ok(()) => {
                            log::info!("camera back: {}", for_log(&self.camera.describe()));
                            self.counts.camera_reconnects.fetch_add(1, Ordering::Relaxed);
                            self.counts.camera_down.store(false, Ordering::Relaxed);
                            retry_at = None;
                            backoff = self.reconnect_initial;
                        }
                        Err(e) => {
                            backoff = (backoff * 2).min(self.reconnect_max);
                            log::warn!("{}; retrying in {} ms", for_log(&e.to_string()), backoff.as_millis());
                            retry_at = Some(Instant::now() + backoff);
                        }
                    }
                }
            }
            let mut part = match self.inbox.recv_timeout(IDLE_POLL) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            handled += 1;
            inject_panic("capture", handled);
            part.latency.queue = Some(ms(part.queued_at, Instant::now()));
            if retry_at.is_some() {
                self.done(part.fail("camera disconnected"));
                continue;
            }
            let started = Instant::now();
            let settle = read_live(&self.live).light_settle;
            self.light(true);
            if !settle.is_zero() && self.strobe.is_some() {
                std::thread::sleep(settle);
            }
            let grabbed = self.camera.grab();
            self.light(false);
            part.latency.capture = Some(ms(started, Instant::now()));
            match grabbed {
                Ok(frame) => {
                    part.origin = Some(frame.origin.clone());
                    part.frame = Some(frame);
                    part.queued_at = Instant::now();
                    match self.to_infer.try_send(part) {
                        Ok(()) => {}
                        Err(TrySendError::Full(p)) => self.done(p.fail("inference busy (queue full)")),
                        Err(TrySendError::Disconnected(p)) => self.done(p.fail("inference stage stopped")),
                    }
                }
                Err(e) => {
                    self.counts.capture_errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("part {}: {}", part.id, for_log(&e.to_string()));
                    if let CaptureError::CorruptFrame { origin, .. } = &e {
                        part.origin = Some(origin.clone());
                    }
                    if let CaptureError::Disconnected { .. } = e {
                        self.counts.camera_down.store(true, Ordering::Relaxed);
                        retry_at = Some(Instant::now() + backoff);
                    }
                    self.done(part.fail(e.to_string()));
                }
            }
        }
        self.light(false);
        self.heartbeat.finish();
    }

    fn light(&mut self, on: bool) {
        if let Some(light) = self.strobe.as_mut() {
            if let Err(e) = light.set(on) {
                log::error!("light: {}", for_log(&e.to_string()));
            }
        }
    }

    fn done(&self, part: Part) {
        let _ = self.to_actuator.send(ToActuator::Done(Box::new(part)));
    }
}

pub struct InferStage {
    pub detector: Detector,
    /// Tiles per batch through the networks (`model.batch`).
    pub batch: usize,
    /// Finds each part on the fixture (`[alignment]`); None with alignment off.
    pub aligner: Option<Aligner>,
    pub live: SharedLive,
    pub inbox: Receiver<Part>,
    pub to_actuator: Sender<ToActuator>,
    pub counts: Arc<StageCounts>,
    pub heartbeat: Arc<Heartbeat>,
}

impl InferStage {
    pub fn run(self) {
        let mut handled = 0u64;
        loop {
            self.heartbeat.beat();
            let mut part = match self.inbox.recv_timeout(IDLE_POLL) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            handled += 1;
            inject_panic("infer", handled);
            let queued = ms(part.queued_at, Instant::now());
            part.latency.queue = Some(part.latency.queue.unwrap_or(0.0) + queued);
            let part = if Instant::now() >= part.due {
                // Its pulse has already fired as a fail-safe reject; inspecting it now
                // would only delay the parts behind it.
                part.fail("not inspected: its reject deadline passed while it was queued")
            } else {
                self.inspect(part)
            };
            let _ = self.to_actuator.send(ToActuator::Done(Box::new(part)));
        }
        self.heartbeat.finish();
    }

    fn inspect(&self, mut part: Part) -> Part {
        let live = read_live(&self.live);
        part.threshold = live.decider.threshold;
        part.pixel_threshold = live.decider.pixel_threshold;
        part.station_sha256 = live.station_sha256.clone();
        let Some(frame) = part.frame.take() else {
            return part.fail("no frame");
        };
        let t0 = Instant::now();
        let shift = match &self.aligner {
            None => Ok((0, 0)),
            Some(aligner) => {
                let (estimate, shift) = aligner.locate(&frame.image);
                part.alignment = estimate;
                shift
            }
        };
        let shift = match shift {
            Ok(s) => s,
            Err(reason) => {
                log::warn!("part {}: {}", part.id, for_log(&reason));
                part.latency.preprocess = Some(ms(t0, Instant::now()));
                part.frame = Some(frame);
                return part.fail(reason);
            }
        };
        let aligned_ms = ms(t0, Instant::now());
        if !live.inject_infer_delay.is_zero() {
            std::thread::sleep(live.inject_infer_delay);
        }
        let inspected = self.detector.inspect_frame_at(&frame.image, self.batch, shift);
        part.frame = Some(frame);
        let t2 = Instant::now();
        let inspection = match inspected {
            Ok(i) => i,
            Err(e) => {
                self.counts.infer_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("part {}: inspection failed: {}", part.id, for_log(&e.to_string()));
                return part.fail(format!("inspection error: {e}"));
            }
        };
        let decision = live.decider.decide(&inspection);
        let t3 = Instant::now();
        part.latency.preprocess = Some(aligned_ms + inspection.prepare_ms);
        part.latency.infer = Some((ms(t0, t2) - aligned_ms - inspection.prepare_ms).max(0.0));
        part.latency.decide = Some(ms(t2, t3));
        part.latency.total = Some(ms(part.triggered_at, t3));
        if let Some(reason) = &decision.fail_safe {
            part = part.fail(reason.clone());
        }
        part.inference = Some(inspection);
        part.decision = Some(decision);
        part
    }
}
