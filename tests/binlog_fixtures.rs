//! Real MySQL 5.6–9.6 and MariaDB binlog files (collected in `$SAMEDAY_BINLOG_FIXTURES`, see
//! its README.md) replayed through the library decoder: every file decodes without panic,
//! and the values the files' upstream authors assert come out of our envelope.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sameday_core::{ChangeEnvelope, Op};
use sameday_reader::{replay_files, FileRange};
use sameday_reader::{Decoder, Output};
use sameday_reader::{FilterConfig, TableFilter};
use serde_json::{json, Map, Value};

/// The fixtures folder, or `None` (after saying so) when the variable is unset.
fn fixtures() -> Option<PathBuf> {
    match std::env::var_os("SAMEDAY_BINLOG_FIXTURES") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!("SKIPPED: SAMEDAY_BINLOG_FIXTURES is not set");
            None
        }
    }
}

/// Every table, including the `mysql` schema (several upstream files use it for test tables).
fn all_tables() -> TableFilter {
    TableFilter::new(&FilterConfig { include: vec!["*.*".into(), "mysql.*".into()], ..Default::default() })
        .expect("valid filter")
}

fn replay(path: &Path) -> Result<Vec<Output>, String> {
    let mut decoder = Decoder::new(1, all_tables(), "", None);
    let mut outs = Vec::new();
    replay_files(&[path.to_path_buf()], &FileRange::default(), &mut decoder, |o| {
        outs.push(o);
        Ok(true)
    })
    .map_err(|e| e.to_string())?;
    Ok(outs)
}

fn envelopes(outs: &[Output]) -> Vec<ChangeEnvelope> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Row(r) => Some(ChangeEnvelope::from_slice(&r.data).expect("valid envelope")),
            _ => None,
        })
        .collect()
}

fn rows_of(dir: &Path, file: &str) -> Vec<ChangeEnvelope> {
    let outs = replay(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    envelopes(&outs)
}

fn after(e: &ChangeEnvelope) -> &Map<String, Value> {
    e.after.as_ref().expect("after-image")
}

fn binlog_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable fixtures dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.starts_with(b"\xfebin")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_fixture_binlog_decodes_without_panic_and_truncated_files_fail_with_truncated() {
    let Some(dir) = fixtures() else { return };
    // Row changes per file (watched tables incl. `mysql.*`); pins down that nothing is lost.
    let expected_rows: BTreeMap<&str, usize> = [
        ("binlog-invisible-columns.000001", 3),
        ("binlog_transaction_previous_GTID_no_tag.000001", 0),
        ("binlog_transaction_with_GTID_TAG.000001", 1),
        ("json-opaque.binlog", 8),
        ("json.binlog.000001", 12),
        ("mariadb-bin.000001", 2),
        ("master-bin.000001", 0),
        ("minimal_row_metadata.000001", 1),
        ("mysql-enum-string-set.000001", 3),
        ("mysql_type_bit.000001", 1),
        ("rpl_unfiltered_hidden_gcol.000001", 1),
        ("time_issue.000001", 1),
        ("transaction_compression.000001", 1),
        ("vector.binlog", 10),
        ("mysql-bin.compressed", 1),
        ("mysql-bin.000057", 3),
        ("binlog.000001", 0),
        ("binlog.000002", 0),
        ("binlog.000003", 3),
        ("mysql-bin.01", 10),
        ("mysql-bin.06", 2),
        ("mysql-bin.07", 2),
    ]
    .into_iter()
    .collect();
    let files = binlog_files(&dir);
    assert!(files.len() >= 25, "expected the README's 27 binlogs, found {}", files.len());
    let mut truncated = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = std::panic::catch_unwind(|| replay(path)).unwrap_or_else(|_| panic!("{name}: decoder panicked"));
        if name.starts_with("binlog_truncated_") {
            let err = result.expect_err(&format!("{name} must fail"));
            assert!(err.contains("truncated"), "{name}: {err}");
            truncated += 1;
            continue;
        }
        let outs = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows = outs.iter().filter(|o| matches!(o, Output::Row(_))).count();
        if let Some(&want) = expected_rows.get(name.as_str()) {
            assert_eq!(rows, want, "{name}: row changes");
        }
        if name != "json.binlog.000001" {
            let dl: Vec<_> = outs
                .iter()
                .filter_map(|o| if let Output::DeadLetter(d) = o { Some(&d.reason) } else { None })
                .collect();
            assert!(dl.is_empty(), "{name}: unexpected dead letters {dl:?}");
        }
        // Every decoded envelope parses and carries an image.
        for e in envelopes(&outs) {
            assert!(e.before.is_some() || e.after.is_some(), "{name}: empty change");
        }
    }
    assert_eq!(truncated, 2, "both binlog_truncated_* files were exercised");
}

#[test]
fn mysql_type_bit_columns_decode_as_unsigned_numbers() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/mysql_type_bit.000001");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].db.as_str(), rows[0].table.as_str()), ("mysql", "foo"));
    assert_eq!(Value::Object(after(&rows[0]).clone()), json!({"a": 4, "b": "foo", "c": 32}));
}

#[test]
fn time2_beyond_24_hours_keeps_sign_and_total_hours() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/time_issue.000001");
    assert_eq!(rows.len(), 1);
    assert_eq!(Value::Object(after(&rows[0]).clone()), json!({"@1": "-507:48:27"}));
}

#[test]
fn minimal_row_metadata_signedness_gives_unsigned_int() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/minimal_row_metadata.000001");
    assert_eq!(rows.len(), 1);
    // MINIMAL row image: only columns 1, 3 and 5 are in the event (as mysqlbinlog shows).
    assert_eq!(Value::Object(after(&rows[0]).clone()), json!({"@1": 1, "@3": "a", "@5": 3_230_202_323u64}));
}

#[test]
fn enum_and_set_labels_come_from_full_row_metadata() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/mysql-enum-string-set.000001");
    let ops: Vec<Op> = rows.iter().map(|e| e.op).collect();
    assert_eq!(ops, vec![Op::Insert, Op::Update, Op::Delete]);
    let ins = after(&rows[0]);
    assert_eq!((ins["f3"].clone(), ins["f4"].clone()), (json!("var1"), json!(["one", "three"])));
    let upd = after(&rows[1]);
    assert_eq!(upd["f1"], "field1");
    assert_eq!(upd["f2"], "field_2");
    assert_eq!(upd["f3"], "variant2");
    assert_eq!(upd["f4"], json!(["two", "four"]));
    assert!(upd["f5"].as_str().unwrap().starts_with("0123456789"));
    assert_eq!(rows[1].before.as_ref().unwrap(), ins, "update before-image = inserted row");
    assert_eq!(rows[2].before.as_ref().unwrap(), upd, "delete before-image = updated row");
    assert_eq!(rows[1].source.gtid.as_deref(), Some("93e95066-a2f4-11ec-9b69-9657f0ae95e2:4"));
}

#[test]
fn json_with_opaque_values_matches_upstream() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/json-opaque.binlog");
    let got: Vec<Value> = rows.iter().map(|e| after(e)["a"].clone()).collect();
    assert_eq!(
        got,
        vec![
            json!({"a": "base64:type15:VQ=="}),
            json!({"b": "2012-03-18"}),
            json!({"c": "2012-03-18 11:30:45.000000"}),
            json!({"c": "87:31:46.654321"}),
            json!({"d": "123.456"}),
            json!({"e": "9.00"}),
            json!({"e": [0, 1, true, false]}),
            json!({"e": null}),
        ]
    );
}

#[test]
fn vector_columns_decode_as_float_arrays() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/vector.binlog");
    let foo: Vec<&ChangeEnvelope> = rows.iter().filter(|e| e.table == "foo").collect();
    assert_eq!(Value::Object(after(foo[0]).clone()), json!({"id": 1, "vector_column": [1.1, 2.2, 3.3]}));
    assert_eq!(Value::Object(after(foo[1]).clone()), json!({"id": 2, "vector_column": [1.0, -1.0, 0.0]}));
    assert_eq!(foo[0].key, *json!({"id": 1}).as_object().unwrap(), "SIMPLE_PRIMARY_KEY gives the key");
    let bar2 = rows.iter().find(|e| e.table == "bar" && e.op == Op::Insert && e.key["id"] == 2).unwrap();
    assert_eq!(
        Value::Object(after(bar2).clone()),
        json!({"id": 2, "vector_column": [1.01, -1.01], "foo": "YmFy", "vector_column2": [42.0, 43.0, 44.0, 45.0]})
    );
}

#[test]
fn tagged_gtid_and_decimal_from_mysql_9_6() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001");
    assert_eq!(rows.len(), 1);
    let e = &rows[0];
    assert_eq!((e.db.as_str(), e.table.as_str(), e.op), ("test", "orders", Op::Insert));
    assert_eq!(e.source.gtid.as_deref(), Some("55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"));
    assert_eq!(e.txn.id, "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3");
    assert_eq!(Value::Object(after(e).clone()), json!({"@1": 3, "@2": 100, "@3": "250.00"}));
}

#[test]
fn zstd_transaction_payloads_decode_their_rows() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/transaction_compression.000001");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].db.as_str(), rows[0].table.as_str()), ("test", "tb1"));
    assert_eq!(Value::Object(after(&rows[0]).clone()), json!({"@1": 1}));

    let rows = rows_of(&dir, "mysql-binlog-connector-java/mysql-bin.compressed");
    assert_eq!(rows.len(), 1);
    let e = &rows[0];
    assert_eq!((e.db.as_str(), e.table.as_str(), e.op), ("demo", "movies", Op::Update));
    let (b, a) = (e.before.as_ref().unwrap(), after(e));
    assert_eq!(
        (&b["@1"], &b["@2"], &b["@3"], &b["@5"]),
        (&json!(1), &json!("Once Upon a Time in the West"), &json!(1968), &json!("Western"))
    );
    assert_eq!(a["@5"], "Western|Action");
    assert_eq!(a["@11"], "Paramount Pictures");
    assert_eq!(a.len(), 11);

    // MySQL 8.0.31 with GTIDs: the payload's rows carry the GTID of their transaction.
    let rows = rows_of(&dir, "mysql-binlog-connector-rust/mysql-bin.000057");
    let summary: Vec<(&str, Op, Option<&str>)> =
        rows.iter().map(|e| (e.table.as_str(), e.op, e.source.gtid.as_deref())).collect();
    let g12 = Some("76f3e7be-6720-11ed-9cad-0242ac110002:12");
    let g13 = Some("76f3e7be-6720-11ed-9cad-0242ac110002:13");
    assert_eq!(
        summary,
        vec![("b", Op::Insert, g12), ("test_table_3", Op::Update, g13), ("test_table_3", Op::Insert, g13)]
    );
    let ins = after(&rows[2]);
    assert_eq!(ins["@1"], 6666);
    assert_eq!(ins["@3"], "2022-11-20");
    assert_eq!(ins["@6"], "2022-11-20T13:53:32Z");
    assert_eq!(ins["@10"], json!({"c": 1}));
    assert_eq!(ins.len(), 20);
}

#[test]
fn partial_json_update_is_dead_lettered_not_dropped() {
    let Some(dir) = fixtures() else { return };
    let outs = replay(&dir.join("rust_mysql_common/json.binlog.000001")).unwrap();
    let dead: Vec<_> = outs.iter().filter_map(|o| if let Output::DeadLetter(d) = o { Some(d) } else { None }).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].table, "mysql.t");
    assert!(dead[0].reason.contains("partial JSON"), "{}", dead[0].reason);
    // The full-image inserts (6 rows) and UPDATE (6 rows) around it still decode.
    let rows = envelopes(&outs);
    let ops: Vec<Op> = rows.iter().map(|e| e.op).collect();
    assert_eq!(ops, [vec![Op::Insert; 6], vec![Op::Update; 6]].concat());
    let upd = rows.iter().find(|e| e.op == Op::Update).unwrap();
    assert_eq!(after(upd)["@2"], json!({"age": 25, "data": "xxxxxxxxxx", "name": "Joe"}));
    assert_eq!(after(upd)["@4"], 25);
    assert_eq!(
        Value::Object(after(&rows[0]).clone()),
        json!({"@1": 1, "@2": {"age": 24, "data": "xxxxxxxxxx", "name": "Joe"}, "@3": "Joe", "@4": 24})
    );
}

#[test]
fn mariadb_10_5_full_metadata_gives_names_key_and_gtid() {
    let Some(dir) = fixtures() else { return };
    let rows = rows_of(&dir, "rust_mysql_common/mariadb-bin.000001");
    assert_eq!(rows.len(), 2);
    let e = &rows[0];
    assert_eq!((e.db.as_str(), e.table.as_str()), ("toddy_test", "outbox"));
    assert_eq!(e.source.gtid.as_deref(), Some("0-1-1"));
    assert_eq!(e.key, *json!({"id": 62}).as_object().unwrap());
    assert_eq!(
        Value::Object(after(e).clone()),
        json!({"id": 62, "topic": "foo", "event_type": "JSON", "event": "eyJmb28iOjF9", "created": "2022-04-20T22:18:04Z"})
    );
}

/// Column names of each table in binlog-parser's `test_db.sql`, in order.
fn test_db_columns(sql: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in sql.lines() {
        if let Some(rest) = line.strip_prefix("CREATE TABLE `") {
            current = rest.split('`').next().map(str::to_owned);
            out.insert(current.clone().unwrap(), Vec::new());
        } else if let (Some(t), Some(rest)) = (&current, line.strip_prefix("  `")) {
            out.get_mut(t).unwrap().push(rest.split('`').next().unwrap().to_owned());
        } else if line.starts_with(')') {
            current = None;
        }
    }
    out
}

/// binlog-parser's row map turned into our positional `@N` form.
fn positional(row: &Value, columns: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, v) in row.as_object().expect("row object") {
        let idx = match name.strip_prefix("(unknown_").and_then(|r| r.strip_suffix(')')) {
            Some(n) => n.parse::<usize>().unwrap(),
            None => columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("column {name}")),
        };
        // Its TIMESTAMP text is the UTC "YYYY-MM-DD HH:MM:SS"; ours is ISO-8601 with Z.
        let v = match v.as_str() {
            Some(s) if s.len() == 19 && s.as_bytes()[10] == b' ' && s.as_bytes()[4] == b'-' => {
                json!(format!("{}Z", s.replace(' ', "T")))
            }
            _ => v.clone(),
        };
        out.insert(format!("@{}", idx + 1), v);
    }
    out
}

#[test]
fn binlog_parser_expected_rows_match_by_column_position() {
    let Some(dir) = fixtures() else { return };
    let bp = dir.join("binlog-parser");
    let columns = test_db_columns(&std::fs::read_to_string(bp.join("test_db.sql")).unwrap());
    for n in ["01", "06", "07"] {
        let text = std::fs::read_to_string(bp.join(format!("{n}.json"))).unwrap();
        type Change = (String, String, Option<Map<String, Value>>, Option<Map<String, Value>>);
        let mut want: Vec<Change> = Vec::new();
        for item in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            let item = item.unwrap();
            let table = item["Header"]["Table"].as_str().unwrap().to_owned();
            let cols = columns.get(&table).cloned().unwrap_or_default();
            let img = |k: &str| item.get(k).map(|d| positional(&d["Row"], &cols));
            match item["Type"].as_str().unwrap() {
                "Insert" => want.push(("insert".into(), table, None, img("Data"))),
                "Update" => want.push(("update".into(), table, img("OldData"), img("NewData"))),
                "Delete" => want.push(("delete".into(), table, img("Data"), None)),
                _ => {}
            }
        }
        assert!(!want.is_empty(), "{n}.json has rows");
        let got: Vec<Change> = rows_of(&bp, &format!("mysql-bin.{n}"))
            .into_iter()
            .map(|e| {
                assert_eq!(e.db, "test_db");
                (e.op.as_str().to_owned(), e.table, e.before, e.after)
            })
            .collect();
        assert_eq!(got, want, "mysql-bin.{n} vs {n}.json");
    }
}
