//! Which due times one nightly run starts, and the SQL bounds that select them.
//!
//! - The run of local day `D` (`--date D`) covers `[batch_start(D), batch_start(D + 1) + overlap)`;
//!   without a date, the window containing now (the most recent run's), as the worker sees it.
//! - Rows due before now are *late*: started when at most `grace_seconds` late, otherwise
//!   skipped and counted. So that a run starting just after its batch time does not miss rows
//!   that fell due a moment before, the selection starts at `min(window start, now - grace)`
//!   while now is inside the window.
//! - The SQL bounds are a superset of the run's instants, never a subset: a DATETIME column
//!   holds wall-clock times whose offset changes at DST, so the civil bounds are widened by the
//!   offsets in force around each bound, and every row is placed exactly in Rust with the same
//!   `parse_due` the worker uses. Rows of the widened margin are read and dropped.

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use mysql_async::Value as SqlValue;
use sameday_core::rule::{DueType, ScheduleRule};
use sameday_core::window::{batch_start, window_containing, Window};

/// How far around a bound to look for UTC offset changes; offsets never differ by that much.
const OFFSET_SCAN: SignedDuration = SignedDuration::from_hours(72);

/// The due times of one rule's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow {
    pub window: Window,
    /// The earliest due time selected: the window's start, or `now - grace` when earlier.
    pub from: Timestamp,
    /// The run's clock: rows due before it are late.
    pub now: Timestamp,
    grace: SignedDuration,
}

/// What the run does with a row due at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Start,
    /// Due more than `grace_seconds` before now.
    SkipLate,
    /// Outside `[from, window.end)`: read only because the SQL bounds are wider.
    Outside,
}

impl RunWindow {
    /// The run of local day `day`.
    pub fn for_day(rule: &ScheduleRule, day: Date, now: Timestamp) -> Self {
        let start = batch_start(rule, day);
        let end = day
            .tomorrow()
            .map(|d| batch_start(rule, d))
            .unwrap_or(Timestamp::MAX)
            .checked_add(SignedDuration::from_mins(i64::from(rule.overlap_minutes)))
            .unwrap_or(Timestamp::MAX);
        Self::new(rule, Window { start, end, batch_day: day }, now)
    }

    /// The run whose window contains `now`.
    pub fn current(rule: &ScheduleRule, now: Timestamp) -> Self {
        Self::new(rule, window_containing(rule, now), now)
    }

    fn new(rule: &ScheduleRule, window: Window, now: Timestamp) -> Self {
        let grace = SignedDuration::from_secs(i64::from(rule.grace_seconds));
        let grace_start = now.checked_sub(grace).unwrap_or(Timestamp::MIN);
        let from = if now >= window.start && now < window.end { window.start.min(grace_start) } else { window.start };
        Self { window, from, now, grace }
    }

    pub fn place(&self, due: Timestamp) -> Placement {
        if due < self.from || due >= self.window.end {
            Placement::Outside
        } else if due < self.now && self.now.duration_since(due) > self.grace {
            Placement::SkipLate
        } else {
            Placement::Start
        }
    }

    /// `[lower, upper)` for the due column, a superset of `[from, window.end)`.
    pub fn sql_bounds(&self, rule: &ScheduleRule) -> (SqlValue, SqlValue) {
        let (from, end) = (self.from, self.window.end);
        match rule.due_type {
            DueType::Timestamp => (datetime_value(floor_micros(utc(from))), datetime_value(ceil_micros(utc(end)))),
            DueType::Datetime => {
                let lower = local_bound(&rule.time_zone, from, Offset::min);
                let upper = local_bound(&rule.time_zone, end, Offset::max);
                (datetime_value(floor_micros(lower)), datetime_value(ceil_micros(upper)))
            }
            DueType::EpochSeconds => (SqlValue::Int(from.as_second()), SqlValue::Int(ceil_div(end, 1_000_000_000))),
            DueType::EpochMillis => (SqlValue::Int(from.as_millisecond()), SqlValue::Int(ceil_div(end, 1_000_000))),
        }
    }
}

fn utc(t: Timestamp) -> DateTime {
    Offset::UTC.to_datetime(t)
}

/// `t` as wall-clock time with the smallest (`Offset::min`) or largest (`Offset::max`) offset
/// the zone uses around `t`: every wall-clock value that reads as an instant on the right
/// side of `t` lies on the right side of this.
fn local_bound(tz: &TimeZone, t: Timestamp, pick: fn(Offset, Offset) -> Offset) -> DateTime {
    let scan_from = t.checked_sub(OFFSET_SCAN).unwrap_or(Timestamp::MIN);
    let scan_to = t.checked_add(OFFSET_SCAN).unwrap_or(Timestamp::MAX);
    let offset = tz
        .following(scan_from)
        .take_while(|tr| tr.timestamp() <= scan_to)
        .map(|tr| tr.offset())
        .fold(tz.to_offset(scan_from), pick);
    offset.to_datetime(t)
}

fn floor_micros(dt: DateTime) -> DateTime {
    dt.with().subsec_nanosecond(dt.subsec_nanosecond() / 1000 * 1000).build().unwrap_or(dt)
}

fn ceil_micros(dt: DateTime) -> DateTime {
    let floor = floor_micros(dt);
    if floor == dt {
        dt
    } else {
        floor.checked_add(SignedDuration::from_micros(1)).unwrap_or(dt)
    }
}

/// Whole `unit_nanos` units, rounded up: an exclusive upper bound that keeps every value below `t`.
fn ceil_div(t: Timestamp, unit_nanos: i128) -> i64 {
    let n = t.as_nanosecond();
    let q = n.div_euclid(unit_nanos) + i128::from(n.rem_euclid(unit_nanos) != 0);
    i64::try_from(q).unwrap_or(i64::MAX)
}

fn datetime_value(dt: DateTime) -> SqlValue {
    let part = |v: i8| u8::try_from(v).unwrap_or(0);
    SqlValue::Date(
        u16::try_from(dt.year()).unwrap_or(0),
        part(dt.month()),
        part(dt.day()),
        part(dt.hour()),
        part(dt.minute()),
        part(dt.second()),
        u32::try_from(dt.subsec_nanosecond() / 1000).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use sameday_core::window::parse_due;
    use serde_json::json;

    fn rule(zone: &str, due_type: &str) -> ScheduleRule {
        serde_json::from_value(json!({
            "name": "r", "db": "d", "table": "t", "key_columns": ["id"], "due_column": "due",
            "due_type": due_type, "time_zone": zone, "batch_time": "03:30", "overlap_minutes": 60,
            "grace_seconds": 300, "state_machine_arn": "arn:aws:states:eu-central-1:123456789012:stateMachine:s",
        }))
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_dated_run_covers_its_day_plus_the_overlap() {
        let r = rule("Europe/Berlin", "datetime");
        let run = RunWindow::for_day(&r, date(2026, 6, 10), ts("2026-06-01T00:00:00Z"));
        assert_eq!(run.window.start, ts("2026-06-10T01:30:00Z"));
        assert_eq!(run.window.end, ts("2026-06-11T02:30:00Z"));
        assert_eq!(run.from, run.window.start, "a future run selects nothing before its start");
        assert_eq!(run.place(ts("2026-06-10T01:29:59Z")), Placement::Outside);
        assert_eq!(run.place(ts("2026-06-10T01:30:00Z")), Placement::Start);
        assert_eq!(run.place(ts("2026-06-11T02:29:59Z")), Placement::Start);
        assert_eq!(run.place(ts("2026-06-11T02:30:00Z")), Placement::Outside);
    }

    #[test]
    fn late_rows_within_grace_start_the_others_are_skipped() {
        let r = rule("UTC", "timestamp");
        // Two minutes after the 03:30 run: rows due since 03:27 (5 min grace) still start.
        let now = ts("2026-06-10T03:32:00Z");
        let run = RunWindow::current(&r, now);
        assert_eq!(run.window.start, ts("2026-06-10T03:30:00Z"));
        assert_eq!(run.from, ts("2026-06-10T03:27:00Z"));
        assert_eq!(run.place(ts("2026-06-10T03:26:59Z")), Placement::Outside);
        assert_eq!(run.place(ts("2026-06-10T03:27:00Z")), Placement::Start);
        assert_eq!(run.place(ts("2026-06-10T03:31:00Z")), Placement::Start);
        // Later in the day, rows of the window's first hours are beyond grace.
        let run = RunWindow::current(&r, ts("2026-06-10T12:00:00Z"));
        assert_eq!(run.from, run.window.start);
        assert_eq!(run.place(ts("2026-06-10T11:54:59Z")), Placement::SkipLate);
        assert_eq!(run.place(ts("2026-06-10T11:55:00Z")), Placement::Start);
        assert_eq!(run.place(ts("2026-06-11T04:29:00Z")), Placement::Start);
    }

    #[test]
    fn timestamp_and_epoch_bounds() {
        let run = RunWindow::for_day(&rule("UTC", "timestamp"), date(2026, 6, 10), ts("2026-01-01T00:00:00Z"));
        let (lo, hi) = run.sql_bounds(&rule("UTC", "timestamp"));
        assert_eq!((lo, hi), (SqlValue::Date(2026, 6, 10, 3, 30, 0, 0), SqlValue::Date(2026, 6, 11, 4, 30, 0, 0)));
        let (lo, hi) = run.sql_bounds(&rule("UTC", "epoch_millis"));
        assert_eq!(
            (lo, hi),
            (
                SqlValue::Int(ts("2026-06-10T03:30:00Z").as_millisecond()),
                SqlValue::Int(ts("2026-06-11T04:30:00Z").as_millisecond())
            )
        );
        // `now - grace` has nanoseconds: the lower bound rounds down, never up.
        let now = ts("2026-06-10T03:31:00.123456789Z");
        let run = RunWindow::current(&rule("UTC", "epoch_seconds"), now);
        let (lo, _) = run.sql_bounds(&rule("UTC", "epoch_seconds"));
        assert_eq!(lo, SqlValue::Int(ts("2026-06-10T03:26:00Z").as_second()));
        let (lo, _) = run.sql_bounds(&rule("UTC", "timestamp"));
        assert_eq!(lo, SqlValue::Date(2026, 6, 10, 3, 26, 0, 123_456));
    }

    /// Every wall-clock value whose instant is in the run lies inside the SQL bounds, across
    /// the fall-back fold and the spring-forward gap.
    #[test]
    fn datetime_bounds_are_a_superset_across_dst() {
        let r = rule("Europe/Berlin", "datetime");
        for day in [date(2026, 3, 28), date(2026, 3, 29), date(2026, 10, 24), date(2026, 10, 25)] {
            let run = RunWindow::for_day(&r, day, ts("2026-01-01T00:00:00Z"));
            let (SqlValue::Date(ly, lmo, ld, lh, lmi, ..), SqlValue::Date(uy, umo, ud, uh, umi, ..)) =
                run.sql_bounds(&r)
            else {
                panic!("datetime bounds");
            };
            let lower = jiff::civil::datetime(ly as i16, lmo as i8, ld as i8, lh as i8, lmi as i8, 0, 0);
            let upper = jiff::civil::datetime(uy as i16, umo as i8, ud as i8, uh as i8, umi as i8, 0, 0);
            // Walk wall-clock minutes from well before to well after the window.
            let mut local = lower.checked_sub(SignedDuration::from_hours(6)).unwrap();
            let stop = upper.checked_add(SignedDuration::from_hours(6)).unwrap();
            let mut inside = 0;
            while local < stop {
                let text = local.strftime("%Y-%m-%dT%H:%M:%S").to_string();
                let due = parse_due(&r, &json!(text)).unwrap();
                if run.place(due) != Placement::Outside {
                    inside += 1;
                    assert!(
                        local >= lower && local < upper,
                        "{day}: {text} ({due}) is in the run but outside the SQL bounds"
                    );
                }
                local = local.checked_add(SignedDuration::from_mins(1)).unwrap();
            }
            assert!(inside > 24 * 60 - 120, "{day}: {inside} minutes inside");
            // The margin stays small: at most the DST shift on each side.
            assert!(lower >= Offset::from_hours(1).unwrap().to_datetime(run.from), "{day}: {lower}");
        }
    }
}
