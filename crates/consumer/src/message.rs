//! From a change envelope to an SQS message: FIFO group and de-duplication ids.
//!
//! - `MessageGroupId` is the row's identity (`db.table:<key>`, the same text as the Kinesis
//!   partition key), so one row's changes are delivered in order and different rows in
//!   parallel. SQS allows 128 characters; longer keys become a stable digest.
//! - `MessageDeduplicationId` is the envelope's event id, so a replay inside SQS's 5-minute
//!   window is dropped by SQS itself. Event ids only use characters SQS accepts.
//! - The body is the envelope's JSON in pure ASCII ([`sqs_body`]): SQS refuses characters
//!   outside `#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF` (U+FFFE and U+FFFF, which
//!   MySQL text columns can hold) and some SQS implementations refuse more (emoji), while every
//!   JSON reader (the worker's included) reads `\uXXXX` escapes back as the same text.

use sameday_core::envelope::{fnv1a_128, ChangeEnvelope};

/// SQS limit for MessageGroupId and MessageDeduplicationId.
pub(crate) const MAX_SQS_ID_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FifoIds {
    pub(crate) group_id: String,
    pub(crate) dedup_id: String,
}

/// Characters SQS accepts in group and de-duplication ids: alphanumerics and punctuation.
fn sqs_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c.is_ascii_punctuation()
}

/// An id that SQS accepts: kept as is when short and clean, else a stable digest that
/// keeps a readable prefix (equal inputs always give equal ids).
pub(crate) fn sqs_id(text: &str) -> String {
    if text.len() <= MAX_SQS_ID_CHARS && text.chars().all(sqs_id_char) {
        return text.to_owned();
    }
    let prefix: String = text.chars().filter(|c| sqs_id_char(*c)).take(MAX_SQS_ID_CHARS - 34).collect();
    format!("{prefix}#{:032x}", fnv1a_128(text.as_bytes()))
}

/// `json` with every non-ASCII character (and DEL) written as a JSON `\uXXXX` escape (a surrogate pair
/// beyond the Basic Multilingual Plane). Valid because in JSON text non-ASCII characters can
/// only stand inside strings, where escapes mean the same character. ASCII input (the usual
/// case) is returned as it is, without a copy.
pub(crate) fn sqs_body(json: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    // DEL (U+007F) too: SQS accepts it, but it is a control character some tools mangle.
    if json.bytes().all(|b| b < 0x7f) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    for c in json.chars() {
        if c < '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The length of `sqs_body(json)`, without building it.
pub(crate) fn sqs_body_len(json: &[u8]) -> usize {
    match std::str::from_utf8(json) {
        Ok(text) => text.chars().map(|c| if c < '\u{7f}' { 1 } else { 6 * c.len_utf16() }).sum(),
        // Invalid UTF-8 is not an envelope; its length does not matter.
        Err(_) => json.len(),
    }
}

pub(crate) fn fifo_ids(env: &ChangeEnvelope) -> FifoIds {
    FifoIds { group_id: sqs_id(&env.partition_key()), dedup_id: sqs_id(&env.id) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_ids_are_kept() {
        assert_eq!(sqs_id("app.schedule:42"), "app.schedule:42");
        assert_eq!(sqs_id("0-1-270/0/3"), "0-1-270/0/3");
    }

    #[test]
    fn long_or_unusual_ids_are_digested_stably() {
        let long = format!("app.schedule:{}", "x".repeat(300));
        let a = sqs_id(&long);
        assert!(a.len() <= MAX_SQS_ID_CHARS && a.chars().all(sqs_id_char), "{a}");
        assert_eq!(a, sqs_id(&long));
        assert_ne!(a, sqs_id(&format!("app.schedule:{}", "y".repeat(300))));
        let spaced = sqs_id("app.t:hello world é");
        assert!(spaced.chars().all(sqs_id_char) && spaced.starts_with("app.t:helloworld"), "{spaced}");
        assert_ne!(spaced, sqs_id("app.t:helloworld"), "a digest keeps distinct keys distinct");
        // 4-byte characters in key columns: a group id SQS accepts, distinct per key.
        let (a, b) = (sqs_id("app.t:🎉"), sqs_id("app.t:🎊"));
        assert!(a.chars().all(sqs_id_char) && b.chars().all(sqs_id_char) && a != b, "{a} {b}");
    }

    #[test]
    fn bodies_are_ascii_json_that_reads_back_as_the_same_text() {
        let texts = ["plain", "Grüße 🎉 家", "\u{fffe}\u{ffff}", "ctl \u{1}\u{7f} \u{85}", "\u{10ffff}", "ä\"\\/"];
        for text in texts {
            let json = serde_json::json!({"id": text, "after": {"note": text}}).to_string();
            let body = sqs_body(&json);
            assert!(body.is_ascii(), "{body}");
            assert!(body.chars().all(|c| c == '\t' || c == '\n' || c == '\r' || (' '..='~').contains(&c)), "{body}");
            let back: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(back["after"]["note"], text);
        }
        for text in texts {
            let json = serde_json::json!({"note": text}).to_string();
            assert_eq!(sqs_body_len(json.as_bytes()), sqs_body(&json).len(), "{text}");
        }
        let ascii = r#"{"id":"x"}"#;
        assert!(matches!(sqs_body(ascii), std::borrow::Cow::Borrowed(_)));
        assert_eq!(sqs_body("\"🎉\""), "\"\\ud83c\\udf89\"");
    }

    proptest::proptest! {
        #[test]
        fn any_string_survives_the_body_encoding(text in proptest::prelude::any::<String>()) {
            let json = serde_json::json!({"k": text}).to_string();
            let body = sqs_body(&json);
            proptest::prop_assert!(body.is_ascii());
            let back: serde_json::Value = serde_json::from_str(&body).unwrap();
            proptest::prop_assert_eq!(back["k"].as_str(), Some(text.as_str()));
        }
    }

    #[test]
    fn envelope_ids_map_to_group_and_dedup() {
        let env: ChangeEnvelope = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "0-1-7/0/0", "op": "insert", "db": "app", "table": "schedule",
            "key": {"id": 5}, "before": null, "after": {"id": 5},
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 400, "gtid": "0-1-7", "ts_ms": 1},
            "txn": {"id": "0-1-7", "index": 0}
        }))
        .unwrap();
        assert_eq!(fifo_ids(&env), FifoIds { group_id: "app.schedule:5".into(), dedup_id: "0-1-7/0/0".into() });
    }
}
