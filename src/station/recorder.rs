//! The recorder thread: turns each finished part into exactly one record line, archives
//! rejected parts (and a sample of passes), and keeps the counters.
//!
//! When a record cannot be written (full disk, removed folder: see `records.rs`), the
//! recorder raises the records fault ([`RecordsHealth`]: the supervisor raises the fault
//! output and drops ready, the actuator rejects every part), logs it once, and keeps
//! this record and every later one in a bounded memory backlog (`backlog.rs`). It tries
//! again every [`RETRY_EVERY`] (whether parts come or not); once a write works it writes
//! the backlog oldest first, clears the fault and logs once more, with how many records
//! waited and how many had to be reduced or were lost. A part leaves the journal only
//! once its record is written. An archive that cannot be written is logged once per
//! failure too (each part's record still says so).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::actuate::Finished;
use super::archive::Archive;
use super::backlog::{Backlog, Kept, Reduced, Waiting, BACKLOG_BYTES, BACKLOG_REDUCED};
use super::counters::Counters;
use super::decide::Verdict;
use super::identity::RunIdentity;
use super::journal::{self, Journal};
use super::outside::Observer;
use super::part::{inject_panic, Heartbeat, Part};
use super::records::{record_text, rfc3339, AlignmentRecord, PartRecord, RecordError, RecordLog, RecordsHealth, Writer};
use crate::text::for_log;

/// While records cannot be written, how often the recorder tries again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

pub struct Recorder {
    /// The station's name as recorded (capped).
    pub station: String,
    /// The model and software of this run (the station file's hash comes with each part).
    pub run: RunIdentity,
    pub log: RecordLog,
    /// Told each part whose record is written.
    pub journal: Arc<Mutex<Journal>>,
    /// Set while records cannot be written.
    pub health: Arc<RecordsHealth>,
    pub archive: Option<Archive>,
    pub archive_rejects: bool,
    pub archive_pass_every: u32,
    /// Heatmap colour range (cold, hot) for overlays.
    pub overlay_range: (f32, f32),
    pub inbox: Receiver<Finished>,
    pub counters: Arc<Mutex<Counters>>,
    pub heartbeat: Arc<Heartbeat>,
    /// Also print one line per part on stdout (the demo).
    pub echo: bool,
    /// The web view and MQTT, told each part once it is recorded; never waited for.
    pub observer: Option<Observer>,
}

/// The recorder's state around a records failure.
struct Outage {
    backlog: Backlog,
    /// When writing first failed (this time).
    since: Option<Instant>,
    retry_at: Instant,
    /// Records written from the backlog since the failure began.
    caught_up: usize,
    /// Whether the backlog's overflow was logged (this time).
    overflow_logged: bool,
    archive_failing: bool,
}

impl Recorder {
    pub fn run(mut self) {
        let mut passes = 0u64;
        let mut handled = 0u64;
        let mut w = Outage {
            backlog: Backlog::new(BACKLOG_BYTES, BACKLOG_REDUCED),
            since: None,
            retry_at: Instant::now(),
            caught_up: 0,
            overflow_logged: false,
            archive_failing: false,
        };
        loop {
            self.heartbeat.beat();
            match self.inbox.recv_timeout(Duration::from_millis(100)) {
                Ok(finished) => {
                    handled += 1;
                    inject_panic("recorder", handled);
                    let record = self.record(&finished, &mut passes, &mut w);
                    if let Some(o) = &self.observer {
                        o.observe(record, finished.part);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            if !w.backlog.is_empty() && Instant::now() >= w.retry_at {
                self.flush(&mut w);
            }
            let retried = self.journal.lock().unwrap_or_else(|p| p.into_inner()).retry();
            if let Some(r) = retried {
                journal::report(&self.health, &r);
            }
        }
        if !w.backlog.is_empty() {
            self.flush(&mut w);
        }
        if !w.backlog.is_empty() {
            let n = w.backlog.len();
            self.health.unwritten.store(n as u64, std::sync::atomic::Ordering::Relaxed);
            log::error!(
                "records: {n} records could not be written before the station stopped ({}); their parts stay in the journal and get a record at the next start",
                for_log(&self.health.fault().unwrap_or_default())
            );
        }
        if let Err(e) = self.log.sync() {
            log::error!("{}", for_log(&e.to_string()));
        }
        self.heartbeat.finish();
    }

    /// One finished part: its record (written, or kept in the backlog), archive, counters.
    /// Returns the record.
    fn record(&mut self, finished: &Finished, passes: &mut u64, w: &mut Outage) -> PartRecord {
        let mut record = self.record_of(finished);
        let verdict = record.verdict.unwrap_or(Verdict::Reject);
        let archive = match verdict {
            Verdict::Reject => self.archive_rejects,
            Verdict::Pass => {
                *passes += 1;
                self.archive_pass_every > 0 && *passes % self.archive_pass_every as u64 == 0
            }
        };
        let mut archive_failed = false;
        if archive {
            if let Some(part) = finished.part.as_deref() {
                match self.archive_part(part, verdict) {
                    Ok(files) => {
                        if w.archive_failing && !files.is_empty() {
                            w.archive_failing = false;
                            log::info!("archive: writing again");
                        }
                        record.archived = files;
                    }
                    Err(e) => {
                        if !w.archive_failing {
                            w.archive_failing = true;
                            log::error!(
                                "part {}: {}; noting it in each part's record until the archive can be written",
                                part.id,
                                for_log(&e)
                            );
                        }
                        archive_failed = true;
                        let note = format!("archive failed: {}", record_text(&e));
                        record.reason = Some(match record.reason.take() {
                            Some(r) => format!("{r}; {note}"),
                            None => note,
                        });
                    }
                }
            }
        }
        self.count(&record, archive_failed);
        if self.echo {
            println!("{}", summary_line(&record));
        } else if verdict == Verdict::Reject {
            log::info!("{}", summary_line(&record));
        } else {
            log::debug!("{}", summary_line(&record));
        }
        let line = RecordLog::line_of(&record);
        if w.backlog.is_empty() {
            match self.log.append_line(&line) {
                Ok(()) => {
                    self.recorded(record.id);
                    return record;
                }
                Err(e) => self.failed(e, w),
            }
        }
        let reduced = Reduced {
            id: record.id,
            trigger: finished.expect.trigger,
            triggered: finished.expect.triggered_wall,
            verdict,
            fail_safe: record.fail_safe,
        };
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).errors += 1;
        if w.backlog.push(line, reduced) != Kept::Whole && !w.overflow_logged {
            w.overflow_logged = true;
            log::error!(
                "records: the memory backlog is full ({} records, {} MiB): further records are kept as id and verdict only",
                w.backlog.len(),
                w.backlog.bytes() >> 20
            );
        }
        record
    }

    /// A record could not be written: the fault, logged once per failure.
    fn failed(&mut self, e: RecordError, w: &mut Outage) {
        let now = Instant::now();
        w.retry_at = now + RETRY_EVERY;
        let why = format!("{}: {}", e.path.display(), e.error);
        if self.health.set(Writer::Records, Some(why.clone())) {
            w.since = Some(now);
            w.caught_up = 0;
            log::error!(
                "records: cannot write {}; rejecting every part fail-safe and keeping the records in memory (up to {} MiB) until they can be written",
                for_log(&why),
                BACKLOG_BYTES >> 20
            );
        }
    }

    /// Writes the backlog, oldest first; clears the fault once it is empty.
    fn flush(&mut self, w: &mut Outage) {
        let Recorder { log, journal, health, station, run, .. } = self;
        let (written, result) = w.backlog.flush(|waiting| {
            let line = match waiting {
                Waiting::Line { line, .. } => line.clone(),
                Waiting::Reduced(r) => RecordLog::line_of(&reduced_record(r, station, run)),
            };
            log.append_line(&line)?;
            let done = journal.lock().unwrap_or_else(|p| p.into_inner()).recorded(waiting.id());
            journal::report(health, &done);
            Ok::<(), RecordError>(())
        });
        w.caught_up += written;
        match result {
            Ok(()) => {
                if self.health.set(Writer::Records, None) {
                    let (reduced, lost) = w.backlog.take_counts();
                    let secs = w.since.map_or(0, |t| t.elapsed().as_secs());
                    let mut overflow = String::new();
                    if reduced > 0 {
                        overflow += &format!("; {reduced} of them reduced to id and verdict (the backlog was full)");
                    }
                    if lost > 0 {
                        overflow += &format!("; {lost} more lost (their parts get a record at the next start)");
                    }
                    log::info!(
                        "records: writable again after {secs} s; wrote the {} records that waited{overflow}",
                        w.caught_up
                    );
                    w.since = None;
                    w.overflow_logged = false;
                }
            }
            Err(e) => self.failed(e, w),
        }
    }

    /// The part's record is on disk: it leaves the journal.
    fn recorded(&mut self, id: u64) {
        let done = self.journal.lock().unwrap_or_else(|p| p.into_inner()).recorded(id);
        journal::report(&self.health, &done);
    }

    fn record_of(&self, f: &Finished) -> PartRecord {
        let e = &f.expect;
        let mut r = PartRecord {
            id: e.id,
            station: self.station.clone(),
            version: self.run.version.clone(),
            model_sha256: self.run.model_sha256.clone(),
            station_sha256: e.station_sha256.as_deref().map(str::to_string),
            trigger: e.trigger.to_string(),
            triggered: rfc3339(e.triggered_wall),
            pulse: f.pulse.clone(),
            ..Default::default()
        };
        match f.part.as_deref() {
            Some(part) => {
                r.threshold = part.threshold;
                if let Some(sha) = &part.station_sha256 {
                    r.station_sha256 = Some(sha.to_string());
                }
                r.captured = part.frame.as_ref().map(|fr| rfc3339(fr.captured_wall));
                r.origin = part
                    .origin
                    .as_deref()
                    .or(part.frame.as_ref().map(|fr| fr.origin.as_str()))
                    .map(record_text);
                r.score = part.inference.as_ref().map(|i| i.score);
                let largest = part.decision.as_ref().and_then(|d| d.largest);
                r.defect_area_px = largest.map(|l| l.area_px);
                r.defect_bbox = largest.map(|l| [l.bbox.x, l.bbox.y, l.bbox.w, l.bbox.h]);
                r.alignment = part.alignment.map(|a| AlignmentRecord { dx: a.dx, dy: a.dy, confidence: a.confidence });
                r.latency_ms = part.latency.clone();
                r.reason = part.fail_safe.as_deref().map(record_text);
                if f.late {
                    // The pulse went out as a reject before the verdict was known.
                    r.late_verdict = part.fail_safe.is_none().then(|| part.verdict());
                    let note = "verdict not ready when its pulse was due".to_string();
                    r.reason = Some(match r.reason.take() {
                        Some(reason) => format!("{note} ({reason})"),
                        None => note,
                    });
                    r.verdict = Some(Verdict::Reject);
                } else {
                    r.verdict = Some(part.verdict());
                }
            }
            None => {
                r.verdict = Some(Verdict::Reject);
                r.reason = f.abandoned.as_deref().map(record_text).or(Some("no verdict".into()));
            }
        }
        r.fail_safe =
            f.late || f.part.as_ref().map_or(true, |p| p.fail_safe.is_some());
        r
    }

    fn archive_part(&mut self, part: &Part, verdict: Verdict) -> Result<Vec<String>, String> {
        let (Some(archive), Some(frame)) = (self.archive.as_mut(), part.frame.as_ref()) else {
            return Ok(Vec::new());
        };
        let (w, h) = frame.image.dimensions();
        let overlay = match &part.inference {
            Some(inf) => {
                let show_roi = (inf.roi.w, inf.roi.h) != (w, h);
                let o = inf.overlay(&frame.image, part.pixel_threshold, self.overlay_range, show_roi);
                Some(o.map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let files = archive.store(&archive_stem(frame.captured_wall, part.id, verdict), &frame.image, overlay.as_ref())?;
        Ok(files.iter().map(|p| p.display().to_string()).collect())
    }

    fn count(&self, r: &PartRecord, archive_failed: bool) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.parts += 1;
        match r.verdict {
            Some(Verdict::Pass) => c.pass += 1,
            _ => c.reject += 1,
        }
        if r.fail_safe {
            c.fail_safe += 1;
        }
        if archive_failed {
            c.errors += 1;
        }
        if let (Some(total), None) = (r.latency_ms.total, &r.late_verdict) {
            c.add_cycle(total);
        }
    }
}

/// An archived part's file name (without extension): capture time to the millisecond,
/// the part's id (unique for the station's life) and the verdict, e.g.
/// `20240501T101502.123Z_00001234_reject`. Only the station's own text: nothing from
/// outside (a file name, the station's name) goes into it.
pub fn archive_stem(captured: std::time::SystemTime, id: u64, verdict: Verdict) -> String {
    let stamp = humantime::format_rfc3339_millis(captured).to_string().replace([':', '-'], "");
    let verdict = match verdict {
        Verdict::Pass => "pass",
        Verdict::Reject => "reject",
    };
    format!("{stamp}_{id:08}_{verdict}")
}

/// The short record of a part whose full record did not fit in the backlog.
fn reduced_record(r: &Reduced, station: &str, run: &RunIdentity) -> PartRecord {
    PartRecord {
        id: r.id,
        station: station.to_string(),
        version: run.version.clone(),
        model_sha256: run.model_sha256.clone(),
        trigger: r.trigger.to_string(),
        triggered: rfc3339(r.triggered),
        verdict: Some(r.verdict),
        fail_safe: r.fail_safe,
        reason: Some(
            "record reduced to its id and verdict: the records could not be written and the memory backlog was full"
                .into(),
        ),
        ..Default::default()
    }
}

/// The part's line for a person (the log, or the demo's stdout): outside text escaped.
fn summary_line(r: &PartRecord) -> String {
    let verdict = match r.verdict {
        Some(Verdict::Pass) => "pass  ",
        _ => "REJECT",
    };
    let score = r.score.map_or("-".to_string(), |s| format!("{s:.4}"));
    let mut line = format!(
        "part {:>5} {verdict} score {score:>8} (threshold {:.4}) {}",
        r.id,
        r.threshold,
        for_log(r.origin.as_deref().unwrap_or("-"))
    );
    if let Some(total) = r.latency_ms.total {
        line.push_str(&format!(" {total:.0} ms"));
    }
    if let Some(reason) = &r.reason {
        line.push_str(&format!(" [{}]", for_log(reason)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::actuate::Expect;
    use crate::station::decide::{Decider, Decision};
    use crate::station::part::Live;
    use crate::station::records::tests::{ids, FillingDisk};
    use crate::station::records::RECORD_FILE;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn archive_names_differ_by_millisecond_and_id() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_558_502_123);
        assert_eq!(archive_stem(t, 1234, Verdict::Reject), "20240501T101502.123Z_00001234_reject");
        let same_second = t + Duration::from_millis(1);
        assert_ne!(archive_stem(t, 7, Verdict::Pass), archive_stem(same_second, 7, Verdict::Pass));
        assert_ne!(archive_stem(t, 7, Verdict::Pass), archive_stem(t, 8, Verdict::Pass));
    }

    #[test]
    fn the_summary_line_cannot_be_split_by_an_origin() {
        let r = PartRecord {
            id: 3,
            origin: Some("a.png\nERROR forged".into()),
            reason: Some("corrupt frame a.png\r\n: bad".into()),
            ..Default::default()
        };
        let line = summary_line(&r);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert!(line.contains(r"a.png\nERROR forged"), "{line}");
    }

    fn live() -> Live {
        Live {
            decider: Decider { threshold: 0.5, pixel_threshold: 0.5, min_area: None },
            reject_delay: Duration::from_millis(100),
            reject_pulse: Duration::from_millis(10),
            pass_pulse: Duration::ZERO,
            light_settle: Duration::ZERO,
            rate_hz: 1.0,
            counters_every: Duration::from_secs(60),
            inject_infer_delay: Duration::ZERO,
            station_sha256: Some(Arc::from("f00d")),
        }
    }

    /// Part `id`, inspected and passed.
    fn passed(id: u64) -> Finished {
        let now = Instant::now();
        let mut part = Part::new(id, "replay", now, SystemTime::now(), &live());
        part.origin = Some(format!("{id:04}_good.png"));
        part.decision = Some(Decision { verdict: Verdict::Pass, largest: None, fail_safe: None });
        let expect = Expect {
            id,
            trigger: "replay",
            triggered_at: now,
            triggered_wall: part.triggered_wall,
            due: part.due,
            station_sha256: part.station_sha256.clone(),
        };
        Finished { expect, part: Some(Box::new(part)), pulse: None, late: false, abandoned: None }
    }

    struct Bench {
        dir: tempfile::TempDir,
        room: Arc<AtomicU64>,
        journal: Arc<Mutex<Journal>>,
        health: Arc<RecordsHealth>,
        tx: Option<crossbeam_channel::Sender<Finished>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    /// A recorder on a disk the test fills and empties, with parts 1..=n journalled.
    fn bench(n: u64) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let room = Arc::new(AtomicU64::new(u64::MAX));
        let log = RecordLog::open_with(dir.path(), 1 << 20, 3, Box::new(FillingDisk { room: room.clone() })).unwrap();
        let run = RunIdentity { model_sha256: "abc".into(), station_sha256: None, version: "9.9.9".into() };
        let mut journal = Journal::start(dir.path(), run.clone(), 1).unwrap();
        for _ in 0..n {
            journal.begin("replay", SystemTime::now()).1.unwrap();
        }
        let journal = Arc::new(Mutex::new(journal));
        let health = Arc::new(RecordsHealth::default());
        let (tx, inbox) = crossbeam_channel::unbounded();
        let recorder = Recorder {
            station: "test".into(),
            run,
            log,
            journal: journal.clone(),
            health: health.clone(),
            archive: None,
            archive_rejects: false,
            archive_pass_every: 0,
            overlay_range: (0.0, 1.0),
            inbox,
            counters: Default::default(),
            heartbeat: Heartbeat::new("recorder", Instant::now()),
            echo: false,
            observer: None,
        };
        let thread = std::thread::spawn(move || recorder.run());
        Bench { dir, room, journal, health, tx: Some(tx), thread: Some(thread) }
    }

    impl Bench {
        fn send(&self, id: u64) {
            self.tx.as_ref().unwrap().send(passed(id)).unwrap();
        }
        fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
            let t0 = Instant::now();
            while !done() {
                assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        fn ids(&self) -> Vec<u64> {
            ids(&self.dir.path().join(RECORD_FILE))
        }
        fn stop(&mut self) {
            self.tx.take();
            self.thread.take().unwrap().join().unwrap();
        }
    }

    #[test]
    fn a_full_disk_keeps_records_in_memory_and_writes_them_when_space_returns() {
        let mut b = bench(6);
        b.send(1);
        b.wait("record 1", || b.ids() == [1]);
        // Room for a few bytes only: the record is cut short by the disk, then refused.
        b.room.store(30, Ordering::Relaxed);
        b.send(2);
        b.wait("the records fault", || b.health.failing());
        assert!(b.health.fault().unwrap().contains("No space left on device"), "{:?}", b.health.fault());
        b.send(3);
        b.send(4);
        std::thread::sleep(Duration::from_millis(300));
        // Nothing torn left in the file meanwhile; the parts are still open in the journal.
        assert_eq!(b.ids(), [1]);
        assert_eq!(b.journal.lock().unwrap().open_parts(), 5);
        // Space again: within the retry period the backlog is written, in order, and the
        // fault clears by itself.
        b.room.store(u64::MAX, Ordering::Relaxed);
        b.wait("recovery", || !b.health.failing());
        assert_eq!(b.ids(), [1, 2, 3, 4]);
        b.send(5);
        b.stop();
        assert_eq!(b.ids(), [1, 2, 3, 4, 5]);
        assert_eq!(b.journal.lock().unwrap().open_parts(), 1, "part 6 was never finished");
        assert_eq!(b.health.unwritten.load(Ordering::Relaxed), 0);
        // Every record is whole and says what it was inspected with.
        let text = std::fs::read_to_string(b.dir.path().join(RECORD_FILE)).unwrap();
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!((r["version"].as_str(), r["model_sha256"].as_str()), (Some("9.9.9"), Some("abc")));
            assert_eq!(r["station_sha256"], "f00d");
        }
    }

    #[test]
    fn records_still_unwritten_at_the_end_are_counted_and_stay_journalled() {
        let mut b = bench(3);
        b.room.store(0, Ordering::Relaxed);
        for id in 1..=3 {
            b.send(id);
        }
        b.stop();
        assert_eq!(b.health.unwritten.load(Ordering::Relaxed), 3);
        assert_eq!(b.journal.lock().unwrap().open_parts(), 3);
        assert!(std::fs::read(b.dir.path().join(RECORD_FILE)).unwrap().is_empty());
    }
}
