//! The monotonic clock as the kernel stamps events with it (GPIO edges, V4L2 buffers),
//! and mapping those stamps onto `Instant`.

use std::time::{Duration, Instant};

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass; CLOCK_MONOTONIC always exists
    // on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Maps a kernel CLOCK_MONOTONIC timestamp onto `Instant`. On Linux `Instant` is that same
/// clock, but it has no constructor from raw nanoseconds: take the event's age against the
/// clock now and subtract it from `Instant::now()`. A timestamp in the future is not a
/// monotonic one (uAPI v1 on kernels before 5.7 stamps CLOCK_REALTIME), and `now` is used.
pub fn instant_from_monotonic_ns(event_ns: u64, now_ns: u64, now: Instant) -> Instant {
    if event_ns > now_ns {
        return now;
    }
    now.checked_sub(Duration::from_nanos(now_ns - event_ns))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_timestamps_map_onto_instants() {
        let now = Instant::now();
        let at = instant_from_monotonic_ns(9_000_000_000, 10_000_000_000, now);
        assert_eq!(now - at, Duration::from_secs(1));
        // A CLOCK_REALTIME stamp (v1 uAPI on old kernels) is far in the future: use now.
        assert_eq!(
            instant_from_monotonic_ns(1_700_000_000_000_000_000, 10_000_000_000, now),
            now
        );
        // The real clocks agree: an event stamped now maps to (about) now.
        let (ns, now) = (monotonic_now_ns(), Instant::now());
        let at = instant_from_monotonic_ns(ns, monotonic_now_ns(), Instant::now());
        assert!(at.saturating_duration_since(now) < Duration::from_millis(50));
    }
}
