//! The Step Functions calls sameday makes, each idempotent and classified: the worker, the
//! nightly batch, retries and replays may all ask for the same effect.
//!
//! - [`StepFunctions::start_event`] / [`StepFunctions::stop_event`] make one scheduled event
//!   wait or not, across name generations and with stale changes recognised
//!   ([`crate::generations`]); the calls below are their building blocks.
//! - Start: Step Functions answers a repeated start with the same name and input *while the
//!   execution is RUNNING* with plain success, anything else with the name taken
//!   ([`RawStart::NameTaken`]); which of the two it was is then found by describing.
//! - Stop: stopping an execution that is no longer RUNNING (or does not exist) is no error:
//!   the effect, "not waiting", holds.
//! - Every error says whether retrying can help ([`Retry`], the shared classification, plus
//!   `ExecutionLimitExceeded`, which clears as executions finish) and names the state machine
//!   or execution. Throttling also slows the [`RateLimiter`]s given with [`Limiters`].

use std::sync::Arc;

use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use sameday_core::aws::{classify, describe, Retry};
use sameday_core::execution::{execution_arn, ArnError, ScheduledExecution};
use sameday_core::row_version::RowVersion;

use crate::config::StepFunctionsConfig;
use crate::generations::{self, Described, ExecutionApi, RawStart, StartOutcome, Status, StopOutcome};
use crate::rate::RateLimiter;

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &["ThrottlingException", "Throttling", "TooManyRequestsException"];

/// A failed start or stop.
///
/// `pub` (in a private module) only because the public `nightly` API names it.
#[derive(Debug, thiserror::Error)]
pub enum SfnError {
    /// The name is taken by an execution with another input: two different events produced
    /// one name, or the input encoding changed between releases. Not retryable.
    #[error(
        "execution {execution:?} already exists with a different input (existing input hash {existing}, \
         this event's {expected}); dead-letter the change and compare the two inputs"
    )]
    Conflict { execution: String, existing: String, expected: String },
    /// Every generation name of the event is used up (a row returned to one due time and
    /// input millions of times within 90 days). Not retryable.
    #[error("execution {execution:?}: all generations are used; the row is dead-lettered, reconcile reports it")]
    Generations { execution: String },
    /// A call failed; `target` is the state machine and execution name, or the execution ARN.
    #[error("{operation} {target}: {detail}")]
    Call { operation: &'static str, target: String, retry: Retry, throttled: bool, detail: String },
    #[error(transparent)]
    Arn(#[from] ArnError),
}

impl SfnError {
    /// Whether the same call may succeed later.
    pub(crate) fn retry(&self) -> Retry {
        match self {
            SfnError::Call { retry, .. } => *retry,
            SfnError::Conflict { .. } | SfnError::Generations { .. } | SfnError::Arn(_) => Retry::Permanent,
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
    pub(crate) list: Arc<RateLimiter>,
}

impl Limiters {
    /// One limiter per API, at the rates of `[step_functions]`.
    pub(crate) fn new(cfg: &StepFunctionsConfig) -> Self {
        Self {
            start: Arc::new(RateLimiter::new(cfg.start_rate.clone())),
            stop: Arc::new(RateLimiter::new(cfg.stop_rate.clone())),
            describe: Arc::new(RateLimiter::new(cfg.describe_rate.clone())),
            list: Arc::new(RateLimiter::new(cfg.list_rate.clone())),
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

    /// Makes the event `exec` of `state_machine_arn` have a waiting execution made from the
    /// image at `version` (see [`crate::generations`]).
    pub(crate) async fn start_event(
        &self,
        state_machine_arn: &str,
        exec: &ScheduledExecution,
        version: &RowVersion,
    ) -> Result<StartOutcome, SfnError> {
        generations::start_event(&Machine { sfn: self, arn: state_machine_arn }, exec, version).await
    }

    /// Stops the waiting generation of `exec`, unless made from an image newer than `version`.
    pub(crate) async fn stop_event(
        &self,
        state_machine_arn: &str,
        exec: &ScheduledExecution,
        version: &RowVersion,
    ) -> Result<StopOutcome, SfnError> {
        generations::stop_event(&Machine { sfn: self, arn: state_machine_arn }, exec, version).await
    }

    /// Stops the execution `name` (found by listing) unless it is made from a newer image.
    pub(crate) async fn stop_named(
        &self,
        state_machine_arn: &str,
        name: &str,
        version: &RowVersion,
    ) -> Result<StopOutcome, SfnError> {
        generations::stop_name(&Machine { sfn: self, arn: state_machine_arn }, name, version).await
    }

    async fn start_raw(&self, state_machine_arn: &str, name: &str, input: &str) -> Result<RawStart, SfnError> {
        self.acquire(Api::Start).await;
        let result =
            self.client.start_execution().state_machine_arn(state_machine_arn).name(name).input(input).send().await;
        match result {
            Ok(_) => Ok(RawStart::Started),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_execution_already_exists()) => {
                Ok(RawStart::NameTaken)
            }
            Err(err) => Err(self.call_error(
                Api::Start,
                "StartExecution",
                format!("execution {name:?} of {state_machine_arn}"),
                &err,
            )),
        }
    }

    /// Stops `execution_arn`; `false` when it was not running.
    async fn stop_raw(&self, execution_arn: &str) -> Result<bool, SfnError> {
        self.acquire(Api::Stop).await;
        let err = match self.client.stop_execution().execution_arn(execution_arn).send().await {
            Ok(_) => return Ok(true),
            Err(err) => err,
        };
        if err.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) {
            return Ok(false);
        }
        let failure = self.call_error(Api::Stop, "StopExecution", format!("execution {execution_arn}"), &err);
        if failure.retry() == Retry::Permanent {
            // Some services refuse to stop a closed execution; finishing meanwhile is success.
            if let Some(e) = self.describe(execution_arn).await? {
                if e.status != Status::Running {
                    return Ok(false);
                }
            }
        }
        Err(failure)
    }

    /// The execution's status, identity and version, or `None` when it does not exist.
    async fn describe(&self, execution_arn: &str) -> Result<Option<Described>, SfnError> {
        self.acquire(Api::Describe).await;
        match self.client.describe_execution().execution_arn(execution_arn).send().await {
            Ok(out) => {
                let status = match out.status() {
                    ExecutionStatus::Running | ExecutionStatus::PendingRedrive => Status::Running,
                    ExecutionStatus::Aborted => Status::Aborted,
                    _ => Status::Fired,
                };
                Ok(Some(Described::new(status, out.input())))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) => Ok(None),
            Err(err) => {
                Err(self.call_error(Api::Describe, "DescribeExecution", format!("execution {execution_arn}"), &err))
            }
        }
    }
}

/// One state machine's executions, by name.
struct Machine<'a> {
    sfn: &'a StepFunctions,
    arn: &'a str,
}

impl ExecutionApi for Machine<'_> {
    async fn start(&self, name: &str, input: &str) -> Result<RawStart, SfnError> {
        self.sfn.start_raw(self.arn, name, input).await
    }

    async fn describe(&self, name: &str) -> Result<Option<Described>, SfnError> {
        self.sfn.describe(&execution_arn(self.arn, name)?).await
    }

    async fn stop(&self, name: &str) -> Result<bool, SfnError> {
        self.sfn.stop_raw(&execution_arn(self.arn, name)?).await
    }
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
        let err = SfnError::Conflict { execution: "arn:x".into(), existing: "a".into(), expected: "b".into() };
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
    use sameday_core::execution::{execution_arn, scheduled_execution, ScheduledExecution};
    use sameday_core::row_version::RowVersion;
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

    /// The event row `id` schedules with `template`.
    fn event(sm: &str, id: i64, template: &str) -> ScheduledExecution {
        let row = json!({"id": id, "send_at": "2026-06-10T16:00:00Z", "template": template});
        scheduled_execution(&rule(sm), row.as_object().unwrap(), "2026-06-10T16:00:00Z".parse::<Timestamp>().unwrap())
            .unwrap()
    }

    /// The image after the change with MariaDB GTID sequence `seq`.
    fn change(seq: u64) -> RowVersion {
        RowVersion::Change {
            server_id: 1,
            file: "b.000001".into(),
            pos: seq,
            gtid: Some(format!("0-1-{seq}")),
            index: 0,
        }
    }

    async fn status(sfn: &StepFunctions, sm: &str, name: &str) -> ExecutionStatus {
        let arn = execution_arn(sm, name).unwrap();
        sfn.client().describe_execution().execution_arn(arn).send().await.unwrap().status().clone()
    }

    async fn execution_count(sfn: &StepFunctions, sm: &str) -> usize {
        sfn.client().list_executions().state_machine_arn(sm).send().await.unwrap().executions().len()
    }

    #[tokio::test]
    async fn start_twice_then_from_another_read_starts_one_execution() {
        let (sfn, sm) = setup("sfn_same").await;
        let exec = event(&sm, 1, "welcome");
        assert_eq!(sfn.start_event(&sm, &exec, &change(1)).await.unwrap(), StartOutcome::Started { generation: 0 });
        // While it runs, Step Functions answers a repeat with the original execution.
        assert_eq!(sfn.start_event(&sm, &exec, &change(1)).await.unwrap(), StartOutcome::Started { generation: 0 });
        // Another actor with another row version: the name is taken by the same event.
        let read = RowVersion::Read { server_id: 1, gtid: Some("0-1-1".parse().unwrap()), binlog: None };
        assert_eq!(sfn.start_event(&sm, &exec, &read).await.unwrap(), StartOutcome::AlreadyRunning { generation: 0 });
        assert_eq!(execution_count(&sfn, &sm).await, 1);
    }

    /// Step Functions keeps closed names: the way back to an earlier schedule needs a new one.
    #[tokio::test]
    async fn a_stopped_event_started_again_gets_the_next_generation() {
        let (sfn, sm) = setup("sfn_generation").await;
        let exec = event(&sm, 5, "welcome");
        sfn.start_event(&sm, &exec, &change(1)).await.unwrap();
        assert_eq!(sfn.stop_event(&sm, &exec, &change(2)).await.unwrap(), StopOutcome::Stopped { generation: 0 });
        assert_eq!(sfn.start_event(&sm, &exec, &change(3)).await.unwrap(), StartOutcome::Started { generation: 1 });
        assert_eq!(status(&sfn, &sm, &exec.name).await, ExecutionStatus::Aborted);
        assert_eq!(status(&sfn, &sm, &exec.name_at(1)).await, ExecutionStatus::Running);
        // The stopping change delivered again is older than generation 1's image.
        assert_eq!(sfn.stop_event(&sm, &exec, &change(2)).await.unwrap(), StopOutcome::Stale { generation: 1 });
        assert_eq!(sfn.stop_event(&sm, &exec, &change(4)).await.unwrap(), StopOutcome::Stopped { generation: 1 });
        assert_eq!(sfn.start_event(&sm, &exec, &change(3)).await.unwrap(), StartOutcome::Stale { generation: 1 });
        assert_eq!(execution_count(&sfn, &sm).await, 2);
    }

    #[tokio::test]
    async fn same_name_with_a_different_input_is_a_conflict() {
        let (sfn, sm) = setup("sfn_conflict").await;
        let exec = event(&sm, 2, "welcome");
        sfn.start_raw(&sm, &exec.name, r#"{"another":"input"}"#).await.unwrap();
        let err = sfn.start_event(&sm, &exec, &change(1)).await.unwrap_err();
        let SfnError::Conflict { ref execution, ref existing, ref expected } = err else { panic!("{err}") };
        assert_eq!(execution, &exec.name);
        assert_ne!(existing, expected);
        assert_eq!(err.retry(), Retry::Permanent);
        assert!(err.to_string().contains(&exec.name), "{err}");
        assert_eq!(execution_count(&sfn, &sm).await, 1);
    }

    #[tokio::test]
    async fn stop_running_then_again_then_unknown() {
        let (sfn, sm) = setup("sfn_stop").await;
        let exec = event(&sm, 3, "welcome");
        sfn.start_event(&sm, &exec, &change(1)).await.unwrap();
        assert_eq!(status(&sfn, &sm, &exec.name).await, ExecutionStatus::Running);
        assert_eq!(sfn.stop_event(&sm, &exec, &change(2)).await.unwrap(), StopOutcome::Stopped { generation: 0 });
        assert_eq!(status(&sfn, &sm, &exec.name).await, ExecutionStatus::Aborted);
        assert_eq!(sfn.stop_event(&sm, &exec, &change(3)).await.unwrap(), StopOutcome::NothingRunning);
        let unknown = event(&sm, 99, "never-started");
        assert_eq!(sfn.stop_event(&sm, &unknown, &change(4)).await.unwrap(), StopOutcome::NothingRunning);
        assert!(!sfn.stop_raw(&execution_arn(&sm, &unknown.name).unwrap()).await.unwrap());
    }

    #[tokio::test]
    async fn start_on_a_missing_state_machine_is_permanent_and_names_it() {
        let (sfn, sm) = setup("sfn_missing").await;
        let missing = sm.replace(":stateMachine:", ":stateMachine:gone_");
        let exec = event(&missing, 4, "welcome");
        let err = sfn.start_event(&missing, &exec, &change(1)).await.unwrap_err();
        assert_eq!(err.retry(), Retry::Permanent, "{err}");
        assert!(!err.is_throttled());
        let text = err.to_string();
        assert!(
            text.starts_with("StartExecution execution") && text.contains(&missing) && text.contains(&exec.name),
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
            Limiters { start: limiter(), stop: limiter(), describe: limiter(), list: limiter() },
        );
        let sfn = Arc::new(sfn);
        let tasks: Vec<_> = (0..20)
            .map(|id| {
                let (sfn, sm) = (Arc::clone(&sfn), sm.clone());
                tokio::spawn(async move { sfn.start_event(&sm, &event(&sm, id, "t"), &change(1)).await.unwrap() })
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
    use sameday_core::row_version::RowVersion;
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
        let version = RowVersion::Read { server_id: 1, gtid: None, binlog: None };
        let started = sfn.start_event(&sm, &exec, &version).await.unwrap();
        assert_eq!(started, StartOutcome::Started { generation: 0 }, "a fresh emulator already had {}", exec.name);
        let execution_arn = sameday_core::execution::execution_arn(&sm, &exec.name).unwrap();
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
