//! AWS DMS's Kinesis record: `data` (the row after the change; before it for a delete),
//! `metadata`, and for updates a top-level `before-image` (DMS `BeforeImageSettings` with
//! `FieldName: before-image`, `ColumnFilter: all`). `transaction-id` is the GTID sequence
//! number (or the transaction's file offset), as DMS gives a number there. Never aggregated:
//! one record per row change, as DMS writes them.

use std::io::Write;

use sameday_core::envelope::Op;
use sameday_mysql::value::json_text::{format_timestamp, write_json_str};

use super::key::write_key;
use super::{write_image, RowChange};

/// Writes `change` as a DMS record into `buf` and the key's text (for the partition key, the
/// same as the envelope's) into `key_text`.
pub(super) fn encode(buf: &mut Vec<u8>, change: &RowChange<'_>, key_text: &mut String) {
    let (schema, op, txn) = (change.schema, change.op, &change.txn);
    buf.extend_from_slice(b"{\"data\":");
    write_image(buf, schema, if op == Op::Delete { change.before } else { change.after });
    if op == Op::Update {
        buf.extend_from_slice(b",\"before-image\":");
        write_image(buf, schema, change.before);
    }
    let ts = format_timestamp((txn.ts_ms / 1000) as i64, ((txn.ts_ms % 1000) * 1000) as u32, 6);
    let _ = write!(
        buf,
        ",\"metadata\":{{\"timestamp\":\"{ts}\",\"record-type\":\"data\",\"operation\":\"{}\"",
        op.as_str()
    );
    buf.extend_from_slice(b",\"partition-key-type\":\"primary-key\",\"schema-name\":");
    write_json_str(buf, &schema.db);
    buf.extend_from_slice(b",\"table-name\":");
    write_json_str(buf, &schema.table);
    let number = txn.id.rsplit(['-', ':']).next().and_then(|n| n.parse::<u64>().ok());
    match number {
        Some(n) => {
            let _ = write!(buf, ",\"transaction-id\":{n}}}}}");
        }
        None => {
            buf.extend_from_slice(b",\"transaction-id\":");
            write_json_str(buf, txn.id);
            buf.extend_from_slice(b"}}");
        }
    }
    // The key goes into a scratch buffer: DMS records carry it only as the partition key.
    let mut scratch = Vec::new();
    write_key(&mut scratch, schema, change.after.or(change.before), key_text);
}
