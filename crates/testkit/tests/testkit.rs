//! Tests of the testkit itself: the servers come up with the promised settings, are
//! reachable through the helpers, and do not outlive their owner.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, SslOpts};
use sameday_testkit::{names, wait_until, Fauxqs, Kinesalite, MariaDb, MariaDbOptions, Moto};

#[tokio::test]
async fn shared_mariadb_has_cdc_binlog_settings() {
    let db = MariaDb::shared();
    let mut conn = db.conn().await;
    let row: (i64, String, String, String, i64) = conn
        .query_first(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, \
             @@gtid_strict_mode",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (1, "ROW".into(), "FULL".into(), "FULL".into(), 1));
    let (server_id, port): (i64, i64) = conn.query_first("SELECT @@server_id, @@port").await.unwrap().unwrap();
    assert_eq!((server_id, port), (1, i64::from(db.port())));
    assert_ne!(db.port(), 3306);
    assert!(db.binlog_dir().join("mysql-bin.index").is_file());
    assert!(db.error_log_path().is_file());
    assert_eq!(db.url("x"), format!("mysql://root@127.0.0.1:{}/x", db.port()));
}

#[tokio::test]
async fn shared_mariadb_runs_ddl_and_dml() {
    let db = MariaDb::shared();
    let schema = db.create_database("testkit").await;
    db.exec(&format!(
        "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, name VARCHAR(20)); \
         INSERT INTO `{schema}`.t VALUES (1, 'one')"
    ))
    .await;
    // The URL form works too.
    let mut conn = Conn::from_url(db.url(&schema)).await.unwrap();
    let name: Option<String> = conn.query_first("SELECT name FROM t WHERE id = 1").await.unwrap();
    assert_eq!(name.as_deref(), Some("one"));
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn create_database_gives_distinct_names() {
    let db = MariaDb::shared();
    let a = db.create_database("same").await;
    let b = db.create_database("same").await;
    assert_ne!(a, b);
    let mut conn = db.conn().await;
    let n: Option<i64> = conn
        .exec_first("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name IN (?, ?)", (&a, &b))
        .await
        .unwrap();
    assert_eq!(n, Some(2));
}

#[test]
fn shared_mariadb_is_one_instance_across_threads() {
    let ports: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| MariaDb::shared().port())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ports.windows(2).all(|w| w[0] == w[1]), "{ports:?}");
}

#[tokio::test]
async fn private_mariadb_with_tls_and_extra_args() {
    let db = MariaDb::start_with(MariaDbOptions::default().tls(true).arg("--binlog_row_image=MINIMAL"));
    assert_ne!(db.port(), MariaDb::shared().port());
    let ca = db.ca_pem_path().expect("TLS instance has a CA");
    assert!(ca.is_file());

    // Verified against the generated CA, by IP address.
    let mut conn = Conn::new(db.opts(None).ssl_opts(db.ssl_opts().unwrap())).await.unwrap();
    let cipher: Option<(String, String)> = conn.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'").await.unwrap();
    let cipher = cipher.unwrap().1;
    assert!(!cipher.is_empty(), "connection is not encrypted");
    let image: Option<String> = conn.query_first("SELECT @@binlog_row_image").await.unwrap();
    assert_eq!(image.as_deref(), Some("MINIMAL"));
    conn.disconnect().await.unwrap();

    // Without the CA the certificate must be rejected, i.e. verification is real.
    let untrusted = Conn::new(db.opts(None).ssl_opts(SslOpts::default())).await;
    assert!(untrusted.is_err(), "TLS without the test CA should fail verification");

    // Plain connections still work.
    db.exec("SELECT 1").await;
}

#[tokio::test]
async fn private_mariadb_stops_on_drop() {
    let db = MariaDb::start();
    let (port, dir, pid) = (db.port(), db.scratch_dir().to_path_buf(), db.pid());
    assert!(db.startup_time() < Duration::from_secs(60));
    db.exec("CREATE DATABASE dropme").await;
    drop(db);
    assert!(!dir.exists(), "{} should be removed", dir.display());
    assert!(!process_alive(pid), "mariadbd {pid} still running");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn kinesalite_stream_roundtrip() {
    let kinesis = Kinesalite::shared();
    assert!(kinesis.endpoint().starts_with("http://127.0.0.1:"));
    let stream = names::unique("testkit_stream");
    kinesis.create_stream(&stream, 2).await;
    let client = kinesis.kinesis_client().await;
    for (key, data) in [("a", "first"), ("b", "second"), ("a", "third")] {
        client
            .put_record()
            .stream_name(&stream)
            .partition_key(key)
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    let records = kinesis.read_all(&stream).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let mut for_a: Vec<&[u8]> = records.iter().filter(|r| r.2 == "a").map(|r| r.3.as_slice()).collect();
    assert_eq!(for_a.len(), 2);
    assert_eq!(for_a.remove(0), b"first", "per-key order is kept");
    assert!(records.iter().any(|r| r.2 == "b" && r.3 == b"second"));
    // Same key, same shard.
    let shards: Vec<&str> = records.iter().filter(|r| r.2 == "a").map(|r| r.0.as_str()).collect();
    assert_eq!(shards[0], shards[1]);
    // An empty stream reads as empty.
    let empty = names::unique("testkit_empty");
    kinesis.create_stream(&empty, 1).await;
    assert!(kinesis.read_all(&empty).await.is_empty());
}

#[tokio::test]
async fn moto_dynamodb_roundtrip() {
    let moto = Moto::shared();
    let ddb = moto.dynamodb_client().await;
    let table = names::unique("testkit_table");
    ddb.create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    ddb.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("k1".into()))
        .item("value", AttributeValue::N("42".into()))
        .send()
        .await
        .unwrap();
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("k1".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("item exists");
    assert_eq!(item.get("value"), Some(&AttributeValue::N("42".into())));
}

#[test]
fn fauxqs_answers_http() {
    let fauxqs = Fauxqs::shared();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", fauxqs.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 "), "{response:?}");
}

#[tokio::test]
async fn wait_until_returns_once_true() {
    let mut calls = 0;
    wait_until(Duration::from_secs(5), "third call", || {
        calls += 1;
        let done = calls >= 3;
        async move { done }
    })
    .await;
    assert_eq!(calls, 3);
}

#[tokio::test]
#[should_panic(expected = "timed out after 200ms waiting for never")]
async fn wait_until_panics_on_timeout() {
    wait_until(Duration::from_millis(200), "never", || async { false }).await;
}

/// Child-process half of `servers_die_with_a_killed_test_process`: starts servers, prints
/// where they are, and sleeps until killed. A no-op in a normal test run.
#[tokio::test]
async fn victim_process() {
    if std::env::var_os("SAMEDAY_TESTKIT_VICTIM").is_none() {
        return;
    }
    let db = MariaDb::shared();
    let kinesalite = Kinesalite::shared();
    println!("VICTIM {} {} {} {}", db.pid(), db.port(), db.scratch_dir().display(), kinesalite.pid());
    std::io::stdout().flush().unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn servers_die_with_a_killed_test_process() {
    let mut victim = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "victim_process", "--nocapture", "--test-threads=1"])
        .env("SAMEDAY_TESTKIT_VICTIM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = victim.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map(|l| l.unwrap())
        // libtest has already written "test victim_process ... " on the same line
        .find_map(|l| l.split_once("VICTIM ").map(|(_, rest)| rest.to_string()))
        .expect("victim printed its servers");
    let parts: Vec<&str> = line.split(' ').collect();
    let (db_pid, port, dir, kinesalite_pid): (u32, u16, &Path, u32) =
        (parts[0].parse().unwrap(), parts[1].parse().unwrap(), Path::new(parts[2]), parts[3].parse().unwrap());
    assert!(process_alive(db_pid) && process_alive(kinesalite_pid));

    victim.kill().unwrap(); // SIGKILL: no destructors, no atexit
    victim.wait().unwrap();

    wait_until(Duration::from_secs(10), "the victim's mariadbd and kinesalite to exit", || async {
        !process_alive(db_pid) && !process_alive(kinesalite_pid)
    })
    .await;
    wait_until(Duration::from_secs(10), "the victim's MariaDB dir to be removed", || async { !dir.exists() }).await;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Whether `pid` is a live (non-zombie) process.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesised command name
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Runs `sameday-stack ARGS --dir DIR`; (exit code, stdout, stderr).
fn sameday_stack(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sameday-stack"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("SAMEDAY_STACK_DIR")
        .output()
        .expect("running sameday-stack");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Stops a stack when a test fails half-way.
struct StackGuard<'a>(&'a Path);

impl Drop for StackGuard<'_> {
    fn drop(&mut self) {
        let _ = sameday_stack(self.0, &["down"]);
    }
}

/// POSTs an SQS JSON-protocol call to `url` as curl would (the host is resolved as
/// written); returns the response body.
fn sqs_call(url: &str, action: &str, body: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http URL: {url}"));
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(authority).unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nX-Amz-Target: AmazonSQS.{action}\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{action} at {url}: {response}");
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// The string value of `"key":"..."` in a flat JSON text.
fn json_str(json: &str, key: &str) -> String {
    let start = json.find(&format!("\"{key}\":\"")).unwrap_or_else(|| panic!("no {key} in {json}")) + key.len() + 4;
    json[start..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn stack_up_prints_a_working_environment_and_down_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("stack");
    let _guard = StackGuard(&dir);

    let (code, stdout, stderr) = sameday_stack(&dir, &["up"]);
    assert_eq!(code, 0, "up failed: {stderr}");
    let env: std::collections::HashMap<String, String> = stdout
        .lines()
        .map(|l| {
            let (k, v) = l.strip_prefix("export ").and_then(|l| l.split_once('=')).unwrap_or_else(|| panic!("{l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    for key in [
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SFN",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_CLOUDFORMATION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "SAMEDAY_MYSQL_URL",
    ] {
        assert!(env.contains_key(key), "{key} missing from:\n{stdout}");
    }

    // Kinesis
    let kinesis = aws_sdk_kinesis::Client::new(&sameday_testkit::aws_config(&env["AWS_ENDPOINT_URL_KINESIS"]).await);
    kinesis.list_streams().send().await.expect("ListStreams at the printed Kinesis endpoint");
    // SQS: the queue URL fauxqs hands out works as printed.
    let sqs = &env["AWS_ENDPOINT_URL_SQS"];
    let queue = names::unique("stack_queue");
    let url = json_str(&sqs_call(sqs, "CreateQueue", &format!(r#"{{"QueueName":"{queue}"}}"#)), "QueueUrl");
    assert_eq!(url, format!("{sqs}/000000000000/{queue}"));
    let sent = format!(r#"{{"QueueUrl":"{url}","MessageBody":"hello"}}"#);
    sqs_call(&url, "SendMessage", &sent);
    let got = sqs_call(&url, "ReceiveMessage", &format!(r#"{{"QueueUrl":"{url}"}}"#));
    assert_eq!(json_str(&got, "Body"), "hello");
    // DynamoDB and Step Functions (moto)
    let moto = sameday_testkit::aws_config(&env["AWS_ENDPOINT_URL_DYNAMODB"]).await;
    aws_sdk_dynamodb::Client::new(&moto).list_tables().send().await.expect("ListTables");
    aws_sdk_sfn::Client::new(&moto).list_state_machines().send().await.expect("ListStateMachines");
    // MariaDB with the binlog on
    let mut conn = Conn::from_url(env["SAMEDAY_MYSQL_URL"].as_str()).await.expect("connecting to SAMEDAY_MYSQL_URL");
    let row: (i64, String, String, String) = conn
        .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (1, "ROW".into(), "FULL".into(), "FULL".into()));
    conn.query_drop("CREATE DATABASE kept").await.unwrap();
    conn.disconnect().await.unwrap();

    // Idempotent: a second `up` keeps the running servers and prints the same environment.
    let (code, again, stderr) = sameday_stack(&dir, &["up"]);
    assert_eq!((code, again.as_str()), (0, stdout.as_str()), "{stderr}");
    let (code, status, _) = sameday_stack(&dir, &["status"]);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status.lines().filter(|l| l.contains(" running ")).count(), 4, "{status}");

    // The pids and ports from the state file, then down.
    let state = std::fs::read_to_string(dir.join("state")).unwrap();
    let servers: Vec<(u32, u16)> = state
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(servers.len(), 4, "{state}");
    let (code, _, stderr) = sameday_stack(&dir, &["down"]);
    assert_eq!(code, 0, "{stderr}");
    for (pid, port) in &servers {
        assert!(!process_alive(*pid), "pid {pid} still runs after down");
        assert!(std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(), "port {port} still open after down");
    }
    assert!(dir.join("mariadb/data/kept").is_dir(), "down keeps the MariaDB datadir");
    let (code, status, _) = sameday_stack(&dir, &["status"]);
    assert_eq!(code, 3, "{status}");
    let (code, _, _) = sameday_stack(&dir, &["env"]);
    assert_eq!(code, 3);

    // Up again: MariaDB comes back with its data; down --purge removes everything.
    let (code, _, stderr) = sameday_stack(&dir, &["up", "--only", "mariadb"]);
    assert_eq!(code, 0, "{stderr}");
    let mut conn = Conn::from_url(env["SAMEDAY_MYSQL_URL"].as_str()).await.expect("MariaDB back on its port");
    let kept: Option<String> = conn.query_first("SHOW DATABASES LIKE 'kept'").await.unwrap();
    assert_eq!(kept.as_deref(), Some("kept"));
    conn.disconnect().await.unwrap();
    let (code, _, stderr) = sameday_stack(&dir, &["down", "--purge"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.exists(), "down --purge removes the stack dir");
}
