//! Starting one scheduled execution for the batch, and learning which already run.
//!
//! - Transient failures (throttling, 5xx, timeouts, `ExecutionLimitExceeded`) are retried with
//!   exponential backoff and full jitter for up to [`RETRY_FOR`]; only then, or on a permanent
//!   error, does the row count as failed. Throttling also slows the shared rate limiter
//!   (inside [`StepFunctions`]).
//! - "Already existed" is exact. A closed execution with our name answers
//!   `ExecutionAlreadyExists` (then [`StepFunctions::start`] compares inputs). A *running* one
//!   answers a repeated start with plain success, indistinguishable from a new start, so
//!   before a rule's rows are started the names of the state machine's RUNNING executions
//!   are listed ([`running_names`], 1,000 per ListExecutions call); a row whose name is among
//!   them is counted as already existing and not sent again. An execution started by the
//!   worker between the listing and our call is counted as started (harmless: it exists once).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use rand::Rng;
use sameday_core::aws::{classify, describe, Retry};
use tokio::time::Instant;

use crate::rate::RateLimiter;
use sameday_core::execution::ScheduledExecution;
use sameday_core::row_version::RowVersion;

use crate::generations::StartOutcome;
use crate::sfn::{SfnError, StepFunctions};

/// How long one row's start is retried on transient errors before it counts as failed.
pub const RETRY_FOR: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// ListExecutions page size (the API's maximum).
const LIST_PAGE: i32 = 1000;

/// Starts the event `exec` (any generation, see `generations`) with retries; returns the
/// last error when retrying stopped.
pub(crate) async fn start_with_retry(
    sfn: &StepFunctions,
    state_machine_arn: &str,
    exec: &ScheduledExecution,
    version: &RowVersion,
) -> Result<StartOutcome, SfnError> {
    let give_up_at = Instant::now() + RETRY_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match sfn.start_event(state_machine_arn, exec, version).await {
            Err(e) if e.retry() == Retry::Transient && Instant::now() + backoff < give_up_at => {
                tracing::debug!(execution = %exec.name, error = %e, "nightly: StartExecution failed; retrying");
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// Full jitter: uniformly in `[backoff / 2, backoff]`, so synchronized retries spread out.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// Names of the state machine's RUNNING executions, read through the `limiter`, and the
/// ListExecutions calls it took.
pub async fn running_names(
    sfn: &StepFunctions,
    limiter: &RateLimiter,
    state_machine_arn: &str,
) -> Result<(HashSet<String>, u64), SfnError> {
    let mut names = HashSet::new();
    let mut calls = 0;
    let mut token: Option<String> = None;
    let give_up_at = Instant::now() + RETRY_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        limiter.acquire().await;
        calls += 1;
        let result = sfn
            .client()
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .status_filter(ExecutionStatus::Running)
            .max_results(LIST_PAGE)
            .set_next_token(token.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                names.extend(out.executions().iter().map(|e| e.name().to_string()));
                token = out.next_token().map(str::to_owned);
                if token.is_none() {
                    return Ok((names, calls));
                }
                backoff = FIRST_BACKOFF;
            }
            Err(err) => {
                let retry = classify(&err);
                let failure = SfnError::Call {
                    operation: "ListExecutions",
                    target: state_machine_arn.to_owned(),
                    retry,
                    throttled: false,
                    detail: describe(&err),
                };
                if retry == Retry::Permanent || Instant::now() + backoff >= give_up_at {
                    return Err(failure);
                }
                tracing::warn!(error = %failure, "nightly: ListExecutions failed; retrying");
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full_backoff() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(800));
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800), "{d:?}");
        }
    }
}
