//! Which point of the source's history a row image is from, and which of two is newer.
//!
//! Every execution sameday starts carries the version of the row image it was made from
//! (`row_version` in its input). A change reaching the worker late (a replay through Kinesis,
//! a DLQ redrive, a redelivery after SQS's five-minute deduplication window) is recognised by
//! comparing its version with the version of the execution it would start or stop: an older
//! change never overrides the effect of a newer one (docs/decisions/0002).
//!
//! Guarantees:
//! - Two versions are compared only when the source's own ordering says which is newer: the
//!   same MariaDB GTID domain (sequence numbers grow across fail-overs in a domain), the same
//!   MySQL GTID source UUID, or the same server's binlog coordinates. Anything else is
//!   [`None`], "cannot tell", and callers then apply the change (the behaviour without
//!   versions): at-least-once is never traded for ordering.
//! - Within one transaction, rows are ordered by their index, so a row changed twice in one
//!   transaction keeps its order.
//! - A [`RowVersion::Read`] is what a query saw: every change included in its GTID set (or
//!   before its binlog position, on the same server) is older than it; later ones are newer.

use serde::{Deserialize, Serialize};

use crate::envelope::SourceInfo;
use crate::position::{file_sequence, BinlogPosition, GtidSet, MariaGtid};

/// The version of one row image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RowVersion {
    /// The image after a change read from the binlog.
    Change {
        server_id: u32,
        file: String,
        pos: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtid: Option<String>,
        /// The row's index in its transaction.
        index: u64,
    },
    /// An image read by a query (the nightly batch, reconcile) from a server whose state
    /// included at least `gtid` (or the binlog up to `binlog` on `server_id`).
    Read {
        server_id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtid: Option<GtidSet>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        binlog: Option<BinlogPosition>,
    },
}

/// A GTID of one transaction, parsed for comparison.
enum Gtid {
    Mariadb(MariaGtid),
    /// Source (`uuid` or `uuid:tag`, lower case) and transaction number.
    Mysql(String, u64),
}

fn parse_gtid(text: &str) -> Option<Gtid> {
    if let Ok(g) = text.parse::<MariaGtid>() {
        return Some(Gtid::Mariadb(g));
    }
    let (source, gno) = text.rsplit_once(':')?;
    Some(Gtid::Mysql(source.to_ascii_lowercase(), gno.parse().ok()?))
}

impl RowVersion {
    /// The version of the after image of the change at `source`, row `index` of its transaction.
    pub fn of_change(source: &SourceInfo, index: u64) -> Self {
        Self::Change {
            server_id: source.server_id,
            file: source.file.clone(),
            pos: source.pos,
            gtid: source.gtid.clone(),
            index,
        }
    }

    /// Whether `self` is newer than `other`; `None` when the source's ordering cannot tell.
    pub fn is_newer_than(&self, other: &RowVersion) -> Option<bool> {
        match (self, other) {
            (Self::Change { .. }, Self::Change { .. }) => change_order(self, other).map(|o| o.is_gt()),
            (Self::Change { .. }, Self::Read { .. }) => change_after_read(self, other),
            (Self::Read { .. }, Self::Change { .. }) => change_after_read(other, self).map(|after| !after),
            (Self::Read { .. }, Self::Read { .. }) => None,
        }
    }
}

fn change_order(a: &RowVersion, b: &RowVersion) -> Option<std::cmp::Ordering> {
    let (
        RowVersion::Change { server_id: sa, file: fa, pos: pa, gtid: ga, index: ia },
        RowVersion::Change { server_id: sb, file: fb, pos: pb, gtid: gb, index: ib },
    ) = (a, b)
    else {
        return None;
    };
    let by_gtid = match (ga.as_deref().and_then(parse_gtid), gb.as_deref().and_then(parse_gtid)) {
        (Some(Gtid::Mariadb(x)), Some(Gtid::Mariadb(y))) if x.domain == y.domain => Some(x.seq.cmp(&y.seq)),
        (Some(Gtid::Mysql(sx, nx)), Some(Gtid::Mysql(sy, ny))) if sx == sy => Some(nx.cmp(&ny)),
        _ => None,
    };
    let order = match by_gtid {
        Some(o) => o,
        None if sa == sb => (file_sequence(fa), *pa).cmp(&(file_sequence(fb), *pb)),
        None => return None,
    };
    Some(order.then(ia.cmp(ib)))
}

/// Whether the change `change` is missing from what the read `read` saw.
fn change_after_read(change: &RowVersion, read: &RowVersion) -> Option<bool> {
    let (
        RowVersion::Change { server_id, file, pos, gtid, .. },
        RowVersion::Read { server_id: read_server, gtid: seen, binlog },
    ) = (change, read)
    else {
        return None;
    };
    match (gtid.as_deref().and_then(parse_gtid), seen) {
        (Some(Gtid::Mariadb(g)), Some(GtidSet::Mariadb(domains))) => {
            return Some(domains.get(&g.domain).is_none_or(|last| g.seq > last.seq));
        }
        (Some(Gtid::Mysql(source, gno)), Some(GtidSet::Mysql(sources))) => {
            let seen = sources.get(&source).is_some_and(|ivs| ivs.iter().any(|&(s, e)| s <= gno && gno <= e));
            return Some(!seen);
        }
        _ => {}
    }
    match binlog {
        Some(b) if server_id == read_server => Some((file_sequence(file), *pos) >= (file_sequence(&b.file), b.pos)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(gtid: Option<&str>, file: &str, pos: u64, index: u64) -> RowVersion {
        RowVersion::Change { server_id: 1, file: file.into(), pos, gtid: gtid.map(str::to_owned), index }
    }

    fn read(gtid: Option<&str>, binlog: Option<&str>) -> RowVersion {
        RowVersion::Read {
            server_id: 1,
            gtid: gtid.map(|g| g.parse().unwrap()),
            binlog: binlog.map(|b| b.parse().unwrap()),
        }
    }

    #[test]
    fn mariadb_changes_order_by_sequence_within_a_domain_then_row_index() {
        let a = change(Some("0-1-10"), "b.000009", 900, 0);
        let b = change(Some("0-2-11"), "b.000001", 4, 0);
        assert_eq!(b.is_newer_than(&a), Some(true), "a fail-over keeps the domain's sequence growing");
        assert_eq!(a.is_newer_than(&b), Some(false));
        let same_txn_later_row = change(Some("0-1-10"), "b.000009", 900, 1);
        assert_eq!(same_txn_later_row.is_newer_than(&a), Some(true));
        assert_eq!(a.is_newer_than(&a), Some(false));
        let other_domain = change(Some("1-1-3"), "b.000009", 950, 0);
        assert_eq!(other_domain.is_newer_than(&a), Some(true), "same server: binlog order decides");
    }

    #[test]
    fn mysql_changes_order_within_one_source_uuid() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let a = change(Some(&format!("{u}:5")), "b.000002", 100, 0);
        let b = change(Some(&format!("{}:6", u.to_uppercase())), "b.000001", 100, 0);
        assert_eq!(b.is_newer_than(&a), Some(true));
        let mut other = change(Some("4e11fa47-71ca-11e1-9e33-c80aa9429562:1"), "x.000001", 4, 0);
        if let RowVersion::Change { server_id, .. } = &mut other {
            *server_id = 2;
        }
        assert_eq!(other.is_newer_than(&a), None, "another source on another server: cannot tell");
    }

    #[test]
    fn without_gtids_the_same_server_orders_by_file_number_then_offset() {
        let a = change(None, "mysql-bin.000009", 5000, 0);
        let b = change(None, "mysql-bin.000010", 4, 0);
        assert_eq!(b.is_newer_than(&a), Some(true), "file numbers, not text, decide");
        let mut elsewhere = b.clone();
        if let RowVersion::Change { server_id, .. } = &mut elsewhere {
            *server_id = 7;
        }
        assert_eq!(elsewhere.is_newer_than(&a), None);
    }

    #[test]
    fn a_read_is_newer_than_the_changes_it_includes() {
        let seen = read(Some("0-1-10,1-1-4"), None);
        assert_eq!(seen.is_newer_than(&change(Some("0-1-10"), "b.1", 1, 3)), Some(true));
        assert_eq!(change(Some("0-1-11"), "b.1", 1, 0).is_newer_than(&seen), Some(true));
        assert_eq!(change(Some("2-1-1"), "b.1", 1, 0).is_newer_than(&seen), Some(true), "unseen domain");
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let seen = read(Some(&format!("{u}:1-5:7")), None);
        assert_eq!(change(Some(&format!("{u}:6")), "b.1", 1, 0).is_newer_than(&seen), Some(true), "a gap");
        assert_eq!(change(Some(&format!("{u}:7")), "b.1", 1, 0).is_newer_than(&seen), Some(false));
        let by_position = read(None, Some("mysql-bin.000003:500"));
        assert_eq!(change(None, "mysql-bin.000003", 499, 0).is_newer_than(&by_position), Some(false));
        assert_eq!(change(None, "mysql-bin.000003", 500, 0).is_newer_than(&by_position), Some(true));
        assert_eq!(by_position.is_newer_than(&change(None, "mysql-bin.000002", 9000, 0)), Some(true));
        assert_eq!(by_position.is_newer_than(&by_position), None);
    }

    #[test]
    fn versions_round_trip_through_json() {
        for v in [change(Some("0-1-10"), "b.000001", 4, 2), read(Some("0-1-10"), Some("b.000001:4"))] {
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<RowVersion>(&text).unwrap(), v, "{text}");
        }
        let text = serde_json::to_string(&change(None, "b.000001", 4, 0)).unwrap();
        assert_eq!(text, r#"{"kind":"change","server_id":1,"file":"b.000001","pos":4,"index":0}"#);
    }
}
