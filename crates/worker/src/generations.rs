//! Starting and stopping the execution of one scheduled event across name generations, so a
//! row that comes back to an earlier (due, input) gets a waiting execution again, and an old
//! change never overrides a newer one (docs/decisions/0002-execution-generations.md).
//!
//! Invariant kept by every actor (worker, nightly batch, reconcile): the generations of one
//! event that exist are `0..=last`, and all but `last` are ABORTED (generation `n + 1` is only
//! ever started after generation `n` was seen ABORTED). So:
//! - Start: StartExecution of generation 0; when the name is taken, find `last` (a
//!   DescribeExecution, and for rows reused many times an exponential then binary search) and
//!   - RUNNING: the event is waiting already (same identity, else [`SfnError::Conflict`]);
//!   - SUCCEEDED / FAILED / TIMED_OUT: the event fired; nothing to start;
//!   - ABORTED: start `last + 1`, unless this image is not newer than the one `last` was made
//!     from ([`RowVersion::is_newer_than`] says `Some(false)`): then the change is stale (a
//!     redelivery or replay of one whose effect a newer change already undid).
//! - Stop: find `last`; stop it when RUNNING, unless it was made from a newer image than the
//!   stopping change (a stale stop must not cancel a newer schedule).
//!
//! Both actors racing on one name converge: StartExecution with the same name and input as
//! a RUNNING execution succeeds (Step Functions' idempotency), with another input it answers
//! `ExecutionAlreadyExists` and the describe finds the RUNNING one.

use std::future::Future;

use sameday_core::execution::{identity_of_input, ScheduledExecution, MAX_GENERATION};
use sameday_core::row_version::RowVersion;

use crate::sfn::SfnError;

/// What an execution is doing, as far as generations care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    /// Stopped (by sameday, or by hand).
    Aborted,
    /// Succeeded, failed or timed out: its action ran (or was attempted).
    Fired,
}

/// One existing execution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Described {
    pub(crate) status: Status,
    /// Hash of the input without its row version; `None` when the input is not JSON.
    pub(crate) identity: Option<String>,
    /// The version of the image it was made from (absent for executions of older releases).
    pub(crate) version: Option<RowVersion>,
}

impl Described {
    /// From a DescribeExecution answer.
    pub(crate) fn new(status: Status, input: Option<&str>) -> Self {
        let (identity, version) = match input.and_then(identity_of_input) {
            Some((identity, version)) => (Some(identity), version),
            None => (None, None),
        };
        Self { status, identity, version }
    }
}

/// What StartExecution answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawStart {
    /// Started, or a RUNNING execution with this name and the very same input exists.
    Started,
    /// `ExecutionAlreadyExists`: the name is taken (closed, or running with another input).
    NameTaken,
}

/// The three calls on one state machine's executions, by name.
pub(crate) trait ExecutionApi {
    fn start(&self, name: &str, input: &str) -> impl Future<Output = Result<RawStart, SfnError>> + Send;
    fn describe(&self, name: &str) -> impl Future<Output = Result<Option<Described>, SfnError>> + Send;
    /// Stops a running execution; `false` when it was not running (any more).
    fn stop(&self, name: &str) -> impl Future<Output = Result<bool, SfnError>> + Send;
}

/// What a start achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartOutcome {
    Started {
        generation: u32,
    },
    /// The event's execution is waiting already (started by another actor or earlier).
    AlreadyRunning {
        generation: u32,
    },
    /// The event's execution has run; starting it again would fire its action twice.
    AlreadyFired {
        generation: u32,
    },
    /// The image is older than the one a stopped generation was made from: a newer change
    /// undid this event, and this change came late.
    Stale {
        generation: u32,
    },
}

impl StartOutcome {
    /// Label for metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::AlreadyRunning { .. } => "already_existed",
            Self::AlreadyFired { .. } => "already_fired",
            Self::Stale { .. } => "stale_start",
        }
    }
}

/// What a stop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopOutcome {
    Stopped {
        generation: u32,
    },
    /// No generation of the event is waiting.
    NothingRunning,
    /// The waiting generation was made from a newer image than the stopping change's.
    Stale {
        generation: u32,
    },
}

impl StopOutcome {
    /// Label for metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stopped { .. } => "stopped",
            Self::NothingRunning => "stop_noop",
            Self::Stale { .. } => "stale_stop",
        }
    }
}

/// Makes `exec` have a waiting execution, made from the image at `version`.
pub(crate) async fn start_event<A: ExecutionApi>(
    api: &A,
    exec: &ScheduledExecution,
    version: &RowVersion,
) -> Result<StartOutcome, SfnError> {
    let input = exec.input_with(version);
    let mut generation = 0;
    loop {
        let name = exec.name_at(generation);
        if api.start(&name, &input).await? == RawStart::Started {
            return Ok(StartOutcome::Started { generation });
        }
        let Some((last, found)) = last_generation(api, exec, generation).await? else {
            // Taken, then gone: the state machine was deleted meanwhile. Retried by the caller.
            return Err(SfnError::Call {
                operation: "DescribeExecution",
                target: format!("execution {name}"),
                retry: sameday_core::aws::Retry::Transient,
                throttled: false,
                detail: "StartExecution said the execution exists, DescribeExecution cannot find it".into(),
            });
        };
        if found.identity.as_deref() != Some(exec.input_hash.as_str()) {
            return Err(SfnError::Conflict {
                execution: exec.name_at(last),
                existing: found.identity.unwrap_or_else(|| "(input absent or not JSON)".into()),
                expected: exec.input_hash.clone(),
            });
        }
        match found.status {
            Status::Running => return Ok(StartOutcome::AlreadyRunning { generation: last }),
            Status::Fired => return Ok(StartOutcome::AlreadyFired { generation: last }),
            Status::Aborted => {
                if stale(version, found.version.as_ref()) {
                    return Ok(StartOutcome::Stale { generation: last });
                }
                if last >= MAX_GENERATION {
                    return Err(SfnError::Generations { execution: exec.name.clone() });
                }
                generation = last + 1;
            }
        }
    }
}

/// Stops the waiting generation of `exec`, if any, on behalf of the change at `version`.
pub(crate) async fn stop_event<A: ExecutionApi>(
    api: &A,
    exec: &ScheduledExecution,
    version: &RowVersion,
) -> Result<StopOutcome, SfnError> {
    let Some((generation, found)) = last_generation(api, exec, 0).await? else {
        return Ok(StopOutcome::NothingRunning);
    };
    if found.status != Status::Running {
        return Ok(StopOutcome::NothingRunning);
    }
    if stale(version, found.version.as_ref()) {
        return Ok(StopOutcome::Stale { generation });
    }
    Ok(match api.stop(&exec.name_at(generation)).await? {
        true => StopOutcome::Stopped { generation },
        false => StopOutcome::NothingRunning,
    })
}

/// Stops the execution called `name` (an event's generation found by listing), unless it
/// is not RUNNING or was made from an image newer than `version`.
pub(crate) async fn stop_name<A: ExecutionApi>(
    api: &A,
    name: &str,
    version: &RowVersion,
) -> Result<StopOutcome, SfnError> {
    let generation = sameday_core::execution::parse_name(name).map_or(0, |(_, g)| g);
    match api.describe(name).await? {
        Some(found) if found.status == Status::Running => {
            if stale(version, found.version.as_ref()) {
                return Ok(StopOutcome::Stale { generation });
            }
            Ok(match api.stop(name).await? {
                true => StopOutcome::Stopped { generation },
                false => StopOutcome::NothingRunning,
            })
        }
        _ => Ok(StopOutcome::NothingRunning),
    }
}

/// The change at `version` is older than (or the same as) the image `made_from`. Versions
/// that cannot be compared are not stale: the change applies, as without versions.
fn stale(version: &RowVersion, made_from: Option<&RowVersion>) -> bool {
    made_from.is_some_and(|m| version.is_newer_than(m) == Some(false))
}

/// The last existing generation at or after `from` and how it stands, or `None` when
/// generation `from` does not exist. Relies on the invariant: only the last generation can
/// be anything but ABORTED, so the search probes `from + 1, + 2, + 4, ...` and then bisects.
async fn last_generation<A: ExecutionApi>(
    api: &A,
    exec: &ScheduledExecution,
    from: u32,
) -> Result<Option<(u32, Described)>, SfnError> {
    let Some(first) = api.describe(&exec.name_at(from)).await? else {
        return Ok(None);
    };
    if first.status != Status::Aborted {
        return Ok(Some((from, first)));
    }
    let (mut lo, mut lo_found) = (from, first);
    let mut step = 1u32;
    let mut hi = loop {
        let probe = lo.saturating_add(step).min(MAX_GENERATION);
        if probe == lo {
            return Ok(Some((lo, lo_found)));
        }
        match api.describe(&exec.name_at(probe)).await? {
            None => break probe,
            Some(d) if d.status != Status::Aborted => return Ok(Some((probe, d))),
            Some(d) => (lo, lo_found, step) = (probe, d, step.saturating_mul(2)),
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match api.describe(&exec.name_at(mid)).await? {
            None => hi = mid,
            Some(d) if d.status != Status::Aborted => return Ok(Some((mid, d))),
            Some(d) => (lo, lo_found) = (mid, d),
        }
    }
    Ok(Some((lo, lo_found)))
}

#[cfg(test)]
pub(crate) mod tests;
