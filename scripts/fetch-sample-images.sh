#!/usr/bin/env bash
# Fetch a handful of real photographs that ship inside the scikit-image wheel on PyPI.
#
# Why: the demo, the quickstart and the tests need real images (not synthetic noise),
# and PyPI is a registry every developer machine and CI can reach. Only the ordinary
# pip client is used to download the wheel; no Python is needed afterwards.
#
# Usage: scripts/fetch-sample-images.sh [DEST_DIR]
#   DEST_DIR defaults to $CDO_SAMPLE_IMAGES_DIR, else testdata/images (repo-relative).
# Idempotent: files already present with the expected SHA-256 are not fetched again.
set -euo pipefail

SKIMAGE_VERSION="0.26.0"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${CDO_SAMPLE_IMAGES_DIR:-$REPO_ROOT/testdata/images}}"

# name  sha256 (of the file as shipped in scikit-image 0.26.0, skimage/data/)
EXPECTED=(
    "chelsea.png 596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"
    "coffee.png cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"
    "rocket.jpg c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"
    "astronaut.png 88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
    "brick.png 7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf"
    "gravel.png c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12"
    "grass.png b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89"
)

die() {
    echo "fetch-sample-images: error: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it ($2)"
}

need unzip "e.g. apt-get install unzip"

if command -v sha256sum >/dev/null 2>&1; then
    sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256_of() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "neither 'sha256sum' nor 'shasum' found; install coreutils"
fi

# Return 0 when every expected file is present in $DEST with the right hash.
all_present() {
    local entry name sum
    for entry in "${EXPECTED[@]}"; do
        name="${entry%% *}"
        sum="${entry##* }"
        [[ -f "$DEST/$name" ]] || return 1
        [[ "$(sha256_of "$DEST/$name")" == "$sum" ]] || return 1
    done
    return 0
}

if all_present; then
    echo "fetch-sample-images: all ${#EXPECTED[@]} images already present in $DEST"
    exit 0
fi

# Find a pip client: python3 -m pip, else pip3, else pip.
PIP=()
if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    PIP=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
    PIP=(pip3)
elif command -v pip >/dev/null 2>&1; then
    PIP=(pip)
else
    die "no pip client found (tried 'python3 -m pip', 'pip3', 'pip'); install one, e.g. 'apt-get install python3-pip'"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cdo-sample-images.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-sample-images: downloading scikit-image==$SKIMAGE_VERSION wheel with ${PIP[*]}"
if ! "${PIP[@]}" download --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
    "scikit-image==$SKIMAGE_VERSION" -d "$TMP/wheel" >"$TMP/pip.log" 2>&1; then
    cat "$TMP/pip.log" >&2
    die "pip download of scikit-image==$SKIMAGE_VERSION failed (see output above)"
fi

shopt -s nullglob
wheels=("$TMP"/wheel/scikit_image-*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one scikit-image wheel in $TMP/wheel, found ${#wheels[@]}"
WHEEL="${wheels[0]}"

members=()
for entry in "${EXPECTED[@]}"; do
    members+=("skimage/data/${entry%% *}")
done
mkdir -p "$TMP/extract"
unzip -o -j -q "$WHEEL" "${members[@]}" -d "$TMP/extract" ||
    die "could not extract ${members[*]} from $(basename "$WHEEL")"

mkdir -p "$DEST" || die "cannot create destination directory $DEST"
for entry in "${EXPECTED[@]}"; do
    name="${entry%% *}"
    sum="${entry##* }"
    src="$TMP/extract/$name"
    [[ -f "$src" ]] || die "$name missing from $(basename "$WHEEL")"
    got="$(sha256_of "$src")"
    [[ "$got" == "$sum" ]] ||
        die "SHA-256 mismatch for $name: expected $sum, got $got (wheel content changed?)"
    # Copy then rename so an interrupted run never leaves a half-written image.
    cp "$src" "$DEST/.$name.tmp"
    mv -f "$DEST/.$name.tmp" "$DEST/$name"
    echo "fetch-sample-images: $DEST/$name ok"
done

echo "fetch-sample-images: done, ${#EXPECTED[@]} images in $DEST"
