#!/usr/bin/env bash
# cdo-inspect bench, PyTorch eager and ONNX Runtime on one machine, one after the other,
# with the same frame, backbone, batch and iteration counts; prints all three tables and
# the side-by-side ratios. Extra arguments go to both (e.g. --backbone resnet18
# --iterations 20). Needs target/release/cdo-inspect (cargo build --release) and the venv:
#   python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
image=${BENCH_IMAGE:-testdata/images/coffee.png}
out=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
target/release/cdo-inspect bench --image "$image" --json "$out/cdo-inspect.json" "$@"
echo
bench/.venv/bin/python bench/torch_reference.py --image "$image" --json "$out/reference.json" \
    --compare "$out/cdo-inspect.json" "$@"
echo "JSON: $out/cdo-inspect.json $out/reference.json"
