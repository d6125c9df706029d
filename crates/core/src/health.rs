//! `/healthz` and `/metrics` on one small HTTP listener per daemon.
//!
//! `/healthz` answers 200 while the daemon's main loop reports progress (a heartbeat)
//! within `stall_after`, and 503 with the reason otherwise, so an ECS health check or a
//! load balancer replaces a stuck task, not just a dead one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::metrics::MetricsRegistry;

/// Liveness and readiness of one daemon, updated by its loops.
#[derive(Default)]
pub struct Health {
    last_beat_ms: AtomicU64,
    ready: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Health {
    pub fn new() -> Arc<Self> {
        let h = Arc::new(Self::default());
        h.beat();
        h
    }

    /// Called by a main loop whenever it makes progress or is idle but well.
    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the daemon unhealthy for good (it is about to exit with this reason).
    pub fn fail(&self, reason: impl Into<String>) {
        *self.failure.lock().expect("health mutex poisoned") = Some(reason.into());
    }

    /// `Ok(summary)` when healthy, `Err(reason)` otherwise.
    pub fn check(&self, stall_after: Duration) -> Result<String, String> {
        if let Some(f) = self.failure.lock().expect("health mutex poisoned").clone() {
            return Err(f);
        }
        let idle_ms = now_ms().saturating_sub(self.last_beat_ms.load(Ordering::Relaxed));
        if idle_ms > stall_after.as_millis() as u64 {
            return Err(format!("no progress for {} s", idle_ms / 1000));
        }
        if !self.ready.load(Ordering::Relaxed) {
            return Err("starting".into());
        }
        Ok(format!("ok (last progress {idle_ms} ms ago)"))
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: MetricsRegistry,
    stall_after: Duration,
}

/// `[metrics]` of a daemon's config: where `/metrics` and `/healthz` are served. `PORT` is the
/// daemon's default port (reader 9464, consumer 9465, worker 9466) on all interfaces.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig<const PORT: u16> {
    #[serde(default = "default_listen::<PORT>")]
    pub listen: SocketAddr,
}

fn default_listen<const PORT: u16>() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], PORT))
}

impl<const PORT: u16> Default for MetricsConfig<PORT> {
    fn default() -> Self {
        Self { listen: default_listen::<PORT>() }
    }
}

/// Serves `/healthz` and `/metrics` on `addr` until `shutdown` fires. Returns the bound
/// address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: MetricsRegistry,
    stall_after: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for /metrics and /healthz on {addr}: {e}"))
    })?;
    let local = listener.local_addr()?;
    let state = AppState { health, metrics, stall_after };
    let app = Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics_text)).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    });
    Ok(local)
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.check(s.stall_after) {
        Ok(msg) => (StatusCode::OK, msg),
        Err(msg) => (StatusCode::SERVICE_UNAVAILABLE, msg),
    }
}

async fn metrics_text(State(s): State<AppState>) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_config_defaults_to_the_daemons_port() {
        let cfg: MetricsConfig<9465> = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:9465".parse().unwrap());
        assert_eq!(MetricsConfig::<9466>::default().listen.port(), 9466);
        let cfg: MetricsConfig<9465> = serde_json::from_str(r#"{"listen": "127.0.0.1:0"}"#).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:0".parse().unwrap());
        assert!(serde_json::from_str::<MetricsConfig<1>>(r#"{"port": 1}"#).is_err(), "unknown keys are refused");
    }

    #[test]
    fn health_reports_stall_and_failure() {
        let h = Health::new();
        assert_eq!(h.check(Duration::from_secs(60)).unwrap_err(), "starting");
        h.set_ready(true);
        assert!(h.check(Duration::from_secs(60)).is_ok());
        h.fail("binlog purged");
        assert_eq!(h.check(Duration::from_secs(60)).unwrap_err(), "binlog purged");
    }
}
