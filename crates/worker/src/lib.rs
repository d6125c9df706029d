//! The worker: turns row changes read from SQS into Step Functions executions, one per
//! scheduled event, started once, stopped when the row moves away, never doubled.
//!
//! - [`effects`]: what one change means for Step Functions (pure, clock injected).
//! - [`sfn`]: idempotent StartExecution / StopExecution.
//! - [`rate`]: the token bucket that keeps calls under the account's quotas.
//! - [`nightly`]: the daily batch that starts the window's executions from the tables.

pub mod config;
pub mod effects;
pub mod metrics;
pub mod nightly;
pub mod rate;
pub mod run;
pub mod sfn;
