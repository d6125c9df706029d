//! SendMessageBatch to one queue, with one outcome per message (the call fails partially).
//!
//! Ordering is the caller's job: like the reader's publisher, the consumer keeps at most
//! one unacknowledged message per FIFO group in flight, so a failed entry can be resent
//! without a later message of its group overtaking it.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use sameday_core::aws::{classify, describe, Retry};

/// Entries per SendMessageBatch (service limit).
pub(crate) const MAX_BATCH_ENTRIES: usize = 10;
/// Bytes per SendMessageBatch we allow (the classic 256 KiB limit; queues may allow more).
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqsMessage {
    pub(crate) body: String,
    /// FIFO queues only.
    pub(crate) group_id: Option<String>,
    /// FIFO queues only; SQS drops a repeat within 5 minutes.
    pub(crate) dedup_id: Option<String>,
}

impl SqsMessage {
    /// Size as SQS counts it against the batch limit.
    pub(crate) fn size(&self) -> usize {
        self.body.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    Sent,
    /// Not enqueued; safe to send again (throttling, internal error).
    Retry {
        code: String,
    },
    /// SQS refused this message itself (sender fault): dead-letter it.
    Rejected {
        code: String,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("SQS queue {queue}: {message}")]
pub(crate) struct SqsError {
    pub(crate) queue: String,
    pub(crate) message: String,
    pub(crate) transient: bool,
}

/// One destination queue.
#[derive(Clone)]
pub(crate) struct SqsQueue {
    client: Client,
    url: String,
    fifo: bool,
    /// The largest body this consumer sends to the queue: the queue's MaximumMessageSize,
    /// at most [`MAX_BATCH_BYTES`] (one message must fit a batch).
    max_body_bytes: usize,
}

impl SqsQueue {
    /// Looks up a queue by name (or takes a URL) and reads whether it is FIFO.
    pub(crate) async fn resolve(client: Client, name_or_url: &str) -> Result<Self, SqsError> {
        let q = sameday_core::sqs::resolve_queue(&client, name_or_url).await.map_err(|(retry, message)| SqsError {
            queue: name_or_url.to_owned(),
            message,
            transient: retry == Retry::Transient,
        })?;
        let max_body_bytes = q.max_message_bytes.unwrap_or(MAX_BATCH_BYTES).min(MAX_BATCH_BYTES);
        Ok(Self { client, url: q.url, fifo: q.fifo, max_body_bytes })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn is_fifo(&self) -> bool {
        self.fifo
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Sends up to [`MAX_BATCH_ENTRIES`] messages; the outcomes follow their order.
    pub(crate) async fn send_batch(&self, batch: &[SqsMessage]) -> Result<Vec<SendOutcome>, SqsError> {
        assert!(batch.len() <= MAX_BATCH_ENTRIES, "at most {MAX_BATCH_ENTRIES} messages per batch");
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut e = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(&m.body);
                if self.fifo {
                    e = e.set_message_group_id(m.group_id.clone()).set_message_deduplication_id(m.dedup_id.clone());
                }
                e.build().expect("id and body are set")
            })
            .collect();
        let out =
            self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await.map_err(
                |e| SqsError {
                    queue: self.url.clone(),
                    message: format!("SendMessageBatch: {}", describe(&e)),
                    transient: classify(&e) == Retry::Transient,
                },
            )?;
        let mut outcomes = vec![SendOutcome::Retry { code: "missing from the response".into() }; batch.len()];
        for ok in out.successful() {
            if let Some(slot) = ok.id().parse::<usize>().ok().and_then(|i| outcomes.get_mut(i)) {
                *slot = SendOutcome::Sent;
            }
        }
        for failed in out.failed() {
            let Some(slot) = failed.id().parse::<usize>().ok().and_then(|i| outcomes.get_mut(i)) else { continue };
            let code = failed.code().to_owned();
            *slot = if failed.sender_fault() {
                SendOutcome::Rejected { code, message: failed.message().unwrap_or_default().to_owned() }
            } else {
                SendOutcome::Retry { code }
            };
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests;
