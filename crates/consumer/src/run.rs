//! The consumer daemon: a coordinator that keeps this task's share of the shard leases,
//! and one task per owned shard (Kinesis -> ordered fan-out -> SQS -> lease checkpoint).
//!
//! - The coordinator lists the leases every quarter lease duration, takes free or expired
//!   ones and steals to even out the load ([`plan`]), creates leases for new shards from
//!   ListShards (at once after one of its shards ends, so children start promptly; they
//!   become eligible once their parents reach `SHARD_END`), and on SIGTERM stops every
//!   shard task and waits for them.
//! - A shard task renews its lease every third of the lease duration and stops reading
//!   as soon as a renew or checkpoint says the lease is gone (or it expires unrenewed). It
//!   writes the checkpoint at most once per `checkpoint_interval_ms`, only behind messages
//!   SQS accepted and dead letters stored. A closed shard is checkpointed `SHARD_END` after
//!   its last message is accepted. On shutdown it flushes (bounded by
//!   `shutdown_timeout_ms`), checkpoints and releases its lease, so another task takes the
//!   shard over at once instead of after expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client as KinesisClient;
use sameday_core::aws::{describe, Backoff};
use sameday_core::checkpoint::now_ms;
use sameday_core::health::Health;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::dead_letter::DeadLetterSink;
use crate::fanout::{Fanout, FanoutStats, MessageSender, Queues};
use crate::metrics::{ConsumerMetrics, Shard};
use crate::route::Routes;
use crate::shard_lease::{plan, Lease, LeaseError, LeaseTable, SequenceNumber, ShardCheckpoint, ShardInfo};
use crate::shard_reader::ShardReader;
use crate::sqs::SqsQueue;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Startup(String),
}

/// Everything a shard task needs, shared.
pub struct Context {
    pub kinesis: KinesisClient,
    pub stream: String,
    pub leases: LeaseTable,
    pub queues: Queues,
    pub routes: Routes,
    pub dead_letters: DeadLetterSink,
    pub metrics: ConsumerMetrics,
    pub worker_id: String,
    pub read_limit: i32,
    pub checkpoint_interval: Duration,
    pub max_in_flight: usize,
    pub max_pending: usize,
    pub shutdown_timeout: Duration,
}

impl Context {
    fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.leases.lease_duration_ms() / 3)
    }
}

/// How a shard task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardExit {
    /// The shard is closed and fully forwarded; its children may start.
    Finished,
    /// Checkpointed and released on shutdown.
    Released,
    /// Another task owns the lease now (stolen, or taken after it expired unrenewed).
    Lost,
    /// An error that retrying in place will not fix; the lease was released.
    Failed(String),
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
    coordinate(ctx, cfg.leases.shard_sync_interval_ms, &health, shutdown).await;
    Ok(())
}

/// Resolves the queues, the lease table and the routes; fails with the first problem.
pub async fn connect(cfg: &ConsumerConfig, metrics: ConsumerMetrics) -> Result<Context, ConsumerError> {
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let kinesis = KinesisClient::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let names = cfg.queue_names();
    let mut queues = Vec::with_capacity(names.len());
    for name in &names {
        let q = SqsQueue::resolve(sqs.clone(), name).await.map_err(|e| ConsumerError::Startup(e.to_string()))?;
        tracing::info!(queue = %q.url(), fifo = q.is_fifo(), "destination queue");
        if !q.is_fifo() {
            tracing::warn!(queue = %q.url(), "standard queue: SQS may deliver a row's changes out of order");
        }
        queues.push(q);
    }
    let routes = Routes::new(&cfg.routes, &cfg.rules, |q| names.iter().position(|n| n == q).expect("listed"))
        .map_err(ConsumerError::Config)?;
    let dead_letters = match (&cfg.dead_letter.path, &cfg.dead_letter.queue) {
        (Some(path), _) => DeadLetterSink::File(path.clone()),
        (None, Some(q)) => DeadLetterSink::Queue(
            SqsQueue::resolve(sqs.clone(), q)
                .await
                .map_err(|e| ConsumerError::Startup(format!("dead_letter.queue: {e}")))?,
        ),
        (None, None) => unreachable!("validated"),
    };
    let leases = LeaseTable::new(aws_sdk_dynamodb::Client::new(&aws), &cfg.leases.table)
        .with_lease_duration_ms(cfg.leases.duration_ms)
        .with_initial_checkpoint(cfg.initial_checkpoint());
    if cfg.leases.create_table {
        leases.ensure_table().await.map_err(|e| ConsumerError::Startup(e.to_string()))?;
    }
    leases.list().await.map_err(|e| {
        ConsumerError::Startup(format!("{e} (create the table with a string key shard_id, or set leases.create_table)"))
    })?;
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
        queues: Queues(queues),
        routes,
        dead_letters,
        metrics,
        worker_id: cfg.leases.worker_id.clone().unwrap_or_else(sameday_core::instance_id),
        read_limit: cfg.kinesis.read_limit,
        checkpoint_interval: Duration::from_millis(cfg.leases.checkpoint_interval_ms),
        max_in_flight: cfg.sqs.max_in_flight_requests,
        max_pending: cfg.sqs.max_pending_messages,
        shutdown_timeout: Duration::from_millis(cfg.shutdown_timeout_ms),
    })
}

/// Every shard of the stream with its parents (ListShards, paginated; closed shards too).
pub async fn list_shards(client: &KinesisClient, stream: &str) -> Result<Vec<ShardInfo>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match token.take() {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = req.send().await.map_err(|e| format!("ListShards {stream}: {}", describe(&e)))?;
        for s in page.shards() {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()];
            out.push(ShardInfo {
                shard_id: s.shard_id().to_owned(),
                parent_shard_ids: parents.into_iter().flatten().map(str::to_owned).collect(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

async fn coordinate(ctx: Arc<Context>, sync_interval_ms: u64, health: &Health, shutdown: CancellationToken) {
    let stop_all = CancellationToken::new();
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    let mut tasks: JoinSet<(String, ShardExit)> = JoinSet::new();
    // Shards whose task failed are left alone for a lease duration.
    let mut cooldown: HashMap<String, Instant> = HashMap::new();
    let lease_ms = ctx.leases.lease_duration_ms();
    let tick = Duration::from_millis((lease_ms / 4).max(100));
    let sync_every = Duration::from_millis(sync_interval_ms);
    let mut next_sync = Instant::now();
    // The first tick is immediate: a starting task takes its leases at once.
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let (shard, exit) = match joined {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "a shard task panicked");
                        continue;
                    }
                };
                running.remove(&shard);
                match &exit {
                    ShardExit::Finished => {
                        ctx.metrics.lease_event("finished");
                        tracing::info!(%shard, "shard finished (SHARD_END); looking for its children");
                        next_sync = Instant::now();
                    }
                    ShardExit::Lost => ctx.metrics.lease_event("lost"),
                    ShardExit::Released => ctx.metrics.lease_event("released"),
                    ShardExit::Failed(why) => {
                        ctx.metrics.lease_event("failed");
                        tracing::error!(%shard, error = %why, "shard task failed; retrying the shard after a lease duration");
                        cooldown.insert(shard.clone(), Instant::now() + Duration::from_millis(lease_ms));
                    }
                }
                ctx.metrics.millis_behind.remove(&Shard { shard: shard.clone() });
                ctx.metrics.arrival_lag_seconds.remove(&Shard { shard });
            }
            _ = ticker.tick() => {}
        }
        if Instant::now() >= next_sync {
            next_sync = Instant::now() + sync_every;
            match list_shards(&ctx.kinesis, &ctx.stream).await {
                Ok(shards) => match ctx.leases.sync_shards(&shards).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(created = n, "leases created for new shards"),
                    Err(e) => tracing::warn!(error = %e, "cannot create leases for new shards; retrying"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot list the stream's shards; retrying"),
            }
        }
        let leases = match ctx.leases.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the lease table; retrying");
                continue;
            }
        };
        health.beat();
        cooldown.retain(|_, until| *until > Instant::now());
        let now = now_ms();
        let p = plan(&leases, &ctx.worker_id, now);
        let free = |l: &Lease, running: &HashMap<String, CancellationToken>| {
            !running.contains_key(&l.shard_id) && !cooldown.contains_key(&l.shard_id)
        };
        for observed in &p.take {
            if !free(observed, &running) {
                continue;
            }
            match ctx.leases.take(observed, &ctx.worker_id, now).await {
                Ok(lease) => {
                    ctx.metrics.lease_event("taken");
                    tracing::info!(shard = %lease.shard_id, checkpoint = %lease.checkpoint, "lease taken");
                    spawn(&ctx, lease, 0, &stop_all, &mut running, &mut tasks);
                }
                Err(e) => tracing::debug!(error = %e, "lease not taken"),
            }
        }
        if let Some(observed) = p.steal.as_ref().filter(|l| free(l, &running)) {
            match ctx.leases.steal(observed, &ctx.worker_id, now).await {
                Ok(stolen) => {
                    ctx.metrics.lease_event("stolen");
                    tracing::info!(
                        shard = %stolen.lease.shard_id,
                        from = observed.owner.as_deref().unwrap_or("-"),
                        "lease stolen to balance the load"
                    );
                    spawn(&ctx, stolen.lease, stolen.start_after_ms, &stop_all, &mut running, &mut tasks);
                }
                Err(e) => tracing::debug!(error = %e, "lease not stolen"),
            }
        }
        ctx.metrics.leases_held.set(running.len() as i64);
    }

    tracing::info!(shards = running.len(), "stopping: flushing, checkpointing and releasing every shard");
    stop_all.cancel();
    let grace = ctx.shutdown_timeout + Duration::from_secs(5);
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((shard, exit)) = joined {
                tracing::info!(%shard, ?exit, "shard stopped");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some shard tasks did not stop in time; their leases expire on their own");
    }
    ctx.metrics.leases_held.set(0);
}

fn spawn(
    ctx: &Arc<Context>,
    lease: Lease,
    start_after_ms: u64,
    stop_all: &CancellationToken,
    running: &mut HashMap<String, CancellationToken>,
    tasks: &mut JoinSet<(String, ShardExit)>,
) {
    let stop = stop_all.child_token();
    running.insert(lease.shard_id.clone(), stop.clone());
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let shard = lease.shard_id.clone();
        let exit = ShardTask::new(ctx, lease).run(start_after_ms, stop).await;
        (shard, exit)
    });
}

/// One owned shard.
struct ShardTask {
    ctx: Arc<Context>,
    lease: Lease,
    last_renew: Instant,
    last_checkpoint: Instant,
    fanout: Fanout,
    reported: FanoutStats,
    label: Shard,
    /// The last read left more records in the shard (MillisBehindLatest > 0).
    behind: bool,
}

impl ShardTask {
    fn new(ctx: Arc<Context>, lease: Lease) -> Self {
        let label = Shard { shard: lease.shard_id.clone() };
        Self {
            fanout: Fanout::new(&lease.shard_id),
            ctx,
            lease,
            last_renew: Instant::now(),
            last_checkpoint: Instant::now(),
            reported: FanoutStats::default(),
            label,
            behind: false,
        }
    }

    fn shard(&self) -> &str {
        &self.lease.shard_id
    }

    async fn run(mut self, start_after_ms: u64, stop: CancellationToken) -> ShardExit {
        // A stolen lease: its previous owner may send until its own expiry.
        while now_ms() < start_after_ms {
            if let Err(exit) = self.upkeep().await {
                return exit;
            }
            let wait = Duration::from_millis((start_after_ms - now_ms()).min(100));
            tokio::select! {
                biased;
                _ = stop.cancelled() => return self.release().await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut reader = ShardReader::new(
            self.ctx.kinesis.clone(),
            &self.ctx.stream,
            &self.lease.shard_id,
            self.lease.checkpoint.clone(),
        )
        .with_limit(self.ctx.read_limit);
        let mut ended = self.lease.checkpoint == ShardCheckpoint::ShardEnd;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
        loop {
            if stop.is_cancelled() {
                break;
            }
            if let Err(exit) = self.upkeep().await {
                return exit;
            }
            if !ended && self.fanout.pending() < self.ctx.max_pending {
                let batch = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    b = reader.next_batch() => b,
                };
                match batch {
                    Ok(batch) => {
                        ended = batch.shard_end;
                        // More is waiting when the call was full or Kinesis says so.
                        let full = batch.records.len() >= self.ctx.read_limit as usize;
                        self.behind =
                            !ended && !batch.records.is_empty() && (full || batch.millis_behind.unwrap_or(0) > 0);
                        self.take_in(batch);
                    }
                    Err(e) if e.transient => {
                        tracing::warn!(shard = %self.shard(), error = %e, "reading the shard failed; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => return self.fail(e.to_string()).await,
                }
            }
            let stalled = self.send_ready().await;
            if let Err(exit) = self.store_dead_letters().await {
                return exit;
            }
            if stalled {
                tokio::time::sleep(backoff.next_delay()).await;
            } else {
                backoff.reset();
            }
            if ended && self.fanout.pending() == 0 && self.fanout.dead_letters.is_empty() {
                return match self.write_checkpoint(ShardCheckpoint::ShardEnd).await {
                    Ok(()) => ShardExit::Finished,
                    Err(exit) => exit,
                };
            }
            if self.last_checkpoint.elapsed() >= self.ctx.checkpoint_interval {
                if let Err(exit) = self.checkpoint_durable().await {
                    return exit;
                }
            }
        }
        // Shutdown: give pending messages a bounded time, then checkpoint and release.
        let flushed = tokio::time::timeout(self.ctx.shutdown_timeout, self.fanout.flush(&self.ctx.queues)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!(
                shard = %self.shard(),
                pending = self.fanout.pending(),
                "not every message reached SQS before the shutdown timeout; the next owner resends them"
            );
        }
        self.report();
        if let Err(exit) = self.store_dead_letters().await {
            return exit;
        }
        if let Err(exit) = self.checkpoint_durable().await {
            return exit;
        }
        self.release().await
    }

    fn take_in(&mut self, batch: crate::shard_reader::ShardBatch) {
        let m = &self.ctx.metrics;
        if let Some(ms) = batch.millis_behind {
            m.millis_behind.get_or_create(&self.label).set(ms);
        }
        if let Some(arrival) = batch.records.last().and_then(|r| r.arrival_ms) {
            let lag = (now_ms() as i64 - arrival).max(0) as f64 / 1000.0;
            m.arrival_lag_seconds.get_or_create(&self.label).set(lag);
        }
        let now = jiff::Timestamp::now();
        let queues = &self.ctx.queues;
        for r in batch.records {
            self.fanout.push_record(r.sequence, &r.data, &self.ctx.routes, |q| queues.is_fifo(q), now);
        }
        self.report();
    }

    /// Sends every ready message (while the shard is behind and reading is not paused,
    /// only full batches: the rest go with the next read's); returns true when SQS made no
    /// progress (back off).
    async fn send_ready(&mut self) -> bool {
        let full_only = self.behind && self.fanout.pending() < self.ctx.max_pending;
        loop {
            let before = self.fanout.stats.sent + self.fanout.stats.dead_lettered;
            match self.fanout.send_round(&self.ctx.queues, self.ctx.max_in_flight, full_only).await {
                Ok(false) => {
                    self.report();
                    return false;
                }
                Ok(true) => {
                    self.report();
                    if self.fanout.stats.sent + self.fanout.stats.dead_lettered == before {
                        return true;
                    }
                }
                Err(e) => {
                    // Access denied, queue deleted: nothing is lost (the messages stay
                    // pending and the checkpoint waits), and the operator sees it.
                    self.report();
                    tracing::error!(shard = %self.shard(), error = %e, "SQS refuses the requests; retrying");
                    return true;
                }
            }
        }
    }

    fn report(&mut self) {
        let (now, then, m) = (&self.fanout.stats, &self.reported, &self.ctx.metrics);
        m.records.inc_by(now.records - then.records);
        m.forwarded.inc_by(now.sent - then.sent);
        m.skipped.inc_by(now.skipped - then.skipped);
        m.sqs_requests.inc_by(now.requests - then.requests);
        m.sqs_retries.inc_by(now.retried - then.retried);
        self.reported = now.clone();
    }

    async fn store_dead_letters(&mut self) -> Result<(), ShardExit> {
        if self.fanout.dead_letters.is_empty() {
            return Ok(());
        }
        match self.ctx.dead_letters.store(&self.ctx.stream, &self.fanout.dead_letters).await {
            Ok(()) => {
                self.ctx.metrics.dead_letters.inc_by(self.fanout.dead_letters.len() as u64);
                self.fanout.dead_letters.clear();
                Ok(())
            }
            Err(e) => {
                // The checkpoint cannot pass them; keep them and try again.
                tracing::error!(shard = %self.shard(), error = %e, "cannot store dead letters; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.upkeep().await
            }
        }
    }

    /// Renews the lease when due. `Err` when it is gone or expired unrenewed.
    async fn upkeep(&mut self) -> Result<(), ShardExit> {
        if self.last_renew.elapsed() < self.ctx.renew_interval() {
            return Ok(());
        }
        match self.ctx.leases.renew(&self.lease, now_ms()).await {
            Ok(lease) => {
                self.lease = lease;
                self.last_renew = Instant::now();
                self.ctx.metrics.lease_renewals.inc();
                Ok(())
            }
            Err(e) => self.lease_trouble(e),
        }
    }

    fn lease_trouble(&self, e: LeaseError) -> Result<(), ShardExit> {
        if matches!(e, LeaseError::LeaseLost { .. }) {
            tracing::info!(shard = %self.shard(), "lease taken over by another task; stopping the shard");
            return Err(ShardExit::Lost);
        }
        if now_ms() >= self.lease.expires_at_ms {
            tracing::warn!(shard = %self.shard(), error = %e, "lease expired unrenewed; stopping the shard");
            return Err(ShardExit::Lost);
        }
        tracing::warn!(shard = %self.shard(), error = %e, "lease renew/checkpoint failed; retrying");
        Ok(())
    }

    async fn checkpoint_durable(&mut self) -> Result<(), ShardExit> {
        if !self.fanout.dead_letters.is_empty() {
            return Ok(());
        }
        let Some(durable) = self.fanout.durable().cloned() else {
            self.last_checkpoint = Instant::now();
            return Ok(());
        };
        if !self.is_ahead(&durable) {
            self.last_checkpoint = Instant::now();
            return Ok(());
        }
        self.write_checkpoint(ShardCheckpoint::Sequence(durable)).await
    }

    fn is_ahead(&self, seq: &SequenceNumber) -> bool {
        match &self.lease.checkpoint {
            ShardCheckpoint::Sequence(stored) => seq > stored,
            ShardCheckpoint::ShardEnd => false,
            ShardCheckpoint::TrimHorizon | ShardCheckpoint::Latest => true,
        }
    }

    async fn write_checkpoint(&mut self, checkpoint: ShardCheckpoint) -> Result<(), ShardExit> {
        self.last_checkpoint = Instant::now();
        match self.ctx.leases.checkpoint(&self.lease, &checkpoint).await {
            Ok(lease) => {
                self.lease = lease;
                self.ctx.metrics.checkpoints.inc();
                tracing::debug!(shard = %self.shard(), %checkpoint, "checkpoint");
                Ok(())
            }
            Err(e @ LeaseError::Backwards { .. }) => Err(ShardExit::Failed(e.to_string())),
            Err(e) => self.lease_trouble(e),
        }
    }

    async fn release(self) -> ShardExit {
        match self.ctx.leases.release(&self.lease).await {
            Ok(()) => {
                tracing::info!(shard = %self.shard(), checkpoint = %self.lease.checkpoint, "lease released");
                ShardExit::Released
            }
            Err(LeaseError::LeaseLost { .. }) => ShardExit::Lost,
            Err(e) => {
                tracing::warn!(shard = %self.shard(), error = %e, "cannot release the lease; it expires on its own");
                ShardExit::Released
            }
        }
    }

    async fn fail(mut self, why: String) -> ShardExit {
        let _ = self.checkpoint_durable().await;
        let _ = self.release().await;
        ShardExit::Failed(why)
    }
}
