//! The reader's Prometheus metrics (names from `sameday_core::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sameday_core::metrics::{self as names, MetricsRegistry};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOp {
    pub table: String,
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    pub error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Table {
    pub table: String,
}

/// A row, named without its values: its table and a digest of its partition key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RowDigest {
    pub table: String,
    pub key_digest: String,
}

impl RowDigest {
    /// The row of partition key `db.table:key`.
    pub fn of(partition_key: &str) -> Self {
        let (table, _) = partition_key.split_once(':').unwrap_or((partition_key, ""));
        let digest = sameday_core::envelope::fnv1a_128(partition_key.as_bytes()) as u32;
        Self { table: table.to_owned(), key_digest: format!("{digest:08x}") }
    }
}

#[derive(Clone)]
pub struct ReaderMetrics {
    pub rows: Family<TableOp, Counter>,
    pub bytes: Counter,
    pub transactions: Counter,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    /// Undelivered records of the row with the most of them (a hot row's backlog).
    pub key_backlog_max: Gauge,
    /// The same backlog, labelled with the row holding it (one series at most).
    pub key_backlog_deepest: Family<RowDigest, Gauge>,
    pub retention_headroom_seconds: Gauge<f64, AtomicU64>,
    pub schema_changes: Family<Table, Counter>,
    pub dead_letters: Family<Table, Counter>,
    pub claim_checks: Counter,
    pub batch_records: Histogram,
    pub failed_records: Family<Code, Counter>,
    pub retries: Counter,
    pub records: Counter,
    pub aggregated_records: Counter,
}

impl ReaderMetrics {
    pub fn new(registry: &MetricsRegistry) -> Self {
        let m = Self {
            rows: Family::default(),
            bytes: Counter::default(),
            transactions: Counter::default(),
            lag_seconds: Gauge::default(),
            checkpoint_age_seconds: Gauge::default(),
            key_backlog_max: Gauge::default(),
            key_backlog_deepest: Family::default(),
            retention_headroom_seconds: Gauge::default(),
            schema_changes: Family::default(),
            dead_letters: Family::default(),
            claim_checks: Counter::default(),
            batch_records: Histogram::new([1.0, 10.0, 50.0, 100.0, 250.0, 500.0]),
            failed_records: Family::default(),
            retries: Counter::default(),
            records: Counter::default(),
            aggregated_records: Counter::default(),
        };
        registry.register(names::READER_ROWS, "Row changes decoded, by table and operation", m.rows.clone());
        registry.register(names::READER_BYTES, "Bytes of change records produced", m.bytes.clone());
        registry.register(names::READER_TRANSACTIONS, "Transactions committed in the binlog", m.transactions.clone());
        registry.register(
            names::READER_LAG_SECONDS,
            "Seconds between a transaction's commit on the source and its decoding",
            m.lag_seconds.clone(),
        );
        registry.register(
            names::READER_CHECKPOINT_AGE_SECONDS,
            "Seconds since the checkpoint last caught up with delivered records",
            m.checkpoint_age_seconds.clone(),
        );
        registry.register(
            names::READER_KEY_BACKLOG_MAX,
            "Undelivered records of the row (partition key) with the most of them; one row's records go out one at a time, in order",
            m.key_backlog_max.clone(),
        );
        registry.register(
            names::READER_KEY_BACKLOG_DEEPEST,
            "The deepest per-row backlog, labelled with the row holding it (table and a digest of its key, never its values); one series, for the current deepest row",
            m.key_backlog_deepest.clone(),
        );
        registry.register(
            names::READER_RETENTION_HEADROOM_SECONDS,
            "Seconds until the source may purge a binlog the checkpoint needs (retention minus the checkpoint's age; the full retention while the checkpoint's file is being written or, with [archive], every rotated file from it on is archived); absent when binlogs never expire",
            m.retention_headroom_seconds.clone(),
        );
        registry.register(
            names::READER_SCHEMA_CHANGES,
            "DDL statements seen on watched schemas",
            m.schema_changes.clone(),
        );
        registry.register(
            names::READER_DEAD_LETTERS,
            "Rows written to the dead-letter file instead of Kinesis",
            m.dead_letters.clone(),
        );
        registry.register(
            names::READER_CLAIM_CHECKS,
            "Changes larger than the claim-check threshold, stored in S3 and sent as pointers",
            m.claim_checks.clone(),
        );
        registry.register(names::KINESIS_BATCH_RECORDS, "Records per PutRecords request", m.batch_records.clone());
        registry.register(
            names::KINESIS_FAILED_RECORDS,
            "Records PutRecords did not accept, by error code",
            m.failed_records.clone(),
        );
        registry.register(
            names::KINESIS_RETRIES,
            "PutRecords attempts that failed as a whole and were retried",
            m.retries.clone(),
        );
        registry.register(names::KINESIS_RECORDS, "Change records Kinesis acknowledged", m.records.clone());
        registry.register(
            names::KINESIS_AGGREGATED_RECORDS,
            "Kinesis records that carried several changes of one row (KPL aggregation)",
            m.aggregated_records.clone(),
        );
        m
    }
}

impl Default for ReaderMetrics {
    fn default() -> Self {
        Self::new(&MetricsRegistry::default())
    }
}
