//! The checkpoint lease of an active/standby reader pair (DynamoDB checkpoint store only).
//!
//! Only the lease holder streams. A second reader waits as a warm standby (healthy, so ECS
//! keeps it) and takes over from the checkpoint when the lease expires or is released on
//! SIGTERM. The holder renews every third of the lease and stops its pipeline the moment a
//! renew finds the fence moved (or the lease ran out unrenewed): a deposed reader must not
//! publish, and every checkpoint write is conditional on the fence, so it cannot write one.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sameday_core::checkpoint_dynamo::{AnyCheckpointStore, DynamoCheckpointStore};
use sameday_core::health::Health;
use tokio_util::sync::CancellationToken;

use crate::error::ReaderError;

/// The lease this reader asks for: the checkpoint item `key` of `table`, held by `owner`.
pub(crate) struct Lease {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub key: String,
    pub owner: String,
    pub lease_ms: u64,
}

impl Lease {
    fn period(&self) -> Duration {
        Duration::from_millis(self.lease_ms / 3)
    }

    /// Waits, as a warm standby, until this reader holds the lease; `None` when `shutdown`
    /// fires first.
    pub(crate) async fn acquire(
        &self,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<Option<DynamoCheckpointStore>, ReaderError> {
        let mut announced = false;
        loop {
            let attempt = DynamoCheckpointStore::try_acquire(
                self.client.clone(),
                &self.table,
                &self.key,
                &self.owner,
                self.lease_ms,
            );
            match attempt.await {
                Ok(Ok(store)) => {
                    tracing::info!(owner = %self.owner, fence = store.fence(), "active: holding the checkpoint lease");
                    return Ok(Some(store));
                }
                Ok(Err(standby)) => {
                    if !announced {
                        tracing::info!(holder = %standby.holder, expires_ms = standby.expires_ms, "standby: another reader is active; waiting for its lease to end");
                        announced = true;
                    }
                    // A warm standby is healthy.
                    health.set_ready(true);
                }
                Err(e) if e.is_transient() => tracing::warn!(error = %e, "checkpoint lease: retrying"),
                Err(e) => return Err(e.into()),
            }
            health.beat();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(self.period()) => {}
            }
        }
    }

    /// Renews the lease every third of its duration until `stop`; on losing it records why
    /// in `deposed` and cancels `stop` (the pipeline's token).
    pub(crate) async fn keep(
        self,
        store: Arc<AnyCheckpointStore>,
        stop: CancellationToken,
        deposed: Arc<OnceLock<String>>,
    ) {
        let AnyCheckpointStore::Dynamo(d) = &*store else { return };
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.period()) => {}
            }
            match d.renew(&self.owner, self.lease_ms).await {
                Ok(()) => renewed = Instant::now(),
                Err(e) if e.is_transient() && renewed.elapsed() < Duration::from_millis(self.lease_ms * 2 / 3) => {
                    tracing::warn!(error = %e, "lease renew failed; retrying");
                }
                Err(e) => {
                    let why = format!("lost the checkpoint lease ({e}); another reader is active");
                    tracing::error!(%why, "stopping: a deposed reader must not publish");
                    let _ = deposed.set(why);
                    stop.cancel();
                    return;
                }
            }
        }
    }
}
