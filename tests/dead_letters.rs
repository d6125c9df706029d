//! Durable dead letters and `sameday dead-letters list|replay`, through the real reader
//! process, MariaDB, kinesalite and moto's S3.

use std::time::{Duration, Instant};

use sameday_core::s3::{ObjectStore, S3Location};
use sameday_testkit::{names, Moto};

use crate::common::{self, Daemon, Env};

async fn objects(location: &S3Location) -> Vec<String> {
    let store = ObjectStore::new(Moto::shared().s3_client().await, location.clone());
    store.list("").await.unwrap().into_iter().map(|o| o.key).collect()
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::sameday_bin())
        .args(args)
        .envs(common::emulator_endpoints())
        .output()
        .expect("run sameday");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A row too large for Kinesis, with no claim-check configured: its dead letter goes to S3,
/// survives `kill -9` of the reader (and the reader's re-read writes the same object, not a
/// second), is listed, and after the fix (the claim-check turned on) is replayed into the
/// stream with its event id and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_dead_letters_in_s3_survive_kill_9_and_replay_after_the_fix() {
    common::set_aws_env();
    let env = Env::new("deadltr", 1).await;
    let bucket = names::unique("deadltr").replace('_', "-");
    Moto::shared().create_bucket(&bucket).await;
    let dead: S3Location = format!("s3://{bucket}/dead-letters/reader").parse().unwrap();
    env.maria().exec(&format!("CREATE TABLE `{}`.t (id INT PRIMARY KEY, body LONGTEXT, n INT)", env.db)).await;
    let start = common::current_position().await;
    let toml = env.reader_toml(&start).endpoint_url(None).dead_letter_location(&dead.to_string());
    let config = toml.write(env.dir.path().join("reader.toml"));
    let envs = common::emulator_endpoints();
    let mut reader = Daemon::spawn("reader", &config, env.dir.path().join("reader-1.log"), &envs);

    let big = "x".repeat(2 * 1024 * 1024);
    env.maria()
        .exec(&format!(
            "INSERT INTO `{}`.t VALUES (1, '{big}', 1); INSERT INTO `{}`.t VALUES (2, 'small', 2)",
            env.db, env.db
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while objects(&dead).await.is_empty() {
        assert!(Instant::now() < deadline, "no dead letter in S3; reader log:\n{}", reader.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.kill9();
    let mut reader = Daemon::spawn("reader", &config, env.dir.path().join("reader-2.log"), &envs);
    env.maria().exec(&format!("INSERT INTO `{}`.t VALUES (3, 'after', 3)", env.db)).await;
    let records = env.wait_for_records(2, Duration::from_secs(30)).await;
    assert!(records.iter().all(|(_, e)| e.key["id"] != 1), "the large row is not in the stream");
    reader.terminate();
    let stored = objects(&dead).await;
    assert_eq!(stored.len(), 1, "one object for the one row, however often it was read: {stored:?}");
    assert!(stored[0].starts_with(&format!("dead-letters/reader/{}.t/", env.db)), "{stored:?}");

    let (ok, listed) = cli(&["dead-letters", "list", "--config", config.to_str().unwrap()]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("1 dead letter(s)") && listed.contains("exceeds the stream's maximum record size"),
        "{listed}"
    );
    assert!(listed.contains(&stored[0]) && listed.contains("\trecord\t"), "{listed}");

    // The fix: large changes go through S3. The replay publishes the change as a pointer.
    let fixed = toml.claim_check(&format!("s3://{bucket}/changes")).write(env.dir.path().join("fixed.toml"));
    let (ok, replayed) = cli(&["dead-letters", "replay", "--config", fixed.to_str().unwrap()]);
    assert!(ok, "{replayed}");
    assert!(replayed.contains("replayed 1 dead letter(s)"), "{replayed}");
    let records = env.wait_for_records(3, Duration::from_secs(30)).await;
    let (_, change) = records.iter().find(|(_, e)| e.key["id"] == 1).expect("the large row's change");
    assert!(change.claim_check.is_some(), "replayed as a claim-check pointer");
    assert!(stored[0].ends_with(&format!("{}.json", change.id)), "same event id: {} vs {}", stored[0], change.id);
    assert!(objects(&dead).await.is_empty(), "the replayed dead letter is removed");
    let (ok, listed) = cli(&["dead-letters", "list", "--config", fixed.to_str().unwrap()]);
    assert!(ok && listed.contains("0 dead letter(s)"), "{listed}");
}
