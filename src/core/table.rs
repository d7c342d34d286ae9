//! One server's object table and the indexes the protocol reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use dashmap::DashMap;

use crate::core::ids::{Guid, InvocationId, SimTime, Stamp, Usn};
use crate::core::object::ObjectState;

/// One server's copy of one object: the shared state plus its local USNs.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The replicated state, shared with every server that holds the same.
    pub state: Arc<ObjectState>,
    /// Local USN of the last write applied here.
    pub usn_changed: Usn,
    /// Local USN of the write that brought the object here.
    pub usn_created: Usn,
}

/// An order-independent fingerprint of a directory: two servers hold the
/// same objects (guids, dns, live/deleted state, values) iff equal, up to a
/// 2^-128 collision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Digest {
    /// Wrapping sum of the content hashes.
    pub sum: u128,
    /// Number of objects, tombstones included.
    pub count: usize,
}

/// The object table: a `DashMap` by guid plus ordered indexes.
///
/// Nothing here iterates the hash map where order matters: scans go through
/// the ordered `BTreeMap` indexes, so every run visits objects in the same order.
#[derive(Debug, Clone, Default)]
pub struct ObjectTable {
    objects: DashMap<Guid, Replica>,
    by_usn: BTreeMap<Usn, Guid>,
    /// (originating invocation, originating USN) of every stamp an object carries.
    by_origin: BTreeMap<(InvocationId, Usn), Guid>,
    /// Live objects by the dn they were created with, ordered by creation.
    by_dn: HashMap<Arc<str>, BTreeSet<(Stamp, Guid)>>,
    /// Tombstones by deletion time, for garbage collection.
    tombstones: BTreeSet<(SimTime, Guid)>,
    digest: Digest,
    live: usize,
}

impl ObjectTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The replica of `guid`, if held.
    pub fn get(&self, guid: Guid) -> Option<Replica> {
        self.objects.get(&guid).map(|r| r.clone())
    }

    /// Number of objects, tombstones included.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Number of live objects.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Number of tombstones.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// The directory's fingerprint.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Stores `state` as written locally at `usn`, keeping every index true.
    pub fn put(&mut self, state: Arc<ObjectState>, usn: Usn) {
        let guid = state.guid;
        let usn_created = match self.unindex(guid) {
            Some(old) => old.usn_created,
            None => usn,
        };
        self.index(&state, usn);
        self.objects.insert(
            guid,
            Replica {
                state,
                usn_changed: usn,
                usn_created,
            },
        );
    }

    /// Removes an object entirely (garbage collection, connector purge).
    pub fn remove(&mut self, guid: Guid) -> Option<Replica> {
        let old = self.unindex(guid)?;
        self.objects.remove(&guid);
        Some(old)
    }

    fn index(&mut self, s: &Arc<ObjectState>, usn: Usn) {
        self.by_usn.insert(usn, s.guid);
        for st in s.stamps() {
            self.by_origin.insert((st.invocation, st.usn), s.guid);
        }
        if s.deleted {
            self.tombstones.insert((s.stamp.time, s.guid));
        } else {
            self.live += 1;
            self.by_dn
                .entry(s.dn.clone())
                .or_default()
                .insert((s.created, s.guid));
        }
        self.digest.sum = self.digest.sum.wrapping_add(s.hash);
        self.digest.count += 1;
    }

    fn unindex(&mut self, guid: Guid) -> Option<Replica> {
        let old = self.objects.get(&guid)?.clone();
        let s = &old.state;
        self.by_usn.remove(&old.usn_changed);
        for st in s.stamps() {
            // Another object may carry the same stamp only after a USN
            // rollback reused it; keep that object's entry.
            if self.by_origin.get(&(st.invocation, st.usn)) == Some(&guid) {
                self.by_origin.remove(&(st.invocation, st.usn));
            }
        }
        if s.deleted {
            self.tombstones.remove(&(s.stamp.time, guid));
        } else {
            self.live -= 1;
            if let Some(set) = self.by_dn.get_mut(&s.dn) {
                set.remove(&(s.created, guid));
                if set.is_empty() {
                    self.by_dn.remove(&s.dn);
                }
            }
        }
        self.digest.sum = self.digest.sum.wrapping_sub(s.hash);
        self.digest.count -= 1;
        Some(old)
    }

    /// Guids changed locally after `from`, in USN order.
    pub fn changed_after(&self, from: Usn) -> impl Iterator<Item = (Usn, Guid)> + '_ {
        self.by_usn.range(from.next()..).map(|(u, g)| (*u, *g))
    }

    /// Guids carrying a stamp originated by `inv` with originating USN above
    /// `after`, in originating-USN order: answers backsync from the index.
    pub fn originated_by(
        &self,
        inv: InvocationId,
        after: Usn,
    ) -> impl Iterator<Item = (Usn, Guid)> + '_ {
        self.by_origin
            .range((inv, after.next())..=(inv, Usn(u64::MAX)))
            .map(|((_, u), g)| (*u, *g))
    }

    /// The highest originating USN of `inv` this table holds.
    pub fn max_origin_usn(&self, inv: InvocationId) -> Option<Usn> {
        self.by_origin
            .range((inv, Usn(0))..=(inv, Usn(u64::MAX)))
            .next_back()
            .map(|((_, u), _)| *u)
    }

    /// The live object that holds `dn`: of the live objects created with
    /// that dn, the latest created (the others are shown `CNF`-renamed).
    pub fn holder(&self, dn: &str) -> Option<Guid> {
        self.by_dn
            .get(dn)
            .and_then(|s| s.iter().next_back())
            .map(|(_, g)| *g)
    }

    /// The dn a replica is shown with: its own, or `<dn> CNF:<guid>` when a
    /// later-created live object holds the name.
    pub fn shown_dn(&self, s: &ObjectState) -> String {
        match self.holder(&s.dn) {
            Some(g) if g != s.guid && !s.deleted => format!("{} CNF:{}", s.dn, s.guid),
            _ => s.dn.to_string(),
        }
    }

    /// Finds the live object shown with exactly `dn` (a `CNF:` name included).
    pub fn find_live(&self, dn: &str) -> Option<Replica> {
        if let Some(g) = self.holder(dn) {
            return self.get(g);
        }
        let (base, guid) = dn.rsplit_once(" CNF:")?;
        let r = self.get(guid.parse().ok()?)?;
        (!r.state.deleted && &*r.state.dn == base && self.holder(base) != Some(r.state.guid))
            .then_some(r)
    }

    /// Tombstones deleted at or before `cutoff`, oldest first.
    pub fn tombstones_before(&self, cutoff: SimTime) -> Vec<Guid> {
        self.tombstones
            .range(..=(cutoff, Guid(u128::MAX)))
            .map(|(_, g)| *g)
            .collect()
    }

    /// Every guid in USN order (the whole-table scan a table without the
    /// by-origin index would need).
    pub fn scan(&self) -> impl Iterator<Item = (Usn, Guid)> + '_ {
        self.changed_after(Usn(0))
    }
}
