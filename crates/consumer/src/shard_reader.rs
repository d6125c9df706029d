//! Reads one Kinesis shard in order, from a lease checkpoint.
//!
//! - Starts with GetShardIterator AFTER_SEQUENCE_NUMBER of the checkpoint (or TRIM_HORIZON /
//!   LATEST), and after that follows NextShardIterator; an expired iterator is replaced by
//!   a new one after the last sequence number returned, so nothing is skipped or repeated.
//! - Keeps to the per-shard read quota (5 GetRecords per second) and backs off on
//!   throttling.
//! - Unpacks KPL aggregated records (`sameday_core::kpl`) into their user records, each at
//!   `SEQ:SUB` (its index inside the record, as the KCL numbers them) and the last at `SEQ`,
//!   so a checkpoint can stand inside an aggregated record; resuming from `SEQ:SUB` reads that
//!   record again (AT_SEQUENCE_NUMBER) and skips the user records up to `SUB`.
//! - Reports the end of a closed shard (no next iterator) so its lease can record
//!   SHARD_END and the children may start.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use sameday_core::aws::{classify, describe, Retry};
use sameday_core::backoff::Backoff;
use sameday_core::kpl;

use crate::shard_lease::{SequenceNumber, ShardCheckpoint};

/// Kinesis allows 5 GetRecords calls per second per shard.
pub(crate) const MIN_READ_INTERVAL: Duration = Duration::from_millis(200);
/// Records per GetRecords call (service maximum 10,000).
pub(crate) const DEFAULT_READ_LIMIT: i32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardRecord {
    pub(crate) sequence: SequenceNumber,
    pub(crate) partition_key: String,
    pub(crate) data: Vec<u8>,
    /// ApproximateArrivalTimestamp, ms since the epoch.
    pub(crate) arrival_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardBatch {
    pub(crate) records: Vec<ShardRecord>,
    /// MillisBehindLatest of the call (the lag metric).
    pub(crate) millis_behind: Option<i64>,
    /// The shard is closed and fully read.
    pub(crate) shard_end: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("Kinesis {stream}/{shard}: {message}")]
pub(crate) struct ReadError {
    pub(crate) stream: String,
    pub(crate) shard: String,
    pub(crate) message: String,
    pub(crate) transient: bool,
}

pub(crate) struct ShardReader {
    client: Client,
    stream: String,
    shard: String,
    start: ShardCheckpoint,
    /// The last position read: a whole record, or (before the first read) a checkpoint
    /// inside an aggregated record.
    last: Option<SequenceNumber>,
    /// Resuming inside an aggregated record: its user records up to this one were delivered.
    skip_through: Option<SequenceNumber>,
    iterator: Option<String>,
    ended: bool,
    limit: i32,
    last_call: Option<Instant>,
    backoff: Backoff,
}

impl ShardReader {
    pub(crate) fn new(client: Client, stream: &str, shard: &str, start: ShardCheckpoint) -> Self {
        let last = match &start {
            ShardCheckpoint::Sequence(s) => Some(s.clone()),
            _ => None,
        };
        Self {
            client,
            stream: stream.to_owned(),
            shard: shard.to_owned(),
            ended: start == ShardCheckpoint::ShardEnd,
            start,
            last,
            skip_through: None,
            iterator: None,
            limit: DEFAULT_READ_LIMIT,
            last_call: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }

    /// Records per GetRecords call (1..=10,000).
    pub(crate) fn with_limit(mut self, limit: i32) -> Self {
        self.limit = limit.clamp(1, 10_000);
        self
    }

    /// The last sequence number handed out (what a checkpoint may name). Tests resume from
    /// it; the daemon checkpoints behind the fan-out's durable sequence instead.
    #[cfg(test)]
    pub(crate) fn last_sequence(&self) -> Option<&SequenceNumber> {
        self.last.as_ref()
    }

    fn error(&self, message: String, transient: bool) -> ReadError {
        ReadError { stream: self.stream.clone(), shard: self.shard.clone(), message, transient }
    }

    async fn fresh_iterator(&mut self) -> Result<String, ReadError> {
        let mut req = self.client.get_shard_iterator().stream_name(&self.stream).shard_id(&self.shard);
        req = match (&self.last, &self.start) {
            (Some(seq), _) if seq.sub().is_some() => {
                self.skip_through = Some(seq.clone());
                req.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(seq.kinesis())
            }
            (Some(seq), _) => {
                req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq.kinesis())
            }
            (None, ShardCheckpoint::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, _) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let out = req
            .send()
            .await
            .map_err(|e| self.error(format!("GetShardIterator: {}", describe(&e)), classify(&e) == Retry::Transient))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| self.error("GetShardIterator returned no iterator".into(), true))
    }

    /// The next records of the shard (possibly none), waiting as the read quota requires.
    pub(crate) async fn next_batch(&mut self) -> Result<ShardBatch, ReadError> {
        if self.ended {
            return Ok(ShardBatch { shard_end: true, ..Default::default() });
        }
        if let Some(t) = self.last_call {
            let wait = MIN_READ_INTERVAL.saturating_sub(t.elapsed());
            tokio::time::sleep(wait).await;
        }
        let iterator = match self.iterator.take() {
            Some(it) => it,
            None => self.fresh_iterator().await?,
        };
        self.last_call = Some(Instant::now());
        let res = self.client.get_records().shard_iterator(&iterator).limit(self.limit).send().await;
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                let expired = e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception());
                if expired {
                    // Start again right after the last record we returned.
                    return Ok(ShardBatch::default());
                }
                if classify(&e) == Retry::Transient {
                    self.iterator = Some(iterator);
                    tokio::time::sleep(self.backoff.next_delay()).await;
                    return Ok(ShardBatch::default());
                }
                return Err(self.error(format!("GetRecords: {}", describe(&e)), false));
            }
        };
        self.backoff.reset();
        let mut records = Vec::with_capacity(out.records().len());
        for r in out.records() {
            let sequence: SequenceNumber = r
                .sequence_number()
                .parse()
                .map_err(|e| self.error(format!("bad sequence number {:?}: {e}", r.sequence_number()), false))?;
            let arrival_ms = r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok());
            let skip = match self.skip_through.take() {
                Some(s) if s.record() == sequence => s.sub(),
                _ => None,
            };
            let users = kpl::deaggregate(r.data().as_ref());
            let n = users.len();
            for (i, user) in users.into_iter().enumerate() {
                if skip.is_some_and(|k| i as u64 <= k) {
                    continue;
                }
                let aggregated = user.partition_key.is_some();
                records.push(ShardRecord {
                    sequence: if aggregated && i + 1 < n { sequence.with_sub(i as u64) } else { sequence.clone() },
                    partition_key: user
                        .partition_key
                        .unwrap_or_else(|| r.partition_key().unwrap_or_default().to_owned()),
                    data: user.data,
                    arrival_ms,
                });
            }
            self.last = Some(sequence);
        }
        self.iterator = out.next_shard_iterator().map(str::to_owned);
        self.ended = self.iterator.is_none();
        Ok(ShardBatch { records, millis_behind: out.millis_behind_latest(), shard_end: self.ended })
    }
}

#[cfg(test)]
mod tests;
