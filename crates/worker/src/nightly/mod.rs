//! The nightly batch (`sameday nightly`): for each rule, starts the Step Functions executions
//! of the rows due in the run's window, with the names the worker computes for the same rows.
//!
//! Guarantees:
//! - Safe to re-run and to kill at any moment: execution names are deterministic
//!   ([`sameday_core::execution`]), so a second run finds every execution of the first and
//!   starts nothing new; there is no state of its own to lose.
//! - Same names as the CDC path: rows are read with [`crate::row`], the envelope's JSON mapping,
//!   and go through the same `due_of_row` and `scheduled_execution`.
//! - Every rule is checked against its table before any execution is started; a rule naming a
//!   missing column stops the run with an error naming rule, table and column.
//! - The source sees short autocommit SELECTs only (keyset pages, see [`table`]); Step
//!   Functions sees at most `nightly.concurrency` calls in flight, paced by the
//!   `step_functions.start_rate` token bucket. Transient errors are retried ([`start`]); a row
//!   counts as failed only when retrying stopped or the error is permanent (a name
//!   conflict), and any failure makes the command exit non-zero.
//! - Counts are honest: `already_existed` covers running executions too ([`start`]).

pub mod report;
pub mod run_window;
pub mod start;
pub mod table;

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;

use futures_util::StreamExt;
use jiff::civil::Date;
use jiff::Timestamp;
use mysql_async::Value as SqlValue;
use sameday_core::execution::{canonical_json, parse_name, scheduled_execution, ScheduledExecution};
use sameday_core::row_version::RowVersion;
use sameday_core::rule::ScheduleRule;
use sameday_core::window::due_of_row;
use sameday_mysql::MysqlError;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{NightlyConfig, WorkerConfig};
use crate::generations::StartOutcome;
use crate::rate::RateLimiter;
use crate::sfn::{Limiters, SfnError, StepFunctions};
use report::{Counters, NightlySummary, RuleSummary};
use run_window::{Placement, RunWindow};
use table::{RuleTable, TableReader};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct NightlyOptions {
    /// The run of this local day (in each rule's zone); default: the window containing now.
    pub date: Option<Date>,
    /// Read and print what would be started; no Step Functions calls.
    pub dry_run: bool,
    /// Only the rule with this name.
    pub rule: Option<String>,
    /// The run's clock; default: the system clock.
    pub now: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum NightlyError {
    #[error("configuration: {0}")]
    Config(String),
    /// The rule does not fit its table.
    #[error("schedule rule {rule:?}: table {table} {problem}")]
    Rule { rule: String, table: String, problem: String },
    #[error(transparent)]
    Source(#[from] MysqlError),
    #[error("schedule rule {rule:?}: {message}; query: {sql}")]
    Query { rule: String, sql: String, message: String, transient: bool },
    #[error(transparent)]
    StepFunctions(#[from] SfnError),
}

impl NightlyError {
    /// A new connection may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Source(e) => e.is_transient(),
            Self::Query { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Runs the batch for every rule (or `options.rule`), one rule after the other.
/// Checks each rule against its table on the `[nightly]` source: the table exists and has
/// every column the rule names, with a due column whose type fits `due_type`. The worker
/// runs this at start too, so a rule naming a missing column fails before any message.
pub async fn check_rules(nightly: &NightlyConfig, rules: &[&ScheduleRule]) -> Result<Vec<RuleTable>, NightlyError> {
    let mut session = table::open_session(&nightly.source).await?;
    let mariadb = session.server_info().await?.mariadb;
    let mut tables = Vec::with_capacity(rules.len());
    for rule in rules {
        tables.push(RuleTable::check(&mut session, rule, nightly.page_size, mariadb).await?);
    }
    session.close().await;
    Ok(tables)
}

/// Every rule, or only the one named `--rule NAME`.
pub(crate) fn rules_named<'a>(
    cfg: &'a WorkerConfig,
    name: Option<&str>,
) -> Result<Vec<&'a ScheduleRule>, NightlyError> {
    match name {
        None => Ok(cfg.rules.iter().collect()),
        Some(name) => match cfg.rules.iter().find(|r| r.name == name) {
            Some(r) => Ok(vec![r]),
            None => {
                let known: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
                Err(NightlyError::Config(format!("--rule {name:?}: no such rule; the config has {known:?}")))
            }
        },
    }
}

pub async fn run_nightly(cfg: &WorkerConfig, options: &NightlyOptions) -> Result<NightlySummary, NightlyError> {
    let nightly = cfg.nightly.as_ref().ok_or_else(|| {
        NightlyError::Config("the config has no [nightly] section; sameday nightly needs [nightly.source]".into())
    })?;
    let rules = rules_named(cfg, options.rule.as_deref())?;
    let now = options.now.unwrap_or_else(Timestamp::now);

    // Check every rule before starting anything.
    let tables = check_rules(nightly, &rules).await?;

    let limiters = Limiters::new(&cfg.step_functions);
    let sfn = if options.dry_run {
        None
    } else {
        let aws = sameday_core::aws::sdk_config(&cfg.aws).await;
        Some(StepFunctions::with_limiters(aws_sdk_sfn::Client::new(&aws), limiters.clone()))
    };
    let ctx = RuleRun {
        nightly,
        sfn: sfn.as_ref(),
        list_limiter: &limiters.list,
        date: options.date,
        now,
        tty: std::io::stderr().is_terminal(),
    };
    let mut summary = NightlySummary::default();
    for (rule, table) in rules.into_iter().zip(&tables) {
        let span = tracing::info_span!("nightly", rule = %rule.name);
        summary.rules.push(ctx.run(rule, table).instrument(span).await?);
    }
    summary.log();
    Ok(summary)
}

/// A row to start, with its key for the logs and the re-read.
struct Job {
    execution: ScheduledExecution,
    key: Value,
    key_values: Vec<SqlValue>,
}

struct RuleRun<'a> {
    nightly: &'a NightlyConfig,
    sfn: Option<&'a StepFunctions>,
    list_limiter: &'a RateLimiter,
    date: Option<Date>,
    now: Timestamp,
    tty: bool,
}

impl RuleRun<'_> {
    async fn run(&self, rule: &ScheduleRule, table: &RuleTable) -> Result<RuleSummary, NightlyError> {
        let began = Instant::now();
        let run = match self.date {
            Some(day) => RunWindow::for_day(rule, day, self.now),
            None => RunWindow::current(rule, self.now),
        };
        tracing::info!(from = %run.from, until = %run.window.end, dry_run = self.sfn.is_none(), "nightly: rule run begins");
        let mut reader = TableReader::new(&self.nightly.source, table);
        let mut verifier = TableReader::new(self.nightly.verify_source(), table);
        let (lower, upper) = run.sql_bounds(rule);
        let expected = if self.tty { Some(reader.count(&lower, &upper).await?) } else { None };
        let running = match self.sfn {
            Some(sfn) => running_events(sfn, self.list_limiter, &rule.state_machine_arn).await?,
            None => HashSet::new(),
        };

        let counters = Arc::new(Counters::default());
        let done = CancellationToken::new();
        let progress =
            tokio::spawn(report::progress(rule.name.clone(), Arc::clone(&counters), expected, self.tty, done.clone()));
        let pages = async {
            let mut cursor = None;
            loop {
                let page = reader.page(&lower, &upper, cursor.as_ref()).await?;
                let jobs: Vec<Job> = page
                    .rows
                    .iter()
                    .zip(page.keys)
                    .filter_map(|(row, key_values)| {
                        Counters::add(&counters.rows_read);
                        self.place(rule, &run, row, &counters, &running).map(|(execution, key)| Job {
                            execution,
                            key,
                            key_values,
                        })
                    })
                    .collect();
                let started = self.start_page(rule, jobs, &page.version, &counters).await;
                self.verify(rule, &run, &mut verifier, started, &counters).await?;
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => return Ok::<_, NightlyError>(()),
                }
            }
        };
        let result = pages.await;
        done.cancel();
        let _ = progress.await;
        let queries = reader.queries + verifier.queries;
        reader.close().await;
        verifier.close().await;
        result?;
        Ok(RuleSummary::from_counters(
            &rule.name,
            (run.from, run.window.end),
            self.sfn.is_none(),
            &counters,
            queries,
            began.elapsed(),
        ))
    }

    /// Decides what one row needs: its execution and key when it must be started.
    fn place(
        &self,
        rule: &ScheduleRule,
        run: &RunWindow,
        row: &Map<String, Value>,
        counters: &Counters,
        running: &HashSet<String>,
    ) -> Option<(ScheduledExecution, Value)> {
        let key = key_of(rule, row);
        let due = match due_of_row(rule, row) {
            Ok(due) => due,
            Err(e) => {
                // Typed columns inside the SQL bounds always parse; count it rather than hide it.
                Counters::add(&counters.selected);
                Counters::add(&counters.failed);
                tracing::error!(key = %key, error = %e, "nightly: unreadable due time");
                return None;
            }
        };
        match run.place(due) {
            Placement::Outside => return None,
            Placement::SkipLate => {
                Counters::add(&counters.selected);
                Counters::add(&counters.skipped_late);
                tracing::debug!(key = %key, due = %due, "nightly: due beyond grace; skipped");
                return None;
            }
            Placement::Start => Counters::add(&counters.selected),
        }
        let execution = match scheduled_execution(rule, row, due) {
            Ok(e) => e,
            Err(e) => {
                Counters::add(&counters.failed);
                tracing::error!(key = %key, error = %e, "nightly: cannot build the execution");
                return None;
            }
        };
        if self.sfn.is_none() {
            Counters::add(&counters.started);
            let line = format!(
                "would-start rule={:?} name={} due={} key={key}\n",
                rule.name,
                execution.name,
                sameday_core::execution::rfc3339_utc(due)
            );
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
            return None;
        }
        if parse_name(&execution.name).is_some_and(|(digest, _)| running.contains(digest)) {
            Counters::add(&counters.already_existed);
            return None;
        }
        Some((execution, key))
    }

    /// Starts a page's rows, `nightly.concurrency` at a time; the jobs this run started.
    async fn start_page(
        &self,
        rule: &ScheduleRule,
        jobs: Vec<Job>,
        version: &RowVersion,
        counters: &Counters,
    ) -> Vec<Job> {
        let Some(sfn) = self.sfn else { return Vec::new() };
        let starts = futures_util::stream::iter(jobs).map(|job| async move {
            let outcome = start::start_with_retry(sfn, &rule.state_machine_arn, &job.execution, version).await;
            let started = match outcome {
                Ok(StartOutcome::Started { .. }) => {
                    Counters::add(&counters.started);
                    true
                }
                Ok(StartOutcome::AlreadyRunning { .. } | StartOutcome::AlreadyFired { .. }) => {
                    Counters::add(&counters.already_existed);
                    false
                }
                Ok(StartOutcome::Stale { .. }) => {
                    Counters::add(&counters.stale);
                    false
                }
                Err(err) => {
                    Counters::add(&counters.failed);
                    tracing::error!(key = %job.key, execution = %job.execution.name, error = %err, "nightly: start failed");
                    false
                }
            };
            started.then_some(job)
        });
        starts.buffer_unordered(self.nightly.concurrency).filter_map(|job| async move { job }).collect().await
    }

    /// Reads the rows just started again on the primary and stops the executions of rows
    /// that changed since the page was read (moved, edited, cancelled or deleted): the worker
    /// may have handled that change before the start landed and found nothing to stop.
    async fn verify(
        &self,
        rule: &ScheduleRule,
        run: &RunWindow,
        verifier: &mut TableReader<'_>,
        started: Vec<Job>,
        counters: &Counters,
    ) -> Result<(), NightlyError> {
        let Some(sfn) = self.sfn else { return Ok(()) };
        if started.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<SqlValue>> = started.iter().map(|j| j.key_values.clone()).collect();
        let (rows, version) = verifier.reread(&keys).await?;
        let current: HashMap<String, &Map<String, Value>> =
            rows.iter().map(|row| (canonical_json(&key_of(rule, row)), row)).collect();
        for job in started {
            let now_wanted = current.get(&canonical_json(&job.key)).and_then(|row| wanted(rule, run, row));
            if now_wanted.is_some_and(|e| e.name == job.execution.name) {
                continue;
            }
            match sfn.stop_event(&rule.state_machine_arn, &job.execution, &version).await {
                Ok(outcome) => {
                    Counters::add(&counters.revoked);
                    tracing::info!(key = %job.key, execution = %job.execution.name, outcome = outcome.as_str(), "nightly: the row changed while it was being started; stopped");
                }
                Err(err) => {
                    Counters::add(&counters.failed);
                    tracing::error!(key = %job.key, execution = %job.execution.name, error = %err, "nightly: cannot stop the execution of a row that changed");
                }
            }
        }
        Ok(())
    }
}

/// The execution `row` asks for in this run, if any (due readable, placed to start).
pub(crate) fn wanted(rule: &ScheduleRule, run: &RunWindow, row: &Map<String, Value>) -> Option<ScheduledExecution> {
    let due = due_of_row(rule, row).ok()?;
    (run.place(due) == Placement::Start).then(|| scheduled_execution(rule, row, due).ok()).flatten()
}

/// Identity digests of the state machine's RUNNING executions (any generation).
async fn running_events(
    sfn: &StepFunctions,
    limiter: &RateLimiter,
    state_machine_arn: &str,
) -> Result<HashSet<String>, NightlyError> {
    let (names, _) = start::running_names(sfn, limiter, state_machine_arn).await?;
    Ok(names.iter().filter_map(|n| parse_name(n).map(|(digest, _)| digest.to_owned())).collect())
}

pub(crate) fn key_of(rule: &ScheduleRule, row: &Map<String, Value>) -> Value {
    Value::Object(rule.key_columns.iter().map(|k| (k.clone(), row.get(k).cloned().unwrap_or(Value::Null))).collect())
}
