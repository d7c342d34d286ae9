//! Objects, tombstones and the conflict rules of docs/DOMAIN.md section 4.
//!
//! An [`ObjectState`] is immutable and shared (`Arc`) by every replica that
//! holds the same state: replication moves pointers, not copies.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;

use crate::config::Granularity;
use crate::core::ids::{Guid, Stamp};
use crate::core::tree::Parent;

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
    /// Its relative name (`cn=Ann`), as given by its create or last rename;
    /// a name conflict or a parent in LostAndFound only changes how it is
    /// shown (`ObjectTable::shown_dn`).
    pub rdn: Arc<str>,
    /// What it hangs under: a fixed container or another object. The dn
    /// it is shown with is its rdn and its parent's shown dn.
    pub parent: Parent,
    /// Stamp of the write that gave it its rdn and parent (its create or
    /// last rename): the higher keeps a contested name.
    pub named: Stamp,
    /// Stamp of the creating write.
    pub created: Stamp,
    /// Stamp of the latest originating write (the Object-Version at object granularity).
    pub stamp: Stamp,
    /// Tombstone flag: a deleted object keeps only its guid, name and stamps.
    pub deleted: bool,
    /// Liveness stamp: the stamp of the last write that set `deleted`: the
    /// create for a live object, the delete for a tombstone, the raised
    /// stamp for an object an authoritative restore brought back. Merges
    /// compare it first (see [`merge`]); ordinary modifies never change it.
    pub alive: Stamp,
    /// Attributes sorted by name.
    pub attrs: Vec<Attr>,
    /// Hash of the whole replicated state (guid, rdn, parent, deleted,
    /// values and every stamp): for digests and ties. Two replicas with the same values
    /// but different versions differ here, so a write that changed no value
    /// still has to replicate before a directory counts as converged.
    pub hash: u128,
}

/// What merging an incoming state into the local one gives.
#[derive(Debug)]
// `New` is moved once into an `Arc`: boxing it first would allocate twice.
#[allow(clippy::large_enum_variant)]
pub enum Merge {
    /// The local state already wins or equals: nothing changes.
    Keep,
    /// The incoming state wins whole: share it.
    Take,
    /// Attribute granularity mixed both: a new state.
    New(ObjectState),
}

/// An object's name: its rdn and parent, and the stamp of the write that
/// gave them (what [`ObjectState::with_name`] sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The rdn.
    pub rdn: Arc<str>,
    /// The parent.
    pub parent: Parent,
    /// The stamp of the create or rename that gave them.
    pub named: Stamp,
}

impl ObjectState {
    /// Builds the state of an object created at the root (`parent` the root
    /// container, named by its creating write) and computes its content
    /// hash: the form of every object of a flat directory.
    pub fn new(
        guid: Guid,
        rdn: Arc<str>,
        created: Stamp,
        stamp: Stamp,
        deleted: bool,
        attrs: Vec<Attr>,
    ) -> Self {
        let name = Name {
            rdn,
            parent: Parent::Fixed(Arc::from("")),
            named: created,
        };
        Self::with_name(guid, name, created, stamp, deleted, attrs)
    }

    /// Builds a state with its name and computes its content hash.
    pub fn with_name(
        guid: Guid,
        name: Name,
        created: Stamp,
        stamp: Stamp,
        deleted: bool,
        mut attrs: Vec<Attr>,
    ) -> Self {
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut s = ObjectState {
            guid,
            rdn: name.rdn,
            parent: name.parent,
            named: name.named,
            created,
            stamp,
            deleted,
            alive: if deleted { stamp } else { created },
            attrs,
            hash: 0,
        };
        s.hash = s.content_hash();
        s
    }

    /// The same state with the liveness stamp `alive` (an authoritatively
    /// restored object, or a write to one), its hash recomputed.
    pub fn with_alive(mut self, alive: Stamp) -> Self {
        self.alive = alive;
        self.hash = self.content_hash();
        self
    }

    /// The liveness stamp every state has unless an authoritative restore
    /// set another: the create's, or the delete's for a tombstone.
    fn usual_alive(&self) -> Stamp {
        if self.deleted {
            self.stamp
        } else {
            self.created
        }
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
        h.write_str_lp(&self.rdn);
        match &self.parent {
            Parent::Fixed(dn) => {
                h.write_u8(0);
                h.write_str_lp(dn);
            }
            Parent::Object(g) => {
                h.write_u8(1);
                h.write_u128(g.0);
            }
        }
        stamp(&mut h, &self.named);
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
        // Only an unusual liveness stamp is hashed, after the length-prefixed
        // attributes (so the encoding stays unambiguous): every other state
        // hashes as it did before the field existed.
        if self.alive != self.usual_alive() {
            h.write_u8(1);
            stamp(&mut h, &self.alive);
        }
        h.finish128()
    }

    /// Its name: rdn, parent and the stamp that gave them.
    pub fn name(&self) -> Name {
        Name {
            rdn: self.rdn.clone(),
            parent: self.parent.clone(),
            named: self.named,
        }
    }

    /// What decides which of two writes of the name wins: the stamp, then
    /// (only for two writes with one stamp, after a USN rollback) the name.
    fn name_key(&self) -> (Stamp, &str, &Parent) {
        (self.named, &self.rdn, &self.parent)
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
        let mut v: Vec<Stamp> = Vec::with_capacity(self.attrs.len() + 4);
        v.push(self.created);
        v.push(self.stamp);
        v.push(self.alive);
        v.push(self.named);
        v.extend(self.attrs.iter().map(|a| a.stamp));
        v.sort_unstable_by_key(|s| (s.invocation, s.usn));
        v.dedup_by_key(|s| (s.invocation, s.usn));
        v.into_iter()
    }

    /// The tombstone of this object, stamped by the deleting write.
    pub fn tombstone(&self, stamp: Stamp) -> ObjectState {
        ObjectState::with_name(
            self.guid,
            self.name(),
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
/// The higher liveness stamp wins whole: a delete's is above the create's,
/// so a tombstone absorbs every state of the life it ended and a late
/// modify cannot resurrect it; only an authoritative restore's raised
/// stamp beats a tombstone (and a delete after that restore beats it in
/// turn). Within one life, tombstones absorb; between live states the
/// higher stamp wins, per object or per attribute; the content hash breaks
/// a tie that a USN rollback can make (two different writes with the same
/// stamp). Comparing a total order first and joining within equal keys is
/// again a join: the result is the same whatever the order of arrival.
pub fn merge(cur: &ObjectState, inc: &ObjectState, g: Granularity) -> Merge {
    let by_stamp = |take: bool| if take { Merge::Take } else { Merge::Keep };
    if inc.alive != cur.alive {
        return by_stamp(inc.alive > cur.alive);
    }
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
    // The name (rdn and parent) is one more attribute, stamped `named`.
    let name = inc.name_key().cmp(&cur.name_key());
    let name_from_inc = name == std::cmp::Ordering::Greater;
    let (mut from_cur, mut from_inc) = (name == std::cmp::Ordering::Less, name_from_inc);
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
            let name = if name_from_inc {
                inc.name()
            } else {
                cur.name()
            };
            Merge::New(
                ObjectState::with_name(
                    cur.guid,
                    name,
                    cur.created,
                    cur.stamp.max(inc.stamp),
                    false,
                    out,
                )
                .with_alive(cur.alive),
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::{InvocationId, Usn};

    fn st(version: u32, inv: u64, usn: u64) -> Stamp {
        Stamp {
            version,
            time: usn,
            invocation: InvocationId(inv),
            usn: Usn(usn),
        }
    }

    fn attr(name: &str, value: Option<&str>, stamp: Stamp) -> Attr {
        Attr {
            name: name.into(),
            value: value.map(Into::into),
            stamp,
        }
    }

    #[test]
    fn an_attribute_merge_keeps_names_from_both_sides_in_order() {
        // Names only the incoming side has, before and after the local one.
        let cur = obj(st(2, 1, 2), vec![attr("m", Some("cur"), st(1, 1, 2))]);
        let inc = obj(
            st(2, 2, 3),
            vec![
                attr("a", Some("inc-a"), st(1, 2, 3)),
                attr("z", Some("inc-z"), st(1, 2, 3)),
            ],
        );
        let m = merge(&cur, &inc, Granularity::Attribute);
        let names: Vec<String> = attrs_of(&m, &cur, &inc).into_iter().map(|a| a.0).collect();
        assert_eq!(names, ["a", "m", "z"]);
        // Local names left over once the incoming side is done.
        let cur = obj(
            st(2, 1, 2),
            vec![
                attr("m", Some("m"), st(1, 1, 2)),
                attr("n", Some("n"), st(1, 1, 2)),
                attr("o", Some("o"), st(1, 1, 2)),
            ],
        );
        let inc = obj(st(2, 2, 3), vec![attr("a", Some("a"), st(1, 2, 3))]);
        let m = merge(&cur, &inc, Granularity::Attribute);
        let names: Vec<String> = attrs_of(&m, &cur, &inc).into_iter().map(|a| a.0).collect();
        assert_eq!(names, ["a", "m", "n", "o"]);
    }

    fn obj(stamp: Stamp, attrs: Vec<Attr>) -> ObjectState {
        ObjectState::new(Guid(1), "cn=x".into(), st(1, 1, 1), stamp, false, attrs)
    }

    /// The (name, value, stamp) of every attribute of a merge's result.
    fn attrs_of(
        m: &Merge,
        cur: &ObjectState,
        inc: &ObjectState,
    ) -> Vec<(String, Option<String>, Stamp)> {
        let s = match m {
            Merge::Keep => cur,
            Merge::Take => inc,
            Merge::New(n) => n,
        };
        s.attrs
            .iter()
            .map(|a| {
                (
                    a.name.to_string(),
                    a.value.as_deref().map(String::from),
                    a.stamp,
                )
            })
            .collect()
    }

    #[test]
    fn values_list_live_attributes_sorted_by_name() {
        let s = obj(
            st(2, 1, 2),
            vec![
                attr("title", Some("t"), st(1, 1, 1)),
                attr("mail", Some("m"), st(1, 1, 1)),
                attr("phone", None, st(2, 1, 2)),
            ],
        );
        let names: Vec<&str> = s.attrs.iter().map(|a| &*a.name).collect();
        assert_eq!(names, ["mail", "phone", "title"]);
        let want: BTreeMap<String, String> = [("mail", "m"), ("title", "t")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(s.values(), want);
        assert_eq!(s.value("title"), Some("t"));
        assert_eq!(s.value("phone"), None, "removed");
        assert_eq!(s.value("nope"), None);
    }

    #[test]
    fn stamps_are_listed_once_each() {
        let s = obj(
            st(3, 2, 9),
            vec![
                attr("a", Some("1"), st(1, 1, 1)),
                attr("b", Some("2"), st(3, 2, 9)),
                attr("c", Some("3"), st(2, 3, 4)),
            ],
        );
        let got: Vec<(u64, u64)> = s.stamps().map(|s| (s.invocation.0, s.usn.0)).collect();
        assert_eq!(got, [(1, 1), (2, 9), (3, 4)]);
    }

    #[test]
    fn the_hash_covers_every_field() {
        let base = obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]);
        // `base` with one field changed, its hash recomputed.
        let with = |f: &dyn Fn(&mut ObjectState)| {
            let mut s = base.clone();
            f(&mut s);
            ObjectState::with_name(s.guid, s.name(), s.created, s.stamp, s.deleted, s.attrs)
        };
        let variants = [
            with(&|s| s.guid = Guid(2)),
            with(&|s| s.rdn = "cn=y".into()),
            with(&|s| s.parent = Parent::Object(Guid(9))),
            with(&|s| s.parent = Parent::Fixed("ou=x".into())),
            with(&|s| s.named = st(1, 1, 5)),
            with(&|s| s.created = st(1, 1, 0)),
            with(&|s| s.stamp = st(2, 1, 3)),
            with(&|s| s.deleted = true),
            obj(st(2, 1, 2), vec![attr("mail", Some("n"), st(2, 1, 2))]),
            obj(st(2, 1, 2), vec![attr("mail", None, st(2, 1, 2))]),
            obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(3, 1, 2))]),
            obj(st(2, 1, 2), vec![attr("mailx", Some("m"), st(2, 1, 2))]),
            obj(st(2, 1, 2), vec![]),
        ];
        for v in &variants {
            assert_ne!(v.hash, base.hash, "{v:?}");
        }
        assert_eq!(
            base.hash,
            obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]).hash
        );
        // The liveness stamp: an unusual one changes the hash, the usual
        // one (the create's) is the state as built.
        assert_ne!(base.clone().with_alive(st(2, 1, 2)).hash, base.hash);
        assert_eq!(base.clone().with_alive(base.created).hash, base.hash);
    }

    #[test]
    fn a_tombstone_keeps_identity_and_drops_attributes() {
        let s = obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]);
        let t = s.tombstone(st(3, 2, 5));
        assert!(t.deleted);
        assert_eq!(
            (t.guid, &*t.rdn, t.created, t.stamp),
            (s.guid, "cn=x", s.created, st(3, 2, 5))
        );
        assert!(t.attrs.is_empty());
    }

    #[test]
    fn holds_a_write_or_what_supersedes_it() {
        let s = obj(st(2, 1, 5), vec![attr("mail", Some("m"), st(4, 2, 9))]);
        assert!(s.holds(&st(2, 1, 5), None), "its own stamp");
        assert!(s.holds(&st(1, 7, 7), None), "an older one");
        assert!(!s.holds(&st(3, 1, 1), None), "a newer object write");
        assert!(
            s.holds(&st(3, 1, 1), Some("mail")),
            "superseded by the attribute"
        );
        assert!(s.holds(&st(4, 2, 9), Some("mail")));
        assert!(!s.holds(&st(5, 1, 1), Some("mail")));
        assert!(!s.holds(&st(3, 1, 1), Some("title")), "no such attribute");
        assert!(
            s.tombstone(st(3, 1, 6)).holds(&st(9, 9, 9), None),
            "a tombstone holds everything"
        );
    }

    #[test]
    fn tombstones_absorb_and_the_higher_tombstone_wins() {
        let live = obj(st(5, 1, 5), vec![]);
        let dead = obj(st(2, 1, 2), vec![]).tombstone(st(3, 1, 3));
        let later_dead = obj(st(2, 1, 2), vec![]).tombstone(st(4, 2, 4));
        for g in [Granularity::Object, Granularity::Attribute] {
            assert!(matches!(merge(&dead, &live, g), Merge::Keep));
            assert!(matches!(merge(&live, &dead, g), Merge::Take));
            assert!(matches!(merge(&dead, &later_dead, g), Merge::Take));
            assert!(matches!(merge(&later_dead, &dead, g), Merge::Keep));
            assert!(matches!(merge(&dead, &dead, g), Merge::Keep));
        }
    }

    #[test]
    fn a_higher_life_beats_a_tombstone_and_a_later_delete_beats_it() {
        let live = obj(st(3, 1, 3), vec![attr("phone", Some("p"), st(3, 1, 3))]);
        let dead = live.tombstone(st(4, 2, 4));
        // An authoritative restore's rewrite (version raised by 100,000).
        let boost = st(100_002, 3, 9);
        let back = obj(boost, vec![attr("mail", Some("m"), boost)]).with_alive(boost);
        let dead_again = back.tombstone(st(100_003, 2, 10));
        for g in [Granularity::Object, Granularity::Attribute] {
            assert!(
                matches!(merge(&dead, &live, g), Merge::Keep),
                "no resurrection"
            );
            assert!(matches!(merge(&dead, &back, g), Merge::Take), "{g:?}");
            assert!(matches!(merge(&back, &dead, g), Merge::Keep));
            // The earlier life loses whole, its own attributes included.
            assert!(matches!(merge(&live, &back, g), Merge::Take));
            assert!(matches!(merge(&back, &live, g), Merge::Keep));
            assert!(matches!(merge(&back, &dead_again, g), Merge::Take));
            assert!(matches!(merge(&dead_again, &back, g), Merge::Keep));
        }
    }

    #[test]
    fn merging_lives_gives_the_same_state_in_any_order() {
        let g = Granularity::Attribute;
        let live = obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]);
        let later = obj(
            st(3, 2, 3),
            vec![
                attr("mail", Some("m"), st(2, 1, 2)),
                attr("phone", Some("p"), st(1, 2, 3)),
            ],
        );
        let dead = live.tombstone(st(3, 3, 4));
        let boost = st(100_002, 4, 9);
        let back = obj(boost, vec![attr("mail", Some("m"), boost)]).with_alive(boost);
        // A modify of the restored object, on another server: same life.
        let title = obj(
            st(100_003, 5, 2),
            vec![
                attr("mail", Some("m"), boost),
                attr("title", Some("t"), st(1, 5, 2)),
            ],
        )
        .with_alive(boost);
        let all = [&live, &later, &dead, &back, &title];
        // By hand: the restored life wins and its two writes join.
        let want = obj(
            st(100_003, 5, 2),
            vec![
                attr("mail", Some("m"), boost),
                attr("title", Some("t"), st(1, 5, 2)),
            ],
        )
        .with_alive(boost);
        let mut order: Vec<usize> = (0..all.len()).collect();
        // Every permutation (Heap's algorithm, iteratively).
        let mut c = vec![0; order.len()];
        let fold = |order: &[usize]| {
            let mut cur = all[order[0]].clone();
            for &k in &order[1..] {
                cur = match merge(&cur, all[k], g) {
                    Merge::Keep => cur,
                    Merge::Take => all[k].clone(),
                    Merge::New(n) => n,
                };
            }
            cur
        };
        assert_eq!(fold(&order), want);
        let (mut i, mut n) = (0, 1);
        while i < order.len() {
            if c[i] < i {
                order.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
                assert_eq!(fold(&order), want, "order {order:?}");
                n += 1;
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        assert_eq!(n, 120);
    }

    #[test]
    fn object_granularity_takes_the_higher_stamp_whole() {
        let old = obj(st(2, 1, 2), vec![attr("mail", Some("a"), st(2, 1, 2))]);
        let new = obj(st(3, 2, 1), vec![attr("title", Some("b"), st(3, 2, 1))]);
        let g = Granularity::Object;
        assert!(matches!(merge(&old, &new, g), Merge::Take));
        assert!(matches!(merge(&new, &old, g), Merge::Keep));
        assert!(matches!(merge(&new, &new, g), Merge::Keep));
        // Equal stamps (a USN rollback's reuse): the content hash decides,
        // the same way from both sides.
        let twin = obj(st(3, 2, 1), vec![attr("title", Some("c"), st(3, 2, 1))]);
        let a = matches!(merge(&new, &twin, g), Merge::Take);
        let b = matches!(merge(&twin, &new, g), Merge::Take);
        assert_ne!(a, b, "exactly one side wins the tie");
        assert_eq!(a, twin.hash > new.hash);
    }

    #[test]
    fn attribute_granularity_mixes_the_newer_attributes_of_both() {
        let g = Granularity::Attribute;
        let base = obj(
            st(1, 1, 1),
            vec![
                attr("mail", Some("m0"), st(1, 1, 1)),
                attr("title", Some("t0"), st(1, 1, 1)),
            ],
        );
        // Server 2 changed mail, server 3 title and added phone.
        let mail = obj(
            st(2, 2, 5),
            vec![
                attr("mail", Some("m2"), st(2, 2, 5)),
                attr("title", Some("t0"), st(1, 1, 1)),
            ],
        );
        let title = obj(
            st(2, 3, 7),
            vec![
                attr("mail", Some("m0"), st(1, 1, 1)),
                attr("phone", Some("p3"), st(1, 3, 7)),
                attr("title", Some("t3"), st(2, 3, 7)),
            ],
        );
        assert!(matches!(merge(&base, &mail, g), Merge::Take), "only newer");
        assert!(matches!(merge(&mail, &base, g), Merge::Keep), "only older");
        assert!(matches!(merge(&mail, &mail, g), Merge::Keep));
        let want = vec![
            ("mail".to_string(), Some("m2".to_string()), st(2, 2, 5)),
            ("phone".to_string(), Some("p3".to_string()), st(1, 3, 7)),
            ("title".to_string(), Some("t3".to_string()), st(2, 3, 7)),
        ];
        for (cur, inc) in [(&mail, &title), (&title, &mail)] {
            let m = merge(cur, inc, g);
            assert!(matches!(m, Merge::New(_)), "both sides contribute");
            assert_eq!(attrs_of(&m, cur, inc), want);
            let Merge::New(n) = m else { unreachable!() };
            assert_eq!(n.stamp, st(2, 3, 7), "the higher object stamp");
            assert_eq!(
                (n.guid, n.created, n.deleted),
                (cur.guid, cur.created, false)
            );
        }
        // An attribute only the current state has stays; an equal one is shared.
        let extra = obj(
            st(2, 2, 5),
            vec![
                attr("mail", Some("m2"), st(2, 2, 5)),
                attr("title", Some("t0"), st(1, 1, 1)),
                attr("zone", Some("z"), st(1, 2, 4)),
            ],
        );
        assert!(matches!(merge(&extra, &mail, g), Merge::Keep));
        assert!(matches!(merge(&mail, &extra, g), Merge::Take));
    }

    #[test]
    fn a_newer_removal_beats_an_older_value() {
        let g = Granularity::Attribute;
        let set = obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]);
        let removed = obj(st(3, 2, 3), vec![attr("mail", None, st(3, 2, 3))]);
        assert!(matches!(merge(&set, &removed, g), Merge::Take));
        assert!(matches!(merge(&removed, &set, g), Merge::Keep));
    }
}
