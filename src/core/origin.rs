//! The by-origin index: per originating invocation, the slot of every
//! replica carrying a stamp of that invocation, by the stamp's originating
//! USN. Backsync reads it to answer "what did my lost instance write
//! after USN x" at a cost that follows the answer, not the table.
//!
//! Each invocation's entries are a [`ChunkLog`]: 8 bytes an entry, a clone
//! (a backup, a restore) copies a pointer per group of chunks and the
//! newest chunk, and a write after it copies only the group's pointers and
//! the chunk written (backsync brings a restored server's newest own writes
//! back: mostly appends to the newest chunk).

use std::collections::BTreeMap;

use crate::core::chunklog::{After, ChunkLog, EMPTY, Slot};
use crate::core::ids::{InvocationId, Usn};

/// Slots by (originating invocation, originating USN).
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginIndex {
    by_invocation: BTreeMap<InvocationId, ChunkLog>,
}

impl OriginIndex {
    /// Maps the stamp (`inv`, `usn`) to slot `s`, replacing the slot it had
    /// (after a USN rollback two objects can carry one stamp; the last
    /// stored is the one found). Entries are never taken out one by one:
    /// the table skips those whose slot no longer carries the stamp, and
    /// drops them in bulk ([`OriginIndex::retain`]).
    pub(crate) fn insert(&mut self, inv: InvocationId, usn: Usn, s: Slot) {
        self.by_invocation.entry(inv).or_default().insert(usn, s);
    }

    /// Keeps only the entries that pass `keep`, each log rebuilt by
    /// appends; an invocation left without entries goes.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(InvocationId, Usn, Slot) -> bool) {
        self.by_invocation.retain(|&inv, log| {
            let mut kept = ChunkLog::default();
            for (u, s) in log.iter().filter(|&(u, s)| keep(inv, u, s)) {
                kept.insert(u, s);
            }
            *log = kept;
            !log.is_empty()
        });
    }

    /// The stamps of `inv` with an originating USN above `after`, in USN
    /// order, with their slots.
    pub(crate) fn after(&self, inv: InvocationId, after: Usn) -> After<'_> {
        // One iterator type whether or not `inv` has a log: a flattened
        // `Option` costs the answer's loop a few nanoseconds an entry.
        self.by_invocation.get(&inv).unwrap_or(&EMPTY).after(after)
    }

    /// The highest originating USN of `inv` whose entry passes `keep`.
    pub(crate) fn last_where(
        &self,
        inv: InvocationId,
        keep: impl FnMut(Usn, Slot) -> bool,
    ) -> Option<Usn> {
        self.by_invocation.get(&inv)?.last_where(keep)
    }

    /// Whether no stamp is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_invocation.is_empty()
    }

    /// The log of one invocation (for tests of sharing).
    #[cfg(test)]
    pub(crate) fn log(&self, inv: InvocationId) -> Option<&ChunkLog> {
        self.by_invocation.get(&inv)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    type Model = BTreeMap<(u64, u64), Slot>;

    /// What the index must answer for one invocation, from the model.
    fn want(m: &Model, inv: u64, after: u64) -> Vec<(u64, Slot)> {
        m.range((inv, after.saturating_add(1))..=(inv, u64::MAX))
            .filter(|((_, u), _)| *u > after)
            .map(|((_, u), s)| (*u, *s))
            .collect()
    }

    fn got(x: &OriginIndex, inv: u64, after: u64) -> Vec<(u64, Slot)> {
        x.after(InvocationId(inv), Usn(after))
            .map(|(u, s)| (u.0, s))
            .collect()
    }

    #[test]
    fn a_reused_stamp_maps_to_the_last_slot_and_empty_logs_go() {
        let mut x = OriginIndex::default();
        x.insert(InvocationId(1), Usn(5), 1);
        x.insert(InvocationId(1), Usn(5), 2);
        x.insert(InvocationId(2), Usn(5), 3);
        assert_eq!(got(&x, 1, 0), vec![(5, 2)]);
        x.retain(|inv, _, _| inv == InvocationId(2));
        assert!(
            x.log(InvocationId(1)).is_none(),
            "an invocation without entries goes"
        );
        assert_eq!(got(&x, 2, 0), vec![(5, 3)]);
        x.retain(|_, _, _| false);
        assert!(x.is_empty());
    }

    #[test]
    fn invocations_are_apart_and_after_excludes_its_usn() {
        let mut x = OriginIndex::default();
        for u in 1..=5u64 {
            x.insert(InvocationId(1), Usn(u), u as Slot);
            x.insert(InvocationId(2), Usn(10 * u), 10 + u as Slot);
        }
        assert_eq!(got(&x, 1, 3), vec![(4, 4), (5, 5)]);
        assert_eq!(got(&x, 2, 30), vec![(40, 14), (50, 15)]);
        assert_eq!(got(&x, 3, 0), vec![]);
        assert_eq!(got(&x, 1, u64::MAX), vec![], "no overflow past the top");
        assert_eq!(x.last_where(InvocationId(2), |_, _| true), Some(Usn(50)));
        assert_eq!(
            x.last_where(InvocationId(2), |u, _| u < Usn(50)),
            Some(Usn(40))
        );
        assert_eq!(x.last_where(InvocationId(3), |_, _| true), None);
    }

    #[test]
    fn a_write_after_a_clone_copies_only_its_chunk() {
        let inv = InvocationId(7);
        let mut x = OriginIndex::default();
        let n = 10 * crate::core::chunklog::CHUNK as u64;
        for u in 1..=n {
            x.insert(inv, Usn(u), u as Slot);
        }
        let backup = x.clone();
        let chunks = x.log(inv).unwrap().chunks();
        assert_eq!(chunks, 10);
        // A new write of the same invocation (appended: a new chunk), and
        // one stamp moved to another slot in chunk 0. The last chunk was
        // each copy's own (the log's tail) when the backup was taken; the
        // others stay shared but chunk 0.
        x.insert(inv, Usn(n + 1), 0);
        x.insert(inv, Usn(1), 2);
        let log = x.log(inv).unwrap();
        assert_eq!(log.shared_with(backup.log(inv).unwrap()), chunks - 2);
        assert_eq!(got(&backup, 7, n - 1), vec![(n, n as Slot)]);
        assert_eq!(got(&backup, 7, 0).len(), n as usize, "the backup as taken");
        assert_eq!(got(&x, 7, n - 1), vec![(n, n as Slot), (n + 1, 0)]);
        assert_eq!(got(&x, 7, 0).len(), n as usize + 1);
        assert_eq!(got(&x, 7, 0)[0], (1, 2));
        assert_eq!(got(&backup, 7, 0)[0], (1, 1));
    }

    /// One change to the index.
    #[derive(Debug, Clone)]
    enum Op {
        /// A new stamp past the invocation's highest.
        Append(u64, u64),
        /// A stamp at any USN from 1 to just past the highest (stamps
        /// start at USN 1).
        Insert(u64, u64),
        /// Keeps the entries of other slots.
        Drop(Slot),
        Clone,
    }

    fn op() -> impl Strategy<Value = Op> {
        let inv = 1..4u64;
        prop_oneof![
            6 => (inv.clone(), 1..3u64).prop_map(|(i, d)| Op::Append(i, d)),
            2 => (inv.clone(), any::<u64>()).prop_map(|(i, x)| Op::Insert(i, x)),
            1 => (0..4 as Slot).prop_map(Op::Drop),
            1 => Just(Op::Clone),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_a_btreemap_and_clones_stay_as_taken(
            ops in prop::collection::vec(op(), 1..2000),
        ) {
            let mut x = OriginIndex::default();
            let mut m = Model::new();
            let mut clones: Vec<(OriginIndex, Model)> = Vec::new();
            for (k, o) in ops.into_iter().enumerate() {
                let top = |m: &Model, i: u64| {
                    m.range((i, 0)..=(i, u64::MAX)).next_back().map_or(0, |((_, u), _)| *u)
                };
                // Slots repeat, so that a drop takes some of each log.
                let s = (k % 4) as Slot;
                match o {
                    Op::Append(i, d) => {
                        let u = top(&m, i) + d;
                        x.insert(InvocationId(i), Usn(u), s);
                        m.insert((i, u), s);
                    }
                    Op::Insert(i, r) => {
                        let u = 1 + r % (top(&m, i) + 1);
                        x.insert(InvocationId(i), Usn(u), s);
                        m.insert((i, u), s);
                    }
                    Op::Drop(s) => {
                        x.retain(|_, _, t| t != s);
                        m.retain(|_, t| *t != s);
                    }
                    Op::Clone => clones.push((x.clone(), m.clone())),
                }
            }
            clones.push((x, m));
            for (x, m) in &clones {
                prop_assert_eq!(x.is_empty(), m.is_empty());
                for i in 0..5u64 {
                    if let Some(log) = x.log(InvocationId(i)) {
                        log.check();
                    }
                    let all = want(m, i, 0);
                    prop_assert_eq!(got(x, i, 0), all.clone());
                    prop_assert_eq!(
                        x.last_where(InvocationId(i), |_, s| s != 1).map(|u| u.0),
                        all.iter().rev().find(|e| e.1 != 1).map(|e| e.0)
                    );
                    if let Some((mid, _)) = all.get(all.len() / 2) {
                        prop_assert_eq!(got(x, i, *mid), want(m, i, *mid));
                    }
                }
            }
        }
    }
}
