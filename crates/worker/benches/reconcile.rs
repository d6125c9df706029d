//! Reconcile benchmark: `sameday reconcile` (report mode) over N due rows and N RUNNING
//! executions, next to a bare loop of ListExecutions calls over the same executions, same
//! moto, same run; with the AWS calls per 1,000 rows.
//!
//! `cargo bench -p sameday-worker --bench reconcile` (env: RECONCILE_ROWS, default 100000;
//! RECONCILE_RUNS, default 3).
//!
//! N rows due later today are seeded into the shared MariaDB and their executions started
//! (in moto's record mode they stay RUNNING). Then, alternating, each run:
//! - **bare**: ListExecutions (RUNNING, 1,000 per page) until the last page; nothing else;
//! - **reconcile**: `run_reconcile` for the rule: the same listing, the keyset read of the
//!   rows, naming and the comparison. It must find everything in sync.

mod support;

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};
use sameday_core::execution::scheduled_execution;
use sameday_core::rule::ScheduleRule;
use sameday_testkit::{names, MariaDb, Moto};
use sameday_worker::reconcile::{run_reconcile, ReconcileOptions};
use serde_json::json;
use support::{env_or, DEFINITION};

fn main() {
    let rows = env_or("RECONCILE_ROWS", 100_000);
    let runs = env_or("RECONCILE_RUNS", 3);
    support::run(|| bench(rows, runs));
}

/// Due `id` minutes-and-seconds into the next hours, all within today's window.
fn due_of(start: Timestamp, id: usize) -> Timestamp {
    start + SignedDuration::from_millis((id as i64) * 250)
}

/// The measurement, top to bottom: seed rows and executions, then alternate bare listing and
/// reconcile runs, then print the table. One function so the one measurement reads in order.
async fn bench(rows: usize, runs: usize) {
    let maria = MariaDb::shared();
    let moto = Moto::shared();
    let db = maria.create_database("reconcile_bench").await;
    maria
        .exec(&format!(
            "CREATE TABLE {db}.t (id INT PRIMARY KEY, due_at DATETIME(3), user_id BIGINT, action VARCHAR(20), \
             INDEX (due_at))"
        ))
        .await;
    // The window opens at the batch time an hour ago (UTC) and lasts a day: rows due from two
    // hours from now on (seeding 100,000 executions into moto takes about 20 minutes), 4 a
    // second, stay inside it for any N up to ~250,000.
    let now = Timestamp::now();
    let batch = now - SignedDuration::from_hours(1);
    let batch_time = batch.strftime("%H:%M").to_string();
    // Whole seconds: the column keeps milliseconds, and the names digest the exact due time.
    let first_due = Timestamp::from_second(now.as_second() + 7200).expect("due");
    let text = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string();
    for chunk in (1..=rows).collect::<Vec<_>>().chunks(5000) {
        let values: Vec<String> =
            chunk.iter().map(|id| format!("({id}, '{}', {id}, 'email')", text(due_of(first_due, *id)))).collect();
        maria.exec(&format!("INSERT INTO {db}.t VALUES {}", values.join(", "))).await;
    }
    let sm = moto.create_state_machine(&names::unique("bench_reconcile"), DEFINITION).await;
    let rule: ScheduleRule = serde_json::from_value(json!({
        "name": "bench", "db": db, "table": "t", "key_columns": ["id"], "due_column": "due_at",
        "due_type": "datetime", "time_zone": "UTC", "batch_time": batch_time,
        "input_columns": ["user_id", "action"], "state_machine_arn": sm,
    }))
    .expect("rule");
    let client = moto.sfn_client().await;
    let seeded = Instant::now();
    futures_util::stream::iter(1..=rows)
        .for_each_concurrent(16, |id| {
            let (client, rule, sm) = (client.clone(), &rule, &sm);
            async move {
                let due = due_of(first_due, id);
                let row = json!({"id": id, "due_at": due.strftime("%Y-%m-%dT%H:%M:%S%.3f").to_string(), "user_id": id, "action": "email"});
                let e = scheduled_execution(rule, row.as_object().expect("object"), due).expect("execution");
                client.start_execution().state_machine_arn(sm).name(&e.name).input(&e.input).send().await.expect("start");
            }
        })
        .await;
    eprintln!("seeded {rows} rows and executions in {:.1} s", seeded.elapsed().as_secs_f64());

    let head = format!(
        "[[rule]]\nname = \"bench\"\ndb = \"{db}\"\ntable = \"t\"\nkey_columns = [\"id\"]\ndue_column = \"due_at\"\n\
         due_type = \"datetime\"\ntime_zone = \"UTC\"\nbatch_time = \"{batch_time}\"\n\
         input_columns = [\"user_id\", \"action\"]\nstate_machine_arn = \"{sm}\"\n\
         [step_functions.list_rate]\nrate_per_second = 1000000\nburst = 1000000\n\
         [nightly]\npage_size = 1000"
    );
    let cfg = support::worker_config(&head, maria, moto);

    let mut bare_times = Vec::new();
    let mut reconcile_times = Vec::new();
    let mut list_calls = 0;
    for _ in 0..runs {
        let began = Instant::now();
        let mut token: Option<String> = None;
        let mut listed = 0;
        loop {
            let out = client
                .list_executions()
                .state_machine_arn(&sm)
                .status_filter(ExecutionStatus::Running)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .expect("ListExecutions");
            listed += out.executions().len();
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        assert_eq!(listed, rows);
        bare_times.push(began.elapsed());

        let began = Instant::now();
        let summary = run_reconcile(&cfg, &ReconcileOptions::default()).await.expect("reconcile");
        reconcile_times.push(began.elapsed());
        let r = &summary.rules[0];
        assert_eq!((r.in_sync, r.drift(), r.rows_due), (rows as u64, 0, rows as u64), "{summary}");
        list_calls = r.list_calls;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (bare, reconcile) = (median(&mut bare_times), median(&mut reconcile_times));
    println!("\nreconcile, {rows} due rows and {rows} RUNNING executions, medians of {runs} runs (moto record mode)\n");
    println!("| | wall time | rows + executions compared per second | AWS calls per 1,000 rows |");
    println!("|---|---:|---:|---:|");
    println!(
        "| bare ListExecutions loop | {:.2} s | {:.0} (executions listed) | {:.2} |",
        bare.as_secs_f64(),
        rows as f64 / bare.as_secs_f64(),
        (rows as f64 / 1000.0).ceil() * 1000.0 / rows as f64
    );
    println!(
        "| sameday reconcile | {:.2} s | {:.0} | {:.2} |",
        reconcile.as_secs_f64(),
        2.0 * rows as f64 / reconcile.as_secs_f64(),
        list_calls as f64 * 1000.0 / rows as f64
    );
    println!(
        "\nreconcile / bare (wall time ratio, bare / reconcile): {:.2}",
        bare.as_secs_f64() / reconcile.as_secs_f64()
    );
}
