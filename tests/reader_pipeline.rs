//! The reader end to end through a real MariaDB and the Kinesis emulator.

use crate::common;

use std::time::Duration;

use crate::common::{master_status_of, set_aws_env, Env};
use sameday_core::Op;
use sameday_testkit::MariaDb;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn reader_streams_inserts_updates_and_deletes_in_commit_order() {
    set_aws_env();
    let env = Env::new("pipeline", 2).await;
    let maria = MariaDb::shared();
    maria.exec(&format!("CREATE TABLE {}.t (id INT PRIMARY KEY, v VARCHAR(20))", env.db)).await;
    let shutdown = CancellationToken::new();
    let start = common::current_position().await;
    let reader = tokio::spawn(sameday_reader::run_reader(env.config(&start), shutdown.clone()));
    let db = &env.db;
    maria
        .exec(&format!(
            "BEGIN; INSERT INTO {db}.t VALUES (1,'a'),(2,'b'),(3,'c'); COMMIT;
             UPDATE {db}.t SET v = 'a2' WHERE id = 1;
             BEGIN; DELETE FROM {db}.t WHERE id = 2; UPDATE {db}.t SET v = 'c2' WHERE id = 3; COMMIT;"
        ))
        .await;
    let records = env.wait_for_records(6, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let ops: Vec<(Op, i64)> = records.iter().map(|(_, e)| (e.op, e.key["id"].as_i64().unwrap())).collect();
    for id in 1..=3 {
        let per_key: Vec<Op> = ops.iter().filter(|(_, k)| *k == id).map(|(o, _)| *o).collect();
        let want = match id {
            1 => vec![Op::Insert, Op::Update],
            2 => vec![Op::Insert, Op::Delete],
            _ => vec![Op::Insert, Op::Update],
        };
        assert_eq!(per_key, want, "key {id}");
    }
    let upd = records.iter().find(|(_, e)| e.op == Op::Update && e.key["id"] == 1).unwrap();
    assert_eq!(upd.1.before.as_ref().unwrap()["v"], "a");
    assert_eq!(upd.1.after.as_ref().unwrap()["v"], "a2");
    let del = records.iter().find(|(_, e)| e.op == Op::Delete).unwrap();
    assert!(del.1.after.is_none());
    assert_eq!(del.1.before.as_ref().unwrap()["v"], "b");
    // The two changes of the last transaction share its id and are numbered in it.
    let last_txn: Vec<_> = records.iter().filter(|(_, e)| e.txn.id == del.1.txn.id).collect();
    assert_eq!(last_txn.len(), 2);
}

#[tokio::test]
async fn reader_streams_over_tls_verified_against_a_private_ca() {
    set_aws_env();
    let tls = MariaDb::start_with(sameday_testkit::MariaDbOptions::default().tls(true));
    let env = Env::new("tls", 1).await;
    let db = sameday_testkit::names::unique("tlsdb");
    tls.exec(&format!("CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)")).await;
    // A fresh private server: reading from its first binlog misses nothing.
    let mut cfg = env.config("earliest");
    cfg.source.port = tls.port();
    cfg.source.tls = sameday_mysql::TlsMode::Verify;
    cfg.source.tls_ca_file = Some(tls.ca_pem_path().expect("TLS instance has a CA").to_path_buf());
    cfg.filter.include = vec![format!("{db}.*")];
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(cfg.clone(), shutdown.clone()));
    tls.exec(&format!("INSERT INTO {db}.t VALUES (1, 'over tls')")).await;
    let records = env.wait_for_records(1, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    assert_eq!(records[0].1.after.as_ref().unwrap()["v"], "over tls");

    // Without the CA the server certificate is not trusted: a clear error, no stream.
    let mut untrusted = cfg;
    untrusted.source.tls_ca_file = None;
    let err = sameday_reader::run_reader(untrusted, CancellationToken::new()).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1") && err.to_lowercase().contains("certificate"), "{err}");
}

async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the metrics listener");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn metrics_and_healthz_report_rows_lag_and_readiness() {
    set_aws_env();
    let env = Env::new("metrics", 1).await;
    let maria = MariaDb::shared();
    maria.exec(&format!("CREATE TABLE {}.t (id INT PRIMARY KEY)", env.db)).await;
    // 30 days of binlogs (no other test depends on the shared server's expiry): the headroom
    // metric appears.
    maria.exec("SET GLOBAL binlog_expire_logs_seconds = 2592000").await;
    let mut cfg = env.config("latest");
    let addr = format!("127.0.0.1:{}", free_port());
    cfg.metrics.listen = addr.parse().unwrap();
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(cfg, shutdown.clone()));
    sameday_testkit::wait_until(Duration::from_secs(20), "healthz answers 200", || async {
        tokio::net::TcpStream::connect(&addr).await.is_ok() && http_get(&addr, "/healthz").await.0 == 200
    })
    .await;
    maria.exec(&format!("INSERT INTO {}.t VALUES (1),(2),(3); DELETE FROM {}.t WHERE id = 3", env.db, env.db)).await;
    env.wait_for_records(4, Duration::from_secs(20)).await;
    let want_insert = format!("sameday_reader_rows_total{{table=\"{}.t\",op=\"insert\"}} 3", env.db);
    let want_delete = format!("sameday_reader_rows_total{{table=\"{}.t\",op=\"delete\"}} 1", env.db);
    sameday_testkit::wait_until(Duration::from_secs(10), "metrics count the rows", || async {
        let (_, body) = http_get(&addr, "/metrics").await;
        body.contains(&want_insert) && body.contains(&want_delete) && body.contains("sameday_kinesis_records_total 4")
    })
    .await;
    // Idle and caught up: the server's heartbeat brings the lag to zero.
    sameday_testkit::wait_until(Duration::from_secs(10), "lag back to 0 on heartbeat", || async {
        http_get(&addr, "/metrics").await.1.lines().any(|l| l == "sameday_reader_lag_seconds 0.0")
    })
    .await;
    let (_, body) = http_get(&addr, "/metrics").await;
    for name in [
        "sameday_reader_lag_seconds",
        "sameday_reader_checkpoint_age_seconds",
        "sameday_kinesis_batch_records_bucket",
        "sameday_reader_transactions_total",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    // The checkpoint points into the binlog being written: the whole retention is left.
    sameday_testkit::wait_until(Duration::from_secs(10), "retention headroom reported", || async {
        http_get(&addr, "/metrics")
            .await
            .1
            .lines()
            .any(|l| l == "sameday_reader_binlog_retention_headroom_seconds 2592000.0")
    })
    .await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
}

#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    set_aws_env();
    let env = Env::new("secret", 1).await;
    let cfg_path = env.write_config("latest");
    let secret = "hunter2-do-not-print";
    // root has no password on the test server, so a password makes the login fail: the
    // error path is where secrets usually leak.
    let out = std::process::Command::new(common::sameday_bin())
        .args(["reader", "--config"])
        .arg(&cfg_path)
        .env("SAMEDAY__SOURCE__PASSWORD", secret)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    assert!(text.contains("access denied") || text.contains("Access denied"), "{text}");
    assert!(!text.contains(secret), "the password leaked:\n{text}");
    // The URL form used by `tail` is redacted in its own errors too.
    let out = std::process::Command::new(common::sameday_bin())
        .args(["tail", "--source", &format!("mysql://root:{secret}@127.0.0.1:notaport")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("bad port"), "{text}");
    assert!(!text.contains(secret), "the password leaked:\n{text}");
}

#[tokio::test]
async fn reader_starts_from_a_mariadb_gtid_position() {
    use mysql_async::prelude::Queryable;
    set_aws_env();
    let env = Env::new("gtidstart", 1).await;
    let maria = MariaDb::shared();
    maria.exec(&format!("CREATE TABLE {}.t (id INT PRIMARY KEY)", env.db)).await;
    let mut conn = maria.conn().await;
    let pos: String = conn.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();
    drop(conn);
    // Written before the reader starts, after the GTID position: must be streamed.
    maria.exec(&format!("INSERT INTO {}.t VALUES (1),(2)", env.db)).await;
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(env.config(&pos), shutdown.clone()));
    let records = env.wait_for_records(2, Duration::from_secs(20)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let ids: Vec<i64> = records.iter().map(|(_, e)| e.key["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(records[0].1.source.gtid.is_some());
    // The checkpoint carries the executed GTID set, including this transaction.
    let cp: sameday_core::checkpoint::Checkpoint =
        serde_json::from_slice(&std::fs::read(env.checkpoint_path()).unwrap()).unwrap();
    let gtid = records[0].1.source.gtid.clone().unwrap();
    let domain = gtid.split('-').next().unwrap();
    assert!(cp.gtid_set.unwrap().to_string().split(',').any(|g| g.starts_with(&format!("{domain}-"))));
}

#[tokio::test]
async fn dms_format_matches_the_aws_dms_kinesis_shape() {
    let maria = MariaDb::shared();
    let db = maria.create_database("dms").await;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(10))")).await;
    let from = master_status_of(maria).await.to_string();
    maria
        .exec(&format!("INSERT INTO {db}.t VALUES (1,'a'); UPDATE {db}.t SET v='b' WHERE id=1; DELETE FROM {db}.t"))
        .await;
    let to = master_status_of(maria).await.to_string();
    let out = std::process::Command::new(common::sameday_bin())
        .args([
            "replay",
            "--source",
            &format!("mysql://root@127.0.0.1:{}", maria.port()),
            "--tables",
            &format!("{db}.*"),
        ])
        .args(["--from", &from, "--to", &to, "--format", "dms", "--sink", "stdout"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let ops: Vec<&str> = lines.iter().map(|l| l["metadata"]["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["insert", "update", "delete"]);
    for l in &lines {
        assert_eq!(l["metadata"]["record-type"], "data");
        assert_eq!(l["metadata"]["schema-name"], db.as_str());
        assert_eq!(l["metadata"]["table-name"], "t");
        assert!(l["metadata"]["transaction-id"].is_u64(), "{l}");
        assert!(l["metadata"]["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(lines[1]["data"], serde_json::json!({"id": 1, "v": "b"}));
    assert_eq!(lines[1]["before-image"], serde_json::json!({"id": 1, "v": "a"}));
    assert_eq!(lines[2]["data"], serde_json::json!({"id": 1, "v": "b"}), "a delete carries the deleted row");
}

#[tokio::test]
async fn reader_reconnects_after_the_server_drops_its_connection() {
    use mysql_async::prelude::Queryable;
    set_aws_env();
    // A private server: killing replication threads must not disturb other tests' readers.
    let maria = MariaDb::start();
    let env = Env::new("reconnect", 1).await;
    let db = sameday_testkit::names::unique("recon");
    maria.exec(&format!("CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY)")).await;
    // From the start of this private server's binlog: nothing written before the reader
    // connects can be missed.
    let mut cfg = env.config("earliest");
    cfg.source.port = maria.port();
    cfg.filter.include = vec![format!("{db}.*")];
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(cfg, shutdown.clone()));
    maria.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    env.wait_for_records(1, Duration::from_secs(20)).await;
    let mut conn = maria.conn().await;
    let dumps: Vec<u64> =
        conn.query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").await.unwrap();
    assert_eq!(dumps.len(), 1, "one replication connection");
    conn.query_drop(format!("KILL {}", dumps[0])).await.unwrap();
    maria.exec(&format!("INSERT INTO {db}.t VALUES (2); INSERT INTO {db}.t VALUES (3)")).await;
    let records = env.wait_for_records(3, Duration::from_secs(30)).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    let mut ids: Vec<i64> = records.iter().map(|(_, e)| e.key["id"].as_i64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids, [1, 2, 3], "no change lost across the reconnect");
}

#[tokio::test]
async fn filters_drop_excluded_tables_and_columns() {
    set_aws_env();
    let env = Env::new("filters", 1).await;
    let maria = MariaDb::shared();
    let db = &env.db;
    maria
        .exec(&format!(
            "CREATE TABLE {db}.users (id INT PRIMARY KEY, email VARCHAR(50), password VARCHAR(50));
             CREATE TABLE {db}.audit_log (id INT PRIMARY KEY)"
        ))
        .await;
    let mut cfg = env.config(&common::current_position().await);
    cfg.filter.exclude = vec![format!("{db}.audit_*")];
    cfg.filter.exclude_columns = vec![format!("{db}.users.password")];
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(sameday_reader::run_reader(cfg, shutdown.clone()));
    maria
        .exec(&format!(
            "INSERT INTO {db}.audit_log VALUES (1); INSERT INTO {db}.users VALUES (1, 'a@x', 's3cret');
             INSERT INTO {db}.audit_log VALUES (2); UPDATE {db}.users SET email = 'b@x' WHERE id = 1"
        ))
        .await;
    let records = env.wait_for_records(2, Duration::from_secs(20)).await;
    // Give a wrongly included audit row time to show up before concluding.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = if env.records().await.len() > records.len() { env.records().await } else { records };
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    assert_eq!(records.len(), 2, "only the users changes: {records:?}");
    for (_, e) in &records {
        assert_eq!(e.table, "users");
        for image in [&e.before, &e.after].into_iter().flatten() {
            assert!(!image.contains_key("password"), "excluded column leaked: {image:?}");
            assert!(image.contains_key("email"));
        }
    }
}

#[tokio::test]
async fn tail_prints_change_records_without_aws_or_config() {
    use std::io::BufRead;
    let maria = MariaDb::shared();
    let db = maria.create_database("tail").await;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)")).await;
    let from = master_status_of(maria).await.to_string();
    let mut child = std::process::Command::new(common::sameday_bin())
        .args(["tail", "--source", &format!("mysql://root@127.0.0.1:{}", maria.port())])
        .args(["--tables", &format!("{db}.*"), "--from", &from])
        .env_remove("AWS_ACCESS_KEY_ID")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    maria.exec(&format!("INSERT INTO {db}.t VALUES (1, 'hello'); DELETE FROM {db}.t")).await;
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout).lines().take(2).map(|l| l.unwrap()).collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), lines).await.expect("tail printed in time").unwrap();
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "tail exits cleanly on SIGTERM");
    let envs: Vec<sameday_core::ChangeEnvelope> =
        lines.iter().map(|l| sameday_core::ChangeEnvelope::from_slice(l.as_bytes()).unwrap()).collect();
    assert_eq!(envs[0].op, Op::Insert);
    assert_eq!(envs[0].after.as_ref().unwrap()["v"], "hello");
    assert_eq!(envs[1].op, Op::Delete);
}

#[tokio::test]
async fn positions_shows_and_sets_the_checkpoint() {
    set_aws_env();
    let env = Env::new("positions", 1).await;
    let cfg = env.write_config("latest");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::sameday_bin()).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cfg_s = cfg.to_str().unwrap();
    let (ok, out, err) = run(&["positions", "--config", cfg_s]);
    assert!(ok && out.contains("no checkpoint"), "{out}{err}");
    let here = common::current_position().await;
    let (ok, out, err) = run(&["positions", "--config", cfg_s, "--set", &here]);
    assert!(ok && out.contains(&format!("checkpoint set to {here}")), "{out}{err}");
    let (ok, out, _) = run(&["positions", "--config", cfg_s]);
    assert!(ok && out.contains(&here), "{out}");
    // A position the server does not have is refused, and the checkpoint stays.
    let (ok, _, err) = run(&["positions", "--config", cfg_s, "--set", "mysql-bin.999999:4"]);
    assert!(!ok && err.contains("no longer on"), "{err}");
    let (_, out, _) = run(&["positions", "--config", cfg_s]);
    assert!(out.contains(&here), "{out}");
}

/// Two operator commands at once: `tail` and `tail` (and `replay`) pick replica ids that do
/// not collide and say which; two explicitly given equal ids fail with an error naming the id
/// and `--server-id`.
#[tokio::test]
async fn tails_run_side_by_side_and_a_clashing_server_id_names_the_option() {
    use std::io::BufRead;
    let maria = MariaDb::shared();
    let db = maria.create_database("tails").await;
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)")).await;
    let from = master_status_of(maria).await.to_string();
    let source = format!("mysql://root@127.0.0.1:{}", maria.port());
    let spawn = |extra: &[&str], log: &std::path::Path| {
        std::process::Command::new(common::sameday_bin())
            .args(["tail", "--source", &source, "--tables", &format!("{db}.*"), "--from", &from])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn(&[], &log_a);
    let mut b = spawn(&[], &log_b);
    maria.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    for child in [&mut a, &mut b] {
        let stdout = child.stdout.take().unwrap();
        let line =
            tokio::task::spawn_blocking(move || std::io::BufReader::new(stdout).lines().next().map(|l| l.unwrap()));
        let line = tokio::time::timeout(Duration::from_secs(20), line).await.expect("tail printed in time").unwrap();
        assert!(line.is_some_and(|l| l.contains("\"op\":\"insert\"")), "both tails print the change");
    }
    for child in [&mut a, &mut b] {
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(child.wait().unwrap().success());
    }
    let said = std::fs::read_to_string(&log_a).unwrap();
    assert!(said.contains("registering with the source as replica server_id"), "{said}");

    // The same explicit id twice: the source disconnects the earlier one (ERROR 4052), which
    // stops with an error naming the id and the option.
    let first_log = dir.path().join("c.log");
    let mut first = spawn(&["--server-id", "777"], &first_log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut second = spawn(&["--server-id", "777"], &dir.path().join("d.log"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the displaced tail kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    let _ = second.wait();
    let err = std::fs::read_to_string(&first_log).unwrap();
    assert!(!status.success(), "the displaced tail must fail: {err}");
    assert!(err.contains("server_id 777") && err.contains("--server-id"), "{err}");
}

/// Account statements carry passwords (MariaDB writes `IDENTIFIED BY 'plaintext'` into the
/// binlog as issued, MySQL a hash): with a watched schema as the default database, none of
/// them reaches the reader's log, its records or its dead letters; DDL on a watched table is
/// logged by kind and table only.
#[tokio::test]
async fn passwords_in_account_statements_never_reach_logs_or_records() {
    set_aws_env();
    let env = Env::new("secrets", 1).await;
    let db = &env.db;
    let maria = MariaDb::shared();
    maria.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)")).await;
    let cfg = env.write_config(&common::current_position().await);
    let log = env.dir.path().join("reader.log");
    let mut reader = common::Daemon::spawn("reader", &cfg, log.clone(), &common::emulator_endpoints());
    let user = format!("u_{}", &db[db.len() - 6..]);
    let secrets =
        ["Plain-S3cret-A1", "Plain-S3cret-B2", "Plain-S3cret-C3", "*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29"];
    maria
        .exec(&format!(
            "USE {db};
             CREATE USER '{user}'@'%' IDENTIFIED BY '{a}';
             ALTER USER '{user}'@'%' IDENTIFIED BY '{b}';
             SET PASSWORD FOR '{user}'@'%' = PASSWORD('{c}');
             CREATE OR REPLACE USER '{user}2'@'%' IDENTIFIED BY PASSWORD '{h}';
             GRANT SELECT ON {db}.* TO '{user}'@'%';
             REVOKE SELECT ON {db}.* FROM '{user}'@'%';
             CREATE ROLE {user}_r; DROP ROLE {user}_r;
             DROP USER '{user}'@'%'; DROP USER '{user}2'@'%';
             ALTER TABLE t ADD c INT;
             INSERT INTO t VALUES (1, 2);",
            a = secrets[0],
            b = secrets[1],
            c = secrets[2],
            h = secrets[3],
        ))
        .await;
    let records = env.wait_for_records(1, Duration::from_secs(20)).await;
    // Let the log catch up with the ALTER TABLE line.
    sameday_testkit::wait_until(Duration::from_secs(10), "the schema change in the log", || async {
        std::fs::read_to_string(&log).unwrap_or_default().contains("schema change on a watched schema")
    })
    .await;
    reader.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    let stored: Vec<String> = records.iter().map(|(_, e)| serde_json::to_string(e).unwrap()).collect();
    let dead = std::fs::read_to_string(env.dead_letter_path()).unwrap_or_default();
    for secret in secrets {
        assert!(!text.contains(secret), "the reader's log holds {secret}:\n{text}");
        assert!(!stored.iter().any(|r| r.contains(secret)) && !dead.contains(secret), "{secret} in a record");
    }
    assert!(!text.contains("IDENTIFIED") && !text.contains("GRANT"), "statement text in the log:\n{text}");
    let ddl = text.lines().find(|l| l.contains("schema change")).unwrap();
    assert!(ddl.contains("\"kind\":\"ALTER TABLE\"") && ddl.contains(&format!("{db}.t")), "{ddl}");
    assert!(!ddl.contains("ADD c"), "{ddl}");
}
