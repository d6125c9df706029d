//! The Step Functions execution of one scheduled event: its deterministic name, its input and
//! the ARN it will have, computed the same way by the nightly batch, the worker, retries and
//! replays.
//!
//! Guarantees:
//! - The name is a pure function of (rule name, primary key values in `key_columns` order,
//!   exact due instant, canonical input). Re-reading the same row image at any time, in any
//!   process, gives the same name, so `ExecutionAlreadyExists` means "this event was started".
//! - Names are 1..=80 characters of `[0-9A-Za-z_-]`: valid for StartExecution and for
//!   CloudWatch Logs, which rejects the wider set AWS allows in names.
//! - Distinct events get distinct names: the last 16 hex digits are a SHA-256 digest (64 bits)
//!   over all four parts, length-prefixed, so events whose readable parts look alike (a
//!   truncated rule name, a digested key, a sub-second due, a changed input) still differ.
//!   Since the input is part of the digest, a payload change yields a new name, which is how
//!   the worker recognises a superseded execution.
//! - The readable part `<rule>-<key>-<due yyyymmddThhmmssZ>` is for humans only; it is never
//!   parsed back.
//! - Generations: Step Functions keeps the name of a closed execution for 90 days, so a row
//!   that comes back to an earlier (due, input) after its execution was stopped needs a new
//!   name. Generation 0 is the name above; generation `n >= 1` appends `-n`
//!   ([`ScheduledExecution::name_at`]). Every actor picks the generation the same way
//!   (docs/decisions/0002-execution-generations.md), so the nightly batch and the worker still
//!   meet on one name. [`parse_name`] reads the identity digest and the generation back.
//! - The input carries the [`RowVersion`] of the image it was made from (`row_version`), which
//!   is not part of the identity: [`identity_of_input`] strips it before hashing, so two
//!   actors that started the same event from different reads agree it is the same event.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::row_version::RowVersion;
use crate::rule::ScheduleRule;

/// The longest execution name Step Functions accepts.
pub const MAX_NAME_CHARS: usize = 80;
/// Hex digits of the identity digest at the end of every name (64 bits).
const NAME_DIGEST_HEX: usize = 16;
/// At most this much of the rule name is shown; the rest of the budget goes to the key.
const MAX_RULE_CHARS: usize = 24;
/// `yyyymmddThhmmssZ`.
const DUE_CHARS: usize = 16;
/// Hex digits of the key digest shown when the key cannot be shown as it is.
const KEY_DIGEST_HEX: usize = 12;
/// Separator between composite key values in the readable part.
const KEY_SEPARATOR: char = '_';
/// The highest generation: `-9999999` keeps every name within [`MAX_NAME_CHARS`].
pub const MAX_GENERATION: u32 = 9_999_999;
/// Characters a generation suffix takes at most (`-` and seven digits).
const GENERATION_CHARS: usize = 8;
/// The input field holding the image's [`RowVersion`]; not part of the identity.
pub const ROW_VERSION_FIELD: &str = "row_version";

/// A row image that lacks a column the rule needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule rule {rule:?}: the row image has no {role} column {column:?}; check the rule's {role}_columns against the table")]
pub struct ExecutionError {
    pub rule: String,
    pub column: String,
    /// `key` or `input`.
    pub role: &'static str,
}

/// Everything needed to start (or recognise) the execution of one scheduled event.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledExecution {
    /// The deterministic execution name of generation 0.
    pub name: String,
    /// The event's input as canonical JSON text, without a row version (the identity).
    pub input: String,
    /// Hex SHA-256 of `input`.
    pub input_hash: String,
    /// The due instant, exact.
    pub due: Timestamp,
    /// What generations `n >= 1` append `-n` to: `name`, or when that would pass 80
    /// characters, the same name with the key shown as its digest.
    generation_base: String,
}

impl ScheduledExecution {
    /// The name of generation `generation` (at most [`MAX_GENERATION`]).
    pub fn name_at(&self, generation: u32) -> String {
        match generation {
            0 => self.name.clone(),
            n => format!("{}-{}", self.generation_base, n.min(MAX_GENERATION)),
        }
    }

    /// The StartExecution input: the identity document plus the image's `row_version`.
    pub fn input_with(&self, version: &RowVersion) -> String {
        let mut doc: Value = serde_json::from_str(&self.input).expect("the input is JSON we wrote");
        if let (Value::Object(map), Ok(v)) = (&mut doc, serde_json::to_value(version)) {
            map.insert(ROW_VERSION_FIELD.into(), v);
        }
        canonical_json(&doc)
    }
}

/// The identity hash of an execution input as StartExecution received it (its `row_version`
/// removed), and that version when present and readable. `None` when the text is not JSON.
pub fn identity_of_input(text: &str) -> Option<(String, Option<RowVersion>)> {
    let mut doc: Value = serde_json::from_str(text).ok()?;
    let version = match &mut doc {
        Value::Object(map) => map.remove(ROW_VERSION_FIELD).and_then(|v| serde_json::from_value(v).ok()),
        _ => None,
    };
    Some((input_hash_of(&doc), version))
}

/// The identity digest (16 hex digits) and generation of a name sameday made; `None` for
/// any other name.
pub fn parse_name(name: &str) -> Option<(&str, u32)> {
    let is_digest = |s: &str| s.len() == NAME_DIGEST_HEX && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (rest, last) = name.rsplit_once('-')?;
    if is_digest(last) {
        return Some((last, 0));
    }
    let (_, digest) = rest.rsplit_once('-')?;
    let generation: u32 = last.parse().ok().filter(|g| (1..=MAX_GENERATION).contains(g))?;
    (is_digest(digest) && !last.starts_with('0')).then_some((digest, generation))
}

/// Builds the execution of the event that `row` schedules at `due` under `rule`.
///
/// `row` is a full row image (after image for inserts and updates, before image for the
/// execution an update or delete replaces); `due` is what `window::due_of_row` read from it.
pub fn scheduled_execution(
    rule: &ScheduleRule,
    row: &Map<String, Value>,
    due: Timestamp,
) -> Result<ScheduledExecution, ExecutionError> {
    let key = pick(rule, row, &rule.key_columns, "key")?;
    let columns = pick(rule, row, &rule.input_columns, "input")?;
    let input = execution_input(rule, &key, &columns, due);
    let input = canonical_json(&input);
    let input_hash = hex(&Sha256::digest(input.as_bytes()));
    let key_values: Vec<&Value> = rule.key_columns.iter().map(|c| &key[c]).collect();
    let name = execution_name(&rule.name, &key_values, due, &input_hash);
    let generation_base = if name.len() + GENERATION_CHARS <= MAX_NAME_CHARS {
        name.clone()
    } else {
        build_name(&rule.name, &key_values, due, &input_hash, GENERATION_CHARS)
    };
    Ok(ScheduledExecution { name, input, input_hash, due, generation_base })
}

fn pick(
    rule: &ScheduleRule,
    row: &Map<String, Value>,
    columns: &[String],
    role: &'static str,
) -> Result<Map<String, Value>, ExecutionError> {
    columns
        .iter()
        .map(|c| match row.get(c) {
            Some(v) => Ok((c.clone(), v.clone())),
            None => Err(ExecutionError { rule: rule.name.clone(), column: c.clone(), role }),
        })
        .collect()
}

/// The execution input document:
/// `{"rule": NAME, "key": {PK...}, "due": "YYYY-MM-DDTHH:MM:SS[.f]Z", "columns": {INPUT...}}`.
///
/// `due` is RFC 3339 in UTC with `Z`, the form a Wait state's `TimestampPath` requires;
/// columns live under their own object so a column named `due` or `rule` cannot clash.
pub fn execution_input(
    rule: &ScheduleRule,
    key: &Map<String, Value>,
    columns: &Map<String, Value>,
    due: Timestamp,
) -> Value {
    let mut doc = Map::new();
    doc.insert("rule".into(), Value::String(rule.name.clone()));
    doc.insert("key".into(), Value::Object(key.clone()));
    doc.insert("due".into(), Value::String(rfc3339_utc(due)));
    doc.insert("columns".into(), Value::Object(columns.clone()));
    Value::Object(doc)
}

/// `2026-06-10T08:00:00Z`, with a fraction only when the instant has one.
pub fn rfc3339_utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

/// JSON text with object keys sorted at every level and no insignificant whitespace, so the
/// same document always hashes the same whichever map order serde_json was built with.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(out, v);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, v);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Hex SHA-256 of the canonical form of a JSON document (as StartExecution's input).
pub fn input_hash_of(input: &Value) -> String {
    hex(&Sha256::digest(canonical_json(input).as_bytes()))
}

/// The name for (rule, key, due, input): `<rule>-<key>-<yyyymmddThhmmssZ>-<digest16>`.
///
/// The rule part keeps `[0-9A-Za-z_-]` and maps every other character to `_`, cut to 24
/// characters; the key part is the key values joined by `_` when they fit and use only
/// `[0-9A-Za-z_-]`, otherwise `k` and 12 hex digits of the key's digest.
pub fn execution_name(rule: &str, key_values: &[&Value], due: Timestamp, input_hash: &str) -> String {
    build_name(rule, key_values, due, input_hash, 0)
}

/// [`execution_name`] leaving `reserve` characters free at the end.
fn build_name(rule: &str, key_values: &[&Value], due: Timestamp, input_hash: &str, reserve: usize) -> String {
    let key_text = key_text(key_values);
    let digest = identity_digest(rule, &key_text_exact(key_values), due, input_hash);

    let rule_part: String = rule.chars().take(MAX_RULE_CHARS).map(|c| if allowed(c) { c } else { '_' }).collect();
    let key_budget = MAX_NAME_CHARS - reserve - rule_part.len() - DUE_CHARS - NAME_DIGEST_HEX - 3;
    let key_part = if key_text.len() <= key_budget && key_text.chars().all(allowed) {
        key_text
    } else {
        let d = hex(&Sha256::digest(key_text_exact(key_values).as_bytes()));
        format!("k{}", &d[..KEY_DIGEST_HEX])
    };
    let due_part = due.strftime("%Y%m%dT%H%M%SZ").to_string();
    format!("{rule_part}-{key_part}-{due_part}-{}", &digest[..NAME_DIGEST_HEX])
}

/// Characters allowed in execution names that CloudWatch Logs also accepts.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Human form of the key values: strings as they are, other values as JSON.
fn key_text(key_values: &[&Value]) -> String {
    let mut out = String::new();
    for (i, v) in key_values.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEPARATOR);
        }
        match v {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&canonical_json(other)),
        }
    }
    out
}

/// Injective form of the key values (a canonical JSON array), for digests.
fn key_text_exact(key_values: &[&Value]) -> String {
    canonical_json(&Value::Array(key_values.iter().map(|v| (*v).clone()).collect()))
}

/// SHA-256 over the length-prefixed parts, so no two different part lists feed the same bytes.
fn identity_digest(rule: &str, key_exact: &str, due: Timestamp, input_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sameday-execution-v1");
    let due_exact = format!("{}.{:09}", due.as_second(), due.subsec_nanosecond());
    for part in [rule, key_exact, &due_exact, input_hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A state machine ARN that cannot be turned into an execution ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{arn:?} is not a state machine ARN ({problem}); expected arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME"
)]
pub struct ArnError {
    pub arn: String,
    pub problem: &'static str,
}

/// The ARN an execution named `name` of `state_machine_arn` has, for StopExecution and
/// DescribeExecution without a lookup:
/// `arn:aws:states:R:A:stateMachine:M` -> `arn:aws:states:R:A:execution:M:NAME`.
///
/// Qualified ARNs (`...:stateMachine:M:version-or-alias`) are rejected: configure the
/// unqualified ARN so that every process derives the same execution ARNs.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> Result<String, ArnError> {
    let bad = |problem| ArnError { arn: state_machine_arn.to_string(), problem };
    let parts: Vec<&str> = state_machine_arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "states", region, account, "stateMachine", machine] => {
            if partition.is_empty() || region.is_empty() || account.is_empty() || machine.is_empty() {
                return Err(bad("empty partition, region, account or name"));
            }
            Ok(format!("arn:{partition}:states:{region}:{account}:execution:{machine}:{name}"))
        }
        ["arn", _, "states", _, _, "stateMachine", _, _] => {
            Err(bad("a version or alias ARN; use the unqualified state machine ARN"))
        }
        ["arn", _, "states", _, _, "execution", ..] => Err(bad("an execution ARN")),
        ["arn", _, "states", ..] => Err(bad("not a stateMachine resource")),
        _ => Err(bad("not a Step Functions ARN")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rule(name: &str, key_columns: &[&str]) -> ScheduleRule {
        serde_json::from_value(json!({
            "name": name, "db": "crm", "table": "scheduled_actions", "key_columns": key_columns,
            "due_column": "send_at", "due_type": "datetime", "time_zone": "Europe/Berlin",
            "input_columns": ["customer_id", "template"],
            "state_machine_arn": "arn:aws:states:eu-central-1:123456789012:stateMachine:send",
        }))
        .unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn valid(name: &str) -> bool {
        !name.is_empty() && name.len() <= MAX_NAME_CHARS && name.chars().all(allowed)
    }

    #[test]
    fn short_names_are_readable() {
        let r = rule("reminders", &["id"]);
        let row = row(json!({"id": 42, "customer_id": 7, "template": "welcome", "send_at": "x"}));
        let ex = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00Z")).unwrap();
        assert!(ex.name.starts_with("reminders-42-20260610T080000Z-"), "{}", ex.name);
        assert_eq!(ex.name.len(), "reminders-42-20260610T080000Z-".len() + NAME_DIGEST_HEX);
        assert_eq!(
            ex.input,
            r#"{"columns":{"customer_id":7,"template":"welcome"},"due":"2026-06-10T08:00:00Z","key":{"id":42},"rule":"reminders"}"#
        );
        assert_eq!(ex.input_hash, input_hash_of(&serde_json::from_str(&ex.input).unwrap()));
        assert_eq!(ex.due, ts("2026-06-10T08:00:00Z"));
    }

    #[test]
    fn composite_keys_follow_key_columns_order() {
        let r = rule("r", &["tenant", "id"]);
        let row = row(json!({"id": 5, "tenant": "acme", "customer_id": 1, "template": "t"}));
        let ex = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00Z")).unwrap();
        assert!(ex.name.starts_with("r-acme_5-20260610T080000Z-"), "{}", ex.name);
        let swapped = rule("r", &["id", "tenant"]);
        let other = scheduled_execution(&swapped, &row, ts("2026-06-10T08:00:00Z")).unwrap();
        assert!(other.name.starts_with("r-5_acme-"), "{}", other.name);
    }

    #[test]
    fn odd_or_long_keys_and_rules_are_digested_but_stay_distinct() {
        let long = "x".repeat(200);
        let due = ts("2026-06-10T08:00:00Z");
        let names: Vec<String> = [
            ("r", json!("a b")),
            ("r", json!("a/b")),
            ("r", json!("ä")),
            ("r", json!(long)),
            ("r", json!(format!("{long}y"))),
            ("rule with spaces and [brackets]*", json!(1)),
            ("rule with spaces and [brackets]?", json!(1)),
            ("a-very-long-rule-name-that-goes-on-and-on", json!(1)),
            ("a-very-long-rule-name-that-goes-on-and-on-and-on", json!(1)),
        ]
        .iter()
        .map(|(rule, key)| execution_name(rule, &[key], due, "h"))
        .collect();
        for name in &names {
            assert!(valid(name), "{name}");
        }
        assert!(names[0].starts_with("r-k"), "{}", names[0]);
        assert!(names[5].starts_with("rule_with_spaces_and__br-1-"), "{}", names[5]);
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:#?}");
    }

    #[test]
    fn composite_key_boundaries_do_not_collide() {
        let due = ts("2026-06-10T08:00:00Z");
        let a = execution_name("r", &[&json!("a_b"), &json!("c")], due, "h");
        let b = execution_name("r", &[&json!("a"), &json!("b_c")], due, "h");
        let c = execution_name("r", &[&json!(1)], due, "h");
        let d = execution_name("r", &[&json!("1")], due, "h");
        assert_ne!(a, b);
        assert_ne!(c, d);
    }

    #[test]
    fn sub_second_dues_show_in_input_and_differ_in_name() {
        let r = rule("r", &["id"]);
        let row = row(json!({"id": 1, "customer_id": 1, "template": "t"}));
        let a = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00.250Z")).unwrap();
        let b = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00.251Z")).unwrap();
        assert!(a.input.contains(r#""due":"2026-06-10T08:00:00.25Z""#), "{}", a.input);
        assert_ne!(a.name, b.name);
        assert_eq!(rfc3339_utc(ts("2026-01-01T00:00:00Z")), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn missing_key_or_input_column_names_it() {
        let r = rule("reminders", &["id"]);
        let err = scheduled_execution(&r, &row(json!({"customer_id": 1, "template": "t"})), Timestamp::UNIX_EPOCH)
            .unwrap_err();
        assert_eq!((err.column.as_str(), err.role), ("id", "key"));
        let err = scheduled_execution(&r, &row(json!({"id": 1, "customer_id": 1})), Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedule rule \"reminders\": the row image has no input column \"template\"; \
             check the rule's input_columns against the table"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::from_str(r#"{"b": {"y": 1, "x": [ {"d": 2, "c": 3} ]}, "a": "é\"q"}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":"é\"q","b":{"x":[{"c":3,"d":2}],"y":1}}"#);
        let b: Value = serde_json::from_str(&canonical_json(&a)).unwrap();
        assert_eq!(input_hash_of(&a), input_hash_of(&b));
    }

    #[test]
    fn execution_arn_from_state_machine_arn() {
        let arn = "arn:aws:states:eu-central-1:123456789012:stateMachine:send";
        assert_eq!(
            execution_arn(arn, "reminders-42-x").unwrap(),
            "arn:aws:states:eu-central-1:123456789012:execution:send:reminders-42-x"
        );
        let cn = "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:send";
        assert_eq!(execution_arn(cn, "n").unwrap(), "arn:aws-cn:states:cn-north-1:123456789012:execution:send:n");
        for (bad, problem) in [
            ("send", "not a Step Functions ARN"),
            ("arn:aws:lambda:eu-central-1:123456789012:function:send", "not a Step Functions ARN"),
            ("arn:aws:states:eu-central-1:123456789012:stateMachine:send:prod", "a version or alias ARN"),
            ("arn:aws:states:eu-central-1:123456789012:execution:send:n", "an execution ARN"),
            ("arn:aws:states:eu-central-1:123456789012:activity:send", "not a stateMachine resource"),
            ("arn:aws:states::123456789012:stateMachine:send", "empty partition"),
        ] {
            let err = execution_arn(bad, "n").unwrap_err();
            assert!(err.problem.starts_with(problem), "{bad}: {err}");
            assert!(err.to_string().contains(bad) && err.to_string().contains("stateMachine:NAME"), "{err}");
        }
    }

    #[test]
    fn generations_append_a_number_and_parse_back() {
        let r = rule("reminders", &["id"]);
        let row = row(json!({"id": 42, "customer_id": 7, "template": "welcome"}));
        let ex = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00Z")).unwrap();
        assert_eq!(ex.name_at(0), ex.name);
        assert_eq!(ex.name_at(3), format!("{}-3", ex.name));
        let digest = &ex.name[ex.name.len() - NAME_DIGEST_HEX..];
        assert_eq!(parse_name(&ex.name_at(0)), Some((digest, 0)));
        assert_eq!(parse_name(&ex.name_at(17)), Some((digest, 17)));
        assert_eq!(parse_name(&ex.name_at(MAX_GENERATION)), Some((digest, MAX_GENERATION)));
        for other in ["", "x", "reminders-42-20260610T080000Z", "a-0123456789abcdef-07", "a-0123456789abcdeg"] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_key_that_fills_the_name_is_digested_for_later_generations_only() {
        let r = rule("reminders", &["id"]);
        // 36 characters: exactly the key budget of generation 0 with this rule name.
        let uuid = "b3c1f0a2-1d2e-4f5a-9b8c-7d6e5f4a3b2c";
        let row = row(json!({"id": uuid, "customer_id": 7, "template": "welcome"}));
        let ex = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00Z")).unwrap();
        assert!(ex.name.contains(uuid) && ex.name.len() == MAX_NAME_CHARS, "{}", ex.name);
        let later = ex.name_at(MAX_GENERATION);
        assert!(valid(&later) && !later.contains(uuid), "{later}");
        assert_eq!(parse_name(&later).map(|(d, _)| d), parse_name(&ex.name).map(|(d, _)| d));
    }

    #[test]
    fn the_row_version_travels_in_the_input_outside_the_identity() {
        let r = rule("reminders", &["id"]);
        let row = row(json!({"id": 42, "customer_id": 7, "template": "welcome"}));
        let ex = scheduled_execution(&r, &row, ts("2026-06-10T08:00:00Z")).unwrap();
        let version = RowVersion::Change { server_id: 1, file: "b.000001".into(), pos: 4, gtid: None, index: 0 };
        let sent = ex.input_with(&version);
        assert!(sent.contains(r#""row_version":{"#), "{sent}");
        assert_eq!(identity_of_input(&sent), Some((ex.input_hash.clone(), Some(version))));
        assert_eq!(identity_of_input(&ex.input), Some((ex.input_hash.clone(), None)), "inputs of older releases");
        assert_eq!(identity_of_input("not json"), None);
    }

    fn any_key_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9_-]{0,40}".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            ".{0,120}".prop_map(Value::from),
        ]
    }

    fn any_due() -> impl Strategy<Value = Timestamp> {
        // Year 1000 .. 9000, with sub-second parts.
        (-30_610_224_000i64..221_845_392_000, 0..1_000_000_000i32).prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
    }

    proptest! {
        #[test]
        fn names_are_always_valid(
            rule_name in any::<String>(),
            keys in proptest::collection::vec(any_key_value(), 1..4),
            due in any_due(),
            hash in "[0-9a-f]{64}",
        ) {
            let refs: Vec<&Value> = keys.iter().collect();
            let name = execution_name(&rule_name, &refs, due, &hash);
            prop_assert!(valid(&name), "{name:?} ({} chars)", name.len());
            let base = build_name(&rule_name, &refs, due, &hash, GENERATION_CHARS);
            prop_assert!(valid(&format!("{base}-{MAX_GENERATION}")), "{base:?}");
            prop_assert_eq!(&name, &execution_name(&rule_name, &refs, due, &hash));
        }

        #[test]
        fn same_event_same_name_and_any_change_changes_it(
            id in any_key_value(),
            other_id in any_key_value(),
            due in any_due(),
            shift_ns in 1i64..100_000_000_000,
            template in ".{0,30}",
            other_template in ".{0,30}",
        ) {
            let r = rule("reminders", &["id"]);
            let make = |id: &Value, due: Timestamp, template: &str| {
                let row = row(json!({"id": id, "customer_id": 9, "template": template}));
                scheduled_execution(&r, &row, due).unwrap()
            };
            let base = make(&id, due, &template);
            prop_assert_eq!(&base, &make(&id, due, &template));
            prop_assert!(valid(&base.name));
            if other_id != id {
                prop_assert_ne!(&base.name, &make(&other_id, due, &template).name);
            }
            let later = due + jiff::SignedDuration::from_nanos(shift_ns);
            prop_assert_ne!(&base.name, &make(&id, later, &template).name);
            if other_template != template {
                let changed = make(&id, due, &other_template);
                prop_assert_ne!(&base.input_hash, &changed.input_hash);
                prop_assert_ne!(&base.name, &changed.name);
            }
        }
    }
}
