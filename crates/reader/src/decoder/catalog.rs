//! Column names for table maps that carry none (`binlog_row_metadata=MINIMAL`, MariaDB
//! `NO_LOG`): the live source reads the table's current definition from `information_schema`
//! ([`sameday_mysql::catalog`]) once per table-map id, and the decoder names the columns with
//! it only after checking it against the table map (count, types, lengths, nullability,
//! signedness, charsets).
//!
//! Guarantees:
//! - Lookups happen per table-map id, never per row: a table map whose id and table were seen
//!   before reuses its definition. A DDL on the table in the binlog drops its definitions, so
//!   the next table map reads the definition as the DDL left it.
//! - A column is never emitted under a name from a definition that disagrees with the table
//!   map. When they disagree, the table was altered after the event was written (the reader
//!   was behind when it looked): every rows event of that table map becomes a dead letter
//!   (table, position, what differs, the fix) until a table map that agrees, which at the
//!   latest is the first one after the ALTER in the binlog.
//!
//! Why dead letters and not a stop: a stop would not help. The events written before the
//! ALTER stay as they are, and `information_schema` only ever shows the definition after it,
//! so a restart would stop at the same event again, and every other table would wait behind
//! one table's change. Dead-lettering quarantines exactly the rows that cannot be named, keeps
//! the other tables (and this table after the ALTER) flowing, and leaves a line per rows event
//! with its position: the changes between the first dead letter and the ALTER are then
//! repaired from the tables' current rows with `sameday reconcile --fix` (or read positionally,
//! `@1`, `@2`, ..., with `sameday replay --binlog-file`).
//!
//! What cannot be detected (see [`sameday_mysql::catalog`]): an ALTER that only renames or
//! reorders identically defined columns. `binlog_row_metadata=FULL` is the only setting that
//! rules it out. What can be told afterwards: the source also says where its binlog ended
//! when the definition was read; a DDL on the table *before* that end, met later in the
//! stream, was already in effect when the definition was read (`information_schema` shows a
//! table only once its DDL is in the binlog, which is written under the DDL's metadata
//! lock), so the rows named with it since its first table map may carry names of the
//! definition after that DDL. That range is logged as an error with the replay and
//! reconcile commands to check and repair it.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::events::{Event, TableMapEvent};
use sameday_core::BinlogPosition;
use sameday_mysql::catalog::TableCatalog;
use sameday_mysql::schema::SchemaError;

use super::Decoder;

/// A definition the source must read before the decoder can handle the next event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogRequest {
    pub(crate) table_id: u64,
    pub(crate) db: String,
    pub(crate) table: String,
}

/// Definitions read from the source, by table-map id.
#[derive(Default)]
pub(super) struct Catalogs {
    /// Off for binlog files without a server: their columns keep ordinal names.
    enabled: bool,
    by_id: HashMap<u64, Entry>,
}

struct Entry {
    catalog: Arc<TableCatalog>,
    /// The source's end of binlog right after the definition was read.
    binlog_end: Option<BinlogPosition>,
    /// The first table map named with it.
    named_from: Option<BinlogPosition>,
}

impl Catalogs {
    pub(super) fn enable(&mut self) {
        self.enabled = true;
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The definition read for this table-map id, if it was read for this very table (ids
    /// are reused after a server restart).
    pub(super) fn get(&self, table_id: u64, db: &str, table: &str) -> Option<&TableCatalog> {
        self.by_id.get(&table_id).map(|e| &*e.catalog).filter(|c| c.db == db && c.table == table)
    }

    /// The table map at `at` was named with the definition of its id.
    pub(super) fn named(&mut self, table_id: u64, at: BinlogPosition) {
        if let Some(entry) = self.by_id.get_mut(&table_id) {
            entry.named_from.get_or_insert(at);
        }
    }

    /// A DDL at `at` changed `db.table` (or, with `table` `None`, maybe any table of `db`):
    /// forgets its definitions, and reports the rows named with one read after this DDL.
    pub(super) fn forget(&mut self, db: &str, table: Option<&str>, at: &BinlogPosition) {
        self.by_id.retain(|_, e| {
            let hit = e.catalog.db == db && table.is_none_or(|t| t == e.catalog.table);
            if hit && named_after(e, at) {
                report_named_after_ddl(e, at);
            }
            !hit
        });
    }
}

/// Whether rows were named with `entry` although the DDL at `at`, met after them, was
/// already in the binlog when it was read.
fn named_after(entry: &Entry, at: &BinlogPosition) -> bool {
    match (&entry.named_from, &entry.binlog_end) {
        (Some(from), Some(end)) => at.cmp_same_server(end).is_lt() && at.cmp_same_server(from).is_gt(),
        _ => false,
    }
}

/// Logs the rows named with a definition read when the DDL at `at` was already in the
/// binlog (see the module note).
fn report_named_after_ddl(entry: &Entry, at: &BinlogPosition) {
    let (Some(from), Some(end)) = (&entry.named_from, &entry.binlog_end) else { return };
    let table = format!("{}.{}", entry.catalog.db, entry.catalog.table);
    tracing::error!(
        %table,
        from = %from,
        to = %at,
        definition_read_at = %end,
        "rows of {table} from {from} to {at} were named from its information_schema definition, read when the \
         binlog already held the DDL at {at} (the reader was behind; binlog_row_metadata is not FULL). Their column \
         types match, but if that DDL renamed, reordered or swapped identically defined columns, they carry the \
         new names: check them with `sameday replay --config reader.toml --from {from} --to {at} --dry-run`, \
         repair the schedule with `sameday reconcile --fix`, and SET GLOBAL binlog_row_metadata='FULL'"
    );
}

/// A watched table's table map that disagrees with the table's current definition.
pub(super) struct Drifted {
    /// `db.table`.
    pub(super) table: String,
    /// What differs and the fix, for each dead letter.
    pub(super) reason: String,
}

/// What a dead letter of a drifted table map tells the operator to do.
const DRIFT_FIX: &str = "the table was altered after this event was written, and without \
    binlog_row_metadata=FULL the binlog does not name its columns, so its rows cannot be named: this rows event \
    and the table's others up to the ALTER are dead-lettered, the stream goes on. Once the reader has passed the \
    ALTER, repair the schedule from the table's current rows with `sameday reconcile --fix`; SET GLOBAL \
    binlog_row_metadata='FULL' so that events written from then on carry their column names";

impl Decoder {
    /// Names the columns of table maps without names (`binlog_row_metadata=MINIMAL`) from the
    /// tables' current definitions, which the source reads when [`Decoder::catalog_request`]
    /// asks. Without this (binlog files), such columns are named `@1`, `@2`, ...
    pub(crate) fn read_catalogs(&mut self) {
        self.catalogs.enable();
    }

    /// The definition the source must read (and hand in with [`Decoder::set_catalog`])
    /// before handing in `event`: for a watched table's table map without column names whose
    /// table-map id has none yet.
    pub(crate) fn catalog_request(&self, event: &Event) -> Option<CatalogRequest> {
        if !self.catalogs.enabled() {
            return None;
        }
        let tme = table_map_of(event)?;
        let (db, table, table_id) = (tme.database_name(), tme.table_name(), tme.table_id());
        let cached = self.tables.get(&table_id).is_some_and(|s| s.raw_table_map == event.data());
        if cached || !self.filter.matches(&db, &table) || self.catalogs.get(table_id, &db, &table).is_some() {
            return None;
        }
        lacks_names(&tme).then(|| CatalogRequest { table_id, db: db.into_owned(), table: table.into_owned() })
    }

    /// The definition read for `request`.
    /// `binlog_end` is where the source's binlog ended right after the read.
    pub(crate) fn set_catalog(
        &mut self,
        request: &CatalogRequest,
        catalog: TableCatalog,
        binlog_end: Option<BinlogPosition>,
    ) {
        let entry = Entry { catalog: Arc::new(catalog), binlog_end, named_from: None };
        self.catalogs.by_id.insert(request.table_id, entry);
    }

    /// A DDL on `db.table` (`None`: maybe on any table of `db`): its schemas and definitions
    /// are rebuilt from the next table map (MINIMAL table maps do not change when a column is
    /// only renamed).
    pub(super) fn forget_table(&mut self, db: &str, table: Option<&str>, at: &BinlogPosition) {
        let hit = |d: &str, t: &str| d == db && table.is_none_or(|x| x == t);
        self.tables.retain(|_, s| !hit(&s.db, &s.table));
        self.catalogs.forget(db, table, at);
    }

    /// Quarantines a table map whose rows cannot be named (see the module note).
    pub(super) fn drift(&mut self, table_id: u64, e: SchemaError, start: u64) {
        self.tables.remove(&table_id);
        let table = format!("{}.{}", e.db, e.table);
        let reason = format!("{}; {DRIFT_FIX}", e.reason);
        if self.drifted.get(&table_id).is_none_or(|d| d.reason != reason) {
            tracing::error!(%table, position = %self.position(start), %reason, "table map disagrees with the table's current definition");
        }
        self.drifted.insert(table_id, Drifted { table, reason });
    }
}

/// Whether `tme` names no columns (MINIMAL or NO_LOG row metadata).
fn lacks_names(tme: &TableMapEvent<'_>) -> bool {
    use mysql_common::binlog::events::OptionalMetadataField;
    !tme.iter_optional_meta().any(|f| matches!(f, Ok(OptionalMetadataField::ColumnName(_))))
}

/// The table map of `event`, when it is one.
fn table_map_of(event: &Event) -> Option<TableMapEvent<'_>> {
    use mysql_common::binlog::consts::EventType;
    if event.header().event_type_raw() != EventType::TABLE_MAP_EVENT as u8 {
        return None;
    }
    event.read_event::<TableMapEvent<'_>>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(db: &str, table: &str) -> TableCatalog {
        TableCatalog { db: db.into(), table: table.into(), columns: Vec::new(), key: Vec::new() }
    }

    fn entry(named_from: Option<u64>, binlog_end: Option<u64>) -> Entry {
        let at = |p| BinlogPosition::new("bin.000002", p);
        Entry { catalog: Arc::new(catalog("app", "t")), named_from: named_from.map(at), binlog_end: binlog_end.map(at) }
    }

    #[test]
    fn a_definition_is_reused_only_for_its_own_table_and_forgotten_on_its_ddl() {
        let mut c = Catalogs::default();
        c.by_id.insert(7, entry(None, None));
        c.by_id.insert(8, Entry { catalog: Arc::new(catalog("app", "u")), named_from: None, binlog_end: None });
        assert!(c.get(7, "app", "t").is_some());
        // Table-map ids start over after a server restart: another table under id 7 reads anew.
        assert!(c.get(7, "app", "other").is_none());
        c.forget("app", Some("t"), &BinlogPosition::new("bin.000002", 900));
        assert!(c.get(7, "app", "t").is_none() && c.get(8, "app", "u").is_some());
        c.forget("app", None, &BinlogPosition::new("bin.000002", 950));
        assert!(c.by_id.is_empty(), "a DDL without a table forgets the whole database");
    }

    #[test]
    fn rows_are_reported_only_when_their_ddl_was_in_the_binlog_before_the_definition_was_read() {
        let ddl = |pos| BinlogPosition::new("bin.000002", pos);
        // Named from 100, definition read when the binlog ended at 500.
        assert!(named_after(&entry(Some(100), Some(500)), &ddl(300)), "DDL between the rows and the read");
        assert!(!named_after(&entry(Some(100), Some(500)), &ddl(500)), "DDL written after the read");
        assert!(!named_after(&entry(Some(100), Some(500)), &ddl(800)));
        assert!(!named_after(&entry(None, Some(500)), &ddl(300)), "nothing was named (drifted)");
        assert!(!named_after(&entry(Some(100), None), &ddl(300)), "binlog end unknown");
        assert!(
            !named_after(&entry(Some(100), Some(500)), &BinlogPosition::new("bin.000001", 900)),
            "DDL before the rows"
        );
        let next_file = Entry { binlog_end: Some(BinlogPosition::new("bin.000003", 4)), ..entry(Some(100), None) };
        assert!(named_after(&next_file, &ddl(300)), "the read saw a later binlog file");
    }
}
