//! The reader's claim-check stage: between the decoder and the publisher, every record larger
//! than the threshold is written to S3 and replaced by its pointer (`sameday_core::claim_check`).
//!
//! - Chunks pass through in order and a chunk is handed on only after all of its objects are
//!   written, so a pointer never reaches Kinesis before its object exists, and a row keeps its
//!   place among its key's changes.
//! - S3 failures that may pass (throttling, 5xx, network) are retried with backoff for as long
//!   as it takes: the binlog waits (backpressure), nothing is skipped, and the checkpoint
//!   cannot pass a record that was not published. A failure retrying cannot fix (no such
//!   bucket, access denied) stops the reader with the bucket and the fix; the checkpoint holds
//!   the position, so nothing is lost.
//! - Only the sameday format has pointers; `ReaderConfig::validate` refuses the claim-check
//!   with the DMS format.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sameday_core::aws::Retry;
use sameday_core::backoff::Backoff;
use sameday_core::claim_check::{check_in, ClaimCheckConfig, ClaimCheckError, POINTER_HEADROOM_BYTES};
use sameday_core::s3::{ObjectStore, S3Location};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::decoder::Output;
use crate::error::ReaderError;

/// Stores large records in S3 and hands on their pointers.
#[derive(Debug, Clone)]
pub struct ClaimChecker {
    store: ObjectStore,
    threshold: usize,
    checked_in: Counter,
}

impl ClaimChecker {
    /// A checker for records over `cfg.threshold_bytes`, or over `max_record_bytes` minus
    /// room for the pointer when the config leaves the threshold out.
    pub fn new(store: ObjectStore, cfg: &ClaimCheckConfig, max_record_bytes: usize) -> Self {
        let threshold = cfg.threshold_bytes.unwrap_or(max_record_bytes.saturating_sub(POINTER_HEADROOM_BYTES));
        Self { store, threshold, checked_in: Counter::default() }
    }

    pub(crate) fn with_counter(mut self, checked_in: Counter) -> Self {
        self.checked_in = checked_in;
        self
    }

    pub fn location(&self) -> &S3Location {
        self.store.location()
    }

    /// Runs the stage: chunks from `rx` come out of the returned receiver with their large
    /// records replaced by pointers. The handle ends with the error that stopped the stage.
    pub(crate) fn spawn(
        self,
        mut rx: mpsc::Receiver<Vec<Output>>,
        shutdown: CancellationToken,
    ) -> (mpsc::Receiver<Vec<Output>>, JoinHandle<Result<(), ReaderError>>) {
        let (tx, out) = mpsc::channel(rx.max_capacity());
        let task = tokio::spawn(async move {
            while let Some(mut chunk) = rx.recv().await {
                if !self.check_in_large(&mut chunk, &shutdown).await? {
                    return Ok(());
                }
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        (out, task)
    }

    /// Replaces the chunk's large records by pointers; `false` when shutdown came first.
    async fn check_in_large(&self, chunk: &mut [Output], shutdown: &CancellationToken) -> Result<bool, ReaderError> {
        let large = chunk.iter_mut().filter_map(|o| match o {
            Output::Row(r) if r.data.len() + r.partition_key.len() > self.threshold => Some(r),
            _ => None,
        });
        let puts = large.map(|r| async move {
            let pointer = self.check_in_retrying(&r.data, shutdown).await.map_err(|e| ReaderError::Sink {
                stream: self.store.location().to_string(),
                message: format!("change {} of {} at {}: {e}", r.id, r.table, r.position),
            })?;
            Ok::<_, ReaderError>(pointer.map(|p| {
                tracing::info!(change = %r.id, table = %r.table, bytes = r.data.len(), "large change stored in S3; its pointer goes to the stream");
                r.data = p;
            }))
        });
        let mut all_done = true;
        for done in futures_util::future::join_all(puts).await {
            if done?.is_some() {
                self.checked_in.inc();
            } else {
                all_done = false;
            }
        }
        Ok(all_done)
    }

    /// One record's pointer; `None` when shutdown came during retries.
    async fn check_in_retrying(
        &self,
        record: &[u8],
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<u8>>, ClaimCheckError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match check_in(&self.store, record.to_vec()).await {
                Ok(p) => return Ok(Some(p)),
                Err(e) if e.retry() == Retry::Transient => {
                    tracing::warn!(error = %e, "claim-check write failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
