//! The live source as a stream of decoded chunks, with its reconnect/resume policy.
//!
//! - Transient failures (connection lost, no heartbeat, server restart) reconnect with
//!   backoff and resume at the last transaction boundary handed over; a partly sent
//!   transaction is sent again with the same ids, which later stages de-duplicate. Rows of
//!   it not handed over yet are simply read again.
//! - Outputs are handed over between transactions (so latency is one transaction) and every
//!   [`CHUNK_OUTPUTS`] outputs within a large one: one wake-up per event cost more than
//!   decoding the event.
//! - On MariaDB a DDL may add or drop a JSON column; the JSON columns are re-read after one,
//!   so the next table map uses them.
//! - A table map without column names (`binlog_row_metadata=MINIMAL`) is handed to the
//!   decoder only after the table's definition was read ([`crate::source::catalog`]); a
//!   transient failure of that read reconnects like a broken stream.

use std::sync::Arc;
use std::time::Duration;

use sameday_core::backoff::Backoff;
use sameday_core::health::Health;
use sameday_core::{BinlogPosition, GtidSet};
use sameday_mysql::{ServerInfo, SourceConfig};
use tokio_util::sync::CancellationToken;

use crate::config::ReaderConfig;
use crate::decoder::{Decoder, Output};
use crate::error::ReaderError;
use crate::filter::{FilterConfig, TableFilter};
use crate::kinesis::config::RecordFormat;
use crate::pipeline::Handoff;
use crate::source::catalog::CatalogReader;
use crate::source::live::{LiveEvent, LiveStream, Start};
use crate::source::prepare::json_columns;

/// Outputs per chunk within a large transaction (a commit always ends a chunk).
const CHUNK_OUTPUTS: usize = 512;

/// What to stream from a live source.
pub struct SourceRun {
    pub cfg: SourceConfig,
    pub info: ServerInfo,
    pub filter: FilterConfig,
    pub start: Start,
    pub gtid_set: Option<GtidSet>,
    /// Stop before the first event at or after this position.
    pub stop_at: Option<BinlogPosition>,
    /// End at the server's current end of binlog instead of waiting for more.
    pub non_blocking: bool,
    pub format: RecordFormat,
}

impl SourceRun {
    /// The live daemon's stream as `cfg` configures it, from `start` (resolved on the source
    /// described by `info`), blocking at the end of the binlog for more.
    pub fn for_reader(cfg: &ReaderConfig, info: ServerInfo, start: Start, gtid_set: Option<GtidSet>) -> Self {
        Self {
            cfg: cfg.source.clone(),
            info,
            filter: cfg.filter.clone(),
            start,
            gtid_set,
            stop_at: None,
            non_blocking: false,
            format: cfg.kinesis.format,
        }
    }
}

/// How one connection's stream ended.
enum Ended {
    /// The source ended (non-blocking end, `stop_at`) or the receiver is gone: done.
    Done,
    /// A transient failure: reconnect after the pause.
    Reconnect(ReaderError),
}

/// Streams events from the source through a decoder into `handoff`, reconnecting after
/// transient failures from the last transaction boundary it handed over. Returns when the
/// stream ends (non-blocking / `stop_at`), on shutdown, or on a fatal error.
pub(crate) async fn stream_source<H: Handoff>(
    run: SourceRun,
    handoff: &mut H,
    shutdown: CancellationToken,
    health: Option<Arc<Health>>,
) -> Result<(), ReaderError> {
    let filter = TableFilter::new(&run.filter).map_err(ReaderError::Config)?;
    let initial_file = match &run.start {
        Start::File(p) => p.file.clone(),
        Start::Gtid(_) | Start::MysqlGtid(_) => String::new(),
    };
    let mut decoder =
        Decoder::new(run.info.server_id, filter, initial_file, run.gtid_set.clone()).with_format(run.format);
    if run.info.mariadb {
        decoder.set_json_columns(json_columns(&run.cfg).await?);
    }
    decoder.read_catalogs();
    let mut source = Source {
        start: run.start.clone(),
        catalogs: CatalogReader::new(&run.cfg, run.info.mariadb),
        run,
        decoder,
        last_commit: None,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        out: Vec::new(),
        handoff,
        health,
    };
    let result = source.run(&shutdown).await;
    source.catalogs.close().await;
    result
}

/// The state that survives reconnects.
struct Source<'h, H> {
    run: SourceRun,
    /// Where the next connection starts.
    start: Start,
    decoder: Decoder,
    /// Table definitions for table maps without column names.
    catalogs: CatalogReader,
    /// The last transaction boundary handed over.
    last_commit: Option<BinlogPosition>,
    backoff: Backoff,
    /// Outputs decoded, not handed over yet.
    out: Vec<Output>,
    handoff: &'h mut H,
    health: Option<Arc<Health>>,
}

impl<H: Handoff> Source<'_, H> {
    /// Streams, reconnecting after transient failures, until the end, shutdown or a fatal error.
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), ReaderError> {
        loop {
            let Some(stream) = self.open(shutdown).await? else { return Ok(()) };
            let ended = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                ended = self.pump(stream) => ended?,
            };
            match ended {
                Ended::Done => return Ok(()),
                Ended::Reconnect(e) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(error = %e, resume = ?self.start, retry_in_ms = delay.as_millis() as u64, "binlog stream interrupted; reconnecting");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Opens the stream at `self.start`, retrying transient failures; `None` on shutdown.
    async fn open(&mut self, shutdown: &CancellationToken) -> Result<Option<LiveStream>, ReaderError> {
        loop {
            match LiveStream::open(&self.run.cfg, &self.run.info, &self.start, self.run.non_blocking).await {
                Ok(stream) => {
                    if let Start::File(p) = &self.start {
                        self.decoder.set_file(p.file.clone());
                    }
                    self.decoder.reset_transaction();
                    tracing::info!(start = ?self.start, source = %self.run.cfg.address(), "streaming the binlog");
                    return Ok(Some(stream));
                }
                Err(e) if e.is_transient() => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot open the binlog stream; retrying");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Decodes events of one connection and hands chunks over until it ends.
    async fn pump(&mut self, mut stream: LiveStream) -> Result<Ended, ReaderError> {
        loop {
            match stream.next().await {
                Ok(None) => return Ok(self.finish().await),
                Ok(Some(LiveEvent::File(f))) => self.decoder.set_file(f),
                Ok(Some(LiveEvent::Event(ev))) => {
                    if self.reached_stop(&ev) {
                        return Ok(self.finish().await);
                    }
                    match self.decode(&ev).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(Ended::Done), // the publisher stopped; its error is reported there
                        Err(e) if e.is_transient() => return Ok(self.resume_later(e)),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.is_transient() => return Ok(self.resume_later(e)),
                Err(e) => return Err(e),
            }
        }
    }

    /// After a transient failure: drops what was not handed over and resumes at the last
    /// transaction boundary that was.
    fn resume_later(&mut self, e: ReaderError) -> Ended {
        self.out.clear();
        if let Some(p) = &self.last_commit {
            self.start = Start::File(p.clone());
        }
        Ended::Reconnect(e)
    }

    /// Hands over what is left; the stream is done.
    async fn finish(&mut self) -> Ended {
        let _ = self.handoff.hand(&mut self.out).await;
        self.decoder.recycle(&mut self.out);
        Ended::Done
    }

    /// Whether `ev` starts at or after `stop_at`.
    fn reached_stop(&self, ev: &mysql_async::binlog::events::Event) -> bool {
        let Some(stop) = &self.run.stop_at else { return false };
        let h = ev.header();
        let at = BinlogPosition::new(
            self.decoder.file().to_owned(),
            u64::from(h.log_pos()).saturating_sub(u64::from(h.event_size())),
        );
        h.log_pos() != 0 && at.cmp_same_server(stop).is_ge()
    }

    /// Decodes one event and hands over a chunk when one is complete; `false` when the
    /// receiver is gone.
    async fn decode(&mut self, ev: &mysql_async::binlog::events::Event) -> Result<bool, ReaderError> {
        tracing::trace!(event_type = ev.header().event_type_raw(), log_pos = ev.header().log_pos(), file = %self.decoder.file(), "event");
        let scanned = self.out.len();
        if let Some(request) = self.decoder.catalog_request(ev) {
            let (catalog, binlog_end) = self.catalogs.read(&request).await?;
            self.decoder.set_catalog(&request, catalog, binlog_end);
        }
        self.decoder.handle(ev, &mut self.out)?;
        if let Some(h) = &self.health {
            h.beat();
        }
        self.backoff.reset();
        let fresh = &self.out[scanned..];
        if fresh.is_empty() {
            return Ok(true);
        }
        let ddl = fresh.iter().any(|o| matches!(o, Output::SchemaChange { .. }));
        let commit = fresh.iter().rev().find_map(|o| match o {
            Output::Commit(c) => Some(c.next.clone()),
            _ => None,
        });
        if self.run.info.mariadb && ddl {
            match json_columns(&self.run.cfg).await {
                Ok(cols) => self.decoder.set_json_columns(cols),
                Err(e) => tracing::warn!(error = %e, "cannot refresh the MariaDB JSON columns after a DDL"),
            }
        }
        if self.decoder.in_transaction() && self.out.len() < CHUNK_OUTPUTS {
            return Ok(true);
        }
        if let Some(next) = commit {
            self.last_commit = Some(next);
        }
        let open = self.handoff.hand(&mut self.out).await;
        self.decoder.recycle(&mut self.out);
        Ok(open)
    }
}
