//! The binlog archive (`sameday archive`, `replay --archive`, `check`) against a MariaDB of
//! its own (the tests rotate and purge) and moto's S3: files copied byte for byte as
//! `mariadb-binlog --read-from-remote-server --raw` writes them, across rotations and a
//! `kill -9`; replays from the archive equal the live stream; lost files reported loudly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sameday_core::s3::{ObjectStore, S3Location};
use sameday_testkit::{names, Kinesalite, MariaDb, Moto};
use tokio_util::sync::CancellationToken;

use crate::common::{self, master_status_of, sameday_bin, set_aws_env, Daemon, Env};

/// A test's own MariaDB, database, bucket and reader config with `[archive]`.
struct ArchiveEnv {
    env: Env,
    location: String,
    store: ObjectStore,
    config: PathBuf,
}

impl ArchiveEnv {
    async fn new(prefix: &str) -> Self {
        set_aws_env();
        let env = Env::on_own_server(prefix, 1).await;
        let bucket = names::unique(prefix).replace('_', "-");
        Moto::shared().create_bucket(&bucket).await;
        let location = format!("s3://{bucket}/binlogs/db1/");
        let parsed: S3Location = location.parse().unwrap();
        let store = ObjectStore::new(Moto::shared().s3_client().await, parsed);
        let start = master_status_of(env.maria()).await.to_string();
        let toml = env.reader_toml(&start).endpoint_url(None).archive(&location, 1000);
        let config = toml.write(env.dir.path().join("archive.toml"));
        Self { env, location, store, config }
    }

    fn maria(&self) -> &MariaDb {
        self.env.maria()
    }

    /// The emulators as a daemon process sees them.
    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL_S3", Moto::shared().endpoint()),
            ("AWS_ENDPOINT_URL_KINESIS", Kinesalite::shared().endpoint()),
        ]
    }

    /// Runs `sameday ARGS`; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(sameday_bin())
            .args(args)
            .envs(self.envs())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("run sameday");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    fn archive_once(&self) -> String {
        let (code, _, err) = self.run(&["archive", "--config", self.config.to_str().unwrap(), "--once"]);
        assert_eq!(code, 0, "sameday archive --once failed:\n{err}");
        err
    }

    /// Writes `rows` rows (one transaction each) and rotates the binlog.
    async fn write_and_rotate(&self, table: &str, first_id: u32, rows: u32) {
        let db = &self.env.db;
        let inserts: String =
            (first_id..first_id + rows).map(|i| format!("INSERT INTO {db}.{table} VALUES ({i}, 'row {i}');")).collect();
        self.maria().exec(&format!("{inserts} FLUSH BINARY LOGS;")).await;
    }

    /// The rotated files (every file of `SHOW BINARY LOGS` but the last) and their sizes.
    async fn rotated(&self) -> Vec<(String, u64)> {
        let mut c = self.maria().conn().await;
        let mut logs: Vec<(String, u64)> = c.query("SHOW BINARY LOGS").await.unwrap();
        let _ = c.disconnect().await;
        logs.pop();
        logs
    }

    /// The archive's objects: file name -> body, each checked against its SHA-256 metadata.
    async fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let dir = tempfile::tempdir().unwrap();
        for o in self.store.list("").await.unwrap() {
            let name = o.key.rsplit('/').next().unwrap().to_owned();
            let path = dir.path().join(&name);
            let (size, _) = self.store.download(&o.key, &path).await.expect("object with a matching SHA-256");
            assert_eq!(size, o.size);
            out.insert(name, std::fs::read(&path).unwrap());
        }
        out
    }

    /// Waits until the archive holds every one of `files`.
    async fn wait_archived(&self, files: &[(String, u64)], deadline: Duration) {
        let start = Instant::now();
        loop {
            let listed: HashMap<String, u64> = self
                .store
                .list("")
                .await
                .unwrap()
                .into_iter()
                .map(|o| (o.key.rsplit('/').next().unwrap().to_owned(), o.size))
                .collect();
            if files.iter().all(|(n, s)| listed.get(n) == Some(s)) {
                return;
            }
            assert!(start.elapsed() < deadline, "archive holds {listed:?}, waiting for {files:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `mariadb-binlog --read-from-remote-server --raw` copies of `files`, in `dir`.
fn mariadb_binlog_raw(port: u16, files: &[String], dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let tool = ["mariadb-binlog", "mysqlbinlog"]
        .into_iter()
        .find(|t| Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("mariadb-binlog (MariaDB client tools) on PATH");
    let out = Command::new(tool)
        .args(["--read-from-remote-server", "--raw", "--host=127.0.0.1", "--user=root"])
        .arg(format!("--port={port}"))
        .args(files)
        .current_dir(dir)
        .output()
        .expect("run mariadb-binlog");
    assert!(out.status.success(), "mariadb-binlog: {}", String::from_utf8_lossy(&out.stderr));
    files.iter().map(|f| (f.clone(), std::fs::read(dir.join(f)).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_copies_rotated_files_byte_for_byte_like_mariadb_binlog_raw() {
    let a = ArchiveEnv::new("archive_bytes").await;
    let db = &a.env.db;
    a.maria().exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v LONGTEXT)")).await;
    a.write_and_rotate("t", 1, 20).await;
    // An event over 16 MiB arrives in several packets.
    a.maria()
        .exec(&format!("INSERT INTO {db}.t VALUES (1000, REPEAT('x', 17 * 1024 * 1024)); FLUSH BINARY LOGS"))
        .await;
    a.write_and_rotate("t", 2000, 5).await;
    a.write_and_rotate("t", 3000, 1).await;

    a.archive_once();
    let rotated = a.rotated().await;
    let names: Vec<String> = rotated.iter().map(|(n, _)| n.clone()).collect();
    let objects = a.objects().await;
    assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), names, "one object per rotated file, nothing else");
    let dir = tempfile::tempdir().unwrap();
    let raw = mariadb_binlog_raw(a.maria().port(), &names, dir.path());
    for name in &names {
        assert!(objects[name] == raw[name], "{name}: the archived object differs from mariadb-binlog --raw's copy");
        assert!(
            objects[name] == std::fs::read(a.maria().binlog_dir().join(name)).unwrap(),
            "{name} != the server's file"
        );
    }
    assert!(objects.values().any(|b| b.len() > 17 * 1024 * 1024));

    // A second run finds everything archived and writes nothing.
    let log = a.archive_once();
    assert!(!log.contains("binlog file archived"), "{log}");

    // `sameday check` shows the archive caught up with the source.
    let (code, out, _) = a.run(&["check", "--config", a.config.to_str().unwrap()]);
    let newest = names.last().unwrap();
    let info = format!(
        "INFO: binlog archive {}: newest archived {newest}, the source's oldest {}, 0 rotated file(s) pending",
        a.location, names[0]
    );
    assert!(out.lines().any(|l| l.starts_with(&info)), "{out}");
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_resumes_after_kill_9_with_every_file_exactly_once() {
    let _slot = common::scenario_slot().await;
    let a = ArchiveEnv::new("archive_kill").await;
    let db = &a.env.db;
    a.maria().exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v LONGTEXT)")).await;
    let envs = a.envs();
    let mut first = Daemon::spawn("archive", &a.config, a.env.dir.path().join("archive-1.log"), &envs);
    for round in 0..3 {
        a.write_and_rotate("t", round * 100, 30).await;
    }
    // Large files keep the daemon busy, so the kill lands while files are pending.
    for round in 3..6 {
        a.maria()
            .exec(&format!(
                "INSERT INTO {db}.t VALUES ({}, REPEAT('y', 8 * 1024 * 1024)); FLUSH BINARY LOGS",
                round * 100
            ))
            .await;
    }
    let early = a.rotated().await;
    a.wait_archived(&early[..1], Duration::from_secs(30)).await;
    first.kill9();

    for round in 6..8 {
        a.write_and_rotate("t", round * 100, 10).await;
    }
    let mut second = Daemon::spawn("archive", &a.config, a.env.dir.path().join("archive-2.log"), &envs);
    let rotated = a.rotated().await;
    a.wait_archived(&rotated, Duration::from_secs(60)).await;
    second.assert_running();
    second.terminate();

    let objects = a.objects().await;
    assert_eq!(objects.len(), rotated.len(), "no object beyond the rotated files");
    for (name, _) in &rotated {
        assert!(objects[name] == std::fs::read(a.maria().binlog_dir().join(name)).unwrap(), "{name} differs");
    }
    // Each file was written once: after the restart the listing says what is there.
    let logs = format!("{}{}", first.log_text(), second.log_text());
    for (name, _) in &rotated {
        let writes = logs.lines().filter(|l| l.contains("binlog file archived") && l.contains(name.as_str())).count();
        assert!(writes <= 1, "{name} was archived {writes} times:\n{logs}");
    }
}

/// `got` holds the server replay's records, each row's in the same order (the sink's order
/// across rows depends on timing); on a difference, says which.
fn assert_same_records(got: &[(String, serde_json::Value)], server: &[(String, serde_json::Value)], what: &str) {
    let per_row = |recs: &[(String, serde_json::Value)]| {
        let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, v) in recs {
            rows.entry(format!("{}.{}", v["table"], v["key"])).or_default().push(id.clone());
        }
        rows
    };
    assert_eq!(per_row(got), per_row(server), "{what}: each row's changes in the server replay's order");
    let sorted = |recs: &[(String, serde_json::Value)]| {
        let mut v = recs.to_vec();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (got, server) = (sorted(got), sorted(server));
    if let Some(i) = (0..got.len().max(server.len())).find(|i| got.get(*i) != server.get(*i)) {
        panic!(
            "{what} differs from the server replay at record {i} (by id) of {} / {}:\n{}\n{}",
            got.len(),
            server.len(),
            got.get(i).map(|r| r.1.to_string()).unwrap_or_default(),
            server.get(i).map(|r| r.1.to_string()).unwrap_or_default()
        );
    }
}

/// Replay output lines as (id, record), for the test's tables.
fn records(stdout: &str) -> Vec<(String, serde_json::Value)> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_archive_gives_the_live_streams_event_ids_and_records() {
    let a = ArchiveEnv::new("archive_replay").await;
    let db = &a.env.db;
    a.maria()
        .exec(&format!(
            "CREATE TABLE {db}.a (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2));
             CREATE TABLE {db}.b (id BIGINT PRIMARY KEY, j JSON, ts DATETIME(3))"
        ))
        .await;
    let from = master_status_of(a.maria()).await;
    let cfg = a.env.config(&from.to_string());
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(cfg, shutdown.clone()));
    a.maria()
        .exec(&format!(
            "BEGIN; INSERT INTO {db}.a VALUES (1,'x',1.50),(2,'y',2.25); INSERT INTO {db}.b VALUES (10,'{{\"k\":[1,2]}}','2024-01-02 03:04:05.678'); COMMIT;
             FLUSH BINARY LOGS;
             UPDATE {db}.a SET v = 'x2' WHERE id = 1;
             BEGIN; DELETE FROM {db}.a WHERE id = 2; UPDATE {db}.b SET j = '{{\"k\":null}}' WHERE id = 10; COMMIT;
             FLUSH BINARY LOGS;
             INSERT INTO {db}.a SELECT seq + 100, 'bulk', seq FROM {db}.seq_1_to_50;
             FLUSH BINARY LOGS;"
        ))
        .await;
    let rotated = a.rotated().await;
    let (last, size) = rotated.last().cloned().unwrap();
    let to = format!("{last}:{size}");
    let want = 3 + 1 + 2 + 50;
    let live = a.env.wait_for_records(want, Duration::from_secs(30)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let mut live_ids: Vec<String> = live.iter().map(|(_, e)| e.id.clone()).collect();
    live_ids.sort();
    a.archive_once();

    let source = format!("mysql://root@127.0.0.1:{}", a.maria().port());
    let tables = format!("{db}.*");
    let common = ["--source", source.as_str(), "--tables", tables.as_str(), "--sink", "stdout"];
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&common);
        let (code, out, err) = a.run(&args);
        assert_eq!(code, 0, "replay {extra:?} failed:\n{err}");
        records(&out)
    };
    let from_text = from.to_string();
    let server = replay(&["--from", &from_text, "--to", &to]);
    let archive = replay(&["--archive", &a.location, "--from", &from_text, "--to", &to]);
    let objects: Vec<String> =
        rotated.iter().skip_while(|(n, _)| *n != from.file).map(|(n, _)| format!("{}{n}", a.location)).collect();
    let mut args: Vec<&str> = vec!["--binlog-file"];
    args.extend(objects.iter().map(String::as_str));
    let from_pos = from.pos.to_string();
    args.extend(["--from", from_pos.as_str()]);
    let urls = replay(&args);

    assert_eq!(server.len(), want);
    assert_same_records(&archive, &server, "replay --archive");
    assert_eq!(
        archive.iter().map(|r| r.0.as_str()).collect::<std::collections::HashSet<_>>().len(),
        want,
        "unique ids"
    );
    assert_same_records(&urls, &server, "replay --binlog-file s3://...");
    let mut archive_ids: Vec<String> = archive.iter().map(|(id, _)| id.clone()).collect();
    archive_ids.sort();
    assert_eq!(archive_ids, live_ids, "the archive replays the live stream's event ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlogs_purged_before_they_were_archived_are_reported_by_name() {
    let a = ArchiveEnv::new("archive_gap").await;
    let db = &a.env.db;
    a.maria().exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v LONGTEXT)")).await;
    a.write_and_rotate("t", 1, 3).await;
    a.archive_once();
    let archived = a.rotated().await;
    for round in 1..5 {
        a.write_and_rotate("t", round * 10, 3).await;
    }
    let before_purge = a.rotated().await;
    let mut c = a.maria().conn().await;
    let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let active: String = row.get(0).unwrap();
    // MariaDB keeps the files its crash recovery still needs; what it purges is lost.
    c.query_drop(format!("PURGE BINARY LOGS TO '{active}'")).await.unwrap();
    let _ = c.disconnect().await;
    let remaining = a.rotated().await;
    let lost: Vec<String> = before_purge
        .into_iter()
        .skip(archived.len())
        .map(|(n, _)| n)
        .filter(|n| !remaining.iter().any(|(r, _)| r == n))
        .collect();
    assert!(lost.len() >= 2, "the purge left {remaining:?}");
    let range = format!("{} .. {} ({} files)", lost[0], lost[lost.len() - 1], lost.len());

    let log = a.archive_once();
    assert!(log.contains("purged from the source before they were archived") && log.contains(&range), "{log}");

    let (code, out, _) = a.run(&["check", "--config", a.config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("ERROR: ") && l.contains(&format!("binlog files {range} were purged"))),
        "{out}"
    );

    let (from, to) = (format!("{}:4", archived[0].0), format!("{}:4", lost[lost.len() - 1]));
    let (code, _, err) = a.run(&["replay", "--archive", &a.location, "--from", &from, "--to", &to]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{range} not in the archive")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_copies_over_tls_verified_against_a_private_ca() {
    set_aws_env();
    let tls = MariaDb::start_with(sameday_testkit::MariaDbOptions::default().tls(true));
    let env = Env::new("archive_tls", 1).await;
    let db = names::unique("tlsdb");
    tls.exec(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT);
         INSERT INTO {db}.t VALUES (1, 'over tls'); FLUSH BINARY LOGS"
    ))
    .await;
    let bucket = names::unique("archive_tls").replace('_', "-");
    Moto::shared().create_bucket(&bucket).await;
    let mut cfg = env.config("latest");
    cfg.source.port = tls.port();
    cfg.source.tls = sameday_mysql::TlsMode::Verify;
    cfg.source.tls_ca_file = Some(tls.ca_pem_path().expect("TLS instance has a CA").to_path_buf());
    cfg.aws.endpoint_url = Some(Moto::shared().endpoint());
    let archive = format!("location = \"s3://{bucket}/tls/\"\nmetrics_listen = \"127.0.0.1:0\"");
    cfg.archive = Some(toml::from_str(&archive).unwrap());

    let summary = sameday_reader::run_archive(cfg.clone(), CancellationToken::new(), true).await.unwrap();
    assert!(summary.files >= 1, "{summary:?}");
    let store = ObjectStore::new(Moto::shared().s3_client().await, format!("s3://{bucket}/tls/").parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    for o in store.list("").await.unwrap() {
        let name = o.key.rsplit('/').next().unwrap();
        store.download(&o.key, &dir.path().join(name)).await.unwrap();
        assert!(std::fs::read(dir.path().join(name)).unwrap() == std::fs::read(tls.binlog_dir().join(name)).unwrap());
    }

    // Without the CA the server certificate is not trusted: a clear error, nothing copied.
    let mut untrusted = cfg;
    untrusted.source.tls_ca_file = None;
    let err = sameday_reader::run_archive(untrusted, CancellationToken::new(), true).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1") && err.to_lowercase().contains("certificate"), "{err}");
}
