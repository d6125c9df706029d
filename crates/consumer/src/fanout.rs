//! One shard's records into SQS, in per-key order, with the shard checkpoint behind it.
//!
//! Each Kinesis record becomes zero or more SQS messages (one per routed queue), queued
//! in an [`OrderedQueue`] keyed by queue + FIFO group, followed by a mark carrying the
//! record's sequence number. So:
//! - at most one message per (queue, group) is in flight: a failed entry of a
//!   SendMessageBatch is resent before any later message of its group, and order holds;
//! - [`Fanout::durable`] only ever names a sequence number whose records all reached SQS
//!   (or were filtered out, or dead-lettered), and never moves backwards.
//!
//! Bodies are the envelope's JSON in pure ASCII (`message::sqs_body`), so no character a
//! MySQL column can hold makes SQS refuse a change. A record that is not a valid envelope,
//! or whose due time cannot be read, or that SQS refuses (too large) goes to the dead-letter
//! sink with its shard and sequence number; the shard keeps going.

use std::future::Future;

use sameday_core::envelope::ChangeEnvelope;
use sameday_core::ordered::OrderedQueue;

use crate::message::{fifo_ids, sqs_body_len, sqs_id};
use crate::route::{Decision, Routes};
use crate::shard_lease::SequenceNumber;
use crate::sqs::{SendOutcome, SqsError, SqsMessage, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};

/// How far ahead a batch is looked for.
const SCAN_WINDOW: usize = 5_000;

/// Where messages go: one `send` per SendMessageBatch (implemented by the SQS queues and,
/// in tests, by fault-injecting wrappers).
pub(crate) trait MessageSender: Send + Sync {
    fn send(
        &self,
        queue: usize,
        batch: &[SqsMessage],
    ) -> impl Future<Output = Result<Vec<SendOutcome>, SqsError>> + Send;
    fn is_fifo(&self, queue: usize) -> bool;
}

impl Queues {
    /// The largest body every queue takes.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.0.iter().map(|q| q.max_body_bytes()).min().unwrap_or(MAX_BATCH_BYTES)
    }
}

/// Every queue of the consumer, by index.
pub(crate) struct Queues(pub(crate) Vec<crate::sqs::SqsQueue>);

impl MessageSender for Queues {
    async fn send(&self, queue: usize, batch: &[SqsMessage]) -> Result<Vec<SendOutcome>, SqsError> {
        self.0[queue].send_batch(batch).await
    }

    fn is_fifo(&self, queue: usize) -> bool {
        self.0[queue].is_fifo()
    }
}

/// Something that could not be forwarded, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) shard: String,
    pub(crate) sequence: SequenceNumber,
    pub(crate) reason: String,
    pub(crate) data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Outgoing {
    queue: usize,
    msg: SqsMessage,
    sequence: SequenceNumber,
    /// The id of the first change this message carries (others may be folded into it).
    first_id: String,
}

/// Counts for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FanoutStats {
    pub(crate) records: u64,
    pub(crate) sent: u64,
    pub(crate) skipped: u64,
    pub(crate) retried: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) requests: u64,
    /// Changes folded into a waiting message of their row (`sameday_core::coalesce`).
    pub(crate) coalesced: u64,
}

pub(crate) struct Fanout {
    shard: String,
    /// Bodies larger than this are dead-lettered here instead of refused by SQS.
    max_body: usize,
    /// Fold a row's waiting changes into one message (`sameday_core::coalesce`), FIFO queues only.
    coalesce: bool,
    queue: OrderedQueue<Outgoing, SequenceNumber>,
    durable: Option<SequenceNumber>,
    pub(crate) stats: FanoutStats,
    pub(crate) dead_letters: Vec<DeadLetter>,
}

impl Fanout {
    pub(crate) fn new(shard: &str) -> Self {
        Self {
            shard: shard.to_owned(),
            max_body: MAX_BATCH_BYTES,
            coalesce: true,
            queue: OrderedQueue::default(),
            durable: None,
            stats: FanoutStats::default(),
            dead_letters: Vec::new(),
        }
    }

    /// Bodies over `max_body` bytes (the queues' limit) are dead-lettered with the fix.
    pub(crate) fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Whether a row's waiting changes are folded into one message (on by default).
    pub(crate) fn with_coalescing(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// The newest sequence number whose record and everything before it are handled.
    pub(crate) fn durable(&self) -> Option<&SequenceNumber> {
        self.durable.as_ref()
    }

    /// Messages not yet accepted by SQS.
    pub(crate) fn pending(&self) -> usize {
        self.queue.pending()
    }

    /// Adds one Kinesis record of this shard, in shard order.
    pub(crate) fn push_record(
        &mut self,
        sequence: SequenceNumber,
        data: &[u8],
        routes: &Routes,
        fifo: impl Fn(usize) -> bool,
        now: jiff::Timestamp,
    ) {
        self.stats.records += 1;
        match ChangeEnvelope::from_slice(data) {
            Err(e) => self.dead_letter(&sequence, format!("not a sameday change envelope: {e}"), data),
            Ok(env) => match routes.decide(&env, now) {
                Decision::Skip { .. } => self.stats.skipped += 1,
                Decision::Invalid(reason) => self.dead_letter(&sequence, reason, data),
                Decision::Send(_) if sqs_body_len(data) > self.max_body => {
                    let reason = format!(
                        "change {}: a message body of {} bytes passes the queues' maximum message size of {} bytes; \
                         set [claim_check] in the consumer's config so large changes go through S3",
                        env.id,
                        sqs_body_len(data),
                        self.max_body
                    );
                    self.dead_letter(&sequence, reason, data)
                }
                Decision::Send(queues) => {
                    let ids = fifo_ids(&env);
                    let body = crate::message::sqs_body(&String::from_utf8_lossy(data)).into_owned();
                    for q in queues {
                        let key = format!("{q}/{}", ids.group_id);
                        if fifo(q) && self.coalesce && self.fold(&key, &env, &sequence) {
                            continue;
                        }
                        let msg = if fifo(q) {
                            SqsMessage {
                                body: body.clone(),
                                group_id: Some(ids.group_id.clone()),
                                dedup_id: Some(ids.dedup_id.clone()),
                            }
                        } else {
                            SqsMessage { body: body.clone(), group_id: None, dedup_id: None }
                        };
                        let size = msg.size();
                        let first_id = env.id.clone();
                        self.queue.push(key, size, Outgoing { queue: q, msg, sequence: sequence.clone(), first_id });
                    }
                }
            },
        }
        self.queue.push_mark(sequence);
        self.advance();
    }

    /// Folds `env` into the waiting message of its row in queue+group `key`, if there is one
    /// (`sameday_core::coalesce`); whether it did.
    fn fold(&mut self, key: &str, env: &ChangeEnvelope, sequence: &SequenceNumber) -> bool {
        let max_body = self.max_body;
        let folded = self.queue.merge_into_last(key, |waiting| {
            let earlier = ChangeEnvelope::from_slice(waiting.msg.body.as_bytes()).ok()?;
            let merged = sameday_core::coalesce::coalesce(&earlier, env)?;
            let json = serde_json::to_string(&merged).ok()?;
            let body = crate::message::sqs_body(&json).into_owned();
            if body.len() > max_body {
                return None;
            }
            waiting.msg.body = body;
            // Not the last change's id alone: that change may have gone out before in a message
            // of its own (a reader re-sent it), and SQS would drop this one as its duplicate.
            waiting.msg.dedup_id = Some(sqs_id(&format!("{}+{}", waiting.first_id, merged.id)));
            waiting.sequence = sequence.clone();
            Some(waiting.msg.size())
        });
        if folded {
            self.stats.coalesced += 1;
        }
        folded
    }

    /// Adds a record that cannot be forwarded (its claim-check failed for good), in shard order.
    pub(crate) fn push_dead_letter(&mut self, sequence: SequenceNumber, reason: String, data: &[u8]) {
        self.stats.records += 1;
        self.dead_letter(&sequence, reason, data);
        self.queue.push_mark(sequence);
        self.advance();
    }

    fn dead_letter(&mut self, sequence: &SequenceNumber, reason: String, data: &[u8]) {
        self.stats.dead_lettered += 1;
        tracing::error!(shard = %self.shard, %sequence, %reason, "record dead-lettered; the shard continues");
        self.dead_letters.push(DeadLetter {
            shard: self.shard.clone(),
            sequence: sequence.clone(),
            reason,
            data: data.to_vec(),
        });
    }

    fn advance(&mut self) {
        if let Some(s) = self.queue.pop_done().pop() {
            self.durable = Some(s);
        }
    }

    /// Sends one SendMessageBatch of ready messages (one queue, at most one per group).
    /// Returns `false` when nothing was ready.
    pub(crate) async fn send_once<S: MessageSender>(&mut self, sender: &S) -> Result<bool, SqsError> {
        self.send_round(sender, 1, false).await
    }

    /// Sends up to `max_requests` SendMessageBatch requests at once. Their batches are
    /// disjoint in queue+group (each group has at most one message in flight), so they may
    /// complete in any order without reordering a group. Returns `false` when nothing was
    /// ready. A non-transient request error is returned after every outcome is applied.
    /// With `full_only`, a batch smaller than SQS allows stays queued for a later round
    /// (while the shard is behind, more records follow at once: fewer, fuller requests).
    pub(crate) async fn send_round<S: MessageSender>(
        &mut self,
        sender: &S,
        max_requests: usize,
        full_only: bool,
    ) -> Result<bool, SqsError> {
        let mut batches = Vec::new();
        while batches.len() < max_requests.max(1) {
            let batch =
                self.queue.take_batch(MAX_BATCH_ENTRIES, MAX_BATCH_BYTES, SCAN_WINDOW, |a, b| a.queue == b.queue);
            if batch.is_empty() {
                break;
            }
            let bytes: usize = batch.iter().map(|(_, o)| o.msg.size()).sum();
            if full_only && batch.len() < MAX_BATCH_ENTRIES && bytes < MAX_BATCH_BYTES / 2 {
                for (t, _) in &batch {
                    self.queue.complete(*t, false);
                }
                break;
            }
            batches.push(batch);
        }
        if batches.is_empty() {
            return Ok(false);
        }
        let requests = batches.iter().map(|batch| {
            let queue = batch[0].1.queue;
            let msgs: Vec<SqsMessage> = batch.iter().map(|(_, o)| o.msg.clone()).collect();
            async move { sender.send(queue, &msgs).await }
        });
        let results = futures_util::future::join_all(requests).await;
        self.stats.requests += results.len() as u64;
        let mut fatal = None;
        for (batch, result) in batches.into_iter().zip(results) {
            let outcomes = match result {
                Ok(o) => o,
                Err(e) => {
                    for (t, _) in &batch {
                        self.queue.complete(*t, false);
                    }
                    self.stats.retried += batch.len() as u64;
                    if !e.transient {
                        fatal = Some(e);
                    }
                    continue;
                }
            };
            for ((ticket, out), outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    SendOutcome::Sent => {
                        self.stats.sent += 1;
                        self.queue.complete(ticket, true);
                    }
                    SendOutcome::Retry { .. } => {
                        self.stats.retried += 1;
                        self.queue.complete(ticket, false);
                    }
                    SendOutcome::Rejected { code, message } => {
                        let reason = format!("SQS refused the message ({code}: {message})");
                        self.dead_letter(&out.sequence, reason, out.msg.body.as_bytes());
                        self.queue.complete(ticket, true);
                    }
                }
            }
        }
        self.advance();
        match fatal {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Sends until every queued message is accepted (retrying failed entries in order).
    pub(crate) async fn flush<S: MessageSender>(&mut self, sender: &S) -> Result<(), SqsError> {
        let mut backoff = sameday_core::backoff::Backoff::new(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(2),
        );
        while self.queue.pending() > 0 {
            let before = self.stats.sent + self.stats.dead_lettered;
            self.send_once(sender).await?;
            if self.stats.sent + self.stats.dead_lettered == before {
                tokio::time::sleep(backoff.next_delay()).await;
            } else {
                backoff.reset();
            }
        }
        self.advance();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
