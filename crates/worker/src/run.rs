//! The worker daemon: SQS messages (change envelopes) to Step Functions effects.
//!
//! - Long-polls up to 10 messages per call while fewer than `max_in_flight_messages` are
//!   held. Messages of one FIFO group are handled strictly in order by one task; different
//!   groups run concurrently.
//! - A message is deleted only after its effects are done (StartExecution accepted or the
//!   execution found to exist with the same input; StopExecution done or nothing to stop).
//!   Every held message's visibility is extended while it waits or is worked on.
//! - Transient failures (throttling, 5xx) are retried in place with backoff; after a few
//!   attempts the message is handed back to SQS (visible again after a pause) and the
//!   group's later messages are released too, so SQS redelivers them in order.
//! - Poison (not an envelope, no rule for the table, unreadable due time, a name taken by
//!   another input) goes to `dead_letter_queue` at once, or, without one, is left to the
//!   queue's redrive policy; it is counted and logged with the reason either way.
//! - SIGTERM: no new receives; the messages being worked on finish (bounded by
//!   `shutdown_timeout_ms`), the ones still waiting are made visible again at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
};
use sameday_core::aws::{describe, Backoff, Retry};
use sameday_core::envelope::ChangeEnvelope;
use sameday_core::health::Health;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{QueueConfig, WorkerConfig};
use crate::effects::{plan, Effect};
use crate::metrics::WorkerMetrics;
use crate::rate::RateLimiter;
use crate::sfn::{Limiters, SfnError, StartOutcome, StepFunctions, StopOutcome};

/// In-place attempts of one call before the message is handed back to SQS.
const ATTEMPTS: u32 = 6;
/// Longest pause between two in-place attempts.
const RETRY_BACKOFF_CAP_SECS: u64 = 3;
/// Step Functions effects of one message at most: stop the old execution, start the new.
const MAX_EFFECTS_PER_MESSAGE: u64 = 2;
/// How long one message can be worked on before it is deleted or handed back: per effect,
/// `ATTEMPTS` attempts each followed by a backoff of at most `RETRY_BACKOFF_CAP_SECS` (one
/// cap per attempt covers the pauses, which are one fewer, plus the calls' round trips).
/// A visibility timeout below it lets SQS redeliver a message that is still being worked
/// on whenever an extension is late; `sameday check` refuses such a queue or config.
pub const PROCESSING_BOUND_SECS: u64 = MAX_EFFECTS_PER_MESSAGE * ATTEMPTS as u64 * RETRY_BACKOFF_CAP_SECS;
/// How long a handed-back message stays invisible.
const RETRY_VISIBILITY_SECS: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Startup(String),
}

struct Held {
    message: Message,
    received: Instant,
    received_ms: u64,
    /// One of `max_in_flight_messages`, returned when the message is dropped.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Held {
    fn id(&self) -> &str {
        self.message.message_id().unwrap_or_default()
    }
    fn receipt(&self) -> &str {
        self.message.receipt_handle().unwrap_or_default()
    }
    /// When SQS accepted the message (ms since the epoch), if it said.
    fn sent_ms(&self) -> u64 {
        self.message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn group(&self) -> String {
        self.message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            .unwrap_or_else(|| self.id().to_owned())
    }
}

/// What became of one message.
enum Handled {
    Deleted,
    /// Left in the queue (will be redelivered): later messages of its group must wait.
    HandedBack,
}

pub struct Worker {
    cfg: WorkerConfig,
    queue: QueueConfig,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_url: Option<(String, bool)>,
    sfn: StepFunctions,
    metrics: WorkerMetrics,
    permits: Arc<Semaphore>,
    /// Received, not yet deleted or released: message id -> receipt handle.
    held: Mutex<HashMap<String, String>>,
    /// Per FIFO group, messages waiting for the group's task.
    groups: Mutex<HashMap<String, VecDeque<Held>>>,
    tasks: TaskTracker,
    stopping: CancellationToken,
}

/// Runs the worker until `shutdown` fires.
pub async fn run_worker(cfg: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    cfg.validate().map_err(WorkerError::Config)?;
    let sameday_core::daemon::Endpoint { health, registry, .. } =
        sameday_core::daemon::Endpoint::start(&cfg, Duration::from_secs(120), &shutdown)
            .await
            .map_err(WorkerError::Config)?;
    let metrics = WorkerMetrics::new(&registry);
    let worker = Arc::new(Worker::connect(cfg, metrics, shutdown.clone()).await?);
    health.set_ready(true);
    worker.run(&health).await;
    Ok(())
}

impl Worker {
    pub async fn connect(
        cfg: WorkerConfig,
        metrics: WorkerMetrics,
        stopping: CancellationToken,
    ) -> Result<Self, WorkerError> {
        let queue =
            cfg.sqs.clone().ok_or_else(|| WorkerError::Config("[sqs] queue is required by the worker".into()))?;
        if let Some(nightly) = &cfg.nightly {
            // With a source at hand, a rule naming a missing column fails here, not per message.
            let rules: Vec<&sameday_core::window::ScheduleRule> = cfg.rules.iter().collect();
            crate::nightly::check_rules(nightly, &rules).await.map_err(|e| WorkerError::Config(e.to_string()))?;
        }
        let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let (queue_url, fifo) = resolve(&sqs, &queue.queue).await.map_err(WorkerError::Startup)?;
        if !fifo {
            tracing::warn!(queue = %queue_url, "standard queue: a row's changes may arrive out of order");
        }
        let dead_letter_url = match &queue.dead_letter_queue {
            Some(q) => {
                Some(resolve(&sqs, q).await.map_err(|e| WorkerError::Startup(format!("dead_letter_queue: {e}")))?)
            }
            None => None,
        };
        // Our own retries see throttling (and slow the rate limiter); the SDK's would hide it.
        let sfn_conf = aws_sdk_sfn::config::Builder::from(&aws)
            .retry_config(aws_sdk_sfn::config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        let limiters = Limiters {
            start: Arc::new(RateLimiter::new(cfg.step_functions.start_rate.clone())),
            stop: Arc::new(RateLimiter::new(cfg.step_functions.stop_rate.clone())),
            describe: Arc::new(RateLimiter::new(cfg.step_functions.describe_rate.clone())),
        };
        let sfn = StepFunctions::with_limiters(aws_sdk_sfn::Client::from_conf(sfn_conf), limiters);
        tracing::info!(queue = %queue_url, fifo, rules = cfg.rules.len(), "worker ready");
        Ok(Self {
            permits: Arc::new(Semaphore::new(queue.max_in_flight_messages)),
            cfg,
            queue,
            sqs,
            queue_url,
            dead_letter_url,
            sfn,
            metrics,
            held: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            stopping,
        })
    }

    async fn run(self: &Arc<Self>, health: &Health) {
        let keeper = tokio::spawn(self.clone().keep_visible());
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !self.stopping.is_cancelled() {
            health.beat();
            let permit = tokio::select! {
                biased;
                _ = self.stopping.cancelled() => break,
                p = self.permits.clone().acquire_owned() => p.expect("never closed"),
            };
            // The permit only waits for room; each message takes its own below.
            let room = (self.permits.available_permits() + 1).min(10);
            drop(permit);
            let request = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(room as i32)
                .wait_time_seconds(self.queue.wait_time_seconds)
                .visibility_timeout(self.queue.visibility_timeout_seconds)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send();
            let out = tokio::select! {
                biased;
                _ = self.stopping.cancelled() => break,
                out = request => out,
            };
            let messages = match out {
                Ok(out) => {
                    backoff.reset();
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    self.metrics.error("receive");
                    tracing::warn!(queue = %self.queue_url, error = %describe(&e), "ReceiveMessage failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            for message in messages {
                let permit = self.permits.clone().try_acquire_owned().ok();
                let held = Held {
                    message,
                    received: Instant::now(),
                    received_ms: sameday_core::checkpoint::now_ms(),
                    _permit: permit,
                };
                self.metrics.messages.inc();
                self.held.lock().expect("held").insert(held.id().to_owned(), held.receipt().to_owned());
                self.metrics.in_flight.inc();
                self.dispatch(held);
            }
        }

        tracing::info!("stopping: finishing the messages being worked on");
        self.tasks.close();
        let timeout = Duration::from_millis(self.cfg.shutdown_timeout_ms);
        if tokio::time::timeout(timeout, self.tasks.wait()).await.is_err() {
            tracing::warn!("messages still being worked on at the shutdown timeout; SQS redelivers them");
        }
        keeper.abort();
    }

    fn dispatch(self: &Arc<Self>, held: Held) {
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
                self.release(&next, 0).await;
                continue;
            }
            if let Handled::HandedBack = self.handle(&next).await {
                handing_back = true;
            }
        }
    }

    async fn handle(&self, held: &Held) -> Handled {
        let body = held.message.body().unwrap_or_default();
        let env = match ChangeEnvelope::from_slice(body.as_bytes()) {
            Ok(env) => env,
            Err(e) => return self.poison(held, "not_envelope", format!("not a sameday change envelope: {e}")).await,
        };
        let Some(rule) = self.cfg.rule_for(&env.db, &env.table) else {
            let reason = format!("no [[rule]] for table {}.{}; route only scheduled tables here", env.db, env.table);
            return self.poison(held, "no_rule", reason).await;
        };
        let outcome = match plan(rule, &env, jiff::Timestamp::now()) {
            Ok(o) => o,
            Err(e) => return self.poison(held, "unplannable", format!("change {}: {e}", env.id)).await,
        };
        if let Some(reason) = outcome.skipped {
            self.metrics.skip(reason.as_str());
            tracing::debug!(change = %env.id, reason = reason.as_str(), "no effect");
        }
        for effect in &outcome.effects {
            let result = match effect {
                Effect::Stop { arn, .. } => self.retrying(|| self.sfn.stop(arn)).await.map(|o| match o {
                    StopOutcome::Stopped => "stopped",
                    StopOutcome::AlreadyClosedOrMissing => "stop_noop",
                }),
                Effect::Start { name, input, .. } => {
                    self.retrying(|| self.sfn.start(&rule.state_machine_arn, name, input)).await.map(|o| match o {
                        StartOutcome::Started { .. } => "started",
                        StartOutcome::AlreadyExisted { .. } => "already_existed",
                    })
                }
            };
            match result {
                Ok(kind) => {
                    self.metrics.effect(kind);
                    // The timestamps let an operator (and the freshness benchmark) see each
                    // hop: committed (source), queued (SQS), received, done.
                    tracing::info!(
                        change = %env.id,
                        effect = kind,
                        execution = effect_name(effect),
                        committed_ms = env.source.ts_ms,
                        sqs_sent_ms = held.sent_ms(),
                        received_ms = held.received_ms,
                        done_ms = sameday_core::checkpoint::now_ms(),
                        "effect done"
                    );
                }
                Err(e @ SfnError::Conflict { .. }) => return self.poison(held, "conflict", e.to_string()).await,
                Err(e) => {
                    self.metrics.error(if e.is_throttled() { "throttled" } else { "step_functions" });
                    tracing::error!(change = %env.id, error = %e, "Step Functions call failed; the message goes back to the queue");
                    self.release(held, RETRY_VISIBILITY_SECS).await;
                    return Handled::HandedBack;
                }
            }
        }
        if !outcome.effects.is_empty() {
            let age_ms = sameday_core::checkpoint::now_ms().saturating_sub(env.source.ts_ms);
            self.metrics.change_age.observe(age_ms as f64 / 1000.0);
        }
        self.delete(held).await
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

    async fn poison(&self, held: &Held, kind: &str, reason: String) -> Handled {
        self.metrics.dead_letter(kind);
        let receives = held
            .message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .cloned()
            .unwrap_or_default();
        tracing::error!(message = held.id(), %reason, receives, "poison message");
        let Some((dlq, fifo)) = &self.dead_letter_url else {
            // The queue's redrive policy moves it to its DLQ after maxReceiveCount.
            self.release(held, 0).await;
            return Handled::HandedBack;
        };
        let attr = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build();
        let mut send = self
            .sqs
            .send_message()
            .queue_url(dlq)
            .message_body(held.message.body().unwrap_or_default())
            .message_attributes("sameday_reason", attr(&reason).expect("data type set"))
            .message_attributes("sameday_source_queue", attr(&self.queue_url).expect("data type set"));
        if *fifo {
            send = send.message_group_id(held.group()).message_deduplication_id(held.id());
        }
        match send.send().await {
            Ok(_) => self.delete(held).await,
            Err(e) => {
                self.metrics.error("dead_letter");
                tracing::error!(error = %describe(&e), "cannot send to the dead-letter queue; the message stays");
                self.release(held, RETRY_VISIBILITY_SECS).await;
                Handled::HandedBack
            }
        }
    }

    async fn delete(&self, held: &Held) -> Handled {
        let res = self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(held.receipt()).send().await;
        if let Err(e) = res {
            // The effect is done and idempotent: a redelivery repeats it harmlessly.
            self.metrics.error("delete");
            tracing::warn!(message = held.id(), error = %describe(&e), "DeleteMessage failed; SQS will redeliver");
        }
        self.forget(held);
        self.metrics.processing.observe(held.received.elapsed().as_secs_f64());
        Handled::Deleted
    }

    /// Hands a message back: visible again after `after_secs`.
    async fn release(&self, held: &Held, after_secs: i32) {
        let res = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(held.receipt())
            .visibility_timeout(after_secs)
            .send()
            .await;
        if let Err(e) = res {
            tracing::warn!(message = held.id(), error = %describe(&e), "cannot hand the message back; it reappears after its visibility timeout");
        }
        self.forget(held);
    }

    fn forget(&self, held: &Held) {
        if self.held.lock().expect("held").remove(held.id()).is_some() {
            self.metrics.in_flight.dec();
        }
    }

    /// Extends the visibility of every held message every third of the timeout.
    async fn keep_visible(self: Arc<Self>) {
        let every = Duration::from_secs((self.queue.visibility_timeout_seconds / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<(String, String)> =
                self.held.lock().expect("held").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for chunk in held.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (_, receipt))| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(receipt)
                            .visibility_timeout(self.queue.visibility_timeout_seconds)
                            .build()
                            .expect("id and receipt set")
                    })
                    .collect();
                let res = self
                    .sqs
                    .change_message_visibility_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                if let Err(e) = res {
                    tracing::warn!(error = %describe(&e), "cannot extend message visibility");
                }
            }
        }
    }
}

fn effect_name(effect: &Effect) -> &str {
    match effect {
        Effect::Stop { name, .. } | Effect::Start { name, .. } => name,
    }
}

/// A queue's URL (from a name or URL) and whether it is FIFO.
pub async fn resolve(sqs: &aws_sdk_sqs::Client, name_or_url: &str) -> Result<(String, bool), String> {
    let q = sameday_core::sqs::resolve_queue(sqs, name_or_url)
        .await
        .map_err(|(_, message)| format!("queue {name_or_url}: {message}"))?;
    Ok((q.url, q.fifo))
}
