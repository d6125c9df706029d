//! The fan-out through the SQS emulator (fauxqs): per-group order under injected partial
//! failures, the same-day filter, and bad records dead-lettered with shard and sequence.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Fanout, MessageSender, Queues};
use crate::route::{RouteConfig, Routes};
use crate::shard_lease::SequenceNumber;
use crate::sqs::{SendOutcome, SqsError, SqsMessage, SqsQueue};
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_core::rule::ScheduleRule;
use sameday_testkit::{names, Fauxqs};
use serde_json::json;

/// Fails every `nth` entry (retryable, not sent) and every `whole`-th request.
struct Faulty<S> {
    inner: S,
    nth: u64,
    whole: u64,
    entries: AtomicU64,
    requests: AtomicU64,
}

impl<S: MessageSender> MessageSender for Faulty<S> {
    async fn send(&self, queue: usize, batch: &[SqsMessage]) -> Result<Vec<SendOutcome>, SqsError> {
        if (self.requests.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.whole) {
            return Err(SqsError { queue: "q".into(), message: "injected throttling".into(), transient: true });
        }
        let fail: Vec<bool> =
            batch.iter().map(|_| (self.entries.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.nth)).collect();
        let pass: Vec<SqsMessage> = batch.iter().zip(&fail).filter(|(_, f)| !**f).map(|(m, _)| m.clone()).collect();
        let mut sent = if pass.is_empty() { Vec::new() } else { self.inner.send(queue, &pass).await? }.into_iter();
        Ok(fail
            .into_iter()
            .map(|f| if f { SendOutcome::Retry { code: "InternalError".into() } } else { sent.next().unwrap() })
            .collect())
    }

    fn is_fifo(&self, queue: usize) -> bool {
        self.inner.is_fifo(queue)
    }
}

fn envelope(id: &str, key: i64, version: i64, due: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "id": id, "op": "update", "db": "app", "table": "schedule",
        "key": {"id": key}, "before": {"id": key, "ver": version - 1, "due_at": due},
        "after": {"id": key, "ver": version, "due_at": due},
        "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4 + version, "gtid": null, "ts_ms": 0},
        "txn": {"id": id, "index": 0}
    }))
    .unwrap()
}

async fn fifo_queue(client: &aws_sdk_sqs::Client) -> SqsQueue {
    let name = format!("{}.fifo", names::unique("fanout"));
    client.create_queue().queue_name(&name).attributes(QueueAttributeName::FifoQueue, "true").send().await.unwrap();
    SqsQueue::resolve(client.clone(), &name).await.unwrap()
}

/// Every `app.*` change to queue 0, no same-day filter.
fn app_routes() -> Routes {
    Routes::new(
        &[RouteConfig { tables: vec!["app.*".into()], queues: vec!["q".into()], same_day_rule: None }],
        &[],
        |_| 0,
    )
    .unwrap()
}

fn seq(n: u64) -> SequenceNumber {
    format!("{}", 49_000_000_000u64 + n).parse().unwrap()
}

#[tokio::test]
async fn fanout_keeps_group_order_under_partial_failures() {
    let client = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
    let queue = fifo_queue(&client).await;
    let url = queue.url().to_owned();
    let sender = Faulty { inner: Queues(vec![queue]), nth: 3, whole: 4, entries: 0.into(), requests: 0.into() };
    let routes = app_routes();
    // Every change as its own message: this test is about order under failures.
    let mut fanout = Fanout::new("shardId-000000000000").with_coalescing(false);
    let now = jiff::Timestamp::now();
    let mut n = 0;
    for version in 1..=8 {
        for key in 1..=5 {
            n += 1;
            fanout.push_record(seq(n), &envelope(&format!("e{n}"), key, version, "x"), &routes, |_| true, now);
        }
    }
    fanout.flush(&sender).await.unwrap();
    assert_eq!(fanout.durable(), Some(&seq(n)), "checkpoint reaches the last record once all are in SQS");
    assert!(fanout.stats.retried > 0, "failures were injected: {:?}", fanout.stats);

    let mut last = std::collections::HashMap::new();
    let mut received = 0;
    for _ in 0..400 {
        let out = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
        for m in out.messages() {
            let env: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let (key, ver) = (env["key"]["id"].as_i64().unwrap(), env["after"]["ver"].as_i64().unwrap());
            let prev = last.insert(key, ver).unwrap_or(0);
            assert_eq!(ver, prev + 1, "key {key} out of order");
            received += 1;
            client.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
        if received == 40 {
            break;
        }
    }
    assert_eq!(received, 40, "every change arrived exactly once");
}

fn rule() -> ScheduleRule {
    serde_json::from_value(json!({
        "name": "reminders", "db": "app", "table": "schedule", "key_columns": ["id"],
        "due_column": "due_at", "due_type": "datetime", "time_zone": "Europe/Berlin",
        "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:reminders"
    }))
    .unwrap()
}

#[tokio::test]
async fn same_day_filter_forwards_only_changes_that_touch_the_current_window() {
    let routes = Routes::new(
        &[RouteConfig {
            tables: vec!["app.schedule".into()],
            queues: vec!["q".into()],
            same_day_rule: Some("reminders".into()),
        }],
        &[rule()],
        |_| 0,
    )
    .unwrap();
    // 2026-11-22 10:00 in Berlin: today's window runs until tomorrow 03:30 + 1 h.
    let now: jiff::Timestamp = "2026-11-22T09:00:00Z".parse().unwrap();
    let mut fanout = Fanout::new("s");
    let mut push = |n: u64, before: &str, after: &str| {
        let data = serde_json::to_vec(&json!({
            "v": 1, "id": format!("e{n}"), "op": "update", "db": "app", "table": "schedule",
            "key": {"id": n}, "before": {"id": n, "due_at": before}, "after": {"id": n, "due_at": after},
            "source": {"server_id": 1, "file": "f.000001", "pos": 4, "gtid": null, "ts_ms": 0},
            "txn": {"id": "t", "index": 0}
        }))
        .unwrap();
        fanout.push_record(seq(n), &data, &routes, |_| true, now);
    };
    push(1, "2026-11-22T18:00:00", "2026-11-22T18:30:00"); // today
    push(2, "2026-11-23T12:00:00", "2026-11-23T12:00:00"); // tomorrow
    push(3, "2026-12-22T12:00:00", "2026-12-22T12:00:00"); // +30 days
    push(4, "2026-11-22T19:00:00", "2026-11-29T19:00:00"); // moved from today to next week
    assert_eq!(fanout.pending(), 2, "today's change and the move out of today");
    assert_eq!(fanout.stats.skipped, 2);
}

#[tokio::test]
async fn bad_record_is_dead_lettered_with_shard_and_sequence() {
    let client = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
    let queue = fifo_queue(&client).await;
    let sender = Queues(vec![queue]);
    let routes = app_routes();
    let mut fanout = Fanout::new("shardId-000000000007");
    let now = jiff::Timestamp::now();
    fanout.push_record(seq(1), b"{not json", &routes, |_| true, now);
    fanout.push_record(seq(2), &envelope("e2", 1, 1, "x"), &routes, |_| true, now);
    fanout.flush(&sender).await.unwrap();
    assert_eq!(fanout.dead_letters.len(), 1);
    let d = &fanout.dead_letters[0];
    assert_eq!((d.shard.as_str(), &d.sequence), ("shardId-000000000007", &seq(1)));
    assert!(d.reason.contains("not a sameday change envelope"), "{}", d.reason);
    assert_eq!(fanout.durable(), Some(&seq(2)), "the shard keeps going past the bad record");
    assert_eq!(fanout.stats.sent, 1);
}

/// Accepts everything; records the size of each request.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<usize>>);

impl MessageSender for Recording {
    async fn send(&self, _queue: usize, batch: &[SqsMessage]) -> Result<Vec<SendOutcome>, SqsError> {
        self.0.lock().unwrap().push(batch.len());
        Ok(vec![SendOutcome::Sent; batch.len()])
    }

    fn is_fifo(&self, _queue: usize) -> bool {
        true
    }
}

#[tokio::test]
async fn full_only_rounds_keep_the_partial_tail_for_the_next_read() {
    let routes = app_routes();
    let sender = Recording::default();
    let mut fanout = Fanout::new("s");
    let now = jiff::Timestamp::now();
    for n in 1..=25 {
        fanout.push_record(seq(n), &envelope(&format!("e{n}"), n as i64, 1, "x"), &routes, |_| true, now);
    }
    while fanout.send_round(&sender, 4, true).await.unwrap() {}
    assert_eq!(*sender.0.lock().unwrap(), [10, 10], "two full requests, the tail waits");
    assert_eq!((fanout.pending(), fanout.durable()), (5, Some(&seq(20))));
    assert_eq!(fanout.stats.retried, 0, "holding back is not a retry");
    // More records arrive; then the shard is caught up and everything goes.
    for n in 26..=30 {
        fanout.push_record(seq(n), &envelope(&format!("e{n}"), n as i64, 1, "x"), &routes, |_| true, now);
    }
    while fanout.send_round(&sender, 4, true).await.unwrap() {}
    fanout.flush(&sender).await.unwrap();
    assert_eq!(*sender.0.lock().unwrap(), [10, 10, 10]);
    assert_eq!(fanout.durable(), Some(&seq(30)));
}

/// A row's changes waiting for SQS fold into one message (first before, last after, the last
/// change's id), and the checkpoint reaches the last record only once that message is in SQS.
#[tokio::test]
async fn a_rows_waiting_changes_fold_into_one_message() {
    let client = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
    let queue = fifo_queue(&client).await;
    let url = queue.url().to_owned();
    let sender = Queues(vec![queue]);
    let routes = app_routes();
    let mut fanout = Fanout::new("shardId-000000000000");
    let now = jiff::Timestamp::now();
    let mut n = 0;
    // Row 1 goes out first; its later changes and all of row 2's wait, then fold.
    n += 1;
    fanout.push_record(seq(n), &envelope("e1", 1, 1, "x"), &routes, |_| true, now);
    assert!(fanout.send_once(&sender).await.unwrap());
    for version in 2..=8 {
        for key in 1..=2 {
            n += 1;
            fanout.push_record(
                seq(n),
                &envelope(&format!("e{n}"), key, version - (key - 1), "x"),
                &routes,
                |_| true,
                now,
            );
        }
    }
    assert_eq!(fanout.stats.coalesced, 12, "6 later changes of row 1 and 6 of row 2 folded");
    assert_eq!(fanout.durable(), Some(&seq(1)));
    fanout.flush(&sender).await.unwrap();
    assert_eq!(fanout.durable(), Some(&seq(n)));
    let mut got = Vec::new();
    for _ in 0..50 {
        let out = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
        for m in out.messages() {
            let env: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            got.push((
                env["key"]["id"].as_i64().unwrap(),
                env["before"]["ver"].as_i64().unwrap(),
                env["after"]["ver"].as_i64().unwrap(),
                env["id"].as_str().unwrap().to_owned(),
            ));
            client.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
        if got.len() == 3 {
            break;
        }
    }
    got.sort();
    assert_eq!(
        got,
        [(1, 0, 1, "e1".to_owned()), (1, 1, 8, "e14".to_owned()), (2, 0, 7, "e15".to_owned())],
        "row 1: its first change, then the rest as one; row 2: all as one"
    );
}
