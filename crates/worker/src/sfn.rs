//! Idempotent StartExecution and StopExecution: the worker, the nightly batch, retries and
//! replays may all ask for the same effect, and each must see success exactly when the effect
//! holds.
//!
//! - Start: `ExecutionAlreadyExists` for our deterministic name means the event was already
//!   started, but only if the existing execution has the same input (compared as canonical
//!   JSON hashes); a different input is a [`SfnError::Conflict`], which the caller dead-letters.
//!   Step Functions itself answers a repeated start with the same name and input *while the
//!   execution is RUNNING* with plain success and the original ARN, so that case reports
//!   [`StartOutcome::Started`] with the same ARN: both outcomes mean "the execution exists".
//! - Stop: the execution is described first; one that does not exist or is no longer RUNNING
//!   needs nothing ([`StopOutcome::AlreadyClosedOrMissing`]). This costs a DescribeExecution
//!   per stop but makes the outcome exact, and a stop that races with the execution finishing
//!   is re-checked the same way.
//! - Every error says whether retrying can help ([`Retry`], the shared classification, plus
//!   `ExecutionLimitExceeded`, which clears as executions finish) and names the state machine
//!   or execution. Throttling also slows the [`RateLimiter`]s given with [`Limiters`].

use std::sync::Arc;

use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use sameday_core::aws::{classify, describe, Retry};
use sameday_core::execution::{execution_arn, input_hash_of, ArnError};
use serde_json::Value;

use crate::config::StepFunctionsConfig;
use crate::rate::RateLimiter;

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &["ThrottlingException", "Throttling", "TooManyRequestsException"];

/// What a start achieved; either way the execution now exists.
///
/// `pub` (in a private module) only because the public `nightly` API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Started {
        execution_arn: String,
    },
    /// It existed already with the same input (started earlier by us or the nightly batch).
    AlreadyExisted {
        execution_arn: String,
    },
}

/// What a stop achieved; either way the execution is not running any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopOutcome {
    Stopped,
    /// It never existed, already finished, failed, timed out or was stopped before.
    AlreadyClosedOrMissing,
}

/// A failed start or stop.
///
/// `pub` (in a private module) only because the public `nightly` API names it.
#[derive(Debug, thiserror::Error)]
pub enum SfnError {
    /// The name is taken by an execution with another input: two different events produced
    /// one name, or the input encoding changed between releases. Not retryable.
    #[error(
        "execution {execution_arn} already exists with a different input (existing input hash {existing}, \
         this event's {expected}); dead-letter the change and compare the two inputs"
    )]
    Conflict { execution_arn: String, existing: String, expected: String },
    /// A call failed; `target` is the state machine and execution name, or the execution ARN.
    #[error("{operation} {target}: {detail}")]
    Call { operation: &'static str, target: String, retry: Retry, throttled: bool, detail: String },
    #[error(transparent)]
    Arn(#[from] ArnError),
    #[error("{operation} {target}: the input is not JSON: {source}")]
    Input { operation: &'static str, target: String, source: serde_json::Error },
}

impl SfnError {
    /// Whether the same call may succeed later.
    pub(crate) fn retry(&self) -> Retry {
        match self {
            SfnError::Call { retry, .. } => *retry,
            SfnError::Conflict { .. } | SfnError::Arn(_) | SfnError::Input { .. } => Retry::Permanent,
        }
    }

    /// The service asked us to slow down.
    pub(crate) fn is_throttled(&self) -> bool {
        matches!(self, SfnError::Call { throttled: true, .. })
    }
}

/// Rate limiters per API, shared by every task using one [`StepFunctions`].
#[derive(Debug, Clone)]
pub(crate) struct Limiters {
    pub(crate) start: Arc<RateLimiter>,
    pub(crate) stop: Arc<RateLimiter>,
    pub(crate) describe: Arc<RateLimiter>,
}

impl Limiters {
    /// One limiter per API, at the rates of `[step_functions]`.
    pub(crate) fn new(cfg: &StepFunctionsConfig) -> Self {
        Self {
            start: Arc::new(RateLimiter::new(cfg.start_rate.clone())),
            stop: Arc::new(RateLimiter::new(cfg.stop_rate.clone())),
            describe: Arc::new(RateLimiter::new(cfg.describe_rate.clone())),
        }
    }
}

/// The Step Functions calls sameday makes.
///
/// `pub` (in a private module) only because the public `nightly` API names it.
#[derive(Debug, Clone)]
pub struct StepFunctions {
    client: aws_sdk_sfn::Client,
    limiters: Option<Limiters>,
}

#[derive(Clone, Copy)]
enum Api {
    Start,
    Stop,
    Describe,
}

impl StepFunctions {
    /// Calls without rate limiting (tests).
    #[cfg(test)]
    pub(crate) fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client, limiters: None }
    }

    /// Calls that wait for a token of the API's limiter and report throttling to it.
    pub(crate) fn with_limiters(client: aws_sdk_sfn::Client, limiters: Limiters) -> Self {
        Self { client, limiters: Some(limiters) }
    }

    pub(crate) fn client(&self) -> &aws_sdk_sfn::Client {
        &self.client
    }

    fn limiter(&self, api: Api) -> Option<&RateLimiter> {
        self.limiters.as_ref().map(|l| match api {
            Api::Start => &*l.start,
            Api::Stop => &*l.stop,
            Api::Describe => &*l.describe,
        })
    }

    async fn acquire(&self, api: Api) {
        if let Some(l) = self.limiter(api) {
            l.acquire().await;
        }
    }

    fn call_error<E>(
        &self,
        api: Api,
        operation: &'static str,
        target: String,
        err: &SdkError<E, HttpResponse>,
    ) -> SfnError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (retry, throttled) = classify_sfn(err);
        if throttled {
            if let Some(l) = self.limiter(api) {
                l.on_throttle();
            }
        }
        SfnError::Call { operation, target, retry, throttled, detail: describe(err) }
    }

    /// Starts execution `name` of `state_machine_arn` with `input` (JSON text), or confirms
    /// that it exists with the same input.
    pub(crate) async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<StartOutcome, SfnError> {
        let target = || format!("execution {name:?} of {state_machine_arn}");
        let ours: Value = serde_json::from_str(input).map_err(|source| SfnError::Input {
            operation: "StartExecution",
            target: target(),
            source,
        })?;
        self.acquire(Api::Start).await;
        let result =
            self.client.start_execution().state_machine_arn(state_machine_arn).name(name).input(input).send().await;
        let err = match result {
            Ok(out) => return Ok(StartOutcome::Started { execution_arn: out.execution_arn().to_string() }),
            Err(err) => err,
        };
        if !err.as_service_error().is_some_and(|e| e.is_execution_already_exists()) {
            return Err(self.call_error(Api::Start, "StartExecution", target(), &err));
        }

        let arn = execution_arn(state_machine_arn, name)?;
        let existing = match self.describe(&arn).await? {
            Some(existing) => existing,
            // Reported as existing, then not found: deleted with its state machine meanwhile.
            None => {
                return Err(SfnError::Call {
                    operation: "DescribeExecution",
                    target: arn,
                    retry: Retry::Transient,
                    throttled: false,
                    detail: "StartExecution said the execution exists, DescribeExecution cannot find it".into(),
                })
            }
        };
        let expected = input_hash_of(&ours);
        match existing.input_hash {
            Some(hash) if hash == expected => Ok(StartOutcome::AlreadyExisted { execution_arn: arn }),
            other => Err(SfnError::Conflict {
                execution_arn: arn,
                existing: other.unwrap_or_else(|| "(input absent or not JSON)".into()),
                expected,
            }),
        }
    }

    /// Stops the execution `execution_arn` if it is running.
    pub(crate) async fn stop(&self, execution_arn: &str) -> Result<StopOutcome, SfnError> {
        match self.describe(execution_arn).await? {
            Some(e) if e.running => {}
            _ => return Ok(StopOutcome::AlreadyClosedOrMissing),
        }
        self.acquire(Api::Stop).await;
        let err = match self.client.stop_execution().execution_arn(execution_arn).send().await {
            Ok(_) => return Ok(StopOutcome::Stopped),
            Err(err) => err,
        };
        if err.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) {
            return Ok(StopOutcome::AlreadyClosedOrMissing);
        }
        let failure = self.call_error(Api::Stop, "StopExecution", format!("execution {execution_arn}"), &err);
        if failure.retry() == Retry::Permanent {
            // Some services refuse to stop a closed execution; finishing meanwhile is success.
            if let Some(e) = self.describe(execution_arn).await? {
                if !e.running {
                    return Ok(StopOutcome::AlreadyClosedOrMissing);
                }
            }
        }
        Err(failure)
    }

    /// The execution's status and input hash, or `None` when it does not exist.
    async fn describe(&self, execution_arn: &str) -> Result<Option<Described>, SfnError> {
        self.acquire(Api::Describe).await;
        match self.client.describe_execution().execution_arn(execution_arn).send().await {
            Ok(out) => Ok(Some(Described {
                running: out.status() == &ExecutionStatus::Running,
                input_hash: out
                    .input()
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    .map(|v| input_hash_of(&v)),
            })),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) => Ok(None),
            Err(err) => {
                Err(self.call_error(Api::Describe, "DescribeExecution", format!("execution {execution_arn}"), &err))
            }
        }
    }
}

struct Described {
    running: bool,
    /// Hash of the canonical input; `None` when the input is absent or not JSON.
    input_hash: Option<String>,
}

/// The shared classification, plus what is specific to Step Functions: whether the error is
/// throttling, and `ExecutionLimitExceeded` (too many open executions) clearing over time.
fn classify_sfn<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Retry, bool) {
    let code = match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    };
    let throttled = code.is_some_and(|c| THROTTLING_CODES.contains(&c))
        || matches!(err, SdkError::ServiceError(se) if se.raw().status().as_u16() == 429);
    let retry = if code == Some("ExecutionLimitExceeded") { Retry::Transient } else { classify(err) };
    (retry, throttled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::operation::start_execution::StartExecutionError;
    use aws_sdk_sfn::types::error::{ExecutionLimitExceeded, InvalidName};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(err: StartExecutionError, status: u16) -> SdkError<StartExecutionError, HttpResponse> {
        SdkError::service_error(err, HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()))
    }

    fn generic(code: &str) -> StartExecutionError {
        StartExecutionError::generic(ErrorMetadata::builder().code(code).message("m").build())
    }

    #[test]
    fn throttling_is_transient_and_flagged() {
        assert_eq!(classify_sfn(&service_error(generic("ThrottlingException"), 400)), (Retry::Transient, true));
        assert_eq!(classify_sfn(&service_error(generic("Whatever"), 429)), (Retry::Transient, true));
        assert_eq!(classify_sfn(&service_error(generic("InternalFailure"), 500)), (Retry::Transient, false));
    }

    #[test]
    fn execution_limit_is_transient_validation_is_permanent() {
        let limit = StartExecutionError::ExecutionLimitExceeded(
            ExecutionLimitExceeded::builder()
                .message("too many")
                .meta(ErrorMetadata::builder().code("ExecutionLimitExceeded").build())
                .build(),
        );
        assert_eq!(classify_sfn(&service_error(limit, 400)), (Retry::Transient, false));
        let name = StartExecutionError::InvalidName(
            InvalidName::builder().meta(ErrorMetadata::builder().code("InvalidName").build()).build(),
        );
        assert_eq!(classify_sfn(&service_error(name, 400)), (Retry::Permanent, false));
        assert_eq!(classify_sfn(&service_error(generic("ValidationException"), 400)), (Retry::Permanent, false));
    }

    #[test]
    fn errors_name_the_target_and_retryability() {
        let err = SfnError::Conflict { execution_arn: "arn:x".into(), existing: "a".into(), expected: "b".into() };
        assert_eq!(err.retry(), Retry::Permanent);
        assert!(err.to_string().contains("arn:x") && err.to_string().contains("different input"));
        let err = SfnError::Call {
            operation: "StopExecution",
            target: "execution arn:y".into(),
            retry: Retry::Transient,
            throttled: true,
            detail: "ThrottlingException (HTTP 400): slow down".into(),
        };
        assert!(err.is_throttled() && err.retry() == Retry::Transient);
        assert_eq!(err.to_string(), "StopExecution execution arn:y: ThrottlingException (HTTP 400): slow down");
    }
}
