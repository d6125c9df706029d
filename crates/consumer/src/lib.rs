//! The consumer: reads the Kinesis stream's shards under leases shared by every consumer
//! task (like the Kinesis Client Library, without Java) and fans each change into SQS,
//! keeping per-key commit order and forwarding only what the current day needs.

pub mod config;
pub mod context;
pub mod coordinator;
pub mod dead_letter;
pub mod fanout;
pub mod message;
pub mod metrics;
pub mod route;
pub mod run;
pub mod shard_lease;
pub mod shard_list;
pub mod shard_reader;
pub mod shard_task;
pub mod sqs;
