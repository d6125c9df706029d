//! The sink contract: a batch of records goes out, and each record comes back with its own
//! outcome, because PutRecords (like SendMessageBatch) fails partially.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One record to deliver.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    pub partition_key: String,
    /// Shared, so handing a record to a request does not copy it.
    pub data: bytes::Bytes,
}

/// What happened to one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Delivered,
    /// Not written; safe to send again (throttled, internal failure).
    Retry {
        code: String,
    },
}

/// A whole-request failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    /// Throttling, 5xx, network: retry the batch. Otherwise the stream cannot continue
    /// (missing stream, no permission) and the reader stops with this message.
    pub transient: bool,
}

pub trait RecordSink: Send + Sync + 'static {
    /// Delivers `batch`; the outcome vector has one entry per record, in order.
    fn put(&self, batch: &[SinkRecord]) -> impl Future<Output = Result<Vec<RecordOutcome>, SinkError>> + Send;
    /// Largest accepted record (data + partition key), in bytes.
    fn max_record_bytes(&self) -> usize;
    fn describe(&self) -> String;
    /// A sink that takes every record at once, in order, and never fails one alone (stdout,
    /// null, dry-run) gives itself here: the decoder's thread then writes into it directly
    /// ([`crate::pipeline::InlineWriter`]), without the publisher's queue, batching, retries
    /// and thread hand-off, which exist for sinks that fail per record.
    fn in_order(&self) -> Option<&dyn InOrderSink> {
        None
    }
}

/// A sink written record by record from the decoder's thread (see [`RecordSink::in_order`]).
pub trait InOrderSink: Send + Sync {
    fn write(&self, partition_key: &str, data: &[u8]) -> Result<(), SinkError>;
    /// Called at every hand-over (each transaction, or every few hundred rows of a large one).
    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Writes each record as one JSON line to stdout (`sameday tail`, `replay --sink stdout`).
pub struct StdoutSink {
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self { out: Mutex::new(std::io::BufWriter::new(std::io::stdout())) }
    }
}

impl RecordSink for StdoutSink {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        let mut out = self.out.lock().expect("stdout mutex poisoned");
        for r in batch {
            out.write_all(&r.data)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| SinkError { message: format!("stdout: {e}"), transient: false })?;
        }
        out.flush().map_err(|e| SinkError { message: format!("stdout: {e}"), transient: false })?;
        Ok(vec![RecordOutcome::Delivered; batch.len()])
    }

    fn max_record_bytes(&self) -> usize {
        usize::MAX
    }

    fn describe(&self) -> String {
        "stdout".into()
    }

    fn in_order(&self) -> Option<&dyn InOrderSink> {
        Some(self)
    }
}

impl InOrderSink for StdoutSink {
    fn write(&self, _partition_key: &str, data: &[u8]) -> Result<(), SinkError> {
        let mut out = self.out.lock().expect("stdout mutex poisoned");
        out.write_all(data)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| SinkError { message: format!("stdout: {e}"), transient: false })
    }

    fn flush(&self) -> Result<(), SinkError> {
        let mut out = self.out.lock().expect("stdout mutex poisoned");
        out.flush().map_err(|e| SinkError { message: format!("stdout: {e}"), transient: false })
    }
}

/// Accepts and drops everything (benchmarks measure decoding alone with it).
#[derive(Default)]
pub struct NullSink {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

impl RecordSink for NullSink {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        self.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(batch.iter().map(|r| r.data.len() as u64).sum(), Ordering::Relaxed);
        Ok(vec![RecordOutcome::Delivered; batch.len()])
    }

    fn max_record_bytes(&self) -> usize {
        usize::MAX
    }

    fn describe(&self) -> String {
        "null".into()
    }

    fn in_order(&self) -> Option<&dyn InOrderSink> {
        Some(self)
    }
}

impl InOrderSink for NullSink {
    fn write(&self, _partition_key: &str, data: &[u8]) -> Result<(), SinkError> {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Fault injection for tests: fails every `nth` record with a retryable per-record error
/// and every `throttle_every`-th request as a whole, in front of a real sink.
pub struct FaultySink<S> {
    inner: S,
    nth: u64,
    throttle_every: u64,
    records_seen: AtomicU64,
    requests_seen: AtomicU64,
    pub injected_record_failures: AtomicU64,
    pub injected_request_failures: AtomicU64,
}

impl<S: RecordSink> FaultySink<S> {
    pub fn new(inner: S, nth: u64, throttle_every: u64) -> Self {
        Self {
            inner,
            nth,
            throttle_every,
            records_seen: AtomicU64::new(0),
            requests_seen: AtomicU64::new(0),
            injected_record_failures: AtomicU64::new(0),
            injected_request_failures: AtomicU64::new(0),
        }
    }
}

impl<S: RecordSink> RecordSink for FaultySink<S> {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        let req = self.requests_seen.fetch_add(1, Ordering::Relaxed) + 1;
        if self.throttle_every > 0 && req.is_multiple_of(self.throttle_every) {
            self.injected_request_failures.fetch_add(1, Ordering::Relaxed);
            return Err(SinkError { message: "injected ThrottlingException".into(), transient: true });
        }
        // Pick the failing records first, send only the others to the real sink, so a
        // "failed" record is really absent downstream, like a PutRecords partial failure.
        let mut fail = Vec::with_capacity(batch.len());
        for _ in batch {
            let n = self.records_seen.fetch_add(1, Ordering::Relaxed) + 1;
            fail.push(self.nth > 0 && n.is_multiple_of(self.nth));
        }
        let pass: Vec<SinkRecord> = batch.iter().zip(&fail).filter(|(_, f)| !**f).map(|(r, _)| r.clone()).collect();
        let mut inner = if pass.is_empty() { Vec::new() } else { self.inner.put(&pass).await? }.into_iter();
        let mut out = Vec::with_capacity(batch.len());
        for f in fail {
            if f {
                self.injected_record_failures.fetch_add(1, Ordering::Relaxed);
                out.push(RecordOutcome::Retry { code: "ProvisionedThroughputExceededException".into() });
            } else {
                out.push(inner.next().unwrap_or(RecordOutcome::Retry { code: "missing".into() }));
            }
        }
        Ok(out)
    }

    fn max_record_bytes(&self) -> usize {
        self.inner.max_record_bytes()
    }

    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }
}

/// Counts what would be emitted per `db.table op` and emits nothing (`replay --dry-run`).
#[derive(Default)]
pub struct CountingSink(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl CountingSink {
    /// The counts so far, by `db.table op`.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.lock().expect("counts mutex poisoned").clone()
    }
}

impl RecordSink for CountingSink {
    async fn put(&self, batch: &[SinkRecord]) -> Result<Vec<RecordOutcome>, SinkError> {
        for r in batch {
            InOrderSink::write(self, &r.partition_key, &r.data)?;
        }
        Ok(vec![RecordOutcome::Delivered; batch.len()])
    }

    fn max_record_bytes(&self) -> usize {
        usize::MAX
    }

    fn describe(&self) -> String {
        "dry-run".into()
    }

    fn in_order(&self) -> Option<&dyn InOrderSink> {
        Some(self)
    }
}

impl InOrderSink for CountingSink {
    fn write(&self, _partition_key: &str, data: &[u8]) -> Result<(), SinkError> {
        let env: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
        let key = format!(
            "{}.{} {}",
            env["db"].as_str().unwrap_or("?"),
            env["table"].as_str().unwrap_or("?"),
            env["op"].as_str().unwrap_or("?")
        );
        *self.0.lock().expect("counts mutex poisoned").entry(key).or_default() += 1;
        Ok(())
    }
}
