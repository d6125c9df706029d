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

#[tokio::test]
async fn reader_streams_over_tls_verified_against_a_private_ca() {
    set_aws_env();
    let tls = MariaDb::start_with(sameday_testkit::MariaDbOptions::default().tls(true));
    let env = Env::new("tls", 1).await;
    let db = sameday_testkit::names::unique("tlsdb");
    tls.exec(&format!("CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)")).await;
    let mut cfg = env.config("latest");
    cfg.source.port = tls.port();
    cfg.source.tls = sameday_reader::config::TlsMode::Verify;
    cfg.source.tls_ca_file = Some(tls.ca_pem_path().expect("TLS instance has a CA").to_path_buf());
    cfg.filter.include = vec![format!("{db}.*")];
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run::run_reader(cfg.clone(), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    tls.exec(&format!("INSERT INTO {db}.t VALUES (1, 'over tls')")).await;
    let records = env.wait_for_records(1, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    assert_eq!(records[0].1.after.as_ref().unwrap()["v"], "over tls");

    // Without the CA the server certificate is not trusted: a clear error, no stream.
    let mut untrusted = cfg;
    untrusted.source.tls_ca_file = None;
    let err = sameday_reader::run::run_reader(untrusted, CancellationToken::new()).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1") && err.to_lowercase().contains("certificate"), "{err}");
}
