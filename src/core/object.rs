//! Objects, tombstones and the conflict rules of docs/DOMAIN.md section 4.
//!
//! An [`ObjectState`] is immutable and shared by every replica that holds
//! the same state: replication moves pointers, not copies. It is packed in
//! one allocation: a fixed header, then its distinct stamps, its name and
//! its attributes as bytes. A million objects on three servers are a
//! million such blocks, and an apply reads two or three cache lines of one
//! instead of chasing five allocations.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

use smallvec::SmallVec;
use triomphe::ThinArc;

use crate::config::Granularity;
use crate::core::ids::{Guid, InvocationId, Stamp, Usn};
use crate::core::tree::{Parent, ParentRef};

/// One attribute with the stamp of the write that last set (or removed)
/// it, owned: what a state is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Attribute name.
    pub name: Arc<str>,
    /// Its value; `None` once removed (kept for the stamp at attribute granularity).
    pub value: Option<Arc<str>>,
    /// Stamp of the write that gave it this value.
    pub stamp: Stamp,
}

/// One attribute of a state, borrowed from it.
///
/// ```
/// use backsync::core::{Attr, Guid, InvocationId, ObjectState, Stamp, Usn};
/// let st = Stamp { version: 1, time: 0, invocation: InvocationId(1), usn: Usn(1) };
/// let mail = Attr { name: "mail".into(), value: Some("ann@x".into()), stamp: st };
/// let s = ObjectState::new(Guid(1), "cn=Ann", st, st, false, vec![mail]);
/// let a = s.attrs().next().unwrap();
/// assert_eq!((a.name, a.value), ("mail", Some("ann@x")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrRef<'a> {
    /// Attribute name.
    pub name: &'a str,
    /// Its value; `None` once removed.
    pub value: Option<&'a str>,
    /// Stamp of the write that gave it this value.
    pub stamp: Stamp,
}

impl AttrRef<'_> {
    /// The attribute, owned.
    pub fn to_attr(&self) -> Attr {
        Attr {
            name: self.name.into(),
            value: self.value.map(Into::into),
            stamp: self.stamp,
        }
    }
}

/// The replicated state of one object, unpacked into fields: what a write
/// or a test edits before packing it again with [`ObjectState::from_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateParts {
    /// Globally unique id.
    pub guid: Guid,
    /// Its relative name (`cn=Ann`), as given by its create or last rename.
    pub rdn: Arc<str>,
    /// What it hangs under.
    pub parent: Parent,
    /// Stamp of the write that gave it its rdn and parent.
    pub named: Stamp,
    /// Stamp of the creating write.
    pub created: Stamp,
    /// Stamp of the latest originating write.
    pub stamp: Stamp,
    /// Tombstone flag.
    pub deleted: bool,
    /// Liveness stamp (see [`ObjectState::alive`]).
    pub alive: Stamp,
    /// Attributes (sorted by name when packed).
    pub attrs: Vec<Attr>,
}

/// The replicated state of one object: what travels in a GetChanges reply.
///
/// Immutable, and cheap to clone: a clone shares the one packed block, as
/// an `Arc` would, with a pointer of one word.
///
/// ```
/// use backsync::core::{Guid, InvocationId, ObjectState, Stamp, Usn};
/// let st = Stamp { version: 1, time: 0, invocation: InvocationId(1), usn: Usn(1) };
/// let s = ObjectState::new(Guid(7), "cn=Ann", st, st, false, vec![]);
/// let t = s.clone();
/// assert!(ObjectState::ptr_eq(&s, &t));
/// assert_eq!((t.guid(), t.rdn(), t.deleted()), (Guid(7), "cn=Ann", false));
/// ```
#[derive(Clone)]
pub struct ObjectState(ThinArc<Head, u8>);

/// The fixed part of a packed state. The guid and hash are word pairs,
/// not `u128`s, so the header is 8-aligned and nothing pads the block.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Head {
    guid: [u64; 2],
    hash: [u64; 2],
    /// The hash the name index files it by (its rdn where its parent
    /// shows it): worked out once by the write that packs it, not by each
    /// server that applies it.
    name_hash: u64,
    /// Distinct stamps at the tail's start; `stamp` is the first.
    n_stamps: u32,
    n_attrs: u32,
    /// Where the attributes start in the tail.
    attrs_at: u32,
    /// Indexes of these stamps among the first four.
    alive: u8,
    named: u8,
    created: u8,
    flags: u8,
}

const DELETED: u8 = 1;
const PARENT_OBJECT: u8 = 2;
/// A stamp in the tail: version, time, invocation, usn, little-endian.
const STAMP_BYTES: usize = 28;

fn words(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}

fn unwords(w: [u64; 2]) -> u128 {
    w[0] as u128 | (w[1] as u128) << 64
}

fn put_stamp(buf: &mut SmallVec<[u8; 256]>, s: &Stamp) {
    buf.extend_from_slice(&s.version.to_le_bytes());
    buf.extend_from_slice(&s.time.to_le_bytes());
    buf.extend_from_slice(&s.invocation.0.to_le_bytes());
    buf.extend_from_slice(&s.usn.0.to_le_bytes());
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn get_stamp(stamps: &[u8], i: usize) -> Stamp {
    let b = &stamps[i * STAMP_BYTES..(i + 1) * STAMP_BYTES];
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[..4]);
    Stamp {
        version: u32::from_le_bytes(v),
        time: le64(b, 4),
        invocation: InvocationId(le64(b, 12)),
        usn: Usn(le64(b, 20)),
    }
}

/// A length or index, LEB128: one byte below 128.
fn put_len(buf: &mut SmallVec<[u8; 256]>, mut n: usize) {
    while n >= 0x80 {
        buf.push(n as u8 | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

#[inline(always)]
fn get_len(b: &[u8], at: &mut usize) -> usize {
    let byte = b[*at];
    *at += 1;
    if byte < 0x80 {
        byte as usize
    } else {
        *at -= 1;
        get_long_len(b, at)
    }
}

#[cold]
fn get_long_len(b: &[u8], at: &mut usize) -> usize {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let byte = b[*at];
        *at += 1;
        n |= ((byte & 0x7f) as usize) << shift;
        if byte < 0x80 {
            return n;
        }
        shift += 7;
    }
}

fn get_str<'a>(b: &'a [u8], at: &mut usize, len: usize) -> &'a str {
    let s = &b[*at..*at + len];
    *at += len;
    // SAFETY: a tail is written once, by `Build::pack`, and only ever from
    // `&str`s at exactly the offsets read back here; it is never mutated.
    unsafe { std::str::from_utf8_unchecked(s) }
}

/// Everything a state is packed from, borrowed.
struct Build<'a> {
    guid: Guid,
    rdn: &'a str,
    parent: ParentRef<'a>,
    named: Stamp,
    created: Stamp,
    stamp: Stamp,
    alive: Stamp,
    deleted: bool,
}

impl Build<'_> {
    /// Packs the state with `attrs` (sorted by name) and its content hash.
    fn pack(&self, attrs: &[AttrRef<'_>]) -> ObjectState {
        // Distinct stamps, `stamp` first. An attribute's stamp is looked
        // for among the first four and the last added: the usual sharing
        // (a create's stamp on every attribute, a modify's on several),
        // found in bounded time however many attributes there are.
        let mut stamps: SmallVec<[Stamp; 8]> = SmallVec::new();
        stamps.push(self.stamp);
        let index = |s: Stamp, stamps: &mut SmallVec<[Stamp; 8]>| {
            let n = stamps.len();
            let near = stamps.iter().take(4).position(|x| *x == s);
            match near {
                Some(i) => i,
                None if n > 4 && stamps[n - 1] == s => n - 1,
                None => {
                    stamps.push(s);
                    n
                }
            }
        };
        let alive = index(self.alive, &mut stamps) as u8;
        let named = index(self.named, &mut stamps) as u8;
        let created = index(self.created, &mut stamps) as u8;
        let at: SmallVec<[usize; 16]> = attrs.iter().map(|a| index(a.stamp, &mut stamps)).collect();

        let mut buf: SmallVec<[u8; 256]> = SmallVec::new();
        for s in &stamps {
            put_stamp(&mut buf, s);
        }
        put_len(&mut buf, self.rdn.len());
        buf.extend_from_slice(self.rdn.as_bytes());
        let mut flags = if self.deleted { DELETED } else { 0 };
        match self.parent {
            ParentRef::Fixed(dn) => {
                put_len(&mut buf, dn.len());
                buf.extend_from_slice(dn.as_bytes());
            }
            ParentRef::Object(g) => {
                flags |= PARENT_OBJECT;
                buf.extend_from_slice(&g.0.to_le_bytes());
            }
        }
        let attrs_at = buf.len();
        for (a, i) in attrs.iter().zip(&at) {
            put_len(&mut buf, a.name.len());
            buf.extend_from_slice(a.name.as_bytes());
            match a.value {
                Some(v) => {
                    put_len(&mut buf, v.len() + 1);
                    buf.extend_from_slice(v.as_bytes());
                }
                None => buf.push(0),
            }
            put_len(&mut buf, *i);
        }
        let count = |n: usize, what: &str| {
            u32::try_from(n).unwrap_or_else(|_| panic!("{what} past u32 in one object"))
        };
        let head = Head {
            guid: words(self.guid.0),
            hash: words(self.content_hash(attrs)),
            name_hash: crate::core::table::state_name_hash(self.rdn, self.parent),
            n_stamps: count(stamps.len(), "stamps"),
            n_attrs: count(attrs.len(), "attributes"),
            attrs_at: count(attrs_at, "bytes"),
            alive,
            named,
            created,
            flags,
        };
        ObjectState(ThinArc::from_header_and_slice(head, &buf))
    }

    fn content_hash(&self, attrs: &[AttrRef<'_>]) -> u128 {
        let mut h = crate::core::StableHasher::new();
        let stamp = |h: &mut crate::core::StableHasher, s: &Stamp| {
            h.write_u32(s.version);
            h.write_u64(s.time);
            h.write_u64(s.invocation.0);
            h.write_u64(s.usn.0);
        };
        h.write_u128(self.guid.0);
        h.write_str_lp(self.rdn);
        match self.parent {
            ParentRef::Fixed(dn) => {
                h.write_u8(0);
                h.write_str_lp(dn);
            }
            ParentRef::Object(g) => {
                h.write_u8(1);
                h.write_u128(g.0);
            }
        }
        stamp(&mut h, &self.named);
        h.write_u8(self.deleted as u8);
        stamp(&mut h, &self.created);
        stamp(&mut h, &self.stamp);
        h.write_u64(attrs.len() as u64);
        for a in attrs {
            h.write_str_lp(a.name);
            match a.value {
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
        let usual = if self.deleted {
            self.stamp
        } else {
            self.created
        };
        if self.alive != usual {
            h.write_u8(1);
            stamp(&mut h, &self.alive);
        }
        h.finish128()
    }
}

/// A state's attributes in name order, borrowed from it.
#[derive(Clone)]
pub struct Attrs<'a> {
    bytes: &'a [u8],
    at: usize,
    stamps: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = AttrRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<AttrRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = self.bytes;
        let len = get_len(b, &mut self.at);
        let name = get_str(b, &mut self.at, len);
        let value = match get_len(b, &mut self.at) {
            0 => None,
            n => Some(get_str(b, &mut self.at, n - 1)),
        };
        let i = get_len(b, &mut self.at);
        Some(AttrRef {
            name,
            value,
            stamp: get_stamp(self.stamps, i),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Attrs<'_> {}

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
        rdn: &str,
        created: Stamp,
        stamp: Stamp,
        deleted: bool,
        attrs: Vec<Attr>,
    ) -> Self {
        let name = Name {
            rdn: rdn.into(),
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
        attrs: Vec<Attr>,
    ) -> Self {
        Self::from_parts(StateParts {
            guid,
            rdn: name.rdn,
            parent: name.parent,
            named: name.named,
            created,
            stamp,
            deleted,
            alive: if deleted { stamp } else { created },
            attrs,
        })
    }

    /// Packs a state from its fields (attributes sorted by name) and
    /// computes its content hash.
    pub fn from_parts(mut p: StateParts) -> Self {
        p.attrs.sort_by(|a, b| a.name.cmp(&b.name));
        let attrs: SmallVec<[AttrRef<'_>; 8]> = (p.attrs.iter())
            .map(|a| AttrRef {
                name: &a.name,
                value: a.value.as_deref(),
                stamp: a.stamp,
            })
            .collect();
        Build {
            guid: p.guid,
            rdn: &p.rdn,
            parent: p.parent.as_ref(),
            named: p.named,
            created: p.created,
            stamp: p.stamp,
            alive: p.alive,
            deleted: p.deleted,
        }
        .pack(&attrs)
    }

    /// Its fields, unpacked.
    pub fn to_parts(&self) -> StateParts {
        StateParts {
            attrs: self.attrs().map(|a| a.to_attr()).collect(),
            ..self.parts_without_attrs()
        }
    }

    /// Its fields, unpacked, but for the attributes (left empty): what a
    /// write that builds new attributes starts from.
    pub fn parts_without_attrs(&self) -> StateParts {
        StateParts {
            guid: self.guid(),
            rdn: self.rdn().into(),
            parent: self.parent().to_parent(),
            named: self.named(),
            created: self.created(),
            stamp: self.stamp(),
            deleted: self.deleted(),
            alive: self.alive(),
            attrs: Vec::new(),
        }
    }

    /// This state's fields, borrowed, to pack a variant of it.
    fn build(&self) -> Build<'_> {
        Build {
            guid: self.guid(),
            rdn: self.rdn(),
            parent: self.parent(),
            named: self.named(),
            created: self.created(),
            stamp: self.stamp(),
            alive: self.alive(),
            deleted: self.deleted(),
        }
    }

    /// The same state with the liveness stamp `alive` (an authoritatively
    /// restored object, or a write to one), its hash recomputed.
    pub fn with_alive(self, alive: Stamp) -> Self {
        let attrs: SmallVec<[AttrRef<'_>; 8]> = self.attrs().collect();
        Build {
            alive,
            ..self.build()
        }
        .pack(&attrs)
    }

    /// Whether `a` and `b` share one packed block.
    #[inline]
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.0.ptr() == b.0.ptr()
    }

    /// The bytes of its packed block, header included.
    pub fn packed_bytes(&self) -> usize {
        std::mem::size_of::<usize>() * 2 + std::mem::size_of::<Head>() + self.tail().len()
    }

    /// Asks for the cache lines of the packed block: its first 192 bytes,
    /// which hold the whole of an object with a few short attributes. Its
    /// length is not read first: that read would be the miss this avoids.
    #[inline(always)]
    pub(crate) fn prefetch(&self) {
        let p = self.0.heap_ptr().cast::<u8>();
        for off in [0, 64, 128, 191] {
            crate::core::prefetch::prefetch(p.wrapping_add(off));
        }
    }

    /// The (invocation, usn) of each stamp it carries, in its packed
    /// order; a stamp may appear twice (see `Build::pack`).
    #[inline(always)]
    pub(crate) fn stamp_keys(&self) -> impl Iterator<Item = (InvocationId, Usn)> + '_ {
        self.stamp_bytes()
            .chunks_exact(STAMP_BYTES)
            .map(|b| (InvocationId(le64(b, 12)), Usn(le64(b, 20))))
    }

    /// Whether `other` has the same rdn and parent: the packed bytes of
    /// both compared whole (the parent's kind from the header's flag, the
    /// rest as packed), without parsing either.
    #[inline]
    pub(crate) fn same_rdn_and_parent(&self, other: &ObjectState) -> bool {
        (self.head().flags ^ other.head().flags) & PARENT_OBJECT == 0
            && self.name_bytes() == other.name_bytes()
    }

    /// The packed rdn and parent: from the stamps' end to the attributes.
    #[inline(always)]
    fn name_bytes(&self) -> &[u8] {
        let h = self.head();
        &self.tail()[h.n_stamps as usize * STAMP_BYTES..h.attrs_at as usize]
    }

    #[inline(always)]
    fn head(&self) -> &Head {
        &self.0.header.header
    }

    #[inline(always)]
    fn tail(&self) -> &[u8] {
        &self.0.slice
    }

    #[inline(always)]
    fn stamp_bytes(&self) -> &[u8] {
        &self.tail()[..self.head().n_stamps as usize * STAMP_BYTES]
    }

    /// Globally unique id.
    #[inline(always)]
    pub fn guid(&self) -> Guid {
        Guid(unwords(self.head().guid))
    }

    /// Hash of the whole replicated state (guid, rdn, parent, deleted,
    /// values and every stamp): for digests and ties. Two replicas with the
    /// same values but different versions differ here, so a write that
    /// changed no value still has to replicate before a directory counts
    /// as converged.
    #[inline(always)]
    pub fn hash(&self) -> u128 {
        unwords(self.head().hash)
    }

    /// The name index's hash of its rdn at the place its parent names
    /// (LostAndFound's place hashes apart, by the table).
    #[inline(always)]
    pub(crate) fn name_hash(&self) -> u64 {
        self.head().name_hash
    }

    /// Tombstone flag: a deleted object keeps only its guid, name and stamps.
    #[inline(always)]
    pub fn deleted(&self) -> bool {
        self.head().flags & DELETED != 0
    }

    /// Stamp of the latest originating write (the Object-Version at object
    /// granularity).
    #[inline(always)]
    pub fn stamp(&self) -> Stamp {
        get_stamp(self.tail(), 0)
    }

    /// Liveness stamp: the stamp of the last write that set `deleted`: the
    /// create for a live object, the delete for a tombstone, the raised
    /// stamp for an object an authoritative restore brought back. Merges
    /// compare it first (see [`merge`]); ordinary modifies never change it.
    #[inline(always)]
    pub fn alive(&self) -> Stamp {
        get_stamp(self.tail(), self.head().alive as usize)
    }

    /// Stamp of the write that gave it its rdn and parent (its create or
    /// last rename): the higher keeps a contested name.
    #[inline]
    pub fn named(&self) -> Stamp {
        get_stamp(self.tail(), self.head().named as usize)
    }

    /// Stamp of the creating write.
    #[inline]
    pub fn created(&self) -> Stamp {
        get_stamp(self.tail(), self.head().created as usize)
    }

    /// Its relative name (`cn=Ann`), as given by its create or last rename;
    /// a name conflict or a parent in LostAndFound only changes how it is
    /// shown (`ObjectTable::shown_dn`).
    #[inline]
    pub fn rdn(&self) -> &str {
        let b = self.tail();
        let mut at = self.head().n_stamps as usize * STAMP_BYTES;
        let len = get_len(b, &mut at);
        get_str(b, &mut at, len)
    }

    /// What it hangs under: a fixed container or another object. The dn
    /// it is shown with is its rdn and its parent's shown dn.
    #[inline]
    pub fn parent(&self) -> ParentRef<'_> {
        let b = self.tail();
        let mut at = self.head().n_stamps as usize * STAMP_BYTES;
        at += get_len(b, &mut at);
        if self.head().flags & PARENT_OBJECT != 0 {
            let mut g = [0u8; 16];
            g.copy_from_slice(&b[at..at + 16]);
            ParentRef::Object(Guid(u128::from_le_bytes(g)))
        } else {
            let len = get_len(b, &mut at);
            ParentRef::Fixed(get_str(b, &mut at, len))
        }
    }

    /// The parent object's guid, if the parent is an object: the header's
    /// flag alone says when it is not.
    #[inline]
    pub fn parent_object(&self) -> Option<Guid> {
        if self.head().flags & PARENT_OBJECT == 0 {
            return None;
        }
        self.parent().object()
    }

    /// Attributes in name order.
    #[inline]
    pub fn attrs(&self) -> Attrs<'_> {
        let h = self.head();
        Attrs {
            bytes: self.tail(),
            at: h.attrs_at as usize,
            stamps: self.stamp_bytes(),
            left: h.n_attrs,
        }
    }

    /// Its name: rdn, parent and the stamp that gave them.
    pub fn name(&self) -> Name {
        Name {
            rdn: self.rdn().into(),
            parent: self.parent().to_parent(),
            named: self.named(),
        }
    }

    /// What decides which of two writes of the name wins: the stamp, then
    /// (only for two writes with one stamp, after a USN rollback) the name.
    fn name_key(&self) -> (Stamp, &str, ParentRef<'_>) {
        (self.named(), self.rdn(), self.parent())
    }

    /// The live attribute values, by name.
    pub fn values(&self) -> BTreeMap<String, String> {
        self.attrs()
            .filter_map(|a| a.value.map(|v| (a.name.to_string(), v.to_string())))
            .collect()
    }

    /// The value of one attribute, if set.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.attrs().find(|a| a.name == name).and_then(|a| a.value)
    }

    /// Every distinct stamp this state carries: what dampening and the
    /// by-origin index look at.
    pub fn stamps(&self) -> impl Iterator<Item = Stamp> + '_ {
        let b = self.stamp_bytes();
        let mut v: SmallVec<[Stamp; 8]> = (0..b.len() / STAMP_BYTES)
            .map(|i| get_stamp(b, i))
            .collect();
        v.sort_unstable_by_key(|s| (s.invocation, s.usn));
        v.dedup_by_key(|s| (s.invocation, s.usn));
        v.into_iter()
    }

    /// The tombstone of this object, stamped by the deleting write.
    pub fn tombstone(&self, stamp: Stamp) -> ObjectState {
        Build {
            stamp,
            alive: stamp,
            deleted: true,
            ..self.build()
        }
        .pack(&[])
    }

    /// Whether this state holds the write `stamp` or one that supersedes it.
    /// `attr` names the attribute the write set at attribute granularity.
    pub fn holds(&self, stamp: &Stamp, attr: Option<&str>) -> bool {
        if self.deleted() || self.stamp() >= *stamp {
            return true;
        }
        match attr {
            Some(n) => self.attrs().any(|a| a.name == n && a.stamp >= *stamp),
            None => false,
        }
    }
}

impl PartialEq for ObjectState {
    fn eq(&self, o: &Self) -> bool {
        Self::ptr_eq(self, o) || (self.head() == o.head() && self.tail() == o.tail())
    }
}

impl Eq for ObjectState {}

impl fmt::Debug for ObjectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attrs: Vec<AttrRef<'_>> = self.attrs().collect();
        f.debug_struct("ObjectState")
            .field("guid", &self.guid())
            .field("rdn", &self.rdn())
            .field("parent", &self.parent())
            .field("named", &self.named())
            .field("created", &self.created())
            .field("stamp", &self.stamp())
            .field("deleted", &self.deleted())
            .field("alive", &self.alive())
            .field("attrs", &attrs)
            .field("hash", &self.hash())
            .finish()
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
    let (ca, ia) = (cur.alive(), inc.alive());
    if ia != ca {
        return by_stamp(ia > ca);
    }
    let newer = || (inc.stamp(), inc.hash()) > (cur.stamp(), cur.hash());
    match (cur.deleted(), inc.deleted()) {
        (true, false) => return Merge::Keep,
        (false, true) => return Merge::Take,
        (true, true) => return by_stamp(newer()),
        (false, false) => {}
    }
    if g == Granularity::Object {
        return by_stamp(newer());
    }
    // The name (rdn and parent) is one more attribute, stamped `named`.
    let name = inc.name_key().cmp(&cur.name_key());
    let name_from_inc = name == std::cmp::Ordering::Greater;
    let (mut from_cur, mut from_inc) = (name == std::cmp::Ordering::Less, name_from_inc);
    walk_attrs(cur.attrs(), inc.attrs(), |_, side| match side {
        Side::Cur => from_cur = true,
        Side::Inc => from_inc = true,
        Side::Same => {}
    });
    let (cs, is) = (cur.stamp(), inc.stamp());
    match (from_cur, from_inc) {
        (_, false) if cs >= is => Merge::Keep,
        (false, _) if is >= cs => Merge::Take,
        _ => {
            let mut out: SmallVec<[AttrRef<'_>; 8]> = SmallVec::new();
            walk_attrs(cur.attrs(), inc.attrs(), |a, _| out.push(a));
            let named = if name_from_inc { inc } else { cur };
            Merge::New(
                Build {
                    stamp: cs.max(is),
                    rdn: named.rdn(),
                    parent: named.parent(),
                    named: named.named(),
                    ..cur.build()
                }
                .pack(&out),
            )
        }
    }
}

/// What orders two values of one attribute: the stamp, then the value.
fn attr_key<'a>(a: &AttrRef<'a>) -> (Stamp, Option<&'a str>) {
    (a.stamp, a.value)
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
fn walk_attrs<'a>(mut cur: Attrs<'a>, mut inc: Attrs<'a>, mut f: impl FnMut(AttrRef<'a>, Side)) {
    let (mut c, mut n) = (cur.next(), inc.next());
    loop {
        match (c, n) {
            (Some(x), Some(y)) if x.name == y.name => {
                match attr_key(&y).cmp(&attr_key(&x)) {
                    std::cmp::Ordering::Greater => f(y, Side::Inc),
                    std::cmp::Ordering::Less => f(x, Side::Cur),
                    std::cmp::Ordering::Equal => f(x, Side::Same),
                }
                (c, n) = (cur.next(), inc.next());
            }
            (Some(x), Some(y)) if x.name < y.name => {
                f(x, Side::Cur);
                c = cur.next();
            }
            (_, Some(y)) => {
                f(y, Side::Inc);
                n = inc.next();
            }
            (Some(x), None) => {
                f(x, Side::Cur);
                c = cur.next();
            }
            (None, None) => return,
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
        ObjectState::new(Guid(1), "cn=x", st(1, 1, 1), stamp, false, attrs)
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
        s.attrs()
            .map(|a| (a.name.to_string(), a.value.map(String::from), a.stamp))
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
        let names: Vec<&str> = s.attrs().map(|a| a.name).collect();
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
        let with = |f: &dyn Fn(&mut StateParts)| {
            let mut p = base.to_parts();
            f(&mut p);
            let name = Name {
                rdn: p.rdn,
                parent: p.parent,
                named: p.named,
            };
            ObjectState::with_name(p.guid, name, p.created, p.stamp, p.deleted, p.attrs)
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
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
        assert_eq!(
            base.hash(),
            obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]).hash()
        );
        // The liveness stamp: an unusual one changes the hash, the usual
        // one (the create's) is the state as built.
        assert_ne!(base.clone().with_alive(st(2, 1, 2)).hash(), base.hash());
        assert_eq!(base.clone().with_alive(base.created()).hash(), base.hash());
    }

    #[test]
    fn a_tombstone_keeps_identity_and_drops_attributes() {
        let s = obj(st(2, 1, 2), vec![attr("mail", Some("m"), st(2, 1, 2))]);
        let t = s.tombstone(st(3, 2, 5));
        assert!(t.deleted());
        assert_eq!(
            (t.guid(), t.rdn(), t.created(), t.stamp()),
            (s.guid(), "cn=x", s.created(), st(3, 2, 5))
        );
        assert_eq!(t.attrs().len(), 0);
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
        assert_eq!(a, twin.hash() > new.hash());
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
            assert_eq!(n.stamp(), st(2, 3, 7), "the higher object stamp");
            assert_eq!(
                (n.guid(), n.created(), n.deleted()),
                (cur.guid(), cur.created(), false)
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

    /// The content hash as the unpacked fields define it, written apart
    /// from the packing: a packed state must hash to exactly this.
    fn reference_hash(p: &StateParts) -> u128 {
        let mut h = crate::core::StableHasher::new();
        let stamp = |h: &mut crate::core::StableHasher, s: &Stamp| {
            h.write_u32(s.version);
            h.write_u64(s.time);
            h.write_u64(s.invocation.0);
            h.write_u64(s.usn.0);
        };
        h.write_u128(p.guid.0);
        h.write_str_lp(&p.rdn);
        match &p.parent {
            Parent::Fixed(dn) => {
                h.write_u8(0);
                h.write_str_lp(dn);
            }
            Parent::Object(g) => {
                h.write_u8(1);
                h.write_u128(g.0);
            }
        }
        stamp(&mut h, &p.named);
        h.write_u8(p.deleted as u8);
        stamp(&mut h, &p.created);
        stamp(&mut h, &p.stamp);
        h.write_u64(p.attrs.len() as u64);
        for a in &p.attrs {
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
        if p.alive != (if p.deleted { p.stamp } else { p.created }) {
            h.write_u8(1);
            stamp(&mut h, &p.alive);
        }
        h.finish128()
    }

    fn parts_strategy() -> impl Strategy<Value = StateParts> {
        // A small pool of stamps, so that fields share some and not others.
        let stamp = (0u32..3, 0u64..3, 1u64..4, 0u64..6).prop_map(|(v, t, i, u)| Stamp {
            version: v,
            time: t,
            invocation: InvocationId(i),
            usn: Usn(u),
        });
        // Lengths around the one- and two-byte length prefixes (127, 16383).
        let text = prop_oneof![
            "[a-z=]{0,12}",
            "[a-zé]{120,135}",
            proptest::collection::vec(any::<char>(), 16_380..16_390)
                .prop_map(|c| c.into_iter().collect::<String>()),
        ];
        let parent = prop_oneof![
            "[a-z=,]{0,20}".prop_map(|d| Parent::Fixed(d.into())),
            any::<u128>().prop_map(|g| Parent::Object(Guid(g))),
        ];
        let attr = (
            "[a-z]{1,8}",
            proptest::option::of(text.clone()),
            stamp.clone(),
        )
            .prop_map(|(n, v, s)| Attr {
                name: n.into(),
                value: v.map(Into::into),
                stamp: s,
            });
        (
            (any::<u128>(), text, parent),
            (stamp.clone(), stamp.clone(), stamp.clone(), stamp),
            any::<bool>(),
            proptest::collection::vec(attr, 0..12),
        )
            .prop_map(
                |((g, rdn, parent), (named, created, st, alive), deleted, mut attrs)| {
                    attrs.sort_by(|a, b| a.name.cmp(&b.name));
                    attrs.dedup_by(|a, b| a.name == b.name);
                    StateParts {
                        guid: Guid(g),
                        rdn: rdn.into(),
                        parent,
                        named,
                        created,
                        stamp: st,
                        deleted,
                        alive,
                        attrs,
                    }
                },
            )
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Packing keeps every field, hashes as the fields do, and lists
        /// each stamp the fields carry.
        #[test]
        fn packing_keeps_every_field(p in parts_strategy()) {
            let s = ObjectState::from_parts(p.clone());
            prop_assert_eq!(&s.to_parts(), &p);
            prop_assert_eq!(s.hash(), reference_hash(&p));
            prop_assert_eq!(
                s.name_hash(),
                crate::core::table::state_name_hash(&p.rdn, p.parent.as_ref())
            );
            prop_assert_eq!(
                (s.guid(), s.rdn(), s.parent(), s.deleted()),
                (p.guid, &*p.rdn, p.parent.as_ref(), p.deleted)
            );
            prop_assert_eq!(s.parent_object(), p.parent.object());
            prop_assert_eq!(
                (s.named(), s.created(), s.stamp(), s.alive()),
                (p.named, p.created, p.stamp, p.alive)
            );
            for a in &p.attrs {
                prop_assert_eq!(s.value(&a.name), a.value.as_deref());
            }
            let key = |x: &Stamp| (x.invocation, x.usn);
            let mut want: Vec<_> = [p.created, p.stamp, p.alive, p.named]
                .iter()
                .chain(p.attrs.iter().map(|a| &a.stamp))
                .map(key)
                .collect();
            want.sort();
            want.dedup();
            let got: Vec<_> = s.stamps().map(|x| key(&x)).collect();
            prop_assert_eq!(&got, &want);
            let mut keys: Vec<_> = s.stamp_keys().collect();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(&keys, &want);
            // Equal fields pack to an equal state; a tombstone of it differs.
            prop_assert_eq!(&ObjectState::from_parts(p.clone()), &s);
            let t = s.tombstone(Stamp { version: 9, ..p.stamp });
            prop_assert!(t != s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Comparing the packed name bytes says what comparing the rdn and
        /// the parent says, for names that share a part or all.
        #[test]
        fn packed_names_compare_as_their_fields(
            p in parts_strategy(),
            mut q in parts_strategy(),
            share in 0..4u8,
        ) {
            if share & 1 != 0 {
                q.rdn = p.rdn.clone();
            }
            if share & 2 != 0 {
                q.parent = p.parent.clone();
            }
            let (a, b) = (ObjectState::from_parts(p), ObjectState::from_parts(q));
            prop_assert_eq!(
                a.same_rdn_and_parent(&b),
                a.rdn() == b.rdn() && a.parent() == b.parent()
            );
        }
    }

    /// A fixed parent's dn of 15 bytes packs as 16 bytes, as long as an
    /// object parent's guid: the header's flag tells them apart.
    #[test]
    fn a_fixed_parent_never_compares_equal_to_an_object_parent() {
        let dn = "ou=abcdefghijkl";
        let mut g = [0u8; 16];
        g[0] = dn.len() as u8;
        g[1..].copy_from_slice(dn.as_bytes());
        let c = st(1, 1, 1);
        let parts = |parent| StateParts {
            guid: Guid(1),
            rdn: "cn=x".into(),
            parent,
            named: c,
            created: c,
            stamp: c,
            deleted: false,
            alive: c,
            attrs: vec![],
        };
        let fixed = ObjectState::from_parts(parts(Parent::Fixed(dn.into())));
        let under = ObjectState::from_parts(parts(Parent::Object(Guid(u128::from_le_bytes(g)))));
        assert_eq!(fixed.name_bytes(), under.name_bytes());
        assert!(!fixed.same_rdn_and_parent(&under));
        assert!(fixed.same_rdn_and_parent(&fixed.clone()));
    }

    #[test]
    fn a_created_object_carries_its_stamp_once() {
        let c = st(1, 1, 1);
        let s = obj(
            c,
            vec![
                attr("description", Some("d"), c),
                attr("mail", Some("m"), c),
            ],
        );
        assert_eq!(s.stamp_keys().count(), 1, "one stamp for every field");
        // The bench's restore story's object, in one block: the counts and
        // the 56-byte header 72, its one stamp 28, the rdn 1 + 12, the
        // root parent 1, mail 1 + 4 + 1 + 21 + 1, title 1 + 5 + 1 + 6 + 1.
        let story = ObjectState::new(
            Guid(9),
            "cn=obj123456",
            c,
            c,
            false,
            vec![
                attr("mail", Some("obj123456@example.com"), c),
                attr("title", Some("loaded"), c),
            ],
        );
        assert_eq!(story.packed_bytes(), 72 + 28 + 13 + 1 + 28 + 14);
        // A modify adds one stamp, shared by the attributes it wrote.
        let m = st(2, 1, 2);
        let s = ObjectState::from_parts(StateParts {
            stamp: m,
            attrs: vec![
                attr("a", Some("x"), m),
                attr("b", Some("y"), c),
                attr("c", Some("z"), m),
                attr("d", Some("w"), m),
            ],
            ..s.to_parts()
        });
        assert_eq!(s.stamp_keys().count(), 2);
    }
}
