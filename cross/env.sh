# shellcheck shell=bash
# Shared set-up for the aarch64 builds, sourced by the scripts in cross/ and by
# scripts/test-arm64.sh. Every tool is fetched from an ordinary registry (rustup's target,
# PyPI, crates.io, Debian's packages) and cached under .tools/ (git-ignored), so a fresh
# clone needs only a Rust toolchain, python3 with pip, and apt-get (as root or with sudo).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
TRIPLE=aarch64-unknown-linux-gnu
# Pinned so that a rerun builds with what was measured.
ZIGBUILD_VERSION=0.24.1
ZIG_VERSION=0.17.1
CARGO_DEB_VERSION=3.8.0

die() {
    echo "error: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "'$*' needs root (or sudo)"
    fi
}

# Installs the Debian packages that are missing; does nothing when all are there.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "apt-get is needed to install: ${missing[*]}"
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

setup_rust_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" ||
        rustup target add "$TRIPLE" ||
        die "could not add the Rust target $TRIPLE (rustup target add $TRIPLE)"
}

# cargo-zigbuild and zig (both from PyPI): zig links against a chosen glibc version, so
# the binary runs on the board's glibc whatever this machine's is.
setup_zig() {
    local venv="$TOOLS/venv"
    if ! "$venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -q " $ZIGBUILD_VERSION\$" ||
        ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
        python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
        "$venv/bin/pip" install -q "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION" ||
            die "pip could not install cargo-zigbuild and ziglang"
    fi
    export PATH="$venv/bin:$PATH"
}

setup_cargo_deb() {
    local root="$TOOLS/cargo"
    if ! "$root/bin/cargo-deb" --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
        echo "building cargo-deb $CARGO_DEB_VERSION (once; cached in .tools/cargo) ..."
        cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION" --root "$root" ||
            die "cargo install cargo-deb failed"
    fi
    export PATH="$root/bin:$PATH"
}

# The Debian package of the aarch64 binary at $1 (cargo-deb, [package.metadata.deb] in
# Cargo.toml); extra arguments go to cargo-deb (--variant jetson). Prints the .deb's path
# (target/debian/).
make_deb() {
    setup_cargo_deb
    # cargo-deb strips the binary with the target's strip.
    apt_install binutils-aarch64-linux-gnu
    # --strip: the release profile keeps line tables (debug = 1) for backtraces.
    cargo deb --no-build --locked --strip --target "$TRIPLE" "${@}" | tail -n 1
}
