//! The worker's SQS side: which messages it holds and what becomes of each one in SQS.
//!
//! - Long-polls up to 10 messages per call while fewer than `max_in_flight_messages` are
//!   held.
//! - Every held message's visibility is extended while it waits or is worked on.
//! - A message leaves the inbox in one of three ways, each chosen by the scheduler: deleted
//!   (its effects are done), handed back (visible again after a pause, or at once for the
//!   messages queued behind it), or dead-lettered.
//! - Poison (not an envelope, no rule for the table, unreadable due time, a name taken by
//!   another input) goes to `dead_letter_queue` at once, or, without one, is left to the
//!   queue's redrive policy; it is counted and logged with the reason either way.
//! - SIGTERM: no new receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
};
use sameday_core::aws::describe;
use sameday_core::backoff::Backoff;
use sameday_core::health::Health;
use sameday_core::sqs::{resolve_queue, QueueRef};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::QueueConfig;
use crate::metrics::WorkerMetrics;

/// How long a handed-back message stays invisible.
const RETRY_VISIBILITY_SECS: i32 = 10;
/// ReceiveMessage and ChangeMessageVisibilityBatch take at most this many messages.
const SQS_BATCH: usize = 10;

/// A received message, held until it is deleted or handed back.
pub(crate) struct Held {
    message: Message,
    received: Instant,
    received_ms: u64,
    /// One of `max_in_flight_messages`, returned when the message is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    pub(crate) fn id(&self) -> &str {
        self.message.message_id().unwrap_or_default()
    }

    pub(crate) fn body(&self) -> &str {
        self.message.body().unwrap_or_default()
    }

    /// When it was received (ms since the epoch).
    pub(crate) fn received_ms(&self) -> u64 {
        self.received_ms
    }

    fn receipt(&self) -> &str {
        self.message.receipt_handle().unwrap_or_default()
    }

    /// When SQS accepted the message (ms since the epoch), if it said.
    pub(crate) fn sent_ms(&self) -> u64 {
        self.message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The FIFO group; a standard queue's message is a group of its own.
    pub(crate) fn group(&self) -> String {
        self.message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            .unwrap_or_else(|| self.id().to_owned())
    }

    /// Whether SQS delivers this message for the first time (ApproximateReceiveCount 1):
    /// no earlier attempt can have had effects.
    pub(crate) fn first_delivery(&self) -> bool {
        self.receives() == "1"
    }

    fn receives(&self) -> String {
        self.message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .cloned()
            .unwrap_or_default()
    }
}

/// What became of one message.
pub(crate) enum Handled {
    Deleted,
    /// Left in the queue (will be redelivered): later messages of its group must wait.
    HandedBack,
}

/// The queue the worker reads, the messages it holds, and the calls that end a hold.
pub(crate) struct Inbox {
    sqs: aws_sdk_sqs::Client,
    config: QueueConfig,
    queue: QueueRef,
    dead_letter: Option<QueueRef>,
    metrics: WorkerMetrics,
    permits: Arc<Semaphore>,
    /// Received, not yet deleted or released: message id -> receipt handle.
    held: Mutex<HashMap<String, String>>,
}

impl Inbox {
    /// Finds the queue and the dead-letter queue; the error names the one not found.
    pub(crate) async fn connect(
        sqs: aws_sdk_sqs::Client,
        config: QueueConfig,
        metrics: WorkerMetrics,
    ) -> Result<Self, String> {
        let queue = resolve(&sqs, &config.queue).await?;
        if !queue.fifo {
            tracing::warn!(queue = %queue.url, "standard queue: a row's changes may arrive out of order");
        }
        let dead_letter = match &config.dead_letter_queue {
            Some(q) => Some(resolve(&sqs, q).await.map_err(|e| format!("dead_letter_queue: {e}"))?),
            None => None,
        };
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.max_in_flight_messages)),
            sqs,
            config,
            queue,
            dead_letter,
            metrics,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn queue(&self) -> &QueueRef {
        &self.queue
    }

    /// Receives until `stopping` fires, passing each receive's messages to `dispatch` at
    /// once (so a group's messages received together are queued together).
    pub(crate) async fn receive_until(
        &self,
        stopping: &CancellationToken,
        health: &Health,
        mut dispatch: impl FnMut(Vec<Held>),
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !stopping.is_cancelled() {
            health.beat();
            let permit = tokio::select! {
                biased;
                _ = stopping.cancelled() => break,
                p = self.permits.clone().acquire_owned() => p.expect("never closed"),
            };
            // The permit only waits for room; each message takes its own below.
            let room = (self.permits.available_permits() + 1).min(SQS_BATCH);
            drop(permit);
            let out = tokio::select! {
                biased;
                _ = stopping.cancelled() => break,
                out = self.receive(room) => out,
            };
            let messages = match out {
                Ok(messages) => {
                    backoff.reset();
                    messages
                }
                Err(e) => {
                    self.metrics.error("receive");
                    tracing::warn!(queue = %self.queue.url, error = %e, "ReceiveMessage failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            if !messages.is_empty() {
                dispatch(messages.into_iter().map(|m| self.hold(m)).collect());
            }
        }
    }

    /// One long poll for at most `room` messages; the error is described for the log.
    async fn receive(&self, room: usize) -> Result<Vec<Message>, String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(room as i32)
            .wait_time_seconds(self.config.wait_time_seconds)
            .visibility_timeout(self.config.visibility_timeout_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out.messages.unwrap_or_default())
    }

    fn hold(&self, message: Message) -> Held {
        let permit = self.permits.clone().try_acquire_owned().ok();
        let held =
            Held { message, received: Instant::now(), received_ms: sameday_core::clock::now_ms(), _permit: permit };
        self.metrics.messages.inc();
        self.held.lock().expect("held").insert(held.id().to_owned(), held.receipt().to_owned());
        self.metrics.in_flight.inc();
        held
    }

    /// Deletes a message whose effects are done.
    pub(crate) async fn delete(&self, held: &Held) -> Handled {
        let res = self.sqs.delete_message().queue_url(&self.queue.url).receipt_handle(held.receipt()).send().await;
        if let Err(e) = res {
            // The effect is done and idempotent: a redelivery repeats it harmlessly.
            self.metrics.error("delete");
            tracing::warn!(message = held.id(), error = %describe(&e), "DeleteMessage failed; SQS will redeliver");
        }
        self.forget(held);
        self.metrics.processing.observe(held.received.elapsed().as_secs_f64());
        Handled::Deleted
    }

    /// Hands a message back after a failure: visible again after a pause.
    pub(crate) async fn hand_back(&self, held: &Held) -> Handled {
        self.release(held, RETRY_VISIBILITY_SECS).await;
        Handled::HandedBack
    }

    /// Hands a message back visible at once: it waited behind a handed-back message of its
    /// group, or the worker is stopping, and SQS redelivers the group in order.
    pub(crate) async fn release_now(&self, held: &Held) {
        self.release(held, 0).await;
    }

    /// Sends poison to the dead-letter queue and deletes it, or without one leaves it to the
    /// queue's redrive policy.
    pub(crate) async fn dead_letter(&self, held: &Held, kind: &str, reason: String) -> Handled {
        self.metrics.dead_letter(kind);
        tracing::error!(message = held.id(), %reason, receives = held.receives(), "poison message");
        let Some(dlq) = &self.dead_letter else {
            // The queue's redrive policy moves it to its DLQ after maxReceiveCount.
            self.release_now(held).await;
            return Handled::HandedBack;
        };
        let attr = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build();
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&dlq.url)
            .message_body(held.body())
            .message_attributes("sameday_reason", attr(&reason).expect("data type set"))
            .message_attributes("sameday_source_queue", attr(&self.queue.url).expect("data type set"));
        if dlq.fifo {
            send = send.message_group_id(held.group()).message_deduplication_id(held.id());
        }
        match send.send().await {
            Ok(_) => self.delete(held).await,
            Err(e) => {
                self.metrics.error("dead_letter");
                tracing::error!(error = %describe(&e), "cannot send to the dead-letter queue; the message stays");
                self.hand_back(held).await
            }
        }
    }

    /// Makes a message visible again after `after_secs`.
    async fn release(&self, held: &Held, after_secs: i32) {
        let res = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue.url)
            .receipt_handle(held.receipt())
            .visibility_timeout(after_secs)
            .send()
            .await;
        if let Err(e) = res {
            tracing::warn!(message = held.id(), error = %describe(&e), "cannot hand the message back; it reappears after its visibility timeout");
        }
        self.forget(held);
    }

    fn forget(&self, held: &Held) {
        if self.held.lock().expect("held").remove(held.id()).is_some() {
            self.metrics.in_flight.dec();
        }
    }

    /// Extends the visibility of every held message every third of the timeout, until the
    /// task is aborted.
    pub(crate) async fn keep_visible(self: Arc<Self>) {
        let every = Duration::from_secs((self.config.visibility_timeout_seconds / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            self.extend_visibility().await;
        }
    }

    async fn extend_visibility(&self) {
        let held: Vec<(String, String)> =
            self.held.lock().expect("held").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for chunk in held.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, receipt))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(self.config.visibility_timeout_seconds)
                        .build()
                        .expect("id and receipt set")
                })
                .collect();
            let res = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %describe(&e), "cannot extend message visibility");
            }
        }
    }
}

/// A queue's URL (from a name or URL) and whether it is FIFO; the error names the queue.
async fn resolve(sqs: &aws_sdk_sqs::Client, name_or_url: &str) -> Result<QueueRef, String> {
    resolve_queue(sqs, name_or_url).await.map_err(|(_, message)| format!("queue {name_or_url}: {message}"))
}
