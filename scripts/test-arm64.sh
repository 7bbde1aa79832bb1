#!/usr/bin/env bash
# The aarch64 checks, from a fresh clone on an x86-64 machine (CI runs this after the
# native suite):
#   1. the CPU-only aarch64 release binary (cross/build-arm64-cpu.sh), pinned to glibc
#      2.31, and the check of its highest GLIBC symbol version;
#   2. the tests built for aarch64 and run under qemu-user with Debian's arm64 sysroot
#      (the tests listed in QEMU_TESTS: see below);
#   3. the Debian package, installed into clean Debian roots (cross/install-test.sh).
# Needs root or sudo for apt-get (qemu-user, the arm64 sysroot, debootstrap).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cross/env.sh"
cd "$ROOT"

apt_install qemu-user libc6-arm64-cross libgcc-s1-arm64-cross debootstrap
models/fetch.sh
scripts/fetch-sample-images.sh

echo "== 1. aarch64 binary and glibc check"
cross/build-arm64-cpu.sh --deb
glibc="${GLIBC:-2.31}"

echo "== 2. tests under qemu-aarch64"
# Emulation makes candle's CPU kernels many times slower, and the training-heavy tests
# (train_infer, eval_benchmark) take over 10 minutes each under qemu: they are left out
# (QEMU_TESTS="--tests" runs everything). These run: the library's unit tests (kernels
# against candle's operators, gradients, metrics, image I/O, sample data), the binary end
# to end (cli: sample data, a short training, infer with maps), checkpoint reading, the
# CDO and metric vectors, and the real ImageNet expert's features (imagenet_expert).
QEMU_TESTS="${QEMU_TESTS:---lib --test cli --test checkpoints --test cdo_vectors --test metric_vectors --test imagenet_expert}"
# The build above ran in its own process: put the target, zig and the headers in place here.
setup_rust_target
setup_zig
setup_bindgen_cross
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
# The tests start the binary too; it must go through the emulator as well.
export CDO_TEST_RUNNER=qemu-aarch64
start=$SECONDS
# shellcheck disable=SC2086
with_cross_headers cargo-zigbuild test --release --locked --target "$TRIPLE.$glibc" $QEMU_TESTS --no-run
echo "tests built: $((SECONDS - start)) s"
start=$SECONDS
# shellcheck disable=SC2086
with_cross_headers cargo-zigbuild test --release --locked --target "$TRIPLE.$glibc" $QEMU_TESTS \
    -- --test-threads="${TEST_THREADS:-2}"
echo "tests under qemu: $((SECONDS - start)) s"

echo "== 3. Debian package install test"
cross/install-test.sh "$(ls -t target/debian/cdo-inspect_*_arm64.deb | head -n 1)"

# The CUDA feature for aarch64 (CUDA 13.4 from PyPI): about 15 CPU-minutes of kernels on
# top of a second full build, which does not fit next to the rest in CI's 90 minutes on
# two cores. Run it with ARM64_CUDA=1 (or cross/build-jetson.sh) before a release.
if [ "${ARM64_CUDA:-0}" = 1 ]; then
    echo "== 4. CUDA build for aarch64"
    cross/build-jetson.sh --deb
fi
