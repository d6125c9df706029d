//! Event-level details: MariaDB's own event types, GTID list parsing, names for messages.

use mysql_common::binlog::consts::EventType;
use sameday_core::position::MariaGtid;
use sameday_core::GtidSet;

/// MariaDB event types mysql_common does not parse.
pub(super) const MARIA_ANNOTATE_ROWS: u8 = 160;
pub(super) const MARIA_BINLOG_CHECKPOINT: u8 = 161;
pub(super) const MARIA_GTID: u8 = 162;
pub(super) const MARIA_GTID_LIST: u8 = 163;
pub(super) const MARIA_START_ENCRYPTION: u8 = 164;
/// 165 is QUERY_COMPRESSED, 166..=171 the compressed rows events (log_bin_compress=ON).
pub(super) const MARIA_QUERY_COMPRESSED: u8 = 165;
pub(super) const MARIA_ROWS_COMPRESSED_LAST: u8 = 171;
/// MariaDB GTID event flag: the transaction is one statement (DDL) with no BEGIN/COMMIT.
pub(super) const FL_STANDALONE: u8 = 1;

pub(super) fn parse_maria_gtid_list(data: &[u8]) -> Result<GtidSet, String> {
    if data.len() < 4 {
        return Err("GTID_LIST event too short".into());
    }
    let count = (u32::from_le_bytes(data[0..4].try_into().expect("4 bytes")) & 0x0fff_ffff) as usize;
    let mut set = GtidSet::empty_mariadb();
    for i in 0..count {
        let off = 4 + i * 16;
        let Some(entry) = data.get(off..off + 16) else {
            return Err(format!("GTID_LIST declares {count} entries but holds {}", (data.len() - 4) / 16));
        };
        set.add_mariadb(MariaGtid {
            domain: u32::from_le_bytes(entry[0..4].try_into().expect("4 bytes")),
            server: u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(entry[8..16].try_into().expect("8 bytes")),
        });
    }
    Ok(set)
}

pub(super) fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

pub(super) fn is_ddl(q: &str) -> bool {
    let head: String = q.chars().take(12).collect::<String>().to_ascii_uppercase();
    ["ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"].iter().any(|k| head.starts_with(k))
}

/// A readable event type name for messages.
pub(crate) fn event_name(raw: u8) -> String {
    match raw {
        MARIA_GTID => "GTID".into(),
        MARIA_GTID_LIST => "GTID_LIST".into(),
        MARIA_ANNOTATE_ROWS => "ANNOTATE_ROWS".into(),
        _ => match EventType::try_from(raw) {
            Ok(t) => format!("{t:?}").trim_end_matches("_EVENT").to_owned(),
            Err(_) => format!("event type {raw}"),
        },
    }
}
