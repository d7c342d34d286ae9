//! A sorted map from USN to slot, in chunks shared copy-on-write: the
//! layout of the table's by-USN index and of each invocation's part of the
//! by-origin index (docs/PERFORMANCE.md).
//!
//! Both are written mostly in USN order (local USNs only grow; a partner
//! sends an invocation's writes roughly in the order it made them), so the
//! common insert is an append to the last chunk, which the log owns
//! outright (no reference count to check). An entry costs 8 bytes (a
//! 4-byte offset from its chunk's first USN and a 4-byte slot, side by
//! side) instead of a B-tree node's share. The other chunks come in small
//! groups, both behind `triomphe::Arc` (its uniqueness check a plain
//! load): a clone copies a pointer per group (about 500 for a million
//! entries) and the last chunk, and a write after a clone copies only the
//! group's chunk pointers and the chunk it lands in.

use triomphe::Arc;

use smallvec::{SmallVec, smallvec};

use crate::core::ids::Usn;

/// A replica's place in the table's slab.
pub(crate) type Slot = u32;

/// Entries per chunk: the first write to a shared chunk copies about 2 KB.
pub(crate) const CHUNK: usize = 256;

/// The widest span of USNs one chunk holds: entries are 4-byte offsets
/// from the chunk's first USN.
const SPAN: u64 = u32::MAX as u64;

/// One entry: its USN as an offset from its chunk's first, and its slot,
/// side by side: finding an entry reads one cache line, not two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ent {
    off: u32,
    slot: Slot,
}

/// One run of entries, in USN order: entry `i` is at USN
/// `base + ents[i].off`, and `ents[0].off` is 0.
#[derive(Debug, Clone, Default)]
struct Chunk {
    base: Usn,
    ents: Vec<Ent>,
}

impl Chunk {
    fn one(usn: Usn, s: Slot) -> Chunk {
        Chunk {
            base: usn,
            ents: vec![Ent { off: 0, slot: s }],
        }
    }

    fn len(&self) -> usize {
        self.ents.len()
    }

    fn usn(&self, i: usize) -> Usn {
        Usn(self.base.0 + u64::from(self.ents[i].off))
    }

    fn last(&self) -> Usn {
        self.usn(self.len() - 1)
    }

    /// How many entries lie at or below `usn` (`inclusive`) or below it.
    fn rank(&self, usn: Usn, inclusive: bool) -> usize {
        let Some(d) = usn.0.checked_sub(self.base.0) else {
            return 0;
        };
        if d > SPAN {
            return self.len();
        }
        let below = |e: &Ent| {
            if inclusive {
                u64::from(e.off) <= d
            } else {
                u64::from(e.off) < d
            }
        };
        // Interpolation first: a by-USN chunk's USNs are mostly
        // consecutive (every local write takes the next, and a stale entry
        // stays until a rebuild), so the guess is usually the entry or next
        // to it, one or two cache lines where a binary search reads about
        // eight in a row. A rebuilt chunk's USNs, or an invocation's
        // originating ones, are spread about evenly, so the guess is still
        // near: gallop from it to bracket the answer, then search only the
        // bracket.
        let (n, e) = (self.len(), &self.ents);
        if n == 0 {
            return 0;
        }
        let last = u64::from(e[n - 1].off);
        if d >= last {
            return if below(&e[n - 1]) { n } else { n - 1 };
        }
        let i = (d * (n as u64 - 1) / last.max(1)) as usize;
        if below(&e[i]) {
            // Past i; e[n - 1] is not below (d < last), which ends the gallop.
            let (mut lo, mut step) = (i + 1, 1);
            loop {
                let probe = (lo + step - 1).min(n - 1);
                if !below(&e[probe]) {
                    return lo + e[lo..probe].partition_point(below);
                }
                (lo, step) = (probe + 1, step * 2);
            }
        } else {
            // At or before i, which is not below.
            let (mut hi, mut step) = (i, 1);
            loop {
                if hi == 0 {
                    return 0;
                }
                let probe = hi.saturating_sub(step);
                if below(&e[probe]) {
                    return probe + 1 + e[probe + 1..hi].partition_point(below);
                }
                (hi, step) = (probe, step * 2);
            }
        }
    }

    /// The offset of `usn` when it lies in this chunk's span.
    fn offset(&self, usn: Usn) -> Option<u32> {
        let d = usn.0.checked_sub(self.base.0)?;
        u32::try_from(d).ok()
    }

    /// Makes the first entry's USN the base again (the upper half of a
    /// split).
    fn rebase(&mut self) {
        let d = self.ents[0].off;
        for e in &mut self.ents {
            e.off -= d;
        }
        self.base = Usn(self.base.0 + u64::from(d));
    }

    /// Maps offset `o` (within the span, at or past the first entry) to
    /// `s`, replacing the entry there or keeping the chunk sorted.
    fn put(&mut self, o: u32, s: Slot) {
        let i = self.rank(Usn(self.base.0 + u64::from(o)), false);
        if let Some(e) = self.ents.get_mut(i)
            && e.off == o
        {
            e.slot = s;
            return;
        }
        self.ents.insert(i, Ent { off: o, slot: s });
    }

    /// The upper half of a chunk grown to twice [`CHUNK`] entries.
    fn split(&mut self) -> Option<Chunk> {
        if self.len() < 2 * CHUNK {
            return None;
        }
        let mut upper = Chunk {
            base: self.base,
            ents: self.ents.split_off(CHUNK),
        };
        upper.rebase();
        // The lower half keeps the capacity it grew to otherwise.
        self.ents.shrink_to_fit();
        Some(upper)
    }
}

/// Chunks per group: a clone copies a pointer per group, and the first
/// write to a shared group copies its chunk pointers (a reference to each
/// chunk), so a clone and a scattered write after it both stay small.
#[cfg(not(test))]
const GROUP: usize = 8;
/// Small in tests, so that the model tests split and drop groups often.
#[cfg(test)]
const GROUP: usize = 2;

/// A run of chunks in USN order, each behind `Arc`, with each chunk's
/// first USN, both held inline (a group splits before it
/// outgrows them): finding a chunk reads the group's own lines, one
/// dependent cache miss fewer than vectors behind it.
#[derive(Debug, Clone, Default)]
struct Group {
    chunks: SmallVec<[Arc<Chunk>; 2 * GROUP]>,
    firsts: SmallVec<[Usn; 2 * GROUP]>,
}

impl Group {
    /// The chunk that holds `usn` if any chunk of the group does: the
    /// last whose first USN is at or below it (0 when none is).
    fn chunk_of(&self, usn: Usn) -> usize {
        self.firsts.partition_point(|f| *f <= usn).saturating_sub(1)
    }

    fn new_chunk(&mut self, at: usize, usn: Usn, s: Slot) {
        self.firsts.insert(at, usn);
        self.chunks.insert(at, Arc::new(Chunk::one(usn, s)));
    }

    /// Maps `usn` to `s` where `usn` does not append to the last chunk:
    /// keeps its chunk sorted, splitting it past twice [`CHUNK`]. `usn`
    /// lies before the group's first only in the log's first group.
    fn insert(&mut self, usn: Usn, s: Slot) {
        let ci = self.chunk_of(usn);
        let c = &self.chunks[ci];
        if usn < c.base {
            // Before every entry (`ci` is the first chunk): the chunk
            // takes it as its new base if its span allows.
            if c.last().0 - usn.0 > SPAN {
                return self.new_chunk(0, usn, s);
            }
            let c = Arc::make_mut(&mut self.chunks[ci]);
            let d = u32::try_from(c.base.0 - usn.0).expect("within the span");
            for e in &mut c.ents {
                e.off += d;
            }
            c.ents.insert(0, Ent { off: 0, slot: s });
            c.base = usn;
            self.firsts[ci] = usn;
        } else {
            let Some(o) = c.offset(usn) else {
                // Past the chunk's span, so past all its entries (and
                // before the next chunk's): a chunk of its own.
                return self.new_chunk(ci + 1, usn, s);
            };
            Arc::make_mut(&mut self.chunks[ci]).put(o, s);
        }
        if let Some(upper) = Arc::make_mut(&mut self.chunks[ci]).split() {
            self.firsts.insert(ci + 1, upper.base);
            self.chunks.insert(ci + 1, Arc::new(upper));
        }
    }

    /// Appends a chunk whose entries lie past all of the group's.
    fn push(&mut self, c: Chunk) {
        self.firsts.push(c.base);
        self.chunks.push(Arc::new(c));
    }

    /// The second half of a group grown to twice [`GROUP`] chunks.
    fn split(&mut self) -> Option<Group> {
        (self.chunks.len() >= 2 * GROUP).then(|| Group {
            chunks: self.chunks.drain(GROUP..).collect(),
            firsts: self.firsts.drain(GROUP..).collect(),
        })
    }
}

/// A sorted sequence of chunks in groups, both behind `Arc`, then the
/// newest chunk owned outright: 8 bytes an entry (a 4-byte offset from the
/// chunk's first USN and a 4-byte slot). Appends, the common write, go to
/// that last chunk with no atomic reference count to check; once full it
/// is sealed into the groups. Entries are never removed (the table leaves
/// stale ones and rebuilds a log in bulk); an insert out of USN order
/// replaces the entry at its USN or keeps its chunk sorted
/// and splits it past twice [`CHUNK`] entries, and its group past twice
/// [`GROUP`] chunks. A USN more than 2^32 past a chunk's first starts a
/// chunk of its own. A clone copies a pointer per group and the last
/// chunk (at most 4 KB).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChunkLog {
    groups: Vec<Arc<Group>>,
    /// Each group's first USN: groups are never empty and their USNs all
    /// lie below the next group's first.
    firsts: Vec<Usn>,
    /// The newest entries, all above every group's; empty only in an
    /// empty log (no entry is ever removed).
    tail: Chunk,
}

/// A log with no entries, to iterate where there is no log.
pub(crate) static EMPTY: ChunkLog = ChunkLog {
    groups: Vec::new(),
    firsts: Vec::new(),
    tail: Chunk {
        base: Usn(0),
        ents: Vec::new(),
    },
};

impl ChunkLog {
    /// The group that holds `usn` if any group does: the last whose first
    /// USN is at or below it (0 when none is).
    fn group_of(&self, usn: Usn) -> usize {
        self.firsts.partition_point(|f| *f <= usn).saturating_sub(1)
    }

    /// Whether `usn` belongs in the tail: at or past its first entry, or
    /// anywhere in an empty log.
    fn in_tail(&self, usn: Usn) -> bool {
        self.tail.len() == 0 || usn >= self.tail.base
    }

    /// Moves `c`, whose entries lie past every group's (and below the
    /// tail's), into the groups.
    fn seal(&mut self, c: Chunk) {
        match self.groups.last_mut() {
            Some(g) if g.chunks.len() < GROUP => Arc::make_mut(g).push(c),
            _ => {
                self.firsts.push(c.base);
                self.groups.push(Arc::new(Group {
                    firsts: smallvec![c.base],
                    chunks: smallvec![Arc::new(c)],
                }));
            }
        }
    }

    /// Maps `usn` to `s`, replacing the slot it had.
    pub(crate) fn insert(&mut self, usn: Usn, s: Slot) {
        if self.in_tail(usn) {
            let t = &mut self.tail;
            if t.len() == 0 {
                *t = Chunk::one(usn, s);
                return;
            }
            if t.last() < usn {
                match t.offset(usn) {
                    // The common case: an append.
                    Some(o) if t.len() < CHUNK => t.ents.push(Ent { off: o, slot: s }),
                    // Full, or too far past its first USN: a new tail.
                    _ => {
                        let full = std::mem::replace(t, Chunk::one(usn, s));
                        self.seal(full);
                    }
                }
                return;
            }
            // Between the tail's first and last entries, so within its span.
            let o = t.offset(usn).expect("within the span");
            t.put(o, s);
            if let Some(upper) = t.split() {
                let lower = std::mem::replace(t, upper);
                self.seal(lower);
            }
            return;
        }
        if self.groups.is_empty() {
            // Below a tail that is all there is: the first group.
            return self.seal(Chunk::one(usn, s));
        }
        let gi = self.group_of(usn);
        let g = Arc::make_mut(&mut self.groups[gi]);
        g.insert(usn, s);
        self.firsts[gi] = g.firsts[0];
        if let Some(upper) = g.split() {
            self.firsts.insert(gi + 1, upper.firsts[0]);
            self.groups.insert(gi + 1, Arc::new(upper));
        }
    }

    /// The slot `usn` maps to, if any.
    pub(crate) fn get(&self, usn: Usn) -> Option<Slot> {
        let c = if self.tail.len() > 0 && usn >= self.tail.base {
            &self.tail
        } else {
            let g = self.groups.get(self.group_of(usn))?;
            &g.chunks[g.chunk_of(usn)]
        };
        let i = c.rank(usn, false);
        (i < c.len() && c.usn(i) == usn).then(|| c.ents[i].slot)
    }

    /// Entries with a USN above `from`, in order.
    pub(crate) fn after(&self, from: Usn) -> After<'_> {
        let gi = self.group_of(from);
        let (ci, i) = self.groups.get(gi).map_or((0, 0), |g| {
            let ci = g.chunk_of(from);
            (ci, g.chunks[ci].rank(from, true))
        });
        let tail_from = self.tail.rank(from, true);
        After {
            log: self,
            gi,
            ci,
            // No group: the tail is where the cursor starts.
            i: if self.groups.is_empty() { tail_from } else { i },
            tail_from,
        }
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> After<'_> {
        After {
            log: self,
            gi: 0,
            ci: 0,
            i: 0,
            tail_from: 0,
        }
    }

    /// The highest USN whose entry passes `keep`, walking down from the
    /// top: the cost follows the entries above it, not the log.
    pub(crate) fn last_where(&self, mut keep: impl FnMut(Usn, Slot) -> bool) -> Option<Usn> {
        let chunks = std::iter::once(&self.tail)
            .chain((self.groups.iter().rev()).flat_map(|g| g.chunks.iter().rev().map(|c| &**c)));
        for c in chunks {
            for (i, e) in c.ents.iter().enumerate().rev() {
                if keep(c.usn(i), e.slot) {
                    return Some(c.usn(i));
                }
            }
        }
        None
    }

    /// The highest USN held (tests: the table asks [`ChunkLog::last_where`]).
    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<Usn> {
        (self.tail.len() > 0).then(|| self.tail.last())
    }

    /// Whether no entry is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.tail.len() == 0
    }

    /// Every chunk, in order, the tail last when it holds entries (tests).
    #[cfg(test)]
    fn all_chunks(&self) -> impl Iterator<Item = &Chunk> {
        (self
            .groups
            .iter()
            .flat_map(|g| g.chunks.iter().map(|c| &**c)))
        .chain((self.tail.len() > 0).then_some(&self.tail))
    }

    /// The `i`th chunk (tests).
    #[cfg(test)]
    fn chunk(&self, i: usize) -> &Chunk {
        self.all_chunks().nth(i).expect("a chunk")
    }

    /// How many chunks the log has.
    #[cfg(test)]
    pub(crate) fn chunks(&self) -> usize {
        self.all_chunks().count()
    }

    /// How many of its chunks are the same allocation as `other`'s at the
    /// same position (shared since a clone; the tail never is).
    #[cfg(test)]
    pub(crate) fn shared_with(&self, other: &ChunkLog) -> usize {
        (self.all_chunks().zip(other.all_chunks()))
            .filter(|(a, b)| std::ptr::eq(*a, *b))
            .count()
    }

    /// How many of its groups are the same allocation as `other`'s at the
    /// same position.
    #[cfg(test)]
    pub(crate) fn groups_shared_with(&self, other: &ChunkLog) -> usize {
        (self.groups.iter().zip(&other.groups))
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }

    /// Checks the layout's invariants (for tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        for c in self.all_chunks() {
            assert!(c.len() > 0, "no empty chunk");
            assert_eq!(c.ents[0].off, 0, "the base is the first entry's USN");
            assert!(c.ents.windows(2).all(|w| w[0].off < w[1].off), "sorted");
            assert!(c.len() < 2 * CHUNK);
        }
        for g in &self.groups {
            assert!(!g.chunks.is_empty(), "no empty group");
            assert!(g.chunks.len() < 2 * GROUP);
            let firsts: Vec<Usn> = g.chunks.iter().map(|c| c.base).collect();
            assert_eq!(g.firsts[..], firsts[..]);
        }
        let firsts: Vec<Usn> = self.groups.iter().map(|g| g.firsts[0]).collect();
        assert_eq!(self.firsts, firsts);
        assert!(
            self.tail.len() > 0 || self.groups.is_empty(),
            "the tail is empty only in an empty log"
        );
        let chunks: Vec<&Chunk> = self.all_chunks().collect();
        assert!(
            chunks.windows(2).all(|w| w[0].last() < w[1].base),
            "chunks in order"
        );
    }
}

/// The entries of a [`ChunkLog`] above a USN, in order ([`ChunkLog::after`]):
/// a cursor (group, chunk, entry) rather than nested iterator adaptors, which
/// cost a backsync answer twice as much per entry.
#[derive(Clone)]
pub(crate) struct After<'a> {
    log: &'a ChunkLog,
    /// The group read (`groups.len()`: the tail; past it: done).
    gi: usize,
    /// The chunk read in that group.
    ci: usize,
    /// The next entry of that chunk.
    i: usize,
    /// Where the tail's entries above the USN start.
    tail_from: usize,
}

impl Iterator for After<'_> {
    type Item = (Usn, Slot);

    fn next(&mut self) -> Option<(Usn, Slot)> {
        let groups = &self.log.groups;
        loop {
            let c: &Chunk = match groups.get(self.gi) {
                Some(g) => &g.chunks[self.ci],
                None if self.gi == groups.len() => &self.log.tail,
                None => return None,
            };
            if let Some(e) = c.ents.get(self.i) {
                self.i += 1;
                return Some((Usn(c.base.0 + u64::from(e.off)), e.slot));
            }
            // The next chunk: every entry of those lies above the USN, but
            // the tail's, which starts where the USN puts it.
            self.i = 0;
            match groups.get(self.gi) {
                Some(g) if self.ci + 1 < g.chunks.len() => self.ci += 1,
                _ => {
                    self.gi += 1;
                    self.ci = 0;
                    if self.gi == groups.len() {
                        self.i = self.tail_from;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn all(l: &ChunkLog) -> Vec<(u64, Slot)> {
        l.after(Usn(0)).map(|(u, s)| (u.0, s)).collect()
    }

    #[test]
    fn follows_a_model_through_late_inserts() {
        let mut l = ChunkLog::default();
        let mut model: BTreeMap<u64, Slot> = BTreeMap::new();
        let mut snapshots = Vec::new();
        let mut x = 99u64;
        for step in 0..6000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 10 {
                // Mostly appends, as the protocol writes.
                0..=5 => {
                    let u = model.keys().next_back().map_or(1, |u| u + 1 + x % 3);
                    l.insert(Usn(u), step as Slot);
                    model.insert(u, step as Slot);
                }
                // An older USN, some already held.
                _ => {
                    let u = x % (model.keys().next_back().copied().unwrap_or(0) + 2);
                    l.insert(Usn(u), step as Slot);
                    model.insert(u, step as Slot);
                }
            }
            if step % 1000 == 0 {
                snapshots.push((l.clone(), model.clone()));
            }
        }
        snapshots.push((l, model));
        for (l, model) in &snapshots {
            l.check();
            let top = model.keys().next_back().copied().unwrap_or(0);
            assert_eq!(l.last().map(|u| u.0), model.keys().next_back().copied());
            for from in (0..=top + 1).step_by(37).chain([0, top, top + 1]) {
                let got: Vec<(u64, Slot)> = l.after(Usn(from)).map(|(u, s)| (u.0, s)).collect();
                let want: Vec<(u64, Slot)> =
                    model.range(from + 1..).map(|(u, s)| (*u, *s)).collect();
                assert_eq!(got, want, "after {from}");
            }
        }
    }

    #[test]
    fn replaces_an_entry_at_an_existing_usn() {
        let mut l = ChunkLog::default();
        for u in [2u64, 4, 6, 8, 10] {
            l.insert(Usn(u), u as Slot);
        }
        l.insert(Usn(4), 40);
        assert_eq!(all(&l), vec![(2, 2), (4, 40), (6, 6), (8, 8), (10, 10)]);
        assert_eq!(ChunkLog::default().after(Usn(5)).count(), 0);
        l.insert(Usn(6), 60);
        l.insert(Usn(6), 61);
        assert_eq!((l.chunks(), l.iter().count()), (1, 5));
        let got: Vec<(u64, Slot)> = l.after(Usn(2)).map(|(u, s)| (u.0, s)).collect();
        assert_eq!(got, vec![(4, 40), (6, 61), (8, 8), (10, 10)]);
    }

    #[test]
    fn a_later_insert_replaces_the_slot_and_last_where_walks_down() {
        let mut l = ChunkLog::default();
        l.insert(Usn(5), 1);
        l.insert(Usn(5), 2);
        assert_eq!(all(&l), vec![(5, 2)], "slot 1's entry was replaced");
        for u in 6..3 * CHUNK as u64 {
            l.insert(Usn(u), 9);
        }
        assert_eq!(l.last_where(|_, s| s == 2), Some(Usn(5)));
        assert_eq!(l.last_where(|u, _| u.0 % 100 == 0), Some(Usn(700)));
        assert_eq!(l.last_where(|_, s| s == 1), None);
        assert_eq!(l.last_where(|_, _| false), None);
        assert_eq!(l.iter().count(), 3 * CHUNK - 5);
        assert_eq!(l.chunks(), 3, "appends fill chunks of {CHUNK}");
    }

    #[test]
    fn inserts_in_reverse_order_split_chunks_and_stay_sorted() {
        // Every insert lands before the first entry: the first chunk grows
        // to twice the size and splits, again and again.
        let mut l = ChunkLog::default();
        let n = 5 * CHUNK as u64;
        for u in (1..=n).rev() {
            l.insert(Usn(u), u as Slot);
            if u % 97 == 0 {
                l.check();
            }
        }
        l.check();
        assert!(l.chunks() >= 5, "{} chunks", l.chunks());
        assert!(l.groups.len() >= 5 / GROUP, "groups split too");
        assert_eq!(all(&l), (1..=n).map(|u| (u, u as Slot)).collect::<Vec<_>>());
        assert_eq!(l.last(), Some(Usn(n)));
    }

    #[test]
    fn usns_further_apart_than_a_span_go_to_chunks_of_their_own() {
        let far = SPAN + 1;
        let mut l = ChunkLog::default();
        l.insert(Usn(far), 1);
        l.insert(Usn(far + 1), 2);
        // Far past the last: appended in a new chunk although it has room.
        l.insert(Usn(3 * far), 3);
        assert_eq!(l.chunks(), 2);
        // Just within the span of the first chunk's last entry: that chunk
        // rebased on it.
        l.insert(Usn(far + 1 - SPAN), 5);
        assert_eq!(l.chunks(), 2, "rebased, not a new chunk");
        assert_eq!(l.chunk(0).base, Usn(far + 1 - SPAN));
        // Further below: a chunk before it.
        l.insert(Usn(1), 4);
        assert_eq!(l.chunks(), 3);
        // Past the span of a middle chunk, below the next: between them.
        l.insert(Usn(2 * far + 5), 6);
        assert_eq!(l.chunks(), 4);
        l.check();
        let want = [
            (1, 4),
            (far + 1 - SPAN, 5),
            (far, 1),
            (far + 1, 2),
            (2 * far + 5, 6),
            (3 * far, 3),
        ];
        assert_eq!(all(&l), want);
        assert_eq!(
            l.after(Usn(far)).map(|(u, _)| u.0).collect::<Vec<_>>(),
            vec![far + 1, 2 * far + 5, 3 * far]
        );
        assert_eq!(l.after(Usn(u64::MAX)).count(), 0);
        assert_eq!(l.last(), Some(Usn(3 * far)));
    }

    #[test]
    fn a_write_after_a_clone_copies_one_group_and_one_chunk() {
        let mut l = ChunkLog::default();
        let per_group = (GROUP * CHUNK) as u64;
        for u in 1..=4 * per_group {
            l.insert(Usn(u), u as Slot);
        }
        assert_eq!(
            l.groups.len(),
            4,
            "appends fill groups of {GROUP} chunks (the last chunk is the tail)"
        );
        let backup = l.clone();
        assert_eq!(l.groups_shared_with(&backup), 4);
        // In the first group's second chunk.
        l.insert(Usn(CHUNK as u64 + 1), 0);
        assert_eq!(l.groups_shared_with(&backup), 3);
        assert_eq!(
            l.shared_with(&backup),
            4 * GROUP - 2,
            "its other chunks still shared (not the tail: each copy owns its own)"
        );
        l.check();
        assert_eq!(l.after(Usn(0)).count() as u64, 4 * per_group);
        assert_eq!(l.get(Usn(CHUNK as u64 + 1)), Some(0));
        assert_eq!(
            backup.get(Usn(CHUNK as u64 + 1)),
            Some(CHUNK as Slot + 1),
            "the clone as taken"
        );
    }

    #[test]
    fn the_tail_takes_late_inserts_splits_and_seals_its_lower_half() {
        let mut l = ChunkLog::default();
        // Every third USN fills the tail; a clone shares nothing of it.
        let n = CHUNK as u64;
        for u in 1..=n {
            l.insert(Usn(3 * u), u as Slot);
        }
        assert_eq!((l.groups.len(), l.chunks()), (0, 1), "all in the tail");
        let before = l.clone();
        // Later inserts land between its entries: it grows to twice a
        // chunk, then its lower half is sealed into a group.
        for u in 1..n {
            l.insert(Usn(3 * u + 1), 1000 + u as Slot);
        }
        l.check();
        assert_eq!((l.groups.len(), l.tail.len()), (0, 2 * CHUNK - 1));
        l.insert(Usn(5), 9);
        l.check();
        assert_eq!(l.groups.len(), 1, "the lower half sealed");
        assert_eq!((l.chunk(0).len(), l.tail.len()), (CHUNK, CHUNK));
        assert_eq!(l.after(Usn(0)).count(), 2 * CHUNK);
        assert_eq!(before.after(Usn(0)).count(), CHUNK, "the clone as taken");
        // The groups' last USN again: replaced where it is, not a second
        // entry in the tail.
        let lower_top = l.chunk(0).last();
        l.insert(lower_top, 77);
        l.check();
        assert_eq!((l.chunk(0).len(), l.tail.len()), (CHUNK, CHUNK));
        assert_eq!(l.get(lower_top), Some(77));
    }

    /// One change to a log: an append past the top, or an insert at a USN
    /// from 1 (USNs start there) to just past the top.
    #[derive(Debug, Clone)]
    enum Op {
        Append(u64),
        /// An append more than a chunk's span past the top.
        Jump(u64),
        Insert(u64),
        Clone,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1..4u64).prop_map(Op::Append),
            1 => (0..3u64).prop_map(|d| Op::Jump(SPAN - 1 + d)),
            2 => any::<u64>().prop_map(Op::Insert),
            1 => Just(Op::Clone),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `rank` counts the entries below a USN, whatever the spread of
        /// the chunk's offsets (dense, compacted, clustered) and wherever
        /// the interpolation guess lands.
        #[test]
        fn rank_counts_the_entries_below(
            offs in prop::collection::btree_set(1u32..3000, 0..600),
            dense in 0usize..300,
            probes in prop::collection::vec(0u64..3400, 1..40),
        ) {
            let ents: Vec<Ent> = (0..dense as u32)
                .chain(offs.into_iter().filter(|&o| o >= dense as u32))
                .map(|off| Ent { off, slot: 1 })
                .collect();
            prop_assume!(!ents.is_empty());
            let c = Chunk { base: Usn(100), ents };
            for p in probes {
                let usn = Usn(100 + p);
                for inclusive in [false, true] {
                    let want = c.ents.iter().filter(|e| {
                        let o = u64::from(e.off);
                        if inclusive { o <= p } else { o < p }
                    }).count();
                    prop_assert_eq!(c.rank(usn, inclusive), want, "usn {} inclusive {}", p, inclusive);
                }
            }
            prop_assert_eq!(c.rank(Usn(50), true), 0);
        }

        #[test]
        fn matches_a_btreemap_and_clones_stay_as_taken(
            ops in prop::collection::vec(op(), 1..1500),
        ) {
            let mut l = ChunkLog::default();
            let mut model: BTreeMap<u64, Slot> = BTreeMap::new();
            let mut clones: Vec<(ChunkLog, BTreeMap<u64, Slot>)> = Vec::new();
            for (i, o) in ops.into_iter().enumerate() {
                let top = model.keys().next_back().copied().unwrap_or(0);
                // Slots 0..4 repeat, so that `last_where` finds some odd
                // ones deep in the log.
                let s = (i % 4) as Slot;
                match o {
                    Op::Append(d) => {
                        l.insert(Usn(top + d), s);
                        model.insert(top + d, s);
                    }
                    Op::Jump(d) => {
                        l.insert(Usn(top + d), s);
                        model.insert(top + d, s);
                    }
                    Op::Insert(x) => {
                        let u = 1 + x % (top + 1);
                        l.insert(Usn(u), s);
                        model.insert(u, s);
                    }
                    Op::Clone => clones.push((l.clone(), model.clone())),
                }
            }
            clones.push((l, model));
            for (l, model) in &clones {
                l.check();
                let want: Vec<(u64, Slot)> = model.iter().map(|(u, s)| (*u, *s)).collect();
                prop_assert_eq!(all(l), want.clone());
                let every: Vec<(u64, Slot)> = l.iter().map(|(u, s)| (u.0, s)).collect();
                prop_assert_eq!(every, want);
                prop_assert_eq!(l.last().map(|u| u.0), model.keys().next_back().copied());
                // The highest entry of an odd slot, found walking down.
                let odd = model.iter().rev().find(|(_, s)| *s % 2 == 1).map(|(u, _)| *u);
                prop_assert_eq!(l.last_where(|_, s| s % 2 == 1).map(|u| u.0), odd);
                prop_assert_eq!(l.is_empty(), model.is_empty());
                if let Some(mid) = model.keys().nth(model.len() / 2) {
                    prop_assert_eq!(l.get(Usn(*mid)), model.get(mid).copied());
                    prop_assert_eq!(l.get(Usn(mid + 1)), model.get(&(mid + 1)).copied());
                    let got: Vec<u64> = l.after(Usn(*mid)).map(|(u, _)| u.0).collect();
                    let want: Vec<u64> = model.range(mid + 1..).map(|(u, _)| *u).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
