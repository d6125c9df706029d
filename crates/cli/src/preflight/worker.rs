//! The worker's (and nightly batch's) preflight: the queue (FIFO, redrive, visibility
//! timeout against the worker's processing bound), each rule's state machine, and with
//! `[nightly]` the rules' tables and columns on the batch's source.

use std::collections::BTreeSet;

use aws_sdk_sfn::types::StateMachineType;
use aws_sdk_sqs::types::QueueAttributeName;
use sameday_core::aws::describe;
use sameday_core::rule::ScheduleRule;
use sameday_mysql::Session;
use sameday_worker::config::{NightlyConfig, QueueConfig, WorkerConfig};
use sameday_worker::nightly::table::rule_problems;
use sameday_worker::run::PROCESSING_BOUND_SECS;

use super::{aws, Problem};

pub(crate) async fn worker(cfg: &WorkerConfig) -> Vec<Problem> {
    let sdk = sameday_core::aws::sdk_config(&cfg.aws).await;
    let mut problems = Vec::new();
    if let Some(q) = &cfg.sqs {
        problems.extend(queue(&aws_sdk_sqs::Client::new(&sdk), q).await);
    }
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let arns: BTreeSet<&str> = cfg.rules.iter().map(|r| r.state_machine_arn.as_str()).collect();
    for arn in arns {
        let rules: Vec<&str> =
            cfg.rules.iter().filter(|r| r.state_machine_arn == arn).map(|r| r.name.as_str()).collect();
        problems.extend(state_machine(&sfn, arn, &rules.join(", ")).await);
    }
    if let Some(nightly) = &cfg.nightly {
        problems.extend(nightly_source(nightly, &cfg.rules).await);
    }
    problems
}

async fn queue(sqs: &aws_sdk_sqs::Client, cfg: &QueueConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(p) = visibility_problem("sqs.visibility_timeout_seconds", i64::from(cfg.visibility_timeout_seconds)) {
        problems.push(p);
    }
    if let Some(dlq) = &cfg.dead_letter_queue {
        if let Err(p) = aws::queue(sqs, "sqs.dead_letter_queue", dlq).await {
            problems.push(p);
        }
    }
    let queue = match aws::queue(sqs, "sqs.queue", &cfg.queue).await {
        Ok(q) => q,
        Err(p) => {
            problems.push(p);
            return problems;
        }
    };
    problems.extend(aws::fifo_warning("sqs.queue", &queue));
    let visibility = queue.attribute(QueueAttributeName::VisibilityTimeout).and_then(|v| v.parse::<i64>().ok());
    if let Some(p) = visibility
        .and_then(|v| visibility_problem(&format!("the VisibilityTimeout attribute of SQS queue {}", queue.url), v))
    {
        problems.push(p);
    }
    match queue.attribute(QueueAttributeName::RedrivePolicy).filter(|p| !p.is_empty()) {
        Some(policy) => match redrive_target(policy) {
            Some(target) => {
                let field = format!("the RedrivePolicy of {}", queue.url);
                if let Err(p) = aws::queue(sqs, &field, &target).await {
                    problems.push(p);
                }
            }
            None => problems.push(Problem::error(format!(
                "the RedrivePolicy of SQS queue {} ({policy}) names no deadLetterTargetArn; set one",
                queue.url
            ))),
        },
        None if cfg.dead_letter_queue.is_none() => problems.push(Problem::error(format!(
            "SQS queue {} has no RedrivePolicy and sqs.dead_letter_queue is not set: a poison message would be \
             received again and again forever, holding up its FIFO group; give the queue a redrive policy \
             (RedrivePolicy {{\"deadLetterTargetArn\": \"<DLQ ARN>\", \"maxReceiveCount\": \"5\"}}, via aws sqs \
             set-queue-attributes) or set sqs.dead_letter_queue",
            queue.url
        ))),
        None => {}
    }
    problems
}

/// ERROR when `seconds` does not exceed the worker's processing bound.
fn visibility_problem(what: &str, seconds: i64) -> Option<Problem> {
    let bound = PROCESSING_BOUND_SECS as i64;
    (seconds <= bound).then(|| {
        Problem::error(format!(
            "{what} is {seconds} s, not more than the worker's processing bound of {bound} s (in-place retries \
             with backoff): SQS would hand a message still being worked on to another worker; set it to at least \
             {} s",
            bound + 1
        ))
    })
}

/// The dead-letter queue's name from a RedrivePolicy (`{"deadLetterTargetArn": "arn:...:NAME", ...}`).
fn redrive_target(policy: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?;
    arn.rsplit(':').next().filter(|n| !n.is_empty()).map(str::to_owned)
}

async fn state_machine(sfn: &aws_sdk_sfn::Client, arn: &str, rules: &str) -> Vec<Problem> {
    let what = format!("state machine {arn} (state_machine_arn of rule {rules})");
    match sfn.describe_state_machine().state_machine_arn(arn).send().await {
        Ok(out) => match out.r#type() {
            StateMachineType::Standard => Vec::new(),
            other => vec![Problem::error(format!(
                "{what} is {}, not STANDARD: an EXPRESS execution lasts at most 5 minutes, so a Wait until the \
                 due time cannot work, and execution names do not deduplicate starts; create it as STANDARD \
                 (deploy/statemachine/schedule.asl.json, --type STANDARD) and point state_machine_arn at it",
                other.as_str()
            ))],
        },
        Err(e) if e.as_service_error().is_some_and(|e| e.is_state_machine_does_not_exist()) => {
            vec![Problem::error(format!(
                "{what} does not exist; create it from deploy/statemachine/schedule.asl.json (type STANDARD) or fix \
             state_machine_arn"
            ))]
        }
        Err(e) => vec![Problem::error(format!(
            "{what}: DescribeStateMachine failed: {}; check the ARN's region and account, [aws] and that the task \
             role allows states:DescribeStateMachine",
            describe(&e)
        ))],
    }
}

/// The batch's source is reachable and every rule's table has the columns the rule names
/// (the worker's own check, [`rule_problems`], every problem listed).
async fn nightly_source(cfg: &NightlyConfig, rules: &[ScheduleRule]) -> Vec<Problem> {
    let mut session = match Session::connect(&cfg.source).await {
        Ok(s) => s,
        Err(e) => {
            return vec![Problem::error(format!(
                "cannot connect to the nightly batch's source: {e}; check [nightly.source] host, port, user, \
                 password and tls"
            ))]
        }
    };
    let addr = cfg.source.address();
    let mut problems = Vec::new();
    match &cfg.primary {
        None if session.is_replica().await == Some(true) => problems.push(Problem::warning(format!(
            "[nightly.source] {addr} is a replica and there is no [nightly.primary]: the batch re-reads the rows \
             it started on the replica, which lags behind, so a row changed meanwhile can keep a stale execution; \
             set [nightly.primary] to the primary (usually the reader's [source])"
        ))),
        Some(primary) => match Session::connect(primary).await {
            Ok(s) => s.close().await,
            Err(e) => problems.push(Problem::error(format!(
                "cannot connect to the nightly batch's primary: {e}; check [nightly.primary] host, port, user, \
                 password and tls"
            ))),
        },
        None => {}
    }
    for rule in rules {
        let table = format!("{}.{}", rule.db, rule.table);
        match session.table_columns(&rule.db, &rule.table).await {
            Ok(columns) => problems.extend(
                rule_problems(rule, &columns, &addr)
                    .into_iter()
                    .map(|p| Problem::error(format!("rule {}: table {table} {p}", rule.name))),
            ),
            Err(e) => {
                problems.push(Problem::error(format!("rule {}: cannot read the columns of {table}: {e}", rule.name)))
            }
        }
    }
    session.close().await;
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_must_exceed_the_bound() {
        let bound = PROCESSING_BOUND_SECS as i64;
        assert!(visibility_problem("x", bound).is_some_and(|p| p.blocking));
        assert!(visibility_problem("x", bound + 1).is_none());
    }

    #[test]
    fn the_redrive_target_is_the_arn_s_last_part() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq.fifo","maxReceiveCount":"5"}"#;
        assert_eq!(redrive_target(policy).as_deref(), Some("dlq.fifo"));
        assert_eq!(redrive_target(r#"{"maxReceiveCount":5}"#), None);
    }
}
