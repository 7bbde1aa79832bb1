#!/usr/bin/env bash
# Debian packages the tests of the station's outside interfaces run (tests/outside.rs):
# mosquitto (the MQTT broker), chromium (the web view in a headless browser) and
# prometheus (its promtool checks /metrics), openssl (the certificates of the MQTT TLS
# test). Installs the missing ones with apt-get (as
# root, or through sudo). The product itself needs none of them.
set -euo pipefail

missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v chromium >/dev/null || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing ${missing[*]} (the outside-interface tests)" >&2
as_root=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "${missing[*]} missing and sudo is not available: install them as root" >&2; exit 1; }
    as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a broker on port 1883 where systemd runs; the tests start their own.
