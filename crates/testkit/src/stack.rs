//! The local stack as a tool (`sameday-stack up|down|status|env`): MariaDB with the CDC
//! binlog settings and the AWS emulators on 127.0.0.1, started by the same code that starts
//! the tests' servers, but detached, so they outlive the command that started them.
//!
//! What runs is recorded in `<dir>/state`, one `service pid port` line per server (pid 0:
//! stopped). A server counts as running only while its pid is alive *and* is still the
//! program it was (checked in `/proc/<pid>/cmdline`), so a recycled pid is never signalled.
//! `up` is idempotent: running servers are kept, the others are started, on their last port
//! when it is still free. `down` stops the servers (SIGTERM, so MariaDB shuts down cleanly;
//! SIGKILL after a deadline) and keeps every file, the MariaDB datadir included, unless
//! purged. Each server keeps its files in `<dir>/<service>/`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::emulators::{start_fauxqs, start_kinesalite, start_moto, DetachedAt};
use crate::mariadb::{MariaDb, MariaDbOptions};
use crate::process::workspace_root;

/// The state file inside the stack directory.
const STATE_FILE: &str = "state";
/// How long `down` waits after SIGTERM before it sends SIGKILL (MariaDB flushes InnoDB).
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Region and dummy credentials printed with the endpoints (the emulators accept any).
const REGION: &str = "us-east-1";
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";

/// `<workspace>/.cache/stack`.
pub fn default_dir() -> PathBuf {
    workspace_root().join(".cache/stack")
}

/// One server of the stack, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// MariaDB, binlog on (ROW, FULL image, FULL metadata, GTID).
    Mariadb,
    /// kinesalite: Kinesis.
    Kinesalite,
    /// fauxqs: SQS.
    Fauxqs,
    /// moto's server: DynamoDB, Step Functions (executing state machines), S3, CloudFormation.
    Moto,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 4] = [Service::Mariadb, Service::Kinesalite, Service::Fauxqs, Service::Moto];

    pub fn name(self) -> &'static str {
        match self {
            Service::Mariadb => "mariadb",
            Service::Kinesalite => "kinesalite",
            Service::Fauxqs => "fauxqs",
            Service::Moto => "moto",
        }
    }

    /// A word that the server's command line contains: a pid whose command line lacks it
    /// was recycled for another program.
    fn program_marker(self) -> &'static str {
        match self {
            Service::Mariadb => "mariadbd",
            Service::Kinesalite => "kinesalite.js",
            Service::Fauxqs => "fauxqs.js",
            Service::Moto => "moto_server.py",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Service::ALL.into_iter().find(|svc| svc.name() == s).ok_or_else(|| format!("unknown service {s:?}"))
    }
}

/// One line of the state file: a server this tool started, `pid` 0 once stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub service: Service,
    pub pid: u32,
    pub port: u16,
}

impl Entry {
    /// The pid is alive and still runs the server's program.
    pub fn is_running(&self) -> bool {
        self.pid != 0
            && process_alive(self.pid)
            && std::fs::read(format!("/proc/{}/cmdline", self.pid))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains(self.service.program_marker()))
                .unwrap_or(false)
    }

    /// Something accepts TCP connections on 127.0.0.1:`port`.
    pub fn answers(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// What `up` should start.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The services to start; empty: all of them.
    pub only: Vec<Service>,
    /// Extra `mariadbd` arguments (after the defaults, so they override them). Used only
    /// when MariaDB is started, not when it already runs.
    pub mariadb_args: Vec<String>,
}

/// The stack in `dir`: its state file and the servers' directories.
#[derive(Debug, Clone)]
pub struct Stack {
    dir: PathBuf,
}

impl Stack {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Stack { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// MariaDB's data directory (binlog files included).
    pub fn mariadb_datadir(&self) -> PathBuf {
        self.dir.join(Service::Mariadb.name()).join("data")
    }

    /// The recorded servers, in start order; empty if nothing was ever started here.
    pub fn entries(&self) -> Result<Vec<Entry>, String> {
        let path = self.dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let parse = |line: &str| -> Option<Entry> {
            let mut fields = line.split_whitespace();
            let entry = Entry {
                service: fields.next()?.parse().ok()?,
                pid: fields.next()?.parse().ok()?,
                port: fields.next()?.parse().ok()?,
            };
            fields.next().is_none().then_some(entry)
        };
        let mut entries: Vec<Entry> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse(l).ok_or_else(|| format!("{}: cannot read line {l:?}", path.display())))
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| Service::ALL.iter().position(|s| *s == e.service));
        Ok(entries)
    }

    /// The recorded servers that run now.
    pub fn running(&self) -> Result<Vec<Entry>, String> {
        Ok(self.entries()?.into_iter().filter(Entry::is_running).collect())
    }

    /// Starts what is not running yet and returns the running servers. Each start is
    /// recorded at once, so after a failure `down` still stops what did start.
    pub fn up(&self, opts: &UpOptions) -> Result<Vec<Entry>, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let wanted = if opts.only.is_empty() { Service::ALL.to_vec() } else { opts.only.clone() };
        for service in Service::ALL.into_iter().filter(|s| wanted.contains(s)) {
            let previous = self.entries()?.into_iter().find(|e| e.service == service);
            if let Some(entry) = previous.filter(Entry::is_running) {
                eprintln!("sameday-stack: {service} already running (pid {}, port {})", entry.pid, entry.port);
                continue;
            }
            let at = DetachedAt { dir: self.dir.join(service.name()), preferred_port: previous.map(|e| e.port) };
            let (pid, port) = match service {
                Service::Mariadb => {
                    let mut db_opts = MariaDbOptions::default().detached(&at.dir);
                    db_opts.port = at.preferred_port;
                    db_opts.extra_args = opts.mariadb_args.clone();
                    let db = MariaDb::try_start(&db_opts)?;
                    (db.pid(), db.port())
                }
                Service::Kinesalite => start_kinesalite(Some(&at)).map(|e| (e.pid(), e.port()))?,
                Service::Fauxqs => start_fauxqs(Some(&at)).map(|e| (e.pid(), e.port()))?,
                // Executions run (Wait, Pass, ...) as in AWS, not just recorded.
                Service::Moto => start_moto(&["--sfn-execute"], Some(&at)).map(|e| (e.pid(), e.port()))?,
            };
            self.record(Entry { service, pid, port })?;
        }
        self.running()
    }

    /// Stops every running server (last started first) and returns the ones it stopped.
    /// With `purge`, then removes the servers' directories and the state file as well.
    pub fn down(&self, purge: bool) -> Result<Vec<Entry>, String> {
        let mut stopped = Vec::new();
        for entry in self.entries()?.into_iter().rev() {
            if entry.is_running() {
                stop(&entry)?;
                stopped.push(entry);
            }
            self.record(Entry { pid: 0, ..entry })?;
        }
        if purge {
            // Only what this tool creates, in case `dir` is a directory the user owns.
            for service in Service::ALL {
                remove(&self.dir.join(service.name()))?;
            }
            remove(&self.dir.join(STATE_FILE))?;
            let _ = std::fs::remove_dir(&self.dir); // only if empty now
        }
        Ok(stopped)
    }

    /// Writes `entry` into the state file, replacing the service's previous line.
    fn record(&self, entry: Entry) -> Result<(), String> {
        let mut entries = self.entries()?;
        entries.retain(|e| e.service != entry.service);
        entries.push(entry);
        entries.sort_by_key(|e| Service::ALL.iter().position(|s| *s == e.service));
        let text: String = entries.iter().map(|e| format!("{} {} {}\n", e.service, e.pid, e.port)).collect();
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// The environment for the daemons, the AWS CLI and boto3: one pair per running server's
/// endpoint(s), the dummy credentials and region, and where MariaDB listens.
pub fn environment(stack: &Stack, running: &[Entry]) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    for entry in running {
        let endpoint = entry.endpoint();
        match entry.service {
            Service::Mariadb => {
                env.push(("SAMEDAY_MYSQL_URL", format!("mysql://root@127.0.0.1:{}", entry.port)));
                env.push(("SAMEDAY_MYSQL_PORT", entry.port.to_string()));
            }
            Service::Kinesalite => env.push(("AWS_ENDPOINT_URL_KINESIS", endpoint)),
            Service::Fauxqs => env.push(("AWS_ENDPOINT_URL_SQS", endpoint)),
            Service::Moto => {
                for var in [
                    "AWS_ENDPOINT_URL_DYNAMODB",
                    "AWS_ENDPOINT_URL_SFN",
                    "AWS_ENDPOINT_URL_S3",
                    "AWS_ENDPOINT_URL_CLOUDFORMATION",
                ] {
                    env.push((var, endpoint.clone()));
                }
            }
        }
    }
    if running.iter().any(|e| e.service != Service::Mariadb) {
        env.push(("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()));
        env.push(("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()));
        env.push(("AWS_REGION", REGION.into()));
        // boto3 and the AWS CLI read this one.
        env.push(("AWS_DEFAULT_REGION", REGION.into()));
    }
    env.push(("SAMEDAY_STACK_DIR", stack.dir().display().to_string()));
    env
}

/// `export KEY=VALUE` lines for a POSIX shell, values quoted where needed.
pub fn export_lines(env: &[(&str, String)]) -> String {
    env.iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))).collect()
}

fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@=,+%".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// SIGTERM, wait up to [`STOP_DEADLINE`], then SIGKILL.
fn stop(entry: &Entry) -> Result<(), String> {
    let t0 = Instant::now();
    signal(entry.pid, "TERM")?;
    while t0.elapsed() < STOP_DEADLINE {
        if !process_alive(entry.pid) {
            eprintln!("sameday-stack: {} (pid {}) stopped in {:?}", entry.service, entry.pid, t0.elapsed());
            return Ok(());
        }
        std::thread::sleep(crate::POLL_INTERVAL);
    }
    eprintln!(
        "sameday-stack: {} (pid {}) still running {STOP_DEADLINE:?} after SIGTERM; sending SIGKILL",
        entry.service, entry.pid
    );
    signal(entry.pid, "KILL")?;
    let t1 = Instant::now();
    while process_alive(entry.pid) {
        if t1.elapsed() > Duration::from_secs(5) {
            return Err(format!("{} (pid {}) survived SIGKILL", entry.service, entry.pid));
        }
        std::thread::sleep(crate::POLL_INTERVAL);
    }
    Ok(())
}

fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("running kill -{name} {pid}: {e}"))?;
    // A failure is fine if the process is gone by now.
    if status.success() || !process_alive(pid) {
        Ok(())
    } else {
        Err(format!("kill -{name} {pid} failed ({status})"))
    }
}

fn remove(path: &Path) -> Result<(), String> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("removing {}: {e}", path.display())),
        _ => Ok(()),
    }
}

/// Whether `pid` is a live process (a zombie counts as gone: it only waits to be reaped).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state is the field after the parenthesised command name
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_in_start_order() {
        let dir = tempfile::tempdir().unwrap();
        let stack = Stack::new(dir.path());
        assert!(stack.entries().unwrap().is_empty());
        stack.record(Entry { service: Service::Moto, pid: 12, port: 3002 }).unwrap();
        stack.record(Entry { service: Service::Mariadb, pid: 10, port: 3000 }).unwrap();
        stack.record(Entry { service: Service::Moto, pid: 0, port: 3002 }).unwrap();
        assert_eq!(
            stack.entries().unwrap(),
            vec![
                Entry { service: Service::Mariadb, pid: 10, port: 3000 },
                Entry { service: Service::Moto, pid: 0, port: 3002 },
            ]
        );
    }

    #[test]
    fn a_recycled_or_stopped_pid_is_not_running() {
        let me = std::process::id();
        assert!(!Entry { service: Service::Mariadb, pid: me, port: 1 }.is_running());
        assert!(!Entry { service: Service::Mariadb, pid: 0, port: 1 }.is_running());
    }

    #[test]
    fn exports_quote_only_what_needs_it() {
        let env = [("A", "http://127.0.0.1:1".to_string()), ("B", "/tmp/my dir/it's".to_string())];
        assert_eq!(export_lines(&env), "export A=http://127.0.0.1:1\nexport B='/tmp/my dir/it'\\''s'\n");
    }

    #[test]
    fn environment_names_each_service_endpoint() {
        let stack = Stack::new("/s");
        let running = [
            Entry { service: Service::Mariadb, pid: 1, port: 3306 },
            Entry { service: Service::Fauxqs, pid: 2, port: 4000 },
        ];
        let env = environment(&stack, &running);
        let get = |k: &str| env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SAMEDAY_MYSQL_URL"), Some("mysql://root@127.0.0.1:3306"));
        assert_eq!(get("AWS_ENDPOINT_URL_SQS"), Some("http://127.0.0.1:4000"));
        assert_eq!(get("AWS_ENDPOINT_URL_KINESIS"), None);
        assert_eq!(get("AWS_REGION"), Some("us-east-1"));
        assert_eq!(get("SAMEDAY_STACK_DIR"), Some("/s"));
    }
}
