#!/usr/bin/env bash
# cdo-inspect bench, PyTorch eager and ONNX Runtime on one machine, one after the other,
# with the same frame, backbone, batch and iteration counts; prints all three tables and
# the side-by-side ratios. Extra arguments go to both (e.g. --backbone resnet18
# --iterations 20). BENCH_ROUNDS=N (default 1) runs both N times, alternately, and the
# final table keeps each figure's best round on each side: a shared machine's speed drifts
# between runs, and this compares both at their least disturbed. Needs
# target/release/cdo-inspect (cargo build --release) and the venv:
#   python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
image=${BENCH_IMAGE:-testdata/images/coffee.png}
# --frame WxH: both generate the same frame instead of reading an image (with --tile SIZE
# --overlap PX, both inspect it whole in tiles; see bench/RESULTS.md for the tiled table).
frame_args=(--image "$image")
for a in "$@"; do
    [ "$a" = --frame ] && frame_args=()
done
out=${BENCH_OUT:-$(mktemp -d)}
rounds=${BENCH_ROUNDS:-1}
mkdir -p "$out"
ours=() refs=()
for ((i = 1; i <= rounds; i++)); do
    [ "$rounds" -gt 1 ] && echo "== round $i of $rounds"
    target/release/cdo-inspect bench "${frame_args[@]}" --json "$out/cdo-inspect-$i.json" "$@"
    echo
    ours+=("$out/cdo-inspect-$i.json")
    if [ "$rounds" -eq 1 ]; then
        bench/.venv/bin/python bench/torch_reference.py "${frame_args[@]}" \
            --json "$out/reference-$i.json" --compare "${ours[@]}" "$@"
    else
        bench/.venv/bin/python bench/torch_reference.py "${frame_args[@]}" \
            --json "$out/reference-$i.json" "$@"
    fi
    refs+=("$out/reference-$i.json")
done
if [ "$rounds" -gt 1 ]; then
    bench/.venv/bin/python bench/torch_reference.py "${frame_args[@]}" \
        --compare "${ours[@]}" --reference-json "${refs[@]}" "$@"
fi
echo "JSON: ${ours[*]} ${refs[*]}"
