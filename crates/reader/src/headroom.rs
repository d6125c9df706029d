//! Binlog retention headroom: how long an outage may last before the source purges the
//! binlog file the stored checkpoint points into (`sameday_reader_binlog_retention_headroom_seconds`,
//! alarmed on in CloudFormation well before it reaches 0).
//!
//! The full retention while the checkpoint's file is still the one being written (it cannot
//! be purged), else the retention minus the age of the checkpoint's commit.

use std::sync::Arc;
use std::time::Duration;

use sameday_core::checkpoint::CheckpointStore;
use sameday_core::checkpoint_dynamo::AnyCheckpointStore;
use sameday_mysql::{Session, SourceConfig};
use tokio_util::sync::CancellationToken;

use crate::error::ReaderError;
use crate::metrics::ReaderMetrics;

/// How long the source keeps binlogs (0: forever, no headroom to watch).
pub(crate) async fn retention_seconds(source: &SourceConfig) -> Result<u64, ReaderError> {
    let mut session = Session::connect(source).await?;
    let secs = session.binlog_expire_seconds().await;
    session.close().await;
    Ok(secs?)
}

/// Watches the headroom until `stop`: every second until there is a checkpoint to measure,
/// then every 30 s.
pub(crate) async fn watch(
    source: SourceConfig,
    store: Arc<AnyCheckpointStore>,
    retention_secs: u64,
    metrics: ReaderMetrics,
    stop: CancellationToken,
) {
    let mut every = Duration::from_secs(1);
    loop {
        if let Ok(Some(cp)) = store.load().await {
            let active = match Session::connect(&source).await {
                Ok(mut session) => {
                    let logs = session.binary_logs().await;
                    session.close().await;
                    logs.ok().and_then(|l| l.last().map(|(f, _)| f == &cp.position.file))
                }
                Err(_) => None,
            };
            let stamp = if cp.commit_ts_ms > 0 { cp.commit_ts_ms } else { cp.saved_at_ms };
            let age_secs = sameday_core::clock::now_ms().saturating_sub(stamp) as f64 / 1000.0;
            let headroom = match active {
                Some(true) => Some(retention_secs as f64),
                Some(false) => Some(retention_secs as f64 - age_secs),
                None => None,
            };
            if let Some(h) = headroom {
                metrics.retention_headroom_seconds.set(h);
                every = Duration::from_secs(30);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
