//! Before streaming from a server: its facts and checks (the same [`replica_checks`] that
//! `sameday check` prints), MariaDB's JSON columns, and where to start.

use std::collections::HashSet;

use sameday_core::checkpoint::Checkpoint;
use sameday_core::{GtidSet, StartPosition};
use sameday_mysql::checks::{replica_checks, ReplicaCheck};
use sameday_mysql::{ServerInfo, Session, SourceConfig};

use crate::error::ReaderError;
use crate::filter::{FilterConfig, TableFilter};
use crate::source::live::{self, Start};

/// Connection attempts of the start-up look-ups (server facts, checks, start position).
const STARTUP_CONNECT_ATTEMPTS: u32 = 3;

/// Connects, reads server facts and runs the checks; fails on a blocking problem and logs
/// the warnings.
pub async fn prepare_source(cfg: &SourceConfig, filter: &FilterConfig) -> Result<ServerInfo, ReaderError> {
    let mut session = Session::connect_with_retry(cfg, STARTUP_CONNECT_ATTEMPTS).await?;
    let info = session.server_info().await?;
    let table_filter = TableFilter::new(filter).map_err(ReaderError::Config)?;
    let tables = table_filter.literal_includes();
    let check = ReplicaCheck { info: &info, server_id: cfg.server_id, tables: &tables };
    let problems = replica_checks(&mut session, &check).await;
    session.close().await;
    let problems = problems?;
    for p in problems.iter().filter(|p| !p.blocking) {
        tracing::warn!(problem = %p.message, "preflight");
    }
    let blocking: Vec<String> = problems.iter().filter(|p| p.blocking).map(|p| p.to_string()).collect();
    if !blocking.is_empty() {
        return Err(ReaderError::Preflight { source_addr: cfg.address(), problems: blocking.join("\n") });
    }
    Ok(info)
}

/// The MariaDB JSON columns of the source (see [`Session::mariadb_json_columns`]).
pub(crate) async fn json_columns(cfg: &SourceConfig) -> Result<HashSet<String>, ReaderError> {
    let mut session = Session::connect(cfg).await?;
    let cols = session.mariadb_json_columns().await;
    session.close().await;
    Ok(cols?)
}

/// Resolves `start` against the source (see [`live::resolve_start`]).
pub async fn resolve_start(cfg: &SourceConfig, info: &ServerInfo, start: &StartPosition) -> Result<Start, ReaderError> {
    let mut session = Session::connect_with_retry(cfg, STARTUP_CONNECT_ATTEMPTS).await?;
    let resolved = live::resolve_start(&mut session, info, start).await;
    session.close().await;
    resolved
}

/// Where to start: the checkpoint when there is one, else the configured start; with the
/// GTID set executed before it.
pub async fn resolve(
    cfg: &SourceConfig,
    info: &ServerInfo,
    configured: &StartPosition,
    checkpoint: Option<&Checkpoint>,
) -> Result<(Start, Option<GtidSet>), ReaderError> {
    Ok(match checkpoint {
        Some(cp) => (resolve_start(cfg, info, &StartPosition::File(cp.position.clone())).await?, cp.gtid_set.clone()),
        None => {
            let start = resolve_start(cfg, info, configured).await?;
            // Starting from a GTID set: it is what has been executed before the stream.
            let executed = match &start {
                Start::Gtid(set) | Start::MysqlGtid(set) => Some(set.clone()),
                Start::File(_) => None,
            };
            (start, executed)
        }
    })
}
