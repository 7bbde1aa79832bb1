#!/usr/bin/env bash
# The CPU-only aarch64 build, for ARM boards without a CUDA GPU (Raspberry Pi 5, generic
# arm64), cross-compiled on an x86-64 machine with zig as linker so that the binary needs
# no newer glibc than GLIBC (default 2.31: Ubuntu 20.04, Debian 11 and newer).
#
#   cross/build-arm64-cpu.sh [--deb]
#
# Binary: target/aarch64-unknown-linux-gnu/release/cdo-inspect; with --deb also the Debian
# package (target/debian/cdo-inspect_*_arm64.deb).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

deb=0
for arg in "$@"; do
    case "$arg" in
        --deb) deb=1 ;;
        *) die "unknown argument $arg (usage: $0 [--deb])" ;;
    esac
done
glibc="${GLIBC:-2.31}"

setup_rust_target
setup_zig
setup_bindgen_cross
start=$SECONDS
with_cross_headers cargo zigbuild --release --locked --target "$TRIPLE.$glibc"
echo "build: $((SECONDS - start)) s"
bin="target/$TRIPLE/release/cdo-inspect"
ls -l "$bin"
cross/check-glibc.sh "$bin" "$glibc"
if [ $deb = 1 ]; then
    make_deb
fi
