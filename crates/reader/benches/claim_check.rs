//! Large records through the claim-check path (S3 object + pointer record) against the inline
//! path (the whole record in Kinesis), same records, same run, same emulators (kinesalite,
//! moto's S3). Not a test: `cargo bench -p sameday-reader --bench claim_check`
//! (env `CLAIM_RECORDS`, default 200; `CLAIM_KIB`, default 600).

use std::sync::Arc;
use std::time::Instant;

use sameday_core::claim_check::ClaimCheckConfig;
use sameday_core::s3::ObjectStore;
use sameday_core::Op;
use sameday_reader::{ClaimChecker, KinesisSink, Output, Publisher, PublisherConfig, Record};
use sameday_testkit::bench::{env_or, run};
use sameday_testkit::{names, Kinesalite, Moto};
use tokio_util::sync::CancellationToken;

/// `n` change records of about `bytes` each, as the reader encodes them.
fn records(n: usize, bytes: usize, run: &str) -> Vec<Output> {
    let body = "x".repeat(bytes);
    (0..n)
        .map(|i| {
            let id = format!("0-1-{i}/0/{run}");
            let data = serde_json::json!({
                "v": 1, "id": id, "op": "insert", "db": "app", "table": "t", "key": {"id": i},
                "before": null, "after": {"id": i, "body": body},
                "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4 + i, "gtid": format!("0-1-{i}"), "ts_ms": 0},
                "txn": {"id": format!("0-1-{i}"), "index": 0}
            })
            .to_string()
            .into_bytes();
            Output::Row(Record {
                partition_key: format!("app.t:{i}"),
                data,
                id,
                op: Op::Insert,
                table: "app.t".into(),
                position: std::sync::Arc::new(format!("mysql-bin.000001:{}", 4 + i).parse().unwrap()),
            })
        })
        .collect()
}

/// Publishes `outputs` into `stream`; seconds taken.
async fn publish(stream: &str, outputs: Vec<Output>, claim_check: Option<ClaimChecker>) -> f64 {
    let kinesis = Kinesalite::shared().kinesis_client().await;
    let mut sink = KinesisSink::new(kinesis, stream, None);
    sink.check().await.expect("stream");
    let cfg = PublisherConfig { claim_check, ..PublisherConfig::default() };
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    for chunk in outputs.chunks(16) {
        tx.send(chunk.to_vec()).await.unwrap();
    }
    drop(tx);
    let start = Instant::now();
    let summary = Publisher::new(Arc::new(sink), cfg).run(rx, CancellationToken::new()).await.expect("publish");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(summary.dead_lettered, 0);
    secs
}

fn main() {
    run(|| async {
        let (n, kib) = (env_or("CLAIM_RECORDS", 200), env_or("CLAIM_KIB", 600));
        let kinesalite = Kinesalite::shared();
        let moto = Moto::shared();
        let stream = names::unique("claimbench");
        kinesalite.create_stream(&stream, 4).await;
        let bucket = names::unique("claimbench").replace('_', "-");
        moto.create_bucket(&bucket).await;
        let cfg = ClaimCheckConfig {
            location: format!("s3://{bucket}/changes").parse().unwrap(),
            threshold_bytes: Some(64 * 1024),
        };
        let store = ObjectStore::new(moto.s3_client().await, cfg.location.clone());
        let checker = ClaimChecker::new(store.clone(), &cfg, 1024 * 1024);

        let inline = publish(&stream, records(n, kib * 1024, "inline"), None).await;
        let claimed = publish(&stream, records(n, kib * 1024, "claimed"), Some(checker)).await;
        let objects = store.list("").await.expect("list").len();
        let mb = (n * kib) as f64 / 1024.0;
        println!("records: {n} x {kib} KiB ({mb:.1} MiB) per path");
        println!(
            "inline (Kinesis only):        {:>8.1} records/s  {:>6.1} MiB/s  ({inline:.2} s)",
            n as f64 / inline,
            mb / inline
        );
        println!(
            "claim-check (S3 + pointer):   {:>8.1} records/s  {:>6.1} MiB/s  ({claimed:.2} s)",
            n as f64 / claimed,
            mb / claimed
        );
        println!("claim-check / inline:         {:.2}", inline / claimed);
        println!("S3 PutObject: {objects} for {n} large records (one each)");
    });
}
