//! Reader errors, classified once: transient (reconnect and resume from the checkpoint),
//! definite for one row or table (dead-letter it, keep streaming), or fatal (stop with an
//! operator hint).

use sameday_core::BinlogPosition;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode {event} for {db}.{table} at {position}: {reason}")]
    Row { event: String, db: String, table: String, position: BinlogPosition, reason: String },
    #[error("cannot decode {event} at {position}: {reason}")]
    Event { event: String, position: BinlogPosition, reason: String },
    #[error("{event} at {position} is not supported: {reason}")]
    Unsupported { event: String, position: BinlogPosition, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("deposed: {0}")]
    Deposed(String),
    #[error(transparent)]
    Source(#[from] sameday_mysql::MysqlError),
    #[error(
        "the binlog position {position} is no longer on {source_addr} (purged or never existed): {server_message}. \
         Changes between the checkpoint and the oldest binlog the server still has cannot be streamed. \
         Options: replay the missing range from archived binlog files with `sameday replay --binlog-file ...`, \
         then move the checkpoint with `sameday positions --set earliest` (or a position you choose); \
         sameday never skips ahead on its own"
    )]
    PositionPurged { source_addr: String, position: String, server_message: String },
    #[error("preflight failed on {source_addr}:\n{problems}")]
    Preflight { source_addr: String, problems: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] sameday_core::checkpoint::CheckpointError),
    #[error("Kinesis stream {stream}: {message}")]
    Sink { stream: String, message: String },
    #[error("binlog file {path}: {message}")]
    File { path: String, message: String },
}

impl ReaderError {
    /// Whether reconnecting and resuming from the last checkpoint may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Source(e) => e.is_transient(),
            Self::Checkpoint(e) => e.is_transient(),
            _ => false,
        }
    }
}
