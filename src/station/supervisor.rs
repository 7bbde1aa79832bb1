//! The station's supervisor: once every stage runs, it tells systemd we are ready, then
//! every 50 ms feeds the watchdog while every stage makes progress, raises the fault
//! output while one is stalled, the camera is down or the records cannot be written
//! (and drops ready while the records cannot be written: every part is then rejected),
//! logging each change of fault once, sends STATUS= and logs the counters, applies SIGHUP
//! reloads, and on SIGTERM stops the triggers and drains the parts in flight, giving up on
//! them after the drain timeout.
//!
//! A stage thread that panics, or ends without being asked to stop, is a failure: the
//! fault output goes up at once, ready down, the log names the stage and the panic
//! message, and the station stops as on SIGTERM (the parts in flight still get their
//! pulses and records where the stages that remain can do it) and ends with
//! [`Ended::Failed`], which the daemon turns into an error exit, so that systemd's
//! `Restart=on-failure` starts it again. A stage that stopped as asked is no failure.
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
    /// The stage threads that have ended since the last call, in pipeline order, each
    /// with its panic message if it panicked.
    fn ended_stages(&mut self) -> Vec<(&'static str, Option<String>)>;
    /// Why records cannot be written now (full disk, removed folder…); None while they
    /// can.
    fn records_fault(&self) -> Option<String>;
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
    /// Why the station is in fault now (None: no fault); each change, for the outside.
    fn fault_changed(&mut self, _why: Option<&str>) {}
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The recorder finished: every part is recorded (as not inspected if given up on).
    Recorded,
    /// A stage did not stop within the drain timeout and the grace after it.
    GaveUp,
    /// A stage died (panicked, or ended unasked): why. The station stopped after it.
    Failed(String),
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
    /// Why the fault output is up; None while it is down.
    fault: Option<String>,
    ready_on: bool,
    /// A stage died: why (the station is stopping, and ends failed).
    failure: Option<String>,
    /// Stages that ended normally while the station was running, and when: a failure
    /// unless a stop turns out to have been asked for by the next tick (the trigger
    /// stage's end, a replay that ran out, reaches the others first).
    ended_unasked: Vec<(&'static str, Instant)>,
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
            fault: None,
            ready_on: true,
            failure: None,
            ended_unasked: Vec::new(),
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
        // A stage that died stops the station, first thing: a dead recorder has also
        // "finished".
        for (stage, panic) in station.ended_stages() {
            match panic {
                Some(message) => self.fail(now, format!("stage {stage} panicked: {message}"), station),
                None if stage != "trigger" && self.phase == Phase::Running => {
                    self.ended_unasked.push((stage, now));
                }
                None => {}
            }
        }
        if self.phase == Phase::Running && !station.stop_requested() {
            if let Some(&(stage, _)) = self.ended_unasked.iter().find(|(_, at)| *at < now) {
                self.fail(now, format!("stage {stage} ended without being asked to stop"), station);
            }
        }
        if station.recorder_finished() {
            return ControlFlow::Break(self.ending(Ended::Recorded));
        }
        if station.take_reload_request() {
            station.reload();
        }
        if self.phase == Phase::Running && station.stop_requested() {
            self.stop(now, station);
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
                return ControlFlow::Break(self.ending(Ended::GaveUp));
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
        let records = station.records_fault();
        let mut why: Vec<String> = self.failure.iter().cloned().collect();
        if camera_down {
            why.push("camera not delivering".into());
        }
        if !stalled.is_empty() {
            why.push(format!("stage stalled: {}", stalled.join(", ")));
        }
        if let Some(r) = &records {
            why.push(format!("records cannot be written: {r}"));
        }
        self.set_fault((!why.is_empty()).then(|| why.join("; ")), station);
        // Not ready while every part is rejected for want of records.
        let ready = self.phase == Phase::Running && records.is_none();
        if ready != self.ready_on {
            self.ready_on = ready;
            station.set_ready(ready);
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

    /// Stops taking triggers and starts the drain (SIGTERM, the end of a replay, or a
    /// failure).
    fn stop(&mut self, now: Instant, station: &mut impl Station) {
        station.stop_triggers();
        station.notify("STOPPING=1");
        station.log(log::Level::Info, "stopping: no new triggers; finishing the parts in flight");
        station.set_ready(false);
        self.ready_on = false;
        self.phase = Phase::Draining { until: now + self.settings.drain_timeout };
    }

    /// A stage died: the fault output up at once, then stop as on SIGTERM, to end failed.
    fn fail(&mut self, now: Instant, why: String, station: &mut impl Station) {
        if self.failure.is_some() {
            station.log(log::Level::Error, &format!("also: {why}"));
            return;
        }
        station.log(
            log::Level::Error,
            &format!("{why}; stopping the station, to exit with an error (the service manager restarts it)"),
        );
        self.failure = Some(why);
        let fault = match &self.fault {
            Some(f) => format!("{}; {f}", self.failure.as_deref().unwrap_or_default()),
            None => self.failure.clone().unwrap_or_default(),
        };
        self.set_fault(Some(fault), station);
        if self.phase == Phase::Running {
            self.stop(now, station);
        }
    }

    /// The fault output follows `why`; each change of it is logged once.
    fn set_fault(&mut self, why: Option<String>, station: &mut impl Station) {
        if why == self.fault {
            return;
        }
        if why.is_some() != self.fault.is_some() {
            station.set_fault(why.is_some());
        }
        match &why {
            Some(w) => station.log(log::Level::Error, &format!("fault: {w}")),
            None => station.log(log::Level::Info, "fault cleared"),
        }
        station.fault_changed(why.as_deref());
        self.fault = why;
    }

    /// How the run ended, a failure overriding the rest.
    fn ending(&self, ended: Ended) -> Ended {
        match &self.failure {
            Some(why) => Ended::Failed(why.clone()),
            None => ended,
        }
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
        /// Stages that end at the next tick, with their panic message.
        ending: Vec<(&'static str, Option<String>)>,
        records_fault: Option<String>,
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
                ending: Vec::new(),
                records_fault: None,
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
        fn ended_stages(&mut self) -> Vec<(&'static str, Option<String>)> {
            std::mem::take(&mut self.ending)
        }
        fn records_fault(&self) -> Option<String> {
            self.records_fault.clone()
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

    #[test]
    fn records_that_cannot_be_written_raise_fault_and_drop_ready_until_they_can() {
        let mut line = Line::start(Some(200), false);
        line.run_to(500);
        line.st.records_fault = Some("records /r/parts.jsonl: No space left on device".into());
        line.run_to(2000);
        line.st.records_fault = None;
        line.run_to(2500);
        let done: Vec<_> =
            line.st.since(500).into_iter().filter(|(_, s)| !s.starts_with("notify")).collect();
        // Once per change, not per tick; the station recovers by itself.
        assert_eq!(
            done,
            [
                (550, "fault on"),
                (550, "ERROR fault: records cannot be written: records /r/parts.jsonl: No space left on device"),
                (550, "ready off"),
                (2050, "fault off"),
                (2050, "INFO fault cleared"),
                (2050, "ready on"),
            ]
        );
        // The stages still go round: the watchdog is fed all along.
        assert_eq!(line.pings().len(), 12);
        // A second fault while one is up: the output stays up, the reason is logged.
        line.st.camera_down = true;
        line.run_to(2600);
        line.st.records_fault = Some("disk full".into());
        line.run_to(2700);
        let done: Vec<_> =
            line.st.since(2550).into_iter().filter(|(_, s)| !s.starts_with("notify")).collect();
        assert_eq!(
            done,
            [
                (2550, "fault on"),
                (2550, "ERROR fault: camera not delivering"),
                (2650, "ERROR fault: camera not delivering; records cannot be written: disk full"),
                (2650, "ready off"),
            ]
        );
    }

    #[test]
    fn a_panicked_stage_raises_fault_stops_the_station_and_ends_failed() {
        let mut line = Line::start(Some(200), false);
        line.run_to(500);
        line.st.ending = vec![("infer", Some("index out of bounds".into()))];
        line.run_to(700);
        let done: Vec<_> =
            line.st.since(550).into_iter().filter(|(_, s)| !s.starts_with("notify WATCHDOG")).collect();
        assert_eq!(
            done,
            [
                (550, "ERROR stage infer panicked: index out of bounds; stopping the station, to exit with an error (the service manager restarts it)"),
                (550, "fault on"),
                (550, "ERROR fault: stage infer panicked: index out of bounds"),
                (550, "stop triggers"),
                (550, "notify STOPPING=1"),
                (550, "INFO stopping: no new triggers; finishing the parts in flight"),
                (550, "ready off"),
            ]
        );
        assert_eq!(line.ended, None, "the parts in flight are drained first");
        // The stages that remain stop as asked (no further failure), the recorder last.
        line.st.ending = vec![("trigger", None), ("capture", None), ("actuator", None)];
        line.run_to(800);
        line.st.ending = vec![("recorder", None)];
        line.st.recorder_finished = true;
        line.run_to(1000);
        assert_eq!(line.ended, Some((850, Ended::Failed("stage infer panicked: index out of bounds".into()))));
        assert_eq!(line.st.times("fault off"), [] as [u64; 0]);
    }

    #[test]
    fn a_dead_recorder_ends_the_run_failed_at_once() {
        let mut line = Line::start(None, false);
        line.run_to(300);
        line.st.ending = vec![("recorder", Some("disk on fire".into()))];
        line.st.recorder_finished = true;
        line.run_to(1000);
        assert_eq!(line.ended, Some((350, Ended::Failed("stage recorder panicked: disk on fire".into()))));
        assert_eq!(line.st.times("fault on"), [350]);
    }

    #[test]
    fn a_stage_that_ends_unasked_is_a_failure_but_the_end_of_a_replay_is_not() {
        // The capture stage returns while the trigger still runs: a failure, a tick later.
        let mut line = Line::start(None, false);
        line.run_to(300);
        line.st.ending = vec![("capture", None)];
        line.run_to(500);
        assert_eq!(line.st.times("ERROR stage capture ended without being asked to stop; stopping the station, to exit with an error (the service manager restarts it)"), [400]);
        // The replay ran out: the trigger ends, then the rest, and stop was asked for.
        let mut line = Line::start(None, false);
        line.run_to(300);
        line.st.ending = vec![("trigger", None), ("capture", None)];
        line.st.stop = true;
        line.run_to(500);
        line.st.recorder_finished = true;
        line.run_to(600);
        assert_eq!(line.ended, Some((550, Ended::Recorded)));
        assert!(line.st.done.iter().all(|(_, s)| !s.contains("fault")), "{:?}", line.st.done);
    }
}
