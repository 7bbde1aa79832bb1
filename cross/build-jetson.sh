#!/usr/bin/env bash
# The Jetson build: aarch64 with candle's CUDA backend (the `cuda` feature), kernels
# compiled for one compute capability (CUDA_COMPUTE_CAP, default 87: Orin).
#
#   cross/build-jetson.sh [--deb]            on an x86-64 machine: CUDA 13 from PyPI
#                                            (JetPack 7 boards), linked for glibc 2.35
#   cross/build-jetson.sh --native [--deb]   on the board itself (JetPack 6, CUDA 12,
#                                            whose compiler is not on PyPI): JetPack's nvcc
#
# Binary: target/jetson/cdo-inspect (a stripped copy); with --deb also the
# cdo-inspect-jetson package. The kernels take about 15 CPU-minutes to compile.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup-cuda-pypi.sh"
cd "$ROOT"

deb=0
native=0
for arg in "$@"; do
    case "$arg" in
        --deb) deb=1 ;;
        --native) native=1 ;;
        *) die "unknown argument $arg (usage: $0 [--native] [--deb])" ;;
    esac
done
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-87}"
# Its own target directory: the CPU build's binary and test binaries stay as they are.
export CARGO_TARGET_DIR="$ROOT/target/jetson"
glibc="${GLIBC:-2.35}"
start=$SECONDS

if [ $native = 1 ]; then
    [ "$(uname -m)" = aarch64 ] || die "--native is for the Jetson itself (aarch64)"
    # JetPack installs the toolkit here without putting it on the PATH.
    [ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
    command -v nvcc >/dev/null ||
        die "nvcc not found: install JetPack's CUDA toolkit (sudo apt install nvidia-jetpack)"
    "$ROOT/scripts/build-deps.sh"
    cargo build --release --locked --features cuda
    built="$CARGO_TARGET_DIR/release/cdo-inspect"
    strip="strip"
else
    setup_rust_target
    setup_zig
    setup_bindgen_cross
    setup_cuda_pypi
    apt_install binutils-aarch64-linux-gnu
    with_cross_headers cargo zigbuild --release --locked --features cuda --target "$TRIPLE.$glibc"
    built="$CARGO_TARGET_DIR/$TRIPLE/release/cdo-inspect"
    strip=aarch64-linux-gnu-strip
fi
echo "build: $((SECONDS - start)) s"
ls -l "$built"
bin=target/jetson/cdo-inspect
mkdir -p target/jetson
"$strip" -o "$bin" "$built"
ls -l "$bin"
cross/check-glibc.sh "$bin" "$glibc"
echo "CUDA libraries the binary loads:"
readelf --dynamic "$bin" | grep -o 'lib\(cu\|nvrtc\)[A-Za-z]*\.so\.[0-9]*' | sort -u | sed 's/^/  /'
if [ $deb = 1 ]; then
    if [ $native = 1 ]; then
        setup_cargo_deb
        cargo deb --no-build --locked --strip --variant jetson | tail -n 1
    else
        make_deb --variant jetson
    fi
fi
