//! The publisher against an in-memory sink that fails records at random: nothing is lost,
//! no key is reordered, and the checkpoint only names delivered commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sameday_core::checkpoint::{CheckpointStore, FileCheckpointStore};
use sameday_core::envelope::Op;
use sameday_core::BinlogPosition;
use tokio_util::sync::CancellationToken;

use crate::decoder::{Commit, Output, Record};
use crate::metrics::ReaderMetrics;
use crate::publisher::{Publisher, PublisherConfig};
use crate::sink::{RecordOutcome, RecordSink, SinkError, SinkRecord};

/// Accepts records in a shuffled order and fails some, like a hostile PutRecords.
struct ChaosSink {
    log: Mutex<Vec<SinkRecord>>,
    rng: Mutex<rand::rngs::StdRng>,
}

impl RecordSink for ChaosSink {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        let (fail_all, fails, order) = {
            let mut rng = self.rng.lock().unwrap();
            let fail_all = rng.random_bool(0.05);
            let fails: Vec<bool> = batch.iter().map(|_| rng.random_bool(0.2)).collect();
            let mut order: Vec<usize> = (0..batch.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            (fail_all, fails, order)
        };
        tokio::time::sleep(Duration::from_micros(200)).await;
        if fail_all {
            return Err(SinkError { message: "ThrottlingException".into(), transient: true });
        }
        let mut log = self.log.lock().unwrap();
        for &i in &order {
            if !fails[i] {
                log.push(batch[i].clone());
            }
        }
        Ok(fails
            .iter()
            .map(
                |&f| if f { RecordOutcome::Retry { code: "InternalFailure".into() } } else { RecordOutcome::Delivered },
            )
            .collect())
    }

    fn max_record_bytes(&self) -> usize {
        1 << 20
    }

    fn describe(&self) -> String {
        "chaos".into()
    }
}

fn record(key: u32, n: u32) -> Record {
    Record {
        partition_key: format!("db.t:{key}"),
        data: format!("{key}:{n}").into_bytes(),
        id: format!("{key}:{n}"),
        op: Op::Update,
        table: Arc::from("db.t"),
        position: Arc::new(BinlogPosition::new("bin.000001", 4)),
    }
}

#[tokio::test]
async fn partial_failures_never_reorder_a_key_or_lose_a_record() {
    let sink =
        Arc::new(ChaosSink { log: Mutex::new(Vec::new()), rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(7)) });
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileCheckpointStore::new(dir.path().join("cp.json")));
    let cfg = PublisherConfig {
        linger: Duration::from_millis(1),
        checkpoint_interval: Duration::from_millis(5),
        ..Default::default()
    };
    let publisher = Publisher::new(sink.clone(), cfg).with_checkpoints(store.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let run = tokio::spawn(publisher.run(rx, CancellationToken::new()));
    let mut counters = [0u32; 37];
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut pos = 4u64;
    for _txn in 0..400 {
        let mut outs = Vec::new();
        for _ in 0..rng.random_range(1..8) {
            let key = rng.random_range(0..37u32);
            counters[key as usize] += 1;
            outs.push(Output::Row(record(key, counters[key as usize])));
        }
        pos += 100;
        outs.push(Output::Commit(Commit {
            next: BinlogPosition::new("bin.000001", pos),
            gtid_set: None,
            ts_ms: 0,
            rows: 0,
        }));
        tx.send(outs).await.unwrap();
    }
    drop(tx);
    let summary = run.await.unwrap().unwrap();
    let log = sink.log.lock().unwrap().clone();
    let total: u32 = counters.iter().sum();
    assert_eq!(log.len() as u32, total, "every record delivered exactly once");
    assert_eq!(summary.delivered as u32, total);
    let mut last: HashMap<String, u32> = HashMap::new();
    for r in log.iter() {
        let text = String::from_utf8(r.data.to_vec()).unwrap();
        let n: u32 = text.split(':').nth(1).unwrap().parse().unwrap();
        let prev = last.insert(r.partition_key.clone(), n).unwrap_or(0);
        assert_eq!(n, prev + 1, "key {} out of order", r.partition_key);
    }
    let cp = store.load().await.unwrap().unwrap();
    assert_eq!(cp.position, BinlogPosition::new("bin.000001", pos), "final checkpoint is the last commit");
}

#[tokio::test]
async fn oversize_records_are_dead_lettered_and_the_stream_continues() {
    let sink =
        Arc::new(ChaosSink { log: Mutex::new(Vec::new()), rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(3)) });
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dead.jsonl");
    let metrics = ReaderMetrics::default();
    let publisher =
        Publisher::new(sink.clone(), PublisherConfig { linger: Duration::from_millis(1), ..Default::default() })
            .with_metrics(metrics.clone())
            .with_dead_letters(crate::dead_letter::DeadLetters::file(&dlq));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let run = tokio::spawn(publisher.run(rx, CancellationToken::new()));
    let mut big = record(1, 1);
    big.data = vec![b'x'; 2 << 20];
    tx.send(vec![Output::Row(big), Output::Row(record(2, 1))]).await.unwrap();
    drop(tx);
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.dead_lettered, 1);
    assert_eq!(summary.delivered, 1);
    let line = std::fs::read_to_string(&dlq).unwrap();
    assert!(line.contains("exceeds the stream's maximum record size") && line.contains("db.t:1"), "{line}");
}

/// Delivers one record per call, slowly: a hot row's backlog.
struct SlowSink;

impl RecordSink for SlowSink {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(vec![RecordOutcome::Delivered; batch.len()])
    }

    fn max_record_bytes(&self) -> usize {
        1 << 20
    }

    fn describe(&self) -> String {
        "slow".into()
    }
}

/// One row changed 200 times in one transaction: the deepest backlog shows in the metric and
/// a warning names the row while it holds the checkpoint back.
#[tokio::test]
async fn a_hot_row_holding_the_checkpoint_back_is_measured_and_named() {
    let cfg = PublisherConfig {
        linger: Duration::from_millis(1),
        checkpoint_interval: Duration::from_millis(10),
        held_back_warn: Duration::from_millis(100),
        ..Default::default()
    };
    let metrics = ReaderMetrics::new(&sameday_core::metrics::MetricsRegistry::default());
    let publisher = Publisher::new(Arc::new(SlowSink), cfg).with_metrics(metrics.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let run = tokio::spawn(publisher.run(rx, CancellationToken::new()));
    let mut outs: Vec<Output> = (1..=200).map(|n| Output::Row(record(1, n))).collect();
    outs.push(Output::Commit(Commit {
        next: BinlogPosition::new("bin.000001", 900),
        gtid_set: None,
        ts_ms: 0,
        rows: 0,
    }));
    tx.send(outs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let backlog = metrics.key_backlog_max.get();
    assert!(backlog > 50, "the hot row's backlog is visible: {backlog}");
    // The labelled series names the row (table and key digest, not its values).
    let row = crate::metrics::RowDigest::of("db.t:1");
    assert_eq!(row.table, "db.t");
    let labelled = metrics.key_backlog_deepest.get_or_create(&row).get();
    assert!(labelled > 50, "the row holding the backlog is named: {labelled}");
    drop(tx);
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.delivered, 200);
    assert!(summary.held_back_warnings >= 1, "{summary:?}");
}
