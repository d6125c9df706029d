//! The reader under faults: SIGKILL mid-workload, injected sink failures and throttling,
//! replays that must reproduce the live event ids, bad input, and SIGTERM shutdown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{master_status, sameday_bin, set_aws_env, Env};
use mysql_async::prelude::Queryable;
use sameday_core::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
use sameday_core::position::file_sequence;
use sameday_core::{BinlogPosition, ChangeEnvelope, StartPosition};
use sameday_testkit::{Kinesalite, MariaDb, MariaDbOptions};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- helpers

fn sameday(args: &[&str]) -> Command {
    let mut c = Command::new(sameday_bin());
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "warn");
    c
}

/// Runs a short-lived subcommand; returns (exit code, stdout, stderr).
fn run_cmd(args: &[&str]) -> (i32, String, String) {
    let out = sameday(args).stdin(Stdio::null()).output().expect("run sameday");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn_reader(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("reader log");
    sameday(&["reader", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sameday reader")
}

fn wait_child(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `unsafe` is forbidden in this workspace, so SIGTERM goes through kill(1).
fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill").success();
    assert!(ok, "kill -TERM {}", child.id());
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn order(p: &BinlogPosition) -> (u64, u64) {
    (file_sequence(&p.file), p.pos)
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Raw records of the stream: (shard, data bytes), per-shard order.
async fn raw_records(stream: &str) -> Vec<(String, Vec<u8>)> {
    common::user_records(stream).await.into_iter().map(|(shard, _, _, data)| (shard, data)).collect()
}

fn int_of(v: &serde_json::Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Checks per-key order of `(key, version)` records given in per-shard order:
/// every expected (key, version) appears; after dropping repeated event ids (keeping the
/// first) versions strictly increase per key; a repeated id carries identical bytes, and
/// repeats of a key are a replay of a suffix of its records (never a skip).
/// Returns the number of duplicate records.
fn check_order(records: &[(String, Vec<u8>)], expected: &HashSet<(i64, i64)>) -> usize {
    let mut first: HashMap<String, Vec<u8>> = HashMap::new();
    let mut per_key: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut key_shard: HashMap<i64, String> = HashMap::new();
    let mut dups = 0;
    // Per key: the ids first seen, and where a replay in progress must continue.
    let mut key_ids: HashMap<i64, (Vec<String>, Option<usize>)> = HashMap::new();
    for (shard, data) in records {
        let env = ChangeEnvelope::from_slice(data).expect("valid envelope");
        let id = int_of(&env.key["id"]);
        if let Some(prev) = key_shard.insert(id, shard.clone()) {
            assert_eq!(&prev, shard, "key {id} on two shards");
        }
        let (ids, cursor) = key_ids.entry(id).or_default();
        match ids.iter().position(|x| *x == env.id) {
            // A re-sent record starts or continues a replay of this key's records.
            Some(i) => *cursor = Some(i + 1),
            // A new record: any replay before it must have re-sent the whole suffix.
            None => {
                if let Some(c) = cursor.take() {
                    assert_eq!(c, ids.len(), "key {id}: replay re-sent {:?} then skipped to new {}", &ids[..c], env.id);
                }
                ids.push(env.id.clone());
            }
        }
        if let Some(orig) = first.get(&env.id) {
            assert_eq!(orig, data, "re-sent event {} differs from the original", env.id);
            dups += 1;
            continue;
        }
        first.insert(env.id.clone(), data.clone());
        let ver = int_of(&env.after.as_ref().expect("insert/update has after")["ver"]);
        per_key.entry(id).or_default().push(ver);
    }
    for (id, vers) in &per_key {
        assert!(vers.windows(2).all(|w| w[0] < w[1]), "key {id}: versions out of order: {vers:?}");
    }
    let seen: HashSet<(i64, i64)> = per_key.iter().flat_map(|(id, vs)| vs.iter().map(move |v| (*id, *v))).collect();
    let missing: Vec<_> = expected.difference(&seen).take(10).collect();
    assert!(missing.is_empty(), "{} changes missing, e.g. {missing:?}", expected.difference(&seen).count());
    dups
}

// ---------------------------------------------------------------- 1. kill -9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_kill_9_mid_workload_loses_nothing_and_keeps_key_order() {
    let _slot = common::heavy_scenario_slot().await;
    set_aws_env();
    let t0 = Instant::now();
    let env = Env::new("kill9", 2).await;
    let maria = MariaDb::shared();
    let db = env.db.clone();
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, ver INT NOT NULL, pad VARCHAR(32) NOT NULL)")).await;
    let start = master_status().await;
    let cfg = env.write_config(&start.to_string());
    let log = env.dir.path().join("reader.log");

    const BATCH: i64 = 5_000;
    const BATCHES: i64 = 16;
    const HOT: i64 = 5_000; // keys 1..=HOT are updated UPDATES times
    const UPDATES: i64 = 4;
    let mut expected = HashSet::new();
    for id in 1..=BATCH * BATCHES {
        expected.insert((id, 0));
    }
    for id in 1..=HOT {
        for v in 1..=UPDATES {
            expected.insert((id, v));
        }
    }

    let mut reader = spawn_reader(&cfg, &log);
    let workload = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(MariaDb::shared().opts(Some(&db))).await.unwrap();
            let mut upd = 0;
            for b in 0..BATCHES {
                c.query_drop(format!("INSERT INTO t SELECT seq + {}, 0, 'p' FROM seq_1_to_{BATCH}", b * BATCH))
                    .await
                    .unwrap();
                if b % 4 == 3 && upd < UPDATES {
                    c.query_drop(format!("UPDATE t SET ver = ver + 1 WHERE id <= {HOT}")).await.unwrap();
                    upd += 1;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let _ = c.disconnect().await;
        })
    };

    // Poll the checkpoint; kill -9 once it has moved a few times.
    let cp_path = env.checkpoint_path();
    let mut last: Option<(u64, u64)> = None;
    let mut moves = 0;
    let mut polls = 0;
    let poll = |last: &mut Option<(u64, u64)>, moves: &mut i32| {
        if let Some(cp) = read_checkpoint(&cp_path) {
            let o = order(&cp.position);
            if let Some(l) = *last {
                assert!(o >= l, "checkpoint went backwards: {l:?} -> {o:?}");
                if o > l {
                    *moves += 1;
                }
            }
            *last = Some(o);
        }
    };
    let kill_deadline = Instant::now() + Duration::from_secs(30);
    while moves < 3 && Instant::now() < kill_deadline {
        poll(&mut last, &mut moves);
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before_kill = vm_hwm_kib(reader.id());
    reader.kill().unwrap(); // SIGKILL
    reader.wait().unwrap();
    let cp_at_kill = last;
    poll(&mut last, &mut moves);
    let workload_done_at_kill = workload.is_finished();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut reader = spawn_reader(&cfg, &log);

    workload.await.unwrap();
    let end = master_status().await;
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        poll(&mut last, &mut moves);
        polls += 1;
        if last.is_some_and(|l| l >= order(&end)) {
            break;
        }
        if let Some(s) = reader.try_wait().unwrap() {
            panic!("restarted reader exited: {s}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint {last:?} never reached {end}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_end = vm_hwm_kib(reader.id());
    sigterm(&reader);
    let status = wait_child(&mut reader, Duration::from_secs(10)).expect("reader stops on SIGTERM");
    assert!(status.success(), "{status}");

    let records = raw_records(&env.stream).await;
    let dups = check_order(&records, &expected);
    println!(
        "kill9: {} changes expected, {} records in Kinesis, {dups} duplicates after kill; checkpoint at kill {cp_at_kill:?}, \
         workload finished before kill: {workload_done_at_kill}; {polls} checkpoint polls, {moves} moves; \
         VmHWM before kill {rss_before_kill:?} KiB, restarted reader at end {rss_end:?} KiB; total {:?}",
        expected.len(),
        records.len(),
        t0.elapsed()
    );
    assert_eq!(records.len(), expected.len() + dups);
}

// ---------------------------------------------------------------- 2. faulty sink

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_partial_failures_and_throttling_never_reorder_or_lose() {
    use sameday_reader::FaultySink;
    use sameday_reader::KinesisSink;
    use sameday_reader::{prepare_source, resolve};
    use sameday_reader::{run_pipeline, SourceRun};
    use sameday_reader::{Publisher, PublisherConfig};

    set_aws_env();
    let env = Env::new("faulty", 2).await;
    let maria = MariaDb::shared();
    let db = env.db.clone();
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, ver INT NOT NULL)")).await;
    let start = master_status().await;
    let cfg = env.config(&start.to_string());
    let info = prepare_source(&cfg.source, &cfg.filter).await.unwrap();
    let (start, gtid_set) = resolve(&cfg.source, &info, &StartPosition::File(start), None).await.unwrap();
    let client = Kinesalite::shared().kinesis_client().await;
    let sink = Arc::new(FaultySink::new(KinesisSink::new(client, &env.stream, Some(1 << 20)), 7, 5));
    let shutdown = CancellationToken::new();
    let run = SourceRun::for_reader(&cfg, info, start, gtid_set);
    let pcfg = PublisherConfig { linger: Duration::from_millis(5), ..Default::default() };
    let pipeline = tokio::spawn(run_pipeline(run, Publisher::new(sink.clone(), pcfg), shutdown.clone()));

    const KEYS: i64 = 500;
    const ROUNDS: i64 = 5;
    let mut c = mysql_async::Conn::new(maria.opts(Some(&db))).await.unwrap();
    c.query_drop(format!("INSERT INTO t SELECT seq, 0 FROM seq_1_to_{KEYS}")).await.unwrap();
    for _ in 0..ROUNDS {
        c.query_drop("UPDATE t SET ver = ver + 1").await.unwrap();
        // single-row transactions on a few hot keys between the big ones
        for i in 0..40 {
            c.query_drop(format!("UPDATE t SET ver = ver + 1 WHERE id = {}", i % 10 + 1)).await.unwrap();
        }
    }
    let _ = c.disconnect().await;
    // Every change adds 1 to ver, so key K's versions are exactly 0..=its final ver.
    let mut c = mysql_async::Conn::new(maria.opts(Some(&db))).await.unwrap();
    let rows: Vec<(i64, i64)> = c.query("SELECT id, ver FROM t").await.unwrap();
    let _ = c.disconnect().await;
    let total: i64 = rows.iter().map(|(_, v)| v + 1).sum(); // insert + one change per version step
    let expected: HashSet<(i64, i64)> = rows.iter().flat_map(|(id, v)| (0..=*v).map(move |x| (*id, x))).collect();
    assert_eq!(expected.len() as i64, total);

    let t = Instant::now();
    env.wait_for_records(expected.len(), Duration::from_secs(60)).await;
    shutdown.cancel();
    pipeline.await.unwrap().unwrap();
    let records = raw_records(&env.stream).await;
    let dups = check_order(&records, &expected);
    let rec_fail = sink.injected_record_failures.load(Ordering::Relaxed);
    let req_fail = sink.injected_request_failures.load(Ordering::Relaxed);
    println!("faulty: {} changes, {} records, {dups} duplicates, {rec_fail} injected record failures, {req_fail} injected request failures, delivered in {:?}", expected.len(), records.len(), t.elapsed());
    assert_eq!(dups, 0, "failed records were never written, so nothing may repeat");
    assert_eq!(records.len(), expected.len());
    assert!(rec_fail > 0 && req_fail > 0, "faults were injected: {rec_fail} records, {req_fail} requests");
}

// ---------------------------------------------------------------- 3. replay

fn stdout_records(stdout: &str, db: &str) -> Vec<(String, serde_json::Value)> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["db"] == db)
        .map(|v| (v["id"].as_str().unwrap().to_owned(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_range_emits_the_same_event_ids_as_the_live_run() {
    set_aws_env();
    let env = Env::new("replay", 1).await;
    let maria = MariaDb::shared();
    let db = env.db.clone();
    maria
        .exec(&format!(
            "CREATE TABLE {db}.a (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2));
             CREATE TABLE {db}.b (id BIGINT PRIMARY KEY, j JSON, ts DATETIME(3))"
        ))
        .await;
    let from = master_status().await;
    let cfg_path = env.write_config(&from.to_string());
    let cfg = env.config(&from.to_string());
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(cfg, shutdown.clone()));
    maria
        .exec(&format!(
            "BEGIN; INSERT INTO {db}.a VALUES (1,'x',1.50),(2,'y',2.25),(3,'z',NULL); INSERT INTO {db}.b VALUES (10,'{{\"k\":[1,2]}}','2024-01-02 03:04:05.678'); COMMIT;
             UPDATE {db}.a SET v = 'x2' WHERE id = 1;
             BEGIN; DELETE FROM {db}.a WHERE id = 2; UPDATE {db}.b SET j = '{{\"k\":null}}' WHERE id = 10; INSERT INTO {db}.a VALUES (4,'w',4.00); COMMIT;
             INSERT INTO {db}.a SELECT seq + 100, 'bulk', seq FROM {db}.seq_1_to_200;
             UPDATE {db}.a SET n = n + 1 WHERE id > 150;"
        ))
        .await;
    let to = master_status().await;
    let want = 4 + 1 + 3 + 200 + 150; // bulk ids are 101..=300
    let live = env.wait_for_records(want, Duration::from_secs(30)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let live_raw = raw_records(&env.stream).await;
    assert_eq!(live.len(), want);
    let mut live_set: Vec<(String, serde_json::Value)> = live_raw
        .iter()
        .map(|(_, d)| {
            let v: serde_json::Value = serde_json::from_slice(d).unwrap();
            (v["id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let live_order: Vec<String> = live_set.iter().map(|(id, _)| id.clone()).collect();
    live_set.sort_by(|a, b| a.0.cmp(&b.0));
    let files: Vec<String> = {
        let mut f: Vec<String> = live.iter().map(|(_, e)| e.source.file.clone()).collect();
        f.dedup();
        f
    };

    // Per-key order of a replay must equal the live one; across keys only the set matters.
    let per_key = |recs: &[(String, serde_json::Value)]| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, v) in recs {
            m.entry(format!("{}.{}", v["table"], v["key"])).or_default().push(id.clone());
        }
        m
    };
    let live_ordered: Vec<(String, serde_json::Value)> =
        live_order.iter().map(|id| live_set.iter().find(|(i, _)| i == id).unwrap().clone()).collect();
    let live_keys = per_key(&live_ordered);

    // From the server.
    let (code, out, err) = run_cmd(&[
        "replay",
        "--config",
        cfg_path.to_str().unwrap(),
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--sink",
        "stdout",
    ]);
    assert_eq!(code, 0, "server replay failed: {err}");
    let server = stdout_records(&out, &db);
    assert_eq!(per_key(&server), live_keys, "server replay per-key order");
    let mut server_sorted = server.clone();
    server_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(server_sorted, live_set, "server replay = live run");

    // From the binlog files.
    let dir = maria.binlog_dir();
    let paths: Vec<String> = files.iter().map(|f| dir.join(f).to_str().unwrap().to_owned()).collect();
    let tables = format!("{db}.*");
    let mut args: Vec<&str> = vec!["replay", "--binlog-file"];
    args.extend(paths.iter().map(String::as_str));
    let from_off = from.pos.to_string();
    let to_off = to.pos.to_string();
    if files.first() == Some(&from.file) {
        args.extend(["--from", from_off.as_str()]);
    }
    if files.last() == Some(&to.file) {
        args.extend(["--to", to_off.as_str()]);
    }
    // The server tells which MariaDB text columns hold JSON, as in the live run.
    let source_url = format!("mysql://root@127.0.0.1:{}", maria.port());
    args.extend(["--tables", tables.as_str(), "--sink", "stdout", "--source", source_url.as_str()]);
    let (code, out, err) = run_cmd(&args);
    assert_eq!(code, 0, "file replay failed: {err}");
    let file = stdout_records(&out, &db);
    assert_eq!(per_key(&file), live_keys, "file replay per-key order");
    let mut file_sorted = file.clone();
    file_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(file_sorted, live_set, "file replay = live run");

    // --dry-run: per-table counts, no records.
    args.push("--dry-run");
    let (code, out, err) = run_cmd(&args);
    assert_eq!(code, 0, "dry run failed: {err}");
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, v) in &live_set {
        *counts
            .entry(format!(
                "{}.{} {}",
                v["db"].as_str().unwrap(),
                v["table"].as_str().unwrap(),
                v["op"].as_str().unwrap()
            ))
            .or_default() += 1;
    }
    for (k, n) in &counts {
        assert!(out.lines().any(|l| l == format!("{k} {n}")), "dry run lacks {k:?} {n}: {out}");
    }
    assert!(!out.contains("\"id\""), "dry run emitted records: {out}");
    println!(
        "replay: {} live records over {:?}, server and file replays identical; dry run:\n{out}",
        live_set.len(),
        files
    );
}

// ---------------------------------------------------------------- 4. bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_start_position_is_a_clear_error() {
    set_aws_env();
    let env = Env::new("purged", 1).await;
    // A configured start position that is not on the server.
    let cfg = env.write_config("mysql-bin.999999:4");
    let mut child = spawn_reader(&cfg, &env.dir.path().join("a.log"));
    let status = wait_child(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("reader kept running on a purged start position");
    });
    let err = std::fs::read_to_string(env.dir.path().join("a.log")).unwrap();
    assert!(!status.success());
    assert!(err.contains("no longer on") && err.contains("sameday replay"), "{err}");

    // A checkpoint naming a missing file (start_position would be fine).
    let cfg = env.write_config("latest");
    let cp = Checkpoint {
        position: BinlogPosition::new("mysql-bin.999999", 4),
        gtid_set: None,
        commit_ts_ms: 0,
        saved_at_ms: 0,
    };
    FileCheckpointStore::new(env.checkpoint_path()).force_save(&cp).await.unwrap();
    let mut child = spawn_reader(&cfg, &env.dir.path().join("b.log"));
    let status = wait_child(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("reader kept running on a purged checkpoint");
    });
    let err = std::fs::read_to_string(env.dir.path().join("b.log")).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("no longer on") && err.contains("sameday replay") && err.contains("mysql-bin.999999"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_settings_fail_preflight() {
    set_aws_env();
    let env = Env::new("minimal", 1).await;
    let minimal = MariaDb::start_with(MariaDbOptions::default().arg("--binlog_row_image=MINIMAL"));
    minimal.exec(&format!("CREATE DATABASE {}", env.db)).await;
    let cfg = env.reader_toml("latest").source_port(minimal.port()).write(env.dir.path().join("minimal.toml"));
    let (code, out, err) = run_cmd(&["check", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "check passed on binlog_row_image=MINIMAL: {out}");
    assert!(out.contains("binlog_row_image") && out.contains("FULL"), "stdout: {out}\nstderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_table_in_filters_is_named() {
    set_aws_env();
    let env = Env::new("nope", 1).await;
    let cfg = env.reader_toml("latest").include(&[&format!("{}.nope", env.db)]).write(env.dir.path().join("nope.toml"));
    let (code, out, err) = run_cmd(&["check", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "check passed with an unknown table: {out}");
    assert!(format!("{out}{err}").contains(&format!("{}.nope", env.db)), "stdout: {out}\nstderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_names_the_field() {
    set_aws_env();
    let env = Env::new("badcfg", 1).await;
    let toml = env.reader_toml("latest");
    let base = toml.to_string();
    let cases = [
        ("unknown.toml", toml.clone().unchecked("source.prot", 1).to_string(), "prot"),
        ("badvalue.toml", toml.clone().unchecked("kinesis.linger_ms", "x").to_string(), "linger_ms"),
    ];
    for (name, text, field) in cases {
        assert_ne!(text, base);
        let path = env.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for sub in ["check", "reader"] {
            let (code, out, err) = run_cmd(&[sub, "--config", path.to_str().unwrap()]);
            assert_ne!(code, 0, "{sub} accepted {name}: {out}");
            assert!(
                err.contains(field) && err.contains(name),
                "{sub} {name}: error does not name {field:?} and the file: {err}"
            );
        }
    }
}

// ---------------------------------------------------------------- 5. SIGTERM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_checkpoints_within_10_s() {
    let _slot = common::scenario_slot().await;
    set_aws_env();
    let env = Env::new("sigterm", 2).await;
    let maria = MariaDb::shared();
    let db = env.db.clone();
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")).await;
    let start = master_status().await;
    // Checkpoints only on shutdown, so the file proves the shutdown save.
    let cfg: PathBuf =
        env.reader_toml(&start.to_string()).checkpoint_interval_ms(60_000).write(env.dir.path().join("sigterm.toml"));
    let log = env.dir.path().join("reader.log");
    let mut reader = spawn_reader(&cfg, &log);
    for i in 0..20 {
        maria.exec(&format!("INSERT INTO {db}.t SELECT seq + {}, seq FROM {db}.seq_1_to_100", i * 100)).await;
    }
    let last = master_status().await;
    env.wait_for_records(2000, Duration::from_secs(30)).await;
    assert!(read_checkpoint(&env.checkpoint_path()).is_none(), "no checkpoint before shutdown with a 60 s interval");
    let t = Instant::now();
    sigterm(&reader);
    let status = wait_child(&mut reader, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = reader.kill();
        panic!(
            "reader did not stop within 10 s of SIGTERM; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    });
    let took = t.elapsed();
    assert!(status.success(), "{status}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    let now = master_status().await;
    let cp = read_checkpoint(&env.checkpoint_path()).expect("checkpoint saved on shutdown");
    println!(
        "sigterm: stopped in {took:?}; checkpoint {}, after our last transaction {last}, server now {now}",
        cp.position
    );
    // Other tests share the server: the reader may have passed their later transactions too.
    assert!(
        order(&cp.position) >= order(&last) && order(&cp.position) <= order(&now),
        "checkpoint {} vs last {last} / now {now}",
        cp.position
    );
}

#[tokio::test]
async fn single_100k_row_transaction_streams_with_bounded_memory() {
    let _slot = common::heavy_scenario_slot().await;
    set_aws_env();
    // Its own server: the peak memory must be this transaction's, not another test's big row.
    let env = Env::on_own_server("bigtxn", 4).await;
    let maria = env.maria();
    let db = &env.db;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, due DATETIME(3), note VARCHAR(100))")).await;
    let cfg = env.write_config("latest");
    let log = env.dir.path().join("reader.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut reader = sameday(&["reader", "--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let started = Instant::now();
    sameday_testkit::wait_until(Duration::from_secs(20), "reader streaming", || {
        let log = log.clone();
        async move { std::fs::read_to_string(&log).map(|s| s.contains("streaming the binlog")).unwrap_or(false) }
    })
    .await;
    // One transaction, 100,000 rows.
    maria
        .exec(&format!(
            "INSERT INTO {db}.t SELECT seq, NOW(3) + INTERVAL seq SECOND, REPEAT('n', 60) FROM {db}.seq_1_to_100000"
        ))
        .await;
    let mut peak_kib = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        peak_kib = peak_kib.max(vm_hwm_kib(reader.id()).unwrap_or(0));
        let n = raw_records(&env.stream).await.len();
        if n >= 100_000 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} of 100000 records after 120 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    peak_kib = peak_kib.max(vm_hwm_kib(reader.id()).unwrap_or(0));
    sigterm(&reader);
    assert!(wait_child(&mut reader, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let records = raw_records(&env.stream).await;
    let ids: HashSet<i64> = records
        .iter()
        .map(|(_, d)| int_of(&serde_json::from_slice::<serde_json::Value>(d).unwrap()["key"]["id"]))
        .collect();
    assert_eq!(ids.len(), 100_000, "every row of the transaction arrived");
    println!(
        "100k-row transaction: {} records in {:?}, reader peak RSS {} MiB",
        records.len(),
        started.elapsed(),
        peak_kib / 1024
    );
    assert!(peak_kib < 100 * 1024, "reader peak RSS {} MiB exceeds 100 MiB", peak_kib / 1024);
}
