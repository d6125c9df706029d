//! The PutRecords call: request encoding and per-record outcome classification.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use sameday_core::aws::{classify, classify_code, describe, Retry};

use crate::kinesis::config::DEFAULT_MAX_RECORD_BYTES;
use crate::sink::{RecordOutcome, RecordSink, SinkError, SinkRecord};

pub struct KinesisSink {
    client: Client,
    stream: String,
    max_record_bytes: usize,
    configured_max: bool,
}

impl KinesisSink {
    /// A sink for `stream`; `max_record_bytes` as configured, else the default until
    /// [`Self::check`] reads the stream's own limit.
    pub fn new(client: Client, stream: impl Into<String>, max_record_bytes: Option<usize>) -> Self {
        Self {
            client,
            stream: stream.into(),
            max_record_bytes: max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES),
            configured_max: max_record_bytes.is_some(),
        }
    }

    /// Checks that the stream exists and is writable, and takes its maximum record size
    /// unless one was configured; returns its status line.
    pub async fn check(&mut self) -> Result<String, SinkError> {
        let out =
            self.client.describe_stream_summary().stream_name(&self.stream).send().await.map_err(|e| SinkError {
                message: format!("DescribeStreamSummary {}: {}", self.stream, describe(&e)),
                transient: classify(&e) == Retry::Transient,
            })?;
        let summary = out.stream_description_summary();
        if let Some(kib) = summary.and_then(|s| s.max_record_size_in_kib()).filter(|_| !self.configured_max) {
            self.max_record_bytes = kib.max(1) as usize * 1024;
        }
        let status = summary
            .map(|s| {
                format!(
                    "{:?} with {} open shards, records up to {} bytes",
                    s.stream_status(),
                    s.open_shard_count(),
                    self.max_record_bytes
                )
            })
            .unwrap_or_else(|| "unknown".into());
        Ok(status)
    }
}

impl RecordSink for KinesisSink {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        let entries: Vec<PutRecordsRequestEntry> = batch
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&r.partition_key)
                    .data(Blob::new(r.data.to_vec()))
                    .build()
                    .expect("partition key and data are set")
            })
            .collect();
        let out = self.client.put_records().stream_name(&self.stream).set_records(Some(entries)).send().await.map_err(
            |e| SinkError {
                message: format!("PutRecords to {}: {}", self.stream, describe(&e)),
                transient: classify(&e) == Retry::Transient,
            },
        )?;
        let results = out.records();
        if results.len() != batch.len() {
            return Err(SinkError {
                message: format!("PutRecords returned {} results for {} records", results.len(), batch.len()),
                transient: true,
            });
        }
        Ok(results
            .iter()
            .map(|r| match r.error_code() {
                None => RecordOutcome::Delivered,
                Some(code) => {
                    // Every per-record error Kinesis documents is worth retrying; an unknown
                    // one is retried too (with backoff), because dropping it would lose data.
                    let _ = classify_code(code);
                    RecordOutcome::Retry { code: code.to_owned() }
                }
            })
            .collect())
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    fn describe(&self) -> String {
        format!("kinesis:{}", self.stream)
    }
}
