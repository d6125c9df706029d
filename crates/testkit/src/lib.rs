//! Test infrastructure for sameday: a real MariaDB with binlog on, and local AWS emulators
//! (kinesalite, moto, fauxqs), each on a free 127.0.0.1 port and never outliving the test
//! process, plus unique resource names and a polling helper. The same starters, detached,
//! make the local stack for running the daemons by hand: [`stack`] and the
//! `sameday-stack up|down|status|env` binary.
//!
//! Typical use in a `#[tokio::test]`:
//!
//! ```no_run
//! # async fn demo() {
//! use sameday_testkit::{Kinesalite, MariaDb};
//! let db = MariaDb::shared();
//! let schema = db.create_database("orders").await;
//! db.exec(&format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)")).await;
//! let kinesis = Kinesalite::shared();
//! let stream = sameday_testkit::names::unique("orders");
//! kinesis.create_stream(&stream, 2).await;
//! # }
//! ```
//!
//! Needs `mariadbd`/`mariadb-install-db`, `node`, `openssl` (TLS only) and the npm/venv
//! caches that `bash scripts/prereqs.sh` installs into `<workspace>/.cache`
//! (or `$SAMEDAY_CACHE`).

pub mod bench;
pub mod emulators;
pub mod fault_proxy;
pub mod mariadb;
pub mod names;
mod process;
pub mod stack;
mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

pub use emulators::{aws_config, queue_depth, Fauxqs, Kinesalite, KinesisRecord, Moto};
pub use fault_proxy::{Fault, FaultProxy, ProxyOptions};
pub use mariadb::{MariaDb, MariaDbOptions};

/// Installs rustls' `ring` provider as the process default, unless one is installed
/// already. Needed before any TLS connection with mysql_async in this workspace: both
/// `ring` and `aws-lc-rs` are compiled into rustls, so it refuses to guess and panics with
/// "Could not automatically determine the process-level CryptoProvider".
/// [`MariaDb::ssl_opts`] calls it; idempotent and cheap.
pub fn install_rustls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only if another thread won the race, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Interval between two polls of [`wait_until`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `true`; panics naming `what` if that has not
/// happened within `deadline`. `f` is always polled at least once, and once more after
/// the deadline passed, so a slow last poll is not lost.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let expired = start.elapsed() >= deadline;
        if f().await {
            return;
        }
        if expired {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
