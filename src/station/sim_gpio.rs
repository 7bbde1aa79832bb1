//! Simulated GPIO for the demo and the tests: outputs append every edge, with its
//! monotonic time since the station's epoch, to an edge log; the trigger input is fed
//! from a list of times (or by a test through a channel). Behaves like the real lines as
//! far as the pipeline can tell: same traits, same polarity handling.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::boundary::{DigitalIn, DigitalOut, GpioError, InputEdge, InputEvent, LineSpec};

/// One line of the edge log, as written and as read back by tests.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EdgeRecord {
    /// Microseconds since the station's epoch (monotonic clock).
    pub t_us: u64,
    /// What the line is for: "reject", "pass", "ready", "fault", "light".
    pub role: String,
    pub line: String,
    /// Logical state after the edge.
    pub asserted: bool,
    /// Electrical level after the edge (differs from `asserted` on active-low lines).
    pub level: u8,
}

/// The shared edge log of all simulated outputs.
#[derive(Clone)]
pub struct SimGpio {
    epoch: Instant,
    log: Option<Arc<Mutex<File>>>,
}

impl SimGpio {
    /// `log`: where edges are appended (created, truncated at start-up); None keeps them
    /// in no file (outputs still track state).
    pub fn new(epoch: Instant, log: Option<&Path>) -> Result<Self, GpioError> {
        let log = match log {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| GpioError {
                        line: "simulated".into(),
                        message: format!("cannot create {}: {e}", dir.display()),
                    })?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|e| GpioError {
                        line: "simulated".into(),
                        message: format!("cannot open edge log {}: {e}", path.display()),
                    })?;
                Some(Arc::new(Mutex::new(file)))
            }
            None => None,
        };
        Ok(SimGpio { epoch, log })
    }

    pub fn output(&self, role: &str, line: &LineSpec, active_low: bool) -> Box<dyn DigitalOut> {
        Box::new(SimOut {
            gpio: self.clone(),
            role: role.to_string(),
            line: line.to_string(),
            active_low,
            asserted: None,
        })
    }

    /// A simulated input and the sender that injects its edges.
    pub fn input(&self, line: &LineSpec) -> (Box<dyn DigitalIn>, Sender<InputEvent>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let input = SimIn {
            name: line.to_string(),
            events: rx,
        };
        (Box::new(input), tx)
    }

    /// Injects an asserted edge at each of `times` after now, each followed 5 ms later
    /// by its release, from a thread of its own (a part passing a sensor). Input edges
    /// go into the edge log too (role "trigger"), so the log alone shows trigger-to-pulse
    /// timing.
    pub fn inject_pulses(&self, line: &LineSpec, tx: Sender<InputEvent>, times: Vec<Duration>) {
        let gpio = self.clone();
        let line = line.to_string();
        let start = Instant::now();
        std::thread::Builder::new()
            .name("sim-sensor".into())
            .spawn(move || {
                for t in times {
                    for (edge, at) in [
                        (InputEdge::Asserted, start + t),
                        (InputEdge::Released, start + t + Duration::from_millis(5)),
                    ] {
                        sleep_until(at);
                        let now = Instant::now();
                        let asserted = edge == InputEdge::Asserted;
                        let _ = gpio.append(&EdgeRecord {
                            t_us: now.duration_since(gpio.epoch).as_micros() as u64,
                            role: "trigger".into(),
                            line: line.clone(),
                            asserted,
                            level: u8::from(asserted),
                        });
                        if tx.send(InputEvent { edge, at: now }).is_err() {
                            return;
                        }
                    }
                }
            })
            .expect("spawning a thread at start-up");
    }

    fn append(&self, record: &EdgeRecord) -> Result<(), GpioError> {
        let Some(log) = &self.log else { return Ok(()) };
        let mut line = serde_json::to_string(record).expect("edge records serialise");
        line.push('\n');
        // One write per line: a crash loses at most the line being written.
        let mut file = log.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes()).map_err(|e| GpioError {
            line: record.line.clone(),
            message: format!("edge log: {e}"),
        })
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

struct SimOut {
    gpio: SimGpio,
    role: String,
    line: String,
    active_low: bool,
    /// None until first set, so the first state is always logged.
    asserted: Option<bool>,
}

impl DigitalOut for SimOut {
    fn set(&mut self, asserted: bool) -> Result<(), GpioError> {
        if self.asserted == Some(asserted) {
            return Ok(());
        }
        let t_us = self.gpio.epoch.elapsed().as_micros() as u64;
        self.asserted = Some(asserted);
        self.gpio.append(&EdgeRecord {
            t_us,
            role: self.role.clone(),
            line: self.line.clone(),
            asserted,
            level: u8::from(asserted != self.active_low),
        })
    }

    fn name(&self) -> &str {
        &self.line
    }
}

struct SimIn {
    name: String,
    events: Receiver<InputEvent>,
}

impl DigitalIn for SimIn {
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<InputEvent>, GpioError> {
        match self.events.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            // The injector finished: the line simply stays quiet.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Reads an edge log back (for tests and the demo's summary).
pub fn read_edge_log(path: &Path) -> std::io::Result<Vec<EdgeRecord>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_log_each_change_once_with_polarity() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("edges.jsonl");
        let gpio = SimGpio::new(Instant::now(), Some(&log)).unwrap();
        let line: LineSpec = "gpiochip0:4".parse().unwrap();
        let mut out = gpio.output("reject", &line, true);
        out.set(false).unwrap();
        out.set(true).unwrap();
        out.set(true).unwrap();
        out.set(false).unwrap();
        let edges = read_edge_log(&log).unwrap();
        let states: Vec<(bool, u8)> = edges.iter().map(|e| (e.asserted, e.level)).collect();
        // Active-low: asserted means level 0.
        assert_eq!(states, vec![(false, 1), (true, 0), (false, 1)]);
        assert!(edges.windows(2).all(|w| w[0].t_us <= w[1].t_us));
        assert!(edges.iter().all(|e| e.role == "reject" && e.line == "gpiochip0:4"));
    }

    #[test]
    fn injected_pulses_arrive_as_assert_then_release() {
        let gpio = SimGpio::new(Instant::now(), None).unwrap();
        let line: LineSpec = "sensor".parse().unwrap();
        let (mut input, tx) = gpio.input(&line);
        gpio.inject_pulses(&line, tx, vec![Duration::from_millis(10)]);
        let first = input.wait_edge(Duration::from_secs(2)).unwrap().unwrap();
        let second = input.wait_edge(Duration::from_secs(2)).unwrap().unwrap();
        assert_eq!(first.edge, InputEdge::Asserted);
        assert_eq!(second.edge, InputEdge::Released);
        assert!(second.at >= first.at);
        assert!(input.wait_edge(Duration::from_millis(20)).unwrap().is_none());
    }
}
