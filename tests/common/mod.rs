//! Shared set-up of the integration tests: a private database on the shared MariaDB, a
//! private stream on the shared kinesalite, daemon configs ([`config`]) and processes
//! ([`Daemon`]), the binlog position to start from.
//!
//! Every module of the test binary shares one MariaDB, kinesalite, fauxqs and moto (the
//! testkit's `shared()` servers live per process); a test that needs a server of its own
//! (kill, TLS, MINIMAL row image, a stack) starts one with `start()`.

mod config;
pub(crate) mod pipeline;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use sameday_core::{BinlogPosition, ChangeEnvelope};
use sameday_reader::ReaderConfig;
use sameday_testkit::{names, Fauxqs, Kinesalite, MariaDb, Moto};

pub(crate) use config::{source_config, ConsumerToml, ReaderToml, RouteToml, WorkerToml};

/// A test's database (on the shared MariaDB unless it asked for its own server), stream
/// and scratch directory.
pub(crate) struct Env {
    pub db: String,
    pub stream: String,
    pub dir: tempfile::TempDir,
    pub server_id: u32,
    own_server: Option<MariaDb>,
    /// A server a test module keeps for its own tests (other binlog settings).
    module_server: Option<&'static MariaDb>,
}

static NEXT_SERVER_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);

impl Env {
    pub(crate) async fn new(prefix: &str, shards: i32) -> Self {
        Self::on(None, prefix, shards).await
    }

    /// On a MariaDB of its own: for a test that measures the reader (peak memory), which
    /// other tests' binlog events on the shared server (a 20 MB row) would distort.
    pub(crate) async fn on_own_server(prefix: &str, shards: i32) -> Self {
        Self::on(Some(MariaDb::start()), prefix, shards).await
    }

    /// On `server`, a MariaDB this test started with settings of its own.
    pub(crate) async fn on_server(server: MariaDb, prefix: &str, shards: i32) -> Self {
        Self::on(Some(server), prefix, shards).await
    }

    /// On `server`, a MariaDB the test module shares among its tests.
    pub(crate) async fn on_module_server(server: &'static MariaDb, prefix: &str, shards: i32) -> Self {
        let db = server.create_database(prefix).await;
        Self { module_server: Some(server), ..Self::with_db(db, None, prefix, shards).await }
    }

    async fn on(own_server: Option<MariaDb>, prefix: &str, shards: i32) -> Self {
        let db = own_server.as_ref().unwrap_or_else(|| MariaDb::shared()).create_database(prefix).await;
        Self::with_db(db, own_server, prefix, shards).await
    }

    async fn with_db(db: String, own_server: Option<MariaDb>, prefix: &str, shards: i32) -> Self {
        let stream = names::unique(prefix);
        Kinesalite::shared().create_stream(&stream, shards).await;
        let server_id =
            NEXT_SERVER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + std::process::id() % 1000 * 1000;
        Self { db, stream, dir: tempfile::tempdir().expect("tempdir"), server_id, own_server, module_server: None }
    }

    /// The server this test's database is on.
    pub(crate) fn maria(&self) -> &MariaDb {
        self.own_server.as_ref().or(self.module_server).unwrap_or_else(|| MariaDb::shared())
    }

    pub(crate) fn checkpoint_path(&self) -> PathBuf {
        self.dir.path().join("checkpoint.json")
    }

    pub(crate) fn dead_letter_path(&self) -> PathBuf {
        self.dir.path().join("dead-letters.jsonl")
    }

    /// A reader config for this test's database and stream, starting at `start`.
    pub(crate) fn reader_toml(&self, start: &str) -> ReaderToml {
        ReaderToml::new(start, self.maria().port(), self.server_id, &self.stream)
            .dead_letter_path(&self.dead_letter_path())
            .include(&[&format!("{}.*", self.db)])
            .file_checkpoint(&self.checkpoint_path())
            .endpoint_url(Some(&Kinesalite::shared().endpoint()))
    }

    pub(crate) fn write_config(&self, start: &str) -> PathBuf {
        self.reader_toml(start).write(self.dir.path().join("reader.toml"))
    }

    pub(crate) fn config(&self, start: &str) -> ReaderConfig {
        sameday_core::config_file::load(Some(&self.write_config(start)), std::iter::empty()).expect("valid config")
    }

    /// Every change in the stream (aggregated records unpacked), parsed, in per-shard order.
    pub(crate) async fn records(&self) -> Vec<(String, ChangeEnvelope)> {
        user_records(&self.stream)
            .await
            .into_iter()
            .map(|(shard, _seq, _pk, data)| (shard, ChangeEnvelope::from_slice(&data).expect("valid envelope")))
            .collect()
    }

    pub(crate) async fn wait_for_records(&self, n: usize, deadline: Duration) -> Vec<(String, ChangeEnvelope)> {
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

/// Scenario tests that run several daemon processes and time their hand-overs (lease
/// take-over, kill -9 recovery, SIGTERM drains) hold one of these slots for their whole run,
/// so at most two of them share the machine's cores at once (CI has two cores) while the
/// lighter tests keep running beside them.
pub(crate) async fn scenario_slot() -> tokio::sync::SemaphorePermit<'static> {
    SCENARIO_SLOTS.acquire().await.expect("the scenario semaphore is never closed")
}

/// Both slots: for the scenarios that load the machine themselves (tens of thousands of
/// rows through a daemon), which would starve a timed hand-over running beside them.
pub(crate) async fn heavy_scenario_slot() -> tokio::sync::SemaphorePermit<'static> {
    SCENARIO_SLOTS.acquire_many(2).await.expect("the scenario semaphore is never closed")
}

static SCENARIO_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Logging and the AWS variables the SDK's default chain reads (the emulators accept any
/// credentials). Set once per process: the variables are global, and every test of the
/// binary runs beside others that read them.
pub(crate) fn set_aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sameday_core::logging::init();
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
    });
}

/// The stream's user records, in per-shard order: (shard, sequence number, partition key,
/// data), with each KPL aggregated record unpacked into its records (`sameday_core::kpl`),
/// as a consumer sees them.
pub(crate) async fn user_records(stream: &str) -> Vec<(String, String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (shard, seq, pk, data) in Kinesalite::shared().read_all(stream).await {
        for r in sameday_core::kpl::deaggregate(&data) {
            out.push((shard.clone(), seq.clone(), r.partition_key.unwrap_or_else(|| pk.clone()), r.data));
        }
    }
    out
}

/// `AWS_ENDPOINT_URL_<SERVICE>` for a daemon process: the shared kinesalite, fauxqs and
/// moto (DynamoDB, Step Functions and S3).
pub(crate) fn emulator_endpoints() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_KINESIS", Kinesalite::shared().endpoint()),
        ("AWS_ENDPOINT_URL_SQS", Fauxqs::shared().endpoint()),
        ("AWS_ENDPOINT_URL_DYNAMODB", Moto::shared().endpoint()),
        ("AWS_ENDPOINT_URL_SFN", Moto::shared().endpoint()),
        ("AWS_ENDPOINT_URL_S3", Moto::shared().endpoint()),
    ]
}

pub(crate) fn sameday_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sameday"))
}

/// `maria`'s current end of binlog (`SHOW MASTER STATUS`): a start position that sees
/// everything written after this call, with no race against the reader's start-up.
pub(crate) async fn master_status_of(maria: &MariaDb) -> BinlogPosition {
    use mysql_async::prelude::Queryable;
    let mut c = maria.conn().await;
    let row: mysql_async::Row =
        c.query_first("SHOW MASTER STATUS").await.expect("SHOW MASTER STATUS").expect("binlog on");
    let (file, pos): (String, u64) = (row.get(0).expect("file"), row.get(1).expect("pos"));
    let _ = c.disconnect().await;
    BinlogPosition::new(file, pos)
}

/// The shared MariaDB's current end of binlog.
pub(crate) async fn master_status() -> BinlogPosition {
    master_status_of(MariaDb::shared()).await
}

/// The shared MariaDB's current end of binlog as `FILE:POS`.
/// Every execution of `state_machine` (with `status`, when given) and its status, following
/// ListExecutions' pages; an execution listed twice fails the test.
pub(crate) async fn list_executions(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    status: Option<aws_sdk_sfn::types::ExecutionStatus>,
) -> std::collections::BTreeMap<String, aws_sdk_sfn::types::ExecutionStatus> {
    let mut out = std::collections::BTreeMap::new();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .set_status_filter(status.clone())
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .expect("ListExecutions");
        for e in page.executions() {
            let prev = out.insert(e.name().to_owned(), e.status().clone());
            assert!(prev.is_none(), "execution {} listed twice", e.name());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

pub(crate) async fn current_position() -> String {
    master_status().await.to_string()
}

/// A `sameday` daemon process of a test; killed when dropped.
pub(crate) struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub name: String,
}

impl Daemon {
    /// Runs `sameday SUBCOMMAND --config CONFIG` with `envs`, stderr to `log`.
    pub(crate) fn spawn(subcommand: &str, config: &Path, log: PathBuf, envs: &[(&str, String)]) -> Self {
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

    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM; asserts a clean exit and returns how long it took.
    pub(crate) fn terminate(&mut self) -> Duration {
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

    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early with {status}; log:\n{}", self.name, self.log_text());
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program of the test venv (`scripts/prereqs.sh` installs moto, cfn-lint, boto3 and
/// aws-kinesis-agg into `$SAMEDAY_CACHE/venv`).
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cache = std::env::var_os("SAMEDAY_CACHE").map(PathBuf::from).unwrap_or_else(|| root.join(".cache"));
    let bin = cache.join("venv/bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing; run `bash scripts/prereqs.sh` in {} (it installs the test venv)",
        bin.display(),
        root.display()
    );
    bin
}
