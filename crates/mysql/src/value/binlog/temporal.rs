//! DATE, DATETIME(fsp), TIMESTAMP(fsp) and TIME(fsp) from their row-image bytes to the
//! envelope's text, following the server's own unpacking (`my_datetime_packed_from_binary`,
//! `my_timestamp_from_binary`, `my_time_packed_from_binary` in MySQL's `my_time.cc`).

use super::be;
use crate::value::json_text::{push_date, push_datetime, push_time, push_timestamp};

/// Bytes of the fractional part for `fsp` digits (0-6).
pub(super) fn fraction_len(fsp: u8) -> usize {
    usize::from(fsp.min(6)).div_ceil(2)
}

/// The fraction in microseconds as stored after the integer part (big-endian, signed,
/// scaled by its width).
fn fraction(bytes: &[u8]) -> i64 {
    match bytes.len() {
        0 => 0,
        1 => i64::from(bytes[0] as i8) * 10_000,
        2 => i64::from(i16::from_be_bytes([bytes[0], bytes[1]])) * 100,
        _ => (be(&bytes[..3]) as i64) << 40 >> 40,
    }
}

/// DATE: 3 bytes little-endian, `year << 9 | month << 5 | day`.
pub(super) fn write_date(out: &mut Vec<u8>, b: &[u8]) {
    let v = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
    out.push(b'"');
    push_date(out, v >> 9, (v >> 5) & 15, v & 31);
    out.push(b'"');
}

/// DATETIME2: 5 bytes big-endian offset by 2^39 (`ym*13 | day` above `h|m|s` bits), then the
/// fraction; written as `YYYY-MM-DDTHH:MM:SS[.f]`.
pub(super) fn write_datetime2(out: &mut Vec<u8>, b: &[u8], fsp: u8) {
    let int_part = be(&b[..5]) as i64 - 0x80_0000_0000;
    let micros = fraction(&b[5..]).unsigned_abs() as u32;
    let (ymd, hms) = ((int_part >> 17) as u64, (int_part % (1 << 17)) as u64);
    let ym = ymd >> 5;
    out.push(b'"');
    let date = ((ym / 13) as u32, (ym % 13) as u32, (ymd % 32) as u32);
    push_datetime(out, date, ((hms >> 12) as u32, ((hms >> 6) % 64) as u32, (hms % 64) as u32), micros, fsp);
    out.push(b'"');
}

/// TIMESTAMP2: seconds since the epoch (4 bytes big-endian), then the fraction; UTC with `Z`.
pub(super) fn write_timestamp2(out: &mut Vec<u8>, b: &[u8], fsp: u8) {
    let secs = be(&b[..4]) as i64;
    let micros = fraction(&b[4..]).unsigned_abs() as u32;
    out.push(b'"');
    push_timestamp(out, secs, micros, fsp);
    out.push(b'"');
}

/// TIME2: 3 bytes big-endian `1 sign | 1 unused | 10 hours | 6 minutes | 6 seconds` offset
/// by 0x800000, then 0-3 bytes of fraction; a negative value with a fraction stores the
/// integer part one lower and the fraction as its complement, so that the bytes sort like
/// the times. Written as `[-]HH:MM:SS[.f]`, hours up to 838.
pub(super) fn write_time2(out: &mut Vec<u8>, bytes: &[u8], fsp: u8) {
    const INT_OFS: i64 = 0x80_0000;
    let mut int_part = be(&bytes[..3]) as i64 - INT_OFS;
    let frac_bytes = &bytes[3..];
    let (mut frac, scale, modulus) = match frac_bytes.len() {
        0 => (0, 0, 1),
        1 => (be(frac_bytes) as i64, 10_000, 0x100),
        2 => (be(frac_bytes) as i64, 100, 0x1_0000),
        _ => (be(frac_bytes) as i64, 1, 0x100_0000),
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
    out.push(b'"');
    let clock = (((hms >> 12) % (1 << 10)) as u32, ((hms >> 6) % (1 << 6)) as u32, (hms % (1 << 6)) as u32);
    push_time(out, neg, clock, micros, fsp);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time2_text(bytes: &[u8], fsp: u8) -> String {
        let mut out = Vec::new();
        write_time2(&mut out, bytes, fsp);
        String::from_utf8(out).unwrap().trim_matches('"').to_owned()
    }

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
    fn datetime2_and_date_unpack_like_the_server() {
        // 2024-02-29 13:45:07.123456: ym = 2024*13+2, ymd = ym<<5 | 29, hms = 13<<12|45<<6|7.
        let ymd = ((2024 * 13 + 2) << 5) | 29;
        let int_part: i64 = (ymd << 17) | (13 << 12) | (45 << 6) | 7;
        let mut b = (int_part + 0x80_0000_0000).to_be_bytes()[3..].to_vec();
        b.extend_from_slice(&123_456u32.to_be_bytes()[1..]);
        let mut out = Vec::new();
        write_datetime2(&mut out, &b, 6);
        assert_eq!(out, br#""2024-02-29T13:45:07.123456""#);
        out.clear();
        write_datetime2(&mut out, &[0x80, 0, 0, 0, 0], 0);
        assert_eq!(out, br#""0000-00-00T00:00:00""#);
        out.clear();
        let v: u32 = (2024 << 9) | (2 << 5) | 29;
        write_date(&mut out, &v.to_le_bytes()[..3]);
        assert_eq!(out, br#""2024-02-29""#);
    }

    #[test]
    fn timestamp2_fractions_scale_with_their_width() {
        let mut out = Vec::new();
        let mut b = 1_700_000_000u32.to_be_bytes().to_vec();
        b.extend_from_slice(&1200u16.to_be_bytes()); // TIMESTAMP(3) .120 stored as 1200 (x100)
        write_timestamp2(&mut out, &b, 3);
        assert_eq!(out, br#""2023-11-14T22:13:20.120Z""#);
    }
}
