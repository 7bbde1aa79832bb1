//! A part on its way through the station, and the settings that may change between
//! parts (SIGHUP).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::decide::{Decider, Decision, Verdict};
use super::boundary::Frame;
use super::records::Latency;
use crate::config::StationConfig;
use crate::infer::align::Alignment;
use crate::infer::FrameInspection;

pub struct Part {
    /// Unique for the station's life (`journal.rs`).
    pub id: u64,
    /// "gpio", "timer" or "replay".
    pub trigger: &'static str,
    pub triggered_at: Instant,
    pub triggered_wall: SystemTime,
    /// When its pulse must start: trigger + reject delay, fixed at the trigger.
    pub due: Instant,
    pub frame: Option<Frame>,
    /// Where its frame came from: the frame's origin, or a corrupt frame's.
    pub origin: Option<String>,
    pub inference: Option<FrameInspection>,
    /// Where alignment found the part (with alignment on).
    pub alignment: Option<Alignment>,
    pub decision: Option<Decision>,
    pub threshold: f32,
    /// The map value above which a pixel is part of a defect region (outlined in overlays).
    pub pixel_threshold: f32,
    /// SHA-256 of the station file whose settings decided it (updated with `threshold`).
    pub station_sha256: Option<Arc<str>>,
    /// Set when the part is rejected without a normal verdict, with the reason.
    pub fail_safe: Option<String>,
    pub latency: Latency,
    /// When the part entered its current queue (for the queue latency).
    pub queued_at: Instant,
}

impl Part {
    /// A part triggered at `at` (wall-clock `wall`, see [`wall_time`]) under `live`.
    pub fn new(id: u64, trigger: &'static str, at: Instant, wall: SystemTime, live: &Live) -> Self {
        Part {
            id,
            trigger,
            triggered_at: at,
            triggered_wall: wall,
            due: at + live.reject_delay,
            frame: None,
            origin: None,
            inference: None,
            alignment: None,
            decision: None,
            threshold: live.decider.threshold,
            pixel_threshold: live.decider.pixel_threshold,
            station_sha256: live.station_sha256.clone(),
            fail_safe: None,
            latency: Latency::default(),
            queued_at: Instant::now(),
        }
    }

    /// Marks the part for a fail-safe reject; the first reason is kept.
    pub fn fail(mut self, reason: impl Into<String>) -> Self {
        if self.fail_safe.is_none() {
            self.fail_safe = Some(reason.into());
        }
        self
    }

    /// What the station does with it: anything without a clean pass is rejected.
    pub fn verdict(&self) -> Verdict {
        match (&self.fail_safe, &self.decision) {
            (None, Some(d)) => d.verdict,
            _ => Verdict::Reject,
        }
    }
}

/// The wall-clock time of a past monotonic instant (a kernel edge timestamp).
pub fn wall_time(at: Instant) -> SystemTime {
    SystemTime::now() - Instant::now().saturating_duration_since(at)
}

/// Settings that apply to the next part when the station file is reloaded.
#[derive(Debug, Clone)]
pub struct Live {
    pub decider: Decider,
    pub reject_delay: Duration,
    pub reject_pulse: Duration,
    pub pass_pulse: Duration,
    pub light_settle: Duration,
    pub rate_hz: f64,
    pub counters_every: Duration,
    pub inject_infer_delay: Duration,
    /// SHA-256 of the station file these settings came from (set by the daemon).
    pub station_sha256: Option<Arc<str>>,
}

impl Live {
    pub fn from_config(cfg: &StationConfig, calibrated_threshold: f32) -> Self {
        Live {
            decider: Decider::new(&cfg.decision, calibrated_threshold),
            reject_delay: cfg.outputs.reject_delay,
            reject_pulse: cfg.outputs.reject_pulse,
            pass_pulse: cfg.outputs.pass_pulse,
            light_settle: cfg.light.settle,
            rate_hz: cfg.trigger.rate_hz,
            counters_every: cfg.logging.counters_every,
            inject_infer_delay: cfg.pipeline.inject_infer_delay,
            station_sha256: None,
        }
    }
}

pub type SharedLive = Arc<RwLock<Live>>;

pub fn read_live(live: &SharedLive) -> Live {
    live.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A stage's sign of life: the last time (ms since the station's epoch) its loop went
/// round. A stage stuck in one call stops beating.
pub struct Heartbeat {
    pub name: &'static str,
    epoch: Instant,
    last_ms: AtomicU64,
    finished: std::sync::atomic::AtomicBool,
}

impl Heartbeat {
    pub fn new(name: &'static str, epoch: Instant) -> Arc<Self> {
        Arc::new(Heartbeat {
            name,
            epoch,
            last_ms: AtomicU64::new(0),
            finished: Default::default(),
        })
    }

    pub fn beat(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    /// How long since the last beat; zero once the stage has finished.
    pub fn silent_for(&self) -> Duration {
        if self.finished.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Fault injection for the tests: `CDO_INJECT_PANIC=<stage>:<n>` makes that stage's
/// thread panic when it handles its n-th part (1 = the first), as a bug would. Read once;
/// unset (as always in production) it costs one comparison per part.
pub fn inject_panic(stage: &str, handled: u64) {
    static PLAN: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let v = std::env::var("CDO_INJECT_PANIC").ok()?;
        let (s, n) = v.split_once(':')?;
        Some((s.to_string(), n.parse().ok()?))
    });
    if let Some((s, n)) = plan {
        if s == stage && *n == handled {
            panic!("injected fault (CDO_INJECT_PANIC) at part {handled}");
        }
    }
}

/// Milliseconds between two instants, for latencies.
/// Rounded to the microsecond: finer digits are clock noise in a record.
pub fn ms(from: Instant, to: Instant) -> f64 {
    (to.saturating_duration_since(from).as_secs_f64() * 1e6).round() / 1e3
}
