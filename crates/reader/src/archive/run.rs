//! The archive daemon (`sameday archive --config reader.toml`): every
//! `archive.poll_interval_ms` it lists the source's binary logs, decides with
//! [`catalog::plan`] what to copy, copies each rotated file ([`copy::copy_file`]) and writes
//! it to S3 in one PutObject; the metrics and `/healthz` follow each round. A failed round is
//! retried after a backoff; SIGTERM stops between (or in the middle of) copies without
//! leaving anything half-written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sameday_core::backoff::Backoff;
use sameday_core::clock::now_ms;
use sameday_core::health::Health;
use sameday_core::metrics::MetricsRegistry;
use sameday_core::s3::ObjectStore;
use sameday_mysql::{Session, SourceConfig};
use tokio_util::sync::CancellationToken;

use super::catalog::{self, describe_ranges, list_archive, ArchiveStatus, Plan};
use super::config::ArchiveConfig;
use super::copy::{copy_file, created_at};
use super::metrics::ArchiveMetrics;
use super::{ArchiveError, CONTENT_TYPE};
use crate::config::ReaderConfig;

/// `/healthz` turns unhealthy after this long without a finished round (at least).
const MIN_STALL_AFTER: Duration = Duration::from_secs(120);

/// What one run of the daemon copied.
#[derive(Debug, Default, Clone, Copy)]
pub struct ArchiveSummary {
    pub files: u64,
    pub bytes: u64,
}

/// The archive daemon, until `shutdown`; with `once`, one round (errors returned, not retried).
pub async fn run_archive(
    cfg: ReaderConfig,
    shutdown: CancellationToken,
    once: bool,
) -> Result<ArchiveSummary, ArchiveError> {
    cfg.validate().map_err(ArchiveError::Config)?;
    let archive = archive_section(&cfg)?;
    let registry = MetricsRegistry::default();
    let health = Health::new();
    let poll = Duration::from_millis(archive.poll_interval_ms);
    let stall_after = MIN_STALL_AFTER.max(poll * 3);
    let addr = sameday_core::health::serve(
        archive.metrics_listen,
        health.clone(),
        registry.clone(),
        stall_after,
        shutdown.clone(),
    )
    .await
    .map_err(|e| ArchiveError::Config(format!("archive.metrics_listen: {e}")))?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    let mut archiver = Archiver::new(&cfg, &archive, health.clone(), ArchiveMetrics::new(&registry)).await;
    tracing::info!(location = %archive.location, server_id = archiver.source.server_id, source = %cfg.source.address(), "archiving the source's rotated binlog files (replica server_id {}; set archive.server_id to choose)", archiver.source.server_id);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let wait = match archiver.round(&shutdown).await {
            Ok(()) => {
                backoff.reset();
                health.set_ready(true);
                health.beat();
                if once {
                    break;
                }
                poll
            }
            Err(e) if once || !e.is_transient() => {
                archiver.metrics.error(e.kind());
                health.fail(e.to_string());
                return Err(e);
            }
            Err(e) => {
                archiver.metrics.error(e.kind());
                archiver.archived = None; // list again: the listing is the truth
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "archive round failed; retrying");
                delay
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!(files = archiver.summary.files, bytes = archiver.summary.bytes, "archive stopped");
    Ok(archiver.summary)
}

fn archive_section(cfg: &ReaderConfig) -> Result<ArchiveConfig, ArchiveError> {
    cfg.archive.clone().ok_or_else(|| {
        ArchiveError::Config(
            "the config has no [archive] section; add one with location = \"s3://bucket/prefix/\" (docs/archive.md)"
                .into(),
        )
    })
}

/// The state that survives rounds.
struct Archiver {
    /// `[source]` with the archive's replica id.
    source: SourceConfig,
    store: ObjectStore,
    max_file_bytes: u64,
    metrics: ArchiveMetrics,
    health: Arc<Health>,
    /// What the archive holds (name -> size); `None`: list it again.
    archived: Option<BTreeMap<String, u64>>,
    /// When each file was opened on the source (Unix seconds); never changes.
    opened_at: HashMap<String, u32>,
    reported_missing: BTreeSet<String>,
    summary: ArchiveSummary,
}

impl Archiver {
    async fn new(cfg: &ReaderConfig, archive: &ArchiveConfig, health: Arc<Health>, metrics: ArchiveMetrics) -> Self {
        let mut source = cfg.source.clone();
        source.server_id = archive.replica_id();
        let client = sameday_core::s3::client(&cfg.aws).await;
        Self {
            source,
            store: ObjectStore::new(client, archive.location.clone()),
            max_file_bytes: archive.max_file_bytes,
            metrics,
            health,
            archived: None,
            opened_at: HashMap::new(),
            reported_missing: BTreeSet::new(),
            summary: ArchiveSummary::default(),
        }
    }

    /// One look at the source and the archive, and the copies it calls for.
    async fn round(&mut self, shutdown: &CancellationToken) -> Result<(), ArchiveError> {
        let (logs, retention_secs) = source_logs(&self.source).await?;
        let archived = match self.archived.take() {
            Some(a) => a,
            None => list_archive(&self.store).await?,
        };
        let plan = catalog::plan(&logs, &archived);
        self.archived = Some(archived);
        if let Some(c) = plan.conflicts.first() {
            let url = self.store.location().url_of(&self.store.location().key(&c.name));
            return Err(ArchiveError::Conflict { url, name: c.name.clone(), archived: c.archived, server: c.server });
        }
        self.report_missing(&plan);
        let mut pending = plan.copy.clone();
        while let Some((name, size)) = pending.first().cloned() {
            self.metrics.pending_files.set(pending.len() as i64);
            self.update_ages(&logs, &pending, retention_secs).await;
            if size > self.max_file_bytes {
                return Err(ArchiveError::Config(format!(
                    "{name} is {size} bytes, above archive.max_file_bytes = {}; raise it (the copy holds the file in memory, \
                     give the task that much more) or lower the source's max_binlog_size",
                    self.max_file_bytes
                )));
            }
            let copied = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                copied = self.copy_one(&name, size) => copied?,
            };
            self.summary.files += 1;
            self.summary.bytes += copied;
            self.health.beat();
            pending.remove(0);
        }
        self.metrics.pending_files.set(0);
        self.update_ages(&logs, &pending, retention_secs).await;
        Ok(())
    }

    /// Copies `name` and writes it to the archive; returns its size.
    async fn copy_one(&mut self, name: &str, size: u64) -> Result<u64, ArchiveError> {
        let started = Instant::now();
        let health = self.health.clone();
        let file = copy_file(&self.source, self.source.server_id, name, size, || health.beat()).await?;
        let read_ms = started.elapsed().as_millis() as u64;
        let events = file.events;
        let (key, sha256) = self.store.put(name, file.bytes, CONTENT_TYPE).await?;
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            file = name,
            bytes = size,
            events,
            sha256 = %sha256,
            object = %self.store.location().url_of(&key),
            read_ms,
            total_ms = (secs * 1000.0) as u64,
            mb_per_s = format!("{:.1}", size as f64 / 1e6 / secs.max(1e-9)),
            "binlog file archived"
        );
        if let Some(a) = self.archived.as_mut() {
            a.insert(name.to_owned(), size);
        }
        self.metrics.files.inc();
        self.metrics.bytes.inc_by(size);
        Ok(size)
    }

    fn report_missing(&mut self, plan: &Plan) {
        self.metrics.missing_files.set(plan.missing.len() as i64);
        let new: Vec<String> = plan.missing.iter().filter(|m| !self.reported_missing.contains(*m)).cloned().collect();
        if !new.is_empty() {
            tracing::error!(
                missing = %describe_ranges(&new),
                location = %self.store.location(),
                "binlog files were purged from the source before they were archived: the changes in them cannot be \
                 replayed from the archive. Run `sameday reconcile --config worker.toml --fix` to repair the schedule, \
                 and raise the source's binlog retention or fix the archive so it keeps up"
            );
            self.reported_missing.extend(new);
        }
    }

    /// `newest_file_age_seconds` and `retention_headroom_seconds` from the times the files
    /// after the newest archived one and after the oldest pending one were opened.
    async fn update_ages(&mut self, logs: &[(String, u64)], pending: &[(String, u64)], retention_secs: u64) {
        let now = now_ms() as f64 / 1000.0;
        let newest = match (self.archived.as_ref(), logs.last()) {
            (Some(a), Some((active, _))) => catalog::newest_of(a, active),
            _ => None,
        };
        if let Some(newest) = newest {
            if let Some(closed) = self.rotated_at(logs, &newest).await {
                self.metrics.newest_file_age_seconds.set((now - f64::from(closed)).max(0.0));
            }
        }
        if retention_secs == 0 {
            return;
        }
        let oldest_pending_rotated = match pending.first() {
            Some((name, _)) => self.rotated_at(logs, name).await,
            None => Some(now as u32),
        };
        if let Some(rotated) = oldest_pending_rotated {
            self.metrics.retention_headroom_seconds.set(headroom(retention_secs, now, rotated));
        }
    }

    /// When `name` was rotated: when the file after it was opened; `None` when unknown.
    async fn rotated_at(&mut self, logs: &[(String, u64)], name: &str) -> Option<u32> {
        let next = logs.iter().skip_while(|(n, _)| n != name).nth(1).map(|(n, _)| n.clone())?;
        if let Some(t) = self.opened_at.get(&next) {
            return Some(*t);
        }
        match created_at(&self.source, self.source.server_id, &next).await {
            Ok(t) => {
                self.opened_at.insert(next, t);
                Some(t)
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %next, "cannot read when the file was opened; ages not updated");
                None
            }
        }
    }
}

/// Seconds until a file rotated at `rotated_at` may be purged by a `retention_secs` expiry.
pub(crate) fn headroom(retention_secs: u64, now_secs: f64, rotated_at: u32) -> f64 {
    retention_secs as f64 - (now_secs - f64::from(rotated_at)).max(0.0)
}

/// The source's binary logs (oldest first) and its binlog retention in seconds (0: never).
async fn source_logs(source: &SourceConfig) -> Result<(Vec<(String, u64)>, u64), ArchiveError> {
    let mut session = Session::connect(source).await?;
    let logs = session.binary_logs().await;
    let retention = session.binlog_expire_seconds().await;
    session.close().await;
    Ok((logs?, retention?))
}

/// The archive against the source, for `sameday check` (see [`ArchiveStatus`]).
pub async fn archive_status(cfg: &ReaderConfig) -> Result<ArchiveStatus, ArchiveError> {
    let archive = archive_section(cfg)?;
    let metrics = ArchiveMetrics::new(&MetricsRegistry::default());
    let mut archiver = Archiver::new(cfg, &archive, Health::new(), metrics).await;
    let (logs, retention_secs) = source_logs(&archiver.source).await?;
    let archived = list_archive(&archiver.store).await?;
    let plan = catalog::plan(&logs, &archived);
    let headroom_secs = match (retention_secs, plan.copy.first()) {
        (0, _) => None,
        (secs, None) => Some(secs as f64),
        (secs, Some((name, _))) => {
            archiver.rotated_at(&logs, name).await.map(|t| headroom(secs, now_ms() as f64 / 1000.0, t))
        }
    };
    let oldest = logs.first().map(|(n, _)| n.clone());
    let mut status = ArchiveStatus::new(archive.location.to_string(), plan, oldest, retention_secs);
    status.headroom_secs = headroom_secs;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_is_retention_minus_the_age_of_the_rotation() {
        assert_eq!(headroom(3600, 10_000.0, 10_000 - 600), 3000.0);
        assert_eq!(headroom(3600, 10_000.0, 10_100), 3600.0); // clocks apart: never more than the retention
        assert!(headroom(3600, 10_000.0, 0) < 0.0);
    }
}
