#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, starts a private
# MariaDB (binlog on, ROW, FULL) and the AWS emulators on loopback (kinesalite for Kinesis,
# fauxqs for SQS, moto for DynamoDB and Step Functions, executing state machines), creates
# the stream, the FIFO queue with its DLQ, the state machine and a schedule table with rows
# due today, tomorrow and in 30 days; runs the nightly batch; starts the reader, consumer
# and worker; simulates user activity (inserts, reschedules, a move to next week, a delete,
# a row due in 20 seconds) and prints what happened: executions started, stopped and
# succeeded, and the counts that show the batch + CDC split. MariaDB and the emulators are
# the local stack of scripts/stack.sh (`sameday-stack`), here in its own dir under a temp
# dir; everything is stopped at the end (DEMO_KEEP=1 keeps the dir).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/prereqs.sh
echo "demo: building sameday and sameday-stack (release)"
cargo build --release --locked -p sameday -p sameday-testkit --bin sameday --bin sameday-stack 2>&1 | tail -1
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sameday"
STACK_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sameday-stack"
PY="${SAMEDAY_CACHE:-$REPO/.cache}/venv/bin/python"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
work_dir demo "${DEMO_KEEP:-0}"
step() { printf '\n=== %s\n' "$*"; }

step "MariaDB and the AWS emulators (loopback only)"
stack_up
echo "MariaDB $("${SQL[@]}" -N -e 'SELECT VERSION()') on 127.0.0.1:$PORT"
echo "kinesalite $AWS_ENDPOINT_URL_KINESIS, fauxqs $AWS_ENDPOINT_URL_SQS, moto $AWS_ENDPOINT_URL_SFN (Step Functions executes state machines)"
"$PY" scripts/demo_aws.py create-stream sameday-changes 2
QUEUE_URL="$("$PY" scripts/demo_aws.py create-fifo-with-dlq sameday-schedules)"
echo "FIFO queue $QUEUE_URL (redrive to sameday-schedules-dlq.fifo after 5 receives)"
SM_ARN="$("$PY" scripts/demo_aws.py create-state-machine sameday-schedule deploy/statemachine/schedule.asl.json)"
echo "state machine $SM_ARN (Standard: Wait until \$.due, then the action)"

step "the schedule table, seeded: 200 rows spread over 30 days, 4 of them due today"
# MariaDB runs in UTC here, and so does the rule.
"${SQL[@]}" -e "CREATE DATABASE app; CREATE TABLE app.scheduled_actions (
  id BIGINT PRIMARY KEY, user_id INT NOT NULL, action VARCHAR(20) NOT NULL,
  due_at DATETIME NULL, status VARCHAR(10) NOT NULL DEFAULT 'pending', KEY (due_at))"
"${SQL[@]}" app -e "
  SET time_zone = '+00:00';
  INSERT INTO scheduled_actions (id, user_id, action, due_at)
    SELECT seq, seq % 40, ELT(1 + seq % 3, 'email', 'push', 'sms'),
           NOW() + INTERVAL (1 + seq % 30) DAY + INTERVAL seq MINUTE FROM seq_1_to_196;
  INSERT INTO scheduled_actions (id, user_id, action, due_at) VALUES
    (901, 1, 'email', NOW() + INTERVAL 20 MINUTE), (902, 2, 'push', NOW() + INTERVAL 25 MINUTE),
    (903, 3, 'sms', NOW() + INTERVAL 30 MINUTE), (904, 4, 'push', NOW() + INTERVAL 35 MINUTE);"

RULE="[[rule]]
name = \"actions\"
db = \"app\"
table = \"scheduled_actions\"
key_columns = [\"id\"]
due_column = \"due_at\"
due_type = \"datetime\"
time_zone = \"UTC\"
batch_time = \"03:30\"
overlap_minutes = 60
grace_seconds = 300
input_columns = [\"user_id\", \"action\"]
predicate = \"status = 'pending'\"
state_machine_arn = \"$SM_ARN\""
cat >"$WORK/worker.toml" <<TOML
shutdown_timeout_ms = 5000
[sqs]
queue = "$QUEUE_URL"
wait_time_seconds = 2
[nightly]
page_size = 50
[nightly.source]
host = "127.0.0.1"
port = $PORT
user = "root"
server_id = 4243
tls = "disabled"
[metrics]
listen = "127.0.0.1:0"
$RULE
TOML

step "the nightly batch: only rows due before the next run get an execution"
"$BIN" nightly --config "$WORK/worker.toml" --dry-run 2>"$WORK/nightly-dry-run.log"
"$BIN" nightly --config "$WORK/worker.toml" 2>"$WORK/nightly.log" | tee "$WORK/nightly.out"

step "reader, consumer and worker (the CDC path for changes after the batch)"
cat >"$WORK/reader.toml" <<TOML
start_position = "latest"
dead_letter_path = "$WORK/reader-dead-letters.jsonl"
[source]
host = "127.0.0.1"
port = $PORT
user = "root"
server_id = 4242
tls = "disabled"
[filter]
include = ["app.scheduled_actions"]
[kinesis]
stream = "sameday-changes"
[checkpoint]
kind = "file"
path = "$WORK/checkpoint.json"
[metrics]
listen = "127.0.0.1:0"
TOML
cat >"$WORK/consumer.toml" <<TOML
[kinesis]
stream = "sameday-changes"
[leases]
table = "sameday-demo-leases"
create_table = true
checkpoint_interval_ms = 200
[[route]]
tables = ["app.scheduled_actions"]
queues = ["$QUEUE_URL"]
same_day_rule = "actions"
[dead_letter]
path = "$WORK/consumer-dead-letters.jsonl"
[metrics]
listen = "127.0.0.1:0"
$RULE
TOML
"$BIN" check --config "$WORK/reader.toml" | tail -1
"$BIN" reader --config "$WORK/reader.toml" 2>"$WORK/reader.log" &
READER=$!
"$BIN" consumer --config "$WORK/consumer.toml" 2>"$WORK/consumer.log" &
CONSUMER=$!
"$BIN" worker --config "$WORK/worker.toml" 2>"$WORK/worker.log" &
WORKER=$!
PIDS+=("$READER" "$CONSUMER" "$WORKER")
wait_for() { for _ in $(seq 1 150); do grep -q "$2" "$1" && return 0; sleep 0.1; done; echo "no '$2' in $1"; tail -5 "$1"; return 1; }
wait_for "$WORK/reader.log" "streaming the binlog"
wait_for "$WORK/consumer.log" "lease taken"
wait_for "$WORK/worker.log" "worker ready"
echo "running: reader $READER, consumer $CONSUMER, worker $WORKER"

step "user activity after the batch"
cat <<'TXT'
  1001  new, due in 20 s           -> started now, succeeds in 20 s
  1002  new, due in 40 min         -> started
  1003  new, due tomorrow          -> nothing (tomorrow's batch)
  1004  new, due in 30 days        -> nothing
  901   rescheduled +10 min        -> old execution stopped, new one started
  902   moved to next week         -> stopped
  903   deleted                    -> stopped
  904   action changed to 'sms'    -> superseded (stopped + started with the new input)
  50    (due in days) rescheduled  -> nothing (not today before or after)
TXT
"${SQL[@]}" app -e "
  SET time_zone = '+00:00';
  INSERT INTO scheduled_actions (id, user_id, action, due_at) VALUES
    (1001, 7, 'push', NOW() + INTERVAL 20 SECOND), (1002, 7, 'email', NOW() + INTERVAL 40 MINUTE),
    (1003, 8, 'sms', NOW() + INTERVAL 1 DAY + INTERVAL 2 HOUR), (1004, 9, 'push', NOW() + INTERVAL 30 DAY);
  UPDATE scheduled_actions SET due_at = due_at + INTERVAL 10 MINUTE WHERE id = 901;
  UPDATE scheduled_actions SET due_at = due_at + INTERVAL 7 DAY WHERE id = 902;
  DELETE FROM scheduled_actions WHERE id = 903;
  UPDATE scheduled_actions SET action = 'sms' WHERE id = 904;
  UPDATE scheduled_actions SET due_at = due_at + INTERVAL 1 HOUR WHERE id = 50;"

# 9 changes; 6 touch today's window and make 8 effects: 4 starts (1001, 1002, 901, 904)
# and 4 stops (901, 902, 903, 904).
for _ in $(seq 1 300); do
  [ "$(grep -c '"effect done"' "$WORK/worker.log" || true)" -ge 8 ] && break
  sleep 0.1
done
echo "waiting 25 s for execution 1001 to reach its due time and run its action..."
sleep 25

step "Step Functions executions"
"$PY" scripts/demo_aws.py executions "$SM_ARN"

step "the batch + CDC split (from the daemons' own /metrics)"
metrics() { # LOG METRIC-PREFIX...: the daemon's /metrics lines for these metrics
  local addr
  addr="$(grep -o '"addr":"[^"]*"' "$1" | head -1 | cut -d'"' -f4)"
  shift
  curl -s "http://$addr/metrics" | grep -E "^($(IFS='|'; echo "$*"))" | grep -v '^#' | sed 's/^/  /'
}
echo "nightly batch (before the CDC daemons started):"
sed 's/^/  /' "$WORK/nightly.out"
echo "consumer: changes read, forwarded to SQS, skipped by the same-day filter:"
metrics "$WORK/consumer.log" sameday_consumer_records_total sameday_consumer_forwarded_messages_total sameday_consumer_skipped_records_total
echo "worker: Step Functions effects and changes without one:"
metrics "$WORK/worker.log" sameday_worker_effects_total sameday_worker_skipped_changes_total sameday_worker_dead_letters_total
echo "rows in the table: $("${SQL[@]}" -N app -e 'SELECT COUNT(*) FROM scheduled_actions'), executions: see above"
kill -TERM "$WORKER" "$CONSUMER" "$READER"
wait "$WORKER" "$CONSUMER" "$READER" || true
echo "daemons stopped on SIGTERM; reader checkpoint:"
"$BIN" positions --config "$WORK/reader.toml"
echo "consumer shard leases:"
"$BIN" leases --config "$WORK/consumer.toml"
