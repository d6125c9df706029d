# Sourced by demo.sh and bench_reader.sh: a private MariaDB (own datadir under $WORK, free
# loopback port, binlog ROW / FULL image / FULL metadata) that never touches a system one.
# Needs: $PY (a python for free_port). Call work_dir first.

# work_dir NAME KEEP: makes $WORK (a temp dir) and PIDS; on exit kills every PID in PIDS
# and removes $WORK unless KEEP is 1.
work_dir() {
  WORK="$(mktemp -d "/tmp/sameday-$1.XXXXXX")"
  PIDS=()
  KEEP_WORK="${2:-0}"
  trap cleanup_work EXIT
}

cleanup_work() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$KEEP_WORK" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_mariadb [extra mariadbd args...]: sets PORT and SQL (a mariadb client command array).
start_mariadb() {
  PORT="$(free_port)"
  mariadb-install-db --no-defaults --datadir="$WORK/db" --user=root --auth-root-authentication-method=normal \
    --skip-test-db >"$WORK/install.log" 2>&1
  /usr/sbin/mariadbd --no-defaults --user=root --datadir="$WORK/db" --socket="$WORK/mysql.sock" \
    --port="$PORT" --bind-address=127.0.0.1 --pid-file="$WORK/mysql.pid" \
    --log-bin="$WORK/db/mysql-bin" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --server-id=1 --log-error="$WORK/mysql.err" --skip-name-resolve "$@" &
  PIDS+=($!)
  SQL=(mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PORT" -uroot)
  for _ in $(seq 1 120); do "${SQL[@]}" -e 'SELECT 1' >/dev/null 2>&1 && return 0; sleep 0.25; done
  cat "$WORK/mysql.err" >&2
  return 1
}

# start_emulator VAR COMMAND...: runs an emulator wrapper (it prints `LISTENING <port>`),
# waits for it and sets VAR to its http://127.0.0.1:PORT endpoint.
start_emulator() {
  local var="$1" name
  shift
  name="$(basename "$2" | cut -d. -f1)"
  "$@" --port 0 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 200); do grep -q LISTENING "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  local port
  port="$(awk '/LISTENING/{print $2}' "$WORK/$name.out")"
  [ -n "$port" ] || { cat "$WORK/$name.err" >&2; return 1; }
  printf -v "$var" 'http://127.0.0.1:%s' "$port"
}
