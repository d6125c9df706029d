//! Large changes through the whole pipeline: a row too large for a Kinesis record (or an SQS
//! message) travels as a claim-check pointer, with its full change in S3 (moto), and the
//! schedule in Step Functions still equals the table, after a replay too.

use std::collections::BTreeSet;

use aws_sdk_sfn::types::ExecutionStatus;
use sameday_core::s3::{ObjectStore, S3Location};
use sameday_testkit::{names, Moto};

use crate::common;
use crate::common::pipeline::Pipeline;
use crate::schedule_scenarios::{assert_schedule_matches_table, due};

/// `n` bytes of text with multi-byte characters (a rendered e-mail body, say).
fn body(n: usize) -> String {
    "Grüße, 家族 🎉 ".repeat(n / 22 + 1).chars().take(n / 2).collect::<String>() + &"x".repeat(n / 2)
}

/// Every object key under the bucket's `changes/` prefix.
async fn stored(bucket: &str) -> BTreeSet<String> {
    let location: S3Location = format!("s3://{bucket}/changes").parse().unwrap();
    let store = ObjectStore::new(Moto::shared().s3_client().await, location);
    store.list("").await.unwrap().into_iter().map(|o| o.key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_rows_are_rescheduled_through_s3_and_replayed_the_same() {
    let mut p = Pipeline::new("large").await;
    p.sql("ALTER TABLE schedule ADD COLUMN body LONGTEXT CHARACTER SET utf8mb4 NULL").await;
    let bucket = names::unique("large").replace('_', "-");
    Moto::shared().create_bucket(&bucket).await;
    p.claim_check = Some(format!("s3://{bucket}/changes"));
    p.start().await;
    let from = common::current_position().await;

    // 600 KB: inline in Kinesis, too large for SQS (the consumer stores it). 5 MB: too large
    // for Kinesis (the reader stores it). 300 KB: the consumer stores it. 1 KB: inline all along.
    let (b600, b5m, b300) = (body(600 * 1024), body(5 * 1024 * 1024), body(300 * 1024));
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at, body) VALUES
         (1, 7, 'email', '{}', '{b600}'), (2, 8, 'push', '{}', '{b5m}'), (3, 9, 'sms', '{}', '{b300}'),
         (4, 10, 'email', '{}', 'small')",
        due(30),
        due(40),
        due(45),
        due(50)
    ))
    .await;
    p.settle(4).await;
    assert_schedule_matches_table(&p, "after the inserts").await;
    let before_reschedule = p.executions().await;

    // Rescheduling the 600 KB row: before + after is 1.2 MB, over the Kinesis record limit.
    p.sql(&format!("UPDATE schedule SET due_at = '{}' WHERE id = 1", due(55))).await;
    p.settle(5).await;
    assert_schedule_matches_table(&p, "after rescheduling the large row").await;
    let execs = p.executions().await;
    let stopped: Vec<_> = execs.iter().filter(|(_, s)| **s == ExecutionStatus::Aborted).map(|(n, _)| n).collect();
    assert_eq!(stopped.len(), 1, "the large row's old execution is stopped: {execs:?}");
    assert!(before_reschedule.contains_key(stopped[0]), "{stopped:?} was the old one");

    // What went where: pointers in Kinesis for the 5 MB insert and the 1.2 MB update; an
    // object for every change larger than an SQS message.
    let records = p.env.records().await;
    let pointers: BTreeSet<String> =
        records.iter().filter(|(_, e)| e.claim_check.is_some()).map(|(_, e)| e.key["id"].to_string()).collect();
    assert_eq!(pointers, BTreeSet::from(["1".to_owned(), "2".to_owned()]), "pointers in the stream");
    for (_, e) in &records {
        if let Some(cc) = &e.claim_check {
            assert!(e.before.is_none() && e.after.is_none(), "a pointer carries no images");
            assert_eq!(cc.key, format!("changes/{}.json", e.id));
        }
    }
    let objects = stored(&bucket).await;
    let id_of = |row: i64, op: &str| {
        records.iter().find(|(_, e)| e.key["id"] == row && e.op.as_str() == op).unwrap().1.id.clone()
    };
    let expected: BTreeSet<String> = [(1, "insert"), (2, "insert"), (3, "insert"), (1, "update")]
        .iter()
        .map(|(row, op)| format!("changes/{}.json", id_of(*row, op)))
        .collect();
    assert_eq!(objects, expected, "one object per large change, named by its event id");

    // A replay of the same range writes the same objects and changes nothing in Step Functions.
    let to = common::current_position().await;
    let config = p.path("reader.toml");
    let out = p.cli("replay", &config, &["--from", &from, "--to", &to, "--sink", "kinesis"]);
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    p.settle(10).await;
    assert_eq!(stored(&bucket).await, expected, "the replay wrote the same keys");
    assert_eq!(p.executions().await, execs, "a replay changes no execution");
    assert_schedule_matches_table(&p, "after the replay").await;
    p.stop().await;
}

/// A pointer whose object expired (or was deleted) or was replaced is poison with the reason
/// and the fix; the worker keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_whose_object_is_gone_or_altered_is_dead_lettered_with_the_fix() {
    let mut p = Pipeline::new("lostobj").await;
    let bucket = names::unique("lostobj").replace('_', "-");
    Moto::shared().create_bucket(&bucket).await;
    p.claim_check = Some(format!("s3://{bucket}/changes"));
    p.start().await;
    let store = ObjectStore::new(Moto::shared().s3_client().await, format!("s3://{bucket}/changes").parse().unwrap());
    let pointer = |id: &str, key: &str, bytes: u64, sha: &str| {
        serde_json::json!({
            "v": 1, "id": id, "op": "insert", "db": p.env.db, "table": "schedule", "key": {"id": 1},
            "before": null, "after": null,
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "ts_ms": 0},
            "txn": {"id": id, "index": 0},
            "claim_check": {"bucket": bucket, "key": key, "bytes": bytes, "sha256": sha}
        })
        .to_string()
    };
    let (key, sha) =
        store.put("0-1-2/0/0.json", b"{\"not\":\"the change\"}".to_vec(), "application/json").await.unwrap();
    let bodies = [
        ("g1", pointer("0-1-1/0/0", "changes/0-1-1/0/0.json", 10, &"0".repeat(64))),
        ("g2", pointer("0-1-2/0/0", &key, 20, &"1".repeat(64))),
        ("g3", pointer("0-1-3/0/0", &key, 20, &sha)),
    ];
    for (group, body) in &bodies {
        p.send_to_worker(group, body).await;
    }
    let reasons = p.dead_letter_reasons(3).await;
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("changes/0-1-1/0/0.json does not exist") && r.contains("sameday reconcile")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("replaced or truncated")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not a sameday change envelope")), "{reasons:?}");
    p.worker.as_mut().unwrap().assert_running();
    p.stop().await;
}
