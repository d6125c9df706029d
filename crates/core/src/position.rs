//! Binlog positions as first-class values.
//!
//! Every position type parses from and prints to the text an operator types or reads in
//! MySQL's own tools (`mysql-bin.000042:1234`, MariaDB `0-1-270,1-2-5`, MySQL
//! `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7`), and `to_string().parse()` round-trips.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a position string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct PositionParseError {
    kind: &'static str,
    input: String,
    reason: String,
}

impl PositionParseError {
    fn new(kind: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self { kind, input: input.to_owned(), reason: reason.into() }
    }
}

/// A file name and byte offset in the source's binary log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
}

impl BinlogPosition {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Self { file: file.into(), pos }
    }

    /// Orders two positions of the same server: by the file's numeric suffix, then offset.
    /// Files of one server share a base name, so the numeric suffix is what matters.
    pub fn cmp_same_server(&self, other: &Self) -> std::cmp::Ordering {
        let key = |p: &Self| (file_sequence(&p.file), p.pos);
        key(self).cmp(&key(other))
    }
}

/// The numeric extension of a binlog file name (`mysql-bin.000042` -> 42).
pub fn file_sequence(file: &str) -> u64 {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for BinlogPosition {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, pos) =
            s.rsplit_once(':').ok_or_else(|| PositionParseError::new("binlog position", s, "expected FILE:POS"))?;
        if file.is_empty() || file.contains(['/', ':', ' ']) {
            return Err(PositionParseError::new(
                "binlog position",
                s,
                "the file name must be a bare binlog file name such as mysql-bin.000042",
            ));
        }
        let pos =
            pos.parse().map_err(|_| PositionParseError::new("binlog position", s, "POS must be a byte offset"))?;
        Ok(Self::new(file, pos))
    }
}

/// One MariaDB global transaction id: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl FromStr for MariaGtid {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PositionParseError::new("MariaDB GTID", s, "expected DOMAIN-SERVER-SEQUENCE");
        let mut parts = s.trim().split('-');
        let (Some(d), Some(sv), Some(q), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(err());
        };
        Ok(Self {
            domain: d.parse().map_err(|_| err())?,
            server: sv.parse().map_err(|_| err())?,
            seq: q.parse().map_err(|_| err())?,
        })
    }
}

/// The transactions a server has executed, in its flavour's notation.
///
/// MariaDB keeps the last GTID per replication domain; MySQL keeps intervals of
/// transaction numbers per source UUID (optionally tagged, MySQL 8.4+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidSet {
    Mariadb(BTreeMap<u32, MariaGtid>),
    Mysql(BTreeMap<String, Vec<(u64, u64)>>),
}

impl GtidSet {
    pub fn empty_mariadb() -> Self {
        Self::Mariadb(BTreeMap::new())
    }

    pub fn empty_mysql() -> Self {
        Self::Mysql(BTreeMap::new())
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::Mariadb(m) => m.is_empty(),
            Self::Mysql(m) => m.is_empty(),
        }
    }

    /// Records a MariaDB transaction; the newest GTID of its domain wins.
    pub fn add_mariadb(&mut self, gtid: MariaGtid) {
        if let Self::Mariadb(m) = self {
            m.insert(gtid.domain, gtid);
        } else {
            *self = Self::Mariadb(BTreeMap::from([(gtid.domain, gtid)]));
        }
    }

    /// Records a MySQL transaction `source:gno`, where `source` is `uuid` or `uuid:tag`.
    pub fn add_mysql(&mut self, source: &str, gno: u64) {
        if !matches!(self, Self::Mysql(_)) {
            *self = Self::empty_mysql();
        }
        let Self::Mysql(m) = self else { unreachable!() };
        let intervals = m.entry(source.to_ascii_lowercase()).or_default();
        insert_interval(intervals, gno, gno);
    }
}

fn insert_interval(intervals: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    intervals.push((start, end));
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(s, e) in intervals.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *intervals = merged;
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mariadb(m) => {
                for (i, g) in m.values().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{g}")?;
                }
            }
            Self::Mysql(m) => {
                for (i, (source, intervals)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(source)?;
                    for &(s, e) in intervals {
                        if s == e {
                            write!(f, ":{s}")?;
                        } else {
                            write!(f, ":{s}-{e}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl FromStr for GtidSet {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(PositionParseError::new("GTID set", s, "it is empty"));
        }
        if !s.contains(':') {
            let mut set = Self::empty_mariadb();
            for part in s.split(',') {
                let gtid: MariaGtid = part.parse()?;
                if let Self::Mariadb(m) = &set {
                    if m.contains_key(&gtid.domain) {
                        return Err(PositionParseError::new(
                            "GTID set",
                            s,
                            format!("domain {} appears twice", gtid.domain),
                        ));
                    }
                }
                set.add_mariadb(gtid);
            }
            return Ok(set);
        }
        let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',') {
            let part = part.trim();
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default();
            if !is_uuid(uuid) {
                return Err(PositionParseError::new("GTID set", s, format!("{uuid:?} is not a UUID")));
            }
            let mut source = uuid.to_ascii_lowercase();
            let mut any = false;
            for field in fields {
                if is_tag(field) {
                    source = format!("{}:{}", uuid.to_ascii_lowercase(), field.to_ascii_lowercase());
                    continue;
                }
                let (a, b) = match field.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (field, field),
                };
                let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                    return Err(PositionParseError::new(
                        "GTID set",
                        s,
                        format!("{field:?} is neither an interval N or N-M nor a tag"),
                    ));
                };
                if a == 0 || b < a {
                    return Err(PositionParseError::new("GTID set", s, format!("bad interval {field:?}")));
                }
                insert_interval(map.entry(source.clone()).or_default(), a, b);
                any = true;
            }
            if !any {
                return Err(PositionParseError::new("GTID set", s, format!("{part:?} has no interval")));
            }
        }
        Ok(Self::Mysql(map))
    }
}

impl Serialize for GtidSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GtidSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a reader starts when it has no checkpoint (or an operator overrides it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest binlog file the server still has.
    Earliest,
    /// The server's current end of the binlog.
    Latest,
    File(BinlogPosition),
    Gtid(GtidSet),
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::File(p) => write!(f, "{p}"),
            Self::Gtid(g) => write!(f, "{g}"),
        }
    }
}

impl FromStr for StartPosition {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        // A GTID set never has a '.' and a file position always has one in the file name.
        if t.contains('.') {
            return t.parse().map(Self::File);
        }
        t.parse().map(Self::Gtid).map_err(|_| {
            PositionParseError::new(
                "start position",
                s,
                "expected earliest, latest, FILE:POS (mysql-bin.000042:4), a MariaDB GTID list \
                 (0-1-270,1-2-5) or a MySQL GTID set (uuid:1-100)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binlog_position_round_trips() {
        let p: BinlogPosition = "mysql-bin.000042:1234".parse().unwrap();
        assert_eq!(p, BinlogPosition::new("mysql-bin.000042", 1234));
        assert_eq!(p.to_string(), "mysql-bin.000042:1234");
        assert!("mysql-bin.000042".parse::<BinlogPosition>().is_err());
        assert!("mysql-bin.000042:x".parse::<BinlogPosition>().is_err());
    }

    #[test]
    fn positions_order_by_file_sequence() {
        let a = BinlogPosition::new("b.000009", 900);
        let b = BinlogPosition::new("b.000010", 4);
        assert!(a.cmp_same_server(&b).is_lt());
    }

    #[test]
    fn mysql_gtid_set_merges_and_keeps_tags() {
        let s: GtidSet = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:6-9:20,\
                          3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:1-3"
            .parse()
            .unwrap();
        assert_eq!(
            s.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9:20,3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:1-3"
        );
        let mut s = s;
        s.add_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562", 10);
        assert!(s.to_string().starts_with("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10:20"));
    }

    #[test]
    fn start_position_forms() {
        assert_eq!("earliest".parse::<StartPosition>().unwrap(), StartPosition::Earliest);
        assert!(matches!("mysql-bin.000001:4".parse::<StartPosition>().unwrap(), StartPosition::File(_)));
        assert!(matches!("0-1-5,1-1-2".parse::<StartPosition>().unwrap(), StartPosition::Gtid(_)));
        let err = "yesterday".parse::<StartPosition>().unwrap_err().to_string();
        assert!(err.contains("expected earliest, latest"), "{err}");
        assert!("0-1-5,0-2-9".parse::<GtidSet>().is_err(), "duplicate domain");
    }

    proptest! {
        #[test]
        fn binlog_position_display_parse_round_trip(n in 1u32..999_999, pos in any::<u64>()) {
            let p = BinlogPosition::new(format!("mysql-bin.{n:06}"), pos);
            prop_assert_eq!(p.to_string().parse::<BinlogPosition>().unwrap(), p);
        }

        #[test]
        fn mariadb_gtid_list_round_trip(gtids in proptest::collection::btree_map(any::<u32>(), (any::<u32>(), any::<u64>()), 1..5)) {
            let set = GtidSet::Mariadb(gtids.into_iter().map(|(d, (s, q))| (d, MariaGtid { domain: d, server: s, seq: q })).collect());
            prop_assert_eq!(set.to_string().parse::<GtidSet>().unwrap(), set);
        }

        #[test]
        fn mysql_gtid_set_round_trip(gnos in proptest::collection::vec(1u64..1000, 1..40)) {
            let mut set = GtidSet::empty_mysql();
            for g in &gnos { set.add_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562", *g); }
            let text = set.to_string();
            prop_assert_eq!(text.parse::<GtidSet>().unwrap(), set.clone());
            let StartPosition::Gtid(parsed) = text.parse::<StartPosition>().unwrap() else { panic!() };
            prop_assert_eq!(parsed, set);
        }
    }
}
