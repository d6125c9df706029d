//! A table's definition as `information_schema` describes it *now*, standing in for what a
//! table map leaves out under `binlog_row_metadata=MINIMAL` (or MariaDB's `NO_LOG`): column
//! names, ENUM/SET labels, the primary key, and (with `NO_LOG`) signedness and charsets.
//!
//! The binlog event was written with the definition of *its* time, so a definition read later
//! is only usable after [`TableCatalog::check`] found it agrees with the table map: the column
//! count, and per column the binlog type and what its metadata pins down (VARCHAR/CHAR byte
//! length, BLOB/TEXT size class, DECIMAL precision and scale, fractional seconds, BIT width,
//! ENUM/SET storage size), nullability, and signedness and character set where the table map
//! carries them. Those cover every ALTER that changes how a row is laid out in the binlog.
//!
//! What no check can see: an ALTER that keeps every column's type and only renames or
//! reorders columns of identical definitions (`RENAME COLUMN a TO b`, or swapping two INT
//! columns' names), or edits ENUM/SET labels without changing their storage size. Rows
//! written before such an ALTER and read after it carry the current names and labels. Only
//! `binlog_row_metadata=FULL`, which writes the names into every table map, rules that out.

use mysql_async::prelude::Queryable;
use mysql_common::constants::ColumnType;

use crate::error::MysqlError;
use crate::schema::{charset_kind, TextKind};
use crate::session::Session;

/// One column of [`TableCatalog`], from `information_schema.COLUMNS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub name: String,
    /// `DATA_TYPE`, lower case (`int`, `varchar`, `enum`, `longtext`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE` as the server prints it (`int(10) unsigned`, `enum('a','b')`), for messages.
    pub column_type: String,
    pub unsigned: bool,
    /// ENUM or SET labels in definition order.
    pub labels: Option<Vec<String>>,
    /// `CHARACTER_SET_NAME`; `None` for binary and non-text columns.
    pub charset: Option<String>,
    /// `CHARACTER_OCTET_LENGTH`: the byte length of CHAR/VARCHAR/BINARY/VARBINARY.
    pub octet_length: Option<u64>,
    /// `NUMERIC_PRECISION` (DECIMAL digits, BIT width).
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    /// `DATETIME_PRECISION`: fractional-second digits of DATETIME, TIMESTAMP and TIME.
    pub fsp: Option<u64>,
    pub nullable: bool,
}

impl CatalogColumn {
    /// How this column's bytes become text when the table map names no charset.
    pub fn text_kind(&self) -> TextKind {
        match &self.charset {
            Some(cs) => charset_kind(cs),
            None => TextKind::Binary,
        }
    }
}

/// A table's columns in table order and its primary key (column indexes in key order).
/// No columns: the table does not exist now, or the user cannot see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCatalog {
    pub db: String,
    pub table: String,
    pub columns: Vec<CatalogColumn>,
    pub key: Vec<usize>,
}

/// What a table map says about one column, for [`TableCatalog::check`].
#[derive(Debug, Clone, Copy)]
pub struct BinlogColumn<'a> {
    pub ty: ColumnType,
    pub meta: &'a [u8],
    pub nullable: bool,
    /// `None` when the table map carries no signedness (MariaDB `NO_LOG`).
    pub unsigned: Option<bool>,
    /// `Unknown` when the table map carries no (known) charset.
    pub text: TextKind,
}

/// A table map that disagrees with the table's current definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Drift(pub String);

/// Reads `db.table`'s definition from `information_schema` (two queries).
pub async fn read_catalog(session: &mut Session, db: &str, table: &str) -> Result<TableCatalog, MysqlError> {
    type Row = (String, String, String, Option<String>, Option<u64>, Option<u64>, Option<u64>, Option<u64>, String);
    let what = format!("read the definition of {db}.{table} from information_schema");
    let rows: Vec<Row> = match session
        .conn()
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, CHARACTER_OCTET_LENGTH, \
             NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return Err(session.error(&what, e)),
    };
    let key_names: Vec<String> = match session
        .conn()
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (db, table),
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return Err(session.error(&what, e)),
    };
    let columns: Vec<CatalogColumn> = rows
        .into_iter()
        .map(|(name, data_type, column_type, charset, octet_length, precision, scale, fsp, nullable)| {
            let data_type = data_type.to_ascii_lowercase();
            let labels = matches!(data_type.as_str(), "enum" | "set").then(|| parse_labels(&column_type));
            CatalogColumn {
                unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
                name,
                data_type,
                column_type,
                labels,
                charset,
                octet_length,
                precision,
                scale,
                fsp,
                nullable: nullable.eq_ignore_ascii_case("YES"),
            }
        })
        .collect();
    let key = key_names.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
    Ok(TableCatalog { db: db.to_owned(), table: table.to_owned(), columns, key })
}

/// The labels of `enum('a','it''s','c\\d')`: quotes doubled, backslash escapes as the
/// server prints them.
pub fn parse_labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else { return Vec::new() };
    let mut labels = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue; // the commas between labels and the closing parenthesis
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => match chars.next() {
                    Some('0') => label.push('\0'),
                    Some('n') => label.push('\n'),
                    Some('r') => label.push('\r'),
                    Some('t') => label.push('\t'),
                    Some('Z') => label.push('\x1a'),
                    Some(other) => label.push(other),
                    None => label.push('\\'),
                },
                c => label.push(c),
            }
        }
        labels.push(label);
    }
    labels
}

impl TableCatalog {
    /// Whether this definition describes the columns of a table map; the error says which
    /// column differs and how.
    pub fn check(&self, binlog: &[BinlogColumn<'_>]) -> Result<(), Drift> {
        let (db, table) = (&self.db, &self.table);
        if self.columns.is_empty() {
            return Err(Drift(format!(
                "information_schema lists no columns of {db}.{table}: it was dropped or renamed after this event, \
                 or the reader's user cannot see it (GRANT SELECT ON {db}.{table})"
            )));
        }
        if self.columns.len() != binlog.len() {
            return Err(Drift(format!(
                "{db}.{table} has {} columns in information_schema but {} in the table map",
                self.columns.len(),
                binlog.len()
            )));
        }
        for (i, (col, b)) in self.columns.iter().zip(binlog).enumerate() {
            if let Err(what) = column_agrees(col, b) {
                return Err(Drift(format!(
                    "column {} `{}` of {db}.{table} is {} in information_schema, but the table map has {what}",
                    i + 1,
                    col.name,
                    col.column_type
                )));
            }
        }
        Ok(())
    }
}

/// Whether one column's definition matches its table-map entry; the error describes the
/// table map's side.
fn column_agrees(col: &CatalogColumn, b: &BinlogColumn<'_>) -> Result<(), String> {
    let type_name = format!("{:?}", b.ty).trim_start_matches("MYSQL_TYPE_").to_owned();
    let Some(types) = binlog_types(&col.data_type) else {
        return Err(format!("{type_name} (sameday cannot match the type {:?} to a binlog type)", col.data_type));
    };
    if !types.contains(&b.ty) {
        return Err(type_name);
    }
    if let Some(want) = meta_expectation(col) {
        let got = meta_value(b.ty, b.meta);
        if got != Some(want) {
            return Err(format!("{type_name} with metadata {:?} (expected {want})", b.meta));
        }
    }
    if col.nullable != b.nullable {
        return Err(format!("{type_name} {}", if b.nullable { "NULL" } else { "NOT NULL" }));
    }
    // YEAR counts as numeric in the table map's signedness but is never declared unsigned.
    let signed_type = b.ty.is_numeric_type() && b.ty != ColumnType::MYSQL_TYPE_YEAR;
    if signed_type && b.unsigned.is_some_and(|u| u != col.unsigned) {
        return Err(format!("{type_name} {}", if col.unsigned { "signed" } else { "unsigned" }));
    }
    if b.ty.is_character_type() && b.text != TextKind::Unknown {
        let catalog = col.text_kind();
        if catalog != TextKind::Unknown && catalog != b.text {
            return Err(format!("{type_name} in another character set ({:?})", b.text));
        }
    }
    Ok(())
}

/// The binlog types a `DATA_TYPE` is written as (old temporal formats included).
fn binlog_types(data_type: &str) -> Option<&'static [ColumnType]> {
    use ColumnType::*;
    Some(match data_type {
        "tinyint" | "bool" | "boolean" => &[MYSQL_TYPE_TINY],
        "smallint" => &[MYSQL_TYPE_SHORT],
        "mediumint" => &[MYSQL_TYPE_INT24],
        "int" | "integer" => &[MYSQL_TYPE_LONG],
        "bigint" => &[MYSQL_TYPE_LONGLONG],
        "decimal" | "numeric" | "fixed" => &[MYSQL_TYPE_NEWDECIMAL, MYSQL_TYPE_DECIMAL],
        "float" => &[MYSQL_TYPE_FLOAT],
        "double" | "real" | "double precision" => &[MYSQL_TYPE_DOUBLE],
        "bit" => &[MYSQL_TYPE_BIT],
        "date" => &[MYSQL_TYPE_NEWDATE, MYSQL_TYPE_DATE],
        "datetime" => &[MYSQL_TYPE_DATETIME2, MYSQL_TYPE_DATETIME],
        "timestamp" => &[MYSQL_TYPE_TIMESTAMP2, MYSQL_TYPE_TIMESTAMP],
        "time" => &[MYSQL_TYPE_TIME2, MYSQL_TYPE_TIME],
        "year" => &[MYSQL_TYPE_YEAR],
        // MariaDB's UUID, INET4 and INET6 are fixed-length binary strings in the binlog.
        "char" | "binary" | "uuid" | "inet4" | "inet6" => &[MYSQL_TYPE_STRING],
        "varchar" | "varbinary" => &[MYSQL_TYPE_VARCHAR, MYSQL_TYPE_VAR_STRING],
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            &[MYSQL_TYPE_BLOB]
        }
        "json" => &[MYSQL_TYPE_JSON, MYSQL_TYPE_BLOB],
        "enum" => &[MYSQL_TYPE_ENUM],
        "set" => &[MYSQL_TYPE_SET],
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => &[MYSQL_TYPE_GEOMETRY],
        "vector" => &[MYSQL_TYPE_VECTOR, MYSQL_TYPE_VARCHAR],
        _ => return None,
    })
}

/// What the table map's metadata must say for this definition (see [`meta_value`]); `None`
/// when it pins nothing down.
fn meta_expectation(col: &CatalogColumn) -> Option<u64> {
    match col.data_type.as_str() {
        "char" | "binary" | "varchar" | "varbinary" => col.octet_length,
        "tinytext" | "tinyblob" => Some(1),
        "text" | "blob" => Some(2),
        "mediumtext" | "mediumblob" => Some(3),
        "longtext" | "longblob" => Some(4),
        "decimal" | "numeric" | "fixed" => Some(col.precision? * 256 + col.scale.unwrap_or(0)),
        "datetime" | "timestamp" | "time" => col.fsp,
        "bit" => col.precision,
        "enum" => Some(if col.labels.as_ref()?.len() > 255 { 2 } else { 1 }),
        "set" => Some(match col.labels.as_ref()?.len().div_ceil(8) {
            n @ 0..=4 => n.max(1) as u64,
            _ => 8,
        }),
        _ => None,
    }
}

/// The one number a column's table-map metadata encodes, in the units of
/// [`meta_expectation`]: the byte length of strings, the size class of BLOBs, `precision *
/// 256 + scale` of DECIMAL, the fsp of temporal types, the width of BIT, the storage bytes of
/// ENUM and SET.
fn meta_value(ty: ColumnType, meta: &[u8]) -> Option<u64> {
    use ColumnType::*;
    let byte = |i: usize| meta.get(i).copied().map(u64::from);
    match ty {
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => Some(byte(0)? | byte(1)? << 8),
        // Byte 0 is the real type with bits 4-5 of the length folded in (inverted).
        MYSQL_TYPE_STRING => Some(((byte(0)? & 0x30) ^ 0x30) << 4 | byte(1)?),
        MYSQL_TYPE_ENUM | MYSQL_TYPE_SET => byte(1),
        MYSQL_TYPE_BLOB | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP2 | MYSQL_TYPE_TIME2 => byte(0),
        // Old temporal formats have no fraction.
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIME => Some(0),
        MYSQL_TYPE_NEWDECIMAL => Some(byte(0)? << 8 | byte(1)?),
        MYSQL_TYPE_BIT => Some(byte(1)? * 8 + byte(0)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
