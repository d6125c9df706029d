//! The binlog reader: connects to MySQL/MariaDB as a replica (or reads binlog files from
//! disk), decodes row events into change envelopes and publishes them to Kinesis,
//! checkpointing the position only after Kinesis acknowledged every record before it.

pub mod check;
pub mod config;
pub mod dead_letter;
pub mod decoder;
pub mod error;
pub mod filter;
pub mod kinesis;
pub mod metrics;
pub mod publisher;
pub mod run;
pub(crate) mod schema;
pub mod sink;
pub mod source;
pub(crate) mod value;

#[cfg(test)]
mod publisher_tests;
