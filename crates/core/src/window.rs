//! The schedule rule and its time logic, shared by the nightly batch, the worker and the
//! consumer's same-day filter so that all three agree on which rows are "due today".
//!
//! Guarantees:
//! - The batch run of day `D` starts at `D`'s `batch_time` in the rule's zone. A local time that
//!   does not exist (DST spring-forward gap) starts at the first valid instant after it (the
//!   transition); an ambiguous one (fall-back fold) at the earlier instant.
//! - The window of the run of day `D` is `[run(D), run(D + 1) + overlap)`. Consecutive windows
//!   touch (the overlap only adds), so every instant belongs to the window of the most recent
//!   run at or before it: between midnight and the next run we are still in the previous day's
//!   window, and a row written then is never left to a batch that has already passed.
//! - A naive `datetime` due value is read in the rule's zone: a time inside a DST gap is shifted
//!   forward by the gap's length, a time inside a fold takes the earlier instant.

use jiff::civil::{Date, DateTime};
use jiff::tz::AmbiguousOffset;
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::rule::{DueType, ScheduleRule};

/// The due times one batch run materializes: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the run of `batch_day` starts.
    pub start: Timestamp,
    /// The next run's start plus the rule's overlap.
    pub end: Timestamp,
    /// The local day whose batch run opened this window.
    pub batch_day: Date,
}

/// When the batch run of local day `day` starts.
pub fn batch_start(rule: &ScheduleRule, day: Date) -> Timestamp {
    let local = day.to_datetime(rule.batch_time);
    // Out-of-range results only happen at jiff's year ±9999 limits; saturate rather than panic.
    let at = |offset: jiff::tz::Offset| offset.to_timestamp(local).unwrap_or(Timestamp::MAX);
    match rule.time_zone.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => at(offset),
        // The local time was skipped: the first instant after it is the transition itself, which
        // lies after `local` read with the new offset and at or before it read with the old one.
        AmbiguousOffset::Gap { before, after } => {
            rule.time_zone.following(at(after)).next().map(|t| t.timestamp()).unwrap_or_else(|| at(before))
        }
    }
}

/// The window of the most recent batch run at or before `now`.
pub fn window_containing(rule: &ScheduleRule, now: Timestamp) -> Window {
    let mut day = rule.time_zone.to_datetime(now).date();
    let mut start = batch_start(rule, day);
    // Usually at most one step back (before today's run). A loop, because a zone whose DST gap
    // swallows a late batch time can push a day's run past the next midnight.
    while start > now {
        let Ok(previous) = day.yesterday() else { break };
        day = previous;
        start = batch_start(rule, day);
    }
    let next_start = day.tomorrow().map(|d| batch_start(rule, d)).unwrap_or(Timestamp::MAX);
    let end = next_start.checked_add(rule.overlap()).unwrap_or(Timestamp::MAX);
    Window { start, end, batch_day: day }
}

/// Where a due time stands relative to `now` and the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Due before `now`; `within_grace` when at most `grace_seconds` ago (start it now).
    PastDue { within_grace: bool },
    /// Due from `now` up to the end of the current window: this run's (or the worker's) business.
    InWindow,
    /// Due at or after the window's end: a later batch run picks it up.
    Later,
}

pub fn classify(rule: &ScheduleRule, due: Timestamp, now: Timestamp) -> Due {
    if due < now {
        Due::PastDue { within_grace: now.duration_since(due) <= rule.grace() }
    } else if due < window_containing(rule, now).end {
        Due::InWindow
    } else {
        Due::Later
    }
}

/// A due value that cannot be read; names the rule, the column and the value.
#[derive(Debug, thiserror::Error)]
#[error("schedule rule {rule:?}: due column {column:?} = {value}: {problem}")]
pub struct DueError {
    pub rule: String,
    pub column: String,
    /// The value as JSON text, or `(absent)` when the row image lacks the column.
    pub value: String,
    pub problem: DueProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DueProblem {
    #[error("the row image has no such column; check the rule's due_column against the table")]
    Missing,
    #[error("is NULL; the row has no due time")]
    Null,
    #[error("is a zero date; the row has no due time")]
    ZeroDate,
    #[error("cannot be read as {expected}: {reason}")]
    Unparseable { expected: &'static str, reason: String },
}

impl DueError {
    /// NULL or zero date: the row carries no schedule, as opposed to a malformed one.
    pub fn is_unset(&self) -> bool {
        matches!(self.problem, DueProblem::Null | DueProblem::ZeroDate)
    }
}

/// Reads a due column value as the rule's `due_type` says.
pub fn parse_due(rule: &ScheduleRule, value: &Value) -> Result<Timestamp, DueError> {
    parse_due_value(rule, value).map_err(|problem| DueError {
        rule: rule.name.clone(),
        column: rule.due_column.clone(),
        value: value.to_string(),
        problem,
    })
}

/// Reads the rule's due column from one row image.
pub fn due_of_row(rule: &ScheduleRule, row: &Map<String, Value>) -> Result<Timestamp, DueError> {
    match row.get(&rule.due_column) {
        Some(value) => parse_due(rule, value),
        None => Err(DueError {
            rule: rule.name.clone(),
            column: rule.due_column.clone(),
            value: "(absent)".into(),
            problem: DueProblem::Missing,
        }),
    }
}

fn parse_due_value(rule: &ScheduleRule, value: &Value) -> Result<Timestamp, DueProblem> {
    let unparseable = |reason: String| DueProblem::Unparseable { expected: rule.due_type.expected(), reason };
    if value.is_null() {
        return Err(DueProblem::Null);
    }
    match rule.due_type {
        DueType::Datetime | DueType::Timestamp => {
            let Value::String(text) = value else { return Err(unparseable("not a string".into())) };
            if text.starts_with("0000-00-00") {
                return Err(DueProblem::ZeroDate);
            }
            // MySQL clients print a space between date and time; the envelope uses `T`.
            let text = match text.as_bytes().get(10) {
                Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
                _ => text.clone(),
            };
            if rule.due_type == DueType::Timestamp {
                return text.parse::<Timestamp>().map_err(|e| unparseable(e.to_string()));
            }
            let local = DateTime::strptime("%Y-%m-%dT%H:%M:%S%.f", &text).map_err(|e| unparseable(e.to_string()))?;
            // `compatible`: a gap time shifts forward by the gap's length, a fold time is the earlier.
            rule.time_zone.to_ambiguous_timestamp(local).compatible().map_err(|e| unparseable(e.to_string()))
        }
        DueType::EpochSeconds | DueType::EpochMillis => {
            let per_second: i64 = if rule.due_type == DueType::EpochSeconds { 1 } else { 1000 };
            let units = match value {
                Value::Number(n) => n.as_i64().map(Ok).or_else(|| n.as_f64().map(Err)),
                Value::String(s) => {
                    s.trim().parse::<i64>().map(Ok).ok().or_else(|| s.trim().parse::<f64>().ok().map(Err))
                }
                _ => None,
            }
            .ok_or_else(|| unparseable("not a number".into()))?;
            let nanos: i128 = match units {
                Ok(whole) => i128::from(whole) * 1_000_000_000 / i128::from(per_second),
                Err(fraction) if fraction.is_finite() && fraction.abs() < 1e15 => {
                    (fraction * 1e9 / per_second as f64).round() as i128
                }
                Err(_) => return Err(unparseable("out of range".into())),
            };
            if nanos == 0 {
                return Err(DueProblem::ZeroDate);
            }
            Timestamp::from_nanosecond(nanos).map_err(|e| unparseable(e.to_string()))
        }
    }
}

/// The consumer's same-day filter: should this change reach the worker now?
///
/// True when the before or the after image is due in the current window or past due within the
/// grace period, so that moving a row from today to next week, or deleting a row due today, is
/// forwarded; changes that only touch later days are left to a later batch run. An image whose
/// due time is NULL or a zero date is unscheduled and counts for nothing. If one image qualifies
/// the change is forwarded even when the other is malformed (the worker re-reads the row);
/// otherwise a malformed or missing due value is an error.
pub fn affects_window(
    rule: &ScheduleRule,
    before: Option<&Map<String, Value>>,
    after: Option<&Map<String, Value>>,
    now: Timestamp,
) -> Result<bool, DueError> {
    let mut first_error = None;
    for image in [before, after].into_iter().flatten() {
        match due_of_row(rule, image) {
            Ok(due) => {
                if matches!(classify(rule, due, now), Due::InWindow | Due::PastDue { within_grace: true }) {
                    return Ok(true);
                }
            }
            Err(e) if e.is_unset() => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(false), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::SignedDuration;
    use proptest::prelude::*;
    use serde_json::json;

    use crate::rule::tests::{berlin, rule_with};

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn row(due: Value) -> Map<String, Value> {
        json!({"id": 7, "send_at": due}).as_object().unwrap().clone()
    }

    #[test]
    fn window_before_and_after_batch_time() {
        let rule = berlin();
        // 2026-06-10 03:29 CEST is just before that day's run: still the window of June 9.
        let w = window_containing(&rule, ts("2026-06-10T01:29:00Z"));
        assert_eq!(w.batch_day, date(2026, 6, 9));
        assert_eq!((w.start, w.end), (ts("2026-06-09T01:30:00Z"), ts("2026-06-10T02:30:00Z")));
        // At 03:30 sharp the new run's window begins.
        let w = window_containing(&rule, ts("2026-06-10T01:30:00Z"));
        assert_eq!(w.batch_day, date(2026, 6, 10));
        assert_eq!((w.start, w.end), (ts("2026-06-10T01:30:00Z"), ts("2026-06-11T02:30:00Z")));
        assert_eq!(window_containing(&rule, ts("2026-06-10T21:59:59Z")).batch_day, date(2026, 6, 10));
    }

    #[test]
    fn window_across_midnight_belongs_to_previous_run() {
        let rule = berlin();
        for now in ["2026-06-10T22:00:00Z", "2026-06-10T22:00:01Z", "2026-06-11T01:29:59Z"] {
            let w = window_containing(&rule, ts(now));
            assert_eq!(w.batch_day, date(2026, 6, 10), "at {now}");
        }
        // A row written at 00:10 local, due at 02:00 local the same night, is this window's.
        let now = ts("2026-06-10T22:10:00Z");
        assert_eq!(classify(&rule, parse_due(&rule, &json!("2026-06-11T02:00:00")).unwrap(), now), Due::InWindow);
        // Due at 04:00 local falls in the overlap of this window (ends 04:30); 05:00 is later.
        assert_eq!(classify(&rule, parse_due(&rule, &json!("2026-06-11T04:00:00")).unwrap(), now), Due::InWindow);
        assert_eq!(classify(&rule, parse_due(&rule, &json!("2026-06-11T05:00:00")).unwrap(), now), Due::Later);
    }

    #[test]
    fn dst_window_edges() {
        let rule = berlin();
        // Spring forward 2026-03-29 (02:00 CET -> 03:00 CEST): a 23-hour day.
        let w = window_containing(&rule, ts("2026-03-28T12:00:00Z"));
        assert_eq!((w.start, w.end), (ts("2026-03-28T02:30:00Z"), ts("2026-03-29T02:30:00Z")));
        assert_eq!(batch_start(&rule, date(2026, 3, 29)), ts("2026-03-29T01:30:00Z"));
        // Fall back 2026-10-25 (03:00 CEST -> 02:00 CET): a 25-hour day.
        let w = window_containing(&rule, ts("2026-10-25T01:00:00Z"));
        assert_eq!(w.batch_day, date(2026, 10, 24));
        assert_eq!((w.start, w.end), (ts("2026-10-24T01:30:00Z"), ts("2026-10-25T03:30:00Z")));

        // A batch time inside the gap starts at the first valid instant after it: 03:00 CEST.
        let gap = rule_with("Europe/Berlin", "02:30", "datetime");
        assert_eq!(batch_start(&gap, date(2026, 3, 29)), ts("2026-03-29T01:00:00Z"));
        assert_eq!(window_containing(&gap, ts("2026-03-29T00:59:59Z")).batch_day, date(2026, 3, 28));
        assert_eq!(window_containing(&gap, ts("2026-03-29T01:00:00Z")).batch_day, date(2026, 3, 29));
        // A batch time inside the fold takes the earlier instant: 02:30 CEST.
        assert_eq!(batch_start(&gap, date(2026, 10, 25)), ts("2026-10-25T00:30:00Z"));

        let ny = rule_with("America/New_York", "03:30", "datetime");
        // 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
        assert_eq!(batch_start(&ny, date(2026, 3, 7)), ts("2026-03-07T08:30:00Z"));
        assert_eq!(batch_start(&ny, date(2026, 3, 8)), ts("2026-03-08T07:30:00Z"));
        assert_eq!(batch_start(&ny, date(2026, 11, 1)), ts("2026-11-01T08:30:00Z"));
        let ny_gap = rule_with("America/New_York", "02:30", "datetime");
        assert_eq!(batch_start(&ny_gap, date(2026, 3, 8)), ts("2026-03-08T07:00:00Z"));
        let ny_fold = rule_with("America/New_York", "01:30", "datetime");
        assert_eq!(batch_start(&ny_fold, date(2026, 11, 1)), ts("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn past_due_within_and_beyond_grace() {
        let rule = berlin();
        let now = ts("2026-06-10T10:00:00Z");
        let at = |secs_before: i64| now - SignedDuration::from_secs(secs_before);
        assert_eq!(classify(&rule, at(1), now), Due::PastDue { within_grace: true });
        assert_eq!(classify(&rule, at(300), now), Due::PastDue { within_grace: true });
        assert_eq!(classify(&rule, at(301), now), Due::PastDue { within_grace: false });
        assert_eq!(classify(&rule, now, now), Due::InWindow);
        let late = ScheduleRule { grace_seconds: 0, ..rule };
        assert_eq!(classify(&late, at(1), now), Due::PastDue { within_grace: false });
    }

    #[test]
    fn datetime_due_is_read_in_the_rule_zone() {
        let rule = berlin();
        assert_eq!(parse_due(&rule, &json!("2026-01-15T09:00:00")).unwrap(), ts("2026-01-15T08:00:00Z"));
        assert_eq!(parse_due(&rule, &json!("2026-07-15 09:00:00.250")).unwrap(), ts("2026-07-15T07:00:00.25Z"));
        // In the spring gap: shifted forward by the gap's length; in the fold: the earlier instant.
        assert_eq!(parse_due(&rule, &json!("2026-03-29T02:30:00")).unwrap(), ts("2026-03-29T01:30:00Z"));
        assert_eq!(parse_due(&rule, &json!("2026-10-25T02:30:00")).unwrap(), ts("2026-10-25T00:30:00Z"));
        let ny = rule_with("America/New_York", "03:30", "datetime");
        assert_eq!(parse_due(&ny, &json!("2026-01-15T09:00:00")).unwrap(), ts("2026-01-15T14:00:00Z"));

        let utc = rule_with("Europe/Berlin", "03:30", "timestamp");
        assert_eq!(parse_due(&utc, &json!("2026-01-15T09:00:00.000123Z")).unwrap(), ts("2026-01-15T09:00:00.000123Z"));
        let secs = rule_with("Europe/Berlin", "03:30", "epoch_seconds");
        assert_eq!(parse_due(&secs, &json!(1_795_328_010)).unwrap(), Timestamp::from_second(1_795_328_010).unwrap());
        assert_eq!(parse_due(&secs, &json!("1795328010")).unwrap(), Timestamp::from_second(1_795_328_010).unwrap());
        let millis = rule_with("Europe/Berlin", "03:30", "epoch_millis");
        let expected = Timestamp::from_millisecond(1_795_328_010_123).unwrap();
        assert_eq!(parse_due(&millis, &json!(1_795_328_010_123_u64)).unwrap(), expected);
        assert_eq!(parse_due(&millis, &json!("1795328010123")).unwrap(), expected);
    }

    #[test]
    fn null_or_zero_due_is_a_clear_error() {
        let rule = berlin();
        let err = parse_due(&rule, &Value::Null).unwrap_err();
        assert!(err.is_unset());
        assert_eq!(
            err.to_string(),
            "schedule rule \"reminders\": due column \"send_at\" = null: is NULL; the row has no due time"
        );
        let err = parse_due(&rule, &json!("0000-00-00T00:00:00")).unwrap_err();
        assert_eq!(err.problem, DueProblem::ZeroDate);
        assert!(err.to_string().contains("\"0000-00-00T00:00:00\""), "{err}");
        let utc = rule_with("Europe/Berlin", "03:30", "timestamp");
        assert_eq!(parse_due(&utc, &json!("0000-00-00T00:00:00Z")).unwrap_err().problem, DueProblem::ZeroDate);
        let secs = rule_with("Europe/Berlin", "03:30", "epoch_seconds");
        assert_eq!(parse_due(&secs, &json!(0)).unwrap_err().problem, DueProblem::ZeroDate);

        for (rule, bad) in [(&rule, json!("tomorrow")), (&rule, json!("2026-01-15T09:00:00Z")), (&secs, json!("soon"))]
        {
            let err = parse_due(rule, &bad).unwrap_err();
            assert!(!err.is_unset());
            let text = err.to_string();
            assert!(
                text.contains("reminders") && text.contains("send_at") && text.contains(&bad.to_string()),
                "{text}"
            );
        }
        let err = due_of_row(&rule, &Map::new()).unwrap_err();
        assert_eq!(err.problem, DueProblem::Missing);
    }

    #[test]
    fn move_from_today_to_next_week_is_forwarded() {
        let rule = berlin();
        let now = ts("2026-06-10T08:00:00Z");
        let today = row(json!("2026-06-10T18:00:00"));
        let next_week = row(json!("2026-06-17T18:00:00"));
        assert!(affects_window(&rule, Some(&today), Some(&next_week), now).unwrap());
        assert!(affects_window(&rule, Some(&next_week), Some(&today), now).unwrap());
        // Deleting a row due today, inserting one due today, cancelling one (due set to NULL).
        assert!(affects_window(&rule, Some(&today), None, now).unwrap());
        assert!(affects_window(&rule, None, Some(&today), now).unwrap());
        assert!(affects_window(&rule, Some(&today), Some(&row(Value::Null)), now).unwrap());
        // Just past due (within grace) still counts; long past does not.
        let just_missed = row(json!("2026-06-10T09:57:00"));
        assert!(affects_window(&rule, None, Some(&just_missed), now).unwrap());
        let long_ago = row(json!("2026-06-01T09:00:00"));
        assert!(!affects_window(&rule, None, Some(&long_ago), now).unwrap());
    }

    #[test]
    fn change_on_a_later_day_is_not_forwarded() {
        let rule = berlin();
        let now = ts("2026-06-10T08:00:00Z");
        let next_week = row(json!("2026-06-17T18:00:00"));
        let week_after = row(json!("2026-06-24T18:00:00"));
        assert!(!affects_window(&rule, Some(&next_week), Some(&week_after), now).unwrap());
        assert!(!affects_window(&rule, None, Some(&next_week), now).unwrap());
        assert!(!affects_window(&rule, Some(&row(Value::Null)), Some(&row(Value::Null)), now).unwrap());
        // A malformed due value that cannot be judged is an error, not a silent drop.
        let err = affects_window(&rule, Some(&next_week), Some(&row(json!("soon"))), now).unwrap_err();
        assert!(!err.is_unset());
    }

    const ZONES: &[&str] = &[
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe", // 30-minute DST shift
        "America/Santiago",    // DST changes at midnight
        "America/Havana",      // DST changes at midnight
        "Pacific/Apia",        // skipped 2011-12-30 entirely
        "Asia/Kolkata",
        "UTC",
    ];

    fn any_rule() -> impl Strategy<Value = ScheduleRule> {
        (0..ZONES.len(), 0..24i8, 0..60i8, 0..=180u32).prop_map(|(z, h, m, overlap)| {
            let mut rule = rule_with(ZONES[z], &format!("{h:02}:{m:02}"), "datetime");
            rule.overlap_minutes = overlap;
            rule
        })
    }

    fn any_instant() -> impl Strategy<Value = Timestamp> {
        // 2000-01-01 .. 2040-01-01
        (946_684_800i64..2_208_988_800).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    proptest! {
        #[test]
        fn windows_contain_now_and_tile_time(rule in any_rule(), now in any_instant()) {
            let w = window_containing(&rule, now);
            let next_start = w.end - rule.overlap();
            prop_assert!(w.start <= now && now < next_start, "{w:?} at {now}");
            prop_assert_eq!(w.start, batch_start(&rule, w.batch_day));
            let next = window_containing(&rule, next_start);
            prop_assert_eq!(next.start, next_start);
            prop_assert_eq!(next.batch_day, w.batch_day.tomorrow().unwrap());
        }

        #[test]
        fn datetime_round_trips_through_the_rule_zone(rule in any_rule(), due in any_instant(), ms in 0..1000i64) {
            let due = due + SignedDuration::from_millis(ms);
            let local = rule.time_zone.to_datetime(due);
            let parsed = parse_due(&rule, &json!(local.strftime("%Y-%m-%dT%H:%M:%S%.3f").to_string())).unwrap();
            // The second pass through a fold reads as the first; everything else is exact.
            match rule.time_zone.to_ambiguous_timestamp(local).offset() {
                AmbiguousOffset::Fold { .. } => prop_assert!(parsed <= due),
                _ => prop_assert_eq!(parsed, due),
            }
        }

        #[test]
        fn epoch_values_parse_as_numbers_and_strings(ms in 1i64..4_102_444_800_000) {
            let millis = rule_with("UTC", "03:30", "epoch_millis");
            let expected = Timestamp::from_millisecond(ms).unwrap();
            prop_assert_eq!(parse_due(&millis, &json!(ms)).unwrap(), expected);
            prop_assert_eq!(parse_due(&millis, &json!(ms.to_string())).unwrap(), expected);
            let secs = rule_with("UTC", "03:30", "epoch_seconds");
            let whole = ms / 1000 + 1;
            prop_assert_eq!(parse_due(&secs, &json!(whole)).unwrap(), Timestamp::from_second(whole).unwrap());
        }
    }
}
