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
//! - Columns are named from the table map, or (table maps without names, on a live source)
//!   from the table's current definition only when it agrees with the table map
//!   ([`catalog`]); never positionally mislabelled.

mod catalog;
mod events;
mod image;
mod output;
mod txn;

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use sameday_core::envelope::Op;
use sameday_core::{BinlogPosition, GtidSet};
use sameday_mysql::schema::TableSchema;

use crate::encode::{Encoder, ImageText, RowChange, TxnRef};
use crate::error::DecodeError;
use crate::filter::TableFilter;
use crate::kinesis::config::RecordFormat;
pub(crate) use catalog::CatalogRequest;
use catalog::{Catalogs, Drifted};
pub(crate) use events::event_name;
use events::*;
use image::decode_image;
pub(crate) use output::{log_schema_change, DeadLetter};
pub use output::{Commit, Output, Record};
use txn::Txn;

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
    /// Current table definitions naming the columns of table maps without names.
    catalogs: Catalogs,
    /// Table maps whose rows cannot be named (they disagree with the current definition).
    drifted: HashMap<u64, Drifted>,
    encoder: Encoder,
    before: ImageText,
    after: ImageText,
    /// Records handed back after they were written ([`Decoder::recycle`]), whose buffers the
    /// next rows reuse.
    spare: Vec<Record>,
    /// Where new records are encoded before they get their exactly-sized buffer.
    scratch: Vec<u8>,
}

/// Recycled records kept at most (a chunk's worth).
const SPARE_RECORDS: usize = 1024;

/// Where an event sits: its start, its end, and the file.
struct At {
    start: u64,
    end: u64,
    ts_ms: u64,
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
            catalogs: Catalogs::default(),
            drifted: HashMap::new(),
            encoder: Encoder::new(RecordFormat::Sameday),
            before: ImageText::default(),
            after: ImageText::default(),
            spare: Vec::new(),
            scratch: Vec::with_capacity(4096),
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
        self.encoder = Encoder::new(format);
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

    /// Takes back the records of `outputs` once they are written (a sink on the decoder's
    /// thread), so that the next rows are encoded into their buffers instead of new ones;
    /// empties `outputs`.
    pub fn recycle(&mut self, outputs: &mut Vec<Output>) {
        for o in outputs.drain(..) {
            if let Output::Row(r) = o {
                if self.spare.len() < SPARE_RECORDS {
                    self.spare.push(r);
                }
            }
        }
    }

    /// Forgets a transaction cut short by a lost connection; the stream resumes at its start.
    pub fn reset_transaction(&mut self) {
        self.txn = None;
        self.payload = None;
    }

    fn position(&self, pos: u64) -> BinlogPosition {
        BinlogPosition::new(self.file.clone(), pos)
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
        let at = At { start, end, ts_ms: u64::from(header.timestamp()) * 1000 };
        if self.maria_event(event, raw_type, &at)? {
            return Ok(());
        }
        let data = event.read_data().map_err(|e| DecodeError::Event {
            event: event_name(raw_type),
            position: self.position(start),
            reason: e.to_string(),
        })?;
        match data {
            Some(data) => self.handle_data(data, event, &at, out),
            None => Ok(()),
        }
    }

    /// MariaDB's own event types, which mysql_common does not parse; `true` when handled.
    fn maria_event(&mut self, event: &Event, raw_type: u8, at: &At) -> Result<bool, DecodeError> {
        let unsupported = |event: String, reason: &str| DecodeError::Unsupported {
            event,
            position: self.position(at.start),
            reason: reason.into(),
        };
        match raw_type {
            MARIA_GTID => self.maria_gtid(event, at.start, at.ts_ms)?,
            MARIA_GTID_LIST => {
                if self.gtid_set.is_none() {
                    self.gtid_set = Some(parse_maria_gtid_list(event.data()).map_err(|reason| DecodeError::Event {
                        event: "GTID_LIST".into(),
                        position: self.position(at.start),
                        reason,
                    })?);
                }
            }
            MARIA_ANNOTATE_ROWS | MARIA_BINLOG_CHECKPOINT => {}
            MARIA_START_ENCRYPTION => {
                return Err(unsupported(
                    "START_ENCRYPTION".into(),
                    "encrypted binlog files cannot be read from disk; stream them from the server instead",
                ))
            }
            MARIA_QUERY_COMPRESSED..=MARIA_ROWS_COMPRESSED_LAST => {
                return Err(unsupported(
                    format!("MariaDB compressed event (type {raw_type})"),
                    "log_bin_compress=ON is not supported; SET GLOBAL log_bin_compress=OFF on the source",
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn handle_data(
        &mut self,
        data: EventData<'_>,
        event: &Event,
        at: &At,
        out: &mut Vec<Output>,
    ) -> Result<(), DecodeError> {
        match data {
            EventData::RotateEvent(r) => {
                self.file = r.name().into_owned();
            }
            EventData::GtidEvent(g) => self.mysql_gtid(&g, at.ts_ms),
            EventData::AnonymousGtidEvent(_) => {
                self.txn = Some(Txn::at(format!("{}:{}", self.file, at.start), at.ts_ms, true));
            }
            EventData::QueryEvent(q) => self.query(&q.query(), q.schema().into_owned(), at, out),
            EventData::XidEvent(_) => self.commit(at.end, at.ts_ms, out),
            EventData::TableMapEvent(tme) => self.table_map(&tme, event.data(), at.start)?,
            EventData::RowsEvent(rows) => self.rows(&rows, event.header().event_type_raw(), at.start, out)?,
            EventData::TransactionPayloadEvent(_) => self.payload = Some((at.start, at.end)),
            EventData::HeartbeatEvent if self.txn.is_none() => out.push(Output::CaughtUp),
            EventData::IncidentEvent(i) => {
                return Err(DecodeError::Event {
                    event: "INCIDENT".into(),
                    position: self.position(at.start),
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

    /// BEGIN, COMMIT, or a statement: DDL on a watched table is reported, and a statement
    /// outside BEGIN..COMMIT commits itself.
    fn query(&mut self, query: &str, schema: String, at: &At, out: &mut Vec<Output>) {
        let trimmed = query.trim();
        if trimmed.eq_ignore_ascii_case("BEGIN") {
            match self.txn.as_mut() {
                Some(t) => t.standalone = false,
                None => self.txn = Some(Txn::at(format!("{}:{}", self.file, at.start), at.ts_ms, false)),
            }
        } else if trimmed.eq_ignore_ascii_case("COMMIT") {
            self.commit(at.end, at.ts_ms, out);
        } else {
            if let Some(ddl) = ddl_of(trimmed) {
                // A statement on one table counts when that table is watched; others when
                // they may touch a watched schema.
                let watched = match &ddl.table {
                    Some((db, table)) => self.filter.matches(db.as_deref().unwrap_or(&schema), table),
                    None => self.filter.ddl_may_touch(&schema, trimmed),
                };
                if watched {
                    let (db, table) = match ddl.table {
                        Some((db, table)) => (db.unwrap_or(schema), Some(table)),
                        None => (schema, None),
                    };
                    let position = self.position(at.start);
                    self.forget_table(&db, table.as_deref(), &position);
                    out.push(Output::SchemaChange { db, kind: ddl.kind, table, position });
                }
            }
            if self.txn.as_ref().is_none_or(|t| t.standalone) {
                if self.txn.is_none() {
                    self.txn = Some(Txn::at(format!("{}:{}", self.file, at.start), at.ts_ms, true));
                }
                self.commit(at.end, at.ts_ms, out);
            }
        }
    }

    fn table_map(&mut self, tme: &TableMapEvent<'_>, raw: &[u8], start: u64) -> Result<(), DecodeError> {
        let table_id = tme.table_id();
        let db = tme.database_name();
        let table = tme.table_name();
        if !self.filter.matches(&db, &table) {
            self.tables.remove(&table_id);
            self.drifted.remove(&table_id);
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
        let catalog = self.catalogs.get(table_id, &db, &table);
        let named = catalog.is_some();
        let schema = match TableSchema::from_table_map(tme, raw, catalog, |col| {
            (filter.column_excluded(&db, &table, col), json_columns.contains(&format!("{db}.{table}.{col}")))
        }) {
            Ok(schema) => schema,
            Err(e) if e.drifted => {
                self.drift(table_id, e, start);
                return Ok(());
            }
            Err(e) => {
                return Err(DecodeError::Row {
                    event: "TABLE_MAP".into(),
                    db: e.db,
                    table: e.table,
                    position: self.position(start),
                    reason: e.reason,
                })
            }
        };
        self.drifted.remove(&table_id);
        if named {
            self.catalogs.named(table_id, self.position(start));
        }
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
        let position = self.position(start);
        // A rows event with no transaction start seen (we joined mid-transaction on
        // replay): give it a file-position identity so ids stay stable.
        let txn = self.txn.get_or_insert_with(|| Txn::at(position.to_string(), 0, false));
        let event_seq = txn.event_seq;
        txn.event_seq += 1;
        if let Some(d) = self.drifted.get(&rows.table_id()) {
            out.push(Output::DeadLetter(DeadLetter { table: d.table.clone(), position, reason: d.reason.clone() }));
            return Ok(());
        }
        let Some(schema) = self.tables.get(&rows.table_id()).cloned() else {
            return Ok(()); // a filtered table
        };
        let table_label = schema.name.clone();
        if rows.num_columns() as usize != schema.columns.len() {
            out.push(Output::DeadLetter(DeadLetter {
                table: table_label.to_string(),
                position,
                reason: format!(
                    "rows event has {} columns, its table map {}",
                    rows.num_columns(),
                    schema.columns.len()
                ),
            }));
            return Ok(());
        }
        let position = Arc::new(position);
        let event = RowsEvent { schema: &schema, table: table_label, position, raw_type, event_seq, op: op_of(rows) };
        self.rows_of(rows, &event, out);
        Ok(())
    }

    /// Decodes and encodes every row of a rows event. A row that fails to decode ends the
    /// event as a dead letter: the rest of it cannot be located once one value fails.
    fn rows_of(&mut self, rows: &RowsEventData<'_>, event: &RowsEvent<'_>, out: &mut Vec<Output>) {
        let partial = event.raw_type == EventType::PARTIAL_UPDATE_ROWS_EVENT as u8;
        let (before_cols, after_cols) = (rows.columns_before_image(), rows.columns_after_image());
        let mut buf: &[u8] = rows.rows_data();
        let mut row_in_event = 0u32;
        while !buf.is_empty() {
            let res = (|| -> std::io::Result<()> {
                if let Some(cols) = before_cols {
                    decode_image(event.schema, cols, &mut buf, false, &mut self.before)?;
                }
                if let Some(cols) = after_cols {
                    decode_image(event.schema, cols, &mut buf, partial, &mut self.after)?;
                }
                Ok(())
            })();
            if let Err(e) = res {
                out.push(Output::DeadLetter(DeadLetter {
                    table: event.table.to_string(),
                    position: (*event.position).clone(),
                    reason: format!("{} row {row_in_event}: {e}", event_name(event.raw_type)),
                }));
                return;
            }
            let txn = self.txn.as_mut().expect("a rows event always has a transaction");
            let index = txn.rows;
            txn.rows += 1;
            let (before, after) = (before_cols.map(|_| &self.before), after_cols.map(|_| &self.after));
            let key_changed = event.op == Op::Update
                && self.encoder.splits_key_changes()
                && event.schema.key.iter().any(|&k| self.before.value(k) != self.after.value(k));
            // A primary key change goes out as a delete of the old key and an insert of the
            // new one, each in its own key's order (its own partition key): as one update
            // under the new key, it could overtake the old key's earlier changes on another
            // shard, and the old key's execution would outlive it.
            // On the stack: the decode loop is the reader's hot path.
            type Part<'i> = (Op, &'static str, Option<&'i ImageText>, Option<&'i ImageText>);
            let parts: [Option<Part<'_>>; 2] = if key_changed {
                [Some((Op::Delete, "/d", before, None)), Some((Op::Insert, "/i", None, after))]
            } else {
                [Some((event.op, "", before, after)), None]
            };
            for (op, suffix, before, after) in parts.into_iter().flatten() {
                let recycled = !self.spare.is_empty();
                let mut record = self.spare.pop().unwrap_or_else(|| Record {
                    partition_key: String::new(),
                    data: Vec::new(),
                    id: String::new(),
                    op,
                    table: event.table.clone(),
                    position: event.position.clone(),
                });
                push_row_id(&mut record.id, &txn.id, event.event_seq, row_in_event, suffix);
                // A new record's bytes are sized exactly (they may sit in the publisher's queue
                // a while); a recycled one is written in place.
                let data = if recycled { &mut record.data } else { &mut self.scratch };
                self.encoder.encode(
                    &RowChange {
                        schema: event.schema,
                        op,
                        id: &record.id,
                        server_id: self.server_id,
                        position: &event.position,
                        txn: TxnRef { id: &txn.id, gtid: txn.gtid.as_deref(), ts_ms: txn.ts_ms },
                        index,
                        before,
                        after,
                    },
                    data,
                    &mut record.partition_key,
                );
                if !recycled {
                    record.data = self.scratch.clone();
                }
                record.op = op;
                record.table.clone_from(&event.table);
                record.position.clone_from(&event.position);
                out.push(Output::Row(record));
            }
            row_in_event += 1;
        }
    }
}

/// The rows event being decoded, as each of its rows needs it.
struct RowsEvent<'a> {
    schema: &'a TableSchema,
    /// `db.table`, for metrics and dead letters.
    table: Arc<str>,
    position: Arc<BinlogPosition>,
    raw_type: u8,
    /// The event's index within its transaction (the middle part of each row's id).
    event_seq: u32,
    op: Op,
}

/// `TXN/EVENT/ROW[suffix]` into `id` (emptied first), without the formatting machinery:
/// this runs for every row.
fn push_row_id(id: &mut String, txn: &str, event_seq: u32, row: u32, suffix: &str) {
    id.clear();
    id.push_str(txn);
    id.push('/');
    id.push_str(itoa::Buffer::new().format(event_seq));
    id.push('/');
    id.push_str(itoa::Buffer::new().format(row));
    id.push_str(suffix);
}

fn op_of(rows: &RowsEventData<'_>) -> Op {
    match rows {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Insert,
        RowsEventData::UpdateRowsEventV1(_)
        | RowsEventData::UpdateRowsEvent(_)
        | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
    }
}
