//! A token bucket shared by every task that calls one Step Functions API, so a burst of
//! changes (or the nightly batch) stays under the account's quota instead of turning into
//! `ThrottlingException`s, plus adaptive slowdown when the quota is lower than configured
//! (other clients share it, or the region's quota is smaller).
//!
//! - `acquire` reserves a token at once and sleeps until the bucket has produced it, so
//!   callers are served in arrival order and the long-run rate never exceeds the current
//!   rate. A cancelled `acquire` still consumes its token (errs on the slow side).
//! - `on_throttle` multiplies the rate by `decrease_factor` (not below `min_rate_per_second`),
//!   at most once per `throttle_cooldown_ms`: the many calls in flight when the quota is hit
//!   all report it, and that is one signal, not many.
//! - Once `throttle_cooldown_ms` has passed without a throttle, the rate grows back linearly
//!   by `recovery_per_second` of the configured rate each second, up to the configured rate.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

pub(crate) const DEFAULT_RATE_PER_SECOND: f64 = 50.0;
pub(crate) const DEFAULT_BURST: u32 = 100;
pub(crate) const DEFAULT_MIN_RATE_PER_SECOND: f64 = 1.0;
pub(crate) const DEFAULT_DECREASE_FACTOR: f64 = 0.5;
pub(crate) const DEFAULT_RECOVERY_PER_SECOND: f64 = 0.1;
pub(crate) const DEFAULT_THROTTLE_COOLDOWN_MS: u64 = 1000;

/// Limits for one API (`[worker.start_rate]`, `[worker.stop_rate]`).
///
/// `pub` (in a private module) only because the public `config::StepFunctionsConfig` names it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Sustained calls per second (the quota's refill rate, or less).
    #[serde(default = "default_rate")]
    pub(crate) rate_per_second: f64,
    /// Calls allowed at once after an idle period (the quota's bucket size, or less).
    #[serde(default = "default_burst")]
    pub(crate) burst: u32,
    /// The rate never drops below this on throttling.
    #[serde(default = "default_min_rate")]
    pub(crate) min_rate_per_second: f64,
    /// Multiplier applied to the current rate on a throttle, in (0, 1).
    #[serde(default = "default_decrease_factor")]
    pub(crate) decrease_factor: f64,
    /// Fraction of `rate_per_second` regained per second once throttling stopped.
    #[serde(default = "default_recovery")]
    pub(crate) recovery_per_second: f64,
    /// Throttles closer together than this count as one.
    #[serde(default = "default_cooldown")]
    pub(crate) throttle_cooldown_ms: u64,
}

fn default_rate() -> f64 {
    DEFAULT_RATE_PER_SECOND
}
fn default_burst() -> u32 {
    DEFAULT_BURST
}
fn default_min_rate() -> f64 {
    DEFAULT_MIN_RATE_PER_SECOND
}
fn default_decrease_factor() -> f64 {
    DEFAULT_DECREASE_FACTOR
}
fn default_recovery() -> f64 {
    DEFAULT_RECOVERY_PER_SECOND
}
fn default_cooldown() -> u64 {
    DEFAULT_THROTTLE_COOLDOWN_MS
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            burst: DEFAULT_BURST,
            min_rate_per_second: DEFAULT_MIN_RATE_PER_SECOND,
            decrease_factor: DEFAULT_DECREASE_FACTOR,
            recovery_per_second: DEFAULT_RECOVERY_PER_SECOND,
            throttle_cooldown_ms: DEFAULT_THROTTLE_COOLDOWN_MS,
        }
    }
}

/// A rate setting that cannot work; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate limit: {field} {problem}")]
pub(crate) struct RateConfigError {
    pub(crate) field: &'static str,
    pub(crate) problem: String,
}

impl RateConfig {
    pub(crate) fn validate(&self) -> Result<(), RateConfigError> {
        let bad = |field, problem: String| Err(RateConfigError { field, problem });
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.rate_per_second) {
            return bad("rate_per_second", format!("= {} must be a positive number", self.rate_per_second));
        }
        if self.burst == 0 {
            return bad("burst", "must be at least 1".into());
        }
        if !positive(self.min_rate_per_second) || self.min_rate_per_second > self.rate_per_second {
            return bad(
                "min_rate_per_second",
                format!("= {} must be positive and at most rate_per_second", self.min_rate_per_second),
            );
        }
        if !(positive(self.decrease_factor) && self.decrease_factor < 1.0) {
            return bad("decrease_factor", format!("= {} must be between 0 and 1", self.decrease_factor));
        }
        if !positive(self.recovery_per_second) {
            return bad("recovery_per_second", format!("= {} must be a positive number", self.recovery_per_second));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: tokens promised to callers that are still sleeping.
    tokens: f64,
    rate: f64,
    refilled_at: Instant,
    throttled_at: Option<Instant>,
}

/// The shared limiter; wrap it in an `Arc` and call [`RateLimiter::acquire`] before each call.
///
/// `pub` (in a private module) only because the public `nightly` API names it.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateConfig,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// A full bucket at the configured rate. `config` must have passed [`RateConfig::validate`].
    pub(crate) fn new(config: RateConfig) -> Self {
        let bucket = Bucket {
            tokens: f64::from(config.burst),
            rate: config.rate_per_second,
            refilled_at: Instant::now(),
            throttled_at: None,
        };
        Self { config, bucket: Mutex::new(bucket) }
    }

    /// Waits until one call may be made.
    pub(crate) async fn acquire(&self) {
        let wait = {
            let mut b = self.lock();
            self.refill(&mut b, Instant::now());
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Reports a `ThrottlingException`: slows down (once per cooldown).
    pub(crate) fn on_throttle(&self) {
        let now = Instant::now();
        let mut b = self.lock();
        self.refill(&mut b, now);
        if b.throttled_at.is_some_and(|t| now.duration_since(t) < self.cooldown()) {
            return;
        }
        b.throttled_at = Some(now);
        b.rate = (b.rate * self.config.decrease_factor).max(self.config.min_rate_per_second);
        // Tokens saved up at the old rate would be spent at once, against an exhausted quota.
        b.tokens = b.tokens.min(1.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The critical sections cannot panic halfway; a poisoned bucket is still consistent.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cooldown(&self) -> Duration {
        Duration::from_millis(self.config.throttle_cooldown_ms)
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.refilled_at).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        b.refilled_at = now;
        b.tokens = (b.tokens + elapsed * b.rate).min(f64::from(self.config.burst));
        let target = self.config.rate_per_second;
        if b.rate < target {
            let quiet_since = b.throttled_at.map(|t| t + self.cooldown());
            let recovering = match quiet_since {
                Some(since) if now > since => now.duration_since(since).as_secs_f64().min(elapsed),
                Some(_) => 0.0,
                None => elapsed,
            };
            b.rate = (b.rate + target * self.config.recovery_per_second * recovering).min(target);
        }
    }
}

#[cfg(test)]
impl RateLimiter {
    /// The rate in force now, in calls per second.
    fn current_rate(&self) -> f64 {
        let mut b = self.lock();
        self.refill(&mut b, Instant::now());
        b.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limiter(rate: f64, burst: u32) -> RateLimiter {
        let config = RateConfig { rate_per_second: rate, burst, ..RateConfig::default() };
        config.validate().unwrap();
        RateLimiter::new(config)
    }

    async fn time_to_acquire(l: &RateLimiter, n: usize) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n {
            l.acquire().await;
        }
        t0.elapsed()
    }

    fn close(actual: Duration, expected_secs: f64) -> bool {
        (actual.as_secs_f64() - expected_secs).abs() < 0.01
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_immediate_then_the_rate_holds() {
        let l = limiter(10.0, 5);
        assert_eq!(time_to_acquire(&l, 5).await, Duration::ZERO);
        let t = time_to_acquire(&l, 20).await;
        assert!(close(t, 2.0), "{t:?}");
        // Idle time refills the bucket, but never beyond the burst.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(time_to_acquire(&l, 5).await, Duration::ZERO);
        let t = time_to_acquire(&l, 1).await;
        assert!(close(t, 0.1), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn many_tasks_share_one_rate() {
        let l = Arc::new(limiter(20.0, 1));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let l = Arc::clone(&l);
                tokio::spawn(async move {
                    l.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap().duration_since(t0));
        }
        done.sort();
        // 1 token at once, the other 39 at 20 per second.
        assert!(close(*done.last().unwrap(), 39.0 / 20.0), "{done:?}");
        for (i, at) in done.iter().enumerate() {
            assert!(at.as_secs_f64() <= i as f64 / 20.0 + 0.01, "call {i} at {at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_once_per_cooldown() {
        let l = limiter(100.0, 1);
        l.on_throttle();
        l.on_throttle(); // same burst of throttles: one signal
        assert_eq!(l.current_rate(), 50.0);
        let t = time_to_acquire(&l, 50).await;
        assert!((0.97..=1.01).contains(&t.as_secs_f64()), "{t:?}");
        // Past the cooldown, a new throttle halves again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        l.on_throttle();
        assert!(l.current_rate() < 26.0, "{}", l.current_rate());
        // Repeated throttling never goes below the floor.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(1001)).await;
            l.on_throttle();
        }
        assert_eq!(l.current_rate(), DEFAULT_MIN_RATE_PER_SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_recovers_gradually_after_throttling_stops() {
        let l = limiter(100.0, 10);
        l.on_throttle();
        assert_eq!(l.current_rate(), 50.0);
        // Nothing regained during the cooldown.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(l.current_rate(), 50.0);
        // Then 10 % of 100/s per second: 2 s after the cooldown, 70/s.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!((l.current_rate() - 70.0).abs() < 0.5, "{}", l.current_rate());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(l.current_rate(), 100.0);
    }

    #[test]
    fn config_defaults_and_validation_name_the_field() {
        let c: RateConfig = serde_json::from_str(r#"{"rate_per_second": 300}"#).unwrap();
        assert_eq!((c.rate_per_second, c.burst), (300.0, DEFAULT_BURST));
        c.validate().unwrap();
        assert!(serde_json::from_str::<RateConfig>(r#"{"rate": 3}"#).unwrap_err().to_string().contains("rate"));
        for (c, field) in [
            (RateConfig { rate_per_second: 0.0, ..RateConfig::default() }, "rate_per_second"),
            (RateConfig { burst: 0, ..RateConfig::default() }, "burst"),
            (RateConfig { min_rate_per_second: 500.0, ..RateConfig::default() }, "min_rate_per_second"),
            (RateConfig { decrease_factor: 1.0, ..RateConfig::default() }, "decrease_factor"),
            (RateConfig { recovery_per_second: f64::NAN, ..RateConfig::default() }, "recovery_per_second"),
        ] {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }
}
