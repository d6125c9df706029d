//! What the decoder emits, in binlog order: row records, commits (the only positions ever
//! checkpointed), dead letters, schema changes and caught-up marks.

use std::sync::Arc;

use sameday_core::envelope::Op;
use sameday_core::{BinlogPosition, GtidSet};

/// One change record, encoded as the wire envelope.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub id: String,
    pub op: Op,
    /// `db.table`, for metrics and dead-letter lines.
    pub table: Arc<str>,
    /// Where the rows event sits (for error messages); shared by the event's rows.
    pub position: Arc<BinlogPosition>,
}

/// A transaction boundary: everything before it is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The position after the transaction's last event: where to resume.
    pub next: BinlogPosition,
    pub gtid_set: Option<GtidSet>,
    /// Commit time, ms since the epoch.
    pub ts_ms: u64,
    /// Rows of watched tables in the transaction.
    pub rows: u64,
}

/// A row (or event) that could not be turned into a record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub table: String,
    pub position: BinlogPosition,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub enum Output {
    Row(Record),
    Commit(Commit),
    DeadLetter(DeadLetter),
    /// A DDL statement on a watched table (the stream keeps going; counted and logged).
    /// Never its text, which may hold secrets: its kind and table only.
    SchemaChange {
        db: String,
        /// `ALTER TABLE`, `DROP DATABASE`, ...
        kind: String,
        table: Option<String>,
        position: BinlogPosition,
    },
    /// The server sent a heartbeat: it has nothing newer, so replication lag is zero.
    CaughtUp,
}

/// Says that a watched schema changed: its kind and table, never the statement's text.
pub(crate) fn log_schema_change(db: &str, kind: &str, table: Option<&str>, position: &BinlogPosition) {
    let table = table.map(|t| format!("{db}.{t}")).unwrap_or_default();
    tracing::warn!(db, table = %table, kind, %position, "schema change on a watched schema; the stream continues with the new table definition");
}
