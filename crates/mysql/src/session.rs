//! A connection to the source with the calls the daemons make: connect (optionally with
//! retries), server facts and variables, binary logs, MariaDB's JSON columns and a table's
//! columns. Every error names the server and is classified transient or not
//! ([`MysqlError`]).
//!
//! Connection details that matter for correctness:
//! - `max_allowed_packet` is 1 GiB, or rows over 16 MiB fail with PacketTooLarge.
//! - The prepared-statement cache is off: the binlog dump and one-off queries need none,
//!   and the nightly batch prepares its two page statements itself.

use std::collections::HashSet;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use sameday_core::position::{BinlogPosition, GtidSet};
use sameday_core::row_version::RowVersion;

use crate::config::{SourceConfig, TlsMode};
use crate::error::MysqlError;

/// mysql_async caps max_allowed_packet at 1 GiB, the server's maximum too.
const MAX_PACKET: usize = 1 << 30;
/// A connect that gets no answer within this is given up (and is transient).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the daemons need to know about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub mariadb: bool,
    pub server_id: u32,
    /// The server writes CRC32 checksums into its binlog.
    pub checksum: bool,
}

/// A column of a table, from `information_schema.COLUMNS`, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    /// `DATA_TYPE`, lower case (`datetime`, `int`, `varchar`, ...).
    pub data_type: String,
    pub primary: bool,
    /// `COLLATION_NAME` of a text column (`utf8mb4_general_ci`, `utf8mb4_bin`, ...).
    pub collation: Option<String>,
}

/// The driver options for `cfg`: TLS as configured, large packets, keepalive.
pub fn opts(cfg: &SourceConfig) -> Opts {
    install_tls_provider();
    let mut b = OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(Some(cfg.password.expose().to_owned()))
        .prefer_socket(false)
        .max_allowed_packet(Some(MAX_PACKET))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .stmt_cache_size(0);
    match cfg.tls {
        TlsMode::Disabled => {}
        TlsMode::Verify => {
            let mut ssl = SslOpts::default();
            if let Some(ca) = &cfg.tls_ca_file {
                ssl = ssl.with_root_certs(vec![ca.clone().into()]);
            }
            b = b.ssl_opts(Some(ssl));
        }
        TlsMode::InsecureSkipVerify => {
            b = b.ssl_opts(Some(
                SslOpts::default().with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true),
            ));
        }
    }
    b.into()
}

/// The AWS SDK and mysql_async bring two rustls crypto providers; pick one for the process,
/// or rustls cannot choose and TLS connections fail.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One connection to the source, and the config it was opened with (for messages).
pub struct Session {
    conn: Conn,
    cfg: SourceConfig,
}

impl Session {
    /// Connects once; a refused or silent server is a transient error.
    pub async fn connect(cfg: &SourceConfig) -> Result<Self, MysqlError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts(cfg))).await {
            Ok(Ok(conn)) => Ok(Self { conn, cfg: cfg.clone() }),
            Ok(Err(e)) => Err(MysqlError::driver(&cfg.address(), &cfg.user, "connect", e)),
            Err(_) => Err(MysqlError::new(
                cfg.address(),
                format!("connect: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                true,
            )),
        }
    }

    /// Connects, retrying transient failures up to `attempts` times with a growing pause
    /// (0.2 s, 0.4 s, ...): for the short look-ups at start-up, so a server restart or a
    /// fail-over in progress does not stop a daemon.
    pub async fn connect_with_retry(cfg: &SourceConfig, attempts: u32) -> Result<Self, MysqlError> {
        let mut attempt = 1;
        loop {
            match Self::connect(cfg).await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::warn!(error = %e, attempt, "cannot connect to the source; retrying");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// The driver connection, for queries of one daemon's own (page SELECTs, the binlog dump).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Gives up the session for its driver connection (the binlog dump consumes it).
    pub fn into_conn(self) -> Conn {
        self.conn
    }

    /// A driver error of the call `what` on this session.
    pub fn error(&self, what: &str, e: mysql_async::Error) -> MysqlError {
        MysqlError::driver(&self.cfg.address(), &self.cfg.user, what, e)
    }

    /// Runs statements that return nothing (session set-up).
    pub async fn run(&mut self, statements: &[&str]) -> Result<(), MysqlError> {
        for sql in statements {
            if let Err(e) = self.conn.query_drop(*sql).await {
                return Err(self.error(sql, e));
            }
        }
        Ok(())
    }

    /// Closes the connection politely (errors ignored: the session is done either way).
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }

    pub async fn server_info(&mut self) -> Result<ServerInfo, MysqlError> {
        let row: Option<(String, u32, String)> =
            match self.conn.query_first("SELECT @@version, @@server_id, @@global.binlog_checksum").await {
                Ok(row) => row,
                Err(e) => return Err(self.error("read server variables", e)),
            };
        let (version, server_id, checksum) = row.unwrap_or_default();
        Ok(ServerInfo { mariadb: version.contains("MariaDB"), version, server_id, checksum: checksum != "NONE" })
    }

    /// What a query run right after this call sees at least: the server's executed GTIDs
    /// (MariaDB `gtid_current_pos`, MySQL `gtid_executed`), or without GTIDs its binlog end.
    /// Rows read afterwards carry this as their [`RowVersion`], so a later change of one of
    /// them (not in the set, or after the position) compares as newer.
    pub async fn read_version(&mut self, mariadb: bool) -> Result<RowVersion, MysqlError> {
        let sql = if mariadb {
            "SELECT @@server_id, @@global.gtid_current_pos"
        } else {
            "SELECT @@server_id, @@global.gtid_executed"
        };
        let (server_id, gtids): (u32, Option<String>) = match self.conn.query_first(sql).await {
            Ok(row) => row.unwrap_or_default(),
            Err(e) => return Err(self.error("read the executed GTIDs", e)),
        };
        let gtid = gtids.filter(|g| !g.trim().is_empty()).and_then(|g| g.replace('\n', "").parse::<GtidSet>().ok());
        let binlog = match gtid {
            Some(_) => None,
            // Without the privilege (or with the binlog off) there is no position: the rows
            // then compare as "cannot tell", which applies later changes as before versions.
            None => match self.conn.query_first::<mysql_async::Row, _>("SHOW MASTER STATUS").await {
                Ok(Some(mut row)) => match (row.take::<String, _>(0), row.take::<u64, _>(1)) {
                    (Some(file), Some(pos)) => Some(BinlogPosition::new(file, pos)),
                    _ => None,
                },
                _ => None,
            },
        };
        Ok(RowVersion::Read { server_id, gtid, binlog })
    }

    /// Whether the server replicates from another one (`SHOW SLAVE STATUS` has a row); `None`
    /// when the user may not ask (it needs REPLICATION CLIENT / SLAVE MONITOR).
    pub async fn is_replica(&mut self) -> Option<bool> {
        self.conn.query::<mysql_async::Row, _>("SHOW SLAVE STATUS").await.ok().map(|rows| !rows.is_empty())
    }

    /// A global server variable; `None` when the server does not have it.
    pub async fn variable(&mut self, name: &str) -> Result<Option<String>, MysqlError> {
        // `name` is one of our constants, never user input.
        let rows: Vec<(String, String)> = match self.conn.query(format!("SHOW GLOBAL VARIABLES LIKE '{name}'")).await {
            Ok(rows) => rows,
            Err(e) => return Err(self.error("SHOW GLOBAL VARIABLES", e)),
        };
        Ok(rows.into_iter().next().map(|(_, v)| v))
    }

    /// The binlog files the server still has, oldest first, with their sizes.
    pub async fn binary_logs(&mut self) -> Result<Vec<(String, u64)>, MysqlError> {
        let rows: Vec<mysql_async::Row> = match self.conn.query("SHOW BINARY LOGS").await {
            Ok(rows) => rows,
            Err(e) => return Err(self.error("SHOW BINARY LOGS", e)),
        };
        Ok(rows
            .into_iter()
            .filter_map(|mut r| Some((r.take::<String, _>(0)?, r.take::<u64, _>(1).unwrap_or(0))))
            .collect())
    }

    /// How long the server keeps binlogs: `binlog_expire_logs_seconds`, or `expire_logs_days`
    /// on servers without it; 0 means they never expire.
    pub async fn binlog_expire_seconds(&mut self) -> Result<u64, MysqlError> {
        Ok(match self.variable("binlog_expire_logs_seconds").await? {
            Some(v) => v.parse::<u64>().unwrap_or(0),
            None => self
                .variable("expire_logs_days")
                .await?
                .and_then(|d| d.parse::<f64>().ok())
                .map(|d| (d * 86400.0) as u64)
                .unwrap_or(0),
        })
    }

    /// MariaDB JSON columns (`db.table.column`): MariaDB stores JSON as LONGTEXT with a
    /// `json_valid()` check constraint, which is the only place the type survives.
    pub async fn mariadb_json_columns(&mut self) -> Result<HashSet<String>, MysqlError> {
        let rows: Vec<(String, String, String)> = match self
            .conn
            .query(
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CHECK_CLAUSE LIKE 'json_valid(%'",
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => return Err(self.error("information_schema.CHECK_CONSTRAINTS", e)),
        };
        Ok(rows
            .into_iter()
            .filter_map(|(db, table, clause)| {
                let col = clause.strip_prefix("json_valid(")?.strip_suffix(')')?.trim().trim_matches('`');
                (!col.is_empty() && !col.contains(['(', ','])).then(|| format!("{db}.{table}.{col}"))
            })
            .collect())
    }

    /// The columns of `db.table` in table order; empty when the table does not exist (or the
    /// user cannot see it).
    pub async fn table_columns(&mut self, db: &str, table: &str) -> Result<Vec<TableColumn>, MysqlError> {
        let rows: Vec<(String, String, String, Option<String>)> = match self
            .conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY, COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => return Err(self.error(&format!("read the columns of {db}.{table}"), e)),
        };
        Ok(rows
            .into_iter()
            .map(|(name, data_type, key, collation)| TableColumn {
                name,
                data_type: data_type.to_ascii_lowercase(),
                primary: key == "PRI",
                collation,
            })
            .collect())
    }

    /// Whether `db.table` exists and the user can see it.
    pub async fn table_exists(&mut self, db: &str, table: &str) -> Result<bool, MysqlError> {
        let found: Option<String> = match self
            .conn
            .exec_first(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
        {
            Ok(found) => found,
            Err(e) => return Err(self.error("information_schema.TABLES", e)),
        };
        Ok(found.is_some())
    }
}
