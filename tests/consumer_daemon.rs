//! The consumer daemon as operators run it: several `sameday consumer` processes on one
//! stream (kinesalite), leases in DynamoDB (moto), messages in SQS FIFO (fauxqs).
//! Crashes are real `kill -9`s, hand-overs real SIGTERMs, the reshard a real SplitShard.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_consumer::shard_lease::{LeaseTable, ShardCheckpoint};
use sameday_core::clock::now_ms;
use sameday_testkit::{names, wait_until, Fauxqs, Kinesalite, Moto};
use serde_json::{json, Value};

use crate::common::{set_aws_env, ConsumerToml, Daemon, RouteToml};

/// One test's stream, queue, lease table and config directory.
struct Setup {
    stream: String,
    queue_name: String,
    queue_url: String,
    lease_table: String,
    dir: tempfile::TempDir,
    kinesis: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    leases: LeaseTable,
}

impl Setup {
    async fn new(prefix: &str, shards: i32) -> Self {
        set_aws_env();
        let stream = names::unique(prefix);
        Kinesalite::shared().create_stream(&stream, shards).await;
        let sqs = aws_sdk_sqs::Client::new(&Fauxqs::shared().sdk_config().await);
        let queue_name = format!("{}.fifo", names::unique(prefix));
        let out = sqs
            .create_queue()
            .queue_name(&queue_name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create FIFO queue");
        let lease_table = names::unique(&format!("{prefix}-leases"));
        let leases = LeaseTable::new(Moto::shared().dynamodb_client().await, &lease_table);
        Self {
            stream,
            queue_name,
            queue_url: out.queue_url().unwrap().to_owned(),
            lease_table,
            dir: tempfile::tempdir().unwrap(),
            kinesis: Kinesalite::shared().kinesis_client().await,
            sqs,
            leases,
        }
    }

    fn dead_letter_path(&self) -> PathBuf {
        self.dir.path().join("dead-letters.jsonl")
    }

    /// This test's route: app.* to its queue.
    fn route(&self) -> RouteToml {
        RouteToml::new(&["app.*"], &[&self.queue_name])
    }

    /// A consumer config for `worker` with `route`; add rules to it before writing. Every
    /// change gets a message of its own (no folding), so the tests can count them.
    fn toml(&self, worker: &str, lease_ms: u64, route: RouteToml) -> ConsumerToml {
        ConsumerToml::new(&self.stream, &self.lease_table, &self.dead_letter_path())
            .coalesce(false)
            .shutdown_timeout_ms(5000)
            .lease_duration_ms(lease_ms)
            .checkpoint_interval_ms(200)
            .shard_sync_interval_ms(1000)
            .worker_id(worker)
            .create_lease_table(true)
            .route(route)
            .metrics()
    }

    fn write(&self, worker: &str, config: ConsumerToml) -> PathBuf {
        config.write(self.dir.path().join(format!("{worker}.toml")))
    }

    /// A consumer config for `worker` with this test's route.
    fn config(&self, worker: &str, lease_ms: u64) -> PathBuf {
        self.write(worker, self.toml(worker, lease_ms, self.route()))
    }

    fn spawn(&self, worker: &str, config: &Path) -> Daemon {
        let envs = common::emulator_endpoints();
        let mut d = Daemon::spawn("consumer", config, self.dir.path().join(format!("{worker}.log")), &envs);
        d.name = worker.to_owned();
        d
    }

    /// Writes one version of each key as a PutRecords batch (one record per key, so the
    /// batch cannot reorder a key).
    async fn put_versions(&self, keys: std::ops::Range<i64>, version: i64) {
        let entries: Vec<PutRecordsRequestEntry> = keys
            .map(|k| {
                let data = envelope(&format!("k{k}-v{version}"), k, version, "2026-01-01T00:00:00");
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("app.schedule:{k}"))
                    .data(Blob::new(data))
                    .build()
                    .unwrap()
            })
            .collect();
        for chunk in entries.chunks(500) {
            let out = self
                .kinesis
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(chunk.to_vec()))
                .send()
                .await
                .expect("PutRecords");
            assert_eq!(out.failed_record_count(), Some(0));
        }
    }

    async fn put_raw(&self, partition_key: &str, data: Vec<u8>) {
        self.kinesis
            .put_record()
            .stream_name(&self.stream)
            .partition_key(partition_key)
            .data(Blob::new(data))
            .send()
            .await
            .expect("PutRecord");
    }

    /// Receives and deletes until `want` distinct change ids arrived (or the deadline);
    /// returns every delivery in arrival order.
    async fn drain(&self, received: &mut Vec<Value>, want: usize, deadline: Duration) {
        let start = Instant::now();
        while distinct(received) < want {
            assert!(
                start.elapsed() < deadline,
                "only {} of {want} changes reached SQS in {deadline:?}",
                distinct(received)
            );
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage");
            for m in out.messages() {
                received.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
    }

    /// Live owners and their shard counts.
    async fn owners(&self) -> BTreeMap<String, usize> {
        let now = now_ms();
        let mut out = BTreeMap::new();
        for l in self.leases.list().await.unwrap_or_default() {
            if let Some(o) = l.live_owner(now).filter(|_| !l.is_finished()) {
                *out.entry(o.to_owned()).or_default() += 1;
            }
        }
        out
    }

    async fn wait_owners(&self, want: &[(&str, usize)], deadline: Duration) {
        let want: BTreeMap<String, usize> = want.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        let start = Instant::now();
        loop {
            let got = self.owners().await;
            if got == want {
                return;
            }
            assert!(start.elapsed() < deadline, "leases are {got:?}, expected {want:?} within {deadline:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn envelope(id: &str, key: i64, version: i64, due: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "id": id, "op": "update", "db": "app", "table": "schedule",
        "key": {"id": key}, "before": {"id": key, "ver": version - 1, "due_at": due},
        "after": {"id": key, "ver": version, "due_at": due},
        "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "gtid": null, "ts_ms": 0},
        "txn": {"id": id, "index": 0}
    }))
    .unwrap()
}

fn distinct(received: &[Value]) -> usize {
    received.iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect::<std::collections::HashSet<_>>().len()
}

/// Per key, versions arrive in order; a repeat is only ever a replay of the version just
/// before (an exact suffix replay after a crash), never an older one after a newer.
/// Returns the number of repeated deliveries.
fn assert_key_order(received: &[Value]) -> usize {
    let mut last: HashMap<i64, i64> = HashMap::new();
    let mut repeats = 0;
    for v in received {
        let (key, ver) = (v["key"]["id"].as_i64().unwrap(), v["after"]["ver"].as_i64().unwrap());
        let prev = last.get(&key).copied().unwrap_or(0);
        if ver <= prev {
            repeats += 1;
        } else {
            assert_eq!(ver, prev + 1, "key {key}: version {ver} arrived after {prev} (a change was skipped)");
            last.insert(key, ver);
        }
    }
    repeats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_on_four_shards_split_leases_two_each_and_keep_key_order() {
    let _slot = common::scenario_slot().await;
    let s = Setup::new("lease-split", 4).await;
    let mut a = s.spawn("a", &s.config("a", 3000));
    s.wait_owners(&[("a", 4)], Duration::from_secs(20)).await;
    let mut b = s.spawn("b", &s.config("b", 3000));
    s.wait_owners(&[("a", 2), ("b", 2)], Duration::from_secs(30)).await;

    let mut received = Vec::new();
    for version in 1..=5 {
        s.put_versions(0..60, version).await;
    }
    s.drain(&mut received, 300, Duration::from_secs(60)).await;
    assert_eq!(assert_key_order(&received), 0, "no crash, no repeats");
    a.assert_running();
    b.assert_running();
    s.wait_owners(&[("a", 2), ("b", 2)], Duration::from_secs(5)).await;

    // Checkpoints reach the end of every shard (all accepted by SQS).
    wait_until(Duration::from_secs(10), "every shard checkpointed", || async {
        s.leases.list().await.unwrap().iter().all(|l| matches!(l.checkpoint, ShardCheckpoint::Sequence(_)))
    })
    .await;
    let ta = a.terminate();
    let tb = b.terminate();
    assert!(ta < Duration::from_secs(10) && tb < Duration::from_secs(10), "SIGTERM exits took {ta:?} / {tb:?}");
    // Released on shutdown: no owner left.
    assert!(s.owners().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_consumer_lease_takeover_after_expiry_and_sigterm_handover_at_once() {
    let _slot = common::scenario_slot().await;
    let lease_ms = 4000;
    let s = Setup::new("lease-kill", 4).await;
    let mut a = s.spawn("a", &s.config("a", lease_ms));
    s.wait_owners(&[("a", 4)], Duration::from_secs(20)).await;
    let mut b = s.spawn("b", &s.config("b", lease_ms));
    s.wait_owners(&[("a", 2), ("b", 2)], Duration::from_secs(30)).await;

    let mut received = Vec::new();
    let writer = {
        let stream = s.stream.clone();
        let kinesis = s.kinesis.clone();
        tokio::spawn(async move {
            for version in 1..=20 {
                let entries: Vec<PutRecordsRequestEntry> = (0..40)
                    .map(|k| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("app.schedule:{k}"))
                            .data(Blob::new(envelope(&format!("k{k}-v{version}"), k, version, "x")))
                            .build()
                            .unwrap()
                    })
                    .collect();
                kinesis.put_records().stream_name(&stream).set_records(Some(entries)).send().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    s.drain(&mut received, 200, Duration::from_secs(60)).await;
    // Mid-stream: a dies without checkpointing or releasing.
    a.kill9();
    let killed = Instant::now();
    s.wait_owners(&[("b", 4)], Duration::from_secs(30)).await;
    let takeover = killed.elapsed();
    assert!(takeover >= Duration::from_millis(lease_ms / 2), "took over after {takeover:?}, before expiry");
    writer.await.unwrap();
    s.drain(&mut received, 800, Duration::from_secs(60)).await;
    let repeats = assert_key_order(&received);
    eprintln!("kill -9 takeover after {takeover:?}; {} deliveries, {repeats} repeats", received.len());

    // A new task takes half, then b leaves gracefully: c owns all at once, well before
    // b's leases would have expired.
    let mut c = s.spawn("c", &s.config("c", lease_ms));
    s.wait_owners(&[("b", 2), ("c", 2)], Duration::from_secs(30)).await;
    let term = Instant::now();
    let exit = b.terminate();
    s.wait_owners(&[("c", 4)], Duration::from_secs(30)).await;
    let handover = term.elapsed();
    assert!(handover < Duration::from_millis(lease_ms), "SIGTERM hand-over took {handover:?} (exit {exit:?})");
    s.put_versions(0..40, 21).await;
    s.drain(&mut received, 840, Duration::from_secs(60)).await;
    assert_key_order(&received);
    c.terminate();
    eprintln!("SIGTERM exit {exit:?}, hand-over {handover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_split_mid_stream_children_start_after_parent_and_keep_key_order() {
    let _slot = common::scenario_slot().await;
    let s = Setup::new("reshard", 1).await;
    let mut a = s.spawn("a", &s.config("a", 3000));
    let mut received = Vec::new();
    for version in 1..=3 {
        s.put_versions(0..30, version).await;
    }
    s.drain(&mut received, 90, Duration::from_secs(60)).await;

    // Split the only shard at the middle of its hash range while more changes come in.
    let shards = s.kinesis.list_shards().stream_name(&s.stream).send().await.unwrap();
    let parent = shards.shards()[0].shard_id().to_owned();
    let mid = (u128::MAX / 2).to_string();
    s.put_versions(0..30, 4).await;
    s.kinesis
        .split_shard()
        .stream_name(&s.stream)
        .shard_to_split(&parent)
        .new_starting_hash_key(mid)
        .send()
        .await
        .expect("SplitShard");
    wait_until(Duration::from_secs(30), "split finished", || async {
        let out = s.kinesis.describe_stream_summary().stream_name(&s.stream).send().await.unwrap();
        out.stream_description_summary().unwrap().stream_status().as_str() == "ACTIVE"
    })
    .await;
    for version in 5..=7 {
        s.put_versions(0..30, version).await;
    }
    s.drain(&mut received, 210, Duration::from_secs(60)).await;
    assert_eq!(assert_key_order(&received), 0);
    a.assert_running();

    let leases = s.leases.list().await.unwrap();
    let parent_lease = leases.iter().find(|l| l.shard_id == parent).unwrap();
    assert_eq!(parent_lease.checkpoint, ShardCheckpoint::ShardEnd, "{leases:?}");
    let children: Vec<_> = leases.iter().filter(|l| l.parent_shard_ids.contains(&parent)).collect();
    assert_eq!(children.len(), 2, "{leases:?}");
    let log = a.log_text();
    // The parent's task logs this before it writes SHARD_END, the only thing that makes a
    // child eligible; the coordinator's own "shard finished" line may come after a child
    // was taken, so it proves nothing.
    let end = log.find("checkpointing SHARD_END").expect("parent finished");
    assert!(log.contains("shard finished (SHARD_END)"), "the coordinator noticed the parent's end");
    for child in &children {
        let taken = log.find(&format!("\"shard\":\"{}\"", child.shard_id)).unwrap_or(usize::MAX);
        assert!(taken > end, "child {} started before its parent finished", child.shard_id);
    }
    a.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_forwards_only_same_day_changes_and_dead_letters_bad_records() {
    let _slot = common::scenario_slot().await;
    let s = Setup::new("sameday-filter", 2).await;
    let rule = json!({
        "name": "reminders", "db": "app", "table": "schedule", "key_columns": ["id"],
        "due_column": "due_at", "due_type": "timestamp", "time_zone": "UTC", "batch_time": "00:00",
        "overlap_minutes": 60, "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:reminders",
    });
    let config = s.toml("a", 3000, s.route().same_day_rule("reminders")).rule(&rule);
    let mut a = s.spawn("a", &s.write("a", config));
    let now = jiff::Timestamp::now();
    let at = |mins: i64| (now + jiff::SignedDuration::from_mins(mins)).strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    // Today's window ends at the next midnight UTC + 1 h, so +30 min is always inside and
    // +26 h never is.
    let cases = [
        (1, at(20), at(30)),               // today, rescheduled within today
        (2, at(26 * 60), at(26 * 60)),     // tomorrow
        (3, at(30 * 1440), at(30 * 1440)), // +30 days
        (4, at(30), at(7 * 1440)),         // moved from today to next week
    ];
    for (id, before, after) in &cases {
        let data = serde_json::to_vec(&json!({
            "v": 1, "id": format!("e{id}"), "op": "update", "db": "app", "table": "schedule",
            "key": {"id": id}, "before": {"id": id, "ver": 0, "due_at": before},
            "after": {"id": id, "ver": 1, "due_at": after},
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "gtid": null, "ts_ms": 0},
            "txn": {"id": format!("e{id}"), "index": 0}
        }))
        .unwrap();
        s.put_raw(&format!("app.schedule:{id}"), data).await;
    }
    s.put_raw("garbage", b"{this is not an envelope".to_vec()).await;
    let mut received = Vec::new();
    s.drain(&mut received, 2, Duration::from_secs(30)).await;
    // Nothing else arrives: tomorrow and +30 days are left to later batch runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.drain(&mut received, 2, Duration::from_secs(1)).await;
    let mut ids: Vec<i64> = received.iter().map(|v| v["key"]["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [1, 4], "today's change and the move out of today");

    wait_until(Duration::from_secs(10), "dead letter written", || async {
        std::fs::read_to_string(s.dead_letter_path()).is_ok_and(|t| !t.is_empty())
    })
    .await;
    let line: Value = serde_json::from_str(std::fs::read_to_string(s.dead_letter_path()).unwrap().trim()).unwrap();
    assert!(line["shard"].as_str().unwrap().starts_with("shardId-"), "{line}");
    assert!(!line["sequence"].as_str().unwrap().is_empty(), "{line}");
    assert!(line["reason"].as_str().unwrap().contains("not a sameday change envelope"), "{line}");
    assert_eq!(line["record"], "{this is not an envelope");
    a.assert_running();
    a.terminate();
}

/// The consumer's dead letters in its SQS dead-letter queue (as deployed) survive a `kill -9`,
/// are listed by `sameday dead-letters list`, and `replay` puts the chosen change back into
/// the stream under its partition key, leaving the one that is no envelope in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_dead_letters_in_a_queue_are_listed_and_replayed_into_the_stream() {
    let s = Setup::new("cdlq", 1).await;
    let dlq = names::unique("cdlq-dlq");
    s.sqs.create_queue().queue_name(&dlq).send().await.expect("create the dead-letter queue");
    let rule = json!({
        "name": "reminders", "db": "app", "table": "schedule", "key_columns": ["id"],
        "due_column": "due_at", "due_type": "timestamp", "time_zone": "UTC", "batch_time": "00:00",
        "overlap_minutes": 60, "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:reminders",
    });
    let toml = s.toml("a", 3000, s.route().same_day_rule("reminders")).rule(&rule).dead_letter_queue(&dlq);
    let config = s.write("a", toml);
    let mut a = s.spawn("a", &config);
    let bad_due = serde_json::to_vec(&json!({
        "v": 1, "id": "e1", "op": "insert", "db": "app", "table": "schedule", "key": {"id": 1},
        "before": null, "after": {"id": 1, "due_at": "not a time 🎉"},
        "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "gtid": null, "ts_ms": 0},
        "txn": {"id": "e1", "index": 0}
    }))
    .unwrap();
    s.put_raw("app.schedule:1", bad_due.clone()).await;
    s.put_raw("garbage", b"{this is not an envelope".to_vec()).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::sameday_bin())
            .args(args)
            .arg("--config")
            .arg(&config)
            .envs(common::emulator_endpoints())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let mut listed = String::new();
    wait_until(Duration::from_secs(20), "two dead letters in the queue", || {
        listed = cli(&["dead-letters", "list"]).1;
        let done = listed.contains("2 dead letter(s)");
        async move { done }
    })
    .await;
    a.kill9();
    let (ok, listed) = cli(&["dead-letters", "list"]);
    assert!(ok && listed.contains("2 dead letter(s)"), "still there after kill -9: {listed}");
    assert!(listed.contains("not a sameday change envelope"), "{listed}");

    let before = Kinesalite::shared().read_all(&s.stream).await.len();
    let (ok, replayed) = cli(&["dead-letters", "replay"]);
    assert!(ok, "{replayed}");
    assert!(replayed.contains("replayed 1 dead letter(s)") && replayed.contains("left in place"), "{replayed}");
    let records = Kinesalite::shared().read_all(&s.stream).await;
    assert_eq!(records.len(), before + 1, "one record back in the stream");
    let (_, _, key, data) = records.last().unwrap();
    assert_eq!((key.as_str(), data), ("app.schedule:1", &bad_due), "the change as it was, under its key");
    let (ok, listed) = cli(&["dead-letters", "list"]);
    assert!(ok && listed.contains("1 dead letter(s)"), "only the garbage is left: {listed}");
}
