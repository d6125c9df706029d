//! The reader on `binlog_row_metadata=MINIMAL` (and MariaDB's `NO_LOG`), on MariaDB servers of
//! this module's own (the setting is global): column names, ENUM/SET labels, signedness,
//! charsets, JSON and the primary key come from information_schema, so the records equal
//! those written under FULL; an ALTER TABLE between an event and the reader's look at the
//! table gives the right names or a dead letter, never a mislabelled column; `sameday check`
//! warns with the cost instead of refusing.

use crate::common;

use std::sync::OnceLock;
use std::time::Duration;

use sameday_core::{ChangeEnvelope, Op};
use sameday_reader::{replay_files, Decoder, FileRange, FilterConfig, Output, TableFilter};
use sameday_testkit::{MariaDb, MariaDbOptions};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::common::{master_status_of, set_aws_env, Daemon, Env};

/// This module's MINIMAL server for the tests that never change its settings.
fn minimal_server() -> &'static MariaDb {
    static SERVER: OnceLock<MariaDb> = OnceLock::new();
    SERVER.get_or_init(|| MariaDb::start_with(MariaDbOptions::default().arg("--binlog_row_metadata=MINIMAL")))
}

type ReaderTask = tokio::task::JoinHandle<Result<sameday_reader::PublishSummary, sameday_reader::ReaderError>>;

/// Starts the reader of `env` at `start` (a position on the env's server).
fn start_reader(env: &Env, start: &str) -> (CancellationToken, ReaderTask) {
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(env.config(start), shutdown.clone()));
    (shutdown, reader)
}

/// One record as it matters to a consumer, without what differs between two tables
/// (`table`, ids, positions): op, key, images and the partition key's value part.
type Change = (Op, Value, Option<Map<String, Value>>, Option<Map<String, Value>>, String);

/// The changes of `db.table` in the env's stream, in commit order (the stream keeps it per
/// key only).
async fn changes_of(env: &Env, table: &str) -> Vec<Change> {
    let mut records: Vec<(String, ChangeEnvelope)> = common::user_records(&env.stream)
        .await
        .into_iter()
        .map(|(_, _, pk, data)| (pk, ChangeEnvelope::from_slice(&data).expect("valid envelope")))
        .filter(|(_, e)| e.table == table)
        .collect();
    records.sort_by(|(_, a), (_, b)| {
        (&a.source.file, a.source.pos, a.txn.index, &a.id).cmp(&(&b.source.file, b.source.pos, b.txn.index, &b.id))
    });
    records
        .into_iter()
        .map(|(pk, e)| {
            let values = pk.split_once(':').map(|(_, v)| v.to_owned()).unwrap_or_default();
            (e.op, Value::Object(e.key.clone()), e.before, e.after, values)
        })
        .collect()
}

/// The dead-letter lines of the env's reader.
fn dead_letters(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.dead_letter_path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead-letter line is JSON"))
        .collect()
}

const TYPES_DDL: &str = "(
    id INT UNSIGNED NOT NULL, k VARCHAR(8) CHARACTER SET latin1 NOT NULL,
    ti TINYINT, tiu TINYINT UNSIGNED, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
    i INT, bi BIGINT, biu BIGINT UNSIGNED, dec30 DECIMAL(30,10), f FLOAT, d DOUBLE, bt BIT(13),
    dt DATE, dtm3 DATETIME(3), ts6 TIMESTAMP(6) NULL DEFAULT NULL, tm2 TIME(2), y YEAR,
    ch CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(300) CHARACTER SET utf8mb4, tx TEXT CHARACTER SET utf8mb4,
    l1 VARCHAR(20) CHARACTER SET latin1, l1t MEDIUMTEXT CHARACTER SET latin1, cy VARCHAR(10) CHARACTER SET cp1251,
    bn BINARY(4), vb VARBINARY(16), bl BLOB, tb TINYBLOB,
    en ENUM('small','medium','it''s'), st SET('a','b','c','d','e','f','g','h','i'),
    js JSON, u UUID,
    PRIMARY KEY (k, id)
)";

/// Inserts, updates, a primary-key change and a delete on `db.t`: 7 records.
fn writes(db: &str, t: &str) -> String {
    format!(
        "SET SESSION time_zone = '+00:00';
         INSERT INTO {db}.{t} VALUES (1, 'kä',
            -128, 255, 65535, -1, 16777215, -2147483648, -9223372036854775808, 18446744073709551615,
            '-12345678901234567890.0123456789', 1.5, -2.5e-300, b'1010101010101',
            '2024-02-29', '2024-02-29 23:59:59.123', '2038-01-19 03:14:07.999999', '-100:00:00.5', 2155,
            'ch😀', 'vc 🎉 ünï', 'text 👩‍💻', 'café é', 'Grüße', 'Привет',
            X'DEADBEEF', X'0102', X'00FF80FE', X'FF',
            'it''s', 'a,d,i', '{{\"a\": [1, {{\"b\": null}}], \"s\": \"é\"}}', '123e4567-e89b-12d3-a456-426614174000');
         INSERT INTO {db}.{t} (id, k, tiu, en, st, js) VALUES (2, 'b', 0, 'small', '', '[]');
         INSERT INTO {db}.{t} (id, k) VALUES (3, 'c');
         UPDATE {db}.{t} SET vc = 'changed', en = 'medium', st = 'b,h' WHERE id = 1;
         UPDATE {db}.{t} SET id = 20 WHERE id = 2;
         DELETE FROM {db}.{t} WHERE id = 3;"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_and_no_log_metadata_records_equal_full_metadata_records() {
    set_aws_env();
    let server = MariaDb::start_with(MariaDbOptions::default().arg("--binlog_row_metadata=MINIMAL"));
    let env = Env::on_server(server, "minimal-eq", 1).await;
    let (maria, db) = (env.maria(), &env.db);
    for t in ["full_t", "minimal_t", "nolog_t"] {
        maria.exec(&format!("CREATE TABLE {db}.{t} {TYPES_DDL}")).await;
    }
    // Started on MINIMAL: a warning at start, not a refusal.
    let start = master_status_of(maria).await;
    let (shutdown, reader) = start_reader(&env, &start.to_string());
    for (setting, t) in [("FULL", "full_t"), ("MINIMAL", "minimal_t"), ("NO_LOG", "nolog_t")] {
        // A global setting: each exec is a new session, which writes with it.
        maria.exec(&format!("SET GLOBAL binlog_row_metadata = '{setting}'")).await;
        maria.exec(&writes(db, t)).await;
    }
    env.wait_for_records(21, Duration::from_secs(30)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();

    let full = changes_of(&env, "full_t").await;
    assert_eq!(full.len(), 7, "{full:#?}");
    // FULL itself is right (the type mapping is tested elsewhere): labels, unsigned, charsets,
    // JSON, and the key in primary-key order (k, id), not column order.
    let first = full[0].3.as_ref().unwrap();
    assert_eq!((&first["en"], &first["st"], &first["tiu"]), (&json!("it's"), &json!(["a", "d", "i"]), &json!(255)));
    assert_eq!((&first["l1"], &first["cy"], &first["bn"]), (&json!("café é"), &json!("Привет"), &json!("3q2+7w==")));
    assert_eq!(first["js"], json!({"a": [1, {"b": null}], "s": "é"}));
    assert_eq!(full[0].4, "kä,1", "partition key values in primary-key order");
    let ops: Vec<Op> = full.iter().map(|c| c.0).collect();
    assert_eq!(ops, [Op::Insert, Op::Insert, Op::Insert, Op::Update, Op::Delete, Op::Insert, Op::Delete]);

    for t in ["minimal_t", "nolog_t"] {
        let got = changes_of(&env, t).await;
        assert_eq!(got.len(), full.len(), "{t}: {got:#?}");
        for (i, (g, f)) in got.iter().zip(&full).enumerate() {
            assert_eq!(g, f, "{t}: record {i} differs from FULL's");
        }
    }
    assert!(dead_letters(&env).is_empty(), "{:?}", dead_letters(&env));

    // The same binlog from disk, with no server to ask: MINIMAL and NO_LOG table maps keep
    // ordinal names (which also shows the settings took effect), FULL ones their names.
    let first_insert_columns = |t: &str| {
        let mut decoder = Decoder::new(0, TableFilter::new(&FilterConfig::default()).unwrap(), "", None);
        let mut columns = None;
        let file = [env.maria().binlog_dir().join(&start.file)];
        replay_files(&file, &FileRange { from: Some(start.pos), to: None }, &mut decoder, |o| {
            if let Output::Row(r) = o {
                let e = ChangeEnvelope::from_slice(&r.data).unwrap();
                if e.table == t && columns.is_none() {
                    columns = e.after.map(|a| ["id", "k", "@1", "@2"].map(|c| a.contains_key(c)));
                }
            }
            Ok(true)
        })
        .unwrap();
        columns.unwrap_or_else(|| panic!("no insert of {t} in the binlog file"))
    };
    // Whether the insert has the columns named id, k, @1, @2.
    assert_eq!(first_insert_columns("full_t"), [true, true, false, false]);
    assert_eq!(first_insert_columns("minimal_t"), [false, false, true, true]);
    assert_eq!(first_insert_columns("nolog_t"), [false, false, true, true]);
}

/// The reader is behind: rows were written, then each table altered, before the reader
/// looks at them. A row whose table map disagrees with the altered table is dead-lettered
/// with what differs; a rename of a column (types unchanged) cannot be seen, so that row
/// carries the new name (documented) and the reader logs the range once it meets the ALTER;
/// every row after the ALTER is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alter_table_between_events_gives_the_right_names_or_a_dead_letter() {
    set_aws_env();
    let env = Env::on_module_server(minimal_server(), "minimal-alter", 1).await;
    let (maria, db) = (env.maria(), &env.db);
    let alters = [
        (
            "added",
            "ADD COLUMN c DATE",
            "(2, 'two', 2, '2020-01-02')",
            json!({"id": 2, "a": "two", "b": 2, "c": "2020-01-02"}),
        ),
        ("dropped", "DROP COLUMN a", "(2, 2)", json!({"id": 2, "b": 2})),
        ("retyped", "MODIFY b BIGINT", "(2, 'two', 2)", json!({"id": 2, "a": "two", "b": 2})),
        ("widened", "MODIFY a VARCHAR(20)", "(2, 'two', 2)", json!({"id": 2, "a": "two", "b": 2})),
        ("renamed", "RENAME COLUMN a TO a2", "(2, 'two', 2)", json!({"id": 2, "a2": "two", "b": 2})),
    ];
    for (t, ..) in &alters {
        maria.exec(&format!("CREATE TABLE {db}.{t} (id INT PRIMARY KEY, a VARCHAR(10), b INT)")).await;
    }
    let start = master_status_of(maria).await.to_string();
    for (t, alter, row2, _) in &alters {
        maria
            .exec(&format!(
                "INSERT INTO {db}.{t} VALUES (1, 'one', 1); ALTER TABLE {db}.{t} {alter}; INSERT INTO {db}.{t} VALUES {row2};"
            ))
            .await;
    }
    // A process of its own, for its log.
    let config = env.write_config(&start);
    let mut reader = Daemon::spawn("reader", &config, env.dir.path().join("reader.log"), &[]);
    env.wait_for_records(6, Duration::from_secs(30)).await;
    reader.terminate();

    for (t, alter, _, after) in &alters {
        let changes = changes_of(&env, t).await;
        let afters: Vec<Value> = changes.iter().map(|c| Value::Object(c.3.clone().unwrap())).collect();
        let want = if *t == "renamed" {
            // The limit of MINIMAL: the row before the rename is named by the current definition.
            vec![json!({"id": 1, "a2": "one", "b": 1}), after.clone()]
        } else {
            vec![after.clone()]
        };
        assert_eq!(afters, want, "{t} ({alter})");
    }
    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 4, "one per rows event written before a visible ALTER: {letters:#?}");
    for (t, what) in [
        ("added", "has 4 columns in information_schema but 3 in the table map"),
        ("dropped", "has 2 columns in information_schema but 3 in the table map"),
        ("retyped", "column 3 `b` of"),
        ("widened", "column 2 `a` of"),
    ] {
        let line = letters
            .iter()
            .find(|l| l["table"] == json!(format!("{db}.{t}")))
            .unwrap_or_else(|| panic!("no dead letter for {t}: {letters:#?}"));
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains(what), "{t}: {reason}");
        assert!(
            reason.contains("binlog_row_metadata='FULL'") && reason.contains("sameday reconcile --fix"),
            "{reason}"
        );
        assert!(line["position"].as_str().unwrap().contains("mysql-bin."), "{line}");
    }
    // The renamed table's first row was named from the definition after the rename: once
    // the reader meets the ALTER, it says which range to check, and only for that table.
    let log = reader.log_text();
    let reports: Vec<&str> = log.lines().filter(|l| l.contains("were named from its information_schema")).collect();
    assert_eq!(reports.len(), 1, "{log}");
    assert!(
        reports[0].contains(&format!("{db}.renamed")) && reports[0].contains("\"level\":\"ERROR\""),
        "{}",
        reports[0]
    );
    assert!(reports[0].contains("sameday replay --config reader.toml --from mysql-bin."), "{}", reports[0]);
}

/// The reader keeps up: each table map is looked up before the ALTER that follows it, and
/// the ALTER in the binlog makes the next table map look again, so every row is named as
/// FULL would name it, including after a rename (which does not change a MINIMAL table map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_reader_names_every_row_across_alters_like_full_metadata() {
    set_aws_env();
    let env = Env::on_module_server(minimal_server(), "minimal-live", 1).await;
    let (maria, db) = (env.maria(), &env.db);
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, a VARCHAR(10), b INT)")).await;
    let (shutdown, reader) = start_reader(&env, &master_status_of(maria).await.to_string());
    let steps = [
        ("", "(1, 'one', 1)", json!({"id": 1, "a": "one", "b": 1})),
        ("ADD COLUMN c DATE", "(2, 'two', 2, '2020-01-02')", json!({"id": 2, "a": "two", "b": 2, "c": "2020-01-02"})),
        ("RENAME COLUMN a TO a2", "(3, 'three', 3, NULL)", json!({"id": 3, "a2": "three", "b": 3, "c": null})),
        ("DROP COLUMN b", "(4, 'four', '2020-01-04')", json!({"id": 4, "a2": "four", "c": "2020-01-04"})),
    ];
    for (n, (alter, row, _)) in steps.iter().enumerate() {
        if !alter.is_empty() {
            maria.exec(&format!("ALTER TABLE {db}.t {alter}")).await;
        }
        maria.exec(&format!("INSERT INTO {db}.t VALUES {row}")).await;
        env.wait_for_records(n + 1, Duration::from_secs(20)).await;
    }
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let afters: Vec<Value> = changes_of(&env, "t").await.into_iter().map(|c| Value::Object(c.3.unwrap())).collect();
    let want: Vec<Value> = steps.iter().map(|s| s.2.clone()).collect();
    assert_eq!(afters, want);
    assert!(dead_letters(&env).is_empty(), "{:?}", dead_letters(&env));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sameday_check_warns_about_minimal_metadata_and_what_it_costs() {
    set_aws_env();
    let env = Env::on_module_server(minimal_server(), "minimal-check", 1).await;
    let config = env.write_config("latest");
    let out = tokio::process::Command::new(common::sameday_bin())
        .args(["check", "--config"])
        .arg(&config)
        .envs(common::emulator_endpoints())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run sameday check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "MINIMAL is not blocking:\n{stdout}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("WARNING: binlog_row_metadata is MINIMAL"))
        .unwrap_or_else(|| panic!("no warning about MINIMAL:\n{stdout}"));
    for fragment in ["information_schema", "ALTER TABLE", "dead-lettered", "binlog_row_metadata='FULL' (recommended)"] {
        assert!(warning.contains(fragment), "{fragment:?} missing: {warning}");
    }
}
