#!/usr/bin/env bash
# Compiles the project's own CUDA kernels (src/model/kernels/cuda/*.cu) with nvcc for every
# target architecture (CDO_CUDA_ARCHS, default "87,90": Jetson Orin and H100): to PTX, as
# build.rs does for the `cuda` feature, and through ptxas to machine code, so a kernel that
# stops compiling fails CI in about a minute instead of in the hour of candle's whole CUDA
# build. On x86-64 the compiler is the CUDA 13.0 wheels from PyPI (cached in .tools/); on
# other machines the nvcc on the PATH (or in /usr/local/cuda), and none there skips the
# check with a message.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cross/env.sh"
source "$ROOT/cross/setup-cuda-pypi.sh"
cd "$ROOT"

if [ "$(uname -m)" = x86_64 ]; then
    setup_cuda_x86_pypi compiler
else
    [ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
    if ! command -v nvcc >/dev/null; then
        echo "CUDA kernels: not compiled (no nvcc on this $(uname -m) machine)"
        exit 0
    fi
fi
start=$SECONDS
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
IFS=, read -r -a archs <<<"${CDO_CUDA_ARCHS:-87,90}"
n=0
for src in src/model/kernels/cuda/*.cu; do
    name="$(basename "$src" .cu)"
    for arch in "${archs[@]}"; do
        nvcc -ptx -O3 -std=c++17 "-arch=sm_$arch" -o "$out/$name.sm_$arch.ptx" "$src"
        nvcc -cubin -O3 -std=c++17 "-arch=sm_$arch" -Werror all-warnings \
            -o "$out/$name.sm_$arch.cubin" "$src"
        n=$((n + 1))
    done
done
targets="$(printf 'sm_%s ' "${archs[@]}")"
echo "CUDA kernels: $n compiled (PTX and machine code) with $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/nvcc \1/p') for ${targets% } in $((SECONDS - start)) s"
