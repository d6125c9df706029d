//! `sameday check` against wrong set-ups, one per check, and one right set-up per daemon:
//! the real binary, MariaDB, kinesalite (Kinesis), fauxqs (SQS) and moto (DynamoDB, Step
//! Functions). Each test asserts the exit code and the line naming the problem and its fix.

use crate::common;

use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_sfn::types::StateMachineType;
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_core::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
use sameday_core::clock::now_ms;
use sameday_core::BinlogPosition;
use sameday_testkit::emulators::MOTO_SFN_ROLE_ARN;
use sameday_testkit::{names, Fauxqs, Kinesalite, MariaDb, Moto};

use crate::common::{sameday_bin, set_aws_env, ConsumerToml, Env, RouteToml, WorkerToml};

const DEFINITION: &str = include_str!("../deploy/statemachine/schedule.asl.json");

/// What `sameday check` printed and how it exited.
struct Outcome {
    code: i32,
    output: String,
}

impl Outcome {
    /// Asserts a line at `level` (ERROR or WARNING) containing every fragment.
    fn assert_line(&self, level: &str, fragments: &[&str]) {
        let found = self
            .output
            .lines()
            .any(|l| l.starts_with(&format!("{level}: ")) && fragments.iter().all(|f| l.contains(f)));
        assert!(found, "no {level} line with {fragments:?} in:\n{}", self.output);
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(self.code, code, "exit code; output:\n{}", self.output);
    }

    fn assert_clean(&self) {
        self.assert_exit(0);
        assert!(
            !self.output.lines().any(|l| l.starts_with("ERROR") || l.starts_with("WARNING")),
            "expected no problem:\n{}",
            self.output
        );
        assert!(self.output.contains("OK (0 warning(s))"), "{}", self.output);
    }
}

async fn check(config: &Path) -> Outcome {
    check_with(config, &[]).await
}

async fn check_with(config: &Path, args: &[&str]) -> Outcome {
    let out = tokio::process::Command::new(sameday_bin())
        .args(["check", "--config"])
        .arg(config)
        .args(args)
        .envs(common::emulator_endpoints())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run sameday check");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Outcome { code: out.status.code().unwrap_or(-1), output }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await)
}

/// Creates a queue and returns its URL.
async fn create_queue(name: &str, attributes: &[(QueueAttributeName, String)]) -> String {
    let mut req = sqs().await.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v);
    }
    req.send().await.expect("create queue").queue_url().unwrap().to_owned()
}

async fn queue_arn(url: &str) -> String {
    let out = sqs()
        .await
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue ARN");
    out.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
}

async fn create_table(name: &str, hash_key: &str) {
    Moto::shared()
        .dynamodb_client()
        .await
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(hash_key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name(hash_key).key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

// ---- reader ----

#[tokio::test(flavor = "multi_thread")]
async fn reader_all_good_with_a_fresh_checkpoint_exits_0() {
    set_aws_env();
    let env = Env::new("pf-reader-ok", 1).await;
    let position: BinlogPosition = common::current_position().await.parse().unwrap();
    let cp = Checkpoint { position, gtid_set: None, commit_ts_ms: now_ms(), saved_at_ms: now_ms() };
    FileCheckpointStore::new(env.checkpoint_path()).force_save(&cp).await.unwrap();
    let out = check(&env.write_config("latest")).await;
    out.assert_clean();
    assert!(out.output.contains("checking the reader config"), "{}", out.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_missing_stream_is_an_error() {
    set_aws_env();
    let env = Env::new("pf-reader-nostream", 1).await;
    let missing = names::unique("pf-missing-stream");
    let text = env.reader_toml("latest").stream(&missing).to_string();
    let out = check(&write(env.dir.path(), "reader.toml", &text)).await;
    out.assert_exit(2);
    out.assert_line("ERROR", &[&format!("Kinesis stream {missing}"), "does not exist", "aws kinesis create-stream"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_claim_check_bucket_missing_is_an_error_and_present_is_clean() {
    set_aws_env();
    let env = Env::new("pf-reader-s3", 1).await;
    let position: BinlogPosition = common::current_position().await.parse().unwrap();
    let cp = Checkpoint { position, gtid_set: None, commit_ts_ms: now_ms(), saved_at_ms: now_ms() };
    FileCheckpointStore::new(env.checkpoint_path()).force_save(&cp).await.unwrap();
    let bucket = names::unique("pf-s3").replace('_', "-");
    // Kinesis and S3 are two emulators: endpoints per service.
    let config = |name: &str| {
        let text =
            env.reader_toml("latest").endpoint_url(None).claim_check(&format!("s3://{bucket}/changes")).to_string();
        write(env.dir.path(), name, &text)
    };
    let out = check(&config("missing.toml")).await;
    out.assert_exit(2);
    out.assert_line(
        "ERROR",
        &[&format!("claim_check.location s3://{bucket}/changes/"), "NoSuchBucket", "s3:PutObject"],
    );
    sameday_testkit::Moto::shared().create_bucket(&bucket).await;
    check(&config("present.toml")).await.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_checkpoint_table_with_the_wrong_key_is_an_error() {
    set_aws_env();
    let env = Env::new("pf-reader-ddb", 1).await;
    let table = names::unique("pf-checkpoints");
    create_table(&table, "id").await;
    // The template points every service at kinesalite; AWS_ENDPOINT_URL_<SERVICE> must decide.
    let text = env.reader_toml("latest").dynamodb_checkpoint(&table, "reader-1").endpoint_url(None).to_string();
    assert!(text.contains("dynamodb") && !text.contains("endpoint_url"), "config template changed:\n{text}");
    let out = check(&write(env.dir.path(), "reader.toml", &text)).await;
    out.assert_exit(2);
    out.assert_line(
        "ERROR",
        &[&format!("DynamoDB table {table} (checkpoint.table)"), "HASH id (S)", "named \"key\"", "create-table"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_checkpoint_in_a_purged_binlog_is_an_error_with_the_recovery() {
    set_aws_env();
    let env = Env::new("pf-reader-purged", 1).await;
    use mysql_async::prelude::Queryable;
    let mut conn = MariaDb::shared().conn().await;
    let (first, _size): (String, u64) = conn.query_first("SHOW BINARY LOGS").await.unwrap().expect("binlog on");
    drop(conn);
    // The file before the oldest one the server still has.
    let (base, n) = first.rsplit_once('.').unwrap();
    let purged = format!("{base}.{:0width$}", n.parse::<u64>().unwrap() - 1, width = n.len());
    let cp = Checkpoint {
        position: BinlogPosition::new(&purged, 4),
        gtid_set: None,
        commit_ts_ms: now_ms() - 3_600_000,
        saved_at_ms: now_ms(),
    };
    FileCheckpointStore::new(env.checkpoint_path()).force_save(&cp).await.unwrap();
    let out = check(&env.write_config("latest")).await;
    out.assert_exit(2);
    out.assert_line(
        "ERROR",
        &[&format!("binlog file {purged}"), "was purged", "sameday positions --set earliest", "nightly batch"],
    );
}

// ---- consumer ----

struct ConsumerSetup {
    dir: tempfile::TempDir,
    stream: String,
    lease_table: String,
}

impl ConsumerSetup {
    async fn new(prefix: &str) -> Self {
        set_aws_env();
        let stream = names::unique(prefix);
        Kinesalite::shared().create_stream(&stream, 1).await;
        Self { dir: tempfile::tempdir().unwrap(), stream, lease_table: names::unique(&format!("{prefix}-leases")) }
    }

    fn config(&self, queue: &str, create_table: bool) -> PathBuf {
        ConsumerToml::new(&self.stream, &self.lease_table, &self.dir.path().join("dead-letters.jsonl"))
            .create_lease_table(create_table)
            .route(RouteToml::new(&["app.*"], &[queue]))
            .write(self.dir.path().join("consumer.toml"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_all_good_exits_0() {
    let s = ConsumerSetup::new("pf-consumer-ok").await;
    create_table(&s.lease_table, "shard_id").await;
    let queue = format!("{}.fifo", names::unique("pf-consumer-ok"));
    create_queue(&queue, &[(QueueAttributeName::FifoQueue, "true".into())]).await;
    let out = check(&s.config(&queue, false)).await;
    out.assert_clean();
    assert!(out.output.contains("checking the consumer config"), "{}", out.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_missing_lease_table_is_an_error() {
    let s = ConsumerSetup::new("pf-consumer-nolease").await;
    let queue = format!("{}.fifo", names::unique("pf-consumer-nolease"));
    create_queue(&queue, &[(QueueAttributeName::FifoQueue, "true".into())]).await;
    let out = check(&s.config(&queue, false)).await;
    out.assert_exit(2);
    out.assert_line(
        "ERROR",
        &[&format!("DynamoDB table {} (leases.table) does not exist", s.lease_table), "AttributeName=shard_id"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_standard_destination_queue_is_a_warning_only() {
    let s = ConsumerSetup::new("pf-consumer-std").await;
    let queue = names::unique("pf-consumer-std");
    create_queue(&queue, &[]).await;
    // create_table = true: the missing lease table is fine, so the warning stands alone.
    let out = check(&s.config(&queue, true)).await;
    out.assert_exit(0);
    out.assert_line("WARNING", &[&queue, "(route.queues) is a standard queue", "use a FIFO queue"]);
    assert!(out.output.contains("OK (1 warning(s))"), "{}", out.output);
}

// ---- worker ----

struct WorkerSetup {
    dir: tempfile::TempDir,
    queue: String,
    state_machine: String,
}

impl WorkerSetup {
    /// A FIFO queue with the given visibility timeout, redriven to a DLQ when `redrive`, and
    /// a STANDARD state machine.
    async fn new(prefix: &str, redrive: bool, visibility_secs: u32) -> Self {
        set_aws_env();
        let mut attrs = vec![
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (QueueAttributeName::VisibilityTimeout, visibility_secs.to_string()),
        ];
        if redrive {
            let dlq = create_queue(
                &format!("{}-dlq.fifo", names::unique(prefix)),
                &[(QueueAttributeName::FifoQueue, "true".into())],
            )
            .await;
            let policy = serde_json::json!({"deadLetterTargetArn": queue_arn(&dlq).await, "maxReceiveCount": "5"});
            attrs.push((QueueAttributeName::RedrivePolicy, policy.to_string()));
        }
        let queue = format!("{}.fifo", names::unique(prefix));
        create_queue(&queue, &attrs).await;
        let state_machine = Moto::shared().create_state_machine(&names::unique(prefix), DEFINITION).await;
        Self { dir: tempfile::tempdir().unwrap(), queue, state_machine }
    }

    /// A worker config with one rule on `db`.schedule and neither `[sqs]` nor `[nightly]`.
    fn rule_only(&self, db: &str, state_machine: &str) -> WorkerToml {
        WorkerToml::new().rule(&serde_json::json!({
            "name": "reminders", "db": db, "table": "schedule", "key_columns": ["id"],
            "due_column": "due_at", "due_type": "datetime", "time_zone": "UTC",
            "input_columns": ["user_id", "action"], "state_machine_arn": state_machine,
        }))
    }

    /// [`Self::rule_only`] reading this setup's queue with a visibility timeout of 60 s.
    fn good_sqs(&self, db: &str, state_machine: &str) -> WorkerToml {
        self.rule_only(db, state_machine).sqs_queue(&self.queue).sqs_visibility_timeout_seconds(60)
    }

    fn write(&self, config: WorkerToml) -> PathBuf {
        config.write(self.dir.path().join("worker.toml"))
    }
}

/// A database with the rules' table; `columns` are its columns besides `id`.
async fn schedule_table(prefix: &str, columns: &str) -> String {
    let db = MariaDb::shared().create_database(prefix).await;
    MariaDb::shared().exec(&format!("CREATE TABLE `{db}`.schedule (id BIGINT PRIMARY KEY, {columns})")).await;
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_all_good_with_nightly_exits_0() {
    let s = WorkerSetup::new("pf-worker-ok", true, 60).await;
    let db = schedule_table("pf_worker_ok", "user_id INT, action VARCHAR(20), due_at DATETIME").await;
    let out = check(&s.write(s.good_sqs(&db, &s.state_machine).nightly_source(MariaDb::shared().port(), 4101))).await;
    out.assert_clean();
    assert!(out.output.contains("checking the worker config"), "{}", out.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_queue_without_redrive_or_dead_letter_queue_is_an_error() {
    let s = WorkerSetup::new("pf-worker-noredrive", false, 60).await;
    let out = check(&s.write(s.good_sqs("app", &s.state_machine))).await;
    out.assert_exit(2);
    out.assert_line("ERROR", &[&s.queue, "has no RedrivePolicy", "forever", "or set sqs.dead_letter_queue"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_visibility_timeout_below_the_processing_bound_is_an_error() {
    let s = WorkerSetup::new("pf-worker-vis", true, 10).await;
    let bound = sameday_worker::run::PROCESSING_BOUND_SECS;
    let out =
        check(&s.write(s.rule_only("app", &s.state_machine).sqs_queue(&s.queue).sqs_visibility_timeout_seconds(10)))
            .await;
    out.assert_exit(2);
    let fix = format!("set it to at least {} s", bound + 1);
    out.assert_line("ERROR", &["sqs.visibility_timeout_seconds is 10 s", "processing bound", &fix]);
    out.assert_line("ERROR", &["the VisibilityTimeout attribute of SQS queue", "is 10 s", &fix]);
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_missing_state_machine_is_an_error() {
    let s = WorkerSetup::new("pf-worker-nosm", true, 60).await;
    let missing = format!("arn:aws:states:us-east-1:123456789012:stateMachine:{}", names::unique("pf-missing"));
    let out = check(&s.write(s.good_sqs("app", &missing))).await;
    out.assert_exit(2);
    out.assert_line("ERROR", &[&missing, "rule reminders", "does not exist", "schedule.asl.json"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_express_state_machine_is_an_error() {
    let s = WorkerSetup::new("pf-worker-express", true, 60).await;
    let express = Moto::shared()
        .sfn_client()
        .await
        .create_state_machine()
        .name(names::unique("pf-express"))
        .definition(DEFINITION)
        .role_arn(MOTO_SFN_ROLE_ARN)
        .r#type(StateMachineType::Express)
        .send()
        .await
        .expect("create EXPRESS state machine")
        .state_machine_arn()
        .to_owned();
    let out = check(&s.write(s.good_sqs("app", &express))).await;
    out.assert_exit(2);
    out.assert_line("ERROR", &[&express, "is EXPRESS, not STANDARD", "5 minutes", "create it as STANDARD"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn nightly_rule_naming_a_missing_column_is_an_error() {
    let s = WorkerSetup::new("pf-nightly-col", true, 60).await;
    // No `action` column, which the rule passes to the execution.
    let db = schedule_table("pf_nightly_col", "user_id INT, due_at DATETIME").await;
    // A nightly-only file (no [sqs]) is a worker config too.
    let out = check(&s.write(s.rule_only(&db, &s.state_machine).nightly_source(MariaDb::shared().port(), 4102))).await;
    out.assert_exit(2);
    out.assert_line(
        "ERROR",
        &[
            "rule reminders",
            &format!("table {db}.schedule"),
            "has no column \"action\" (the rule's input_columns)",
            "fix input_columns",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrecognised_config_asks_for_kind_and_kind_overrides_detection() {
    let s = WorkerSetup::new("pf-kind", true, 60).await;
    // Rules only: neither [sqs] nor [nightly] says it is the worker's.
    let config = s.write(s.rule_only("app", &s.state_machine));
    let out = check(&config).await;
    out.assert_exit(1);
    assert!(out.output.contains("cannot tell which daemon") && out.output.contains("pass --kind"), "{}", out.output);
    let out = check_with(&config, &["--kind", "worker"]).await;
    out.assert_clean();
    assert!(out.output.contains("checking the worker config"), "{}", out.output);
}
