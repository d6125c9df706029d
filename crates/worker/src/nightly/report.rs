//! What a run did, while it runs (progress) and after (the summary).
//!
//! Progress: on a terminal one line on stderr, redrawn a few times a second, with count, rate
//! and ETA (from a COUNT of the window's rows taken at the start; hand-rolled, one line does not
//! justify a progress-bar dependency); otherwise a structured `tracing` event every few seconds.
//! The summary is one `key=value` line per rule and one for the total, on stdout and in the log.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Redraw interval of the terminal line.
const TTY_EVERY: Duration = Duration::from_millis(250);
/// Interval between progress log events.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Live counters of one rule's run, shared by the reader and the starting tasks.
#[derive(Debug, Default)]
pub struct Counters {
    pub selected: AtomicU64,
    pub started: AtomicU64,
    pub already_existed: AtomicU64,
    /// Rows whose event a newer change had already undone (see `generations`).
    pub stale: AtomicU64,
    /// Started, then found changed by the re-read; the execution was stopped (or had been
    /// already).
    pub revoked: AtomicU64,
    pub skipped_late: AtomicU64,
    pub failed: AtomicU64,
    pub rows_read: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Rows whose outcome is known.
    fn done(&self) -> u64 {
        Self::get(&self.started)
            + Self::get(&self.already_existed)
            + Self::get(&self.stale)
            + Self::get(&self.skipped_late)
            + Self::get(&self.failed)
    }
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    pub rule: String,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub dry_run: bool,
    /// Rows due in the run (started + already existed + stale + skipped late + failed).
    pub selected: u64,
    /// In a dry run: what would be started.
    pub started: u64,
    /// Waiting already, or already fired.
    pub already_existed: u64,
    /// Not started: a newer change had undone the row's event (it came back later).
    pub stale: u64,
    /// Of `started`, rows the re-read found changed; their execution was stopped (or had
    /// been already, by the worker).
    pub revoked: u64,
    pub skipped_late: u64,
    pub failed: u64,
    /// SELECTs on the rule's table (pages, retries and the progress COUNT).
    pub mysql_queries: u64,
    /// Rows those SELECTs returned (includes the DST margin of DATETIME bounds).
    pub rows_read: u64,
    pub duration: Duration,
}

impl RuleSummary {
    pub(crate) fn from_counters(
        rule: &str,
        window: (Timestamp, Timestamp),
        dry_run: bool,
        c: &Counters,
        mysql_queries: u64,
        duration: Duration,
    ) -> Self {
        Self {
            rule: rule.to_owned(),
            window_start: window.0,
            window_end: window.1,
            dry_run,
            selected: Counters::get(&c.selected),
            started: Counters::get(&c.started),
            already_existed: Counters::get(&c.already_existed),
            stale: Counters::get(&c.stale),
            revoked: Counters::get(&c.revoked),
            skipped_late: Counters::get(&c.skipped_late),
            failed: Counters::get(&c.failed),
            mysql_queries,
            rows_read: Counters::get(&c.rows_read),
            duration,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NightlySummary {
    pub rules: Vec<RuleSummary>,
}

impl NightlySummary {
    pub fn failed(&self) -> u64 {
        self.rules.iter().map(|r| r.failed).sum()
    }

    fn total(&self, f: impl Fn(&RuleSummary) -> u64) -> u64 {
        self.rules.iter().map(f).sum()
    }

    pub fn log(&self) {
        for r in &self.rules {
            tracing::info!(
                rule = %r.rule, window_start = %r.window_start, window_end = %r.window_end, dry_run = r.dry_run,
                selected = r.selected, started = r.started, already_existed = r.already_existed,
                stale = r.stale, revoked = r.revoked, skipped_late = r.skipped_late, failed = r.failed, mysql_queries = r.mysql_queries,
                rows_read = r.rows_read, duration_ms = r.duration.as_millis() as u64,
                "nightly rule summary"
            );
        }
        tracing::info!(
            selected = self.total(|r| r.selected),
            started = self.total(|r| r.started),
            already_existed = self.total(|r| r.already_existed),
            stale = self.total(|r| r.stale),
            revoked = self.total(|r| r.revoked),
            skipped_late = self.total(|r| r.skipped_late),
            failed = self.failed(),
            mysql_queries = self.total(|r| r.mysql_queries),
            "nightly summary"
        );
    }
}

fn started_label(dry_run: bool) -> &'static str {
    if dry_run {
        "would_start"
    } else {
        "started"
    }
}

impl fmt::Display for NightlySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dry_run = self.rules.iter().any(|r| r.dry_run);
        for r in &self.rules {
            writeln!(
                f,
                "nightly rule={:?} window={}..{} selected={} {}={} already_existed={} stale={} revoked={} \
                 skipped_late={} failed={} mysql_queries={} rows_read={} duration_ms={}",
                r.rule,
                r.window_start,
                r.window_end,
                r.selected,
                started_label(r.dry_run),
                r.started,
                r.already_existed,
                r.stale,
                r.revoked,
                r.skipped_late,
                r.failed,
                r.mysql_queries,
                r.rows_read,
                r.duration.as_millis()
            )?;
        }
        write!(
            f,
            "nightly total rules={} selected={} {}={} already_existed={} stale={} revoked={} skipped_late={} \
             failed={} mysql_queries={} rows_read={} duration_ms={}",
            self.rules.len(),
            self.total(|r| r.selected),
            started_label(dry_run),
            self.total(|r| r.started),
            self.total(|r| r.already_existed),
            self.total(|r| r.stale),
            self.total(|r| r.revoked),
            self.total(|r| r.skipped_late),
            self.failed(),
            self.total(|r| r.mysql_queries),
            self.total(|r| r.rows_read),
            self.rules.iter().map(|r| r.duration).sum::<Duration>().as_millis()
        )
    }
}

/// Reports a rule's progress until `done` is cancelled.
pub(crate) async fn progress(
    rule: String,
    counters: Arc<Counters>,
    expected: Option<u64>,
    tty: bool,
    done: CancellationToken,
) {
    let began = Instant::now();
    let every = if tty { TTY_EVERY } else { LOG_EVERY };
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            biased;
            _ = done.cancelled() => break,
            _ = tick.tick() => {}
        }
        let elapsed = began.elapsed().as_secs_f64().max(0.001);
        let n = counters.done();
        let rate = n as f64 / elapsed;
        let eta = expected.filter(|&e| e > n && rate > 0.0).map(|e| Duration::from_secs_f64((e - n) as f64 / rate));
        if tty {
            let of = expected.map(|e| format!("/{e}")).unwrap_or_default();
            let eta = eta.map(|d| format!(" ETA {}s", d.as_secs())).unwrap_or_default();
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{rule}: {n}{of} rows, started {} existed {} late {} failed {}, {rate:.0}/s{eta}",
                Counters::get(&counters.started),
                Counters::get(&counters.already_existed),
                Counters::get(&counters.skipped_late),
                Counters::get(&counters.failed),
            );
            let _ = err.flush();
        } else {
            tracing::info!(
                rule = %rule, done = n, expected, started = Counters::get(&counters.started),
                already_existed = Counters::get(&counters.already_existed),
                skipped_late = Counters::get(&counters.skipped_late), failed = Counters::get(&counters.failed),
                rows_read = Counters::get(&counters.rows_read), rate_per_second = rate.round(),
                eta_seconds = eta.map(|d| d.as_secs()),
                "nightly progress"
            );
        }
    }
    if tty {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, failed: u64, dry_run: bool) -> RuleSummary {
        RuleSummary {
            rule: name.into(),
            window_start: "2026-06-10T01:30:00Z".parse().unwrap(),
            window_end: "2026-06-11T02:30:00Z".parse().unwrap(),
            dry_run,
            selected: 10,
            started: 6,
            already_existed: 2,
            stale: 0,
            revoked: 0,
            skipped_late: 1,
            failed,
            mysql_queries: 3,
            rows_read: 12,
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn summary_lines_are_key_value_per_rule_and_total() {
        let s = NightlySummary { rules: vec![rule("a", 1, false), rule("b c", 0, false)] };
        let text = s.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "nightly rule=\"a\" window=2026-06-10T01:30:00Z..2026-06-11T02:30:00Z selected=10 started=6 \
             already_existed=2 stale=0 revoked=0 skipped_late=1 failed=1 mysql_queries=3 rows_read=12 \
             duration_ms=1500"
        );
        assert!(lines[1].starts_with("nightly rule=\"b c\" "), "{}", lines[1]);
        assert_eq!(
            lines[2],
            "nightly total rules=2 selected=20 started=12 already_existed=4 stale=0 revoked=0 skipped_late=2 \
             failed=1 mysql_queries=6 rows_read=24 duration_ms=3000"
        );
        assert_eq!(s.failed(), 1);
        let dry = NightlySummary { rules: vec![rule("a", 0, true)] };
        assert!(dry.to_string().contains(" would_start=6 "), "{dry}");
    }
}
