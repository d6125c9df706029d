//! The consumer's configuration file (`deploy/consumer.example.toml`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use sameday_core::aws::AwsConfig;
use sameday_core::claim_check::ClaimCheckConfig;
use sameday_core::rule::ScheduleRule;
use serde::Deserialize;

/// `[[route]]`: which tables go to which queues.
pub use crate::route::RouteConfig;
use crate::route::Routes;
use crate::shard_lease::{ShardCheckpoint, DEFAULT_LEASE_DURATION_MS};

fn default_lease_duration() -> u64 {
    DEFAULT_LEASE_DURATION_MS
}
fn default_checkpoint_interval() -> u64 {
    1000
}
fn default_shard_sync() -> u64 {
    10_000
}
fn default_read_limit() -> i32 {
    crate::shard_reader::DEFAULT_READ_LIMIT
}
fn default_in_flight() -> usize {
    4
}
fn default_max_pending() -> usize {
    10_000
}
fn default_shutdown_timeout() -> u64 {
    20_000
}

/// Where shards without a lease start.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    /// The oldest record the stream still holds (no change written since the reader
    /// started is missed; the default).
    #[default]
    TrimHorizon,
    /// Only records written after the consumer first reads the shard.
    Latest,
}

/// `[kinesis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub stream: String,
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// Records per GetRecords call (1..=10000).
    #[serde(default = "default_read_limit")]
    pub read_limit: i32,
}

/// `[leases]`: the DynamoDB table shared by every consumer task of the stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    pub table: String,
    /// How long a lease lasts without renewal: a crashed task's shards move after this.
    #[serde(default = "default_lease_duration")]
    pub duration_ms: u64,
    /// Shard checkpoints are written at most this often per shard (and on shutdown).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_ms: u64,
    /// How often ListShards is consulted for new (child) shards.
    #[serde(default = "default_shard_sync")]
    pub shard_sync_interval_ms: u64,
    /// This task's name in the lease table; default: host name, process id and a random
    /// suffix (unique per process, so a restarted task never mistakes old leases for live).
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Create the table (on-demand) when missing; for local set-ups. Production tables
    /// come from CloudFormation.
    #[serde(default)]
    pub create_table: bool,
}

/// `[sqs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// Concurrent SendMessageBatch requests per shard.
    #[serde(default = "default_in_flight")]
    pub max_in_flight_requests: usize,
    /// Messages read from Kinesis but not yet accepted by SQS, per shard, before reading
    /// pauses.
    #[serde(default = "default_max_pending")]
    pub max_pending_messages: usize,
    /// Fold a row's changes that wait behind its message in flight into one message (first
    /// `before`, last `after`), which the worker treats as the run of changes it stands for.
    /// FIFO queues only. Turn off for queue readers that need every change.
    #[serde(default = "default_coalesce")]
    pub coalesce: bool,
}

fn default_coalesce() -> bool {
    true
}

impl Default for SqsConfig {
    fn default() -> Self {
        Self {
            max_in_flight_requests: default_in_flight(),
            max_pending_messages: default_max_pending(),
            coalesce: default_coalesce(),
        }
    }
}

/// `[dead_letter]`: where records that cannot be forwarded go (one of the two).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A JSON-lines file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// An SQS queue (name or URL).
    #[serde(default)]
    pub queue: Option<String>,
}

/// `[metrics]`, served on port 9465 by default.
pub type MetricsConfig = sameday_core::health::MetricsConfig<9465>;

/// The whole consumer config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    pub kinesis: StreamConfig,
    pub leases: LeaseConfig,
    #[serde(default)]
    pub sqs: SqsConfig,
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<ScheduleRule>,
    pub dead_letter: DeadLetterConfig,
    /// On SIGTERM, pending messages get this long to reach SQS before the shard's
    /// checkpoint is written and its lease released (keep below the ECS `stopTimeout`).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_ms: u64,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    /// Changes whose message body would pass the queues' size limit go through S3
    /// (`docs/envelope.md`); without it they are dead-lettered.
    #[serde(default)]
    pub claim_check: Option<ClaimCheckConfig>,
}

impl ConsumerConfig {
    /// Checks what serde cannot; every message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.kinesis.stream.is_empty() {
            return Err("kinesis.stream is empty".into());
        }
        if !(1..=10_000).contains(&self.kinesis.read_limit) {
            return Err(format!("kinesis.read_limit = {} is outside 1..=10000", self.kinesis.read_limit));
        }
        if self.leases.table.is_empty() {
            return Err("leases.table is empty".into());
        }
        if !(1_000..=600_000).contains(&self.leases.duration_ms) {
            return Err(format!("leases.duration_ms = {} is outside 1000..=600000", self.leases.duration_ms));
        }
        // At most 5 checkpoint writes per shard and second, and well inside a lease.
        let ckpt = self.leases.checkpoint_interval_ms;
        if ckpt < 200 || ckpt > self.leases.duration_ms / 2 {
            return Err(format!(
                "leases.checkpoint_interval_ms = {ckpt} must be at least 200 and at most half of leases.duration_ms ({})",
                self.leases.duration_ms
            ));
        }
        if self.leases.shard_sync_interval_ms < 1_000 {
            return Err(
                "leases.shard_sync_interval_ms must be at least 1000 (ListShards allows 100 calls/s per account)"
                    .into(),
            );
        }
        if let Some(id) = &self.leases.worker_id {
            if id.is_empty() || id.len() > 256 {
                return Err("leases.worker_id must be 1..=256 characters".into());
            }
        }
        if !(1..=64).contains(&self.sqs.max_in_flight_requests) {
            return Err(format!("sqs.max_in_flight_requests = {} is outside 1..=64", self.sqs.max_in_flight_requests));
        }
        if self.sqs.max_pending_messages < 10 {
            return Err("sqs.max_pending_messages must be at least 10".into());
        }
        if self.routes.is_empty() {
            return Err("no [[route]]: nothing would be forwarded".into());
        }
        let mut names = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate().map_err(|e| format!("rule[{i}]: {e}"))?;
            if !names.insert(rule.name.as_str()) {
                return Err(format!("rule[{i}]: the name {:?} is used twice", rule.name));
            }
        }
        Routes::new(&self.routes, &self.rules, |_| 0)?;
        if let Some(cc) = &self.claim_check {
            cc.validate(Some(crate::sqs::MAX_BATCH_BYTES))?;
        }
        match (&self.dead_letter.path, &self.dead_letter.queue) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err("dead_letter: set exactly one of path (a JSON-lines file) or queue (an SQS queue)".into()),
        }
        Ok(())
    }

    /// Every destination queue, in first-mention order (route indexes point into it).
    pub fn queue_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for q in self.routes.iter().flat_map(|r| &r.queues) {
            if !out.contains(q) {
                out.push(q.clone());
            }
        }
        out
    }

    pub(crate) fn initial_checkpoint(&self) -> ShardCheckpoint {
        match self.kinesis.initial_position {
            InitialPosition::TrimHorizon => ShardCheckpoint::TrimHorizon,
            InitialPosition::Latest => ShardCheckpoint::Latest,
        }
    }
}

impl sameday_core::daemon::DaemonConfig for ConsumerConfig {
    fn check(&self) -> Result<(), String> {
        self.validate()
    }

    fn metrics_listen(&self) -> std::net::SocketAddr {
        self.metrics.listen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConsumerConfig, String> {
        let cfg: ConsumerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn the_example_config_is_valid() {
        let cfg = parse(include_str!("../../../deploy/consumer.example.toml")).unwrap();
        assert_eq!(cfg.kinesis.stream, "sameday-changes");
        assert_eq!(cfg.queue_names(), ["sameday-schedules.fifo"]);
        assert_eq!(cfg.rules.len(), 1);
    }

    #[test]
    fn config_errors_name_the_field() {
        let base = include_str!("../../../deploy/consumer.example.toml");
        let cases = [
            ("checkpoint_interval_ms = 1000", "checkpoint_interval_ms = 50", "leases.checkpoint_interval_ms"),
            ("same_day_rule = \"actions\"", "same_day_rule = \"nope\"", "which no [[rule]] defines"),
            ("path = \"/var/lib/sameday/consumer-dead-letters.jsonl\"", "", "dead_letter: set exactly one"),
            ("time_zone = \"Europe/Berlin\"", "time_zone = \"Mars/Olympus\"", "is not an IANA time zone"),
            ("read_limit = 1000", "read_limit = 0", "kinesis.read_limit"),
        ];
        for (from, to, expect) in cases {
            assert!(base.contains(from), "example lacks {from}");
            let err = parse(&base.replace(from, to)).unwrap_err();
            assert!(err.contains(expect), "{from} -> {to}: {err}");
        }
    }
}
