//! The reader's configuration file (`docs/config.md`, `deploy/reader.example.toml`).

use std::path::PathBuf;

use sameday_core::aws::AwsConfig;
use sameday_core::secret::Secret;
use sameday_core::StartPosition;
use serde::Deserialize;

use crate::filter::FilterConfig;
use crate::kinesis::config::KinesisConfig;

pub const DEFAULT_HEARTBEAT_SECS: u64 = 5;
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1000;

fn default_port() -> u16 {
    3306
}
fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_SECS
}
fn default_tls() -> TlsMode {
    TlsMode::Verify
}
fn default_start() -> String {
    "latest".into()
}
fn default_interval() -> u64 {
    DEFAULT_CHECKPOINT_INTERVAL_MS
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// TLS with the server certificate verified against `tls_ca_file` or the system roots.
    Verify,
    /// TLS without verifying the server (logs a warning at start).
    InsecureSkipVerify,
    /// Plain TCP (local development only).
    Disabled,
}

/// `[source]`: the MySQL/MariaDB server to replicate from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    #[serde(default)]
    pub password: Secret,
    /// This replica's server id; must differ from the source's and every other replica's.
    pub server_id: u32,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The server sends a heartbeat after this many idle seconds; three missed ones mean
    /// the connection is dead and the reader reconnects.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
}

impl SourceConfig {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Parses `mysql://USER:PASS@HOST:PORT` (used by `tail` and `replay --source`).
    pub fn from_url(url: &str, server_id: u32) -> Result<Self, String> {
        let rest = url
            .strip_prefix("mysql://")
            .ok_or_else(|| format!("source URL {:?} must start with mysql://", redact(url)))?;
        let (auth, hostport) =
            rest.rsplit_once('@').ok_or_else(|| format!("source URL {:?} needs USER@HOST", redact(url)))?;
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u.to_owned(), Secret::new(p)),
            None => (auth.to_owned(), Secret::default()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => {
                (h.to_owned(), p.parse().map_err(|_| format!("source URL {:?}: bad port {p:?}", redact(url)))?)
            }
            None => (hostport.to_owned(), 3306),
        };
        let tls = if host == "127.0.0.1" || host == "localhost" || host == "::1" {
            TlsMode::Disabled
        } else {
            TlsMode::Verify
        };
        Ok(Self {
            host,
            port,
            user,
            password,
            server_id,
            tls,
            tls_ca_file: None,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
        })
    }
}

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
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

pub const DEFAULT_LEASE_MS: u64 = 10_000;

impl CheckpointConfig {
    pub fn interval_ms(&self) -> u64 {
        match self {
            Self::File { interval_ms, .. } | Self::Dynamodb { interval_ms, .. } => *interval_ms,
        }
    }
}

/// `[metrics]`, served on port 9464 by default.
pub type MetricsConfig = sameday_core::health::MetricsConfig<9464>;

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
    /// JSON-lines file for rows that cannot be delivered (too large, undecodable).
    pub dead_letter_path: PathBuf,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub aws: AwsConfig,
}

impl ReaderConfig {
    /// Checks values serde cannot; names the field.
    pub fn validate(&self) -> Result<StartPosition, String> {
        if self.source.host.is_empty() {
            return Err("source.host is empty".into());
        }
        if self.source.user.is_empty() {
            return Err("source.user is empty".into());
        }
        if self.source.server_id == 0 {
            return Err("source.server_id must be a non-zero replica id, unique among the source's replicas".into());
        }
        if !(1..=300).contains(&self.source.heartbeat_secs) {
            return Err(format!("source.heartbeat_secs = {} is outside 1..=300", self.source.heartbeat_secs));
        }
        if self.source.tls == TlsMode::Disabled && self.source.tls_ca_file.is_some() {
            return Err("source.tls_ca_file is set but source.tls = \"disabled\"".into());
        }
        if let Some(ca) = &self.source.tls_ca_file {
            if !ca.exists() {
                return Err(format!("source.tls_ca_file {} does not exist", ca.display()));
            }
        }
        self.kinesis.validate()?;
        crate::filter::TableFilter::new(&self.filter).map_err(|e| format!("filter: {e}"))?;
        if self.checkpoint.interval_ms() == 0 || self.checkpoint.interval_ms() > 60_000 {
            return Err(format!("checkpoint.interval_ms = {} is outside 1..=60000", self.checkpoint.interval_ms()));
        }
        if let CheckpointConfig::Dynamodb { lease_ms, .. } = &self.checkpoint {
            if !(3_000..=600_000).contains(lease_ms) {
                return Err(format!("checkpoint.lease_ms = {lease_ms} is outside 3000..=600000"));
            }
        }
        self.start_position.parse::<StartPosition>().map_err(|e| format!("start_position: {e}"))
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

    #[test]
    fn source_urls_parse_and_redact() {
        let s = SourceConfig::from_url("mysql://repl:s3cret@10.0.0.5:3307", 99).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str(), s.password.expose()),
            ("10.0.0.5", 3307, "repl", "s3cret")
        );
        assert_eq!(s.tls, TlsMode::Verify);
        assert_eq!(redact("mysql://repl:s3cret@h:1"), "mysql://repl:***@h:1");
        let err = SourceConfig::from_url("mysql://repl:s3cret@h:x", 1).unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
