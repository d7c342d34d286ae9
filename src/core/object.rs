//! Objects, tombstones and the conflict rules of DOMAIN.md section 4.
//!
//! An [`ObjectState`] is immutable and shared (`Arc`) by every replica that
//! holds the same state: replication moves pointers, not copies.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;

use crate::config::Granularity;
use crate::core::ids::{Guid, Stamp};

/// One attribute with the stamp of the write that last set (or removed) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Attribute name.
    pub name: Arc<str>,
    /// Its value; `None` once removed (kept for the stamp at attribute granularity).
    pub value: Option<Arc<str>>,
    /// Stamp of the write that gave it this value.
    pub stamp: Stamp,
}

/// The replicated state of one object: what travels in a GetChanges reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    /// Globally unique id.
    pub guid: Guid,
    /// The dn it was created with; a name conflict only changes how it is shown.
    pub dn: Arc<str>,
    /// Stamp of the creating write: decides name conflicts.
    pub created: Stamp,
    /// Stamp of the latest originating write (the Object-Version at object granularity).
    pub stamp: Stamp,
    /// Tombstone flag: a deleted object keeps only its guid, dn and stamps.
    pub deleted: bool,
    /// Attributes sorted by name.
    pub attrs: Vec<Attr>,
    /// Hash of the whole replicated state (guid, dn, deleted, values and
    /// every stamp): for digests and ties. Two replicas with the same values
    /// but different versions differ here, so a write that changed no value
    /// still has to replicate before a directory counts as converged.
    pub hash: u128,
}

/// What merging an incoming state into the local one gives.
#[derive(Debug)]
pub enum Merge {
    /// The local state already wins or equals: nothing changes.
    Keep,
    /// The incoming state wins whole: share it.
    Take,
    /// Attribute granularity mixed both: a new state.
    New(ObjectState),
}

impl ObjectState {
    /// Builds a state and computes its content hash.
    pub fn new(
        guid: Guid,
        dn: Arc<str>,
        created: Stamp,
        stamp: Stamp,
        deleted: bool,
        mut attrs: Vec<Attr>,
    ) -> Self {
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut s = ObjectState {
            guid,
            dn,
            created,
            stamp,
            deleted,
            attrs,
            hash: 0,
        };
        s.hash = s.content_hash();
        s
    }

    fn content_hash(&self) -> u128 {
        let mut h = crate::core::StableHasher::new();
        let stamp = |h: &mut crate::core::StableHasher, s: &Stamp| {
            h.write_u32(s.version);
            h.write_u64(s.time);
            h.write_u64(s.invocation.0);
            h.write_u64(s.usn.0);
        };
        h.write_u128(self.guid.0);
        h.write_str_lp(&self.dn);
        h.write_u8(self.deleted as u8);
        stamp(&mut h, &self.created);
        stamp(&mut h, &self.stamp);
        h.write_u64(self.attrs.len() as u64);
        for a in &self.attrs {
            h.write_str_lp(&a.name);
            match &a.value {
                Some(v) => {
                    h.write_u8(1);
                    h.write_str_lp(v);
                }
                None => h.write_u8(0),
            }
            stamp(&mut h, &a.stamp);
        }
        h.finish128()
    }

    /// The live attribute values, by name.
    pub fn values(&self) -> BTreeMap<String, String> {
        self.attrs
            .iter()
            .filter_map(|a| {
                a.value
                    .as_ref()
                    .map(|v| (a.name.to_string(), v.to_string()))
            })
            .collect()
    }

    /// The value of one attribute, if set.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| &*a.name == name)
            .and_then(|a| a.value.as_deref())
    }

    /// Every distinct stamp this state carries: what dampening and the
    /// by-origin index look at.
    pub fn stamps(&self) -> impl Iterator<Item = Stamp> + '_ {
        let mut v: Vec<Stamp> = Vec::with_capacity(self.attrs.len() + 2);
        v.push(self.created);
        v.push(self.stamp);
        v.extend(self.attrs.iter().map(|a| a.stamp));
        v.sort_unstable_by_key(|s| (s.invocation, s.usn));
        v.dedup_by_key(|s| (s.invocation, s.usn));
        v.into_iter()
    }

    /// The tombstone of this object, stamped by the deleting write.
    pub fn tombstone(&self, stamp: Stamp) -> ObjectState {
        ObjectState::new(
            self.guid,
            self.dn.clone(),
            self.created,
            stamp,
            true,
            Vec::new(),
        )
    }

    /// Whether this state holds the write `stamp` or one that supersedes it.
    /// `attr` names the attribute the write set at attribute granularity.
    pub fn holds(&self, stamp: &Stamp, attr: Option<&str>) -> bool {
        if self.deleted || self.stamp >= *stamp {
            return true;
        }
        match attr {
            Some(n) => self
                .attrs
                .iter()
                .any(|a| &*a.name == n && a.stamp >= *stamp),
            None => false,
        }
    }
}

/// Resolves an incoming state against the local one (same guid).
///
/// Tombstones absorb: once deleted, an object never comes back to life, so
/// a late modify cannot resurrect it. Between live states the higher stamp
/// wins, per object or per attribute; the content hash breaks a tie that a
/// USN rollback can make (two different writes with the same stamp). The
/// result is the same whatever the order of arrival: merge is a join.
pub fn merge(cur: &ObjectState, inc: &ObjectState, g: Granularity) -> Merge {
    let by_stamp = |take: bool| if take { Merge::Take } else { Merge::Keep };
    match (cur.deleted, inc.deleted) {
        (true, false) => return Merge::Keep,
        (false, true) => return Merge::Take,
        (true, true) => return by_stamp((inc.stamp, inc.hash) > (cur.stamp, cur.hash)),
        (false, false) => {}
    }
    if g == Granularity::Object {
        return by_stamp((inc.stamp, inc.hash) > (cur.stamp, cur.hash));
    }
    // Compared by reference: no value is cloned unless a new state is built.
    let key = attr_key;
    let (mut from_cur, mut from_inc) = (false, false);
    walk_attrs(&cur.attrs, &inc.attrs, key, |_, side| match side {
        Side::Cur => from_cur = true,
        Side::Inc => from_inc = true,
        Side::Same => {}
    });
    match (from_cur, from_inc) {
        (_, false) if cur.stamp >= inc.stamp => Merge::Keep,
        (false, _) if inc.stamp >= cur.stamp => Merge::Take,
        _ => {
            let mut out: Vec<Attr> = Vec::with_capacity(cur.attrs.len().max(inc.attrs.len()));
            walk_attrs(&cur.attrs, &inc.attrs, key, |a, _| out.push(a.clone()));
            Merge::New(ObjectState::new(
                cur.guid,
                cur.dn.clone(),
                cur.created,
                cur.stamp.max(inc.stamp),
                false,
                out,
            ))
        }
    }
}

fn attr_key(a: &Attr) -> (Stamp, Option<&str>) {
    (a.stamp, a.value.as_deref())
}

/// Which side an attribute of a merge comes from.
#[derive(Clone, Copy)]
enum Side {
    Cur,
    Inc,
    /// Both sides hold it equal.
    Same,
}

/// Walks two attribute lists sorted by name, handing each merged attribute
/// (the higher key of a name both carry) and where it came from to `f`.
fn walk_attrs<'a, K: Ord>(
    cur: &'a [Attr],
    inc: &'a [Attr],
    key: impl Fn(&'a Attr) -> K,
    mut f: impl FnMut(&'a Attr, Side),
) {
    let (mut i, mut j) = (0, 0);
    while i < cur.len() || j < inc.len() {
        match (cur.get(i), inc.get(j)) {
            (Some(c), Some(n)) if c.name == n.name => {
                i += 1;
                j += 1;
                match key(n).cmp(&key(c)) {
                    std::cmp::Ordering::Greater => f(n, Side::Inc),
                    std::cmp::Ordering::Less => f(c, Side::Cur),
                    std::cmp::Ordering::Equal => f(c, Side::Same),
                }
            }
            (Some(c), Some(n)) if c.name < n.name => {
                i += 1;
                f(c, Side::Cur);
            }
            (Some(_), Some(n)) | (None, Some(n)) => {
                j += 1;
                f(n, Side::Inc);
            }
            (Some(c), None) => {
                i += 1;
                f(c, Side::Cur);
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
}
