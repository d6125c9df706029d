//! Reader checkpoints: the binlog position from which a restarted reader resumes.
//!
//! Rules every store enforces:
//! - A checkpoint names the end of a *committed* transaction whose records Kinesis has
//!   acknowledged (the reader only calls `save` then), so resuming there loses nothing.
//! - A checkpoint never moves backwards: `save` of an older position than the stored one
//!   is refused with [`CheckpointError::Backwards`], so a confused or stale writer cannot
//!   rewind the stream. Operators move it with `force_save` (`sameday positions --set`).
//! - Writes are atomic: a crash during `save` leaves the previous or the new checkpoint,
//!   never a torn one.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::position::{BinlogPosition, GtidSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The next event to read: the end of the last fully delivered transaction.
    pub position: BinlogPosition,
    /// Executed GTID set up to and including that transaction, when the server has GTIDs.
    #[serde(default)]
    pub gtid_set: Option<GtidSet>,
    /// Commit time of that transaction (ms since the epoch), for the checkpoint-age metric.
    pub commit_ts_ms: u64,
    /// When it was written (ms since the epoch).
    pub saved_at_ms: u64,
}

impl Checkpoint {
    /// A number that grows with the position on one server: file sequence, then offset.
    pub fn order(&self) -> u64 {
        (crate::position::file_sequence(&self.position.file) << 32) | (self.position.pos & 0xffff_ffff)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint would move backwards from {stored} to {attempted}; refusing (use `sameday positions --set` to move it on purpose)")]
    Backwards { stored: BinlogPosition, attempted: BinlogPosition },
    #[error("checkpoint {key} is owned by a newer reader (fencing token {current} > ours {ours}); this reader was deposed and must stop")]
    Fenced { key: String, ours: u64, current: u64 },
    #[error("checkpoint file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("checkpoint {location} holds unreadable data: {source}")]
    Corrupt { location: String, source: serde_json::Error },
    #[error("checkpoint store {location}: {message}")]
    Remote { location: String, message: String, retryable: bool },
}

impl CheckpointError {
    /// Whether the same call may succeed if tried again after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Remote { retryable: true, .. })
    }
}

/// Where a daemon keeps its progress. Implementations must be safe to call from one task
/// at a time; the reader never issues two saves concurrently.
pub trait CheckpointStore: Send + Sync {
    fn load(&self) -> impl Future<Output = Result<Option<Checkpoint>, CheckpointError>> + Send;
    fn save(&self, cp: &Checkpoint) -> impl Future<Output = Result<(), CheckpointError>> + Send;
    /// Writes `cp` even if it is older than the stored checkpoint (operator action).
    fn force_save(&self, cp: &Checkpoint) -> impl Future<Output = Result<(), CheckpointError>> + Send;
    /// A human-readable name for logs (`file:/var/lib/sameday/cp.json`, `dynamodb:tbl/key`).
    fn describe(&self) -> String;
}

/// No checkpoint at all: the store of runs that must never move one (replay, tail). Loads
/// nothing and refuses to save.
pub struct NoCheckpoint;

impl CheckpointStore for NoCheckpoint {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(None)
    }

    async fn save(&self, _cp: &Checkpoint) -> Result<(), CheckpointError> {
        Err(CheckpointError::Remote {
            location: "none".into(),
            message: format!("this run keeps no checkpoint (asked to save {})", _cp.position),
            retryable: false,
        })
    }

    async fn force_save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.save(cp).await
    }

    fn describe(&self) -> String {
        "none".into()
    }
}

/// A checkpoint in a local JSON file, replaced atomically (write temp, fsync, rename).
pub struct FileCheckpointStore {
    path: PathBuf,
    last: Mutex<Option<Checkpoint>>,
}

impl FileCheckpointStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), last: Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError::File { path: self.path.clone(), source }
    }

    fn read(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CheckpointError::Corrupt { location: self.path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(e)),
        }
    }

    fn write(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io_err(e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io_err(e))?;
        let bytes = serde_json::to_vec_pretty(cp).expect("a checkpoint always serializes");
        tmp.write_all(&bytes).map_err(|e| self.io_err(e))?;
        tmp.as_file().sync_all().map_err(|e| self.io_err(e))?;
        tmp.persist(&self.path).map_err(|e| self.io_err(e.error))?;
        // The rename is durable only once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn save_checked(&self, cp: &Checkpoint, force: bool) -> Result<(), CheckpointError> {
        let mut last = self.last.lock().expect("checkpoint mutex poisoned");
        if last.is_none() {
            *last = self.read()?;
        }
        if let Some(stored) = last.as_ref() {
            if !force && cp.order() < stored.order() {
                return Err(CheckpointError::Backwards {
                    stored: stored.position.clone(),
                    attempted: cp.position.clone(),
                });
            }
        }
        self.write(cp)?;
        *last = Some(cp.clone());
        Ok(())
    }
}

impl CheckpointStore for FileCheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let cp = self.read()?;
        *self.last.lock().expect("checkpoint mutex poisoned") = cp.clone();
        Ok(cp)
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.save_checked(cp, false)
    }

    async fn force_save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.save_checked(cp, true)
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(file: &str, pos: u64) -> Checkpoint {
        Checkpoint { position: BinlogPosition::new(file, pos), gtid_set: None, commit_ts_ms: 1, saved_at_ms: 2 }
    }

    #[tokio::test]
    async fn file_checkpoint_never_moves_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::new(dir.path().join("sub/cp.json"));
        assert_eq!(store.load().await.unwrap(), None);
        store.save(&cp("bin.000002", 100)).await.unwrap();
        store.save(&cp("bin.000002", 200)).await.unwrap();
        let err = store.save(&cp("bin.000001", 900)).await.unwrap_err();
        assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");
        // A fresh store instance (a restarted reader) sees the same rule.
        let again = FileCheckpointStore::new(dir.path().join("sub/cp.json"));
        assert_eq!(again.load().await.unwrap(), Some(cp("bin.000002", 200)));
        assert!(again.save(&cp("bin.000002", 150)).await.is_err());
        again.force_save(&cp("bin.000002", 150)).await.unwrap();
        assert_eq!(again.load().await.unwrap(), Some(cp("bin.000002", 150)));
    }

    #[tokio::test]
    async fn corrupt_checkpoint_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = FileCheckpointStore::new(&path).load().await.unwrap_err().to_string();
        assert!(err.contains("cp.json") && err.contains("unreadable"), "{err}");
    }
}
