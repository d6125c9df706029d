//! The binlog reader: connects to MySQL/MariaDB as a replica (or reads binlog files from
//! disk), decodes row events, encodes them as change records and publishes them to Kinesis,
//! checkpointing the position only after Kinesis acknowledged every record before it.
//!
//! The data path, one module each: `source` (live stream with its reconnect policy, or
//! files) -> `decoder` (events to rows and commits) -> `encode` (rows to the envelope or DMS
//! JSON) -> `pipeline` (bounded hand-over) -> `publisher` (per-key order, checkpoint behind
//! durable delivery) -> `sink` / `kinesis`. `run` wires the daemon; `lease` and `headroom`
//! are its side tasks; `replay` is the operator's path through the same stages. `archive`
//! copies the source's binlog files to S3 (a daemon of its own) and fetches them for replays.
//!
//! What the `sameday` binary and the tests use is re-exported here; the modules are private.

mod archive;
mod claim_check;
mod config;
pub mod dead_letter;
mod decoder;
mod encode;
mod error;
mod filter;
mod headroom;
mod kinesis;
mod lease;
mod metrics;
mod pipeline;
mod publisher;
mod replay;
mod run;
mod sink;
mod source;
mod store;

pub use archive::{
    archive_status, describe_ranges, fetch_objects, fetch_range, parse_object_url, run_archive, ArchiveConfig,
    ArchiveError, ArchiveStatus, ArchiveSummary, FetchedFiles,
};
pub use claim_check::ClaimChecker;
pub use config::{CheckpointConfig, ReaderConfig};
pub use decoder::{Commit, Decoder, Output, Record};
pub use error::{DecodeError, ReaderError};
pub use filter::{FilterConfig, TableFilter};
pub use kinesis::config::{KinesisConfig, RecordFormat};
pub use kinesis::KinesisSink;
pub use pipeline::run_pipeline;
pub use publisher::{PublishSummary, Publisher, PublisherConfig};
pub use replay::{publisher_config, replay, FileReplay, ReplaySource};
pub use run::{kinesis_sink, run_reader};
pub use sink::{CountingSink, FaultySink, NullSink, RecordOutcome, RecordSink, SinkError, SinkRecord, StdoutSink};
pub use source::file::{replay_file_events, replay_files, FileRange};
pub use source::live::Start;
pub use source::prepare::{prepare_source, resolve, resolve_start};
pub use source::stream::SourceRun;
pub use store::open_store;

#[cfg(test)]
mod publisher_tests;
