//! Binlog retention headroom: how long an outage may last before the source purges the
//! binlog file the stored checkpoint points into (`sameday_reader_binlog_retention_headroom_seconds`,
//! alarmed on in CloudFormation well before it reaches 0).
//!
//! The full retention while nothing the checkpoint needs can be lost to a purge: the
//! checkpoint's file is still the one being written, or (with `[archive]`) every rotated
//! file from the checkpoint's on is in the binlog archive, from which a purged range can be
//! replayed. Else the retention minus the age of the checkpoint's commit (the files after
//! it are younger, so this is the soonest any of them can go).

use std::sync::Arc;
use std::time::Duration;

use sameday_core::checkpoint::CheckpointStore;
use sameday_core::checkpoint_dynamo::AnyCheckpointStore;
use sameday_core::s3::ObjectStore;
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
/// then every 30 s. `archive`: the binlog archive, when the config has one.
pub(crate) async fn watch(
    source: SourceConfig,
    store: Arc<AnyCheckpointStore>,
    archive: Option<ObjectStore>,
    retention_secs: u64,
    metrics: ReaderMetrics,
    stop: CancellationToken,
) {
    let mut every = Duration::from_secs(1);
    loop {
        if let Ok(Some(cp)) = store.load().await {
            let logs = match Session::connect(&source).await {
                Ok(mut session) => {
                    let logs = session.binary_logs().await;
                    session.close().await;
                    logs.ok()
                }
                Err(_) => None,
            };
            let safe = match logs {
                Some(logs) => Some(safe_from_purges(&logs, &cp.position.file, archive.as_ref()).await),
                None => None,
            };
            let stamp = if cp.commit_ts_ms > 0 { cp.commit_ts_ms } else { cp.saved_at_ms };
            let age_secs = sameday_core::clock::now_ms().saturating_sub(stamp) as f64 / 1000.0;
            let headroom = match safe {
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

/// Whether no purge can take what the checkpoint in `file` needs: `file` is still being
/// written, or every rotated file from `file` on is archived (an archive that cannot be
/// read counts as not holding them).
async fn safe_from_purges(logs: &[(String, u64)], file: &str, archive: Option<&ObjectStore>) -> bool {
    let needed = rotated_from(logs, file);
    if needed.is_empty() {
        return true;
    }
    let Some(archive) = archive else { return false };
    match crate::archive::catalog::holds_all(archive, needed).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the binlog archive; the headroom ignores it");
            false
        }
    }
}

/// The rotated files (all but the last of `SHOW BINARY LOGS`) from `file` on; empty when
/// `file` is the one being written (or not listed: the checkpoint check reports that).
fn rotated_from<'a>(logs: &'a [(String, u64)], file: &str) -> &'a [(String, u64)] {
    match logs.iter().position(|(f, _)| f == file) {
        Some(i) => &logs[i..logs.len() - 1],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_needs_the_rotated_files_from_its_own_on() {
        let logs: Vec<(String, u64)> =
            ["mysql-bin.000001", "mysql-bin.000002", "mysql-bin.000003"].iter().map(|f| ((*f).to_owned(), 9)).collect();
        let names = |f: &str| rotated_from(&logs, f).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>();
        assert_eq!(names("mysql-bin.000001"), ["mysql-bin.000001", "mysql-bin.000002"]);
        assert!(names("mysql-bin.000003").is_empty());
        assert!(names("mysql-bin.000009").is_empty());
    }
}
