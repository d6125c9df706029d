//! Kinesis limits and the publisher's settings.

use serde::Deserialize;

/// Records per PutRecords request (service limit).
pub(crate) const MAX_RECORDS_PER_REQUEST: usize = 500;
/// Bytes per PutRecords request, data plus partition keys (service limit).
pub(crate) const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// Default maximum record size (data plus partition key); streams may raise it to 10 MiB.
pub(crate) const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
pub(crate) const DEFAULT_LINGER_MS: u64 = 20;
pub(crate) const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 4;

fn default_linger_ms() -> u64 {
    DEFAULT_LINGER_MS
}
fn default_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT_REQUESTS
}

/// The shape of each Kinesis record.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// sameday's versioned change envelope (`docs/envelope.md`); what the consumer reads.
    #[default]
    Sameday,
    /// AWS DMS's Kinesis JSON (`data` + `metadata`, `before-image` on updates), so
    /// existing DMS consumers can switch without changes.
    Dms,
}

/// `[kinesis]` in the reader's config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    pub stream: String,
    /// How long a record may wait for companions before its batch is sent.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// The largest record to send (data plus partition key). Default: the stream's own
    /// maximum (DescribeStreamSummary; 1 MiB unless raised). Larger records go through the
    /// claim-check when `[claim_check]` is set, else to the dead-letter file.
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    /// Concurrent PutRecords requests.
    #[serde(default = "default_in_flight")]
    pub max_in_flight_requests: usize,
    #[serde(default)]
    pub format: RecordFormat,
    /// Pack consecutive changes of one row into one KPL aggregated record (read by sameday's
    /// consumer, the KCL and Lambda's de-aggregation libraries). The DMS format is never
    /// aggregated. Turn it off only for stream readers that cannot de-aggregate.
    #[serde(default = "default_aggregate")]
    pub aggregate: bool,
}

fn default_aggregate() -> bool {
    true
}

impl KinesisConfig {
    /// Whether records are aggregated: asked for, and the sameday format.
    pub fn aggregates(&self) -> bool {
        self.aggregate && self.format == RecordFormat::Sameday
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.stream.is_empty() {
            return Err("kinesis.stream must name the Kinesis stream".into());
        }
        if let Some(max) = self.max_record_bytes.filter(|m| !(1..=10 * 1024 * 1024).contains(m)) {
            return Err(format!("kinesis.max_record_bytes = {max} is outside 1..=10485760"));
        }
        if !(1..=64).contains(&self.max_in_flight_requests) {
            return Err(format!("kinesis.max_in_flight_requests = {} is outside 1..=64", self.max_in_flight_requests));
        }
        if self.linger_ms > 10_000 {
            return Err(format!("kinesis.linger_ms = {} is above 10000", self.linger_ms));
        }
        Ok(())
    }
}
