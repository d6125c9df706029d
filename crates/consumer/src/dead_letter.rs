//! Where records the consumer cannot forward end up: a JSON-lines file or an SQS queue.
//! A shard's checkpoint passes a dead-lettered record only after the dead letter is
//! stored, so nothing is dropped silently.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::fanout::DeadLetter;
use crate::message::sqs_id;
use crate::sqs::{SendOutcome, SqsMessage, SqsQueue};

/// One dead letter as stored (a file line, a queue message's body): what
/// `sameday dead-letters list|replay` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterLine {
    pub ts_ms: u64,
    pub stream: String,
    pub shard: String,
    pub sequence: String,
    pub reason: String,
    /// The record as text when it is UTF-8, else absent (see `record_base64`).
    pub record: Option<String>,
    pub record_base64: Option<String>,
}

impl DeadLetterLine {
    /// The Kinesis record's bytes.
    pub fn data(&self) -> Option<Vec<u8>> {
        match (&self.record, &self.record_base64) {
            (Some(text), _) => Some(text.clone().into_bytes()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            (None, None) => None,
        }
    }
}

fn line(stream: &str, d: &DeadLetter) -> Vec<u8> {
    let text = std::str::from_utf8(&d.data).ok();
    let line = DeadLetterLine {
        ts_ms: sameday_core::clock::now_ms(),
        stream: stream.to_owned(),
        shard: d.shard.clone(),
        sequence: d.sequence.as_str().to_owned(),
        reason: d.reason.clone(),
        record: text.map(str::to_owned),
        record_base64: text.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&d.data)),
    };
    serde_json::to_vec(&line).expect("dead-letter lines serialize")
}

pub(crate) enum DeadLetterSink {
    File(PathBuf),
    Queue(SqsQueue),
}

impl DeadLetterSink {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::File(p) => format!("file {}", p.display()),
            Self::Queue(q) => format!("queue {}", q.url()),
        }
    }

    /// Stores `letters` durably (file: appended and synced; queue: accepted by SQS).
    pub(crate) async fn store(&self, stream: &str, letters: &[DeadLetter]) -> Result<(), String> {
        if letters.is_empty() {
            return Ok(());
        }
        match self {
            Self::File(path) => {
                let mut bytes = Vec::new();
                for d in letters {
                    bytes.extend(line(stream, d));
                    bytes.push(b'\n');
                }
                let write = || -> std::io::Result<()> {
                    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)?;
                    }
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                    f.write_all(&bytes)?;
                    f.sync_data()
                };
                write().map_err(|e| format!("dead-letter file {}: {e}", path.display()))
            }
            Self::Queue(queue) => {
                for chunk in letters.chunks(crate::sqs::MAX_BATCH_ENTRIES) {
                    let msgs: Vec<SqsMessage> = chunk
                        .iter()
                        .map(|d| {
                            let json = String::from_utf8(line(stream, d)).expect("JSON is UTF-8");
                            // Any text the record holds, as SQS takes it (message::sqs_body).
                            let body = crate::message::sqs_body(&json).into_owned();
                            let fifo = queue.is_fifo();
                            SqsMessage {
                                // Per-shard order; the record's position is its identity.
                                group_id: fifo.then(|| sqs_id(&d.shard)),
                                dedup_id: fifo.then(|| sqs_id(&format!("{}/{}", d.shard, d.sequence))),
                                body,
                            }
                        })
                        .collect();
                    let outcomes = queue.send_batch(&msgs).await.map_err(|e| e.to_string())?;
                    if let Some(bad) = outcomes.iter().find(|o| **o != SendOutcome::Sent) {
                        return Err(format!("dead-letter queue {}: {bad:?}", queue.url()));
                    }
                }
                Ok(())
            }
        }
    }
}
