//! The recorder thread: turns each finished part into exactly one record line, archives
//! rejected parts (and a sample of passes), and keeps the counters.

use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;

use super::actuate::Finished;
use super::archive::Archive;
use super::counters::Counters;
use super::decide::Verdict;
use super::part::{Heartbeat, Part};
use super::records::{rfc3339, PartRecord, RecordLog};
use crate::imageio::heatmap_overlay;

pub struct Recorder {
    pub station: String,
    pub log: RecordLog,
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
}

impl Recorder {
    pub fn run(mut self) {
        let mut passes = 0u64;
        loop {
            self.heartbeat.beat();
            let finished = match self.inbox.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(f) => f,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            let mut record = self.record_of(&finished);
            let verdict = record.verdict.unwrap_or(Verdict::Reject);
            let archive = match verdict {
                Verdict::Reject => self.archive_rejects,
                Verdict::Pass => {
                    passes += 1;
                    self.archive_pass_every > 0 && passes % self.archive_pass_every as u64 == 0
                }
            };
            let mut archive_failed = false;
            if archive {
                if let Some(part) = finished.part.as_deref() {
                    match self.archive_part(part, verdict) {
                        Ok(files) => record.archived = files,
                        Err(e) => {
                            log::error!("part {}: {e}", part.id);
                            archive_failed = true;
                            let note = format!("archive failed: {e}");
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
            if let Err(e) = self.log.append(&record) {
                log::error!("{e}");
                self.counters.lock().unwrap_or_else(|p| p.into_inner()).errors += 1;
            }
        }
        if let Err(e) = self.log.sync() {
            log::error!("{e}");
        }
        self.heartbeat.finish();
    }

    fn record_of(&self, f: &Finished) -> PartRecord {
        let e = &f.expect;
        let mut r = PartRecord {
            id: e.id,
            station: self.station.clone(),
            trigger: e.trigger.to_string(),
            triggered: rfc3339(e.triggered_wall),
            pulse: f.pulse.clone(),
            ..Default::default()
        };
        match f.part.as_deref() {
            Some(part) => {
                r.threshold = part.threshold;
                r.captured = part.frame.as_ref().map(|fr| rfc3339(fr.captured_wall));
                r.origin = part.frame.as_ref().map(|fr| fr.origin.clone());
                r.score = part.inference.as_ref().map(|i| i.score);
                r.defect_area_px = part.decision.as_ref().and_then(|d| d.defect_area_px);
                r.latency_ms = part.latency.clone();
                r.reason = part.fail_safe.clone();
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
                r.reason = f.abandoned.clone().or(Some("no verdict".into()));
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
                let map = inf.map_at(w, h);
                let (lo, hi) = self.overlay_range;
                Some(heatmap_overlay(&frame.image, &map, w, h, lo, hi).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let stamp = humantime::format_rfc3339_seconds(frame.captured_wall)
            .to_string()
            .replace([':', '-'], "");
        let verdict = match verdict {
            Verdict::Pass => "pass",
            Verdict::Reject => "reject",
        };
        let stem = format!("{stamp}_{:08}_{verdict}", part.id);
        let files = archive.store(&stem, &frame.image, overlay.as_ref())?;
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
        r.origin.as_deref().unwrap_or("-")
    );
    if let Some(total) = r.latency_ms.total {
        line.push_str(&format!(" {total:.0} ms"));
    }
    if let Some(reason) = &r.reason {
        line.push_str(&format!(" [{reason}]"));
    }
    line
}
