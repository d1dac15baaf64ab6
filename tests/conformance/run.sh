#!/usr/bin/env bash
# Run the external SCIM conformance suite (scim2-tester) against a freshly started scim-sync.
#
#   SCIM_SYNC_BIN=target/debug/scim-sync bash tests/conformance/run.sh
#
# Builds nothing: the binary comes from $SCIM_SYNC_BIN (default target/debug/scim-sync,
# relative to the repository root). scim2-tester is installed from PyPI into a venv
# ($CONFORMANCE_VENV, default target/conformance-venv), reused while requirements.txt is
# unchanged. Exits non-zero iff a check fails that known-issues.md does not list.
# Other knobs: PYTHON (interpreter >= 3.11, default python3), CONFORMANCE_KEEP=1 keeps the
# temp dir (config, server log, HTTP log, results.json), CONFORMANCE_VERBOSE=1 prints reasons
# of passing checks too.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../support/preamble.sh"
PYTHON="${PYTHON:-python3}"
VENV="${CONFORMANCE_VENV:-$ROOT/target/conformance-venv}"
REQ="$HERE/requirements.txt"

need_bin conformance || exit 2
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "conformance: scim2-tester needs Python >= 3.11; set PYTHON to one" >&2
  exit 2
fi

# --- scim2-tester in a venv, reinstalled only when requirements.txt changes.
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/.requirements.txt" \
   || ! "$VENV/bin/python" -c 'import scim2_tester, httpx2' 2>/dev/null; then
  echo "== conformance: installing scim2-tester into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "conformance: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 2
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ"
  cp "$REQ" "$VENV/.requirements.txt"
fi

# --- A server of our own, on free loopback ports, with a throwaway store.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/scim-conformance.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID"
  if [ "$rc" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "== conformance: server log (warnings and errors, else its last lines)"
    server_log_excerpt "$WORK/server.log" 30
  fi
  if [ "${CONFORMANCE_KEEP:-0}" = 1 ]; then
    echo "conformance: kept $WORK"
  fi
  # The summary stays the last line, whatever was printed after it.
  if [ "$rc" -ne 0 ] && [ -s "$WORK/suite.out" ]; then
    grep -E '^conformance: [0-9]+ passed' "$WORK/suite.out" | tail -n 1 || true
  fi
  [ "${CONFORMANCE_KEEP:-0}" = 1 ] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r SCIM_PORT ADMIN_PORT < <(free_ports 2)

cat > "$WORK/config.toml" <<EOF
[scim]
listen = "127.0.0.1:$SCIM_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[store]
path = "$WORK/store.redb"
[portkey]
base_url = "http://127.0.0.1:9/v1"
EOF

rand() { "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
export SCIM_SYNC_SCIM_TOKEN="conf-$(rand)"
export SCIM_SYNC_ADMIN_TOKEN="conf-$(rand)"
export PORTKEY_API_KEY="conformance-dummy-key"

echo "== conformance: starting $BIN (scim :$SCIM_PORT, admin :$ADMIN_PORT)"
NO_COLOR=1 "$BIN" serve --config "$WORK/config.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

"$PYTHON" - "$ADMIN_PORT" "$SERVER_PID" <<'EOF'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("conformance: scim-sync exited before becoming healthy")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("conformance: scim-sync not healthy after 30s")
EOF

# --- The suite.
args=(--url "http://127.0.0.1:$SCIM_PORT/scim/v2" --known "$HERE/known-issues.md"
      --http-log "$WORK/http.log" --json "$WORK/results.json")
[ "${CONFORMANCE_VERBOSE:-0}" = 1 ] && args+=(--verbose)
echo "== conformance: scim2-tester $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("scim2-tester"))') against http://127.0.0.1:$SCIM_PORT/scim/v2"
status=0
timeout 170 "$VENV/bin/python" -u "$HERE/run_suite.py" "${args[@]}" | tee "$WORK/suite.out" \
  || status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ]; then
  echo "conformance: the suite timed out after 170s" >&2
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "conformance: scim-sync died during the suite" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
