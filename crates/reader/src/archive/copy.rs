//! Copies one rotated binlog file from the server over a raw dump connection
//! ([`sameday_mysql::dump`]) into memory, assembled and verified by [`RawFile`].

use sameday_mysql::dump::BinlogDump;
use sameday_mysql::{MysqlError, SourceConfig};

use super::raw_file::{CompleteFile, Header, RawFile, Step};
use super::ArchiveError;

/// Events read at most to find a file's FORMAT_DESCRIPTION event.
const FIRST_EVENTS: usize = 4;

/// `progress` is called after every this many bytes (a large file takes a while).
const PROGRESS_EVERY: usize = 16 << 20;

/// Reads the whole of `name` (`size` bytes, as `SHOW BINARY LOGS` lists the rotated file)
/// registered as replica `server_id`.
pub(crate) async fn copy_file(
    source: &SourceConfig,
    server_id: u32,
    name: &str,
    size: u64,
    progress: impl Fn(),
) -> Result<CompleteFile, ArchiveError> {
    let mut dump = BinlogDump::connect(source).await?;
    dump.request(server_id, name, 4).await?;
    let mut file = RawFile::new(name, size);
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let start = file.len();
        if !dump.next_event_into(file.buffer()).await? {
            break;
        }
        if file.len() >= next_progress {
            progress();
            next_progress = file.len() + PROGRESS_EVERY;
        }
        if file.accept(start).map_err(ArchiveError::Copy)? == Step::Complete {
            break;
        }
    }
    file.finish().map_err(ArchiveError::Copy)
}

/// When the server opened `name`: the time of its FORMAT_DESCRIPTION event (the first
/// event of the file), Unix seconds. Purges go by a file's last write, which is when the
/// *next* file was opened, so this dates the rotation of the file before `name`.
pub(crate) async fn created_at(source: &SourceConfig, server_id: u32, name: &str) -> Result<u32, ArchiveError> {
    let mut dump = BinlogDump::connect(source).await?;
    dump.request(server_id, name, 4).await?;
    let mut buf = Vec::new();
    // The fake ROTATE, maybe a fake FORMAT_DESCRIPTION, then the file's own.
    for _ in 0..FIRST_EVENTS {
        buf.clear();
        if !dump.next_event_into(&mut buf).await? {
            return Err(ArchiveError::Source(MysqlError::new(
                source.address(),
                format!("{name} ended before its FORMAT_DESCRIPTION event"),
                false,
            )));
        }
        match Header::parse(&buf) {
            Some(h) if h.is_format_description() && !h.is_artificial() => return Ok(h.timestamp),
            _ => {}
        }
    }
    Err(ArchiveError::Source(MysqlError::new(
        source.address(),
        format!("{name} does not start with a FORMAT_DESCRIPTION event"),
        false,
    )))
}
