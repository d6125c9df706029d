//! What users do to scheduled rows, through the whole pipeline (reader, consumer, worker as
//! processes, real MariaDB and emulators), checked against an expectation written here and
//! independently of sameday's code: after every scenario, the RUNNING executions in Step
//! Functions, read back by their *inputs* (key, due, columns), must be exactly one per row the
//! table says is due today and pending, and nothing else ([`assert_schedule_matches_table`]).
//!
//! The rule (tests/common/pipeline.rs): table `schedule (id, user_id, action, due_at, status)`,
//! due column `due_at` in UTC, input columns `user_id, action`, predicate
//! `status = 'pending'` (MariaDB's default collation: case-insensitive), grace 300 s.

use std::path::Path;
use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use jiff::{SignedDuration, Timestamp};
use mysql_async::prelude::Queryable;
use sameday_testkit::{MariaDb, MariaDbOptions};
use serde_json::Value;

use crate::common;
use crate::common::pipeline::{fmt, Pipeline};

/// One waiting event as the test sees it: (id, due `YYYY-MM-DDTHH:MM:SSZ`, user_id, action).
type Event = (i64, String, i64, String);

/// The events the table asks for, computed here from the rows (not by sameday): due later
/// today (the window ends at the next 01:00 UTC: batch time 00:00 plus 60 minutes of overlap),
/// and `status` equal to 'pending' ignoring case and trailing spaces, as MariaDB's default
/// collation compares. Only the future counts: an execution past its due time is performing
/// its action (in moto's record mode it stays RUNNING for good).
async fn expected_from_table(p: &Pipeline) -> Vec<Event> {
    let mut conn = MariaDb::shared().conn().await;
    let rows: Vec<(i64, i64, String, Option<String>, String)> = conn
        .query(format!(
            "SELECT id, user_id, action, DATE_FORMAT(due_at, '%Y-%m-%dT%H:%i:%sZ'), status FROM `{}`.schedule",
            p.env.db
        ))
        .await
        .expect("read the table");
    let now = Timestamp::now();
    let window_end =
        now.strftime("%Y-%m-%dT00:00:00Z").to_string().parse::<Timestamp>().unwrap() + SignedDuration::from_hours(25);
    let mut events: Vec<Event> = rows
        .into_iter()
        .filter(|(.., due, status)| {
            let Some(due) = due.as_deref().and_then(|d| d.parse::<Timestamp>().ok()) else { return false };
            status.trim_end().to_lowercase() == "pending" && due > now && due < window_end
        })
        .map(|(id, user, action, due, _)| (id, due.unwrap(), user, action))
        .collect();
    events.sort();
    events
}

/// The events of the RUNNING executions due in the future (or with no readable due), from
/// their inputs.
async fn waiting_events(p: &Pipeline) -> Vec<Event> {
    let now = Timestamp::now();
    let mut events = Vec::new();
    for (name, status) in p.executions().await {
        if status != ExecutionStatus::Running {
            continue;
        }
        let arn = sameday_core::execution::execution_arn(&p.state_machine, &name).unwrap();
        let out = p.sfn.describe_execution().execution_arn(arn).send().await.expect("DescribeExecution");
        let input: Value = serde_json::from_str(out.input().unwrap_or("{}")).unwrap();
        if input["due"].as_str().and_then(|d| d.parse::<Timestamp>().ok()).is_some_and(|due| due <= now) {
            continue;
        }
        events.push((
            input["key"]["id"].as_i64().unwrap_or(-1),
            input["due"].as_str().unwrap_or_default().to_owned(),
            input["columns"]["user_id"].as_i64().unwrap_or(-1),
            input["columns"]["action"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    events.sort();
    events
}

/// Step Functions holds exactly what the table says: one waiting execution per due row.
pub(crate) async fn assert_schedule_matches_table(p: &Pipeline, what: &str) {
    let expected = expected_from_table(p).await;
    let waiting = waiting_events(p).await;
    assert_eq!(
        waiting,
        expected,
        "{what}: the waiting executions (left) differ from what the table asks for (right); worker log:\n{}",
        p.worker.as_ref().map(common::Daemon::log_text).unwrap_or_default()
    );
}

/// `sameday nightly` with the pipeline's worker config; its stdout.
fn run_nightly(p: &Pipeline, config: &Path) -> String {
    let out = p.cli("nightly", config, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nightly failed: {text}\n{log}");
    // The CloudFormation metric filter NightlyCompleted matches this JSON log line.
    let summary =
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|l| l["message"] == "nightly summary");
    assert_eq!(summary.map(|l| l["failed"].clone()), Some(Value::from(0)), "{log}");
    text
}

pub(crate) fn due(minutes: i64) -> String {
    fmt(Timestamp::now() + SignedDuration::from_mins(minutes))
}

/// Rows that come back to a due time and input they had before: each must wait again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_returning_to_an_earlier_schedule_wait_again() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("name-reuse").await;
    p.start().await;
    let (t, t10) = (due(20), due(30));
    // The rows, then what users do to them; the last column says what must wait at the end.
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at) VALUES
           (1, 1, 'email', '{t}'),  -- rescheduled T -> T+10 -> T: waits at T
           (2, 2, 'x', '{t}'),      -- payload x -> y -> x: waits with x
           (3, 3, 'email', '{t}'),  -- deleted, then inserted again identically: waits
           (4, 4, 'email', '{t}'),  -- deleted and inserted again in one transaction: waits
           (5, 5, 'email', '{t}')   -- deleted, inserted, deleted: nothing waits"
    ))
    .await;
    p.sql(&format!(
        "UPDATE schedule SET due_at = '{t10}' WHERE id = 1; UPDATE schedule SET due_at = '{t}' WHERE id = 1;
         UPDATE schedule SET action = 'y' WHERE id = 2; UPDATE schedule SET action = 'x' WHERE id = 2;
         DELETE FROM schedule WHERE id = 3; INSERT INTO schedule (id, user_id, action, due_at) VALUES (3, 3, 'email', '{t}');
         START TRANSACTION; DELETE FROM schedule WHERE id = 4;
           INSERT INTO schedule (id, user_id, action, due_at) VALUES (4, 4, 'email', '{t}'); COMMIT;
         DELETE FROM schedule WHERE id = 5; INSERT INTO schedule (id, user_id, action, due_at) VALUES (5, 5, 'email', '{t}');
         DELETE FROM schedule WHERE id = 5;"
    ))
    .await;
    p.settle(5 + 11).await;
    assert_schedule_matches_table(&p, "after the changes").await;
    assert_eq!(expected_from_table(&p).await.len(), 4, "rows 1-4 wait");
    // Re-running the nightly batch changes nothing: the same events are found waiting.
    let out = run_nightly(&p, &p.path("worker.toml"));
    assert!(out.contains("started=0 already_existed=4 "), "{out}");
    assert_schedule_matches_table(&p, "after the nightly batch").await;
    p.stop().await;
}

/// Cancelling through the status column stops, un-cancelling starts again, also when the
/// status is spelled in another case (MariaDB's default collation ignores it, so the nightly
/// batch's SQL and the worker must agree); a row inserted as cancelled never waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_un_cancel_through_the_status_column() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("cancel").await;
    p.start().await;
    let t = due(20);
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at, status) VALUES
           (1, 1, 'email', '{t}', 'pending'),    -- cancelled: nothing waits
           (2, 2, 'email', '{t}', 'pending'),    -- cancelled, then 'Pending' again: waits
           (3, 3, 'email', '{t}', 'cancelled'),  -- inserted cancelled: nothing waits
           (4, 4, 'email', '{t}', 'cancelled'),  -- inserted cancelled, then 'PENDING ': waits
           (5, 5, 'email', '{t}', 'Pending')     -- inserted as 'Pending': waits"
    ))
    .await;
    p.sql(
        "UPDATE schedule SET status = 'cancelled' WHERE id IN (1, 2);
         UPDATE schedule SET status = 'Pending' WHERE id = 2;
         UPDATE schedule SET status = 'PENDING ' WHERE id = 4;",
    )
    .await;
    p.settle(5 + 4).await;
    assert_schedule_matches_table(&p, "after cancelling and un-cancelling").await;
    let waiting: Vec<i64> = waiting_events(&p).await.iter().map(|e| e.0).collect();
    assert_eq!(waiting, vec![2, 4, 5]);
    // The nightly batch selects the same rows with the predicate in its SQL.
    let out = run_nightly(&p, &p.path("worker.toml"));
    assert!(out.contains("selected=3 started=0 already_existed=3 "), "{out}");
    assert_schedule_matches_table(&p, "after the nightly batch").await;
    p.stop().await;
}

/// A status column with a binary collation compares exactly, in the batch's SQL and in the
/// worker alike (the worker reads the column's collation at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_collation_makes_the_predicate_case_sensitive_on_both_paths() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("collation").await;
    p.sql("ALTER TABLE schedule MODIFY status VARCHAR(10) COLLATE utf8mb4_bin NOT NULL DEFAULT 'pending'").await;
    p.start().await;
    let t = due(20);
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at, status) VALUES
           (1, 1, 'email', '{t}', 'pending'),  -- waits
           (2, 2, 'email', '{t}', 'Pending')   -- another value under utf8mb4_bin: nothing waits"
    ))
    .await;
    p.settle(2).await;
    let waiting: Vec<i64> = waiting_events(&p).await.iter().map(|e| e.0).collect();
    assert_eq!(waiting, vec![1]);
    let out = run_nightly(&p, &p.path("worker.toml"));
    assert!(out.contains("selected=1 started=0 already_existed=1 "), "{out}");
    p.stop().await;
}

/// Any text a MySQL column can hold reaches the worker: emoji, U+FFFE and U+FFFF (which SQS
/// refuses raw), control characters, latin1 and binary bytes that are not UTF-8. The
/// executions' inputs carry the text as the table has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_text_in_any_column_reaches_step_functions() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("odd-text").await;
    p.sql(
        "ALTER TABLE schedule MODIFY action VARCHAR(20) CHARACTER SET utf8mb4 NOT NULL,
           ADD note VARCHAR(20) CHARACTER SET latin1 NULL, ADD raw VARBINARY(8) NULL",
    )
    .await;
    p.start().await;
    let t = due(20);
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at, note, raw) VALUES
           (1, 1, '🎉 fête 家', '{t}', NULL, NULL),
           (2, 2, CONVERT(X'EFBFBEEFBFBF' USING utf8mb4), '{t}', NULL, NULL),
           (3, 3, CONCAT('a', CHAR(1), 'b', CHAR(127), 'c', CHAR(9)), '{t}', NULL, NULL),
           (4, 4, 'email', '{t}', X'E9FF', X'FFFE00C3');
         UPDATE schedule SET action = '𝄞 clef' WHERE id = 1;"
    ))
    .await;
    p.settle(5).await;
    assert_schedule_matches_table(&p, "odd text").await;
    let actions: Vec<String> = waiting_events(&p).await.into_iter().map(|e| e.3).collect();
    assert_eq!(actions[0], "𝄞 clef");
    assert_eq!(actions[1], "\u{fffe}\u{ffff}");
    assert_eq!(actions[2], "a\u{1}b\u{7f}c\t");
    p.stop().await;
}

/// Emoji and other 4-byte characters in a primary key: FIFO group ids (which SQS limits to
/// ASCII punctuation and alphanumerics) stay distinct per row, and each row's reschedules
/// keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_byte_characters_in_key_columns_keep_rows_apart_and_in_order() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("emoji-key").await;
    p.sql(
        "ALTER TABLE schedule ADD code VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',
           DROP PRIMARY KEY, ADD PRIMARY KEY (id, code)",
    )
    .await;
    p.rule.key_columns = vec!["id".into(), "code".into()];
    p.start().await;
    p.sql(&format!(
        "INSERT INTO schedule (id, code, user_id, action, due_at) VALUES
           (1, '🎉', 1, 'a', '{}'), (2, '🎊', 2, 'b', '{}'), (3, '𝄞😀', 3, 'c', '{}');
         UPDATE schedule SET due_at = '{}' WHERE code = '🎉';
         UPDATE schedule SET due_at = '{}' WHERE code = '🎊';
         UPDATE schedule SET due_at = '{}' WHERE code = '🎉';",
        due(20),
        due(21),
        due(22),
        due(30),
        due(31),
        due(40)
    ))
    .await;
    p.settle(6).await;
    assert_schedule_matches_table(&p, "emoji keys").await;
    p.stop().await;
}

/// Changes delivered again long after they were applied (a Kinesis replay, a DLQ redrive,
/// SQS's 5-minute deduplication window passed) never undo what newer changes did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_changes_delivered_after_newer_ones_change_nothing() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("stale-replay").await;
    p.start().await;
    let (t, t10) = (due(20), due(30));
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at) VALUES (1, 1, 'email', '{t}'), (2, 2, 'email', '{t}');
         UPDATE schedule SET due_at = '{t10}' WHERE id = 1; UPDATE schedule SET due_at = '{t}' WHERE id = 1;
         DELETE FROM schedule WHERE id = 2;"
    ))
    .await;
    p.settle(5).await;
    assert_schedule_matches_table(&p, "before the replay").await;

    // Every change again, oldest first, as a replay would send them: same group (the row),
    // new deduplication ids (the window has passed).
    let records = common::user_records(&p.env.stream).await;
    let mut changes: Vec<(u64, String, String)> = records
        .iter()
        .map(|(_, _, partition_key, data)| {
            let env: sameday_core::ChangeEnvelope = serde_json::from_slice(data).unwrap();
            (env.source.pos, partition_key.clone(), String::from_utf8(data.clone()).unwrap())
        })
        .collect();
    changes.sort();
    for (i, (_, group, body)) in changes.iter().enumerate() {
        p.sqs
            .send_message()
            .queue_url(&p.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(format!("replay-{i}"))
            .send()
            .await
            .expect("SendMessage");
    }
    p.settle(5).await;
    assert_schedule_matches_table(&p, "after the replay").await;
    let log = p.worker.as_ref().map(common::Daemon::log_text).unwrap_or_default();
    assert!(log.contains("stale_start") || log.contains("stale_stop"), "the replay was recognised as stale:\n{log}");
    p.stop().await;
}

/// The nightly batch, reading the primary, starts slowly while users move, edit, cancel
/// and delete rows it has already read; the CDC path handles those changes meanwhile. No
/// stale execution may stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_nightly_batch_on_the_primary_racing_user_changes_leaves_no_stale_execution() {
    let _slot = common::scenario_slot().await;
    batch_race("race-primary", None).await;
}

/// The same with the batch reading a replica whose SQL thread is stopped (so it lags behind
/// every change made during the run), and `[nightly.primary]` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_nightly_batch_on_a_lagging_replica_racing_user_changes_leaves_no_stale_execution() {
    let _slot = common::scenario_slot().await;
    let replica = MariaDb::start_with(MariaDbOptions::default().arg("--server_id=77"));
    batch_race("race-replica", Some(&replica)).await;
}

async fn batch_race(prefix: &str, replica: Option<&MariaDb>) {
    let mut p = Pipeline::new(prefix).await;
    if let Some(replica) = replica {
        replicate_database(&p, replica).await;
    }
    // The rows exist before the CDC path starts: only the batch schedules them.
    let values: Vec<String> = (1..=24).map(|i| format!("({i}, {i}, 'email', '{}')", due(20 + i))).collect();
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES {}", values.join(","))).await;
    // On the primary, one page: every row is read at once, long before the late ones start.
    // On the replica, small pages: the later ones are read after the changes, still old.
    let page_size = if replica.is_some() { 6 } else { 24 };
    let mut toml = p.worker_toml(&p.rule).start_rate(4, 1).nightly_page_size(page_size);
    if let Some(replica) = replica {
        wait_for_replica(&p, replica, 24).await;
        replica.exec("STOP SLAVE SQL_THREAD").await;
        toml = toml.nightly_source(replica.port(), 1);
        // Without [nightly.primary], `sameday check` warns that the source is a replica.
        let without = toml.clone().write(p.path("replica-only.toml"));
        let check = p.cli("check", &without, &["--kind", "worker"]);
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(text.contains("is a replica and there is no [nightly.primary]"), "{text}");
        toml = toml.nightly_primary(MariaDb::shared().port(), 1);
    }
    let config = toml.write(p.path("nightly.toml"));
    p.start().await;
    let log = p.path("nightly.log");
    let batch = p
        .cli_command("nightly", &config, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // While the batch starts its rows at 4 per second (about 6 s): moves within today and
    // to next week, payload edits, a cancel, deletes; early rows and late ones.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.sql(&format!(
        "UPDATE schedule SET due_at = '{}' WHERE id IN (1, 20, 21);
         UPDATE schedule SET due_at = '{}' WHERE id = 22;
         UPDATE schedule SET action = 'push' WHERE id IN (2, 23);
         UPDATE schedule SET status = 'cancelled' WHERE id = 19;
         DELETE FROM schedule WHERE id IN (3, 24);",
        due(90),
        fmt(Timestamp::now() + SignedDuration::from_hours(24 * 7))
    ))
    .await;
    let out = batch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nightly failed: {text}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    p.settle(9).await;
    assert_schedule_matches_table(&p, prefix).await;
    eprintln!("{prefix}: {}", text.lines().last().unwrap_or_default());
    p.stop().await;
}

/// Makes `replica` replicate the pipeline's database from the shared MariaDB, from now on.
async fn replicate_database(p: &Pipeline, replica: &MariaDb) {
    let db = &p.env.db;
    replica
        .exec(&format!(
            "CREATE DATABASE `{db}`;
             CREATE TABLE `{db}`.schedule (id BIGINT PRIMARY KEY, user_id INT NOT NULL, action VARCHAR(20) NOT NULL,
               due_at DATETIME NULL, status VARCHAR(10) NOT NULL DEFAULT 'pending')"
        ))
        .await;
    let mut conn = MariaDb::shared().conn().await;
    let pos: String = conn.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap_or_default();
    replica
        .exec(&format!(
            "SET GLOBAL gtid_slave_pos = '{pos}'; SET GLOBAL replicate_do_db = '{db}';
             CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root',
               MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos;
             START SLAVE;",
            MariaDb::shared().port()
        ))
        .await;
}

async fn wait_for_replica(p: &Pipeline, replica: &MariaDb, rows: i64) {
    let sql = format!("SELECT COUNT(*) FROM `{}`.schedule", p.env.db);
    sameday_testkit::wait_until(Duration::from_secs(30), "the replica to have the rows", || async {
        let mut conn = replica.conn().await;
        conn.query_first::<i64, _>(sql.as_str()).await.ok().flatten() == Some(rows)
    })
    .await;
}

/// `sameday reconcile` with its exit code and stdout.
fn run_reconcile(p: &Pipeline, config: &Path, args: &[&str]) -> (i32, String) {
    let out = p.cli("reconcile", config, &[&["--settle-seconds", "1"], args].concat());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "reconcile failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

/// Drift made by hand, with no CDC path running to repair it: in the table (a row moved, a row
/// deleted, rows inserted) and in Step Functions (an execution stopped, one started that no row
/// asks for). Reconcile reports each kind, `--fix` repairs them, and then it reports in sync;
/// an execution past its due time is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_and_fixes_each_kind_of_drift() {
    let _slot = common::scenario_slot().await;
    let p = Pipeline::new("reconcile").await;
    let config = p.worker_toml(&p.rule).write(p.path("worker.toml"));
    let values: Vec<String> = (1..=10).map(|i| format!("({i}, {i}, 'email', '{}')", due(20 + i))).collect();
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES {}", values.join(","))).await;
    let out = run_nightly(&p, &config);
    assert!(out.contains("started=10 "), "{out}");
    let (code, text) = run_reconcile(&p, &config, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("in_sync=10 missing=0 extra=0 stale=0"), "{text}");

    // The table: row 1 moved, row 2 deleted, rows 11 and 12 inserted (all without CDC).
    p.sql(&format!(
        "UPDATE schedule SET due_at = '{}' WHERE id = 1; DELETE FROM schedule WHERE id = 2;
         INSERT INTO schedule (id, user_id, action, due_at) VALUES (11, 11, 'sms', '{t}'), (12, 12, 'sms', '{t}');",
        due(45),
        t = due(50)
    ))
    .await;
    // Step Functions: row 3's execution stopped, a foreign-looking but sameday-named one started
    // for a row that does not exist, and one whose due time has passed (never touched).
    let names = p.executions().await;
    let three = names.keys().find(|n| n.starts_with("reminders-3-")).unwrap().clone();
    p.sfn
        .stop_execution()
        .execution_arn(sameday_core::execution::execution_arn(&p.state_machine, &three).unwrap())
        .send()
        .await
        .unwrap();
    let ghost = p.name_of(&Pipeline::row(99, 99, "email", Timestamp::now() + SignedDuration::from_mins(33)));
    let past_due = Timestamp::now() - SignedDuration::from_mins(1);
    let past = p.name_of(&Pipeline::row(98, 98, "email", past_due));
    for (name, due) in [(&ghost, None), (&past, Some(past_due))] {
        let input = due.map(|d| format!(r#"{{"due":"{d}"}}"#)).unwrap_or_else(|| "{}".into());
        p.sfn.start_execution().state_machine_arn(&p.state_machine).name(name).input(input).send().await.unwrap();
    }

    let (code, text) = run_reconcile(&p, &config, &[]);
    assert_eq!(code, 1, "{text}");
    // Missing: 1 (new time), 3 (stopped), 11, 12. Extra: 2 (deleted), 99. Stale: 1 (old time).
    assert!(text.contains("rows_due=11 ") && text.contains("in_sync=7 missing=4 extra=2 stale=1 "), "{text}");
    assert!(text.contains("missing key={\"id\":11}") && text.contains(&format!("extra name={ghost}")), "{text}");
    let (_, json) = run_reconcile(&p, &config, &["--json"]);
    let json: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!((json["in_sync"].as_bool(), json["drift"].as_u64()), (Some(false), Some(7)), "{json}");

    // The CloudFormation metric filter reads `$.ReconcileDrift` from this line.
    let (_, text) = run_reconcile(&p, &config, &["--cloudwatch-metrics"]);
    let emf: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!((emf["ReconcileDrift"].as_u64(), emf["Rule"].as_str()), (Some(7), Some("reminders")), "{text}");

    let (code, text) = run_reconcile(&p, &config, &["--fix"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("started=4 stopped=3 fix_failed=0"), "{text}");
    let (code, text) = run_reconcile(&p, &config, &[]);
    assert_eq!(code, 0, "{text}");
    assert_schedule_matches_table(&p, "after reconcile --fix").await;
    assert_eq!(p.executions().await.get(&past), Some(&ExecutionStatus::Running), "past due: untouched");
}

/// Everything at once: users reschedule back and forth, edit payloads and back, cancel and
/// un-cancel (in another case), delete and re-insert, change primary keys, move rows to next
/// week and write multi-row transactions, while every daemon is killed with `kill -9` twice
/// and restarted, and a nightly batch runs in the middle. At the end the waiting executions
/// are exactly what the table asks for, reconcile says so, and a nightly re-run starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_survives_kill_9_of_every_daemon_amid_user_behaviour() {
    let _slot = common::heavy_scenario_slot().await;
    let mut p = Pipeline::new("kill-all").await;
    p.start().await;
    let base: Vec<String> = (1..=40).map(|i| format!("({i}, {i}, 'email', '{}')", due(20 + i))).collect();
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES {}", base.join(","))).await;
    let mut changes = 40;
    let (t_later, next_week) = (due(90), fmt(Timestamp::now() + SignedDuration::from_hours(24 * 7)));
    // One round of user behaviour on rows `10 * r + 1 ..= 10 * r + 10`; every statement
    // changes exactly one row.
    let round = |r: i64| -> Vec<String> {
        let k = |i: i64| 10 * r + i;
        vec![
            format!("UPDATE schedule SET due_at = '{t_later}' WHERE id = {}", k(1)),
            format!("UPDATE schedule SET due_at = '{}' WHERE id = {}", due(20 + k(1)), k(1)),
            format!("UPDATE schedule SET action = 'push' WHERE id = {}", k(2)),
            format!("UPDATE schedule SET action = 'email' WHERE id = {}", k(2)),
            format!("UPDATE schedule SET status = 'cancelled' WHERE id = {}", k(3)),
            format!("UPDATE schedule SET status = 'PENDING' WHERE id = {}", k(3)),
            format!("UPDATE schedule SET status = 'cancelled' WHERE id = {}", k(4)),
            format!("DELETE FROM schedule WHERE id = {}", k(5)),
            format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES ({0}, {0}, 'email', '{1}')", k(5), due(20 + k(5))),
            format!("DELETE FROM schedule WHERE id = {}", k(6)),
            format!("UPDATE schedule SET id = {} WHERE id = {}", 100 + k(7), k(7)),
            format!("UPDATE schedule SET due_at = '{next_week}' WHERE id = {}", k(8)),
            format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES ({0}, {0}, 'sms', '{1}')", 200 + k(9), due(25)),
            format!(
                "START TRANSACTION; UPDATE schedule SET due_at = '{t_later}' WHERE id = {a}; \
                 UPDATE schedule SET action = 'sms' WHERE id = {b}; UPDATE schedule SET due_at = '{d}' WHERE id = {a}; COMMIT",
                a = k(9),
                b = k(10),
                d = due(21 + k(9)),
            ),
        ]
    };
    let daemons = ["reader", "consumer", "worker"];
    for r in 0..4i64 {
        let statements = round(r);
        // The transaction changes three rows, the primary key change leaves as two records
        // (a delete of the old key, an insert of the new); the other statements one each.
        changes += statements.len() + 3;
        let (first, second) = statements.split_at(statements.len() / 2);
        p.sql(&first.join(";")).await;
        p.kill9_and_restart(daemons[(r as usize) % 3]);
        p.sql(&second.join(";")).await;
        if r == 1 {
            let out = run_nightly(&p, &p.path("worker.toml"));
            eprintln!("nightly during the run: {}", out.lines().last().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.kill9_and_restart(daemons[(r as usize + 1) % 3]);
    }
    p.settle_after_kills(changes).await;
    assert_schedule_matches_table(&p, "after the kills").await;
    let (code, text) = run_reconcile(&p, &p.path("worker.toml"), &[]);
    assert_eq!(code, 0, "reconcile reports drift:\n{text}");
    let out = run_nightly(&p, &p.path("worker.toml"));
    assert!(out.contains(" started=0 "), "{out}");
    assert_schedule_matches_table(&p, "after a nightly re-run").await;
    p.stop().await;
}
