//! The whole CDC path as it runs in production: MariaDB -> `sameday reader` -> Kinesis
//! (kinesalite) -> `sameday consumer` -> SQS FIFO (fauxqs) -> `sameday worker` -> Step
//! Functions (moto, record mode: executions stay RUNNING until stopped, so names and stops
//! can be asserted exactly).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use jiff::{SignedDuration, Timestamp};
use sameday_consumer::shard_lease::{LeaseTable, SequenceNumber, ShardCheckpoint};
use sameday_core::execution::scheduled_execution;
use sameday_core::rule::ScheduleRule;
use sameday_testkit::{names, Fault, FaultProxy, Fauxqs, Kinesalite, MariaDb, Moto};
use serde_json::{json, Map, Value};

use crate::common::{current_position, set_aws_env, ConsumerToml, Daemon, Env, RouteToml, WorkerToml};

const DEFINITION: &str = include_str!("../deploy/statemachine/schedule.asl.json");

struct Pipeline {
    env: Env,
    rule: ScheduleRule,
    queue_url: String,
    dlq_url: String,
    state_machine: String,
    lease_table: String,
    sqs: aws_sdk_sqs::Client,
    sfn: aws_sdk_sfn::Client,
    reader: Option<Daemon>,
    consumer: Option<Daemon>,
    worker: Option<Daemon>,
    /// Step Functions endpoint the worker uses (moto, or a fault proxy in front of it).
    sfn_endpoint: String,
}

fn fmt(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

impl Pipeline {
    async fn new(prefix: &str) -> Self {
        set_aws_env();
        let env = Env::new(prefix, 2).await;
        MariaDb::shared()
            .exec(&format!(
                "CREATE TABLE `{}`.schedule (id BIGINT PRIMARY KEY, user_id INT NOT NULL, action VARCHAR(20) NOT NULL,
                 due_at DATETIME NULL, status VARCHAR(10) NOT NULL DEFAULT 'pending')",
                env.db
            ))
            .await;
        let sqs = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
        let create = |name: String| {
            let sqs = sqs.clone();
            async move {
                let out = sqs
                    .create_queue()
                    .queue_name(name)
                    .attributes(QueueAttributeName::FifoQueue, "true")
                    .attributes(QueueAttributeName::VisibilityTimeout, "10")
                    .send()
                    .await
                    .expect("create queue");
                out.queue_url().unwrap().to_owned()
            }
        };
        let queue_url = create(format!("{}.fifo", names::unique(prefix))).await;
        let dlq_url = create(format!("{}-dlq.fifo", names::unique(prefix))).await;
        let moto = Moto::shared();
        let state_machine = moto.create_state_machine(&names::unique(prefix), DEFINITION).await;
        let rule: ScheduleRule = serde_json::from_value(json!({
            "name": "reminders", "db": env.db, "table": "schedule", "key_columns": ["id"],
            "due_column": "due_at", "due_type": "datetime", "time_zone": "UTC", "batch_time": "00:00",
            "overlap_minutes": 60, "grace_seconds": 300, "input_columns": ["user_id", "action"],
            "predicate": "status = 'pending'", "state_machine_arn": state_machine
        }))
        .unwrap();
        Self {
            rule,
            queue_url,
            dlq_url,
            state_machine,
            lease_table: names::unique(&format!("{prefix}-leases")),
            sqs,
            sfn: moto.sfn_client().await,
            reader: None,
            consumer: None,
            worker: None,
            sfn_endpoint: moto.endpoint(),
            env,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.env.dir.path().join(name)
    }

    fn aws_envs(&self) -> Vec<(&'static str, String)> {
        let mut envs = common::emulator_endpoints();
        envs.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_SFN");
        envs.push(("AWS_ENDPOINT_URL_SFN", self.sfn_endpoint.clone()));
        envs
    }

    async fn start(&mut self) {
        let reader_cfg = self.env.write_config(&current_position().await);
        self.reader = Some(Daemon::spawn("reader", &reader_cfg, self.path("reader.log"), &[]));
        let consumer_cfg =
            ConsumerToml::new(&self.env.stream, &self.lease_table, &self.path("consumer-dead-letters.jsonl"))
                .create_lease_table(true)
                .lease_duration_ms(3000)
                .checkpoint_interval_ms(200)
                .route(
                    RouteToml::new(&[&format!("{}.schedule", self.env.db)], &[&self.queue_url])
                        .same_day_rule("reminders"),
                )
                .metrics()
                .rule(&self.rule)
                .write(self.path("consumer.toml"));
        self.consumer = Some(Daemon::spawn("consumer", &consumer_cfg, self.path("consumer.log"), &self.aws_envs()));
        self.start_worker();
    }

    /// The worker's (and nightly batch's) config with `rule`.
    fn worker_toml(&self, rule: &ScheduleRule) -> WorkerToml {
        WorkerToml::new()
            .shutdown_timeout_ms(5000)
            .sqs_queue(&self.queue_url)
            .sqs_wait_time_seconds(1)
            .sqs_visibility_timeout_seconds(10)
            .sqs_dead_letter_queue(&self.dlq_url)
            .start_rate(200, 50)
            .nightly_source(MariaDb::shared().port(), 1)
            .metrics()
            .rule(rule)
    }

    fn start_worker(&mut self) {
        let worker_cfg = self.worker_toml(&self.rule).write(self.path("worker.toml"));
        let n = std::fs::read_dir(self.env.dir.path()).unwrap().count();
        self.worker =
            Some(Daemon::spawn("worker", &worker_cfg, self.path(&format!("worker-{n}.log")), &self.aws_envs()));
    }

    async fn sql(&self, sql: &str) {
        MariaDb::shared().exec(&format!("SET time_zone = '+00:00'; USE `{}`; {sql}", self.env.db)).await;
    }

    /// The row image the reader produces for these columns (BIGINT/INT numbers, VARCHAR
    /// strings, DATETIME without fraction).
    fn row(id: i64, user: i64, action: &str, due: Timestamp) -> Map<String, Value> {
        json!({"id": id, "user_id": user, "action": action, "due_at": fmt(due), "status": "pending"})
            .as_object()
            .unwrap()
            .clone()
    }

    fn name_of(&self, row: &Map<String, Value>) -> String {
        let due: jiff::civil::DateTime = row["due_at"].as_str().unwrap().parse().unwrap();
        let due = due.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
        scheduled_execution(&self.rule, row, due).unwrap().name
    }

    async fn executions(&self) -> BTreeMap<String, ExecutionStatus> {
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            let page = self
                .sfn
                .list_executions()
                .state_machine_arn(&self.state_machine)
                .set_next_token(token)
                .send()
                .await
                .expect("ListExecutions");
            for e in page.executions() {
                let prev = out.insert(e.name().to_owned(), e.status().clone());
                assert!(prev.is_none(), "execution {} listed twice", e.name());
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return out;
            }
        }
    }

    /// Waits until every change written so far went through: all Kinesis records read and
    /// checkpointed by the consumer, and the queue empty with nothing in flight.
    async fn settle(&mut self, changes: usize) {
        let records = self.env.wait_for_records(changes, Duration::from_secs(30)).await.len();
        assert_eq!(records, changes, "the reader wrote exactly the changes made");
        let last: BTreeMap<String, SequenceNumber> = Kinesalite::shared()
            .read_all(&self.env.stream)
            .await
            .into_iter()
            .map(|(shard, seq, _, _)| (shard, seq.parse().unwrap()))
            .collect();
        let leases = LeaseTable::new(Moto::shared().dynamodb_client().await, &self.lease_table);
        let start = Instant::now();
        loop {
            let list = leases.list().await.unwrap_or_default();
            let consumed = last.iter().all(|(shard, seq)| {
                list.iter()
                    .any(|l| &l.shard_id == shard && matches!(&l.checkpoint, ShardCheckpoint::Sequence(s) if s >= seq))
            });
            let attrs = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .unwrap();
            let count = |a: QueueAttributeName| {
                attrs.attributes().and_then(|m| m.get(&a)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(1)
            };
            let empty = count(QueueAttributeName::ApproximateNumberOfMessages) == 0
                && count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0;
            if consumed && empty {
                return;
            }
            for d in [&mut self.reader, &mut self.consumer].into_iter().flatten() {
                d.assert_running();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "pipeline did not settle (consumed {consumed}, queue empty {empty}); worker log:\n{}",
                self.worker.as_ref().map(Daemon::log_text).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        for d in [&mut self.worker, &mut self.consumer, &mut self.reader].into_iter().flatten() {
            d.terminate();
        }
    }
}

fn status(execs: &BTreeMap<String, ExecutionStatus>, name: &str) -> ExecutionStatus {
    execs.get(name).cloned().unwrap_or_else(|| panic!("no execution {name}; have {execs:?}"))
}

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
    assert_eq!(status(&execs, &name(1, "email", t20)), ExecutionStatus::Aborted, "intermediate time of 1 stopped");
    assert_eq!(status(&execs, &name(1, "email", t30)), ExecutionStatus::Running, "new time of 1 started");
    assert_eq!(status(&execs, &name(2, "email", t10)), ExecutionStatus::Aborted, "moved to next week: stopped");
    assert!(!execs.contains_key(&name(2, "email", next_week)), "next week is a later batch's job");
    assert_eq!(status(&execs, &name(3, "email", t10)), ExecutionStatus::Aborted, "deleted: stopped");
    assert_eq!(status(&execs, &name(4, "email", t10)), ExecutionStatus::Aborted, "old payload superseded");
    assert_eq!(status(&execs, &name(4, "push", t10)), ExecutionStatus::Running, "new payload started");
    assert_eq!(execs.len(), 7, "{execs:?}");
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
        ("g3", envelope(3, "schedule", json!({"id": 3, "user_id": 1, "action": "x"}))),
        ("g4", envelope(4, "schedule", json!({"id": 4, "user_id": 1, "action": "x", "due_at": null}))),
    ];
    for (group, body) in &bodies {
        p.sqs
            .send_message()
            .queue_url(&p.queue_url)
            .message_group_id(*group)
            .message_deduplication_id(names::unique("d"))
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // A real change behind them still gets its execution.
    let due = Timestamp::now() + SignedDuration::from_mins(15);
    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES (9, 9, 'sms', '{}')", fmt(due))).await;
    p.settle(1).await;
    assert!(p.executions().await.contains_key(&p.name_of(&Pipeline::row(9, 9, "sms", due))));

    let mut reasons = Vec::new();
    for _ in 0..20 {
        let out = p
            .sqs
            .receive_message()
            .queue_url(&p.dlq_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            let reason = m.message_attributes().unwrap()["sameday_reason"].string_value().unwrap().to_owned();
            reasons.push(reason);
            p.sqs
                .delete_message()
                .queue_url(&p.dlq_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if reasons.len() >= 3 {
            break;
        }
    }
    reasons.sort();
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
    let out = std::process::Command::new(common::sameday_bin())
        .args(["nightly", "--config"])
        .arg(p.path("worker.toml"))
        .envs(p.aws_envs())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "nightly failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    p.settle(60).await;
    let execs = p.executions().await;
    assert_eq!(execs.len(), 60, "exactly one execution per scheduled event");
    for i in 1..=60 {
        assert_eq!(status(&execs, &p.name_of(&Pipeline::row(i, i, "email", due(i)))), ExecutionStatus::Running);
    }
    // A second nightly run finds everything in place.
    let again = std::process::Command::new(common::sameday_bin())
        .args(["nightly", "--config"])
        .arg(p.path("worker.toml"))
        .envs(p.aws_envs())
        .output()
        .unwrap();
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
