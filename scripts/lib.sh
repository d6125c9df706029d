# Sourced by demo.sh and bench_reader.sh: a work dir that is cleaned up on exit, and the
# local stack (MariaDB + AWS emulators, `sameday-stack` from crates/testkit) started in it.
# Needs: $STACK_BIN (the built sameday-stack binary). Call work_dir first.

# work_dir NAME KEEP: makes $WORK (a temp dir) and PIDS; on exit kills every PID in PIDS,
# stops the stack and removes $WORK unless KEEP is 1.
work_dir() {
  WORK="$(mktemp -d "/tmp/sameday-$1.XXXXXX")"
  PIDS=()
  KEEP_WORK="${2:-0}"
  trap cleanup_work EXIT
}

cleanup_work() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${STACK_DIR:-}" ]; then "$STACK_BIN" down --dir "$STACK_DIR" 2>>"$WORK/stack.log" || true; fi
  if [ "$KEEP_WORK" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

# stack_up [sameday-stack up options...]: starts the stack in $STACK_DIR ($WORK/stack),
# exports its environment (AWS_ENDPOINT_URL_*, credentials, SAMEDAY_MYSQL_URL, ...) and
# sets PORT (MariaDB's) and SQL (a mariadb client command array).
stack_up() {
  STACK_DIR="$WORK/stack"
  local exports
  exports="$("$STACK_BIN" up --dir "$STACK_DIR" "$@" 2>>"$WORK/stack.log")" || { cat "$WORK/stack.log" >&2; return 1; }
  eval "$exports"
  PORT="${SAMEDAY_MYSQL_PORT:-}"
  SQL=(mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot)
}
