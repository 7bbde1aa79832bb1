//! The station seen from outside: the operator web view with `/metrics` (`web.rs`,
//! `metrics.rs`) and the records and state sent to the plant's MQTT broker (`mqtt.rs`).
//! Each is off unless its table is in the station file.
//!
//! None of it may slow the inspection: the recorder hands each part, once its record is
//! written, to [`Observer::observe`], which counts it for the metrics (atomics) and
//! offers it to the `outside` thread over a bounded channel with `try_send`; when that
//! thread falls behind, the part is dropped for the outside and counted
//! (`cdo_inspect_outside_dropped_total`), and its record is still in `parts.jsonl`. The
//! `outside` thread keeps what the page shows (the last parts with their frames and maps,
//! the score trend, the latest rejects) behind a lock only it and the web handlers take,
//! briefly, and queues the records for MQTT. The web server runs on a tokio runtime of
//! its own threads; the MQTT connection on a thread of its own. All of them run at a
//! lower CPU priority than the stages (nice 10).

pub mod metrics;
pub mod mqtt;
pub mod web;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use image::RgbImage;

use self::metrics::{PartCounts, PartMetrics};
use super::decide::Verdict;
use super::part::Part;
use super::records::PartRecord;
use super::stages::StageCounts;
use crate::config::{MqttConfig, WebConfig};
use crate::infer::FrameInspection;
use crate::text::for_log;

/// Parts waiting for the `outside` thread; beyond this they are dropped for the outside.
const INBOX: usize = 64;
/// Rejects shown in the page's strip.
const REJECT_STRIP: usize = 24;
/// How often the `outside` thread looks at the station's state when no part comes.
const STATE_POLL: Duration = Duration::from_millis(250);
/// The CPU priority of the outside's threads: below the stages'.
const NICE: i32 = 10;

/// What the page and the broker say the station is and runs.
#[derive(Debug, Clone)]
pub struct Identity {
    pub station: String,
    pub version: String,
    pub model_sha256: String,
    pub model: String,
    pub backbone: String,
    /// The threshold at start (each part's record has its own).
    pub threshold: f32,
    /// The map value above which a pixel is outlined as defective.
    pub pixel_threshold: f32,
    /// Heatmap colours (cold, hot), as the archive's overlays.
    pub overlay_range: (f32, f32),
    pub reject_delay: Duration,
    pub started_wall: SystemTime,
    pub started: Instant,
}

/// The station's state as the supervisor sets it.
pub struct Status {
    ready: AtomicBool,
    fault: Mutex<Option<String>>,
    stopping: AtomicBool,
    counts: Arc<StageCounts>,
}

impl Status {
    pub fn set_ready(&self, on: bool) {
        self.ready.store(on, Ordering::Relaxed);
    }

    pub fn set_fault(&self, why: Option<&str>) {
        *lock(&self.fault) = why.map(str::to_string);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    pub fn camera_up(&self) -> bool {
        !self.counts.camera_down.load(Ordering::Relaxed)
    }

    /// "starting", "ready", "fault" or "stopping": the word the page and the broker show.
    pub fn word(&self) -> &'static str {
        if self.stopping.load(Ordering::Relaxed) {
            "stopping"
        } else if self.fault().is_some() {
            "fault"
        } else if self.ready() {
            "ready"
        } else {
            "starting"
        }
    }
}

/// One part as the page keeps it: its record, frame and map; the overlay is drawn when
/// a browser first asks for it.
pub struct Seen {
    pub record: PartRecord,
    pub image: Option<RgbImage>,
    pub inference: Option<FrameInspection>,
    /// The pixel threshold the part was decided with: its regions are outlined at it.
    pub pixel_threshold: f32,
    overlay: OnceLock<Option<Vec<u8>>>,
}

/// A point of the score trend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrendPoint {
    pub id: u64,
    pub score: Option<f32>,
    pub reject: bool,
    /// Trigger to verdict, ms.
    pub total_ms: Option<f64>,
}

/// What the page shows, kept by the `outside` thread.
pub struct View {
    pub recent: VecDeque<Arc<Seen>>,
    pub trend: VecDeque<TrendPoint>,
    /// The latest rejects' records, newest last.
    pub rejects: VecDeque<PartRecord>,
    /// The counts when they were last reset, and when.
    pub baseline: PartCounts,
    pub reset_at: Option<SystemTime>,
    recent_cap: usize,
    trend_cap: usize,
}

/// What the outside's threads share.
pub struct Shared {
    pub identity: Identity,
    pub status: Status,
    pub metrics: PartMetrics,
    pub view: Mutex<View>,
    /// Bumped at every change the page should show (the server-sent events wait on it).
    pub changes: tokio::sync::watch::Sender<u64>,
    /// Parts the `outside` thread had no room for.
    pub dropped: AtomicU64,
    pub web_refused: AtomicU64,
    /// Browsers watching: open event streams.
    pub event_streams: AtomicU64,
    pub web: Option<WebConfig>,
    pub archive_dir: Option<PathBuf>,
    pub mqtt: Option<Arc<mqtt::Queue>>,
}

impl Shared {
    pub fn view(&self) -> MutexGuard<'_, View> {
        lock(&self.view)
    }

    /// The gauges of `/metrics`.
    pub fn metrics_text(&self) -> String {
        let id = &self.identity;
        let start = id.started_wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        metrics::encode(
            &self.metrics,
            &metrics::Gauges {
                ready: self.status.ready(),
                fault: self.status.fault().is_some(),
                camera_up: self.status.camera_up(),
                version: &id.version,
                model_sha256: &id.model_sha256,
                station: &id.station,
                start_time_s: start,
                observer_dropped: self.dropped.load(Ordering::Relaxed),
                web_refused: self.web_refused.load(Ordering::Relaxed),
                event_streams: self.event_streams.load(Ordering::Relaxed),
                mqtt: self.mqtt.as_ref().map(|q| q.stats()),
            },
        )
    }

    /// The overlay PNG of a kept part: drawn once, on first request (off the stages'
    /// threads: the web server's blocking pool).
    pub fn overlay_png(&self, seen: &Seen) -> Option<Vec<u8>> {
        seen.overlay
            .get_or_init(|| {
                let image = seen.image.as_ref()?;
                let (w, h) = image.dimensions();
                let png = |img: &RgbImage| web::png(img);
                match &seen.inference {
                    Some(inf) => {
                        let show_roi = (inf.roi.w, inf.roi.h) != (w, h);
                        let overlay = inf.overlay(image, seen.pixel_threshold, self.identity.overlay_range, show_roi);
                        match overlay {
                            Ok(o) => png(&o),
                            Err(e) => {
                                log::warn!("web: part {}: {}", seen.record.id, for_log(&e.to_string()));
                                None
                            }
                        }
                    }
                    // A part without a map (fail-safe before inference): its frame.
                    None => png(image),
                }
            })
            .clone()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Hands finished parts to the outside; owned by the recorder.
pub struct Observer {
    tx: Sender<(PartRecord, Option<Box<Part>>)>,
    shared: Arc<Shared>,
}

impl Observer {
    /// Counts the part and offers it to the outside thread; never waits.
    pub fn observe(&self, record: PartRecord, part: Option<Box<Part>>) {
        self.shared.metrics.count(&record);
        match self.tx.try_send((record, part)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    log::warn!("outside: the web view and MQTT fell behind; parts are dropped for them (counted in cdo_inspect_outside_dropped_total; their records are in parts.jsonl)");
                }
            }
        }
    }
}

/// The running outside interfaces.
pub struct Outside {
    shared: Arc<Shared>,
    tx: Option<Sender<(PartRecord, Option<Box<Part>>)>>,
    hub: Option<JoinHandle<()>>,
    web: Option<web::Server>,
    mqtt: Option<mqtt::Publisher>,
}

impl Outside {
    /// Starts what the station file turns on; None when it turns on neither. A web
    /// server that cannot listen, or an MQTT setup that fails (an unreadable password or
    /// certificate file), is logged and left off: the station inspects without it.
    pub fn start(
        web_cfg: Option<&WebConfig>,
        mqtt_cfg: Option<&MqttConfig>,
        archive_dir: Option<PathBuf>,
        identity: Identity,
        counts: Arc<StageCounts>,
    ) -> Option<Outside> {
        if web_cfg.is_none() && mqtt_cfg.is_none() {
            return None;
        }
        let (recent_cap, trend_cap) = web_cfg.map_or((1, 1), |w| (w.recent_parts, w.trend_parts));
        let queue = mqtt_cfg.map(|m| Arc::new(mqtt::Queue::new(m.buffer_parts)));
        let shared = Arc::new(Shared {
            metrics: PartMetrics::new(identity.reject_delay.as_secs_f64(), identity.threshold.into()),
            identity,
            status: Status { ready: AtomicBool::new(false), fault: Mutex::new(None), stopping: AtomicBool::new(false), counts },
            view: Mutex::new(View {
                recent: VecDeque::new(),
                trend: VecDeque::new(),
                rejects: VecDeque::new(),
                baseline: PartCounts::default(),
                reset_at: None,
                recent_cap,
                trend_cap,
            }),
            changes: tokio::sync::watch::Sender::new(0),
            dropped: AtomicU64::new(0),
            web_refused: AtomicU64::new(0),
            event_streams: AtomicU64::new(0),
            web: web_cfg.cloned(),
            archive_dir,
            mqtt: queue.clone(),
        });
        let mqtt = match (mqtt_cfg, queue) {
            (Some(cfg), Some(queue)) => match mqtt::Publisher::start(cfg, &shared.identity, queue) {
                Ok(p) => Some(p),
                Err(e) => {
                    log::error!("mqtt: {}; the station runs without it", for_log(&e.to_string()));
                    None
                }
            },
            _ => None,
        };
        let web = match web_cfg {
            Some(cfg) => match web::Server::start(cfg, shared.clone()) {
                Ok(s) => {
                    log::info!("web: operator view on http://{}/ (metrics on /metrics)", s.address());
                    Some(s)
                }
                Err(e) => {
                    log::error!("web: cannot listen on {}: {e}; the station runs without the web view", cfg.listen);
                    None
                }
            },
            None => None,
        };
        let (tx, rx) = crossbeam_channel::bounded(INBOX);
        let hub_shared = shared.clone();
        let state = mqtt.as_ref().map(|p| p.state_sender());
        let hub = std::thread::Builder::new()
            .name("outside".into())
            .spawn(move || {
                lower_priority();
                hub(rx, &hub_shared, state)
            })
            .map_err(|e| log::error!("outside: cannot start its thread: {e}"))
            .ok()?;
        Some(Outside { shared, tx: Some(tx), hub: Some(hub), web, mqtt })
    }

    pub fn observer(&self) -> Option<Observer> {
        Some(Observer { tx: self.tx.clone()?, shared: self.shared.clone() })
    }

    pub fn status(&self) -> &Status {
        &self.shared.status
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// After the recorder has finished (every part observed): the last parts and the
    /// state "stopped" go out to the broker (for a few seconds at most), then everything
    /// closes.
    pub fn stop(mut self) {
        self.shared.status.stopping.store(true, Ordering::Relaxed);
        self.tx.take();
        if let Some(h) = self.hub.take() {
            let _ = h.join();
        }
        if let Some(m) = self.mqtt.take() {
            m.stop();
        }
        if let Some(w) = self.web.take() {
            w.stop();
        }
    }
}

/// The `outside` thread: keeps the page's view, queues records for MQTT, notices changes
/// of the station's state.
fn hub(rx: Receiver<(PartRecord, Option<Box<Part>>)>, shared: &Shared, state: Option<mqtt::StateSender>) {
    let mut last_state = None;
    loop {
        match rx.recv_timeout(STATE_POLL) {
            Ok((record, part)) => {
                if let Some(q) = &shared.mqtt {
                    q.push(&record);
                }
                if shared.web.is_some() {
                    keep(shared, record, part);
                }
                shared.bump();
            }
            // Once stopping, what was queued has been taken: a recorder that never ends
            // (a stage that would not stop) must not hold the daemon's exit.
            Err(RecvTimeoutError::Timeout) if shared.status.stopping.load(Ordering::Relaxed) => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = (shared.status.word(), shared.status.fault(), shared.status.camera_up());
        if last_state.as_ref() != Some(&now) {
            if let Some(s) = &state {
                s.send(now.0, now.1.as_deref());
            }
            last_state = Some(now);
            shared.bump();
        }
    }
    if let Some(s) = &state {
        s.send("stopped", None);
    }
    shared.bump();
}

/// Adds a part to the view; the oldest go beyond the configured counts.
fn keep(shared: &Shared, record: PartRecord, part: Option<Box<Part>>) {
    let (image, inference, pixel_threshold) = match part {
        Some(mut p) => (p.frame.take().map(|f| f.image), p.inference.take(), p.pixel_threshold),
        None => (None, None, shared.identity.pixel_threshold),
    };
    let reject = record.verdict != Some(Verdict::Pass);
    let point = TrendPoint { id: record.id, score: record.score, reject, total_ms: record.latency_ms.total };
    let reject_record = reject.then(|| record.clone());
    let seen = Arc::new(Seen { record, image, inference, pixel_threshold, overlay: OnceLock::new() });
    let mut v = shared.view();
    v.recent.push_back(seen);
    while v.recent.len() > v.recent_cap {
        v.recent.pop_front();
    }
    v.trend.push_back(point);
    while v.trend.len() > v.trend_cap {
        v.trend.pop_front();
    }
    if let Some(r) = reject_record {
        v.rejects.push_back(r);
        while v.rejects.len() > REJECT_STRIP {
            v.rejects.pop_front();
        }
    }
}

/// Runs the calling thread at nice [`NICE`]: the stages come first when the CPU is short.
pub(crate) fn lower_priority() {
    // SAFETY: setpriority on this thread's own id (Linux: per-thread nice values).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
