//! The whole CDC path as it runs in production: MariaDB -> `sameday reader` -> Kinesis
//! (kinesalite) -> `sameday consumer` -> SQS FIFO (fauxqs) -> `sameday worker` -> Step
//! Functions (moto, record mode: executions stay RUNNING until stopped, so names and stops
//! can be asserted exactly).

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use jiff::{SignedDuration, Timestamp};
use sameday_testkit::{Fault, FaultProxy, Moto};
use serde_json::{json, Value};

use crate::common::pipeline::{fmt, status, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_insert_due_today_starts_one_execution_and_later_days_none() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("cdc-insert").await;
    p.start().await;
    let now = Timestamp::now();
    let today = now + SignedDuration::from_mins(10);
    let tomorrow = now + SignedDuration::from_hours(26);
    let later = now + SignedDuration::from_hours(24 * 30);
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at) VALUES (1, 7, 'email', '{}'), (2, 7, 'push', '{}'),
         (3, 8, 'sms', '{}'), (4, 9, 'push', NULL)",
        fmt(today),
        fmt(tomorrow),
        fmt(later)
    ))
    .await;
    p.settle(4).await;
    let execs = p.executions().await;
    let expected = p.name_of(&Pipeline::row(1, 7, "email", today));
    assert_eq!(execs.keys().collect::<Vec<_>>(), [&expected], "only the row due today has an execution");
    assert_eq!(status(&execs, &expected), ExecutionStatus::Running);
    let input = p
        .sfn
        .describe_execution()
        .execution_arn(sameday_core::execution::execution_arn(&p.state_machine, &expected).unwrap())
        .send()
        .await
        .unwrap();
    let input: Value = serde_json::from_str(input.input().unwrap()).unwrap();
    assert_eq!(input["due"], format!("{}Z", fmt(today)));
    assert_eq!(input["columns"], json!({"user_id": 7, "action": "email"}));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reschedule_move_delete_and_payload_change_stop_and_supersede_executions() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("reschedule").await;
    p.start().await;
    let now = Timestamp::now();
    let (t10, t20, t30) =
        (now + SignedDuration::from_mins(10), now + SignedDuration::from_mins(20), now + SignedDuration::from_mins(30));
    let next_week = now + SignedDuration::from_hours(24 * 7);
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at) VALUES (1, 1, 'email', '{a}'), (2, 2, 'email', '{a}'),
         (3, 3, 'email', '{a}'), (4, 4, 'email', '{a}')",
        a = fmt(t10)
    ))
    .await;
    p.settle(4).await;
    assert_eq!(p.executions().await.len(), 4);

    // 1: rescheduled within today; 2: moved to next week; 3: deleted; 4: payload changed.
    p.sql(&format!(
        "UPDATE schedule SET due_at = '{}' WHERE id = 1; UPDATE schedule SET due_at = '{}' WHERE id = 2;
         DELETE FROM schedule WHERE id = 3; UPDATE schedule SET action = 'push' WHERE id = 4;
         UPDATE schedule SET due_at = '{}' WHERE id = 1;",
        fmt(t20),
        fmt(next_week),
        fmt(t30)
    ))
    .await;
    p.settle(9).await;
    let execs = p.executions().await;
    let name = |id, action, due| p.name_of(&Pipeline::row(id, id, action, due));
    assert_eq!(status(&execs, &name(1, "email", t10)), ExecutionStatus::Aborted, "old time of 1 stopped");
    // The consumer folds changes that wait behind their row's message: the intermediate time
    // may never have been started; it must not be waiting.
    assert_ne!(
        execs.get(&name(1, "email", t20)),
        Some(&ExecutionStatus::Running),
        "intermediate time of 1 not waiting"
    );
    assert_eq!(status(&execs, &name(1, "email", t30)), ExecutionStatus::Running, "new time of 1 started");
    assert_eq!(status(&execs, &name(2, "email", t10)), ExecutionStatus::Aborted, "moved to next week: stopped");
    assert!(!execs.contains_key(&name(2, "email", next_week)), "next week is a later batch's job");
    assert_eq!(status(&execs, &name(3, "email", t10)), ExecutionStatus::Aborted, "deleted: stopped");
    assert_eq!(status(&execs, &name(4, "email", t10)), ExecutionStatus::Aborted, "old payload superseded");
    assert_eq!(status(&execs, &name(4, "push", t10)), ExecutionStatus::Running, "new payload started");
    // Six, or seven when the intermediate time of 1 was started before its next change came.
    assert!(matches!(execs.len(), 6 | 7), "{execs:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kill_mid_stream_then_restart_misses_nothing_and_doubles_nothing() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("worker-kill").await;
    p.start().await;
    let now = Timestamp::now();
    let due = |i: i64| now + SignedDuration::from_secs(600 + i);
    let rows = 150;
    for chunk in (1..=rows).collect::<Vec<i64>>().chunks(25) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, {i}, 'email', '{}')", fmt(due(*i)))).collect();
        p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES {}", values.join(","))).await;
    }
    // Let the worker get going, then kill it mid-stream.
    let start = Instant::now();
    while p.executions().await.len() < 20 {
        assert!(start.elapsed() < Duration::from_secs(30), "worker did not start executions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.worker.as_mut().unwrap().kill9();
    let done_at_kill = p.executions().await.len();
    // Reschedule some rows while no worker runs.
    p.sql("UPDATE schedule SET due_at = due_at + INTERVAL 1 MINUTE WHERE id <= 10").await;
    p.start_worker();
    p.settle(rows as usize + 10).await;
    let execs = p.executions().await;
    for i in 1..=rows {
        let now_due = if i <= 10 { due(i) + SignedDuration::from_mins(1) } else { due(i) };
        assert_eq!(status(&execs, &p.name_of(&Pipeline::row(i, i, "email", now_due))), ExecutionStatus::Running);
        if i <= 10 {
            assert_eq!(status(&execs, &p.name_of(&Pipeline::row(i, i, "email", due(i)))), ExecutionStatus::Aborted);
        }
    }
    assert_eq!(execs.len(), rows as usize + 10, "one execution per scheduled event, none doubled");
    eprintln!("killed the worker after {done_at_kill} of {rows} executions");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_execution_throttling_slows_down_without_failure_or_loss() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("throttle").await;
    let fault =
        Fault { operation: "StartExecution".into(), every: 3, status: 400, error_type: "ThrottlingException".into() };
    let proxy = FaultProxy::start(&Moto::shared().endpoint(), fault).await;
    p.sfn_endpoint = proxy.endpoint().to_owned();
    p.start().await;
    let now = Timestamp::now();
    let values: Vec<String> =
        (1..=40).map(|i| format!("({i}, {i}, 'push', '{}')", fmt(now + SignedDuration::from_secs(900 + i)))).collect();
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES {}", values.join(","))).await;
    p.settle(40).await;
    let execs = p.executions().await;
    assert_eq!(execs.len(), 40, "every row started exactly once");
    assert!(proxy.injected() >= 10, "throttling was injected {} times", proxy.injected());
    let dlq = p.sqs.receive_message().queue_url(&p.dlq_url).send().await.unwrap();
    assert!(dlq.messages().is_empty(), "nothing dead-lettered");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_with_a_reason_and_the_worker_keeps_going() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("poison").await;
    p.start().await;
    let envelope = |id: i64, table: &str, after: Value| {
        json!({
            "v": 1, "id": format!("poison-{id}"), "op": "insert", "db": p.env.db, "table": table,
            "key": {"id": id}, "before": null, "after": after,
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "gtid": null, "ts_ms": 0},
            "txn": {"id": format!("poison-{id}"), "index": 0}
        })
        .to_string()
    };
    let bodies = [
        ("g1", "{not json".to_owned()),
        ("g2", envelope(2, "other_table", json!({"id": 2}))),
        ("g3", envelope(3, "schedule", json!({"id": 3, "user_id": 1, "action": "x", "status": "pending"}))),
        (
            "g4",
            envelope(4, "schedule", json!({"id": 4, "user_id": 1, "action": "x", "due_at": null, "status": "pending"})),
        ),
    ];
    for (group, body) in &bodies {
        p.send_to_worker(group, body).await;
    }
    // A real change behind them still gets its execution.
    let due = Timestamp::now() + SignedDuration::from_mins(15);
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES (9, 9, 'sms', '{}')", fmt(due))).await;
    p.settle(1).await;
    assert!(p.executions().await.contains_key(&p.name_of(&Pipeline::row(9, 9, "sms", due))));

    let reasons = p.dead_letter_reasons(3).await;
    assert_eq!(
        reasons.len(),
        3,
        "garbage, unknown table and missing due column; the NULL due is no poison: {reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not a sameday change envelope")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("no [[rule]] for table") && r.contains("other_table")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("due_at")), "{reasons:?}");
    p.worker.as_mut().unwrap().assert_running();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_and_cdc_overlapping_on_the_same_rows_leave_one_execution_per_event() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("overlap").await;
    p.start().await;
    let now = Timestamp::now();
    let due = |i: i64| now + SignedDuration::from_secs(1200 + i);
    let values: Vec<String> = (1..=60).map(|i| format!("({i}, {i}, 'email', '{}')", fmt(due(i)))).collect();
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES {}", values.join(","))).await;
    // The nightly batch runs while the CDC path is starting the same rows.
    let out = p.cli("nightly", &p.path("worker.toml"), &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "nightly failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    p.settle(60).await;
    let execs = p.executions().await;
    assert_eq!(execs.len(), 60, "exactly one execution per scheduled event");
    for i in 1..=60 {
        assert_eq!(status(&execs, &p.name_of(&Pipeline::row(i, i, "email", due(i)))), ExecutionStatus::Running);
    }
    // A second nightly run finds everything in place.
    let again = p.cli("nightly", &p.path("worker.toml"), &[]);
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.contains("started=0") && again.contains("already_existed=60"), "{again}");
    assert_eq!(p.executions().await.len(), 60);
    eprintln!("first nightly run during CDC: {}", text.lines().last().unwrap_or_default());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refuses_to_start_when_a_rule_names_a_missing_column() {
    let _slot = common::scenario_slot().await;
    let mut p = Pipeline::new("missing-column").await;
    p.start_worker();
    let worker = p.worker.as_mut().unwrap();
    let start = Instant::now();
    while !worker.log_text().contains("worker ready") {
        worker.assert_running();
        assert!(start.elapsed() < Duration::from_secs(20), "the worker did not start with a valid rule");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.terminate();
    let mut rule = p.rule.clone();
    rule.due_column = "due_time".to_owned();
    p.worker_toml(&rule).write(p.path("worker.toml"));
    let out = std::process::Command::new(common::sameday_bin())
        .args(["worker", "--config"])
        .arg(p.path("worker.toml"))
        .envs(p.aws_envs())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the worker must not start");
    assert!(err.contains("reminders") && err.contains("schedule") && err.contains("due_time"), "{err}");
}
