//! Station counters: what a technician reads in the periodic log line, in `systemctl
//! status` (STATUS=) and at exit.

use std::fmt;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    pub parts: u64,
    pub pass: u64,
    pub reject: u64,
    /// Rejected without a normal verdict (late, camera fault, corrupt frame, error…).
    pub fail_safe: u64,
    /// Triggers that found the camera busy (capture queue full).
    pub missed: u64,
    /// Free-run ticks skipped because the camera was busy (no part existed).
    pub skipped: u64,
    /// Camera, inference, archive and record-log errors.
    pub errors: u64,
    pub camera_reconnects: u64,
    /// Trigger → verdict, over parts that got a verdict.
    pub cycle_ms_min: Option<f64>,
    pub cycle_ms_max: Option<f64>,
    cycle_ms_sum: f64,
    cycle_count: u64,
}

impl Counters {
    pub fn add_cycle(&mut self, ms: f64) {
        self.cycle_ms_min = Some(self.cycle_ms_min.map_or(ms, |m| m.min(ms)));
        self.cycle_ms_max = Some(self.cycle_ms_max.map_or(ms, |m| m.max(ms)));
        self.cycle_ms_sum += ms;
        self.cycle_count += 1;
    }

    pub fn cycle_ms_avg(&self) -> Option<f64> {
        (self.cycle_count > 0).then(|| self.cycle_ms_sum / self.cycle_count as f64)
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parts {}, pass {}, reject {} (fail-safe {}), missed {}, skipped {}, errors {}",
            self.parts, self.pass, self.reject, self.fail_safe, self.missed, self.skipped,
            self.errors
        )?;
        if let (Some(lo), Some(avg), Some(hi)) =
            (self.cycle_ms_min, self.cycle_ms_avg(), self.cycle_ms_max)
        {
            write!(f, ", cycle min/avg/max {lo:.0}/{avg:.0}/{hi:.0} ms")?;
        }
        Ok(())
    }
}
