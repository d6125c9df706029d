//! The consumer daemon's wiring, and no processing logic: validate the config, start the
//! health and metrics endpoint, resolve the shared parts ([`crate::context`]), report
//! ready, and run the lease coordinator ([`crate::coordinator`]) until shutdown. The
//! coordinator returns only after every shard task flushed, checkpointed and released its
//! lease (or the shutdown timeout passed).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::context::connect;
use crate::coordinator::Coordinator;
use crate::metrics::ConsumerMetrics;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Startup(String),
}

/// Runs the consumer until `shutdown` fires. Returns after every shard task stopped.
pub async fn run_consumer(cfg: ConsumerConfig, shutdown: CancellationToken) -> Result<(), ConsumerError> {
    cfg.validate().map_err(ConsumerError::Config)?;
    let sameday_core::daemon::Endpoint { health, registry, .. } =
        sameday_core::daemon::Endpoint::start(&cfg, Duration::from_secs(60), &shutdown)
            .await
            .map_err(ConsumerError::Config)?;
    let metrics = ConsumerMetrics::new(&registry);

    let ctx = Arc::new(connect(&cfg, metrics).await?);
    tracing::info!(
        worker = %ctx.worker_id,
        stream = %ctx.stream,
        dead_letters = %ctx.dead_letters.describe(),
        "consumer ready"
    );
    health.set_ready(true);
    Coordinator::new(ctx, cfg.leases.shard_sync_interval_ms).run(&health, shutdown).await;
    Ok(())
}
