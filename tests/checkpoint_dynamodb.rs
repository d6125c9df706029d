//! The DynamoDB checkpoint store against moto: fencing between two readers and the
//! never-backwards rule.

use sameday_core::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use sameday_core::checkpoint_dynamo::DynamoCheckpointStore;
use sameday_core::BinlogPosition;
use sameday_testkit::{names, Moto};

fn cp(file: &str, pos: u64) -> Checkpoint {
    Checkpoint {
        position: BinlogPosition::new(file, pos),
        gtid_set: Some("0-1-9".parse().unwrap()),
        commit_ts_ms: 5,
        saved_at_ms: 6,
    }
}

#[tokio::test]
async fn dynamodb_checkpoint_fences_a_deposed_reader_and_never_moves_backwards() {
    let client = Moto::shared().dynamodb_client().await;
    let table = names::unique("checkpoints");
    DynamoCheckpointStore::ensure_table(&client, &table).await.unwrap();
    DynamoCheckpointStore::ensure_table(&client, &table).await.unwrap(); // idempotent

    let first = DynamoCheckpointStore::open(client.clone(), &table, "reader/a").await.unwrap();
    assert_eq!(first.load().await.unwrap(), None);
    first.save(&cp("mysql-bin.000001", 400)).await.unwrap();
    first.save(&cp("mysql-bin.000002", 4)).await.unwrap();
    let err = first.save(&cp("mysql-bin.000001", 900)).await.unwrap_err();
    assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");

    // A second reader takes over the key: the first one can no longer write.
    let second = DynamoCheckpointStore::open(client.clone(), &table, "reader/a").await.unwrap();
    assert!(second.fence() > first.fence());
    assert_eq!(second.load().await.unwrap(), Some(cp("mysql-bin.000002", 4)));
    let err = first.save(&cp("mysql-bin.000002", 500)).await.unwrap_err();
    assert!(matches!(err, CheckpointError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("deposed"), "{err}");
    second.save(&cp("mysql-bin.000002", 600)).await.unwrap();
    assert_eq!(first.load().await.unwrap(), Some(cp("mysql-bin.000002", 600)));

    // An observer (`sameday positions` without --set) reads without deposing anyone.
    let observer = DynamoCheckpointStore::observe(client.clone(), &table, "reader/a");
    assert_eq!(observer.load().await.unwrap(), Some(cp("mysql-bin.000002", 600)));
    assert!(observer.save(&cp("mysql-bin.000003", 4)).await.is_err());
    second.save(&cp("mysql-bin.000002", 700)).await.unwrap();

    // Operators can move it back on purpose; other keys are independent.
    second.force_save(&cp("mysql-bin.000001", 4)).await.unwrap();
    assert_eq!(second.load().await.unwrap(), Some(cp("mysql-bin.000001", 4)));
    let other = DynamoCheckpointStore::open(client, &table, "reader/b").await.unwrap();
    assert_eq!(other.load().await.unwrap(), None);
}

#[tokio::test]
async fn dynamodb_checkpoint_missing_table_is_a_clear_error() {
    let client = Moto::shared().dynamodb_client().await;
    let err = DynamoCheckpointStore::open(client, "no_such_table_here", "k").await.err().unwrap().to_string();
    assert!(err.contains("no_such_table_here") && err.contains("ResourceNotFound"), "{err}");
}
