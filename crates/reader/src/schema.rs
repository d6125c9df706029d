//! Per-table column information, built once per TABLE_MAP event and reused for every row.
//!
//! Building this (names, types, metadata bytes, signedness, charsets, ENUM/SET labels,
//! primary key) for every value is what makes stock row decoding slow; we build it when
//! a table map changes and decode rows against the cached copy. Column names and types
//! come from the table map's optional metadata (`binlog_row_metadata=FULL`), so a schema
//! change (ALTER TABLE) is picked up with the next table map and columns are never
//! mis-labelled.

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_common::collations::{Collation, CollationId};
use mysql_common::constants::ColumnType;

use crate::error::DecodeError;

/// How the bytes of a character or binary column become JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextKind {
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
pub(crate) struct Labels(pub Vec<String>);

#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
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
pub(crate) struct TableSchema {
    pub db: String,
    pub table: String,
    pub columns: Vec<ColumnInfo>,
    /// Indexes of the primary key columns; empty when the table has none.
    pub key: Vec<usize>,
    pub json_columns: usize,
    /// The table map event's bytes, to recognise an unchanged re-sent map cheaply.
    pub raw_table_map: Vec<u8>,
}

impl TableSchema {
    /// Builds the schema of a table map event. `excluded` says which column names to drop.
    pub fn from_table_map(
        tme: &TableMapEvent<'_>,
        raw: &[u8],
        // Per column name: (excluded by the filter, a MariaDB JSON column).
        hints: impl Fn(&str) -> (bool, bool),
    ) -> Result<Arc<Self>, DecodeError> {
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let n = tme.columns_count() as usize;

        let mut signedness: Option<Vec<bool>> = None;
        let mut default_charset: Option<u16> = None;
        let mut nondefault_charsets: Vec<(usize, u16)> = Vec::new();
        let mut column_charsets: Option<Vec<u16>> = None;
        let mut enum_set_default: Option<u16> = None;
        let mut enum_set_column: Option<Vec<u16>> = None;
        let mut names: Option<Vec<String>> = None;
        let mut enum_values: Vec<Vec<String>> = Vec::new();
        let mut set_values: Vec<Vec<String>> = Vec::new();
        let mut key: Vec<usize> = Vec::new();

        let bad = |what: &str, e: std::io::Error| DecodeError::TableMap {
            db: db.clone(),
            table: table.clone(),
            reason: format!("{what}: {e}"),
        };

        for field in tme.iter_optional_meta() {
            let field = field.map_err(|e| bad("optional metadata", e))?;
            match field {
                OptionalMetadataField::Signedness(bits) => {
                    signedness = Some(bits.iter().map(|b| *b).collect());
                }
                OptionalMetadataField::DefaultCharset(dc) => {
                    default_charset = Some(dc.default_charset());
                    for nd in dc.iter_non_default() {
                        let nd = nd.map_err(|e| bad("default charset", e))?;
                        nondefault_charsets.push((nd.column_index() as usize, nd.charset()));
                    }
                }
                OptionalMetadataField::ColumnCharset(cc) => {
                    let mut v = Vec::new();
                    for c in cc.iter_charsets() {
                        v.push(c.map_err(|e| bad("column charset", e))?);
                    }
                    column_charsets = Some(v);
                }
                OptionalMetadataField::EnumAndSetDefaultCharset(dc) => {
                    enum_set_default = Some(dc.default_charset());
                }
                OptionalMetadataField::EnumAndSetColumnCharset(cc) => {
                    let mut v = Vec::new();
                    for c in cc.iter_charsets() {
                        v.push(c.map_err(|e| bad("enum/set charset", e))?);
                    }
                    enum_set_column = Some(v);
                }
                OptionalMetadataField::ColumnName(cn) => {
                    let mut v = Vec::with_capacity(n);
                    for name in cn.iter_names() {
                        v.push(name.map_err(|e| bad("column names", e))?.name().into_owned());
                    }
                    names = Some(v);
                }
                OptionalMetadataField::EnumStrValue(ev) => {
                    for vals in ev.iter_values() {
                        let vals = vals.map_err(|e| bad("enum labels", e))?;
                        enum_values.push(vals.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SetStrValue(sv) => {
                    for vals in sv.iter_values() {
                        let vals = vals.map_err(|e| bad("set labels", e))?;
                        set_values.push(vals.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SimplePrimaryKey(pk) => {
                    for i in pk.iter_indexes() {
                        key.push(i.map_err(|e| bad("primary key", e))? as usize);
                    }
                }
                OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                    for k in pk.iter_keys() {
                        key.push(k.map_err(|e| bad("primary key", e))?.column_index() as usize);
                    }
                }
                _ => {}
            }
        }

        let has_names = names.as_ref().is_some_and(|v| v.len() == n);
        let mut columns = Vec::with_capacity(n);
        let (mut numeric_i, mut char_i, mut enum_set_i, mut enum_i, mut set_i, mut json_i) = (0, 0, 0, 0, 0, 0);
        for i in 0..n {
            let ty = match tme.get_column_type(i) {
                Ok(Some(ty)) => ty,
                Ok(None) => return Err(DecodeError::TableMap { db, table, reason: format!("column {i} has no type") }),
                Err(e) => return Err(DecodeError::TableMap { db, table, reason: format!("column {i}: {e}") }),
            };
            let meta = tme.get_column_metadata(i).unwrap_or(&[]).to_vec();
            let unsigned = if ty.is_numeric_type() {
                let u = signedness.as_ref().and_then(|s| s.get(numeric_i).copied()).unwrap_or(false);
                numeric_i += 1;
                u
            } else {
                false
            };
            let text = if ty.is_character_type() {
                let cs = column_charsets.as_ref().and_then(|v| v.get(char_i).copied()).or_else(|| {
                    nondefault_charsets.iter().find(|(idx, _)| *idx == char_i).map(|(_, c)| *c).or(default_charset)
                });
                char_i += 1;
                cs.map(text_kind).unwrap_or(TextKind::Unknown)
            } else if ty.is_enum_or_set_type() {
                let cs = enum_set_column.as_ref().and_then(|v| v.get(enum_set_i).copied()).or(enum_set_default);
                enum_set_i += 1;
                cs.map(text_kind).unwrap_or(TextKind::Unknown)
            } else {
                TextKind::Binary
            };
            let labels = if ty.is_enum_type() {
                let l = enum_values.get(enum_i).cloned().map(Labels);
                enum_i += 1;
                l
            } else if ty.is_set_type() {
                let l = set_values.get(set_i).cloned().map(Labels);
                set_i += 1;
                l
            } else {
                None
            };
            let json_ordinal = (ty == ColumnType::MYSQL_TYPE_JSON).then(|| {
                json_i += 1;
                json_i - 1
            });
            let name = if has_names {
                names.as_ref().map(|v| v[i].clone()).unwrap_or_default()
            } else {
                format!("@{}", i + 1)
            };
            let json_key = format!("{}:", serde_json::to_string(&name).expect("strings serialize"));
            let (excluded, json_hint) = hints(&name);
            let json_text = json_hint && ty.is_character_type() && text != TextKind::Binary;
            columns.push(ColumnInfo {
                name,
                json_key,
                ty,
                meta,
                unsigned,
                text,
                labels,
                excluded,
                json_text,
                json_ordinal,
            });
        }
        key.retain(|&k| k < n);
        Ok(Arc::new(Self { db, table, columns, key, json_columns: json_i, raw_table_map: raw.to_vec() }))
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
pub(crate) fn text_kind(collation_id: u16) -> TextKind {
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
pub(crate) fn charset_kind(charset: &str) -> TextKind {
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
