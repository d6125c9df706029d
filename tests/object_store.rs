//! `sameday_core::s3::ObjectStore` against moto's S3: what the claim-check, dead letters and
//! the binlog archive rely on (deterministic keys, digests checked, listings complete).

use sameday_core::s3::{ObjectStore, S3Location};
use sameday_testkit::{names, Moto};

async fn store(prefix: &str) -> ObjectStore {
    let moto = Moto::shared();
    let bucket = names::unique("objects").replace('_', "-");
    moto.create_bucket(&bucket).await;
    let location: S3Location = format!("s3://{bucket}/{prefix}").parse().unwrap();
    ObjectStore::new(moto.s3_client().await, location)
}

#[tokio::test]
async fn object_store_round_trips_and_checks_digests() {
    let store = store("changes").await;
    let body = "Grüße 🎉 \u{fffe}".repeat(10_000).into_bytes();
    let (key, sha) = store.put("0-1-7/0/0.json", body.clone(), "application/json").await.unwrap();
    assert_eq!(key, "changes/0-1-7/0/0.json");
    assert_eq!(store.get(&key, Some(&sha)).await.unwrap().as_deref(), Some(&body[..]));
    // A replay writes the same key with the same bytes: still one object, same digest.
    let (again, sha_again) = store.put("0-1-7/0/0.json", body.clone(), "application/json").await.unwrap();
    assert_eq!((again.as_str(), sha_again.as_str()), (key.as_str(), sha.as_str()));

    let wrong = "0".repeat(64);
    let err = store.get(&key, Some(&wrong)).await.unwrap_err();
    assert!(err.message.contains("replaced or truncated") && err.message.contains(&key), "{err}");
    assert_eq!(store.get("changes/missing.json", None).await.unwrap(), None);

    store.delete(&key).await.unwrap();
    assert_eq!(store.get(&key, None).await.unwrap(), None);
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn object_store_lists_every_object_past_one_page() {
    let store = store("dead-letters/reader").await;
    // ListObjectsV2 returns at most 1,000 keys a page.
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..1_005usize {
        let store = store.clone();
        puts.spawn(
            async move { store.put(&format!("{i:05}.json"), vec![b'x'; i % 7], "application/json").await.unwrap() },
        );
    }
    puts.join_all().await;
    let listed = store.list("").await.unwrap();
    assert_eq!(listed.len(), 1_005);
    assert_eq!(listed[0].key, "dead-letters/reader/00000.json");
    assert_eq!(listed[1_004].size, (1_004 % 7) as u64);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
}
