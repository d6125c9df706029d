//! The reader's configuration file (`docs/config.md`, `deploy/reader.example.toml`).

use std::path::PathBuf;

use sameday_mysql::SourceConfig;

use sameday_core::aws::AwsConfig;
use sameday_core::claim_check::ClaimCheckConfig;
use sameday_core::s3::S3Location;
use sameday_core::StartPosition;
use serde::Deserialize;

use crate::archive::ArchiveConfig;
use crate::filter::FilterConfig;
use crate::kinesis::config::{KinesisConfig, RecordFormat};

pub(crate) const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1000;

fn default_start() -> String {
    "latest".into()
}
fn default_interval() -> u64 {
    DEFAULT_CHECKPOINT_INTERVAL_MS
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum CheckpointConfig {
    File {
        path: PathBuf,
        #[serde(default = "default_interval")]
        interval_ms: u64,
    },
    Dynamodb {
        table: String,
        key: String,
        #[serde(default = "default_interval")]
        interval_ms: u64,
        /// Active/standby: the active reader holds a lease on `key` for this long and renews
        /// it every third; a second reader waits as a warm standby and takes over (from the
        /// checkpoint) when the lease expires or is released.
        #[serde(default = "default_lease")]
        lease_ms: u64,
    },
}

fn default_lease() -> u64 {
    DEFAULT_LEASE_MS
}

pub(crate) const DEFAULT_LEASE_MS: u64 = 10_000;

impl CheckpointConfig {
    pub fn interval_ms(&self) -> u64 {
        match self {
            Self::File { interval_ms, .. } | Self::Dynamodb { interval_ms, .. } => *interval_ms,
        }
    }
}

/// `[metrics]`, served on port 9464 by default.
pub(crate) type MetricsConfig = sameday_core::health::MetricsConfig<9464>;

/// The whole reader config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    pub source: SourceConfig,
    /// Where to start when there is no checkpoint: earliest, latest, FILE:POS or a GTID set.
    #[serde(default = "default_start")]
    pub start_position: String,
    #[serde(default)]
    pub filter: FilterConfig,
    pub kinesis: KinesisConfig,
    pub checkpoint: CheckpointConfig,
    /// JSON-lines file for rows that cannot be delivered (undecodable; too large without
    /// `[claim_check]`). Set this or `dead_letter_location` (which wins when both are set).
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
    /// `s3://bucket/prefix/` for the same, one object per row: what a container without a
    /// lasting disk (Fargate) needs.
    #[serde(default)]
    pub dead_letter_location: Option<S3Location>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    /// Changes too large for a Kinesis record go through S3 (`docs/envelope.md`).
    #[serde(default)]
    pub claim_check: Option<ClaimCheckConfig>,
    /// The binlog archive (`sameday archive`); absent: no archive.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
}

impl ReaderConfig {
    /// Checks values serde cannot; names the field.
    pub fn validate(&self) -> Result<StartPosition, String> {
        self.source.validate("source")?;
        if self.source.server_id == 0 {
            return Err("source.server_id must be a non-zero replica id, unique among the source's replicas".into());
        }
        self.kinesis.validate()?;
        // Both set: the S3 location wins (CloudFormation sets it over a file's path).
        if self.dead_letter_path.is_none() && self.dead_letter_location.is_none() {
            return Err("set dead_letter_path (a JSON-lines file) or dead_letter_location (s3://bucket/prefix/)".into());
        }
        if let Some(cc) = &self.claim_check {
            if self.kinesis.format != RecordFormat::Sameday {
                return Err(
                    "claim_check needs kinesis.format = \"sameday\": the DMS format has no pointer records".into()
                );
            }
            cc.validate(self.kinesis.max_record_bytes)?;
        }
        crate::filter::TableFilter::new(&self.filter).map_err(|e| format!("filter: {e}"))?;
        if self.checkpoint.interval_ms() == 0 || self.checkpoint.interval_ms() > 60_000 {
            return Err(format!("checkpoint.interval_ms = {} is outside 1..=60000", self.checkpoint.interval_ms()));
        }
        if let CheckpointConfig::Dynamodb { lease_ms, .. } = &self.checkpoint {
            if !(3_000..=600_000).contains(lease_ms) {
                return Err(format!("checkpoint.lease_ms = {lease_ms} is outside 3000..=600000"));
            }
        }
        if let Some(archive) = &self.archive {
            archive.validate(self.source.server_id)?;
        }
        self.start_position.parse::<StartPosition>().map_err(|e| format!("start_position: {e}"))
    }
}

impl sameday_core::daemon::DaemonConfig for ReaderConfig {
    fn check(&self) -> Result<(), String> {
        self.validate().map(|_| ())
    }

    fn metrics_listen(&self) -> std::net::SocketAddr {
        self.metrics.listen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../deploy/reader.example.toml");
        let cfg: ReaderConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.validate().unwrap(), StartPosition::Latest);
        assert_eq!(cfg.kinesis.stream, "sameday-changes");
    }
}
