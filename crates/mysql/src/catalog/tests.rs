use super::*;

fn col(name: &str, data_type: &str, column_type: &str) -> CatalogColumn {
    let data_type = data_type.to_owned();
    let labels = matches!(data_type.as_str(), "enum" | "set").then(|| parse_labels(column_type));
    CatalogColumn {
        name: name.into(),
        unsigned: column_type.contains("unsigned"),
        labels,
        data_type,
        column_type: column_type.into(),
        charset: None,
        octet_length: None,
        precision: None,
        scale: None,
        fsp: None,
        nullable: true,
    }
}

fn varchar(name: &str, chars: u64, charset: &str, bytes_per_char: u64) -> CatalogColumn {
    CatalogColumn {
        charset: Some(charset.into()),
        octet_length: Some(chars * bytes_per_char),
        ..col(name, "varchar", &format!("varchar({chars})"))
    }
}

fn catalog(columns: Vec<CatalogColumn>) -> TableCatalog {
    TableCatalog { db: "app".into(), table: "t".into(), columns, key: vec![0] }
}

fn bin(ty: ColumnType, meta: &[u8]) -> BinlogColumn<'_> {
    BinlogColumn { ty, meta, nullable: true, unsigned: None, text: TextKind::Unknown }
}

/// `id INT UNSIGNED, name VARCHAR(10) utf8mb4, amount DECIMAL(12,3), at DATETIME(3), kind ENUM('a','b')`.
fn table() -> TableCatalog {
    catalog(vec![
        CatalogColumn { nullable: false, ..col("id", "int", "int(10) unsigned") },
        varchar("name", 10, "utf8mb4", 4),
        CatalogColumn { precision: Some(12), scale: Some(3), ..col("amount", "decimal", "decimal(12,3)") },
        CatalogColumn { fsp: Some(3), ..col("at", "datetime", "datetime(3)") },
        col("kind", "enum", "enum('a','b')"),
    ])
}

const NAME_META: [u8; 2] = [40, 0];
const AMOUNT_META: [u8; 2] = [12, 3];
const ENUM_META: [u8; 2] = [0xf7, 1];

fn table_map() -> Vec<BinlogColumn<'static>> {
    vec![
        BinlogColumn { nullable: false, unsigned: Some(true), ..bin(ColumnType::MYSQL_TYPE_LONG, &[]) },
        BinlogColumn { text: TextKind::Utf8, ..bin(ColumnType::MYSQL_TYPE_VARCHAR, &NAME_META) },
        BinlogColumn { unsigned: Some(false), ..bin(ColumnType::MYSQL_TYPE_NEWDECIMAL, &AMOUNT_META) },
        bin(ColumnType::MYSQL_TYPE_DATETIME2, &[3]),
        bin(ColumnType::MYSQL_TYPE_ENUM, &ENUM_META),
    ]
}

#[test]
fn a_definition_that_matches_the_table_map_is_accepted() {
    assert_eq!(table().check(&table_map()), Ok(()));
}

#[test]
fn an_added_or_dropped_column_is_a_drift_naming_both_counts() {
    let mut added = table();
    added.columns.push(col("extra", "int", "int(11)"));
    let err = added.check(&table_map()).unwrap_err();
    assert!(err.0.contains("6 columns in information_schema but 5 in the table map"), "{err}");
    let mut dropped = table();
    dropped.columns.remove(2);
    assert!(dropped.check(&table_map()).is_err());
}

#[test]
fn a_changed_type_is_a_drift_naming_the_column_and_both_types() {
    let mut retyped = table();
    retyped.columns[3] = CatalogColumn { nullable: true, ..col("at", "bigint", "bigint(20)") };
    let err = retyped.check(&table_map()).unwrap_err();
    assert!(err.0.contains("column 4 `at` of app.t is bigint(20) in information_schema"), "{err}");
    assert!(err.0.contains("the table map has DATETIME2"), "{err}");
}

#[test]
fn a_changed_length_precision_or_fraction_is_a_drift() {
    let cases: [(usize, CatalogColumn); 4] = [
        (1, varchar("name", 20, "utf8mb4", 4)),
        (1, varchar("name", 10, "latin1", 1)),
        (2, CatalogColumn { precision: Some(14), scale: Some(3), ..col("amount", "decimal", "decimal(14,3)") }),
        (3, CatalogColumn { fsp: Some(6), ..col("at", "datetime", "datetime(6)") }),
    ];
    for (i, changed) in cases {
        let mut t = table();
        let what = changed.column_type.clone();
        t.columns[i] = changed;
        assert!(t.check(&table_map()).is_err(), "{what} passed for column {i}");
    }
}

#[test]
fn signedness_nullability_and_charset_the_table_map_carries_are_compared() {
    let mut signed = table();
    signed.columns[0] = CatalogColumn { nullable: false, ..col("id", "int", "int(11)") };
    let err = signed.check(&table_map()).unwrap_err();
    assert!(err.0.contains("int(11) in information_schema, but the table map has LONG unsigned"), "{err}");
    let mut nullable = table();
    nullable.columns[0].nullable = true;
    assert!(nullable.check(&table_map()).unwrap_err().0.contains("NOT NULL"));
    let mut other_charset = table();
    other_charset.columns[1] = CatalogColumn { octet_length: Some(40), ..varchar("name", 40, "latin1", 1) };
    assert!(other_charset.check(&table_map()).unwrap_err().0.contains("character set"));
    // Without signedness or charsets in the table map (MariaDB NO_LOG) only the rest counts.
    let mut bare = table_map();
    for b in &mut bare {
        b.unsigned = None;
        b.text = TextKind::Unknown;
    }
    assert_eq!(table().check(&bare), Ok(()));
}

#[test]
fn enum_and_set_storage_sizes_follow_their_label_counts() {
    let many: Vec<String> = (0..300).map(|i| format!("'v{i}'")).collect();
    let big_enum = col("kind", "enum", &format!("enum({})", many.join(",")));
    assert_eq!(meta_expectation(&big_enum), Some(2));
    let set_of = |n: usize| {
        let labels: Vec<String> = (0..n).map(|i| format!("'s{i}'")).collect();
        meta_expectation(&col("s", "set", &format!("set({})", labels.join(","))))
    };
    assert_eq!(
        (set_of(1), set_of(8), set_of(9), set_of(32), set_of(33), set_of(64)),
        (Some(1), Some(1), Some(2), Some(4), Some(8), Some(8))
    );
    let mut t = table();
    t.columns[4] = big_enum;
    assert!(t.check(&table_map()).unwrap_err().0.contains("ENUM with metadata"));
}

#[test]
fn string_lengths_above_255_bytes_are_read_from_the_folded_type_byte() {
    // CHAR(100) utf8mb4 = 400 bytes: 0x190, bits 8-9 folded (inverted) into bits 4-5 of byte 0.
    assert_eq!(meta_value(ColumnType::MYSQL_TYPE_STRING, &[0xfe ^ 0x10, 0x90]), Some(400));
    assert_eq!(meta_value(ColumnType::MYSQL_TYPE_STRING, &[0xfe, 20]), Some(20));
    assert_eq!(meta_value(ColumnType::MYSQL_TYPE_VARCHAR, &[0x2c, 0x01]), Some(300));
    assert_eq!(meta_value(ColumnType::MYSQL_TYPE_BIT, &[5, 1]), Some(13));
}

#[test]
fn a_table_missing_from_information_schema_says_so_and_names_the_grant() {
    let err = catalog(Vec::new()).check(&table_map()).unwrap_err();
    assert!(err.0.contains("lists no columns of app.t") && err.0.contains("GRANT SELECT ON app.t"), "{err}");
}

#[test]
fn an_unknown_type_is_never_matched() {
    let mut t = table();
    t.columns[3] = col("at", "xmltype", "xmltype");
    assert!(t.check(&table_map()).unwrap_err().0.contains("cannot match the type \"xmltype\""));
}

/// The documented limit: names of columns with identical definitions are not in a MINIMAL
/// table map, so a rename or a swap of two such columns passes.
#[test]
fn a_swap_of_identically_defined_columns_cannot_be_told_apart() {
    let two = |a: &str, b: &str| catalog(vec![col(a, "int", "int(11)"), col(b, "int", "int(11)")]);
    let map = [bin(ColumnType::MYSQL_TYPE_LONG, &[]), bin(ColumnType::MYSQL_TYPE_LONG, &[])];
    assert_eq!(two("a", "b").check(&map), Ok(()));
    assert_eq!(two("b", "a").check(&map), Ok(()));
}

#[test]
fn enum_labels_are_unquoted_as_the_server_prints_them() {
    assert_eq!(parse_labels("enum('a','b')"), vec!["a", "b"]);
    assert_eq!(parse_labels(r"enum('x''y','a\\b','c,d','')"), vec!["x'y", r"a\b", "c,d", ""]);
    assert_eq!(parse_labels("set('p','q(r)')"), vec!["p", "q(r)"]);
    assert_eq!(parse_labels("int(11)"), Vec::<String>::new());
}
