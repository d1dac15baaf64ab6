# Sourced by the scripts that test a built scim-sync from the outside (tests/conformance/run.sh,
# tests/tls/run.sh), after they set HERE to their own directory. Sets ROOT (the repository
# root, made the working directory) and BIN (the binary from $SCIM_SYNC_BIN, default
# target/debug/scim-sync, relative to ROOT), and the helpers below.

ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

BIN="${SCIM_SYNC_BIN:-target/debug/scim-sync}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac

# need_bin NAME: fails, saying so as NAME, when there is no binary at $BIN; the caller exits.
need_bin() {
  [ -x "$BIN" ] && return 0
  echo "$1: scim-sync binary not found at $BIN (build it first, or set SCIM_SYNC_BIN)" >&2
  return 1
}

# stop_pid PID: SIGTERM, then SIGKILL if it is still there after 10 s; nothing if PID is empty
# or gone. scim-sync gives an in-flight reconcile run up to 5 s before it stops.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# free_ports N: N free loopback ports on one line.
free_ports() {
  local py="${PYTHON:-python3}"
  if command -v "$py" >/dev/null 2>&1; then
    "$py" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
  else
    # No python: random high ports that nothing answers on.
    local out=() p
    while [ "${#out[@]}" -lt "$1" ]; do
      p=$((20000 + RANDOM % 40000))
      case " ${out[*]} " in *" $p "*) continue ;; esac
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
      out+=("$p")
    done
    echo "${out[*]}"
  fi
}

# server_log_excerpt LOG MAX [SKIP]: the log's warnings and errors (but lines matching the
# regex SKIP), else its last 10 lines; at most MAX lines, colours stripped. Needs pipefail.
server_log_excerpt() {
  local skip="${3:-}"
  { grep -E ' (WARN|ERROR) ' "$1" | if [ -n "$skip" ]; then grep -vE -- "$skip"; else cat; fi \
      || tail -n 10 "$1"; } \
    | tail -n "$2" | sed 's/\x1b\[[0-9;]*m//g'
}
