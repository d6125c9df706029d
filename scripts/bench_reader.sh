#!/usr/bin/env bash
# Reader benchmark: generates binlogs on a PRIVATE MariaDB (temp datadir, loopback, free port;
# the system server is never touched), one binlog file per table (FLUSH BINARY LOGS between):
#   narrow  bench.schedule, 7 columns, BENCH_ROWS inserts (+ BENCH_UPDATES updates)
#   wide    bench.wide, 18 columns of mixed types (JSON, TEXT, DECIMAL, DATETIME(6),
#           TIMESTAMP(3), TIME(2) with negative values, SET, ENUM, VARBINARY, BIT, NULLs, ...),
#           BENCH_WIDE_ROWS inserts
#   big     one transaction of BENCH_BIG_TXN rows into bench.big (the narrow shape): peak RSS
# and measures, per table on the same binlog range, in the same run:
#   sameday replay from the server  --sink null       (decode + JSON change records, discarded)
#   sameday replay from the server  --sink stdout     (same, written to /dev/null)
#   sameday replay --binlog-file    --sink null       (decode from a local copy, no network)
#   mariadb-binlog --read-from-remote-server --base64-output=decode-rows -v   (the C decoder)
#   mariadb-binlog --read-from-remote-server --raw                            (transfer only)
#   python mysql-replication, json.dumps per row (narrow only; first BENCH_PY_ROWS rows; it is slow)
# Each is run BENCH_RUNS times under /usr/bin/time -v; the medians are reported (wall s,
# CPU s = user+sys of the client process, peak RSS). Server-side CPU is not counted. The big
# transaction is replayed by sameday only (server and file, --sink null), for its peak RSS.
# Heap allocations per row in steady state come from the counting-allocator bench
# (`cargo bench -p sameday-reader --bench decode_allocs`) on the local copies.
#
#   bash scripts/bench_reader.sh
#   env: BENCH_ROWS (1000000), BENCH_WIDE_ROWS (BENCH_ROWS; 0 = no wide table;
#        ~600 bytes of binlog per row, one 1 GiB binlog file), BENCH_BIG_TXN
#        (100000; 0 = none), BENCH_CHUNK (50000 rows per transaction), BENCH_UPDATES (0: narrow
#        rows also UPDATEd), BENCH_RUNS (3), BENCH_PY_ROWS (100000; 0 = all; N = only the first
#        N rows, rounded up to a chunk), BENCH_PROFILE (1: perf profiles of the server and file
#        replays per table), BENCH_ALLOCS (1: allocations per row), BENCH_OUT
#        ($CARGO_TARGET_DIR/bench-reader, target/bench-reader without it), BENCH_KEEP (0)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ROWS="${BENCH_ROWS:-1000000}"
WIDE_ROWS="${BENCH_WIDE_ROWS:-$ROWS}"
BIG_TXN="${BENCH_BIG_TXN:-100000}"
CHUNK="${BENCH_CHUNK:-50000}"
UPDATES="${BENCH_UPDATES:-0}"
RUNS="${BENCH_RUNS:-3}"
PY_ROWS="${BENCH_PY_ROWS:-100000}"
PROFILE="${BENCH_PROFILE:-1}"
ALLOCS="${BENCH_ALLOCS:-1}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
OUT="${BENCH_OUT:-$TARGET/bench-reader}"
PYMYSQLREPL_VERSION=1.0.17

say() { printf 'bench: %s\n' "$*" >&2; }

bash scripts/prereqs.sh
if [ ! -x /usr/bin/time ]; then
  say "installing GNU time"
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends time >/dev/null
fi
say "building sameday, sameday-stack and the allocation bench (release)"
# One invocation: testkit built on its own unifies its dependencies' features differently and
# rebuilds the AWS crates.
cargo build --release --locked -p sameday -p sameday-testkit 2>&1 | tail -1 >&2
if [ "$ALLOCS" = 1 ]; then cargo bench --no-run --locked -p sameday-reader --bench decode_allocs 2>&1 | tail -1 >&2; fi
BIN="$TARGET/release/sameday"
STACK_BIN="$TARGET/release/sameday-stack"
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

# ------------------------------------------------------------------ the binlogs
"${SQL[@]}" -e "CREATE DATABASE bench; CREATE TABLE bench.schedule (
  id BIGINT UNSIGNED PRIMARY KEY, user_id INT NOT NULL, due_at DATETIME(3) NOT NULL,
  name VARCHAR(64) NOT NULL, action ENUM('email','push','sms') NOT NULL,
  amount DECIMAL(12,2), payload JSON);
  CREATE TABLE bench.big LIKE bench.schedule;
  CREATE TABLE bench.wide (
  id BIGINT UNSIGNED PRIMARY KEY, account INT NOT NULL, qty SMALLINT NOT NULL, prio TINYINT NOT NULL,
  amount DECIMAL(20,6), score DOUBLE, created_at DATETIME(6) NOT NULL, updated_at TIMESTAMP(3) NULL DEFAULT NULL,
  due_on DATE, duration TIME(2), model_year YEAR, title VARCHAR(100) NOT NULL, body TEXT, doc JSON,
  tags SET('red','green','blue','urgent','later'), state ENUM('new','running','done','failed') NOT NULL,
  digest VARBINARY(32), mask BIT(12))"
master() { "${SQL[@]}" -N -e 'SHOW MASTER STATUS' | awk '{print $1" "$2}'; }
# The narrow table's rows lo..hi.
insert_narrow() {
  "${SQL[@]}" bench -e "INSERT INTO $1
    SELECT seq, seq % 100003, TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000) * 1000 MICROSECOND,
           CONCAT('job-', seq, '-', LEFT(MD5(seq), 16)), ELT(1 + seq % 3, 'email', 'push', 'sms'),
           (seq % 1000000) / 100,
           CONCAT('{\"template\":\"reminder\",\"user\":', seq % 100003, ',\"locale\":\"en-US\",\"ref\":\"', MD5(seq), '\"}')
    FROM seq_$2_to_$3"
}
# The wide table's rows lo..hi: text with quotes and non-ASCII (~330 bytes), JSON (~230
# bytes), negative TIME with fractions, and NULLs in six columns on some rows.
insert_wide() {
  "${SQL[@]}" bench <<SQL
INSERT INTO wide
SELECT seq, seq % 100003, seq % 30000 - 15000, seq % 200 - 100,
       IF(seq % 10 = 0, NULL, seq * 2654435761 % 100000000000 / 1000000 - 50000),
       IF(seq % 9 = 0, NULL, (seq % 100000) / 7),
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL seq % 1000000 MICROSECOND,
       IF(seq % 7 = 0, NULL, TIMESTAMP'2025-06-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000) * 1000 MICROSECOND),
       DATE'2025-01-01' + INTERVAL seq % 3650 DAY,
       IF(seq % 17 = 0, NULL, SEC_TO_TIME(seq * 7919 % 400000 - 200000 + (seq % 100) / 100)),
       1901 + seq % 255,
       CONCAT('title "', seq, '" café ', LEFT(MD5(seq), 20)),
       IF(seq % 11 = 0, NULL, CONCAT('Reminder for \'', seq, '\': ', REPEAT(CONCAT('lorem ipsum ', MD5(seq), ' '), 6), 'ünïcödé €')),
       IF(seq % 13 = 0, NULL, CONCAT('{"template":"reminder","user":', seq % 100003, ',"locale":"en-US","tags":["a","b"],"ref":"',
          MD5(seq), '","nested":{"n":', seq, ',"ok":true,"ratio":', (seq % 1000) / 8, ',"note":"', SHA1(seq), '"}}')),
       ELT(1 + seq % 4, 'red', 'red,green', 'blue,urgent', ''),
       ELT(1 + seq % 4, 'new', 'running', 'done', 'failed'),
       UNHEX(SHA2(seq, 256)),
       seq % 4096
FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_$1_to_$2) AS g
SQL
}
# new_file: a binlog file of its own for the next range; prints FILE START.
new_file() { "${SQL[@]}" -e 'FLUSH BINARY LOGS'; master; }
# check_range NAME FILE: the range did not rotate out of FILE.
check_range() {
  local f; read -r f _ < <(master)
  [ "$f" = "$2" ] || { say "$1: binlog rotated ($2 -> $f); raise --max-binlog-size or lower the rows"; exit 1; }
}
GEN_T0=$(date +%s.%N)

# narrow
read -r FILE_N START_N < <(new_file)
say "narrow: $ROWS inserts in chunks of $CHUNK rows (+ $UPDATES updates) from $FILE_N:$START_N"
POS_PY=""
POS_PROF_N=""
lo=1
while [ "$lo" -le "$ROWS" ]; do
  hi=$((lo + CHUNK - 1)); [ "$hi" -gt "$ROWS" ] && hi=$ROWS
  insert_narrow schedule "$lo" "$hi"
  if [ -z "$POS_PY" ] && [ "$PY_ROWS" -gt 0 ] && [ "$hi" -ge "$PY_ROWS" ]; then
    read -r _ POS_PY < <(master); PY_ROWS=$hi
  fi
  if [ -z "$POS_PROF_N" ] && [ "$hi" -ge 100000 ]; then read -r _ POS_PROF_N < <(master); PROF_ROWS_N=$hi; fi
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
check_range narrow "$FILE_N"
read -r _ END_N < <(master)
TOTAL_N=$((ROWS + UPDATES))
[ -n "$POS_PY" ] || { POS_PY=$END_N; PY_ROWS=$TOTAL_N; }
[ -n "$POS_PROF_N" ] || { POS_PROF_N=$END_N; PROF_ROWS_N=$TOTAL_N; }

# wide
TABLES=(narrow)
if [ "$WIDE_ROWS" -gt 0 ]; then
  TABLES+=(wide)
  read -r FILE_W START_W < <(new_file)
  say "wide: $WIDE_ROWS inserts in chunks of $CHUNK rows from $FILE_W:$START_W"
  POS_PROF_W=""
  lo=1
  while [ "$lo" -le "$WIDE_ROWS" ]; do
    hi=$((lo + CHUNK - 1)); [ "$hi" -gt "$WIDE_ROWS" ] && hi=$WIDE_ROWS
    insert_wide "$lo" "$hi"
    if [ -z "$POS_PROF_W" ] && [ "$hi" -ge 100000 ]; then read -r _ POS_PROF_W < <(master); PROF_ROWS_W=$hi; fi
    lo=$((hi + 1))
  done
  check_range wide "$FILE_W"
  read -r _ END_W < <(master)
  TOTAL_W=$WIDE_ROWS
  [ -n "$POS_PROF_W" ] || { POS_PROF_W=$END_W; PROF_ROWS_W=$TOTAL_W; }
fi

# big: one transaction
if [ "$BIG_TXN" -gt 0 ]; then
  TABLES+=(big)
  read -r FILE_B START_B < <(new_file)
  say "big: one transaction of $BIG_TXN inserts from $FILE_B:$START_B"
  insert_narrow big 1 "$BIG_TXN"
  check_range big "$FILE_B"
  read -r _ END_B < <(master)
  TOTAL_B=$BIG_TXN
fi
GEN_S=$(echo "$(date +%s.%N) - $GEN_T0" | bc)

# Per table: its file, range, row changes, `--tables` pattern and JSON columns.
range_of() {
  case $1 in
    narrow) R=("$FILE_N" "$START_N" "$END_N" "$TOTAL_N" bench.schedule bench.schedule.payload) ;;
    wide) R=("$FILE_W" "$START_W" "$END_W" "$TOTAL_W" bench.wide bench.wide.doc) ;;
    big) R=("$FILE_B" "$START_B" "$END_B" "$TOTAL_B" bench.big bench.big.payload) ;;
  esac
}
RANGES="$WORK/ranges.txt"
: >"$RANGES"
for t in "${TABLES[@]}"; do
  range_of "$t"
  cp "$DATADIR/${R[0]}" "$WORK/${R[0]}"
  echo "$t ${R[*]:0:4}" >>"$RANGES"
  say "$t: binlog ${R[0]}:${R[1]}..${R[2]} ($(echo "scale=1; (${R[2]} - ${R[1]}) / 1048576" | bc) MiB, ${R[3]} row changes)"
done
say "generated in ${GEN_S}s; python range $FILE_N:$START_N..$POS_PY ($PY_ROWS rows)"

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
C_DECODER=(mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=root)
export RUST_LOG=info
SRC="mysql://root@127.0.0.1:$PORT"
for i in $(seq 1 "$RUNS"); do
  say "run $i/$RUNS"
  for t in "${TABLES[@]}"; do
    range_of "$t"
    f=${R[0]} s=${R[1]} e=${R[2]} n=${R[3]}
    timed "sameday_server_null.$t" "$i" "$BIN" replay --source "$SRC" --from "$f:$s" --to "$f:$e" --sink null --tables "${R[4]}"
    timed "sameday_file_null.$t" "$i" "$BIN" replay --binlog-file "$WORK/$f" --from "$s" --to "$e" --sink null --tables "${R[4]}"
    check_delivered "sameday_file_null.$t" "$i" "$n"
    [ "$t" = big ] && continue
    timed "sameday_server_stdout.$t" "$i" "$BIN" replay --source "$SRC" --from "$f:$s" --to "$f:$e" --sink stdout --tables "${R[4]}"
    timed "mariadb_binlog_decode.$t" "$i" "${C_DECODER[@]}" --base64-output=decode-rows -v --start-position="$s" --stop-position="$e" "$f"
    rm -rf "$WORK/raw/$t"; mkdir -p "$WORK/raw/$t"
    timed "mariadb_binlog_raw.$t" "$i" "${C_DECODER[@]}" --raw --start-position="$s" --stop-position="$e" --result-file="$WORK/raw/$t/" "$f"
  done
  TIMED_OUT="$WORK/t/python.out" timed python_mysql_replication.narrow "$i" "$PY" scripts/bench_reader_py.py 127.0.0.1 "$PORT" "$FILE_N" "$START_N" "$POS_PY"
  got="$(head -1 "$WORK/t/python.out")"
  [ "$got" = "$PY_ROWS" ] || { say "python read $got rows, expected $PY_ROWS"; exit 1; }
done
# sanity (untimed). The server replay logs no "replay finished ... delivered N" (only the
# --binlog-file path does), so its count is checked with --dry-run and by counting stdout lines;
# the C decoder printed one '### INSERT/UPDATE' per row change; raw got the bytes.
for t in "${TABLES[@]}"; do
  range_of "$t"
  f=${R[0]} s=${R[1]} e=${R[2]} n=${R[3]}
  dry=$("$BIN" replay --source "$SRC" --from "$f:$s" --to "$f:$e" --dry-run --tables "${R[4]}" 2>/dev/null | awk '{n+=$NF} END{print n+0}')
  [ "$dry" = "$n" ] || { say "$t: server replay --dry-run counted $dry, expected $n"; exit 1; }
  lines=$("$BIN" replay --source "$SRC" --from "$f:$s" --to "$f:$e" --sink stdout --tables "${R[4]}" 2>/dev/null | wc -l)
  [ "$lines" = "$n" ] || { say "$t: server replay --sink stdout printed $lines records, expected $n"; exit 1; }
  say "$t: checked, the server replay emits $n records (dry-run and stdout line count)"
  "$BIN" replay --source "$SRC" --from "$f:$s" --to "$f:$e" --sink stdout --tables "${R[4]}" 2>/dev/null | head -1 >"$OUT/sample_record_$t.json" || true
  [ "$t" = big ] && continue
  c_rows=$("${C_DECODER[@]}" --base64-output=decode-rows -v --start-position="$s" --stop-position="$e" "$f" | grep -c '^### \(INSERT\|UPDATE\|DELETE\)' || true)
  [ "$c_rows" = "$n" ] || say "WARNING: $t: mariadb-binlog printed $c_rows row changes, expected $n"
  say "$t: raw transfer wrote $(stat -c %s "$WORK/raw/$t/$f") bytes (range is $((e - s)))"
done

# ------------------------------------------------------------------ allocations per row
# The counting-allocator bench on the local copies, with the JSON columns the server names.
if [ "$ALLOCS" = 1 ]; then
  for t in "${TABLES[@]}"; do
    [ "$t" = big ] && continue
    range_of "$t"
    say "$t: heap allocations per row (decode_allocs)"
    BENCH_BINLOG_FILE="$WORK/${R[0]}" BENCH_FROM="${R[1]}" BENCH_TO="${R[2]}" BENCH_TABLES="${R[4]}" BENCH_JSON_COLUMNS="${R[5]}" \
      RUST_LOG=warn cargo bench --locked -q -p sameday-reader --bench decode_allocs 2>"$WORK/t/allocs.$t.err" | tee "$WORK/t/allocs.$t.out" >&2 || {
      say "decode_allocs failed on $t:"; tail -20 "$WORK/t/allocs.$t.err" >&2; exit 1; }
  done
fi

# ------------------------------------------------------------------ tables
"$PY" - "$WORK/t" "$RUNS" "$PY_ROWS" "$VERSION" "$GEN_S" "$RANGES" >"$OUT/results.md" <<'PYEOF'
import re, statistics, sys, os
tdir, runs, py_rows, version, gen_s, ranges = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6]
ranges = {l.split()[0]: l.split()[1:] for l in open(ranges) if l.strip()}
def parse(p):
    t = open(p).read()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    el = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1).split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(el)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    return wall, user + sys_, rss
def measure(key, rows):
    ms = [parse(os.path.join(tdir, f"{key}.{i}.time")) for i in range(1, runs + 1)]
    wall = statistics.median(m[0] for m in ms); cpu = statistics.median(m[1] for m in ms); rss = max(m[2] for m in ms)
    return dict(rows=rows, wall=wall, cpu=cpu, rss=rss, per_wall=rows / wall, per_cpu=rows / cpu if cpu else float("inf"))
def allocs(table):
    p = os.path.join(tdir, f"allocs.{table}.out")
    if not os.path.exists(p):
        return None
    line = [l for l in open(p) if l.startswith("summary ")]
    return dict(kv.split("=") for kv in line[-1].split()[1:]) if line else None
TOOLS = [("sameday replay (server) --sink null", "sameday_server_null"),
         ("sameday replay (server) --sink stdout >/dev/null", "sameday_server_stdout"),
         ("sameday replay --binlog-file --sink null", "sameday_file_null"),
         ("mariadb-binlog decode-rows -v (C)", "mariadb_binlog_decode"),
         ("mariadb-binlog --raw (transfer only)", "mariadb_binlog_raw"),
         ("python mysql-replication + json.dumps", "python_mysql_replication")]
GOALS = {"narrow": 1.0, "wide": 1.6}
SHAPE = {"narrow": "bench.schedule: 7 columns (BIGINT UNSIGNED PK, INT, DATETIME(3), VARCHAR(64), ENUM, DECIMAL(12,2), JSON ~100 bytes)",
         "wide": "bench.wide: 18 columns (BIGINT UNSIGNED PK, INT, SMALLINT, TINYINT, DECIMAL(20,6), DOUBLE, DATETIME(6), TIMESTAMP(3), DATE, TIME(2), YEAR, VARCHAR(100), TEXT ~330 bytes, JSON ~230 bytes, SET, ENUM, VARBINARY(32), BIT(12); NULLs in 6 columns on some rows)"}
print(f"MariaDB {version}; binlogs generated in {gen_s:.1f} s; {runs} runs each, medians (peak RSS: max)\n")
summary = []
for table in ("narrow", "wide"):
    if table not in ranges:
        continue
    f, start, end, total = ranges[table][0], int(ranges[table][1]), int(ranges[table][2]), int(ranges[table][3])
    print(f"### {table}: {SHAPE[table]}\n")
    print(f"binlog {f}:{start}..{end} ({(end - start) / 1048576:.1f} MiB, {total} row changes, {(end - start) / total:.0f} bytes per row change)\n")
    print("| tool | rows | wall s | CPU s (user+sys) | rows/s (wall) | rows per CPU-s | CPU us/row | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    res = {}
    for label, key in TOOLS:
        rows = py_rows if key.startswith("python") else total
        if not os.path.exists(os.path.join(tdir, f"{key}.{table}.1.time")):
            continue
        m = res[key] = measure(f"{key}.{table}", rows)
        print(f"| {label} | {rows} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['per_wall']:,.0f} | {m['per_cpu']:,.0f} | {m['cpu'] / rows * 1e6:.2f} | {m['rss']:.1f} |")
    s, c, r, fl = res["sameday_server_null"], res["mariadb_binlog_decode"], res["mariadb_binlog_raw"], res["sameday_file_null"]
    print()
    print("| ratio | by wall rows/s | by rows per CPU-s |")
    print("|---|---:|---:|")
    print(f"| sameday (server, null) / C decoder | {s['per_wall'] / c['per_wall']:.2f}x | {s['per_cpu'] / c['per_cpu']:.2f}x |")
    print(f"| sameday (server, stdout) / C decoder | {res['sameday_server_stdout']['per_wall'] / c['per_wall']:.2f}x | {res['sameday_server_stdout']['per_cpu'] / c['per_cpu']:.2f}x |")
    print(f"| sameday (file, null) / C decoder | {fl['per_wall'] / c['per_wall']:.2f}x | {fl['per_cpu'] / c['per_cpu']:.2f}x |")
    if "python_mysql_replication" in res:
        p = res["python_mysql_replication"]
        print(f"| sameday (server, null) / python | {s['per_wall'] / p['per_wall']:.1f}x | {s['per_cpu'] / p['per_cpu']:.1f}x |")
    print(f"| raw transfer / sameday (server, null) | {r['per_wall'] / s['per_wall']:.2f}x | {r['per_cpu'] / s['per_cpu']:.2f}x |")
    print()
    print(f"Upper bound on decode+encode+publish CPU per row (file replay CPU s / rows): {fl['cpu'] / total * 1e6:.2f} us")
    a = allocs(table)
    if a:
        print(f"Heap allocations per row, steady state (counting allocator, `decode_allocs`): decode + encode "
              f"{a['decode_allocs_per_row']} ({a['decode_bytes_per_row']} bytes); whole replay --sink null "
              f"{a['pipeline_allocs_per_row']} ({a['pipeline_bytes_per_row']} bytes)")
    print()
    ratio = s["per_cpu"] / c["per_cpu"]
    goal = GOALS[table]
    summary.append((f"{table}: sameday (server, null) / C decoder by CPU >= {goal}x", f"{ratio:.2f}x (wall {s['per_wall'] / c['per_wall']:.2f}x)", "met" if ratio >= goal else "not met"))
    if a:
        summary.append((f"{table}: heap allocations per row, steady state = 0", f"decode + encode {a['decode_allocs_per_row']}, whole replay {a['pipeline_allocs_per_row']}", "met" if float(a["pipeline_allocs_per_row"]) < 0.005 else "not met"))
if "big" in ranges:
    f, start, end, total = ranges["big"][0], int(ranges["big"][1]), int(ranges["big"][2]), int(ranges["big"][3])
    print(f"### one transaction of {total} rows (bench.big, the narrow shape): binlog {f}:{start}..{end} ({(end - start) / 1048576:.1f} MiB)\n")
    print("| tool | wall s | CPU s | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    rss = 0.0
    for label, key in TOOLS[:3]:
        if os.path.exists(os.path.join(tdir, f"{key}.big.1.time")):
            m = measure(f"{key}.big", total)
            rss = max(rss, m["rss"])
            print(f"| {label} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['rss']:.1f} |")
    print()
    summary.append((f"peak RSS < 100 MiB with a {total}-row transaction", f"{rss:.1f} MiB", "met" if rss < 100 else "not met"))
allrss = [parse(os.path.join(tdir, n))[2] for n in os.listdir(tdir) if n.startswith("sameday_") and n.endswith(".time")]
print(f"Peak RSS of any sameday run: {max(allrss):.1f} MiB\n")
print("| goal (issue 12) | measured | |")
print("|---|---|---|")
for g in summary:
    print(f"| {g[0]} | {g[1]} | {g[2]} |")
PYEOF
cat "$OUT/results.md"

# ------------------------------------------------------------------ profile (optional)
# perf with the cpu-clock software event (no hardware counters needed). Flat self-time on the
# whole range; inclusive (call graph, dwarf) shares of the key functions on the first
# 100k rows, for the server replay and the file replay, per table.
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null 2>&1; then
  squeeze() { sed -e 's/[[:space:]]\+-[[:space:]]\+-[[:space:]]*$//' -e 's/[[:space:]]\+/ /g' | grep -v '^#\|^ *$'; }
  KEYS='encode_record|write_cell|write_json_str|decode_cell|decode_image|decode_rows|Decoder.*handle|Publisher<S,C>::(dispatch|build_batch|accept|advance|complete)|hash_one|HashMap|HashSet|_int_malloc|_int_free|malloc$|memmove|sys_futex|sys_write|sys_read|sys_recvfrom|NullSink|StdoutSink|replay_files|read_event|parse_event|RowsEvent'
  for t in "${TABLES[@]}"; do
    [ "$t" = big ] && continue
    range_of "$t"
    f=${R[0]} s=${R[1]} e=${R[2]}
    if [ "$t" = narrow ]; then prof=$POS_PROF_N prof_rows=$PROF_ROWS_N; else prof=$POS_PROF_W prof_rows=$PROF_ROWS_W; fi
    for kind in server file; do
      if [ "$kind" = server ]; then args=(--source "$SRC" --from "$f:$s" --to "$f:$e"); cg=(--source "$SRC" --from "$f:$s" --to "$f:$prof")
      else args=(--binlog-file "$WORK/$f" --from "$s" --to "$e"); cg=(--binlog-file "$WORK/$f" --from "$s" --to "$prof"); fi
      say "profiling the $kind replay of $t (perf cpu-clock) -> $OUT/profile_${t}_$kind*.txt"
      perf record -q -e cpu-clock -F 2000 -o "$WORK/perf.flat" -- "$BIN" replay "${args[@]}" --sink null --tables "${R[4]}" 2>/dev/null
      perf report -i "$WORK/perf.flat" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null | squeeze | head -40 >"$OUT/profile_${t}_${kind}_flat.txt"
      perf record -q -e cpu-clock -F 1000 --call-graph dwarf,16384 -o "$WORK/perf.cg" -- "$BIN" replay "${cg[@]}" --sink null --tables "${R[4]}" 2>/dev/null
      perf report -i "$WORK/perf.cg" --children --sort symbol --percent-limit 0.5 --stdio -g none 2>/dev/null | squeeze \
        | grep -E "$KEYS" | grep -v '(inlined)' | cut -c1-160 | head -40 >"$OUT/profile_${t}_${kind}_inclusive.txt"
      echo "== $t, $kind replay: self time, whole range"; head -25 "$OUT/profile_${t}_${kind}_flat.txt"
      echo "== $t, $kind replay: inclusive (children, self) of key functions, first $prof_rows rows"; cat "$OUT/profile_${t}_${kind}_inclusive.txt"
    done
  done
fi
say "results in $OUT/results.md"
