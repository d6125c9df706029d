//! Hot rows (issue 13): N changes of **one** row against N changes spread over N rows, in one
//! run, against the same emulators, with every AWS call answered 30 ms late, per stage and end
//! to end.
//!
//! `cargo bench -p sameday --bench hot_rows` (env: HOT_CHANGES, default 100000;
//! HOT_LATENCY_MS, default 30; HOT_SHARDS, default 2; HOT_TODAY_EVERY, default 100).
//!
//! Everything runs on this machine on loopback: a private MariaDB, kinesalite (Kinesis),
//! fauxqs (SQS) and moto (DynamoDB, Step Functions, record mode), each behind a
//! [`FaultProxy`] that injects nothing and answers every call `HOT_LATENCY_MS` late (one
//! proxy per service, so its counts are that service's calls); the stages are the release
//! `sameday` binary as separate processes, so each process's CPU (`/proc/<pid>/stat`, or the
//! rusage of `replay`) is that stage's alone.
//!
//! Workloads, each its own database, stream, FIFO queue and state machine; each change its own
//! autocommit `UPDATE` (so the binlog holds N transactions of one row event each):
//! - **hot**: one row, due today, its due time moved between three times 3:00-3:20 h ahead, N
//!   times (a reminder snoozed back and forth, a job touching its own row). Every change touches
//!   today's window, so the consumer forwards all of them (folded) and the worker folds them.
//! - **spread**: N rows, one change each, with the seed workload's due dates: every
//!   `HOT_TODAY_EVERY`-th row (1 %) moves to 2-3 h ahead, the rest to 1-30 days out. That is
//!   what a day's traffic looks like, and it keeps the worker's share at N/100 executions:
//!   moto's StartExecution slows down as a state machine's executions accumulate, so N
//!   executions would measure moto, not sameday.
//!
//! "Today" is the window of a batch time an hour before the start (so the run can cross midnight).
//! Both start from rows seeded 60 days out (not measured), so every change is an UPDATE with
//! both images and of the same size in both workloads.
//!
//! Stages, one process each, one after the other (the workload is written to the binlog first):
//! - reader: `sameday replay --from --to --sink kinesis` over the workload's binlog range;
//!   wall = the process's run, CPU = its rusage; changes = N.
//! - consumer: `sameday consumer` from an empty lease table until its metrics account for all
//!   N changes (forwarded, folded or filtered) and every message is accepted by SQS; wall from
//!   its first `lease taken` to that; changes = N (it reads all of them).
//! - worker: `sameday worker` on the queue the consumer filled until the queue is empty and
//!   Step Functions holds exactly the expected executions; wall from `worker ready`;
//!   changes = what reached it: the changes the consumer forwarded, folded ones included
//!   (hot: N; spread: N/100), its messages beside them.
//! - end to end: reader, consumer and worker daemons running together; wall from the first
//!   write to the last execution being right; changes = N, CPU = the three daemons' sum.
//!
//! "Right" (checked, so a fast wrong run fails): hot, exactly one waiting execution, of the
//! row's newest image (its identity), whose input carries the row version of the last write's
//! GTID; spread, the waiting executions are exactly those of the due-today rows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use jiff::{SignedDuration, Timestamp};
use mysql_async::prelude::Queryable;
use sameday_core::execution::{execution_arn, identity_of_input, parse_name, scheduled_execution};
use sameday_core::row_version::RowVersion;
use sameday_core::rule::ScheduleRule;
use sameday_testkit::bench::{env_or, run};
use sameday_testkit::{FaultProxy, Fauxqs, Kinesalite, MariaDb, MariaDbOptions, Moto};
use serde_json::{json, Value};

const DEFINITION: &str = include_str!("../../../deploy/statemachine/schedule.asl.json");
/// How long any one stage may take before the bench gives up.
const STAGE_DEADLINE: Duration = Duration::from_secs(1800);
/// Kinesis bills provisioned writes in PUT payload units of 25 KB, and on-demand writes by
/// volume with each record rounded up to 1 KB.
const PUT_PAYLOAD_UNIT: usize = 25 * 1024;
const ON_DEMAND_UNIT: usize = 1024;

fn main() {
    run(bench);
}

async fn bench() {
    let n: usize = env_or("HOT_CHANGES", 100_000);
    let latency = Duration::from_millis(env_or("HOT_LATENCY_MS", 30));
    let stack = Stack::start(latency).await;
    let base = Timestamp::now().round(jiff::Unit::Second).unwrap();
    let mut lanes = Vec::new();
    for (kind, name) in [(Kind::Hot, "hot_stages"), (Kind::Spread, "spread_stages")] {
        lanes.push(Lane::new(&stack, kind, name, n, base).await);
    }
    let end_to_end_lanes = [
        Lane::new(&stack, Kind::Hot, "hot_e2e", n, base).await,
        Lane::new(&stack, Kind::Spread, "spread_e2e", n, base).await,
    ];

    let mut results = Vec::new();
    let mut written = Vec::new();
    for lane in &lanes {
        let (w, took) = lane.write(&stack).await;
        eprintln!("{}: {n} changes written in {took:.1?}", lane.name);
        written.push(w);
    }
    for (lane, w) in lanes.iter().zip(&written) {
        results.push(progress(reader_stage(&stack, lane, w).await));
    }
    let mut forwarded = Vec::new();
    for lane in &lanes {
        let (r, changes) = consumer_stage(&stack, lane).await;
        results.push(progress(r));
        forwarded.push(changes);
    }
    for ((lane, w), changes) in lanes.iter().zip(&written).zip(&forwarded) {
        results.push(progress(worker_stage(&stack, lane, w, *changes).await));
    }
    for lane in &end_to_end_lanes {
        results.push(progress(end_to_end(&stack, lane).await));
    }
    report(n, latency, &results);
}

fn progress(s: Stage) -> Stage {
    eprintln!("{:?} {}: {} changes in {:.2?}, CPU {:.2?}; {}", s.kind, s.stage, s.changes, s.wall, s.cpu, s.note);
    s
}

/// The private MariaDB and the emulators, each emulator behind a latency proxy.
struct Stack {
    maria: MariaDb,
    kinesalite: Kinesalite,
    fauxqs: Fauxqs,
    moto: Moto,
    kinesis: FaultProxy,
    sqs: FaultProxy,
    dynamodb: FaultProxy,
    sfn: FaultProxy,
    dir: tempfile::TempDir,
}

impl Stack {
    async fn start(latency: Duration) -> Self {
        // One autocommit transaction per change: without this every commit waits for an fsync
        // and the writes, not sameday, set the end-to-end pace.
        let maria = MariaDb::start_with(MariaDbOptions::default().arg("--innodb_flush_log_at_trx_commit=2"));
        let (kinesalite, fauxqs, moto) = (Kinesalite::start(), Fauxqs::start(), Moto::start());
        let kinesis = FaultProxy::with_latency(&kinesalite.endpoint(), latency).await;
        let sqs = FaultProxy::with_latency(&fauxqs.endpoint(), latency).await;
        let dynamodb = FaultProxy::with_latency(&moto.endpoint(), latency).await;
        let sfn = FaultProxy::with_latency(&moto.endpoint(), latency).await;
        let dir = tempfile::tempdir().unwrap();
        Self { maria, kinesalite, fauxqs, moto, kinesis, sqs, dynamodb, sfn, dir }
    }

    /// The daemons' AWS endpoints: the proxies.
    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_KINESIS", self.kinesis.endpoint().to_owned()),
            ("AWS_ENDPOINT_URL_SQS", self.sqs.endpoint().to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb.endpoint().to_owned()),
            ("AWS_ENDPOINT_URL_SFN", self.sfn.endpoint().to_owned()),
        ]
    }

    /// Every proxy's calls so far, by `service.Operation`.
    fn calls(&self) -> Calls {
        let mut all = BTreeMap::new();
        for (service, proxy) in
            [("kinesis", &self.kinesis), ("sqs", &self.sqs), ("dynamodb", &self.dynamodb), ("sfn", &self.sfn)]
        {
            for (op, count) in proxy.requests_by_operation() {
                all.insert(format!("{service}.{op}"), count);
            }
        }
        Calls(all)
    }
}

/// AWS calls by `service.Operation`.
#[derive(Debug, Clone, Default)]
struct Calls(BTreeMap<String, u64>);

impl Calls {
    fn since(&self, before: &Calls) -> Calls {
        let diff = self.0.iter().map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0)));
        Calls(diff.filter(|(_, v)| *v > 0).collect())
    }

    fn of(&self, service: &str) -> u64 {
        self.0.iter().filter(|(k, _)| k.starts_with(&format!("{service}."))).map(|(_, v)| v).sum()
    }

    fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hot,
    Spread,
}

/// One workload with its own database, stream, queue, lease table and state machine.
struct Lane {
    kind: Kind,
    name: String,
    n: usize,
    base: Timestamp,
    queue: String,
    rule: ScheduleRule,
    rule_toml: String,
    /// The SQL of each change, in order.
    changes: Vec<String>,
}

/// What a workload's write left in the binlog.
struct Written {
    from: String,
    to: String,
    /// The GTID of the last change.
    last_gtid: String,
}

fn datetime(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

impl Lane {
    /// Creates the lane's table with its rows seeded 60 days out, and its AWS resources.
    async fn new(stack: &Stack, kind: Kind, name: &str, n: usize, base: Timestamp) -> Self {
        let rows = if kind == Kind::Hot { 1 } else { n };
        let far = datetime(base + SignedDuration::from_hours(24 * 60));
        stack
            .maria
            .exec(&format!(
                "CREATE DATABASE {name}; CREATE TABLE {name}.schedule (id BIGINT PRIMARY KEY, user_id INT NOT NULL,
                 action VARCHAR(20) NOT NULL, due_at DATETIME NULL);
                 USE {name}; INSERT INTO schedule SELECT seq, seq % 10000, 'push_reminder', '{far}' FROM seq_1_to_{rows}"
            ))
            .await;
        stack.kinesalite.create_stream(name, env_or("HOT_SHARDS", 2)).await;
        let sqs = aws_sdk_sqs::Client::new(&stack.fauxqs.sdk_config().await);
        let queue = sqs
            .create_queue()
            .queue_name(format!("{name}.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let sm = stack.moto.create_state_machine(name, DEFINITION).await;
        // The window of the run that started an hour ago: everything in the next 23 hours is
        // "today", whatever the clock says when the bench runs.
        let batch = (base - SignedDuration::from_hours(1)).strftime("%H:%M");
        let rule_toml = sameday_testkit::bench::schedule_rule_toml(name, name, &batch.to_string(), &sm);
        #[derive(serde::Deserialize)]
        struct Rules {
            rule: Vec<ScheduleRule>,
        }
        let rule = toml::from_str::<Rules>(&rule_toml).unwrap().rule.remove(0);
        let mut lane = Self { kind, name: name.to_owned(), n, base, queue, rule, rule_toml, changes: Vec::new() };
        lane.changes = (0..n).map(|i| lane.change(i)).collect();
        lane
    }

    /// Change `i`: (row id, its new due time).
    fn target(&self, i: usize) -> (usize, Timestamp) {
        let today_every = env_or("HOT_TODAY_EVERY", 100);
        match self.kind {
            Kind::Hot => (1, self.base + SignedDuration::from_mins([180, 190, 200][i % 3])),
            Kind::Spread if (i + 1).is_multiple_of(today_every) => {
                (i + 1, self.base + SignedDuration::from_mins(120 + (i / today_every % 60) as i64))
            }
            Kind::Spread => (i + 1, self.base + SignedDuration::from_hours(26 + 24 * (i % 30) as i64)),
        }
    }

    fn change(&self, i: usize) -> String {
        let (id, due) = self.target(i);
        format!("UPDATE {}.schedule SET due_at = '{}' WHERE id = {id};", self.name, datetime(due))
    }

    /// The identity digests of the executions that must wait at the end.
    fn expected(&self) -> BTreeSet<String> {
        let mut last: BTreeMap<usize, Timestamp> = BTreeMap::new();
        for i in 0..self.n {
            let (id, due) = self.target(i);
            last.insert(id, due);
        }
        let window_end = self.base + SignedDuration::from_hours(23);
        last.into_iter()
            .filter(|(_, due)| *due < window_end)
            .map(|(id, due)| {
                let row = json!({"id": id, "user_id": id % 10_000, "action": "push_reminder",
                                 "due_at": due.strftime("%Y-%m-%dT%H:%M:%S").to_string()});
                let name = scheduled_execution(&self.rule, row.as_object().unwrap(), due).unwrap().name;
                parse_name(&name).unwrap().0.to_owned()
            })
            .collect()
    }

    /// Writes the workload, one autocommit UPDATE per change; its binlog range and how long
    /// the writes took.
    async fn write(&self, stack: &Stack) -> (Written, Duration) {
        let mut conn = stack.maria.conn().await;
        let from = binlog_position(&mut conn).await;
        let t0 = Instant::now();
        for chunk in self.changes.chunks(5_000) {
            conn.query_drop(chunk.concat()).await.unwrap();
        }
        let took = t0.elapsed();
        let to = binlog_position(&mut conn).await;
        let last_gtid: String = conn.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();
        (Written { from, to, last_gtid }, took)
    }

    fn reader_toml(&self, dir: &Path, port: u16) -> PathBuf {
        let (name, d) = (&self.name, dir.display());
        write_file(
            &dir.join(format!("{name}-reader.toml")),
            &format!(
                r#"start_position = "latest"
dead_letter_path = "{d}/{name}-reader-dl.jsonl"
[source]
host = "127.0.0.1"
port = {port}
user = "root"
server_id = {}
tls = "disabled"
heartbeat_secs = 1
[filter]
include = ["{name}.*"]
[kinesis]
stream = "{name}"
[checkpoint]
kind = "file"
path = "{d}/{name}-reader-cp.json"
[metrics]
listen = "127.0.0.1:0"
"#,
                100 + self.name.len()
            ),
        )
    }

    fn consumer_toml(&self, dir: &Path, metrics: u16) -> PathBuf {
        let (name, d, queue, rule) = (&self.name, dir.display(), &self.queue, &self.rule_toml);
        write_file(
            &dir.join(format!("{name}-consumer.toml")),
            &format!(
                r#"[kinesis]
stream = "{name}"
[leases]
table = "{name}-leases"
create_table = true
[[route]]
tables = ["{name}.schedule"]
queues = ["{queue}"]
same_day_rule = "{name}"
[dead_letter]
path = "{d}/{name}-consumer-dl.jsonl"
[metrics]
listen = "127.0.0.1:{metrics}"
{rule}"#
            ),
        )
    }

    fn worker_toml(&self, dir: &Path, metrics: u16) -> PathBuf {
        let (name, queue, rule) = (&self.name, &self.queue, &self.rule_toml);
        write_file(
            &dir.join(format!("{name}-worker.toml")),
            &format!(
                "shutdown_timeout_ms = 5000\n[sqs]\nqueue = \"{queue}\"\n[metrics]\nlisten = \
                 \"127.0.0.1:{metrics}\"\n{rule}"
            ),
        )
    }
}

fn write_file(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

async fn binlog_position(conn: &mut mysql_async::Conn) -> String {
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let (file, pos): (String, u64) = (row.get(0).unwrap(), row.get(1).unwrap());
    format!("{file}:{pos}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `sameday` daemon, stopped with SIGTERM when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(stack: &Stack, sub: &str, config: &Path) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_sameday"))
            .args([sub, "--config"])
            .arg(config)
            .envs(stack.envs())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// CPU time (user + system, all threads) so far.
    fn cpu(&self) -> Duration {
        proc_cpu(&self.child.id().to_string(), false)
    }

    /// When the daemon first logged `message`, waiting for it up to a minute.
    async fn logged_at(&self, message: &str) -> Timestamp {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let line =
                text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|l| l["message"] == message);
            if let Some(t) = line.and_then(|l| l["timestamp"].as_str().and_then(|t| t.parse().ok())) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} never logged {message:?}:\n{text}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// CPU time of `pid` (user + system, all threads), or with `children` that of its reaped
/// children.
fn proc_cpu(pid: &str, children: bool) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
    let at = if children { 13 } else { 11 };
    let ticks: u64 = fields[at].parse::<u64>().unwrap() + fields[at + 1].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The counters a daemon serves on `/metrics`, summed over labels, without `_total`.
fn scrape(port: u16) -> BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut out = BTreeMap::new();
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return out };
    let mut text = String::new();
    if write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").is_err() || s.read_to_string(&mut text).is_err() {
        return out;
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            let name = name.split('{').next().unwrap().trim_end_matches("_total").to_owned();
            *out.entry(name).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    out
}

/// One stage's figures for one workload.
struct Stage {
    kind: Kind,
    stage: &'static str,
    /// What changes/s and CPU per change divide by.
    changes: usize,
    wall: Duration,
    cpu: Duration,
    calls: Calls,
    /// Kinesis records, their PUT payload units and on-demand KB (reader stage only).
    kinesis_records: Option<(usize, usize, usize)>,
    note: String,
}

async fn reader_stage(stack: &Stack, lane: &Lane, w: &Written) -> Stage {
    let config = lane.reader_toml(stack.dir.path(), stack.maria.port());
    let log = config.with_extension("replay.log");
    let before = stack.calls();
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_sameday"))
        .args(["replay", "--config"])
        .arg(&config)
        .args(["--from", &w.from, "--to", &w.to, "--sink", "kinesis"])
        .envs(stack.envs())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The proxies serve the replay from this process's runtime: wait off it.
    let (ok, cpu) = tokio::task::spawn_blocking(move || wait_with_cpu(child)).await.unwrap();
    let wall = t0.elapsed();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(ok, "replay of {} failed:\n{text}", lane.name);
    let records = stack.kinesalite.read_all(&lane.name).await;
    let billed = |unit: usize| records.iter().map(|r| (r.2.len() + r.3.len()).div_ceil(unit)).sum::<usize>();
    Stage {
        kind: lane.kind,
        stage: "reader",
        changes: lane.n,
        wall,
        cpu,
        calls: stack.calls().since(&before),
        kinesis_records: Some((records.len(), billed(PUT_PAYLOAD_UNIT), billed(ON_DEMAND_UNIT))),
        note: String::new(),
    }
}

/// Waits for `child` to exit; whether it succeeded, and its CPU time (user + system): what
/// this process's reaped children used meanwhile, and no other child exits meanwhile.
fn wait_with_cpu(mut child: Child) -> (bool, Duration) {
    let before = proc_cpu("self", true);
    let status = child.wait().unwrap();
    (status.success(), proc_cpu("self", true) - before)
}

/// Whether a consumer's metrics account for all `n` changes, every message accepted.
fn consumer_done(metrics: &BTreeMap<String, f64>, n: usize) -> bool {
    let m = |k: &str| metrics.get(k).copied().unwrap_or(0.0) as usize;
    m("sameday_consumer_records") >= n
        && m("sameday_consumer_forwarded_messages")
            + m("sameday_consumer_coalesced")
            + m("sameday_consumer_skipped_records")
            + m("sameday_consumer_dead_letters")
            >= n
}

/// The consumer stage, and the changes it forwarded (folded ones included): the worker's share.
async fn consumer_stage(stack: &Stack, lane: &Lane) -> (Stage, usize) {
    let port = free_port();
    let config = lane.consumer_toml(stack.dir.path(), port);
    let before = stack.calls();
    let daemon = Daemon::spawn(stack, "consumer", &config);
    let start = Instant::now();
    let metrics = loop {
        let metrics = scrape(port);
        if consumer_done(&metrics, lane.n) {
            break metrics;
        }
        assert!(start.elapsed() < STAGE_DEADLINE, "{} consumer stage: {metrics:?}", lane.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (done, cpu) = (Timestamp::now(), daemon.cpu());
    let wall = done.duration_since(daemon.logged_at("lease taken").await).unsigned_abs();
    let m = |k: &str| metrics.get(k).copied().unwrap_or(0.0) as usize;
    assert_eq!(m("sameday_consumer_dead_letters"), 0, "{}: dead letters", lane.name);
    assert_eq!(m("sameday_consumer_records"), lane.n, "{}: the reader wrote exactly the changes made", lane.name);
    let forwarded = m("sameday_consumer_forwarded_messages") + m("sameday_consumer_coalesced");
    drop(daemon);
    let stage = Stage {
        kind: lane.kind,
        stage: "consumer",
        changes: lane.n,
        wall,
        cpu,
        calls: stack.calls().since(&before),
        kinesis_records: None,
        note: format!("{forwarded} forwarded in {} messages", m("sameday_consumer_forwarded_messages")),
    };
    (stage, forwarded)
}

async fn worker_stage(stack: &Stack, lane: &Lane, w: &Written, changes: usize) -> Stage {
    let port = free_port();
    let config = lane.worker_toml(stack.dir.path(), port);
    let before = stack.calls();
    let daemon = Daemon::spawn(stack, "worker", &config);
    wait_right(stack, lane, w, &[], Instant::now()).await;
    let (done, cpu) = (Timestamp::now(), daemon.cpu());
    let wall = done.duration_since(daemon.logged_at("worker ready").await).unsigned_abs();
    let messages = scrape(port).get("sameday_worker_messages").copied().unwrap_or(0.0);
    drop(daemon);
    Stage {
        kind: lane.kind,
        stage: "worker",
        changes,
        wall,
        cpu,
        calls: stack.calls().since(&before),
        kinesis_records: None,
        note: format!("{messages} messages received"),
    }
}

async fn end_to_end(stack: &Stack, lane: &Lane) -> Stage {
    let dir = stack.dir.path();
    let reader = Daemon::spawn(stack, "reader", &lane.reader_toml(dir, stack.maria.port()));
    reader.logged_at("streaming the binlog").await;
    let port = free_port();
    let consumer = Daemon::spawn(stack, "consumer", &lane.consumer_toml(dir, port));
    consumer.logged_at("lease taken").await;
    let worker = Daemon::spawn(stack, "worker", &lane.worker_toml(dir, free_port()));
    worker.logged_at("worker ready").await;
    let daemons = [&reader, &consumer, &worker];
    let cpu0: Vec<Duration> = daemons.iter().map(|d| d.cpu()).collect();
    let before = stack.calls();
    let t0 = Instant::now();
    let (w, wrote) = lane.write(stack).await;
    wait_right(stack, lane, &w, &[port], t0).await;
    let wall = t0.elapsed();
    let cpu: Vec<Duration> = daemons.iter().zip(&cpu0).map(|(d, c0)| d.cpu() - *c0).collect();
    let calls = stack.calls().since(&before);
    drop((worker, consumer, reader));
    Stage {
        kind: lane.kind,
        stage: "end to end",
        changes: lane.n,
        wall,
        cpu: cpu.iter().sum(),
        calls,
        kinesis_records: None,
        note: format!(
            "writes took {wrote:.1?}; CPU reader {:.2} s, consumer {:.2} s, worker {:.2} s",
            cpu[0].as_secs_f64(),
            cpu[1].as_secs_f64(),
            cpu[2].as_secs_f64()
        ),
    }
}

/// Waits until the consumers on `consumer_ports` (if any) have handled all changes, the
/// queue is empty with nothing in flight, and Step Functions holds exactly what the lane
/// expects (see the module doc).
async fn wait_right(stack: &Stack, lane: &Lane, w: &Written, consumer_ports: &[u16], t0: Instant) {
    let sqs = aws_sdk_sqs::Client::new(&stack.fauxqs.sdk_config().await);
    let sfn = stack.moto.sfn_client().await;
    let expected = lane.expected();
    let mut last_progress = String::new();
    loop {
        assert!(t0.elapsed() < STAGE_DEADLINE, "{}: not right after {STAGE_DEADLINE:?}: {last_progress}", lane.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !consumer_ports.iter().all(|p| consumer_done(&scrape(*p), lane.n)) {
            continue;
        }
        if sameday_testkit::queue_depth(&sqs, &lane.queue).await > 0 {
            continue;
        }
        let waiting = waiting(&sfn, &lane.rule.state_machine_arn).await;
        let identities: BTreeSet<String> = waiting.keys().map(|name| parse_name(name).unwrap().0.to_owned()).collect();
        last_progress = format!("{} waiting, {} expected", waiting.len(), expected.len());
        if identities != expected || waiting.len() != expected.len() {
            continue;
        }
        if lane.kind == Kind::Hot {
            let name = waiting.keys().next().unwrap();
            let arn = execution_arn(&lane.rule.state_machine_arn, name).unwrap();
            let out = sfn.describe_execution().execution_arn(arn).send().await.unwrap();
            let version = identity_of_input(out.input().unwrap_or_default()).and_then(|(_, v)| v);
            let newest = matches!(&version, Some(RowVersion::Change { gtid: Some(g), .. }) if *g == w.last_gtid);
            if !newest {
                last_progress = format!("the waiting execution is of {version:?}, not of {}", w.last_gtid);
                continue;
            }
        }
        return;
    }
}

/// The RUNNING executions of `state_machine` (moto's record mode keeps them RUNNING).
async fn waiting(sfn: &aws_sdk_sfn::Client, state_machine: &str) -> BTreeMap<String, ()> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .status_filter(ExecutionStatus::Running)
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .unwrap();
        out.extend(page.executions().iter().map(|e| (e.name().to_owned(), ())));
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

fn report(n: usize, latency: Duration, results: &[Stage]) {
    let label = |k: Kind| if k == Kind::Hot { "hot (1 row)" } else { "spread (N rows)" };
    println!("{n} changes per workload, every AWS call {} ms late\n", latency.as_millis());
    println!("| workload | stage | changes counted | wall s | changes/s | CPU s | CPU µs/change | AWS calls | notes |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for s in results {
        let aws: u64 = s.calls.0.values().sum();
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.1} | {aws} | {} |",
            label(s.kind),
            s.stage,
            s.changes,
            s.wall.as_secs_f64(),
            s.changes as f64 / s.wall.as_secs_f64(),
            s.cpu.as_secs_f64(),
            s.cpu.as_secs_f64() * 1e6 / s.changes as f64,
            s.note
        );
    }
    println!("\n| stage | hot / spread changes/s (goal >= 0.5) | hot / spread CPU per change |");
    println!("|---|---:|---:|");
    for stage in ["reader", "consumer", "worker", "end to end"] {
        let of = |k: Kind| results.iter().find(|s| s.kind == k && s.stage == stage).unwrap();
        let (h, s) = (of(Kind::Hot), of(Kind::Spread));
        let rate = |s: &Stage| s.changes as f64 / s.wall.as_secs_f64();
        let cpu = |s: &Stage| s.cpu.as_secs_f64() / s.changes as f64;
        println!("| {stage} | {:.2} | {:.2} |", rate(h) / rate(s), cpu(h) / cpu(s));
    }
    println!("\nPer 1,000 changes (N = {n} per workload):\n");
    println!(
        "| workload | run | Kinesis records | PUT payload units | on-demand KB written | SQS requests | Step Functions \
         calls | of which StartExecution / StopExecution | DynamoDB requests |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let per_k = |v: u64| v as f64 * 1000.0 / n as f64;
    for kind in [Kind::Hot, Kind::Spread] {
        let of = |stage: &str| results.iter().find(|s| s.kind == kind && s.stage == stage).unwrap();
        let mut stages = Calls::default();
        for stage in ["reader", "consumer", "worker"] {
            for (k, v) in &of(stage).calls.0 {
                *stages.0.entry(k.clone()).or_default() += v;
            }
        }
        let (records, units, kb) = of("reader").kinesis_records.unwrap();
        for (run, calls) in [("stages", &stages), ("end to end", &of("end to end").calls)] {
            let kinesis = |v: usize| if run == "stages" { format!("{:.2}", per_k(v as u64)) } else { "-".into() };
            println!(
                "| {} | {run} | {} | {} | {} | {:.1} | {:.2} | {:.2} / {:.2} | {:.1} |",
                label(kind),
                kinesis(records),
                kinesis(units),
                kinesis(kb),
                per_k(calls.of("sqs")),
                per_k(calls.of("sfn")),
                per_k(calls.get("sfn.StartExecution")),
                per_k(calls.get("sfn.StopExecution")),
                per_k(calls.of("dynamodb")),
            );
        }
    }
    println!("\nAWS calls by operation:\n");
    for s in results {
        println!("- {} {}: {:?}", label(s.kind), s.stage, s.calls.0);
    }
}
