//! The station's supervisor: once every stage runs, it tells systemd we are ready, then
//! every 50 ms feeds the watchdog while every stage makes progress, raises the fault
//! output while one is stalled or the camera is down, sends STATUS= and logs the counters,
//! applies SIGHUP reloads, and on SIGTERM stops the triggers and drains the parts in
//! flight, giving up on them after the drain timeout.
//!
//! All of it is decided in [`Supervisor::tick`], from the time it is handed and what it
//! reads of the [`Station`]; the station is the daemon's threads, flags, output lines and
//! notify socket (`daemon.rs`), or a fake with a made-up clock in the tests.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::counters::Counters;

/// How often the supervisor looks at the station.
pub const TICK: Duration = Duration::from_millis(50);
/// How often STATUS= is sent to the service manager.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// After the drain timeout, how long the stages get to give up on their parts.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// What the supervisor reads of the station and does to it.
pub trait Station {
    /// The recorder, the last stage, has ended: every part is recorded.
    fn recorder_finished(&self) -> bool;
    /// Whether a reload (SIGHUP) was asked for since the last call.
    fn take_reload_request(&mut self) -> bool;
    /// SIGTERM or SIGINT came, or the trigger stage ended (a replay ran out).
    fn stop_requested(&self) -> bool;
    /// How long each stage has not gone round its loop (zero once it has finished), in
    /// pipeline order.
    fn silences(&self) -> Vec<(&'static str, Duration)>;
    /// The camera is not delivering frames.
    fn camera_down(&self) -> bool;
    /// How often the counters are logged, as now configured (a reload may change it).
    fn counters_every(&self) -> Duration;
    fn counters(&self) -> Counters;

    /// Re-reads the station file.
    fn reload(&mut self);
    /// Tells the trigger stage to take no new triggers.
    fn stop_triggers(&mut self);
    /// Tells the stages to give up on the parts in flight (they are recorded as not
    /// inspected).
    fn abort_in_flight(&mut self);
    /// Sends one notify message to the service manager.
    fn notify(&mut self, state: &str);
    fn set_ready(&mut self, on: bool);
    fn set_fault(&mut self, on: bool);
    /// One log line (the daemon writes it under its own module, as it always has).
    fn log(&mut self, level: log::Level, message: &str);
}

pub struct Settings {
    /// The station's name, for the log.
    pub station: String,
    /// How often to ping systemd's watchdog; None when it is off.
    pub watchdog: Option<Duration>,
    /// Whether there is a service manager to send STATUS= to.
    pub status: bool,
    pub stall_timeout: Duration,
    pub drain_timeout: Duration,
}

/// How the supervision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The recorder finished: every part is recorded (as not inspected if given up on).
    Recorded,
    /// A stage did not stop within the drain timeout and the grace after it.
    GaveUp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// Stopping: no new triggers, the parts in flight finish until then.
    Draining { until: Instant },
    /// The parts in flight were given up; the stages have until then to stop.
    Aborting { until: Instant },
}

pub struct Supervisor {
    settings: Settings,
    phase: Phase,
    fault_on: bool,
    last_watchdog: Instant,
    last_counters: Instant,
    /// None until the first STATUS=, which goes out on the first tick.
    last_status: Option<Instant>,
}

impl Supervisor {
    /// The station is up (model loaded, camera and GPIO open, every stage running): READY=1,
    /// the ready output, and the watchdog and counters periods start at `now`.
    pub fn start(settings: Settings, now: Instant, station: &mut impl Station) -> Self {
        station.notify("READY=1");
        station.set_ready(true);
        station.log(log::Level::Info, &format!("station {} ready", settings.station));
        Supervisor {
            settings,
            phase: Phase::Running,
            fault_on: false,
            last_watchdog: now,
            last_counters: now,
            last_status: None,
        }
    }

    /// Supervises on the real clock, one tick every [`TICK`], until the station is done.
    pub fn run(mut self, station: &mut impl Station) -> Ended {
        loop {
            std::thread::sleep(TICK);
            if let ControlFlow::Break(ended) = self.tick(Instant::now(), station) {
                return ended;
            }
        }
    }

    /// One look at the station at `now`: everything it reads and does, in this order.
    pub fn tick(&mut self, now: Instant, station: &mut impl Station) -> ControlFlow<Ended> {
        if station.recorder_finished() {
            return ControlFlow::Break(Ended::Recorded);
        }
        if station.take_reload_request() {
            station.reload();
        }
        if self.phase == Phase::Running && station.stop_requested() {
            station.stop_triggers();
            station.notify("STOPPING=1");
            station.log(log::Level::Info, "stopping: no new triggers; finishing the parts in flight");
            station.set_ready(false);
            self.phase = Phase::Draining { until: now + self.settings.drain_timeout };
        }
        if let Phase::Draining { until } = self.phase {
            if now >= until {
                station.abort_in_flight();
                station.log(
                    log::Level::Error,
                    &format!(
                        "parts still in flight after {} ms: recording them as not inspected",
                        self.settings.drain_timeout.as_millis()
                    ),
                );
                self.phase = Phase::Aborting { until: now + ABORT_GRACE };
            }
        }
        if let Phase::Aborting { until } = self.phase {
            if now >= until {
                station.log(log::Level::Error, "a stage did not stop; exiting anyway");
                return ControlFlow::Break(Ended::GaveUp);
            }
        }
        // Health: every stage beating, and the camera delivering.
        let stalled: Vec<&str> = station
            .silences()
            .into_iter()
            .filter(|&(_, silent)| silent > self.settings.stall_timeout)
            .map(|(name, _)| name)
            .collect();
        let camera_down = station.camera_down();
        let faulty = !stalled.is_empty() || camera_down;
        if faulty != self.fault_on {
            self.fault_on = faulty;
            station.set_fault(faulty);
            if faulty {
                let why = if camera_down {
                    "camera not delivering".to_string()
                } else {
                    format!("stage stalled: {}", stalled.join(", "))
                };
                station.log(log::Level::Error, &format!("fault: {why}"));
            } else {
                station.log(log::Level::Info, "fault cleared");
            }
        }
        if let Some(every) = self.settings.watchdog {
            if stalled.is_empty() && now.saturating_duration_since(self.last_watchdog) >= every {
                station.notify("WATCHDOG=1");
                self.last_watchdog = now;
            }
        }
        let status_due =
            self.last_status.map_or(true, |t| now.saturating_duration_since(t) >= STATUS_EVERY);
        if status_due && self.settings.status {
            station.notify(&format!("STATUS={}", station.counters()));
            self.last_status = Some(now);
        }
        if now.saturating_duration_since(self.last_counters) >= station.counters_every() {
            station.log(log::Level::Info, &format!("counters: {}", station.counters()));
            self.last_counters = now;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGES: [&str; 5] = ["trigger", "capture", "infer", "actuator", "recorder"];

    /// A station on a made-up clock: the stages beat at every tick unless stalled; what the
    /// supervisor does is written down with the time, in ms from the start.
    struct Fake {
        t0: Instant,
        now: Instant,
        last_beat: Vec<(&'static str, Instant)>,
        stalled: Vec<&'static str>,
        camera_down: bool,
        stop: bool,
        hup: bool,
        recorder_finished: bool,
        counters_every: Duration,
        /// What a reload sets `counters_every` to.
        reloaded_every: Duration,
        parts: u64,
        done: Vec<(u64, String)>,
    }

    impl Fake {
        fn new(t0: Instant) -> Self {
            Fake {
                t0,
                now: t0,
                last_beat: STAGES.iter().map(|&s| (s, t0)).collect(),
                stalled: Vec::new(),
                camera_down: false,
                stop: false,
                hup: false,
                recorder_finished: false,
                counters_every: Duration::from_secs(60),
                reloaded_every: Duration::from_secs(60),
                parts: 0,
                done: Vec::new(),
            }
        }

        fn note(&mut self, what: String) {
            let ms = (self.now - self.t0).as_millis() as u64;
            self.done.push((ms, what));
        }

        /// What was done, from `from_ms` on.
        fn since(&self, from_ms: u64) -> Vec<(u64, &str)> {
            self.done.iter().filter(|(t, _)| *t >= from_ms).map(|(t, s)| (*t, s.as_str())).collect()
        }

        /// When each `what` was done.
        fn times(&self, what: &str) -> Vec<u64> {
            self.done.iter().filter(|(_, s)| s == what).map(|(t, _)| *t).collect()
        }
    }

    impl Station for Fake {
        fn recorder_finished(&self) -> bool {
            self.recorder_finished
        }
        fn take_reload_request(&mut self) -> bool {
            std::mem::take(&mut self.hup)
        }
        fn stop_requested(&self) -> bool {
            self.stop
        }
        fn silences(&self) -> Vec<(&'static str, Duration)> {
            self.last_beat.iter().map(|&(s, at)| (s, self.now - at)).collect()
        }
        fn camera_down(&self) -> bool {
            self.camera_down
        }
        fn counters_every(&self) -> Duration {
            self.counters_every
        }
        fn counters(&self) -> Counters {
            let mut c = Counters::default();
            (c.parts, c.pass) = (self.parts, self.parts);
            c
        }
        fn reload(&mut self) {
            self.counters_every = self.reloaded_every;
            self.note("reload".into());
        }
        fn stop_triggers(&mut self) {
            self.note("stop triggers".into());
        }
        fn abort_in_flight(&mut self) {
            self.note("abort".into());
        }
        fn notify(&mut self, state: &str) {
            self.note(format!("notify {state}"));
        }
        fn set_ready(&mut self, on: bool) {
            self.note(format!("ready {}", if on { "on" } else { "off" }));
        }
        fn set_fault(&mut self, on: bool) {
            self.note(format!("fault {}", if on { "on" } else { "off" }));
        }
        fn log(&mut self, level: log::Level, message: &str) {
            self.note(format!("{level} {message}"));
        }
    }

    /// A supervisor started at t0 over a fake station, and the made-up clock.
    struct Line {
        sup: Supervisor,
        st: Fake,
        ended: Option<(u64, Ended)>,
    }

    impl Line {
        fn start(watchdog_ms: Option<u64>, status: bool) -> Line {
            let settings = Settings {
                station: "test".into(),
                watchdog: watchdog_ms.map(Duration::from_millis),
                status,
                stall_timeout: Duration::from_millis(500),
                drain_timeout: Duration::from_millis(1000),
            };
            let t0 = Instant::now();
            let mut st = Fake::new(t0);
            let sup = Supervisor::start(settings, t0, &mut st);
            Line { sup, st, ended: None }
        }

        fn ms(&self) -> u64 {
            (self.st.now - self.st.t0).as_millis() as u64
        }

        /// Ticks every 50 ms until `until_ms` (or the end); the stages that are not stalled
        /// beat just before each tick.
        fn run_to(&mut self, until_ms: u64) {
            while self.ended.is_none() && self.ms() + 50 <= until_ms {
                self.st.now += TICK;
                let now = self.st.now;
                for (stage, at) in &mut self.st.last_beat {
                    if !self.st.stalled.contains(stage) {
                        *at = now;
                    }
                }
                if let ControlFlow::Break(ended) = self.sup.tick(now, &mut self.st) {
                    self.ended = Some((self.ms(), ended));
                }
            }
        }

        fn pings(&self) -> Vec<u64> {
            self.st.times("notify WATCHDOG=1")
        }
    }

    #[test]
    fn start_says_ready_to_systemd_the_output_and_the_log() {
        let line = Line::start(Some(200), true);
        assert_eq!(
            line.st.since(0),
            [(0, "notify READY=1"), (0, "ready on"), (0, "INFO station test ready")]
        );
    }

    #[test]
    fn the_watchdog_is_fed_only_while_every_stage_progresses() {
        let mut line = Line::start(Some(200), false);
        line.run_to(1000);
        assert_eq!(line.pings(), [200, 400, 600, 800, 1000]);
        // The inference stops beating at 1000: fed while its silence is within the stall
        // timeout (500 ms), not once it is over.
        line.st.stalled = vec!["infer"];
        line.run_to(3000);
        assert_eq!(line.pings(), [200, 400, 600, 800, 1000, 1200, 1400]);
        // It goes round again: fed at once (the last ping is long past), then every 200 ms.
        line.st.stalled.clear();
        line.run_to(3500);
        assert_eq!(line.pings()[7..], [3050, 3250, 3450]);
        // A camera that does not deliver is a fault, but the stages still progress: fed.
        line.st.camera_down = true;
        line.run_to(4000);
        assert_eq!(line.pings()[10..], [3650, 3850]);
        assert_eq!(line.st.times("fault on"), [1550, 3550]);
    }

    #[test]
    fn without_a_watchdog_nothing_is_pinged() {
        let mut line = Line::start(None, true);
        line.run_to(3000);
        assert_eq!(line.pings(), [] as [u64; 0]);
    }

    #[test]
    fn a_stalled_stage_raises_the_fault_output_until_it_recovers() {
        let mut line = Line::start(Some(200), false);
        line.run_to(1000);
        assert_eq!(line.st.times("fault on"), [] as [u64; 0]);
        line.st.stalled = vec!["actuator", "capture"];
        line.run_to(3000);
        // Raised once, naming the stalled stages in pipeline order; no ping from then on.
        assert_eq!(
            line.st.since(1500),
            [(1550, "fault on"), (1550, "ERROR fault: stage stalled: capture, actuator")]
        );
        line.st.stalled.clear();
        line.run_to(3100);
        assert_eq!(
            line.st.since(3050),
            [(3050, "fault off"), (3050, "INFO fault cleared"), (3050, "notify WATCHDOG=1")]
        );
        // A camera that does not deliver is a fault of its own, said as such.
        line.st.camera_down = true;
        line.run_to(3200);
        line.st.camera_down = false;
        line.run_to(3300);
        let faults: Vec<_> =
            line.st.since(3100).into_iter().filter(|(_, s)| !s.starts_with("notify")).collect();
        assert_eq!(
            faults,
            [
                (3150, "fault on"),
                (3150, "ERROR fault: camera not delivering"),
                (3250, "fault off"),
                (3250, "INFO fault cleared"),
            ]
        );
    }

    const COUNTERS: &str = "parts 7, pass 7, reject 0 (fail-safe 0), missed 0, skipped 0, errors 0";

    #[test]
    fn counters_are_logged_every_counters_every_s() {
        let mut line = Line::start(None, false);
        line.st.parts = 7;
        line.run_to(185_000);
        let logged = |line: &Line| line.st.times(&format!("INFO counters: {COUNTERS}"));
        assert_eq!(logged(&line), [60_000, 120_000, 180_000]);
        // SIGHUP: the file is re-read first thing in the tick, so a shorter period that is
        // already over logs in that same tick, then counts from there.
        line.st.reloaded_every = Duration::from_secs(5);
        line.st.hup = true;
        line.run_to(196_000);
        assert_eq!(line.st.times("reload"), [185_050]);
        assert_eq!(logged(&line), [60_000, 120_000, 180_000, 185_050, 190_050, 195_050]);
    }

    #[test]
    fn status_goes_to_the_service_manager_every_2_s_from_the_first_tick() {
        let mut line = Line::start(None, true);
        line.st.parts = 7;
        line.run_to(4100);
        assert_eq!(line.st.times(&format!("notify STATUS={COUNTERS}")), [50, 2050, 4050]);
        // Not under systemd: no STATUS= at all.
        let mut line = Line::start(None, false);
        line.run_to(4100);
        assert!(line.st.done.iter().all(|(_, s)| !s.contains("STATUS=")), "{:?}", line.st.done);
    }

    #[test]
    fn sigterm_starts_the_drain_and_the_drain_ends_at_its_timeout() {
        let mut line = Line::start(Some(200), false);
        line.run_to(500);
        line.st.stop = true;
        line.run_to(10_000);
        let done: Vec<_> =
            line.st.since(550).into_iter().filter(|(_, s)| *s != "notify WATCHDOG=1").collect();
        assert_eq!(
            done,
            [
                (550, "stop triggers"),
                (550, "notify STOPPING=1"),
                (550, "INFO stopping: no new triggers; finishing the parts in flight"),
                (550, "ready off"),
                // The drain timeout (1000 ms) is over: the parts in flight are given up.
                (1550, "abort"),
                (1550, "ERROR parts still in flight after 1000 ms: recording them as not inspected"),
                // 2 s more for the stages to stop, then exit anyway.
                (3550, "ERROR a stage did not stop; exiting anyway"),
            ]
        );
        assert_eq!(line.ended, Some((3550, Ended::GaveUp)));
        // The stages kept going round: the watchdog was fed all along.
        assert_eq!(*line.pings().last().unwrap(), 3400);
    }

    #[test]
    fn a_drain_that_finishes_in_time_ends_when_the_recorder_does() {
        let mut line = Line::start(Some(200), false);
        line.run_to(500);
        line.st.stop = true;
        line.run_to(1200);
        line.st.recorder_finished = true;
        line.run_to(10_000);
        assert_eq!(line.ended, Some((1250, Ended::Recorded)));
        assert_eq!(line.st.times("notify STOPPING=1"), [550]);
        assert_eq!(line.st.times("abort"), [] as [u64; 0]);
    }

    #[test]
    fn a_zero_drain_timeout_gives_up_on_the_parts_at_once() {
        let mut line = Line::start(None, false);
        line.sup.settings.drain_timeout = Duration::ZERO;
        line.st.stop = true;
        line.run_to(10_000);
        assert_eq!(line.st.times("abort"), [50]);
        assert_eq!(line.ended, Some((2050, Ended::GaveUp)));
    }
}
