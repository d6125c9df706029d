//! Amazon Kinesis as the reader's sink: limits, the PutRecords call and its per-record
//! outcome classification. Ordering and retries live in [`crate::publisher`].

pub(crate) mod config;
pub(crate) mod service;

pub use service::KinesisSink;
