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
impl StepFunctions {
    /// Calls without rate limiting (tests).
    fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client, limiters: None }
    }
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

#[cfg(test)]
mod emulator {
    //! `StepFunctions` against moto's Step Functions (record-only mode: executions stay RUNNING
    //! until stopped). Each test creates its own state machine, so tests run in parallel.

    use std::sync::Arc;

    use aws_sdk_sfn::types::ExecutionStatus;
    use jiff::Timestamp;
    use sameday_core::aws::Retry;
    use sameday_core::execution::{execution_arn, scheduled_execution};
    use sameday_core::rule::ScheduleRule;
    use sameday_testkit::{names, Moto};
    use serde_json::json;

    use super::{Limiters, SfnError, StartOutcome, StepFunctions, StopOutcome};
    use crate::rate::{RateConfig, RateLimiter};

    const DEFINITION: &str = include_str!("../../../deploy/statemachine/schedule.asl.json");

    async fn setup(prefix: &str) -> (StepFunctions, String) {
        let moto = Moto::shared();
        let arn = moto.create_state_machine(&names::unique(prefix), DEFINITION).await;
        (StepFunctions::new(moto.sfn_client().await), arn)
    }

    fn rule(state_machine_arn: &str) -> ScheduleRule {
        serde_json::from_value(json!({
            "name": "reminders", "db": "crm", "table": "scheduled_actions", "key_columns": ["id"],
            "due_column": "send_at", "due_type": "timestamp", "time_zone": "Europe/Berlin",
            "input_columns": ["template"], "state_machine_arn": state_machine_arn,
        }))
        .unwrap()
    }

    /// Name and input of the event row `id` schedules with `template`.
    fn event(sm: &str, id: i64, template: &str) -> (String, String) {
        let row = json!({"id": id, "send_at": "2026-06-10T16:00:00Z", "template": template});
        let exec = scheduled_execution(
            &rule(sm),
            row.as_object().unwrap(),
            "2026-06-10T16:00:00Z".parse::<Timestamp>().unwrap(),
        )
        .unwrap();
        (exec.name, exec.input)
    }

    async fn status(sfn: &StepFunctions, arn: &str) -> ExecutionStatus {
        sfn.client().describe_execution().execution_arn(arn).send().await.unwrap().status().clone()
    }

    async fn execution_count(sfn: &StepFunctions, sm: &str) -> usize {
        sfn.client().list_executions().state_machine_arn(sm).send().await.unwrap().executions().len()
    }

    #[tokio::test]
    async fn start_twice_with_the_same_input_starts_one_execution() {
        let (sfn, sm) = setup("sfn_same").await;
        let (name, input) = event(&sm, 1, "welcome");
        let expected_arn = execution_arn(&sm, &name).unwrap();

        let first = sfn.start(&sm, &name, &input).await.unwrap();
        assert_eq!(first, StartOutcome::Started { execution_arn: expected_arn.clone() });
        // While it runs, Step Functions answers a repeat with the original execution.
        let again = sfn.start(&sm, &name, &input).await.unwrap();
        assert_eq!(again, StartOutcome::Started { execution_arn: expected_arn.clone() });
        // Once closed, the name is taken: ExecutionAlreadyExists, same input -> AlreadyExisted.
        assert_eq!(sfn.stop(&expected_arn).await.unwrap(), StopOutcome::Stopped);
        let replay = sfn.start(&sm, &name, &input).await.unwrap();
        assert_eq!(replay, StartOutcome::AlreadyExisted { execution_arn: expected_arn.clone() });
        // Input with other key order and whitespace is the same input.
        let reordered =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&input).unwrap()).unwrap();
        assert_eq!(sfn.start(&sm, &name, &reordered).await.unwrap(), replay);
        assert_eq!(execution_count(&sfn, &sm).await, 1);
    }

    #[tokio::test]
    async fn same_name_with_a_different_input_is_a_conflict() {
        let (sfn, sm) = setup("sfn_conflict").await;
        let (name, input) = event(&sm, 2, "welcome");
        let (_, other_input) = event(&sm, 2, "reminder");
        sfn.start(&sm, &name, &input).await.unwrap();
        for _ in 0..2 {
            let err = sfn.start(&sm, &name, &other_input).await.unwrap_err();
            let SfnError::Conflict { ref execution_arn, ref existing, ref expected } = err else { panic!("{err}") };
            assert_eq!(execution_arn, &sameday_core::execution::execution_arn(&sm, &name).unwrap());
            assert_ne!(existing, expected);
            assert_eq!(err.retry(), Retry::Permanent);
            assert!(err.to_string().contains(&name), "{err}");
            // Also once the first execution is closed.
            sfn.stop(execution_arn).await.unwrap();
        }
        assert_eq!(execution_count(&sfn, &sm).await, 1);
    }

    #[tokio::test]
    async fn stop_running_then_again_then_unknown() {
        let (sfn, sm) = setup("sfn_stop").await;
        let (name, input) = event(&sm, 3, "welcome");
        let StartOutcome::Started { execution_arn } = sfn.start(&sm, &name, &input).await.unwrap() else { panic!() };
        assert_eq!(status(&sfn, &execution_arn).await, ExecutionStatus::Running);

        assert_eq!(sfn.stop(&execution_arn).await.unwrap(), StopOutcome::Stopped);
        assert_eq!(status(&sfn, &execution_arn).await, ExecutionStatus::Aborted);
        assert_eq!(sfn.stop(&execution_arn).await.unwrap(), StopOutcome::AlreadyClosedOrMissing);
        let unknown = sameday_core::execution::execution_arn(&sm, "never-started").unwrap();
        assert_eq!(sfn.stop(&unknown).await.unwrap(), StopOutcome::AlreadyClosedOrMissing);
    }

    #[tokio::test]
    async fn start_on_a_missing_state_machine_is_permanent_and_names_it() {
        let (sfn, sm) = setup("sfn_missing").await;
        let missing = sm.replace(":stateMachine:", ":stateMachine:gone_");
        let (name, input) = event(&missing, 4, "welcome");
        let err = sfn.start(&missing, &name, &input).await.unwrap_err();
        assert_eq!(err.retry(), Retry::Permanent, "{err}");
        assert!(!err.is_throttled());
        let text = err.to_string();
        assert!(
            text.starts_with("StartExecution execution") && text.contains(&missing) && text.contains(&name),
            "{text}"
        );
    }

    #[tokio::test]
    async fn rate_limited_calls_reach_the_service() {
        let moto = Moto::shared();
        let sm = moto.create_state_machine(&names::unique("sfn_rate"), DEFINITION).await;
        let limiter =
            || Arc::new(RateLimiter::new(RateConfig { rate_per_second: 200.0, burst: 5, ..RateConfig::default() }));
        let sfn = StepFunctions::with_limiters(
            moto.sfn_client().await,
            Limiters { start: limiter(), stop: limiter(), describe: limiter() },
        );
        let sfn = Arc::new(sfn);
        let tasks: Vec<_> = (0..20)
            .map(|id| {
                let (sfn, sm) = (Arc::clone(&sfn), sm.clone());
                tokio::spawn(async move {
                    let (name, input) = event(&sm, id, "t");
                    sfn.start(&sm, &name, &input).await.unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), StartOutcome::Started { .. }));
        }
        assert_eq!(execution_count(&sfn, &sm).await, 20);
    }
}

#[cfg(test)]
mod statemachine {
    //! The state machines in `deploy/statemachine/`: valid ASL (asl-validator, installed by
    //! `scripts/prereqs.sh`), and the schedule machine really waits until the due time of an input
    //! built by `sameday_core::execution`, then succeeds (moto in execute mode).

    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use aws_sdk_sfn::types::ExecutionStatus;
    use jiff::{SignedDuration, Timestamp};
    use sameday_core::execution::scheduled_execution;
    use sameday_core::rule::ScheduleRule;
    use sameday_testkit::{names, wait_until, Moto};
    use serde_json::{json, Value};

    use super::{StartOutcome, StepFunctions};

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
    }

    fn asl_validator() -> PathBuf {
        let cache =
            std::env::var_os("SAMEDAY_CACHE").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".cache"));
        let bin = cache.join("npm/node_modules/.bin/asl-validator");
        assert!(
            bin.exists(),
            "{} is missing; run `bash scripts/prereqs.sh` in {} to install asl-validator",
            bin.display(),
            workspace_root().display()
        );
        bin
    }

    /// Runs asl-validator on one file: `Ok` when valid, `Err(report)` otherwise.
    fn validate(validator: &Path, file: &Path) -> Result<(), String> {
        let out = Command::new(validator)
            .arg("--json-path")
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()));
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(())
        } else {
            Err(report)
        }
    }

    fn definitions() -> Vec<PathBuf> {
        let dir = workspace_root().join("deploy/statemachine");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_state_machine_passes_asl_validator() {
        let validator = asl_validator();
        let files = definitions();
        assert!(!files.is_empty(), "no deploy/statemachine/*.asl.json");
        let failures: Vec<String> = files
            .iter()
            .filter_map(|f| validate(&validator, f).err().map(|r| format!("{}:\n{r}", f.display())))
            .collect();
        assert!(failures.is_empty(), "asl-validator rejected:\n{}", failures.join("\n"));

        // The check can fail: a Wait without a time and a dangling Next are reported.
        let scratch = tempfile::tempdir().unwrap();
        let bad = scratch.path().join("bad.asl.json");
        std::fs::write(&bad, r#"{"StartAt": "W", "States": {"W": {"Type": "Wait", "Next": "Nowhere"}}}"#).unwrap();
        let report = validate(&validator, &bad).expect_err("asl-validator accepted an invalid machine");
        assert!(report.contains("Nowhere"), "{report}");
    }

    #[tokio::test]
    async fn schedule_machine_waits_until_due_then_succeeds() {
        let moto = Moto::start_sfn_execute();
        let definition =
            std::fs::read_to_string(workspace_root().join("deploy/statemachine/schedule.asl.json")).unwrap();
        let sm = moto.create_state_machine(&names::unique("schedule"), &definition).await;
        let rule: ScheduleRule = serde_json::from_value(json!({
            "name": "reminders", "db": "crm", "table": "scheduled_actions", "key_columns": ["id"],
            "due_column": "send_at", "due_type": "epoch_seconds", "time_zone": "Europe/Berlin",
            "input_columns": ["template"], "state_machine_arn": sm,
        }))
        .unwrap();
        // Due three whole seconds from now.
        let due = Timestamp::from_second(Timestamp::now().as_second() + 3).unwrap();
        let row = json!({"id": 42, "send_at": due.as_second(), "template": "welcome"});
        let exec = scheduled_execution(&rule, row.as_object().unwrap(), due).unwrap();

        let sfn = StepFunctions::new(moto.sfn_client().await);
        let StartOutcome::Started { execution_arn } = sfn.start(&sm, &exec.name, &exec.input).await.unwrap() else {
            panic!("a fresh emulator already had {}", exec.name)
        };
        let describe =
            || async { sfn.client().describe_execution().execution_arn(&execution_arn).send().await.unwrap() };
        assert_eq!(describe().await.status(), &ExecutionStatus::Running, "finished before its due time");

        wait_until(Duration::from_secs(30), "the execution to leave RUNNING", || async {
            describe().await.status() != &ExecutionStatus::Running
        })
        .await;
        let out = describe().await;
        assert_eq!(out.status(), &ExecutionStatus::Succeeded, "{out:?}");
        let output: Value = serde_json::from_str(out.output().expect("a succeeded execution has output")).unwrap();
        assert_eq!(output["columns"], json!({"template": "welcome"}));
        assert_eq!(output["key"], json!({"id": 42}));
        assert_eq!(output["due"], json!(due.to_string()));
        // The Pass state ran at the due time. moto (like Step Functions) waits in whole seconds:
        // it truncates the remaining time, so the action may run up to one second early.
        let performed: Timestamp = output["performed_at"].as_str().unwrap().parse().unwrap();
        assert!(performed >= due - SignedDuration::from_secs(1), "performed at {performed}, due {due}");
    }
}
