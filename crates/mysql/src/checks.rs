//! Server checks: one [`Problem`] per finding, each with the fix. `sameday check` prints
//! them; the reader runs the same checks at start and refuses to stream on a blocking one.

use sameday_core::checkpoint::Checkpoint;

use crate::error::MysqlError;
use crate::session::{ServerInfo, Session};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Streaming would lose or mis-read changes; the daemon refuses to start.
    pub blocking: bool,
    pub message: String,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Self { blocking: true, message: message.into() }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self { blocking: false, message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", if self.blocking { "ERROR" } else { "WARNING" }, self.message)
    }
}

/// What a replica of the source needs to be checked for.
pub struct ReplicaCheck<'a> {
    pub info: &'a ServerInfo,
    /// The replica id the reader registers with.
    pub server_id: u32,
    /// Tables the filter names literally (`db`, `table`): they must exist.
    pub tables: &'a [(String, String)],
}

/// Runs every check a binlog replica needs against a connected source.
pub async fn replica_checks(session: &mut Session, check: &ReplicaCheck<'_>) -> Result<Vec<Problem>, MysqlError> {
    let mut problems = binlog_settings(session, check.info).await?;
    problems.extend(identity(session, check.info, check.server_id).await?);
    problems.extend(grants(session).await?);
    for (db, table) in check.tables {
        if !session.table_exists(db, table).await? {
            problems.push(Problem::error(format!(
                "filter.include names {db}.{table}, which does not exist on {} (or the user cannot see it: GRANT SELECT ON {db}.{table})",
                session.config().address()
            )));
        }
    }
    problems.extend(retention(session).await?);
    Ok(problems)
}

/// `log_bin`, `binlog_format`, `binlog_row_image`, `binlog_row_metadata` and compression.
async fn binlog_settings(session: &mut Session, info: &ServerInfo) -> Result<Vec<Problem>, MysqlError> {
    let addr = session.config().address();
    let mut problems = Vec::new();
    let required = [
        ("log_bin", "ON", "start the server with --log-bin"),
        ("binlog_format", "ROW", "SET GLOBAL binlog_format='ROW' and restart writers, or set it in my.cnf"),
        ("binlog_row_image", "FULL", "SET GLOBAL binlog_row_image='FULL'"),
    ];
    for (name, want, fix) in required {
        let actual = session.variable(name).await?;
        if !actual.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(want)) {
            problems.push(Problem::error(format!(
                "{name} is {} on {addr}; sameday needs {want} ({fix})",
                actual.as_deref().unwrap_or("not available")
            )));
        }
    }
    match session.variable("binlog_row_metadata").await? {
        Some(v) if v.eq_ignore_ascii_case("FULL") => {}
        Some(v) => problems.push(row_metadata_warning(&v, &addr)),
        None => problems.push(Problem::warning(format!(
            "binlog_row_metadata does not exist on {addr} ({}): column names come out as @1, @2, ...; upgrade to MySQL 8.0.1+ or MariaDB 10.5+",
            info.version
        ))),
    }
    if session.variable("binlog_transaction_compression").await?.is_some_and(|v| v.eq_ignore_ascii_case("ON")) {
        problems.push(Problem::warning(format!("binlog_transaction_compression is ON on {addr}: supported, but costs CPU on both sides; SET GLOBAL binlog_transaction_compression=OFF if not needed")));
    }
    if session.variable("log_bin_compress").await?.is_some_and(|v| v.eq_ignore_ascii_case("ON")) {
        problems.push(Problem::error(format!("log_bin_compress is ON on {addr}; sameday cannot read MariaDB compressed events (SET GLOBAL log_bin_compress=OFF)")));
    }
    Ok(problems)
}

/// `binlog_row_metadata` below FULL (MINIMAL, MariaDB's NO_LOG): supported, and what it costs.
fn row_metadata_warning(value: &str, addr: &str) -> Problem {
    Problem::warning(format!(
        "binlog_row_metadata is {value} on {addr}: supported, but the binlog then names no columns, ENUM/SET labels \
         or primary key, so the reader reads them from information_schema (two queries per table each time its \
         table map changes: at start, after a reconnect, after DDL) and checks them against the table map. Rows \
         written before an ALTER TABLE and read after it (the reader was behind) are dead-lettered when the \
         columns' types differ, and carry the new names when the ALTER only renamed or reordered identically \
         defined columns. SET GLOBAL binlog_row_metadata='FULL' (recommended) removes both"
    ))
}

/// The replica id must differ from the source's own and from other connected replicas'.
async fn identity(session: &mut Session, info: &ServerInfo, server_id: u32) -> Result<Vec<Problem>, MysqlError> {
    use mysql_async::prelude::Queryable;
    let addr = session.config().address();
    let mut problems = Vec::new();
    if info.server_id == server_id {
        problems.push(Problem::error(format!(
            "source.server_id {server_id} equals the source's own server_id on {addr}; choose a replica id no other server or replica uses"
        )));
    }
    // Another connected replica with our id: the server would drop one of the two
    // connections every time the other connects.
    if let Ok(rows) = session.conn().query::<mysql_async::Row, _>("SHOW SLAVE HOSTS").await {
        for mut r in rows {
            if r.take::<u32, _>(0) == Some(server_id) {
                let host: String = r.take(1).unwrap_or_default();
                problems.push(Problem::warning(format!(
                    "a replica connected to {addr} already uses server_id {server_id} (host {host:?}); if that is not this \
                     reader's previous task, give source.server_id a unique value"
                )));
            }
        }
    }
    Ok(problems)
}

/// REPLICATION SLAVE (the binlog dump) and REPLICATION CLIENT / BINLOG MONITOR (SHOW BINARY LOGS).
async fn grants(session: &mut Session) -> Result<Vec<Problem>, MysqlError> {
    use mysql_async::prelude::Queryable;
    let (addr, user) = (session.config().address(), session.config().user.clone());
    let grants: Vec<String> = match session.conn().query("SHOW GRANTS").await {
        Ok(g) => g,
        Err(e) => return Err(session.error("SHOW GRANTS", e)),
    };
    let all = grants.join("\n").to_ascii_uppercase();
    let has = |p: &str| all.contains("ALL PRIVILEGES ON *.*") || all.contains(p);
    let mut problems = Vec::new();
    if !(has("REPLICATION SLAVE") || has("REPLICATION REPLICA")) {
        problems.push(Problem::error(format!(
            "user {user:?} lacks REPLICATION SLAVE on {addr} (GRANT REPLICATION SLAVE ON *.* TO ...)"
        )));
    }
    if !(has("REPLICATION CLIENT") || has("BINLOG MONITOR")) {
        problems.push(Problem::error(format!(
            "user {user:?} lacks REPLICATION CLIENT / BINLOG MONITOR on {addr}, needed for SHOW BINARY LOGS (GRANT REPLICATION CLIENT ON *.* TO ...)"
        )));
    }
    Ok(problems)
}

/// The retention horizon, and binary logging actually writing files.
async fn retention(session: &mut Session) -> Result<Vec<Problem>, MysqlError> {
    let addr = session.config().address();
    let logs = session.binary_logs().await?;
    let expire_secs = session.binlog_expire_seconds().await?;
    let mut problems = Vec::new();
    if expire_secs != 0 && expire_secs < 24 * 3600 {
        problems.push(Problem::warning(format!(
            "binlogs on {addr} expire after {} h; a reader outage longer than that loses changes. Keep at least 24 h (SET GLOBAL binlog_expire_logs_seconds=259200)",
            expire_secs / 3600
        )));
    }
    if logs.is_empty() {
        problems.push(Problem::error(format!("{addr} lists no binary logs; start it with --log-bin")));
    }
    Ok(problems)
}

/// The stored checkpoint against the source's binlog retention: is its file still there,
/// and how close is it to being purged?
pub async fn checkpoint_horizon(
    session: &mut Session,
    checkpoint: &Checkpoint,
    now_ms: u64,
) -> Result<Option<Problem>, MysqlError> {
    let files: Vec<String> = session.binary_logs().await?.into_iter().map(|(f, _)| f).collect();
    let expire_secs = session.binlog_expire_seconds().await?;
    Ok(horizon_problem(&session.config().address(), &files, expire_secs, checkpoint, now_ms))
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
    fn row_metadata_below_full_is_a_warning_that_says_what_it_costs() {
        let p = row_metadata_warning("MINIMAL", "h:1");
        assert!(!p.blocking);
        for fragment in ["binlog_row_metadata is MINIMAL on h:1", "information_schema", "ALTER TABLE", "dead-lettered"]
        {
            assert!(p.message.contains(fragment), "{fragment:?} missing: {p}");
        }
        assert!(p.message.contains("SET GLOBAL binlog_row_metadata='FULL' (recommended)"), "{p}");
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
