//! Row changes to wire records: the sameday envelope (`docs/envelope.md`, [`envelope`]) or
//! AWS DMS's Kinesis JSON ([`dms`]).
//!
//! Encoding is a stage of its own, apart from decoding: the decoder hands each decoded row
//! over as a borrowed [`RowChange`] (its images' JSON text still in the decoder's reused
//! buffers) and gets back the record's bytes and partition key. Both formats take the partition key from the same
//! function, so switching formats never moves a row to another shard or reorders it.

mod dms;
mod envelope;
mod key;

use sameday_core::envelope::Op;
use sameday_core::BinlogPosition;
use sameday_mysql::schema::TableSchema;

use crate::kinesis::config::RecordFormat;

/// One row image as JSON text: the members of its JSON object (`"name":value`, comma
/// separated, every column in the image), and where each column's value sits. The decoder
/// writes it straight from the event's bytes and reuses it from row to row; the encoders copy
/// it out whole, or value by value when the filter excludes columns.
#[derive(Debug, Default)]
pub(crate) struct ImageText {
    pub text: Vec<u8>,
    /// Per column of the table map: the value's byte range in `text`; `None` = not in the image.
    pub spans: Vec<Option<(u32, u32)>>,
}

impl ImageText {
    /// Empties the image for a row of `columns` columns, keeping the buffers.
    pub(crate) fn clear(&mut self, columns: usize) {
        self.text.clear();
        self.spans.clear();
        self.spans.resize(columns, None);
    }

    /// The JSON text of column `i`'s value, if the image has the column.
    pub(crate) fn value(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).copied().flatten().map(|(a, b)| &self.text[a as usize..b as usize])
    }
}

/// The transaction a row belongs to, as the records name it.
pub(crate) struct TxnRef<'a> {
    /// GTID, or `file:pos` of the transaction's first event.
    pub id: &'a str,
    pub gtid: Option<&'a str>,
    /// Commit time, ms since the epoch.
    pub ts_ms: u64,
}

/// A decoded row change, borrowed from the decoder for the time of its encoding.
pub(crate) struct RowChange<'a> {
    pub schema: &'a TableSchema,
    pub op: Op,
    /// `TXN/EVENT/ROW` (see the decoder).
    pub id: &'a str,
    pub server_id: u32,
    /// Where the rows event sits.
    pub position: &'a BinlogPosition,
    pub txn: TxnRef<'a>,
    /// The row's index within its transaction.
    pub index: u64,
    pub before: Option<&'a ImageText>,
    pub after: Option<&'a ImageText>,
}

/// Encodes rows in one format into the record's buffers.
pub(crate) struct Encoder {
    format: RecordFormat,
    key_text: String,
}

impl Encoder {
    pub(crate) fn new(format: RecordFormat) -> Self {
        Self { format, key_text: String::new() }
    }

    /// Whether an update that changes the primary key is written as a delete and an insert
    /// (the sameday envelope) or as one update (DMS's format, as DMS writes it).
    pub(crate) fn splits_key_changes(&self) -> bool {
        self.format == RecordFormat::Sameday
    }

    /// Writes the record of `change` into `data` and its Kinesis partition key into
    /// `partition_key` (both emptied first, so a recycled record's buffers serve again).
    pub(crate) fn encode(&mut self, change: &RowChange<'_>, data: &mut Vec<u8>, partition_key: &mut String) {
        data.clear();
        match self.format {
            RecordFormat::Sameday => envelope::encode(data, change, &mut self.key_text),
            RecordFormat::Dms => dms::encode(data, change, &mut self.key_text),
        }
        partition_key.clear();
        key::push_partition_key(partition_key, change.schema, &self.key_text);
    }
}

/// Writes an image as a JSON object (columns the filter excludes left out), or `null`.
fn write_image(buf: &mut Vec<u8>, schema: &TableSchema, image: Option<&ImageText>) {
    let Some(image) = image else {
        buf.extend_from_slice(b"null");
        return;
    };
    buf.push(b'{');
    if !schema.has_excluded_columns() {
        buf.extend_from_slice(&image.text);
    } else {
        let mut first = true;
        for (i, col) in schema.columns.iter().enumerate() {
            let Some(value) = image.value(i) else { continue };
            if col.excluded {
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend_from_slice(col.json_key.as_bytes());
            buf.extend_from_slice(value);
        }
    }
    buf.push(b'}');
}
