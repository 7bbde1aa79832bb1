//! The station's Prometheus metrics: counted from each part's record as the recorder
//! writes it (so they equal `parts.jsonl`), in atomics (the recorder never waits for a
//! reader), and written out in the Prometheus text format (version 0.0.4) by a small
//! encoder of our own. Names follow the conventions: `cdo_inspect_` prefix, `_total` for
//! counters, base units (`_seconds`); no label takes a per-part value.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::station::decide::Verdict;
use crate::station::records::PartRecord;

/// Why a part was rejected without a normal verdict, as a label: a fixed set, read from
/// the reason the record gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A normal verdict (pass, or reject on its score).
    None,
    /// The verdict was not ready when the pulse was due.
    Late,
    /// The trigger found the capture queue full.
    Missed,
    FrameTimeout,
    CameraDisconnected,
    CorruptFrame,
    /// The inference queue was full, or the part's deadline passed while it waited.
    Busy,
    Inference,
    /// Part alignment could not trust where the part is (or it is out of place).
    Alignment,
    /// A non-finite image score.
    BadScore,
    RecordsUnwritable,
    /// The station stopped before the part's verdict.
    Stopped,
    Other,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::None,
        Reason::Late,
        Reason::Missed,
        Reason::FrameTimeout,
        Reason::CameraDisconnected,
        Reason::CorruptFrame,
        Reason::Busy,
        Reason::Inference,
        Reason::Alignment,
        Reason::BadScore,
        Reason::RecordsUnwritable,
        Reason::Stopped,
        Reason::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Late => "late",
            Reason::Missed => "missed_trigger",
            Reason::FrameTimeout => "frame_timeout",
            Reason::CameraDisconnected => "camera_disconnected",
            Reason::CorruptFrame => "corrupt_frame",
            Reason::Busy => "busy",
            Reason::Inference => "inference_error",
            Reason::Alignment => "alignment",
            Reason::BadScore => "bad_score",
            Reason::RecordsUnwritable => "records_unwritable",
            Reason::Stopped => "stopped",
            Reason::Other => "other",
        }
    }

    /// The reason of a record: `None` unless it is fail-safe. The texts are the stages'
    /// own (`stages.rs`, `actuate.rs`, `decide.rs`, `journal.rs`); a new one is `Other`.
    pub fn of(record: &PartRecord) -> Reason {
        if !record.fail_safe {
            return Reason::None;
        }
        let r = record.reason.as_deref().unwrap_or("");
        let has = |s: &str| r.contains(s);
        if r.starts_with("verdict not ready when its pulse was due") {
            Reason::Late
        } else if r.starts_with("missed trigger") {
            Reason::Missed
        } else if has("no frame within") {
            Reason::FrameTimeout
        } else if r.starts_with("corrupt frame") {
            Reason::CorruptFrame
        } else if r.starts_with("camera") {
            Reason::CameraDisconnected
        } else if r.starts_with("inference busy") || r.starts_with("not inspected: its reject deadline") {
            Reason::Busy
        } else if r.starts_with("inference") || r.starts_with("inspection error") || r == "no frame" {
            Reason::Inference
        } else if r.starts_with("alignment") || r.starts_with("part moved by") {
            Reason::Alignment
        } else if r.starts_with("image score is") {
            Reason::BadScore
        } else if r.starts_with("records cannot be written") {
            Reason::RecordsUnwritable
        } else if has("station stopped") {
            Reason::Stopped
        } else {
            Reason::Other
        }
    }
}

/// A histogram with fixed upper bounds, in atomics.
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative), the last one is +Inf.
    counts: Vec<AtomicU64>,
    /// The sum, as f64 bits.
    sum: AtomicU64,
}

impl Histogram {
    /// `bounds` sorted, finite, increasing (duplicates are dropped).
    pub fn new(mut bounds: Vec<f64>) -> Self {
        bounds.retain(|b| b.is_finite());
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum: AtomicU64::new(0f64.to_bits()) }
    }

    pub fn observe(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some((f64::from_bits(s) + v).to_bits()));
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", number(*b));
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", number(f64::from_bits(self.sum.load(Ordering::Relaxed))));
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything counted from the records.
pub struct PartMetrics {
    /// [verdict: pass, reject][reason], see [`Reason::ALL`].
    parts: [[AtomicU64; Reason::ALL.len()]; 2],
    /// Trigger to verdict.
    pub latency: Histogram,
    pub inference: Histogram,
    pub score: Histogram,
}

/// Counts of parts by what happened to them, for the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PartCounts {
    pub parts: u64,
    pub pass: u64,
    pub reject: u64,
    pub fail_safe: u64,
    pub missed: u64,
    pub late: u64,
}

impl PartCounts {
    /// What was counted since `base` was taken.
    pub fn since(&self, base: &PartCounts) -> PartCounts {
        PartCounts {
            parts: self.parts - base.parts,
            pass: self.pass - base.pass,
            reject: self.reject - base.reject,
            fail_safe: self.fail_safe - base.fail_safe,
            missed: self.missed - base.missed,
            late: self.late - base.late,
        }
    }
}

impl PartMetrics {
    /// Latency buckets around the reject deadline (`delay_s`: a verdict later than it
    /// comes too late for its pulse); score buckets around the threshold.
    pub fn new(delay_s: f64, threshold: f64) -> Self {
        let delay = if delay_s > 0.0 { delay_s } else { 0.1 };
        // To the microsecond (and the millionth of a score): readable bucket labels.
        let round = |x: f64| (x * 1e6).round() / 1e6;
        let latency = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.5, 2.0, 4.0].iter().map(|f| round(f * delay)).collect();
        let inference = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0].to_vec();
        let t = if threshold > 0.0 { threshold } else { 0.1 };
        let score = [0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0].iter().map(|f| round(f * t)).collect();
        PartMetrics {
            parts: Default::default(),
            latency: Histogram::new(latency),
            inference: Histogram::new(inference),
            score: Histogram::new(score),
        }
    }

    pub fn count(&self, r: &PartRecord) {
        let verdict = usize::from(r.verdict != Some(Verdict::Pass));
        let reason = Reason::of(r);
        let i = Reason::ALL.iter().position(|&x| x == reason).unwrap_or(Reason::ALL.len() - 1);
        self.parts[verdict][i].fetch_add(1, Ordering::Relaxed);
        if let Some(total) = r.latency_ms.total {
            self.latency.observe(total / 1e3);
        }
        if let Some(infer) = r.latency_ms.infer {
            self.inference.observe(infer / 1e3);
        }
        if let Some(score) = r.score {
            self.score.observe(score as f64);
        }
    }

    fn get(&self, verdict: usize, reason: Reason) -> u64 {
        let i = Reason::ALL.iter().position(|&x| x == reason).unwrap_or(0);
        self.parts[verdict][i].load(Ordering::Relaxed)
    }

    fn by_reason(&self, reason: Reason) -> u64 {
        self.get(0, reason) + self.get(1, reason)
    }

    pub fn counts(&self) -> PartCounts {
        let sum = |v: usize| Reason::ALL.iter().map(|&r| self.get(v, r)).sum::<u64>();
        let (pass, reject) = (sum(0), sum(1));
        PartCounts {
            parts: pass + reject,
            pass,
            reject,
            fail_safe: reject - self.get(1, Reason::None),
            missed: self.by_reason(Reason::Missed),
            late: self.by_reason(Reason::Late),
        }
    }
}

/// The station-wide values that are not counted from records.
pub struct Gauges<'a> {
    pub ready: bool,
    pub fault: bool,
    pub camera_up: bool,
    pub version: &'a str,
    pub model_sha256: &'a str,
    pub station: &'a str,
    pub start_time_s: f64,
    /// Observations the outside interfaces had no room for (the page and MQTT missed them).
    pub observer_dropped: u64,
    pub web_refused: u64,
    /// Open event streams (pages watching).
    pub event_streams: u64,
    /// (connected, records dropped, records queued, records delivered) when MQTT is on.
    pub mqtt: Option<(bool, u64, u64, u64)>,
}

/// The whole exposition, text format 0.0.4.
pub fn encode(m: &PartMetrics, g: &Gauges) -> String {
    let mut out = String::with_capacity(8192);
    let name = "cdo_inspect_parts_total";
    let _ = writeln!(out, "# HELP {name} Parts inspected, by the verdict acted on and why a reject was fail-safe (reason=\"none\": a normal verdict).\n# TYPE {name} counter");
    for (v, verdict) in ["pass", "reject"].iter().enumerate() {
        for reason in Reason::ALL {
            let n = m.get(v, reason);
            // A pass is never fail-safe; the rest shows once it has happened, the two
            // normal verdicts always.
            if reason == Reason::None || n > 0 {
                let _ = writeln!(out, "{name}{{verdict=\"{verdict}\",reason=\"{}\"}} {n}", reason.label());
            }
        }
    }
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    };
    let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", number(v));
    };
    counter(&mut out, "cdo_inspect_missed_triggers_total", "Triggers that found the camera busy (rejected).", m.by_reason(Reason::Missed));
    counter(&mut out, "cdo_inspect_frame_timeouts_total", "Parts whose frame did not arrive within the camera timeout (rejected).", m.by_reason(Reason::FrameTimeout));
    counter(&mut out, "cdo_inspect_late_rejects_total", "Parts rejected because their verdict was not ready when the pulse was due.", m.by_reason(Reason::Late));
    m.latency.write(&mut out, "cdo_inspect_verdict_latency_seconds", "Trigger to verdict; buckets around the reject deadline (reject.delay_ms).");
    m.inference.write(&mut out, "cdo_inspect_inference_seconds", "Time in the networks per part.");
    m.score.write(&mut out, "cdo_inspect_anomaly_score", "Image anomaly scores; buckets around the threshold.");
    gauge(&mut out, "cdo_inspect_ready", "1 while the station is inspecting (the ready output).", f64::from(u8::from(g.ready)));
    gauge(&mut out, "cdo_inspect_fault", "1 while a fault is active (the fault output).", f64::from(u8::from(g.fault)));
    gauge(&mut out, "cdo_inspect_camera_up", "1 while the camera delivers frames.", f64::from(u8::from(g.camera_up)));
    gauge(&mut out, "cdo_inspect_start_time_seconds", "When the station started, in seconds since the Unix epoch.", g.start_time_s);
    let info = "cdo_inspect_build_info";
    let _ = writeln!(
        out,
        "# HELP {info} The software version, the model's identity and the station's name.\n# TYPE {info} gauge\n{info}{{version=\"{}\",model_sha256=\"{}\",station=\"{}\"}} 1",
        label(g.version),
        label(g.model_sha256),
        label(g.station)
    );
    counter(&mut out, "cdo_inspect_outside_dropped_total", "Parts the web view and MQTT had no room for (their records are in parts.jsonl).", g.observer_dropped);
    counter(&mut out, "cdo_inspect_web_refused_requests_total", "Web requests refused (bad token, path outside the archive, wrong method).", g.web_refused);
    gauge(&mut out, "cdo_inspect_web_event_streams", "Pages watching the station live (open event streams).", g.event_streams as f64);
    if let Some((connected, dropped, queued, delivered)) = g.mqtt {
        gauge(&mut out, "cdo_inspect_mqtt_connected", "1 while the MQTT broker is connected.", f64::from(u8::from(connected)));
        counter(&mut out, "cdo_inspect_mqtt_dropped_total", "Records not sent to the broker because the buffer was full.", dropped);
        gauge(&mut out, "cdo_inspect_mqtt_queued", "Records waiting for the broker.", queued as f64);
        counter(&mut out, "cdo_inspect_mqtt_delivered_total", "Records the broker acknowledged (QoS 1, 2) or that were sent (QoS 0).", delivered);
    }
    out
}

/// A label value, escaped as the text format wants.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value: Go's float syntax, which both Rust's `{}` and `{:e}` satisfy.
fn number(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::records::Latency;

    fn record(verdict: Verdict, reason: Option<&str>, total_ms: f64) -> PartRecord {
        PartRecord {
            verdict: Some(verdict),
            fail_safe: reason.is_some(),
            reason: reason.map(str::to_string),
            score: Some(0.2),
            latency_ms: Latency { total: Some(total_ms), infer: Some(30.0), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn records_are_counted_by_verdict_and_reason() {
        let m = PartMetrics::new(0.4, 0.25);
        m.count(&record(Verdict::Pass, None, 100.0));
        m.count(&record(Verdict::Reject, None, 120.0));
        m.count(&record(Verdict::Reject, Some("verdict not ready when its pulse was due"), 500.0));
        m.count(&record(Verdict::Reject, Some("missed trigger: camera busy (capture queue full)"), 1.0));
        m.count(&record(Verdict::Reject, Some("camera /dev/video0: no frame within 2s"), 2.0));
        m.count(&record(Verdict::Reject, Some("corrupt frame 0007.png: bad"), 2.0));
        let c = m.counts();
        assert_eq!(c, PartCounts { parts: 6, pass: 1, reject: 5, fail_safe: 4, missed: 1, late: 1 });
        let text = encode(&m, &Gauges {
            ready: true,
            fault: false,
            camera_up: true,
            version: "0.1.0",
            model_sha256: "ab\"c",
            station: "line\n1",
            start_time_s: 1.7e9,
            observer_dropped: 0,
            web_refused: 2,
            event_streams: 1,
            mqtt: None,
        });
        for line in [
            "cdo_inspect_parts_total{verdict=\"pass\",reason=\"none\"} 1",
            "cdo_inspect_parts_total{verdict=\"reject\",reason=\"late\"} 1",
            "cdo_inspect_parts_total{verdict=\"reject\",reason=\"frame_timeout\"} 1",
            "cdo_inspect_parts_total{verdict=\"reject\",reason=\"corrupt_frame\"} 1",
            "cdo_inspect_missed_triggers_total 1",
            "cdo_inspect_late_rejects_total 1",
            // 0.4 s deadline: 100 and 120 ms fall at or under 0.3 s (0.75 x), 500 ms over 0.44 s.
            "cdo_inspect_verdict_latency_seconds_bucket{le=\"0.3\"} 5",
            "cdo_inspect_verdict_latency_seconds_bucket{le=\"+Inf\"} 6",
            "cdo_inspect_verdict_latency_seconds_count 6",
            "cdo_inspect_build_info{version=\"0.1.0\",model_sha256=\"ab\\\"c\",station=\"line\\n1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("mqtt"), "{text}");
    }
}
