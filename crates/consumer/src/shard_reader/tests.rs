//! Reading shards of the Kinesis emulator (kinesalite): order, resume after a checkpoint,
//! and the end of a split parent.

use super::ShardReader;
use crate::shard_lease::ShardCheckpoint;
use aws_sdk_kinesis::primitives::Blob;
use sameday_testkit::{names, Kinesalite};

async fn put(client: &aws_sdk_kinesis::Client, stream: &str, n: usize, from: usize) {
    for i in from..from + n {
        client
            .put_record()
            .stream_name(stream)
            .partition_key("k")
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .unwrap();
    }
}

async fn drain(reader: &mut ShardReader) -> (Vec<String>, bool) {
    let mut got = Vec::new();
    loop {
        let b = reader.next_batch().await.unwrap();
        let empty = b.records.is_empty();
        got.extend(b.records.into_iter().map(|r| String::from_utf8(r.data).unwrap()));
        if b.shard_end || (empty && b.millis_behind == Some(0)) {
            return (got, b.shard_end);
        }
    }
}

#[tokio::test]
async fn shard_reader_reads_in_order_and_resumes_after_a_checkpoint() {
    let k = Kinesalite::shared();
    let client = k.kinesis_client().await;
    let stream = names::unique("reader");
    k.create_stream(&stream, 1).await;
    put(&client, &stream, 5, 0).await;
    let shard = client.list_shards().stream_name(&stream).send().await.unwrap().shards()[0].shard_id().to_owned();

    let mut first = ShardReader::new(client.clone(), &stream, &shard, ShardCheckpoint::TrimHorizon);
    let (got, ended) = drain(&mut first).await;
    assert_eq!(got, ["r0", "r1", "r2", "r3", "r4"]);
    assert!(!ended);
    let checkpoint = ShardCheckpoint::Sequence(first.last_sequence().unwrap().clone());

    put(&client, &stream, 3, 5).await;
    let mut resumed = ShardReader::new(client.clone(), &stream, &shard, checkpoint);
    let (got, _) = drain(&mut resumed).await;
    assert_eq!(got, ["r5", "r6", "r7"], "resumes right after the checkpoint, nothing repeated");
}

#[tokio::test]
async fn split_parent_reports_shard_end_after_its_last_record() {
    let k = Kinesalite::shared();
    let client = k.kinesis_client().await;
    let stream = names::unique("split");
    k.create_stream(&stream, 1).await;
    put(&client, &stream, 3, 0).await;
    let parent = client.list_shards().stream_name(&stream).send().await.unwrap().shards()[0].clone();
    let start: u128 = parent.hash_key_range().unwrap().starting_hash_key().parse().unwrap();
    let end: u128 = parent.hash_key_range().unwrap().ending_hash_key().parse().unwrap();
    client
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent.shard_id())
        .new_starting_hash_key(((start + end) / 2).to_string())
        .send()
        .await
        .unwrap();
    sameday_testkit::wait_until(std::time::Duration::from_secs(20), "stream ACTIVE after split", || {
        let client = client.clone();
        let stream = stream.clone();
        async move {
            let s = client.describe_stream_summary().stream_name(&stream).send().await.unwrap();
            s.stream_description_summary().is_some_and(|d| d.stream_status().as_str() == "ACTIVE")
        }
    })
    .await;
    let mut reader = ShardReader::new(client.clone(), &stream, parent.shard_id(), ShardCheckpoint::TrimHorizon);
    let (got, ended) = drain(&mut reader).await;
    assert_eq!(got, ["r0", "r1", "r2"]);
    assert!(ended, "a closed, fully read shard reports its end");
    assert!(reader.next_batch().await.unwrap().shard_end);
}

/// A KPL aggregated record between two plain ones: its user records come out in order at
/// `SEQ:0`, `SEQ:1`, ... and the last at `SEQ`; a checkpoint inside it resumes with the user
/// record after it, and a checkpoint on the whole record after the record.
#[tokio::test]
async fn aggregated_records_are_unpacked_and_resumed_inside() {
    let k = Kinesalite::shared();
    let client = k.kinesis_client().await;
    let stream = names::unique("agg");
    k.create_stream(&stream, 1).await;
    put(&client, &stream, 1, 0).await;
    let users: Vec<Vec<u8>> = (0..5).map(|i| format!("u{i}").into_bytes()).collect();
    let agg = sameday_core::kpl::aggregate("app.t:1", users.iter().map(Vec::as_slice));
    client.put_record().stream_name(&stream).partition_key("app.t:1").data(Blob::new(agg)).send().await.unwrap();
    put(&client, &stream, 1, 1).await;
    let shard = client.list_shards().stream_name(&stream).send().await.unwrap().shards()[0].shard_id().to_owned();

    let mut reader = ShardReader::new(client.clone(), &stream, &shard, ShardCheckpoint::TrimHorizon);
    let mut records = Vec::new();
    while records.len() < 7 {
        records.extend(reader.next_batch().await.unwrap().records);
    }
    let data: Vec<String> = records.iter().map(|r| String::from_utf8(r.data.clone()).unwrap()).collect();
    assert_eq!(data, ["r0", "u0", "u1", "u2", "u3", "u4", "r1"]);
    let seq = records[1].sequence.record();
    let positions: Vec<String> = records[1..6].iter().map(|r| r.sequence.to_string()).collect();
    assert_eq!(
        positions,
        ["0", "1", "2", "3"].map(|s| format!("{seq}:{s}")).into_iter().chain([seq.to_string()]).collect::<Vec<_>>()
    );
    assert!(records[1..6].iter().all(|r| r.partition_key == "app.t:1"));
    assert!(records.windows(2).all(|w| w[0].sequence < w[1].sequence), "positions increase");

    for (checkpoint, expected) in [(records[2].sequence.clone(), &data[3..]), (records[5].sequence.clone(), &data[6..])]
    {
        let mut resumed =
            ShardReader::new(client.clone(), &stream, &shard, ShardCheckpoint::Sequence(checkpoint.clone()));
        let (got, _) = drain(&mut resumed).await;
        assert_eq!(got, expected, "resumed after {checkpoint}");
    }
}
