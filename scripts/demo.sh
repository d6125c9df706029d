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

# --- AWS emulators, loopback only: kinesalite (Kinesis), fauxqs (SQS), moto (DynamoDB)
start_emulator KINESIS_URL node crates/testkit/emulators/kinesalite.js
start_emulator SQS_URL node crates/testkit/emulators/fauxqs.js
start_emulator MOTO_URL "$PY" crates/testkit/emulators/moto_server.py
export AWS_ENDPOINT_URL_KINESIS="$KINESIS_URL" AWS_ENDPOINT_URL_SQS="$SQS_URL" AWS_ENDPOINT_URL_DYNAMODB="$MOTO_URL" \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
echo "demo: kinesalite $KINESIS_URL, fauxqs $SQS_URL, moto $MOTO_URL"
"$PY" scripts/demo_aws.py create-stream sameday-demo 2
QUEUE_URL="$("$PY" scripts/demo_aws.py create-queue sameday-schedules.fifo)"
echo "demo: FIFO queue $QUEUE_URL"

# --- schema and the reader
"${SQL[@]}" -e "CREATE DATABASE app; CREATE TABLE app.schedule (
  id BIGINT UNSIGNED PRIMARY KEY, user_id INT NOT NULL, due_at DATETIME(3) NULL,
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

cat >"$WORK/consumer.toml" <<TOML
[kinesis]
stream = "sameday-demo"
[leases]
table = "sameday-demo-leases"
create_table = true
checkpoint_interval_ms = 200
[[route]]
tables = ["app.schedule"]
queues = ["sameday-schedules.fifo"]
same_day_rule = "schedule"
[[rule]]
name = "schedule"
db = "app"
table = "schedule"
key_columns = ["id"]
due_column = "due_at"
due_type = "datetime"
time_zone = "UTC"
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:sameday-demo"
[dead_letter]
path = "$WORK/consumer-dead-letters.jsonl"
[metrics]
listen = "127.0.0.1:0"
TOML
"$BIN" consumer --config "$WORK/consumer.toml" 2>"$WORK/consumer.log" &
CONSUMER=$!
PIDS+=($CONSUMER)
for _ in $(seq 1 100); do grep -q "lease taken" "$WORK/consumer.log" && break; sleep 0.1; done

echo "demo: writing rows (MariaDB runs in UTC here): 2 due today, 2 due later, then a reschedule,"
echo "      a move from today to next week, a delete"
"${SQL[@]}" app -e "
  SET time_zone = '+00:00';
  BEGIN;
  INSERT INTO schedule VALUES (1, 7, NOW(3) + INTERVAL 10 MINUTE, 'email', '{\"template\":\"welcome\"}', 12.50),
                              (2, 7, NOW(3) + INTERVAL 2 DAY, 'push', NULL, NULL),
                              (3, 8, NOW(3) + INTERVAL 30 DAY, 'sms', NULL, NULL),
                              (4, 9, NOW(3) + INTERVAL 20 MINUTE, 'push', NULL, NULL);
  COMMIT;
  UPDATE schedule SET due_at = due_at + INTERVAL 5 MINUTE WHERE id = 1;
  UPDATE schedule SET due_at = due_at + INTERVAL 7 DAY WHERE id = 4;
  DELETE FROM schedule WHERE id = 2;"

echo "demo: change records read back from Kinesis (all 7 changes):"
"$PY" scripts/demo_aws.py read-stream sameday-demo 7 || { echo "demo: reader log:"; tail -20 "$WORK/reader.log"; exit 1; }
echo "demo: messages the consumer forwarded to SQS (only those touching today's window):"
"$PY" scripts/demo_aws.py receive "$QUEUE_URL" 4 || { echo "demo: consumer log:"; tail -20 "$WORK/consumer.log"; exit 1; }
sleep 1
kill -TERM "$CONSUMER" "$READER"; wait "$CONSUMER" "$READER" || true
echo "demo: reader and consumer stopped on SIGTERM; stored checkpoints:"
"$BIN" positions --config "$WORK/reader.toml"
"$BIN" leases --config "$WORK/consumer.toml"
