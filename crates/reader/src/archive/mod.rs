//! The binlog archive: `sameday archive` copies every binlog file the source rotates to S3,
//! byte for byte (what `mysqlbinlog --read-from-remote-server --raw` writes), and
//! `sameday replay --archive` / `--binlog-file s3://...` replays from there through the
//! file source, so event ids equal the live stream's. It is the answer to "the binlog was
//! purged" (docs/archive.md).
//!
//! What it guarantees, and why:
//! - **No gaps, no duplicates, across crashes.** The object key is the file name under the
//!   archive's prefix and each object is written whole (one PutObject after the whole file
//!   was read and verified), so the S3 listing alone says what is archived: after a crash the
//!   next round lists, skips what is there with the right size and copies the rest, oldest
//!   first. Writing a file twice writes the same bytes to the same key.
//! - **Only final bytes.** Only rotated files are copied (the last file of `SHOW BINARY LOGS`
//!   may still grow), and a copy must end exactly at the listed size, with every event where
//!   its header says and every CRC32 right ([`raw_file`]).
//! - **Integrity in S3.** Each object carries the SHA-256 of its body; replays verify it.
//! - **Loss is loud.** A file the source purged before it was archived is named in an error
//!   log and counted in `sameday_archive_missing_files`; an archived object whose size differs
//!   from the source's file of that name stops the daemon instead of being overwritten.
//!
//! Modules: [`config`] (`[archive]`), [`catalog`] (the pure archive-vs-server decisions),
//! [`raw_file`] (assembling and verifying one file), [`copy`] (the dump connection), [`run`]
//! (the daemon), [`fetch`] (replay's download), [`metrics`].

pub(crate) mod catalog;
pub(crate) mod config;
mod copy;
mod fetch;
mod metrics;
mod raw_file;
mod run;

use sameday_core::aws::Retry;
use sameday_core::s3::S3Error;
use sameday_mysql::MysqlError;

pub use catalog::{describe_ranges, ArchiveStatus};
pub use config::ArchiveConfig;
pub use fetch::{fetch_objects, fetch_range, parse_object_url, FetchedFiles};
pub use run::{archive_status, run_archive, ArchiveSummary};

/// Content type of archived binlog files.
const CONTENT_TYPE: &str = "application/octet-stream";

/// Archive errors, classified once: transient ones (the source or S3 did not answer) end a
/// round and the next one retries; the others stop the daemon with the fix.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Source(#[from] MysqlError),
    #[error("binlog archive: {0}")]
    S3(#[from] S3Error),
    #[error("copying binlog file {0}")]
    Copy(String),
    #[error(
        "{url} holds {archived} bytes but the source's {name} has {server}: this prefix holds another server's \
         binlogs, or the source's binlogs were reset and renumbered. Point archive.location at a new prefix, or move \
         the old objects away; the archive never overwrites an archived file"
    )]
    Conflict { url: String, name: String, archived: u64, server: u64 },
    #[error("replay from the archive: {0}")]
    Fetch(String),
}

impl ArchiveError {
    /// Whether a later round may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Source(e) => e.is_transient(),
            Self::S3(e) => e.retry == Retry::Transient,
            // A stream cut short or a checksum wrong in transit: read the file again.
            Self::Copy(_) => true,
            Self::Config(_) | Self::Conflict { .. } | Self::Fetch(_) => false,
        }
    }

    /// The `kind` label of `sameday_archive_errors_total`.
    fn kind(&self) -> &'static str {
        match self {
            Self::Source(_) => "source",
            Self::S3(_) => "s3",
            Self::Copy(_) => "copy",
            Self::Config(_) | Self::Conflict { .. } | Self::Fetch(_) => "fatal",
        }
    }
}
