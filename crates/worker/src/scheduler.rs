//! The worker's scheduling side: in which order held messages are worked on, and what each
//! one does to Step Functions.
//!
//! - Messages of one FIFO group are handled strictly in order by one task; different
//!   groups run concurrently.
//! - A message is deleted only after its effects are done (StartExecution accepted or the
//!   execution found to exist with the same input; StopExecution done or nothing to stop).
//! - Transient failures (throttling, 5xx) are retried in place with backoff; after a few
//!   attempts the message is handed back to SQS (visible again after a pause) and the
//!   group's later messages are released too, so SQS redelivers them in order.
//! - SIGTERM: the messages being worked on finish (bounded by `shutdown_timeout_ms`), the
//!   ones still waiting are made visible again at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sameday_core::aws::Retry;
use sameday_core::backoff::Backoff;
use sameday_core::claim_check::{check_out, ClaimCheckError};
use sameday_core::envelope::ChangeEnvelope;
use sameday_core::row_version::RowVersion;
use sameday_core::rule::ScheduleRule;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;
use crate::effects::{plan, Effect, Outcome};
use crate::inbox::{Handled, Held, Inbox};
use crate::metrics::WorkerMetrics;
use crate::sfn::{SfnError, StepFunctions};

/// In-place attempts of one call before the message is handed back to SQS.
const ATTEMPTS: u32 = 6;
/// Longest pause between two in-place attempts.
const RETRY_BACKOFF_CAP_SECS: u64 = 3;
/// Retried calls of one message at most: read a claim-checked change from S3, stop the old
/// execution, start the new.
const MAX_CALLS_PER_MESSAGE: u64 = 3;
/// How long one message can be worked on before it is deleted or handed back: per call,
/// `ATTEMPTS` attempts each followed by a backoff of at most `RETRY_BACKOFF_CAP_SECS` (one
/// cap per attempt covers the pauses, which are one fewer, plus the calls' round trips).
/// A visibility timeout below it lets SQS redeliver a message that is still being worked
/// on whenever an extension is late; `sameday check` refuses such a queue or config.
pub const PROCESSING_BOUND_SECS: u64 = MAX_CALLS_PER_MESSAGE * ATTEMPTS as u64 * RETRY_BACKOFF_CAP_SECS;

/// Why a message can never have an effect: the dead-letter metric's kind and the reason.
struct Poison {
    kind: &'static str,
    reason: String,
}

/// Runs one task per FIFO group and applies each message's planned effects.
pub(crate) struct Scheduler {
    cfg: WorkerConfig,
    inbox: Arc<Inbox>,
    sfn: StepFunctions,
    /// Reads claim-checked changes (`sameday_core::claim_check`).
    s3: aws_sdk_s3::Client,
    metrics: WorkerMetrics,
    /// Per FIFO group, messages waiting for the group's task.
    groups: Mutex<HashMap<String, VecDeque<Held>>>,
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl Scheduler {
    pub(crate) fn new(
        cfg: WorkerConfig,
        inbox: Arc<Inbox>,
        sfn: StepFunctions,
        s3: aws_sdk_s3::Client,
        metrics: WorkerMetrics,
        stopping: CancellationToken,
    ) -> Self {
        Self { cfg, inbox, sfn, s3, metrics, groups: Mutex::new(HashMap::new()), tasks: TaskTracker::new(), stopping }
    }

    /// Queues a message behind its group's earlier ones, starting the group's task if none runs.
    pub(crate) fn dispatch(self: &Arc<Self>, held: Held) {
        let group = held.group();
        {
            let mut groups = self.groups.lock().expect("groups");
            if let Some(queue) = groups.get_mut(&group) {
                queue.push_back(held);
                return;
            }
            groups.insert(group.clone(), VecDeque::from([held]));
        }
        let me = self.clone();
        self.tasks.spawn(me.drain_group(group));
    }

    /// After intake stopped: waits for the group tasks, at most `shutdown_timeout_ms`.
    pub(crate) async fn finish(&self) {
        tracing::info!("stopping: finishing the messages being worked on");
        self.tasks.close();
        let timeout = Duration::from_millis(self.cfg.shutdown_timeout_ms);
        if tokio::time::timeout(timeout, self.tasks.wait()).await.is_err() {
            tracing::warn!("messages still being worked on at the shutdown timeout; SQS redelivers them");
        }
    }

    /// Handles a group's messages in order until none are left.
    async fn drain_group(self: Arc<Self>, group: String) {
        let mut handing_back = false;
        loop {
            let next = {
                let mut groups = self.groups.lock().expect("groups");
                let queue = groups.get_mut(&group).expect("the group's task owns its entry");
                match queue.pop_front() {
                    Some(h) => h,
                    None => {
                        groups.remove(&group);
                        return;
                    }
                }
            };
            if handing_back || self.stopping.is_cancelled() {
                // Behind a handed-back message (or shutting down): back to SQS at once, which
                // redelivers the group in order.
                self.inbox.release_now(&next).await;
                continue;
            }
            if let Handled::HandedBack = self.handle(&next).await {
                handing_back = true;
            }
        }
    }

    async fn handle(&self, held: &Held) -> Handled {
        let env = match self.change_of(held).await {
            Ok(env) => env,
            Err(Ok(Poison { kind, reason })) => return self.inbox.dead_letter(held, kind, reason).await,
            Err(Err(e)) => {
                self.metrics.error("s3");
                tracing::error!(message = held.id(), error = %e, "cannot read the claim-checked change; the message goes back to the queue");
                return self.inbox.hand_back(held).await;
            }
        };
        let (env, rule, outcome) = match self.plan(env) {
            Ok(planned) => planned,
            Err(Poison { kind, reason }) => return self.inbox.dead_letter(held, kind, reason).await,
        };
        let version = RowVersion::of_change(&env.source, env.txn.index);
        for effect in &outcome.effects {
            match self.apply(rule, effect, &version).await {
                Ok(kind) => {
                    self.metrics.effect(kind);
                    // The timestamps let an operator (and the freshness benchmark) see each
                    // hop: committed (source), queued (SQS), received, done.
                    tracing::info!(
                        change = %env.id,
                        effect = kind,
                        execution = %effect.execution().name,
                        committed_ms = env.source.ts_ms,
                        sqs_sent_ms = held.sent_ms(),
                        received_ms = held.received_ms(),
                        done_ms = sameday_core::clock::now_ms(),
                        "effect done"
                    );
                }
                Err(e @ (SfnError::Conflict { .. } | SfnError::Generations { .. })) => {
                    return self.inbox.dead_letter(held, "conflict", e.to_string()).await
                }
                Err(e) => {
                    self.metrics.error(if e.is_throttled() { "throttled" } else { "step_functions" });
                    tracing::error!(change = %env.id, error = %e, "Step Functions call failed; the message goes back to the queue");
                    return self.inbox.hand_back(held).await;
                }
            }
        }
        if !outcome.effects.is_empty() {
            let age_ms = sameday_core::clock::now_ms().saturating_sub(env.source.ts_ms);
            self.metrics.change_age.observe(age_ms as f64 / 1000.0);
        }
        self.inbox.delete(held).await
    }

    /// The message's change, read from S3 when the message is a claim-check pointer (retried
    /// in place while S3 may recover); `Err(Ok(_))` is poison, `Err(Err(_))` worth a retry.
    async fn change_of(&self, held: &Held) -> Result<ChangeEnvelope, Result<Poison, ClaimCheckError>> {
        let env = ChangeEnvelope::from_slice(held.body().as_bytes())
            .map_err(|e| Ok(Poison { kind: "not_envelope", reason: format!("not a sameday change envelope: {e}") }))?;
        if env.claim_check.is_none() {
            return Ok(env);
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(RETRY_BACKOFF_CAP_SECS));
        let mut attempt = 1;
        loop {
            match check_out(&self.s3, env.clone()).await {
                Ok(full) => return Ok(full),
                Err(e) if e.retry() == Retry::Transient && attempt < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) if e.retry() == Retry::Transient => return Err(Err(e)),
                Err(e) => return Err(Ok(Poison { kind: "claim_check", reason: e.to_string() })),
            }
        }
    }

    /// The change's rule and the effects it calls for, or why it is poison.
    fn plan(&self, env: ChangeEnvelope) -> Result<(ChangeEnvelope, &ScheduleRule, Outcome), Poison> {
        let poison = |kind, reason| Poison { kind, reason };
        let Some(rule) = self.cfg.rule_for(&env.db, &env.table) else {
            let reason = format!("no [[rule]] for table {}.{}; route only scheduled tables here", env.db, env.table);
            return Err(poison("no_rule", reason));
        };
        let outcome = plan(rule, &env, jiff::Timestamp::now())
            .map_err(|e| poison("unplannable", format!("change {}: {e}", env.id)))?;
        if let Some(reason) = outcome.skipped {
            self.metrics.skip(reason.as_str());
            tracing::debug!(change = %env.id, reason = reason.as_str(), "no effect");
        }
        Ok((env, rule, outcome))
    }

    /// Makes one effect hold for the change at `version`, retrying in place; the metric's
    /// kind of what was done.
    async fn apply(
        &self,
        rule: &ScheduleRule,
        effect: &Effect,
        version: &RowVersion,
    ) -> Result<&'static str, SfnError> {
        let machine = rule.state_machine_arn.as_str();
        match effect {
            Effect::Stop(exec) => {
                self.retrying(|| self.sfn.stop_event(machine, exec, version)).await.map(|o| o.as_str())
            }
            Effect::Start(exec) => {
                self.retrying(|| self.sfn.start_event(machine, exec, version)).await.map(|o| o.as_str())
            }
        }
    }

    /// Runs `call` until it succeeds, fails permanently, or `ATTEMPTS` transient failures.
    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T, SfnError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SfnError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(RETRY_BACKOFF_CAP_SECS));
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.retry() == Retry::Transient && attempt < ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
    }
}
