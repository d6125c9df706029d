//! The row's key: the `key` object of the envelope and the text the partition key is made of.

use sameday_core::envelope::push_partition_key as push_partition_key_of;
use sameday_mysql::schema::TableSchema;

use super::ImageText;

/// Writes the primary key columns of `image` as a JSON object's members into `buf` and puts
/// the key's text form into `key_text` (`a,b`: strings as they are, other values as their
/// JSON), the form `Envelope::partition_key` reads back from a record.
pub(super) fn write_key(buf: &mut Vec<u8>, schema: &TableSchema, image: Option<&ImageText>, key_text: &mut String) {
    key_text.clear();
    for (n, &k) in schema.key.iter().enumerate() {
        if n > 0 {
            buf.push(b',');
            key_text.push(',');
        }
        buf.extend_from_slice(schema.columns[k].json_key.as_bytes());
        let value = image.and_then(|i| i.value(k)).unwrap_or(b"null");
        buf.extend_from_slice(value);
        push_key_text(key_text, value);
    }
}

/// One key value's text: a JSON string's contents, or the JSON text of anything else.
fn push_key_text(key_text: &mut String, json: &[u8]) {
    match json {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
            key_text.push_str(std::str::from_utf8(inner).unwrap_or_default());
        }
        [b'"', ..] => key_text.push_str(&serde_json::from_slice::<String>(json).unwrap_or_default()),
        _ => key_text.push_str(std::str::from_utf8(json).unwrap_or_default()),
    }
}

/// Appends the Kinesis partition key of a row of `schema` with key text `key_text`.
pub(super) fn push_partition_key(out: &mut String, schema: &TableSchema, key_text: &str) {
    // No primary key: keep the whole table on one shard, in commit order.
    let key_text = if schema.key.is_empty() { "" } else { key_text };
    push_partition_key_of(out, &schema.db, &schema.table, key_text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_is_the_string_itself_or_the_json() {
        let mut t = String::new();
        for json in [&br#""a\"b,c""#[..], br#""plain""#, b"42", b"-1.5", b"null", br#""QUJD""#] {
            push_key_text(&mut t, json);
            t.push('|');
        }
        assert_eq!(t, "a\"b,c|plain|42|-1.5|null|QUJD|");
    }
}
