#!/usr/bin/env bash
# Reader benchmark: generates a binlog of >= 1,000,000 row changes on a PRIVATE MariaDB
# (temp datadir, loopback, free port; the system server is never touched) and measures,
# on the same binlog range, in the same run:
#   sameday replay from the server  --sink null       (decode + JSON change records, discarded)
#   sameday replay from the server  --sink stdout     (same, written to /dev/null)
#   sameday replay --binlog-file    --sink null       (decode from a local copy, no network)
#   mariadb-binlog --read-from-remote-server --base64-output=decode-rows -v   (the C decoder)
#   mariadb-binlog --read-from-remote-server --raw                            (transfer only)
#   python mysql-replication, json.dumps per row (first BENCH_PY_ROWS rows only; it is slow)
# Each is run BENCH_RUNS times under /usr/bin/time -v; the medians are reported (wall s,
# CPU s = user+sys of the client process, peak RSS). Server-side CPU is not counted.
#
#   bash scripts/bench_reader.sh
#   env: BENCH_ROWS (1000000), BENCH_CHUNK (50000), BENCH_UPDATES (0: rows also UPDATEd),
#        BENCH_RUNS (3), BENCH_PY_ROWS (100000; 0 = all; N = only the first N rows, rounded up to a chunk), BENCH_PROFILE (1: perf profile
#        of the file replay), BENCH_OUT (target/bench-reader), BENCH_KEEP (0)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ROWS="${BENCH_ROWS:-1000000}"
CHUNK="${BENCH_CHUNK:-50000}"
UPDATES="${BENCH_UPDATES:-0}"
RUNS="${BENCH_RUNS:-3}"
PY_ROWS="${BENCH_PY_ROWS:-100000}"
PROFILE="${BENCH_PROFILE:-1}"
OUT="${BENCH_OUT:-$REPO/target/bench-reader}"
PYMYSQLREPL_VERSION=1.0.17

say() { printf 'bench: %s\n' "$*" >&2; }

bash scripts/prereqs.sh
if [ ! -x /usr/bin/time ]; then
  say "installing GNU time"
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends time >/dev/null
fi
say "building sameday and sameday-stack (release)"
cargo build --release --locked -p sameday 2>&1 | tail -1 >&2
cargo build --release --locked -p sameday-testkit --bin sameday-stack 2>&1 | tail -1 >&2
BIN="$REPO/target/release/sameday"
STACK_BIN="$REPO/target/release/sameday-stack"
PY="${SAMEDAY_CACHE:-$REPO/.cache}/venv/bin/python"
if ! "$PY" -c 'import pymysqlreplication' 2>/dev/null; then
  say "installing mysql-replication==$PYMYSQLREPL_VERSION into .cache/venv"
  "$(dirname "$PY")/pip" install -q "mysql-replication==$PYMYSQLREPL_VERSION"
fi

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
work_dir bench "${BENCH_KEEP:-0}"
mkdir -p "$OUT" "$WORK/t" "$WORK/raw"

# ------------------------------------------------------------------ private MariaDB
# The local stack's MariaDB only (scripts/stack.sh), in $WORK/stack.
stack_up --only mariadb --mariadb-arg=--max-binlog-size=1G --mariadb-arg=--innodb-buffer-pool-size=256M \
  --mariadb-arg=--innodb-log-file-size=256M --mariadb-arg=--innodb-flush-log-at-trx-commit=0 --mariadb-arg=--sync-binlog=0
DATADIR="$STACK_DIR/mariadb/data"
VERSION="$("${SQL[@]}" -N -e 'SELECT VERSION()')"
say "MariaDB $VERSION on 127.0.0.1:$PORT (datadir $DATADIR)"

# ------------------------------------------------------------------ the binlog
"${SQL[@]}" -e "CREATE DATABASE bench; CREATE TABLE bench.schedule (
  id BIGINT UNSIGNED PRIMARY KEY, user_id INT NOT NULL, due_at DATETIME(3) NOT NULL,
  name VARCHAR(64) NOT NULL, action ENUM('email','push','sms') NOT NULL,
  amount DECIMAL(12,2), payload JSON)"
master() { "${SQL[@]}" -N -e 'SHOW MASTER STATUS' | awk '{print $1" "$2}'; }
read -r FILE START < <(master)
say "generating $ROWS inserts in chunks of $CHUNK rows (+ $UPDATES updates) from $FILE:$START"
GEN_T0=$(date +%s.%N)
POS_PY=""
POS_PROF=""
done_rows=0
lo=1
while [ "$lo" -le "$ROWS" ]; do
  hi=$((lo + CHUNK - 1)); [ "$hi" -gt "$ROWS" ] && hi=$ROWS
  "${SQL[@]}" bench -e "INSERT INTO schedule
    SELECT seq, seq % 100003, TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000) * 1000 MICROSECOND,
           CONCAT('job-', seq, '-', LEFT(MD5(seq), 16)), ELT(1 + seq % 3, 'email', 'push', 'sms'),
           (seq % 1000000) / 100,
           CONCAT('{\"template\":\"reminder\",\"user\":', seq % 100003, ',\"locale\":\"en-US\",\"ref\":\"', MD5(seq), '\"}')
    FROM seq_${lo}_to_${hi}"
  done_rows=$hi
  if [ -z "$POS_PY" ] && [ "$PY_ROWS" -gt 0 ] && [ "$done_rows" -ge "$PY_ROWS" ]; then
    read -r _ POS_PY < <(master); PY_ROWS=$done_rows
  fi
  if [ -z "$POS_PROF" ] && [ "$done_rows" -ge 100000 ]; then read -r _ POS_PROF < <(master); PROF_ROWS=$done_rows; fi
  lo=$((hi + 1))
done
if [ "$UPDATES" -gt 0 ]; then
  lo=1
  while [ "$lo" -le "$UPDATES" ]; do
    hi=$((lo + CHUNK - 1)); [ "$hi" -gt "$UPDATES" ] && hi=$UPDATES
    "${SQL[@]}" bench -e "UPDATE schedule SET due_at = due_at + INTERVAL 30 MINUTE, amount = amount + 1 WHERE id BETWEEN $lo AND $hi"
    lo=$((hi + 1))
  done
fi
read -r FILE_END END < <(master)
GEN_S=$(echo "$(date +%s.%N) - $GEN_T0" | bc)
[ "$FILE_END" = "$FILE" ] || { say "binlog rotated ($FILE -> $FILE_END); raise --max-binlog-size"; exit 1; }
TOTAL=$((ROWS + UPDATES))
[ -n "$POS_PY" ] || { POS_PY=$END; PY_ROWS=$TOTAL; }
[ -n "$POS_PROF" ] || { POS_PROF=$END; PROF_ROWS=$TOTAL; }
BINLOG_MB=$(echo "scale=1; ($END - $START) / 1048576" | bc)
say "binlog $FILE:$START..$END ($BINLOG_MB MiB, $TOTAL row changes) in ${GEN_S}s; python range ..$POS_PY ($PY_ROWS rows)"
cp "$DATADIR/$FILE" "$WORK/$FILE"

# ------------------------------------------------------------------ measurements
# timed NAME RUN CMD... : runs CMD under /usr/bin/time -v; stdout to /dev/null (to TIMED_OUT if set).
timed() {
  local name=$1 i=$2; shift 2
  /usr/bin/time -v -o "$WORK/t/$name.$i.time" "$@" >"${TIMED_OUT:-/dev/null}" 2>"$WORK/t/$name.$i.err" || {
    say "$name run $i failed:"; tail -20 "$WORK/t/$name.$i.err" >&2; exit 1; }
}
delivered() { grep -o '"delivered":[0-9]*\|delivered=[0-9]*' "$1" | tail -1 | grep -o '[0-9]*$'; }
check_delivered() {
  local got; got="$(delivered "$WORK/t/$1.$2.err" || true)"
  [ "$got" = "$3" ] || { say "$1 run $2 delivered '${got}' != $3"; tail -5 "$WORK/t/$1.$2.err" >&2; exit 1; }
}
export RUST_LOG=info
SRC="mysql://root@127.0.0.1:$PORT"
for i in $(seq 1 "$RUNS"); do
  say "run $i/$RUNS"
  timed sameday_server_null "$i" "$BIN" replay --source "$SRC" --from "$FILE:$START" --to "$FILE:$END" --sink null --tables 'bench.*'
  timed sameday_server_stdout "$i" "$BIN" replay --source "$SRC" --from "$FILE:$START" --to "$FILE:$END" --sink stdout --tables 'bench.*'
  timed sameday_file_null "$i" "$BIN" replay --binlog-file "$WORK/$FILE" --from "$START" --to "$END" --sink null --tables 'bench.*'
  check_delivered sameday_file_null "$i" "$TOTAL"
  timed mariadb_binlog_decode "$i" mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=root \
    --base64-output=decode-rows -v --start-position="$START" --stop-position="$END" "$FILE"
  rm -rf "$WORK/raw"; mkdir -p "$WORK/raw"
  timed mariadb_binlog_raw "$i" mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=root \
    --raw --start-position="$START" --stop-position="$END" --result-file="$WORK/raw/" "$FILE"
  TIMED_OUT="$WORK/t/python.out" timed python_mysql_replication "$i" "$PY" scripts/bench_reader_py.py 127.0.0.1 "$PORT" "$FILE" "$START" "$POS_PY"
  got="$(head -1 "$WORK/t/python.out")"
  [ "$got" = "$PY_ROWS" ] || { say "python read $got rows, expected $PY_ROWS"; exit 1; }
done
# sanity (untimed). The server replay logs no "replay finished ... delivered N" (only the
# --binlog-file path does), so its count is checked with --dry-run and by counting stdout lines.
dry=$("$BIN" replay --source "$SRC" --from "$FILE:$START" --to "$FILE:$END" --dry-run --tables 'bench.*' 2>/dev/null | awk '{n+=$NF} END{print n+0}')
[ "$dry" = "$TOTAL" ] || { say "server replay --dry-run counted $dry, expected $TOTAL"; exit 1; }
lines=$("$BIN" replay --source "$SRC" --from "$FILE:$START" --to "$FILE:$END" --sink stdout --tables 'bench.*' 2>/dev/null | wc -l)
[ "$lines" = "$TOTAL" ] || { say "server replay --sink stdout printed $lines records, expected $TOTAL"; exit 1; }
say "checked: server replay emits $TOTAL records (dry-run and stdout line count)"
# sanity (untimed): the C decoder printed one '### INSERT/UPDATE' per row change; raw got the bytes
c_rows=$(mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=root \
  --base64-output=decode-rows -v --start-position="$START" --stop-position="$END" "$FILE" | grep -c '^### \(INSERT\|UPDATE\|DELETE\)' || true)
[ "$c_rows" = "$TOTAL" ] || say "WARNING: mariadb-binlog printed $c_rows row changes, expected $TOTAL"
say "raw transfer wrote $(stat -c %s "$WORK/raw/$FILE") bytes (range is $((END - START)))"
"$BIN" replay --binlog-file "$WORK/$FILE" --from "$START" --to "$END" --sink stdout --tables 'bench.*' 2>/dev/null | head -1 >"$OUT/sample_record.json" || true

# ------------------------------------------------------------------ table
"$PY" - "$WORK/t" "$RUNS" "$TOTAL" "$PY_ROWS" "$VERSION" "$FILE" "$START" "$END" "$GEN_S" >"$OUT/results.md" <<'PYEOF'
import re, statistics, sys, os
tdir, runs, total, py_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
version, f, start, end, gen_s = sys.argv[5:10]
def parse(p):
    t = open(p).read()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    el = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1).split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(el)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    return wall, user + sys_, rss
tools = [("sameday replay (server) --sink null", "sameday_server_null", total),
         ("sameday replay (server) --sink stdout >/dev/null", "sameday_server_stdout", total),
         ("sameday replay --binlog-file --sink null", "sameday_file_null", total),
         ("mariadb-binlog decode-rows -v (C)", "mariadb_binlog_decode", total),
         ("mariadb-binlog --raw (transfer only)", "mariadb_binlog_raw", total),
         ("python mysql-replication + json.dumps", "python_mysql_replication", py_rows)]
res = {}
print(f"MariaDB {version}; binlog {f}:{start}..{end} ({(int(end)-int(start))/1048576:.1f} MiB, {total} row changes, generated in {float(gen_s):.1f} s); {runs} runs each, medians\n")
print("| tool | rows | wall s | CPU s (user+sys) | rows/s (wall) | rows per CPU-s | CPU us/row | peak RSS MiB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for label, key, rows in tools:
    ms = [parse(os.path.join(tdir, f"{key}.{i}.time")) for i in range(1, runs + 1)]
    wall = statistics.median(m[0] for m in ms); cpu = statistics.median(m[1] for m in ms); rss = max(m[2] for m in ms)
    res[key] = (rows / wall, rows / cpu if cpu else float("inf"), rss, cpu / rows * 1e6)
    print(f"| {label} | {rows} | {wall:.2f} | {cpu:.2f} | {rows/wall:,.0f} | {rows/cpu if cpu else float('inf'):,.0f} | {cpu/rows*1e6:.2f} | {rss:.1f} |")
s = res["sameday_server_null"]; c = res["mariadb_binlog_decode"]; p = res["python_mysql_replication"]; r = res["mariadb_binlog_raw"]; fl = res["sameday_file_null"]
print()
print("| ratio | by wall rows/s | by rows per CPU-s |")
print("|---|---:|---:|")
print(f"| sameday (server, null) / C decoder | {s[0]/c[0]:.2f}x | {s[1]/c[1]:.2f}x |")
print(f"| sameday (server, null) / python | {s[0]/p[0]:.1f}x | {s[1]/p[1]:.1f}x |")
print(f"| raw transfer / sameday (server, null) | {r[0]/s[0]:.2f}x | {r[1]/s[1]:.2f}x |")
print(f"| sameday (file, null) / C decoder | {fl[0]/c[0]:.2f}x | {fl[1]/c[1]:.2f}x |")
print()
print(f"Upper bound on decode+encode+publish CPU per row (file replay CPU s / rows): {fl[3]:.2f} us")
print(f"Peak RSS of any sameday run: {max(res[k][2] for k in ('sameday_server_null','sameday_server_stdout','sameday_file_null')):.1f} MiB")
PYEOF
cat "$OUT/results.md"

# ------------------------------------------------------------------ profile (optional)
# perf with the cpu-clock software event (no hardware counters needed). Flat self-time on the
# whole range; inclusive (call graph, dwarf) shares of the key functions on the first
# 100k rows, for the server replay and the file replay.
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null 2>&1; then
  squeeze() { sed -e 's/[[:space:]]\+-[[:space:]]\+-[[:space:]]*$//' -e 's/[[:space:]]\+/ /g' | grep -v '^#\|^ *$'; }
  KEYS='encode_record|write_cell|write_json_str|decode_cell|decode_image|decode_rows|Decoder.*handle|Publisher<S,C>::(dispatch|build_batch|accept|advance|complete)|hash_one|HashMap|HashSet|_int_malloc|_int_free|malloc$|memmove|sys_futex|sys_write|sys_read|sys_recvfrom|NullSink|StdoutSink|replay_files|read_event|parse_event|RowsEvent'
  for kind in server file; do
    if [ "$kind" = server ]; then args=(--source "$SRC" --from "$FILE:$START" --to "$FILE:$END"); cg=(--source "$SRC" --from "$FILE:$START" --to "$FILE:$POS_PROF")
    else args=(--binlog-file "$WORK/$FILE" --from "$START" --to "$END"); cg=(--binlog-file "$WORK/$FILE" --from "$START" --to "$POS_PROF"); fi
    say "profiling the $kind replay (perf cpu-clock) -> $OUT/profile_$kind*.txt"
    perf record -q -e cpu-clock -F 2000 -o "$WORK/perf.flat" -- "$BIN" replay "${args[@]}" --sink null --tables 'bench.*' 2>/dev/null
    perf report -i "$WORK/perf.flat" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null | squeeze | head -40 >"$OUT/profile_${kind}_flat.txt"
    perf record -q -e cpu-clock -F 1000 --call-graph dwarf,16384 -o "$WORK/perf.cg" -- "$BIN" replay "${cg[@]}" --sink null --tables 'bench.*' 2>/dev/null
    perf report -i "$WORK/perf.cg" --children --sort symbol --percent-limit 0.5 --stdio -g none 2>/dev/null | squeeze \
      | grep -E "$KEYS" | grep -v '(inlined)' | cut -c1-160 | head -40 >"$OUT/profile_${kind}_inclusive.txt"
    echo "== $kind replay: self time, whole range"; head -25 "$OUT/profile_${kind}_flat.txt"
    echo "== $kind replay: inclusive (children, self) of key functions, first $PROF_ROWS rows"; cat "$OUT/profile_${kind}_inclusive.txt"
  done
fi
say "results in $OUT/results.md"
