//! Every MariaDB column type through the real binlog stream and kinesalite: each value's
//! JSON form in the envelope is compared exactly with a hand-written expectation.

use crate::common;

use std::time::Duration;

use crate::common::{set_aws_env, Env};
use mysql_async::prelude::Queryable;
use sameday_core::{ChangeEnvelope, Op};
use sameday_testkit::MariaDb;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

/// Starts the reader at the current end of the binlog (no race with its start-up).
async fn start_reader(
    env: &Env,
) -> (CancellationToken, tokio::task::JoinHandle<Result<sameday_reader::PublishSummary, sameday_reader::ReaderError>>) {
    let shutdown = CancellationToken::new();
    let start = common::current_position().await;
    let reader = tokio::spawn(sameday_reader::run_reader(env.config(&start), shutdown.clone()));
    (shutdown, reader)
}

fn after_of(records: &[(String, ChangeEnvelope)], id: i64) -> &Map<String, Value> {
    records
        .iter()
        .find(|(_, e)| e.op == Op::Insert && e.key["id"] == id)
        .unwrap_or_else(|| panic!("no insert record for id {id}"))
        .1
        .after
        .as_ref()
        .expect("an insert has an after-image")
}

/// Compares `got` with `want` column by column (so a failure names the column), then as a whole.
fn assert_image(got: &Map<String, Value>, want: &Value, what: &str) {
    let want = want.as_object().expect("expectation is an object");
    for (col, w) in want {
        assert_eq!(got.get(col), Some(w), "{what}: column {col}");
    }
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{what}: unexpected columns {extra:?}");
}

const TYPES_DDL: &str = "(
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED,
    si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
    i INT, iu INT UNSIGNED,
    bi BIGINT, biu BIGINT UNSIGNED,
    dec30 DECIMAL(30,10),
    f FLOAT, d DOUBLE,
    dt DATE, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6), ts6 TIMESTAMP(6) NULL DEFAULT NULL,
    tm TIME, tm6 TIME(6),
    y YEAR,
    ch CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(50) CHARACTER SET utf8mb4, tx TEXT CHARACTER SET utf8mb4,
    l1 VARCHAR(20) CHARACTER SET latin1,
    bn BINARY(4), vb VARBINARY(16), bl BLOB,
    en ENUM('small','medium','large'), st SET('a','b','c','d'),
    b1 BIT(1), b64 BIT(64),
    js JSON
)";

#[tokio::test]
async fn every_column_type_round_trips_through_kinesis() {
    set_aws_env();
    let env = Env::new("types", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria.exec(&format!("CREATE TABLE {db}.t {TYPES_DDL}")).await;
    let (shutdown, reader) = start_reader(&env).await;
    maria
        .exec(&format!(
            "SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00';
             INSERT INTO {db}.t VALUES (1,
                -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
                -9223372036854775808, 18446744073709551615,
                '-12345678901234567890.0123456789', 1.1, -2.5e-300,
                '2024-02-29', '2024-02-29 23:59:59', '2024-02-29 23:59:59.123', '1000-01-01 00:00:00.000001',
                '2038-01-19 03:14:07.999999',
                '-838:59:59', '100:00:00.5', 2155,
                'ch😀', 'vc 🎉 ünï', 'text 👩‍💻 done', 'café é',
                X'DEADBEEF', X'0102', X'00FF80FE',
                'medium', 'b,d', b'1', 0xFFFFFFFFFFFFFFFF,
                '{{\"a\": [1, 2, {{\"b\": null}}], \"s\": \"é\"}}');
             INSERT INTO {db}.t VALUES (2,
                127, 0, 32767, 0, 8388607, 0, 2147483647, 0,
                9223372036854775807, 0,
                '12345678901234567890.0123456789', -0.25, 1.2345678901234567e3,
                '0000-00-00', '0000-00-00 00:00:00', '9999-12-31 23:59:59.999', '2000-01-01 00:00:00.5',
                '1970-01-01 00:00:01.000001',
                '838:59:59', '-00:00:00.000001', 0,
                '', '', '', '',
                X'00000000', X'', X'',
                'small', '', b'0', 0,
                '[]');
             INSERT INTO {db}.t (id, mi, dec30, tm6) VALUES (3, -1, '-0.0000000001', '-100:00:00.5');
             INSERT INTO {db}.t (id) VALUES (4);"
        ))
        .await;
    let records = env.wait_for_records(4, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    assert_eq!(records.len(), 4, "exactly one record per inserted row");

    let row1 = json!({
        "id": 1,
        "ti": -128, "tiu": 255, "si": -32768, "siu": 65535, "mi": -8388608, "miu": 16777215,
        "i": -2147483648i64, "iu": 4294967295u64,
        "bi": i64::MIN, "biu": u64::MAX,
        "dec30": "-12345678901234567890.0123456789",
        "f": 1.1, "d": -2.5e-300,
        "dt": "2024-02-29", "dtm": "2024-02-29T23:59:59", "dtm3": "2024-02-29T23:59:59.123",
        "dtm6": "1000-01-01T00:00:00.000001", "ts6": "2038-01-19T03:14:07.999999Z",
        "tm": "-838:59:59", "tm6": "100:00:00.500000", "y": 2155,
        "ch": "ch😀", "vc": "vc 🎉 ünï", "tx": "text 👩‍💻 done", "l1": "café é",
        "bn": "3q2+7w==", "vb": "AQI=", "bl": "AP+A/g==",
        "en": "medium", "st": ["b", "d"], "b1": 1, "b64": u64::MAX,
        // MariaDB's JSON is LONGTEXT with a json_valid() check; the reader learns that
        // from the server and emits the document itself.
        "js": {"a": [1, 2, {"b": null}], "s": "é"},
    });
    let row2 = json!({
        "id": 2,
        "ti": 127, "tiu": 0, "si": 32767, "siu": 0, "mi": 8388607, "miu": 0,
        "i": 2147483647, "iu": 0, "bi": i64::MAX, "biu": 0,
        "dec30": "12345678901234567890.0123456789",
        // "d" (1234.5678901234567) is checked in the raw record text below: serde_json
        // without `float_roundtrip` parses 17-digit doubles approximately.
        "f": -0.25,
        "dt": "0000-00-00", "dtm": "0000-00-00T00:00:00", "dtm3": "9999-12-31T23:59:59.999",
        "dtm6": "2000-01-01T00:00:00.500000", "ts6": "1970-01-01T00:00:01.000001Z",
        "tm": "838:59:59", "tm6": "-00:00:00.000001", "y": 0,
        "ch": "", "vc": "", "tx": "", "l1": "",
        "bn": "AAAAAA==", "vb": "", "bl": "",
        "en": "small", "st": [], "b1": 0, "b64": 0,
        "js": [],
    });
    let cols: Vec<&str> = row1.as_object().unwrap().keys().map(String::as_str).collect();
    let mut row3 = Map::new();
    let mut row4 = Map::new();
    for c in &cols {
        row3.insert((*c).to_owned(), Value::Null);
        row4.insert((*c).to_owned(), Value::Null);
    }
    row3.insert("id".into(), json!(3));
    row3.insert("mi".into(), json!(-1));
    row3.insert("dec30".into(), json!("-0.0000000001"));
    row3.insert("tm6".into(), json!("-100:00:00.500000"));
    row4.insert("id".into(), json!(4));

    assert_image(after_of(&records, 1), &row1, "row 1 (extremes)");
    let mut after2 = after_of(&records, 2).clone();
    assert!(after2.remove("d").is_some_and(|d| d.is_f64()), "row 2 has a DOUBLE d");
    assert_image(&after2, &row2, "row 2 (other extremes, zero dates)");
    assert_image(after_of(&records, 3), &Value::Object(row3), "row 3 (MEDIUMINT -1)");
    assert_image(after_of(&records, 4), &Value::Object(row4), "row 4 (all NULL)");

    // u64::MAX and i64::MIN are printed exactly in the raw record text (no float rounding).
    let raw: Vec<String> = common::user_records(&env.stream)
        .await
        .into_iter()
        .map(|(_, _, _, data)| String::from_utf8(data).expect("records are UTF-8 JSON"))
        .collect();
    let raw1 = raw.iter().find(|r| r.contains("\"key\":{\"id\":1}")).expect("raw row 1");
    assert!(raw1.contains("\"biu\":18446744073709551615"), "{raw1}");
    assert!(raw1.contains("\"b64\":18446744073709551615"), "{raw1}");
    assert!(raw1.contains("\"bi\":-9223372036854775808"), "{raw1}");
    assert!(raw1.contains("\"dec30\":\"-12345678901234567890.0123456789\""), "{raw1}");
    let raw2 = raw.iter().find(|r| r.contains("\"key\":{\"id\":2}")).expect("raw row 2");
    assert!(raw2.contains("\"d\":1234.5678901234567,"), "{raw2}");

    // What MariaDB itself holds agrees with the expectations above.
    let mut conn = maria.conn().await;
    conn.query_drop("SET SESSION time_zone = '+00:00'").await.unwrap();
    let row: (String, String, String, String, String, String, String) = conn
        .query_first(format!(
            "SELECT CAST(biu AS CHAR), CAST(dec30 AS CHAR), CAST(ts6 AS CHAR), CAST(tm6 AS CHAR), HEX(l1), HEX(bl), CAST(b64 + 0 AS CHAR) FROM {db}.t WHERE id = 1"
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row,
        (
            "18446744073709551615".into(),
            "-12345678901234567890.0123456789".into(),
            "2038-01-19 03:14:07.999999".into(),
            "100:00:00.500000".into(),
            "636166E920E9".into(), // latin1 bytes: é is E9
            "00FF80FE".into(),
            "18446744073709551615".into(),
        )
    );
    let (y0, dt0): (String, String) = conn
        .query_first(format!("SELECT CAST(y AS CHAR), CAST(dt AS CHAR) FROM {db}.t WHERE id = 2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((y0.as_str(), dt0.as_str()), ("0000", "0000-00-00"));
    // A DOUBLE literal (not a 17-digit DECIMAL one, which MariaDB rounds) is stored exactly.
    let exact: Option<i64> =
        conn.query_first(format!("SELECT d = 1.2345678901234567e3 FROM {db}.t WHERE id = 2")).await.unwrap();
    assert_eq!(exact, Some(1));
    let _ = conn.disconnect().await;
}

#[tokio::test]
async fn table_alter_mid_stream_keeps_column_names_right() {
    set_aws_env();
    let env = Env::new("alter", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, a VARCHAR(10))")).await;
    let (shutdown, reader) = start_reader(&env).await;
    maria
        .exec(&format!(
            "INSERT INTO {db}.t VALUES (1, 'one');
             ALTER TABLE {db}.t ADD COLUMN b INT NOT NULL DEFAULT 7;
             INSERT INTO {db}.t VALUES (2, 'two', 20);
             ALTER TABLE {db}.t ADD COLUMN c VARCHAR(5) AFTER id;
             INSERT INTO {db}.t VALUES (3, 'c3', 'three', 30);
             UPDATE {db}.t SET b = 11 WHERE id = 1;
             ALTER TABLE {db}.t DROP COLUMN a;
             INSERT INTO {db}.t VALUES (4, 'c4', 40);
             ALTER TABLE {db}.t ADD COLUMN a DATE;
             INSERT INTO {db}.t VALUES (5, 'c5', 50, '2020-01-02');"
        ))
        .await;
    let records = env.wait_for_records(6, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    assert_eq!(records.len(), 6);
    assert_image(after_of(&records, 1), &json!({"id": 1, "a": "one"}), "before any ALTER");
    assert_image(after_of(&records, 2), &json!({"id": 2, "a": "two", "b": 20}), "after ADD b");
    assert_image(after_of(&records, 3), &json!({"id": 3, "c": "c3", "a": "three", "b": 30}), "after ADD c AFTER id");
    let upd = records.iter().find(|(_, e)| e.op == Op::Update).expect("the update").1.clone();
    assert_image(upd.before.as_ref().unwrap(), &json!({"id": 1, "c": null, "a": "one", "b": 7}), "update before");
    assert_image(upd.after.as_ref().unwrap(), &json!({"id": 1, "c": null, "a": "one", "b": 11}), "update after");
    assert_image(after_of(&records, 4), &json!({"id": 4, "c": "c4", "b": 40}), "after DROP a");
    assert_image(
        after_of(&records, 5),
        &json!({"id": 5, "c": "c5", "b": 50, "a": "2020-01-02"}),
        "after re-adding a as DATE",
    );
}

#[tokio::test]
async fn wide_row_of_20_mb_is_delivered_or_dead_lettered() {
    set_aws_env();
    let env = Env::new("wide", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, payload LONGBLOB)")).await;
    let (shutdown, reader) = start_reader(&env).await;
    // Built server-side, so the client packet stays small; the binlog event is ~20 MB.
    maria
        .exec(&format!(
            "INSERT INTO {db}.t VALUES (1, REPEAT('x', 20 * 1024 * 1024));
             INSERT INTO {db}.t VALUES (2, 'small');"
        ))
        .await;
    let records = env.wait_for_records(1, Duration::from_secs(30)).await;
    // Give a wrongly-delivered big row a moment to show up too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records_after = env.records().await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records_after.len(), 1, "the 20 MB row must not reach the stream");
    let small = after_of(&records_after, 2);
    assert_eq!(small["payload"], json!("c21hbGw="));

    let text = std::fs::read_to_string(env.dead_letter_path()).expect("dead-letter file written");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("dead-letter line is JSON")).collect();
    assert_eq!(lines.len(), 1, "one dead-lettered row");
    let line = &lines[0];
    assert_eq!(line["table"], json!(format!("{db}.t")), "{}", &text[..text.len().min(400)]);
    let reason = line["reason"].as_str().expect("reason");
    assert!(reason.contains("exceeds the stream's maximum record size"), "{reason}");
}

/// TIME with every fractional width, negative and positive, beyond 24 hours and around zero:
/// the reader's value equals the server's own rendering of the same row (`CAST(... AS CHAR)`).
#[tokio::test]
async fn times_of_every_fraction_width_equal_the_servers_rendering() {
    set_aws_env();
    let env = Env::new("times", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria
        .exec(&format!(
            "CREATE TABLE {db}.t (id INT PRIMARY KEY, t0 TIME, t1 TIME(1), t2 TIME(2), t3 TIME(3), t4 TIME(4),
               t5 TIME(5), t6 TIME(6))"
        ))
        .await;
    let values = [
        "-123:45:56.789012",
        "123:45:56.789012",
        "-00:00:00.010000",
        "-00:00:00.990000",
        "-00:00:01.100000",
        "-00:00:00.000001",
        "-838:59:59.000000",
        "838:59:59.000000",
        "-01:00:00.500000",
        "00:00:00.000000",
        "-34:59:59.999999",
    ];
    let (shutdown, reader) = start_reader(&env).await;
    for (i, v) in values.iter().enumerate() {
        maria.exec(&format!("INSERT INTO {db}.t VALUES ({i}, '{v}', '{v}', '{v}', '{v}', '{v}', '{v}', '{v}')")).await;
    }
    let records = env.wait_for_records(values.len(), Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let mut conn = maria.conn().await;
    let columns = ["t0", "t1", "t2", "t3", "t4", "t5", "t6"];
    let select = columns.iter().map(|c| format!("CAST({c} AS CHAR)")).collect::<Vec<_>>().join(", ");
    for i in 0..values.len() as i64 {
        let row: mysql_async::Row =
            conn.query_first(format!("SELECT {select} FROM {db}.t WHERE id = {i}")).await.unwrap().unwrap();
        let image = after_of(&records, i);
        for (n, c) in columns.iter().enumerate() {
            let server: String = row.get(n).unwrap();
            assert_eq!(image[*c], Value::String(server.clone()), "row {i} ({}), column {c}", values[i as usize]);
        }
    }
}

/// A primary key change leaves as a delete of the old key and an insert of the new one,
/// each under its own key's partition key, so each stays in its own key's order; other
/// updates stay one record.
#[tokio::test]
async fn a_primary_key_change_is_a_delete_of_the_old_key_and_an_insert_of_the_new() {
    set_aws_env();
    let env = Env::new("pk_change", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(10))")).await;
    let (shutdown, reader) = start_reader(&env).await;
    maria
        .exec(&format!(
            "INSERT INTO {db}.t VALUES (7, 'a'); UPDATE {db}.t SET id = 107 WHERE id = 7;
             UPDATE {db}.t SET v = 'b' WHERE id = 107;"
        ))
        .await;
    let records = env.wait_for_records(4, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    // Each record under its own key's partition key (one shard: stream order is commit order).
    for (_, _, partition_key, data) in common::user_records(&env.stream).await {
        let e = ChangeEnvelope::from_slice(&data).unwrap();
        assert_eq!(partition_key, e.partition_key(), "partition key of {}", e.id);
    }
    let seen: Vec<(Op, Value, Option<String>, Option<String>)> = records
        .iter()
        .map(|(_, e)| {
            let v = |img: &Option<Map<String, Value>>| img.as_ref().map(|i| i["v"].as_str().unwrap().to_owned());
            (e.op, e.key["id"].clone(), v(&e.before), v(&e.after))
        })
        .collect();
    // Per key, in commit order (different keys are independent of each other).
    let of_key = |id: i64| seen.iter().filter(|r| r.1 == json!(id)).cloned().collect::<Vec<_>>();
    assert_eq!(
        of_key(7),
        vec![(Op::Insert, json!(7), None, Some("a".into())), (Op::Delete, json!(7), Some("a".into()), None)]
    );
    assert_eq!(
        of_key(107),
        vec![
            (Op::Insert, json!(107), None, Some("a".into())),
            (Op::Update, json!(107), Some("a".into()), Some("b".into()))
        ]
    );
    let half = |op: Op, id: i64| records.iter().find(|(_, e)| e.op == op && e.key["id"] == id).unwrap().1.clone();
    let (deleted, inserted) = (half(Op::Delete, 7), half(Op::Insert, 107));
    assert!(deleted.id.ends_with("/d") && inserted.id.ends_with("/i"), "{} {}", deleted.id, inserted.id);
    assert_eq!(deleted.txn, inserted.txn, "both halves belong to the update's transaction");
}
