#!/usr/bin/env bash
# Installs the arm64 Debian package into clean Debian roots made here with debootstrap:
#
#   1. a clean Debian 12 arm64 root: the package is unpacked into it with dpkg --root and
#      the binary answers --version under qemu-user, on that root's own glibc. (This
#      machine cannot run arm64 maintainer scripts: without binfmt_misc, qemu-user does
#      not follow exec, so the arm64 root stays unconfigured.)
#   2. a clean Debian 12 root of this machine's architecture, in a chroot, where dpkg runs
#      the maintainer scripts for real (they are shell, the same on every architecture):
#      install, the user and its groups, the state directories, an upgrade that keeps the
#      technician's station file and trained models, remove, purge.
#
#   cross/install-test.sh DEB           (run as root; about 600 MB in .tools/ and ~/.cache)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[ $# -eq 1 ] && [ -f "$1" ] || die "usage: $0 PACKAGE.deb"
deb="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[ "$(id -u)" = 0 ] || die "$0 needs root (debootstrap, chroot)"
apt_install debootstrap qemu-user
# The Debian mirror this machine's apt uses.
mirror="$(apt-get indextargets --format '$(REPO_URI)' 'Codename: bookworm' | grep -m 1 '/debian/$' || true)"
[ -n "$mirror" ] || die "no bookworm Debian mirror in apt's sources"
work="$TOOLS/install-test"
# The downloaded Debian packages are kept across clones, so that a rerun is quicker.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cdo-inspect/debootstrap"
mkdir -p "$work" "$cache/arm64" "$cache/host"
fail() { echo "install test FAILED: $*" >&2; exit 1; }

# --- 1: clean arm64 root ---
arm="$work/arm64-root"
rm -rf "$arm"
echo "== debootstrap (first stage) of a Debian 12 arm64 root"
debootstrap --foreign --variant=minbase --arch=arm64 --cache-dir="$cache/arm64" \
    bookworm "$arm" "$mirror" >"$work/debootstrap-arm64.log" 2>&1 ||
    fail "debootstrap arm64 (see $work/debootstrap-arm64.log)"
echo "== dpkg --root: unpack $(basename "$deb")"
# The root's dpkg database is empty until the second stage, hence the forced dependencies.
dpkg --root="$arm" --force-architecture --force-depends --unpack "$deb"
echo "== qemu-aarch64 on the root's glibc: $(qemu-aarch64 -L "$arm" "$arm/lib/aarch64-linux-gnu/libc.so.6" | head -n 1)"
qemu-aarch64 -L "$arm" "$arm/usr/bin/cdo-inspect" --version || fail "--version in the arm64 root"
# Unpacked, not configured: the conffile waits as .dpkg-new.
[ -f "$arm/etc/cdo-inspect/station.toml.dpkg-new" ] || fail "station file not unpacked"

# --- 2: maintainer scripts in a clean root of this machine's architecture ---
host="$work/host-root"
rm -rf "$host"
echo "== debootstrap of a Debian 12 $(dpkg --print-architecture) root"
# With systemd (and procps, whose kill the unit reloads with), as on a station: the unit
# is enabled at install and verified in place.
debootstrap --variant=minbase --include=systemd,procps --cache-dir="$cache/host" bookworm "$host" "$mirror" \
    >"$work/debootstrap-host.log" 2>&1 || fail "debootstrap (see $work/debootstrap-host.log)"
in_root() { chroot "$host" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
cp "$deb" "$host/tmp/pkg.deb"
# A second version of the same package, for the upgrade.
dpkg-deb -R "$deb" "$work/repack"
sed -i 's/^Version: .*/&+upgrade/' "$work/repack/DEBIAN/control"
dpkg-deb --build --root-owner-group "$work/repack" "$host/tmp/pkg-upgrade.deb" >/dev/null
rm -rf "$work/repack"

echo "== install"
# Only the binary is arm64, and with it the dependency on libc6:arm64 (step 1 runs it);
# the scripts and layout are what this step tests.
force="--force-architecture --force-depends"
in_root dpkg $force -i /tmp/pkg.deb
in_root id cdo-inspect
in_root id -nG cdo-inspect | grep -qw video || fail "cdo-inspect is not in group video"
in_root id -nG cdo-inspect | grep -qw gpio || fail "cdo-inspect is not in group gpio"
for d in /var/lib/cdo-inspect /var/lib/cdo-inspect/models; do
    [ "$(in_root stat -c %U:%G "$d")" = cdo-inspect:cdo-inspect ] || fail "$d owner"
done
in_root ls -l /usr/bin/cdo-inspect /etc/cdo-inspect/station.toml \
    /usr/lib/systemd/system/cdo-inspect.service /lib/udev/rules.d/60-cdo-inspect-gpio.rules
in_root dpkg-query -W -f='conffiles:${Conffiles}\n' cdo-inspect cdo-inspect-jetson 2>/dev/null || true
[ -L "$host/etc/systemd/system/multi-user.target.wants/cdo-inspect.service" ] ||
    fail "the unit is not enabled"
echo "== systemd-analyze verify (in the installed root)"
systemd-analyze verify --root="$host" /usr/lib/systemd/system/cdo-inspect.service ||
    fail "systemd-analyze verify"
echo "verify: ok"
# The network drop-in for [web]/[mqtt] is shipped as an example and not enabled; with it
# installed the unit must still verify.
ex=/usr/share/doc/cdo-inspect/examples/cdo-inspect-network.conf
[ -f "$host$ex" ] || fail "the network drop-in example is missing"
[ ! -e "$host/usr/lib/systemd/system/cdo-inspect.service.d/cdo-inspect-network.conf" ] ||
    fail "the network drop-in is enabled by the package"
mkdir -p "$host/etc/systemd/system/cdo-inspect.service.d"
cp "$host$ex" "$host/etc/systemd/system/cdo-inspect.service.d/network.conf"
systemd-analyze verify --root="$host" /usr/lib/systemd/system/cdo-inspect.service ||
    fail "systemd-analyze verify with the network drop-in"
rm -r "$host/etc/systemd/system/cdo-inspect.service.d"
echo "verify with the network drop-in: ok"
systemd-analyze security --offline=yes --root="$host" cdo-inspect.service | tail -n 1

echo "== upgrade keeps the station file and trained models"
echo "# edited by the technician" >>"$host/etc/cdo-inspect/station.toml"
mkdir -p "$host/var/lib/cdo-inspect/models/bundle-1"
echo trained >"$host/var/lib/cdo-inspect/models/bundle-1/model.toml"
in_root dpkg $force -i /tmp/pkg-upgrade.deb
grep -q 'edited by the technician' "$host/etc/cdo-inspect/station.toml" || fail "station file replaced"
[ -f "$host/var/lib/cdo-inspect/models/bundle-1/model.toml" ] || fail "trained model lost"
in_root dpkg-query -W cdo-inspect cdo-inspect-jetson 2>/dev/null || true

echo "== remove keeps them too; purge removes the station file"
pkg="$(dpkg-deb --field "$deb" Package)"
in_root dpkg -r "$pkg"
[ -f "$host/etc/cdo-inspect/station.toml" ] || fail "remove deleted the station file"
[ -f "$host/var/lib/cdo-inspect/models/bundle-1/model.toml" ] || fail "remove deleted models"
in_root dpkg --purge "$pkg"
[ ! -e "$host/etc/cdo-inspect/station.toml" ] || fail "purge kept the station file"
echo "install test passed"
