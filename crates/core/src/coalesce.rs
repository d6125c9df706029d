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
//! - The result keeps the earliest `before`, lists the images in between as `superseded` (the
//!   worker stops their executions too: the first change of a run may have been applied
//!   already, through an earlier delivery of it, and then the row's execution is the one of
//!   its `after`, not its `before`), and takes everything else from the latest change: id,
//!   position and transaction, so the worker's row version is the newest change's.
//! - Only a newer change folds into an older one (row versions, `crate::row_version`): a
//!   change read again (a reader restarted behind its last checkpoint, a replay) must not take
//!   a folded run back to an older image; unfolded, the worker recognises it as stale.
//! - Not folded: claim-check pointers (no images), a run that would start and end without a
//!   row (an insert then its delete: nothing to send would still need its message), and
//!   changes of different rows.

use crate::envelope::{ChangeEnvelope, Op};
use crate::row_version::RowVersion;

/// `earlier` followed by `later` (of the same row) as one change, when that is possible.
pub fn coalesce(earlier: &ChangeEnvelope, later: &ChangeEnvelope) -> Option<ChangeEnvelope> {
    let same_row = earlier.db == later.db && earlier.table == later.table && earlier.key == later.key;
    if !same_row || earlier.claim_check.is_some() || later.claim_check.is_some() {
        return None;
    }
    let version = |e: &ChangeEnvelope| RowVersion::of_change(&e.source, e.txn.index);
    if version(later).is_newer_than(&version(earlier)) != Some(true) {
        return None;
    }
    let op = match (&earlier.before, &later.after) {
        (Some(_), Some(_)) => Op::Update,
        (None, Some(_)) => Op::Insert,
        (Some(_), None) => Op::Delete,
        (None, None) => return None,
    };
    let mut superseded = earlier.superseded.clone();
    for image in earlier.after.iter().chain(later.before.iter()).chain(later.superseded.iter()) {
        if !superseded.contains(image) && Some(image) != later.after.as_ref() && Some(image) != earlier.before.as_ref()
        {
            superseded.push(image.clone());
        }
    }
    superseded.retain(|image| Some(image) != later.after.as_ref());
    Some(ChangeEnvelope { op, before: earlier.before.clone(), superseded, ..later.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The GTID sequence number in a test change's id `0-1-SEQ/0/0`.
    fn seq(id: &str) -> u64 {
        id.split(['-', '/']).nth(2).and_then(|s| s.parse().ok()).unwrap()
    }

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
            "source": {"server_id": 1, "file": "mysql-bin.000001", "pos": 4, "gtid": format!("0-1-{}", seq(id)), "ts_ms": 0},
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
        assert_eq!((&ac.before, &ac.after), (&ab.before, &bc.after));
        assert_eq!(ac.superseded, vec![ab.after.clone().unwrap()], "B: the image in between");
        let cd = change("0-1-3/0/0", Some(3), Some(2));
        let ad = coalesce(&ac, &cd).unwrap();
        assert_eq!(ad.superseded, vec![bc.after.clone().unwrap()], "back at B: only C is left behind");
        assert_eq!(
            coalesce(&ad, &change("0-1-4/0/0", Some(2), Some(3))).unwrap().superseded.len(),
            1,
            "the final image is not superseded"
        );
        assert_eq!(ac.source, bc.source, "the newest change's position: the worker's row version");

        let insert = change("0-1-0/0/0", None, Some(1));
        assert_eq!(coalesce(&insert, &bc).unwrap().op, Op::Insert);
        let delete = change("0-1-3/0/0", Some(3), None);
        assert_eq!(coalesce(&ab, &delete).unwrap().op, Op::Delete);
        assert_eq!(coalesce(&insert, &delete), None, "insert then delete: not folded");
    }

    #[test]
    fn a_change_read_again_never_folds_a_run_back() {
        let ab = change("0-1-1/0/0", Some(1), Some(2));
        let bc = change("0-1-2/0/0", Some(2), Some(3));
        let ac = coalesce(&ab, &bc).unwrap();
        assert_eq!(coalesce(&ac, &bc), None, "the same change again");
        assert_eq!(coalesce(&ac, &ab), None, "an older change");
    }

    #[test]
    fn other_rows_and_pointers_are_not_folded() {
        let ab = change("0-1-1/0/0", Some(1), Some(2));
        let mut other = change("0-1-2/0/0", Some(2), Some(3));
        other.key = json!({"id": 2}).as_object().unwrap().clone();
        assert_eq!(coalesce(&ab, &other), None);
        let mut pointer = change("0-1-3/0/0", None, None);
        pointer.claim_check =
            Some(crate::envelope::ClaimCheck { bucket: "b".into(), key: "k".into(), bytes: 1, sha256: "x".into() });
        assert_eq!(coalesce(&ab, &pointer), None);
    }
}
