//! The rare binlog values, through `mysql_common`'s decoder into an owned [`Cell`]: MySQL's
//! binary JSON, VECTOR, the pre-5.6 temporal and DECIMAL forms, and any column whose
//! metadata the direct path in the parent module does not recognise. Same JSON as the
//! direct path: integers keep their full 64-bit range, DECIMAL stays a string, temporal
//! types keep every fractional digit the column declares, text is converted from its
//! column's character set, and anything binary is base64.

use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;
use mysql_common::value::Value;

use crate::schema::{ColumnInfo, TextKind};
use crate::value::json_text::{
    ascii_string, format_timestamp, push_date, push_datetime, push_time, write_base64, write_f32, write_f64, write_i64,
    write_json_str, write_u64,
};

/// A decoded value, ready to be written as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// A JSON string (text, DECIMAL, temporal, ENUM label).
    Str(String),
    /// Binary data, written as a base64 string.
    Bytes(Vec<u8>),
    /// Already-encoded JSON (JSON columns, SET label arrays, VECTOR arrays).
    Json(String),
}

/// Decodes the value of `col` at the front of `buf`.
pub fn decode_cell(col: &ColumnInfo, buf: &mut ParseBuf<'_>, partial: bool) -> std::io::Result<Cell> {
    let ctx = (col.ty, &col.meta[..], col.unsigned, partial);
    // The decoder ties the metadata's lifetime to the buffer's; decode from a re-borrowed
    // view of the remaining bytes, then advance the caller's buffer by what it consumed.
    let rest: &[u8] = buf.0;
    let mut view = ParseBuf(rest);
    let value = BinlogValue::deserialize(ctx, &mut view)?;
    let consumed = rest.len() - view.0.len();
    buf.0 = &buf.0[consumed..];
    Ok(match value {
        BinlogValue::Value(v) => convert(col, v),
        BinlogValue::Jsonb(j) => match j.parse() {
            Ok(dom) => Cell::Json(serde_json::Value::from(dom).to_string()),
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("JSON value: {e}"))),
        },
        BinlogValue::JsonDiff(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "partial JSON update (binlog_row_value_options=PARTIAL_JSON)",
            ))
        }
    })
}

fn convert(col: &ColumnInfo, v: Value) -> Cell {
    use ColumnType::*;
    match v {
        Value::NULL => Cell::Null,
        Value::Bytes(b) => bytes_cell(col, b),
        // mysql_common reads a signed MEDIUMINT's 3 bytes without sign extension (-1 comes
        // back as 16777215): extend bit 23. Idempotent if the value is already negative.
        Value::Int(i) if col.ty == MYSQL_TYPE_INT24 && !col.unsigned => Cell::Int((i << 40) >> 40),
        // The pre-5.6 TIMESTAMP: seconds since the epoch.
        Value::Int(i) if col.ty == MYSQL_TYPE_TIMESTAMP => Cell::Str(format_timestamp(i, 0, 0)),
        Value::Int(i) => Cell::Int(i),
        Value::UInt(u) => Cell::UInt(u),
        Value::Float(f) => Cell::Float(f),
        Value::Double(d) => Cell::Double(d),
        Value::Date(y, mo, d, h, mi, s, us) => Cell::Str(ascii_string(|out| {
            let date = (u32::from(y), u32::from(mo), u32::from(d));
            match col.ty {
                MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => push_date(out, date.0, date.1, date.2),
                _ => {
                    let digits = if col.ty == MYSQL_TYPE_DATETIME { 0 } else { 6 };
                    push_datetime(out, date, (u32::from(h), u32::from(mi), u32::from(s)), us, digits);
                }
            }
        })),
        Value::Time(neg, days, h, m, s, us) => Cell::Str(ascii_string(|out| {
            let digits = if col.ty == MYSQL_TYPE_TIME { 0 } else { 6 };
            push_time(out, neg, (days * 24 + u32::from(h), u32::from(m), u32::from(s)), us, digits);
        })),
    }
}

fn bytes_cell(col: &ColumnInfo, b: Vec<u8>) -> Cell {
    use ColumnType::*;
    match col.ty {
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => Cell::Str(String::from_utf8(b).unwrap_or_default()),
        MYSQL_TYPE_VECTOR => {
            let floats: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Cell::Json(serde_json::to_string(&floats).expect("floats serialize"))
        }
        _ => match col.text {
            TextKind::Binary => Cell::Bytes(b),
            TextKind::Utf8 | TextKind::Unknown => match String::from_utf8(b) {
                Ok(s) => Cell::Str(s),
                Err(e) => Cell::Bytes(e.into_bytes()),
            },
            TextKind::Encoded(enc) => match enc.decode_without_bom_handling_and_without_replacement(&b) {
                Some(s) => Cell::Str(s.into_owned()),
                None => Cell::Bytes(b),
            },
        },
    }
}

/// Writes `cell` as JSON into `out`.
pub fn write_cell(out: &mut Vec<u8>, cell: &Cell) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Int(i) => write_i64(out, *i),
        Cell::UInt(u) => write_u64(out, *u),
        Cell::Float(f) => write_f32(out, *f),
        Cell::Double(d) => write_f64(out, *d),
        Cell::Str(s) => write_json_str(out, s),
        Cell::Bytes(b) => write_base64(out, b),
        Cell::Json(raw) => out.extend_from_slice(raw.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_write_valid_json() {
        for cell in [
            Cell::Null,
            Cell::Int(i64::MIN),
            Cell::UInt(u64::MAX),
            Cell::Float(1.1),
            Cell::Double(-2.5e300),
            Cell::Bytes(vec![0, 255, 10]),
            Cell::Json("[1,2]".into()),
        ] {
            let mut out = Vec::new();
            write_cell(&mut out, &cell);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
        let mut out = Vec::new();
        write_cell(&mut out, &Cell::UInt(u64::MAX));
        assert_eq!(out, b"18446744073709551615");
    }
}
