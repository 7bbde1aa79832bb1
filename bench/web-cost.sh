#!/usr/bin/env bash
# What the operator view costs the inspection: the demo station's line on a loop with
# [web] on, in alternating rounds without and with a browser watching the page (headless
# Chromium, its live updates and overlay images), all in one run of the daemon. Prints
# the trigger-to-verdict latency (p50, p99, max, from the records) per round and per
# condition, and the ratio of the p99s.
#
#   [ROUNDS=3] [ROUND_S=40] [RATE=4] [DIR=demo-station] [WEB_PORT=18080] bench/web-cost.sh
#   (rounds of ROUND_S seconds each way, RATE parts/s)
#
# Needs target/release/cdo-inspect and Debian's chromium. The browser runs on this
# machine: the figure includes its own CPU use, more than a panel elsewhere would cost.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${ROUNDS:-3}"
seconds="${ROUND_S:-40}"
rate="${RATE:-4}"
dir="${DIR:-demo-station}"
port="${WEB_PORT:-18080}"
bin=target/release/cdo-inspect
[ -x "$bin" ] || { echo "$bin missing: cargo build --release" >&2; exit 2; }
command -v chromium >/dev/null || { echo "chromium missing: apt-get install chromium" >&2; exit 2; }

. bench/demo-line.sh
demo_line "$dir" web-cost "$rate"
out="$dir/web-cost"
# The web view on its own port (a demo station file from before [web] gets the table).
sed -i '/^\[web\]/,$d' "$dir/web-cost.toml"
printf '\n[web]\nlisten = "127.0.0.1:%s"\n' "$port" >>"$dir/web-cost.toml"

RUST_LOG=info "$bin" run --config "$dir/web-cost.toml" 2>"$out/station.log" &
pid=$!
browser=
trap 'kill "$pid" ${browser:+"$browser"} 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    grep -q "operator view on" "$out/station.log" && break
    kill -0 "$pid" 2>/dev/null || { echo "the station stopped: see $out/station.log" >&2; exit 1; }
    sleep 0.1
done
echo "station pid $pid at $rate parts/s; $rounds rounds of $seconds s without, then with a browser"
now_ms() { date +%s%3N; }
sleep 5 # warm-up, not measured
: >"$out/windows.txt"
for r in $(seq "$rounds"); do
    t0=$(now_ms); sleep "$seconds"; echo "none $r $t0 $(now_ms)" >>"$out/windows.txt"
    chromium --headless --no-sandbox --disable-gpu --user-data-dir="$out/chromium" \
        "http://127.0.0.1:$port/" >/dev/null 2>&1 &
    browser=$!
    sleep 3 # the page loads and subscribes
    t0=$(now_ms); sleep "$seconds"; echo "browser $r $t0 $(now_ms)" >>"$out/windows.txt"
    # Evidence that the page was watching: its open event stream.
    curl -s "http://127.0.0.1:$port/metrics" | grep '^cdo_inspect_web_event_streams' | sed "s/^/round $r: /"
    kill "$browser"; wait "$browser" 2>/dev/null || true; browser=
done
kill -TERM "$pid"; wait "$pid" || true

python3 - "$out/records/parts.jsonl" "$out/windows.txt" <<'PY'
import json, sys
from datetime import datetime
recs = [json.loads(l) for l in open(sys.argv[1])]
wins = [l.split() for l in open(sys.argv[2])]
def ms(t): return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
def pct(v, q): return v[min(len(v) - 1, round((len(v) - 1) * q))] if v else float("nan")
def row(name, v, late):
    v = sorted(v)
    print(f"{name:<14} {len(v):>6} {pct(v, .5):>8.1f} {pct(v, .99):>8.1f} {max(v, default=float('nan')):>8.1f} {late:>5}")
    return pct(v, .99)
print(f"{'round':<14} {'parts':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'late':>5}")
overall = {"none": ([], 0), "browser": ([], 0)}
for mode, r, a, b in wins:
    a, b = int(a), int(b)
    sel = [x for x in recs if a <= ms(x["triggered"]) < b]
    v = [x["latency_ms"]["total"] for x in sel if x["latency_ms"].get("total") is not None]
    late = sum(1 for x in sel if (x.get("reason") or "").startswith("verdict not ready"))
    row(f"{mode} {r}", v, late)
    overall[mode] = (overall[mode][0] + v, overall[mode][1] + late)
print()
p_none = row("without", *overall["none"])
p_with = row("with browser", *overall["browser"])
print(f"\np99 with a browser / without: {p_with / p_none:.2f}")
PY
