//! `sameday reconcile`: does Step Functions hold exactly what the table says? For each rule,
//! the rows due in the current window (predicate applied) against the state machine's RUNNING
//! executions; reports `in_sync`, `missing`, `extra` and `stale` with examples, and with
//! `--fix` starts the missing and stops the extra and stale ones.
//!
//! Guarantees:
//! - Never an execution whose due time has passed, never a name that is not sameday's
//!   ([`compare`]).
//! - Changes in flight are not drift: drift must show in two looks `settle` apart before it
//!   is reported or fixed (a row changed while one look read it shows as drift in that look
//!   only). The listing and the row read of a look run side by side.
//! - Fixes go through the same generation and version rules as the worker
//!   ([`crate::generations`]): a fix never starts an event a newer change undid, nor stops an
//!   execution made from a newer image than the rows it read.
//! - Reads the rows on `[nightly.primary]` (default `[nightly.source]`), in the nightly batch's
//!   keyset pages; lists executions 1,000 per ListExecutions call. Cost and speed:
//!   `docs/benchmarks.md`.

mod compare;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sameday_core::execution::rfc3339_utc;
use sameday_core::row_version::RowVersion;
use sameday_core::rule::ScheduleRule;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{NightlyConfig, WorkerConfig};
use crate::generations::{StartOutcome, StopOutcome};
use crate::nightly::run_window::RunWindow;
use crate::nightly::table::{RuleTable, TableReader};
use crate::nightly::{self, check_rules, key_of, rules_named, start, NightlyError};
use crate::rate::RateLimiter;
use crate::sfn::{Limiters, StepFunctions};
use compare::{compare, Drift, Wanted};
use report::{ReconcileSummary, RuleReport, EXAMPLES};

/// Default pause between the two looks.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Only the rule with this name.
    pub rule: Option<String>,
    /// Start the missing, stop the extra and stale executions.
    pub fix: bool,
    /// Pause before the second look that confirms drift.
    pub settle: Duration,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self { rule: None, fix: false, settle: DEFAULT_SETTLE }
    }
}

/// Compares (and with `fix`, repairs) every rule, one after the other.
pub async fn run_reconcile(cfg: &WorkerConfig, options: &ReconcileOptions) -> Result<ReconcileSummary, NightlyError> {
    let nightly = cfg.nightly.as_ref().ok_or_else(|| {
        NightlyError::Config(
            "the config has no [nightly] section; sameday reconcile reads the tables through it".into(),
        )
    })?;
    let rules = rules_named(cfg, options.rule.as_deref())?;
    let tables = check_rules(nightly, &rules).await?;
    let limiters = Limiters::new(&cfg.step_functions);
    let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
    let sfn = StepFunctions::with_limiters(aws_sdk_sfn::Client::new(&aws), limiters.clone());
    let ctx = Reconcile { nightly, sfn: &sfn, list_limiter: &limiters.list, options };
    let mut summary = ReconcileSummary { rules: Vec::new(), fixed: options.fix };
    for (rule, table) in rules.into_iter().zip(&tables) {
        let span = tracing::info_span!("reconcile", rule = %rule.name);
        summary.rules.push(ctx.rule(rule, table).instrument(span).await?);
    }
    Ok(summary)
}

struct Reconcile<'a> {
    nightly: &'a NightlyConfig,
    sfn: &'a StepFunctions,
    list_limiter: &'a Arc<RateLimiter>,
    options: &'a ReconcileOptions,
}

/// One look at a rule: the drift, what was compared, and what the rows' reads saw.
struct Look {
    drift: Drift,
    rows_due: u64,
    running: u64,
    list_calls: u64,
    version: RowVersion,
    window: (Timestamp, Timestamp),
}

impl Reconcile<'_> {
    async fn rule(&self, rule: &ScheduleRule, table: &RuleTable) -> Result<RuleReport, NightlyError> {
        let began = Instant::now();
        let first = self.look(rule, table).await?;
        let mut list_calls = first.list_calls;
        let look = if first.drift.is_empty() {
            first
        } else {
            tracing::info!(settle_ms = self.options.settle.as_millis() as u64, "reconcile: drift seen; looking again");
            tokio::time::sleep(self.options.settle).await;
            let second = self.look(rule, table).await?;
            list_calls += second.list_calls;
            Look { drift: first.drift.confirmed_by(&second.drift), ..second }
        };
        let mut report = RuleReport {
            rule: rule.name.clone(),
            window_start: Some(look.window.0),
            window_end: Some(look.window.1),
            rows_due: look.rows_due,
            running: look.running,
            in_sync: look.drift.in_sync,
            missing: look.drift.missing.len() as u64,
            extra: look.drift.extra.len() as u64,
            stale: look.drift.stale.len() as u64,
            examples: examples(&look.drift),
            list_calls,
            ..RuleReport::default()
        };
        if self.options.fix {
            self.fix(rule, &look, &mut report).await;
        }
        report.duration = began.elapsed();
        tracing::info!(
            in_sync = report.in_sync,
            missing = report.missing,
            extra = report.extra,
            stale = report.stale,
            started = report.started,
            stopped = report.stopped,
            "reconcile: rule done"
        );
        Ok(report)
    }

    async fn look(&self, rule: &ScheduleRule, table: &RuleTable) -> Result<Look, NightlyError> {
        let now = Timestamp::now();
        let run = RunWindow::current(rule, now);
        // Side by side: the listing is paced by the ListExecutions quota, the rows by MySQL.
        let listing = start::running_names(self.sfn, self.list_limiter, &rule.state_machine_arn);
        let (listed, read) = tokio::join!(listing, self.read_due_rows(rule, table, &run));
        let ((running, list_calls), (wanted, version)) = (listed?, read?);
        let running: Vec<String> = running.into_iter().collect();
        let rows_due = wanted.iter().filter(|w| w.execution.due > now).count() as u64;
        let running_count = running.len() as u64;
        let drift = compare(wanted, &running, now);
        Ok(Look { drift, rows_due, running: running_count, list_calls, version, window: (run.from, run.window.end) })
    }

    /// The rows due in `run` (predicate applied by the SQL), and the version of the oldest
    /// page: fixes made with it never override a change newer than any row read.
    async fn read_due_rows(
        &self,
        rule: &ScheduleRule,
        table: &RuleTable,
        run: &RunWindow,
    ) -> Result<(Vec<Wanted>, RowVersion), NightlyError> {
        let (lower, upper) = run.sql_bounds(rule);
        let mut reader = TableReader::new(self.nightly.verify_source(), table);
        let mut wanted = Vec::new();
        let mut cursor = None;
        let mut version = None;
        loop {
            let page = reader.page(&lower, &upper, cursor.as_ref()).await?;
            version.get_or_insert(page.version.clone());
            for row in &page.rows {
                if let Some(execution) = nightly::wanted(rule, run, row) {
                    wanted.push(Wanted { execution, key: key_of(rule, row) });
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        reader.close().await;
        Ok((wanted, version.unwrap_or(RowVersion::Read { server_id: 0, gtid: None, binlog: None })))
    }

    async fn fix(&self, rule: &ScheduleRule, look: &Look, report: &mut RuleReport) {
        let machine = rule.state_machine_arn.as_str();
        for w in &look.drift.missing {
            match self.sfn.start_event(machine, &w.execution, &look.version).await {
                Ok(StartOutcome::Started { .. } | StartOutcome::AlreadyRunning { .. }) => report.started += 1,
                Ok(other) => {
                    tracing::warn!(execution = %w.execution.name, outcome = other.as_str(), "reconcile: not started")
                }
                Err(e) => {
                    report.fix_failed += 1;
                    tracing::error!(execution = %w.execution.name, error = %e, "reconcile: start failed");
                }
            }
        }
        for name in look.drift.extra.iter().chain(&look.drift.stale) {
            match self.sfn.stop_named(machine, name, &look.version).await {
                Ok(StopOutcome::Stopped { .. } | StopOutcome::NothingRunning) => report.stopped += 1,
                Ok(other) => tracing::warn!(execution = %name, outcome = other.as_str(), "reconcile: not stopped"),
                Err(e) => {
                    report.fix_failed += 1;
                    tracing::error!(execution = %name, error = %e, "reconcile: stop failed");
                }
            }
        }
    }
}

fn examples(drift: &Drift) -> Vec<(&'static str, String)> {
    let missing =
        drift.missing.iter().take(EXAMPLES).map(|w| {
            ("missing", format!("key={} due={} name={}", w.key, rfc3339_utc(w.execution.due), w.execution.name))
        });
    let extra = drift.extra.iter().take(EXAMPLES).map(|n| ("extra", format!("name={n}")));
    let stale = drift.stale.iter().take(EXAMPLES).map(|n| ("stale", format!("name={n}")));
    missing.chain(extra).chain(stale).collect()
}
