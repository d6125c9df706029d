//! Two (then three) `sameday reader` processes on one source with a DynamoDB checkpoint:
//! one active, the others warm standbys. Real `kill -9`, `SIGSTOP`/`SIGCONT` and SIGTERM.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sameday_core::checkpoint_dynamo::DynamoCheckpointStore;
use sameday_testkit::{names, MariaDb, Moto};

use crate::common::{current_position, set_aws_env, Daemon, Env};

fn wait_log(d: &mut Daemon, needle: &str, deadline: Duration) -> Duration {
    let start = Instant::now();
    while !d.log_text().contains(needle) {
        d.assert_running();
        assert!(start.elapsed() < deadline, "{} did not log {needle:?} within {deadline:?}:\n{}", d.name, d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

async fn ids(env: &Env) -> BTreeSet<i64> {
    env.records().await.into_iter().filter_map(|(_, e)| e.after.and_then(|a| a["id"].as_i64())).collect()
}

async fn wait_ids(env: &Env, want: std::ops::RangeInclusive<i64>) {
    let start = Instant::now();
    loop {
        let got = ids(env).await;
        if want.clone().all(|i| got.contains(&i)) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "rows {want:?} did not all reach Kinesis: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_reader_takes_over_after_kill_and_a_deposed_reader_stops() {
    let _slot = common::scenario_slot().await;
    set_aws_env();
    let env = Env::new("standby", 1).await;
    let table = names::unique("standby-ckpt");
    DynamoCheckpointStore::ensure_table(&Moto::shared().dynamodb_client().await, &table).await.unwrap();
    MariaDb::shared().exec(&format!("CREATE TABLE `{}`.t (id BIGINT PRIMARY KEY, v INT)", env.db)).await;
    // The checkpoint and its lease in DynamoDB; AWS_ENDPOINT_URL_<SERVICE> picks each emulator.
    let cfg = env
        .reader_toml(&current_position().await)
        .dynamodb_checkpoint(&table, "reader-main")
        .checkpoint_interval_ms(100)
        .lease_ms(3000)
        .endpoint_url(None)
        .write(env.dir.path().join("reader.toml"));
    let envs = common::emulator_endpoints();
    let spawn = |name: &str| {
        let mut d = Daemon::spawn("reader", &cfg, env.dir.path().join(format!("{name}.log")), &envs);
        d.name = name.to_owned();
        d
    };
    let insert = |from: i64, to: i64| {
        let values: Vec<String> = (from..=to).map(|i| format!("({i}, {i})")).collect();
        format!("INSERT INTO `{}`.t VALUES {}", env.db, values.join(","))
    };

    let mut a = spawn("a");
    wait_log(&mut a, "active: holding the checkpoint lease", Duration::from_secs(20));
    let mut b = spawn("b");
    wait_log(&mut b, "standby: another reader is active", Duration::from_secs(20));
    MariaDb::shared().exec(&insert(1, 50)).await;
    wait_ids(&env, 1..=50).await;
    assert!(!b.log_text().contains("active: holding"), "the standby stays idle while a is alive");

    // The active one dies: b takes over after the lease runs out and resumes from the checkpoint.
    a.kill9();
    let takeover = wait_log(&mut b, "active: holding the checkpoint lease", Duration::from_secs(15));
    assert!(takeover < Duration::from_secs(6), "take-over took {takeover:?} with a 3 s lease");
    MariaDb::shared().exec(&insert(51, 100)).await;
    wait_ids(&env, 1..=100).await;

    // b is paused past its lease (a partition, a GC pause): c takes over; when b wakes up
    // it finds the fence moved and stops without publishing a checkpoint.
    let mut c = spawn("c");
    wait_log(&mut c, "standby: another reader is active", Duration::from_secs(20));
    assert!(std::process::Command::new("kill").args(["-STOP", &b.child.id().to_string()]).status().unwrap().success());
    wait_log(&mut c, "active: holding the checkpoint lease", Duration::from_secs(15));
    MariaDb::shared().exec(&insert(101, 120)).await;
    wait_ids(&env, 1..=120).await;
    assert!(std::process::Command::new("kill").args(["-CONT", &b.child.id().to_string()]).status().unwrap().success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = b.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "deposed reader kept running:\n{}", b.log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a deposed reader exits non-zero (ECS restarts it as a standby)");
    assert!(b.log_text().contains("deposed"), "{}", b.log_text());

    // Graceful stop of the active reader releases the lease: a new standby takes over at
    // once, not after expiry.
    let mut d = spawn("d");
    wait_log(&mut d, "standby: another reader is active", Duration::from_secs(20));
    c.terminate();
    let handover = wait_log(&mut d, "active: holding the checkpoint lease", Duration::from_secs(15));
    assert!(handover < Duration::from_millis(2500), "hand-over after SIGTERM took {handover:?}");
    MariaDb::shared().exec(&insert(121, 130)).await;
    wait_ids(&env, 1..=130).await;
    d.terminate();
}
