//! The sameday change envelope (`docs/envelope.md`), written straight into the record buffer.

use std::io::Write;

use sameday_core::envelope::ENVELOPE_VERSION;
use sameday_mysql::value::json_text::write_json_str;

use super::key::write_key;
use super::{write_image, RowChange};

/// Writes `change` as an envelope into `buf` and the key's text into `key_text`.
pub(super) fn encode(buf: &mut Vec<u8>, change: &RowChange<'_>, key_text: &mut String) {
    let schema = change.schema;
    let _ = write!(buf, "{{\"v\":{ENVELOPE_VERSION},\"id\":");
    write_json_str(buf, change.id);
    let _ = write!(buf, ",\"op\":\"{}\",\"db\":", change.op.as_str());
    write_json_str(buf, &schema.db);
    buf.extend_from_slice(b",\"table\":");
    write_json_str(buf, &schema.table);
    buf.extend_from_slice(b",\"key\":{");
    write_key(buf, schema, change.after.or(change.before), key_text);
    buf.extend_from_slice(b"},\"before\":");
    write_image(buf, schema, change.before);
    buf.extend_from_slice(b",\"after\":");
    write_image(buf, schema, change.after);
    let _ = write!(buf, ",\"source\":{{\"server_id\":{},\"file\":", change.server_id);
    write_json_str(buf, &change.position.file);
    let _ = write!(buf, ",\"pos\":{},\"gtid\":", change.position.pos);
    match change.txn.gtid {
        Some(g) => write_json_str(buf, g),
        None => buf.extend_from_slice(b"null"),
    }
    let _ = write!(buf, ",\"ts_ms\":{}}},\"txn\":{{\"id\":", change.txn.ts_ms);
    write_json_str(buf, change.txn.id);
    let _ = write!(buf, ",\"index\":{}}}}}", change.index);
}
