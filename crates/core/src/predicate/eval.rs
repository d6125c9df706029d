//! Evaluation on row images, in SQL's three-valued logic (`None` is unknown), with MySQL's
//! comparison rules as far as values without column types allow (see the parent module note).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::{Collation, Collations, Expr, Literal, Operand};

pub(super) fn evaluate(expr: &Expr, row: &Map<String, Value>, collations: &Collations) -> Option<bool> {
    match expr {
        Expr::And(l, r) => match evaluate(l, row, collations) {
            Some(false) => Some(false),
            left => match (left, evaluate(r, row, collations)) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
        },
        Expr::Or(l, r) => match evaluate(l, row, collations) {
            Some(true) => Some(true),
            left => match (left, evaluate(r, row, collations)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        },
        Expr::Not(inner) => evaluate(inner, row, collations).map(|b| !b),
        Expr::Bool(value) => Some(*value),
        // A missing column is unknown even here, so a misspelt column never matches by accident.
        Expr::IsNull { column, negated } => lookup(row, column).map(|v| v.is_null() != *negated),
        Expr::Compare { left, op, right } => {
            let collation = match (left, right) {
                (Operand::Column(a), Operand::Column(b)) => stricter(collations.of(a), collations.of(b)),
                (Operand::Column(c), _) | (_, Operand::Column(c)) => collations.of(c),
                _ => collations.default,
            };
            let (a, b) = (operand_scalar(left, row)?, operand_scalar(right, row)?);
            compare(&a, &b, collation).map(|ordering| op.holds(ordering))
        }
        Expr::In { column, negated, list } => {
            let value = Scalar::of_value(lookup(row, column)?);
            let collation = collations.of(column);
            let mut unknown = false;
            for literal in list {
                match compare(&value, &Scalar::of_literal(literal), collation) {
                    Some(Ordering::Equal) => return Some(!negated),
                    None => unknown = true,
                    Some(_) => {}
                }
            }
            (!unknown).then_some(*negated)
        }
    }
}

/// MySQL lets a binary collation win a comparison of two columns.
fn stricter(a: Collation, b: Collation) -> Collation {
    if a == Collation::Binary || b == Collation::Binary {
        Collation::Binary
    } else {
        Collation::CaseInsensitive
    }
}

/// Exact name first, then ASCII-case-insensitively: MySQL column names ignore case.
pub(super) fn lookup<'r>(row: &'r Map<String, Value>, column: &str) -> Option<&'r Value> {
    row.get(column).or_else(|| row.iter().find(|(name, _)| name.eq_ignore_ascii_case(column)).map(|(_, v)| v))
}

/// A value as MySQL would compare it: SQL NULL, text, or a number (kept as its decimal text).
enum Scalar<'a> {
    Null,
    Text(Cow<'a, str>),
    Number(Cow<'a, str>),
}

impl<'a> Scalar<'a> {
    fn of_value(value: &'a Value) -> Self {
        match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Number(Cow::Borrowed(if *b { "1" } else { "0" })),
            Value::Number(n) => Scalar::Number(Cow::Owned(n.to_string())),
            Value::String(s) => Scalar::Text(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Scalar::Text(Cow::Owned(value.to_string())),
        }
    }

    fn of_literal(literal: &'a Literal) -> Self {
        match literal {
            Literal::Null => Scalar::Null,
            Literal::Bool(b) => Scalar::Number(Cow::Borrowed(if *b { "1" } else { "0" })),
            Literal::Number(n) => Scalar::Number(Cow::Borrowed(n)),
            Literal::Text(s) => Scalar::Text(Cow::Borrowed(s)),
        }
    }
}

/// `None` for a column the row lacks; a missing column makes the comparison unknown.
fn operand_scalar<'a>(operand: &'a Operand, row: &'a Map<String, Value>) -> Option<Scalar<'a>> {
    match operand {
        Operand::Column(name) => lookup(row, name).map(Scalar::of_value),
        Operand::Literal(literal) => Some(Scalar::of_literal(literal)),
    }
}

fn compare(a: &Scalar<'_>, b: &Scalar<'_>, collation: Collation) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Null, _) | (_, Scalar::Null) => None,
        (Scalar::Text(x), Scalar::Text(y)) => Some(compare_text(x, y, collation)),
        // MySQL compares a string with a number numerically, reading the string's leading number.
        (Scalar::Number(x) | Scalar::Text(x), Scalar::Number(y) | Scalar::Text(y)) => {
            Some(Decimal::parse(x).cmp(&Decimal::parse(y)))
        }
    }
}

fn compare_text(a: &str, b: &str, collation: Collation) -> Ordering {
    if let (Some(x), Some(y)) = (temporal_key(a), temporal_key(b)) {
        return x.cmp(&y);
    }
    match collation {
        Collation::Binary => a.cmp(b),
        Collation::CaseInsensitive => fold(a).cmp(&fold(b)),
    }
}

/// PAD SPACE, then accents (decomposed, combining marks dropped), then case.
fn fold(text: &str) -> String {
    text.trim_end_matches(' ').nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// `YYYY-MM-DD[( |T)HH:MM:SS[.f][Z]]` as a string that sorts in time order, else `None`.
fn temporal_key(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let dashes = b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-');
    if !(digits(0, 4) && digits(5, 7) && digits(8, 10) && dashes) {
        return None;
    }
    let (date, rest) = text.split_at(10);
    if rest.is_empty() {
        return Some(format!("{date} 00:00:00."));
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let rest = rest.strip_suffix('Z').unwrap_or(rest);
    let (hms, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let t = hms.as_bytes();
    let time_ok =
        t.len() == 8 && t[2] == b':' && t[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|&i| t[i].is_ascii_digit());
    if !time_ok || !fraction.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    // Trailing zeros trimmed so `.5` and `.500` are the same instant.
    Some(format!("{date} {hms}.{}", fraction.trim_end_matches('0')))
}

/// An exact decimal: `0.digits × 10^exponent`, digits without leading or trailing zeros
/// (none for zero), so comparing never rounds, even for 20-digit integers or `1e300`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Decimal {
    /// The leading number of `text` as MySQL reads a string in numeric context: leading
    /// whitespace skipped, then sign, digits, fraction, exponent; nothing numeric reads as 0.
    pub(super) fn parse(text: &str) -> Decimal {
        let b = text.trim_start().as_bytes();
        let run = |from: usize| b.get(from..).map_or(0, |r| r.iter().take_while(|d| d.is_ascii_digit()).count());
        let negative = b.first() == Some(&b'-');
        let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
        let int = &b[i..i + run(i)];
        i += int.len();
        let mut fraction: &[u8] = &[];
        if b.get(i) == Some(&b'.') {
            fraction = &b[i + 1..i + 1 + run(i + 1)];
            i += 1 + fraction.len();
        }
        let mut exponent: i64 = 0;
        if !(int.is_empty() && fraction.is_empty()) && matches!(b.get(i), Some(b'e' | b'E')) {
            let signed = usize::from(matches!(b.get(i + 1), Some(b'-' | b'+')));
            let digits = &b[i + 1 + signed..i + 1 + signed + run(i + 1 + signed)];
            // Saturates far beyond any real value; only the order of magnitude matters then.
            let magnitude = digits.iter().fold(0i64, |e, d| (e * 10 + i64::from(d - b'0')).min(1 << 40));
            exponent = if b.get(i + 1) == Some(&b'-') { -magnitude } else { magnitude };
        }
        Decimal::new(negative, int, fraction, exponent)
    }

    fn new(negative: bool, int: &[u8], fraction: &[u8], exponent: i64) -> Decimal {
        let all: Vec<u8> = int.iter().chain(fraction).copied().collect();
        let leading = all.iter().take_while(|&&d| d == b'0').count();
        let trailing = all.iter().rev().take_while(|&&d| d == b'0').count();
        if leading == all.len() {
            return Decimal { negative: false, digits: Vec::new(), exponent: 0 };
        }
        let exponent = exponent + int.len() as i64 - leading as i64;
        Decimal { negative, digits: all[leading..all.len() - trailing].to_vec(), exponent }
    }

    fn sign(&self) -> i8 {
        match (self.digits.is_empty(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_sign = self.sign().cmp(&other.sign());
        if by_sign.is_ne() || self.sign() == 0 {
            return by_sign;
        }
        // Normalized digits compare lexicographically once the magnitudes (exponents) agree.
        let magnitude = self.exponent.cmp(&other.exponent).then_with(|| self.digits.cmp(&other.digits));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
