#!/usr/bin/env bash
# Memory of the station daemon over a long replay: the demo station's line (good parts,
# defects and one corrupt frame) on a loop through `cdo-inspect run`, with the process's
# resident memory sampled every second. Prints the RSS once warmed up, its peak, its last
# value, the growth between the first and the last minute after warm-up and the fitted
# slope; exits 1 when the growth is over SOAK_MAX_GROWTH_MIB (default 8).
#
#   bench/soak.sh [--minutes N] [--rate HZ] [--dir DIR]     (defaults: 10, 2, demo-station)
#
# The demo's parts are 464x464 frames inspected in 16 tiles (200-400 ms on two cores): a
# rate above what the station keeps up with soaks the missed-part path, not inference.
#
# Needs target/release/cdo-inspect (cargo build --release). The first run trains the demo
# model (a few minutes), as `cdo-inspect demo` does. Samples: DIR/soak/rss.csv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=10
rate=2
dir=demo-station
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        *) echo "usage: $0 [--minutes N] [--rate HZ] [--dir DIR]" >&2; exit 2 ;;
    esac
done
bin=target/release/cdo-inspect
[ -x "$bin" ] || { echo "$bin missing: cargo build --release" >&2; exit 2; }
max_growth="${SOAK_MAX_GROWTH_MIB:-8}"

# The demo's station, looping, with its own records, archive and edge log.
. bench/demo-line.sh
demo_line "$dir" soak "$rate"
soak="$dir/soak"

"$bin" run --config "$dir/soak.toml" 2>"$soak/station.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
echo "station pid $pid: $minutes min at $rate parts/s; RSS sampled every second"
echo "seconds,rss_kib,hwm_kib" >"$soak/rss.csv"
start=$SECONDS
while [ $((SECONDS - start)) -lt $((minutes * 60)) ]; do
    status="/proc/$pid/status"
    [ -r "$status" ] || { echo "the station stopped early: see $soak/station.log" >&2; exit 1; }
    awk -v t=$((SECONDS - start)) '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2}
        END {print t "," r "," h}' "$status" >>"$soak/rss.csv"
    sleep 1
done
kill -TERM "$pid"
wait "$pid" || { echo "the station exited with an error: see $soak/station.log" >&2; exit 1; }
trap - EXIT

parts=$(find "$soak/records" -name "parts.jsonl*" -exec cat {} + | wc -l)
# Warm-up: the first 10% of the run (at least 30 s): the allocator and the thread pool
# settle. Growth: median of the last minute minus the median of the first minute after it.
awk -F, -v parts="$parts" -v max="$max_growth" '
    NR == 1 { next }
    { t[n] = $1; r[n] = $2 / 1024; if ($3 / 1024 > hwm) hwm = $3 / 1024; n++ }
    function median(a, lo, hi,   m, i, j, v, tmp) {
        m = 0
        for (i = lo; i < hi; i++) v[m++] = a[i]
        for (i = 1; i < m; i++) { tmp = v[i]; for (j = i - 1; j >= 0 && v[j] > tmp; j--) v[j + 1] = v[j]; v[j + 1] = tmp }
        return m % 2 ? v[int(m / 2)] : (v[m / 2 - 1] + v[m / 2]) / 2
    }
    END {
        w = int(n / 10); if (t[w] < 30) { for (w = 0; w < n && t[w] < 30; w++); }
        if (n - w < 120) { print "run too short to judge growth: use --minutes 3 or more"; exit 2 }
        first = median(r, w, w + 60); last = median(r, n - 60, n)
        # Least-squares slope of RSS over the second half, in MiB per hour: a leak keeps
        # climbing there, while the allocator settling early on does not.
        for (i = int(n / 2); i < n; i++) { sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i]; k++ }
        slope = (k * sxy - sx * sy) / (k * sxx - sx * sx) * 3600
        printf "parts inspected: %d in %d s\n", parts, t[n - 1]
        printf "RSS after warm-up (%d s): %.1f MiB; last minute: %.1f MiB; peak (VmHWM): %.1f MiB\n", t[w], first, last, hwm
        printf "growth after warm-up: %+.1f MiB (limit %s); slope over the second half %+.2f MiB/hour\n", last - first, max, slope
        exit (last - first > max) ? 1 : 0
    }' "$soak/rss.csv"
