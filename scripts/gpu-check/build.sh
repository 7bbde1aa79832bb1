#!/usr/bin/env bash
# Prepares the GPU check on this (CPU-only, x86-64) machine: builds the `cuda` binaries
# for an x86-64 GPU machine whose driver is CUDA 13.0 (the CUDA 13.0 compiler and libraries
# from PyPI: PTX from a newer compiler would not load there), in their own target folder
# (target-cuda/), and packs them with the script that runs the check into .gpu-check/:
#
#   .gpu-check/cdo-gpu-check.tar.xz   cdo-inspect and the cuda_parity test, stripped
#   .gpu-check/run.sh                  a copy of scripts/gpu-check/run.sh
#
# Then, on the GPU machine, with that folder: `bash .gpu-check/run.sh` (see there). candle's own kernels are compiled for CUDA_COMPUTE_CAP (default 90: H100),
# the project's for CDO_CUDA_ARCHS (default 87,90). The first build compiles candle's CUDA
# kernels: about an hour on two cores; later builds only what changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../cross/env.sh"
source "$ROOT/cross/setup-cuda-pypi.sh"
cd "$ROOT"

setup_cuda_x86_pypi
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="$ROOT/target-cuda"
start=$SECONDS
cargo build --release --locked --features cuda --bin cdo-inspect
# The test binary's path, from cargo's JSON messages.
parity="$(cargo test --release --locked --features cuda --no-run --test cuda_parity \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_parity":
        print(m["executable"])')"
[ -x "$parity" ] || die "the cuda_parity test binary was not built"
echo "build: $((SECONDS - start)) s"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
strip -o "$stage/cdo-inspect" "$CARGO_TARGET_DIR/release/cdo-inspect"
strip -o "$stage/cuda_parity" "$parity"
git rev-parse HEAD >"$stage/commit" 2>/dev/null || echo unknown >"$stage/commit"
nvcc --version | tail -n 2 >"$stage/nvcc-version"
mkdir -p .gpu-check
tar -C "$stage" -cJf .gpu-check/cdo-gpu-check.tar.xz cdo-inspect cuda_parity commit nvcc-version
cp scripts/gpu-check/run.sh .gpu-check/run.sh
ls -l .gpu-check/
echo "CUDA libraries the binaries load (the GPU machine's own CUDA 13 libraries, see run.sh):"
readelf --dynamic "$stage/cdo-inspect" | grep -o 'lib\(cu\|nvrtc\)[A-Za-z]*\.so\.[0-9]*' | sort -u | sed 's/^/  /'
