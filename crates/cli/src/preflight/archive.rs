//! The binlog archive's part of the reader preflight (when the config has `[archive]`): the
//! archive's newest file against the source's oldest, files lost to purges, files waiting to
//! be archived and how long until the oldest of them may be purged.

use sameday_reader::{archive_status, describe_ranges, ArchiveStatus, ReaderConfig};

use super::Problem;

/// Seconds in an hour, for messages.
const HOUR: f64 = 3600.0;

/// The archive's problems and a one-line summary; nothing when the config has no archive.
pub(crate) async fn archive(cfg: &ReaderConfig) -> (Vec<Problem>, Option<String>) {
    let Some(archive) = &cfg.archive else { return (Vec::new(), None) };
    match archive_status(cfg).await {
        Ok(status) => (problems(&status, &cfg.source.address()), Some(summary(&status))),
        Err(e) => (
            vec![Problem::error(format!(
                "cannot compare the binlog archive {} with the source: {e}; the archive needs s3:ListBucket and \
                 s3:GetObject/PutObject on it, and a replication user (REPLICATION SLAVE, REPLICATION CLIENT)",
                archive.location
            ))],
            None,
        ),
    }
}

fn problems(s: &ArchiveStatus, source: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    if !s.missing.is_empty() {
        out.push(Problem::error(format!(
            "binlog files {} were purged from {source} before the archive {} copied them: their changes cannot be \
             replayed from the archive. Run `sameday reconcile --config worker.toml --fix` to repair the schedule, \
             and keep `sameday archive` running (or raise the binlog retention) so it does not happen again",
            describe_ranges(&s.missing),
            s.location
        )));
    }
    for c in &s.conflicts {
        out.push(Problem::error(format!(
            "the archive {} disagrees with {source} about {c}: the prefix holds another server's binlogs (or the \
             binlogs were reset); point archive.location at a new prefix",
            s.location
        )));
    }
    if let (Some(headroom), false) = (s.headroom_secs, s.pending.is_empty()) {
        if headroom < s.retention_secs as f64 / 2.0 {
            out.push(Problem::warning(format!(
                "the archive {} is behind: {} rotated file(s) not archived ({}), the oldest may be purged from \
                 {source} in {:.1} h; is `sameday archive` running? (its log says why not)",
                s.location,
                s.pending.len(),
                describe_ranges(&s.pending),
                headroom / HOUR
            )));
        }
    }
    out
}

fn summary(s: &ArchiveStatus) -> String {
    let headroom = match s.headroom_secs {
        Some(h) => format!("; retention headroom {:.1} h of {:.1} h", h / HOUR, s.retention_secs as f64 / HOUR),
        None if s.retention_secs == 0 => "; the source never purges binlogs".into(),
        None => String::new(),
    };
    format!(
        "binlog archive {}: newest archived {}, the source's oldest {}, {} rotated file(s) pending{headroom}",
        s.location,
        s.newest_archived.as_deref().unwrap_or("(none)"),
        s.source_oldest.as_deref().unwrap_or("(none)"),
        s.pending.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ArchiveStatus {
        ArchiveStatus {
            location: "s3://binlogs-bucket/db1/".into(),
            newest_archived: Some("mysql-bin.000041".into()),
            source_oldest: Some("mysql-bin.000040".into()),
            pending: vec![],
            missing: vec![],
            conflicts: vec![],
            retention_secs: 72 * 3600,
            headroom_secs: Some(72.0 * 3600.0),
        }
    }

    #[test]
    fn a_caught_up_archive_is_one_info_line() {
        assert!(problems(&status(), "db:3306").is_empty());
        assert_eq!(
            summary(&status()),
            "binlog archive s3://binlogs-bucket/db1/: newest archived mysql-bin.000041, the source's oldest \
             mysql-bin.000040, 0 rotated file(s) pending; retention headroom 72.0 h of 72.0 h"
        );
    }

    #[test]
    fn lost_files_are_an_error_and_a_late_archive_a_warning() {
        let mut s = status();
        s.missing = vec!["mysql-bin.000038".into(), "mysql-bin.000039".into()];
        s.pending = vec!["mysql-bin.000042".into()];
        s.headroom_secs = Some(10.0 * 3600.0);
        let p = problems(&s, "db:3306");
        assert!(p[0].blocking && p[0].message.contains("mysql-bin.000038 .. mysql-bin.000039 (2 files) were purged"));
        assert!(!p[1].blocking && p[1].message.contains("purged from db:3306 in 10.0 h"), "{}", p[1].message);
    }
}
