#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config: deny.toml): advisories, licenses, bans, sources.
#
# Installs cargo-deny from crates.io if it is missing (a source build: about 6 minutes on a
# 2-core machine). The RustSec advisory database is a git repository outside crates.io: when it
# cannot be fetched, a copy fetched earlier is used offline, and with none at all the advisory
# check is skipped with a loud warning while licenses, bans and sources still run.
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
if cargo deny fetch db >/dev/null 2>&1; then
  echo "== advisory database fetched"
elif compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-*/crates" >/dev/null; then
  echo "WARNING: cannot fetch the RustSec advisory database; checking against the copy fetched earlier"
  offline=(--offline)
else
  echo "WARNING: cannot fetch the RustSec advisory database and no earlier copy exists:"
  echo "WARNING: advisories NOT checked (licenses, bans and sources still are)"
  checks=(bans licenses sources)
fi

echo "== cargo deny check ${checks[*]}"
cargo deny --workspace "${offline[@]}" check --hide-inclusion-graph "${checks[@]}"
