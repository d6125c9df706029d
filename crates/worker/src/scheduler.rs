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
//! - A group's messages received together are folded into one change when each is a first
//!   delivery (`sameday_core::coalesce`): the first one's `before`, the last one's `after`.
//!   The worker is level-triggered, so that is the same schedule at the cost of one round of
//!   Step Functions calls; all are deleted only after its effects, or released together. A
//!   redelivered message may have had effects already and is handled alone.
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

/// The change a group's received messages fold into, and how many of `later` it takes: a run
/// of first deliveries (`(first_delivery, body)`) of plain changes of one row; `None` when
/// `first` cannot lead a fold or nothing follows it.
fn fold<'a>(first: (bool, &str), later: impl IntoIterator<Item = (bool, &'a str)>) -> Option<(ChangeEnvelope, usize)> {
    let plain = |(first_delivery, body): (bool, &str)| {
        ChangeEnvelope::from_slice(body.as_bytes()).ok().filter(|e| first_delivery && e.claim_check.is_none())
    };
    let mut env = plain(first)?;
    let mut taken = 0;
    for next in later {
        match plain(next).and_then(|l| sameday_core::coalesce::coalesce(&env, &l)) {
            Some(folded) => {
                env = folded;
                taken += 1;
            }
            None => break,
        }
    }
    (taken > 0).then_some((env, taken))
}

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

    /// Queues one receive's messages behind their groups' earlier ones, starting a task for
    /// each group that has none. A batch is queued as a whole before any task looks at it, so
    /// a group's messages received together can be folded.
    pub(crate) fn dispatch(self: &Arc<Self>, batch: Vec<Held>) {
        let mut new_groups = Vec::new();
        {
            let mut groups = self.groups.lock().expect("groups");
            for held in batch {
                let group = held.group();
                match groups.get_mut(&group) {
                    Some(queue) => queue.push_back(held),
                    None => {
                        groups.insert(group.clone(), VecDeque::from([held]));
                        new_groups.push(group);
                    }
                }
            }
        }
        for group in new_groups {
            let me = self.clone();
            self.tasks.spawn(me.drain_group(group));
        }
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
            let handled = match self.take_run(&group, &next) {
                Some((env, absorbed)) => self.handle_run(&next, env, absorbed).await,
                None => self.handle(&next).await,
            };
            if let Handled::HandedBack = handled {
                handing_back = true;
            }
        }
    }

    /// The messages waiting right behind `first` in its group that fold into one change with
    /// it (see the module note), taken out of the group's queue, with that change; `None` when
    /// there are none. A fold whose change is poison is not taken: each is handled alone.
    fn take_run(&self, group: &str, first: &Held) -> Option<(ChangeEnvelope, Vec<Held>)> {
        let mut groups = self.groups.lock().expect("groups");
        let queue = groups.get_mut(group)?;
        let later = queue.iter().map(|h| (h.first_delivery(), h.body()));
        let (env, taken) = fold((first.first_delivery(), first.body()), later)?;
        if self.plan(env.clone()).is_err() {
            return None;
        }
        Some((env, queue.drain(..taken).collect()))
    }

    /// [`Self::handle`] for a folded run: `first` carries the change; the absorbed messages
    /// are deleted after its effects, or released with it.
    async fn handle_run(&self, first: &Held, env: ChangeEnvelope, absorbed: Vec<Held>) -> Handled {
        tracing::debug!(change = %env.id, folded = absorbed.len() + 1, "a row's received changes folded into one");
        let (handled, applied) = self.handle_change(first, env).await;
        if applied {
            self.metrics.coalesced.inc_by(absorbed.len() as u64);
            for h in &absorbed {
                self.inbox.delete(h).await;
            }
        } else {
            // Not applied (handed back, or the fold hit a name conflict): SQS redelivers them,
            // and as redeliveries each is handled alone.
            for h in &absorbed {
                self.inbox.release_now(h).await;
            }
        }
        handled
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
        self.handle_change(held, env).await.0
    }

    /// Plans and applies `env`, the change `held` carries; deletes, hands back or dead-letters
    /// `held` accordingly.
    async fn handle_change(&self, held: &Held, env: ChangeEnvelope) -> (Handled, bool) {
        let (env, rule, outcome) = match self.plan(env) {
            Ok(planned) => planned,
            Err(Poison { kind, reason }) => return (self.inbox.dead_letter(held, kind, reason).await, false),
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
                    return (self.inbox.dead_letter(held, "conflict", e.to_string()).await, false)
                }
                Err(e) => {
                    self.metrics.error(if e.is_throttled() { "throttled" } else { "step_functions" });
                    tracing::error!(change = %env.id, error = %e, "Step Functions call failed; the message goes back to the queue");
                    return (self.inbox.hand_back(held).await, false);
                }
            }
        }
        if !outcome.effects.is_empty() {
            let age_ms = sameday_core::clock::now_ms().saturating_sub(env.source.ts_ms);
            self.metrics.change_age.observe(age_ms as f64 / 1000.0);
        }
        (self.inbox.delete(held).await, true)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u64, before: Option<u64>, after: Option<u64>) -> String {
        let image = |v: Option<u64>| v.map(|v| serde_json::json!({"id": 1, "v": v}));
        serde_json::json!({
            "v": 1, "id": format!("0-1-{n}/0/0"), "op": "update", "db": "app", "table": "t", "key": {"id": 1},
            "before": image(before), "after": image(after),
            "source": {"server_id": 1, "file": "f", "pos": n, "ts_ms": 0},
            "txn": {"id": format!("0-1-{n}"), "index": 0}
        })
        .to_string()
    }

    #[test]
    fn first_deliveries_of_one_row_fold_and_a_redelivery_stops_the_run() {
        let c: Vec<String> = (1..=4).map(|n| change(n, Some(n - 1), Some(n))).collect();
        let (env, taken) = fold((true, &c[0]), c[1..].iter().map(|b| (true, b.as_str()))).unwrap();
        assert_eq!(taken, 3);
        assert_eq!(
            (env.id.as_str(), env.before.unwrap()["v"].clone(), env.after.unwrap()["v"].clone()),
            ("0-1-4/0/0", 0.into(), 4.into())
        );
        // A redelivered message may have had effects: the run stops before it.
        let (_, taken) =
            fold((true, &c[0]), [(true, c[1].as_str()), (false, c[2].as_str()), (true, c[3].as_str())]).unwrap();
        assert_eq!(taken, 1);
        assert!(
            fold((false, &c[0]), c[1..].iter().map(|b| (true, b.as_str()))).is_none(),
            "a redelivered first leads no fold"
        );
        assert!(fold((true, &c[0]), []).is_none(), "nothing to fold");
        assert!(fold((true, &c[0]), [(true, "not json")]).is_none());
    }
}
