//! The reader's dead letters: rows that cannot go to Kinesis (undecodable; too large without
//! the claim-check) are kept with everything needed to act on them, and counted. The stream
//! goes on; nothing is dropped silently.
//!
//! - A file (`dead_letter_path`): JSON lines, appended and synced before the row is passed.
//! - S3 (`dead_letter_location`, the deployed set-up: a task's disk does not outlive it): one
//!   object per dead letter, under a key derived from the row's event id (or its binlog
//!   position), so reading the same binlog again rewrites the same object. Objects are written
//!   in the background and [`DeadLetters::flush`] waits for them: the publisher flushes before
//!   every checkpoint, so the checkpoint never passes a dead letter that is not stored.
//!
//! `sameday dead-letters list|replay` reads both shapes ([`DeadLetter`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use sameday_core::aws::Retry;
use sameday_core::backoff::Backoff;
use sameday_core::s3::{ObjectStore, S3Error};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::error::ReaderError;

/// Attempts of one S3 write that may pass (throttling, 5xx) before the reader stops.
const S3_ATTEMPTS: u32 = 10;

/// One dead letter, as a file line and as an S3 object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub ts_ms: u64,
    /// `db.table`.
    pub table: String,
    /// Binlog position of the rows event.
    pub position: String,
    /// The change's event id, when it was encoded.
    pub id: Option<String>,
    pub partition_key: Option<String>,
    pub reason: String,
    /// The full change record (base64), so it can be re-sent (`sameday dead-letters replay`).
    pub record_base64: Option<String>,
}

impl DeadLetter {
    pub fn new(
        table: &str,
        position: &sameday_core::BinlogPosition,
        id: Option<&str>,
        partition_key: Option<&str>,
        reason: &str,
        record: Option<&[u8]>,
    ) -> Self {
        Self {
            ts_ms: sameday_core::clock::now_ms(),
            table: table.to_owned(),
            position: position.to_string(),
            id: id.map(str::to_owned),
            partition_key: partition_key.map(str::to_owned),
            reason: reason.to_owned(),
            record_base64: record.map(|r| base64::engine::general_purpose::STANDARD.encode(r)),
        }
    }

    /// The stored change record, when there is one.
    pub fn record(&self) -> Option<Vec<u8>> {
        self.record_base64.as_deref().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    }

    /// The object name under the dead-letter prefix: `db.table/<event id>.json`, or
    /// `db.table/<file>.<pos>.json` for a row that was never encoded.
    pub fn object_name(&self) -> String {
        let name = match &self.id {
            Some(id) => id.clone(),
            None => self.position.replace(':', "."),
        };
        format!("{}/{name}.json", self.table)
    }
}

enum Target {
    File(PathBuf),
    S3(ObjectStore),
}

/// Where this reader's dead letters go.
pub struct DeadLetters {
    target: Target,
    pending: JoinSet<Result<(), S3Error>>,
}

impl DeadLetters {
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self { target: Target::File(path.into()), pending: JoinSet::new() }
    }

    pub fn s3(store: ObjectStore) -> Self {
        Self { target: Target::S3(store), pending: JoinSet::new() }
    }

    /// The file or `s3://` location, for log lines.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::File(p) => p.display().to_string(),
            Target::S3(s) => s.location().to_string(),
        }
    }

    /// Stores `letter`: a file line now, an S3 object in the background ([`Self::flush`]).
    pub fn write(&mut self, letter: DeadLetter) -> Result<(), String> {
        match &self.target {
            Target::File(path) => {
                append(path, &letter).map_err(|e| format!("dead-letter file {}: {e}", path.display()))
            }
            Target::S3(store) => {
                let store = store.clone();
                self.pending.spawn(async move { put(&store, &letter).await });
                Ok(())
            }
        }
    }

    /// Waits until every dead letter written so far is stored; an S3 error that retrying
    /// could not fix stops the reader (its checkpoint stays before the row).
    pub async fn flush(&mut self) -> Result<(), ReaderError> {
        while let Some(done) = self.pending.join_next().await {
            let stored = done.map_err(|e| ReaderError::Sink {
                stream: self.describe(),
                message: format!("dead-letter write task failed: {e}"),
            })?;
            stored.map_err(|e| ReaderError::Sink {
                stream: self.describe(),
                message: format!("{e}; the checkpoint stays before the dead-lettered row"),
            })?;
        }
        Ok(())
    }
}

fn append(path: &std::path::Path, letter: &DeadLetter) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut bytes = serde_json::to_vec(letter).expect("dead letters serialize");
    bytes.push(b'\n');
    f.write_all(&bytes)?;
    f.sync_data()
}

async fn put(store: &ObjectStore, letter: &DeadLetter) -> Result<(), S3Error> {
    let body = serde_json::to_vec(letter).expect("dead letters serialize");
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        match store.put(&letter.object_name(), body.clone(), "application/json").await {
            Ok(_) => return Ok(()),
            Err(e) if e.retry == Retry::Transient && attempt < S3_ATTEMPTS => {
                attempt += 1;
                tracing::warn!(error = %e, "dead-letter write failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_the_event_id_or_the_position() {
        let pos: sameday_core::BinlogPosition = "mysql-bin.000042:1234".parse().unwrap();
        let with_id = DeadLetter::new("app.t", &pos, Some("0-1-9/0/2"), Some("app.t:1"), "too large", Some(b"{}"));
        assert_eq!(with_id.object_name(), "app.t/0-1-9/0/2.json");
        assert_eq!(with_id.record().as_deref(), Some(&b"{}"[..]));
        let undecodable = DeadLetter::new("app.t", &pos, None, None, "partial JSON", None);
        assert_eq!(undecodable.object_name(), "app.t/mysql-bin.000042.1234.json");
        assert_eq!(undecodable.record(), None);
        let line = serde_json::to_string(&with_id).unwrap();
        assert_eq!(serde_json::from_str::<DeadLetter>(&line).unwrap(), with_id);
    }
}
