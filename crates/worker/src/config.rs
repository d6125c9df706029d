//! The worker's (and nightly batch's) configuration file (`deploy/worker.example.toml`).

use std::collections::BTreeSet;

use sameday_core::aws::AwsConfig;
use sameday_core::rule::ScheduleRule;
use sameday_mysql::SourceConfig;
use serde::Deserialize;

use crate::rate::RateConfig;

fn default_wait() -> i32 {
    20
}
fn default_visibility() -> i32 {
    60
}
fn default_in_flight() -> usize {
    64
}
fn default_shutdown_timeout() -> u64 {
    20_000
}
fn default_page_size() -> u32 {
    1000
}
fn default_concurrency() -> usize {
    16
}

/// `[sqs]`: the queue the consumer fills.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Queue name or URL.
    pub queue: String,
    /// Long-poll wait per ReceiveMessage (1..=20 s).
    #[serde(default = "default_wait")]
    pub wait_time_seconds: i32,
    /// Visibility timeout requested per receive; extended while a message is still being
    /// worked on (so it should exceed one Step Functions round trip, not a whole backlog).
    #[serde(default = "default_visibility")]
    pub visibility_timeout_seconds: i32,
    /// Messages received but not yet deleted, at most.
    #[serde(default = "default_in_flight")]
    pub max_in_flight_messages: usize,
    /// Poison messages (not an envelope, no rule, unreadable due, name conflict) are sent
    /// here at once and deleted from the queue. Without it they are left for the queue's
    /// redrive policy (`maxReceiveCount`) to move to its DLQ.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
}

/// `[nightly]`: where the batch reads the rules' tables (preferably a read replica).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NightlyConfig {
    pub source: SourceConfig,
    /// The primary (usually the reader's `[source]`). After starting a page, the batch reads
    /// the page's rows again here and stops what a change made meanwhile stale; a lagging
    /// `source` replica cannot show those changes. Default: `source`, which is right only
    /// when `source` is the primary.
    #[serde(default)]
    pub primary: Option<SourceConfig>,
    /// Rows per keyset page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// StartExecution calls in flight at once (the rate limiter still applies).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl NightlyConfig {
    /// Where the batch re-reads the rows it started.
    pub fn verify_source(&self) -> &SourceConfig {
        self.primary.as_ref().unwrap_or(&self.source)
    }
}

/// `[metrics]`, served on port 9466 by default.
pub type MetricsConfig = sameday_core::health::MetricsConfig<9466>;

/// `[step_functions]`: quotas (token buckets; adaptive on throttling).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFunctionsConfig {
    #[serde(default)]
    pub start_rate: RateConfig,
    #[serde(default)]
    pub stop_rate: RateConfig,
    #[serde(default)]
    pub describe_rate: RateConfig,
    /// ListExecutions (the nightly batch's and reconcile's listing of RUNNING executions).
    /// Default: Step Functions' default quota outside us-east-1, a bucket of 100 refilled at 2
    /// per second.
    #[serde(default = "default_list_rate")]
    pub list_rate: RateConfig,
}

fn default_list_rate() -> RateConfig {
    RateConfig { rate_per_second: 2.0, burst: 100, ..RateConfig::default() }
}

impl Default for StepFunctionsConfig {
    fn default() -> Self {
        Self {
            start_rate: RateConfig::default(),
            stop_rate: RateConfig::default(),
            describe_rate: RateConfig::default(),
            list_rate: default_list_rate(),
        }
    }
}

/// The whole worker config file (also read by `sameday nightly`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Needed by `sameday worker`; the nightly batch ignores it.
    #[serde(default)]
    pub sqs: Option<QueueConfig>,
    #[serde(rename = "rule")]
    pub rules: Vec<ScheduleRule>,
    #[serde(default)]
    pub step_functions: StepFunctionsConfig,
    /// Needed by `sameday nightly`.
    #[serde(default)]
    pub nightly: Option<NightlyConfig>,
    /// On SIGTERM, messages being worked on get this long to finish; the rest become
    /// visible again for another worker (keep below the ECS stopTimeout).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_ms: u64,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub aws: AwsConfig,
}

impl WorkerConfig {
    /// Checks what serde cannot; every message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err("no [[rule]]: the worker would have nothing to schedule".into());
        }
        let mut names = BTreeSet::new();
        let mut tables = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate().map_err(|e| format!("rule[{i}]: {e}"))?;
            sameday_core::execution::execution_arn(&rule.state_machine_arn, "x")
                .map_err(|e| format!("rule[{i}].state_machine_arn: {e}"))?;
            if !names.insert(rule.name.as_str()) {
                return Err(format!("rule[{i}]: the name {:?} is used twice", rule.name));
            }
            if !tables.insert((rule.db.as_str(), rule.table.as_str())) {
                return Err(format!(
                    "rule[{i}]: {}.{} already has a rule; one rule per table (the worker picks the rule by table)",
                    rule.db, rule.table
                ));
            }
        }
        if let Some(q) = &self.sqs {
            if q.queue.is_empty() {
                return Err("sqs.queue is empty".into());
            }
            if !(1..=20).contains(&q.wait_time_seconds) {
                return Err(format!("sqs.wait_time_seconds = {} is outside 1..=20", q.wait_time_seconds));
            }
            if !(5..=43_200).contains(&q.visibility_timeout_seconds) {
                return Err(format!(
                    "sqs.visibility_timeout_seconds = {} is outside 5..=43200",
                    q.visibility_timeout_seconds
                ));
            }
            if !(1..=10_000).contains(&q.max_in_flight_messages) {
                return Err(format!("sqs.max_in_flight_messages = {} is outside 1..=10000", q.max_in_flight_messages));
            }
        }
        if let Some(n) = &self.nightly {
            n.source.validate("nightly.source")?;
            if let Some(primary) = &n.primary {
                primary.validate("nightly.primary")?;
            }
            if !(1..=100_000).contains(&n.page_size) {
                return Err(format!("nightly.page_size = {} is outside 1..=100000", n.page_size));
            }
            if !(1..=1_000).contains(&n.concurrency) {
                return Err(format!("nightly.concurrency = {} is outside 1..=1000", n.concurrency));
            }
        }
        for (field, rate) in [
            ("step_functions.start_rate", &self.step_functions.start_rate),
            ("step_functions.stop_rate", &self.step_functions.stop_rate),
            ("step_functions.describe_rate", &self.step_functions.describe_rate),
            ("step_functions.list_rate", &self.step_functions.list_rate),
        ] {
            rate.validate().map_err(|e| format!("{field}: {e}"))?;
        }
        Ok(())
    }

    /// The rule for a change of `db.table`.
    pub fn rule_for(&self, db: &str, table: &str) -> Option<&ScheduleRule> {
        self.rules.iter().find(|r| r.db == db && r.table == table)
    }
}

impl sameday_core::daemon::DaemonConfig for WorkerConfig {
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

    fn parse(text: &str) -> Result<WorkerConfig, String> {
        let cfg: WorkerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn the_example_config_is_valid() {
        let cfg = parse(include_str!("../../../deploy/worker.example.toml")).unwrap();
        assert_eq!(cfg.sqs.as_ref().unwrap().queue, "sameday-schedules.fifo");
        assert_eq!(cfg.nightly.as_ref().unwrap().page_size, 1000);
        assert!(cfg.rule_for("app", "scheduled_actions").is_some());
    }

    #[test]
    fn config_errors_name_the_field() {
        let base = include_str!("../../../deploy/worker.example.toml");
        let cases = [
            ("wait_time_seconds = 20", "wait_time_seconds = 30", "sqs.wait_time_seconds"),
            ("page_size = 1000", "page_size = 0", "nightly.page_size"),
            ("stateMachine:sameday-schedule", "activity:x", "state_machine_arn"),
            ("rate_per_second = 50", "rate_per_second = -1", "step_functions.start_rate"),
            ("due_column = \"due_at\"", "due_column = \"\"", "due_column"),
        ];
        for (from, to, expect) in cases {
            assert!(base.contains(from), "example lacks {from}");
            let err = parse(&base.replace(from, to)).unwrap_err();
            assert!(err.contains(expect), "{from} -> {to}: {err}");
        }
    }
}
