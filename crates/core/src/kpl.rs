//! The Kinesis Producer Library's aggregated record format, so that several changes of one
//! row travel in one Kinesis record (one PutRecords entry, written atomically, in order) and
//! any KCL application, Lambda's de-aggregation libraries or sameday's consumer can read them.
//!
//! An aggregated record is the 4 magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`
//! (a table of partition keys, then the user records, each with its partition key's index
//! and its data), and the MD5 of the protobuf bytes. [`deaggregate`] returns anything that is
//! not an intact aggregated record (no magic, too short, digest mismatch, bad protobuf) as one
//! plain record, as the KCL does: a plain sameday envelope starts with `{`, never the magic.

use md5::{Digest, Md5};
use prost::Message;

/// The bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_BYTES: usize = 16;

#[derive(Clone, PartialEq, prost::Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<UserRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UserRecord {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

/// Bytes [`aggregate`] adds around the records' data: magic, digest, the one partition key
/// and per record its field tags and lengths. An upper bound, for size accounting.
pub fn overhead(partition_key: &str, records: usize) -> usize {
    MAGIC.len() + DIGEST_BYTES + partition_key.len() + 6 + records * 16
}

/// One aggregated record holding `records` (in order), all under `partition_key`.
pub fn aggregate<'a>(partition_key: &str, records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let message = AggregatedRecord {
        partition_key_table: vec![partition_key.to_owned()],
        explicit_hash_key_table: Vec::new(),
        records: records
            .into_iter()
            .map(|data| UserRecord {
                partition_key_index: 0,
                explicit_hash_key_index: None,
                data: data.to_vec(),
                tags: Vec::new(),
            })
            .collect(),
    };
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

/// One user record of a Kinesis record: its partition key (when aggregated) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecordOf {
    /// The user record's own partition key; `None` for a plain (not aggregated) record.
    pub partition_key: Option<String>,
    pub data: Vec<u8>,
}

/// The user records of one Kinesis record, in order: the record itself when it is not an
/// intact aggregated record. Their index is the KCL's sub-sequence number.
pub fn deaggregate(data: &[u8]) -> Vec<UserRecordOf> {
    let plain = || vec![UserRecordOf { partition_key: None, data: data.to_vec() }];
    if data.len() <= MAGIC.len() + DIGEST_BYTES || data[..MAGIC.len()] != MAGIC {
        return plain();
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_BYTES);
    if Md5::digest(body).as_slice() != digest {
        return plain();
    }
    let Ok(message) = AggregatedRecord::decode(body) else { return plain() };
    let keys = &message.partition_key_table;
    if message.records.iter().any(|r| r.partition_key_index as usize >= keys.len()) {
        return plain();
    }
    message
        .records
        .into_iter()
        .map(|r| UserRecordOf { partition_key: Some(keys[r.partition_key_index as usize].clone()), data: r.data })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_records_round_trip_in_order() {
        let records: Vec<Vec<u8>> = (0..50).map(|i| format!("{{\"n\":{i},\"t\":\"🎉\"}}").into_bytes()).collect();
        let agg = aggregate("app.t:7", records.iter().map(Vec::as_slice));
        assert_eq!(agg[..4], MAGIC);
        let back = deaggregate(&agg);
        assert_eq!(back.len(), 50);
        for (b, r) in back.iter().zip(&records) {
            assert_eq!(b.partition_key.as_deref(), Some("app.t:7"));
            assert_eq!(&b.data, r);
        }
        let payload: usize = records.iter().map(Vec::len).sum();
        assert!(agg.len() <= payload + overhead("app.t:7", records.len()), "{} vs {payload}", agg.len());
    }

    #[test]
    fn anything_else_is_one_plain_record() {
        let envelope = br#"{"v":1,"id":"x"}"#;
        assert_eq!(deaggregate(envelope), vec![UserRecordOf { partition_key: None, data: envelope.to_vec() }]);
        let mut corrupt = aggregate("k", [&b"a"[..], &b"b"[..]]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert_eq!(deaggregate(&corrupt).len(), 1, "a digest mismatch is not split");
        assert_eq!(deaggregate(&MAGIC).len(), 1);
        assert_eq!(deaggregate(b"").len(), 1);
    }

    #[test]
    fn the_encoding_is_the_kpl_protobuf() {
        // Field 1 (partition_key_table, string "k"), field 3 (records: index 0, data "a").
        let agg = aggregate("k", [&b"a"[..]]);
        let body = &agg[4..agg.len() - 16];
        assert_eq!(body, [0x0a, 0x01, b'k', 0x1a, 0x05, 0x08, 0x00, 0x1a, 0x01, b'a']);
    }
}
