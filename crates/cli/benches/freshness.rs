//! End-to-end freshness of the CDC path: a row committed in MariaDB -> its StartExecution
//! accepted, with each hop's share, at a steady rate.
//!
//! `cargo bench -p sameday --bench freshness` (env: FRESH_RATE rows/s, default 20;
//! FRESH_SECONDS, default 30). Everything runs on this machine on loopback: a private
//! MariaDB, kinesalite, fauxqs, moto (record mode), and the release `sameday reader`,
//! `consumer` and `worker` processes as deployed.
//!
//! Hops, per row (all clocks are this machine's):
//! - reader: INSERT sent -> Kinesis ApproximateArrivalTimestamp (binlog read, decode, PutRecords)
//! - consumer: Kinesis arrival -> SQS SentTimestamp (GetRecords polling at 5/s/shard, filter,
//!   SendMessageBatch)
//! - SQS: sent -> received by the worker (long poll)
//! - worker: received -> StartExecution accepted (plan, rate limiter, the Step Functions call)

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_sqs::types::QueueAttributeName;
use mysql_async::prelude::Queryable;
use sameday_core::clock::now_ms;
use sameday_testkit::bench::env_or;
use sameday_testkit::{Fauxqs, Kinesalite, MariaDb, Moto};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn spawn(sub: &str, config: &Path, log: &Path, envs: &[(&str, String)]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_sameday"))
        .args([sub, "--config"])
        .arg(config)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

fn wait_log(log: &Path, needle: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(needle) {
        assert!(start.elapsed() < Duration::from_secs(60), "{} never logged {needle:?}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.50), at(0.95), at(0.99)]
}

/// The pipeline under measurement: a private MariaDB, the emulators and the three daemons.
struct Pipeline {
    maria: MariaDb,
    kinesalite: Kinesalite,
    _fauxqs: Fauxqs,
    _moto: Moto,
    /// The reader's, consumer's and worker's logs.
    logs: Vec<std::path::PathBuf>,
    _daemons: Vec<Proc>,
    _dir: tempfile::TempDir,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !sameday_testkit::bench::invoked() {
        return;
    }
    let rate = env_or("FRESH_RATE", 20);
    let seconds = env_or("FRESH_SECONDS", 30);
    let (total, warmup) = (rate * seconds, 20);
    let p = start_pipeline().await;
    let (sent_at, wall) = insert_rows(&p.maria, rate, total, warmup).await;
    wait_effects(&p.logs[2], warmup + total).await;
    let arrival = kinesis_arrivals(&p.kinesalite).await;
    let hops = hops(&p.logs[2], &arrival, &sent_at, warmup);
    assert_eq!(hops[0].len() as u64, total, "one effect per row");
    report(total, rate, wall, hops);
}

async fn start_pipeline() -> Pipeline {
    std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    std::env::set_var("AWS_REGION", "us-east-1");
    let maria = MariaDb::start();
    let (kinesalite, fauxqs, moto) = (Kinesalite::start(), Fauxqs::start(), Moto::start());
    let envs = vec![
        ("AWS_ENDPOINT_URL_KINESIS", kinesalite.endpoint()),
        ("AWS_ENDPOINT_URL_SQS", fauxqs.endpoint()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint()),
        ("AWS_ENDPOINT_URL_SFN", moto.endpoint()),
    ];
    let dir = tempfile::tempdir().unwrap();
    maria
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.schedule (id BIGINT PRIMARY KEY, user_id INT NOT NULL,
             action VARCHAR(20) NOT NULL, due_at DATETIME NULL)",
        )
        .await;
    kinesalite.create_stream("fresh", 1).await;
    let sqs = aws_sdk_sqs::Client::new(&fauxqs.sdk_config().await);
    let queue = sqs
        .create_queue()
        .queue_name("fresh.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let sm = moto.create_state_machine("fresh", include_str!("../../../deploy/statemachine/schedule.asl.json")).await;
    let [reader_cfg, consumer_cfg, worker_cfg] = write_configs(dir.path(), maria.port(), &queue, &sm);
    let logs: Vec<_> = ["reader", "consumer", "worker"].iter().map(|n| dir.path().join(format!("{n}.log"))).collect();
    let reader = spawn("reader", &reader_cfg, &logs[0], &envs);
    wait_log(&logs[0], "streaming the binlog");
    let consumer = spawn("consumer", &consumer_cfg, &logs[1], &envs);
    wait_log(&logs[1], "lease taken");
    let worker = spawn("worker", &worker_cfg, &logs[2], &envs);
    wait_log(&logs[2], "worker ready");
    Pipeline {
        maria,
        kinesalite,
        _fauxqs: fauxqs,
        _moto: moto,
        logs,
        _daemons: vec![reader, consumer, worker],
        _dir: dir,
    }
}

/// The reader's, consumer's and worker's config files in `dir`.
fn write_configs(dir: &Path, port: u16, queue: &str, sm: &str) -> [std::path::PathBuf; 3] {
    let rule = sameday_testkit::bench::schedule_rule_toml("fresh", "app", "00:00", sm);
    let d = dir.display();
    let reader = format!(
        r#"start_position = "latest"
dead_letter_path = "{d}/dl.jsonl"
[source]
host = "127.0.0.1"
port = {port}
user = "root"
server_id = 77
tls = "disabled"
heartbeat_secs = 1
[filter]
include = ["app.*"]
[kinesis]
stream = "fresh"
[checkpoint]
kind = "file"
path = "{d}/cp.json"
[metrics]
listen = "127.0.0.1:0"
"#
    );
    let consumer = format!(
        r#"[kinesis]
stream = "fresh"
[leases]
table = "fresh-leases"
create_table = true
[[route]]
tables = ["app.schedule"]
queues = ["{queue}"]
same_day_rule = "fresh"
[dead_letter]
path = "{d}/cdl.jsonl"
[metrics]
listen = "127.0.0.1:0"
{rule}"#
    );
    let worker = format!(
        r#"[sqs]
queue = "{queue}"
[metrics]
listen = "127.0.0.1:0"
{rule}"#
    );
    [("reader.toml", reader), ("consumer.toml", consumer), ("worker.toml", worker)].map(|(name, text)| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    })
}

/// Inserts `warmup` rows at once, then `total` at `rate` per second, each due in 10
/// minutes; returns when each row was sent (by id) and the paced part's wall time.
async fn insert_rows(maria: &MariaDb, rate: u64, total: u64, warmup: u64) -> (HashMap<u64, u64>, Duration) {
    let mut conn = maria.conn().await;
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let mut sent_at: HashMap<u64, u64> = HashMap::new();
    let start = Instant::now();
    for i in 1..=(warmup + total) {
        let due = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10)).strftime("%Y-%m-%d %H:%M:%S");
        let t = now_ms();
        conn.query_drop(format!("INSERT INTO app.schedule VALUES ({i}, {i}, 'push', '{due}')")).await.unwrap();
        sent_at.insert(i, t);
        if i > warmup {
            let target = start + Duration::from_secs_f64((i - warmup) as f64 / rate as f64);
            tokio::time::sleep_until(target.into()).await;
        }
    }
    (sent_at, start.elapsed())
}

/// Waits until the worker logged `n` effects.
async fn wait_effects(worker_log: &Path, n: u64) {
    let t0 = Instant::now();
    loop {
        let done = std::fs::read_to_string(worker_log).unwrap_or_default().matches("\"effect done\"").count();
        if done as u64 >= n {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "only {done} effects done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kinesis arrival per change id: (row id, ApproximateArrivalTimestamp ms).
async fn kinesis_arrivals(kinesalite: &Kinesalite) -> HashMap<String, (u64, u64)> {
    let kinesis = kinesalite.kinesis_client().await;
    let shard = kinesis.list_shards().stream_name("fresh").send().await.unwrap().shards()[0].shard_id().to_owned();
    let mut it = kinesis
        .get_shard_iterator()
        .stream_name("fresh")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .map(str::to_owned);
    let mut arrival: HashMap<String, (u64, u64)> = HashMap::new();
    while let Some(i) = it.take() {
        let out = kinesis.get_records().shard_iterator(i).send().await.unwrap();
        for r in out.records() {
            let env: serde_json::Value = serde_json::from_slice(r.data().as_ref()).unwrap();
            let id = env["key"]["id"].as_u64().unwrap();
            let ms = r.approximate_arrival_timestamp().unwrap().to_millis().unwrap() as u64;
            arrival.insert(env["id"].as_str().unwrap().to_owned(), (id, ms));
        }
        if out.records().is_empty() {
            break;
        }
        it = out.next_shard_iterator().map(str::to_owned);
    }
    arrival
}

/// Per measured row, from the worker's "effect done" lines: the whole path and each hop (ms).
fn hops(
    worker_log: &Path,
    arrival: &HashMap<String, (u64, u64)>,
    sent_at: &HashMap<u64, u64>,
    warmup: u64,
) -> [Vec<f64>; 5] {
    let mut hops: [Vec<f64>; 5] = Default::default();
    for line in std::fs::read_to_string(worker_log).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["message"] != "effect done" {
            continue;
        }
        let change = v["change"].as_str().unwrap();
        let (id, kinesis_ms) = arrival[change];
        if id <= warmup {
            continue;
        }
        let n = |k: &str| v[k].as_u64().unwrap() as f64;
        let sent = sent_at[&id] as f64;
        let k = kinesis_ms as f64;
        hops[0].push(n("done_ms") - sent);
        hops[1].push(k - sent);
        hops[2].push(n("sqs_sent_ms") - k);
        hops[3].push(n("received_ms") - n("sqs_sent_ms"));
        hops[4].push(n("done_ms") - n("received_ms"));
    }
    hops
}

fn report(total: u64, rate: u64, wall: Duration, hops: [Vec<f64>; 5]) {
    println!(
        "{total} rows at {rate}/s (achieved {:.1}/s), each due in 10 minutes (every one starts an execution)",
        total as f64 / wall.as_secs_f64()
    );
    println!();
    println!("| hop | p50 ms | p95 ms | p99 ms |");
    println!("|---|---|---|---|");
    let labels = [
        "**commit -> StartExecution accepted**",
        "reader: INSERT -> Kinesis arrival",
        "consumer: Kinesis -> SQS sent",
        "SQS: sent -> worker received",
        "worker: received -> StartExecution accepted",
    ];
    for (label, v) in labels.iter().zip(hops) {
        let [p50, p95, p99] = percentiles(v);
        println!("| {label} | {p50:.0} | {p95:.0} | {p99:.0} |");
    }
}
