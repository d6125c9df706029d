//! The claim-check: a change too large for a Kinesis record or an SQS message travels as a
//! small pointer, and its full envelope waits in S3 (`docs/envelope.md`, "Large changes").
//!
//! - The pointer is the change's own envelope with `before`/`after` null and `claim_check`
//!   set, so it keeps the change's id, key, op, position and transaction: it takes the same
//!   partition key, FIFO group and de-duplication id, and therefore the same place in its
//!   row's order, as the change itself would.
//! - The object is written *before* the pointer is handed on, under a key derived from the
//!   event id only ([`object_name`]), so a replay or a retry after a crash writes the same
//!   key with the same bytes, and no pointer ever names an object that was not written.
//! - Reading a pointer checks the object's size, SHA-256 and event id: an object that was
//!   replaced, truncated or expired is an error that names it, never a wrong change.

use crate::aws::Retry;
use crate::envelope::{ChangeEnvelope, ClaimCheck, EnvelopeError};
use crate::s3::{ObjectStore, S3Error, S3Location};
use serde::Deserialize;

/// Content type of the stored envelopes.
const CONTENT_TYPE: &str = "application/json";

/// Room left for the pointer under the stream's record limit: the default threshold is the
/// limit minus this (a pointer is about 500 bytes plus the key, twice).
pub const POINTER_HEADROOM_BYTES: usize = 16 * 1024;

/// `[claim_check]` in the reader's and the consumer's config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimCheckConfig {
    /// `s3://bucket/prefix/` for the large changes' objects.
    pub location: S3Location,
    /// Changes larger than this go through S3. Default: the limit minus 16 KiB, where the
    /// limit is the stream's maximum record size (reader; DescribeStreamSummary) or the
    /// queues' maximum message size (consumer; GetQueueAttributes).
    #[serde(default)]
    pub threshold_bytes: Option<usize>,
}

impl ClaimCheckConfig {
    pub fn validate(&self, max_record_bytes: Option<usize>) -> Result<(), String> {
        if let Some(t) = self.threshold_bytes {
            let max = max_record_bytes.unwrap_or(10 * 1024 * 1024);
            if !(4096..=max.saturating_sub(POINTER_HEADROOM_BYTES)).contains(&t) {
                return Err(format!(
                    "claim_check.threshold_bytes = {t} is outside 4096..={} (the size limit minus room for the pointer)",
                    max.saturating_sub(POINTER_HEADROOM_BYTES)
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimCheckError {
    /// The record to store or the stored object is not a sameday envelope.
    #[error("claim-check: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("claim-check: {0}")]
    S3(#[from] S3Error),
    /// The object a pointer names is gone (expired by the bucket's lifecycle rule, deleted).
    #[error(
        "claim-check: change {id}: {url} does not exist (expired by the bucket's lifecycle rule, or deleted); \
         replay the change's binlog range (sameday replay) and run sameday reconcile"
    )]
    Missing { id: String, url: String },
    /// The object exists but is not the change the pointer names.
    #[error("claim-check: change {id}: {url} {what}")]
    Mismatch { id: String, url: String, what: String },
}

impl ClaimCheckError {
    /// Whether trying again may help (S3 throttling, 5xx, network).
    pub fn retry(&self) -> Retry {
        match self {
            Self::S3(e) => e.retry,
            _ => Retry::Permanent,
        }
    }
}

/// The object name (relative to the claim-check prefix) of the change with event id `id`.
///
/// Event ids use digits, letters, `-`, `:`, `/` (docs/envelope.md), all safe in S3 keys; the
/// `/` separators group one transaction's changes under one folder.
pub fn object_name(id: &str) -> String {
    format!("{id}.json")
}

/// Stores `record` (one change's envelope JSON) under `store` and returns its pointer's JSON.
pub async fn check_in(store: &ObjectStore, record: Vec<u8>) -> Result<Vec<u8>, ClaimCheckError> {
    let mut pointer = ChangeEnvelope::from_slice(&record)?;
    if pointer.claim_check.is_some() {
        // Already a pointer (a consumer forwarding the reader's): it stays as it is.
        return Ok(record);
    }
    let bytes = record.len() as u64;
    let (key, sha256) = store.put(&object_name(&pointer.id), record, CONTENT_TYPE).await?;
    pointer.before = None;
    pointer.after = None;
    pointer.claim_check = Some(ClaimCheck { bucket: store.location().bucket.clone(), key, bytes, sha256 });
    Ok(serde_json::to_vec(&pointer).expect("an envelope always serializes"))
}

/// The full change `pointer` names, read from the pointer's own bucket. A change that is not
/// a pointer is returned as it is.
pub async fn check_out(s3: &aws_sdk_s3::Client, pointer: ChangeEnvelope) -> Result<ChangeEnvelope, ClaimCheckError> {
    let Some(cc) = &pointer.claim_check else {
        return Ok(pointer);
    };
    let at = ObjectStore::new(s3.clone(), S3Location { bucket: cc.bucket.clone(), prefix: String::new() });
    let url = at.location().url_of(&cc.key);
    let mismatch = |what: String| ClaimCheckError::Mismatch { id: pointer.id.clone(), url: url.clone(), what };
    let body = at
        .get(&cc.key, Some(&cc.sha256))
        .await?
        .ok_or_else(|| ClaimCheckError::Missing { id: pointer.id.clone(), url: url.clone() })?;
    if body.len() as u64 != cc.bytes {
        return Err(mismatch(format!("holds {} bytes, the pointer says {}", body.len(), cc.bytes)));
    }
    let full = ChangeEnvelope::from_slice(&body)?;
    if full.id != pointer.id || full.claim_check.is_some() {
        return Err(mismatch(format!("holds change {:?}, not this change", full.id)));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_event_ids() {
        assert_eq!(object_name("0-1-4/0/0"), "0-1-4/0/0.json");
        assert_eq!(
            object_name("3E11FA47-71CA-11E1-9E33-C80AA9429562:23/1/7/d"),
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:23/1/7/d.json"
        );
    }

    #[test]
    fn pointers_serialize_without_images_and_read_back() {
        let env: ChangeEnvelope = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "0-1-7/0/0", "op": "update", "db": "app", "table": "schedule",
            "key": {"id": 5}, "before": null, "after": null,
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 400, "gtid": "0-1-7", "ts_ms": 1},
            "txn": {"id": "0-1-7", "index": 0},
            "claim_check": {"bucket": "b", "key": "changes/0-1-7/0/0.json", "bytes": 7, "sha256": "ab"}
        }))
        .unwrap();
        let text = serde_json::to_string(&env).unwrap();
        assert!(text.contains(r#""claim_check":{"bucket":"b""#), "{text}");
        assert_eq!(ChangeEnvelope::from_slice(text.as_bytes()).unwrap(), env);
        let mut plain = env.clone();
        plain.claim_check = None;
        assert!(!serde_json::to_string(&plain).unwrap().contains("claim_check"));
    }
}
