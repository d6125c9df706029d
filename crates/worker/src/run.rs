//! The worker daemon, wiring only: SQS messages (change envelopes) to Step Functions
//! effects. [`run_worker`] checks the config, builds the `Inbox` (the SQS side: receive,
//! visibility, delete, hand back, dead letters) and the `Scheduler` (per-group ordering,
//! the effects with their retries), and runs them until shutdown. What the worker
//! guarantees is written where it is provided: `inbox.rs`, `scheduler.rs`, `effects.rs`,
//! `sfn.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::inbox::Inbox;
use crate::metrics::WorkerMetrics;
use crate::scheduler::Scheduler;
use crate::sfn::{Limiters, StepFunctions};

pub use crate::scheduler::PROCESSING_BOUND_SECS;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Startup(String),
}

/// Runs the worker until `shutdown` fires.
pub async fn run_worker(mut cfg: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    cfg.validate().map_err(WorkerError::Config)?;
    let sameday_core::daemon::Endpoint { health, registry, .. } =
        sameday_core::daemon::Endpoint::start(&cfg, Duration::from_secs(120), &shutdown)
            .await
            .map_err(WorkerError::Config)?;
    let metrics = WorkerMetrics::new(&registry);
    let queue = cfg.sqs.clone().ok_or_else(|| WorkerError::Config("[sqs] queue is required by the worker".into()))?;
    if let Some(nightly) = &cfg.nightly {
        // With a source at hand, a rule naming a missing column fails here, not per message,
        // and the predicate compares each column as its collation does.
        let rules: Vec<&sameday_core::rule::ScheduleRule> = cfg.rules.iter().collect();
        let tables =
            crate::nightly::check_rules(nightly, &rules).await.map_err(|e| WorkerError::Config(e.to_string()))?;
        for (rule, table) in cfg.rules.iter_mut().zip(&tables) {
            rule.collations = table.collations().clone();
        }
    }
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let inbox = Inbox::connect(aws_sdk_sqs::Client::new(&aws), queue, metrics.clone());
    let inbox = Arc::new(inbox.await.map_err(WorkerError::Startup)?);
    // Our own retries see throttling (and slow the rate limiter); the SDK's would hide it.
    let sfn_conf = aws_sdk_sfn::config::Builder::from(&aws)
        .retry_config(aws_sdk_sfn::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let limiters = Limiters::new(&cfg.step_functions);
    let sfn = StepFunctions::with_limiters(aws_sdk_sfn::Client::from_conf(sfn_conf), limiters);
    tracing::info!(queue = %inbox.queue().url, fifo = inbox.queue().fifo, rules = cfg.rules.len(), "worker ready");

    // Claim-check pointers name their bucket; the worker reads whichever the pointer names.
    let s3 = sameday_core::s3::client(&cfg.aws).await;
    let scheduler = Arc::new(Scheduler::new(cfg, inbox.clone(), sfn, s3, metrics, shutdown.clone()));
    health.set_ready(true);
    let keeper = tokio::spawn(inbox.clone().keep_visible());
    inbox.receive_until(&shutdown, &health, |batch| scheduler.dispatch(batch)).await;
    scheduler.finish().await;
    keeper.abort();
    Ok(())
}
