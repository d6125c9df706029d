//! Turns binlog events into change records and transaction commits.
//!
//! The decoder is shared by the live replica stream and `sameday replay` from files, so
//! both produce byte-identical records with identical event ids for the same binlog range.
//!
//! Guarantees:
//! - Records are emitted in binlog (commit) order; a [`Commit`] follows the last record of
//!   its transaction and names the position *after* it, which is the only position the
//!   reader ever checkpoints.
//! - Event ids are `TXN/EVENT/ROW`: the transaction id (GTID, or `file:pos` of its first
//!   event), the index of the rows event inside the transaction (counting events of
//!   filtered tables too, so filters do not change ids) and the row's index in that event.
//! - A row that cannot be decoded becomes a [`DeadLetter`] naming table and position; the
//!   stream goes on. Only a broken stream (unparseable event) is an error.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{Event, EventData, GtidEvent, RowsEventData, TableMapEvent};
use mysql_common::io::ParseBuf;
use mysql_common::misc::raw::int::LenEnc;
use mysql_common::misc::raw::RawInt;
use sameday_core::envelope::{partition_key, Op, ENVELOPE_VERSION};
use sameday_core::position::MariaGtid;
use sameday_core::{BinlogPosition, GtidSet};

use crate::error::DecodeError;
use crate::filter::TableFilter;
use crate::kinesis::config::RecordFormat;
use crate::schema::TableSchema;
use crate::value::{decode_cell, write_cell, write_json_str, Cell};

/// MariaDB event types mysql_common does not parse.
const MARIA_ANNOTATE_ROWS: u8 = 160;
const MARIA_BINLOG_CHECKPOINT: u8 = 161;
const MARIA_GTID: u8 = 162;
const MARIA_GTID_LIST: u8 = 163;
const MARIA_START_ENCRYPTION: u8 = 164;
/// 165 is QUERY_COMPRESSED, 166..=171 the compressed rows events (log_bin_compress=ON).
const MARIA_QUERY_COMPRESSED: u8 = 165;
const MARIA_ROWS_COMPRESSED_LAST: u8 = 171;
/// MariaDB GTID event flag: the transaction is one statement (DDL) with no BEGIN/COMMIT.
const FL_STANDALONE: u8 = 1;

/// One change record, encoded as the wire envelope.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub id: String,
    pub op: Op,
    /// `db.table`, for metrics and dead-letter lines.
    pub table: Arc<str>,
    /// Where the rows event sits (for error messages).
    pub position: BinlogPosition,
}

/// A transaction boundary: everything before it is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The position after the transaction's last event: where to resume.
    pub next: BinlogPosition,
    pub gtid_set: Option<GtidSet>,
    /// Commit time, ms since the epoch.
    pub ts_ms: u64,
    /// Rows of watched tables in the transaction.
    pub rows: u64,
}

/// A row (or event) that could not be turned into a record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub table: String,
    pub position: BinlogPosition,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub enum Output {
    Row(Record),
    Commit(Commit),
    DeadLetter(DeadLetter),
    /// A DDL statement on a watched table (the stream keeps going; counted and logged).
    SchemaChange {
        db: String,
        statement: String,
        position: BinlogPosition,
    },
    /// The server sent a heartbeat: it has nothing newer, so replication lag is zero.
    CaughtUp,
}

#[derive(Debug)]
struct Txn {
    id: String,
    gtid: Option<String>,
    maria: Option<MariaGtid>,
    mysql: Option<(String, u64)>,
    ts_ms: u64,
    /// Started by a MariaDB GTID with FL_STANDALONE, or a MySQL GTID with no BEGIN yet:
    /// a DDL statement that commits itself.
    standalone: bool,
    event_seq: u32,
    rows: u64,
}

pub struct Decoder {
    server_id: u32,
    filter: TableFilter,
    file: String,
    tables: HashMap<u64, Arc<TableSchema>>,
    /// The last schema seen per `db.table`, to notice DDL through table maps.
    shapes: HashMap<String, Arc<TableSchema>>,
    txn: Option<Txn>,
    gtid_set: Option<GtidSet>,
    /// Positions of the TRANSACTION_PAYLOAD whose inner events are being decoded.
    payload: Option<(u64, u64)>,
    /// `db.table.column` of MariaDB JSON columns (LONGTEXT + json_valid), from the server.
    json_columns: std::collections::HashSet<String>,
    format: RecordFormat,
    /// Reused JSON buffer.
    buf: Vec<u8>,
    before: Vec<Option<Cell>>,
    after: Vec<Option<Cell>>,
}

impl Decoder {
    pub fn new(server_id: u32, filter: TableFilter, file: impl Into<String>, gtid_set: Option<GtidSet>) -> Self {
        Self {
            server_id,
            filter,
            file: file.into(),
            tables: HashMap::new(),
            shapes: HashMap::new(),
            txn: None,
            gtid_set,
            payload: None,
            json_columns: Default::default(),
            format: RecordFormat::Sameday,
            buf: Vec::with_capacity(4096),
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn gtid_set(&self) -> Option<&GtidSet> {
        self.gtid_set.as_ref()
    }

    /// Whether the decoder is between transactions (a safe point to stop or resume).
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// Sets the current file (the fake ROTATE at connect, or the next file on replay).
    pub fn set_file(&mut self, file: impl Into<String>) {
        self.file = file.into();
    }

    /// Emits records in `format` (the sameday envelope by default).
    pub fn with_format(mut self, format: RecordFormat) -> Self {
        self.format = format;
        self
    }

    /// Declares which text columns hold JSON (MariaDB stores JSON as LONGTEXT with a
    /// `json_valid` check, which the binlog does not carry). Cached schemas are rebuilt.
    pub fn set_json_columns(&mut self, columns: std::collections::HashSet<String>) {
        if columns != self.json_columns {
            self.json_columns = columns;
            self.tables.clear();
        }
    }

    /// Forgets a transaction cut short by a lost connection; the stream resumes at its start.
    pub fn reset_transaction(&mut self) {
        self.txn = None;
        self.payload = None;
    }

    /// Handles one event, appending what it produced to `out`.
    pub fn handle(&mut self, event: &Event, out: &mut Vec<Output>) -> Result<(), DecodeError> {
        let header = event.header();
        let raw_type = header.event_type_raw();
        // Without a known source (replay from files: `Decoder::new(0, ..)`), the server id
        // is the one that wrote the file, named by its FORMAT_DESCRIPTION event; otherwise
        // file replays would say `source.server_id: 0` where the live stream has the id.
        if self.server_id == 0 && raw_type == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            self.server_id = header.server_id();
        }
        let log_pos = u64::from(header.log_pos());
        let size = u64::from(header.event_size());
        // Events inside a TRANSACTION_PAYLOAD carry no position of their own.
        let (start, end) = match self.payload {
            Some(p) if log_pos == 0 => p,
            _ => {
                self.payload = None;
                (log_pos.saturating_sub(size), log_pos)
            }
        };
        let ts_ms = u64::from(header.timestamp()) * 1000;
        let at = |pos: u64| BinlogPosition::new(self.file.clone(), pos);

        match raw_type {
            MARIA_GTID => return self.maria_gtid(event, start, ts_ms),
            MARIA_GTID_LIST => {
                if self.gtid_set.is_none() {
                    self.gtid_set = Some(parse_maria_gtid_list(event.data()).map_err(|reason| DecodeError::Event {
                        event: "GTID_LIST".into(),
                        position: at(start),
                        reason,
                    })?);
                }
                return Ok(());
            }
            MARIA_ANNOTATE_ROWS | MARIA_BINLOG_CHECKPOINT => return Ok(()),
            MARIA_START_ENCRYPTION => {
                return Err(DecodeError::Unsupported {
                    event: "START_ENCRYPTION".into(),
                    position: at(start),
                    reason: "encrypted binlog files cannot be read from disk; stream them from the server instead"
                        .into(),
                })
            }
            MARIA_QUERY_COMPRESSED..=MARIA_ROWS_COMPRESSED_LAST => {
                return Err(DecodeError::Unsupported {
                    event: format!("MariaDB compressed event (type {raw_type})"),
                    position: at(start),
                    reason: "log_bin_compress=ON is not supported; SET GLOBAL log_bin_compress=OFF on the source"
                        .into(),
                });
            }
            _ => {}
        }

        let data = event.read_data().map_err(|e| DecodeError::Event {
            event: event_name(raw_type),
            position: at(start),
            reason: e.to_string(),
        })?;
        let Some(data) = data else { return Ok(()) };
        match data {
            EventData::RotateEvent(r) => {
                self.file = r.name().into_owned();
            }
            EventData::GtidEvent(g) => self.mysql_gtid(&g, start, ts_ms),
            EventData::AnonymousGtidEvent(_) => {
                self.begin(format!("{}:{start}", self.file), None, None, None, ts_ms, true);
            }
            EventData::QueryEvent(q) => {
                let query = q.query();
                let trimmed = query.trim();
                if trimmed.eq_ignore_ascii_case("BEGIN") {
                    match self.txn.as_mut() {
                        Some(t) => t.standalone = false,
                        None => self.begin(format!("{}:{start}", self.file), None, None, None, ts_ms, false),
                    }
                } else if trimmed.eq_ignore_ascii_case("COMMIT") {
                    self.commit(end, ts_ms, out);
                } else {
                    let schema = q.schema().into_owned();
                    if is_ddl(trimmed) && self.filter.ddl_may_touch(&schema, trimmed) {
                        out.push(Output::SchemaChange {
                            db: schema,
                            statement: trimmed.to_owned(),
                            position: at(start),
                        });
                    }
                    // A statement outside BEGIN..COMMIT (DDL) commits itself.
                    if self.txn.as_ref().is_none_or(|t| t.standalone) {
                        if self.txn.is_none() {
                            self.begin(format!("{}:{start}", self.file), None, None, None, ts_ms, true);
                        }
                        self.commit(end, ts_ms, out);
                    }
                }
            }
            EventData::XidEvent(_) => self.commit(end, ts_ms, out),
            EventData::TableMapEvent(tme) => self.table_map(&tme, event.data(), start)?,
            EventData::RowsEvent(rows) => self.rows(&rows, raw_type, start, out)?,
            EventData::TransactionPayloadEvent(_) => self.payload = Some((start, end)),
            EventData::HeartbeatEvent if self.txn.is_none() => out.push(Output::CaughtUp),
            EventData::IncidentEvent(i) => {
                return Err(DecodeError::Event {
                    event: "INCIDENT".into(),
                    position: at(start),
                    reason: format!(
                        "the source logged an incident ({}); changes around it may be missing from the binlog",
                        i.message()
                    ),
                })
            }
            _ => {}
        }
        Ok(())
    }

    fn maria_gtid(&mut self, event: &Event, start: u64, ts_ms: u64) -> Result<(), DecodeError> {
        let data = event.data();
        if data.len() < 13 {
            return Err(DecodeError::Event {
                event: "GTID".into(),
                position: BinlogPosition::new(self.file.clone(), start),
                reason: format!("MariaDB GTID event has {} bytes, expected at least 13", data.len()),
            });
        }
        let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
        let flags = data[12];
        let gtid = MariaGtid { domain, server: event.header().server_id(), seq };
        let text = gtid.to_string();
        self.begin(text.clone(), Some(text), Some(gtid), None, ts_ms, flags & FL_STANDALONE != 0);
        Ok(())
    }

    fn mysql_gtid(&mut self, g: &GtidEvent, _start: u64, ts_ms: u64) {
        let sid = format_uuid(&g.sid());
        let source = match g.tag() {
            Some(tag) => format!("{sid}:{}", tag.as_str()),
            None => sid,
        };
        let text = format!("{source}:{}", g.gno());
        let commit_us = g.immediate_commit_timestamp();
        let ts = if commit_us > 0 { commit_us / 1000 } else { ts_ms };
        self.begin(text.clone(), Some(text), None, Some((source, g.gno())), ts, true);
    }

    fn begin(
        &mut self,
        id: String,
        gtid: Option<String>,
        maria: Option<MariaGtid>,
        mysql: Option<(String, u64)>,
        ts_ms: u64,
        standalone: bool,
    ) {
        self.txn = Some(Txn { id, gtid, maria, mysql, ts_ms, standalone, event_seq: 0, rows: 0 });
    }

    fn commit(&mut self, end: u64, ts_ms: u64, out: &mut Vec<Output>) {
        let txn = self.txn.take();
        let mut commit_ts = ts_ms;
        let mut rows = 0;
        if let Some(t) = txn {
            commit_ts = commit_ts.max(t.ts_ms);
            rows = t.rows;
            if let Some(g) = t.maria {
                self.gtid_set.get_or_insert_with(GtidSet::empty_mariadb).add_mariadb(g);
            }
            if let Some((source, gno)) = t.mysql {
                self.gtid_set.get_or_insert_with(GtidSet::empty_mysql).add_mysql(&source, gno);
            }
        }
        out.push(Output::Commit(Commit {
            next: BinlogPosition::new(self.file.clone(), end),
            gtid_set: self.gtid_set.clone(),
            ts_ms: commit_ts,
            rows,
        }));
    }

    fn table_map(&mut self, tme: &TableMapEvent<'_>, raw: &[u8], start: u64) -> Result<(), DecodeError> {
        let table_id = tme.table_id();
        let db = tme.database_name();
        let table = tme.table_name();
        if !self.filter.matches(&db, &table) {
            self.tables.remove(&table_id);
            return Ok(());
        }
        // Most transactions re-send the same map; reuse the cached schema when its bytes
        // are unchanged (any DDL changes them: names, types, metadata).
        if let Some(existing) = self.tables.get(&table_id) {
            if existing.raw_table_map == raw {
                return Ok(());
            }
        }
        let filter = &self.filter;
        let json_columns = &self.json_columns;
        let schema = TableSchema::from_table_map(tme, raw, |col| {
            (filter.column_excluded(&db, &table, col), json_columns.contains(&format!("{db}.{table}.{col}")))
        })
        .map_err(|e| match e {
            DecodeError::TableMap { db, table, reason } => DecodeError::Row {
                event: "TABLE_MAP".into(),
                db,
                table,
                position: BinlogPosition::new(self.file.clone(), start),
                reason,
            },
            other => other,
        })?;
        let name = format!("{db}.{table}");
        if let Some(prev) = self.shapes.get(&name) {
            if !prev.same_shape(&schema) {
                tracing::info!(table = %name, columns = schema.columns.len(), "table map changed shape (DDL); new columns apply from here");
            }
        }
        self.shapes.insert(name, schema.clone());
        self.tables.insert(table_id, schema);
        Ok(())
    }

    fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        raw_type: u8,
        start: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), DecodeError> {
        let position = BinlogPosition::new(self.file.clone(), start);
        if self.txn.is_none() {
            // A rows event with no transaction start seen (we joined mid-transaction on
            // replay): give it a file-position identity so ids stay stable.
            self.begin(position.to_string(), None, None, None, 0, false);
        }
        let txn = self.txn.as_mut().expect("transaction opened above");
        let event_seq = txn.event_seq;
        txn.event_seq += 1;
        let Some(schema) = self.tables.get(&rows.table_id()).cloned() else {
            return Ok(()); // a filtered table
        };
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Insert,
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
        };
        let partial = raw_type == EventType::PARTIAL_UPDATE_ROWS_EVENT as u8;
        let ncols = schema.columns.len();
        if rows.num_columns() as usize != ncols {
            out.push(Output::DeadLetter(DeadLetter {
                table: format!("{}.{}", schema.db, schema.table),
                position,
                reason: format!("rows event has {} columns, its table map {}", rows.num_columns(), ncols),
            }));
            return Ok(());
        }
        let before_cols = rows.columns_before_image();
        let after_cols = rows.columns_after_image();
        let mut buf = ParseBuf(rows.rows_data());
        let mut row_in_event = 0u32;
        let table_label: Arc<str> = Arc::from(format!("{}.{}", schema.db, schema.table));
        while !buf.is_empty() {
            let res = (|| -> std::io::Result<()> {
                if let Some(cols) = before_cols {
                    decode_image(&schema, cols, &mut buf, false, &mut self.before)?;
                }
                if let Some(cols) = after_cols {
                    decode_image(&schema, cols, &mut buf, partial, &mut self.after)?;
                }
                Ok(())
            })();
            if let Err(e) = res {
                // The rest of the event cannot be located once one value fails.
                out.push(Output::DeadLetter(DeadLetter {
                    table: table_label.to_string(),
                    position: position.clone(),
                    reason: format!("{} row {row_in_event}: {e}", event_name(raw_type)),
                }));
                return Ok(());
            }
            let txn = self.txn.as_mut().expect("transaction opened above");
            let id = format!("{}/{event_seq}/{row_in_event}", txn.id);
            let index = txn.rows;
            txn.rows += 1;
            let (key_pk, mut data) = encode_record(
                &mut self.buf,
                &schema,
                op,
                &id,
                self.server_id,
                &position,
                txn,
                index,
                before_cols.map(|_| self.before.as_slice()),
                after_cols.map(|_| self.after.as_slice()),
            );
            if self.format == RecordFormat::Dms {
                data = encode_dms(
                    &mut self.buf,
                    &schema,
                    op,
                    txn,
                    before_cols.map(|_| self.before.as_slice()),
                    after_cols.map(|_| self.after.as_slice()),
                );
            }
            out.push(Output::Row(Record {
                partition_key: key_pk,
                data,
                id,
                op,
                table: table_label.clone(),
                position: position.clone(),
            }));
            row_in_event += 1;
        }
        Ok(())
    }
}

/// Decodes one row image into `cells` (one slot per column; `None` = not in the image).
fn decode_image(
    schema: &TableSchema,
    cols: &bitvec::slice::BitSlice<u8>,
    buf: &mut ParseBuf<'_>,
    partial: bool,
    cells: &mut Vec<Option<Cell>>,
) -> std::io::Result<()> {
    cells.clear();
    cells.resize(schema.columns.len(), None);
    let mut partial_json: Option<Vec<bool>> = None;
    if partial {
        let options = *buf.parse::<RawInt<LenEnc>>(())?;
        // PARTIAL_JSON_UPDATES = 1
        if options & 1 != 0 {
            let n = schema.json_columns;
            let bytes: &[u8] = buf.parse(n.div_ceil(8))?;
            partial_json = Some((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect());
        }
    }
    let present = cols.count_ones();
    let null_bytes: &[u8] = buf.parse(present.div_ceil(8))?;
    let mut image_idx = 0usize;
    for (i, col) in schema.columns.iter().enumerate() {
        if !cols.get(i).map(|b| *b).unwrap_or(false) {
            continue;
        }
        let is_null = null_bytes[image_idx / 8] & (1 << (image_idx % 8)) != 0;
        image_idx += 1;
        if is_null {
            cells[i] = Some(Cell::Null);
            continue;
        }
        let is_partial = match (&partial_json, col.json_ordinal) {
            (Some(bits), Some(o)) => bits.get(o).copied().unwrap_or(false),
            _ => false,
        };
        cells[i] = Some(
            decode_cell(col, buf, is_partial)
                .map_err(|e| std::io::Error::new(e.kind(), format!("column {}: {e}", col.name)))?,
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn encode_record(
    buf: &mut Vec<u8>,
    schema: &TableSchema,
    op: Op,
    id: &str,
    server_id: u32,
    position: &BinlogPosition,
    txn: &Txn,
    index: u64,
    before: Option<&[Option<Cell>]>,
    after: Option<&[Option<Cell>]>,
) -> (String, Vec<u8>) {
    use std::io::Write;
    buf.clear();
    let _ = write!(buf, "{{\"v\":{ENVELOPE_VERSION},\"id\":");
    write_json_str(buf, id);
    let _ = write!(buf, ",\"op\":\"{}\",\"db\":", op.as_str());
    write_json_str(buf, &schema.db);
    buf.extend_from_slice(b",\"table\":");
    write_json_str(buf, &schema.table);
    buf.extend_from_slice(b",\"key\":{");
    let key_image = after.or(before).unwrap_or(&[]);
    let mut key_text = String::new();
    for (n, &k) in schema.key.iter().enumerate() {
        if n > 0 {
            buf.push(b',');
            key_text.push(',');
        }
        buf.extend_from_slice(schema.columns[k].json_key.as_bytes());
        let cell = key_image.get(k).and_then(|c| c.as_ref()).unwrap_or(&Cell::Null);
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
    buf.extend_from_slice(b"},\"before\":");
    write_image(buf, schema, before);
    buf.extend_from_slice(b",\"after\":");
    write_image(buf, schema, after);
    let _ = write!(buf, ",\"source\":{{\"server_id\":{server_id},\"file\":");
    write_json_str(buf, &position.file);
    let _ = write!(buf, ",\"pos\":{},\"gtid\":", position.pos);
    match &txn.gtid {
        Some(g) => write_json_str(buf, g),
        None => buf.extend_from_slice(b"null"),
    }
    let _ = write!(buf, ",\"ts_ms\":{}}},\"txn\":{{\"id\":", txn.ts_ms);
    write_json_str(buf, &txn.id);
    let _ = write!(buf, ",\"index\":{index}}}}}");
    let pk = if schema.key.is_empty() {
        // No primary key: keep the whole table on one shard, in commit order.
        partition_key(&schema.db, &schema.table, "")
    } else {
        partition_key(&schema.db, &schema.table, &key_text)
    };
    (pk, buf.clone())
}

/// AWS DMS's Kinesis record: `data` (the row after the change; before it for a delete),
/// `metadata`, and for updates a top-level `before-image` (DMS `BeforeImageSettings` with
/// `FieldName: before-image`, `ColumnFilter: all`). `transaction-id` is the GTID sequence
/// number (or the transaction's file offset), as DMS gives a number there.
fn encode_dms(
    buf: &mut Vec<u8>,
    schema: &TableSchema,
    op: Op,
    txn: &Txn,
    before: Option<&[Option<Cell>]>,
    after: Option<&[Option<Cell>]>,
) -> Vec<u8> {
    use std::io::Write;
    buf.clear();
    buf.extend_from_slice(b"{\"data\":");
    write_image(buf, schema, if op == Op::Delete { before } else { after });
    if op == Op::Update {
        buf.extend_from_slice(b",\"before-image\":");
        write_image(buf, schema, before);
    }
    let ts = crate::value::format_timestamp((txn.ts_ms / 1000) as i64, ((txn.ts_ms % 1000) * 1000) as u32, 6);
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
            write_json_str(buf, &txn.id);
            buf.extend_from_slice(b"}}");
        }
    }
    buf.clone()
}

fn write_image(buf: &mut Vec<u8>, schema: &TableSchema, image: Option<&[Option<Cell>]>) {
    let Some(cells) = image else {
        buf.extend_from_slice(b"null");
        return;
    };
    buf.push(b'{');
    let mut first = true;
    for (col, cell) in schema.columns.iter().zip(cells) {
        let Some(cell) = cell else { continue };
        if col.excluded {
            continue;
        }
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.extend_from_slice(col.json_key.as_bytes());
        write_cell(buf, cell);
    }
    buf.push(b'}');
}

fn parse_maria_gtid_list(data: &[u8]) -> Result<GtidSet, String> {
    if data.len() < 4 {
        return Err("GTID_LIST event too short".into());
    }
    let count = (u32::from_le_bytes(data[0..4].try_into().expect("4 bytes")) & 0x0fff_ffff) as usize;
    let mut set = GtidSet::empty_mariadb();
    for i in 0..count {
        let off = 4 + i * 16;
        let Some(entry) = data.get(off..off + 16) else {
            return Err(format!("GTID_LIST declares {count} entries but holds {}", (data.len() - 4) / 16));
        };
        set.add_mariadb(MariaGtid {
            domain: u32::from_le_bytes(entry[0..4].try_into().expect("4 bytes")),
            server: u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(entry[8..16].try_into().expect("8 bytes")),
        });
    }
    Ok(set)
}

fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn is_ddl(q: &str) -> bool {
    let head: String = q.chars().take(12).collect::<String>().to_ascii_uppercase();
    ["ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"].iter().any(|k| head.starts_with(k))
}

/// A readable event type name for messages.
pub fn event_name(raw: u8) -> String {
    match raw {
        MARIA_GTID => "GTID".into(),
        MARIA_GTID_LIST => "GTID_LIST".into(),
        MARIA_ANNOTATE_ROWS => "ANNOTATE_ROWS".into(),
        _ => match EventType::try_from(raw) {
            Ok(t) => format!("{t:?}").trim_end_matches("_EVENT").to_owned(),
            Err(_) => format!("event type {raw}"),
        },
    }
}
