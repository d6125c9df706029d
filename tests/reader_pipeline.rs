//! The reader end to end through a real MariaDB and the Kinesis emulator.

mod common;

use std::time::Duration;

use common::{set_aws_env, Env};
use sameday_core::Op;
use sameday_testkit::MariaDb;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn reader_streams_inserts_updates_and_deletes_in_commit_order() {
    set_aws_env();
    let env = Env::new("pipeline", 2).await;
    let maria = MariaDb::shared();
    maria.exec(&format!("CREATE TABLE {}.t (id INT PRIMARY KEY, v VARCHAR(20))", env.db)).await;
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run::run_reader(env.config("latest"), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = &env.db;
    maria
        .exec(&format!(
            "BEGIN; INSERT INTO {db}.t VALUES (1,'a'),(2,'b'),(3,'c'); COMMIT;
             UPDATE {db}.t SET v = 'a2' WHERE id = 1;
             BEGIN; DELETE FROM {db}.t WHERE id = 2; UPDATE {db}.t SET v = 'c2' WHERE id = 3; COMMIT;"
        ))
        .await;
    let records = env.wait_for_records(6, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let ops: Vec<(Op, i64)> = records.iter().map(|(_, e)| (e.op, e.key["id"].as_i64().unwrap())).collect();
    for id in 1..=3 {
        let per_key: Vec<Op> = ops.iter().filter(|(_, k)| *k == id).map(|(o, _)| *o).collect();
        let want = match id {
            1 => vec![Op::Insert, Op::Update],
            2 => vec![Op::Insert, Op::Delete],
            _ => vec![Op::Insert, Op::Update],
        };
        assert_eq!(per_key, want, "key {id}");
    }
    let upd = records.iter().find(|(_, e)| e.op == Op::Update && e.key["id"] == 1).unwrap();
    assert_eq!(upd.1.before.as_ref().unwrap()["v"], "a");
    assert_eq!(upd.1.after.as_ref().unwrap()["v"], "a2");
    let del = records.iter().find(|(_, e)| e.op == Op::Delete).unwrap();
    assert!(del.1.after.is_none());
    assert_eq!(del.1.before.as_ref().unwrap()["v"], "b");
    // The two changes of the last transaction share its id and are numbered in it.
    let last_txn: Vec<_> = records.iter().filter(|(_, e)| e.txn.id == del.1.txn.id).collect();
    assert_eq!(last_txn.len(), 2);
}
