//! Per-key ordered delivery through a sink that fails per item and may reorder within a
//! request (Kinesis PutRecords, SQS SendMessageBatch), with progress marks behind it.
//!
//! Guarantees:
//! - **At most one item per key in flight.** An item is handed out only when no earlier
//!   item of its key is unacknowledged, so resending a failed item can never let a later
//!   item of the same key overtake it, and a request never holds two items of one key.
//! - **Marks only behind delivery.** Items and marks (a commit position, a shard sequence
//!   number) keep their order; [`OrderedQueue::pop_done`] releases a mark only when every
//!   item before it was delivered (or given up on by the caller), so a checkpoint taken
//!   from a mark never runs ahead of the sink.
//! - **Groups keep a key's order.** [`OrderedQueue::take_groups`] hands out a key's head
//!   together with the items queued right behind it, as one unit (one aggregated Kinesis
//!   record, written atomically); nothing else of the key goes out until the whole group is
//!   acknowledged, and a failed group is handed out again as it was.
//! - **Merging never lets a mark pass.** [`OrderedQueue::merge_into_last`] folds a new item
//!   into its key's newest item while that one waits (not handed out); the marks queued
//!   after either stay behind the merged item until it is delivered.
//! - **Cost independent of a key's backlog.** Only the oldest undelivered item of each key
//!   can be handed out; those heads are kept in ticket order ([`OrderedQueue::take_batch`]
//!   visits heads only), and each key's later items wait in its own FIFO. A row changed
//!   20,000 times costs the same per change as 20,000 rows changed once (O(log keys)).

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    InFlight,
    Done,
}

enum Entry<T, M> {
    Item { key: String, size: usize, item: T },
    Mark(M),
}

struct Slot<T, M> {
    entry: Entry<T, M>,
    state: State,
}

/// Identifies an item handed out by [`OrderedQueue::take_batch`].
pub type Ticket = u64;

pub struct OrderedQueue<T, M> {
    slots: VecDeque<Slot<T, M>>,
    /// Ticket of `slots[0]`.
    base: Ticket,
    pending: usize,
    undelivered_bytes: usize,
    /// Per key, its undelivered items (pending or in flight), oldest first.
    keys: FxHashMap<String, VecDeque<Ticket>>,
    /// Heads of `keys` that are pending: the items that may be handed out, in queue order.
    ready: BTreeSet<Ticket>,
    /// Ready heads looked at by `take_batch` so far (the cost the tests bound).
    #[cfg(test)]
    visited: usize,
}

impl<T, M> Default for OrderedQueue<T, M> {
    fn default() -> Self {
        Self {
            slots: VecDeque::new(),
            base: 0,
            pending: 0,
            undelivered_bytes: 0,
            keys: FxHashMap::default(),
            ready: BTreeSet::new(),
            #[cfg(test)]
            visited: 0,
        }
    }
}

impl<T: Clone, M> OrderedQueue<T, M> {
    /// Queues an item of `key`, `size` bytes as the sink counts them.
    pub fn push(&mut self, key: String, size: usize, item: T) {
        let ticket = self.base + self.slots.len() as Ticket;
        self.pending += 1;
        self.undelivered_bytes += size;
        // A key with a backlog (the hot case) needs no copy of its text.
        match self.keys.get_mut(key.as_str()) {
            Some(waiting) => waiting.push_back(ticket),
            None => {
                self.keys.insert(key.clone(), VecDeque::from([ticket]));
                self.ready.insert(ticket);
            }
        }
        self.slots.push_back(Slot { entry: Entry::Item { key, size, item }, state: State::Pending });
    }

    /// Offers a new item of `key` to `merge`, which may fold it into the key's newest queued
    /// item if that one is still pending (not handed out), returning the merged item's size.
    /// `true` when merged: the new item needs no push of its own.
    pub fn merge_into_last(&mut self, key: &str, merge: impl FnOnce(&mut T) -> Option<usize>) -> bool {
        let Some(&last) = self.keys.get(key).and_then(VecDeque::back) else { return false };
        let slot = &mut self.slots[(last - self.base) as usize];
        if slot.state != State::Pending {
            return false;
        }
        let Entry::Item { size, item, .. } = &mut slot.entry else { return false };
        match merge(item) {
            Some(new_size) => {
                self.undelivered_bytes = self.undelivered_bytes - *size + new_size;
                *size = new_size;
                true
            }
            None => false,
        }
    }

    /// Queues a progress mark behind everything queued so far.
    pub fn push_mark(&mut self, mark: M) {
        self.slots.push_back(Slot { entry: Entry::Mark(mark), state: State::Done });
    }

    /// Items and marks held (delivered ones leave with [`Self::pop_done`]).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Items waiting to be handed out (ready or waiting for their key).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Bytes of items not delivered yet (pending and in flight).
    pub fn undelivered_bytes(&self) -> usize {
        self.undelivered_bytes
    }

    /// Hands out up to `max_items` / `max_bytes` of pending items in queue order, at most
    /// one per key and none whose key has an earlier unacknowledged item, among the first
    /// `window` slots. `compatible(first, other)` restricts the batch (e.g. to the first
    /// item's destination queue).
    pub fn take_batch(
        &mut self,
        max_items: usize,
        max_bytes: usize,
        window: usize,
        compatible: impl Fn(&T, &T) -> bool,
    ) -> Vec<(Ticket, T)> {
        let limit = self.base.saturating_add(window as Ticket);
        let mut picked: Vec<Ticket> = Vec::new();
        let mut bytes = 0usize;
        {
            let mut first: Option<&T> = None;
            for &ticket in self.ready.range(..limit) {
                #[cfg(test)]
                {
                    self.visited += 1;
                }
                let Entry::Item { size, item, .. } = &self.slots[(ticket - self.base) as usize].entry else { continue };
                if first.is_some_and(|f| !compatible(f, item)) {
                    continue;
                }
                if picked.len() == max_items || (bytes + size > max_bytes && !picked.is_empty()) {
                    break;
                }
                bytes += size;
                first.get_or_insert(item);
                picked.push(ticket);
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for ticket in picked {
            self.ready.remove(&ticket);
            let slot = &mut self.slots[(ticket - self.base) as usize];
            slot.state = State::InFlight;
            self.pending -= 1;
            if let Entry::Item { item, .. } = &slot.entry {
                out.push((ticket, item.clone()));
            }
        }
        out
    }

    /// Hands out groups: for each ready key (in queue order, among the first `window`
    /// slots), its head and up to `per_key - 1` further items of the key queued behind it,
    /// at most `group_bytes` together (the head always goes); at most `max_groups` groups and
    /// `max_bytes` in all. Each group is one unit for the sink: complete its items in the
    /// order given, all with the same outcome.
    pub fn take_groups(
        &mut self,
        max_groups: usize,
        max_bytes: usize,
        window: usize,
        per_key: usize,
        group_bytes: usize,
    ) -> Vec<Vec<(Ticket, T)>> {
        let limit = self.base.saturating_add(window as Ticket);
        let mut groups: Vec<Vec<Ticket>> = Vec::new();
        let mut bytes = 0usize;
        for &head in self.ready.range(..limit) {
            if groups.len() == max_groups {
                break;
            }
            let Entry::Item { key, .. } = &self.slots[(head - self.base) as usize].entry else { continue };
            let mut group = Vec::new();
            let mut group_size = 0usize;
            // The key's head is ready, so every item of the key is pending.
            for &ticket in self.keys.get(key.as_str()).into_iter().flatten().take(per_key.max(1)) {
                let Entry::Item { size, .. } = &self.slots[(ticket - self.base) as usize].entry else { continue };
                if !group.is_empty() && group_size + size > group_bytes {
                    break;
                }
                group_size += size;
                group.push(ticket);
            }
            if bytes + group_size > max_bytes && !groups.is_empty() {
                break;
            }
            bytes += group_size;
            groups.push(group);
        }
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            self.ready.remove(&group[0]);
            let mut items = Vec::with_capacity(group.len());
            for ticket in group {
                let slot = &mut self.slots[(ticket - self.base) as usize];
                slot.state = State::InFlight;
                self.pending -= 1;
                if let Entry::Item { item, .. } = &slot.entry {
                    items.push((ticket, item.clone()));
                }
            }
            out.push(items);
        }
        out
    }

    /// Records the outcome of a handed-out item: delivered (or given up on and handled by
    /// the caller, e.g. dead-lettered), or to be sent again.
    pub fn complete(&mut self, ticket: Ticket, delivered: bool) {
        let Some(slot) = ticket.checked_sub(self.base).and_then(|i| self.slots.get_mut(i as usize)) else { return };
        let Entry::Item { key, size, .. } = &slot.entry else { return };
        if slot.state != State::InFlight {
            return;
        }
        let waiting = self.keys.get_mut(key.as_str());
        if !delivered {
            slot.state = State::Pending;
            self.pending += 1;
            // Its key's head is ready again, before any later item of the key; the rest of a
            // failed group waits behind it, as before.
            if waiting.is_some_and(|w| w.front() == Some(&ticket)) {
                self.ready.insert(ticket);
            }
            return;
        }
        slot.state = State::Done;
        self.undelivered_bytes = self.undelivered_bytes.saturating_sub(*size);
        if let Some(waiting) = waiting {
            if waiting.front() == Some(&ticket) {
                waiting.pop_front();
            }
            match waiting.front() {
                // The next item of a group in flight is not ready: it is out already.
                Some(&next) => {
                    if self.slots[(next - self.base) as usize].state == State::Pending {
                        self.ready.insert(next);
                    }
                }
                None => {
                    self.keys.remove(key.as_str());
                }
            }
        }
    }

    /// The key with the most undelivered items, and how many (O(keys): for periodic metrics).
    pub fn deepest_key(&self) -> Option<(&str, usize)> {
        self.keys.iter().map(|(k, q)| (k.as_str(), q.len())).max_by_key(|(_, n)| *n)
    }

    /// The key of the oldest undelivered item: the one the next mark (checkpoint) waits for.
    pub fn oldest_undelivered_key(&self) -> Option<&str> {
        self.slots.iter().find_map(|slot| match &slot.entry {
            Entry::Item { key, .. } if slot.state != State::Done => Some(key.as_str()),
            _ => None,
        })
    }

    /// Undelivered items of `key`.
    pub fn backlog_of(&self, key: &str) -> usize {
        self.keys.get(key).map_or(0, VecDeque::len)
    }

    /// Removes the delivered front of the queue and returns the marks it passed, oldest
    /// first: each is now durable.
    pub fn pop_done(&mut self) -> Vec<M> {
        let mut marks = Vec::new();
        while self.slots.front().is_some_and(|s| s.state == State::Done) {
            let slot = self.slots.pop_front().expect("front exists");
            self.base += 1;
            if let Entry::Mark(m) = slot.entry {
                marks.push(m);
            }
        }
        marks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> OrderedQueue<(&'static str, u32), u32> {
        OrderedQueue::default()
    }

    #[test]
    fn one_item_per_key_in_flight_and_failed_items_go_first_again() {
        let mut q = q();
        q.push("a".into(), 1, ("a", 1));
        q.push("b".into(), 1, ("b", 1));
        q.push("a".into(), 1, ("a", 2));
        q.push_mark(10);
        let batch = q.take_batch(10, 100, 100, |_, _| true);
        assert_eq!(batch.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [("a", 1), ("b", 1)]);
        assert!(q.take_batch(10, 100, 100, |_, _| true).is_empty(), "a:2 waits for a:1");
        q.complete(batch[0].0, false); // a:1 failed
        q.complete(batch[1].0, true);
        let again = q.take_batch(10, 100, 100, |_, _| true);
        assert_eq!(again.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [("a", 1)], "a:1 again, never a:2 first");
        assert!(q.pop_done().is_empty(), "nothing durable while a:1 is out");
        q.complete(again[0].0, true);
        let last = q.take_batch(10, 100, 100, |_, _| true);
        assert_eq!(last[0].1, ("a", 2));
        q.complete(last[0].0, true);
        assert_eq!(q.pop_done(), [10]);
        assert!(q.is_empty() && q.pending() == 0 && q.undelivered_bytes() == 0);
    }

    #[test]
    fn batches_respect_limits_and_compatibility() {
        let mut q = q();
        for i in 0..5 {
            q.push(format!("k{i}"), 40, (if i % 2 == 0 { "q1" } else { "q2" }, i));
        }
        let b = q.take_batch(10, 100, 100, |a, b| a.0 == b.0);
        assert_eq!(b.iter().map(|(_, i)| i.1).collect::<Vec<_>>(), [0, 2], "same destination, 80 of 100 bytes");
        let b = q.take_batch(1, 100, 100, |a, b| a.0 == b.0);
        assert_eq!(b.len(), 1);
        // An item larger than the byte limit still goes out alone.
        let mut big = OrderedQueue::<u8, ()>::default();
        big.push("x".into(), 1000, 1);
        assert_eq!(big.take_batch(10, 100, 100, |_, _| true).len(), 1);
    }

    /// A key with 20,000 queued items: each round hands out its head after visiting one
    /// ready item, however long the key's backlog; other keys are not held up by it.
    #[test]
    fn a_hot_key_costs_the_same_per_item_as_many_cold_ones() {
        let mut q = q();
        for i in 0..20_000 {
            q.push("hot".into(), 1, ("hot", i));
        }
        q.push("cold".into(), 1, ("cold", 0));
        let first = q.take_batch(10, 1000, usize::MAX, |_, _| true);
        assert_eq!(first.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [("hot", 0), ("cold", 0)], "cold is not held up");
        for (t, _) in &first {
            q.complete(*t, true);
        }
        q.visited = 0;
        for i in 1..20_000 {
            let batch = q.take_batch(10, 1000, usize::MAX, |_, _| true);
            assert_eq!(batch.iter().map(|(_, item)| *item).collect::<Vec<_>>(), [("hot", i)]);
            q.complete(batch[0].0, true);
            q.pop_done();
        }
        assert_eq!(q.visited, 19_999, "one ready item visited per round");
        assert!(q.is_empty() && q.pending() == 0);
    }

    #[test]
    fn the_deepest_key_and_the_key_holding_the_marks_back_are_known() {
        let mut q = q();
        q.push("a".into(), 1, ("a", 0));
        for i in 0..3 {
            q.push("b".into(), 1, ("b", i));
        }
        q.push_mark(1);
        assert_eq!(q.deepest_key(), Some(("b", 3)));
        assert_eq!(q.oldest_undelivered_key(), Some("a"));
        let batch = q.take_batch(10, 100, 100, |_, _| true);
        q.complete(batch[0].0, true); // a delivered
        q.pop_done();
        assert_eq!((q.oldest_undelivered_key(), q.backlog_of("b"), q.backlog_of("a")), (Some("b"), 3, 0));
    }

    #[test]
    fn groups_carry_a_keys_queued_items_in_order_and_fail_as_one() {
        let mut q = q();
        for i in 0..5 {
            q.push("hot".into(), 10, ("hot", i));
        }
        q.push("cold".into(), 10, ("cold", 0));
        q.push_mark(1);
        q.push("hot".into(), 10, ("hot", 5));
        let groups = q.take_groups(10, 1000, 100, 3, 1000);
        let items = |g: &Vec<(Ticket, (&'static str, u32))>| g.iter().map(|(_, i)| *i).collect::<Vec<_>>();
        assert_eq!(groups.len(), 2);
        assert_eq!(items(&groups[0]), [("hot", 0), ("hot", 1), ("hot", 2)], "per_key = 3");
        assert_eq!(items(&groups[1]), [("cold", 0)]);
        assert!(q.take_groups(10, 1000, 100, 3, 1000).is_empty(), "nothing of hot while its group is out");
        // The group fails: handed out again as it was, never hot:3 first.
        for (t, _) in &groups[0] {
            q.complete(*t, false);
        }
        q.complete(groups[1][0].0, true);
        let again = q.take_groups(10, 1000, 100, 3, 1000);
        assert_eq!(again.iter().map(items).collect::<Vec<_>>(), [vec![("hot", 0), ("hot", 1), ("hot", 2)]]);
        for (t, _) in &again[0] {
            q.complete(*t, true);
        }
        assert_eq!(q.pop_done(), Vec::<u32>::new(), "hot:3 and hot:4 come before the mark");
        // Byte limit per group: 25 bytes hold two items of 10.
        let next = q.take_groups(10, 1000, 100, 10, 25);
        assert_eq!(next.iter().map(items).collect::<Vec<_>>(), [vec![("hot", 3), ("hot", 4)]]);
        for (t, _) in &next[0] {
            q.complete(*t, true);
        }
        assert_eq!(q.pop_done(), [1]);
        let last = q.take_groups(10, 1000, 100, 10, 25);
        assert_eq!(last.iter().map(items).collect::<Vec<_>>(), [vec![("hot", 5)]]);
        q.complete(last[0][0].0, true);
        q.pop_done();
        assert!(q.is_empty() && q.pending() == 0 && q.undelivered_bytes() == 0);
    }

    #[test]
    fn merged_items_hold_back_the_marks_of_what_they_absorbed() {
        let mut q = q();
        q.push("a".into(), 1, ("a", 1));
        q.push_mark(1);
        let out = q.take_batch(10, 100, 100, |_, _| true); // a:1 in flight
        assert!(!q.merge_into_last("a", |_| Some(1)), "an item in flight takes no merge");
        q.push("a".into(), 1, ("a", 2));
        q.push_mark(2);
        assert!(q.merge_into_last("a", |item| {
            item.1 = 3;
            Some(5)
        }));
        q.push_mark(3);
        assert!(!q.merge_into_last("b", |_| Some(1)), "no item of b");
        assert_eq!(q.undelivered_bytes(), 6);
        q.complete(out[0].0, true);
        assert_eq!(q.pop_done(), [1], "marks 2 and 3 wait for the merged item");
        let merged = q.take_batch(10, 100, 100, |_, _| true);
        assert_eq!(merged.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [("a", 3)]);
        q.complete(merged[0].0, true);
        assert_eq!(q.pop_done(), [2, 3]);
        assert!(q.is_empty() && q.undelivered_bytes() == 0);
    }

    #[test]
    fn the_window_bounds_how_far_ahead_items_are_handed_out() {
        let mut q = q();
        for i in 0..10 {
            q.push(format!("k{i}"), 1, ("k", i));
        }
        let b = q.take_batch(100, 100, 3, |_, _| true);
        assert_eq!(b.iter().map(|(_, i)| i.1).collect::<Vec<_>>(), [0, 1, 2]);
    }
}
