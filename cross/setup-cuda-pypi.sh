#!/usr/bin/env bash
# The CUDA 13 compiler and the aarch64 CUDA libraries, from PyPI, for cross-compiling the
# `cuda` feature on an x86-64 machine without Docker (cross/build-jetson.sh sources this).
#
#   - x86-64 wheels: nvcc, cicc (nvvm), crt headers, the runtime headers and CCCL
#     (nv/target): the compiler that turns candle's kernels into sm_XX code.
#   - aarch64 wheels: libcudart, libnvrtc, libcurand, libcublas(Lt), to link against.
#     They hold only versioned .so.N files, so the link directory gets unversioned links.
#   - libcuda.so.1 belongs to the board's driver and is on no wheel: a link-time stub
#     with the driver symbols candle's cudarc calls is built here; it is never shipped.
#
# Everything lands in .tools/cuda/ and is reused. Sets CUDA_HOME (the compiler), CUDA_ROOT
# (cudarc adds its lib/ to the linker's search path: the aarch64 libraries), PATH,
# NVCC_CCBIN and CUDARC_CUDA_VERSION for the build.

# cudarc 0.19 knows CUDA up to 13.4: the toolkit is pinned to that release.
CUDA_WHEEL_VERSION=13.4.92
CCCL_VERSION=13.3.5.0.6
CUBLAS_VERSION=13.4.3.11
CURAND_VERSION=10.4.4.72

setup_cuda_pypi() {
    local dir="$TOOLS/cuda"
    local host="$dir/x86_64" target="$dir/aarch64" link="$dir/aarch64-link/lib"
    [ "$(uname -m)" = x86_64 ] || die "the PyPI CUDA set-up is for x86-64 build machines"
    # nvcc compiles the host side of candle's static kernels with the aarch64 g++.
    apt_install g++-aarch64-linux-gnu gcc-aarch64-linux-gnu unzip

    if [ ! -x "$host/nvidia/cu13/bin/nvcc" ]; then
        echo "fetching the CUDA $CUDA_WHEEL_VERSION compiler (x86-64 wheels) ..."
        pip_wheels "$host" x86_64 \
            "nvidia-cuda-nvcc==$CUDA_WHEEL_VERSION" "nvidia-nvvm==$CUDA_WHEEL_VERSION" \
            "nvidia-cuda-crt==$CUDA_WHEEL_VERSION" "nvidia-cuda-runtime==$CUDA_WHEEL_VERSION" \
            "nvidia-cuda-cccl==$CCCL_VERSION"
    fi
    if [ ! -f "$target/nvidia/cu13/lib/libcublas.so.13" ]; then
        echo "fetching the aarch64 CUDA libraries (the cuBLAS wheel is about 500 MB) ..."
        pip_wheels "$target" aarch64 \
            "nvidia-cuda-runtime==$CUDA_WHEEL_VERSION" "nvidia-cuda-nvrtc==$CUDA_WHEEL_VERSION" \
            "nvidia-curand==$CURAND_VERSION" "nvidia-cublas==$CUBLAS_VERSION"
    fi

    link_unversioned "$target" "$link"
    # candle-kernels builds its static kernels into libmoe.a and asks for `-lmoe` with no
    # kind, which rustc passes after -Bdynamic; zig's linker then looks only for
    # libmoe.so and fails (cargo-zigbuild issue 209). This libmoe.so is a linker script
    # that names the archive, which the linker finds in candle-kernels' output folder.
    echo 'INPUT(libmoe.a)' >"$link/libmoe.so"
    cuda_driver_stub aarch64-linux-gnu-gcc "$link"

    export CUDA_HOME="$host/nvidia/cu13"
    export PATH="$CUDA_HOME/bin:$PATH"
    export NVCC_CCBIN=aarch64-linux-gnu-g++
    export CUDARC_CUDA_VERSION=13040
    export CUDA_ROOT="$dir/aarch64-link"
}

# The x86-64 CUDA 13.0 set: the compiler and the libraries a `cuda` build links against,
# for the GPU check's binaries (scripts/gpu-check/build.sh: an H100 whose driver is CUDA
# 13.0 cannot load PTX from a newer compiler) and for CI's compile check of the project's
# own kernels (scripts/check-cuda-kernels.sh, which needs only the compiler: pass
# `compiler`). Everything lands in .tools/cuda-x86_64-13.0/ and is reused. Sets CUDA_HOME
# (compiler and libraries), CUDA_ROOT (the link folder: unversioned names and the driver
# stub), PATH and CUDARC_CUDA_VERSION.
CUDA_X86_VERSION=13.0.88
CUDA_X86_RUNTIME_VERSION=13.0.96
CUDA_X86_CCCL_VERSION=13.0.85
CUDA_X86_CUBLAS_VERSION=13.0.2.14
CUDA_X86_CURAND_VERSION=10.4.0.35

setup_cuda_x86_pypi() {
    local what="${1:-all}"
    local dir="$TOOLS/cuda-x86_64-13.0"
    local link="$dir/link/lib"
    [ "$(uname -m)" = x86_64 ] || die "the PyPI CUDA set-up is for x86-64 build machines"
    if [ ! -x "$dir/nvidia/cu13/bin/nvcc" ]; then
        echo "fetching the CUDA $CUDA_X86_VERSION compiler (x86-64 wheels, about 100 MB) ..."
        pip_wheels "$dir" x86_64 \
            "nvidia-cuda-nvcc==$CUDA_X86_VERSION" "nvidia-nvvm==$CUDA_X86_VERSION" \
            "nvidia-cuda-crt==$CUDA_X86_VERSION" \
            "nvidia-cuda-runtime==$CUDA_X86_RUNTIME_VERSION" \
            "nvidia-cuda-cccl==$CUDA_X86_CCCL_VERSION"
    fi
    export CUDA_HOME="$dir/nvidia/cu13"
    export PATH="$CUDA_HOME/bin:$PATH"
    [ "$what" = compiler ] && return 0

    if [ ! -f "$dir/nvidia/cu13/lib/libcublasLt.so.13" ]; then
        echo "fetching the x86-64 CUDA libraries (the cuBLAS wheel is about 420 MB) ..."
        pip_wheels "$dir" x86_64 \
            "nvidia-cuda-nvrtc==$CUDA_X86_VERSION" "nvidia-curand==$CUDA_X86_CURAND_VERSION" \
            "nvidia-cublas==$CUDA_X86_CUBLAS_VERSION"
    fi
    link_unversioned "$dir" "$link"
    cuda_driver_stub gcc "$link"
    export CUDARC_CUDA_VERSION=13000
    export CUDA_ROOT="$dir/link"
}

# link_unversioned WHEELS LINKDIR: LINKDIR/libX.so -> the wheels' libX.so.N for the CUDA
# libraries candle links (the wheels hold only versioned names).
link_unversioned() {
    local wheels="$1" link="$2" lib so
    mkdir -p "$link"
    for lib in cudart nvrtc curand cublas cublasLt; do
        so="$(ls "$wheels"/nvidia/cu*/lib/lib$lib.so.[0-9]* 2>/dev/null | head -n 1)"
        [ -n "$so" ] || die "lib$lib.so.N missing from the wheels in $wheels"
        ln -sfn "$so" "$link/lib$lib.so"
    done
}

# cuda_driver_stub CC DIR: DIR/libcuda.so, one empty function per driver entry point in
# cudarc's bindings. libcuda.so.1 belongs to the GPU's driver and is on no wheel; this
# stub only satisfies the linker and is never shipped.
cuda_driver_stub() {
    local cc="$1" dir="$2" sys
    [ -f "$dir/libcuda.so" ] && return 0
    sys="$(cudarc_driver_bindings)"
    grep -o '\bfn cu[A-Za-z0-9_]*(' "$sys" | sed 's/^fn //; s/($//' | sort -u |
        sed 's/.*/void &(void) {}/' >"$dir/cuda-stub.c"
    "$cc" -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$dir/libcuda.so" "$dir/cuda-stub.c"
}

# pip_wheels DEST ARCH REQUIREMENT...: downloads the binary wheels for ARCH and unpacks
# them into DEST (the wheels are plain archives; nothing is installed into a Python).
pip_wheels() {
    local dest="$1" arch="$2" w
    shift 2
    local dl="$dest.download"
    rm -rf "$dl"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform "manylinux2014_$arch" --platform "manylinux_2_17_$arch" \
        --platform "manylinux_2_27_$arch" --platform "manylinux_2_28_$arch" \
        --platform "manylinux2010_$arch" --platform "manylinux_2_12_$arch" \
        -d "$dl" "$@" || die "pip could not download: $*"
    mkdir -p "$dest"
    for w in "$dl"/*.whl; do
        unzip -q -o "$w" -d "$dest"
    done
    rm -rf "$dl"
}

# The driver bindings of the cudarc version in Cargo.lock (fetched by cargo).
cudarc_driver_bindings() {
    local version f
    version="$(grep -A1 '^name = "cudarc"$' "$ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
    (cd "$ROOT" && cargo fetch --locked >/dev/null 2>&1) || die "cargo fetch failed"
    f="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$version"/src/driver/sys/mod.rs 2>/dev/null | head -n 1)"
    [ -n "$f" ] || die "cudarc $version's driver bindings not found in the cargo registry"
    echo "$f"
}
