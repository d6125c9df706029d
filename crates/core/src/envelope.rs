//! The versioned JSON envelope of one row change: the contract between the reader, the
//! consumer and the worker. `docs/envelope.md` documents every field and the column type
//! mapping; this module is the typed view the later stages deserialize into.
//!
//! Guarantees carried by the envelope:
//! - `id` is unique per row change and identical when the same binlog range is read again
//!   (live, after a restart, or by `sameday replay` from files), so every later stage can
//!   de-duplicate on it.
//! - `key` holds the primary key columns; the same key always maps to the same Kinesis
//!   partition key, which is what keeps one row's changes in commit order.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Current envelope version; bumped on any incompatible change.
pub const ENVELOPE_VERSION: u32 = 1;

/// The longest partition key Kinesis accepts.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// Where the change sits in the source's binlog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInfo {
    pub server_id: u32,
    /// Binlog file and offset of the rows event that carried this row.
    pub file: String,
    pub pos: u64,
    /// The transaction's GTID (`0-1-270` or `uuid:23`), when the server assigns them.
    #[serde(default)]
    pub gtid: Option<String>,
    /// Commit time in milliseconds since the epoch (seconds precision on MariaDB).
    pub ts_ms: u64,
}

/// The transaction a change belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnInfo {
    /// GTID when available, otherwise `file:pos` of the transaction's first event.
    pub id: String,
    /// 0-based index of this row among the rows the reader emitted for the transaction.
    pub index: u64,
}

/// One row change as it travels through Kinesis and SQS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEnvelope {
    pub v: u32,
    pub id: String,
    pub op: Op,
    pub db: String,
    pub table: String,
    pub key: Map<String, Value>,
    pub before: Option<Map<String, Value>>,
    pub after: Option<Map<String, Value>>,
    pub source: SourceInfo,
    pub txn: TxnInfo,
    /// Images the row passed through between `before` and `after` when several changes were
    /// folded into this one (`crate::coalesce`): the worker stops their executions too, so a
    /// fold is right even when its first change had been applied already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Map<String, Value>>,
    /// Set on a claim-check pointer: the full change (this envelope with its images) is the
    /// S3 object named here, and `before`/`after` are null (`crate::claim_check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_check: Option<ClaimCheck>,
}

/// Where a claim-checked change is kept: the object holds the change's full envelope JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimCheck {
    pub bucket: String,
    pub key: String,
    /// Size of the object's body.
    pub bytes: u64,
    /// Hex SHA-256 of the object's body; a reader refuses any other content.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a sameday change envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported envelope version {0} (this build reads version {ENVELOPE_VERSION})")]
    Version(u32),
}

impl ChangeEnvelope {
    /// Parses and checks one wire record.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let env: Self = serde_json::from_slice(bytes)?;
        if env.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        Ok(env)
    }

    /// The Kinesis partition key of this change's row.
    pub fn partition_key(&self) -> String {
        let mut key_text = String::new();
        for (i, v) in self.key.values().enumerate() {
            if i > 0 {
                key_text.push(',');
            }
            push_key_value(&mut key_text, v);
        }
        partition_key(&self.db, &self.table, &key_text)
    }
}

fn push_key_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

/// `db.table:<key values>`, shortened to a stable digest when longer than Kinesis allows.
///
/// The digest keeps the key deterministic, so a long key still always lands on one shard.
pub fn partition_key(db: &str, table: &str, key_text: &str) -> String {
    let mut out = String::with_capacity(db.len() + table.len() + key_text.len() + 2);
    push_partition_key(&mut out, db, table, key_text);
    out
}

/// [`partition_key`], appended to `out` (the reader reuses one buffer per record).
pub fn push_partition_key(out: &mut String, db: &str, table: &str, key_text: &str) {
    let start = out.len();
    out.push_str(db);
    out.push('.');
    out.push_str(table);
    out.push(':');
    out.push_str(key_text);
    let full = &out[start..];
    // Bytes bound characters: most keys are decided without counting.
    if full.len() <= MAX_PARTITION_KEY_CHARS || full.chars().count() <= MAX_PARTITION_KEY_CHARS {
        return;
    }
    let digest = fnv1a_128(full.as_bytes());
    out.truncate(start);
    out.extend(db.chars().chain(std::iter::once('.')).chain(table.chars()).take(MAX_PARTITION_KEY_CHARS - 34));
    out.push_str(":#");
    out.push_str(&format!("{digest:032x}"));
}

/// FNV-1a, 128-bit: tiny, stable across releases and platforms (unlike `DefaultHasher`).
pub fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for &b in bytes {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChangeEnvelope {
        serde_json::from_value(serde_json::json!({
            "v": 1, "id": "0-1-7:1:0", "op": "update", "db": "app", "table": "schedule",
            "key": {"id": 5}, "before": {"id": 5, "due": "2026-01-01T00:00:00"},
            "after": {"id": 5, "due": "2026-01-02T00:00:00"},
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 400, "gtid": "0-1-7", "ts_ms": 1000},
            "txn": {"id": "0-1-7", "index": 0}
        }))
        .unwrap()
    }

    #[test]
    fn envelope_round_trips_and_checks_version() {
        let env = sample();
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(ChangeEnvelope::from_slice(&bytes).unwrap(), env);
        let mut v2 = env.clone();
        v2.v = 2;
        let err = ChangeEnvelope::from_slice(&serde_json::to_vec(&v2).unwrap()).unwrap_err();
        assert!(err.to_string().contains("unsupported envelope version 2"));
        assert!(ChangeEnvelope::from_slice(b"{\"v\":1}").is_err());
    }

    #[test]
    fn partition_key_is_table_and_key() {
        assert_eq!(sample().partition_key(), "app.schedule:5");
    }

    #[test]
    fn long_partition_keys_are_digested_deterministically() {
        let long = "x".repeat(400);
        let a = partition_key("db", "t", &long);
        assert!(a.chars().count() <= MAX_PARTITION_KEY_CHARS);
        assert_eq!(a, partition_key("db", "t", &long));
        assert_ne!(a, partition_key("db", "t", &"y".repeat(400)));
        assert!(a.starts_with("db.t:#"));
    }
}
