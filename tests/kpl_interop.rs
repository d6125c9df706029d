//! sameday's KPL aggregated records against AWS's own aggregation library (aws-kinesis-agg,
//! in the test venv): what the reader writes, an independent de-aggregator reads back
//! unchanged; what AWS's aggregator writes, sameday reads.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use sameday_core::kpl;
use sameday_testkit::Kinesalite;
use serde_json::{json, Value};

use crate::common::{self, Daemon, Env};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `scripts/kpl_interop.py MODE` with `input` on stdin; its JSON answer.
fn interop(mode: &str, input: &Value) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kpl_interop.py");
    let mut child = Command::new(common::venv_bin("python"))
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kpl_interop.py");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kpl_interop.py {mode}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_reader_aggregates_read_back_identically_with_aws_kinesis_agg() {
    common::set_aws_env();
    let env = Env::new("kplagg", 1).await;
    env.maria()
        .exec(&format!(
            "CREATE TABLE `{}`.t (id INT PRIMARY KEY, n INT, note VARCHAR(20) CHARACTER SET utf8mb4)",
            env.db
        ))
        .await;
    let start = common::current_position().await;
    let mut reader = Daemon::spawn("reader", &env.write_config(&start), env.dir.path().join("reader.log"), &[]);
    // One hot row changed 300 times and 19 other rows, in one transaction: the row's changes
    // wait together, so they are packed.
    let mut sql = format!("USE `{}`; BEGIN; INSERT INTO t VALUES (1, 0, 'héllo 🎉');", env.db);
    for n in 1..=300 {
        sql.push_str(&format!("UPDATE t SET n = {n} WHERE id = 1;"));
    }
    for id in 2..=20 {
        sql.push_str(&format!("INSERT INTO t VALUES ({id}, 0, '家 {id}');"));
    }
    sql.push_str("COMMIT;");
    env.maria().exec(&sql).await;
    let changes = env.wait_for_records(320, Duration::from_secs(30)).await;
    reader.terminate();
    assert_eq!(changes.len(), 320);

    let raw = Kinesalite::shared().read_all(&env.stream).await;
    assert!(raw.iter().any(|(_, _, _, data)| data.starts_with(&kpl::MAGIC)), "some records are aggregated");
    assert!(raw.len() < 100, "{} Kinesis records for 320 changes", raw.len());
    let input: Vec<Value> =
        raw.iter().map(|(_, seq, pk, data)| json!({"pk": pk, "seq": seq, "data": B64.encode(data)})).collect();
    let theirs: Vec<(String, Vec<u8>)> = interop("deaggregate", &Value::from(input))
        .into_iter()
        .map(|u| (u["pk"].as_str().unwrap().to_owned(), B64.decode(u["data"].as_str().unwrap()).unwrap()))
        .collect();
    let ours: Vec<(String, Vec<u8>)> =
        common::user_records(&env.stream).await.into_iter().map(|(_, _, pk, data)| (pk, data)).collect();
    assert_eq!(theirs.len(), 320);
    assert_eq!(theirs, ours, "aws-kinesis-agg reads the same records, keys and order");
    // The hot row's changes in commit order.
    let n: Vec<i64> = changes
        .iter()
        .filter(|(_, e)| e.key["id"] == 1)
        .map(|(_, e)| e.after.as_ref().unwrap()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(n, (0..=300).collect::<Vec<_>>());
}

#[test]
fn records_aws_kinesis_agg_aggregates_are_read_by_sameday() {
    let users: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("app.t:{}", i % 3), format!("{{\"v\":1,\"n\":{i},\"t\":\"Grüße 🎉\"}}").into_bytes()))
        .collect();
    let input: Vec<Value> = users.iter().map(|(pk, d)| json!({"pk": pk, "data": B64.encode(d)})).collect();
    let aggregated = interop("aggregate", &Value::from(input));
    assert!(!aggregated.is_empty());
    let mut read = Vec::new();
    for a in aggregated {
        let data = B64.decode(a["data"].as_str().unwrap()).unwrap();
        assert!(data.starts_with(&kpl::MAGIC));
        read.extend(kpl::deaggregate(&data).into_iter().map(|u| (u.partition_key.unwrap(), u.data)));
    }
    assert_eq!(read, users, "every user record, its own partition key, in order");
}
