//! A summary of a run read back from its records: verdicts per kind of part (for replayed
//! lines whose file names say what each part is), stage latencies and pulse timing
//! jitter (p50/p99/max). The demo prints it; the figures are the records' own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Debug, Default)]
pub struct RunReport {
    /// kind → (parts, rejected)
    pub kinds: BTreeMap<String, (usize, usize)>,
    /// stage → latencies in ms
    pub latency_ms: BTreeMap<String, Vec<f64>>,
    pub pulse_late_us: Vec<f64>,
}

impl RunReport {
    /// Reads `parts.jsonl`, skipping the first `skip` lines (earlier runs).
    pub fn from_records(path: &Path, skip: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut report = RunReport::default();
        for line in text.lines().skip(skip) {
            let Ok(r) = serde_json::from_str::<Value>(line) else { continue };
            let kind = r["origin"]
                .as_str()
                .and_then(|o| o.rsplit('/').next())
                .and_then(|name| name.split_once('_'))
                .map(|(_, rest)| rest.trim_end_matches(".png").to_string())
                .unwrap_or_else(|| "-".into());
            let entry = report.kinds.entry(kind).or_default();
            entry.0 += 1;
            if r["verdict"] == "reject" {
                entry.1 += 1;
            }
            if let Some(lat) = r["latency_ms"].as_object() {
                for (stage, v) in lat {
                    if let Some(v) = v.as_f64() {
                        report.latency_ms.entry(stage.clone()).or_default().push(v);
                    }
                }
            }
            if let Some(late) = r["pulse"]["late_us"].as_f64() {
                report.pulse_late_us.push(late);
            }
        }
        Ok(report)
    }
}

/// The q-quantile (nearest rank) of `v`.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<16} {:>6} {:>9}", "part kind", "parts", "rejected")?;
        for (kind, (n, rej)) in &self.kinds {
            writeln!(f, "{kind:<16} {n:>6} {rej:>9}")?;
        }
        writeln!(f, "{:<16} {:>9} {:>9}", "stage latency", "p50 ms", "p99 ms")?;
        for stage in ["queue", "capture", "preprocess", "infer", "decide", "total"] {
            if let Some(v) = self.latency_ms.get(stage) {
                let (p50, p99) = (quantile(v, 0.5).unwrap_or(0.0), quantile(v, 0.99).unwrap_or(0.0));
                writeln!(f, "{stage:<16} {p50:>9.1} {p99:>9.1}")?;
            }
        }
        if let (Some(p50), Some(p99), Some(max)) = (
            quantile(&self.pulse_late_us, 0.5),
            quantile(&self.pulse_late_us, 0.99),
            quantile(&self.pulse_late_us, 1.0),
        ) {
            writeln!(
                f,
                "pulse start after its due time: p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs ({} pulses)",
                self.pulse_late_us.len()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.99), Some(5.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
