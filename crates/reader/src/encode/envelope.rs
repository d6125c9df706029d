//! The sameday change envelope (`docs/envelope.md`), written straight into the record buffer.

use sameday_core::envelope::ENVELOPE_VERSION;
use sameday_mysql::value::json_text::{write_json_str, write_u64};

use super::key::write_key;
use super::{write_image, RowChange};

/// Writes `change` as an envelope into `buf` and the key's text into `key_text`. Numbers go
/// in without the formatting machinery: this runs for every row.
pub(super) fn encode(buf: &mut Vec<u8>, change: &RowChange<'_>, key_text: &mut String) {
    let schema = change.schema;
    buf.extend_from_slice(b"{\"v\":");
    write_u64(buf, u64::from(ENVELOPE_VERSION));
    buf.extend_from_slice(b",\"id\":");
    write_json_str(buf, change.id);
    buf.extend_from_slice(b",\"op\":\"");
    buf.extend_from_slice(change.op.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"db\":");
    write_json_str(buf, &schema.db);
    buf.extend_from_slice(b",\"table\":");
    write_json_str(buf, &schema.table);
    buf.extend_from_slice(b",\"key\":{");
    write_key(buf, schema, change.after.or(change.before), key_text);
    buf.extend_from_slice(b"},\"before\":");
    write_image(buf, schema, change.before);
    buf.extend_from_slice(b",\"after\":");
    write_image(buf, schema, change.after);
    buf.extend_from_slice(b",\"source\":{\"server_id\":");
    write_u64(buf, u64::from(change.server_id));
    buf.extend_from_slice(b",\"file\":");
    write_json_str(buf, &change.position.file);
    buf.extend_from_slice(b",\"pos\":");
    write_u64(buf, change.position.pos);
    buf.extend_from_slice(b",\"gtid\":");
    match change.txn.gtid {
        Some(g) => write_json_str(buf, g),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"ts_ms\":");
    write_u64(buf, change.txn.ts_ms);
    buf.extend_from_slice(b"},\"txn\":{\"id\":");
    write_json_str(buf, change.txn.id);
    buf.extend_from_slice(b",\"index\":");
    write_u64(buf, change.index);
    buf.extend_from_slice(b"}}");
}
