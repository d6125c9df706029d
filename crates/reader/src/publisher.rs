//! Delivers change records to a sink in per-key commit order and moves the checkpoint
//! only behind durable delivery.
//!
//! Ordering: PutRecords may reorder records within one request and fails per record, so
//! "retry only the failed ones" would let a later change of a row overtake an earlier
//! one. Instead at most ONE record per partition key is in flight at any time: a record
//! is sent only when no earlier record of its key is unacknowledged. A failed record is
//! simply sent again; nothing behind it (same key) has been sent, so order holds. Records
//! of different keys go out together, up to 500 / 5 MiB per request and several
//! requests at once.
//!
//! Checkpoints: records and commits sit in one queue in binlog order. The front of the
//! queue is popped only when it is acknowledged (or dead-lettered); a commit popped from
//! the front is therefore *durable*: every record before it is in Kinesis. Only durable
//! commits are saved, at most once per `checkpoint_interval`, and always on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rustc_hash::FxHashMap;
use sameday_core::backoff::Backoff;
use sameday_core::checkpoint::{Checkpoint, CheckpointStore, NoCheckpoint};
use sameday_core::clock::now_ms;
use sameday_core::envelope::Op;
use sameday_core::health::Health;
use sameday_core::kpl;
use sameday_core::ordered::{OrderedQueue, Ticket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::claim_check::ClaimChecker;
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::decoder::{log_schema_change, Commit, Output, Record};
use crate::error::ReaderError;
use crate::kinesis::config::{MAX_BYTES_PER_REQUEST, MAX_RECORDS_PER_REQUEST};
use crate::metrics::{Code, ReaderMetrics, RowDigest, Table, TableOp};
use crate::sink::{RecordOutcome, RecordSink, SinkRecord};

/// How far into the queue a batch is looked for.
const SCAN_WINDOW: usize = 20_000;
/// Changes of one key in one aggregated Kinesis record at most; the record size limit (1 MiB
/// less the claim-check's margin) usually binds first. Only one record per key is in flight,
/// so this bounds a hot row's changes per round trip: at 500, a row changed 100,000 times
/// reached 0.44-0.49 of the throughput of 100,000 rows at 30 ms per call; at 2,000, 1.14
/// (`docs/benchmarks.md`, hot rows).
pub(crate) const MAX_RECORDS_PER_AGGREGATE: usize = 2_000;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub linger: Duration,
    pub max_in_flight_requests: usize,
    /// Records held in memory before intake pauses (backpressure on the binlog).
    pub max_pending_records: usize,
    pub max_pending_bytes: usize,
    pub checkpoint_interval: Duration,
    /// How long the checkpoint may stand still behind one row's records before a warning
    /// names the row (table and key digest).
    pub held_back_warn: Duration,
    /// How long shutdown waits for in-flight records before saving what is durable.
    pub drain_timeout: Duration,
    /// Records over its threshold go through S3 first (`crate::claim_check`).
    pub claim_check: Option<ClaimChecker>,
    /// Pack a key's queued records into one KPL aggregated record (`sameday_core::kpl`), so a
    /// hot row moves up to [`MAX_RECORDS_PER_AGGREGATE`] changes per round trip.
    pub aggregate: bool,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(20),
            max_in_flight_requests: 4,
            max_pending_records: 20_000,
            max_pending_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
            held_back_warn: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(7),
            claim_check: None,
            aggregate: false,
        }
    }
}

/// What a run achieved.
#[derive(Debug, Default, Clone)]
pub struct PublishSummary {
    pub delivered: u64,
    /// Warnings that one row's records held the checkpoint back.
    pub held_back_warnings: u64,
    pub dead_lettered: u64,
    pub last_durable: Option<Commit>,
    pub checkpoints_saved: u64,
}

/// A request's groups (one Kinesis record each: one change, or a key's aggregated changes)
/// and its outcome per record.
type InFlight = (Vec<Vec<Ticket>>, Result<Vec<RecordOutcome>, crate::sink::SinkError>);

pub struct Publisher<S, C> {
    sink: Arc<S>,
    store: Option<Arc<C>>,
    cfg: PublisherConfig,
    metrics: ReaderMetrics,
    dead_letters: Option<DeadLetters>,
    health: Option<Arc<Health>>,
    // state
    /// Records and commits in binlog order (see `sameday_core::ordered`).
    queue: OrderedQueue<SinkRecord, Commit>,
    /// Row counters by (table, op), so the hot path skips the labelled-family lookup.
    row_counters: FxHashMap<(Arc<str>, Op), Counter>,
    requests: JoinSet<InFlight>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    oldest_pending: Option<Instant>,
    durable: Option<Commit>,
    saved: Option<Commit>,
    last_save: Instant,
    /// When the durable position last moved, and when the held-back warning was last given.
    durable_since: Instant,
    warned_at: Option<Instant>,
    /// The row labelling `key_backlog_deepest` now.
    deepest_row: Option<RowDigest>,
    summary: PublishSummary,
}

impl<S: RecordSink> Publisher<S, NoCheckpoint> {
    /// A publisher into `sink` with no checkpoint, metrics, dead letters or health; the
    /// `with_*` methods add them.
    pub fn new(sink: Arc<S>, cfg: PublisherConfig) -> Self {
        Self {
            sink,
            store: None,
            cfg,
            metrics: ReaderMetrics::default(),
            dead_letters: None,
            health: None,
            queue: OrderedQueue::default(),
            row_counters: FxHashMap::default(),
            requests: JoinSet::new(),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(10)),
            retry_at: None,
            oldest_pending: None,
            durable: None,
            saved: None,
            last_save: Instant::now(),
            durable_since: Instant::now(),
            warned_at: None,
            deepest_row: None,
            summary: PublishSummary::default(),
        }
    }
}

impl<S: RecordSink, C: CheckpointStore + 'static> Publisher<S, C> {
    /// The health this publisher beats, if any (the source beats it too).
    pub fn health(&self) -> Option<Arc<Health>> {
        self.health.clone()
    }

    pub fn with_metrics(mut self, metrics: ReaderMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Saves durable commits to `store` (the live reader; replays and `tail` have none and
    /// never move the live checkpoint).
    pub fn with_checkpoints<D: CheckpointStore + 'static>(self, store: Arc<D>) -> Publisher<S, D> {
        Publisher {
            sink: self.sink,
            store: Some(store),
            cfg: self.cfg,
            metrics: self.metrics,
            dead_letters: self.dead_letters,
            health: self.health,
            queue: self.queue,
            row_counters: self.row_counters,
            requests: self.requests,
            backoff: self.backoff,
            retry_at: self.retry_at,
            oldest_pending: self.oldest_pending,
            durable: self.durable,
            saved: self.saved,
            last_save: self.last_save,
            durable_since: self.durable_since,
            warned_at: self.warned_at,
            deepest_row: self.deepest_row,
            summary: self.summary,
        }
    }

    /// Runs until `rx` closes (the source ended) and everything is delivered, or until
    /// `shutdown` fires (then drains in-flight work within `drain_timeout`).
    pub async fn run(
        mut self,
        rx: mpsc::Receiver<Vec<Output>>,
        shutdown: CancellationToken,
    ) -> Result<PublishSummary, ReaderError> {
        let (mut rx, claim_check) = match self.cfg.claim_check.take() {
            Some(c) => {
                let (rx, task) = c.with_counter(self.metrics.claim_checks.clone()).spawn(rx, shutdown.clone());
                (rx, Some(task))
            }
            None => (rx, None),
        };
        let mut intake_open = true;
        let mut drain_deadline: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(5).max(self.cfg.linger / 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let full = self.queue.len() >= self.cfg.max_pending_records
                || self.queue.undelivered_bytes() >= self.cfg.max_pending_bytes;
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                    intake_open = false;
                    drain_deadline = Some(Instant::now() + self.cfg.drain_timeout);
                    rx.close();
                }
                Some(done) = self.requests.join_next(), if !self.requests.is_empty() => {
                    let (seqs, result) = done.map_err(|e| ReaderError::Sink { stream: self.sink.describe(), message: format!("publisher task failed: {e}") })?;
                    self.complete(seqs, result)?;
                }
                msg = rx.recv(), if intake_open && !full => match msg {
                    Some(outputs) => self.accept(outputs)?,
                    None => intake_open = false,
                },
                _ = tick.tick() => {}
            }
            self.dispatch(!intake_open);
            self.advance();
            // With nothing in flight, every row not pending is delivered.
            let no_records_left = self.requests.is_empty() && self.queue.pending() == 0;
            if !intake_open && (no_records_left || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
                break;
            }
            if self.last_save.elapsed() >= self.cfg.checkpoint_interval {
                self.watch_backlog();
                self.save().await?;
            }
            if let Some(h) = &self.health {
                h.beat();
            }
        }
        self.save().await?;
        self.summary.last_durable = self.durable.clone();
        if let Some(task) = claim_check {
            // Ended by now (its output closed), unless it waits on S3 retries: then stop it.
            task.abort();
            if let Ok(Err(e)) = task.await {
                return Err(e);
            }
        }
        Ok(self.summary)
    }

    fn accept(&mut self, outputs: Vec<Output>) -> Result<(), ReaderError> {
        for o in outputs {
            match o {
                Output::Row(r) => self.accept_row(r),
                Output::Commit(c) => {
                    self.metrics.transactions.inc();
                    let lag = now_ms().saturating_sub(c.ts_ms) as f64 / 1000.0;
                    self.metrics.lag_seconds.set(lag);
                    self.queue.push_mark(c);
                }
                Output::DeadLetter(d) => {
                    self.dead_letter(&d.table, &d.position, None, None, &d.reason, None);
                }
                Output::CaughtUp => {
                    self.metrics.lag_seconds.set(0.0);
                }
                Output::SchemaChange { db, kind, table, position } => {
                    self.metrics.schema_changes.get_or_create(&Table { table: db.clone() }).inc();
                    log_schema_change(&db, &kind, table.as_deref(), &position);
                }
            }
        }
        Ok(())
    }

    fn accept_row(&mut self, r: Record) {
        let size = r.data.len() + r.partition_key.len();
        let metrics = &self.metrics;
        self.row_counters
            .entry((r.table.clone(), r.op))
            .or_insert_with(|| {
                metrics
                    .rows
                    .get_or_create(&TableOp { table: r.table.to_string(), op: r.op.as_str().to_owned() })
                    .clone()
            })
            .inc();
        self.metrics.bytes.inc_by(r.data.len() as u64);
        if size > self.sink.max_record_bytes() {
            let reason = format!(
                "record of {size} bytes exceeds the stream's maximum record size of {} bytes; set [claim_check] so \
                 large changes go through S3",
                self.sink.max_record_bytes()
            );
            self.dead_letter(&r.table, &r.position, Some(&r.id), Some(&r.partition_key), &reason, Some(&r.data));
            return;
        }
        if self.oldest_pending.is_none() {
            self.oldest_pending = Some(Instant::now());
        }
        let key = r.partition_key.clone();
        self.queue.push(key, size, SinkRecord { partition_key: r.partition_key, data: r.data.into() });
    }

    fn dead_letter(
        &mut self,
        table: &str,
        position: &sameday_core::BinlogPosition,
        id: Option<&str>,
        key: Option<&str>,
        reason: &str,
        record: Option<&[u8]>,
    ) {
        self.metrics.dead_letters.get_or_create(&Table { table: table.to_owned() }).inc();
        self.summary.dead_lettered += 1;
        let target =
            self.dead_letters.as_ref().map(DeadLetters::describe).unwrap_or_else(|| "(none configured)".into());
        tracing::error!(table, %position, id, partition_key = key, reason, dead_letters = %target, "change dead-lettered; the stream continues");
        if let Some(d) = &mut self.dead_letters {
            if let Err(e) = d.write(DeadLetter::new(table, position, id, key, reason, record)) {
                tracing::error!(error = %e, "cannot write the dead letter");
            }
        }
    }

    /// Sends batches while requests may be added and records are ready.
    fn dispatch(&mut self, draining: bool) {
        while self.requests.len() < self.cfg.max_in_flight_requests {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let lingered = self.oldest_pending.is_some_and(|t| t.elapsed() >= self.cfg.linger);
            // Build a batch only when it is worth a request: enough records could fill one,
            // the oldest waited its linger, or we are draining.
            let enough = self.queue.pending() >= MAX_RECORDS_PER_REQUEST
                || self.queue.undelivered_bytes().saturating_mul(10) >= MAX_BYTES_PER_REQUEST.saturating_mul(9);
            if !(enough || lingered || draining) {
                return;
            }
            let (seqs, batch) = self.next_batch();
            if batch.is_empty() {
                // Everything pending waits for its key: keep the linger clock running so
                // those records go out as soon as their keys are free.
                if self.queue.pending() == 0 {
                    self.oldest_pending = None;
                }
                return;
            }
            self.metrics.batch_records.observe(batch.len() as f64);
            let sink = self.sink.clone();
            self.requests.spawn(async move {
                let res = sink.put(&batch).await;
                (seqs, res)
            });
            self.oldest_pending = if self.queue.pending() > 0 { Some(Instant::now()) } else { None };
        }
    }

    /// The next request's records: one per ready key, or with aggregation each ready key's
    /// queued records packed into one (a single one stays plain).
    fn next_batch(&mut self) -> (Vec<Vec<Ticket>>, Vec<SinkRecord>) {
        if !self.cfg.aggregate {
            return self
                .queue
                .take_batch(MAX_RECORDS_PER_REQUEST, MAX_BYTES_PER_REQUEST, SCAN_WINDOW, |_, _| true)
                .into_iter()
                .map(|(t, r)| (vec![t], r))
                .unzip();
        }
        let max_record = self.sink.max_record_bytes();
        let group_bytes = max_record.saturating_sub(kpl::overhead("", MAX_RECORDS_PER_AGGREGATE)).max(1);
        let groups = self.queue.take_groups(
            MAX_RECORDS_PER_REQUEST,
            MAX_BYTES_PER_REQUEST,
            SCAN_WINDOW,
            MAX_RECORDS_PER_AGGREGATE,
            group_bytes,
        );
        groups
            .into_iter()
            .map(|mut group| {
                let tickets = group.iter().map(|(t, _)| *t).collect();
                if group.len() == 1 {
                    return (tickets, group.pop().expect("one").1);
                }
                let partition_key = group[0].1.partition_key.clone();
                let data = kpl::aggregate(&partition_key, group.iter().map(|(_, r)| &r.data[..]));
                (tickets, SinkRecord { partition_key, data: data.into() })
            })
            .unzip()
    }

    fn complete(
        &mut self,
        seqs: Vec<Vec<Ticket>>,
        result: Result<Vec<RecordOutcome>, crate::sink::SinkError>,
    ) -> Result<(), ReaderError> {
        let outcomes = match result {
            Ok(o) => o,
            Err(e) if e.transient => {
                self.metrics.retries.inc();
                let delay = self.backoff.next_delay();
                tracing::warn!(error = %e.message, retry_in_ms = delay.as_millis() as u64, records = seqs.len(), "PutRecords failed; retrying");
                self.retry_at = Some(Instant::now() + delay);
                vec![RecordOutcome::Retry { code: "request".into() }; seqs.len()]
            }
            Err(e) => {
                return Err(ReaderError::Sink { stream: self.sink.describe(), message: e.message });
            }
        };
        let mut any_failed = false;
        let mut any_delivered = false;
        for (group, outcome) in seqs.into_iter().zip(outcomes) {
            match outcome {
                RecordOutcome::Delivered => {
                    self.summary.delivered += group.len() as u64;
                    self.metrics.records.inc_by(group.len() as u64);
                    if group.len() > 1 {
                        self.metrics.aggregated_records.inc();
                    }
                    for ticket in group {
                        self.queue.complete(ticket, true);
                    }
                    any_delivered = true;
                }
                RecordOutcome::Retry { code } => {
                    for ticket in group {
                        self.queue.complete(ticket, false);
                    }
                    any_failed = true;
                    if code != "request" {
                        self.metrics.failed_records.get_or_create(&Code { error_code: code }).inc();
                    }
                }
            }
        }
        if any_failed {
            // Throttling that still lets records through is a short pause; only a request
            // that delivered nothing makes the backoff grow.
            if any_delivered {
                self.backoff.reset();
            }
            if self.retry_at.is_none_or(|t| t <= Instant::now()) {
                self.retry_at = Some(Instant::now() + self.backoff.next_delay());
            }
            self.oldest_pending.get_or_insert_with(Instant::now);
        } else {
            self.backoff.reset();
        }
        Ok(())
    }

    /// Pops the acknowledged front of the queue; commits popped become durable.
    fn advance(&mut self) {
        if let Some(c) = self.queue.pop_done().pop() {
            self.durable = Some(c);
            self.durable_since = Instant::now();
        }
        let behind = self
            .saved
            .as_ref()
            .map(|s| Some(&s.next) != self.durable.as_ref().map(|d| &d.next))
            .unwrap_or(self.durable.is_some());
        let age = if behind { self.last_save.elapsed().as_secs_f64() } else { 0.0 };
        self.metrics.checkpoint_age_seconds.set(age);
    }

    /// Publishes the deepest per-row backlog and says which row holds the checkpoint back
    /// when it has not moved for `held_back_warn` (table and a digest of the key, never its
    /// values), at most once per that interval.
    fn watch_backlog(&mut self) {
        let deepest = self.queue.deepest_key().filter(|(_, n)| *n > 0);
        self.metrics.key_backlog_max.set(deepest.map_or(0, |(_, n)| n) as i64);
        let row = deepest.map(|(key, n)| (RowDigest::of(key), n));
        if let Some(old) = self.deepest_row.take() {
            if row.as_ref().is_none_or(|(r, _)| *r != old) {
                self.metrics.key_backlog_deepest.remove(&old);
            }
        }
        if let Some((row, n)) = row {
            self.metrics.key_backlog_deepest.get_or_create(&row).set(n as i64);
            self.deepest_row = Some(row);
        }
        let after = self.cfg.held_back_warn;
        if self.durable_since.elapsed() < after || self.warned_at.is_some_and(|t| t.elapsed() < after) {
            return;
        }
        if let Some(key) = self.queue.oldest_undelivered_key() {
            let row = RowDigest::of(key);
            tracing::warn!(
                table = %row.table, key_digest = %row.key_digest, backlog = self.queue.backlog_of(key),
                held_s = self.durable_since.elapsed().as_secs(),
                "one row's records hold the checkpoint back: they go out one at a time, in order"
            );
            self.warned_at = Some(Instant::now());
            self.summary.held_back_warnings += 1;
        }
    }

    async fn save(&mut self) -> Result<(), ReaderError> {
        self.last_save = Instant::now();
        // The checkpoint may pass a dead-lettered row only once its dead letter is stored.
        if let Some(d) = &mut self.dead_letters {
            d.flush().await?;
        }
        let (Some(store), Some(durable)) = (&self.store, &self.durable) else { return Ok(()) };
        if self.saved.as_ref().is_some_and(|s| s.next == durable.next) {
            return Ok(());
        }
        let cp = Checkpoint {
            position: durable.next.clone(),
            gtid_set: durable.gtid_set.clone(),
            commit_ts_ms: durable.ts_ms,
            saved_at_ms: now_ms(),
        };
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match store.save(&cp).await {
                Ok(()) => break,
                Err(e) if e.is_transient() && backoff.attempts() < 10 => {
                    tracing::warn!(error = %e, "checkpoint save failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::debug!(position = %cp.position, "checkpoint saved");
        self.summary.checkpoints_saved += 1;
        self.saved = Some(durable.clone());
        Ok(())
    }
}
