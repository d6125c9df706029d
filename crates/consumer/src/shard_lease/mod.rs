//! Shard leases in DynamoDB: which consumer task reads which Kinesis shard, and how far
//! it got, shared by every task like the Kinesis Client Library's lease table.
//!
//! One item per shard: `shard_id` (key), `owner`, `lease_counter`, `expires_at_ms`,
//! `checkpoint`, `checkpoint_ord`, `parent_shard_ids`. Guarantees:
//! - **One owner per shard.** Every mutation is a conditional write on the
//!   `lease_counter` the writer observed (plus `owner` for the holder's own writes), and
//!   every take, renew, steal and release bumps that counter. Of two workers acting on the
//!   same observation exactly one wins; a deposed owner's next renew or checkpoint fails
//!   with [`LeaseError::LeaseLost`] and it must stop reading that shard.
//! - **Expiry.** A lease lasts until `expires_at_ms`; a crashed worker's shards are free
//!   one lease duration later. A holder renews well within the duration and stops reading
//!   a shard once its expiry passes unrenewed. A thief waits until
//!   [`Stolen::start_after_ms`] (the victim's expiry) before reading, so the two never
//!   overlap even if the victim has not noticed yet. Expiry compares clocks of different
//!   hosts: the lease duration must dwarf their skew.
//! - **Parents before children.** After a reshard, a child shard is eligible only once
//!   every parent's checkpoint is `SHARD_END` (or the parent's lease is gone), so per-key
//!   order holds across splits and merges. Children always start at `TRIM_HORIZON`.
//! - **Checkpoints never go backwards.** Sequence numbers compare as decimal integers
//!   (Kinesis allows up to 129 digits; real ones have 56, well beyond `u128`). The item
//!   carries a fixed-width sortable form (`checkpoint_ord`) and the write is conditional on
//!   it not decreasing; `SHARD_END` sorts after every sequence number.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use sameday_core::aws::{classify, describe, Retry};

/// Partition key of the lease table.
pub const SHARD_ID_ATTR: &str = "shard_id";
/// How long a take or renew holds a lease unless configured otherwise.
pub(crate) const DEFAULT_LEASE_DURATION_MS: u64 = 10_000;
/// Most digits the Kinesis API allows in a sequence number (`0|([1-9]\d{0,128})`).
pub(crate) const MAX_SEQUENCE_DIGITS: usize = 129;

type Item = HashMap<String, AttributeValue>;
/// Expression attribute values of one UpdateItem.
type Values = Vec<(&'static str, AttributeValue)>;

mod balance;
mod sequence;
mod table;

pub(crate) use balance::plan;
pub use sequence::{SequenceNumber, ShardCheckpoint};
pub use table::LeaseTable;

/// A shard as ListShards describes it, for [`LeaseTable::sync_shards`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub(crate) shard_id: String,
    /// `ParentShardId` and, after a merge, `AdjacentParentShardId`.
    pub(crate) parent_shard_ids: Vec<String>,
}

/// One lease item as read (or as left by our last successful write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    /// The worker holding it; `None` after a release or before the first take.
    pub owner: Option<String>,
    /// Bumped by every take, renew, steal and release; the fencing token of all writes.
    pub lease_counter: u64,
    pub checkpoint: ShardCheckpoint,
    pub parent_shard_ids: Vec<String>,
    /// The owner's lease ends here (ms since the epoch); 0 when released.
    pub expires_at_ms: u64,
}

impl Lease {
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The owner, if its lease is still running at `now_ms`.
    pub fn live_owner(&self, now_ms: u64) -> Option<&str> {
        self.owner.as_deref().filter(|_| !self.is_expired(now_ms))
    }

    /// Unowned or expired: anyone may take it.
    pub(crate) fn is_available(&self, now_ms: u64) -> bool {
        self.live_owner(now_ms).is_none()
    }

    pub fn is_finished(&self) -> bool {
        self.checkpoint == ShardCheckpoint::ShardEnd
    }
}

/// A lease taken from another live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stolen {
    pub(crate) lease: Lease,
    /// The previous owner's expiry: it may still be finishing a batch until then, so start
    /// reading only afterwards.
    pub(crate) start_after_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease on shard {shard_id} is no longer held by {worker} with counter {counter} (taken over, stolen or released); stop reading the shard")]
    LeaseLost { shard_id: String, worker: String, counter: u64 },
    #[error(
        "shard {shard_id} is held by {owner} until {expires_at_ms} ms; take only unowned or expired leases (or steal)"
    )]
    NotAvailable { shard_id: String, owner: String, expires_at_ms: u64 },
    #[error(
        "lease on shard {shard_id} changed since it was read (counter {observed}); list the leases again and re-plan"
    )]
    Contended { shard_id: String, observed: u64 },
    #[error("shard {shard_id} is finished (SHARD_END); nothing to take")]
    Finished { shard_id: String },
    #[error("lease on shard {shard_id} has no owner to {action}")]
    NotOwned { shard_id: String, action: &'static str },
    #[error("checkpoint of shard {shard_id} would move backwards from {stored} to {attempted}; refusing")]
    Backwards { shard_id: String, stored: ShardCheckpoint, attempted: ShardCheckpoint },
    #[error("{value:?} is not a Kinesis sequence number ({why})")]
    InvalidSequence { value: String, why: &'static str },
    #[error("lease item {location} is unreadable: {message}")]
    Corrupt { location: String, message: String },
    #[error("lease table {location}: {message}")]
    Remote { location: String, message: String, retryable: bool },
}

impl LeaseError {
    /// Whether the same call may succeed if tried again after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Remote { retryable: true, .. })
    }
}

#[cfg(test)]
mod tests;
