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
//! rules it out.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::events::{Event, TableMapEvent};
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
    by_id: HashMap<u64, Arc<TableCatalog>>,
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
        self.by_id.get(&table_id).map(|c| &**c).filter(|c| c.db == db && c.table == table)
    }

    pub(super) fn insert(&mut self, table_id: u64, catalog: TableCatalog) {
        self.by_id.insert(table_id, Arc::new(catalog));
    }

    /// A DDL changed `db.table` (or, with `table` `None`, maybe any table of `db`).
    pub(super) fn forget(&mut self, db: &str, table: Option<&str>) {
        self.by_id.retain(|_, c| !(c.db == db && table.is_none_or(|t| t == c.table)));
    }
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
    pub(crate) fn set_catalog(&mut self, request: &CatalogRequest, catalog: TableCatalog) {
        self.catalogs.insert(request.table_id, catalog);
    }

    /// A DDL on `db.table` (`None`: maybe on any table of `db`): its schemas and definitions
    /// are rebuilt from the next table map (MINIMAL table maps do not change when a column is
    /// only renamed).
    pub(super) fn forget_table(&mut self, db: &str, table: Option<&str>) {
        let hit = |d: &str, t: &str| d == db && table.is_none_or(|x| x == t);
        self.tables.retain(|_, s| !hit(&s.db, &s.table));
        self.catalogs.forget(db, table);
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
