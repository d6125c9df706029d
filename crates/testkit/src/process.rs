//! Child processes that cannot outlive the test process.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
pub(crate) fn spawn_watched<S: AsRef<OsStr>>(
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
