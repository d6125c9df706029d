//! What the worker's benchmark binaries share: their start-up against the emulators.

use std::future::Future;

use sameday_testkit::{MariaDb, Moto};
use sameday_worker::config::WorkerConfig;

/// The first definition of the schedule state machine, as deployed.
pub(crate) const DEFINITION: &str = include_str!("../../../../deploy/statemachine/schedule.asl.json");

/// A numeric environment variable, or `default`.
pub(crate) fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `bench` on a multi-threaded runtime with the emulators' test credentials, when the
/// binary was started by `cargo bench` (which passes `--bench`); `cargo test --all-targets`
/// runs it without, and a benchmark is not a test: nothing to do then.
pub(crate) fn run<F: Future<Output = ()>>(bench: impl FnOnce() -> F) {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(bench());
}

/// A worker config from `head` (its `[[rule]]`, rates and `[nightly]` settings) plus the
/// shared MariaDB as `[nightly.source]` and moto as every AWS endpoint; checked as the CLI
/// checks it.
pub(crate) fn worker_config(head: &str, maria: &MariaDb, moto: &Moto) -> WorkerConfig {
    let text = format!(
        "{head}\n[nightly.source]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nserver_id = 1\ntls = \"disabled\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        maria.port(),
        moto.endpoint(),
    );
    let cfg: WorkerConfig = toml::from_str(&text).expect("config");
    cfg.validate().expect("valid config");
    cfg
}
