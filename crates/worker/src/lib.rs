//! The worker: turns row changes read from SQS into Step Functions executions, one per
//! scheduled event, started once, stopped when the row moves away, never doubled.
//!
//! - [`run`]: the daemon, wiring only: the `inbox` (SQS: receive, keep visible, delete,
//!   hand back, dead-letter) and the `scheduler` (per-group order, effects with retries).
//! - `effects`: what one change means for Step Functions (pure, clock injected).
//! - `sfn`: idempotent StartExecution / StopExecution.
//! - `rate`: the token bucket that keeps calls under the account's quotas.
//! - [`nightly`]: the daily batch that starts the window's executions from the tables.

pub mod config;
mod effects;
mod generations;
mod inbox;
mod metrics;
pub mod nightly;
mod rate;
pub mod reconcile;
pub mod run;
mod scheduler;
mod sfn;
