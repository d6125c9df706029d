//! `StepFunctions` against moto's Step Functions (record-only mode: executions stay RUNNING
//! until stopped). Each test creates its own state machine, so tests run in parallel.

use std::sync::Arc;

use crate::rate::{RateConfig, RateLimiter};
use crate::sfn::{Limiters, SfnError, StartOutcome, StepFunctions, StopOutcome};
use aws_sdk_sfn::types::ExecutionStatus;
use jiff::Timestamp;
use sameday_core::aws::Retry;
use sameday_core::execution::{execution_arn, scheduled_execution};
use sameday_core::window::ScheduleRule;
use sameday_testkit::{names, Moto};
use serde_json::json;

const DEFINITION: &str = include_str!("../../../../deploy/statemachine/schedule.asl.json");

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
    let exec =
        scheduled_execution(&rule(sm), row.as_object().unwrap(), "2026-06-10T16:00:00Z".parse::<Timestamp>().unwrap())
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
    let reordered = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&input).unwrap()).unwrap();
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
    assert!(text.starts_with("StartExecution execution") && text.contains(&missing) && text.contains(&name), "{text}");
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
