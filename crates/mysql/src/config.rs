//! `[source]` of the reader and `[nightly.source]` of the worker: the MySQL/MariaDB server to
//! connect to, and how (TLS mode, heartbeat).

use std::path::PathBuf;

use sameday_core::secret::Secret;
use serde::Deserialize;

pub const DEFAULT_PORT: u16 = 3306;
pub const DEFAULT_HEARTBEAT_SECS: u64 = 5;

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_SECS
}
fn default_tls() -> TlsMode {
    TlsMode::Verify
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

    /// Checks values serde cannot; `section` (`source`, `nightly.source`) prefixes the field
    /// names in the message. The replica `server_id` is the reader's to check.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if self.host.is_empty() {
            return Err(format!("{section}.host is empty"));
        }
        if self.user.is_empty() {
            return Err(format!("{section}.user is empty"));
        }
        if !(1..=300).contains(&self.heartbeat_secs) {
            return Err(format!("{section}.heartbeat_secs = {} is outside 1..=300", self.heartbeat_secs));
        }
        if self.tls == TlsMode::Disabled && self.tls_ca_file.is_some() {
            return Err(format!("{section}.tls_ca_file is set but {section}.tls = \"disabled\""));
        }
        if let Some(ca) = &self.tls_ca_file {
            if !ca.exists() {
                return Err(format!("{section}.tls_ca_file {} does not exist", ca.display()));
            }
        }
        Ok(())
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
            None => (hostport.to_owned(), DEFAULT_PORT),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn validation_names_the_section_and_field() {
        let mut s = SourceConfig::from_url("mysql://u@127.0.0.1:3306", 1).unwrap();
        assert_eq!(s.validate("nightly.source"), Ok(()));
        s.heartbeat_secs = 0;
        assert_eq!(s.validate("nightly.source").unwrap_err(), "nightly.source.heartbeat_secs = 0 is outside 1..=300");
        s.heartbeat_secs = 5;
        s.tls_ca_file = Some("/nonexistent/ca.pem".into());
        assert!(s.validate("source").unwrap_err().starts_with("source.tls_ca_file is set but source.tls"));
    }
}
