//! The reader daemon, wiring only: the source (checked and resolved by
//! [`crate::source::prepare`], streamed by [`crate::source::stream`]), the checkpoint store and
//! its lease ([`crate::lease`]), the retention headroom watcher ([`crate::headroom`]) and the
//! publisher into Kinesis ([`crate::pipeline`]). The logic lives in those stages.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sameday_core::checkpoint::CheckpointStore;
use sameday_core::checkpoint_dynamo::AnyCheckpointStore;
use sameday_core::daemon::Endpoint;
use sameday_core::health::Health;
use sameday_core::s3::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::claim_check::ClaimChecker;
use crate::config::{CheckpointConfig, ReaderConfig};
use crate::dead_letter::DeadLetters;
use crate::error::ReaderError;
use crate::kinesis::KinesisSink;
use crate::lease::Lease;
use crate::metrics::ReaderMetrics;
use crate::pipeline::run_pipeline;
use crate::publisher::{PublishSummary, Publisher, PublisherConfig};
use crate::sink::RecordSink as _;
use crate::source::prepare::{prepare_source, resolve};
use crate::source::stream::SourceRun;
use crate::store::open_store;

/// `/healthz` turns unhealthy after this long without progress (events or heartbeats).
const STALL_AFTER: Duration = Duration::from_secs(60);

/// The reader daemon: binlog -> Kinesis with checkpoints, metrics and health, until
/// `shutdown` (SIGTERM) — then it drains in-flight records, saves the checkpoint and returns.
pub async fn run_reader(cfg: ReaderConfig, shutdown: CancellationToken) -> Result<PublishSummary, ReaderError> {
    let configured = cfg.validate().map_err(ReaderError::Config)?;
    let Endpoint { health, registry, .. } =
        Endpoint::start(&cfg, STALL_AFTER, &shutdown).await.map_err(ReaderError::Config)?;
    let metrics = ReaderMetrics::new(&registry);

    let info = prepare_source(&cfg.source, &cfg.filter).await?;
    tracing::info!(version = %info.version, server_id = info.server_id, "source ready");
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let (sink, claim_check) = kinesis_sink(&cfg, &aws).await?;
    // With a DynamoDB checkpoint, only the lease holder streams; another reader waits here.
    let Some((store, lease)) = take_store(&cfg, &aws, &health, &shutdown).await? else {
        return Ok(PublishSummary::default());
    };
    let checkpoint = store.load().await?;
    match &checkpoint {
        Some(cp) => tracing::info!(position = %cp.position, store = %store.describe(), "resuming from checkpoint"),
        None => tracing::info!(start = %configured, store = %store.describe(), "no checkpoint; using start_position"),
    }
    let (start, gtid_set) = resolve(&cfg.source, &info, &configured, checkpoint.as_ref()).await?;
    health.set_ready(true);

    let headroom = spawn_headroom(&cfg, &store, &metrics, &shutdown).await;
    // The lease keeper stops the pipeline the moment another reader holds the fence.
    let pipeline_stop = shutdown.child_token();
    let deposed = Arc::new(OnceLock::new());
    let owner = lease.as_ref().map(|l| l.owner.clone());
    let keeper = lease.map(|l| tokio::spawn(l.keep(store.clone(), pipeline_stop.clone(), deposed.clone())));
    let source = SourceRun::for_reader(&cfg, info, start, gtid_set);
    let publisher = Publisher::new(Arc::new(sink), PublisherConfig { claim_check, ..publisher_config(&cfg) })
        .with_checkpoints(store.clone())
        .with_metrics(metrics)
        .with_dead_letters(dead_letters(&cfg).await)
        .with_health(health.clone());
    let result = run_pipeline(source, publisher, pipeline_stop.clone()).await;
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
    finish(&result, &store, owner.as_deref(), &health).await;
    result
}

fn publisher_config(cfg: &ReaderConfig) -> PublisherConfig {
    PublisherConfig {
        linger: Duration::from_millis(cfg.kinesis.linger_ms),
        max_in_flight_requests: cfg.kinesis.max_in_flight_requests,
        checkpoint_interval: Duration::from_millis(cfg.checkpoint.interval_ms()),
        aggregate: cfg.kinesis.aggregates(),
        ..Default::default()
    }
}

/// The dead-letter file or S3 location (`crate::dead_letter`).
pub(crate) async fn dead_letters(cfg: &ReaderConfig) -> DeadLetters {
    match (&cfg.dead_letter_location, &cfg.dead_letter_path) {
        (Some(location), _) => {
            DeadLetters::s3(ObjectStore::new(sameday_core::s3::client(&cfg.aws).await, location.clone()))
        }
        (None, Some(path)) => DeadLetters::file(path),
        (None, None) => unreachable!("validated: one of dead_letter_path and dead_letter_location"),
    }
}

/// The reader's stream as a sink, checked (which reads the stream's maximum record size), and
/// the claim-check stage sized for it: what the live reader, `replay --sink kinesis` and
/// `dead-letters replay` publish through, so all of them write the same records and objects.
pub async fn kinesis_sink(
    cfg: &ReaderConfig,
    aws: &aws_config::SdkConfig,
) -> Result<(KinesisSink, Option<ClaimChecker>), ReaderError> {
    let mut sink =
        KinesisSink::new(aws_sdk_kinesis::Client::new(aws), &cfg.kinesis.stream, cfg.kinesis.max_record_bytes);
    let status =
        sink.check().await.map_err(|e| ReaderError::Sink { stream: cfg.kinesis.stream.clone(), message: e.message })?;
    tracing::info!(stream = %cfg.kinesis.stream, %status, "Kinesis stream ready");
    let claim_check = claim_checker(cfg, sink.max_record_bytes()).await;
    Ok((sink, claim_check))
}

/// The claim-check stage, when `[claim_check]` is configured (`crate::claim_check`).
async fn claim_checker(cfg: &ReaderConfig, max_record_bytes: usize) -> Option<ClaimChecker> {
    let cc = cfg.claim_check.as_ref()?;
    let store = ObjectStore::new(sameday_core::s3::client(&cfg.aws).await, cc.location.clone());
    let checker = ClaimChecker::new(store, cc, max_record_bytes);
    tracing::info!(location = %checker.location(), "large changes go through S3 (claim-check)");
    Some(checker)
}

/// Opens the checkpoint store; with DynamoDB, waits (as a standby) until this reader holds
/// its lease. `None` when `shutdown` fires first.
async fn take_store(
    cfg: &ReaderConfig,
    aws: &aws_config::SdkConfig,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Option<(Arc<AnyCheckpointStore>, Option<Lease>)>, ReaderError> {
    match &cfg.checkpoint {
        CheckpointConfig::Dynamodb { table, key, lease_ms, .. } => {
            let lease = Lease {
                client: aws_sdk_dynamodb::Client::new(aws),
                table: table.clone(),
                key: key.clone(),
                owner: sameday_core::instance_id(),
                lease_ms: *lease_ms,
            };
            Ok(lease
                .acquire(health, shutdown)
                .await?
                .map(|store| (Arc::new(AnyCheckpointStore::Dynamo(store)), Some(lease))))
        }
        CheckpointConfig::File { .. } => Ok(Some((Arc::new(open_store(&cfg.checkpoint, aws, true).await?), None))),
    }
}

/// How long an outage may last before the source purges what the checkpoint needs: a
/// watcher task, unless the source keeps binlogs forever (or cannot say).
async fn spawn_headroom(
    cfg: &ReaderConfig,
    store: &Arc<AnyCheckpointStore>,
    metrics: &ReaderMetrics,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match crate::headroom::retention_seconds(&cfg.source).await {
        Ok(0) => None,
        Ok(secs) => Some(tokio::spawn(crate::headroom::watch(
            cfg.source.clone(),
            store.clone(),
            archive_store(cfg).await,
            secs,
            metrics.clone(),
            shutdown.clone(),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the binlog retention; no headroom metric");
            None
        }
    }
}

/// The binlog archive, when the config has one: the headroom counts archived files as safe.
async fn archive_store(cfg: &ReaderConfig) -> Option<sameday_core::s3::ObjectStore> {
    let archive = cfg.archive.as_ref()?;
    let client = sameday_core::s3::client(&cfg.aws).await;
    Some(sameday_core::s3::ObjectStore::new(client, archive.location.clone()))
}

/// After the pipeline: unhealthy for good on an error; on a graceful stop, hand the lease
/// to the standby at once.
async fn finish(
    result: &Result<PublishSummary, ReaderError>,
    store: &AnyCheckpointStore,
    owner: Option<&str>,
    health: &Health,
) {
    if let Err(e) = result {
        health.fail(e.to_string());
    } else if let (AnyCheckpointStore::Dynamo(d), Some(owner)) = (store, owner) {
        match d.release(owner).await {
            Ok(()) => tracing::info!("lease released; a standby reader takes over"),
            Err(e) => tracing::warn!(error = %e, "cannot release the lease; it expires on its own"),
        }
    }
}
