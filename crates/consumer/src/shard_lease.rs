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

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use sameday_core::aws::{classify, describe, Retry};

/// Partition key of the lease table.
pub const SHARD_ID_ATTR: &str = "shard_id";
/// How long a take or renew holds a lease unless configured otherwise.
pub const DEFAULT_LEASE_DURATION_MS: u64 = 10_000;
/// Most digits the Kinesis API allows in a sequence number (`0|([1-9]\d{0,128})`).
pub const MAX_SEQUENCE_DIGITS: usize = 129;

type Item = HashMap<String, AttributeValue>;
/// Expression attribute values of one UpdateItem.
type Values = Vec<(&'static str, AttributeValue)>;

/// A Kinesis sequence number: a decimal integer of up to [`MAX_SEQUENCE_DIGITS`] digits,
/// ordered numerically (`9 < 10`), stored without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Zero-padded to [`MAX_SEQUENCE_DIGITS`], so byte order equals numeric order.
    fn sortable(&self) -> String {
        format!("{:0>width$}", self.0, width = MAX_SEQUENCE_DIGITS)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SequenceNumber {
    type Err = LeaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LeaseError::InvalidSequence { value: s.to_owned(), why: "not a decimal integer" });
        }
        let digits = s.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.len() > MAX_SEQUENCE_DIGITS {
            return Err(LeaseError::InvalidSequence { value: s.to_owned(), why: "more than 129 digits" });
        }
        Ok(Self(digits.to_owned()))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer number is larger; equal lengths compare by digits.
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a shard's reader resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardCheckpoint {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// Only records written after the first read (new deployments that skip history).
    Latest,
    /// After this record: everything up to it reached SQS.
    Sequence(SequenceNumber),
    /// The shard was closed by a reshard and fully read; its children may start.
    ShardEnd,
}

impl ShardCheckpoint {
    /// `0` for the starting points, `1<padded sequence>`, `2` for the end: byte order is
    /// progress order, so DynamoDB can compare it in a condition.
    fn sortable(&self) -> String {
        match self {
            Self::TrimHorizon | Self::Latest => "0".into(),
            Self::Sequence(seq) => format!("1{}", seq.sortable()),
            Self::ShardEnd => "2".into(),
        }
    }
}

impl FromStr for ShardCheckpoint {
    type Err = LeaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "LATEST" => Ok(Self::Latest),
            "SHARD_END" => Ok(Self::ShardEnd),
            seq => seq.parse().map(Self::Sequence),
        }
    }
}

impl fmt::Display for ShardCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrimHorizon => f.write_str("TRIM_HORIZON"),
            Self::Latest => f.write_str("LATEST"),
            Self::Sequence(seq) => seq.fmt(f),
            Self::ShardEnd => f.write_str("SHARD_END"),
        }
    }
}

/// A shard as ListShards describes it, for [`LeaseTable::sync_shards`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// `ParentShardId` and, after a merge, `AdjacentParentShardId`.
    pub parent_shard_ids: Vec<String>,
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
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The owner, if its lease is still running at `now_ms`.
    pub fn live_owner(&self, now_ms: u64) -> Option<&str> {
        self.owner.as_deref().filter(|_| !self.is_expired(now_ms))
    }

    /// Unowned or expired: anyone may take it.
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.live_owner(now_ms).is_none()
    }

    pub fn is_finished(&self) -> bool {
        self.checkpoint == ShardCheckpoint::ShardEnd
    }
}

/// A lease taken from another live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stolen {
    pub lease: Lease,
    /// The previous owner's expiry: it may still be finishing a batch until then, so start
    /// reading only afterwards.
    pub start_after_ms: u64,
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

/// The lease table of one stream's consumers.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
    lease_duration_ms: u64,
    initial_checkpoint: ShardCheckpoint,
}

impl LeaseTable {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            lease_duration_ms: DEFAULT_LEASE_DURATION_MS,
            initial_checkpoint: ShardCheckpoint::TrimHorizon,
        }
    }

    pub fn with_lease_duration_ms(mut self, ms: u64) -> Self {
        self.lease_duration_ms = ms;
        self
    }

    /// Where shards without parents start (`TRIM_HORIZON` by default, or `LATEST`).
    pub fn with_initial_checkpoint(mut self, checkpoint: ShardCheckpoint) -> Self {
        self.initial_checkpoint = checkpoint;
        self
    }

    pub fn lease_duration_ms(&self) -> u64 {
        self.lease_duration_ms
    }

    /// Creates the table (on-demand) if it does not exist; for local set-ups and tests.
    /// Production tables come from CloudFormation.
    pub async fn ensure_table(&self) -> Result<(), LeaseError> {
        let res = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(SHARD_ID_ATTR)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute definition has all fields"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(SHARD_ID_ATTR)
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key schema has all fields"),
            )
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
            Err(e) => Err(self.remote("-", classify(&e), describe(&e))),
        }
    }

    /// Creates a lease for every shard that has none; returns how many were created.
    /// Existing leases are never touched, so any worker may call it at any time.
    pub async fn sync_shards(&self, shards: &[ShardInfo]) -> Result<usize, LeaseError> {
        let mut created = 0;
        for shard in shards {
            // A child must read its whole shard, whatever the configured start, or the
            // records written between the reshard and now would be skipped.
            let checkpoint = if shard.parent_shard_ids.is_empty() {
                self.initial_checkpoint.clone()
            } else {
                ShardCheckpoint::TrimHorizon
            };
            let parents = shard.parent_shard_ids.iter().map(|p| AttributeValue::S(p.clone())).collect();
            let res = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(SHARD_ID_ATTR, AttributeValue::S(shard.shard_id.clone()))
                .item("lease_counter", n(0))
                .item("expires_at_ms", n(0))
                .item("checkpoint", AttributeValue::S(checkpoint.to_string()))
                .item("checkpoint_ord", AttributeValue::S(checkpoint.sortable()))
                .item("parent_shard_ids", AttributeValue::L(parents))
                .condition_expression("attribute_not_exists(shard_id)")
                .send()
                .await;
            match res {
                Ok(_) => created += 1,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(self.remote(&shard.shard_id, classify(&e), describe(&e))),
            }
        }
        Ok(created)
    }

    /// Every lease, by shard id (a strongly consistent scan; lease tables are small).
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.remote("-", classify(&e), describe(&e)))?;
            for item in out.items() {
                leases.push(self.parse(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(leases)
    }

    /// One lease, strongly consistent.
    pub async fn get(&self, shard_id: &str) -> Result<Option<Lease>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SHARD_ID_ATTR, AttributeValue::S(shard_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.remote(shard_id, classify(&e), describe(&e)))?;
        out.item.as_ref().map(|item| self.parse(item)).transpose()
    }

    /// Takes `observed` (as read by [`Self::list`]) for `worker` if it is unowned or
    /// expired at `now_ms` and unchanged since it was read.
    pub async fn take(&self, observed: &Lease, worker: &str, now_ms: u64) -> Result<Lease, LeaseError> {
        if observed.is_finished() {
            return Err(LeaseError::Finished { shard_id: observed.shard_id.clone() });
        }
        if let Some(owner) = observed.live_owner(now_ms) {
            return Err(LeaseError::NotAvailable {
                shard_id: observed.shard_id.clone(),
                owner: owner.to_owned(),
                expires_at_ms: observed.expires_at_ms,
            });
        }
        self.assign(observed, "#ctr = :ctr", &[], worker, now_ms).await
    }

    /// Takes `observed` from its live owner for `to_worker`, to even out the load (see
    /// [`plan`]). Read from the result's [`Stolen::start_after_ms`] on.
    pub async fn steal(&self, observed: &Lease, to_worker: &str, now_ms: u64) -> Result<Stolen, LeaseError> {
        if observed.is_finished() {
            return Err(LeaseError::Finished { shard_id: observed.shard_id.clone() });
        }
        let Some(from) = observed.owner.as_deref() else {
            return Err(LeaseError::NotOwned { shard_id: observed.shard_id.clone(), action: "steal from" });
        };
        let condition = "#owner = :from AND #ctr = :ctr";
        let values = [(":from", AttributeValue::S(from.to_owned()))];
        let lease = self.assign(observed, condition, &values, to_worker, now_ms).await?;
        // The condition held, so the victim has not renewed since `observed`: its lease ends
        // exactly there.
        Ok(Stolen { lease, start_after_ms: observed.expires_at_ms })
    }

    /// Sets a new owner and expiry, bumping the counter, if `condition` holds.
    async fn assign(
        &self,
        observed: &Lease,
        condition: &str,
        extra: &[(&'static str, AttributeValue)],
        worker: &str,
        now_ms: u64,
    ) -> Result<Lease, LeaseError> {
        let mut values = vec![
            (":ctr", n(observed.lease_counter)),
            (":one", n(1)),
            (":me", AttributeValue::S(worker.to_owned())),
            (":exp", n(now_ms + self.lease_duration_ms)),
        ];
        values.extend(extra.iter().cloned());
        let update = "SET #owner = :me, #exp = :exp, #ctr = #ctr + :one";
        self.update(&observed.shard_id, update, condition, values).await?.ok_or_else(|| LeaseError::Contended {
            shard_id: observed.shard_id.clone(),
            observed: observed.lease_counter,
        })
    }

    /// Extends a lease we hold to `now_ms` + the lease duration. Fails with
    /// [`LeaseError::LeaseLost`] if anyone took, stole or released it meanwhile.
    pub async fn renew(&self, held: &Lease, now_ms: u64) -> Result<Lease, LeaseError> {
        let (owner, mut values) = self.holder_values(held, "renew")?;
        values.extend([(":one", n(1)), (":exp", n(now_ms + self.lease_duration_ms))]);
        let update = "SET #exp = :exp, #ctr = #ctr + :one";
        self.update(&held.shard_id, update, "#owner = :me AND #ctr = :ctr", values)
            .await?
            .ok_or_else(|| lost(held, owner))
    }

    /// Records that everything up to `checkpoint` reached SQS. Conditional on still holding
    /// the lease and on not moving backwards (an equal checkpoint is accepted).
    pub async fn checkpoint(&self, held: &Lease, checkpoint: &ShardCheckpoint) -> Result<Lease, LeaseError> {
        let (owner, mut values) = self.holder_values(held, "checkpoint")?;
        if checkpoint.sortable() < held.checkpoint.sortable() {
            return Err(backwards(held, &held.checkpoint, checkpoint));
        }
        values.extend([
            (":cp", AttributeValue::S(checkpoint.to_string())),
            (":ord", AttributeValue::S(checkpoint.sortable())),
        ]);
        let update = "SET #ckpt = :cp, #ord = :ord";
        let condition = "#owner = :me AND #ctr = :ctr AND #ord <= :ord";
        if let Some(lease) = self.update(&held.shard_id, update, condition, values).await? {
            return Ok(lease);
        }
        // Say which half of the condition failed.
        match self.get(&held.shard_id).await? {
            Some(now) if now.owner == held.owner && now.lease_counter == held.lease_counter => {
                Err(backwards(held, &now.checkpoint, checkpoint))
            }
            _ => Err(lost(held, owner)),
        }
    }

    /// Gives a lease back on graceful shutdown: no owner, expired, so the next worker to
    /// look takes it at once instead of waiting out the lease.
    pub async fn release(&self, held: &Lease) -> Result<(), LeaseError> {
        let (owner, mut values) = self.holder_values(held, "release")?;
        values.extend([(":one", n(1)), (":zero", n(0))]);
        let update = "REMOVE #owner SET #exp = :zero, #ctr = #ctr + :one";
        match self.update(&held.shard_id, update, "#owner = :me AND #ctr = :ctr", values).await? {
            Some(_) => Ok(()),
            None => Err(lost(held, owner)),
        }
    }

    fn holder_values<'a>(&self, held: &'a Lease, action: &'static str) -> Result<(&'a str, Values), LeaseError> {
        let owner =
            held.owner.as_deref().ok_or_else(|| LeaseError::NotOwned { shard_id: held.shard_id.clone(), action })?;
        Ok((owner, vec![(":me", AttributeValue::S(owner.to_owned())), (":ctr", n(held.lease_counter))]))
    }

    /// A conditional UpdateItem returning the new lease, or `None` if the condition failed.
    async fn update(
        &self,
        shard_id: &str,
        update: &str,
        condition: &str,
        values: Values,
    ) -> Result<Option<Lease>, LeaseError> {
        // `owner` is a DynamoDB reserved word, so every attribute goes through a name; only
        // the names an expression uses may be sent.
        const NAMES: [(&str, &str); 5] = [
            ("#owner", "owner"),
            ("#ctr", "lease_counter"),
            ("#exp", "expires_at_ms"),
            ("#ckpt", "checkpoint"),
            ("#ord", "checkpoint_ord"),
        ];
        let names = NAMES
            .iter()
            .filter(|(alias, _)| update.contains(alias) || condition.contains(alias))
            .map(|(alias, name)| (alias.to_string(), name.to_string()))
            .collect();
        let values = values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(SHARD_ID_ATTR, AttributeValue::S(shard_id.to_owned()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| {
                    self.remote(shard_id, Retry::Permanent, "UpdateItem returned no attributes".into())
                })?;
                self.parse(&item).map(Some)
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(self.remote(shard_id, classify(&e), describe(&e))),
        }
    }

    fn parse(&self, item: &Item) -> Result<Lease, LeaseError> {
        let shard_id = item.get(SHARD_ID_ATTR).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let corrupt = |message: String| LeaseError::Corrupt { location: self.location(&shard_id), message };
        let number = |attr: &str| -> Result<u64, LeaseError> {
            match item.get(attr) {
                None => Ok(0),
                Some(v) => v
                    .as_n()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt(format!("{attr} is not a non-negative integer: {v:?}"))),
            }
        };
        let checkpoint = match item.get("checkpoint").and_then(|v| v.as_s().ok()) {
            Some(text) => text.parse().map_err(|e: LeaseError| corrupt(format!("checkpoint: {e}")))?,
            None => return Err(corrupt("no checkpoint attribute".into())),
        };
        let parent_shard_ids = match item.get("parent_shard_ids") {
            None => Vec::new(),
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| v.as_s().cloned().map_err(|_| corrupt(format!("parent_shard_ids holds {v:?}"))))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(corrupt(format!("parent_shard_ids is not a list: {other:?}"))),
        };
        Ok(Lease {
            owner: item.get("owner").and_then(|v| v.as_s().ok()).cloned(),
            lease_counter: number("lease_counter")?,
            expires_at_ms: number("expires_at_ms")?,
            checkpoint,
            parent_shard_ids,
            shard_id: shard_id.clone(),
        })
    }

    fn location(&self, shard_id: &str) -> String {
        format!("dynamodb:{}/{shard_id}", self.table)
    }

    fn remote(&self, shard_id: &str, retry: Retry, message: String) -> LeaseError {
        LeaseError::Remote { location: self.location(shard_id), message, retryable: retry == Retry::Transient }
    }
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn lost(held: &Lease, worker: &str) -> LeaseError {
    LeaseError::LeaseLost { shard_id: held.shard_id.clone(), worker: worker.to_owned(), counter: held.lease_counter }
}

fn backwards(held: &Lease, stored: &ShardCheckpoint, attempted: &ShardCheckpoint) -> LeaseError {
    LeaseError::Backwards { shard_id: held.shard_id.clone(), stored: stored.clone(), attempted: attempted.clone() }
}

/// What one worker should do in one balancing round, from one [`LeaseTable::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Unowned or expired leases to [`LeaseTable::take`], as observed.
    pub take: Vec<Lease>,
    /// One lease to [`LeaseTable::steal`] from the most loaded worker, as observed.
    pub steal: Option<Lease>,
}

/// Whether `lease` may be read yet: every parent finished (or its lease deleted).
pub fn parents_finished(lease: &Lease, leases: &[Lease]) -> bool {
    lease.parent_shard_ids.iter().all(|p| leases.iter().find(|l| &l.shard_id == p).is_none_or(Lease::is_finished))
}

/// Decides what `me` takes or steals so that N workers end with about S/N shards each.
///
/// Workers are those owning an unexpired lease, plus `me`; S counts the unfinished leases
/// whose parents are finished. With target ceil(S/N), a worker below target takes
/// available leases (its own expired ones first); when none are available it steals one
/// lease from the most loaded worker if that one is above target, or at target while `me`
/// is below target - 1. Stealing never pushes the victim below target - 1, so workers do
/// not steal back and forth.
pub fn plan(leases: &[Lease], me: &str, now_ms: u64) -> Plan {
    let workable: Vec<&Lease> = leases.iter().filter(|l| !l.is_finished() && parents_finished(l, leases)).collect();
    let mut load: BTreeMap<&str, usize> = BTreeMap::from([(me, 0)]);
    for owner in workable.iter().filter_map(|l| l.live_owner(now_ms)) {
        *load.entry(owner).or_default() += 1;
    }
    let target = workable.len().div_ceil(load.len());
    let mine = load[me];
    if mine >= target {
        return Plan::default();
    }

    let mut available: Vec<&Lease> = workable.iter().copied().filter(|l| l.is_available(now_ms)).collect();
    if !available.is_empty() {
        available.sort_by_key(|l| (l.owner.as_deref() != Some(me), l.shard_id.as_str()));
        return Plan { take: available.into_iter().take(target - mine).cloned().collect(), steal: None };
    }

    // Most loaded other worker; ties go to the smallest id so every worker agrees.
    let victim = load.iter().filter(|(w, _)| **w != me).max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)));
    let Some((&victim, &most)) = victim else {
        return Plan::default();
    };
    if most > target || (most == target && mine + 1 < target) {
        let steal = workable.iter().find(|l| l.live_owner(now_ms) == Some(victim)).map(|l| (*l).clone());
        return Plan { take: Vec::new(), steal };
    }
    Plan::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        s.parse().unwrap()
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert!(seq("9") < seq("10"));
        assert!(seq("99") < seq("100"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("000").to_string(), "0");
        // Real Kinesis sequence numbers have 56 digits, beyond u128.
        let a = seq("49590338271490256608559692538361571095921575989136588898");
        let b = seq("49590338271490256608559692540925702759324208523137515618");
        assert!(a < b);
        assert!(seq("340282366920938463463374607431768211455") < seq("340282366920938463463374607431768211456"));
        let max = "9".repeat(MAX_SEQUENCE_DIGITS);
        assert!(seq(&max) > a);
        assert!(format!("1{max}").parse::<SequenceNumber>().is_err());
        assert!("".parse::<SequenceNumber>().is_err());
        assert!("12a".parse::<SequenceNumber>().is_err());
        assert!("-1".parse::<SequenceNumber>().is_err());

        // The stored sortable form orders like the numbers, sentinels around them.
        let ordered = ["TRIM_HORIZON", "0", "9", "10", a.as_str(), b.as_str(), max.as_str(), "SHARD_END"];
        let forms: Vec<String> = ordered.iter().map(|s| s.parse::<ShardCheckpoint>().unwrap().sortable()).collect();
        assert!(forms.windows(2).all(|w| w[0] < w[1]), "{forms:?}");
        for s in ordered {
            assert_eq!(s.parse::<ShardCheckpoint>().unwrap().to_string(), s);
        }
    }

    fn lease(shard: &str, owner: Option<&str>, expires_at_ms: u64) -> Lease {
        Lease {
            shard_id: shard.into(),
            owner: owner.map(Into::into),
            lease_counter: 1,
            checkpoint: ShardCheckpoint::TrimHorizon,
            parent_shard_ids: Vec::new(),
            expires_at_ms,
        }
    }

    #[test]
    fn plan_prefers_own_expired_leases_and_caps_at_target() {
        let leases =
            vec![lease("a", None, 0), lease("b", Some("me"), 50), lease("c", Some("other"), 500), lease("d", None, 0)];
        // Two workers, four shards: target 2, "other" holds 1, I hold 0 live.
        let p = plan(&leases, "me", 100);
        let took: Vec<&str> = p.take.iter().map(|l| l.shard_id.as_str()).collect();
        assert_eq!(took, ["b", "a"]);
        assert_eq!(p.steal, None);
    }
}
