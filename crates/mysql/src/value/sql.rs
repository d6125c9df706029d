//! A row read with SQL, in the JSON form the binlog reader gives the same row in its change
//! envelopes (`docs/envelope.md`, [`super::binlog`]).
//!
//! Why it matters: the execution name is a digest of the key, due and input values, so the
//! nightly batch (which SELECTs rows) and the worker (which reads the envelope's row image)
//! start the same execution only if both turn every value into the *same* `serde_json::Value`.
//! The mapping works on the binary protocol's values (prepared statements) and the result
//! set's column metadata; the session must use `time_zone = '+00:00'` (TIMESTAMP values are
//! UTC in the envelope) and a UTF-8 result character set (`SET NAMES utf8mb4`):
//!
//! - integers (and YEAR, `0` for 0000) and BIT(n) as numbers, exact over 64 bits;
//! - DECIMAL as its exact string; FLOAT as the shortest text of the `f32` (what the envelope
//!   prints), then read back as JSON, so `1.1` stays `1.1`; DOUBLE as itself;
//! - DATE `YYYY-MM-DD`, DATETIME `YYYY-MM-DDTHH:MM:SS` plus exactly the column's fraction
//!   digits, TIMESTAMP the same in UTC with `Z`, TIME `[-]HH:MM:SS[.f]` with hours beyond 24;
//!   zero dates as `0000-00-00...`;
//! - text as UTF-8 strings (the server converted them from the column's charset); anything in
//!   the binary charset (BINARY, VARBINARY, BLOB, GEOMETRY) as base64;
//! - ENUM as its label, SET as an array of labels (what the reader writes with the labels
//!   from `binlog_row_metadata=FULL`, or with MINIMAL from `information_schema`);
//! - JSON columns (MySQL's type, or a MariaDB LONGTEXT with a `json_valid` check, named by the
//!   caller) as the document itself when it parses, else as the text.
//!
//! Known differences, all outside what schedule tables use: text whose bytes are invalid in
//! the column's charset (the reader falls back to base64, the server substitutes `?`), and
//! MySQL JSON documents whose binary form prints differently from their text form.

use base64::Engine;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Column, Row, Value as SqlValue};
use serde_json::{Map, Value};

use crate::value::json_text::{ascii_string, push_date, push_datetime, push_time};

/// The `binary` character set: bytes, not text.
const BINARY_CHARSET: u16 = 63;
/// DATETIME/TIMESTAMP/TIME carry at most 6 fraction digits; larger `decimals` means "not fixed".
const MAX_FSP: u8 = 6;

/// How one result column becomes JSON, decided once per result set.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Integers, YEAR, FLOAT, DOUBLE: the value's own type says how.
    Number,
    Bit,
    Decimal,
    Date,
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Time {
        fsp: u8,
    },
    Text,
    Binary,
    Set,
    Json,
    Vector,
}

/// Decodes the rows of one result set into row images.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    columns: Vec<(String, Kind)>,
}

impl RowDecoder {
    /// `is_json_text(name)` says whether a text column holds JSON (MariaDB's JSON columns,
    /// see [`crate::Session::mariadb_json_columns`]).
    pub fn new(columns: &[Column], is_json_text: impl Fn(&str) -> bool) -> Self {
        let columns = columns
            .iter()
            .map(|c| {
                let name = c.name_str().into_owned();
                let kind = kind_of(c, is_json_text(&name));
                (name, kind)
            })
            .collect();
        Self { columns }
    }

    /// The row image of `row` (a row of the result set this decoder was built for).
    pub fn decode(&self, row: Row) -> Map<String, Value> {
        self.decode_values(row.unwrap())
    }

    /// The row image of one row's values, in result-set column order.
    pub fn decode_values(&self, values: Vec<SqlValue>) -> Map<String, Value> {
        self.columns.iter().zip(values).map(|((name, kind), value)| (name.clone(), cell(kind, value))).collect()
    }
}

fn kind_of(c: &Column, json_text: bool) -> Kind {
    use ColumnType::*;
    let flags = c.flags();
    let fsp = c.decimals().min(MAX_FSP);
    match c.column_type() {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_YEAR | MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Kind::Number,
        MYSQL_TYPE_BIT => Kind::Bit,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Kind::Decimal,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Kind::DateTime { fsp },
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp { fsp },
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Kind::Time { fsp },
        MYSQL_TYPE_JSON => Kind::Json,
        MYSQL_TYPE_VECTOR => Kind::Vector,
        MYSQL_TYPE_GEOMETRY => Kind::Binary,
        MYSQL_TYPE_SET => Kind::Set,
        // Result sets describe ENUM and SET columns as strings with a flag.
        _ if flags.contains(ColumnFlags::SET_FLAG) => Kind::Set,
        _ if flags.contains(ColumnFlags::ENUM_FLAG) => Kind::Text,
        _ if c.character_set() == BINARY_CHARSET => Kind::Binary,
        _ if json_text => Kind::Json,
        _ => Kind::Text,
    }
}

fn cell(kind: &Kind, value: SqlValue) -> Value {
    match (kind, value) {
        (_, SqlValue::NULL) => Value::Null,
        (_, SqlValue::Int(i)) => Value::from(i),
        (_, SqlValue::UInt(u)) => Value::from(u),
        // The envelope prints the f32's shortest text; JSON readers take that as a double.
        (_, SqlValue::Float(f)) => {
            serde_json::to_string(&f).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
        }
        (_, SqlValue::Double(d)) => serde_json::Number::from_f64(d).map(Value::Number).unwrap_or(Value::Null),
        (Kind::Bit, SqlValue::Bytes(b)) => Value::from(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))),
        (Kind::Binary, SqlValue::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Set, SqlValue::Bytes(b)) => {
            let text = utf8_or_base64(b);
            match text {
                // SET labels cannot contain commas, so the server's `a,b` splits exactly.
                Value::String(s) if s.is_empty() => Value::Array(Vec::new()),
                Value::String(s) => Value::Array(s.split(',').map(|l| Value::String(l.to_owned())).collect()),
                other => other,
            }
        }
        (Kind::Json, SqlValue::Bytes(b)) => match serde_json::from_slice::<Value>(&b) {
            Ok(doc) => doc,
            Err(_) => utf8_or_base64(b),
        },
        (Kind::Vector, SqlValue::Bytes(b)) => Value::Array(
            b.chunks_exact(4)
                .map(|c| {
                    let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    cell(&Kind::Number, SqlValue::Float(f))
                })
                .collect(),
        ),
        (_, SqlValue::Bytes(b)) => utf8_or_base64(b),
        (Kind::Timestamp { fsp }, SqlValue::Date(y, mo, d, h, mi, s, us)) => Value::String(ascii_string(|out| {
            push_datetime(out, date(y, mo, d), clock(h, mi, s), us, *fsp);
            out.push(b'Z');
        })),
        (Kind::Date, SqlValue::Date(y, mo, d, ..)) => {
            Value::String(ascii_string(|out| push_date(out, u32::from(y), u32::from(mo), u32::from(d))))
        }
        (kind, SqlValue::Date(y, mo, d, h, mi, s, us)) => {
            let fsp = match kind {
                Kind::DateTime { fsp } => *fsp,
                _ => MAX_FSP,
            };
            Value::String(ascii_string(|out| push_datetime(out, date(y, mo, d), clock(h, mi, s), us, fsp)))
        }
        (kind, SqlValue::Time(neg, days, h, m, s, us)) => {
            let fsp = match kind {
                Kind::Time { fsp } => *fsp,
                _ => MAX_FSP,
            };
            let (hours, m, s) = clock(h, m, s);
            Value::String(ascii_string(|out| push_time(out, neg, (days * 24 + hours, m, s), us, fsp)))
        }
    }
}

/// Text is UTF-8 here (the connection's result charset); bytes that are not fall back to
/// base64, as the reader does.
fn utf8_or_base64(b: Vec<u8>) -> Value {
    match String::from_utf8(b) {
        Ok(s) => Value::String(s),
        Err(e) => Value::String(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
    }
}

fn date(y: u16, mo: u8, d: u8) -> (u32, u32, u32) {
    (u32::from(y), u32::from(mo), u32::from(d))
}

fn clock(h: u8, mi: u8, s: u8) -> (u32, u32, u32) {
    (u32::from(h), u32::from(mi), u32::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(ty: ColumnType) -> Column {
        Column::new(ty).with_character_set(45)
    }

    fn one(c: Column, v: SqlValue) -> Value {
        one_json(c, v, false)
    }

    fn one_json(c: Column, v: SqlValue, json_text: bool) -> Value {
        let c = c.with_name(b"c");
        let decoder = RowDecoder::new(std::slice::from_ref(&c), |_| json_text);
        decoder.decode_values(vec![v]).remove("c").unwrap()
    }

    #[test]
    fn numbers_keep_their_exact_value() {
        use ColumnType::*;
        assert_eq!(one(col(MYSQL_TYPE_LONGLONG), SqlValue::UInt(u64::MAX)), json!(u64::MAX));
        assert_eq!(one(col(MYSQL_TYPE_LONGLONG), SqlValue::Int(i64::MIN)), json!(i64::MIN));
        assert_eq!(one(col(MYSQL_TYPE_YEAR), SqlValue::UInt(0)), json!(0));
        assert_eq!(one(col(MYSQL_TYPE_FLOAT), SqlValue::Float(1.1)), json!(1.1));
        assert_eq!(one(col(MYSQL_TYPE_DOUBLE), SqlValue::Double(-2.5e-300)), json!(-2.5e-300));
        assert_eq!(one(col(MYSQL_TYPE_DOUBLE), SqlValue::Double(f64::NAN)), Value::Null);
        assert_eq!(one(col(MYSQL_TYPE_NEWDECIMAL), SqlValue::Bytes(b"-0.50".to_vec())), json!("-0.50"));
        assert_eq!(one(col(MYSQL_TYPE_BIT), SqlValue::Bytes(vec![0xff; 8])), json!(u64::MAX));
        assert_eq!(one(col(MYSQL_TYPE_BIT), SqlValue::Bytes(vec![1, 0])), json!(256));
    }

    #[test]
    fn temporal_values_use_the_envelope_formats() {
        use ColumnType::*;
        let d = |fsp| col(MYSQL_TYPE_DATETIME).with_decimals(fsp);
        assert_eq!(one(d(0), SqlValue::Date(2024, 2, 29, 23, 59, 59, 0)), json!("2024-02-29T23:59:59"));
        assert_eq!(one(d(3), SqlValue::Date(2024, 2, 29, 23, 59, 59, 123_000)), json!("2024-02-29T23:59:59.123"));
        assert_eq!(one(d(6), SqlValue::Date(0, 0, 0, 0, 0, 0, 0)), json!("0000-00-00T00:00:00.000000"));
        let ts = col(MYSQL_TYPE_TIMESTAMP).with_decimals(6);
        assert_eq!(one(ts, SqlValue::Date(2038, 1, 19, 3, 14, 7, 999_999)), json!("2038-01-19T03:14:07.999999Z"));
        assert_eq!(one(col(MYSQL_TYPE_DATE), SqlValue::Date(0, 0, 0, 0, 0, 0, 0)), json!("0000-00-00"));
        let t6 = col(MYSQL_TYPE_TIME).with_decimals(6);
        assert_eq!(one(t6.clone(), SqlValue::Time(true, 0, 0, 0, 0, 1)), json!("-00:00:00.000001"));
        assert_eq!(one(t6, SqlValue::Time(false, 4, 4, 0, 0, 500_000)), json!("100:00:00.500000"));
        assert_eq!(one(col(MYSQL_TYPE_TIME), SqlValue::Time(true, 34, 22, 59, 59, 0)), json!("-838:59:59"));
    }

    #[test]
    fn strings_binaries_enums_sets_and_json() {
        use ColumnType::*;
        let bin = Column::new(MYSQL_TYPE_STRING).with_character_set(BINARY_CHARSET);
        assert_eq!(one(bin, SqlValue::Bytes(vec![0xde, 0xad, 0xbe, 0xef])), json!("3q2+7w=="));
        assert_eq!(one(col(MYSQL_TYPE_VAR_STRING), SqlValue::Bytes("é😀".into())), json!("é😀"));
        let set = col(MYSQL_TYPE_STRING).with_flags(ColumnFlags::SET_FLAG);
        assert_eq!(one(set.clone(), SqlValue::Bytes(b"b,d".to_vec())), json!(["b", "d"]));
        assert_eq!(one(set, SqlValue::Bytes(Vec::new())), json!([]));
        let en = col(MYSQL_TYPE_STRING).with_flags(ColumnFlags::ENUM_FLAG);
        assert_eq!(one(en, SqlValue::Bytes(b"medium".to_vec())), json!("medium"));
        let doc = SqlValue::Bytes(br#"{"a": [1, {"b": null}]}"#.to_vec());
        assert_eq!(one_json(col(MYSQL_TYPE_BLOB), doc.clone(), true), json!({"a": [1, {"b": null}]}));
        assert_eq!(one_json(col(MYSQL_TYPE_BLOB), doc, false), json!(r#"{"a": [1, {"b": null}]}"#));
        assert_eq!(one_json(col(MYSQL_TYPE_BLOB), SqlValue::Bytes(b"{nope".to_vec()), true), json!("{nope"));
        assert_eq!(one(col(MYSQL_TYPE_LONG), SqlValue::NULL), Value::Null);
    }
}
