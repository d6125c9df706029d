//! The comparison at the heart of `sameday reconcile`, without I/O: the events the table asks
//! for against the names of the state machine's RUNNING executions.
//!
//! - Only the future is compared: an execution whose due time (read from its name) has passed
//!   is performing its action and is left alone, and a row due now or earlier may have fired.
//! - Names are matched by their identity digest ([`parse_name`]), so any generation counts; two
//!   RUNNING generations of one event are one too many (`extra`).
//! - A waiting execution no due row asks for is `stale` when a due row has the same rule and
//!   key (its due time or input is old), `extra` otherwise (the row is gone, moved out of the
//!   window, not selected any more, or the execution was never sameday's).

use std::collections::{HashMap, HashSet};

use jiff::civil::DateTime;
use jiff::Timestamp;
use sameday_core::execution::{parse_name, ScheduledExecution};
use serde_json::Value;

/// Characters of the due part of a name (`yyyymmddThhmmssZ`).
const DUE_CHARS: usize = 16;

/// A row due in the window, as the table says.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub(crate) execution: ScheduledExecution,
    /// The row's key object, for reports.
    pub(crate) key: Value,
}

/// What differs; every list is of future events only.
#[derive(Debug, Default)]
pub(crate) struct Drift {
    pub(crate) in_sync: u64,
    /// Due rows without a waiting execution.
    pub(crate) missing: Vec<Wanted>,
    /// Waiting executions no row asks for (or a second generation of one event).
    pub(crate) extra: Vec<String>,
    /// Waiting executions of a due row's key with an old due time or input.
    pub(crate) stale: Vec<String>,
}

impl Drift {
    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty()
    }

    /// Keeps only the drift also present in `later` (drift seen twice is not a change in flight).
    pub(crate) fn confirmed_by(self, later: &Drift) -> Drift {
        let missing: HashSet<&str> = later.missing.iter().map(|w| w.execution.name.as_str()).collect();
        let extra: HashSet<&str> = later.extra.iter().map(String::as_str).collect();
        let stale: HashSet<&str> = later.stale.iter().map(String::as_str).collect();
        Drift {
            in_sync: later.in_sync,
            missing: self.missing.into_iter().filter(|w| missing.contains(w.execution.name.as_str())).collect(),
            extra: self.extra.into_iter().filter(|n| extra.contains(n.as_str())).collect(),
            stale: self.stale.into_iter().filter(|n| stale.contains(n.as_str())).collect(),
        }
    }
}

/// One RUNNING name, taken apart.
struct Running<'a> {
    name: &'a str,
    /// Everything before the due part: `<rule>-<key>-`.
    prefix: &'a str,
    digest: &'a str,
    generation: u32,
    due: Option<Timestamp>,
}

fn split(name: &str) -> Option<Running<'_>> {
    let (digest, generation) = parse_name(name)?;
    let digest_at = name.rfind(digest)?;
    let before_digest = name[..digest_at].strip_suffix('-')?;
    let due_at = before_digest.len().checked_sub(DUE_CHARS)?;
    let due_text = before_digest.get(due_at..)?;
    let prefix = before_digest.get(..due_at)?;
    let due = DateTime::strptime("%Y%m%dT%H%M%SZ", due_text)
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp());
    Some(Running { name, prefix, digest, generation, due })
}

/// Compares the rows due after `now` with the RUNNING executions' names.
pub(crate) fn compare(wanted: Vec<Wanted>, running: &[String], now: Timestamp) -> Drift {
    let wanted: Vec<Wanted> = wanted.into_iter().filter(|w| w.execution.due > now).collect();
    let by_digest: HashMap<&str, usize> =
        wanted.iter().enumerate().filter_map(|(i, w)| parse_name(&w.execution.name).map(|(d, _)| (d, i))).collect();
    let prefixes: HashSet<&str> = wanted.iter().filter_map(|w| split(&w.execution.name).map(|r| r.prefix)).collect();
    // Generations' names may show the key as a digest where generation 0 shows it as is.
    let long_prefixes: HashSet<String> =
        wanted.iter().filter_map(|w| split(&w.execution.name_at(1)).map(|r| r.prefix.to_owned())).collect();

    let mut drift = Drift::default();
    let mut found: HashMap<usize, (u32, &str)> = HashMap::new();
    // Names that are not sameday's are never touched.
    for r in running.iter().filter_map(|n| split(n)) {
        if r.due.is_none_or(|due| due <= now) {
            continue; // the Wait is over: it is performing its action
        }
        match by_digest.get(r.digest) {
            Some(&i) => match found.get(&i).copied() {
                None => {
                    found.insert(i, (r.generation, r.name));
                }
                Some((generation, name)) => {
                    // Two generations wait: keep the newest, the other one is extra.
                    if r.generation > generation {
                        drift.extra.push(name.to_owned());
                        found.insert(i, (r.generation, r.name));
                    } else {
                        drift.extra.push(r.name.to_owned());
                    }
                }
            },
            None if prefixes.contains(r.prefix) || long_prefixes.contains(r.prefix) => {
                drift.stale.push(r.name.to_owned())
            }
            None => drift.extra.push(r.name.to_owned()),
        }
    }
    drift.in_sync = found.len() as u64;
    drift.missing = wanted.into_iter().enumerate().filter(|(i, _)| !found.contains_key(i)).map(|(_, w)| w).collect();
    drift.extra.sort();
    drift.stale.sort();
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generations::tests::rule;
    use jiff::SignedDuration;
    use sameday_core::execution::scheduled_execution;
    use serde_json::json;

    fn wanted(id: i64, due: Timestamp, template: &str) -> Wanted {
        let row = json!({"id": id, "due": due.to_string(), "template": template});
        let execution = scheduled_execution(&rule(), row.as_object().unwrap(), due).unwrap();
        Wanted { execution, key: json!({"id": id}) }
    }

    fn now() -> Timestamp {
        "2026-06-10T08:00:00Z".parse().unwrap()
    }

    fn at(mins: i64) -> Timestamp {
        now() + SignedDuration::from_mins(mins)
    }

    #[test]
    fn every_kind_of_drift_is_told_apart() {
        let in_sync = wanted(1, at(10), "a");
        let reused = wanted(2, at(10), "a");
        let missing = wanted(3, at(10), "a");
        let moved = wanted(4, at(20), "a");
        let old_time = wanted(4, at(10), "a");
        let edited = wanted(5, at(10), "b");
        let old_input = wanted(5, at(10), "a");
        let deleted = wanted(6, at(10), "a");
        let doubled = wanted(7, at(10), "a");
        let fired = wanted(8, at(-1), "a");
        let running = vec![
            in_sync.execution.name.clone(),
            reused.execution.name_at(3),
            old_time.execution.name.clone(),
            old_input.execution.name_at(1),
            deleted.execution.name.clone(),
            doubled.execution.name_at(1),
            doubled.execution.name_at(2),
            fired.execution.name.clone(),
            "not-ours".to_owned(),
        ];
        let table = vec![in_sync, reused, missing.clone(), moved, edited, doubled.clone(), fired];
        let drift = compare(table, &running, now());
        assert_eq!(drift.in_sync, 3, "1, 2 (generation 3) and 7 (its newest generation)");
        let missing_names: Vec<&str> = drift.missing.iter().map(|w| w.execution.name.as_str()).collect();
        let mut expected_missing = vec![missing.execution.name.clone(), wanted(4, at(20), "a").execution.name];
        expected_missing.push(wanted(5, at(10), "b").execution.name);
        expected_missing.sort();
        let mut got = missing_names.clone();
        got.sort();
        assert_eq!(got, expected_missing);
        let mut stale = vec![old_time.execution.name.clone(), old_input.execution.name_at(1)];
        stale.sort();
        assert_eq!(drift.stale, stale);
        let mut extra = vec![deleted.execution.name.clone(), doubled.execution.name_at(1)];
        extra.sort();
        assert_eq!(drift.extra, extra, "the deleted row's and the older of two generations; never foreign names");
    }

    #[test]
    fn past_due_executions_and_rows_are_left_alone() {
        let past = wanted(1, at(-5), "a");
        let drift = compare(vec![past.clone()], &[], now());
        assert!(drift.is_empty(), "a row due in the past may have fired: {drift:?}");
        let gone = wanted(2, at(-5), "a");
        let drift = compare(vec![], std::slice::from_ref(&gone.execution.name), now());
        assert!(drift.is_empty(), "an execution past its due time is running its action: {drift:?}");
    }

    #[test]
    fn drift_seen_once_is_not_confirmed() {
        let a = wanted(1, at(10), "a");
        let b = wanted(2, at(10), "a");
        let first = compare(vec![a.clone(), b.clone()], &[], now());
        let second = compare(vec![a.clone(), b.clone()], std::slice::from_ref(&a.execution.name), now());
        let confirmed = first.confirmed_by(&second);
        assert_eq!(confirmed.missing.len(), 1);
        assert_eq!(confirmed.missing[0].execution.name, b.execution.name);
        assert_eq!(confirmed.in_sync, 1);
    }
}
