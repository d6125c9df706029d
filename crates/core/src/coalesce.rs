//! Folding a run of one row's changes into one. The worker is level-triggered: it stops the
//! execution of the `before` image and starts the one of the `after` image, so the changes
//! A→B, B→C, C→D of one row mean the same to it as A→D, at the cost of one round of Step
//! Functions calls instead of three.
//!
//! Used where changes wait: the consumer folds a row's changes that wait behind its message
//! in flight (into the waiting message, so the shard checkpoint cannot pass them before it is
//! accepted), and the worker folds a group's received messages that were never delivered
//! before (a redelivered one may have had effects already, and is handled alone).
//!
//! - The result keeps the earliest `before` and takes everything else from the latest change:
//!   id (the de-duplication id), position and transaction, so the worker's row version is the
//!   newest change's.
//! - Not folded: claim-check pointers (no images), a run that would start and end without a
//!   row (an insert then its delete: nothing to send would still need its message), and
//!   changes of different rows.

use crate::envelope::{ChangeEnvelope, Op};

/// `earlier` followed by `later` (of the same row) as one change, when that is possible.
pub fn coalesce(earlier: &ChangeEnvelope, later: &ChangeEnvelope) -> Option<ChangeEnvelope> {
    let same_row = earlier.db == later.db && earlier.table == later.table && earlier.key == later.key;
    if !same_row || earlier.claim_check.is_some() || later.claim_check.is_some() {
        return None;
    }
    let op = match (&earlier.before, &later.after) {
        (Some(_), Some(_)) => Op::Update,
        (None, Some(_)) => Op::Insert,
        (Some(_), None) => Op::Delete,
        (None, None) => return None,
    };
    Some(ChangeEnvelope { op, before: earlier.before.clone(), ..later.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(id: &str, before: Option<i64>, after: Option<i64>) -> ChangeEnvelope {
        let image = |due: Option<i64>| due.map(|d| json!({"id": 1, "due": d}));
        let op = match (before, after) {
            (None, _) => "insert",
            (_, None) => "delete",
            _ => "update",
        };
        serde_json::from_value(json!({
            "v": 1, "id": id, "op": op, "db": "app", "table": "t", "key": {"id": 1},
            "before": image(before), "after": image(after),
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "gtid": id, "ts_ms": 0},
            "txn": {"id": id, "index": 0}
        }))
        .unwrap()
    }

    #[test]
    fn a_run_of_changes_becomes_first_before_and_last_after() {
        let ab = change("0-1-1/0/0", Some(1), Some(2));
        let bc = change("0-1-2/0/0", Some(2), Some(3));
        let ac = coalesce(&ab, &bc).unwrap();
        assert_eq!((ac.op, ac.id.as_str()), (Op::Update, "0-1-2/0/0"));
        assert_eq!((ac.before, ac.after), (ab.before.clone(), bc.after.clone()));
        assert_eq!(ac.source, bc.source, "the newest change's position: the worker's row version");

        let insert = change("i", None, Some(1));
        assert_eq!(coalesce(&insert, &bc).unwrap().op, Op::Insert);
        let delete = change("d", Some(3), None);
        assert_eq!(coalesce(&ab, &delete).unwrap().op, Op::Delete);
        assert_eq!(coalesce(&insert, &delete), None, "insert then delete: not folded");
    }

    #[test]
    fn other_rows_and_pointers_are_not_folded() {
        let ab = change("a", Some(1), Some(2));
        let mut other = change("b", Some(2), Some(3));
        other.key = json!({"id": 2}).as_object().unwrap().clone();
        assert_eq!(coalesce(&ab, &other), None);
        let mut pointer = change("c", None, None);
        pointer.claim_check =
            Some(crate::envelope::ClaimCheck { bucket: "b".into(), key: "k".into(), bytes: 1, sha256: "x".into() });
        assert_eq!(coalesce(&ab, &pointer), None);
    }
}
