//! Local AWS emulators on free loopback ports: kinesalite (Kinesis), moto (DynamoDB and
//! most other services), fauxqs (SQS/SNS/S3).
//!
//! Each one is started from `crates/testkit/emulators/` with `--port 0` and is ready once
//! it printed `LISTENING <port>`. Like [`crate::MariaDb`], each is killed on drop and by a
//! watchdog when the test process exits without dropping it (the wrappers also exit by
//! themselves when their parent dies). Their stderr goes to [`Kinesalite::log_path`] etc.
//! [`crate::stack`] starts the same wrappers detached instead: they outlive it.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};

use crate::process::{cache_dir, find_executable, free_port, kill_and_reap, log_tail, workspace_root, Scratch};

/// How long an emulator may take to print `LISTENING <port>`.
const LISTEN_DEADLINE: Duration = Duration::from_secs(30);

/// SDK configuration for a local emulator: region `us-east-1`, static credentials
/// `testing`/`testing`, every service client pointed at `endpoint`.
pub async fn aws_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "sameday-testkit",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Where a detached server (one that outlives this process) keeps its files, and the
/// port it should get if that is free (so a restarted stack keeps its addresses).
#[derive(Debug, Clone)]
pub(crate) struct DetachedAt {
    pub(crate) dir: PathBuf,
    pub(crate) preferred_port: Option<u16>,
}

/// One running emulator process.
#[derive(Debug)]
pub(crate) struct Emulator {
    child: Child,
    port: u16,
    log: PathBuf,
    // Last: removed after the process is killed in `Drop`.
    scratch: Scratch,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if !self.scratch.is_detached() {
            kill_and_reap(&mut self.child);
        }
    }
}

impl Emulator {
    /// Spawns `program args --port P` (P = 0 unless detached with a free preferred port)
    /// and waits for `LISTENING <port>` on its stdout. `needs` are files that
    /// `scripts/prereqs.sh` installs. Owned by this process unless `detached`.
    fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        needs: &[PathBuf],
        detached: Option<&DetachedAt>,
    ) -> Result<Self, String> {
        let t0 = Instant::now();
        for path in needs {
            if !path.exists() {
                return Err(format!(
                    "{name}: {} is missing; run `bash scripts/prereqs.sh` in {} first",
                    path.display(),
                    workspace_root().display()
                ));
            }
        }
        let scratch = Scratch::new(name, detached.map(|d| d.dir.as_path()))?;
        let log = scratch.path().join(format!("{name}.log"));
        let out = scratch.path().join(format!("{name}.out"));
        let stderr = File::create(&log).map_err(|e| format!("{name}: creating {}: {e}", log.display()))?;
        // stdout to a file, not a pipe: a detached emulator must not die of EPIPE once
        // the process that started it is gone.
        let stdout = File::create(&out).map_err(|e| format!("{name}: creating {}: {e}", out.display()))?;
        let port = match detached {
            Some(d) => free_port(d.preferred_port)?,
            None => 0,
        };
        let mut args = args.to_vec();
        args.extend(["--port".into(), port.to_string().into()]);
        let mut child = scratch
            .spawn(program, &args, stdout.into(), stderr.into())
            .map_err(|e| format!("{name}: spawning {}: {e}", program.display()))?;

        let outcome = wait_listening(&mut child, &out);
        match outcome {
            Ok(port) => {
                eprintln!("sameday-testkit: {name} ready on 127.0.0.1:{port} in {:?}", t0.elapsed());
                Ok(Emulator { child, port, log, scratch })
            }
            Err(why) => {
                kill_and_reap(&mut child);
                Err(format!(
                    "{name} ({} {}) did not start: {why}; its stderr ({}):\n{}",
                    program.display(),
                    args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                    log.display(),
                    log_tail(&log, 40)
                ))
            }
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// Polls `out` every 50 ms for the `LISTENING <port>` line, until the child exits or
/// [`LISTEN_DEADLINE`] passes.
fn wait_listening(child: &mut Child, out: &Path) -> Result<u16, String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(port) = text.lines().find_map(|l| l.strip_prefix("LISTENING ").and_then(|p| p.trim().parse().ok()))
        {
            return Ok(port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({status}) before printing `LISTENING <port>`"));
        }
        if start.elapsed() >= LISTEN_DEADLINE {
            return Err(format!("no `LISTENING <port>` line within {LISTEN_DEADLINE:?}"));
        }
        std::thread::sleep(crate::POLL_INTERVAL);
    }
}

fn node() -> Result<PathBuf, String> {
    find_executable("node").ok_or_else(|| "node is not in PATH; run `bash scripts/prereqs.sh`".to_string())
}

fn emulator_script(file: &str) -> PathBuf {
    workspace_root().join("crates/testkit/emulators").join(file)
}

fn start_node(name: &str, script: &str, package: &str, detached: Option<&DetachedAt>) -> Result<Emulator, String> {
    let script = emulator_script(script);
    let package = cache_dir().join("npm/node_modules").join(package).join("package.json");
    Emulator::spawn(name, &node()?, &[script.clone().into()], &[script, package], detached)
}

/// kinesalite, owned by this process unless `detached`.
pub(crate) fn start_kinesalite(detached: Option<&DetachedAt>) -> Result<Emulator, String> {
    start_node("kinesalite", "kinesalite.js", "kinesalite", detached)
}

/// fauxqs, owned by this process unless `detached`.
pub(crate) fn start_fauxqs(detached: Option<&DetachedAt>) -> Result<Emulator, String> {
    start_node("fauxqs", "fauxqs.js", "fauxqs", detached)
}

/// moto's server with `moto_server.py` options, owned by this process unless `detached`.
pub(crate) fn start_moto(extra_args: &[&str], detached: Option<&DetachedAt>) -> Result<Emulator, String> {
    let venv = cache_dir().join("venv");
    let python = venv.join("bin/python");
    let script = emulator_script("moto_server.py");
    let mut args: Vec<OsString> = vec![script.clone().into()];
    args.extend(extra_args.iter().map(OsString::from));
    Emulator::spawn("moto", &python, &args, &[python.clone(), venv.join("bin/moto_server"), script], detached)
}

/// Methods every emulator wrapper has.
macro_rules! emulator_common {
    ($ty:ident, $shared:ident, $start:expr) => {
        static $shared: OnceLock<Result<$ty, String>> = OnceLock::new();

        impl $ty {
            /// The instance shared by every test in this test binary, started on first use.
            /// Blocks while starting; safe to call from many tests in parallel. If starting
            /// fails, every caller panics with the same message.
            pub fn shared() -> &'static $ty {
                match $shared.get_or_init(|| $start.map(|inner| $ty { inner })) {
                    Ok(e) => e,
                    Err(e) => panic!("{e}"),
                }
            }

            /// A private instance (fresh, empty state), stopped on drop. Panics with the
            /// emulator's stderr if it does not come up within 30 s.
            pub fn start() -> $ty {
                $ty { inner: $start.unwrap_or_else(|e| panic!("{e}")) }
            }

            /// `http://127.0.0.1:PORT`.
            pub fn endpoint(&self) -> String {
                self.inner.endpoint()
            }

            /// The emulator's process id.
            pub fn pid(&self) -> u32 {
                self.inner.pid()
            }

            /// The TCP port on 127.0.0.1.
            pub fn port(&self) -> u16 {
                self.inner.port
            }

            /// The emulator's stderr log.
            pub fn log_path(&self) -> &Path {
                &self.inner.log
            }

            /// [`aws_config()`] for this emulator's endpoint.
            pub async fn sdk_config(&self) -> SdkConfig {
                aws_config(&self.endpoint()).await
            }
        }
    };
}

/// kinesalite: an in-memory Kinesis emulator. Streams become ACTIVE at once, up to 1000
/// shards per stream.
#[derive(Debug)]
pub struct Kinesalite {
    inner: Emulator,
}

emulator_common!(Kinesalite, SHARED_KINESALITE, start_kinesalite(None));

/// One Kinesis record as read back by [`Kinesalite::read_all`]:
/// `(shard_id, sequence_number, partition_key, data)`.
pub type KinesisRecord = (String, String, String, Vec<u8>);

impl Kinesalite {
    /// A Kinesis client for this emulator.
    pub async fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.sdk_config().await)
    }

    /// Creates a stream with `shards` shards and waits (up to 30 s) until it is ACTIVE.
    pub async fn create_stream(&self, name: &str, shards: i32) {
        let client = self.kinesis_client().await;
        client
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .unwrap_or_else(|e| panic!("kinesalite CreateStream {name}: {e:?}"));
        crate::wait_until(Duration::from_secs(30), &format!("stream {name} ACTIVE"), || {
            let client = client.clone();
            async move {
                let out = client
                    .describe_stream_summary()
                    .stream_name(name)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("kinesalite DescribeStreamSummary {name}: {e:?}"));
                out.stream_description_summary().is_some_and(|s| s.stream_status() == &StreamStatus::Active)
            }
        })
        .await;
    }

    /// Every record currently in `stream`: shards in ListShards order, each read from
    /// TRIM_HORIZON until a GetRecords call returns nothing while 0 ms behind the tip (or
    /// the shard is closed and fully read). Records within a shard are in sequence order.
    pub async fn read_all(&self, stream: &str) -> Vec<KinesisRecord> {
        let client = self.kinesis_client().await;
        let mut shard_ids = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let req = match next_token.take() {
                Some(token) => client.list_shards().next_token(token),
                None => client.list_shards().stream_name(stream),
            };
            let out = req.send().await.unwrap_or_else(|e| panic!("kinesalite ListShards {stream}: {e:?}"));
            shard_ids.extend(out.shards().iter().map(|s| s.shard_id().to_string()));
            match out.next_token() {
                Some(token) => next_token = Some(token.to_string()),
                None => break,
            }
        }

        let mut records = Vec::new();
        for shard_id in shard_ids {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&shard_id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap_or_else(|e| panic!("kinesalite GetShardIterator {stream}/{shard_id}: {e:?}"))
                .shard_iterator
                .unwrap_or_else(|| panic!("kinesalite GetShardIterator {stream}/{shard_id}: no iterator"));
            loop {
                let out = client
                    .get_records()
                    .shard_iterator(&iterator)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("kinesalite GetRecords {stream}/{shard_id}: {e:?}"));
                let got = out.records().len();
                records.extend(out.records().iter().map(|r| {
                    (
                        shard_id.clone(),
                        r.sequence_number().to_string(),
                        r.partition_key().unwrap_or_default().to_string(),
                        r.data().as_ref().to_vec(),
                    )
                }));
                let caught_up = got == 0 && out.millis_behind_latest().unwrap_or(0) == 0;
                match out.next_shard_iterator() {
                    Some(next) if !caught_up => iterator = next.to_string(),
                    _ => break,
                }
            }
        }
        records
    }
}

/// moto's server: DynamoDB, Step Functions and most other AWS services, in memory.
#[derive(Debug)]
pub struct Moto {
    inner: Emulator,
}

emulator_common!(Moto, SHARED_MOTO, start_moto(&[], None));

impl Moto {
    /// A DynamoDB client for this emulator.
    pub async fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    /// A Kinesis client for this emulator (moto's Kinesis; prefer [`Kinesalite`]).
    pub async fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.sdk_config().await)
    }

    /// An S3 client for this emulator, with path-style addressing (bucket names are not
    /// host names on 127.0.0.1), as `sameday_core::s3::client` chooses for custom endpoints.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates bucket `name` (a fresh one per test keeps tests apart).
    pub async fn create_bucket(&self, name: &str) {
        self.s3_client()
            .await
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto CreateBucket {name}: {e:?}"));
    }

    /// A private instance whose Step Functions *run* executions through moto's ASL
    /// interpreter (`moto_server.py --sfn-execute`), so Wait and Pass states take effect and
    /// executions reach SUCCEEDED. The shared instance only records executions (they stay
    /// RUNNING until stopped), which is what tests asserting names and inputs want.
    pub fn start_sfn_execute() -> Moto {
        Moto { inner: start_moto(&["--sfn-execute"], None).unwrap_or_else(|e| panic!("{e}")) }
    }

    /// A Step Functions client for this emulator.
    pub async fn sfn_client(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.sdk_config().await)
    }

    /// Creates a STANDARD state machine `name` from an ASL document and returns its ARN.
    /// moto checks the role ARN's form only; a fixed dummy role is used.
    pub async fn create_state_machine(&self, name: &str, definition_json: &str) -> String {
        self.sfn_client()
            .await
            .create_state_machine()
            .name(name)
            .definition(definition_json)
            .role_arn(MOTO_SFN_ROLE_ARN)
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto CreateStateMachine {name}: {e:?}"))
            .state_machine_arn()
            .to_string()
    }
}

/// The role [`Moto::create_state_machine`] passes; moto does not check that it exists.
pub const MOTO_SFN_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/sameday-test-sfn";

/// fauxqs: an in-memory SQS/SNS/S3 emulator. Queue URLs point back at it as
/// `http://127.0.0.1:PORT/000000000000/<name>` (its real port, whatever `Host` the
/// request carried), so a URL from CreateQueue/GetQueueUrl works as printed.
#[derive(Debug)]
pub struct Fauxqs {
    inner: Emulator,
}

emulator_common!(Fauxqs, SHARED_FAUXQS, start_fauxqs(None));

/// Messages in `queue_url`, visible and in flight. An attribute the answer lacks counts as
/// one message, so a wait for an empty queue never ends early.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes");
    let count = |a: QueueAttributeName| {
        attrs.attributes().and_then(|m| m.get(&a)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(1)
    };
    count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}
