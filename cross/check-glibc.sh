#!/usr/bin/env bash
# Prints the highest GLIBC symbol version an ELF binary needs, and fails when it is above
# the board's glibc (a binary linked against a newer glibc does not start there).
#
#   cross/check-glibc.sh BINARY MAX_GLIBC      e.g. cross/check-glibc.sh cdo-inspect 2.35
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY MAX_GLIBC" >&2; exit 2; }
bin="$1"
max="$2"
[ -f "$bin" ] || { echo "error: $bin: no such file" >&2; exit 1; }
command -v readelf >/dev/null || { echo "error: readelf is needed (install binutils)" >&2; exit 1; }

highest="$(readelf --version-info --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' |
    sed 's/^GLIBC_//' | sort -u -V | tail -n 1)"
[ -n "$highest" ] || { echo "error: $bin needs no GLIBC symbol version (not a glibc binary?)" >&2; exit 1; }
echo "$bin: highest GLIBC symbol version GLIBC_$highest (board: $max)"
if [ "$(printf '%s\n%s\n' "$highest" "$max" | sort -V | tail -n 1)" != "$max" ]; then
    echo "error: $bin needs GLIBC_$highest, newer than the board's $max" >&2
    exit 1
fi
