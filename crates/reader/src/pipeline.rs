//! One source into one sink. The decoder's chunks flow either through a bounded channel
//! (backpressure on the binlog) into the publisher, which delivers them in per-key order and
//! checkpoints behind durable delivery (the daemon, `replay --sink kinesis`); or, for a sink
//! that takes everything in order at once (stdout, null, dry-run: `tail`, `replay`), straight
//! into the sink on the decoder's own task ([`InlineWriter`]): no queue, no thread hand-off.

use std::future::Future;

use sameday_core::checkpoint::CheckpointStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decoder::{log_schema_change, Output};
use crate::error::ReaderError;
use crate::publisher::{PublishSummary, Publisher};
use crate::sink::{InOrderSink, RecordSink, SinkError};
use crate::source::stream::{stream_source, SourceRun};

/// Chunks buffered between the decoder and the publisher.
const CHANNEL_CHUNKS: usize = 64;

/// Where the source hands its decoded outputs, a chunk at a time (each ends at a transaction
/// boundary, or holds a few hundred rows of a large transaction).
pub(crate) trait Handoff: Send {
    /// Takes or writes the outputs in `chunk`; what it leaves there is written and goes back
    /// to the decoder for reuse. `false` when the receiving side is gone.
    fn hand(&mut self, chunk: &mut Vec<Output>) -> impl Future<Output = bool> + Send;
}

impl Handoff for mpsc::Sender<Vec<Output>> {
    async fn hand(&mut self, chunk: &mut Vec<Output>) -> bool {
        self.send(std::mem::take(chunk)).await.is_ok()
    }
}

/// Runs `source` into `publisher` until the source ends or `shutdown`.
pub async fn run_pipeline<S: RecordSink, C: CheckpointStore + 'static>(
    source: SourceRun,
    publisher: Publisher<S, C>,
    shutdown: CancellationToken,
) -> Result<PublishSummary, ReaderError> {
    let (mut tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let health = publisher.health();
    let publish = tokio::spawn(publisher.run(rx, shutdown.clone()));
    let source_result = stream_source(source, &mut tx, shutdown.clone(), health).await;
    drop(tx);
    // On a source error, stop the publisher too, but let it save what is durable.
    if source_result.is_err() {
        shutdown.cancel();
    }
    let summary = publish.await.map_err(|e| ReaderError::Sink {
        stream: "publisher".into(),
        message: format!("publisher task failed: {e}"),
    })??;
    source_result?;
    Ok(summary)
}

/// Runs `source` straight into `sink` on this task; `None` when the sink is not in-order
/// (see [`RecordSink::in_order`]).
pub(crate) async fn run_inline<S: RecordSink>(
    source: SourceRun,
    sink: &S,
    shutdown: CancellationToken,
) -> Option<Result<PublishSummary, ReaderError>> {
    let mut writer = InlineWriter::new(sink)?;
    let source_result = stream_source(source, &mut writer, shutdown, None).await;
    Some(writer.finish(source_result))
}

/// Writes decoded outputs into an in-order sink as they come: rows are delivered when
/// written, dead letters are logged and counted, nothing is checkpointed (operator runs).
pub(crate) struct InlineWriter<'s> {
    target: &'s dyn InOrderSink,
    /// The sink, as errors name it.
    name: String,
    summary: PublishSummary,
    /// The sink's first error; writing stops there.
    error: Option<SinkError>,
}

impl<'s> InlineWriter<'s> {
    /// A writer into `sink`, if it takes records in order at once.
    pub(crate) fn new<S: RecordSink>(sink: &'s S) -> Option<Self> {
        let target = sink.in_order()?;
        Some(Self { target, name: sink.describe(), summary: PublishSummary::default(), error: None })
    }

    /// Writes one output; `false` once the sink has failed.
    pub(crate) fn write(&mut self, output: &Output) -> bool {
        if self.error.is_some() {
            return false;
        }
        match output {
            Output::Row(r) => match self.target.write(&r.partition_key, &r.data) {
                Ok(()) => self.summary.delivered += 1,
                Err(e) => self.error = Some(e),
            },
            Output::Commit(c) => self.summary.last_durable = Some(c.clone()),
            Output::DeadLetter(d) => {
                self.summary.dead_lettered += 1;
                tracing::error!(table = %d.table, position = %d.position, reason = %d.reason, "change dead-lettered; the stream continues");
            }
            Output::SchemaChange { db, kind, table, position } => {
                log_schema_change(db, kind, table.as_deref(), position);
            }
            Output::CaughtUp => {}
        }
        self.error.is_none()
    }

    /// Flushes the sink at a hand-over; `false` once the sink has failed.
    pub(crate) fn flush(&mut self) -> bool {
        if self.error.is_none() {
            if let Err(e) = self.target.flush() {
                self.error = Some(e);
            }
        }
        self.error.is_none()
    }

    /// What was written, or the sink's error (before the source's: it stopped the source).
    pub(crate) fn finish(mut self, source_result: Result<(), ReaderError>) -> Result<PublishSummary, ReaderError> {
        self.flush();
        if let Some(e) = self.error {
            return Err(ReaderError::Sink { stream: self.name, message: e.message });
        }
        source_result?;
        Ok(self.summary)
    }
}

impl Handoff for InlineWriter<'_> {
    async fn hand(&mut self, chunk: &mut Vec<Output>) -> bool {
        chunk.iter().all(|o| self.write(o)) && self.flush()
    }
}
