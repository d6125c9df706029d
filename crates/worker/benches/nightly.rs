//! Nightly batch benchmark: executions started per second by `run_nightly` next to a bare
//! loop of StartExecution calls, same moto, same concurrency, same run; and MySQL queries per
//! 1,000 rows.
//!
//! `cargo bench -p sameday-worker --bench nightly` (env: NIGHTLY_ROWS, default 20000;
//! NIGHTLY_CONCURRENCY, default 16; NIGHTLY_PAGE_SIZE, default 1000).
//!
//! N rows due across one future day are seeded into the shared MariaDB. Then:
//! - **bare**: the N names and inputs computed up front, StartExecution on a fresh state
//!   machine with `NIGHTLY_CONCURRENCY` calls in flight; nothing else;
//! - **nightly**: `run_nightly --date DAY` on another fresh state machine: the keyset reads,
//!   row mapping, naming, the RUNNING listing, rate limiter (set far above what moto does) and
//!   the same concurrency.

mod support;

use std::time::Instant;

use futures_util::StreamExt;
use sameday_core::execution::scheduled_execution;
use sameday_core::rule::ScheduleRule;
use sameday_core::window::due_of_row;
use sameday_testkit::{names, MariaDb, Moto};
use sameday_worker::nightly::{run_nightly, NightlyOptions};
use serde_json::json;
use support::{env_or, DEFINITION};

const DAY: &str = "2032-04-05";
fn main() {
    let rows = env_or("NIGHTLY_ROWS", 20_000);
    let concurrency = env_or("NIGHTLY_CONCURRENCY", 16);
    let page_size = env_or("NIGHTLY_PAGE_SIZE", 1000);
    support::run(|| bench(rows, concurrency, page_size));
}

/// The whole measurement, read top to bottom: fill the table, then alternate runs of the
/// batch and of the bare StartExecution loop, then print both figures side by side. Kept as
/// one function on purpose: split up, the one measurement would be scattered.
async fn bench(rows: usize, concurrency: usize, page_size: usize) {
    let maria = MariaDb::shared();
    let moto = Moto::shared();
    let db = maria.create_database("nightly_bench").await;
    maria
        .exec(&format!(
            "CREATE TABLE {db}.t (id INT PRIMARY KEY, due_at DATETIME(3), user_id BIGINT, action VARCHAR(20), \
             status VARCHAR(10), INDEX (due_at))"
        ))
        .await;
    for chunk in (1..=rows).collect::<Vec<_>>().chunks(5000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| {
                format!(
                    "({id}, '{DAY} {:02}:{:02}:{:02}.{:03}', {id}, 'email', 'pending')",
                    4 + id % 19,
                    id % 60,
                    id * 7 % 60,
                    id % 1000
                )
            })
            .collect();
        maria.exec(&format!("INSERT INTO {db}.t VALUES {}", values.join(", "))).await;
    }
    let bare_sm = moto.create_state_machine(&names::unique("bench_bare"), DEFINITION).await;
    let nightly_sm = moto.create_state_machine(&names::unique("bench_nightly"), DEFINITION).await;
    let rule_for = |sm: &str| -> ScheduleRule {
        serde_json::from_value(json!({
            "name": "bench", "db": db, "table": "t", "key_columns": ["id"], "due_column": "due_at",
            "due_type": "datetime", "time_zone": "Europe/Berlin", "input_columns": ["user_id", "action"],
            "state_machine_arn": sm,
        }))
        .expect("rule")
    };

    // Bare: the same executions, computed up front.
    let bare_rule = rule_for(&bare_sm);
    let executions: Vec<_> = (1..=rows)
        .map(|id| {
            let due = format!("{DAY}T{:02}:{:02}:{:02}.{:03}", 4 + id % 19, id % 60, id * 7 % 60, id % 1000);
            let row = json!({"id": id, "due_at": due, "user_id": id, "action": "email"});
            let row = row.as_object().expect("object").clone();
            scheduled_execution(&bare_rule, &row, due_of_row(&bare_rule, &row).expect("due")).expect("execution")
        })
        .collect();
    let client = moto.sfn_client().await;
    let began = Instant::now();
    futures_util::stream::iter(&executions)
        .for_each_concurrent(concurrency, |e| {
            let client = client.clone();
            let sm = bare_sm.clone();
            async move {
                client
                    .start_execution()
                    .state_machine_arn(sm)
                    .name(&e.name)
                    .input(&e.input)
                    .send()
                    .await
                    .expect("start");
            }
        })
        .await;
    let bare = began.elapsed();

    // Nightly: the real batch.
    let head = format!(
        "[[rule]]\nname = \"bench\"\ndb = \"{db}\"\ntable = \"t\"\nkey_columns = [\"id\"]\ndue_column = \"due_at\"\n\
         due_type = \"datetime\"\ntime_zone = \"Europe/Berlin\"\ninput_columns = [\"user_id\", \"action\"]\n\
         state_machine_arn = \"{nightly_sm}\"\n\
         [step_functions.start_rate]\nrate_per_second = 1000000\nburst = 1000000\n\
         [nightly]\npage_size = {page_size}\nconcurrency = {concurrency}"
    );
    let cfg = support::worker_config(&head, maria, moto);
    let options = NightlyOptions { date: Some(DAY.parse().expect("date")), ..NightlyOptions::default() };
    let began = Instant::now();
    let summary = run_nightly(&cfg, &options).await.expect("nightly run");
    let nightly = began.elapsed();
    let r = &summary.rules[0];
    assert_eq!((r.started, r.failed), (rows as u64, 0), "{summary}");

    let per_s = |d: std::time::Duration| rows as f64 / d.as_secs_f64();
    println!("\nnightly batch, {rows} rows, concurrency {concurrency}, page size {page_size} (moto record mode)\n");
    println!("| | wall time | executions/s | MySQL queries per 1,000 rows |");
    println!("|---|---:|---:|---:|");
    println!("| bare StartExecution loop | {:.2} s | {:.0} | - |", bare.as_secs_f64(), per_s(bare));
    println!(
        "| sameday nightly | {:.2} s | {:.0} | {:.2} |",
        nightly.as_secs_f64(),
        per_s(nightly),
        r.mysql_queries as f64 * 1000.0 / rows as f64
    );
    println!("\nnightly / bare: {:.2}", per_s(nightly) / per_s(bare));
}
