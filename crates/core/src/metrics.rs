//! Metric names (one place, `sameday_<component>_<name>_<unit>`) and the shared registry
//! that `/metrics` serves in the Prometheus text format.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry};

pub const READER_ROWS: &str = "sameday_reader_rows";
pub const READER_BYTES: &str = "sameday_reader_bytes";
pub const READER_TRANSACTIONS: &str = "sameday_reader_transactions";
pub const READER_LAG_SECONDS: &str = "sameday_reader_lag_seconds";
pub const READER_CHECKPOINT_AGE_SECONDS: &str = "sameday_reader_checkpoint_age_seconds";
pub const READER_KEY_BACKLOG_MAX: &str = "sameday_reader_key_backlog_max";
pub const READER_KEY_BACKLOG_DEEPEST: &str = "sameday_reader_key_backlog_deepest";
pub const READER_RETENTION_HEADROOM_SECONDS: &str = "sameday_reader_binlog_retention_headroom_seconds";
pub const READER_SCHEMA_CHANGES: &str = "sameday_reader_schema_changes";
pub const READER_SKIPPED_ROWS: &str = "sameday_reader_skipped_rows";
pub const READER_DEAD_LETTERS: &str = "sameday_reader_dead_letters";
pub const READER_CLAIM_CHECKS: &str = "sameday_reader_claim_checks";
pub const ARCHIVE_FILES: &str = "sameday_archive_files";
pub const ARCHIVE_BYTES: &str = "sameday_archive_bytes";
pub const ARCHIVE_PENDING_FILES: &str = "sameday_archive_pending_files";
pub const ARCHIVE_MISSING_FILES: &str = "sameday_archive_missing_files";
pub const ARCHIVE_NEWEST_FILE_AGE_SECONDS: &str = "sameday_archive_newest_file_age_seconds";
pub const ARCHIVE_RETENTION_HEADROOM_SECONDS: &str = "sameday_archive_binlog_retention_headroom_seconds";
pub const ARCHIVE_ERRORS: &str = "sameday_archive_errors";
pub const KINESIS_BATCH_RECORDS: &str = "sameday_kinesis_batch_records";
pub const KINESIS_FAILED_RECORDS: &str = "sameday_kinesis_failed_records";
pub const KINESIS_RETRIES: &str = "sameday_kinesis_retries";
pub const KINESIS_RECORDS: &str = "sameday_kinesis_records";
pub const KINESIS_AGGREGATED_RECORDS: &str = "sameday_kinesis_aggregated_records";
pub const WORKER_MESSAGES: &str = "sameday_worker_messages";
pub const WORKER_COALESCED: &str = "sameday_worker_coalesced";
pub const WORKER_EFFECTS: &str = "sameday_worker_effects";
pub const WORKER_SKIPPED: &str = "sameday_worker_skipped_changes";
pub const WORKER_DEAD_LETTERS: &str = "sameday_worker_dead_letters";
pub const WORKER_ERRORS: &str = "sameday_worker_errors";
pub const WORKER_IN_FLIGHT: &str = "sameday_worker_in_flight_messages";
pub const WORKER_CHANGE_AGE_SECONDS: &str = "sameday_worker_change_age_seconds";
pub const WORKER_PROCESSING_SECONDS: &str = "sameday_worker_processing_seconds";
pub const CONSUMER_RECORDS: &str = "sameday_consumer_records";
pub const CONSUMER_FORWARDED: &str = "sameday_consumer_forwarded_messages";
pub const CONSUMER_SKIPPED: &str = "sameday_consumer_skipped_records";
pub const CONSUMER_COALESCED: &str = "sameday_consumer_coalesced";
pub const CONSUMER_DEAD_LETTERS: &str = "sameday_consumer_dead_letters";
pub const CONSUMER_SQS_REQUESTS: &str = "sameday_consumer_sqs_requests";
pub const CONSUMER_SQS_RETRIES: &str = "sameday_consumer_sqs_retried_messages";
pub const CONSUMER_CHECKPOINTS: &str = "sameday_consumer_checkpoint_writes";
pub const CONSUMER_LEASE_RENEWALS: &str = "sameday_consumer_lease_renewals";
pub const CONSUMER_LEASES_HELD: &str = "sameday_consumer_leases_held";
pub const CONSUMER_LEASE_EVENTS: &str = "sameday_consumer_lease_events";
pub const CONSUMER_MILLIS_BEHIND: &str = "sameday_consumer_millis_behind_latest";
pub const CONSUMER_ARRIVAL_LAG_SECONDS: &str = "sameday_consumer_arrival_lag_seconds";

/// A registry shared by every component of one process.
#[derive(Clone, Default)]
pub struct MetricsRegistry(Arc<Mutex<Registry>>);

impl MetricsRegistry {
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.0.lock().expect("metrics registry poisoned").register(name, help, metric);
    }

    /// The registry in Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.0.lock().expect("metrics registry poisoned")).expect("writing to a String cannot fail");
        out
    }
}
