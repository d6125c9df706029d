//! What the archive holds against what the server has, as pure decisions: which rotated
//! files to copy next, which archived files conflict with the server's, and which files are
//! lost (purged by the server before they were archived).
//!
//! The S3 listing is the archive's only state: a file is archived when its object exists
//! with the server's size for that file (objects are written whole, so a crash never leaves
//! a partial one). Only *completed* files are copied: every file but the last of
//! `SHOW BINARY LOGS`, which the server may still be writing.

use std::collections::{BTreeMap, BTreeSet};

use sameday_core::s3::{ObjectStore, S3Error};

/// `mysql-bin.000042`: a binlog base name and its sequence number (at least 6 digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BinlogName<'a> {
    pub base: &'a str,
    pub number: u64,
    pub width: usize,
}

impl<'a> BinlogName<'a> {
    pub(crate) fn parse(name: &'a str) -> Option<Self> {
        let (base, digits) = name.rsplit_once('.')?;
        if base.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.contains('/') {
            return None;
        }
        Some(Self { base, number: digits.parse().ok()?, width: digits.len() })
    }

    /// The name of file `number` of the same series.
    pub(crate) fn with_number(&self, number: u64) -> String {
        format!("{}.{number:0width$}", self.base, width = self.width)
    }
}

/// Archived files (name -> size) under the archive's prefix; keys that are not binlog file
/// names directly under the prefix are ignored.
pub(crate) async fn list_archive(store: &ObjectStore) -> Result<BTreeMap<String, u64>, S3Error> {
    let prefix = &store.location().prefix;
    Ok(store
        .list("")
        .await?
        .into_iter()
        .filter_map(|o| {
            let name = o.key.strip_prefix(prefix.as_str())?;
            BinlogName::parse(name).map(|_| (name.to_owned(), o.size))
        })
        .collect())
}

/// Whether the archive holds every one of `files` (name, size) with its size.
pub(crate) async fn holds_all(store: &ObjectStore, files: &[(String, u64)]) -> Result<bool, S3Error> {
    for (name, size) in files {
        let key = store.location().key(name);
        if !store.list(name).await?.iter().any(|o| o.key == key && o.size == *size) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An archived object whose size differs from the server's file of the same name: a
/// different server's binlog (or binlogs reset and renumbered) under the same prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub name: String,
    pub archived: u64,
    pub server: u64,
}

/// What one look at the server and the archive decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Completed files not archived yet, oldest first, with their sizes.
    pub copy: Vec<(String, u64)>,
    pub conflicts: Vec<Conflict>,
    /// Files of the series that neither the archive nor the server has, between the
    /// archive's oldest file and the server's newest completed one: lost for good.
    pub missing: Vec<String>,
    /// The newest archived file of the server's series.
    pub newest_archived: Option<String>,
}

/// Compares `SHOW BINARY LOGS` (oldest first) with the archive's contents.
pub(crate) fn plan(server: &[(String, u64)], archived: &BTreeMap<String, u64>) -> Plan {
    let mut plan = Plan::default();
    let Some((active, _)) = server.last() else { return plan };
    let Some(series) = BinlogName::parse(active) else { return plan };
    let completed = &server[..server.len() - 1];
    for (name, size) in completed {
        match archived.get(name) {
            Some(a) if a == size => {}
            Some(a) => plan.conflicts.push(Conflict { name: name.clone(), archived: *a, server: *size }),
            None => plan.copy.push((name.clone(), *size)),
        }
    }
    let numbers = |names: &mut dyn Iterator<Item = &String>| -> BTreeSet<u64> {
        names.filter_map(|n| BinlogName::parse(n)).filter(|n| n.base == series.base).map(|n| n.number).collect()
    };
    let in_archive = numbers(&mut archived.keys());
    let on_server = numbers(&mut server.iter().map(|(n, _)| n));
    plan.newest_archived = in_archive.last().map(|n| series.with_number(*n));
    if let (Some(&oldest), Some(&newest_completed)) = (in_archive.first(), on_server.last()) {
        let newest_completed = newest_completed.saturating_sub(1).max(*in_archive.last().unwrap_or(&0));
        plan.missing = (oldest..=newest_completed)
            .filter(|n| !in_archive.contains(n) && !on_server.contains(n))
            .map(|n| series.with_number(n))
            .collect();
    }
    plan
}

/// The newest archived file of the series `like` belongs to (by number, not by text).
pub(crate) fn newest_of(archived: &BTreeMap<String, u64>, like: &str) -> Option<String> {
    let series = BinlogName::parse(like)?;
    archived
        .keys()
        .filter_map(|k| BinlogName::parse(k).filter(|n| n.base == series.base).map(|n| (n.number, k)))
        .max()
        .map(|(_, k)| k.clone())
}

/// The archive against the source, as `sameday check` reports it.
#[derive(Debug, Clone)]
pub struct ArchiveStatus {
    pub location: String,
    pub newest_archived: Option<String>,
    pub source_oldest: Option<String>,
    /// Rotated files on the source not archived yet, oldest first.
    pub pending: Vec<String>,
    /// Files lost: purged by the source before they were archived.
    pub missing: Vec<String>,
    /// `name: archived N bytes, source M bytes`.
    pub conflicts: Vec<String>,
    /// The source's binlog retention (0: never purged).
    pub retention_secs: u64,
    /// Seconds until the oldest pending file may be purged (the retention when none is
    /// pending); `None` when binlogs never expire or the time cannot be read.
    pub headroom_secs: Option<f64>,
}

impl ArchiveStatus {
    pub(crate) fn new(location: String, plan: Plan, source_oldest: Option<String>, retention_secs: u64) -> Self {
        Self {
            location,
            newest_archived: plan.newest_archived,
            source_oldest,
            pending: plan.copy.into_iter().map(|(n, _)| n).collect(),
            missing: plan.missing,
            conflicts: plan
                .conflicts
                .into_iter()
                .map(|c| format!("{}: archived {} bytes, source {} bytes", c.name, c.archived, c.server))
                .collect(),
            retention_secs,
            headroom_secs: None,
        }
    }
}

/// `mysql-bin.000003 .. mysql-bin.000005 (3 files)`, `mysql-bin.000007`, joined by `, `.
pub fn describe_ranges(names: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Vec<&String> = Vec::new();
    let flush = |run: &mut Vec<&String>, parts: &mut Vec<String>| {
        match run.as_slice() {
            [] => {}
            [one] => parts.push((*one).clone()),
            [first, .., last] => parts.push(format!("{first} .. {last} ({} files)", run.len())),
        }
        run.clear();
    };
    for name in names {
        let next = BinlogName::parse(name);
        let follows = match (run.last().and_then(|l| BinlogName::parse(l)), next) {
            (Some(prev), Some(n)) => prev.base == n.base && prev.number + 1 == n.number,
            _ => false,
        };
        if !follows {
            flush(&mut run, &mut parts);
        }
        run.push(name);
    }
    flush(&mut run, &mut parts);
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(items: &[(&str, u64)]) -> Vec<(String, u64)> {
        items.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    fn archive(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
        logs(items).into_iter().collect()
    }

    #[test]
    fn binlog_names_parse_and_keep_their_width() {
        let n = BinlogName::parse("mysql-bin.000042").unwrap();
        assert_eq!((n.base, n.number, n.width), ("mysql-bin", 42, 6));
        assert_eq!(n.with_number(1_000_000), "mysql-bin.1000000");
        assert_eq!(BinlogName::parse("my.host-bin.000007").unwrap().base, "my.host-bin");
        for bad in ["mysql-bin", "mysql-bin.index", ".000001", "sub/mysql-bin.000001", "mysql-bin."] {
            assert_eq!(BinlogName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_completed_files_missing_from_the_archive_are_copied_oldest_first() {
        let server = logs(&[("mysql-bin.000003", 500), ("mysql-bin.000004", 600), ("mysql-bin.000005", 90)]);
        let plan = plan(&server, &archive(&[("mysql-bin.000003", 500)]));
        assert_eq!(plan.copy, logs(&[("mysql-bin.000004", 600)]));
        assert!(plan.missing.is_empty() && plan.conflicts.is_empty());
        assert_eq!(plan.newest_archived.as_deref(), Some("mysql-bin.000003"));
        // An empty archive starts with the oldest file the server has.
        assert_eq!(super::plan(&server, &BTreeMap::new()).copy.len(), 2);
    }

    #[test]
    fn files_purged_before_they_were_archived_are_missing() {
        let server = logs(&[("mysql-bin.000007", 500), ("mysql-bin.000008", 90)]);
        let plan = plan(&server, &archive(&[("mysql-bin.000002", 1), ("mysql-bin.000003", 1)]));
        assert_eq!(plan.missing, ["mysql-bin.000004", "mysql-bin.000005", "mysql-bin.000006"]);
        assert_eq!(describe_ranges(&plan.missing), "mysql-bin.000004 .. mysql-bin.000006 (3 files)");
        assert_eq!(plan.copy, logs(&[("mysql-bin.000007", 500)]));
        // A hole inside the archive (an object deleted) that the server no longer has.
        let plan = super::plan(&server, &archive(&[("mysql-bin.000005", 1), ("mysql-bin.000007", 500)]));
        assert_eq!(plan.missing, ["mysql-bin.000006"]);
        assert_eq!(
            describe_ranges(&["a.000001".into(), "a.000003".into(), "a.000004".into()]),
            "a.000001, a.000003 .. a.000004 (2 files)"
        );
    }

    #[test]
    fn an_archived_file_of_another_size_is_a_conflict_never_overwritten() {
        let server = logs(&[("mysql-bin.000001", 500), ("mysql-bin.000002", 90)]);
        let plan = plan(&server, &archive(&[("mysql-bin.000001", 499)]));
        assert!(plan.copy.is_empty());
        assert_eq!(plan.conflicts, [Conflict { name: "mysql-bin.000001".into(), archived: 499, server: 500 }]);
    }

    #[test]
    fn other_series_and_non_binlog_keys_do_not_count() {
        let server = logs(&[("mysql-bin.000010", 500), ("mysql-bin.000011", 90)]);
        let plan = plan(&server, &archive(&[("old-host-bin.000001", 5)]));
        assert!(plan.missing.is_empty());
        assert_eq!(plan.newest_archived, None);
    }

    #[test]
    fn the_newest_file_is_found_by_number_past_six_digits() {
        let a = archive(&[("mysql-bin.999999", 1), ("mysql-bin.1000000", 1), ("other.2000000", 1)]);
        assert_eq!(newest_of(&a, "mysql-bin.1000001").as_deref(), Some("mysql-bin.1000000"));
    }
}
