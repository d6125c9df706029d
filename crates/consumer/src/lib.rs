//! The consumer: reads the Kinesis stream's shards under leases shared by every consumer
//! task (like the Kinesis Client Library, without Java) and fans each change into SQS,
//! keeping per-key commit order and forwarding only what the current day needs.
//!
//! The public face is what the `sameday` binary, the workspace's integration tests and the
//! benchmark use: the config file ([`config`]), the daemon ([`run::run_consumer`]) and the
//! lease table, read-only ([`shard_lease::LeaseTable::list`]: the `leases` command, and
//! tests that wait for checkpoints).

pub mod config;
pub mod run;
pub mod shard_lease;

mod claim_check;
mod context;
mod coordinator;
pub mod dead_letter;
mod fanout;
mod message;
mod metrics;
mod route;
mod shard_list;
mod shard_reader;
mod shard_task;
mod sqs;
