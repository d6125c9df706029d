//! DECIMAL(p,s) from its binary row-image form (MySQL's `decimal2bin`) to its text, as the
//! server prints it: integer digits without leading zeros (at least `0`), then exactly `s`
//! fraction digits. The value is a JSON string, so no precision is lost to a float.
//!
//! The form: integer then fraction digits in groups of nine, each group 4 bytes big-endian,
//! a leading (integer) or trailing (fraction) partial group in the fewest bytes that hold its
//! digits; the first bit is flipped, and a negative value has every bit inverted.

use crate::value::json_text::{push_digits, write_u64};

const DIG_PER_DEC: usize = 9;
const DIG_TO_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Bytes of a DECIMAL(`precision`, `scale`) value.
pub(super) fn bin_size(precision: u8, scale: u8) -> usize {
    let (intg, frac) = (usize::from(precision.saturating_sub(scale)), usize::from(scale));
    (intg / DIG_PER_DEC) * 4
        + DIG_TO_BYTES[intg % DIG_PER_DEC]
        + (frac / DIG_PER_DEC) * 4
        + DIG_TO_BYTES[frac % DIG_PER_DEC]
}

/// Writes the value in `b` (exactly [`bin_size`] bytes) as a JSON string.
pub(super) fn write_decimal(out: &mut Vec<u8>, b: &[u8], precision: u8, scale: u8) {
    let (intg, frac) = (usize::from(precision.saturating_sub(scale)), usize::from(scale));
    let negative = b[0] & 0x80 == 0;
    let mask: u8 = if negative { 0xff } else { 0 };
    // Big-endian group of `len` bytes, sign-bit restored and inverted back when negative.
    let mut at = 0usize;
    let mut group = |len: usize| -> u64 {
        let mut v = 0u64;
        for (i, &x) in b[at..at + len].iter().enumerate() {
            let x = if at + i == 0 { x ^ 0x80 } else { x };
            v = (v << 8) | u64::from(x ^ mask);
        }
        at += len;
        v
    };
    out.push(b'"');
    if negative {
        out.push(b'-');
    }
    let mut started = false;
    let mut int_group = |out: &mut Vec<u8>, v: u64, digits: usize| {
        if started {
            push_digits(out, v, digits);
        } else if v != 0 {
            write_u64(out, v);
            started = true;
        }
    };
    let lead = intg % DIG_PER_DEC;
    if lead > 0 {
        let v = group(DIG_TO_BYTES[lead]);
        int_group(out, v, lead);
    }
    for _ in 0..intg / DIG_PER_DEC {
        let v = group(4);
        int_group(out, v, DIG_PER_DEC);
    }
    if !started {
        out.push(b'0');
    }
    if frac > 0 {
        out.push(b'.');
        for _ in 0..frac / DIG_PER_DEC {
            let v = group(4);
            push_digits(out, v, DIG_PER_DEC);
        }
        let tail = frac % DIG_PER_DEC;
        if tail > 0 {
            let v = group(DIG_TO_BYTES[tail]);
            push_digits(out, v, tail);
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary form of `text` as the server writes it (`decimal2bin`), for the tests.
    fn encode(text: &str, precision: u8, scale: u8) -> Vec<u8> {
        let (intg, frac) = (usize::from(precision - scale), usize::from(scale));
        let neg = text.starts_with('-');
        let t = text.trim_start_matches('-');
        let (i, f) = t.split_once('.').unwrap_or((t, ""));
        let i = format!("{i:0>intg$}");
        let f = format!("{f:0<frac$}");
        let mut out = Vec::new();
        let mut put = |digits: &str, len: usize| {
            let v: u64 = digits.parse().unwrap_or(0);
            out.extend_from_slice(&v.to_be_bytes()[8 - len..]);
        };
        let lead = intg % 9;
        put(&i[..lead], DIG_TO_BYTES[lead]);
        for g in 0..intg / 9 {
            put(&i[lead + g * 9..lead + g * 9 + 9], 4);
        }
        for g in 0..frac / 9 {
            put(&f[g * 9..g * 9 + 9], 4);
        }
        let tail = frac % 9;
        put(&f[frac - tail..], DIG_TO_BYTES[tail]);
        out[0] ^= 0x80;
        if neg {
            out.iter_mut().for_each(|x| *x = !*x);
        }
        out
    }

    #[test]
    fn decimals_print_as_the_server_prints_them() {
        for (text, p, s) in [
            ("0.00", 12, 2),
            ("123.45", 12, 2),
            ("-123.45", 12, 2),
            ("-0.50", 12, 2),
            ("1000000000.5", 20, 1),
            ("99999999999999999999999999999999999.999999999999999999999999999999", 65, 30),
            ("-12345678901234567890.123456789", 30, 9),
            ("7", 1, 0),
            ("-9", 10, 0),
            ("0.000001", 7, 6),
            ("0", 5, 0),
        ] {
            let b = encode(text, p, s);
            assert_eq!(b.len(), bin_size(p, s), "{text}");
            let mut out = Vec::new();
            write_decimal(&mut out, &b, p, s);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{text}\""), "DECIMAL({p},{s})");
        }
    }
}
