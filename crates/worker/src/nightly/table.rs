//! Reading one rule's table: a check of the rule against the table's columns, then keyset
//! pages over `(due column, key columns)`.
//!
//! - Never `OFFSET`, never a transaction held across pages: each page is one autocommit
//!   SELECT (READ COMMITTED) that continues strictly after the last row of the previous page,
//!   so rows inserted or deleted meanwhile neither shift nor repeat the others, and the
//!   server keeps no snapshot or lock between pages. The key columns must cover the primary
//!   key, which makes `(due, key)` unique and the order total.
//! - The continuation is written as `d > ? OR (d = ? AND (k1 > ? OR ...))` next to a plain
//!   `d >= ?` bound instead of a row constructor `(d, k1) > (?, ?)`, which MariaDB does not
//!   turn into an index range. An index on the due column (InnoDB appends the primary key)
//!   makes every page one range scan.
//! - The cursor is the last row's raw values, sent back as parameters, so the comparison uses
//!   the column's own type and collation, as ORDER BY does.
//! - Only the key, due and input columns are selected; they become row images through
//!   [`RowDecoder`], the envelope's JSON mapping.

use std::collections::HashSet;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Statement, Value as SqlValue};
use sameday_core::predicate::{Collation, Collations};
use sameday_core::row_version::RowVersion;
use sameday_core::rule::{DueType, ScheduleRule};
use sameday_mysql::value::RowDecoder;
use sameday_mysql::{Session, SourceConfig, TableColumn};
use serde_json::{Map, Value};

use super::NightlyError;

/// Statements run on every (re)connection: UTC for TIMESTAMP values (the envelope's form),
/// UTF-8 results, and no snapshot kept between statements.
const SESSION_SETUP: &[&str] = &[
    "SET NAMES utf8mb4",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION autocommit = 1",
    // The predicate's SQL doubles backslashes in strings, which reads back as written only
    // without NO_BACKSLASH_ESCAPES.
    "SET SESSION sql_mode = TRIM(BOTH ',' FROM REPLACE(REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', ''), ',,', ','))",
];
/// A page query that fails on the connection (not on the SQL) is retried this often on a
/// fresh connection, from the same cursor.
const PAGE_ATTEMPTS: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// `name` as a MySQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The rule checked against its table, with the statements that page through it.
#[derive(Debug, Clone)]
pub struct RuleTable {
    rule: ScheduleRule,
    json_columns: HashSet<String>,
    /// How the predicate's string columns compare, from their collations.
    collations: Collations,
    mariadb: bool,
    page_size: u32,
    first_page_sql: String,
    next_page_sql: String,
    count_sql: String,
    /// `SELECT <columns> FROM <table> WHERE [(<predicate>) AND ]`, completed by [`Self::reread_sql`].
    reread_prefix: String,
}

/// Where the next page starts: the last row's raw due and key values.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor(Vec<SqlValue>);

/// One page of row images, and where the next one starts (`None` after the last page).
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<Map<String, Value>>,
    /// Per row, its key column values as the server sent them (for [`TableReader::reread`]).
    pub keys: Vec<Vec<SqlValue>>,
    pub next: Option<Cursor>,
    /// What the page's SELECT saw at least (read just before it).
    pub version: RowVersion,
}

impl RuleTable {
    /// Checks that the table exists, has every column the rule names (exact case, as the
    /// row images are keyed), that the key columns cover the primary key and that the due
    /// column's type fits `due_type`.
    pub async fn check(
        session: &mut Session,
        rule: &ScheduleRule,
        page_size: u32,
        mariadb: bool,
    ) -> Result<Self, NightlyError> {
        let columns = session.table_columns(&rule.db, &rule.table).await?;
        if let Some(problem) = rule_problems(rule, &columns, &session.config().address()).into_iter().next() {
            return Err(NightlyError::Rule {
                rule: rule.name.clone(),
                table: format!("{}.{}", rule.db, rule.table),
                problem,
            });
        }
        let json_columns = if mariadb {
            let prefix = format!("{}.{}.", rule.db, rule.table);
            session
                .mariadb_json_columns()
                .await?
                .into_iter()
                .filter_map(|c| c.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        } else {
            HashSet::new()
        };
        let mut table = Self::new(rule, json_columns, page_size, mariadb);
        table.collations = collations_of(&columns);
        Ok(table)
    }

    /// How the worker must compare the predicate's string columns to agree with this table.
    pub fn collations(&self) -> &Collations {
        &self.collations
    }

    fn new(rule: &ScheduleRule, json_columns: HashSet<String>, page_size: u32, mariadb: bool) -> Self {
        // Due first, then the key columns (the cursor), then the input columns not already there.
        let mut columns = vec![rule.due_column.clone()];
        for c in rule.key_columns.iter().chain(&rule.input_columns) {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        let select = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        let from = format!("{}.{}", quote_ident(&rule.db), quote_ident(&rule.table));
        let due = quote_ident(&rule.due_column);
        let predicate = rule.predicate().map(|p| format!("{} AND ", p.to_sql())).unwrap_or_default();
        let range = format!("{predicate}{due} >= ? AND {due} < ?");
        let keys: Vec<String> = rule.key_columns.iter().map(|k| quote_ident(k)).collect();
        let order = std::iter::once(due.clone()).chain(keys.iter().cloned()).collect::<Vec<_>>().join(", ");
        let after = after_clause(&due, &keys);
        Self {
            rule: rule.clone(),
            first_page_sql: format!("SELECT {select} FROM {from} WHERE {range} ORDER BY {order} LIMIT {page_size}"),
            next_page_sql: format!(
                "SELECT {select} FROM {from} WHERE {range} AND {after} ORDER BY {order} LIMIT {page_size}"
            ),
            count_sql: format!("SELECT COUNT(*) FROM {from} WHERE {range}"),
            reread_prefix: format!("SELECT {select} FROM {from} WHERE {predicate}"),
            collations: Collations::default(),
            json_columns,
            mariadb,
            page_size,
        }
    }

    /// The SELECT of the rows with `rows` given keys (the predicate applied, no due bounds):
    /// `k IN (?, ...)`, or for composite keys `(k1 = ? AND k2 = ?) OR ...`, which MariaDB
    /// turns into primary-key lookups where it would not for a row-constructor IN.
    fn reread_sql(&self, rows: usize) -> String {
        let keys: Vec<String> = self.rule.key_columns.iter().map(|k| quote_ident(k)).collect();
        let lookup = match keys.as_slice() {
            [one] => format!("{one} IN ({})", vec!["?"; rows].join(", ")),
            _ => {
                let one = format!("({})", keys.iter().map(|k| format!("{k} = ?")).collect::<Vec<_>>().join(" AND "));
                format!("({})", vec![one; rows].join(" OR "))
            }
        };
        format!("{}{lookup}", self.reread_prefix)
    }

    /// The SQL of the first and the following pages (for logs and tests).
    pub fn page_sql(&self) -> (&str, &str) {
        (&self.first_page_sql, &self.next_page_sql)
    }

    fn cursor_params(cursor: &Cursor, upper: &SqlValue) -> Vec<SqlValue> {
        // d >= last_d AND d < upper AND (d > last_d OR (d = last_d AND (k1 > ? OR (k1 = ? AND ...))))
        let (due, keys) = cursor.0.split_first().expect("a cursor holds the due value");
        let mut params = vec![due.clone(), upper.clone(), due.clone(), due.clone()];
        for (i, k) in keys.iter().enumerate() {
            params.push(k.clone());
            if i + 1 < keys.len() {
                params.push(k.clone());
            }
        }
        params
    }
}

/// Case-insensitive by default (MySQL's default collations); exact for text columns whose
/// collation is not `_ci` (`_bin`, `_cs`, `binary`).
fn collations_of(columns: &[TableColumn]) -> Collations {
    columns.iter().fold(Collations::default(), |c, col| match col.collation.as_deref().map(Collation::of_mysql) {
        Some(Collation::Binary) => c.with_column(col.name.clone(), Collation::Binary),
        _ => c,
    })
}

/// Everything wrong with `rule` against its table's `columns` on the server at `addr`, one
/// message each, to be read after "table db.t" ("has no column ..."): the one check of a
/// rule against its table, run by the worker and the batch at start and by `sameday check`.
pub fn rule_problems(rule: &ScheduleRule, columns: &[TableColumn], addr: &str) -> Vec<String> {
    if columns.is_empty() {
        return vec![format!(
            "does not exist on {addr} (or the user cannot see it: GRANT SELECT ON {}.{} TO ...); fix the rule's db \
             and table",
            rule.db, rule.table
        )];
    }
    let mut problems = Vec::new();
    let names = || columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let named = std::iter::once(("due_column", &rule.due_column))
        .chain(rule.key_columns.iter().map(|c| ("key_columns", c)))
        .chain(rule.input_columns.iter().map(|c| ("input_columns", c)));
    for (field, name) in named {
        if columns.iter().any(|c| &c.name == name) {
            continue;
        }
        let hint = match columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            Some(c) => format!(" (names are case-sensitive here: the table has {:?})", c.name),
            None => String::new(),
        };
        problems.push(format!(
            "has no column {name:?} (the rule's {field}){hint}; fix {field}; its columns are {}",
            names()
        ));
    }
    // MySQL column names are case-insensitive in SQL, and so is the worker's lookup.
    for name in rule.predicate().map(|p| p.columns()).unwrap_or_default() {
        if !columns.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
            problems.push(format!(
                "has no column {name:?} (the rule's predicate); fix the predicate; its columns are {}",
                names()
            ));
        }
    }
    let primary: Vec<&str> = columns.iter().filter(|c| c.primary).map(|c| c.name.as_str()).collect();
    if primary.is_empty() {
        problems.push("has no primary key; the batch pages over (due, primary key) and needs one".into());
    } else if let Some(missing) = primary.iter().find(|p| !rule.key_columns.iter().any(|k| k == *p)) {
        problems.push(format!(
            "key_columns {:?} do not include the primary key column {missing:?} (primary key: {})",
            rule.key_columns,
            primary.join(", ")
        ));
    }
    if let Some(due) = columns.iter().find(|c| c.name == rule.due_column) {
        problems.extend(due_type_problem(rule, due));
    }
    problems
}

/// The due column's SQL type must fit the rule's `due_type`.
fn due_type_problem(rule: &ScheduleRule, due: &TableColumn) -> Option<String> {
    const INTEGERS: &[&str] = &["tinyint", "smallint", "mediumint", "int", "integer", "bigint"];
    let fits = match rule.due_type {
        DueType::Datetime => due.data_type == "datetime",
        DueType::Timestamp => due.data_type == "timestamp",
        DueType::EpochSeconds | DueType::EpochMillis => INTEGERS.contains(&due.data_type.as_str()),
    };
    if fits {
        return None;
    }
    let suggestion = match due.data_type.as_str() {
        "datetime" => "set due_type = \"datetime\"",
        "timestamp" => "set due_type = \"timestamp\"",
        t if INTEGERS.contains(&t) => "set due_type = \"epoch_seconds\" or \"epoch_millis\"",
        _ => "use a DATETIME, TIMESTAMP or integer column",
    };
    Some(format!(
        "due_column {:?} is {} but the rule says due_type = {:?}; {suggestion}",
        due.name,
        due.data_type.to_uppercase(),
        rule.due_type
    ))
}

/// `(d > ? OR (d = ? AND (k1 > ? OR (k1 = ? AND k2 > ?))))`: strictly after (d, k1, k2).
fn after_clause(due: &str, keys: &[String]) -> String {
    fn chain(cols: &[&str]) -> String {
        match cols {
            [] => unreachable!("the due column is always there"),
            [last] => format!("{last} > ?"),
            [first, rest @ ..] => format!("({first} > ? OR ({first} = ? AND {}))", chain(rest)),
        }
    }
    let cols: Vec<&str> = std::iter::once(due).chain(keys.iter().map(String::as_str)).collect();
    chain(&cols)
}

/// A connection to the source reading one rule's table, reconnecting when the connection
/// breaks (the keyset cursor makes a retried page exact).
pub struct TableReader<'a> {
    source: &'a SourceConfig,
    table: &'a RuleTable,
    conn: Option<(Session, Statement, Statement)>,
    /// SELECTs sent for this table (pages and counts, retries included).
    pub queries: u64,
}

impl<'a> TableReader<'a> {
    pub fn new(source: &'a SourceConfig, table: &'a RuleTable) -> Self {
        Self { source, table, conn: None, queries: 0 }
    }

    async fn connection(&mut self) -> Result<&mut (Session, Statement, Statement), NightlyError> {
        if self.conn.is_none() {
            let mut session = open_session(self.source).await?;
            let conn = session.conn();
            let first = conn
                .prep(&self.table.first_page_sql)
                .await
                .map_err(|e| self.query_error(&self.table.first_page_sql, e))?;
            let next = conn
                .prep(&self.table.next_page_sql)
                .await
                .map_err(|e| self.query_error(&self.table.next_page_sql, e))?;
            self.conn = Some((session, first, next));
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    fn query_error(&self, sql: &str, e: mysql_async::Error) -> NightlyError {
        NightlyError::Query {
            rule: self.table.rule.name.clone(),
            sql: sql.to_owned(),
            message: e.to_string(),
            transient: !matches!(e, mysql_async::Error::Server(_)),
        }
    }

    /// Rows with a due value in `[lower, upper)` matching the predicate (for the progress ETA).
    pub async fn count(&mut self, lower: &SqlValue, upper: &SqlValue) -> Result<u64, NightlyError> {
        let sql = self.table.count_sql.clone();
        self.queries += 1;
        let (session, ..) = self.connection().await?;
        let result = session.conn().exec_first::<u64, _, _>(sql.as_str(), vec![lower.clone(), upper.clone()]).await;
        Ok(result.map_err(|e| self.query_error(&sql, e))?.unwrap_or(0))
    }

    /// The page after `cursor` (the first page without one) within `[lower, upper)`.
    pub async fn page(
        &mut self,
        lower: &SqlValue,
        upper: &SqlValue,
        cursor: Option<&Cursor>,
    ) -> Result<Page, NightlyError> {
        let mut attempt = 1;
        loop {
            self.queries += 1;
            let err = match self.page_once(lower, upper, cursor).await {
                Ok((rows, version)) => return Ok(self.decode(rows, version)),
                Err(e) => e,
            };
            if !err.is_transient() || attempt >= PAGE_ATTEMPTS {
                return Err(err);
            }
            tracing::warn!(rule = %self.table.rule.name, attempt, error = %err, "nightly: page query failed; retrying on a new connection");
            self.conn = None;
            tokio::time::sleep(RECONNECT_BACKOFF * attempt).await;
            attempt += 1;
        }
    }

    async fn page_once(
        &mut self,
        lower: &SqlValue,
        upper: &SqlValue,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<Row>, RowVersion), NightlyError> {
        let mariadb = self.table.mariadb;
        let (session, first, next) = self.connection().await?;
        let version = session.read_version(mariadb).await?;
        let rows = match cursor {
            None => session.conn().exec::<Row, _, _>(&*first, vec![lower.clone(), upper.clone()]).await,
            Some(c) => session.conn().exec::<Row, _, _>(&*next, RuleTable::cursor_params(c, upper)).await,
        };
        let sql = if cursor.is_some() { &self.table.next_page_sql } else { &self.table.first_page_sql };
        Ok((rows.map_err(|e| self.query_error(sql, e))?, version))
    }

    /// The current images of the rows with `keys` (key column values in `key_columns`
    /// order) that still match the predicate, and what the SELECT saw at least.
    pub async fn reread(
        &mut self,
        keys: &[Vec<SqlValue>],
    ) -> Result<(Vec<Map<String, Value>>, RowVersion), NightlyError> {
        let sql = self.table.reread_sql(keys.len());
        let params: Vec<SqlValue> = keys.iter().flatten().cloned().collect();
        self.queries += 1;
        let mariadb = self.table.mariadb;
        let (session, ..) = self.connection().await?;
        let version = session.read_version(mariadb).await?;
        let rows = session.conn().exec::<Row, _, _>(sql.as_str(), params).await;
        let rows = rows.map_err(|e| {
            self.conn = None;
            self.query_error(&sql, e)
        })?;
        Ok((self.decode(rows, version.clone()).rows, version))
    }

    fn decode(&self, rows: Vec<Row>, version: RowVersion) -> Page {
        let Some(first) = rows.first() else { return Page { rows: Vec::new(), keys: Vec::new(), next: None, version } };
        let decoder = RowDecoder::new(first.columns_ref(), |c| self.table.json_columns.contains(c));
        // The cursor columns come first in the select list: due, then the key columns.
        let cursor_len = 1 + self.table.rule.key_columns.len();
        let full = rows.len() as u64 == u64::from(self.table.page_size);
        let mut next = None;
        let count = rows.len();
        let mut keys = Vec::with_capacity(count);
        let images = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let values = row.unwrap();
                if i + 1 == count && full {
                    next = Some(Cursor(values[..cursor_len].to_vec()));
                }
                keys.push(values[1..cursor_len].to_vec());
                decoder.decode_values(values)
            })
            .collect();
        Page { rows: images, keys, next, version }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        if let Some((session, ..)) = self.conn.take() {
            session.close().await;
        }
    }
}

/// A connection with the session the batch needs.
pub async fn open_session(source: &SourceConfig) -> Result<Session, NightlyError> {
    let mut session = Session::connect(source).await?;
    session.run(SESSION_SETUP).await?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(keys: &[&str], predicate: Option<&str>) -> ScheduleRule {
        serde_json::from_value(json!({
            "name": "r", "db": "app", "table": "odd`name", "key_columns": keys, "due_column": "due_at",
            "due_type": "datetime", "time_zone": "UTC", "input_columns": ["user_id", "id"],
            "predicate": predicate, "state_machine_arn": "arn:aws:states:eu-central-1:123456789012:stateMachine:s",
        }))
        .unwrap()
    }

    #[test]
    fn pages_select_only_the_rule_columns_in_keyset_order() {
        let t = RuleTable::new(&rule(&["tenant", "id"], Some("status = 'pending'")), HashSet::new(), 500, true);
        let (first, next) = t.page_sql();
        assert_eq!(
            first,
            "SELECT `due_at`, `tenant`, `id`, `user_id` FROM `app`.`odd``name` WHERE (`status` = 'pending') AND \
             `due_at` >= ? AND `due_at` < ? ORDER BY `due_at`, `tenant`, `id` LIMIT 500"
        );
        assert!(
            next.ends_with(
                "`due_at` >= ? AND `due_at` < ? AND (`due_at` > ? OR (`due_at` = ? AND (`tenant` > ? OR \
                 (`tenant` = ? AND `id` > ?)))) ORDER BY `due_at`, `tenant`, `id` LIMIT 500"
            ),
            "{next}"
        );
        assert!(!next.contains("OFFSET"));
        let cursor = Cursor(vec![SqlValue::Int(10), SqlValue::Bytes(b"acme".to_vec()), SqlValue::Int(7)]);
        let params = RuleTable::cursor_params(&cursor, &SqlValue::Int(99));
        assert_eq!(next.matches('?').count(), params.len());
        assert_eq!(
            params,
            vec![
                SqlValue::Int(10),
                SqlValue::Int(99),
                SqlValue::Int(10),
                SqlValue::Int(10),
                SqlValue::Bytes(b"acme".to_vec()),
                SqlValue::Bytes(b"acme".to_vec()),
                SqlValue::Int(7),
            ]
        );
    }

    #[test]
    fn rereads_look_rows_up_by_key_with_the_predicate() {
        let t = RuleTable::new(&rule(&["tenant", "id"], Some("status = 'pending'")), HashSet::new(), 500, true);
        assert_eq!(
            t.reread_sql(2),
            "SELECT `due_at`, `tenant`, `id`, `user_id` FROM `app`.`odd``name` WHERE (`status` = 'pending') AND \
             ((`tenant` = ? AND `id` = ?) OR (`tenant` = ? AND `id` = ?))"
        );
        let t = RuleTable::new(&rule(&["id"], None), HashSet::new(), 500, true);
        assert!(t.reread_sql(3).ends_with("FROM `app`.`odd``name` WHERE `id` IN (?, ?, ?)"), "{}", t.reread_sql(3));
    }

    #[test]
    fn single_key_without_predicate() {
        let t = RuleTable::new(&rule(&["id"], None), HashSet::new(), 1000, true);
        let (first, next) = t.page_sql();
        assert!(first.contains("WHERE `due_at` >= ? AND `due_at` < ? ORDER BY `due_at`, `id` LIMIT 1000"), "{first}");
        assert!(next.contains("AND (`due_at` > ? OR (`due_at` = ? AND `id` > ?))"), "{next}");
        let params = RuleTable::cursor_params(&Cursor(vec![SqlValue::Int(1), SqlValue::Int(2)]), &SqlValue::Int(3));
        assert_eq!(next.matches('?').count(), params.len());
    }

    fn columns(due_type: &str) -> Vec<TableColumn> {
        [("id", "bigint", true), ("due_at", due_type, false), ("user_id", "int", false)]
            .iter()
            .map(|(n, t, p)| TableColumn {
                name: n.to_string(),
                data_type: t.to_string(),
                primary: *p,
                collation: None,
            })
            .collect()
    }

    fn simple_rule(due_type: &str) -> ScheduleRule {
        serde_json::from_value(json!({
            "name": "actions", "db": "app", "table": "t", "key_columns": ["id"], "due_column": "due_at",
            "due_type": due_type, "time_zone": "UTC", "input_columns": ["user_id"],
            "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:s",
        }))
        .unwrap()
    }

    #[test]
    fn due_types_must_match_the_column() {
        assert!(rule_problems(&simple_rule("datetime"), &columns("datetime"), "h:1").is_empty());
        assert!(rule_problems(&simple_rule("timestamp"), &columns("timestamp"), "h:1").is_empty());
        assert!(rule_problems(&simple_rule("epoch_millis"), &columns("bigint"), "h:1").is_empty());
        let p = rule_problems(&simple_rule("datetime"), &columns("timestamp"), "h:1");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("set due_type = \"timestamp\""), "{}", p[0]);
        let p = rule_problems(&simple_rule("epoch_seconds"), &columns("varchar"), "h:1");
        assert!(p[0].contains("VARCHAR") && p[0].contains("integer column"), "{}", p[0]);
    }

    #[test]
    fn missing_tables_columns_and_keys_are_named() {
        let p = rule_problems(&simple_rule("datetime"), &[], "h:1");
        assert!(p[0].starts_with("does not exist on h:1"), "{}", p[0]);
        let mut c = columns("datetime");
        c.retain(|c| c.name != "user_id");
        let p = rule_problems(&simple_rule("datetime"), &c, "h:1");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("has no column \"user_id\" (the rule's input_columns); fix input_columns"),
            "{}",
            p[0]
        );
        let mut c = columns("datetime");
        c[2].name = "User_Id".into();
        let p = rule_problems(&simple_rule("datetime"), &c, "h:1");
        assert!(p[0].contains("names are case-sensitive here: the table has \"User_Id\""), "{}", p[0]);
        let mut c = columns("datetime");
        c[2].primary = true;
        let p = rule_problems(&simple_rule("datetime"), &c, "h:1");
        assert!(p[0].contains("do not include the primary key column \"user_id\""), "{}", p[0]);
    }
}
