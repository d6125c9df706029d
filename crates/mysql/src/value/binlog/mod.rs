//! Row-image values from the binlog to the change envelope's JSON, written straight from the
//! event's bytes into the output buffer: no value is copied into a `String` or `Vec` of its
//! own on the way. This runs for every column of every row the reader sees.
//!
//! The common types are read here from their documented row-image layouts (the server's
//! `log_event.cc` / `my_time.cc` / `decimal.cc`); the rare ones (MySQL's binary JSON, VECTOR,
//! and the pre-5.6 temporal and DECIMAL forms) go through `mysql_common` in [`cell`], which
//! allocates. Both produce the same JSON as the nightly batch's SQL mapping ([`super::sql`]);
//! the workspace tests `value_mappings` and `reader_differential` hold them to the server's
//! own rendering.

mod cell;
mod decimal;
mod temporal;

use std::io;

use mysql_common::constants::ColumnType;

pub use cell::{decode_cell, write_cell, Cell};

use crate::schema::{ColumnInfo, TextKind};
use crate::value::json_text::{
    escape_in_place, write_base64, write_f32, write_f64, write_i64, write_json_str, write_u64,
};

fn cut_short(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("{what} value cut short"))
}

/// Takes `n` bytes off the front of `buf`.
fn take<'a>(buf: &mut &'a [u8], n: usize, what: &str) -> io::Result<&'a [u8]> {
    if buf.len() < n {
        return Err(cut_short(what));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A little-endian length of `width` bytes, then that many bytes.
fn take_prefixed<'a>(buf: &mut &'a [u8], width: usize, what: &str) -> io::Result<&'a [u8]> {
    let len = le(take(buf, width, what)?) as usize;
    take(buf, len, what)
}

/// An unsigned little-endian number of up to 8 bytes.
fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// An unsigned big-endian number of up to 8 bytes.
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// Fractional-second digits the column declares (DATETIME(6) -> 6).
fn fsp(col: &ColumnInfo) -> u8 {
    col.meta.first().copied().unwrap_or(0).min(6)
}

/// Reads the value of `col` at the front of `buf` (advancing it) and writes it as JSON into
/// `out`. `partial` marks a MySQL partial JSON update of this column.
pub fn write_value(col: &ColumnInfo, buf: &mut &[u8], partial: bool, out: &mut Vec<u8>) -> io::Result<()> {
    use ColumnType::*;
    let meta = &col.meta[..];
    match col.ty {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG => {
            let width = match col.ty {
                MYSQL_TYPE_TINY => 1,
                MYSQL_TYPE_SHORT => 2,
                MYSQL_TYPE_INT24 => 3,
                MYSQL_TYPE_LONG => 4,
                _ => 8,
            };
            let v = le(take(buf, width, "integer")?);
            if col.unsigned {
                write_u64(out, v);
            } else {
                let shift = 64 - 8 * width;
                write_i64(out, (v << shift) as i64 >> shift);
            }
        }
        MYSQL_TYPE_FLOAT => {
            let b = take(buf, 4, "FLOAT")?;
            write_f32(out, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        MYSQL_TYPE_DOUBLE => {
            let b = take(buf, 8, "DOUBLE")?;
            write_f64(out, f64::from_le_bytes(b.try_into().expect("8 bytes")));
        }
        MYSQL_TYPE_YEAR => {
            // The stored byte counts from 1900; 0 is the year 0000.
            let y = take(buf, 1, "YEAR")?[0];
            write_u64(out, if y == 0 { 0 } else { 1900 + u64::from(y) });
        }
        MYSQL_TYPE_NEWDATE | MYSQL_TYPE_DATE => temporal::write_date(out, take(buf, 3, "DATE")?),
        MYSQL_TYPE_DATETIME2 => {
            let fsp = fsp(col);
            temporal::write_datetime2(out, take(buf, 5 + temporal::fraction_len(fsp), "DATETIME")?, fsp);
        }
        MYSQL_TYPE_TIMESTAMP2 => {
            let fsp = fsp(col);
            temporal::write_timestamp2(out, take(buf, 4 + temporal::fraction_len(fsp), "TIMESTAMP")?, fsp);
        }
        MYSQL_TYPE_TIME2 => {
            let fsp = fsp(col);
            temporal::write_time2(out, take(buf, 3 + temporal::fraction_len(fsp), "TIME")?, fsp);
        }
        MYSQL_TYPE_NEWDECIMAL if meta.len() >= 2 => {
            let (precision, scale) = (meta[0], meta[1]);
            decimal::write_decimal(out, take(buf, decimal::bin_size(precision, scale), "DECIMAL")?, precision, scale);
        }
        MYSQL_TYPE_BIT if meta.len() >= 2 => {
            let bits = usize::from(meta[1]) * 8 + usize::from(meta[0]);
            let b = take(buf, bits.div_ceil(8), "BIT")?;
            write_u64(out, be(b));
        }
        MYSQL_TYPE_ENUM if meta.len() >= 2 => {
            let i = le(take(buf, usize::from(meta[1]), "ENUM")?);
            match &col.labels {
                // Index 0 is the empty string MySQL stores for an invalid ENUM value.
                Some(_) if i == 0 => out.extend_from_slice(b"\"\""),
                Some(labels) => match labels.0.get(i as usize - 1) {
                    Some(label) => write_json_str(out, label),
                    None => write_u64(out, i),
                },
                None => write_u64(out, i),
            }
        }
        MYSQL_TYPE_SET if meta.len() >= 2 => {
            let bits = le(take(buf, usize::from(meta[1]), "SET")?);
            match &col.labels {
                Some(labels) => {
                    out.push(b'[');
                    let chosen = labels.0.iter().take(64).enumerate().filter(|(i, _)| bits & (1u64 << i) != 0);
                    for (n, (_, label)) in chosen.enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        write_json_str(out, label);
                    }
                    out.push(b']');
                }
                None => write_u64(out, bits),
            }
        }
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING if meta.len() >= 2 => {
            let max = usize::from(meta[0]) | usize::from(meta[1]) << 8;
            let b = take_prefixed(buf, if max < 256 { 1 } else { 2 }, "string")?;
            write_text(col, b, out);
        }
        // A type byte of 0 (never written by current servers) reads its length differently:
        // left to mysql_common.
        MYSQL_TYPE_STRING if meta.len() >= 2 && meta[0] != 0 => {
            let (byte0, byte1) = (usize::from(meta[0]), usize::from(meta[1]));
            // CHAR(n) of more than 255 bytes keeps the high bits of n in the type byte.
            let max = if byte0 & 0x30 != 0x30 { byte1 | ((byte0 & 0x30) ^ 0x30) << 4 } else { byte1 };
            let b = take_prefixed(buf, if max < 256 { 1 } else { 2 }, "string")?;
            if col.text == TextKind::Binary && b.len() < max {
                // The binlog drops a BINARY(n) value's trailing 0x00 pad bytes; the stored
                // (and SELECTed) value is always n bytes, so pad back to the declared length.
                let mut padded = [0u8; 1024];
                let n = max.min(padded.len());
                padded[..b.len()].copy_from_slice(b);
                write_base64(out, &padded[..n]);
            } else {
                write_text(col, b, out);
            }
        }
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB
            if !meta.is_empty() && (1..=4).contains(&meta[0]) =>
        {
            let b = take_prefixed(buf, usize::from(meta[0]), "BLOB")?;
            write_text(col, b, out);
        }
        MYSQL_TYPE_GEOMETRY if !meta.is_empty() && (1..=4).contains(&meta[0]) => {
            write_base64(out, take_prefixed(buf, usize::from(meta[0]), "GEOMETRY")?);
        }
        // MySQL's binary JSON, VECTOR, the pre-5.6 temporal and DECIMAL forms.
        _ => {
            let mut view = mysql_common::io::ParseBuf(buf);
            let cell = decode_cell(col, &mut view, partial)?;
            *buf = view.0;
            write_cell(out, &cell);
        }
    }
    Ok(())
}

/// Character and binary column bytes: UTF-8 text as a string, other character sets
/// converted, binary (and text that is not valid in its character set) as base64,
/// MariaDB JSON columns embedded as JSON.
fn write_text(col: &ColumnInfo, b: &[u8], out: &mut Vec<u8>) {
    if col.json_text && write_json_text(b, out) {
        return;
    }
    match col.text {
        TextKind::Binary => write_base64(out, b),
        TextKind::Utf8 | TextKind::Unknown => match std::str::from_utf8(b) {
            Ok(s) => write_json_str(out, s),
            Err(_) => write_base64(out, b),
        },
        TextKind::Encoded(enc) => write_encoded(out, enc, b),
    }
}

/// Text in another character set (latin1, ...), converted to UTF-8 straight into `out`;
/// base64 when it is not valid in its character set.
fn write_encoded(out: &mut Vec<u8>, enc: &'static encoding_rs::Encoding, b: &[u8]) {
    // ASCII reads the same in the ASCII-compatible character sets the server has (latin1,
    // cp1250, ...), and is UTF-8 already.
    if enc.is_ascii_compatible() && b.is_ascii() {
        return write_json_str(out, std::str::from_utf8(b).unwrap_or_default());
    }
    let mut decoder = enc.new_decoder_without_bom_handling();
    let Some(room) = decoder.max_utf8_buffer_length_without_replacement(b.len()) else {
        return write_base64(out, b);
    };
    let start = out.len();
    out.push(b'"');
    let text = out.len();
    out.resize(text + room, 0);
    let (result, _, written) = decoder.decode_to_utf8_without_replacement(b, &mut out[text..], true);
    out.truncate(text + written);
    if result != encoding_rs::DecoderResult::InputEmpty {
        out.truncate(start);
        return write_base64(out, b);
    }
    escape_in_place(out, text);
    out.push(b'"');
}

/// A MariaDB JSON column (LONGTEXT + json_valid): validated without building a document and
/// embedded as stored; a document spread over lines is re-serialized so every record stays
/// one line. `false` when it is not JSON after all (the check can be disabled): then it is text.
fn write_json_text(b: &[u8], out: &mut Vec<u8>) -> bool {
    if std::str::from_utf8(b).is_err() {
        return false;
    }
    if !b.iter().any(|&c| c == b'\n' || c == b'\r') {
        if !crate::value::json_check::is_json(b) {
            return false;
        }
        out.extend_from_slice(b);
        return true;
    }
    match serde_json::from_slice::<serde_json::Value>(b) {
        Ok(v) => serde_json::to_writer(&mut *out, &v).is_ok(),
        Err(_) => false,
    }
}
