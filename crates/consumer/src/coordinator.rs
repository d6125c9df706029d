//! The lease coordinator: keeps this task's share of the shard leases and one shard task
//! per lease it holds.
//!
//! - Every quarter lease duration it lists the leases, takes free or expired ones and
//!   steals to even out the load ([`plan`]); a shard whose task failed is left alone for a
//!   lease duration.
//! - It creates leases for new shards from ListShards every `shard_sync_interval_ms`, and
//!   at once after one of its shards ends, so children start promptly (they become
//!   eligible once their parents reach `SHARD_END`).
//! - On shutdown it stops every shard task and waits for them (each flushes, checkpoints
//!   and releases its lease) for the shutdown timeout plus a margin; leases of tasks that
//!   do not stop in time expire on their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sameday_core::clock::now_ms;
use sameday_core::health::Health;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::Shard;
use crate::shard_lease::{plan, Lease};
use crate::shard_list::list_shards;
use crate::shard_task::{ShardExit, ShardTask};

/// The running shard tasks of this consumer and what it knows about the lease table.
pub(crate) struct Coordinator {
    ctx: Arc<Context>,
    /// Parent of every shard task's stop token.
    stop_all: CancellationToken,
    running: HashMap<String, CancellationToken>,
    tasks: JoinSet<(String, ShardExit)>,
    /// The shard of each task, to book a task that panicked.
    task_shards: HashMap<tokio::task::Id, String>,
    /// Shards whose task failed are left alone for a lease duration.
    cooldown: HashMap<String, Instant>,
    sync_every: Duration,
    next_sync: Instant,
}

impl Coordinator {
    pub(crate) fn new(ctx: Arc<Context>, shard_sync_interval_ms: u64) -> Self {
        Self {
            ctx,
            stop_all: CancellationToken::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
            task_shards: HashMap::new(),
            cooldown: HashMap::new(),
            sync_every: Duration::from_millis(shard_sync_interval_ms),
            next_sync: Instant::now(),
        }
    }

    /// Balances leases until `shutdown` fires, then stops every shard task.
    pub(crate) async fn run(mut self, health: &Health, shutdown: CancellationToken) {
        let tick = Duration::from_millis((self.ctx.leases.lease_duration_ms() / 4).max(100));
        // The first tick is immediate: a starting task takes its leases at once.
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok((shard, exit)) => self.stopped(shard, exit),
                        Err(e) => {
                            // A panicked task still held its shard here: book it as failed, so
                            // the shard is retried after a lease duration instead of never.
                            let shard = self.task_shards.get(&e.id()).cloned();
                            tracing::error!(error = %e, shard = ?shard, "a shard task panicked");
                            if let Some(shard) = shard {
                                self.stopped(shard, ShardExit::Failed(format!("the shard task panicked: {e}")));
                            }
                            continue;
                        }
                    }
                }
                _ = ticker.tick() => {}
            }
            if Instant::now() >= self.next_sync {
                self.next_sync = Instant::now() + self.sync_every;
                self.sync_shards().await;
            }
            let leases = match self.ctx.leases.list().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the lease table; retrying");
                    continue;
                }
            };
            health.beat();
            self.balance(&leases).await;
        }
        self.stop().await;
    }

    /// Books a shard task's end.
    fn stopped(&mut self, shard: String, exit: ShardExit) {
        self.running.remove(&shard);
        self.task_shards.retain(|_, s| *s != shard);
        let m = &self.ctx.metrics;
        match &exit {
            ShardExit::Finished => {
                m.lease_event("finished");
                tracing::info!(%shard, "shard finished (SHARD_END); looking for its children");
                self.next_sync = Instant::now();
            }
            ShardExit::Lost => m.lease_event("lost"),
            ShardExit::Released => m.lease_event("released"),
            ShardExit::Failed(why) => {
                m.lease_event("failed");
                tracing::error!(%shard, error = %why, "shard task failed; retrying the shard after a lease duration");
                let lease_ms = self.ctx.leases.lease_duration_ms();
                self.cooldown.insert(shard.clone(), Instant::now() + Duration::from_millis(lease_ms));
            }
        }
        m.millis_behind.remove(&Shard { shard: shard.clone() });
        m.arrival_lag_seconds.remove(&Shard { shard });
    }

    /// Creates leases for shards that have none (new shards, children after a reshard).
    async fn sync_shards(&self) {
        match list_shards(&self.ctx.kinesis, &self.ctx.stream).await {
            Ok(shards) => match self.ctx.leases.sync_shards(&shards).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(created = n, "leases created for new shards"),
                Err(e) => tracing::warn!(error = %e, "cannot create leases for new shards; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot list the stream's shards; retrying"),
        }
    }

    /// One balancing round over `leases` as just listed: takes what [`plan`] says is ours,
    /// steals at most one, and starts a shard task for each lease won.
    async fn balance(&mut self, leases: &[Lease]) {
        self.cooldown.retain(|_, until| *until > Instant::now());
        let now = now_ms();
        let ctx = self.ctx.clone();
        let p = plan(leases, &ctx.worker_id, now);
        for observed in &p.take {
            if !self.is_free(observed) {
                continue;
            }
            match ctx.leases.take(observed, &ctx.worker_id, now).await {
                Ok(lease) => {
                    ctx.metrics.lease_event("taken");
                    tracing::info!(shard = %lease.shard_id, checkpoint = %lease.checkpoint, "lease taken");
                    self.spawn(lease, 0);
                }
                Err(e) => tracing::debug!(error = %e, "lease not taken"),
            }
        }
        if let Some(observed) = p.steal.as_ref().filter(|l| self.is_free(l)) {
            match ctx.leases.steal(observed, &ctx.worker_id, now).await {
                Ok(stolen) => {
                    ctx.metrics.lease_event("stolen");
                    tracing::info!(
                        shard = %stolen.lease.shard_id,
                        from = observed.owner.as_deref().unwrap_or("-"),
                        "lease stolen to balance the load"
                    );
                    self.spawn(stolen.lease, stolen.start_after_ms);
                }
                Err(e) => tracing::debug!(error = %e, "lease not stolen"),
            }
        }
        ctx.metrics.leases_held.set(self.running.len() as i64);
    }

    /// Neither running here nor cooling down after a failure.
    fn is_free(&self, lease: &Lease) -> bool {
        !self.running.contains_key(&lease.shard_id) && !self.cooldown.contains_key(&lease.shard_id)
    }

    fn spawn(&mut self, lease: Lease, start_after_ms: u64) {
        let stop = self.stop_all.child_token();
        self.running.insert(lease.shard_id.clone(), stop.clone());
        let ctx = self.ctx.clone();
        let shard = lease.shard_id.clone();
        let task = self.tasks.spawn(async move {
            let shard = lease.shard_id.clone();
            let exit = ShardTask::new(ctx, lease).run(start_after_ms, stop).await;
            (shard, exit)
        });
        self.task_shards.retain(|_, s| *s != shard);
        self.task_shards.insert(task.id(), shard);
    }

    /// Stops every shard task and waits for them, bounded by the shutdown timeout.
    async fn stop(mut self) {
        tracing::info!(shards = self.running.len(), "stopping: flushing, checkpointing and releasing every shard");
        self.stop_all.cancel();
        let grace = self.ctx.shutdown_timeout + Duration::from_secs(5);
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Ok((shard, exit)) = joined {
                    tracing::info!(%shard, ?exit, "shard stopped");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some shard tasks did not stop in time; their leases expire on their own");
        }
        self.ctx.metrics.leases_held.set(0);
    }
}
