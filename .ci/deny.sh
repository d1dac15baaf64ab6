#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config: deny.toml): advisories, licenses, bans, sources.
#
# Installs cargo-deny from crates.io if it is missing (a source build: about 6 minutes on a
# 2-core machine). The RustSec advisory database is a git repository outside crates.io. When it
# cannot be fetched this script FAILS, because an advisory check that did not happen must not
# look like one that passed. SCIM_SYNC_ALLOW_NO_ADVISORY_DB=1 is the explicit opt-out for a
# machine without access: it then checks against a copy fetched earlier, or with none skips the
# advisory check, and says so loudly either way; licenses, bans and sources always run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
if ! cargo deny --version >/dev/null 2>&1; then
  echo "== installing cargo-deny ${CARGO_DENY_VERSION}"
  start=$(date +%s)
  cargo install cargo-deny --locked --version "${CARGO_DENY_VERSION}"
  echo "cargo-deny installed in $(( $(date +%s) - start ))s"
fi
cargo deny --version

offline=()
checks=(advisories bans licenses sources)
allow_no_db="${SCIM_SYNC_ALLOW_NO_ADVISORY_DB:-0}"
if cargo deny fetch db >/dev/null 2>&1; then
  echo "== advisory database fetched"
elif [ "$allow_no_db" != "1" ]; then
  echo "ERROR: cannot fetch the RustSec advisory database (${CARGO_HOME:-$HOME/.cargo}/advisory-dbs)," >&2
  echo "ERROR: so advisories cannot be checked. Fix the network access to the RustSec repository," >&2
  echo "ERROR: or set SCIM_SYNC_ALLOW_NO_ADVISORY_DB=1 to go on without a fresh database." >&2
  exit 1
else
  echo "######################################################################################"
  echo "WARNING: cannot fetch the RustSec advisory database; SCIM_SYNC_ALLOW_NO_ADVISORY_DB=1."
  if compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-*/crates" >/dev/null; then
    echo "WARNING: advisories are checked against the copy fetched earlier, which may be stale."
    offline=(--offline)
  else
    echo "WARNING: no earlier copy exists: advisories are NOT checked."
    echo "WARNING: licenses, bans and sources still are."
    checks=(bans licenses sources)
  fi
  echo "######################################################################################"
fi

echo "== cargo deny check ${checks[*]}"
cargo deny --workspace "${offline[@]}" check --hide-inclusion-graph "${checks[@]}"
