//! What the worker's benchmark binaries share: their start-up against the emulators.

use std::future::Future;

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
