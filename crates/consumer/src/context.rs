//! What every shard task of this consumer shares, resolved once at start: the Kinesis
//! client and stream, the lease table, the destination queues, the routes, the dead-letter
//! sink, the metrics and the limits from the config.
//!
//! [`connect`] checks each of them against AWS before the daemon reports ready, so a
//! missing queue, table or stream stops the start with a message naming it (and the fix),
//! instead of failing later inside a shard task.

use std::time::Duration;

use aws_sdk_kinesis::Client as KinesisClient;
use sameday_core::aws::describe;

use sameday_core::s3::ObjectStore;

use crate::claim_check::ClaimChecker;
use crate::config::ConsumerConfig;
use crate::dead_letter::DeadLetterSink;
use crate::fanout::Queues;
use crate::metrics::ConsumerMetrics;
use crate::route::Routes;
use crate::run::ConsumerError;
use crate::shard_lease::LeaseTable;
use crate::sqs::SqsQueue;

/// Everything a shard task needs, shared.
pub(crate) struct Context {
    pub(crate) kinesis: KinesisClient,
    pub(crate) stream: String,
    pub(crate) leases: LeaseTable,
    pub(crate) queues: Queues,
    pub(crate) routes: Routes,
    pub(crate) dead_letters: DeadLetterSink,
    /// Large changes through S3, when `[claim_check]` is set.
    pub(crate) claim_check: Option<ClaimChecker>,
    pub(crate) metrics: ConsumerMetrics,
    pub(crate) worker_id: String,
    pub(crate) read_limit: i32,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_pending: usize,
    pub(crate) coalesce: bool,
    pub(crate) shutdown_timeout: Duration,
}

impl Context {
    /// A shard task renews its lease every third of the lease duration.
    pub(crate) fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.leases.lease_duration_ms() / 3)
    }
}

/// Resolves the queues, the lease table and the routes; fails with the first problem.
pub(crate) async fn connect(cfg: &ConsumerConfig, metrics: ConsumerMetrics) -> Result<Context, ConsumerError> {
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let kinesis = KinesisClient::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let names = cfg.queue_names();
    let queues = destination_queues(&sqs, &names).await?;
    let routes = Routes::new(&cfg.routes, &cfg.rules, |q| names.iter().position(|n| n == q).expect("listed"))
        .map_err(ConsumerError::Config)?;
    let dead_letters = dead_letter_sink(cfg, &sqs).await?;
    let claim_check = match &cfg.claim_check {
        Some(cc) => {
            let store = ObjectStore::new(sameday_core::s3::client(&cfg.aws).await, cc.location.clone());
            tracing::info!(location = %cc.location, "large changes go through S3 (claim-check)");
            Some(ClaimChecker::new(store, cc, queues.max_body_bytes()))
        }
        None => None,
    };
    let leases = lease_table(cfg, aws_sdk_dynamodb::Client::new(&aws)).await?;
    kinesis
        .describe_stream_summary()
        .stream_name(&cfg.kinesis.stream)
        .send()
        .await
        .map_err(|e| ConsumerError::Startup(format!("Kinesis stream {}: {}", cfg.kinesis.stream, describe(&e))))?;
    Ok(Context {
        kinesis,
        stream: cfg.kinesis.stream.clone(),
        leases,
        queues,
        routes,
        dead_letters,
        claim_check,
        metrics,
        worker_id: cfg.leases.worker_id.clone().unwrap_or_else(sameday_core::instance_id),
        read_limit: cfg.kinesis.read_limit,
        checkpoint_interval: Duration::from_millis(cfg.leases.checkpoint_interval_ms),
        max_in_flight: cfg.sqs.max_in_flight_requests,
        max_pending: cfg.sqs.max_pending_messages,
        coalesce: cfg.sqs.coalesce,
        shutdown_timeout: Duration::from_millis(cfg.shutdown_timeout_ms),
    })
}

/// Every destination queue, in the order of `names` (route indexes point into it).
async fn destination_queues(sqs: &aws_sdk_sqs::Client, names: &[String]) -> Result<Queues, ConsumerError> {
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        let q = SqsQueue::resolve(sqs.clone(), name).await.map_err(|e| ConsumerError::Startup(e.to_string()))?;
        tracing::info!(queue = %q.url(), fifo = q.is_fifo(), "destination queue");
        if !q.is_fifo() {
            tracing::warn!(queue = %q.url(), "standard queue: SQS may deliver a row's changes out of order");
        }
        queues.push(q);
    }
    Ok(Queues(queues))
}

async fn dead_letter_sink(cfg: &ConsumerConfig, sqs: &aws_sdk_sqs::Client) -> Result<DeadLetterSink, ConsumerError> {
    Ok(match (&cfg.dead_letter.path, &cfg.dead_letter.queue) {
        (Some(path), _) => DeadLetterSink::File(path.clone()),
        (None, Some(q)) => DeadLetterSink::Queue(
            SqsQueue::resolve(sqs.clone(), q)
                .await
                .map_err(|e| ConsumerError::Startup(format!("dead_letter.queue: {e}")))?,
        ),
        (None, None) => unreachable!("validated"),
    })
}

/// The lease table, created first when the config asks for it, and read once to prove
/// it is there and readable.
async fn lease_table(cfg: &ConsumerConfig, dynamodb: aws_sdk_dynamodb::Client) -> Result<LeaseTable, ConsumerError> {
    let leases = LeaseTable::new(dynamodb, &cfg.leases.table)
        .with_lease_duration_ms(cfg.leases.duration_ms)
        .with_initial_checkpoint(cfg.initial_checkpoint());
    if cfg.leases.create_table {
        leases.ensure_table().await.map_err(|e| ConsumerError::Startup(e.to_string()))?;
    }
    leases.list().await.map_err(|e| {
        ConsumerError::Startup(format!("{e} (create the table with a string key shard_id, or set leases.create_table)"))
    })?;
    Ok(leases)
}
