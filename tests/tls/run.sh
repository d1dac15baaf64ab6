#!/usr/bin/env bash
# Test the documented HTTPS setup (docs/tls.md, nginx): a freshly started scim-sync behind an
# nginx of our own that terminates TLS with a throwaway self-signed certificate.
#
#   SCIM_SYNC_BIN=target/debug/scim-sync bash tests/tls/run.sh
#
# Builds nothing: the binary comes from $SCIM_SYNC_BIN (default target/debug/scim-sync, relative
# to the repository root). nginx, openssl and curl are installed with apt-get when missing (root
# only); the system nginx service is never started. The nginx server block is taken from
# docs/tls.md at run time, with only addresses, name and file paths adapted (see README.md).
# Prints one line per check and ends with `tls: N passed, M failed`; exits non-zero iff a check
# (or the setup) failed. TLS_KEEP=1 keeps the temp dir (configs, certificate, logs);
# TLS_DOC=FILE takes the server block from another copy of docs/tls.md (to try a doc edit).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../support/preamble.sh"
DOC="${TLS_DOC:-$ROOT/docs/tls.md}"
NAME="scim.example.test"

if ! need_bin tls; then
  echo "tls: 0 passed, 1 failed"
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/scim-tls.XXXXXX")"
SERVER_PID=""
NGINX_PID=""
POLICY_STATE=""   # "" untouched, "absent" we created it, "saved" original saved in $WORK
PASSED=0
FAILED=0

restore_policy_rc() {
  case "$POLICY_STATE" in
    absent) rm -f /usr/sbin/policy-rc.d ;;
    saved) cp -p "$WORK/policy-rc.d.orig" /usr/sbin/policy-rc.d ;;
  esac
  POLICY_STATE=""
}

cleanup() {
  local rc=$?
  trap '' INT TERM   # a second signal must not cut the cleanup short
  restore_policy_rc
  stop_pid "$NGINX_PID"
  stop_pid "$SERVER_PID"
  if [ "$FAILED" -ne 0 ] || [ "$rc" -ne 0 ]; then
    if [ -s "$WORK/nginx-error.log" ]; then
      echo "== tls: nginx error log (last lines)"
      tail -n 15 "$WORK/nginx-error.log"
    fi
    if [ -s "$WORK/server.log" ]; then
      echo "== tls: server log (warnings and errors, else its last lines)"
      # (the control plane is unreachable here by design: its client's warnings are left out)
      server_log_excerpt "$WORK/server.log" 20 'portkey::client'
    fi
  fi
  if [ "${TLS_KEEP:-0}" = 1 ]; then echo "tls: kept $WORK"; else rm -rf "$WORK"; fi
  [ "$rc" -ne 130 ] || echo "tls: interrupted"
  if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=1; fi
  # The summary is always the last line.
  echo "tls: $PASSED passed, $FAILED failed"
  [ "$rc" -eq 0 ] || exit "$rc"
  [ "$FAILED" -eq 0 ] || exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1${2:+: $2}"; }
setup_fail() { fail "setup" "$1"; exit 1; }

# --- 1. Tools: nginx, openssl, curl; apt-get only for what is missing.
find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }
missing=()
[ -n "$(find_nginx)" ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== tls: installing (missing: ${missing[*]})"
  [ "$(id -u)" -eq 0 ] || setup_fail "missing ${missing[*]}; install them or run as root"
  command -v apt-get >/dev/null 2>&1 || setup_fail "missing ${missing[*]} and no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=120)
  has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$c" ] && [ "$c" != "(none)" ]
  }
  # Package lists are fetched only when they do not know a package we need.
  if ! { { has_candidate nginx-light || has_candidate nginx; } && has_candidate openssl \
         && has_candidate curl; }; then
    echo "== tls: apt-get update"
    apt-get update -q >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log"; setup_fail "apt-get update failed"; }
  fi
  if has_candidate nginx-light; then nginx_pkg=nginx-light; else nginx_pkg=nginx; fi
  # Keep package scripts from starting the system nginx: policy-rc.d answering 101 while we
  # install, the original file (if any) put back right after.
  if [ -e /usr/sbin/policy-rc.d ]; then
    cp -p /usr/sbin/policy-rc.d "$WORK/policy-rc.d.orig"
    POLICY_STATE=saved
  else
    POLICY_STATE=absent
  fi
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  # Only what is missing, so tools already there are not upgraded under other jobs' feet.
  pkgs=()
  for m in "${missing[@]}"; do
    if [ "$m" = nginx ]; then pkgs+=("$nginx_pkg"); else pkgs+=("$m"); fi
  done
  if ! apt-get install "${apt_opts[@]}" "${pkgs[@]}" >"$WORK/apt.log" 2>&1; then
    # Stale package lists (404 on a .deb): fetch them once and retry.
    echo "== tls: apt-get install failed; apt-get update and retry"
    apt-get update -q >>"$WORK/apt.log" 2>&1 || true
    apt-get install "${apt_opts[@]}" "${pkgs[@]}" >>"$WORK/apt.log" 2>&1 \
      || { restore_policy_rc; tail -n 20 "$WORK/apt.log"; setup_fail "apt-get install ${pkgs[*]} failed"; }
  fi
  restore_policy_rc
  echo "== tls: installed ${pkgs[*]}"
fi
NGINX="$(find_nginx)"
[ -n "$NGINX" ] || setup_fail "nginx not found after install"
command -v openssl >/dev/null 2>&1 || setup_fail "openssl not found after install"
command -v curl >/dev/null 2>&1 || setup_fail "curl not found after install"

# --- Free loopback ports: SCIM, admin, HTTPS.
read -r SCIM_PORT ADMIN_PORT TLS_PORT < <(free_ports 3)
BASE="https://$NAME:$TLS_PORT"

# --- 2. Certificate and nginx.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME" \
  -keyout "$WORK/privkey.pem" -out "$WORK/fullchain.pem" >"$WORK/openssl.log" 2>&1 \
  || { cat "$WORK/openssl.log"; setup_fail "openssl could not make the certificate"; }
chmod 600 "$WORK/privkey.pem"
CERT="$WORK/fullchain.pem"

# The server block exactly as docs/tls.md gives it, then the minimal adaptation: our port on
# loopback instead of 443 (no IPv6 listener: CI machines may have none), our test name, our
# certificate files, our scim-sync port. Each substitution must match exactly once, so a doc
# change that breaks this adaptation fails the test instead of silently testing something else.
awk '/^```nginx$/ {inb=1; next} inb && /^```$/ {exit} inb {print}' "$DOC" >"$WORK/doc-server.conf"
[ -s "$WORK/doc-server.conf" ] || setup_fail "no \`\`\`nginx block in docs/tls.md"
cp "$WORK/doc-server.conf" "$WORK/server.conf"
adapt() { # FROM-regex [TO] (sed ERE, '#' delimiter; no TO: delete the line); one line must match
  local n
  n=$(grep -cE -- "$1" "$WORK/server.conf" || true)
  [ "$n" = 1 ] || setup_fail "docs/tls.md nginx block: expected one line matching '$1', found $n"
  if [ $# -eq 1 ]; then sed -i -E "\\#$1#d" "$WORK/server.conf"
  else sed -i -E "s#$1#$2#" "$WORK/server.conf"; fi
}
adapt '^( *)listen 443 ssl http2;$' "\\1listen 127.0.0.1:$TLS_PORT ssl http2;"
adapt '^ *listen \[::\]:443 ssl http2;$'
adapt 'server_name scim\.example\.com;' "server_name $NAME;"
adapt 'ssl_certificate +/etc/ssl/scim-sync/fullchain\.pem;' "ssl_certificate     $WORK/fullchain.pem;"
adapt 'ssl_certificate_key +/etc/ssl/scim-sync/privkey\.pem;' "ssl_certificate_key $WORK/privkey.pem;"
adapt 'proxy_pass http://127\.0\.0\.1:8080;' "proxy_pass http://127.0.0.1:$SCIM_PORT;"
diff -u "$WORK/doc-server.conf" "$WORK/server.conf" >"$WORK/adaptation.diff" || true

# Our own main config: no system paths (pid, logs, temp dirs all in $WORK), foreground master.
mkdir -p "$WORK/nginx-tmp"
chmod 711 "$WORK"   # workers (unprivileged user when run as root) reach the temp dirs
cat >"$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 64; }
http {
    access_log $WORK/nginx-access.log;
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path $WORK/nginx-tmp/proxy;
    fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
    scgi_temp_path $WORK/nginx-tmp/scgi;
    include $WORK/server.conf;
}
EOF
"$NGINX" -t -q -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/nginx-error.log" >"$WORK/nginx-t.log" 2>&1 \
  || { cat "$WORK/nginx-t.log"; setup_fail "nginx -t rejects the documented server block"; }

# --- 3. scim-sync on loopback, configured as docs/tls.md says, public_url on our test name.
cat >"$WORK/config.toml" <<EOF
[scim]
listen = "127.0.0.1:$SCIM_PORT"
base_path = "/scim/v2"
public_url = "$BASE/scim/v2"
max_body_bytes = 1048576

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[store]
path = "$WORK/store.redb"

[portkey]
base_url = "http://127.0.0.1:9/v1"
EOF
rand() { openssl rand -hex 24; }
export SCIM_SYNC_SCIM_TOKEN="tls-$(rand)"
export SCIM_SYNC_ADMIN_TOKEN="tls-$(rand)"
export PORTKEY_API_KEY="tls-test-dummy-key"

echo "== tls: scim-sync :$SCIM_PORT (admin :$ADMIN_PORT) behind nginx $BASE"
NO_COLOR=1 "$BIN" serve --config "$WORK/config.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/nginx-error.log" >"$WORK/nginx.out" 2>&1 &
NGINX_PID=$!

healthy=0
for _ in $(seq 300); do   # 30 s
  kill -0 "$SERVER_PID" 2>/dev/null || setup_fail "scim-sync exited before becoming healthy"
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$ADMIN_PORT/healthz")" = 200 ]; then
    healthy=1; break
  fi
  sleep 0.1
done
[ "$healthy" = 1 ] || setup_fail "scim-sync not healthy after 30s"
up=0
for _ in $(seq 100); do   # 10 s
  kill -0 "$NGINX_PID" 2>/dev/null || setup_fail "nginx exited at startup"
  if (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || setup_fail "nginx not listening on 127.0.0.1:$TLS_PORT after 10s"

# --- 4. Checks, all through nginx over HTTPS with our CA and name.
AUTH=(-H "Authorization: Bearer $SCIM_SYNC_SCIM_TOKEN")
# c OUT-PREFIX [curl args...]: body in OUT.body, headers in OUT.hdr, stderr (-v) in OUT.err,
# status code (000 when no answer) printed; curl's exit code in OUT.rc.
c() {
  local out="$WORK/$1"; shift
  local rc=0 code
  code=$(curl -sS -v --max-time 10 --connect-timeout 5 --cacert "$CERT" \
    --resolve "$NAME:$TLS_PORT:127.0.0.1" -o "$out.body" -D "$out.hdr" -w '%{http_code}' "$@" \
    2>"$out.err") || rc=$?
  echo "$rc" >"$out.rc"
  echo "${code:-000}"
}

# Create a user.
USER_JSON='{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"tls.check@example.test","name":{"givenName":"Tls","familyName":"Check"},"emails":[{"value":"tls.check@example.test","type":"work","primary":true}],"active":true}'
code=$(c create -X POST "${AUTH[@]}" -H 'Content-Type: application/scim+json' \
  --data "$USER_JSON" "$BASE/scim/v2/Users")
PREFIX="$BASE/scim/v2/Users/"
loc=$(tr -d '\r' <"$WORK/create.hdr" | awk 'tolower($1) == "location:" {print $2}' | tail -n 1)
metaloc=$(grep -o '"location":"[^"]*"' "$WORK/create.body" | head -n 1 | sed 's/^"location":"//; s/"$//' || true)
if [ "$code" = 201 ]; then pass "POST /Users over HTTPS: 201"
else fail "POST /Users over HTTPS" "status $code (curl rc $(cat "$WORK/create.rc")): $(head -c 300 "$WORK/create.body" 2>/dev/null)"; fi
case "$loc" in
  "$PREFIX"?*) pass "Location header is https: $loc" ;;
  *) fail "Location header is https" "got '${loc:-<none>}', want $PREFIX…" ;;
esac
case "$metaloc" in
  "$PREFIX"?*) pass "meta.location is https: $metaloc" ;;
  *) fail "meta.location is https" "got '${metaloc:-<none>}', want $PREFIX…" ;;
esac

# Filter with an encoded filter, in the two spellings IdPs use; the request line must reach
# scim-sync unchanged.
filter_check() { # LABEL QUERY
  local code total
  code=$(c "filter-$1" "${AUTH[@]}" "$BASE/scim/v2/Users?$2")
  total=$(grep -o '"totalResults": *[0-9]*' "$WORK/filter-$1.body" | grep -o '[0-9]*$' || true)
  if [ "$code" = 200 ] && [ "$total" = 1 ]; then pass "GET /Users?$2: 200, totalResults 1"
  else fail "GET /Users?$2" "status $code, totalResults '${total:-<none>}': $(head -c 300 "$WORK/filter-$1.body" 2>/dev/null)"; fi
}
filter_check plus 'filter=userName+eq+%22tls.check%40example.test%22'
filter_check pct 'filter=userName%20eq%20%22tls.check%40example.test%22'

# No token: 401.
code=$(c noauth "$BASE/scim/v2/Users?count=1")
if [ "$code" = 401 ]; then pass "GET /Users without a token: 401"
else fail "GET /Users without a token" "status $code, want 401"; fi

# TLS 1.1 refused by the server. The client is allowed TLS 1.1 (OpenSSL 3 only offers it at
# security level 0), so the failure must be an alert from nginx, not the client declining.
code=$(c tls11 --tlsv1.1 --tls-max 1.1 --ciphers 'DEFAULT:@SECLEVEL=0' "${AUTH[@]}" "$BASE/scim/v2/Users?count=1")
rc=$(cat "$WORK/tls11.rc")
why=$(grep -E '^curl: \(' "$WORK/tls11.err" | tail -n 1 | sed 's/^curl: //' || true)
if [ "$rc" != 0 ] && grep -qiE '^curl: .*alert' "$WORK/tls11.err"; then
  pass "TLS 1.1 refused by the server (${why##*:})"
elif [ "$rc" != 0 ]; then
  fail "TLS 1.1 refused by the server" "curl failed without an alert from the server: ${why:-rc $rc}"
else
  fail "TLS 1.1 refused by the server" "TLS 1.1 handshake succeeded, status $code"
fi

# TLS 1.2 (with the documented cipher list) and the client default (TLS 1.3) work.
code=$(c tls12 --tlsv1.2 --tls-max 1.2 "${AUTH[@]}" "$BASE/scim/v2/Users?count=1")
proto=$(grep -o 'SSL connection using [^ ]* / [^ ]*' "$WORK/tls12.err" | head -n 1 || true)
if [ "$code" = 200 ] && grep -q 'SSL connection using TLSv1.2' "$WORK/tls12.err"; then
  pass "TLS 1.2: 200 (${proto#SSL connection using })"
else fail "TLS 1.2" "status $code, ${proto:-no handshake}"; fi
code=$(c tls13 "${AUTH[@]}" "$BASE/scim/v2/ServiceProviderConfig")
proto=$(grep -o 'SSL connection using [^ ]* / [^ ]*' "$WORK/tls13.err" | head -n 1 || true)
if [ "$code" = 200 ] && grep -q 'SSL connection using TLSv1.3' "$WORK/tls13.err"; then
  pass "TLS 1.3 (client default): 200 (${proto#SSL connection using })"
else fail "TLS 1.3 (client default)" "status $code, ${proto:-no handshake}"; fi

# The admin API is not published: 404 from nginx for each admin path, even with the admin token.
for path in /admin/status /healthz /readyz /metrics; do
  code=$(c admin -H "Authorization: Bearer $SCIM_SYNC_ADMIN_TOKEN" "$BASE$path")
  if [ "$code" = 404 ]; then pass "GET $path through the proxy: 404"
  else fail "GET $path through the proxy" "status $code, want 404"; fi
done

if ! kill -0 "$SERVER_PID" 2>/dev/null; then fail "scim-sync still running after the checks"; fi
if ! kill -0 "$NGINX_PID" 2>/dev/null; then fail "nginx still running after the checks"; fi
[ "$FAILED" -eq 0 ]
