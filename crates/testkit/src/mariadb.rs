//! A private MariaDB server per test binary (or per test), with the binlog settings a CDC
//! reader needs; or, detached, one that outlives its starter (`sameday-stack`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use crate::process::{block_on, find_executable, free_port, kill_and_reap, log_tail, Scratch};
use crate::tls::{generate_tls, TlsFiles};

/// How long a server may take until it accepts connections.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How many free ports are tried when mariadbd reports a port clash.
const PORT_ATTEMPTS: usize = 5;
/// Lines of the error log quoted in panic messages.
const LOG_TAIL_LINES: usize = 40;

/// Options for [`MariaDb::start_with`].
#[derive(Debug, Clone, Default)]
pub struct MariaDbOptions {
    /// Extra `mariadbd` arguments, appended after the defaults (so they override them, e.g.
    /// `--binlog_row_image=MINIMAL`).
    pub extra_args: Vec<String>,
    /// Generate a throwaway CA and a server certificate (SAN `IP:127.0.0.1`,
    /// `DNS:localhost`) and start the server with `--ssl-ca/--ssl-cert/--ssl-key`.
    /// Plain connections stay allowed.
    pub tls: bool,
    /// Run detached with its files in this directory: no watchdog, not killed on drop, own
    /// process group, so the server outlives this process (stop it by [`MariaDb::pid`];
    /// SIGTERM shuts it down cleanly). An existing datadir there is reused, not
    /// re-initialised. `None` (tests): a temp dir removed together with the server.
    pub detached: Option<PathBuf>,
    /// The port to listen on if it is free; otherwise (and by default) any free port.
    pub port: Option<u16>,
}

impl MariaDbOptions {
    /// Appends one extra `mariadbd` argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Turns TLS on or off (see [`MariaDbOptions::tls`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Runs the server detached in `dir` (see [`MariaDbOptions::detached`]).
    pub fn detached(mut self, dir: impl Into<PathBuf>) -> Self {
        self.detached = Some(dir.into());
        self
    }

    /// Prefers `port` when it is free (see [`MariaDbOptions::port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// A running `mariadbd` that this process started: fresh datadir in a temp directory,
/// listening on `127.0.0.1:<free port>` (never the system instance on 3306), binlog on
/// (`ROW`, `FULL` image and metadata, GTID strict mode, `server_id=1`). `root` logs in over
/// TCP from 127.0.0.1 with an empty password.
///
/// The server is SIGKILLed and its directory removed on drop, and - through a watchdog
/// shell that polls the test process every 0.5 s - also when the test process exits
/// without dropping it (statics, panics, `kill -9`). Unless started
/// [`MariaDbOptions::detached`]: then neither happens.
///
/// Connections are handed out fresh ([`MariaDb::conn`]); nothing runtime-bound is kept, so
/// one instance can serve many `#[tokio::test]`s, each with its own runtime.
#[derive(Debug)]
pub struct MariaDb {
    child: Child,
    port: u16,
    datadir: PathBuf,
    socket: PathBuf,
    error_log: PathBuf,
    tls: Option<TlsFiles>,
    startup: Duration,
    // Last: removed after the server is killed in `Drop`.
    scratch: Scratch,
}

static SHARED: OnceLock<Result<MariaDb, String>> = OnceLock::new();

impl MariaDb {
    /// The instance shared by every test in this test binary, started on first use with
    /// default options. Blocks (about a second) while starting; safe to call from many
    /// tests in parallel, inside or outside a tokio runtime. If starting fails, every
    /// caller panics with the same message. Do not change global server settings through
    /// it; use [`MariaDb::start_with`] for that.
    pub fn shared() -> &'static MariaDb {
        match SHARED.get_or_init(|| Self::try_start(&MariaDbOptions::default())) {
            Ok(db) => db,
            Err(e) => panic!("{e}"),
        }
    }

    /// A private instance with default options. See [`MariaDb::start_with`].
    pub fn start() -> MariaDb {
        Self::start_with(MariaDbOptions::default())
    }

    /// A private instance, e.g. with other binlog settings or TLS. Blocks until the server
    /// accepts connections; panics (quoting the server's error log) if it does not within
    /// 60 s.
    pub fn start_with(opts: MariaDbOptions) -> MariaDb {
        Self::try_start(&opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The `mariadbd` process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT/<db>` (`db` may be empty).
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@{}:{}/{db}", self.host(), self.port)
    }

    /// Connection options for `root` over plain TCP, optionally with a default database.
    /// Add [`MariaDb::ssl_opts`] for TLS.
    pub fn opts(&self, db: Option<&str>) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.host())
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false)
            .db_name(db)
    }

    /// TLS options that verify the server against this instance's CA (hostname
    /// `127.0.0.1`); `None` unless started with [`MariaDbOptions::tls`]. Also installs the
    /// rustls process-default provider ([`crate::install_rustls_provider`]).
    pub fn ssl_opts(&self) -> Option<SslOpts> {
        self.tls.as_ref().map(|tls| {
            crate::install_rustls_provider();
            SslOpts::default().with_root_certs(vec![tls.ca.clone().into()]).with_disable_built_in_roots(true)
        })
    }

    /// A new plain-TCP connection as `root` without a default database.
    pub async fn conn(&self) -> Conn {
        Conn::new(self.opts(None))
            .await
            .unwrap_or_else(|e| panic!("connecting to test MariaDB at {}: {e}", self.url("")))
    }

    /// Runs `sql` (may hold several `;`-separated statements) on a new connection,
    /// discarding results; panics with the statement on error.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("test MariaDB failed to run {sql:?}: {e}"));
        let _ = conn.disconnect().await;
    }

    /// Creates a database named [`crate::names::unique`]`(prefix)` and returns the name.
    pub async fn create_database(&self, prefix: &str) -> String {
        let name = crate::names::unique(prefix);
        self.exec(&format!("CREATE DATABASE `{name}`")).await;
        name
    }

    /// The directory holding the datadir, socket, logs and TLS files; a temp dir removed on
    /// drop unless detached.
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The server's data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// Where the binlog files (`mysql-bin.000001`, ..., `mysql-bin.index`) are: the datadir.
    pub fn binlog_dir(&self) -> &Path {
        &self.datadir
    }

    /// The server's error log (`--log-error`).
    pub fn error_log_path(&self) -> &Path {
        &self.error_log
    }

    /// The server's unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The PEM CA certificate that signed the server certificate; `None` without TLS.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// The time from spawning `mariadbd` until it accepted a connection (excludes
    /// creating the datadir).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    pub(crate) fn try_start(opts: &MariaDbOptions) -> Result<MariaDb, String> {
        let t0 = Instant::now();
        let mariadbd = find_executable("mariadbd").ok_or_else(missing_binaries)?;
        let install_db = find_executable("mariadb-install-db").ok_or_else(missing_binaries)?;
        let scratch = Scratch::new("mariadb", opts.detached.as_deref())?;
        let root = scratch.path();
        let datadir = root.join("data");
        let socket = root.join("sock");
        let error_log = root.join("error.log");
        let stderr_log = root.join("stderr.log");
        // Own tmpdir: concurrent servers sharing /tmp trip over each other's temp tables.
        let tmpdir = root.join("tmp");
        std::fs::create_dir_all(&tmpdir).map_err(|e| format!("creating {}: {e}", tmpdir.display()))?;
        // Running as root, mariadbd refuses to start without --user=root.
        let as_root = running_as_root();

        // --- datadir (a detached server's is kept across restarts)
        if !datadir.join("mysql").is_dir() {
            install_datadir(&install_db, root, &datadir, &tmpdir, as_root)?;
        }
        let install_time = t0.elapsed();

        // --- TLS material
        let tls = if opts.tls { Some(generate_tls(&root.join("tls"))?) } else { None };

        // --- start, retrying on port clashes
        let mut last_error = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            let port = free_port(opts.port.filter(|_| attempt == 0))?;
            let args = server_args(
                &Layout { root, datadir: &datadir, tmpdir: &tmpdir, socket: &socket, error_log: &error_log },
                port,
                tls.as_ref(),
                as_root,
                opts,
            );

            // A fresh log per attempt, so a port clash is recognised from this attempt only.
            let _ = std::fs::remove_file(&error_log);
            let stderr = File::create(&stderr_log).map_err(|e| format!("creating {}: {e}", stderr_log.display()))?;
            let t_spawn = Instant::now();
            let mut child = scratch
                .spawn(&mariadbd, &args, Stdio::null(), stderr.into())
                .map_err(|e| format!("spawning {}: {e}", mariadbd.display()))?;
            let outcome = block_on(wait_ready(&mut child, port, &socket));
            let logs = || {
                format!(
                    "error log ({}):\n{}\nstderr ({}):\n{}",
                    error_log.display(),
                    log_tail(&error_log, LOG_TAIL_LINES),
                    stderr_log.display(),
                    log_tail(&stderr_log, 10)
                )
            };
            match outcome {
                Ready::Yes => {
                    let startup = t_spawn.elapsed();
                    eprintln!(
                        "sameday-testkit: MariaDB ready on 127.0.0.1:{port} in {:?} \
                         (install-db {:?}, server {:?}), dir {}",
                        t0.elapsed(),
                        install_time,
                        startup,
                        root.display()
                    );
                    return Ok(MariaDb { child, port, datadir, socket, error_log, tls, startup, scratch });
                }
                Ready::Exited(status) => {
                    let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                    last_error = format!("test MariaDB (port {port}) exited during startup ({status}); {}", logs());
                    if log.contains("Address already in use") || log.contains("Bind on TCP/IP port") {
                        continue;
                    }
                    return Err(last_error);
                }
                Ready::TimedOut(conn_error) => {
                    kill_and_reap(&mut child);
                    return Err(format!(
                        "test MariaDB on port {port} did not accept connections within \
                         {READY_DEADLINE:?} (last error: {conn_error}); {}",
                        logs()
                    ));
                }
            }
        }
        Err(format!("giving up after {PORT_ATTEMPTS} port clashes; last: {last_error}"))
    }
}

/// Where one server's files are.
struct Layout<'a> {
    root: &'a Path,
    datadir: &'a Path,
    tmpdir: &'a Path,
    socket: &'a Path,
    error_log: &'a Path,
}

/// The `mariadbd` command line: loopback only, the binlog as sameday needs it (ROW, FULL
/// image, FULL metadata, GTID strict), TLS when generated, then the caller's extra arguments.
fn server_args(
    layout: &Layout<'_>,
    port: u16,
    tls: Option<&TlsFiles>,
    as_root: bool,
    opts: &MariaDbOptions,
) -> Vec<String> {
    let Layout { root, datadir, tmpdir, socket, error_log } = layout;
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", datadir.display()),
        format!("--tmpdir={}", tmpdir.display()),
        format!("--socket={}", socket.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--skip-networking=0".into(),
        format!("--log-bin={}", datadir.join("mysql-bin").display()),
        "--binlog_format=ROW".into(),
        "--binlog_row_image=FULL".into(),
        "--binlog_row_metadata=FULL".into(),
        "--server_id=1".into(),
        "--gtid_strict_mode=1".into(),
        "--log-slave-updates".into(),
        "--innodb-buffer-pool-size=64M".into(),
        "--innodb_log_file_size=48M".into(),
        "--max_allowed_packet=1G".into(),
        "--skip-name-resolve".into(),
        format!("--pid-file={}", root.join("mariadbd.pid").display()),
        format!("--log-error={}", error_log.display()),
    ];
    if as_root {
        args.push("--user=root".into());
    }
    if let Some(tls) = &tls {
        args.push(format!("--ssl-ca={}", tls.ca.display()));
        args.push(format!("--ssl-cert={}", tls.cert.display()));
        args.push(format!("--ssl-key={}", tls.key.display()));
    }
    args.extend(opts.extra_args.iter().cloned());
    args
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if !self.scratch.is_detached() {
            kill_and_reap(&mut self.child);
        }
    }
}

/// Creates a fresh datadir with `mariadb-install-db` (output in `<root>/install.log`).
fn install_datadir(install_db: &Path, root: &Path, datadir: &Path, tmpdir: &Path, as_root: bool) -> Result<(), String> {
    let install_log = root.join("install.log");
    let log = File::create(&install_log).map_err(|e| format!("creating {}: {e}", install_log.display()))?;
    let log2 = log.try_clone().map_err(|e| format!("duplicating {}: {e}", install_log.display()))?;
    let mut install = Command::new(install_db);
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", tmpdir.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        // grant entries for 127.0.0.1/::1/localhost only, no DNS lookup of the hostname
        .arg("--skip-name-resolve")
        // passed through to the bootstrap server: same redo log size as at run time
        .arg("--innodb-log-file-size=48M")
        .arg("--innodb-buffer-pool-size=64M");
    if as_root {
        install.arg("--user=root");
    }
    let status = install
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|e| format!("running {}: {e}", install_db.display()))?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); its output ({}):\n{}",
            install_db.display(),
            install_log.display(),
            log_tail(&install_log, LOG_TAIL_LINES)
        ));
    }
    Ok(())
}

enum Ready {
    Yes,
    Exited(std::process::ExitStatus),
    TimedOut(String),
}

/// Polls every 50 ms until root can log in over TCP *to this server* (checked via
/// `@@socket`, in case another process grabbed the same port), the child exits, or the
/// deadline passes.
async fn wait_ready(child: &mut Child, port: u16, socket: &Path) -> Ready {
    let deadline = Instant::now() + READY_DEADLINE;
    let want_socket = socket.display().to_string();
    let opts =
        OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(port).user(Some("root")).prefer_socket(false);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ready::Exited(status);
        }
        let last_error = match tokio::time::timeout(Duration::from_secs(5), probe(opts.clone())).await {
            Ok(Ok(sock)) if sock == want_socket => return Ready::Yes,
            Ok(Ok(sock)) => format!("port {port} is served by another server ({sock})"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out after 5 s".to_string(),
        };
        if Instant::now() >= deadline {
            return Ready::TimedOut(last_error);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn probe(opts: OptsBuilder) -> mysql_async::Result<String> {
    let mut conn = Conn::new(opts).await?;
    let sock: Option<String> = conn.query_first("SELECT @@socket").await?;
    let _ = conn.disconnect().await;
    Ok(sock.unwrap_or_default())
}

fn missing_binaries() -> String {
    "mariadbd / mariadb-install-db not found in PATH or /usr/sbin; run `bash scripts/prereqs.sh`".to_string()
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}
