//! Whether bytes are one JSON document (RFC 8259), checked without building anything: a
//! MariaDB JSON column is text whose validity the server checks only while the column keeps
//! its `json_valid` constraint, and the reader embeds it in the envelope as JSON only when it
//! is. This runs for every JSON value of every row; it accepts exactly what `serde_json`
//! accepts when it skips a value (at any depth), as the unit tests compare.

use crate::value::json_text::word_needs_escape;

/// Nesting kept without the heap.
const INLINE_DEPTH: usize = 128;

/// Whether `b` (valid UTF-8) is one JSON value, with optional whitespace around it.
pub fn is_json(b: &[u8]) -> bool {
    let mut p = Parser { b, i: 0 };
    p.value() && {
        p.ws();
        p.i == b.len()
    }
}

/// A stack of container kinds: the first [`INLINE_DEPTH`] levels as bits, deeper ones (rare)
/// on the heap.
#[derive(Default)]
struct Open {
    depth: usize,
    objects: u128,
    deeper: Vec<bool>,
}

impl Open {
    fn push(&mut self, object: bool) {
        if self.depth < INLINE_DEPTH {
            self.objects = (self.objects & !(1 << self.depth)) | (u128::from(object) << self.depth);
        } else {
            self.deeper.push(object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth >= INLINE_DEPTH {
            self.deeper.pop();
        }
    }

    /// Whether the innermost container is an object; `None` outside all containers.
    fn last(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        Some(if d < INLINE_DEPTH { self.objects & (1 << d) != 0 } else { self.deeper[d - INLINE_DEPTH] })
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// A value with its nesting walked iteratively, so deep documents cannot overflow the
    /// stack: `open` holds the containers entered, one bit each (set = object).
    fn value(&mut self) -> bool {
        let mut open = Open::default();
        loop {
            // A value (a container opens here and its first member follows).
            self.ws();
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let object = self.peek() == Some(b'{');
                    self.i += 1;
                    open.push(object);
                    self.ws();
                    if self.eat(if object { b'}' } else { b']' }) {
                        open.pop();
                    } else {
                        if object && !self.member_key() {
                            return false;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    if !self.string() {
                        return false;
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    if !self.number() {
                        return false;
                    }
                }
                Some(b't') => {
                    if !self.literal(b"true") {
                        return false;
                    }
                }
                Some(b'f') => {
                    if !self.literal(b"false") {
                        return false;
                    }
                }
                Some(b'n') => {
                    if !self.literal(b"null") {
                        return false;
                    }
                }
                _ => return false,
            }
            // After a value: the next member, or the end of containers.
            loop {
                let Some(object) = open.last() else { return true };
                self.ws();
                if self.eat(b',') {
                    if object && !self.member_key() {
                        return false;
                    }
                    break;
                }
                if !self.eat(if object { b'}' } else { b']' }) {
                    return false;
                }
                open.pop();
            }
        }
    }

    /// `"key" :` of an object member.
    fn member_key(&mut self) -> bool {
        self.ws();
        if self.peek() != Some(b'"') || !self.string() {
            return false;
        }
        self.ws();
        self.eat(b':')
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let hit = self.b[self.i..].starts_with(word);
        self.i += word.len();
        hit
    }

    /// A string at `"`: no raw control characters, only JSON's escapes. Plain runs are
    /// skipped eight bytes at a time.
    fn string(&mut self) -> bool {
        self.i += 1;
        loop {
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                if word_needs_escape(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
                    break;
                }
                self.i += 8;
            }
            let Some(c) = self.peek() else { return false };
            self.i += 1;
            match c {
                b'"' => return true,
                b'\\' => {
                    let Some(e) = self.peek() else { return false };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return false;
                            }
                            self.i += 4;
                        }
                        _ => return false,
                    }
                }
                0..=0x1f => return false,
                _ => {}
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> bool {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return false,
        }
        if self.eat(b'.') {
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return false;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return false;
            }
            self.digits();
        }
        true
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_accepts(s: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
    }

    #[test]
    fn documents_and_near_misses_are_judged_as_serde_json_judges_them() {
        let cases = [
            "{}",
            "[]",
            "0",
            "-0",
            "1.5e-3",
            "1E+2",
            "true",
            "false",
            "null",
            r#""a\"b\\c\/\u00e9\n""#,
            r#"{"a":[1,2,{"b":null}],"c":"d"}"#,
            " \t\n{ \"a\" : 1 } \r\n",
            r#"{"template":"reminder","user":1}"#,
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "truex",
            "[1 2]",
            "\"a",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"\u{1}\"",
            "{\"a\":1}{",
            "[[[]]]",
            "1 2",
            "\"\\u00\"",
            "[\"\\uD800\"]",
            "{\"a\":1 \"b\":2}",
            "-01",
            "1.e5",
            "[-]",
            "NaN",
            "Infinity",
            "[1,2",
            "{\"a\":[}",
        ];
        for c in cases {
            assert_eq!(is_json(c.as_bytes()), serde_accepts(c), "{c:?}");
        }
        for depth in [INLINE_DEPTH - 1, INLINE_DEPTH, INLINE_DEPTH + 1, INLINE_DEPTH + 2, 1000] {
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(is_json(doc.as_bytes()), serde_accepts(&doc), "depth {depth}");
            let doc = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            assert_eq!(is_json(doc.as_bytes()), serde_accepts(&doc), "object depth {depth}");
        }
    }

    /// Text built from JSON's own pieces, so that most of it is nearly JSON.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", "\"", "\"k\"", "\"v\"", "1", "-", "0", ".", "5", "e", "+", "true", "null",
            " ", "\n", "\\", "\\n", "\\u00e9", "é", "\u{1}", "x",
        ]);
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, rng_seed: proptest::test_runner::RngSeed::Fixed(12), ..ProptestConfig::default() })]
        #[test]
        fn agrees_with_serde_json_on_jsonish_text(s in jsonish()) {
            prop_assert_eq!(is_json(s.as_bytes()), serde_accepts(&s), "{:?}", s);
        }

        #[test]
        fn accepts_whatever_serde_json_writes(v in prop::collection::vec(any::<(String, Option<i64>, f64, bool)>(), 0..8)) {
            let doc = serde_json::to_string(&v).unwrap();
            prop_assert!(is_json(doc.as_bytes()), "{}", doc);
        }
    }
}
