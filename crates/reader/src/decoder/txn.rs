//! Transactions: how each one is named (GTID, or `file:pos` of its first event), and the
//! commit that ends it, carrying the position after it and the GTID set executed so far —
//! the only position the reader ever checkpoints.

use mysql_common::binlog::events::{Event, GtidEvent};
use sameday_core::position::MariaGtid;
use sameday_core::GtidSet;

use super::events::{format_uuid, FL_STANDALONE};
use super::{Commit, Decoder, Output};
use crate::error::DecodeError;

#[derive(Debug)]
pub(super) struct Txn {
    pub(super) id: String,
    pub(super) gtid: Option<String>,
    pub(super) maria: Option<MariaGtid>,
    pub(super) mysql: Option<(String, u64)>,
    pub(super) ts_ms: u64,
    /// Started by a MariaDB GTID with FL_STANDALONE, or a MySQL GTID with no BEGIN yet:
    /// a DDL statement that commits itself.
    pub(super) standalone: bool,
    pub(super) event_seq: u32,
    pub(super) rows: u64,
}

impl Txn {
    /// A transaction known only by where it starts (no GTID): `file:pos` is its id.
    pub(super) fn at(id: String, ts_ms: u64, standalone: bool) -> Self {
        Self { id, gtid: None, maria: None, mysql: None, ts_ms, standalone, event_seq: 0, rows: 0 }
    }

    /// A transaction named by its GTID (`text`).
    pub(super) fn gtid(text: String, ts_ms: u64, standalone: bool) -> Self {
        Self { gtid: Some(text.clone()), ..Self::at(text, ts_ms, standalone) }
    }
}

impl Decoder {
    pub(super) fn maria_gtid(&mut self, event: &Event, start: u64, ts_ms: u64) -> Result<(), DecodeError> {
        let data = event.data();
        if data.len() < 13 {
            return Err(DecodeError::Event {
                event: "GTID".into(),
                position: self.position(start),
                reason: format!("MariaDB GTID event has {} bytes, expected at least 13", data.len()),
            });
        }
        let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
        let flags = data[12];
        let gtid = MariaGtid { domain, server: event.header().server_id(), seq };
        let txn = Txn::gtid(gtid.to_string(), ts_ms, flags & FL_STANDALONE != 0);
        self.txn = Some(Txn { maria: Some(gtid), ..txn });
        Ok(())
    }

    pub(super) fn mysql_gtid(&mut self, g: &GtidEvent, ts_ms: u64) {
        let sid = format_uuid(&g.sid());
        let source = match g.tag() {
            Some(tag) => format!("{sid}:{}", tag.as_str()),
            None => sid,
        };
        let text = format!("{source}:{}", g.gno());
        let commit_us = g.immediate_commit_timestamp();
        let ts = if commit_us > 0 { commit_us / 1000 } else { ts_ms };
        self.txn = Some(Txn { mysql: Some((source, g.gno())), ..Txn::gtid(text, ts, true) });
    }

    pub(super) fn commit(&mut self, end: u64, ts_ms: u64, out: &mut Vec<Output>) {
        let txn = self.txn.take();
        let mut commit_ts = ts_ms;
        let mut rows = 0;
        if let Some(t) = txn {
            commit_ts = commit_ts.max(t.ts_ms);
            rows = t.rows;
            if let Some(g) = t.maria {
                self.gtid_set.get_or_insert_with(GtidSet::empty_mariadb).add_mariadb(g);
            }
            if let Some((source, gno)) = t.mysql {
                self.gtid_set.get_or_insert_with(GtidSet::empty_mysql).add_mysql(&source, gno);
            }
        }
        out.push(Output::Commit(Commit {
            next: self.position(end),
            gtid_set: self.gtid_set.clone(),
            ts_ms: commit_ts,
            rows,
        }));
    }
}
