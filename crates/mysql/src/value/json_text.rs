//! JSON text written straight into an output buffer, without the formatting machinery:
//! strings, base64 of bytes, numbers, and the temporal texts of the envelope. The reader
//! runs these for every value of every row, so none of them allocates.

use base64::Engine;

/// Which bytes a JSON string literal must escape: 0 = none, 1 = `\u00XX`, else the short escape.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = 1;
        b += 1;
    }
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t
};

/// Whether any of the 8 bytes of `w` must be escaped: below 0x20, `"` or `\\` (exact as a
/// whole: the classic "has a byte less than / equal to" word tricks).
pub(crate) fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (control | zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\\')))) != 0
}

/// Whether `bytes` hold anything a JSON string must escape.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    words.any(|w| word_needs_escape(u64::from_le_bytes(w.try_into().expect("8 bytes"))))
        || words.remainder().iter().any(|&b| ESCAPE[usize::from(b)] != 0)
}

/// Escapes, in place, the UTF-8 text `out[from..]` as the inside of a JSON string (what
/// [`write_json_str`] writes between the quotes): the buffer grows by what the escapes add
/// and the text moves back from its end, so nothing is copied elsewhere.
pub fn escape_in_place(out: &mut Vec<u8>, from: usize) {
    if !needs_escape(&out[from..]) {
        return;
    }
    let added = |b: u8| match ESCAPE[usize::from(b)] {
        0 => 0,
        1 => 5,
        _ => 1,
    };
    let extra: usize = out[from..].iter().map(|&b| added(b)).sum();
    let mut read = out.len();
    out.resize(read + extra, 0);
    let mut write = out.len();
    // From the end: move each run of plain bytes in one copy, then the escape before it.
    while read > from {
        let Some(at) = out[from..read].iter().rposition(|&b| ESCAPE[usize::from(b)] != 0).map(|i| from + i) else {
            out.copy_within(from..read, write - (read - from));
            break;
        };
        let run = read - at - 1;
        out.copy_within(at + 1..read, write - run);
        write -= run;
        let b = out[at];
        match ESCAPE[usize::from(b)] {
            1 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                write -= 6;
                out[write..write + 6].copy_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
            esc => {
                write -= 2;
                out[write] = b'\\';
                out[write + 1] = esc;
            }
        }
        read = at;
    }
}

/// Appends `s` as a JSON string literal (quotes included). Runs of plain bytes are skipped
/// eight at a time.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            if !word_needs_escape(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let esc = ESCAPE[usize::from(b)];
        if esc != 0 {
            out.extend_from_slice(&bytes[start..i]);
            if esc == 1 {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            } else {
                out.extend_from_slice(&[b'\\', esc]);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `bytes` as a base64 JSON string.
pub fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

pub fn write_i64(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

pub fn write_u64(out: &mut Vec<u8>, u: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
}

/// The shortest text that reads back as the same number (ryu, as serde_json prints it);
/// `null` for NaN and infinities, which JSON has no words for.
pub fn write_f64(out: &mut Vec<u8>, d: f64) {
    if d.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &d);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// As [`write_f64`], at single precision (a FLOAT column's `1.1` stays `1.1`).
pub fn write_f32(out: &mut Vec<u8>, f: f32) {
    if f.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &f);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// "00" to "99".
static PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `n` as exactly `width` decimal digits (the lowest ones, zero-padded), two at a time.
pub fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let width = width.min(digits.len());
    let mut at = width;
    while at >= 2 {
        let pair = (n % 100) as usize * 2;
        digits[at - 2..at].copy_from_slice(&PAIRS[pair..pair + 2]);
        n /= 100;
        at -= 2;
    }
    if at == 1 {
        digits[0] = b'0' + (n % 10) as u8;
    }
    out.extend_from_slice(&digits[..width]);
}

/// The last two decimal digits of `n`.
fn push2(out: &mut Vec<u8>, n: u32) {
    let pair = (n % 100) as usize * 2;
    out.extend_from_slice(&PAIRS[pair..pair + 2]);
}

/// `YYYY-MM-DD`.
pub fn push_date(out: &mut Vec<u8>, y: u32, m: u32, d: u32) {
    push2(out, y / 100);
    push2(out, y);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
}

/// `HH:MM:SS` (hours may take three digits, as TIME's do).
pub fn push_clock(out: &mut Vec<u8>, h: u32, m: u32, s: u32) {
    if h > 99 {
        push_digits(out, u64::from(h), 3);
    } else {
        push2(out, h);
    }
    out.push(b':');
    push2(out, m);
    out.push(b':');
    push2(out, s);
}

/// `.ffffff` cut to the column's `digits` of fractional seconds; nothing for 0.
pub fn push_fraction(out: &mut Vec<u8>, micros: u32, digits: u8) {
    if digits == 0 {
        return;
    }
    let digits = usize::from(digits.min(6));
    out.push(b'.');
    push_digits(out, u64::from(micros) / 10u64.pow(6 - digits as u32), digits);
}

/// A DATETIME's text, `YYYY-MM-DDTHH:MM:SS[.f]` with `digits` of fraction.
pub fn push_datetime(
    out: &mut Vec<u8>,
    (y, mo, d): (u32, u32, u32),
    (h, mi, s): (u32, u32, u32),
    micros: u32,
    digits: u8,
) {
    push_date(out, y, mo, d);
    out.push(b'T');
    push_clock(out, h, mi, s);
    push_fraction(out, micros, digits);
}

/// A TIME's text, `[-]HH:MM:SS[.f]` (hours past 24 as they are) with `digits` of fraction.
pub fn push_time(out: &mut Vec<u8>, negative: bool, (h, mi, s): (u32, u32, u32), micros: u32, digits: u8) {
    if negative {
        out.push(b'-');
    }
    push_clock(out, h, mi, s);
    push_fraction(out, micros, digits);
}

/// The text `f` writes (the temporal texts above, which are ASCII), as a `String`.
pub fn ascii_string(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::with_capacity(32);
    f(&mut out);
    String::from_utf8(out).expect("temporal texts are ASCII")
}

/// A TIMESTAMP as UTC ISO-8601 with `Z`; the zero timestamp stays MySQL's zero date.
pub fn push_timestamp(out: &mut Vec<u8>, secs: i64, micros: u32, digits: u8) {
    if secs == 0 && micros == 0 {
        out.extend_from_slice(b"0000-00-00T00:00:00");
    } else {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        push_date(out, y.clamp(0, 9999) as u32, m, d);
        out.push(b'T');
        push_clock(out, rem / 3600, rem % 3600 / 60, rem % 60);
    }
    push_fraction(out, micros, digits);
    out.push(b'Z');
}

/// [`push_timestamp`] as a `String`.
pub fn format_timestamp(secs: i64, micros: u32, digits: u8) -> String {
    ascii_string(|out| push_timestamp(out, secs, micros, digits))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_as_serde_reads_them() {
        for s in [
            "",
            "plain",
            "a\"b\\c\n\r\t\u{1}\u{8}\u{c}\u{1f}é😀",
            "\u{7f}\u{fffe}",
            "a long run of plain text, then a \"quote\" and a \\ and \u{1f} near the end\n",
            "12345678\"2345678\\",
            " !#$%&'()*+,-./[]^_`{|}~\u{7f}\u{80}ÿ",
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
        let mut out = Vec::new();
        write_json_str(&mut out, "\u{1}");
        assert_eq!(out, br#""\u0001""#);
    }

    #[test]
    fn the_word_test_finds_every_byte_that_needs_escaping_at_every_place() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = b;
                assert_eq!(word_needs_escape(u64::from_le_bytes(word)), ESCAPE[usize::from(b)] != 0, "{b:#x} at {at}");
                // Next to bytes that could borrow into it.
                let mut word = [0xffu8; 8];
                word[at] = b;
                assert_eq!(word_needs_escape(u64::from_le_bytes(word)), ESCAPE[usize::from(b)] != 0, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn escaping_in_place_writes_what_write_json_str_writes() {
        for s in [
            "",
            "plain",
            "title \"1\" café",
            "a\"b\\c\n\r\t\u{1}\u{8}\u{c}\u{1f}é😀",
            "\"\"\"\"\"\"\"\"\"\"",
            "\"at the start, and at the end\"",
            "\u{1}",
            "a long run of plain text with one \\ in the middle of it and more plain text after",
        ] {
            let mut expected = b"prefix".to_vec();
            write_json_str(&mut expected, s);
            let mut out = b"prefix\"".to_vec();
            let from = out.len();
            out.extend_from_slice(s.as_bytes());
            escape_in_place(&mut out, from);
            out.push(b'"');
            assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap());
        }
    }

    #[test]
    fn needs_escape_sees_every_place() {
        assert!(!needs_escape(b"plain text of more than eight bytes, caf\xc3\xa9"));
        for at in 0..20 {
            let mut text = vec![b'x'; 20];
            text[at] = b'"';
            assert!(needs_escape(&text), "{at}");
            text[at] = 0x1f;
            assert!(needs_escape(&text), "{at}");
        }
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(format_timestamp(1_700_000_000, 0, 0), "2023-11-14T22:13:20Z");
        assert_eq!(format_timestamp(1_700_000_000, 120_000, 3), "2023-11-14T22:13:20.120Z");
        assert_eq!(format_timestamp(951_782_400, 5, 6), "2000-02-29T00:00:00.000005Z");
        assert_eq!(format_timestamp(0, 0, 0), "0000-00-00T00:00:00Z");
        assert_eq!(format_timestamp(2_147_483_647, 999_999, 6), "2038-01-19T03:14:07.999999Z");
    }

    #[test]
    fn digits_and_fractions() {
        let mut out = Vec::new();
        push_clock(&mut out, 838, 59, 59);
        push_fraction(&mut out, 999_900, 4);
        assert_eq!(out, b"838:59:59.9999");
        out.clear();
        push_date(&mut out, 0, 0, 0);
        assert_eq!(out, b"0000-00-00");
        for (n, width, text) in
            [(7u64, 1, "7"), (42, 3, "042"), (2024, 4, "2024"), (123_456, 6, "123456"), (5, 5, "00005")]
        {
            out.clear();
            push_digits(&mut out, n, width);
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn floats_round_trip_and_non_finite_is_null() {
        let mut out = Vec::new();
        write_f32(&mut out, 1.1);
        out.push(b' ');
        write_f64(&mut out, -2.5e300);
        out.push(b' ');
        write_f64(&mut out, f64::NAN);
        assert_eq!(out, b"1.1 -2.5e+300 null");
    }
}
