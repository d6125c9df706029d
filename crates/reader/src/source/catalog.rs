//! Reads table definitions from the live source's `information_schema` when the decoder
//! asks ([`crate::decoder::CatalogRequest`]: a table map without column names, once per
//! table-map id), on a connection of its own beside the binlog stream, opened on the first
//! request and kept.
//!
//! A failed read is never skipped: a transient error (the connection broke) makes the stream
//! reconnect and resume at its last transaction boundary, where the table map comes again and
//! so does the request; any other error stops the stream.

use sameday_core::BinlogPosition;
use sameday_mysql::catalog::{read_catalog, TableCatalog};
use sameday_mysql::{Session, SourceConfig};

use crate::decoder::CatalogRequest;
use crate::error::ReaderError;

/// Connection attempts before a read gives up (transiently) and the stream reconnects.
const CONNECT_ATTEMPTS: u32 = 3;
/// MySQL 8.0.30+ hides a generated invisible primary key (`my_row_id`) from
/// information_schema when this is OFF (globally, by choice), but writes it to the binlog:
/// show it on this session, so the columns match.
const SHOW_GIPK: &str = "SET SESSION show_gipk_in_create_table_and_information_schema = ON";

pub(crate) struct CatalogReader {
    cfg: SourceConfig,
    mariadb: bool,
    session: Option<Session>,
    /// Definitions read so far, for the log.
    reads: u64,
}

impl CatalogReader {
    pub(crate) fn new(cfg: &SourceConfig, mariadb: bool) -> Self {
        Self { cfg: cfg.clone(), mariadb, session: None, reads: 0 }
    }

    async fn connect(&self) -> Result<Session, ReaderError> {
        let mut session = Session::connect_with_retry(&self.cfg, CONNECT_ATTEMPTS).await?;
        if !self.mariadb {
            // Before 8.0.30 the variable does not exist, and there are no such keys either.
            if let Err(e) = session.run(&[SHOW_GIPK]).await {
                tracing::debug!(error = %e, "no generated invisible primary keys to show");
            }
        }
        Ok(session)
    }

    /// The current definition of the requested table (no columns when it does not exist), and
    /// the end of the source's binlog right after it was read.
    pub(crate) async fn read(
        &mut self,
        request: &CatalogRequest,
    ) -> Result<(TableCatalog, Option<BinlogPosition>), ReaderError> {
        let session = match &mut self.session {
            Some(session) => session,
            None => {
                let session = self.connect().await?;
                self.session.insert(session)
            }
        };
        // The binlog end after the definition: a DDL visible in the definition is before it.
        let read = match read_catalog(session, &request.db, &request.table).await {
            Ok(catalog) => session.binary_logs().await.map(|logs| (catalog, logs.last().cloned())),
            Err(e) => Err(e),
        };
        match read {
            Ok((catalog, end)) => {
                self.reads += 1;
                tracing::info!(
                    table = %format!("{}.{}", request.db, request.table),
                    table_id = request.table_id,
                    columns = catalog.columns.len(),
                    reads = self.reads,
                    "the binlog names no columns (binlog_row_metadata is not FULL); read them from information_schema"
                );
                Ok((catalog, end.map(|(file, size)| BinlogPosition::new(file, size))))
            }
            Err(e) => {
                // Maybe broken: the next read connects anew.
                self.session = None;
                Err(e.into())
            }
        }
    }

    /// Closes the connection (errors ignored: the stream is done either way).
    pub(crate) async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}
