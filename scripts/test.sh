#!/usr/bin/env bash
# Runs every test of the workspace against real MariaDB and AWS emulators (started by the
# tests themselves on free loopback ports). Installs what is missing first.
#
#   SAMEDAY_BINLOG_FIXTURES=DIR  real MySQL 8/9 and MariaDB binlog files (optional; the
#                                fixture tests say they were skipped when it is unset)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/prereqs.sh
if [ -z "${SAMEDAY_BINLOG_FIXTURES:-}" ] && [ -d "$REPO/../shared/fixtures/binlog" ]; then
  export SAMEDAY_BINLOG_FIXTURES="$(cd "$REPO/../shared/fixtures/binlog" && pwd)"
fi
echo "test: SAMEDAY_BINLOG_FIXTURES=${SAMEDAY_BINLOG_FIXTURES:-<unset>}"
# Two cores: keep test binaries from starting too many servers at once.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --all-targets --locked --no-fail-fast "$@"
