//! Per-table column information, built once per TABLE_MAP event and reused for every row.
//!
//! Building this (names, types, metadata bytes, signedness, charsets, ENUM/SET labels,
//! primary key) for every value is what makes stock row decoding slow; we build it when
//! a table map changes and decode rows against the cached copy. Column names and types
//! come from the table map's optional metadata (`binlog_row_metadata=FULL`), so a schema
//! change (ALTER TABLE) is picked up with the next table map and columns are never
//! mis-labelled.
//!
//! Without names in the table map (`MINIMAL`, MariaDB's `NO_LOG`), a live source hands in
//! the table's current definition ([`TableCatalog`]); it is used only when it agrees with
//! the table map ([`TableCatalog::check`]), else the schema is refused as
//! [`SchemaError::drifted`]. Without either (binlog files, no server) columns are named by
//! ordinal: `@1`, `@2`, ...

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_common::collations::{Collation, CollationId};
use mysql_common::constants::ColumnType;

use crate::catalog::{BinlogColumn, TableCatalog};

/// How the bytes of a character or binary column become JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// utf8mb4, utf8mb3, ascii: the bytes are UTF-8.
    Utf8,
    /// Any other character set, converted to UTF-8.
    Encoded(&'static encoding_rs::Encoding),
    /// The binary character set (BINARY, VARBINARY, BLOB): base64.
    Binary,
    /// No charset metadata (old servers, MINIMAL without charsets): UTF-8 when valid,
    /// base64 otherwise.
    Unknown,
}

/// ENUM or SET labels in definition order.
#[derive(Debug, Clone, Default)]
pub struct Labels(pub Vec<String>);

#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    /// `"name":` ready to copy into the JSON output.
    pub json_key: String,
    pub ty: ColumnType,
    pub meta: Vec<u8>,
    pub unsigned: bool,
    pub text: TextKind,
    pub labels: Option<Labels>,
    /// Dropped from before/after images by the `exclude_columns` filter.
    pub excluded: bool,
    /// A MariaDB JSON column (LONGTEXT with a json_valid check): emitted as JSON.
    pub json_text: bool,
    /// Ordinal among JSON columns (for partial JSON updates).
    pub json_ordinal: Option<usize>,
}

#[derive(Debug)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    /// `db.table`, shared by every record of the table (metrics, dead letters).
    pub name: Arc<str>,
    pub columns: Vec<ColumnInfo>,
    /// Indexes of the primary key columns; empty when the table has none.
    pub key: Vec<usize>,
    pub json_columns: usize,
    /// The table map event's bytes, to recognise an unchanged re-sent map cheaply.
    pub raw_table_map: Vec<u8>,
}

/// A table map that cannot be turned into a schema.
#[derive(Debug, Clone, thiserror::Error)]
#[error("table map for {db}.{table} is unusable: {reason}")]
pub struct SchemaError {
    pub db: String,
    pub table: String,
    pub reason: String,
    /// The table map is readable, but the table's current definition (which had to name its
    /// columns) disagrees with it: the table changed after the event was written. Its rows
    /// cannot be named; the rest of the stream can go on.
    pub drifted: bool,
}

/// The optional metadata of a table map (`binlog_row_metadata`), gathered per kind.
#[derive(Default)]
struct OptionalMeta {
    signedness: Option<Vec<bool>>,
    default_charset: Option<u16>,
    nondefault_charsets: Vec<(usize, u16)>,
    column_charsets: Option<Vec<u16>>,
    enum_set_default: Option<u16>,
    enum_set_column: Option<Vec<u16>>,
    names: Option<Vec<String>>,
    enum_values: Vec<Vec<String>>,
    set_values: Vec<Vec<String>>,
    key: Vec<usize>,
}

impl OptionalMeta {
    /// Reads every optional metadata field; the error names the field that is unreadable.
    fn read(tme: &TableMapEvent<'_>) -> Result<Self, String> {
        let bad = |what: &str, e: std::io::Error| format!("{what}: {e}");
        let mut m = Self::default();
        for field in tme.iter_optional_meta() {
            match field.map_err(|e| bad("optional metadata", e))? {
                OptionalMetadataField::Signedness(bits) => m.signedness = Some(bits.iter().map(|b| *b).collect()),
                OptionalMetadataField::DefaultCharset(dc) => {
                    m.default_charset = Some(dc.default_charset());
                    for nd in dc.iter_non_default() {
                        let nd = nd.map_err(|e| bad("default charset", e))?;
                        m.nondefault_charsets.push((nd.column_index() as usize, nd.charset()));
                    }
                }
                OptionalMetadataField::ColumnCharset(cc) => {
                    let v: Result<Vec<u16>, _> = cc.iter_charsets().collect();
                    m.column_charsets = Some(v.map_err(|e| bad("column charset", e))?);
                }
                OptionalMetadataField::EnumAndSetDefaultCharset(dc) => m.enum_set_default = Some(dc.default_charset()),
                OptionalMetadataField::EnumAndSetColumnCharset(cc) => {
                    let v: Result<Vec<u16>, _> = cc.iter_charsets().collect();
                    m.enum_set_column = Some(v.map_err(|e| bad("enum/set charset", e))?);
                }
                OptionalMetadataField::ColumnName(cn) => {
                    let mut v = Vec::new();
                    for name in cn.iter_names() {
                        v.push(name.map_err(|e| bad("column names", e))?.name().into_owned());
                    }
                    m.names = Some(v);
                }
                OptionalMetadataField::EnumStrValue(ev) => {
                    for vals in ev.iter_values() {
                        let vals = vals.map_err(|e| bad("enum labels", e))?;
                        m.enum_values.push(vals.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SetStrValue(sv) => {
                    for vals in sv.iter_values() {
                        let vals = vals.map_err(|e| bad("set labels", e))?;
                        m.set_values.push(vals.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SimplePrimaryKey(pk) => {
                    for i in pk.iter_indexes() {
                        m.key.push(i.map_err(|e| bad("primary key", e))? as usize);
                    }
                }
                OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                    for k in pk.iter_keys() {
                        m.key.push(k.map_err(|e| bad("primary key", e))?.column_index() as usize);
                    }
                }
                _ => {}
            }
        }
        Ok(m)
    }
}

/// Walks the columns in order, handing each the metadata entry of its kind: signedness
/// counts numeric columns, charsets character columns, labels ENUM and SET columns.
#[derive(Default)]
struct Ordinals {
    numeric: usize,
    character: usize,
    enum_or_set: usize,
    enums: usize,
    sets: usize,
    json: usize,
}

impl Ordinals {
    /// `None` for a numeric column when the table map carries no signedness.
    fn unsigned(&mut self, meta: &OptionalMeta, ty: ColumnType) -> Option<bool> {
        if !ty.is_numeric_type() {
            return Some(false);
        }
        self.numeric += 1;
        meta.signedness.as_ref().and_then(|s| s.get(self.numeric - 1).copied())
    }

    fn text(&mut self, meta: &OptionalMeta, ty: ColumnType) -> TextKind {
        let charset = if ty.is_character_type() {
            let i = self.character;
            self.character += 1;
            meta.column_charsets.as_ref().and_then(|v| v.get(i).copied()).or_else(|| {
                meta.nondefault_charsets.iter().find(|(idx, _)| *idx == i).map(|(_, c)| *c).or(meta.default_charset)
            })
        } else if ty.is_enum_or_set_type() {
            self.enum_or_set += 1;
            meta.enum_set_column.as_ref().and_then(|v| v.get(self.enum_or_set - 1).copied()).or(meta.enum_set_default)
        } else {
            return TextKind::Binary;
        };
        charset.map(text_kind).unwrap_or(TextKind::Unknown)
    }

    fn labels(&mut self, meta: &OptionalMeta, ty: ColumnType) -> Option<Labels> {
        if ty.is_enum_type() {
            self.enums += 1;
            meta.enum_values.get(self.enums - 1).cloned().map(Labels)
        } else if ty.is_set_type() {
            self.sets += 1;
            meta.set_values.get(self.sets - 1).cloned().map(Labels)
        } else {
            None
        }
    }

    fn json(&mut self, ty: ColumnType) -> Option<usize> {
        (ty == ColumnType::MYSQL_TYPE_JSON).then(|| {
            self.json += 1;
            self.json - 1
        })
    }
}

/// One column as the table map alone describes it.
struct MapColumn {
    ty: ColumnType,
    meta: Vec<u8>,
    nullable: bool,
    unsigned: Option<bool>,
    text: TextKind,
    labels: Option<Labels>,
    json_ordinal: Option<usize>,
}

impl TableSchema {
    /// Whether the filter drops any of the table's columns from the images.
    pub fn has_excluded_columns(&self) -> bool {
        self.columns.iter().any(|c| c.excluded)
    }

    /// Builds the schema of a table map event. `catalog` is the table's current definition,
    /// used only when the table map names no columns (and refused when it disagrees).
    /// `hints(name)` says, per column name, whether the filter excludes it and whether it is
    /// a MariaDB JSON column.
    pub fn from_table_map(
        tme: &TableMapEvent<'_>,
        raw: &[u8],
        catalog: Option<&TableCatalog>,
        hints: impl Fn(&str) -> (bool, bool),
    ) -> Result<Arc<Self>, SchemaError> {
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let bad = |reason: String| SchemaError { db: db.clone(), table: table.clone(), reason, drifted: false };
        let n = tme.columns_count() as usize;
        let mut meta = OptionalMeta::read(tme).map_err(bad)?;
        let names = meta.names.take().filter(|v| v.len() == n);
        let mut ordinals = Ordinals::default();
        let nulls = tme.null_bitmask();
        let mut map = Vec::with_capacity(n);
        for i in 0..n {
            let ty = match tme.get_column_type(i) {
                Ok(Some(ty)) => ty,
                Ok(None) => return Err(bad(format!("column {i} has no type"))),
                Err(e) => return Err(bad(format!("column {i}: {e}"))),
            };
            map.push(MapColumn {
                ty,
                meta: tme.get_column_metadata(i).unwrap_or(&[]).to_vec(),
                nullable: nulls.get(i).is_some_and(|b| *b),
                unsigned: ordinals.unsigned(&meta, ty),
                text: ordinals.text(&meta, ty),
                labels: ordinals.labels(&meta, ty),
                json_ordinal: ordinals.json(ty),
            });
        }
        // The current definition stands in only for a table map without names, and only
        // when it describes the same columns.
        let catalog = catalog.filter(|_| names.is_none());
        if let Some(catalog) = catalog {
            let binlog: Vec<BinlogColumn<'_>> = map
                .iter()
                .map(|c| BinlogColumn {
                    ty: c.ty,
                    meta: &c.meta,
                    nullable: c.nullable,
                    unsigned: c.unsigned,
                    text: c.text,
                })
                .collect();
            catalog.check(&binlog).map_err(|d| SchemaError { drifted: true, ..bad(d.0) })?;
        }
        let mut columns = Vec::with_capacity(n);
        for (i, c) in map.into_iter().enumerate() {
            let current = catalog.map(|cat| &cat.columns[i]);
            let name = match (&names, current) {
                (Some(names), _) => names[i].clone(),
                (None, Some(cur)) => cur.name.clone(),
                (None, None) => format!("@{}", i + 1),
            };
            let json_key = format!("{}:", serde_json::to_string(&name).expect("strings serialize"));
            let (excluded, json_hint) = hints(&name);
            let text = match (c.text, current) {
                (TextKind::Unknown, Some(cur)) if c.ty.is_character_type() => cur.text_kind(),
                (text, _) => text,
            };
            columns.push(ColumnInfo {
                json_key,
                unsigned: c.unsigned.or(current.map(|cur| cur.unsigned)).unwrap_or(false),
                labels: c.labels.or_else(|| current.and_then(|cur| cur.labels.clone()).map(Labels)),
                json_text: json_hint && c.ty.is_character_type() && text != TextKind::Binary,
                json_ordinal: c.json_ordinal,
                meta: c.meta,
                name,
                ty: c.ty,
                text,
                excluded,
            });
        }
        let mut key = std::mem::take(&mut meta.key);
        if let Some(cat) = catalog {
            key.clone_from(&cat.key);
        }
        key.retain(|&k| k < n);
        let name = Arc::from(format!("{db}.{table}"));
        Ok(Arc::new(Self { db, table, name, columns, key, json_columns: ordinals.json, raw_table_map: raw.to_vec() }))
    }

    /// Whether two table maps describe the same columns (a DDL changes this).
    pub fn same_shape(&self, other: &Self) -> bool {
        self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.name == b.name && a.ty == b.ty && a.meta == b.meta && a.unsigned == b.unsigned)
    }
}

/// Maps a collation id to how its bytes become text.
pub fn text_kind(collation_id: u16) -> TextKind {
    if collation_id == 63 {
        return TextKind::Binary;
    }
    let id = CollationId::from(collation_id);
    if id == CollationId::UNKNOWN_COLLATION_ID {
        return TextKind::Unknown;
    }
    let charset = Collation::from(id).charset().to_owned();
    charset_kind(&charset)
}

/// Maps a MySQL character set name to how its bytes become text.
pub fn charset_kind(charset: &str) -> TextKind {
    let label = match charset {
        "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => return TextKind::Utf8,
        "binary" => return TextKind::Binary,
        // MySQL's latin1 is Windows-1252, which is what WHATWG calls latin1 too.
        "latin1" => "windows-1252",
        "latin2" => "iso-8859-2",
        "cp1250" => "windows-1250",
        "cp1251" => "windows-1251",
        "cp1256" => "windows-1256",
        "cp1257" => "windows-1257",
        "koi8r" => "koi8-r",
        "koi8u" => "koi8-u",
        "greek" => "iso-8859-7",
        "hebrew" => "iso-8859-8",
        "latin5" => "iso-8859-9",
        "latin7" => "iso-8859-13",
        "sjis" | "cp932" => "shift_jis",
        "ujis" | "eucjpms" => "euc-jp",
        "euckr" => "euc-kr",
        "gb2312" | "gbk" => "gbk",
        "gb18030" => "gb18030",
        "big5" => "big5",
        "utf16" => "utf-16be",
        "utf16le" => "utf-16le",
        other => other,
    };
    encoding_rs::Encoding::for_label(label.as_bytes()).map(TextKind::Encoded).unwrap_or(TextKind::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collations_map_to_text_kinds() {
        assert_eq!(text_kind(45), TextKind::Utf8); // utf8mb4_general_ci
        assert_eq!(text_kind(255), TextKind::Utf8); // utf8mb4_0900_ai_ci
        assert_eq!(text_kind(63), TextKind::Binary);
        assert_eq!(text_kind(8), TextKind::Encoded(encoding_rs::WINDOWS_1252)); // latin1_swedish_ci
        assert_eq!(text_kind(51), TextKind::Encoded(encoding_rs::WINDOWS_1251)); // cp1251_general_ci
        assert_eq!(text_kind(60000), TextKind::Unknown);
    }
}
