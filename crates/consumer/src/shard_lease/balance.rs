//! Which leases a worker should take or steal: pure logic, no AWS.

use super::*;

/// What one worker should do in one balancing round, from one [`LeaseTable::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Unowned or expired leases to [`LeaseTable::take`], as observed.
    pub(crate) take: Vec<Lease>,
    /// One lease to [`LeaseTable::steal`] from the most loaded worker, as observed.
    pub(crate) steal: Option<Lease>,
}

/// Whether `lease` may be read yet: every parent finished (or its lease deleted).
fn parents_finished(lease: &Lease, leases: &[Lease]) -> bool {
    lease.parent_shard_ids.iter().all(|p| leases.iter().find(|l| &l.shard_id == p).is_none_or(Lease::is_finished))
}

/// Decides what `me` takes or steals so that N workers end with about S/N shards each.
///
/// Workers are those owning an unexpired lease, plus `me`; S counts the unfinished leases
/// whose parents are finished. With target ceil(S/N), a worker below target takes
/// available leases (its own expired ones first); when none are available it steals one
/// lease from the most loaded worker if that one is above target, or at target while `me`
/// is below target - 1. Stealing never pushes the victim below target - 1, so workers do
/// not steal back and forth.
pub(crate) fn plan(leases: &[Lease], me: &str, now_ms: u64) -> Plan {
    let workable: Vec<&Lease> = leases.iter().filter(|l| !l.is_finished() && parents_finished(l, leases)).collect();
    let mut load: BTreeMap<&str, usize> = BTreeMap::from([(me, 0)]);
    for owner in workable.iter().filter_map(|l| l.live_owner(now_ms)) {
        *load.entry(owner).or_default() += 1;
    }
    let target = workable.len().div_ceil(load.len());
    let mine = load[me];
    if mine >= target {
        return Plan::default();
    }

    let mut available: Vec<&Lease> = workable.iter().copied().filter(|l| l.is_available(now_ms)).collect();
    if !available.is_empty() {
        available.sort_by_key(|l| (l.owner.as_deref() != Some(me), l.shard_id.as_str()));
        return Plan { take: available.into_iter().take(target - mine).cloned().collect(), steal: None };
    }

    // Most loaded other worker; ties go to the smallest id so every worker agrees.
    let victim = load.iter().filter(|(w, _)| **w != me).max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)));
    let Some((&victim, &most)) = victim else {
        return Plan::default();
    };
    if most > target || (most == target && mine + 1 < target) {
        let steal = workable.iter().find(|l| l.live_owner(now_ms) == Some(victim)).map(|l| (*l).clone());
        return Plan { take: Vec::new(), steal };
    }
    Plan::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(shard: &str, owner: Option<&str>, expires_at_ms: u64) -> Lease {
        Lease {
            shard_id: shard.into(),
            owner: owner.map(Into::into),
            lease_counter: 1,
            checkpoint: ShardCheckpoint::TrimHorizon,
            parent_shard_ids: Vec::new(),
            expires_at_ms,
        }
    }

    #[test]
    fn plan_prefers_own_expired_leases_and_caps_at_target() {
        let leases =
            vec![lease("a", None, 0), lease("b", Some("me"), 50), lease("c", Some("other"), 500), lease("d", None, 0)];
        // Two workers, four shards: target 2, "other" holds 1, I hold 0 live.
        let p = plan(&leases, "me", 100);
        let took: Vec<&str> = p.take.iter().map(|l| l.shard_id.as_str()).collect();
        assert_eq!(took, ["b", "a"]);
        assert_eq!(p.steal, None);
    }
}
