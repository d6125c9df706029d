//! What the worker's benchmark binaries share: their start-up against the emulators (the
//! runner and settings come from `sameday_testkit::bench`).

use sameday_testkit::{MariaDb, Moto};
use sameday_worker::config::WorkerConfig;

/// The first definition of the schedule state machine, as deployed.
pub(crate) const DEFINITION: &str = include_str!("../../../../deploy/statemachine/schedule.asl.json");

pub(crate) use sameday_testkit::bench::{env_or, run};

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
