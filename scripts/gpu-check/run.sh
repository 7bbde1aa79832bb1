#!/usr/bin/env bash
# The GPU check, on an x86-64 machine with an NVIDIA GPU whose driver supports CUDA 13.0,
# with .gpu-check/ (made by scripts/gpu-check/build.sh on a build machine; nothing is built
# here): `bash .gpu-check/run.sh` (the copy build.sh puts there) or, in a checkout,
# scripts/gpu-check/run.sh. It
#
#   1. runs the CPU/CUDA parity test (tests/cuda_parity.rs: every kernel against its CPU
#      twin, the Lite0 and ResNet18 pairs at batch 1 and 4, one training step of each, and
#      the launches of one Lite0 inference),
#   2. runs `cdo-inspect bench --device cuda` and `--device cpu` on this same machine
#      (batch 1 and 8, the Lite0 pair at 256 px, random weights: same cost),
#   3. writes the table of both (ms per frame, GPU launches per inference, CPU / GPU) to
#      summary.md and prints it.
#
# Logs go to $GPU_CHECK_LOGS, else $OUT (the folder a lent machine sends back), else
# gpu-check-logs/<UTC time>/. About two minutes of GPU time. Exit status: 0 when the parity
# test passed and both benches ran.
#
# The binaries load CUDA 13's libcudart, libcublas(Lt), libcurand and libnvrtc (800 MB, not
# shipped): from $CDO_CUDA_LIBS, else the machine's Python CUDA 13 wheels (nvidia/cu13/lib,
# as PyTorch's cu130 build installs them), else /usr/local/cuda; and the driver's libcuda.
set -uo pipefail
# build.sh also copies this script into .gpu-check/, so carrying that folder alone is enough:
# the bundle is beside the script, or in .gpu-check/ of the checkout holding scripts/.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bundle="$here/cdo-gpu-check.tar.xz"
[ -f "$bundle" ] || bundle="$here/../../.gpu-check/cdo-gpu-check.tar.xz"
[ -f "$bundle" ] || { echo "error: .gpu-check/cdo-gpu-check.tar.xz missing: run scripts/gpu-check/build.sh on the build machine" >&2; exit 2; }
logs="${GPU_CHECK_LOGS:-${OUT:-gpu-check-logs/$(date -u +%Y%m%dT%H%M%SZ)}}"
mkdir -p "$logs"
exec > >(tee "$logs/check.log") 2>&1
work="$(mktemp -d)"
tar -C "$work" -xJf "$bundle"
echo "cdo-inspect GPU check, commit $(cat "$work/commit"), built with $(head -n 1 "$work/nvcc-version")"
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader ||
    echo "warning: nvidia-smi failed"

dirs=()
[ -n "${CDO_CUDA_LIBS:-}" ] && dirs+=("$CDO_CUDA_LIBS")
for py in python3 /opt/torch/.venv/bin/python3; do
    while read -r d; do dirs+=("$d"); done < <("$py" -c '
import os, nvidia
for p in nvidia.__path__:
    for sub in ("cu13/lib", "cublas/lib", "cuda_runtime/lib", "curand/lib", "cuda_nvrtc/lib"):
        if os.path.isdir(os.path.join(p, sub)): print(os.path.join(p, sub))' 2>/dev/null)
done
dirs+=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64)
LD_LIBRARY_PATH="$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
missing="$(ldd "$work/cdo-inspect" | grep 'not found')"
if [ -n "$missing" ]; then
    echo "error: libraries not found (set CDO_CUDA_LIBS to a folder holding CUDA 13's):"
    echo "$missing"
    exit 2
fi
ldd "$work/cdo-inspect" | grep -E 'lib(cu|nvrtc)' | sed 's/^\s*/  /'

# Panics keep their backtraces; candle's errors do not capture one each.
export RUST_LIB_BACKTRACE=0
status=0
echo "== parity test"
start=$SECONDS
timeout 300 "$work/cuda_parity" 2>&1 | tee "$logs/parity.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "parity test: $((SECONDS - start)) s"

# Random weights (no models folder): timings are the same, scores meaningless.
export CDO_MODELS_DIR="$work/no-models"
for dev in cuda cpu; do
    echo "== bench --device $dev"
    iterations=50
    [ $dev = cpu ] && iterations=15
    timeout 300 "$work/cdo-inspect" bench --device $dev --batch 8 --iterations $iterations \
        --train-iterations 3 --json "$logs/bench-$dev.json" 2>&1 | tee "$logs/bench-$dev.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done

python3 - "$logs" <<'PY' | tee "$logs/summary.md"
import json, os, sys
logs = sys.argv[1]
runs = {}
for dev in ("cuda", "cpu"):
    try:
        runs[dev] = json.load(open(os.path.join(logs, f"bench-{dev}.json")))
    except (OSError, ValueError) as e:
        print(f"bench --device {dev}: no report ({e})")
if len(runs) == 2:
    def stage(run, name):
        return next(s["median_ms"] for s in run["stages"] if s["stage"] == name)
    def device_ms(run):  # the stages that run on the GPU: networks, map, smoothing + score
        return sum(stage(run, s) for s in ("model", "discrepancy_upsample", "smoothing_score"))
    print(f"{runs['cuda']['backbone']}, {runs['cuda']['input_size']} px, ms per frame (medians):\n")
    print("| batch | GPU: networks + map | CPU: same | CPU / GPU | GPU end to end | CPU end to end | CPU / GPU | GPU launches per inference |")
    print("|---|---|---|---|---|---|---|---|")
    for key in ("batch1", "batch_n"):
        g, c = runs["cuda"][key], runs["cpu"][key]
        b = g["batch"]
        gd, cd = device_ms(g) / b, device_ms(c) / b
        ge, ce = g["end_to_end"]["median_ms"] / b, c["end_to_end"]["median_ms"] / b
        l = g.get("gpu_launches") or {}
        launches = f"{l.get('own_kernels', '?')} own + {l.get('candle_ops', '?')} candle ops"
        print(f"| {b} | {gd:.3f} | {cd:.3f} | {cd / gd:.1f} | {ge:.3f} | {ce:.3f} | {ce / ge:.1f} | {launches} |")
    for dev in ("cuda", "cpu"):
        t = runs[dev].get("train_step")
        if t:
            print(f"\ntraining step on {dev} (batch {t['batch']}): {t['step']['median_ms']:.1f} ms median", end="")
    print()
PY
echo "logs: $logs"
[ $status = 0 ] && echo "GPU check: passed" || echo "GPU check: FAILED (see the logs)"
exit $status
