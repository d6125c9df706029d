//! `sameday replay` and `sameday tail`: a binlog range (from the server, or from binlog files
//! on disk) through the same decoder and publisher as the live reader, so records and event
//! ids are identical to what the live stream emitted for the same range. A replay never
//! moves the live checkpoint.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sameday_core::checkpoint::NoCheckpoint;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decoder::{Decoder, Output};
use crate::error::ReaderError;
use crate::filter::{FilterConfig, TableFilter};
use crate::kinesis::config::RecordFormat;
use crate::pipeline::{run_inline, run_pipeline, InlineWriter};
use crate::publisher::{PublishSummary, Publisher, PublisherConfig};
use crate::sink::RecordSink;
use crate::source::file::{replay_file_events, replay_files, FileRange};
use crate::source::stream::SourceRun;

/// Outputs handed from the file reader thread to the publisher at once: one channel
/// message per row costs more than decoding it.
const FILE_CHUNK: usize = 512;
/// Chunks waiting for the publisher: enough to keep it busy, few enough that a fast decoder
/// cannot pile up records beside the publisher's own bounded queue (256 chunks let a
/// 1M-row replay reach 94 MiB).
const FILE_CHANNEL_CHUNKS: usize = 16;

/// Binlog files on disk to replay.
pub struct FileReplay {
    pub files: Vec<PathBuf>,
    pub range: FileRange,
    pub filter: FilterConfig,
    pub format: RecordFormat,
    /// MariaDB JSON columns (`db.table.column`), when a server can name them, so they come
    /// out as JSON as in the live run.
    pub json_columns: HashSet<String>,
}

/// What to replay.
pub enum ReplaySource {
    /// A range of the server's binlog (`SourceRun::non_blocking`, `stop_at`), or a live tail.
    Server(SourceRun),
    Files(FileReplay),
}

/// Publisher settings for operator runs: flush at once (a person is watching), Kinesis
/// batching for `--sink kinesis`.
pub fn publisher_config(batching: bool) -> PublisherConfig {
    if batching {
        PublisherConfig::default()
    } else {
        PublisherConfig { linger: Duration::from_millis(1), ..Default::default() }
    }
}

/// Replays `source` into `sink` until it ends or `shutdown`. A sink that takes records in
/// order at once (stdout, null, dry-run) is written from the decoder's thread; others go
/// through the publisher.
pub async fn replay<S: RecordSink>(
    source: ReplaySource,
    sink: Arc<S>,
    cfg: PublisherConfig,
    shutdown: CancellationToken,
) -> Result<PublishSummary, ReaderError> {
    let inline = sink.in_order().is_some();
    let summary = match source {
        ReplaySource::Server(run) if inline => run_inline(run, &*sink, shutdown).await.expect("an in-order sink")?,
        ReplaySource::Files(files) if inline => replay_files_inline(files, sink, shutdown).await?,
        ReplaySource::Server(run) => run_pipeline(run, Publisher::new(sink, cfg), shutdown).await?,
        ReplaySource::Files(files) => replay_from_files(files, Publisher::new(sink, cfg), shutdown).await?,
    };
    tracing::info!(delivered = summary.delivered, dead_lettered = summary.dead_lettered, "replay finished");
    Ok(summary)
}

/// Reads the files on a blocking thread and publishes what they hold.
async fn replay_from_files<S: RecordSink>(
    replay: FileReplay,
    publisher: Publisher<S, NoCheckpoint>,
    shutdown: CancellationToken,
) -> Result<PublishSummary, ReaderError> {
    let (tx, rx) = mpsc::channel::<Vec<Output>>(FILE_CHANNEL_CHUNKS);
    let reader = tokio::task::spawn_blocking(move || read_files(replay, tx));
    let (published, read) = tokio::join!(publisher.run(rx, shutdown), reader);
    read.map_err(|e| ReaderError::File { path: "(file reader)".into(), message: format!("task failed: {e}") })??;
    published
}

/// Reads the files on a blocking thread and writes what they hold into the in-order `sink`
/// on that same thread.
async fn replay_files_inline<S: RecordSink>(
    replay: FileReplay,
    sink: Arc<S>,
    shutdown: CancellationToken,
) -> Result<PublishSummary, ReaderError> {
    let task = tokio::task::spawn_blocking(move || {
        let mut writer = InlineWriter::new(&*sink).expect("an in-order sink");
        let mut since_flush = 0usize;
        let mut decoder = file_decoder(&replay)?;
        let read = replay_file_events(&replay.files, &replay.range, &mut decoder, |outputs| {
            let boundary = outputs.iter().any(|o| matches!(o, Output::Commit(_)));
            let mut open = outputs.iter().all(|o| writer.write(o)) && !shutdown.is_cancelled();
            since_flush += outputs.len();
            if open && (boundary || since_flush >= FILE_CHUNK) {
                open = writer.flush();
                since_flush = 0;
            }
            Ok(open)
        });
        writer.finish(read)
    });
    task.await.map_err(|e| ReaderError::File { path: "(file reader)".into(), message: format!("task failed: {e}") })?
}

/// The decoder for the files of `replay`: its filter, format and JSON columns.
fn file_decoder(replay: &FileReplay) -> Result<Decoder, ReaderError> {
    let filter = TableFilter::new(&replay.filter).map_err(ReaderError::Config)?;
    let mut decoder = Decoder::new(0, filter, "", None).with_format(replay.format);
    decoder.set_json_columns(replay.json_columns.clone());
    Ok(decoder)
}

fn read_files(replay: FileReplay, tx: mpsc::Sender<Vec<Output>>) -> Result<(), ReaderError> {
    let mut chunk = Vec::with_capacity(FILE_CHUNK);
    let mut open = true;
    replay_files(&replay.files, &replay.range, &mut file_decoder(&replay)?, |o| {
        let boundary = matches!(o, Output::Commit(_));
        chunk.push(o);
        if boundary || chunk.len() >= FILE_CHUNK {
            open = tx.blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(FILE_CHUNK))).is_ok();
        }
        Ok(open)
    })?;
    if open && !chunk.is_empty() {
        let _ = tx.blocking_send(chunk);
    }
    Ok(())
}
