//! The whole CDC path as it runs in production, for scenario tests: MariaDB -> `sameday
//! reader` -> Kinesis (kinesalite) -> `sameday consumer` -> SQS FIFO (fauxqs) -> `sameday
//! worker` -> Step Functions (moto, record mode: executions stay RUNNING until stopped, so
//! names and stops can be asserted exactly).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use jiff::Timestamp;
use sameday_consumer::shard_lease::{LeaseTable, SequenceNumber, ShardCheckpoint};
use sameday_core::execution::scheduled_execution;
use sameday_core::rule::ScheduleRule;
use sameday_testkit::{names, Fauxqs, Kinesalite, MariaDb, Moto};
use serde_json::{json, Map, Value};

use super::{current_position, emulator_endpoints, set_aws_env, ConsumerToml, Daemon, Env, RouteToml, WorkerToml};

pub(crate) const DEFINITION: &str = include_str!("../../deploy/statemachine/schedule.asl.json");

pub(crate) struct Pipeline {
    pub(crate) env: Env,
    pub(crate) rule: ScheduleRule,
    pub(crate) queue_url: String,
    pub(crate) dlq_url: String,
    pub(crate) state_machine: String,
    pub(crate) lease_table: String,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) sfn: aws_sdk_sfn::Client,
    pub(crate) reader: Option<Daemon>,
    pub(crate) consumer: Option<Daemon>,
    pub(crate) worker: Option<Daemon>,
    /// Step Functions endpoint the worker uses (moto, or a fault proxy in front of it).
    pub(crate) sfn_endpoint: String,
    /// `s3://bucket/prefix` for the reader's and the consumer's claim-check, when set before
    /// [`Pipeline::start`].
    pub(crate) claim_check: Option<String>,
    /// Kinesis endpoint the reader uses (kinesalite, or a fault proxy in front of it).
    pub(crate) reader_kinesis_endpoint: Option<String>,
}

pub(crate) fn fmt(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

impl Pipeline {
    pub(crate) async fn new(prefix: &str) -> Self {
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
            claim_check: None,
            reader_kinesis_endpoint: None,
            env,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.env.dir.path().join(name)
    }

    pub(crate) fn aws_envs(&self) -> Vec<(&'static str, String)> {
        let mut envs = emulator_endpoints();
        envs.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_SFN");
        envs.push(("AWS_ENDPOINT_URL_SFN", self.sfn_endpoint.clone()));
        envs
    }

    pub(crate) async fn start(&mut self) {
        let start = current_position().await;
        let (reader_cfg, reader_envs) = match &self.claim_check {
            // Kinesis and S3 are two emulators: endpoints per service.
            Some(location) => (
                self.env.reader_toml(&start).endpoint_url(None).claim_check(location).write(self.path("reader.toml")),
                self.aws_envs(),
            ),
            None => {
                let endpoint = self.reader_kinesis_endpoint.clone().unwrap_or_else(|| Kinesalite::shared().endpoint());
                (self.env.reader_toml(&start).endpoint_url(Some(&endpoint)).write(self.path("reader.toml")), Vec::new())
            }
        };
        self.reader = Some(Daemon::spawn("reader", &reader_cfg, self.path("reader.log"), &reader_envs));
        let mut consumer =
            ConsumerToml::new(&self.env.stream, &self.lease_table, &self.path("consumer-dead-letters.jsonl"));
        if let Some(location) = &self.claim_check {
            consumer = consumer.claim_check(location);
        }
        let consumer_cfg = consumer
            .create_lease_table(true)
            .lease_duration_ms(3000)
            .checkpoint_interval_ms(200)
            .route(
                RouteToml::new(&[&format!("{}.schedule", self.env.db)], &[&self.queue_url]).same_day_rule("reminders"),
            )
            .metrics()
            .rule(&self.rule)
            .write(self.path("consumer.toml"));
        self.consumer = Some(Daemon::spawn("consumer", &consumer_cfg, self.path("consumer.log"), &self.aws_envs()));
        self.start_worker();
    }

    /// The worker's (and nightly batch's) config with `rule`.
    pub(crate) fn worker_toml(&self, rule: &ScheduleRule) -> WorkerToml {
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

    pub(crate) fn start_worker(&mut self) {
        let worker_cfg = self.worker_toml(&self.rule).write(self.path("worker.toml"));
        let n = std::fs::read_dir(self.env.dir.path()).unwrap().count();
        self.worker =
            Some(Daemon::spawn("worker", &worker_cfg, self.path(&format!("worker-{n}.log")), &self.aws_envs()));
    }

    /// `sameday SUBCOMMAND --config CONFIG ARGS...` against the pipeline's emulators, run to
    /// its end.
    pub(crate) fn cli(&self, subcommand: &str, config: &std::path::Path, args: &[&str]) -> std::process::Output {
        self.cli_command(subcommand, config, args).output().unwrap_or_else(|e| panic!("run sameday {subcommand}: {e}"))
    }

    /// The command [`Pipeline::cli`] runs, for a test that starts it and waits later.
    pub(crate) fn cli_command(
        &self,
        subcommand: &str,
        config: &std::path::Path,
        args: &[&str],
    ) -> std::process::Command {
        let mut command = std::process::Command::new(super::sameday_bin());
        command.args([subcommand, "--config"]).arg(config).args(args).envs(self.aws_envs());
        command
    }

    /// Sends `body` to the worker's queue in FIFO group `group` (a fresh de-duplication id).
    pub(crate) async fn send_to_worker(&self, group: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_group_id(group)
            .message_deduplication_id(names::unique("d"))
            .message_body(body)
            .send()
            .await
            .expect("SendMessage to the worker's queue");
    }

    /// Receives and deletes the worker's dead letters until `n` arrived (or about 20 s
    /// passed); their `sameday_reason` attributes, sorted.
    pub(crate) async fn dead_letter_reasons(&self, n: usize) -> Vec<String> {
        let mut reasons = Vec::new();
        for _ in 0..20 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .expect("ReceiveMessage from the dead-letter queue");
            for m in out.messages() {
                reasons.push(m.message_attributes().unwrap()["sameday_reason"].string_value().unwrap().to_owned());
                self.sqs
                    .delete_message()
                    .queue_url(&self.dlq_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
            if reasons.len() >= n {
                break;
            }
        }
        reasons.sort();
        reasons
    }

    pub(crate) async fn sql(&self, sql: &str) {
        MariaDb::shared().exec(&format!("SET time_zone = '+00:00'; USE `{}`; {sql}", self.env.db)).await;
    }

    /// The row image the reader produces for these columns (BIGINT/INT numbers, VARCHAR
    /// strings, DATETIME without fraction).
    pub(crate) fn row(id: i64, user: i64, action: &str, due: Timestamp) -> Map<String, Value> {
        json!({"id": id, "user_id": user, "action": action, "due_at": fmt(due), "status": "pending"})
            .as_object()
            .unwrap()
            .clone()
    }

    pub(crate) fn name_of(&self, row: &Map<String, Value>) -> String {
        let due: jiff::civil::DateTime = row["due_at"].as_str().unwrap().parse().unwrap();
        let due = due.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
        scheduled_execution(&self.rule, row, due).unwrap().name
    }

    pub(crate) async fn executions(&self) -> BTreeMap<String, ExecutionStatus> {
        super::list_executions(&self.sfn, &self.state_machine, None).await
    }

    /// Waits until every change written so far went through: all Kinesis records read and
    /// checkpointed by the consumer, and the queue empty with nothing in flight.
    pub(crate) async fn settle(&mut self, changes: usize) {
        let records = self.env.wait_for_records(changes, Duration::from_secs(30)).await.len();
        assert_eq!(records, changes, "the reader wrote exactly the changes made");
        self.drain().await;
    }

    /// [`Pipeline::settle`] after a reader was killed: it may write a change again after a
    /// restart (at least once), so the changes are counted by id.
    pub(crate) async fn settle_after_kills(&mut self, changes: usize) {
        let start = Instant::now();
        loop {
            let ids: std::collections::BTreeSet<String> =
                self.env.records().await.into_iter().map(|(_, env)| env.id).collect();
            if ids.len() >= changes {
                assert_eq!(ids.len(), changes, "the reader wrote exactly the changes made (counted by id)");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "only {} of {changes} changes arrived", ids.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.drain().await;
    }

    /// Waits until every record in the stream is checkpointed by the consumer and the queue
    /// is empty with nothing in flight.
    async fn drain(&mut self) {
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
            let empty = sameday_testkit::queue_depth(&self.sqs, &self.queue_url).await == 0;
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

    /// `kill -9` of one daemon (`reader`, `consumer` or `worker`), then the same daemon again
    /// with the same config: it resumes from its checkpoint or lease.
    pub(crate) fn kill9_and_restart(&mut self, which: &str) {
        let n = std::fs::read_dir(self.env.dir.path()).unwrap().count();
        let log = self.path(&format!("{which}-{n}.log"));
        let config = self.path(&format!("{which}.toml"));
        let envs = if which == "reader" && self.claim_check.is_none() { Vec::new() } else { self.aws_envs() };
        let slot = match which {
            "reader" => &mut self.reader,
            "consumer" => &mut self.consumer,
            _ => &mut self.worker,
        };
        slot.as_mut().expect("running").kill9();
        *slot = Some(Daemon::spawn(which, &config, log, &envs));
    }

    pub(crate) async fn stop(&mut self) {
        for d in [&mut self.worker, &mut self.consumer, &mut self.reader].into_iter().flatten() {
            d.terminate();
        }
    }
}

pub(crate) fn status(execs: &BTreeMap<String, ExecutionStatus>, name: &str) -> ExecutionStatus {
    execs.get(name).cloned().unwrap_or_else(|| panic!("no execution {name}; have {execs:?}"))
}
