//! One owned shard: Kinesis -> ordered fan-out -> SQS -> lease checkpoint.
//!
//! - Reading starts with GetShardIterator after the lease's checkpoint and follows with
//!   GetRecords; it pauses while `max_pending_messages` wait for SQS. A stolen lease is
//!   read only after the previous owner's expiry, so the two never overlap.
//! - The task renews its lease every third of the lease duration and stops reading as soon
//!   as a renew or checkpoint says the lease is gone (or it expires unrenewed).
//! - It writes the checkpoint at most once per `checkpoint_interval_ms`, only behind
//!   messages SQS accepted and dead letters stored, and never backwards. A closed shard is
//!   checkpointed `SHARD_END` after its last message is accepted.
//! - On shutdown it flushes (bounded by `shutdown_timeout_ms`), checkpoints and releases
//!   its lease, so another task takes the shard over at once instead of after expiry.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sameday_core::backoff::Backoff;
use sameday_core::clock::now_ms;
use tokio_util::sync::CancellationToken;

use crate::claim_check::Checked;
use crate::context::Context;
use crate::fanout::{Fanout, FanoutStats, MessageSender};
use crate::metrics::Shard;
use crate::shard_lease::{Lease, LeaseError, SequenceNumber, ShardCheckpoint};
use crate::shard_reader::{ShardBatch, ShardReader};

/// How a shard task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardExit {
    /// The shard is closed and fully forwarded; its children may start.
    Finished,
    /// Checkpointed and released on shutdown.
    Released,
    /// Another task owns the lease now (stolen, or taken after it expired unrenewed).
    Lost,
    /// An error that retrying in place will not fix; the lease was released.
    Failed(String),
}

/// Why the read loop stopped.
enum Halt {
    /// Shutdown: flush, checkpoint and release.
    Requested,
    /// The task is over (finished, lease lost, checkpoint refused).
    Exit(ShardExit),
    /// Reading failed for good: checkpoint what SQS has, release, report.
    Failed(String),
}

/// One owned shard.
pub(crate) struct ShardTask {
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
    pub(crate) fn new(ctx: Arc<Context>, lease: Lease) -> Self {
        let label = Shard { shard: lease.shard_id.clone() };
        Self {
            fanout: Fanout::new(&lease.shard_id)
                .with_max_body(ctx.queues.max_body_bytes())
                .with_coalescing(ctx.coalesce),
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

    /// Forwards the shard from `start_after_ms` on until it ends, the lease is lost or
    /// `stop` fires.
    pub(crate) async fn run(mut self, start_after_ms: u64, stop: CancellationToken) -> ShardExit {
        let halt = match self.wait_for_previous_owner(start_after_ms, &stop).await {
            ControlFlow::Continue(()) => self.forward(&stop).await,
            // Nothing read yet: nothing to flush or checkpoint.
            ControlFlow::Break(Halt::Requested) => return self.release().await,
            ControlFlow::Break(halt) => halt,
        };
        match halt {
            Halt::Requested => self.shut_down().await,
            Halt::Exit(exit) => exit,
            Halt::Failed(why) => self.fail(why).await,
        }
    }

    /// A stolen lease: its previous owner may send until its own expiry. Keeps the lease
    /// renewed meanwhile.
    async fn wait_for_previous_owner(&mut self, start_after_ms: u64, stop: &CancellationToken) -> ControlFlow<Halt> {
        while now_ms() < start_after_ms {
            if let Err(exit) = self.upkeep().await {
                return ControlFlow::Break(Halt::Exit(exit));
            }
            // `upkeep` may have taken us past `start_after_ms`: never a negative wait.
            let wait = Duration::from_millis(start_after_ms.saturating_sub(now_ms()).min(100));
            tokio::select! {
                biased;
                _ = stop.cancelled() => return ControlFlow::Break(Halt::Requested),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        ControlFlow::Continue(())
    }

    /// The read loop: read a batch (unless the shard ended or too much waits for SQS),
    /// then deliver and checkpoint.
    async fn forward(&mut self, stop: &CancellationToken) -> Halt {
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
                return Halt::Requested;
            }
            if let Err(exit) = self.upkeep().await {
                return Halt::Exit(exit);
            }
            if !ended && self.fanout.pending() < self.ctx.max_pending {
                let batch = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Halt::Requested,
                    b = reader.next_batch() => b,
                };
                match batch {
                    Ok(batch) => match self.take_in(batch, stop).await {
                        Some(end) => ended = end,
                        None => return Halt::Requested,
                    },
                    Err(e) if e.transient => {
                        tracing::warn!(shard = %self.shard(), error = %e, "reading the shard failed; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => return Halt::Failed(e.to_string()),
                }
            }
            if let ControlFlow::Break(exit) = self.deliver(ended, &mut backoff).await {
                return Halt::Exit(exit);
            }
        }
    }

    /// After a read: sends what is ready, stores dead letters, backs off while SQS makes no
    /// progress, and checkpoints when due (`SHARD_END` once a closed shard is all in SQS).
    async fn deliver(&mut self, ended: bool, backoff: &mut Backoff) -> ControlFlow<ShardExit> {
        let stalled = self.send_ready().await;
        if let Err(exit) = self.store_dead_letters().await {
            return ControlFlow::Break(exit);
        }
        if stalled {
            tokio::time::sleep(backoff.next_delay()).await;
        } else {
            backoff.reset();
        }
        if ended && self.fanout.pending() == 0 && self.fanout.dead_letters.is_empty() {
            // Logged before the write: no child can start before this line (children wait for
            // the parent's SHARD_END checkpoint in the lease table).
            tracing::info!(shard = %self.shard(), "shard read to its end and all in SQS; checkpointing SHARD_END");
            return ControlFlow::Break(match self.write_checkpoint(ShardCheckpoint::ShardEnd).await {
                Ok(()) => ShardExit::Finished,
                Err(exit) => exit,
            });
        }
        if self.last_checkpoint.elapsed() >= self.ctx.checkpoint_interval {
            if let Err(exit) = self.checkpoint_durable().await {
                return ControlFlow::Break(exit);
            }
        }
        ControlFlow::Continue(())
    }

    /// Shutdown: gives pending messages a bounded time, then checkpoints and releases.
    async fn shut_down(mut self) -> ShardExit {
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

    /// Queues one read's records for SQS (large ones through the claim-check); returns
    /// whether the shard ended, or `None` when `stop` came during claim-check retries.
    async fn take_in(&mut self, batch: ShardBatch, stop: &CancellationToken) -> Option<bool> {
        let ended = batch.shard_end;
        // More is waiting when the call was full or Kinesis says so.
        let full = batch.records.len() >= self.ctx.read_limit as usize;
        self.behind = !ended && !batch.records.is_empty() && (full || batch.millis_behind.unwrap_or(0) > 0);
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
            let data = match &self.ctx.claim_check {
                None => r.data,
                Some(cc) => match cc.check(r.data, &self.ctx.routes, now, stop).await {
                    Checked::Forward(data) => data,
                    Checked::DeadLetter { reason, data } => {
                        self.fanout.push_dead_letter(r.sequence, reason, &data);
                        continue;
                    }
                    Checked::Stopped => return None,
                },
            };
            self.fanout.push_record(r.sequence, &data, &self.ctx.routes, |q| queues.is_fifo(q), now);
        }
        self.report();
        Some(ended)
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
        m.coalesced.inc_by(now.coalesced - then.coalesced);
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
