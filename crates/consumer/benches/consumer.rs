//! Consumer benchmark: the consumer's own cost next to a bare GetRecords loop, same
//! emulators, same stream, same run.
//!
//! `cargo bench -p sameday-consumer --bench consumer` (env: BENCH_CHANGES, default
//! 200000; BENCH_SHARDS, default 4; BENCH_RUNS, default 3; BENCH_TODAY_PERCENT, default 1).
//!
//! The stream is filled once with schedule-table changes, `BENCH_TODAY_PERCENT` of them due
//! in the current window and the rest 1-30 days out (the seed workload). Then, alternately:
//! - **bare**: per shard, GetShardIterator(TRIM_HORIZON) and GetRecords (10,000 per call,
//!   5 calls/s/shard as Kinesis allows) until caught up; nothing else;
//! - **consumer**: the real daemon code (`run_consumer`) from an empty lease table until
//!   every shard's checkpoint reaches its last record, i.e. every due-today change is in
//!   SQS (fauxqs) and the rest were filtered.
//!
//! Reported per run: wall time, changes/s, CPU time of this process (the emulators are other
//! processes), and for the consumer the SQS requests, forwarded messages and DynamoDB writes
//! (checkpoints + lease renewals + takes) from its own Prometheus counters.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_consumer::config::ConsumerConfig;
use sameday_consumer::shard_lease::{LeaseTable, SequenceNumber, ShardCheckpoint};
use sameday_testkit::bench::env_or;
use sameday_testkit::{Fauxqs, Kinesalite, Moto};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn cpu_time() -> Duration {
    // utime + stime of the whole process (all threads), in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn change(i: usize, due: &str) -> Vec<u8> {
    let row = |status: &str| {
        json!({"id": i, "user_id": i % 10_000, "action": "push_reminder", "status": status,
               "payload": "{\"template\":\"cart-abandoned\",\"locale\":\"de-DE\"}", "due_at": due})
    };
    serde_json::to_vec(&json!({
        "v": 1, "id": format!("0-1-{i}/120/0"), "op": "insert", "db": "app", "table": "scheduled_actions",
        "key": {"id": i}, "before": null, "after": row("pending"),
        "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4 + i, "gtid": format!("0-1-{i}"), "ts_ms": 0},
        "txn": {"id": format!("0-1-{i}"), "index": 0}
    }))
    .unwrap()
}

struct Run {
    wall: Duration,
    cpu: Duration,
    records: usize,
    extra: Option<HashMap<String, f64>>,
}

async fn bare(kinesis: &aws_sdk_kinesis::Client, stream: &str, shards: &[String]) -> Run {
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut tasks = Vec::new();
    for shard in shards {
        let (kinesis, stream, shard) = (kinesis.clone(), stream.to_owned(), shard.clone());
        tasks.push(tokio::spawn(async move {
            let it = kinesis
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap();
            let mut iterator = it.shard_iterator().map(str::to_owned);
            let mut n = 0;
            let mut last_call: Option<Instant> = None;
            while let Some(it) = iterator.take() {
                if let Some(t) = last_call {
                    tokio::time::sleep(Duration::from_millis(200).saturating_sub(t.elapsed())).await;
                }
                last_call = Some(Instant::now());
                let out = kinesis.get_records().shard_iterator(it).limit(10_000).send().await.unwrap();
                n += out.records().len();
                if out.records().is_empty() && out.millis_behind_latest() == Some(0) {
                    break;
                }
                iterator = out.next_shard_iterator().map(str::to_owned);
            }
            n
        }));
    }
    let mut records = 0;
    for t in tasks {
        records += t.await.unwrap();
    }
    Run { wall: t0.elapsed(), cpu: cpu_time() - cpu0, records, extra: None }
}

fn scrape(port: u16) -> HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            let name = name.split('{').next().unwrap().to_owned();
            *out.entry(name).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    out
}

/// The stream as filled once: what every run reads.
struct Filled {
    stream: String,
    queue: String,
    /// Each shard's last sequence number: where a run's checkpoints must get to.
    last: HashMap<String, SequenceNumber>,
    changes: usize,
    /// Changes due in the current window: what the consumer forwards.
    forwardable: usize,
}

async fn consumer(run: usize, filled: &Filled, dynamodb: &aws_sdk_dynamodb::Client) -> Run {
    let Filled { stream, queue, last, changes: records, forwardable } = filled;
    let (records, forwardable) = (*records, *forwardable);
    let table = format!("bench-leases-{}-{run}", std::process::id());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = format!(
        r#"[kinesis]
stream = "{stream}"
read_limit = 10000
[leases]
table = "{table}"
create_table = true
worker_id = "bench"
[[route]]
tables = ["app.scheduled_actions"]
queues = ["{queue}"]
same_day_rule = "actions"
[[rule]]
name = "actions"
db = "app"
table = "scheduled_actions"
key_columns = ["id"]
due_column = "due_at"
due_type = "timestamp"
time_zone = "UTC"
batch_time = "00:00"
state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:bench"
[dead_letter]
path = "/dev/null"
[metrics]
listen = "127.0.0.1:{port}"
[aws]
region = "us-east-1"
"#
    );
    let cfg: ConsumerConfig = toml::from_str(&text).unwrap();
    let leases = LeaseTable::new(dynamodb.clone(), &table);
    let shutdown = CancellationToken::new();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let task = tokio::spawn(sameday_consumer::run::run_consumer(cfg, shutdown.clone()));
    // Done when every record was read and every due-today change accepted by SQS.
    let metric = |m: &HashMap<String, f64>, name: &str| m.get(name).copied().unwrap_or(0.0) as usize;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(m) = std::panic::catch_unwind(|| scrape(port)) else { continue };
        if metric(&m, "sameday_consumer_records_total") >= records
            && metric(&m, "sameday_consumer_forwarded_messages_total") >= forwardable
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "consumer did not finish");
    }
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    // Not timed: the checkpoints follow within one checkpoint interval.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(list) = leases.list().await else { continue };
        let done = last.iter().all(|(shard, seq)| {
            list.iter()
                .any(|l| &l.shard_id == shard && matches!(&l.checkpoint, ShardCheckpoint::Sequence(s) if s >= seq))
        });
        if done {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "checkpoints did not catch up");
    }
    let metrics = scrape(port);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(metrics["sameday_consumer_records_total"] as usize, records, "every record read once");
    Run { wall, cpu, records, extra: Some(metrics) }
}

/// Fills the stream (of `shard_count` shards) with `changes` schedule-table changes
/// (PutRecords, 500 at a time), `today_pct` of them due in the current window.
async fn fill(
    kinesis: &aws_sdk_kinesis::Client,
    stream: String,
    queue: String,
    shard_count: usize,
    changes: usize,
    today_pct: usize,
) -> Filled {
    // Fill: 1 in (100 / today_pct) due in 10 minutes, the others 1 to 30 days out.
    let now = jiff::Timestamp::now();
    let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let t_fill = Instant::now();
    let mut last: HashMap<String, SequenceNumber> = HashMap::new();
    let mut bytes = 0usize;
    let every = 100 / today_pct.max(1);
    for chunk in (0..changes).collect::<Vec<_>>().chunks(500) {
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|&i| {
                let due = if i % every == 0 {
                    now + jiff::SignedDuration::from_mins(10)
                } else {
                    now + jiff::SignedDuration::from_hours(24 * (1 + (i % 30) as i64))
                };
                let data = change(i, &fmt(due));
                bytes += data.len();
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("app.scheduled_actions:{i}"))
                    .data(Blob::new(data))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = kinesis.put_records().stream_name(&stream).set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        for r in out.records() {
            let (shard, seq) = (r.shard_id().unwrap().to_owned(), r.sequence_number().unwrap().parse().unwrap());
            let slot = last.entry(shard).or_insert_with(|| "0".parse().unwrap());
            if seq > *slot {
                *slot = seq;
            }
        }
    }
    let forwardable = changes.div_ceil(every);
    eprintln!(
        "filled {changes} changes ({:.0} bytes avg, {forwardable} due today) into {shard_count} shards in {:?}",
        bytes as f64 / changes as f64,
        t_fill.elapsed()
    );
    Filled { stream, queue, last, changes, forwardable }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !sameday_testkit::bench::invoked() {
        return;
    }
    let changes = env_or("BENCH_CHANGES", 200_000);
    let shard_count = env_or("BENCH_SHARDS", 4);
    let runs = env_or("BENCH_RUNS", 3);
    let today_pct = env_or("BENCH_TODAY_PERCENT", 1);
    std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    let (kinesalite, fauxqs, moto) = (Kinesalite::start(), Fauxqs::start(), Moto::start());
    std::env::set_var("AWS_ENDPOINT_URL_KINESIS", kinesalite.endpoint());
    std::env::set_var("AWS_ENDPOINT_URL_SQS", fauxqs.endpoint());
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint());

    let stream = format!("bench-{}", std::process::id());
    kinesalite.create_stream(&stream, shard_count as i32).await;
    let kinesis = kinesalite.kinesis_client().await;
    let sqs = aws_sdk_sqs::Client::new(&fauxqs.sdk_config().await);
    let queue = format!("bench-{}.fifo", std::process::id());
    sqs.create_queue().queue_name(&queue).attributes(QueueAttributeName::FifoQueue, "true").send().await.unwrap();
    let dynamodb = moto.dynamodb_client().await;

    let filled = fill(&kinesis, stream, queue, shard_count, changes, today_pct).await;
    let shards: Vec<String> = filled.last.keys().cloned().collect();

    println!("| run | kind | wall s | changes/s | CPU ms / 1k changes | SQS requests / 1k forwarded | DynamoDB writes / 1k changes | checkpoint writes / shard / s |");
    println!("|---|---|---|---|---|---|---|---|");
    let (mut bare_rates, mut consumer_rates) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let b = bare(&kinesis, &filled.stream, &shards).await;
        assert_eq!(b.records, changes);
        let rate = b.records as f64 / b.wall.as_secs_f64();
        bare_rates.push(rate);
        println!(
            "| {run} | bare GetRecords | {:.2} | {rate:.0} | {:.2} | - | - | - |",
            b.wall.as_secs_f64(),
            b.cpu.as_secs_f64() * 1e6 / changes as f64
        );

        let c = consumer(run, &filled, &dynamodb).await;
        let m = c.extra.as_ref().unwrap();
        let rate = c.records as f64 / c.wall.as_secs_f64();
        consumer_rates.push(rate);
        let forwarded = m["sameday_consumer_forwarded_messages_total"];
        assert_eq!(forwarded as usize, filled.forwardable, "every due-today change forwarded once");
        let ckpt = m["sameday_consumer_checkpoint_writes_total"];
        let writes = ckpt + m["sameday_consumer_lease_renewals_total"] + m["sameday_consumer_lease_events_total"];
        println!(
            "| {run} | sameday consumer | {:.2} | {rate:.0} | {:.2} | {:.1} | {:.2} | {:.2} |",
            c.wall.as_secs_f64(),
            c.cpu.as_secs_f64() * 1e6 / changes as f64,
            m["sameday_consumer_sqs_requests_total"] * 1000.0 / forwarded,
            writes * 1000.0 / changes as f64,
            ckpt / shard_count as f64 / c.wall.as_secs_f64(),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, c) = (median(&mut bare_rates), median(&mut consumer_rates));
    println!();
    println!("median changes/s: bare {b:.0}, consumer {c:.0}, ratio {:.2}", c / b);
}
