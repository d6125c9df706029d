//! The row's key: the `key` object of the envelope and the text the partition key is made of.

use sameday_core::envelope::partition_key;
use sameday_mysql::schema::TableSchema;
use sameday_mysql::value::binlog::{write_cell, Cell};

use super::Image;

/// Writes the primary key columns of `image` as a JSON object's members into `buf` and
/// returns the key's text form (`a,b`: strings as they are, other values as their JSON).
pub(super) fn write_key(buf: &mut Vec<u8>, schema: &TableSchema, image: Image<'_>) -> String {
    let mut key_text = String::new();
    for (n, &k) in schema.key.iter().enumerate() {
        if n > 0 {
            buf.push(b',');
            key_text.push(',');
        }
        buf.extend_from_slice(schema.columns[k].json_key.as_bytes());
        let cell = image.get(k).and_then(|c| c.as_ref()).unwrap_or(&Cell::Null);
        let mark = buf.len();
        write_cell(buf, cell);
        match cell {
            Cell::Str(s) => key_text.push_str(s),
            _ => {
                let written = &buf[mark..];
                let s = std::str::from_utf8(written).unwrap_or_default();
                key_text.push_str(s.trim_matches('"'));
            }
        }
    }
    key_text
}

/// The Kinesis partition key of a row of `schema` with key text `key_text`.
pub(super) fn partition_key_of(schema: &TableSchema, key_text: &str) -> String {
    if schema.key.is_empty() {
        // No primary key: keep the whole table on one shard, in commit order.
        partition_key(&schema.db, &schema.table, "")
    } else {
        partition_key(&schema.db, &schema.table, key_text)
    }
}
