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

/// What a DDL statement does, without its text: statement text may carry secrets (MariaDB
/// writes `CREATE USER ... IDENTIFIED BY 'password'` to the binlog as issued), so only the
/// statement's kind and the table it names ever leave the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ddl {
    /// `ALTER TABLE`, `CREATE INDEX`, `DROP DATABASE`, `TRUNCATE`, ...
    pub(crate) kind: String,
    /// `(database, table)` for statements on one table; the database is `None` when the
    /// statement relies on the session's default database.
    pub(crate) table: Option<(Option<String>, String)>,
}

/// Object kinds that are accounts, not schema: never reported, never logged.
const ACCOUNT_OBJECTS: &[&str] = &["USER", "ROLE", "SERVER"];
/// Object kinds a DDL statement may name, after its verb and modifiers.
const SCHEMA_OBJECTS: &[&str] =
    &["TABLE", "INDEX", "VIEW", "DATABASE", "SCHEMA", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "SEQUENCE"];

/// The DDL a statement is, or `None` for anything else (DML, account management such as
/// CREATE/ALTER/DROP/RENAME USER, CREATE/DROP ROLE, GRANT, REVOKE, SET PASSWORD).
pub(super) fn ddl_of(q: &str) -> Option<Ddl> {
    let mut words = q.split_ascii_whitespace();
    let verb = words.next()?.to_ascii_uppercase();
    if !["ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"].contains(&verb.as_str()) {
        return None;
    }
    // The object keyword follows the verb after modifiers (OR REPLACE, TEMPORARY, ONLINE,
    // IGNORE, UNIQUE, DEFINER=..., ...); look a few words ahead.
    let rest: Vec<&str> = words.take(8).collect();
    let object = rest.iter().position(|w| {
        let w = w.to_ascii_uppercase();
        ACCOUNT_OBJECTS.contains(&w.as_str()) || SCHEMA_OBJECTS.contains(&w.as_str())
    });
    let Some(at) = object else {
        // TRUNCATE t (without TABLE); anything unrecognised is reported by its verb only.
        let table = (verb == "TRUNCATE").then(|| rest.first().map(|n| table_name(n))).flatten();
        return Some(Ddl { kind: verb, table });
    };
    let object = rest[at].to_ascii_uppercase();
    if ACCOUNT_OBJECTS.contains(&object.as_str()) {
        return None;
    }
    let table = (object == "TABLE").then(|| {
        let mut names =
            rest[at + 1..].iter().filter(|w| !matches!(w.to_ascii_uppercase().as_str(), "IF" | "NOT" | "EXISTS"));
        names.next().map(|n| table_name(n))
    });
    Some(Ddl { kind: format!("{verb} {object}"), table: table.flatten() })
}

/// `db.t`, `` `db`.`t` ``, `t` (up to the first `(` or `,`), unquoted.
fn table_name(word: &str) -> (Option<String>, String) {
    let word = word.split(['(', ',', ';']).next().unwrap_or(word);
    let unquote = |s: &str| s.trim_matches('`').to_owned();
    match word.split_once("`.`").or_else(|| word.split_once('.')) {
        Some((db, t)) => (Some(unquote(db)), unquote(t)),
        None => (None, unquote(word)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_is_told_by_kind_and_table_and_accounts_are_not_ddl() {
        let ddl = |q: &str| ddl_of(q).map(|d| (d.kind, d.table));
        let t = |db: Option<&str>, t: &str| Some((db.map(str::to_owned), t.to_owned()));
        assert_eq!(ddl("ALTER TABLE app.orders ADD c INT"), Some(("ALTER TABLE".into(), t(Some("app"), "orders"))));
        assert_eq!(
            ddl("alter online table `app`.`o-r` add c int"),
            Some(("ALTER TABLE".into(), t(Some("app"), "o-r")))
        );
        assert_eq!(ddl("CREATE TABLE IF NOT EXISTS t(id INT)"), Some(("CREATE TABLE".into(), t(None, "t"))));
        assert_eq!(ddl("CREATE OR REPLACE TEMPORARY TABLE x (a int)"), Some(("CREATE TABLE".into(), t(None, "x"))));
        assert_eq!(ddl("DROP TABLE IF EXISTS a.b, a.c"), Some(("DROP TABLE".into(), t(Some("a"), "b"))));
        assert_eq!(ddl("TRUNCATE app.t"), Some(("TRUNCATE".into(), t(Some("app"), "t"))));
        assert_eq!(ddl("CREATE UNIQUE INDEX i ON t (a)"), Some(("CREATE INDEX".into(), None)));
        assert_eq!(ddl("DROP DATABASE app"), Some(("DROP DATABASE".into(), None)));
        for account in [
            "CREATE USER 'u'@'%' IDENTIFIED BY 'S3cret'",
            "create user if not exists u identified by 's'",
            "ALTER USER 'u'@'%' IDENTIFIED BY 'S3cret'",
            "DROP USER u",
            "RENAME USER a TO b",
            "CREATE ROLE r",
            "CREATE OR REPLACE USER u IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'",
            "DROP SERVER s",
            "GRANT SELECT ON app.* TO u",
            "REVOKE ALL ON *.* FROM u",
            "SET PASSWORD FOR u = PASSWORD('x')",
            "INSERT INTO t VALUES (1)",
        ] {
            assert_eq!(ddl_of(account), None, "{account}");
        }
    }
}
