//! The state machines in `deploy/statemachine/`: valid ASL (asl-validator, installed by
//! `scripts/prereqs.sh`), and the schedule machine really waits until the due time of an input
//! built by `sameday_core::execution`, then succeeds (moto in execute mode).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::sfn::{StartOutcome, StepFunctions};
use aws_sdk_sfn::types::ExecutionStatus;
use jiff::{SignedDuration, Timestamp};
use sameday_core::execution::scheduled_execution;
use sameday_core::window::ScheduleRule;
use sameday_testkit::{names, wait_until, Moto};
use serde_json::{json, Value};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn asl_validator() -> PathBuf {
    let cache = std::env::var_os("SAMEDAY_CACHE").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".cache"));
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
    let failures: Vec<String> =
        files.iter().filter_map(|f| validate(&validator, f).err().map(|r| format!("{}:\n{r}", f.display()))).collect();
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
    let definition = std::fs::read_to_string(workspace_root().join("deploy/statemachine/schedule.asl.json")).unwrap();
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
    let describe = || async { sfn.client().describe_execution().execution_arn(&execution_arn).send().await.unwrap() };
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
