//! Server processes: either owned by the test process (they cannot outlive it) or
//! detached (they outlive the command that started them, for `sameday-stack`).

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

/// Set in a detached emulator's environment: its wrapper then keeps running when its
/// parent exits (`crates/testkit/emulators/wrapper.js`, `moto_server.py`).
pub(crate) const DETACHED_ENV: &str = "SAMEDAY_EMULATOR_DETACHED";

/// Where a server keeps its files, which also decides how long it lives.
#[derive(Debug)]
pub(crate) enum Scratch {
    /// A temp dir: the server is killed on drop and by the [`WATCHDOG`] once the test
    /// process is gone, and the dir is removed with it.
    Owned(TempDir),
    /// A directory that is kept: the server runs in its own process group (Ctrl-C in the
    /// terminal does not reach it), without a watchdog, and outlives this process; it is
    /// stopped by pid (`sameday-stack down`).
    Detached(PathBuf),
}

impl Scratch {
    /// A fresh temp dir named `sameday-<prefix>-*`, or `dir` (created if missing).
    pub(crate) fn new(prefix: &str, detached: Option<&Path>) -> Result<Self, String> {
        match detached {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
                Ok(Scratch::Detached(dir.to_path_buf()))
            }
            None => tempfile::Builder::new()
                .prefix(&format!("sameday-{prefix}-"))
                .tempdir()
                .map(Scratch::Owned)
                .map_err(|e| format!("{prefix}: creating a temp dir: {e}")),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Scratch::Owned(dir) => dir.path(),
            Scratch::Detached(dir) => dir,
        }
    }

    pub(crate) fn is_detached(&self) -> bool {
        matches!(self, Scratch::Detached(_))
    }

    /// Spawns `program args` with stdin closed: under the [`WATCHDOG`] when owned, in its
    /// own process group when detached.
    pub(crate) fn spawn<S: AsRef<OsStr>>(
        &self,
        program: &Path,
        args: &[S],
        stdout: Stdio,
        stderr: Stdio,
    ) -> io::Result<Child> {
        match self {
            Scratch::Owned(dir) => spawn_watched(program, args, dir.path(), stdout, stderr),
            Scratch::Detached(_) => Command::new(program)
                .args(args)
                .env(DETACHED_ENV, "1")
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn(),
        }
    }
}

/// `sh -c` wrapper: starts a watcher subshell, then `exec`s the real program, so the
/// returned [`Child`] *is* the program (kill/wait act on it directly). The watcher polls
/// every 0.5 s with `kill -0`; once the test process (`$1`) is gone - normal exit, panic,
/// `kill -9` - it SIGKILLs the program and removes its scratch directory (`$2`). It exits
/// quietly when the program is gone first (after the test process reaped it). The watcher
/// ignores SIGINT/SIGTERM/SIGHUP, which `timeout` or Ctrl-C send to the whole process
/// group, so that it survives to clean up.
const WATCHDOG: &str = r#"parent=$1; dir=$2; shift 2; me=$$
(
  trap '' INT TERM HUP
  while kill -0 "$parent" 2>/dev/null; do
    kill -0 "$me" 2>/dev/null || exit 0
    sleep 0.5
  done
  kill -KILL "$me" 2>/dev/null
  [ -n "$dir" ] && rm -rf "$dir"
) </dev/null >/dev/null 2>&1 &
exec "$@""#;

/// Spawns `program args` under the [`WATCHDOG`] with stdin closed, `stdout`/`stderr` as given.
/// `scratch` is deleted by the watchdog if the test process dies without cleaning up.
fn spawn_watched<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    scratch: &Path,
    stdout: Stdio,
    stderr: Stdio,
) -> io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sameday-watchdog")
        .arg(std::process::id().to_string())
        .arg(scratch)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
}

/// SIGKILLs and reaps `child` (ignoring "already exited").
pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file, or a note saying why it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                format!("({} is empty)", path.display())
            } else {
                all[start..].join("\n")
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A port on 127.0.0.1 that was free a moment ago: `preferred` if it can be bound now,
/// else one the kernel picks. Callers must handle the small chance that someone else
/// takes it first.
pub(crate) fn free_port(preferred: Option<u16>) -> Result<u16, String> {
    if let Some(port) = preferred.filter(|p| *p != 0) {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}

/// The workspace root (two levels above this crate's manifest directory).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(Path::parent).expect("crates/testkit has a grandparent").to_path_buf()
}

/// Where `scripts/prereqs.sh` installs things: `$SAMEDAY_CACHE`, else `<workspace>/.cache`.
pub(crate) fn cache_dir() -> PathBuf {
    match std::env::var_os("SAMEDAY_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".cache"),
    }
}

/// Finds an executable in `$PATH` or the sbin directories (mariadbd lives in /usr/sbin,
/// which is often not on a user's PATH).
pub(crate) fn find_executable(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// Runs a future to completion on a fresh current-thread runtime in a helper thread, so
/// blocking constructors work both inside and outside a tokio runtime.
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime for sameday-testkit")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
