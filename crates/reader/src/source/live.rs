//! The live replica connection: registers with the source as a replica and streams its
//! binlog from a file position or (MariaDB) a GTID position.
//!
//! Connection details that matter for correctness (the connection itself is a
//! [`sameday_mysql::Session`]):
//! - The server sends a heartbeat every `heartbeat_secs` when idle; no packet for three
//!   periods means the connection is dead (a silent network drop) and it is reopened.
//! - The first (fake) ROTATE arrives before the FORMAT_DESCRIPTION event, so when the
//!   server uses binlog checksums its file name carries 4 checksum bytes: they are cut off.
//! - MariaDB needs `@mariadb_slave_capability=4` to send its GTID events as such.

use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, RotateEvent};
use mysql_async::{BinlogStream, BinlogStreamRequest};
use mysql_common::binlog::consts::EventType;
use sameday_core::{BinlogPosition, GtidSet, StartPosition};

use sameday_mysql::{MysqlError, ServerInfo, Session, SourceConfig};

use crate::error::ReaderError;

/// MySQL/MariaDB error: the requested binlog position is not on the server.
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// A start position resolved against the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    File(BinlogPosition),
    /// MariaDB GTID position (`@slave_connect_state`).
    Gtid(GtidSet),
    /// MySQL executed GTID set (COM_BINLOG_DUMP_GTID): the server sends what is not in it.
    MysqlGtid(GtidSet),
}

/// The `Sid`s of a MySQL GTID set, as COM_BINLOG_DUMP_GTID wants them.
pub(crate) fn mysql_sids(set: &GtidSet) -> Result<Vec<mysql_common::packets::Sid<'static>>, String> {
    let text = set.to_string();
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| part.parse::<mysql_common::packets::Sid<'static>>().map_err(|e| format!("GTID set {text}: {e}")))
        .collect()
}

/// Resolves `start` against the server's binary logs (earliest, latest, a file position that
/// must still be there, or a GTID set of the server's flavour).
pub(crate) async fn resolve_start(
    session: &mut Session,
    info: &ServerInfo,
    start: &StartPosition,
) -> Result<Start, ReaderError> {
    let logs = session.binary_logs().await?;
    let cfg = session.config();
    let no_logs = || MysqlError::new(cfg.address(), "the server lists no binary logs; is log_bin on?", false);
    match start {
        StartPosition::Earliest => {
            let (file, _) = logs.first().cloned().ok_or_else(no_logs)?;
            Ok(Start::File(BinlogPosition::new(file, 4)))
        }
        StartPosition::Latest => {
            let (file, size) = logs.last().cloned().ok_or_else(no_logs)?;
            Ok(Start::File(BinlogPosition::new(file, size.max(4))))
        }
        StartPosition::File(p) => match logs.iter().find(|(f, _)| *f == p.file) {
            None => Err(ReaderError::PositionPurged {
                source_addr: cfg.address(),
                position: p.to_string(),
                server_message: format!(
                    "the server's binary logs are {}",
                    match (logs.first(), logs.last()) {
                        (Some(a), Some(b)) => format!("{} .. {}", a.0, b.0),
                        _ => "none".into(),
                    }
                ),
            }),
            Some((_, size)) if p.pos > *size => Err(ReaderError::PositionPurged {
                source_addr: cfg.address(),
                position: p.to_string(),
                server_message: format!("{} is only {size} bytes long", p.file),
            }),
            Some(_) => Ok(Start::File(p.clone())),
        },
        StartPosition::Gtid(set @ GtidSet::Mariadb(_)) if info.mariadb => Ok(Start::Gtid(set.clone())),
        StartPosition::Gtid(set @ GtidSet::Mysql(_)) if !info.mariadb => {
            mysql_sids(set).map_err(ReaderError::Config)?;
            Ok(Start::MysqlGtid(set.clone()))
        }
        StartPosition::Gtid(set) => Err(ReaderError::Config(format!(
            "start position {set} is a {} GTID set but the source runs {}; give a FILE:POS instead",
            if matches!(set, GtidSet::Mariadb(_)) { "MariaDB" } else { "MySQL" },
            info.version
        ))),
    }
}

/// One item of the live stream.
pub(crate) enum LiveEvent {
    Event(Event),
    /// The stream is now in this binlog file (from the connect-time fake ROTATE).
    File(String),
}

pub(crate) struct LiveStream {
    stream: BinlogStream,
    strip_checksum: bool,
    fde_seen: bool,
    idle_limit: Duration,
    addr: String,
    position: String,
}

impl LiveStream {
    /// Registers as a replica and requests the binlog from `start`. With `non_blocking`
    /// the stream ends at the server's current end of binlog (replay, tail --to).
    pub(crate) async fn open(
        cfg: &SourceConfig,
        info: &ServerInfo,
        start: &Start,
        non_blocking: bool,
    ) -> Result<Self, ReaderError> {
        let mut session = Session::connect(cfg).await?;
        let heartbeat_ns = cfg.heartbeat_secs * 1_000_000_000;
        let mut setup = vec![format!("SET @master_heartbeat_period = {heartbeat_ns}")];
        if info.mariadb {
            setup.push("SET @mariadb_slave_capability = 4".into());
        }
        if let Start::Gtid(set) = start {
            setup.push(format!("SET @slave_connect_state = '{set}'"));
            setup.push("SET @slave_gtid_strict_mode = 1".into());
            setup.push("SET @slave_gtid_ignore_duplicates = 0".into());
        }
        session.run(&setup.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        let (file, pos) = match start {
            Start::File(p) => (p.file.clone(), p.pos),
            Start::Gtid(_) | Start::MysqlGtid(_) => (String::new(), 4),
        };
        let mut req = BinlogStreamRequest::new(cfg.server_id).with_filename(file.as_bytes()).with_pos(pos);
        if let Start::MysqlGtid(set) = start {
            req = req.with_gtid().with_gtid_set(mysql_sids(set).map_err(ReaderError::Config)?);
        }
        if non_blocking {
            req = req.with_non_blocking();
        }
        let stream = session.into_conn().get_binlog_stream(req).await.map_err(|e| match e {
            mysql_async::Error::Server(se) if se.code == ER_MASTER_FATAL_ERROR_READING_BINLOG => {
                ReaderError::PositionPurged {
                    source_addr: cfg.address(),
                    position: describe_start(start),
                    server_message: se.message,
                }
            }
            other => MysqlError::driver(&cfg.address(), &cfg.user, "request binlog", other).into(),
        })?;
        Ok(Self {
            stream,
            strip_checksum: info.checksum,
            fde_seen: false,
            idle_limit: Duration::from_secs(cfg.heartbeat_secs * 3 + 2),
            addr: cfg.address(),
            position: describe_start(start),
        })
    }

    /// The next event; `None` when a non-blocking stream reached the end.
    pub(crate) async fn next(&mut self) -> Result<Option<LiveEvent>, ReaderError> {
        let item = match tokio::time::timeout(self.idle_limit, self.stream.next()).await {
            Ok(item) => item,
            Err(_) => {
                return Err(ReaderError::Source(MysqlError::new(
                    self.addr.clone(),
                    format!("no event or heartbeat for {} s; reconnecting", self.idle_limit.as_secs()),
                    true,
                )))
            }
        };
        let event = match item {
            None => return Ok(None),
            Some(Ok(ev)) => ev,
            Some(Err(mysql_async::Error::Server(se))) if se.code == ER_MASTER_FATAL_ERROR_READING_BINLOG => {
                return Err(ReaderError::PositionPurged {
                    source_addr: self.addr.clone(),
                    position: self.position.clone(),
                    server_message: se.message,
                })
            }
            Some(Err(e)) => {
                let transient = !matches!(e, mysql_async::Error::Server(_));
                return Err(ReaderError::Source(MysqlError::new(
                    self.addr.clone(),
                    format!("binlog stream: {e}"),
                    transient,
                )));
            }
        };
        let raw = event.header().event_type_raw();
        if raw == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            self.fde_seen = true;
        }
        if raw == EventType::ROTATE_EVENT as u8 && !self.fde_seen {
            let rotate = event.read_event::<RotateEvent<'_>>().map_err(|e| {
                ReaderError::Source(MysqlError::new(self.addr.clone(), format!("unreadable ROTATE event: {e}"), true))
            })?;
            let mut name = rotate.name_raw().to_vec();
            if self.strip_checksum && name.len() > 4 {
                name.truncate(name.len() - 4);
            }
            return Ok(Some(LiveEvent::File(String::from_utf8_lossy(&name).into_owned())));
        }
        Ok(Some(LiveEvent::Event(event)))
    }
}

fn describe_start(start: &Start) -> String {
    match start {
        Start::File(p) => p.to_string(),
        Start::Gtid(g) | Start::MysqlGtid(g) => g.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gtid_sets_become_sids_with_tags_and_intervals() {
        let set: GtidSet =
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:1-3".parse().unwrap();
        let sids = mysql_sids(&set).unwrap();
        assert_eq!(sids.len(), 2);
        assert_eq!(sids[0].intervals().len(), 2);
    }
}
