#!/usr/bin/env bash
# Browser tests of the operator console: a real daemon and the control-plane simulator on
# loopback, driven through Debian's headless Chromium by playwright-core (console.test.mjs).
#
#   bash tests/console/run.sh
#   CONSOLE_SCREENSHOTS=docs/images bash tests/console/run.sh   # also refreshes the screenshots
#
# Binaries: $SCIM_SYNC_BIN (default target/debug/scim-sync) and $PORTKEY_SIM_BIN (default
# target/debug/portkey-sim), built here when missing. Chromium: $CHROMIUM (default
# /usr/bin/chromium), installed from Debian's packages when missing and running as root.
# CONSOLE_KEEP=1 keeps the temp dir (config, logs, store).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export SCIM_SYNC_BIN="${SCIM_SYNC_BIN:-target/debug/scim-sync}"
export PORTKEY_SIM_BIN="${PORTKEY_SIM_BIN:-target/debug/portkey-sim}"

as_root_apt() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== console: installing $* from Debian's packages"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  else
    echo "console: $* missing; install it (apt-get install $*) or see the header of $0" >&2
    exit 2
  fi
}

[ -x "$CHROMIUM" ] || as_root_apt chromium
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || as_root_apt nodejs npm

# playwright-core only: it drives the Chromium above and downloads no browser of its own.
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)

[ -x "$SCIM_SYNC_BIN" ] || cargo build --quiet
[ -x "$PORTKEY_SIM_BIN" ] || cargo build --quiet -p portkey-sim

echo "== console: $("$CHROMIUM" --version 2>/dev/null || echo chromium), node $(node --version)"
node --test --test-reporter=spec "$HERE/console.test.mjs"
