//! Shared set-up for the reader's integration tests: a private database on the shared
//! MariaDB, a private stream on the shared kinesalite, and a reader config pointing at both.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sameday_core::ChangeEnvelope;
use sameday_reader::config::ReaderConfig;
use sameday_testkit::{names, Fauxqs, Kinesalite, MariaDb, Moto};

pub struct Env {
    pub db: String,
    pub stream: String,
    pub dir: tempfile::TempDir,
    pub server_id: u32,
}

static NEXT_SERVER_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);

impl Env {
    pub async fn new(prefix: &str, shards: i32) -> Self {
        let maria = MariaDb::shared();
        let db = maria.create_database(prefix).await;
        let stream = names::unique(prefix);
        Kinesalite::shared().create_stream(&stream, shards).await;
        let server_id =
            NEXT_SERVER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + std::process::id() % 1000 * 1000;
        Self { db, stream, dir: tempfile::tempdir().expect("tempdir"), server_id }
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.path().join("checkpoint.json")
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.path().join("dead-letters.jsonl")
    }

    /// A reader config for this test's database and stream, as TOML text.
    pub fn config_toml(&self, start: &str) -> String {
        let maria = MariaDb::shared();
        format!(
            r#"start_position = "{start}"
dead_letter_path = "{dlq}"
[source]
host = "127.0.0.1"
port = {port}
user = "root"
server_id = {sid}
tls = "disabled"
heartbeat_secs = 1
[filter]
include = ["{db}.*"]
[kinesis]
stream = "{stream}"
linger_ms = 5
[checkpoint]
kind = "file"
path = "{cp}"
interval_ms = 100
[metrics]
listen = "127.0.0.1:0"
[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
"#,
            dlq = self.dead_letter_path().display(),
            port = maria.port(),
            sid = self.server_id,
            db = self.db,
            stream = self.stream,
            cp = self.checkpoint_path().display(),
            endpoint = Kinesalite::shared().endpoint(),
        )
    }

    pub fn write_config(&self, start: &str) -> PathBuf {
        let p = self.dir.path().join("reader.toml");
        std::fs::write(&p, self.config_toml(start)).expect("write config");
        p
    }

    pub fn config(&self, start: &str) -> ReaderConfig {
        sameday_core::config_file::load(Some(&self.write_config(start)), std::iter::empty()).expect("valid config")
    }

    /// Every record in the stream, parsed, in per-shard order.
    pub async fn records(&self) -> Vec<(String, ChangeEnvelope)> {
        Kinesalite::shared()
            .read_all(&self.stream)
            .await
            .into_iter()
            .map(|(shard, _seq, _pk, data)| (shard, ChangeEnvelope::from_slice(&data).expect("valid envelope")))
            .collect()
    }

    pub async fn wait_for_records(&self, n: usize, deadline: Duration) -> Vec<(String, ChangeEnvelope)> {
        let start = std::time::Instant::now();
        loop {
            let got = self.records().await;
            if got.len() >= n {
                return got;
            }
            if start.elapsed() > deadline {
                panic!("only {} of {n} records arrived in {deadline:?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn set_aws_env() {
    sameday_core::logging::init();
    // The SDK's default chain needs credentials; the emulators accept any.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
}

/// `AWS_ENDPOINT_URL_<SERVICE>` for a daemon process: the shared kinesalite, fauxqs and
/// moto (DynamoDB and Step Functions).
pub fn emulator_endpoints() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_KINESIS", Kinesalite::shared().endpoint()),
        ("AWS_ENDPOINT_URL_SQS", Fauxqs::shared().endpoint()),
        ("AWS_ENDPOINT_URL_DYNAMODB", Moto::shared().endpoint()),
        ("AWS_ENDPOINT_URL_SFN", Moto::shared().endpoint()),
    ]
}

pub fn sameday_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sameday"))
}

/// The shared MariaDB's current end of binlog as `FILE:POS`: a start position that sees
/// everything written after this call, with no race against the reader's start-up.
pub async fn current_position() -> String {
    use mysql_async::prelude::Queryable;
    let mut c = MariaDb::shared().conn().await;
    let row: mysql_async::Row =
        c.query_first("SHOW MASTER STATUS").await.expect("SHOW MASTER STATUS").expect("binlog on");
    let (file, pos): (String, u64) = (row.get(0).expect("file"), row.get(1).expect("pos"));
    let _ = c.disconnect().await;
    format!("{file}:{pos}")
}

/// A `sameday` daemon process of a test; killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub name: String,
}

impl Daemon {
    /// Runs `sameday SUBCOMMAND --config CONFIG` with `envs`, stderr to `log`.
    pub fn spawn(subcommand: &str, config: &Path, log: PathBuf, envs: &[(&str, String)]) -> Self {
        let child = std::process::Command::new(sameday_bin())
            .args([subcommand, "--config"])
            .arg(config)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", format!("info,sameday_{subcommand}=debug"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sameday {subcommand}: {e}"));
        Self { child, log, name: subcommand.to_owned() }
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM; asserts a clean exit and returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let start = std::time::Instant::now();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {}", self.name);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "{} exited with {status}; log:\n{}", self.name, self.log_text());
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early with {status}; log:\n{}", self.name, self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
