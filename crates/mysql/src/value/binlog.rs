//! Binlog values to JSON: one column value of a row image, decoded from the binlog into the
//! form it takes in the JSON envelope. `docs/envelope.md` is the user-facing version of this mapping.
//!
//! Lossless by construction: integers keep their full 64-bit range (JSON numbers printed
//! exactly), DECIMAL stays a string, temporal types keep every fractional digit the
//! column declares, text is converted from its column's character set, and anything
//! binary is base64.

use base64::Engine;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;
use mysql_common::value::Value;

use crate::schema::{ColumnInfo, TextKind};

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
    if col.ty == ColumnType::MYSQL_TYPE_TIME2 {
        return time2_cell(col, buf);
    }
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

/// TIME2 (`TIME(fsp)` since MySQL 5.6 / MariaDB 10.1), decoded here rather than by
/// `mysql_common`, which mis-reads negative values with a fraction (`-123:45:56.78` came out
/// as `501:18:07.99`). The layout (MySQL's `my_time_packed_from_binary`): 3 bytes big-endian
/// `1 sign | 1 unused | 10 hours | 6 minutes | 6 seconds` offset by 0x800000, then 0-3 bytes
/// of fraction; a negative value with a fraction stores the integer part one lower and the
/// fraction as its complement, so that the bytes sort like the times.
fn time2_cell(col: &ColumnInfo, buf: &mut ParseBuf<'_>) -> std::io::Result<Cell> {
    let digits = fsp(col);
    let len = 3 + usize::from(digits).div_ceil(2);
    if buf.0.len() < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "TIME value cut short"));
    }
    let (bytes, rest) = buf.0.split_at(len);
    buf.0 = rest;
    Ok(Cell::Str(time2_text(bytes, digits)))
}

/// The text of one TIME2 value: `[-]HH:MM:SS[.f]`, hours up to 838.
fn time2_text(bytes: &[u8], digits: u8) -> String {
    const INT_OFS: i64 = 0x80_0000;
    let be = |b: &[u8]| b.iter().fold(0i64, |acc, &x| (acc << 8) | i64::from(x));
    let mut int_part = be(&bytes[..3]) - INT_OFS;
    // The fraction in microseconds, with the stored width's scale and sign rule.
    let frac_bytes = &bytes[3..];
    let (mut frac, scale, modulus) = match frac_bytes.len() {
        0 => (0, 0, 1),
        1 => (be(frac_bytes), 10_000, 0x100),
        2 => (be(frac_bytes), 100, 0x1_0000),
        _ => (be(frac_bytes), 1, 0x100_0000),
    };
    if int_part < 0 && frac != 0 {
        int_part += 1;
        frac -= modulus;
    }
    // The packed value: integer part above 24 bits of microseconds.
    let packed = (int_part << 24) + frac * scale;
    let neg = packed < 0;
    let packed = packed.abs();
    let hms = packed >> 24;
    let micros = (packed % (1 << 24)) as u32;
    let (hours, minutes, seconds) = ((hms >> 12) % (1 << 10), (hms >> 6) % (1 << 6), hms % (1 << 6));
    let mut out = format!("{}{hours:02}:{minutes:02}:{seconds:02}", if neg { "-" } else { "" });
    push_fraction(&mut out, micros, digits);
    out
}

fn convert(col: &ColumnInfo, v: Value) -> Cell {
    match v {
        Value::NULL => Cell::Null,
        Value::Bytes(b) => bytes_cell(col, b),
        Value::Int(i) => int_cell(col, i),
        Value::UInt(u) => Cell::UInt(u),
        Value::Float(f) => Cell::Float(f),
        Value::Double(d) => Cell::Double(d),
        Value::Date(y, mo, d, h, mi, s, us) => date_cell(col, (y, mo, d), (h, mi, s, us)),
        Value::Time(neg, days, h, m, s, us) => {
            let digits = match col.ty {
                ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => fsp(col),
                _ => 6,
            };
            let hours = u64::from(days) * 24 + u64::from(h);
            let mut out = format!("{}{hours:02}:{m:02}:{s:02}", if neg { "-" } else { "" });
            push_fraction(&mut out, us, digits);
            Cell::Str(out)
        }
    }
}

fn int_cell(col: &ColumnInfo, i: i64) -> Cell {
    use ColumnType::*;
    match col.ty {
        // mysql_common reads a signed MEDIUMINT's 3 bytes without sign extension (-1 comes
        // back as 16777215): extend bit 23. Idempotent if the value is already negative.
        MYSQL_TYPE_INT24 if !col.unsigned => Cell::Int((i << 40) >> 40),
        MYSQL_TYPE_TIMESTAMP => Cell::Str(format_timestamp(i, 0, 0)),
        MYSQL_TYPE_ENUM => match &col.labels {
            Some(labels) if i >= 1 => {
                labels.0.get(i as usize - 1).map(|l| Cell::Str(l.clone())).unwrap_or(Cell::Int(i))
            }
            // Index 0 is the empty string MySQL stores for an invalid ENUM value.
            Some(_) => Cell::Str(String::new()),
            None => Cell::Int(i),
        },
        _ => Cell::Int(i),
    }
}

/// DATE, DATETIME and (outside their own types) other date values.
fn date_cell(col: &ColumnInfo, (y, mo, d): (u16, u8, u8), (h, mi, s, us): (u8, u8, u8, u32)) -> Cell {
    use ColumnType::*;
    let mut out = String::with_capacity(26);
    match col.ty {
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => return Cell::Str(format!("{y:04}-{mo:02}-{d:02}")),
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => {
            push_datetime(&mut out, (u32::from(y), mo, d), (h, mi, s));
            push_fraction(&mut out, us, fsp(col));
        }
        _ => {
            out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            push_fraction(&mut out, us, 6);
        }
    }
    Cell::Str(out)
}

fn bytes_cell(col: &ColumnInfo, mut b: Vec<u8>) -> Cell {
    use ColumnType::*;
    match col.ty {
        MYSQL_TYPE_YEAR => {
            // The decoder adds 1900 to the stored byte; YEAR's stored 0 means the year 0000.
            let y: i64 = std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
            Cell::Int(if y == 1900 { 0 } else { y })
        }
        MYSQL_TYPE_TIMESTAMP2 => {
            let s = String::from_utf8_lossy(&b);
            let (secs, usec) = match s.split_once('.') {
                Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
                None => (s.parse().unwrap_or(0), 0),
            };
            Cell::Str(format_timestamp(secs, usec, fsp(col)))
        }
        MYSQL_TYPE_BIT => Cell::UInt(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))),
        MYSQL_TYPE_SET => set_cell(col, &b),
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => Cell::Str(String::from_utf8(b).unwrap_or_default()),
        MYSQL_TYPE_VECTOR => {
            let floats: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Cell::Json(serde_json::to_string(&floats).expect("floats serialize"))
        }
        MYSQL_TYPE_GEOMETRY => Cell::Bytes(b),
        // The binlog drops a BINARY(n) value's trailing 0x00 pad bytes; the stored (and
        // SELECTed) value is always n bytes, so pad back to the declared length.
        MYSQL_TYPE_STRING if col.text == TextKind::Binary && col.meta.len() == 2 => {
            let len = ((usize::from(col.meta[0] & 0x30) ^ 0x30) << 4) | usize::from(col.meta[1]);
            if b.len() < len {
                b.resize(len, 0);
            }
            Cell::Bytes(b)
        }
        _ if col.json_text => json_text_cell(col, b),
        _ => text(col.text, b),
    }
}

fn set_cell(col: &ColumnInfo, b: &[u8]) -> Cell {
    let bits = b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    match &col.labels {
        Some(labels) => {
            let chosen: Vec<&str> = labels
                .0
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < 64 && bits & (1u64 << i) != 0)
                .map(|(_, l)| l.as_str())
                .collect();
            Cell::Json(serde_json::to_string(&chosen).expect("strings serialize"))
        }
        None => Cell::UInt(bits),
    }
}

/// A MariaDB JSON column (LONGTEXT + json_valid): validated without building a document and
/// embedded as stored; a document spread over lines is re-serialized so every record stays
/// one line; text that is not JSON after all (the check can be disabled) stays text.
fn json_text_cell(col: &ColumnInfo, b: Vec<u8>) -> Cell {
    if !b.iter().any(|&c| c == b'\n' || c == b'\r') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(&b) {
            Ok(_) => match String::from_utf8(b) {
                Ok(text) => Cell::Json(text),
                Err(e) => text(col.text, e.into_bytes()),
            },
            Err(_) => text(col.text, b),
        };
    }
    match serde_json::from_slice::<serde_json::Value>(&b) {
        Ok(v) => Cell::Json(v.to_string()),
        Err(_) => text(col.text, b),
    }
}

fn text(kind: TextKind, b: Vec<u8>) -> Cell {
    match kind {
        TextKind::Binary => Cell::Bytes(b),
        TextKind::Utf8 | TextKind::Unknown => match String::from_utf8(b) {
            Ok(s) => Cell::Str(s),
            Err(e) => Cell::Bytes(e.into_bytes()),
        },
        TextKind::Encoded(enc) => {
            let (s, _, had_errors) = enc.decode(&b);
            if had_errors {
                Cell::Bytes(b)
            } else {
                Cell::Str(s.into_owned())
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` without the formatting machinery (this runs for every value).
fn push_datetime(out: &mut String, (y, mo, d): (u32, u8, u8), (h, mi, s): (u8, u8, u8)) {
    fn two(out: &mut String, n: u8) {
        out.push(char::from(b'0' + n / 10 % 10));
        out.push(char::from(b'0' + n % 10));
    }
    out.push(char::from(b'0' + (y / 1000 % 10) as u8));
    out.push(char::from(b'0' + (y / 100 % 10) as u8));
    two(out, (y % 100) as u8);
    out.push('-');
    two(out, mo);
    out.push('-');
    two(out, d);
    out.push('T');
    two(out, h);
    out.push(':');
    two(out, mi);
    out.push(':');
    two(out, s);
}

/// Fractional-second digits the column declares (DATETIME(6) -> 6).
fn fsp(col: &ColumnInfo) -> u8 {
    col.meta.first().copied().unwrap_or(0).min(6)
}

fn push_fraction(out: &mut String, micros: u32, digits: u8) {
    if digits == 0 {
        return;
    }
    out.push('.');
    let mut div = 100_000;
    for _ in 0..digits.min(6) {
        out.push(char::from(b'0' + (micros / div % 10) as u8));
        div /= 10;
    }
}

/// A TIMESTAMP as UTC ISO-8601 with `Z`; the zero timestamp stays MySQL's zero date.
pub fn format_timestamp(secs: i64, micros: u32, digits: u8) -> String {
    if secs == 0 && micros == 0 {
        let mut out = "0000-00-00T00:00:00".to_owned();
        push_fraction(&mut out, 0, digits);
        out.push('Z');
        return out;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60);
    push_fraction(&mut out, micros, digits);
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes `cell` as JSON into `out`.
pub fn write_cell(out: &mut Vec<u8>, cell: &Cell) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Cell::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Cell::Float(f) => write_float(out, f64::from(*f), f.is_finite(), Some(*f)),
        Cell::Double(d) => write_float(out, *d, d.is_finite(), None),
        Cell::Str(s) => write_json_str(out, s),
        Cell::Bytes(b) => {
            out.push(b'"');
            let start = out.len();
            let len = base64::encoded_len(b.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            let written = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.push(b'"');
        }
        Cell::Json(raw) => out.extend_from_slice(raw.as_bytes()),
    }
}

fn write_float(out: &mut Vec<u8>, d: f64, finite: bool, single: Option<f32>) {
    if !finite {
        out.extend_from_slice(b"null");
        return;
    }
    // serde_json prints the shortest representation that round-trips (ryu).
    let _ = match single {
        Some(f) => serde_json::to_writer(&mut *out, &f),
        None => serde_json::to_writer(&mut *out, &d),
    };
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = std::io::Write::write_fmt(out, format_args!("\\u{b:04x}"));
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time2_values_keep_sign_and_fraction() {
        // Bytes as the server writes them (my_time_packed_to_binary: an arithmetic shift for
        // the integer part, C's truncating remainder for the fraction).
        let encode = |neg: bool, h: i64, m: i64, s: i64, micros: i64, digits: u8| -> Vec<u8> {
            let packed = (((h << 12) | (m << 6) | s) << 24) + micros;
            let packed = if neg { -packed } else { packed };
            let frac_len = usize::from(digits).div_ceil(2);
            if frac_len == 3 {
                return (packed + 0x8000_0000_0000).to_be_bytes()[2..].to_vec();
            }
            let mut out = ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec();
            let frac = packed % (1 << 24);
            match frac_len {
                1 => out.push((frac / 10_000).rem_euclid(0x100) as u8),
                2 => out.extend_from_slice(&((frac / 100).rem_euclid(0x1_0000) as u16).to_be_bytes()),
                _ => {}
            }
            out
        };
        let cases = [
            (false, 123, 45, 56, 780_000, 2, "123:45:56.78"),
            (true, 123, 45, 56, 780_000, 2, "-123:45:56.78"),
            (true, 0, 0, 0, 10_000, 2, "-00:00:00.01"),
            (true, 0, 0, 1, 0, 2, "-00:00:01.00"),
            (true, 838, 59, 59, 999_900, 4, "-838:59:59.9999"),
            (true, 12, 0, 0, 500_000, 6, "-12:00:00.500000"),
            (false, 0, 0, 0, 0, 0, "00:00:00"),
            (true, 1, 2, 3, 0, 0, "-01:02:03"),
        ];
        for (neg, h, m, s, micros, digits, expected) in cases {
            let bytes = encode(neg, h, m, s, micros, digits);
            assert_eq!(time2_text(&bytes, digits), expected, "{bytes:02x?}");
        }
        // The disk table from MySQL's my_time_packed_from_binary comment.
        assert_eq!(time2_text(&[0x7f, 0xff, 0xff, 0xff], 2), "-00:00:00.01");
        assert_eq!(time2_text(&[0x7f, 0xff, 0xff, 0x9d], 2), "-00:00:00.99");
        assert_eq!(time2_text(&[0x7f, 0xff, 0xff, 0x00], 2), "-00:00:01.00");
        assert_eq!(time2_text(&[0x7f, 0xff, 0xfe, 0xf6], 2), "-00:00:01.10");
        assert_eq!(time2_text(&[0x80, 0x00, 0x00, 0x00], 2), "00:00:00.00");
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(format_timestamp(1_700_000_000, 0, 0), "2023-11-14T22:13:20Z");
        assert_eq!(format_timestamp(1_700_000_000, 120_000, 3), "2023-11-14T22:13:20.120Z");
        assert_eq!(format_timestamp(951_782_400, 5, 6), "2000-02-29T00:00:00.000005Z");
        assert_eq!(format_timestamp(0, 0, 0), "0000-00-00T00:00:00Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\n\u{1}é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }

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
        let mut out = Vec::new();
        write_cell(&mut out, &Cell::Float(1.1));
        assert_eq!(out, b"1.1");
    }
}
