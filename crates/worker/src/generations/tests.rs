//! The generation rules against an in-memory Step Functions that answers as AWS documents:
//! a repeated start with the same name and input of a RUNNING execution succeeds, any other
//! taken name is `ExecutionAlreadyExists`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use jiff::Timestamp;
use sameday_core::execution::scheduled_execution;
use sameday_core::rule::ScheduleRule;
use serde_json::json;

use super::*;

#[derive(Default)]
struct FakeMachine {
    executions: Mutex<HashMap<String, (Status, String)>>,
    describes: AtomicUsize,
}

impl FakeMachine {
    fn status(&self, name: &str) -> Option<Status> {
        self.executions.lock().unwrap().get(name).map(|e| e.0)
    }

    fn set(&self, name: &str, status: Status) {
        self.executions.lock().unwrap().get_mut(name).expect("exists").0 = status;
    }

    fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .executions
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.0 == Status::Running)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

impl ExecutionApi for FakeMachine {
    async fn start(&self, name: &str, input: &str) -> Result<RawStart, SfnError> {
        let mut all = self.executions.lock().unwrap();
        match all.get(name) {
            Some((Status::Running, existing)) if existing == input => Ok(RawStart::Started),
            Some(_) => Ok(RawStart::NameTaken),
            None => {
                all.insert(name.to_owned(), (Status::Running, input.to_owned()));
                Ok(RawStart::Started)
            }
        }
    }

    async fn describe(&self, name: &str) -> Result<Option<Described>, SfnError> {
        self.describes.fetch_add(1, Ordering::Relaxed);
        Ok(self.executions.lock().unwrap().get(name).map(|(s, input)| Described::new(*s, Some(input))))
    }

    async fn stop(&self, name: &str) -> Result<bool, SfnError> {
        let mut all = self.executions.lock().unwrap();
        match all.get_mut(name) {
            Some(e) if e.0 == Status::Running => {
                e.0 = Status::Aborted;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// A rule with key `id`, due column `due` (a UTC timestamp) and input column `template`;
/// also the reconcile comparison's tests' rule.
pub(crate) fn rule() -> ScheduleRule {
    serde_json::from_value(json!({
        "name": "reminders", "db": "crm", "table": "t", "key_columns": ["id"], "due_column": "due",
        "due_type": "timestamp", "time_zone": "UTC", "input_columns": ["template"],
        "state_machine_arn": "arn:aws:states:eu-central-1:123456789012:stateMachine:send",
    }))
    .unwrap()
}

fn event(due: &str, template: &str) -> ScheduledExecution {
    let row = json!({"id": 1, "due": due, "template": template});
    scheduled_execution(&rule(), row.as_object().unwrap(), due.parse::<Timestamp>().unwrap()).unwrap()
}

/// The image after the change with MariaDB GTID sequence `seq`.
fn change(seq: u64) -> RowVersion {
    RowVersion::Change {
        server_id: 1,
        file: "b.000001".into(),
        pos: seq * 100,
        gtid: Some(format!("0-1-{seq}")),
        index: 0,
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn reschedule_there_and_back_waits_again_under_a_new_generation() {
    block_on(async {
        let sfn = FakeMachine::default();
        let (t, t10) = (event("2026-06-10T08:00:00Z", "x"), event("2026-06-10T08:10:00Z", "x"));
        assert_eq!(start_event(&sfn, &t, &change(1)).await.unwrap(), StartOutcome::Started { generation: 0 });
        // T -> T+10
        assert_eq!(stop_event(&sfn, &t, &change(2)).await.unwrap(), StopOutcome::Stopped { generation: 0 });
        assert_eq!(start_event(&sfn, &t10, &change(2)).await.unwrap(), StartOutcome::Started { generation: 0 });
        // T+10 -> T
        assert_eq!(stop_event(&sfn, &t10, &change(3)).await.unwrap(), StopOutcome::Stopped { generation: 0 });
        assert_eq!(start_event(&sfn, &t, &change(3)).await.unwrap(), StartOutcome::Started { generation: 1 });
        assert_eq!(sfn.running(), vec![t.name_at(1)]);
        // A second actor (the nightly batch) reading the row now meets the same execution.
        let read = RowVersion::Read { server_id: 1, gtid: Some("0-1-3".parse().unwrap()), binlog: None };
        assert_eq!(start_event(&sfn, &t, &read).await.unwrap(), StartOutcome::AlreadyRunning { generation: 1 });
        assert_eq!(sfn.running(), vec![t.name_at(1)]);
    });
}

#[test]
fn an_old_change_delivered_late_changes_nothing() {
    block_on(async {
        let sfn = FakeMachine::default();
        let (a, b) = (event("2026-06-10T08:00:00Z", "a"), event("2026-06-10T08:00:00Z", "b"));
        start_event(&sfn, &a, &change(1)).await.unwrap(); // insert a
        stop_event(&sfn, &a, &change(2)).await.unwrap(); // a -> b
        start_event(&sfn, &b, &change(2)).await.unwrap();
        // The insert again (a replay): a was undone by change 2.
        assert_eq!(start_event(&sfn, &a, &change(1)).await.unwrap(), StartOutcome::Stale { generation: 0 });
        // b -> a (change 3), then the a -> b change again: it must not stop a's new generation.
        stop_event(&sfn, &b, &change(3)).await.unwrap();
        assert_eq!(start_event(&sfn, &a, &change(3)).await.unwrap(), StartOutcome::Started { generation: 1 });
        assert_eq!(stop_event(&sfn, &a, &change(2)).await.unwrap(), StopOutcome::Stale { generation: 1 });
        assert_eq!(start_event(&sfn, &b, &change(2)).await.unwrap(), StartOutcome::Stale { generation: 0 });
        assert_eq!(sfn.running(), vec![a.name_at(1)]);
        // The same change redelivered right away finds its execution waiting.
        assert_eq!(start_event(&sfn, &a, &change(3)).await.unwrap(), StartOutcome::AlreadyRunning { generation: 1 });
        assert_eq!(sfn.running(), vec![a.name_at(1)]);
    });
}

#[test]
fn a_fired_event_is_not_started_again() {
    block_on(async {
        let sfn = FakeMachine::default();
        let a = event("2026-06-10T08:00:00Z", "a");
        start_event(&sfn, &a, &change(1)).await.unwrap();
        sfn.set(&a.name, Status::Fired);
        assert_eq!(start_event(&sfn, &a, &change(5)).await.unwrap(), StartOutcome::AlreadyFired { generation: 0 });
        assert_eq!(stop_event(&sfn, &a, &change(6)).await.unwrap(), StopOutcome::NothingRunning);
    });
}

#[test]
fn executions_of_older_releases_without_a_version_are_stopped_and_restarted() {
    block_on(async {
        let sfn = FakeMachine::default();
        let a = event("2026-06-10T08:00:00Z", "a");
        assert_eq!(sfn.start(&a.name, &a.input).await.unwrap(), RawStart::Started);
        assert_eq!(stop_event(&sfn, &a, &change(1)).await.unwrap(), StopOutcome::Stopped { generation: 0 });
        assert_eq!(start_event(&sfn, &a, &change(2)).await.unwrap(), StartOutcome::Started { generation: 1 });
    });
}

#[test]
fn a_different_input_under_our_name_is_a_conflict() {
    block_on(async {
        let sfn = FakeMachine::default();
        let a = event("2026-06-10T08:00:00Z", "a");
        sfn.start(&a.name, r#"{"something":"else"}"#).await.unwrap();
        let err = start_event(&sfn, &a, &change(1)).await.unwrap_err();
        assert!(matches!(err, SfnError::Conflict { .. }), "{err}");
    });
}

#[test]
fn a_row_flipped_a_thousand_times_finds_its_generation_in_logarithmic_describes() {
    block_on(async {
        let sfn = FakeMachine::default();
        let (a, b) = (event("2026-06-10T08:00:00Z", "a"), event("2026-06-10T08:00:00Z", "b"));
        let mut seq = 0;
        for round in 0..1000u32 {
            seq += 1;
            let started = start_event(&sfn, &a, &change(seq)).await.unwrap();
            assert_eq!(started, StartOutcome::Started { generation: round }, "round {round}");
            stop_event(&sfn, &a, &change(seq + 1)).await.unwrap();
            seq += 1;
            start_event(&sfn, &b, &change(seq)).await.unwrap();
            stop_event(&sfn, &b, &change(seq + 1)).await.unwrap();
        }
        let before = sfn.describes.load(Ordering::Relaxed);
        assert_eq!(start_event(&sfn, &a, &change(seq + 1)).await.unwrap(), StartOutcome::Started { generation: 1000 });
        let used = sfn.describes.load(Ordering::Relaxed) - before;
        assert!(used <= 2 * 11 + 1, "{used} DescribeExecution calls for generation 1000");
        assert_eq!(sfn.status(&a.name_at(1000)), Some(Status::Running));
        assert_eq!(sfn.running(), vec![a.name_at(1000)]);
    });
}
