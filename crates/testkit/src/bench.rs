//! What the benchmark binaries share: they are `harness = false` targets that `cargo test
//! --all-targets` also runs, without `--bench`; a benchmark is not a test, so they do
//! nothing then.

use std::future::Future;
use std::str::FromStr;

/// A benchmark's setting from the environment variable `name`, or `default`.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether `cargo bench` started this binary (it passes `--bench`).
pub fn invoked() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Runs `bench` on a multi-threaded runtime with the emulators' test credentials when
/// [`invoked`] by `cargo bench`; does nothing otherwise.
pub fn run<F: Future<Output = ()>>(bench: impl FnOnce() -> F) {
    if !invoked() {
        return;
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(bench());
}

/// The `[[rule]]` the benchmarks schedule with: table `db.schedule`, key `id`, due at
/// `due_at` (DATETIME, UTC), `user_id` and `action` as input, the nightly batch at `batch_time`.
pub fn schedule_rule_toml(name: &str, db: &str, batch_time: &str, state_machine_arn: &str) -> String {
    format!(
        r#"[[rule]]
name = "{name}"
db = "{db}"
table = "schedule"
key_columns = ["id"]
due_column = "due_at"
due_type = "datetime"
time_zone = "UTC"
batch_time = "{batch_time}"
input_columns = ["user_id", "action"]
state_machine_arn = "{state_machine_arn}"
"#
    )
}
