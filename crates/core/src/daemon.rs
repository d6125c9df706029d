//! The start-up every daemon shares: its config file (TOML, then `SAMEDAY__…` environment
//! overrides, then the daemon's own validation), the shutdown signal, and the `/metrics` +
//! `/healthz` endpoint. Logging is set up once by the binary ([`crate::logging::init`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config_file::ConfigError;
use crate::health::Health;
use crate::metrics::MetricsRegistry;

/// A daemon's config file.
pub trait DaemonConfig: DeserializeOwned {
    /// Checks what serde cannot; the message names the field.
    fn check(&self) -> Result<(), String>;
    /// Where `/metrics` and `/healthz` are served (`[metrics] listen`).
    fn metrics_listen(&self) -> SocketAddr;
}

/// Reads `path` with the process environment's overrides and checks it; every error names
/// the file.
pub fn load_config<T: DaemonConfig>(path: &Path) -> Result<T, ConfigError> {
    let cfg: T = crate::config_file::load(Some(path), std::env::vars())?;
    cfg.check().map_err(|message| ConfigError::Invalid { path: path.display().to_string(), message })?;
    Ok(cfg)
}

/// The config of the daemon at `path` and the process's shutdown signal (SIGTERM, SIGINT).
pub fn launch<T: DaemonConfig>(path: &Path) -> Result<(T, CancellationToken), ConfigError> {
    let cfg = load_config(path)?;
    Ok((cfg, crate::shutdown::on_signals()))
}

/// A running daemon's health and metrics, served until shutdown.
pub struct Endpoint {
    pub health: Arc<Health>,
    pub registry: MetricsRegistry,
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Serves `/healthz` (unhealthy after `stall_after` without a heartbeat) and `/metrics`
    /// on the config's `[metrics] listen` until `shutdown`; logs the bound address. The
    /// error names the config key.
    pub async fn start(
        cfg: &impl DaemonConfig,
        stall_after: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Self, String> {
        let registry = MetricsRegistry::default();
        let health = Health::new();
        let addr =
            crate::health::serve(cfg.metrics_listen(), health.clone(), registry.clone(), stall_after, shutdown.clone())
                .await
                .map_err(|e| format!("metrics.listen: {e}"))?;
        tracing::info!(%addr, "serving /metrics and /healthz");
        Ok(Self { health, registry, addr })
    }
}
