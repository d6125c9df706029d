//! Preflight of the source: one line per problem, each with the fix. `sameday check` prints
//! them; the reader runs the same checks at start and refuses to stream on a blocking one.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use sameday_core::checkpoint::Checkpoint;

use crate::config::SourceConfig;
use crate::error::ReaderError;
use crate::filter::TableFilter;
use crate::source::live::{binary_logs, source_error, ServerInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Streaming would lose or mis-read changes; the reader refuses to start.
    pub blocking: bool,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", if self.blocking { "ERROR" } else { "WARNING" }, self.message)
    }
}

async fn variable(conn: &mut Conn, cfg: &SourceConfig, name: &str) -> Result<Option<String>, ReaderError> {
    let rows: Vec<(String, String)> = conn
        .query(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
        .await
        .map_err(|e| source_error(cfg, "SHOW GLOBAL VARIABLES", e))?;
    Ok(rows.into_iter().next().map(|(_, v)| v))
}

/// Runs every check against a connected source.
pub async fn preflight(
    conn: &mut Conn,
    cfg: &SourceConfig,
    info: &ServerInfo,
    filter: &TableFilter,
) -> Result<Vec<Problem>, ReaderError> {
    let addr = cfg.address();
    let mut problems = Vec::new();
    let expect = |problems: &mut Vec<Problem>, name: &str, actual: Option<String>, want: &str, fix: &str| {
        let ok = actual.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(want));
        if !ok {
            problems.push(Problem {
                blocking: true,
                message: format!(
                    "{name} is {} on {addr}; sameday needs {want} ({fix})",
                    actual.as_deref().unwrap_or("not available")
                ),
            });
        }
    };
    let log_bin = variable(conn, cfg, "log_bin").await?;
    expect(&mut problems, "log_bin", log_bin, "ON", "start the server with --log-bin");
    let fmt = variable(conn, cfg, "binlog_format").await?;
    expect(
        &mut problems,
        "binlog_format",
        fmt,
        "ROW",
        "SET GLOBAL binlog_format='ROW' and restart writers, or set it in my.cnf",
    );
    let image = variable(conn, cfg, "binlog_row_image").await?;
    expect(&mut problems, "binlog_row_image", image, "FULL", "SET GLOBAL binlog_row_image='FULL'");
    match variable(conn, cfg, "binlog_row_metadata").await? {
        Some(v) if v.eq_ignore_ascii_case("FULL") => {}
        Some(v) => problems.push(Problem {
            blocking: true,
            message: format!(
                "binlog_row_metadata is {v} on {addr}; sameday needs FULL so that column names and ENUM/SET labels travel with every row (SET GLOBAL binlog_row_metadata='FULL')"
            ),
        }),
        None => problems.push(Problem {
            blocking: false,
            message: format!(
                "binlog_row_metadata does not exist on {addr} ({}): column names come out as @1, @2, ...; upgrade to MySQL 8.0.1+ or MariaDB 10.5+",
                info.version
            ),
        }),
    }
    if let Some(v) = variable(conn, cfg, "binlog_transaction_compression").await? {
        if v.eq_ignore_ascii_case("ON") {
            problems.push(Problem {
                blocking: false,
                message: format!("binlog_transaction_compression is ON on {addr}: supported, but costs CPU on both sides; SET GLOBAL binlog_transaction_compression=OFF if not needed"),
            });
        }
    }
    if let Some(v) = variable(conn, cfg, "log_bin_compress").await? {
        if v.eq_ignore_ascii_case("ON") {
            problems.push(Problem {
                blocking: true,
                message: format!("log_bin_compress is ON on {addr}; sameday cannot read MariaDB compressed events (SET GLOBAL log_bin_compress=OFF)"),
            });
        }
    }
    if info.server_id == cfg.server_id {
        problems.push(Problem {
            blocking: true,
            message: format!(
                "source.server_id {} equals the source's own server_id on {addr}; choose a replica id no other server or replica uses",
                cfg.server_id
            ),
        });
    }
    // Another connected replica with our id: the server would drop one of the two
    // connections every time the other connects.
    if let Ok(rows) = conn.query::<mysql_async::Row, _>("SHOW SLAVE HOSTS").await {
        for mut r in rows {
            if r.take::<u32, _>(0) == Some(cfg.server_id) {
                let host: String = r.take(1).unwrap_or_default();
                problems.push(Problem {
                    blocking: false,
                    message: format!(
                        "a replica connected to {addr} already uses server_id {} (host {host:?}); if that is not this \
                         reader's previous task, give source.server_id a unique value",
                        cfg.server_id
                    ),
                });
            }
        }
    }
    // Grants.
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(|e| source_error(cfg, "SHOW GRANTS", e))?;
    let all = grants.join("\n").to_ascii_uppercase();
    let has = |p: &str| all.contains("ALL PRIVILEGES ON *.*") || all.contains(p);
    if !(has("REPLICATION SLAVE") || has("REPLICATION REPLICA")) {
        problems.push(Problem {
            blocking: true,
            message: format!(
                "user {:?} lacks REPLICATION SLAVE on {addr} (GRANT REPLICATION SLAVE ON *.* TO ...)",
                cfg.user
            ),
        });
    }
    if !(has("REPLICATION CLIENT") || has("BINLOG MONITOR")) {
        problems.push(Problem {
            blocking: true,
            message: format!(
                "user {:?} lacks REPLICATION CLIENT / BINLOG MONITOR on {addr}, needed for SHOW BINARY LOGS (GRANT REPLICATION CLIENT ON *.* TO ...)",
                cfg.user
            ),
        });
    }
    // Watched tables named literally must exist and be readable.
    for (db, table) in filter.literal_includes() {
        let found: Option<String> = conn
            .exec_first(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
            .map_err(|e| source_error(cfg, "information_schema.TABLES", e))?;
        if found.is_none() {
            problems.push(Problem {
                blocking: true,
                message: format!("filter.include names {db}.{table}, which does not exist on {addr} (or the user cannot see it: GRANT SELECT ON {db}.{table})"),
            });
        }
    }
    // Retention horizon.
    let logs = binary_logs(conn, cfg).await?;
    let expire_secs = binlog_expire_seconds(conn, cfg).await?;
    if expire_secs != 0 && expire_secs < 24 * 3600 {
        problems.push(Problem {
            blocking: false,
            message: format!(
                "binlogs on {addr} expire after {} h; a reader outage longer than that loses changes. Keep at least 24 h (SET GLOBAL binlog_expire_logs_seconds=259200)",
                expire_secs / 3600
            ),
        });
    }
    if logs.is_empty() {
        problems
            .push(Problem { blocking: true, message: format!("{addr} lists no binary logs; start it with --log-bin") });
    }
    Ok(problems)
}

/// How long the source keeps binlogs: `binlog_expire_logs_seconds`, or `expire_logs_days` on
/// servers without it; 0 means they never expire.
pub async fn binlog_expire_seconds(conn: &mut Conn, cfg: &SourceConfig) -> Result<u64, ReaderError> {
    Ok(match variable(conn, cfg, "binlog_expire_logs_seconds").await? {
        Some(v) => v.parse::<u64>().unwrap_or(0),
        None => variable(conn, cfg, "expire_logs_days")
            .await?
            .and_then(|d| d.parse::<f64>().ok())
            .map(|d| (d * 86400.0) as u64)
            .unwrap_or(0),
    })
}

/// The stored checkpoint against the source's binlog retention: is its file still there,
/// and how close is it to being purged?
pub async fn checkpoint_horizon(
    conn: &mut Conn,
    cfg: &SourceConfig,
    checkpoint: &Checkpoint,
    now_ms: u64,
) -> Result<Option<Problem>, ReaderError> {
    let logs = binary_logs(conn, cfg).await?;
    let files: Vec<String> = logs.into_iter().map(|(f, _)| f).collect();
    let expire_secs = binlog_expire_seconds(conn, cfg).await?;
    Ok(horizon_problem(&cfg.address(), &files, expire_secs, checkpoint, now_ms))
}

/// The pure part of [`checkpoint_horizon`]. `files` is `SHOW BINARY LOGS`, oldest first.
fn horizon_problem(
    addr: &str,
    files: &[String],
    expire_secs: u64,
    checkpoint: &Checkpoint,
    now_ms: u64,
) -> Option<Problem> {
    let file = &checkpoint.position.file;
    let recover = "the changes in between are lost to the stream: move the checkpoint with `sameday positions --set \
                   earliest` (replays what is left) or `--set latest`, then re-run the nightly batch \
                   (`sameday nightly`) to schedule what the gap missed";
    if !files.contains(file) {
        let purged = files.first().is_some_and(|first| same_series_and_older(file, first));
        let why = if purged {
            format!(
                "was purged from {addr} (its oldest binlog is {})",
                files.first().map(String::as_str).unwrap_or("?")
            )
        } else {
            format!("is not among {addr}'s binary logs (a checkpoint of another server, or the binlogs were reset)")
        };
        return Some(Problem {
            blocking: true,
            message: format!(
                "the checkpoint's binlog file {file} (checkpoint {}) {why}; {recover}",
                checkpoint.position
            ),
        });
    }
    // The file being written cannot be purged, however old its last commit is.
    if expire_secs == 0 || files.last() == Some(file) {
        return None;
    }
    // The commit time is when that binlog was written; `positions --set` leaves it 0.
    let written_ms = if checkpoint.commit_ts_ms > 0 { checkpoint.commit_ts_ms } else { checkpoint.saved_at_ms };
    let age_secs = now_ms.saturating_sub(written_ms) / 1000;
    (age_secs > expire_secs / 2).then(|| Problem {
        blocking: false,
        message: format!(
            "the checkpoint {} is {} h old and binlogs on {addr} expire after {} h: start the reader (or raise \
             binlog_expire_logs_seconds) before {file} is purged",
            checkpoint.position,
            age_secs / 3600,
            expire_secs / 3600
        ),
    })
}

/// `mysql-bin.000003` is older than `mysql-bin.000007`; names of another series are not.
fn same_series_and_older(file: &str, oldest: &str) -> bool {
    match (file.rsplit_once('.'), oldest.rsplit_once('.')) {
        (Some((base_a, n_a)), Some((base_b, n_b))) if base_a == base_b => {
            matches!((n_a.parse::<u64>(), n_b.parse::<u64>()), (Ok(a), Ok(b)) if a < b)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sameday_core::BinlogPosition;

    const HOUR_MS: u64 = 3_600_000;

    fn cp(file: &str, commit_ts_ms: u64) -> Checkpoint {
        Checkpoint { position: BinlogPosition::new(file, 4), gtid_set: None, commit_ts_ms, saved_at_ms: 1 }
    }

    fn files() -> Vec<String> {
        vec!["bin.000005".into(), "bin.000006".into(), "bin.000007".into()]
    }

    #[test]
    fn a_purged_file_is_blocking_and_says_how_to_recover() {
        let p = horizon_problem("h:1", &files(), 0, &cp("bin.000004", 0), 0).unwrap();
        assert!(p.blocking);
        assert!(p.message.contains("was purged"), "{p}");
        assert!(p.message.contains("sameday positions --set"), "{p}");
        assert!(p.message.contains("nightly"), "{p}");
        let other = horizon_problem("h:1", &files(), 0, &cp("other.000009", 0), 0).unwrap();
        assert!(other.blocking && other.message.contains("not among"), "{other}");
    }

    #[test]
    fn an_old_checkpoint_warns_at_half_the_retention() {
        let now = 1000 * HOUR_MS;
        let day = 24 * 3600;
        // 13 h old with 24 h retention: warning; 11 h: nothing.
        let p = horizon_problem("h:1", &files(), day, &cp("bin.000005", now - 13 * HOUR_MS), now).unwrap();
        assert!(!p.blocking && p.message.contains("13 h old"), "{p}");
        assert_eq!(horizon_problem("h:1", &files(), day, &cp("bin.000005", now - 11 * HOUR_MS), now), None);
        // Never expires, or still the current file: nothing.
        assert_eq!(horizon_problem("h:1", &files(), 0, &cp("bin.000005", 1), now), None);
        assert_eq!(horizon_problem("h:1", &files(), day, &cp("bin.000007", 1), now), None);
    }
}
