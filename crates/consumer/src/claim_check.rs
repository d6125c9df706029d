//! The consumer's claim-check: a change that reaches it inline from Kinesis but whose SQS
//! body would pass the queues' size limit (SQS: 256 KiB by default, 1 MiB at most; a Kinesis
//! record may hold 1 MiB and more) is written to S3 and forwarded as its pointer
//! (`sameday_core::claim_check`).
//!
//! - Only changes the routes forward are stored: one that the same-day filter skips costs no
//!   S3 request.
//! - The object is written before the pointer is queued for SQS, under the same key the
//!   reader would use for the same event id, so a re-read of the shard rewrites the same
//!   object and SQS de-duplicates the pointer on the event id.
//! - S3 failures that may pass are retried in place (the shard waits; its checkpoint cannot
//!   pass the record); one that retrying cannot fix dead-letters the change with the reason,
//!   and the shard goes on.

use std::time::Duration;

use sameday_core::aws::Retry;
use sameday_core::backoff::Backoff;
use sameday_core::claim_check::{check_in, ClaimCheckConfig, POINTER_HEADROOM_BYTES};
use sameday_core::envelope::ChangeEnvelope;
use sameday_core::s3::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::message::sqs_body_len;
use crate::route::{Decision, Routes};

/// What to queue for one Kinesis record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The record as it came, or its pointer.
    Forward(Vec<u8>),
    /// S3 refused the object for good.
    DeadLetter { reason: String, data: Vec<u8> },
    /// Shutdown came while S3 retries were pending.
    Stopped,
}

/// Stores large changes in S3.
pub(crate) struct ClaimChecker {
    store: ObjectStore,
    threshold: usize,
}

impl ClaimChecker {
    /// A checker for bodies over `cfg.threshold_bytes`, or over `max_body_bytes` (the queues'
    /// limit) minus room for the pointer.
    pub(crate) fn new(store: ObjectStore, cfg: &ClaimCheckConfig, max_body_bytes: usize) -> Self {
        let threshold = cfg.threshold_bytes.unwrap_or(max_body_bytes.saturating_sub(POINTER_HEADROOM_BYTES));
        Self { store, threshold }
    }

    /// `data` itself when its body fits or the routes skip it, else its pointer.
    pub(crate) async fn check(
        &self,
        data: Vec<u8>,
        routes: &Routes,
        now: jiff::Timestamp,
        stop: &CancellationToken,
    ) -> Checked {
        if sqs_body_len(&data) <= self.threshold {
            return Checked::Forward(data);
        }
        let forwarded = ChangeEnvelope::from_slice(&data)
            .is_ok_and(|env| env.claim_check.is_none() && matches!(routes.decide(&env, now), Decision::Send(_)));
        if !forwarded {
            // Skipped, already a pointer, or not an envelope (the fan-out dead-letters it).
            return Checked::Forward(data);
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match check_in(&self.store, data.clone()).await {
                Ok(pointer) => {
                    tracing::info!(bytes = data.len(), "large change stored in S3; its pointer goes to SQS");
                    return Checked::Forward(pointer);
                }
                Err(e) if e.retry() == Retry::Transient => {
                    tracing::warn!(error = %e, "claim-check write failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return Checked::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                Err(e) => return Checked::DeadLetter { reason: e.to_string(), data },
            }
        }
    }
}
