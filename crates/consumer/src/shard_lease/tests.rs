//! Shard leases through moto's DynamoDB: exclusivity, expiry, release, monotonic
//! checkpoints, parent-before-child and balancing. The clock is a parameter, so expiry is
//! simulated without sleeping.

use std::collections::BTreeMap;

use super::{plan, Lease, LeaseError, LeaseTable, ShardCheckpoint, ShardInfo, DEFAULT_LEASE_DURATION_MS};
use sameday_testkit::{names, Moto};

const T0: u64 = 1_700_000_000_000;
const DURATION: u64 = DEFAULT_LEASE_DURATION_MS;

async fn table_with(shards: &[(&str, &[&str])]) -> LeaseTable {
    let client = Moto::shared().dynamodb_client().await;
    let table = LeaseTable::new(client, &names::unique("leases"));
    table.ensure_table().await.unwrap();
    table.ensure_table().await.unwrap(); // idempotent
    let infos: Vec<ShardInfo> = shards
        .iter()
        .map(|(id, parents)| ShardInfo {
            shard_id: (*id).into(),
            parent_shard_ids: parents.iter().map(|p| (*p).into()).collect(),
        })
        .collect();
    assert_eq!(table.sync_shards(&infos).await.unwrap(), infos.len());
    assert_eq!(table.sync_shards(&infos).await.unwrap(), 0, "existing leases are left alone");
    table
}

async fn lease(table: &LeaseTable, shard: &str) -> Lease {
    table.get(shard).await.unwrap().unwrap_or_else(|| panic!("no lease for {shard}"))
}

fn cp(s: &str) -> ShardCheckpoint {
    s.parse().unwrap()
}

fn shard_ids(leases: &[Lease]) -> Vec<&str> {
    leases.iter().map(|l| l.shard_id.as_str()).collect()
}

#[tokio::test]
async fn lease_take_is_exclusive_between_two_workers() {
    let table = table_with(&[("shard-0", &[])]).await;
    let fresh = lease(&table, "shard-0").await;
    assert_eq!(
        (fresh.owner.as_deref(), fresh.lease_counter, &fresh.checkpoint),
        (None, 0, &ShardCheckpoint::TrimHorizon)
    );

    // Both act on the same observation: exactly one wins. The takes go one after the other:
    // moto evaluates a condition and applies the update without a lock, so two requests in
    // flight at once can both pass (DynamoDB's conditional writes are atomic); what is under
    // test is that a take from a stale observation is refused.
    let a = table.take(&fresh, "worker-a", T0).await;
    let b = table.take(&fresh, "worker-b", T0).await;
    let (winner, loser) = match (a, b) {
        (Ok(l), Err(e)) | (Err(e), Ok(l)) => (l, e),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert!(matches!(loser, LeaseError::Contended { .. }), "{loser}");
    assert!(!loser.is_transient());
    assert_eq!(winner.lease_counter, 1);
    assert_eq!(winner.expires_at_ms, T0 + DURATION);
    assert_eq!(lease(&table, "shard-0").await, winner);

    // Re-reading does not help the loser while the lease runs.
    let other = if winner.owner.as_deref() == Some("worker-a") { "worker-b" } else { "worker-a" };
    let err = table.take(&lease(&table, "shard-0").await, other, T0 + 1).await.unwrap_err();
    assert!(matches!(err, LeaseError::NotAvailable { .. }), "{err}");
    assert!(plan(&table.list().await.unwrap(), other, T0 + 1).take.is_empty());
}

#[tokio::test]
async fn lease_expires_and_is_taken_over() {
    let table = table_with(&[("shard-0", &[])]).await;
    let held = table.take(&lease(&table, "shard-0").await, "worker-a", T0).await.unwrap();
    let held = table.renew(&held, T0 + 1_000).await.unwrap();
    assert_eq!((held.lease_counter, held.expires_at_ms), (2, T0 + 1_000 + DURATION));

    let seen = lease(&table, "shard-0").await;
    let err = table.take(&seen, "worker-b", T0 + 1_000 + DURATION - 1).await.unwrap_err();
    assert!(matches!(err, LeaseError::NotAvailable { .. }), "{err}");

    // worker-a stops renewing (crash): one lease duration later worker-b may take it.
    let later = T0 + 1_000 + DURATION;
    assert_eq!(shard_ids(&plan(&table.list().await.unwrap(), "worker-b", later).take), ["shard-0"]);
    let taken = table.take(&seen, "worker-b", later).await.unwrap();
    assert_eq!((taken.owner.as_deref(), taken.lease_counter), (Some("worker-b"), 3));
}

#[tokio::test]
async fn lease_renew_fails_after_takeover() {
    let table = table_with(&[("shard-0", &[])]).await;
    let a = table.take(&lease(&table, "shard-0").await, "worker-a", T0).await.unwrap();
    let b = table.take(&lease(&table, "shard-0").await, "worker-b", T0 + DURATION).await.unwrap();

    let err = table.renew(&a, T0 + DURATION + 1).await.unwrap_err();
    assert!(matches!(&err, LeaseError::LeaseLost { worker, .. } if worker == "worker-a"), "{err}");
    let err = table.checkpoint(&a, &cp("100")).await.unwrap_err();
    assert!(matches!(err, LeaseError::LeaseLost { .. }), "{err}");
    let err = table.release(&a).await.unwrap_err();
    assert!(matches!(err, LeaseError::LeaseLost { .. }), "{err}");

    // The deposed owner's attempts changed nothing.
    assert_eq!(lease(&table, "shard-0").await, b);
    table.renew(&b, T0 + DURATION + 1).await.unwrap();
}

#[tokio::test]
async fn lease_release_allows_immediate_takeover() {
    let table = table_with(&[("shard-0", &[])]).await;
    let a = table.take(&lease(&table, "shard-0").await, "worker-a", T0).await.unwrap();
    let a = table.checkpoint(&a, &cp("42")).await.unwrap();
    table.release(&a).await.unwrap();

    let released = lease(&table, "shard-0").await;
    assert_eq!((released.owner.as_deref(), released.expires_at_ms), (None, 0));
    assert_eq!(released.checkpoint, cp("42"));
    // No waiting out the lease duration.
    assert_eq!(shard_ids(&plan(&table.list().await.unwrap(), "worker-b", T0 + 1).take), ["shard-0"]);
    let b = table.take(&released, "worker-b", T0 + 1).await.unwrap();
    assert_eq!((b.owner.as_deref(), b.checkpoint), (Some("worker-b"), cp("42")));
}

#[tokio::test]
async fn lease_checkpoint_never_moves_backwards_and_marks_shard_end() {
    let table = table_with(&[("shard-0", &[])]).await;
    let held = table.take(&lease(&table, "shard-0").await, "worker-a", T0).await.unwrap();

    // 9 < 10 numerically although "9" > "10" as text.
    let held = table.checkpoint(&held, &cp("9")).await.unwrap();
    let held = table.checkpoint(&held, &cp("10")).await.unwrap();
    let held = table.checkpoint(&held, &cp("10")).await.unwrap(); // repeating is fine

    let err = table.checkpoint(&held, &cp("9")).await.unwrap_err();
    assert!(matches!(err, LeaseError::Backwards { .. }), "{err}");
    // A stale in-memory lease does not fool the table's own check.
    let stale = Lease { checkpoint: ShardCheckpoint::TrimHorizon, ..held.clone() };
    let err = table.checkpoint(&stale, &cp("9")).await.unwrap_err();
    assert!(matches!(&err, LeaseError::Backwards { stored, .. } if *stored == cp("10")), "{err}");
    let err = table.checkpoint(&held, &ShardCheckpoint::TrimHorizon).await.unwrap_err();
    assert!(matches!(err, LeaseError::Backwards { .. }), "{err}");

    // Real 56-digit sequence numbers, beyond u128.
    let big = "49590338271490256608559692538361571095921575989136588898";
    let bigger = "49590338271490256608559692540925702759324208523137515618";
    let held = table.checkpoint(&held, &cp(bigger)).await.unwrap();
    let err = table.checkpoint(&held, &cp(big)).await.unwrap_err();
    assert!(matches!(err, LeaseError::Backwards { .. }), "{err}");
    assert_eq!(lease(&table, "shard-0").await.checkpoint, cp(bigger));

    let held = table.checkpoint(&held, &ShardCheckpoint::ShardEnd).await.unwrap();
    assert!(held.is_finished());
    let err = table.checkpoint(&held, &cp(bigger)).await.unwrap_err();
    assert!(matches!(err, LeaseError::Backwards { .. }), "{err}");

    // A finished shard is nobody's work.
    table.release(&held).await.unwrap();
    let leases = table.list().await.unwrap();
    assert!(leases[0].is_finished());
    assert_eq!(plan(&leases, "worker-b", T0), Default::default());
    let err = table.take(&leases[0], "worker-b", T0).await.unwrap_err();
    assert!(matches!(err, LeaseError::Finished { .. }), "{err}");
}

fn pure_lease(shard: &str, parents: &[&str], owner: Option<&str>, checkpoint: ShardCheckpoint) -> Lease {
    Lease {
        shard_id: shard.into(),
        owner: owner.map(Into::into),
        lease_counter: 1,
        checkpoint,
        parent_shard_ids: parents.iter().map(|p| (*p).into()).collect(),
        expires_at_ms: T0 + DURATION,
    }
}

#[tokio::test]
async fn child_shard_waits_for_parents_to_finish() {
    // Pure: a merge child of p1 and p2, and an orphan whose parent lease was deleted.
    let mut leases = vec![
        pure_lease("c", &["p1", "p2"], None, ShardCheckpoint::TrimHorizon),
        pure_lease("orphan", &["gone"], None, ShardCheckpoint::TrimHorizon),
        pure_lease("p1", &[], Some("worker-a"), cp("5")),
        pure_lease("p2", &[], Some("worker-a"), cp("7")),
    ];
    assert_eq!(shard_ids(&plan(&leases, "worker-b", T0).take), ["orphan"]);
    leases[2].checkpoint = ShardCheckpoint::ShardEnd;
    assert_eq!(shard_ids(&plan(&leases, "worker-b", T0).take), ["orphan"]);
    leases[3].checkpoint = ShardCheckpoint::ShardEnd;
    // worker-a holds only finished shards now, so both workable shards are worker-b's share.
    assert_eq!(shard_ids(&plan(&leases, "worker-b", T0).take), ["c", "orphan"]);

    // Through the table: a split of p into c1 and c2.
    let client = Moto::shared().dynamodb_client().await;
    let table = LeaseTable::new(client, &names::unique("leases")).with_initial_checkpoint(ShardCheckpoint::Latest);
    table.ensure_table().await.unwrap();
    let info = |id: &str, parents: &[&str]| ShardInfo {
        shard_id: id.into(),
        parent_shard_ids: parents.iter().map(|p| (*p).into()).collect(),
    };
    table.sync_shards(&[info("p", &[]), info("c1", &["p"]), info("c2", &["p"])]).await.unwrap();
    // Children read their whole shard even when new shards start at LATEST.
    assert_eq!(lease(&table, "p").await.checkpoint, ShardCheckpoint::Latest);
    assert_eq!(lease(&table, "c1").await.checkpoint, ShardCheckpoint::TrimHorizon);

    let first = plan(&table.list().await.unwrap(), "worker-a", T0);
    assert_eq!(shard_ids(&first.take), ["p"]);
    let p = table.take(&first.take[0], "worker-a", T0).await.unwrap();
    assert_eq!(plan(&table.list().await.unwrap(), "worker-b", T0), Default::default());
    let p = table.checkpoint(&p, &cp("123")).await.unwrap();
    assert_eq!(plan(&table.list().await.unwrap(), "worker-b", T0), Default::default());

    table.checkpoint(&p, &ShardCheckpoint::ShardEnd).await.unwrap();
    let next = plan(&table.list().await.unwrap(), "worker-b", T0);
    // worker-a's finished parent no longer counts, so both children are worker-b's share.
    assert_eq!(shard_ids(&next.take), ["c1", "c2"]);
    table.take(&next.take[0], "worker-b", T0).await.unwrap();
}

#[test]
fn lease_balance_splits_four_shards_two_two_pure() {
    let shards = ["s0", "s1", "s2", "s3"];
    let mut leases: Vec<Lease> =
        shards.iter().map(|s| pure_lease(s, &[], Some("worker-a"), ShardCheckpoint::TrimHorizon)).collect();
    // worker-a has all four; worker-b steals one per round until both have two.
    for round in 0..2 {
        let p = plan(&leases, "worker-b", T0);
        assert!(p.take.is_empty());
        let victim = p.steal.unwrap_or_else(|| panic!("round {round}: worker-b should steal"));
        assert_eq!(victim.owner.as_deref(), Some("worker-a"));
        let l = leases.iter_mut().find(|l| l.shard_id == victim.shard_id).unwrap();
        l.owner = Some("worker-b".into());
    }
    assert_eq!(plan(&leases, "worker-b", T0), Default::default());
    assert_eq!(plan(&leases, "worker-a", T0), Default::default());

    // Nobody owns anything yet: the first worker takes everything it sees as its share.
    let fresh: Vec<Lease> = shards.iter().map(|s| pure_lease(s, &[], None, ShardCheckpoint::TrimHorizon)).collect();
    assert_eq!(plan(&fresh, "worker-a", T0).take.len(), 4);
    // Five shards, two workers: 3/2 is balanced, no stealing.
    let mut five = leases.clone();
    five.push(pure_lease("s4", &[], Some("worker-a"), ShardCheckpoint::TrimHorizon));
    assert_eq!(plan(&five, "worker-b", T0), Default::default());
}

/// Two workers over four shards through the real table, one round every second of
/// simulated time: worker-a starts alone and takes all four, worker-b joins and steals
/// until they hold two each; then nothing moves.
#[tokio::test]
async fn lease_balance_splits_four_shards_two_two() {
    let table = table_with(&[("s0", &[]), ("s1", &[]), ("s2", &[]), ("s3", &[])]).await;
    let workers = ["worker-a", "worker-b"];
    let mut held: BTreeMap<&str, Vec<Lease>> = workers.iter().map(|w| (*w, Vec::new())).collect();
    let mut now = T0;
    let mut steals = 0;
    let mut stable_rounds = 0;
    for round in 0..20 {
        let active: &[&str] = if round == 0 { &workers[..1] } else { &workers };
        let mut moved = false;
        for &w in active {
            // Renew what we hold; a lost lease is dropped (it was stolen).
            let mut kept = Vec::new();
            for l in std::mem::take(held.get_mut(w).unwrap()) {
                match table.renew(&l, now).await {
                    Ok(l) => kept.push(l),
                    Err(LeaseError::LeaseLost { .. }) => moved = true,
                    Err(e) => panic!("{w} renew: {e}"),
                }
            }
            let p = plan(&table.list().await.unwrap(), w, now);
            for l in &p.take {
                match table.take(l, w, now).await {
                    Ok(l) => {
                        kept.push(l);
                        moved = true;
                    }
                    Err(LeaseError::Contended { .. }) => {}
                    Err(e) => panic!("{w} take: {e}"),
                }
            }
            if let Some(victim) = &p.steal {
                let stolen = table.steal(victim, w, now).await.unwrap();
                assert!(stolen.start_after_ms > now, "the victim's lease was still running");
                kept.push(stolen.lease);
                steals += 1;
                moved = true;
            }
            held.insert(w, kept);
            now += 1_000;
        }

        // A victim still has a stolen lease in memory until its next renew, but only the
        // table's current owner holds a copy that can write (owner and counter match).
        let leases = table.list().await.unwrap();
        for l in &leases {
            let current = held.values().flatten().filter(|h| h.shard_id == l.shard_id);
            let writable = current.filter(|h| h.owner == l.owner && h.lease_counter == l.lease_counter).count();
            assert!(writable <= 1, "{} has {writable} writable holders", l.shard_id);
        }
        stable_rounds = if moved { 0 } else { stable_rounds + 1 };
        if stable_rounds == 3 {
            break;
        }
    }
    let counts: Vec<usize> = held.values().map(Vec::len).collect();
    assert_eq!(counts, [2, 2], "held: {held:?}");
    assert_eq!(stable_rounds, 3, "no convergence");
    assert_eq!(steals, 2);
}
