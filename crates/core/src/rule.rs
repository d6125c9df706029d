//! The schedule rule (`[[rule]]` in the consumer's and worker's configs): which table's
//! rows schedule Step Functions executions, how their due column is stored, in which zone,
//! and when the nightly batch runs. Checked once when the config is read; [`crate::window`]
//! holds the time logic built on it.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::predicate::{Collations, Predicate, PredicateError};

/// Local time of the nightly batch when the rule does not say.
pub const DEFAULT_BATCH_TIME: Time = jiff::civil::time(3, 30, 0, 0);
/// How far past the next run a window reaches, so a late or slow next run misses nothing.
pub const DEFAULT_OVERLAP_MINUTES: u32 = 60;
/// How long after its due time a row still counts as "start it now".
pub const DEFAULT_GRACE_SECONDS: u32 = 300;

const MAX_OVERLAP_MINUTES: u32 = 24 * 60;
const MAX_GRACE_SECONDS: u32 = 24 * 60 * 60;

/// How the due column is stored; see `docs/envelope.md` for how each MySQL type is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueType {
    /// `DATETIME`: a wall-clock string without zone, read in the rule's `time_zone`.
    Datetime,
    /// `TIMESTAMP`: a UTC string ending in `Z`.
    Timestamp,
    /// An integer column holding seconds since the epoch (number or numeric string).
    EpochSeconds,
    /// An integer column holding milliseconds since the epoch (number or numeric string).
    EpochMillis,
}

impl DueType {
    pub(crate) fn expected(self) -> &'static str {
        match self {
            DueType::Datetime => "a datetime string YYYY-MM-DDTHH:MM:SS[.fff]",
            DueType::Timestamp => "a UTC timestamp string YYYY-MM-DDTHH:MM:SS[.fff]Z",
            DueType::EpochSeconds => "seconds since the epoch",
            DueType::EpochMillis => "milliseconds since the epoch",
        }
    }
}

/// One table whose rows schedule Step Functions executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    pub name: String,
    pub db: String,
    pub table: String,
    pub key_columns: Vec<String>,
    pub due_column: String,
    pub due_type: DueType,
    /// IANA zone name such as `Europe/Berlin`; resolved (and so checked) when the rule is read.
    #[serde(deserialize_with = "de_time_zone", serialize_with = "ser_time_zone")]
    pub time_zone: TimeZone,
    /// Local `HH:MM` of the nightly batch.
    #[serde(default = "default_batch_time", deserialize_with = "de_batch_time", serialize_with = "ser_batch_time")]
    pub batch_time: Time,
    #[serde(default = "default_overlap_minutes")]
    pub overlap_minutes: u32,
    #[serde(default = "default_grace_seconds")]
    pub grace_seconds: u32,
    #[serde(default)]
    pub input_columns: Vec<String>,
    /// Which rows schedule at all (e.g. `status = 'pending'`): parsed once when the config is
    /// read ([`Predicate`], a checked subset of SQL); the nightly batch puts it into its query,
    /// the worker evaluates it on row images.
    /// Parse errors are kept until [`ScheduleRule::validate`] reports them with the rule's name.
    #[serde(default, deserialize_with = "de_predicate", serialize_with = "ser_predicate")]
    pub(crate) predicate: Option<Result<Predicate, PredicateError>>,
    pub state_machine_arn: String,
    /// How the predicate's string columns compare: MySQL's default (case-insensitive) unless
    /// a process that sees the table sets the columns' own collations.
    #[serde(skip)]
    pub collations: Collations,
}

fn default_batch_time() -> Time {
    DEFAULT_BATCH_TIME
}
fn default_overlap_minutes() -> u32 {
    DEFAULT_OVERLAP_MINUTES
}
fn default_grace_seconds() -> u32 {
    DEFAULT_GRACE_SECONDS
}

/// Looks a zone up in the global database (the system's `/usr/share/zoneinfo` when present) and
/// falls back to the bundled copy, so a host whose zoneinfo lacks the zone still resolves it.
pub(crate) fn lookup_zone(name: &str) -> Result<TimeZone, jiff::Error> {
    jiff::tz::db().get(name).or_else(|e| jiff::tz::TimeZoneDatabase::bundled().get(name).map_err(|_| e))
}

#[allow(clippy::type_complexity)]
fn de_predicate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Result<Predicate, PredicateError>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|text| Predicate::parse(&text)))
}

fn ser_predicate<S: Serializer>(p: &Option<Result<Predicate, PredicateError>>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(Ok(p)) => s.serialize_some(&p.to_sql()),
        _ => s.serialize_none(),
    }
}

fn de_time_zone<'de, D: Deserializer<'de>>(d: D) -> Result<TimeZone, D::Error> {
    let name = String::deserialize(d)?;
    lookup_zone(&name).map_err(|_| {
        serde::de::Error::custom(format!(
            "time_zone {name:?} is not an IANA time zone name (use a name such as \"Europe/Berlin\")"
        ))
    })
}

fn ser_time_zone<S: Serializer>(tz: &TimeZone, s: S) -> Result<S::Ok, S::Error> {
    match tz.iana_name() {
        Some(name) => s.serialize_str(name),
        None => Err(serde::ser::Error::custom("time_zone is not an IANA time zone")),
    }
}

fn de_batch_time<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
    let text = String::deserialize(d)?;
    parse_hh_mm(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("batch_time {text:?} is not HH:MM (e.g. \"03:30\")")))
}

fn ser_batch_time<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{:02}:{:02}", t.hour(), t.minute()))
}

fn parse_hh_mm(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())) {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// A rule that cannot be used; names the rule and the field.
#[derive(Debug, thiserror::Error)]
#[error("schedule rule {rule:?}: {field} {problem}")]
pub struct RuleError {
    pub rule: String,
    pub field: &'static str,
    pub problem: String,
}

impl ScheduleRule {
    /// The rule's predicate; `None` when it has none (or an invalid one, which
    /// [`ScheduleRule::validate`] refuses).
    pub fn predicate(&self) -> Option<&Predicate> {
        self.predicate.as_ref().and_then(|p| p.as_ref().ok())
    }

    /// Whether a row image schedules at all under the predicate (always, without one).
    pub fn selects(&self, row: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.predicate().is_none_or(|p| p.matches(row, &self.collations))
    }

    /// Checks what serde cannot; the error names the field.
    pub fn validate(&self) -> Result<(), RuleError> {
        let bad = |field, problem: String| Err(RuleError { rule: self.name.clone(), field, problem });
        if self.name.trim().is_empty() {
            return bad("name", "is empty".into());
        }
        for (field, value) in [("db", &self.db), ("table", &self.table), ("due_column", &self.due_column)] {
            if value.trim().is_empty() {
                return bad(field, "is empty".into());
            }
        }
        if self.key_columns.is_empty() || self.key_columns.iter().any(|c| c.trim().is_empty()) {
            return bad("key_columns", "must list the table's primary key columns, none empty".into());
        }
        if self.input_columns.iter().any(|c| c.trim().is_empty()) {
            return bad("input_columns", "contains an empty column name".into());
        }
        if self.time_zone.iana_name().is_none() {
            return bad("time_zone", "must be an IANA time zone name such as \"Europe/Berlin\"".into());
        }
        if self.overlap_minutes > MAX_OVERLAP_MINUTES {
            return bad("overlap_minutes", format!("= {} is above {MAX_OVERLAP_MINUTES}", self.overlap_minutes));
        }
        if self.grace_seconds > MAX_GRACE_SECONDS {
            return bad("grace_seconds", format!("= {} is above {MAX_GRACE_SECONDS}", self.grace_seconds));
        }
        if let Some(Err(e)) = &self.predicate {
            let text = e.to_string();
            let problem = text.strip_prefix("predicate ").unwrap_or(&text).to_owned();
            return Err(RuleError { rule: self.name.clone(), field: "predicate", problem });
        }
        if let Err(e) = crate::execution::execution_arn(&self.state_machine_arn, "x") {
            return bad("state_machine_arn", e.to_string());
        }
        Ok(())
    }

    pub(crate) fn overlap(&self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.overlap_minutes))
    }

    pub(crate) fn grace(&self) -> SignedDuration {
        SignedDuration::from_secs(i64::from(self.grace_seconds))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A valid rule in `zone` (for the tests here and in `window`).
    pub(crate) fn rule_with(zone: &str, batch_time: &str, due_type: &str) -> ScheduleRule {
        let rule: ScheduleRule = serde_json::from_value(json!({
            "name": "reminders", "db": "crm", "table": "scheduled_actions", "key_columns": ["id"],
            "due_column": "send_at", "due_type": due_type, "time_zone": zone, "batch_time": batch_time,
            "input_columns": ["id", "customer_id"], "predicate": "status = 'pending'",
            "state_machine_arn": "arn:aws:states:eu-central-1:123456789012:stateMachine:send",
        }))
        .unwrap();
        rule.validate().unwrap();
        rule
    }

    pub(crate) fn berlin() -> ScheduleRule {
        rule_with("Europe/Berlin", "03:30", "datetime")
    }

    #[test]
    fn defaults_apply_and_unknown_fields_are_rejected() {
        let text = r#"
            name = "reminders"
            db = "crm"
            table = "scheduled_actions"
            key_columns = ["id"]
            due_column = "send_at"
            due_type = "timestamp"
            time_zone = "America/New_York"
            state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:send"
        "#;
        let rule: ScheduleRule = toml::from_str(text).unwrap();
        rule.validate().unwrap();
        assert_eq!(
            (rule.batch_time, rule.overlap_minutes, rule.grace_seconds),
            (DEFAULT_BATCH_TIME, DEFAULT_OVERLAP_MINUTES, DEFAULT_GRACE_SECONDS)
        );
        let back = toml::to_string(&rule).unwrap();
        assert!(back.contains("time_zone = \"America/New_York\"") && back.contains("batch_time = \"03:30\""), "{back}");
        let err = toml::from_str::<ScheduleRule>(&format!("{text}\nbatch_tiem = \"04:00\"")).unwrap_err();
        assert!(err.to_string().contains("batch_tiem"), "{err}");
        let err = toml::from_str::<ScheduleRule>(&format!("{text}\nbatch_time = \"4:00\"")).unwrap_err();
        assert!(err.to_string().contains("batch_time \"4:00\" is not HH:MM"), "{err}");
    }

    #[test]
    fn bad_time_zone_is_rejected_naming_the_field() {
        let mut value = serde_json::to_value(berlin()).unwrap();
        value["time_zone"] = json!("Europe/Berlln");
        let err = serde_json::from_value::<ScheduleRule>(value).unwrap_err().to_string();
        assert!(err.contains("time_zone \"Europe/Berlln\" is not an IANA time zone name"), "{err}");

        let mut rule = berlin();
        rule.time_zone = TimeZone::fixed(jiff::tz::offset(2));
        let err = rule.validate().unwrap_err();
        assert_eq!(err.field, "time_zone");
        assert!(err.to_string().starts_with("schedule rule \"reminders\": time_zone must be an IANA"), "{err}");

        let mut rule = berlin();
        rule.predicate = Some(Predicate::parse("status LIKE 'p%'"));
        assert_eq!(
            rule.validate().unwrap_err().to_string().split("; ").next().unwrap(),
            "schedule rule \"reminders\": predicate \"status LIKE 'p%'\": LIKE at character 8 is not supported"
        );

        let mut rule = berlin();
        rule.state_machine_arn = "send".into();
        assert_eq!(rule.validate().unwrap_err().field, "state_machine_arn");
        // A version or alias ARN would give executions names no other process derives.
        rule.state_machine_arn = "arn:aws:states:eu-central-1:123456789012:stateMachine:send:prod".into();
        let err = rule.validate().unwrap_err();
        assert!(err.to_string().contains("a version or alias ARN"), "{err}");
    }

    #[test]
    fn bundled_tzdb_resolves_zones_without_system_zoneinfo() {
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        for name in ["Europe/Berlin", "America/New_York", "Pacific/Apia"] {
            assert!(bundled.get(name).is_ok(), "{name} missing from the bundled tzdb");
        }
    }
}
