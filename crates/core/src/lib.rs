//! The shared vocabulary of sameday: the change event that flows from the reader to the
//! worker, binlog positions, checkpoint stores, and the operational plumbing every daemon
//! uses (AWS client set-up and retry classification, metrics, health, shutdown, logging).

pub mod aws;
pub mod backoff;
pub mod checkpoint;
pub mod checkpoint_dynamo;
pub mod claim_check;
pub mod clock;
pub mod coalesce;
pub mod config_file;
pub mod daemon;
pub mod envelope;
pub mod execution;
pub mod health;
pub mod kpl;
pub mod logging;
pub mod metrics;
pub mod ordered;
pub mod pattern;
pub mod position;
pub mod predicate;
pub mod row_version;
pub mod rule;
pub mod s3;
pub mod secret;
pub mod shutdown;
pub mod sqs;
pub mod window;

pub use envelope::{ChangeEnvelope, ClaimCheck, Op};
pub use position::{BinlogPosition, GtidSet, StartPosition};

/// A name for this process in lease tables: host name (ECS sets `HOSTNAME`), process id and
/// a random suffix, unique per start so a restarted task never mistakes old leases for its own.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "sameday".into());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}
