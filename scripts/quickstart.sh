#!/usr/bin/env bash
# One command from a fresh clone to a trained model and inspected parts, no camera or GPIO:
# fetches the expert weights and a real texture photograph, builds, cuts a sample surface
# dataset with painted defects, trains a model on its good tiles and inspects its test
# tiles. Re-running reuses what is already there (delete demo-data/ to start over).
# Training settings: config/quickstart.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

models/fetch.sh
scripts/fetch-sample-images.sh
cargo build --release --locked
bin=target/release/cdo-inspect

data=demo-data/surface
bundle=demo-data/bundle
if [ ! -d "$data/train/good" ]; then
    "$bin" sample-data --texture testdata/images/gravel.png --out "$data" \
        --train-good 20 --test-good 6 --test-defect 2 --seed 11
fi
if [ ! -f "$bundle/model.toml" ]; then
    "$bin" train --data "$data/train/good" --out "$bundle" --config config/quickstart.toml
fi
for kind in "$data"/test/*/; do
    kind="$(basename "$kind")"
    echo "== test/$kind"
    "$bin" infer --model "$bundle" --out "demo-data/maps/$kind" "$data/test/$kind"/*.png
done
echo "anomaly maps (.tiff) and heatmap overlays (_overlay.png) are in demo-data/maps/<type>/"
