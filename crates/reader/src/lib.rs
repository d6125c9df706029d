//! The binlog reader: connects to MySQL/MariaDB as a replica (or reads binlog files from
//! disk), decodes row events, encodes them as change records and publishes them to Kinesis,
//! checkpointing the position only after Kinesis acknowledged every record before it.
//!
//! The data path, one module each: [`source`] (live stream with its reconnect policy, or
//! files) -> [`decoder`] (events to rows and commits) -> `encode` (rows to the envelope or
//! DMS JSON) -> [`pipeline`] (bounded hand-over) -> [`publisher`] (per-key order, checkpoint
//! behind durable delivery) -> [`sink`] / [`kinesis`]. [`run`] wires the daemon; `lease` and
//! `headroom` are its side tasks; [`replay`] is the operator's path through the same stages.

pub mod config;
pub(crate) mod dead_letter;
pub mod decoder;
pub(crate) mod encode;
pub mod error;
pub mod filter;
pub(crate) mod headroom;
pub mod kinesis;
pub(crate) mod lease;
pub mod metrics;
pub mod pipeline;
pub mod publisher;
pub mod replay;
pub mod run;
pub mod sink;
pub mod source;
pub mod store;

pub use config::ReaderConfig;
pub use dead_letter::DeadLetterFile;
pub use error::ReaderError;
pub use pipeline::run_pipeline;
pub use run::run_reader;
pub use source::stream::SourceRun;

#[cfg(test)]
mod publisher_tests;
