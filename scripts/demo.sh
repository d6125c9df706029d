#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, starts a private
# MariaDB (binlog on, ROW, FULL) and the Kinesis emulator on loopback, creates the stream,
# runs the sameday reader, writes rows, and prints the change records read back from
# Kinesis. Everything it starts lives under a temp dir and is stopped at the end.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/prereqs.sh
echo "demo: building sameday (release)"
cargo build --release --locked -p sameday 2>&1 | tail -1
BIN="$REPO/target/release/sameday"
PY="$REPO/.cache/venv/bin/python"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
work_dir demo "${DEMO_KEEP:-0}"

# --- MariaDB
start_mariadb --innodb-buffer-pool-size=64M
echo "demo: MariaDB $("${SQL[@]}" -N -e 'SELECT VERSION()') on 127.0.0.1:$PORT"

# --- Kinesis emulator (kinesalite, loopback only)
node crates/testkit/emulators/kinesalite.js --port 0 >"$WORK/kinesalite.out" 2>"$WORK/kinesalite.err" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q LISTENING "$WORK/kinesalite.out" 2>/dev/null && break; sleep 0.1; done
KPORT="$(awk '/LISTENING/{print $2}' "$WORK/kinesalite.out")"
export AWS_ENDPOINT_URL_KINESIS="http://127.0.0.1:$KPORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
echo "demo: kinesalite on 127.0.0.1:$KPORT"
"$PY" scripts/demo_kinesis.py create sameday-demo 2

# --- schema and the reader
"${SQL[@]}" -e "CREATE DATABASE app; CREATE TABLE app.schedule (
  id BIGINT UNSIGNED PRIMARY KEY, user_id INT NOT NULL, due_at DATETIME(3) NOT NULL,
  action ENUM('email','push','sms') NOT NULL, payload JSON, amount DECIMAL(12,2))"
cat >"$WORK/reader.toml" <<TOML
start_position = "latest"
dead_letter_path = "$WORK/dead-letters.jsonl"
[source]
host = "127.0.0.1"
port = $PORT
user = "root"
server_id = 4242
tls = "disabled"
[filter]
include = ["app.*"]
[kinesis]
stream = "sameday-demo"
[checkpoint]
kind = "file"
path = "$WORK/checkpoint.json"
[metrics]
listen = "127.0.0.1:0"
TOML
"$BIN" check --config "$WORK/reader.toml"
"$BIN" reader --config "$WORK/reader.toml" 2>"$WORK/reader.log" &
READER=$!
PIDS+=($READER)
for _ in $(seq 1 100); do grep -q "streaming the binlog" "$WORK/reader.log" && break; sleep 0.1; done

echo "demo: writing rows (insert, update, delete in transactions)"
"${SQL[@]}" app -e "
  BEGIN;
  INSERT INTO schedule VALUES (1, 7, NOW(3) + INTERVAL 1 HOUR, 'email', '{\"template\":\"welcome\"}', 12.50),
                              (2, 7, NOW(3) + INTERVAL 1 DAY, 'push', NULL, NULL);
  COMMIT;
  UPDATE schedule SET due_at = due_at + INTERVAL 30 MINUTE WHERE id = 1;
  DELETE FROM schedule WHERE id = 2;"

echo "demo: change records read back from Kinesis:"
"$PY" scripts/demo_kinesis.py read sameday-demo 4 || { echo "demo: reader log:"; tail -20 "$WORK/reader.log"; exit 1; }
kill -TERM "$READER"; wait "$READER" || true
echo "demo: reader stopped on SIGTERM; stored checkpoint:"
"$BIN" positions --config "$WORK/reader.toml"
