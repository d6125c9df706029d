//! The dead-letter file: rows that cannot go to Kinesis (too large, undecodable) are
//! appended here as JSON lines with everything needed to act on them, and counted. The
//! stream goes on; nothing is dropped silently.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;

#[derive(Serialize)]
struct Line<'a> {
    ts_ms: u64,
    table: &'a str,
    position: String,
    id: Option<&'a str>,
    partition_key: Option<&'a str>,
    reason: &'a str,
    /// The full change record (base64), so it can be re-sent by hand.
    record_base64: Option<String>,
}

pub struct DeadLetterFile {
    path: PathBuf,
}

impl DeadLetterFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        table: &str,
        position: &sameday_core::BinlogPosition,
        id: Option<&str>,
        partition_key: Option<&str>,
        reason: &str,
        record: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let line = Line {
            ts_ms: sameday_core::clock::now_ms(),
            table,
            position: position.to_string(),
            id,
            partition_key,
            reason,
            record_base64: record.map(|r| base64::engine::general_purpose::STANDARD.encode(r)),
        };
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut bytes = serde_json::to_vec(&line).expect("dead-letter lines serialize");
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_data()
    }
}
