//! One source into one publisher: the decoder's chunks flow through a bounded channel
//! (backpressure on the binlog) into the publisher, which delivers them in per-key order and
//! checkpoints behind durable delivery. Used by the daemon, `tail` and `replay`.

use sameday_core::checkpoint::CheckpointStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::ReaderError;
use crate::publisher::{PublishSummary, Publisher};
use crate::sink::RecordSink;
use crate::source::stream::{stream_source, SourceRun};

/// Chunks buffered between the decoder and the publisher.
const CHANNEL_CHUNKS: usize = 64;

/// Runs `source` into `publisher` until the source ends or `shutdown`.
pub async fn run_pipeline<S: RecordSink, C: CheckpointStore + 'static>(
    source: SourceRun,
    publisher: Publisher<S, C>,
    shutdown: CancellationToken,
) -> Result<PublishSummary, ReaderError> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let health = publisher.health();
    let publish = tokio::spawn(publisher.run(rx, shutdown.clone()));
    let source_result = stream_source(source, tx, shutdown.clone(), health).await;
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
