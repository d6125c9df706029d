//! Wiring only: source -> decoder -> bounded channel -> publisher -> checkpoint store.
//! The logic lives in the stages.

use std::sync::Arc;
use std::time::Duration;

use sameday_core::aws::Backoff;
use sameday_core::checkpoint::CheckpointStore;
use sameday_core::checkpoint_dynamo::{AnyCheckpointStore, DynamoCheckpointStore};
use sameday_core::health::Health;
use sameday_core::{BinlogPosition, GtidSet, StartPosition};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::check::preflight;
use crate::config::{CheckpointConfig, ReaderConfig, SourceConfig};
use crate::dead_letter::DeadLetterFile;
use crate::decoder::{Decoder, Output};
use crate::error::ReaderError;
use crate::filter::{FilterConfig, TableFilter};
use crate::kinesis::KinesisSink;
use crate::metrics::ReaderMetrics;
use crate::publisher::{PublishSummary, Publisher, PublisherConfig};
use crate::sink::RecordSink;
use crate::source::live::{self, LiveEvent, LiveStream, ServerInfo, Start};

/// Chunks buffered between the decoder and the publisher.
const CHANNEL_CHUNKS: usize = 64;
/// Outputs per chunk within a large transaction (a commit always ends a chunk).
const CHUNK_OUTPUTS: usize = 512;

/// What to stream from a live source.
pub struct SourceRun {
    pub cfg: SourceConfig,
    pub info: ServerInfo,
    pub filter: FilterConfig,
    pub start: Start,
    pub gtid_set: Option<GtidSet>,
    /// Stop before the first event at or after this position.
    pub stop_at: Option<BinlogPosition>,
    /// End at the server's current end of binlog instead of waiting for more.
    pub non_blocking: bool,
    pub format: crate::kinesis::config::RecordFormat,
}

/// Streams events from the source through a decoder into `tx`, reconnecting after
/// transient failures from the last transaction boundary it passed. Returns when the
/// stream ends (non-blocking / `stop_at`), on shutdown, or on a fatal error.
pub async fn stream_source(
    run: SourceRun,
    tx: mpsc::Sender<Vec<Output>>,
    shutdown: CancellationToken,
    health: Option<Arc<Health>>,
) -> Result<(), ReaderError> {
    let filter = TableFilter::new(&run.filter).map_err(ReaderError::Config)?;
    let initial_file = match &run.start {
        Start::File(p) => p.file.clone(),
        Start::Gtid(_) | Start::MysqlGtid(_) => String::new(),
    };
    let mut decoder =
        Decoder::new(run.info.server_id, filter, initial_file, run.gtid_set.clone()).with_format(run.format);
    if run.info.mariadb {
        decoder.set_json_columns(json_columns(&run.cfg).await?);
    }
    let mut start = run.start.clone();
    let mut last_commit: Option<BinlogPosition> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut out = Vec::new();
    loop {
        let mut stream = match LiveStream::open(&run.cfg, &run.info, &start, run.non_blocking).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot open the binlog stream; retrying");
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
            Err(e) => return Err(e),
        };
        if let Start::File(p) = &start {
            decoder.set_file(p.file.clone());
        }
        decoder.reset_transaction();
        tracing::info!(start = ?start, source = %run.cfg.address(), "streaming the binlog");
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                n = stream.next() => n,
            };
            match next {
                Ok(None) => {
                    let _ = tx.send(std::mem::take(&mut out)).await;
                    return Ok(());
                }
                Ok(Some(LiveEvent::File(f))) => decoder.set_file(f),
                Ok(Some(LiveEvent::Event(ev))) => {
                    if let Some(stop) = &run.stop_at {
                        let h = ev.header();
                        let at = BinlogPosition::new(
                            decoder.file().to_owned(),
                            u64::from(h.log_pos()).saturating_sub(u64::from(h.event_size())),
                        );
                        if h.log_pos() != 0 && at.cmp_same_server(stop).is_ge() {
                            let _ = tx.send(std::mem::take(&mut out)).await;
                            return Ok(());
                        }
                    }
                    tracing::trace!(event_type = ev.header().event_type_raw(), log_pos = ev.header().log_pos(), file = %decoder.file(), "event");
                    let scanned = out.len();
                    decoder.handle(&ev, &mut out)?;
                    if let Some(h) = &health {
                        h.beat();
                    }
                    backoff.reset();
                    let fresh = &out[scanned..];
                    if fresh.is_empty() {
                        continue;
                    }
                    let ddl = fresh.iter().any(|o| matches!(o, Output::SchemaChange { .. }));
                    let commit = fresh.iter().rev().find_map(|o| match o {
                        Output::Commit(c) => Some(c.next.clone()),
                        _ => None,
                    });
                    if run.info.mariadb && ddl {
                        // A DDL may add or drop a JSON column; its next table map uses this.
                        match json_columns(&run.cfg).await {
                            Ok(cols) => decoder.set_json_columns(cols),
                            Err(e) => tracing::warn!(error = %e, "cannot refresh the MariaDB JSON columns after a DDL"),
                        }
                    }
                    // Hand over between transactions (so latency is one transaction) and every
                    // CHUNK_OUTPUTS outputs of a large one: one wake-up per event cost more
                    // than decoding the event.
                    if decoder.in_transaction() && out.len() < CHUNK_OUTPUTS {
                        continue;
                    }
                    if let Some(next) = commit {
                        last_commit = Some(next);
                    }
                    if tx.send(std::mem::take(&mut out)).await.is_err() {
                        return Ok(()); // the publisher stopped; its error is reported there
                    }
                }
                Err(e) if e.is_transient() => {
                    // Resume at the last transaction boundary; a partly sent transaction is
                    // sent again (same ids), which later stages de-duplicate. Rows of it not
                    // handed over yet are simply read again.
                    out.clear();
                    if let Some(p) = &last_commit {
                        start = Start::File(p.clone());
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, resume = ?start, retry_in_ms = delay.as_millis() as u64, "binlog stream interrupted; reconnecting");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => break,
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The MariaDB JSON columns of the source (see [`live::mariadb_json_columns`]).
pub async fn json_columns(cfg: &SourceConfig) -> Result<std::collections::HashSet<String>, ReaderError> {
    let mut conn = live::connect(cfg).await?;
    let cols = live::mariadb_json_columns(&mut conn, cfg).await;
    let _ = conn.disconnect().await;
    cols
}

/// Connects, reads server facts and runs the preflight; fails on a blocking problem.
pub async fn prepare_source(cfg: &SourceConfig, filter: &FilterConfig) -> Result<ServerInfo, ReaderError> {
    let mut conn = live::connect(cfg).await?;
    let info = live::server_info(&mut conn, cfg).await?;
    let table_filter = TableFilter::new(filter).map_err(ReaderError::Config)?;
    let problems = preflight(&mut conn, cfg, &info, &table_filter).await?;
    for p in problems.iter().filter(|p| !p.blocking) {
        tracing::warn!(problem = %p.message, "preflight");
    }
    let blocking: Vec<String> = problems.iter().filter(|p| p.blocking).map(|p| p.to_string()).collect();
    let _ = conn.disconnect().await;
    if !blocking.is_empty() {
        return Err(ReaderError::Preflight { source_addr: cfg.address(), problems: blocking.join("\n") });
    }
    Ok(info)
}

/// Opens the configured checkpoint store. With `own`, a DynamoDB store takes the fencing
/// token (deposing any other reader on the key); without, it only observes.
pub async fn open_store(
    cfg: &CheckpointConfig,
    aws: &aws_config::SdkConfig,
    own: bool,
) -> Result<AnyCheckpointStore, ReaderError> {
    Ok(match cfg {
        CheckpointConfig::File { path, .. } => {
            AnyCheckpointStore::File(sameday_core::checkpoint::FileCheckpointStore::new(path))
        }
        CheckpointConfig::Dynamodb { table, key, .. } => {
            let client = aws_sdk_dynamodb::Client::new(aws);
            AnyCheckpointStore::Dynamo(if own {
                DynamoCheckpointStore::open(client, table, key).await?
            } else {
                DynamoCheckpointStore::observe(client, table, key)
            })
        }
    })
}

/// Resolves where to start: the checkpoint when there is one, else the configured start.
pub async fn resolve(
    cfg: &SourceConfig,
    info: &ServerInfo,
    configured: &StartPosition,
    checkpoint: Option<&sameday_core::checkpoint::Checkpoint>,
) -> Result<(Start, Option<GtidSet>), ReaderError> {
    let mut conn = live::connect(cfg).await?;
    let res = match checkpoint {
        Some(cp) => {
            let start = live::resolve_start(&mut conn, cfg, info, &StartPosition::File(cp.position.clone())).await?;
            (start, cp.gtid_set.clone())
        }
        None => {
            let start = live::resolve_start(&mut conn, cfg, info, configured).await?;
            // Starting from a GTID set: it is what has been executed before the stream.
            let executed = match &start {
                Start::Gtid(set) | Start::MysqlGtid(set) => Some(set.clone()),
                Start::File(_) => None,
            };
            (start, executed)
        }
    };
    let _ = conn.disconnect().await;
    Ok(res)
}

/// The reader daemon: binlog -> Kinesis with checkpoints, metrics and health, until
/// `shutdown` (SIGTERM) — then it drains in-flight records, saves the checkpoint and returns.
pub async fn run_reader(cfg: ReaderConfig, shutdown: CancellationToken) -> Result<PublishSummary, ReaderError> {
    let configured = cfg.validate().map_err(ReaderError::Config)?;
    let (health, registry, _) =
        sameday_core::health::start_daemon_endpoint(cfg.metrics.listen, Duration::from_secs(60), &shutdown)
            .await
            .map_err(ReaderError::Config)?;
    let metrics = ReaderMetrics::new(&registry);

    let info = prepare_source(&cfg.source, &cfg.filter).await?;
    tracing::info!(version = %info.version, server_id = info.server_id, "source ready");
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(&aws), &cfg.kinesis.stream, cfg.kinesis.max_record_bytes);
    let status =
        sink.check().await.map_err(|e| ReaderError::Sink { stream: cfg.kinesis.stream.clone(), message: e.message })?;
    tracing::info!(stream = %cfg.kinesis.stream, %status, "Kinesis stream ready");
    // With a DynamoDB checkpoint, only the lease holder streams; another reader waits here.
    let owner = sameday_core::instance_id();
    let (store, lease_ms) = match &cfg.checkpoint {
        CheckpointConfig::Dynamodb { table, key, lease_ms, .. } => {
            let client = aws_sdk_dynamodb::Client::new(&aws);
            match acquire_lease(client, table, key, &owner, *lease_ms, &health, &shutdown).await? {
                Some(store) => (AnyCheckpointStore::Dynamo(store), Some(*lease_ms)),
                None => return Ok(PublishSummary::default()),
            }
        }
        CheckpointConfig::File { .. } => (open_store(&cfg.checkpoint, &aws, true).await?, None),
    };
    let store = Arc::new(store);
    let checkpoint = store.load().await?;
    match &checkpoint {
        Some(cp) => tracing::info!(position = %cp.position, store = %store.describe(), "resuming from checkpoint"),
        None => tracing::info!(start = %configured, store = %store.describe(), "no checkpoint; using start_position"),
    }
    let (start, gtid_set) = resolve(&cfg.source, &info, &configured, checkpoint.as_ref()).await?;
    health.set_ready(true);

    let pcfg = PublisherConfig {
        linger: Duration::from_millis(cfg.kinesis.linger_ms),
        max_in_flight_requests: cfg.kinesis.max_in_flight_requests,
        checkpoint_interval: Duration::from_millis(cfg.checkpoint.interval_ms()),
        ..Default::default()
    };
    // How long an outage may last before the source purges what the checkpoint needs.
    let headroom = match retention_seconds(&cfg.source).await {
        Ok(0) => None,
        Ok(secs) => Some(tokio::spawn(watch_headroom(
            cfg.source.clone(),
            store.clone(),
            secs,
            metrics.clone(),
            shutdown.clone(),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the binlog retention; no headroom metric");
            None
        }
    };
    // The lease keeper stops the pipeline the moment another reader holds the fence.
    let pipeline_stop = shutdown.child_token();
    let deposed = Arc::new(std::sync::OnceLock::new());
    let keeper = lease_ms.map(|lease_ms| {
        tokio::spawn(keep_lease(store.clone(), owner.clone(), lease_ms, pipeline_stop.clone(), deposed.clone()))
    });
    let result = run_pipeline(
        SourceRun {
            cfg: cfg.source.clone(),
            info,
            filter: cfg.filter.clone(),
            start,
            gtid_set,
            stop_at: None,
            non_blocking: false,
            format: cfg.kinesis.format,
        },
        Arc::new(sink),
        Some(store.clone()),
        pcfg,
        metrics,
        Some(DeadLetterFile::new(&cfg.dead_letter_path)),
        Some(health.clone()),
        pipeline_stop.clone(),
    )
    .await;
    pipeline_stop.cancel();
    if let Some(k) = keeper {
        let _ = k.await;
    }
    if let Some(h) = headroom {
        h.abort();
    }
    let result = match deposed.get() {
        Some(why) => Err(ReaderError::Deposed(why.clone())),
        None => result,
    };
    if let Err(e) = &result {
        health.fail(e.to_string());
    } else if let AnyCheckpointStore::Dynamo(d) = &*store {
        // Graceful stop: hand the lease to the standby at once.
        match d.release(&owner).await {
            Ok(()) => tracing::info!("lease released; a standby reader takes over"),
            Err(e) => tracing::warn!(error = %e, "cannot release the lease; it expires on its own"),
        }
    }
    result
}

async fn retention_seconds(source: &SourceConfig) -> Result<u64, ReaderError> {
    let mut conn = live::connect(source).await?;
    let secs = crate::check::binlog_expire_seconds(&mut conn, source).await;
    let _ = conn.disconnect().await;
    secs
}

/// Every 30 s: how long before the source may purge the binlog file the stored checkpoint
/// points into: the full retention while that file is still the one being written, else the
/// retention minus the age of the checkpoint's commit (the alarm fires well before 0).
async fn watch_headroom(
    source: SourceConfig,
    store: Arc<AnyCheckpointStore>,
    retention_secs: u64,
    metrics: ReaderMetrics,
    stop: CancellationToken,
) {
    // Every second until there is a checkpoint to measure, then every 30 s.
    let mut every = Duration::from_secs(1);
    loop {
        if let Ok(Some(cp)) = store.load().await {
            let active = match live::connect(&source).await {
                Ok(mut conn) => {
                    let logs = live::binary_logs(&mut conn, &source).await;
                    let _ = conn.disconnect().await;
                    logs.ok().and_then(|l| l.last().map(|(f, _)| f == &cp.position.file))
                }
                Err(_) => None,
            };
            let stamp = if cp.commit_ts_ms > 0 { cp.commit_ts_ms } else { cp.saved_at_ms };
            let age_secs = sameday_core::checkpoint::now_ms().saturating_sub(stamp) as f64 / 1000.0;
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

/// Waits, as a warm standby, until this reader holds the checkpoint lease; `None` when
/// `shutdown` fires first.
async fn acquire_lease(
    client: aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    owner: &str,
    lease_ms: u64,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Option<DynamoCheckpointStore>, ReaderError> {
    let mut announced = false;
    loop {
        match DynamoCheckpointStore::try_acquire(client.clone(), table, key, owner, lease_ms).await {
            Ok(Ok(store)) => {
                tracing::info!(%owner, fence = store.fence(), "active: holding the checkpoint lease");
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
            _ = tokio::time::sleep(Duration::from_millis(lease_ms / 3)) => {}
        }
    }
}

/// Renews the lease every third of its duration; on losing it (another reader holds the
/// fence, or it ran out unrenewed) records why and stops the pipeline.
async fn keep_lease(
    store: Arc<AnyCheckpointStore>,
    owner: String,
    lease_ms: u64,
    stop: CancellationToken,
    deposed: Arc<std::sync::OnceLock<String>>,
) {
    let AnyCheckpointStore::Dynamo(d) = &*store else { return };
    let mut renewed = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(lease_ms / 3)) => {}
        }
        match d.renew(&owner, lease_ms).await {
            Ok(()) => renewed = std::time::Instant::now(),
            Err(e) if e.is_transient() && renewed.elapsed() < Duration::from_millis(lease_ms * 2 / 3) => {
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

/// Runs a source into a publisher until the source ends or `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn run_pipeline<S: RecordSink, C: CheckpointStore + 'static>(
    run: SourceRun,
    sink: Arc<S>,
    store: Option<Arc<C>>,
    pcfg: PublisherConfig,
    metrics: ReaderMetrics,
    dead_letters: Option<DeadLetterFile>,
    health: Option<Arc<Health>>,
    shutdown: CancellationToken,
) -> Result<PublishSummary, ReaderError> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let publisher = Publisher::new(sink, store, pcfg, metrics, dead_letters, health.clone());
    let publish = tokio::spawn(publisher.run(rx, shutdown.clone()));
    let source_result = stream_source(run, tx, shutdown.clone(), health).await;
    // On a source error, stop the publisher too, but let it save what is durable.
    if source_result.is_err() {
        shutdown.cancel();
    }
    let summary = publish.await.map_err(|e| ReaderError::Sink {
        stream: "publisher".into(),
        message: format!("publisher task failed: {e}"),
    })??;
    source_result?;
    Ok(summary)
}
