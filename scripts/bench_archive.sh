#!/usr/bin/env bash
# Binlog archive benchmark: on a PRIVATE MariaDB (temp datadir, loopback, free port) and moto's
# S3, both from the local stack, generates BENCH_MB MiB of binlog in files of BENCH_FILE_MB MiB
# and measures, on the same rotated files, in the same run:
#   mariadb-binlog --read-from-remote-server --raw   (the C client, to local files)
#   sameday archive --once                           (dump + verify + SHA-256 + PutObject to moto)
# and, from the archive's log, the part before the upload (dump + verify, "read").
# Each is run BENCH_RUNS times; medians are reported as MB/s (10^6 bytes per wall second).
# The archived objects are compared with mariadb-binlog's files once (cmp), then deleted.
#
#   bash scripts/bench_archive.sh
#   env: BENCH_MB (256), BENCH_FILE_MB (32), BENCH_RUNS (3), BENCH_KEEP (0)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
MB="${BENCH_MB:-256}"
FILE_MB="${BENCH_FILE_MB:-32}"
RUNS="${BENCH_RUNS:-3}"

say() { printf 'bench: %s\n' "$*" >&2; }

bash scripts/prereqs.sh
say "building sameday and sameday-stack (release)"
cargo build --release --locked -p sameday 2>&1 | tail -1 >&2
cargo build --release --locked -p sameday-testkit --bin sameday-stack 2>&1 | tail -1 >&2
BIN="$REPO/target/release/sameday"
STACK_BIN="$REPO/target/release/sameday-stack"
PY="${SAMEDAY_CACHE:-$REPO/.cache}/venv/bin/python"

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
work_dir bench-archive "${BENCH_KEEP:-0}"
stack_up --only mariadb,moto --mariadb-arg=--max-binlog-size="${FILE_MB}M" \
  --mariadb-arg=--innodb-buffer-pool-size=256M --mariadb-arg=--innodb-flush-log-at-trx-commit=0 --mariadb-arg=--sync-binlog=0
VERSION="$("${SQL[@]}" -N -e 'SELECT VERSION()')"
say "MariaDB $VERSION on 127.0.0.1:$PORT, moto S3 at $AWS_ENDPOINT_URL_S3"

# ------------------------------------------------------------------ the binlog
"${SQL[@]}" -e "FLUSH BINARY LOGS; CREATE DATABASE bench;
  CREATE TABLE bench.t (id BIGINT PRIMARY KEY, due_at DATETIME(3), payload VARCHAR(600))"
ROWS_PER_CHUNK=20000
CHUNKS=$(( (MB * 1048576) / (ROWS_PER_CHUNK * 700) + 1 ))
say "generating about $MB MiB of binlog ($CHUNKS chunks of $ROWS_PER_CHUNK rows) in files of $FILE_MB MiB"
for c in $(seq 0 $((CHUNKS - 1))); do
  "${SQL[@]}" bench -e "INSERT INTO t SELECT $c * $ROWS_PER_CHUNK + seq, NOW(3) + INTERVAL seq SECOND,
    REPEAT(MD5(seq), 18) FROM seq_1_to_$ROWS_PER_CHUNK"
done
"${SQL[@]}" -e "FLUSH BINARY LOGS"
mapfile -t ROTATED < <("${SQL[@]}" -N -e 'SHOW BINARY LOGS' | sed '$d' | awk '$2 > 1000 {print $1}')
BYTES=$("${SQL[@]}" -N -e 'SHOW BINARY LOGS' | sed '$d' | awk '$2 > 1000 {s += $2} END {print s}')
# Small files (the ones rotated at set-up) are left out: only the generated data counts.
"${SQL[@]}" -e "PURGE BINARY LOGS TO '${ROTATED[0]}'"
say "${#ROTATED[@]} rotated files, $BYTES bytes: ${ROTATED[0]} .. ${ROTATED[-1]}"

"$PY" - <<EOF
import boto3; boto3.client("s3").create_bucket(Bucket="bench-archive")
EOF
cat >"$WORK/reader.toml" <<TOML
dead_letter_path = "$WORK/dead-letters.jsonl"
[source]
host = "127.0.0.1"
port = $PORT
user = "root"
server_id = 4242
tls = "disabled"
[kinesis]
stream = "unused-by-the-archive"
[checkpoint]
kind = "file"
path = "$WORK/checkpoint.json"
[archive]
location = "s3://bench-archive/run/"
metrics_listen = "127.0.0.1:0"
TOML

# ------------------------------------------------------------------ measurements
now() { date +%s.%N; }
mkdir -p "$WORK/t"
for i in $(seq 1 "$RUNS"); do
  say "run $i/$RUNS"
  rm -rf "$WORK/raw"; mkdir -p "$WORK/raw"
  t0=$(now)
  (cd "$WORK/raw" && mariadb-binlog --no-defaults --read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=root \
    --raw "${ROTATED[@]}")
  t1=$(now)
  RUST_LOG=info "$BIN" archive --config "$WORK/reader.toml" --once 2>"$WORK/t/archive.$i.log"
  t2=$(now)
  echo "$t0 $t1 $t2" >"$WORK/t/times.$i"
  if [ "$i" = 1 ]; then
    "$PY" - "$WORK/raw" "${ROTATED[@]}" <<'EOF'
import sys, boto3
s3 = boto3.client("s3"); d = sys.argv[1]
for f in sys.argv[2:]:
    body = s3.get_object(Bucket="bench-archive", Key="run/" + f)["Body"].read()
    assert body == open(f"{d}/{f}", "rb").read(), f"{f}: archived object != mariadb-binlog --raw"
print(f"bench: {len(sys.argv) - 2} archived objects identical to mariadb-binlog --raw", file=sys.stderr)
EOF
  fi
  "$PY" - <<'EOF'
import boto3
s3 = boto3.client("s3")
for o in s3.list_objects_v2(Bucket="bench-archive", Prefix="run/").get("Contents", []):
    s3.delete_object(Bucket="bench-archive", Key=o["Key"])
EOF
done

# ------------------------------------------------------------------ report
"$PY" - "$WORK/t" "$RUNS" "$BYTES" "${#ROTATED[@]}" "$VERSION" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, statistics, sys
d, runs, total, files, version, cpus, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
raw, arch, read = [], [], []
for i in range(1, runs + 1):
    t0, t1, t2 = map(float, open(f"{d}/times.{i}").read().split())
    raw.append(total / 1e6 / (t1 - t0)); arch.append(total / 1e6 / (t2 - t1))
    done = [json.loads(l) for l in open(f"{d}/archive.{i}.log") if '"binlog file archived"' in l]
    assert len(done) >= int(files), f"run {i}: {len(done)} files archived, expected {files}"
    read.append(sum(x["bytes"] for x in done) / 1e6 / (sum(x["read_ms"] for x in done) / 1000))
m = statistics.median
print(f"MariaDB {version}; {files} rotated files, {total / 1e6:.1f} MB; {runs} runs, medians; {cpus} CPUs, load average {load} at the end\n")
print("| what | MB/s | vs mariadb-binlog --raw |")
print("|---|---:|---:|")
print(f"| mariadb-binlog --read-from-remote-server --raw (to local files) | {m(raw):.0f} | 1.00 |")
print(f"| sameday archive --once (dump, verify, SHA-256, PutObject to moto) | {m(arch):.0f} | {m(arch) / m(raw):.2f} |")
print(f"| sameday archive, dump + verify only (its log's read_ms) | {m(read):.0f} | {m(read) / m(raw):.2f} |")
EOF
