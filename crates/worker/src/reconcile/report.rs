//! What `sameday reconcile` found and did: `key=value` lines (one per rule, examples of each
//! kind of drift, a total), the same as one JSON document (`--json`), and CloudWatch
//! embedded-metric-format lines (`--cloudwatch-metrics`) from which the CloudFormation alarms
//! read `sameday/ReconcileDrift` without any PutMetricData call.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

/// Examples printed per kind of drift and rule.
pub(crate) const EXAMPLES: usize = 5;

/// One rule's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReport {
    pub rule: String,
    pub window_start: Option<Timestamp>,
    pub window_end: Option<Timestamp>,
    /// Rows due after now in the window and selected by the predicate.
    pub rows_due: u64,
    /// RUNNING executions of the rule's state machine (any rule's, all generations).
    pub running: u64,
    pub in_sync: u64,
    pub missing: u64,
    pub extra: u64,
    pub stale: u64,
    /// `(kind, description)`, at most [`EXAMPLES`] per kind.
    pub examples: Vec<(&'static str, String)>,
    /// ListExecutions calls made (1,000 executions each).
    pub list_calls: u64,
    /// With `--fix`: executions started and stopped, and fixes that failed.
    pub started: u64,
    pub stopped: u64,
    pub fix_failed: u64,
    pub duration: Duration,
}

impl RuleReport {
    /// Drift found (before any fix).
    pub fn drift(&self) -> u64 {
        self.missing + self.extra + self.stale
    }
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub rules: Vec<RuleReport>,
    pub fixed: bool,
}

impl ReconcileSummary {
    /// Drift found, summed over the rules.
    pub fn drift(&self) -> u64 {
        self.rules.iter().map(RuleReport::drift).sum()
    }

    /// Drift left after this run: all of it without `--fix`, what could not be fixed with it.
    pub fn unresolved(&self) -> u64 {
        if self.fixed {
            self.rules.iter().map(|r| r.drift().saturating_sub(r.started + r.stopped)).sum()
        } else {
            self.drift()
        }
    }

    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                json!({
                    "rule": r.rule,
                    "window": {"start": r.window_start.map(|t| t.to_string()), "end": r.window_end.map(|t| t.to_string())},
                    "rows_due": r.rows_due, "running": r.running, "in_sync": r.in_sync,
                    "missing": r.missing, "extra": r.extra, "stale": r.stale,
                    "examples": r.examples.iter().map(|(k, d)| json!({"kind": k, "what": d})).collect::<Vec<_>>(),
                    "started": r.started, "stopped": r.stopped, "fix_failed": r.fix_failed, "list_calls": r.list_calls,
                    "duration_ms": r.duration.as_millis() as u64,
                })
            })
            .collect();
        json!({"in_sync": self.drift() == 0, "drift": self.drift(), "unresolved": self.unresolved(), "fixed": self.fixed, "rules": rules})
    }

    /// One CloudWatch embedded-metric-format line per rule (namespace `sameday`, dimension
    /// `Rule`): `ReconcileDrift`, `ReconcileMissing`, `ReconcileExtra`, `ReconcileStale`.
    pub fn emf_lines(&self, now: Timestamp) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                let metric = |name: &str| json!({"Name": name, "Unit": "Count"});
                json!({
                    "_aws": {
                        "Timestamp": now.as_millisecond(),
                        "CloudWatchMetrics": [{
                            "Namespace": "sameday",
                            "Dimensions": [["Rule"]],
                            "Metrics": [metric("ReconcileDrift"), metric("ReconcileMissing"), metric("ReconcileExtra"), metric("ReconcileStale")],
                        }],
                    },
                    "Rule": r.rule,
                    "ReconcileDrift": r.drift(),
                    "ReconcileMissing": r.missing,
                    "ReconcileExtra": r.extra,
                    "ReconcileStale": r.stale,
                })
                .to_string()
            })
            .collect()
    }
}

impl fmt::Display for ReconcileSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            let window = match (r.window_start, r.window_end) {
                (Some(a), Some(b)) => format!("{a}..{b}"),
                _ => "-".into(),
            };
            writeln!(
                f,
                "reconcile rule={:?} window={window} rows_due={} running={} in_sync={} missing={} extra={} stale={} \
                 started={} stopped={} fix_failed={} duration_ms={}",
                r.rule,
                r.rows_due,
                r.running,
                r.in_sync,
                r.missing,
                r.extra,
                r.stale,
                r.started,
                r.stopped,
                r.fix_failed,
                r.duration.as_millis()
            )?;
            for (kind, what) in &r.examples {
                writeln!(f, "reconcile rule={:?} {kind} {what}", r.rule)?;
            }
        }
        let verdict = if self.drift() == 0 { "in_sync" } else { "drift" };
        write!(
            f,
            "reconcile total rules={} {verdict} missing={} extra={} stale={} unresolved={}",
            self.rules.len(),
            self.rules.iter().map(|r| r.missing).sum::<u64>(),
            self.rules.iter().map(|r| r.extra).sum::<u64>(),
            self.rules.iter().map(|r| r.stale).sum::<u64>(),
            self.unresolved()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ReconcileSummary {
        ReconcileSummary {
            rules: vec![RuleReport {
                rule: "reminders".into(),
                rows_due: 10,
                running: 10,
                in_sync: 8,
                missing: 2,
                extra: 1,
                examples: vec![("missing", "key={\"id\":3} due=2026-06-10T08:10:00Z name=r-3-x".into())],
                ..RuleReport::default()
            }],
            fixed: false,
        }
    }

    #[test]
    fn lines_json_and_metrics_say_the_same() {
        let r = report();
        let text = r.to_string();
        assert!(
            text.contains(
                "reconcile rule=\"reminders\" window=- rows_due=10 running=10 in_sync=8 missing=2 extra=1 stale=0 "
            ),
            "{text}"
        );
        assert!(text.contains("reconcile rule=\"reminders\" missing key={\"id\":3}"), "{text}");
        assert!(text.ends_with("reconcile total rules=1 drift missing=2 extra=1 stale=0 unresolved=3"), "{text}");
        let json = r.to_json();
        assert_eq!((json["in_sync"].as_bool(), json["drift"].as_u64()), (Some(false), Some(3)));
        let emf: Value = serde_json::from_str(&r.emf_lines(Timestamp::UNIX_EPOCH)[0]).unwrap();
        assert_eq!(emf["ReconcileDrift"], 3);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "sameday");
        let mut fixed = r.clone();
        fixed.fixed = true;
        fixed.rules[0].started = 2;
        fixed.rules[0].stopped = 1;
        assert_eq!(fixed.unresolved(), 0);
    }
}
