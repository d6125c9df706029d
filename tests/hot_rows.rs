//! A row changed thousands of times (a status row, a counter, a bulk UPDATE touching one row
//! again and again) through the whole pipeline, with Kinesis failing single records and
//! throttling whole calls: the schedule ends as the row's newest image, the rest of the table
//! is not held up, and the burst costs a handful of Step Functions calls, not one per change.

use std::time::{Duration, Instant};

use sameday_testkit::{Fault, FaultProxy, Kinesalite, Moto};

use crate::common::pipeline::Pipeline;
use crate::common::{self};
use crate::schedule_scenarios::{assert_schedule_matches_table, due};

const HOT_CHANGES: usize = 20_000;
/// How long a row written during the burst may take to reach Step Functions.
const COLD_ROW_BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_20000_times_ends_as_its_newest_image_with_few_step_functions_calls() {
    let _slot = common::heavy_scenario_slot().await;
    let mut p = Pipeline::new("hotrow").await;
    // One PutRecords call in 5 throttled as a whole, one record in 7 of the rest failed alone.
    let throttle = Fault {
        operation: "PutRecords".into(),
        every: 5,
        status: 400,
        error_type: "ProvisionedThroughputExceededException".into(),
    };
    let kinesis = FaultProxy::start_with(&Kinesalite::shared().endpoint(), throttle, Some(7)).await;
    // Step Functions through a proxy that only counts.
    let never = Fault { operation: "None".into(), every: u64::MAX, status: 500, error_type: "None".into() };
    let sfn = FaultProxy::start(&Moto::shared().endpoint(), never).await;
    p.reader_kinesis_endpoint = Some(kinesis.endpoint().to_owned());
    p.sfn_endpoint = sfn.endpoint().to_owned();
    p.start().await;

    p.sql(&format!("INSERT INTO schedule (id, user_id, action, due_at) VALUES (1, 1, 'hot', '{}')", due(30))).await;
    let dues = [due(35), due(45), due(55)];
    let burst: String =
        (0..HOT_CHANGES).map(|i| format!("UPDATE schedule SET due_at = '{}' WHERE id = 1;", dues[i % 3])).collect();
    let hot = {
        let db = p.env.db.clone();
        tokio::spawn(async move {
            sameday_testkit::MariaDb::shared().exec(&format!("SET time_zone = '+00:00'; USE `{db}`; {burst}")).await
        })
    };
    // A row written while the burst goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cold_due = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(25);
    let written = Instant::now();
    p.sql(&format!(
        "INSERT INTO schedule (id, user_id, action, due_at) VALUES (2, 2, 'cold', '{}')",
        crate::common::pipeline::fmt(cold_due)
    ))
    .await;
    let cold_name = p.name_of(&Pipeline::row(2, 2, "cold", cold_due));
    while !p.executions().await.contains_key(&cold_name) {
        assert!(written.elapsed() < COLD_ROW_BOUND, "the cold row waited behind the hot one for {COLD_ROW_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cold_latency = written.elapsed();
    hot.await.unwrap();

    p.settle(HOT_CHANGES + 2).await;
    assert_schedule_matches_table(&p, "after 20,000 changes of one row").await;
    assert!(
        kinesis.injected() > 0 && kinesis.failed_records() > 0,
        "faults were injected: {} requests, {} throttled, {} records failed",
        kinesis.requests(),
        kinesis.injected(),
        kinesis.failed_records()
    );
    let calls = sfn.requests();
    let kinesis_records = Kinesalite::shared().read_all(&p.env.stream).await.len();
    println!(
        "hot row: {HOT_CHANGES} changes in {kinesis_records} Kinesis records, {} throttled PutRecords, {} records \
         failed alone; {calls} Step Functions calls; a row written during the burst reached Step Functions in \
         {cold_latency:?}",
        kinesis.injected(),
        kinesis.failed_records()
    );
    assert!(calls < 500, "{calls} Step Functions calls for {HOT_CHANGES} changes of one row");
    p.stop().await;
}
