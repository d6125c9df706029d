//! `[archive]` of the reader's config file: where `sameday archive` copies the source's
//! binlog files, and how often it looks for newly rotated ones.

use std::net::SocketAddr;

use sameday_core::s3::S3Location;
use serde::Deserialize;

pub(crate) const DEFAULT_POLL_INTERVAL_MS: u64 = 10_000;
/// S3's limit for one PutObject; a file is copied whole, in one request.
pub(crate) const PUT_OBJECT_MAX_BYTES: u64 = 5 << 30;
/// Files above this are refused unless raised: the copy holds the whole file in memory.
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 2 << 30;
/// Beside the reader's 9464, so both can run on one host.
pub(crate) const DEFAULT_METRICS_PORT: u16 = 9465;

fn default_poll() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}
fn default_max_file() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], DEFAULT_METRICS_PORT))
}

/// `[archive]`: the binlog archive (`sameday archive`, `docs/archive.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// `s3://bucket/prefix/`: each binlog file becomes the object `<prefix><file name>`.
    pub location: S3Location,
    /// How often the server's binary logs are listed for newly rotated files.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// The replica id the archive registers with; by default a random id in the upper half
    /// of the id space (as `tail` and `replay` do), never the reader's `source.server_id`.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// The largest binlog file the archive copies (it holds one file in memory while copying).
    #[serde(default = "default_max_file")]
    pub max_file_bytes: u64,
    /// Where the archive daemon serves `/metrics` and `/healthz` (the reader uses `[metrics]`).
    #[serde(default = "default_listen")]
    pub metrics_listen: SocketAddr,
}

impl ArchiveConfig {
    /// Checks values serde cannot; names the field. `reader_server_id` is `source.server_id`.
    pub fn validate(&self, reader_server_id: u32) -> Result<(), String> {
        if !(1_000..=3_600_000).contains(&self.poll_interval_ms) {
            return Err(format!("archive.poll_interval_ms = {} is outside 1000..=3600000", self.poll_interval_ms));
        }
        match self.server_id {
            Some(0) => return Err("archive.server_id must be a non-zero replica id".into()),
            Some(id) if id == reader_server_id => {
                return Err(format!(
                    "archive.server_id = {id} is the reader's source.server_id; the source would disconnect one of \
                     them: choose another id, or leave archive.server_id out for a random one"
                ))
            }
            _ => {}
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > PUT_OBJECT_MAX_BYTES {
            return Err(format!(
                "archive.max_file_bytes = {} is outside 1..={PUT_OBJECT_MAX_BYTES} (one PutObject holds at most 5 GiB)",
                self.max_file_bytes
            ));
        }
        Ok(())
    }

    /// The replica id for this run: the configured one, or a random one in the upper half.
    pub fn replica_id(&self) -> u32 {
        self.server_id.unwrap_or_else(|| 0x8000_0000 | (rand::random::<u32>() & 0x7fff_ffff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArchiveConfig, String> {
        toml::from_str::<ArchiveConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply_and_bad_values_name_their_field() {
        let cfg = parse(r#"location = "s3://binlogs-bucket/app-db""#).unwrap();
        assert_eq!(cfg.location.prefix, "app-db/");
        assert_eq!(cfg.poll_interval_ms, DEFAULT_POLL_INTERVAL_MS);
        assert_eq!(cfg.validate(4242), Ok(()));
        assert!(cfg.replica_id() >= 0x8000_0000);

        let clash = parse("location = \"s3://binlogs-bucket/x\"\nserver_id = 4242").unwrap();
        assert!(clash.validate(4242).unwrap_err().starts_with("archive.server_id = 4242 is the reader's"));
        let slow = parse("location = \"s3://binlogs-bucket/x\"\npoll_interval_ms = 10").unwrap();
        assert!(slow.validate(1).unwrap_err().starts_with("archive.poll_interval_ms = 10"));
        let huge = parse("location = \"s3://binlogs-bucket/x\"\nmax_file_bytes = 6000000000").unwrap();
        assert!(huge.validate(1).unwrap_err().starts_with("archive.max_file_bytes"));
        assert!(parse("location = \"s3://binlogs-bucket/x\"\nbucket = \"y\"").unwrap_err().contains("unknown field"));
        assert!(parse(r#"location = "binlogs-bucket/x""#).unwrap_err().contains("s3://bucket/prefix"));
    }
}
