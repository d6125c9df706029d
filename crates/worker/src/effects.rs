//! What one row change means for Step Functions, decided without I/O and with an injected
//! clock, so every window edge is testable.
//!
//! An image (before or after) is *live* when its due time is in the current window
//! ([`Due::InWindow`]); an after image is also *startable* when its due time passed at most
//! `grace_seconds` ago. Then:
//! - insert: Start(after) when startable.
//! - update: when both images give the same execution name, nothing. Otherwise Stop(before)
//!   when live, then Start(after) when startable. A past-due after image is started only when
//!   the due time itself changed (a reschedule into the grace period): editing a payload
//!   after its due time must not fire the action a second time (the action may well be what
//!   updated the row).
//! - delete: Stop(before) when live.
//!
//! An execution whose due time already passed is not stopped: its Wait is over and it is
//! performing (or has performed) the action.
//!
//! An image the rule's `predicate` does not select schedules nothing, like a NULL due time:
//! `UPDATE ... SET status = 'cancelled'` stops, setting it back starts (past-due images only
//! when the due time changed, as above). String comparisons follow the columns' collations
//! (`ScheduleRule::collations`, read at start; by default MySQL's case-insensitive ones), so
//! the worker and the batch's SQL agree.
//! A NULL or zero due time means "not scheduled"; a missing due column, an unreadable due
//! value or a missing key, input or predicate column is a [`PlanError`]: the message is poison.

use jiff::Timestamp;
use sameday_core::envelope::{ChangeEnvelope, Op};
use sameday_core::execution::{scheduled_execution, ExecutionError, ScheduledExecution};
use sameday_core::rule::ScheduleRule;
use sameday_core::window::{classify, due_of_row, Due, DueError};
use serde_json::{Map, Value};

/// One event to make wait or not, in order; [`crate::generations`] turns it into calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Stop the waiting execution of the event the old row image scheduled.
    Stop(ScheduledExecution),
    /// Make the event the new row image schedules wait.
    Start(ScheduledExecution),
}

impl Effect {
    pub(crate) fn execution(&self) -> &ScheduledExecution {
        match self {
            Effect::Stop(e) | Effect::Start(e) => e,
        }
    }
}

/// Why a change produced no effect; the caller counts these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// The due time is NULL or a zero date.
    NotScheduled,
    /// Due at or after the end of the current window: a later nightly run picks it up.
    OutsideWindow,
    /// Due more than `grace_seconds` ago.
    PastGrace,
    /// Due time already passed and not changed by this update (or a delete of a row whose
    /// execution already fired): the event has had its execution.
    AlreadyDue,
    /// An update that leaves the execution name as it was (no due, key or input change).
    Unchanged,
    /// The rule's predicate does not select the row (e.g. `status` is not 'pending').
    NotSelected,
}

impl SkipReason {
    /// Label for metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotScheduled => "not_scheduled",
            SkipReason::OutsideWindow => "outside_window",
            SkipReason::PastGrace => "past_grace",
            SkipReason::AlreadyDue => "already_due",
            SkipReason::Unchanged => "unchanged",
            SkipReason::NotSelected => "not_selected",
        }
    }
}

/// The plan for one change: `skipped` is set exactly when `effects` is empty.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) effects: Vec<Effect>,
    pub(crate) skipped: Option<SkipReason>,
}

/// A change that cannot be planned; the message is dead-lettered with this text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    #[error("schedule rule {rule:?} is for {expected}, the change is for {actual}")]
    WrongTable { rule: String, expected: String, actual: String },
    #[error("{op} change of {table} has no {image} image")]
    MissingImage { op: &'static str, table: String, image: &'static str },
    #[error(transparent)]
    Due(#[from] DueError),
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    #[error(
        "schedule rule {rule:?}: the row image has no column {column:?}, which the predicate reads; fix the predicate"
    )]
    PredicateColumn { rule: String, column: String },
}

/// Where one row image stands.
enum Image {
    /// The image schedules an event; `class` is where its due time stands at `now`.
    Scheduled {
        exec: ScheduledExecution,
        class: Due,
    },
    NotScheduled,
    /// The predicate does not select the row; `due` is its due time, when readable.
    NotSelected {
        due: Option<Timestamp>,
    },
}

impl Image {
    fn read(rule: &ScheduleRule, row: &Map<String, Value>, now: Timestamp) -> Result<Image, PlanError> {
        if let Some(predicate) = rule.predicate() {
            if let Some(column) = predicate.missing_columns(row).first() {
                return Err(PlanError::PredicateColumn { rule: rule.name.clone(), column: (*column).to_owned() });
            }
            if !rule.selects(row) {
                return Ok(Image::NotSelected { due: due_of_row(rule, row).ok() });
            }
        }
        let due = match due_of_row(rule, row) {
            Ok(due) => due,
            Err(e) if e.is_unset() => return Ok(Image::NotScheduled),
            Err(e) => return Err(e.into()),
        };
        let exec = scheduled_execution(rule, row, due)?;
        Ok(Image::Scheduled { exec, class: classify(rule, due, now) })
    }

    fn due(&self) -> Option<Timestamp> {
        match self {
            Image::Scheduled { exec, .. } => Some(exec.due),
            Image::NotSelected { due } => *due,
            Image::NotScheduled => None,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Image::Scheduled { exec, .. } => Some(&exec.name),
            Image::NotScheduled | Image::NotSelected { .. } => None,
        }
    }

    /// The execution to stop: only one still waiting for its due time.
    fn live(&self) -> Option<&ScheduledExecution> {
        match self {
            Image::Scheduled { exec, class: Due::InWindow } => Some(exec),
            _ => None,
        }
    }

    /// The execution to start, or why not. `due_changed` is false for an update that kept
    /// the due time, which makes a past-due image one whose event already fired.
    fn startable(&self, due_changed: bool) -> Result<&ScheduledExecution, SkipReason> {
        match self {
            Image::NotScheduled => Err(SkipReason::NotScheduled),
            Image::NotSelected { .. } => Err(SkipReason::NotSelected),
            Image::Scheduled { exec, class } => match class {
                Due::InWindow => Ok(exec),
                Due::Later => Err(SkipReason::OutsideWindow),
                Due::PastDue { within_grace: false } => Err(SkipReason::PastGrace),
                Due::PastDue { within_grace: true } if due_changed => Ok(exec),
                Due::PastDue { within_grace: true } => Err(SkipReason::AlreadyDue),
            },
        }
    }

    /// Why the before image of a delete needs no stop.
    fn not_live_reason(&self) -> SkipReason {
        match self {
            Image::NotScheduled => SkipReason::NotScheduled,
            Image::NotSelected { .. } => SkipReason::NotSelected,
            Image::Scheduled { class: Due::Later, .. } => SkipReason::OutsideWindow,
            Image::Scheduled { .. } => SkipReason::AlreadyDue,
        }
    }
}

/// Plans the Step Functions calls for `change` under `rule` at `now`.
pub(crate) fn plan(rule: &ScheduleRule, change: &ChangeEnvelope, now: Timestamp) -> Result<Outcome, PlanError> {
    if change.db != rule.db || change.table != rule.table {
        return Err(PlanError::WrongTable {
            rule: rule.name.clone(),
            expected: format!("{}.{}", rule.db, rule.table),
            actual: format!("{}.{}", change.db, change.table),
        });
    }
    let image = |row: &Option<Map<String, Value>>, which: &'static str| match row {
        Some(row) => Image::read(rule, row, now),
        None => Err(PlanError::MissingImage {
            op: change.op.as_str(),
            table: format!("{}.{}", change.db, change.table),
            image: which,
        }),
    };

    let mut effects = Vec::new();
    let skipped = match change.op {
        Op::Insert => match image(&change.after, "after")?.startable(true) {
            Ok(exec) => {
                effects.push(Effect::Start(exec.clone()));
                None
            }
            Err(reason) => Some(reason),
        },
        Op::Delete => {
            let old = image(&change.before, "before")?;
            match old.live() {
                Some(exec) => {
                    effects.push(Effect::Stop(exec.clone()));
                    None
                }
                None => Some(old.not_live_reason()),
            }
        }
        Op::Update => {
            let old = image(&change.before, "before")?;
            let new = image(&change.after, "after")?;
            if old.name().is_some() && old.name() == new.name() {
                Some(SkipReason::Unchanged)
            } else {
                if let Some(exec) = old.live() {
                    effects.push(Effect::Stop(exec.clone()));
                }
                match new.startable(old.due() != new.due()) {
                    Ok(exec) => {
                        effects.push(Effect::Start(exec.clone()));
                        None
                    }
                    Err(reason) if effects.is_empty() => Some(reason),
                    Err(_) => None,
                }
            }
        }
    };
    // A folded change: the row passed through these images too; none of their executions may
    // stay, except the one the change starts.
    let mut skipped = skipped;
    for row in &change.superseded {
        let Ok(passed) = Image::read(rule, row, now) else { continue };
        if let Some(exec) = passed.live() {
            if !effects.iter().any(|e| e.execution().name == exec.name) {
                effects.insert(0, Effect::Stop(exec.clone()));
                skipped = None;
            }
        }
    }
    Ok(Outcome { effects, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use serde_json::json;

    const ARN: &str = "arn:aws:states:eu-central-1:123456789012:stateMachine:send";

    fn rule() -> ScheduleRule {
        let rule: ScheduleRule = serde_json::from_value(json!({
            "name": "reminders", "db": "crm", "table": "scheduled_actions", "key_columns": ["id"],
            "due_column": "send_at", "due_type": "datetime", "time_zone": "Europe/Berlin",
            "batch_time": "03:30", "overlap_minutes": 60, "grace_seconds": 300,
            "input_columns": ["template"], "predicate": "status = 'pending'", "state_machine_arn": ARN,
        }))
        .unwrap();
        rule.validate().unwrap();
        rule
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A row image due at the Berlin wall-clock time `due` (or NULL).
    fn row(id: i64, due: Option<&str>, template: &str) -> Map<String, Value> {
        json!({"id": id, "send_at": due, "template": template, "status": "pending"}).as_object().unwrap().clone()
    }

    fn change(op: Op, before: Option<Map<String, Value>>, after: Option<Map<String, Value>>) -> ChangeEnvelope {
        let key = before.as_ref().or(after.as_ref()).map(|r| json!({"id": r.get("id")})).unwrap();
        serde_json::from_value(json!({
            "v": 1, "id": "0-1-7:1:0", "op": op.as_str(), "db": "crm", "table": "scheduled_actions",
            "key": key, "before": before, "after": after,
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "ts_ms": 0},
            "txn": {"id": "0-1-7", "index": 0},
        }))
        .unwrap()
    }

    fn insert(row: Map<String, Value>) -> ChangeEnvelope {
        change(Op::Insert, None, Some(row))
    }

    fn update(before: Map<String, Value>, after: Map<String, Value>) -> ChangeEnvelope {
        change(Op::Update, Some(before), Some(after))
    }

    fn delete(row: Map<String, Value>) -> ChangeEnvelope {
        change(Op::Delete, Some(row), None)
    }

    fn name_of(r: &ScheduleRule, row: &Map<String, Value>) -> String {
        scheduled_execution(r, row, due_of_row(r, row).unwrap()).unwrap().name
    }

    fn started(outcome: &Outcome) -> Vec<&str> {
        outcome
            .effects
            .iter()
            .filter_map(|e| if let Effect::Start(e) = e { Some(e.name.as_str()) } else { None })
            .collect()
    }

    fn stopped(outcome: &Outcome) -> Vec<&str> {
        outcome
            .effects
            .iter()
            .filter_map(|e| if let Effect::Stop(e) = e { Some(e.name.as_str()) } else { None })
            .collect()
    }

    fn skipped(reason: SkipReason) -> Outcome {
        Outcome { effects: vec![], skipped: Some(reason) }
    }

    // 2026-06-10 10:00 CEST: today's window is [06-10 03:30, 06-11 04:30) local.
    const NOON_ISH: &str = "2026-06-10T08:00:00Z";

    /// A folded change stops the executions of the images it passed through, even when its
    /// first change (here the insert) had been applied already, and never the one it starts.
    #[test]
    fn a_folded_change_stops_the_images_it_passed_through() {
        let r = rule();
        let (a, b, c) = (
            row(1, Some("2026-06-10T18:00:00"), "welcome"),
            row(1, Some("2026-06-10T19:00:00"), "welcome"),
            row(1, Some("2026-06-10T20:00:00"), "welcome"),
        );
        let mut folded = insert(c.clone());
        folded.superseded = vec![a.clone(), b.clone(), c.clone()];
        let out = plan(&r, &folded, ts(NOON_ISH)).unwrap();
        let names: Vec<(bool, String)> =
            out.effects.iter().map(|e| (matches!(e, Effect::Start(_)), e.execution().name.clone())).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&(false, name_of(&r, &a))) && names.contains(&(false, name_of(&r, &b))));
        assert_eq!(names.last(), Some(&(true, name_of(&r, &c))), "stops first, then the start");
        // Back where it started: nothing to start anew, but the image in between is stopped.
        let mut back = update(a.clone(), a.clone());
        back.superseded = vec![b.clone()];
        let out = plan(&r, &back, ts(NOON_ISH)).unwrap();
        assert_eq!(out.skipped, None);
        assert!(matches!(out.effects.as_slice(), [Effect::Stop(e)] if e.name == name_of(&r, &b)), "{out:?}");
    }

    #[test]
    fn insert_due_today_starts_with_due_in_input() {
        let r = rule();
        let row = row(1, Some("2026-06-10T18:00:00"), "welcome");
        let out = plan(&r, &insert(row.clone()), ts(NOON_ISH)).unwrap();
        let [Effect::Start(ScheduledExecution { name, input, input_hash, due, .. })] = out.effects.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(name, &name_of(&r, &row));
        assert!(name.starts_with("reminders-1-20260610T160000Z-"), "{name}");
        assert_eq!(*due, ts("2026-06-10T16:00:00Z"));
        let doc: Value = serde_json::from_str(input).unwrap();
        assert_eq!(doc["due"], "2026-06-10T16:00:00Z");
        assert_eq!(doc["columns"], json!({"template": "welcome"}));
        assert_eq!(input_hash, &sameday_core::execution::input_hash_of(&doc));
        assert_eq!(out.skipped, None);
    }

    #[test]
    fn insert_outside_window_or_unscheduled_is_skipped() {
        let r = rule();
        let now = ts(NOON_ISH);
        for (due, reason) in [
            (Some("2026-06-11T05:00:00"), SkipReason::OutsideWindow),
            (Some("2026-07-10T18:00:00"), SkipReason::OutsideWindow),
            (None, SkipReason::NotScheduled),
            (Some("0000-00-00T00:00:00"), SkipReason::NotScheduled),
        ] {
            assert_eq!(plan(&r, &insert(row(1, due, "t")), now).unwrap(), skipped(reason), "{due:?}");
        }
        // Within the overlap: the next run's batch time plus one hour still belongs to today.
        let out = plan(&r, &insert(row(1, Some("2026-06-11T04:29:59"), "t")), now).unwrap();
        assert_eq!(started(&out).len(), 1);
    }

    #[test]
    fn past_due_within_grace_starts_beyond_grace_is_skipped() {
        let r = rule();
        let now = ts(NOON_ISH); // 10:00:00 local
        let out = plan(&r, &insert(row(1, Some("2026-06-10T09:55:00"), "t")), now).unwrap();
        assert_eq!(started(&out).len(), 1, "exactly 300 s late is within grace");
        let out = plan(&r, &insert(row(1, Some("2026-06-10T09:54:59"), "t")), now).unwrap();
        assert_eq!(out, skipped(SkipReason::PastGrace));
        // A reschedule into the grace period starts; the old execution (also past) is not stopped.
        let before = row(1, Some("2026-06-10T09:58:00"), "t");
        let after = row(1, Some("2026-06-10T09:59:00"), "t");
        let out = plan(&r, &update(before, after.clone()), now).unwrap();
        assert_eq!((started(&out), stopped(&out)), (vec![name_of(&r, &after).as_str()], vec![]));
    }

    #[test]
    fn batch_time_edges_decide_which_window_a_row_belongs_to() {
        let r = rule();
        // Due 04:00 local on 06-11: inside today's window (ends 04:30 on 06-11) ...
        let row_0400 = row(1, Some("2026-06-11T04:00:00"), "t");
        assert_eq!(started(&plan(&r, &insert(row_0400.clone()), ts(NOON_ISH)).unwrap()).len(), 1);
        // ... and a row due 06-12 04:00 local is not, until 06-11's run at 03:30 local.
        let row_next = row(2, Some("2026-06-12T04:00:00"), "t");
        let just_before = ts("2026-06-11T01:29:59Z"); // 03:29:59 CEST
        let just_after = ts("2026-06-11T01:30:00Z"); // 03:30:00 CEST
        assert_eq!(plan(&r, &insert(row_next.clone()), just_before).unwrap(), skipped(SkipReason::OutsideWindow));
        assert_eq!(started(&plan(&r, &insert(row_next), just_after).unwrap()).len(), 1);
    }

    #[test]
    fn midnight_still_belongs_to_the_previous_run() {
        let r = rule();
        let after_midnight = ts("2026-06-10T22:05:00Z"); // 00:05 CEST on 06-11
                                                         // Due 02:00 local the same night: the 06-10 window covers it, the 06-11 run has not run.
        let out = plan(&r, &insert(row(1, Some("2026-06-11T02:00:00"), "t")), after_midnight).unwrap();
        assert_eq!(started(&out).len(), 1);
        let out = plan(&r, &insert(row(1, Some("2026-06-11T18:00:00"), "t")), after_midnight).unwrap();
        assert_eq!(out, skipped(SkipReason::OutsideWindow));
    }

    #[test]
    fn dst_window_edges_in_berlin() {
        let r = rule();
        // Spring forward, Sunday 2026-03-29: 02:00 CET -> 03:00 CEST. The Saturday run's window
        // ends at Sunday 03:30 CEST + 1 h = 02:30 UTC (not 03:30 UTC as in winter).
        let saturday = ts("2026-03-28T12:00:00Z");
        let due_0420 = row(1, Some("2026-03-29T04:20:00"), "t"); // 02:20 UTC
        let due_0440 = row(2, Some("2026-03-29T04:40:00"), "t"); // 02:40 UTC
        assert_eq!(started(&plan(&r, &insert(due_0420), saturday).unwrap()).len(), 1);
        assert_eq!(plan(&r, &insert(due_0440.clone()), saturday).unwrap(), skipped(SkipReason::OutsideWindow));
        // Sunday's run starts at 03:30 CEST = 01:30 UTC; a minute later the row is in window.
        assert_eq!(plan(&r, &insert(due_0440.clone()), ts("2026-03-29T01:29:00Z")).unwrap().effects.len(), 0);
        assert_eq!(started(&plan(&r, &insert(due_0440), ts("2026-03-29T01:31:00Z")).unwrap()).len(), 1);
        // A due time inside the gap (02:30 local does not exist) reads as 03:30 CEST.
        let gap = row(3, Some("2026-03-29T02:30:00"), "t");
        let out = plan(&r, &insert(gap), saturday).unwrap();
        let [Effect::Start(ScheduledExecution { due, .. })] = out.effects.as_slice() else { panic!("{out:?}") };
        assert_eq!(*due, ts("2026-03-29T01:30:00Z"));

        // Fall back, Sunday 2026-10-25: 03:00 CEST -> 02:00 CET. The Saturday run's window ends
        // at Sunday 03:30 CET + 1 h = 03:30 UTC: a 25-hour day.
        let saturday = ts("2026-10-24T12:00:00Z");
        let due_0420 = row(4, Some("2026-10-25T04:20:00"), "t"); // 03:20 UTC
        let due_0440 = row(5, Some("2026-10-25T04:40:00"), "t"); // 03:40 UTC
        assert_eq!(started(&plan(&r, &insert(due_0420), saturday).unwrap()).len(), 1);
        assert_eq!(plan(&r, &insert(due_0440), saturday).unwrap(), skipped(SkipReason::OutsideWindow));
        // In the fold, 02:30 local happens twice; it is read as the first (CEST) one.
        let fold = row(6, Some("2026-10-25T02:30:00"), "t");
        let out = plan(&r, &insert(fold), saturday).unwrap();
        let [Effect::Start(ScheduledExecution { due, .. })] = out.effects.as_slice() else { panic!("{out:?}") };
        assert_eq!(*due, ts("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn reschedule_within_today_stops_old_then_starts_new() {
        let r = rule();
        let before = row(1, Some("2026-06-10T18:00:00"), "t");
        let after = row(1, Some("2026-06-10T19:00:00"), "t");
        let out = plan(&r, &update(before.clone(), after.clone()), ts(NOON_ISH)).unwrap();
        let old = name_of(&r, &before);
        assert!(matches!(&out.effects[0], Effect::Stop(e) if e.name == old), "{out:?}");
        assert_eq!(started(&out), vec![name_of(&r, &after).as_str()]);
        assert_eq!((out.effects.len(), out.skipped), (2, None));
    }

    #[test]
    fn reschedule_to_next_week_or_cancel_only_stops() {
        let r = rule();
        let before = row(1, Some("2026-06-10T18:00:00"), "t");
        for after in [row(1, Some("2026-06-17T18:00:00"), "t"), row(1, None, "t")] {
            let out = plan(&r, &update(before.clone(), after), ts(NOON_ISH)).unwrap();
            assert_eq!((stopped(&out), started(&out)), (vec![name_of(&r, &before).as_str()], vec![]));
            assert_eq!(out.skipped, None);
        }
    }

    #[test]
    fn reschedule_from_next_week_into_today_only_starts() {
        let r = rule();
        let after = row(1, Some("2026-06-10T18:00:00"), "t");
        let out = plan(&r, &update(row(1, Some("2026-06-17T18:00:00"), "t"), after.clone()), ts(NOON_ISH)).unwrap();
        assert_eq!((stopped(&out), started(&out)), (vec![], vec![name_of(&r, &after).as_str()]));
        let out = plan(&r, &update(row(1, None, "t"), after.clone()), ts(NOON_ISH)).unwrap();
        assert_eq!(started(&out), vec![name_of(&r, &after).as_str()]);
    }

    #[test]
    fn reschedule_between_later_days_does_nothing() {
        let r = rule();
        let out = plan(
            &r,
            &update(row(1, Some("2026-06-17T18:00:00"), "t"), row(1, Some("2026-06-24T18:00:00"), "t")),
            ts(NOON_ISH),
        )
        .unwrap();
        assert_eq!(out, skipped(SkipReason::OutsideWindow));
        let out = plan(&r, &update(row(1, None, "t"), row(1, None, "u")), ts(NOON_ISH)).unwrap();
        assert_eq!(out, skipped(SkipReason::NotScheduled));
    }

    #[test]
    fn payload_change_supersedes_other_columns_do_not() {
        let r = rule();
        let before = row(1, Some("2026-06-10T18:00:00"), "welcome");
        let after = row(1, Some("2026-06-10T18:00:00"), "reminder");
        let out = plan(&r, &update(before.clone(), after.clone()), ts(NOON_ISH)).unwrap();
        assert_eq!(stopped(&out), vec![name_of(&r, &before).as_str()]);
        assert_eq!(started(&out), vec![name_of(&r, &after).as_str()]);
        // `note` is neither an input nor a predicate column: same name, nothing to do.
        let mut noted = before.clone();
        noted.insert("note".into(), json!("a"));
        let mut renoted = noted.clone();
        renoted.insert("note".into(), json!("b"));
        assert_eq!(plan(&r, &update(noted, renoted), ts(NOON_ISH)).unwrap(), skipped(SkipReason::Unchanged));
    }

    #[test]
    fn payload_change_after_due_time_does_not_fire_again() {
        let r = rule();
        let now = ts(NOON_ISH);
        let before = row(1, Some("2026-06-10T09:59:00"), "welcome");
        let after = row(1, Some("2026-06-10T09:59:00"), "sent");
        assert_eq!(plan(&r, &update(before, after), now).unwrap(), skipped(SkipReason::AlreadyDue));
    }

    #[test]
    fn delete_stops_only_a_waiting_execution() {
        let r = rule();
        let now = ts(NOON_ISH);
        let today = row(1, Some("2026-06-10T18:00:00"), "t");
        let out = plan(&r, &delete(today.clone()), now).unwrap();
        assert_eq!((stopped(&out), out.skipped), (vec![name_of(&r, &today).as_str()], None));
        for (due, reason) in [
            (Some("2026-06-17T18:00:00"), SkipReason::OutsideWindow),
            (None, SkipReason::NotScheduled),
            (Some("2026-06-10T09:59:00"), SkipReason::AlreadyDue),
            (Some("2026-06-01T09:00:00"), SkipReason::AlreadyDue),
        ] {
            assert_eq!(plan(&r, &delete(row(1, due, "t")), now).unwrap(), skipped(reason), "{due:?}");
        }
    }

    #[test]
    fn cancel_stops_and_un_cancel_starts_through_the_predicate_ignoring_case() {
        let r = rule();
        let now = ts(NOON_ISH);
        let pending = row(1, Some("2026-06-10T18:00:00"), "t");
        let with_status = |status: &str| {
            let mut row = pending.clone();
            row.insert("status".into(), json!(status));
            row
        };
        let cancelled = with_status("cancelled");
        let out = plan(&r, &update(pending.clone(), cancelled.clone()), now).unwrap();
        assert_eq!((stopped(&out), started(&out)), (vec![name_of(&r, &pending).as_str()], vec![]));
        // Back, spelled differently: MySQL's default collation says 'Pending ' = 'pending'.
        let again = with_status("Pending ");
        let out = plan(&r, &update(cancelled.clone(), again.clone()), now).unwrap();
        assert_eq!((stopped(&out), started(&out)), (vec![], vec![name_of(&r, &again).as_str()]));
        assert_eq!(plan(&r, &insert(cancelled.clone()), now).unwrap(), skipped(SkipReason::NotSelected));
        assert_eq!(plan(&r, &delete(cancelled.clone()), now).unwrap(), skipped(SkipReason::NotSelected));
        // Un-cancelling after the due time does not fire: the event may have run before.
        let late_cancelled = with_status("cancelled");
        let mut late_pending = late_cancelled.clone();
        late_pending.insert("status".into(), json!("pending"));
        late_pending.insert("send_at".into(), json!("2026-06-10T09:58:00"));
        let mut late_cancelled = late_cancelled;
        late_cancelled.insert("send_at".into(), json!("2026-06-10T09:58:00"));
        assert_eq!(plan(&r, &update(late_cancelled, late_pending), now).unwrap(), skipped(SkipReason::AlreadyDue));
        // A predicate column missing from the image is poison, not "not selected".
        let mut no_status = pending.clone();
        no_status.remove("status");
        assert!(matches!(plan(&r, &insert(no_status), now), Err(PlanError::PredicateColumn { .. })));
    }

    #[test]
    fn poison_changes_are_errors_naming_the_problem() {
        let r = rule();
        let now = ts(NOON_ISH);
        let mut no_due = row(1, None, "t");
        no_due.remove("send_at");
        let err = plan(&r, &insert(no_due), now).unwrap_err();
        assert!(err.to_string().contains("no such column"), "{err}");
        let err = plan(&r, &insert(row(1, Some("tomorrow"), "t")), now).unwrap_err();
        assert!(err.to_string().contains("\"tomorrow\""), "{err}");
        let mut no_input = row(1, Some("2026-06-10T18:00:00"), "t");
        no_input.remove("template");
        let err = plan(&r, &insert(no_input), now).unwrap_err();
        assert!(matches!(err, PlanError::Execution(ref e) if e.column == "template"), "{err}");
        // A missing column is poison even when the row is outside the window.
        let mut later = row(1, Some("2026-07-10T18:00:00"), "t");
        later.remove("id");
        assert!(matches!(plan(&r, &insert(later), now), Err(PlanError::Execution(_))));

        let err = plan(&r, &change(Op::Update, None, Some(row(1, None, "t"))), now).unwrap_err();
        assert_eq!(err.to_string(), "update change of crm.scheduled_actions has no before image");
        let mut other = insert(row(1, None, "t"));
        other.table = "other".into();
        let err = plan(&r, &other, now).unwrap_err();
        assert!(err.to_string().contains("is for crm.scheduled_actions, the change is for crm.other"), "{err}");
    }

    #[test]
    fn same_change_planned_twice_gives_the_same_effects() {
        let r = rule();
        let c = update(row(1, Some("2026-06-10T18:00:00"), "a"), row(1, Some("2026-06-10T20:00:00"), "b"));
        let now = ts(NOON_ISH);
        assert_eq!(plan(&r, &c, now).unwrap(), plan(&r, &c, now + SignedDuration::from_mins(5)).unwrap());
    }
}
