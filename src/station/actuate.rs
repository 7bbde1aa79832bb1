//! The actuator thread: owns the reject (and pass) outputs and fires each part's pulse at
//! trigger + delay on the monotonic clock. Every trigger is announced here first
//! (`Expect`), so a part whose verdict is not ready when its pulse must start is rejected
//! anyway: a bad part never passes because the computer was slow.
//!
//! Nor because its record may be lost: while the records or the journal cannot be
//! written ([`RecordsHealth`]), every part whose pulse is due is rejected, fail-safe, with
//! that reason in its record (which waits in the recorder's backlog). The actuator itself
//! needs no disk, so the rejects keep firing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::decide::Verdict;
use super::boundary::DigitalOut;
use super::part::{inject_panic, read_live, Heartbeat, Part, SharedLive};
use super::records::{PulseRecord, RecordsHealth};

/// A trigger, announced as soon as it happens.
#[derive(Debug, Clone)]
pub struct Expect {
    pub id: u64,
    pub trigger: &'static str,
    pub triggered_at: Instant,
    pub triggered_wall: SystemTime,
    pub due: Instant,
    /// SHA-256 of the station file in effect at the trigger.
    pub station_sha256: Option<Arc<str>>,
}

pub enum ToActuator {
    Expect(Expect),
    /// A part with its verdict (or its fail-safe reason).
    Done(Box<Part>),
}

/// A part whose story is complete, for the recorder.
pub struct Finished {
    pub expect: Expect,
    pub part: Option<Box<Part>>,
    pub pulse: Option<PulseRecord>,
    /// The pulse fired before the verdict was ready.
    pub late: bool,
    /// Why the part never got a verdict at all (shutdown).
    pub abandoned: Option<String>,
}

struct Pending {
    expect: Expect,
    part: Option<Box<Part>>,
    fired: Option<Option<PulseRecord>>,
    late: bool,
}

struct Output {
    line: Box<dyn DigitalOut>,
    release_at: Option<Instant>,
}

pub struct Actuator {
    pub reject: Box<dyn DigitalOut>,
    pub pass: Option<Box<dyn DigitalOut>>,
    pub live: SharedLive,
    pub inbox: Receiver<ToActuator>,
    pub recorder: Sender<Finished>,
    pub heartbeat: Arc<Heartbeat>,
    /// Set at the end of the drain timeout: record what is left and stop.
    pub abort: Arc<AtomicBool>,
    pub gpio_errors: Arc<AtomicU64>,
    /// Whether records can be written; while not, every part is rejected.
    pub health: Arc<RecordsHealth>,
}

impl Actuator {
    pub fn run(self) {
        let Actuator { reject, pass, live, inbox, recorder, heartbeat, abort, gpio_errors, health } =
            self;
        let mut handled = 0u64;
        raise_priority();
        let mut reject = Output { line: reject, release_at: None };
        let mut pass = pass.map(|line| Output { line, release_at: None });
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut inbox_open = true;
        let set = |out: &mut Output, on: bool| {
            if let Err(e) = out.line.set(on) {
                gpio_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("{}", crate::text::for_log(&e.to_string()));
            }
        };
        set(&mut reject, false);
        if let Some(p) = pass.as_mut() {
            set(p, false);
        }
        loop {
            heartbeat.beat();
            let now = Instant::now();
            // Fire every pulse that is due, then release every pulse that has ended.
            let mut finished = Vec::new();
            for (id, p) in pending.iter_mut() {
                if p.fired.is_some() || p.expect.due > now {
                    continue;
                }
                let l = read_live(&live);
                if health.failing() {
                    if let Some(part) = p.part.take() {
                        let why = health.fault().unwrap_or_default();
                        p.part = Some(Box::new((*part).fail(format!("records cannot be written: {why}"))));
                    }
                }
                let verdict = p.part.as_ref().map_or(Verdict::Reject, |part| part.verdict());
                p.late = p.part.is_none();
                let (out, name, width) = match verdict {
                    Verdict::Reject => (Some(&mut reject), "reject", l.reject_pulse),
                    Verdict::Pass => (pass.as_mut(), "pass", l.pass_pulse),
                };
                p.fired = Some(out.map(|out| {
                    set(out, true);
                    let edge = Instant::now();
                    let end = edge + width;
                    out.release_at = Some(out.release_at.map_or(end, |r| r.max(end)));
                    PulseRecord {
                        output: name.into(),
                        due_ms: super::part::ms(p.expect.triggered_at, p.expect.due),
                        late_us: edge.saturating_duration_since(p.expect.due).as_micros() as f64,
                        width_ms: width.as_secs_f64() * 1e3,
                    }
                }));
                if p.part.is_some() {
                    finished.push(*id);
                }
            }
            for out in std::iter::once(&mut reject).chain(pass.as_mut()) {
                if out.release_at.is_some_and(|r| r <= Instant::now()) {
                    set(out, false);
                    out.release_at = None;
                }
            }
            for id in finished {
                let p = pending.remove(&id).expect("finished ids are pending");
                let _ = recorder.send(finish(p, None));
            }
            let pulses_active = reject.release_at.is_some()
                || pass.as_ref().is_some_and(|p| p.release_at.is_some());
            // Stop on abort, or once the inbox is closed, nothing is pending and no
            // pulse is still high.
            let aborted = abort.load(Ordering::Relaxed);
            if aborted || (!inbox_open && pending.is_empty() && !pulses_active) {
                break;
            }
            // Sleep until the next event: a due pulse, a pulse end, or a message.
            let next = pending
                .values()
                .filter(|p| p.fired.is_none())
                .map(|p| p.expect.due)
                .chain(reject.release_at)
                .chain(pass.as_ref().and_then(|p| p.release_at))
                .min()
                .unwrap_or(now + Duration::from_millis(100))
                .min(now + Duration::from_millis(100));
            if !inbox_open {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                continue;
            }
            match inbox.recv_deadline(next) {
                Ok(ToActuator::Expect(e)) => {
                    pending.insert(e.id, Pending { expect: e, part: None, fired: None, late: false });
                }
                Ok(ToActuator::Done(part)) => {
                    handled += 1;
                    inject_panic("actuator", handled);
                    match pending.get_mut(&part.id) {
                        Some(p) if p.fired.is_some() => {
                            p.part = Some(part);
                            let id = p.expect.id;
                            let p = pending.remove(&id).expect("just found");
                            let _ = recorder.send(finish(p, None));
                        }
                        Some(p) => p.part = Some(part),
                        None => log::error!("part {} finished but was never announced", part.id),
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => inbox_open = false,
            }
        }
        // Leave the actuators released and record whatever never got its verdict.
        set(&mut reject, false);
        if let Some(p) = pass.as_mut() {
            set(p, false);
        }
        for (_, p) in std::mem::take(&mut pending) {
            let _ = recorder.send(finish(p, Some("station stopped before the part was inspected")));
        }
        heartbeat.finish();
    }
}

fn finish(p: Pending, abandoned: Option<&str>) -> Finished {
    Finished {
        expect: p.expect,
        abandoned: if p.part.is_none() { abandoned.map(str::to_string) } else { None },
        part: p.part,
        pulse: p.fired.flatten(),
        late: p.late,
    }
}

/// Pulses must start on time while inference keeps every core busy: ask for a real-time
/// (SCHED_FIFO) priority for this thread only. Needs CAP_SYS_NICE or an RLIMIT_RTPRIO
/// (the systemd unit grants LimitRTPRIO); without it the thread keeps its normal
/// priority and the records' `late_us` shows what that costs.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: changes the scheduling policy of the calling thread only.
        let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        if rc == 0 {
            log::debug!("actuator thread runs with real-time priority");
        } else {
            log::warn!(
                "actuator thread keeps normal priority (SCHED_FIFO refused: {}); pulse timing may jitter under load",
                std::io::Error::from_raw_os_error(rc)
            );
        }
    }
}
