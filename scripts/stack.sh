#!/usr/bin/env bash
# The local stack for running the daemons by hand: MariaDB (own datadir, binlog ROW / FULL
# image / FULL metadata, GTID) and the AWS emulators (kinesalite: Kinesis, fauxqs: SQS,
# moto: DynamoDB, Step Functions, S3, CloudFormation) on free 127.0.0.1 ports, in the
# background. The same start code as the tests' servers (crates/testkit, `sameday-stack`).
#
#   eval "$(bash scripts/stack.sh up)"   # start what is not running, export the environment
#   bash scripts/stack.sh env            # print the `export` lines again
#   bash scripts/stack.sh status         # what runs on which port (exit 3 if not all)
#   bash scripts/stack.sh down [--purge] # stop it all; --purge also removes the datadir
#
# State, logs and the MariaDB datadir: $SAMEDAY_STACK_DIR or --dir DIR (default
# <repo>/.cache/stack). `up` installs what is missing first (scripts/prereqs.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = up ]; then
  bash "$REPO/scripts/prereqs.sh" >&2
fi
if [ ! -x "$REPO/target/debug/sameday-stack" ]; then
  echo "stack: building sameday-stack (the first build takes a few minutes)" >&2
fi
exec cargo run -q --locked --manifest-path "$REPO/Cargo.toml" -p sameday-testkit --bin sameday-stack -- "$@"
