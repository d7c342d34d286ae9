//! One server's object table and the indexes the protocol reads.
//!
//! Layout, chosen for the cost of one object replica (docs/PERFORMANCE.md):
//! every replica lives once in a slab (40-byte cells: the replica, its
//! origin summary, its LostAndFound and simple-keys flags) and every index
//! stores a 4-byte slot number instead of a 16-byte guid. The two hash
//! indexes (by guid, by dn) keep no key of their own: they read it from
//! the slot's shared state when they probe or grow.

use std::collections::{BTreeSet, HashMap};
use triomphe::Arc;

use crate::config::Granularity;
use crate::core::chunklog::{ChunkLog, Slot};
use crate::core::cow::{CowHash, Identified};
use crate::core::ids::{Guid, InvocationId, SimTime, Stamp, Usn};
use crate::core::object::{Merge, ObjectState, merge};
use crate::core::origin::OriginIndex;
use crate::core::prefetch::prefetch;
use crate::core::tree::{CNF_MARK, LOST_AND_FOUND, ParentRef, eq_ci, hash_ci, split_dn};

/// One server's copy of one object: the shared state plus its local USNs.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The replicated state, shared with every server that holds the same.
    pub state: ObjectState,
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

/// A hash index entry: the slot and the high half of its key's hash, so
/// that growing the table and rejecting a probe read no state.
#[derive(Debug, Clone, Copy)]
struct Hashed {
    slot: Slot,
    hash: u32,
}

impl Hashed {
    /// The hash the index grows by: the stored 32 bits, widened.
    fn rehash(&self) -> u64 {
        widen(self.hash)
    }
}

/// The hash of a parent's children entry in the children index.
fn kid_hash(e: &(Guid, Vec<Slot>)) -> u64 {
    widen(guid_hash(e.0))
}

impl Identified for Hashed {
    fn id(&self) -> u128 {
        (u128::from(self.slot) << 32) | u128::from(self.hash)
    }
}

/// A parent's children: the parent's guid tells entries apart.
impl Identified for (Guid, Vec<Slot>) {
    fn id(&self) -> u128 {
        self.0.0
    }
}

/// The 64-bit hash hashbrown sees for a stored 32-bit one: its high bits
/// (the probe tag) and low bits (the bucket) both come from it.
fn widen(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

/// What the GetChanges scan needs to skip a replica the requester already
/// holds without reading its state: the one invocation that originated
/// every stamp it carries and the highest of their USNs (`Usn(u64::MAX)`
/// when several invocations did, which no vector covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The originating invocation (the creating one for mixed origins).
    pub invocation: InvocationId,
    /// The highest originating USN, or `u64::MAX` for mixed origins.
    pub usn: Usn,
}

impl Origin {
    #[cfg(test)]
    fn of(s: &ObjectState) -> Origin {
        Summary::of(s).origin
    }
}

/// What a store reads off a state's stamps, in one pass over them: its
/// by-origin keys, its origin summary and whether `created` and `stamp`
/// carry every key (the cell's `simple_keys`).
struct Summary {
    keys: Keys,
    origin: Origin,
    simple: bool,
}

impl Summary {
    // Inlined so that its parts stay in registers: returned through memory,
    // each 16-byte part was written as two words and read back as one,
    // which stalls store forwarding.
    #[inline(always)]
    fn of(s: &ObjectState) -> Summary {
        let (c, t) = (key_of(s.created()), key_of(s.stamp()));
        let mut keys = Keys::two(c, t);
        let inv = c.0;
        // The loop meets `created` and `stamp` too: the list holds them.
        let (mut max, mut sole, mut simple) = (Usn(0), true, true);
        // A plain loop, not a closure called per stamp: the closure's
        // captures went through memory, a store and a load per stamp.
        for key in s.stamp_keys() {
            sole &= key.0 == inv;
            max = max.max(key.1);
            if key != c && key != t {
                simple = false;
                keys.add(key);
            }
        }
        Summary {
            keys,
            origin: Origin {
                invocation: inv,
                usn: if sole { max } else { Usn(u64::MAX) },
            },
            simple,
        }
    }
}

/// How many states ahead [`ObjectTable::prefetch_apply`] asks for each
/// line: the incoming state (12), the guid index (10), the slab's chunk
/// table (8), the cell (6), the old state (5; the log entries it leaves
/// are left stale, not looked up). A state or two apart, a line has come
/// (a miss costs about as much as applying a state) and is still cached
/// when read.
const STAGES: [usize; 5] = [OLD_STATE, CELL, FIND, GUID_INDEX, STATE];
const OLD_STATE: usize = 5;
const CELL: usize = 6;
const FIND: usize = 8;
const GUID_INDEX: usize = 10;
const STATE: usize = 12;

/// The slots [`ObjectTable::prefetch_apply`] remembers, by state index
/// modulo this (more than the farthest stage that finds one).
const AHEAD: usize = 16;

/// The slots a batch of applies will reach, found ahead of it by
/// [`ObjectTable::prefetch_apply`].
///
/// ```
/// use backsync::core::table::Ahead;
/// let ahead = Ahead::default();
/// # let _ = ahead;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Ahead {
    found: [Found; AHEAD],
}

/// Where [`ObjectTable::prefetch_apply`] found the state it was called
/// for, ahead of its apply: a guess that [`ObjectTable::merge_found`]
/// checks by the guid at it before using, so that a prefetched apply
/// looks its guid up once rather than twice.
///
/// ```
/// use backsync::core::table::Found;
/// let nothing = Found::default();
/// # let _ = nothing;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Found {
    slot: Option<Slot>,
}

/// The object table: a slab of replicas plus indexes by guid, local USN,
/// originating write and dn.
///
/// Nothing here iterates a hash index where order matters: scans go through
/// the sorted by-USN and by-origin logs and the ordered sets, so every run
/// visits objects in the same order.
#[derive(Debug, Clone, Default)]
pub struct ObjectTable {
    /// Every replica held, by slot.
    slab: Slab,
    /// Free slots, reused first.
    free: imbl::Vector<Slot>,
    /// Slots by guid (the guid read from the slot).
    by_guid: CowHash<Hashed>,
    /// Slots by local USN of their last write: the GetChanges scan. An
    /// entry is current while its slot's replica has that USN; a later
    /// write or a removal leaves it stale rather than finding it to take it
    /// out (in a large directory, two or three cache misses per write).
    by_usn: ChunkLog,
    /// At least how many of `by_usn`'s entries are stale: once they
    /// outnumber the objects held, the index is rebuilt without them.
    usn_stale: usize,
    /// Slots by the originating (invocation, USN) of every stamp their
    /// state carries: the backsync answer. An entry is current while its
    /// slot's state carries that stamp; like `by_usn`, a write that drops
    /// a stamp leaves its entry stale.
    by_origin: OriginIndex,
    /// At least how many of `by_origin`'s entries are stale.
    origin_stale: usize,
    /// Per name of live objects (where it is shown, and its rdn, compared
    /// ignoring case), the holder: the live object with that name whose
    /// last naming write (create or rename) is the latest.
    names: CowHash<Hashed>,
    /// The rare names more than one live object has, by the 64-bit hash
    /// of the name: every such object (two names with one hash share an
    /// entry and are told apart by comparing them).
    name_conflicts: HashMap<u64, Vec<Slot>>,
    /// Live objects by the guid of their parent object (held or not, live
    /// or not): what follows a parent that dies, comes back or arrives.
    kids: CowHash<(Guid, Vec<Slot>)>,
    /// Live objects whose parents lead back to them (concurrent moves made
    /// a cycle): of each cycle, the one named last, shown in LostAndFound.
    cut: BTreeSet<Guid>,
    /// Tombstones by deletion time, for garbage collection: a persistent
    /// B-tree, so that a backup or a restore shares it rather than copying
    /// every tombstone (a write after copies the nodes on its path).
    tombstones: imbl::OrdSet<(SimTime, Guid)>,
    digest: Digest,
    live: usize,
}

/// splitmix64's finaliser: spreads every input bit over the hash, as the
/// hash table's probe (low bits) and tag (high bits) both need.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Slots per slab chunk: the first write after a backup or a restore to
/// a chunk copies its cells and takes a reference to each cell's state, a
/// cache miss apiece in a large directory, so chunks are small.
const CHUNK_BITS: u32 = 5;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Chunks per group (2^GROUP_BITS): a clone copies a pointer per group, so
/// small chunks do not make a backup or a restore cost more.
const GROUP_BITS: u32 = 6;
const GROUP: usize = 1 << GROUP_BITS;

/// One slot: a replica (`None` when free), its [`Origin`], and whether it
/// is shown in LostAndFound here (a live object whose parent object is not
/// live here, or that a cycle of moves cut off).
#[derive(Debug, Clone)]
struct Cell {
    replica: Option<Replica>,
    origin_invocation: InvocationId,
    /// The origin's USN in the low 62 bits ([`MIXED`] for mixed origins),
    /// and the two flags above it: 40 bytes a cell instead of 48, a
    /// million replicas 8 MB less.
    origin_bits: u64,
}

/// The origin USN that stands for mixed origins. An originating USN this
/// high (no counter reaches it) is stored as mixed too: the scan then
/// reads the state instead of skipping it, which is always correct.
const MIXED: u64 = (1 << 62) - 1;
const LOST: u64 = 1 << 63;
/// Whether every stamp the state carries is its `created` or its `stamp`
/// (a created object; one whose every write since set the same
/// attributes): its origin keys are then read from those two fields,
/// without a cache miss on its attributes, when it is replaced or removed.
const SIMPLE_KEYS: u64 = 1 << 62;

/// A run of [`CHUNK`] cells, allocated whole: an array behind `Arc`, so
/// reaching a cell reads the chunk's memory once (a `Vec` behind `Arc`
/// would first read its header, another cache miss per cell in a large
/// directory).
type Chunk = Arc<[Cell; CHUNK]>;

/// [`GROUP`] chunks, allocated whole for the same reason; those past the
/// slab's end are not allocated yet.
type Group = [Option<Chunk>; GROUP];

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Cell>() == 40);

impl Cell {
    fn new(replica: Replica, origin: Origin, lost: bool, simple_keys: bool) -> Cell {
        let usn = if origin.usn.0 >= MIXED {
            MIXED
        } else {
            origin.usn.0
        };
        Cell {
            replica: Some(replica),
            origin_invocation: origin.invocation,
            origin_bits: usn
                | if lost { LOST } else { 0 }
                | if simple_keys { SIMPLE_KEYS } else { 0 },
        }
    }

    fn free() -> Cell {
        Cell {
            replica: None,
            origin_invocation: InvocationId(0),
            origin_bits: MIXED,
        }
    }

    fn origin(&self) -> Origin {
        let usn = self.origin_bits & MIXED;
        Origin {
            invocation: self.origin_invocation,
            usn: Usn(if usn == MIXED { u64::MAX } else { usn }),
        }
    }

    fn lost(&self) -> bool {
        self.origin_bits & LOST != 0
    }

    fn set_lost(&mut self, lost: bool) {
        self.origin_bits = (self.origin_bits & !LOST) | if lost { LOST } else { 0 };
    }

    fn simple_keys(&self) -> bool {
        self.origin_bits & SIMPLE_KEYS != 0
    }
}

/// The replicas, in chunks of [`CHUNK`] slots in groups of [`GROUP`]
/// chunks, both shared copy-on-write: a backup or a restore copies a
/// pointer per group, and a write copies only the group's pointers and
/// the chunk it lands in, instead of touching every shared state. The
/// `Arc`s are triomphe's: a write checks that both are unshared with two
/// plain loads, where std's `make_mut` would take a locked
/// compare-and-swap for each.
#[derive(Debug, Clone, Default)]
struct Slab {
    groups: Vec<Arc<Group>>,
    /// Slots handed out; the last chunk's cells past it are free.
    len: usize,
}

impl Slab {
    /// The chunk holding slot `s`, if allocated.
    fn chunk(&self, s: Slot) -> Option<&Chunk> {
        let s = s as usize;
        self.groups.get(s >> (CHUNK_BITS + GROUP_BITS))?[(s >> CHUNK_BITS) & (GROUP - 1)].as_ref()
    }

    /// Slot `s`'s cell, if the slab reaches that far.
    fn get(&self, s: Slot) -> Option<&Cell> {
        Some(&self.chunk(s)?[s as usize & (CHUNK - 1)])
    }

    fn cell(&self, s: Slot) -> &Cell {
        self.get(s).expect("a slot below the slab's end")
    }

    /// Asks for the line of the group that points to slot `s`'s chunk.
    fn prefetch_chunk(&self, s: Slot) {
        let s = s as usize;
        if let Some(g) = self.groups.get(s >> (CHUNK_BITS + GROUP_BITS)) {
            prefetch(&g[(s >> CHUNK_BITS) & (GROUP - 1)]);
        }
    }

    /// Asks for slot `s`'s cell and its chunk's reference count (a write
    /// checks it), once [`Slab::prefetch_chunk`]'s line has come.
    fn prefetch_cell(&self, s: Slot) {
        if let Some(c) = self.chunk(s) {
            prefetch(Arc::as_ptr(c));
            prefetch(&c[s as usize & (CHUNK - 1)]);
        }
    }

    fn cell_mut(&mut self, s: Slot) -> &mut Cell {
        let s = s as usize;
        let group = Arc::make_mut(&mut self.groups[s >> (CHUNK_BITS + GROUP_BITS)]);
        let chunk = group[(s >> CHUNK_BITS) & (GROUP - 1)]
            .as_mut()
            .expect("a slot below the slab's end");
        &mut Arc::make_mut(chunk)[s & (CHUNK - 1)]
    }

    /// A new, free slot at the end.
    fn push(&mut self) -> Slot {
        if self.len.is_multiple_of(CHUNK * GROUP) {
            self.groups.push(Arc::new(std::array::from_fn(|_| None)));
        }
        if self.len.is_multiple_of(CHUNK) {
            let group = Arc::make_mut(self.groups.last_mut().expect("a group with room"));
            group[(self.len >> CHUNK_BITS) & (GROUP - 1)] =
                Some(Arc::new(std::array::from_fn(|_| Cell::free())));
        }
        self.len += 1;
        Slot::try_from(self.len - 1).expect("fewer than 2^32 objects")
    }

    /// Every chunk, in slot order (tests).
    #[cfg(test)]
    fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.groups.iter().flat_map(|g| g.iter().flatten())
    }
}

fn at(slab: &Slab, s: Slot) -> &Replica {
    slab.cell(s)
        .replica
        .as_ref()
        .expect("an indexed slot is occupied")
}

/// An originating write's key in the by-origin index.
type Key = (InvocationId, Usn);

/// A stamp's key in the by-origin index.
fn key_of(st: Stamp) -> Key {
    (st.invocation, st.usn)
}

/// The distinct keys of every stamp a state carries, without allocating
/// for the usual few.
struct Keys {
    inline: [Key; 6],
    n: usize,
    spill: Vec<Key>,
}

impl Keys {
    fn of(s: &ObjectState) -> Keys {
        Summary::of(s).keys
    }

    /// The keys of the state in `cell`: from its `created` and `stamp`
    /// alone when the cell says they are all.
    fn of_cell(cell: &Cell, s: &ObjectState) -> Keys {
        if cell.simple_keys() {
            Keys::two(key_of(s.created()), key_of(s.stamp()))
        } else {
            Keys::of(s)
        }
    }

    /// `c`, and `t` unless equal to it.
    fn two(c: Key, t: Key) -> Keys {
        let mut inline = [(InvocationId(0), Usn(0)); 6];
        inline[0] = c;
        inline[1] = t;
        Keys {
            inline,
            n: 1 + usize::from(t != c),
            spill: Vec::new(),
        }
    }

    /// Adds `key` unless held. Out of line: at object granularity a
    /// state's other stamps repeat `created` or `stamp`, so the store's
    /// loop stays small and seldom calls it.
    #[cold]
    fn add(&mut self, key: Key) {
        if self.contains(key) {
            return;
        }
        if self.n < self.inline.len() {
            self.inline[self.n] = key;
            self.n += 1;
        } else {
            self.spill.push(key);
        }
    }

    fn contains(&self, key: Key) -> bool {
        self.inline[..self.n].contains(&key) || self.spill.contains(&key)
    }

    fn iter(&self) -> impl Iterator<Item = Key> + '_ {
        self.inline[..self.n].iter().chain(&self.spill).copied()
    }
}

/// Whether the replica in `cell` carries a stamp originated by `inv` at
/// `usn` (its by-origin entry is current): from `created` and `stamp`
/// alone when the cell says they are all its stamps.
fn carries(cell: &Cell, (inv, usn): Key) -> bool {
    let Some(r) = &cell.replica else {
        return false;
    };
    let s = &r.state;
    if cell.simple_keys() {
        return key_of(s.created()) == (inv, usn) || key_of(s.stamp()) == (inv, usn);
    }
    // The state's own list of its distinct stamps: no attribute is parsed.
    s.stamp_keys().any(|k| k == (inv, usn))
}

/// A guid's 64-bit hash: guids are random already, so one splitmix round
/// spreads them (SipHash would cost more than the rest of a probe).
pub fn guid_hash64(g: Guid) -> u64 {
    mix((g.0 as u64) ^ ((g.0 >> 64) as u64).rotate_left(29))
}

/// A guid's 32-bit index hash (the top half of [`guid_hash64`]).
fn guid_hash(g: Guid) -> u32 {
    (guid_hash64(g) >> 32) as u32
}

/// The hasher of the table's guid index, for `std` maps keyed by guid (the
/// benchmarks' baselines use it, so that both sides hash alike).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuidHasher(u64);

impl std::hash::Hasher for GuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only guids (`write_u128`) are meant; other keys still hash.
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = mix(self.0 ^ u64::from_le_bytes(w));
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = guid_hash64(Guid(i));
    }
}

/// The order of the live objects sharing a name: the greatest holds it.
fn name_key(slab: &Slab, s: Slot) -> (Stamp, Guid) {
    let st = &at(slab, s).state;
    (st.named(), st.guid())
}

/// Where a live object is shown: under a fixed container, under its
/// parent object, or in LostAndFound.
#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    Fixed(&'a str),
    Under(Guid),
    Lost,
}

impl Place<'_> {
    /// A fixed container's place; `cn=LostAndFound` is the LostAndFound place.
    fn fixed(dn: &str) -> Place<'_> {
        // The root, every flat directory's place, without a comparison.
        if !dn.is_empty() && eq_ci(dn, LOST_AND_FOUND) {
            Place::Lost
        } else {
            Place::Fixed(dn)
        }
    }

    fn same(&self, o: &Place<'_>) -> bool {
        match (self, o) {
            (Place::Fixed(a), Place::Fixed(b)) => eq_ci(a, b),
            (Place::Under(a), Place::Under(b)) => a == b,
            (Place::Lost, Place::Lost) => true,
            _ => false,
        }
    }

    fn hash(&self) -> u64 {
        match self {
            Place::Fixed("") => 0x7f4a_7c15_9e37_79b9,
            Place::Fixed(dn) => hash_ci(dn),
            Place::Under(g) => mix((g.0 as u64) ^ ((g.0 >> 64) as u64).rotate_left(29)),
            Place::Lost => 0x2545_f491_4f6c_dd1d,
        }
    }
}

/// The place of live slot `s`.
fn place_of(slab: &Slab, s: Slot) -> Place<'_> {
    let c = slab.cell(s);
    let st = &c
        .replica
        .as_ref()
        .expect("an indexed slot is occupied")
        .state;
    if c.lost() {
        return Place::Lost;
    }
    match st.parent() {
        ParentRef::Fixed(dn) => Place::fixed(dn),
        ParentRef::Object(g) => Place::Under(g),
    }
}

/// The 64-bit hash of a name: where it is shown and its rdn.
fn name_hash(place: &Place<'_>, rdn: &str) -> u64 {
    mix(place.hash() ^ hash_ci(rdn).rotate_left(17))
}

/// Whether live slot `s` has this name.
fn has_name(slab: &Slab, s: Slot, place: &Place<'_>, rdn: &str) -> bool {
    place_of(slab, s).same(place) && eq_ci(at(slab, s).state.rdn(), rdn)
}

/// The name hash of a state's rdn at the place its parent names (what
/// [`ObjectState`] keeps in its header).
pub(crate) fn state_name_hash(rdn: &str, parent: ParentRef<'_>) -> u64 {
    let place = match parent {
        ParentRef::Fixed(dn) => Place::fixed(dn),
        ParentRef::Object(g) => Place::Under(g),
    };
    name_hash(&place, rdn)
}

/// The name hash of live slot `s` where it is shown: its state's own, or
/// LostAndFound's.
fn name_hash_of(slab: &Slab, s: Slot) -> u64 {
    let st = &at(slab, s).state;
    if slab.cell(s).lost() {
        name_hash(&Place::Lost, st.rdn())
    } else {
        st.name_hash()
    }
}

/// Adds live slot `s` to the name index.
fn name_insert(
    names: &mut CowHash<Hashed>,
    conflicts: &mut HashMap<u64, Vec<Slot>>,
    slab: &Slab,
    s: Slot,
) {
    let rdn = at(slab, s).state.rdn();
    let h64 = name_hash_of(slab, s);
    // The place is read from the state only to compare it with another's.
    let mut place = None;
    let h = (h64 >> 32) as u32;
    // A name no live object has yet (the usual case) is added by the
    // probe that looked for it.
    let Some(holder) = names.find_mut_or_insert(
        widen(h),
        |o| {
            o.hash == h && {
                let place = place.get_or_insert_with(|| place_of(slab, s));
                has_name(slab, o.slot, place, rdn)
            }
        },
        Hashed::rehash,
        Hashed { slot: s, hash: h },
    ) else {
        return;
    };
    let all = conflicts.entry(h64).or_default();
    if !all.contains(&holder.slot) {
        all.push(holder.slot);
    }
    all.push(s);
    if name_key(slab, s) > name_key(slab, holder.slot) {
        holder.slot = s;
    }
}

/// Takes live slot `s` (still holding its state and place) out of the
/// name index.
fn name_remove(
    names: &mut CowHash<Hashed>,
    conflicts: &mut HashMap<u64, Vec<Slot>>,
    slab: &Slab,
    s: Slot,
) {
    let (place, rdn) = (place_of(slab, s), at(slab, s).state.rdn());
    let h64 = name_hash_of(slab, s);
    let h = (h64 >> 32) as u32;
    if let Some(all) = conflicts.get_mut(&h64)
        && all.contains(&s)
    {
        all.retain(|&o| o != s);
        let same: Vec<Slot> = (all.iter().copied())
            .filter(|&o| has_name(slab, o, &place, rdn))
            .collect();
        let best = (same.iter().copied())
            .max_by_key(|&o| name_key(slab, o))
            .expect("a conflict keeps two or more");
        if same.len() == 1 {
            all.retain(|&o| o != best);
            if all.is_empty() {
                conflicts.remove(&h64);
            }
        }
        if let Some(holder) = names.find_mut(
            widen(h),
            |o| o.hash == h && has_name(slab, o.slot, &place, rdn),
            Hashed::rehash,
        ) {
            holder.slot = best;
        }
    } else {
        names.remove(widen(h), |o| o.slot == s);
    }
}

/// Whether a stored state changes nothing the name index reads.
fn same_name(old: &ObjectState, new: &ObjectState) -> bool {
    !old.deleted() && !new.deleted() && old.named() == new.named() && old.same_rdn_and_parent(new)
}

/// Stale entries an index may hold whatever the table's size: a small
/// table's indexes are not rebuilt every few writes.
const STALE_FLOOR: usize = 4096;

/// How many entries ahead the GetChanges scan asks for a slot's chunk
/// pointer, its cell and its state: far enough apart that each miss
/// (about 100 ns) is over before the next stage reads the line, near
/// enough that the lines stay cached.
const FAR: usize = 12;
const MID: usize = 8;
const NEAR: usize = 4;

/// How far a walk up the parents goes before it stops (a deeper tree is
/// shown from there in LostAndFound).
const MAX_DEPTH: usize = 4096;

impl ObjectTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, guid: Guid) -> Option<Slot> {
        let h = guid_hash(guid);
        let slab = &self.slab;
        self.by_guid
            .find(widen(h), |o| {
                o.hash == h && at(slab, o.slot).state.guid() == guid
            })
            .map(|o| o.slot)
    }

    /// The replica of `guid`, if held.
    pub fn get(&self, guid: Guid) -> Option<Replica> {
        self.get_ref(guid).cloned()
    }

    /// The replica of `guid`, if held, without cloning it.
    pub fn get_ref(&self, guid: Guid) -> Option<&Replica> {
        self.get_ref_found(guid, Found::default())
    }

    /// [`ObjectTable::get_ref`], trying where `found` says first.
    pub fn get_ref_found(&self, guid: Guid, found: Found) -> Option<&Replica> {
        self.slot_found(guid, found).map(|s| at(&self.slab, s))
    }

    /// The slot of `guid`: `found`'s if the replica there has this guid
    /// (held objects never share a guid), else looked up.
    fn slot_found(&self, guid: Guid, found: Found) -> Option<Slot> {
        self.at_found(guid, found).or_else(|| self.slot(guid))
    }

    /// `found`'s slot, if the replica there has `guid`.
    fn at_found(&self, guid: Guid, found: Found) -> Option<Slot> {
        found.slot.filter(|&s| {
            (self.slab.get(s))
                .and_then(|c| c.replica.as_ref())
                .is_some_and(|r| r.state.guid() == guid)
        })
    }

    /// Number of objects, tombstones included.
    pub fn len(&self) -> usize {
        self.by_guid.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_guid.is_empty()
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
    pub fn put(&mut self, state: ObjectState, usn: Usn) {
        match self.slot_or_claim(state.guid()) {
            Ok(s) => self.replace_at(s, state, usn),
            Err(s) => self.fill(s, state, usn),
        }
    }

    /// Merges a replicated state into the table (one lookup): when it
    /// changes the object, stores the result at the USN `usn` hands out.
    /// Returns whether the table changed.
    pub fn merge_in(
        &mut self,
        inc: &ObjectState,
        g: Granularity,
        usn: impl FnOnce() -> Usn,
    ) -> bool {
        self.merge_found(inc, g, Found::default(), usn)
    }

    /// [`ObjectTable::merge_in`], trying where `found` says first.
    pub fn merge_found(
        &mut self,
        inc: &ObjectState,
        g: Granularity,
        found: Found,
        usn: impl FnOnce() -> Usn,
    ) -> bool {
        let at_found = self.at_found(inc.guid(), found);
        let s = match at_found.map_or_else(|| self.slot_or_claim(inc.guid()), Ok) {
            Ok(s) => s,
            Err(s) => {
                self.fill(s, inc.clone(), usn());
                return true;
            }
        };
        let next = match merge(&at(&self.slab, s).state, inc, g) {
            Merge::Keep => return false,
            Merge::Take => inc.clone(),
            Merge::New(n) => n,
        };
        self.replace_at(s, next, usn());
        true
    }

    /// The slot holding `guid` (`Ok`), or else a new slot, already indexed
    /// by `guid` (`Err`), that [`ObjectTable::fill`] must fill next: one
    /// probe of the guid index for both.
    fn slot_or_claim(&mut self, guid: Guid) -> Result<Slot, Slot> {
        let h = guid_hash(guid);
        // A table that only grows has no free slot: its length says so
        // without a walk into the persistent vector.
        let next = match (!self.free.is_empty()).then(|| self.free.back()).flatten() {
            Some(&s) => s,
            None => Slot::try_from(self.slab.len).expect("fewer than 2^32 objects"),
        };
        let slab = &self.slab;
        if let Some(o) = self.by_guid.find_or_insert(
            widen(h),
            |o| o.hash == h && at(slab, o.slot).state.guid() == guid,
            Hashed::rehash,
            Hashed {
                slot: next,
                hash: h,
            },
        ) {
            return Ok(o.slot);
        }
        let s = match (!self.free.is_empty())
            .then(|| self.free.pop_back())
            .flatten()
        {
            Some(s) => s,
            None => self.slab.push(),
        };
        debug_assert_eq!(s, next, "the slot claimed is the one taken");
        Err(s)
    }

    /// Replaces the replica in occupied slot `s` with `state`, written at `usn`.
    fn replace_at(&mut self, s: Slot, state: ObjectState, usn: Usn) {
        let cell = self.slab.cell(s);
        let usn_created = cell.replica.as_ref().expect("occupied").usn_created;
        let old = &cell.replica.as_ref().expect("occupied").state;
        let same_name = same_name(old, &state);
        let was_live = !old.deleted();
        let tree = !same_name
            && (old.parent_object().is_some()
                || state.parent_object().is_some()
                || !self.cut.is_empty());
        let lost = cell.lost();
        let old_keys = Keys::of_cell(cell, old);
        let Summary {
            keys: new_keys,
            origin,
            simple: simple_keys,
        } = Summary::of(&state);
        self.unindex(s, &old_keys, Some(&new_keys), same_name);
        let (guid, live) = (state.guid(), !state.deleted());
        let replica = Replica {
            state,
            usn_changed: usn,
            usn_created,
        };
        *self.slab.cell_mut(s) = Cell::new(replica, origin, lost && same_name, simple_keys);
        self.index(s, &new_keys, Some(&old_keys), same_name);
        if was_live != live {
            self.replace_kids(guid);
        }
        if tree {
            self.recheck_cycles(guid);
        }
    }

    /// Fills slot `s`, new and already in the guid index (see
    /// [`ObjectTable::slot_or_claim`]), with `state` written at `usn`.
    fn fill(&mut self, s: Slot, state: ObjectState, usn: Usn) {
        let guid = state.guid();
        let Summary {
            keys,
            origin,
            simple: simple_keys,
        } = Summary::of(&state);
        let (live, tree) = (!state.deleted(), state.parent_object().is_some());
        let replica = Replica {
            state,
            usn_changed: usn,
            usn_created: usn,
        };
        *self.slab.cell_mut(s) = Cell::new(replica, origin, false, simple_keys);
        self.index(s, &keys, None, false);
        if live {
            // Children that arrived before it (or stayed after its garbage
            // collection) hang under it again.
            self.replace_kids(guid);
        }
        if tree || !self.cut.is_empty() {
            self.recheck_cycles(guid);
        }
    }

    /// Asks for what applying the states after `states[i]` will read, while
    /// `states[i]` is applied: call it before applying each state of a
    /// batch, in order, with the same [`Ahead`].
    ///
    /// Each step on the way from an incoming guid to the replica it
    /// replaces (the incoming state, the guid index, the slab's chunk
    /// table, the cell, the old state) is a cache miss that needs the
    /// one before it. Here each is asked for a couple of states before the
    /// next step reads it ([`STAGES`]), so that the misses of several
    /// states overlap instead of coming one after another. A hint only: a
    /// slot found by the index's 32-bit hash alone, or gone stale as the
    /// batch applies, asks for a line not needed, and the apply checks
    /// the slot returned by the guid at it.
    ///
    /// ```
    /// use backsync::Granularity;
    /// use backsync::core::{Ahead, Dsa, InvocationId};
    /// use backsync::bench::{core_config, replicated, source};
    /// let states = replicated(&source(1, 100, "obj"));
    /// let mut d = Dsa::new("D".into(), InvocationId(9), core_config(Granularity::Object));
    /// let mut ahead = Ahead::default();
    /// for (i, s) in states.iter().enumerate() {
    ///     d.table().prefetch_apply(&mut ahead, &states, i);
    ///     d.apply_state(s);
    /// }
    /// assert_eq!(d.table().len(), 100);
    /// ```
    ///
    /// Returns where it found `states[i]`, for [`ObjectTable::merge_found`].
    pub fn prefetch_apply(&self, ahead: &mut Ahead, states: &[ObjectState], i: usize) -> Found {
        if i == 0 {
            // The batch's first states: each stage in turn over them.
            for &k in STAGES.iter().rev() {
                for (j, inc) in states.iter().enumerate().take(k) {
                    self.prefetch_stage(ahead, inc, j, k);
                }
            }
        }
        for &k in STAGES.iter().rev() {
            if let Some(inc) = states.get(i + k) {
                self.prefetch_stage(ahead, inc, i + k, k);
            }
        }
        ahead.found[i % AHEAD]
    }

    /// Stage `k` of [`ObjectTable::prefetch_apply`] for `inc`, the `j`th state.
    fn prefetch_stage(&self, ahead: &mut Ahead, inc: &ObjectState, j: usize, k: usize) {
        let found = &mut ahead.found[j % AHEAD];
        match k {
            STATE => inc.prefetch(),
            GUID_INDEX => self.by_guid.prefetch(widen(guid_hash(inc.guid()))),
            FIND => {
                let h = guid_hash(inc.guid());
                found.slot = self.by_guid.find(widen(h), |o| o.hash == h).map(|o| o.slot);
                match found.slot {
                    Some(s) => self.slab.prefetch_chunk(s),
                    // A new object: its insert probes the name index where
                    // its parent puts it (LostAndFound would probe elsewhere).
                    None if !inc.deleted() => {
                        self.names.prefetch(widen((inc.name_hash() >> 32) as u32));
                    }
                    None => {}
                }
            }
            CELL => {
                if let Some(s) = found.slot {
                    self.slab.prefetch_cell(s);
                }
            }
            _ => {
                if let Some(r) = (found.slot).and_then(|s| self.slab.cell(s).replica.as_ref()) {
                    // The old state: the merge and the name check read it.
                    r.state.prefetch();
                }
            }
        }
    }

    /// Removes an object entirely (garbage collection, connector purge).
    pub fn remove(&mut self, guid: Guid) -> Option<Replica> {
        let s = self.slot(guid)?;
        let st = &at(&self.slab, s).state;
        let (live, tree) = (!st.deleted(), st.parent_object().is_some());
        let keys = Keys::of_cell(self.slab.cell(s), st);
        self.unindex(s, &keys, None, false);
        self.by_guid.remove(widen(guid_hash(guid)), |o| o.slot == s);
        self.free.push_back(s);
        let r = self.slab.cell_mut(s).replica.take();
        if live {
            self.replace_kids(guid);
        }
        if live && (tree || !self.cut.is_empty()) {
            self.recheck_cycles(guid);
        }
        r
    }

    /// Adds the replica in slot `s` (whose stamps have `keys`) to every
    /// index, except the origins it `had` before (they point here already)
    /// and, when `same_name`, its name and parent entries.
    fn index(&mut self, s: Slot, keys: &Keys, had: Option<&Keys>, same_name: bool) {
        // Everything read off the replica at once: after the writes below,
        // the slot would be walked to again (group, chunk, cell, state).
        let r = at(&self.slab, s);
        let st = &r.state;
        let (usn, deleted, time, guid, hash) = (
            r.usn_changed,
            st.deleted(),
            st.stamp().time,
            st.guid(),
            st.hash(),
        );
        let parent = st.parent_object();
        self.by_usn.insert(usn, s);
        for (inv, u) in keys.iter() {
            if had.is_some_and(|h| h.contains((inv, u))) {
                continue;
            }
            self.by_origin.insert(inv, u, s);
        }
        self.drop_stale();
        if deleted {
            self.tombstones.insert((time, guid));
        } else {
            self.live += 1;
            if !same_name {
                if let Some(p) = parent {
                    let h = widen(guid_hash(p));
                    match self.kids.find_mut(h, |e| e.0 == p, kid_hash) {
                        Some(e) => e.1.push(s),
                        None => self.kids.insert(h, (p, vec![s]), kid_hash),
                    }
                    let lost = self.lost(guid, p);
                    self.slab.cell_mut(s).set_lost(lost);
                }
                name_insert(&mut self.names, &mut self.name_conflicts, &self.slab, s);
            }
        }
        self.digest.sum = self.digest.sum.wrapping_add(hash);
        self.digest.count += 1;
    }

    /// Takes the replica in slot `s` (whose stamps have `keys`) out of
    /// every index, except the origins it `keeps` and, when `same_name`, its
    /// name and parent entries.
    fn unindex(&mut self, s: Slot, keys: &Keys, keeps: Option<&Keys>, same_name: bool) {
        let r = at(&self.slab, s);
        let st = &r.state;
        // Its by-USN entry and the by-origin entries of the stamps it
        // drops stay, stale, skipped by every read (see `usn_stale`).
        self.usn_stale += 1;
        self.origin_stale += keys
            .iter()
            .filter(|&k| !keeps.is_some_and(|keeps| keeps.contains(k)))
            .count();
        if st.deleted() {
            self.tombstones.remove(&(st.stamp().time, st.guid()));
        } else {
            self.live -= 1;
            if !same_name {
                name_remove(&mut self.names, &mut self.name_conflicts, &self.slab, s);
                if let Some(p) = st.parent_object() {
                    let h = widen(guid_hash(p));
                    if let Some(e) = self.kids.find_mut(h, |e| e.0 == p, kid_hash) {
                        e.1.retain(|&k| k != s);
                        if e.1.is_empty() {
                            self.kids.remove(h, |e| e.0 == p);
                        }
                    }
                }
            }
        }
        self.digest.sum = self.digest.sum.wrapping_sub(st.hash());
        self.digest.count -= 1;
    }

    /// The slot of a live object.
    fn live_slot(&self, guid: Guid) -> Option<Slot> {
        self.slot(guid)
            .filter(|&s| !at(&self.slab, s).state.deleted())
    }

    /// Whether live object `guid`, child of object `parent`, is shown in
    /// LostAndFound here: its parent is not live here, or a cycle of moves
    /// cut it off.
    fn lost(&self, guid: Guid, parent: Guid) -> bool {
        self.live_slot(parent).is_none() || self.cut.contains(&guid)
    }

    /// Moves live slot `s` to LostAndFound or back when that changed.
    fn replace(&mut self, s: Slot) {
        let st = &at(&self.slab, s).state;
        let lost = match st.parent_object() {
            Some(p) => self.lost(st.guid(), p),
            None => false,
        };
        if lost != self.slab.cell(s).lost() {
            name_remove(&mut self.names, &mut self.name_conflicts, &self.slab, s);
            self.slab.cell_mut(s).set_lost(lost);
            name_insert(&mut self.names, &mut self.name_conflicts, &self.slab, s);
        }
    }

    /// The children of `parent` move to LostAndFound or back after it died,
    /// came back, arrived or went.
    fn replace_kids(&mut self, parent: Guid) {
        if self.kids.is_empty() {
            return;
        }
        let Some((_, kids)) = self.kids.find(widen(guid_hash(parent)), |e| e.0 == parent) else {
            return;
        };
        for k in kids.clone() {
            self.replace(k);
        }
    }

    /// The live objects on the cycle of parents through `start`, if its
    /// parents lead back to it.
    fn cycle_through(&self, start: Guid) -> Option<Vec<Guid>> {
        let mut path = vec![start];
        let mut seen = BTreeSet::new();
        let mut cur = start;
        loop {
            let s = self.live_slot(cur)?;
            let p = at(&self.slab, s).state.parent_object()?;
            if p == start {
                return Some(path);
            }
            // A walk into a cycle that does not pass through `start`.
            if path.len() > MAX_DEPTH || (path.len() > 32 && !seen.insert(p)) {
                return None;
            }
            if path.len() == 32 {
                seen.extend(path.iter().copied());
            }
            path.push(p);
            cur = p;
        }
    }

    /// After `changed` moved, died or came back: of each cycle of moves
    /// (objects whose parents lead back to themselves), the one with the
    /// latest name is cut off into LostAndFound; the others hang under it.
    /// The same on every server whatever the order the moves arrived in:
    /// the cycles are those of the states held.
    fn recheck_cycles(&mut self, changed: Guid) {
        let mut todo: Vec<Guid> = self.cut.iter().copied().collect();
        todo.push(changed);
        let mut flipped = Vec::new();
        for c in todo {
            match self.cycle_through(c) {
                Some(members) => {
                    let key = |g: &Guid| {
                        let st = &at(&self.slab, self.slot(*g).expect("on a cycle")).state;
                        (st.named(), st.guid())
                    };
                    let top = *members.iter().max_by_key(|g| key(g)).expect("a cycle");
                    for m in members {
                        let want = m == top;
                        if want != self.cut.contains(&m) {
                            if want {
                                self.cut.insert(m);
                            } else {
                                self.cut.remove(&m);
                            }
                            flipped.push(m);
                        }
                    }
                }
                None => {
                    if self.cut.remove(&c) {
                        flipped.push(c);
                    }
                }
            }
        }
        for g in flipped {
            if let Some(s) = self.live_slot(g) {
                self.replace(s);
            }
        }
    }

    /// Moves every replica changed locally after `from`, up to `upto`, to
    /// a new local USN from `next` (called in USN order): a restored server
    /// re-stamping what it applied during backsync. States are unchanged,
    /// so only the by-USN index moves. Returns how many moved.
    pub fn restamp(&mut self, from: Usn, upto: Usn, mut next: impl FnMut() -> Usn) -> usize {
        let moved: Vec<(Usn, Slot)> = self
            .current(from)
            .map(|(u, s, _, _)| (u, s))
            .take_while(|(u, _)| *u <= upto)
            .collect();
        for &(_, s) in &moved {
            let n = next();
            (self.slab.cell_mut(s).replica.as_mut())
                .expect("an indexed slot is occupied")
                .usn_changed = n;
            // The old entry stays, stale, like a write's.
            self.by_usn.insert(n, s);
        }
        self.usn_stale += moved.len();
        moved.len()
    }

    /// Guids changed locally after `from`, in USN order.
    pub fn changed_after(&self, from: Usn) -> impl Iterator<Item = (Usn, Guid)> + '_ {
        self.changed_after_replicas(from)
            .map(|(u, r)| (u, r.state.guid()))
    }

    /// Replicas changed locally after `from`, in USN order: the GetChanges scan.
    pub fn changed_after_replicas(&self, from: Usn) -> impl Iterator<Item = (Usn, &Replica)> + '_ {
        self.current(from).map(|(u, _, r, _)| (u, r))
    }

    /// [`ObjectTable::changed_after_replicas`] with each replica's [`Origin`],
    /// which decides most dampening without reading the state.
    pub fn changed_after_with_origin(
        &self,
        from: Usn,
    ) -> impl Iterator<Item = (Usn, &Replica, Origin)> + '_ {
        self.current(from).map(|(u, _, r, o)| (u, r, o))
    }

    /// The by-USN index's current entries above `from`, in USN order, with
    /// each slot's replica and origin; stale entries (the replica changed
    /// again or went) are skipped.
    fn current(&self, from: Usn) -> impl Iterator<Item = (Usn, Slot, &Replica, Origin)> + '_ {
        let at = self.by_usn.after(from);
        let (mut far, mut mid, mut near) = (at.clone(), at.clone(), at.clone());
        // The scan reads each entry's cell, then often its state: ask for
        // the slab's chunk pointer FAR entries ahead, the cell once that has
        // come, and the state once the cell has.
        for _ in 0..FAR {
            if let Some((_, s)) = far.next() {
                self.slab.prefetch_chunk(s);
            }
        }
        for _ in 0..MID {
            mid.next();
        }
        for _ in 0..NEAR {
            near.next();
        }
        at.filter_map(move |(u, s)| {
            if let Some((_, f)) = far.next() {
                self.slab.prefetch_chunk(f);
            }
            if let Some((_, m)) = mid.next() {
                prefetch(self.slab.cell(m));
            }
            if let Some((_, n)) = near.next()
                && let Some(r) = &self.slab.cell(n).replica
            {
                prefetch(&r.state.stamp());
            }
            let c = self.slab.cell(s);
            let r = c.replica.as_ref().filter(|r| r.usn_changed == u)?;
            Some((u, s, r, c.origin()))
        })
    }

    /// Rebuilds the by-USN or by-origin index without its stale entries
    /// once they outnumber the objects (and [`STALE_FLOOR`]), into a new
    /// log: the by-USN index from the slab, the by-origin index by keeping
    /// its entries whose slot still carries the stamp. Each rebuild is one
    /// pause, amortised over the writes that left the entries.
    fn drop_stale(&mut self) {
        let most = self.len().max(STALE_FLOOR);
        if self.usn_stale > most {
            // From the slab, read in slot order (the log's order reads
            // cells at random: twice as slow at 1M objects), sorted by USN.
            let mut cur: Vec<(Usn, Slot)> = Vec::with_capacity(self.len());
            for s in 0..self.slab.len as Slot {
                if let Some(r) = &self.slab.cell(s).replica {
                    cur.push((r.usn_changed, s));
                }
            }
            cur.sort_unstable();
            let mut log = ChunkLog::default();
            for run in cur.chunk_by(|a, b| a.0 == b.0) {
                // Cells sharing a USN (a table's own writes never do): the
                // one the index maps it to, as a removal would have left it.
                let u = run[0].0;
                let s = match run {
                    [(_, s)] => Some(*s),
                    _ => self.by_usn.get(u).filter(|m| run.iter().any(|e| e.1 == *m)),
                };
                if let Some(s) = s {
                    log.insert(u, s);
                }
            }
            self.by_usn = log;
            self.usn_stale = 0;
        }
        if self.origin_stale > most {
            let slab = &self.slab;
            (self.by_origin).retain(|inv, u, s| carries(slab.cell(s), (inv, u)));
            self.origin_stale = 0;
        }
    }

    /// Guids carrying a stamp originated by `inv` with originating USN above
    /// `after`, in originating-USN order: answers backsync from the index.
    pub fn originated_by(
        &self,
        inv: InvocationId,
        after: Usn,
    ) -> impl Iterator<Item = (Usn, Guid)> + '_ {
        self.originated_by_replicas(inv, after)
            .map(|(u, r)| (u, r.state.guid()))
    }

    /// [`ObjectTable::originated_by`], yielding the replicas.
    pub fn originated_by_replicas(
        &self,
        inv: InvocationId,
        after: Usn,
    ) -> impl Iterator<Item = (Usn, &Replica)> + '_ {
        self.by_origin.after(inv, after).filter_map(move |(u, s)| {
            let c = self.slab.cell(s);
            carries(c, (inv, u)).then(|| (u, c.replica.as_ref().expect("it carries a stamp")))
        })
    }

    /// What [`ObjectTable::originated_by`] yields, found by scanning the
    /// whole table instead of the by-origin index: the baseline the
    /// benchmarks compare the index with. Cost follows the table's size.
    pub fn originated_by_scan(&self, inv: InvocationId, after: Usn) -> Vec<(Usn, Guid)> {
        let mut v: Vec<(Usn, Guid)> = Vec::new();
        for (_, r, o) in self.changed_after_with_origin(Usn(0)) {
            // The slot's summary rules most replicas out without reading
            // their state (the GetChanges scan's shortcut): one sole origin,
            // another invocation or `inv` at or below `after`.
            if o.usn != Usn(u64::MAX) && (o.invocation != inv || o.usn <= after) {
                continue;
            }
            for (i, u) in Keys::of(&r.state).iter() {
                if i == inv && u > after {
                    v.push((u, r.state.guid()));
                }
            }
        }
        v.sort_unstable();
        v
    }

    /// The highest originating USN of `inv` this table holds.
    pub fn max_origin_usn(&self, inv: InvocationId) -> Option<Usn> {
        (self.by_origin).last_where(inv, |u, s| carries(self.slab.cell(s), (inv, u)))
    }

    /// The live object that holds the name `dn` (compared ignoring case):
    /// of the live objects shown with that name, the one whose last naming
    /// write (create or rename) is the latest; the others are shown
    /// `CNF`-renamed. `None` for a `CNF:` name.
    pub fn holder(&self, dn: &str) -> Option<Guid> {
        let (rdn, parent) = split_dn(dn);
        self.places(parent)
            .into_iter()
            .find_map(|p| self.holder_at(&p, rdn))
            .map(|s| at(&self.slab, s).state.guid())
    }

    /// The holder of name `rdn` at `place`.
    fn holder_at(&self, place: &Place<'_>, rdn: &str) -> Option<Slot> {
        let h = (name_hash(place, rdn) >> 32) as u32;
        let slab = &self.slab;
        self.names
            .find(widen(h), |o| {
                o.hash == h && has_name(slab, o.slot, place, rdn)
            })
            .map(|o| o.slot)
    }

    /// Where the children of the container or object shown as `dn` are:
    /// the live object shown so (if any), then the fixed container of that
    /// name (every dn that is not an object's is one for lookups; which
    /// ones a write may use is the writer's policy).
    fn places<'a>(&self, dn: &'a str) -> Vec<Place<'a>> {
        if dn.is_empty() {
            return vec![Place::Fixed("")];
        }
        if eq_ci(dn, LOST_AND_FOUND) {
            return vec![Place::Lost];
        }
        let mut v = Vec::with_capacity(2);
        if let Some(s) = self.find_live_slot(dn) {
            v.push(Place::Under(at(&self.slab, s).state.guid()));
        }
        v.push(Place::Fixed(dn));
        v
    }

    /// The slot of the live object shown with `dn` (ignoring case; a
    /// `CNF:` name included).
    fn find_live_slot(&self, dn: &str) -> Option<Slot> {
        let (rdn, parent) = split_dn(dn);
        let places = self.places(parent);
        if let Some(s) = places.iter().find_map(|p| self.holder_at(p, rdn)) {
            return Some(s);
        }
        // `<rdn> CNF:<guid>`: the loser of a name conflict, by its guid.
        let (base, guid) = rdn.rsplit_once(CNF_MARK)?;
        let s = self.live_slot(guid.parse().ok()?)?;
        let named = |p: &Place<'_>| has_name(&self.slab, s, p, base);
        let place = places.iter().find(|p| named(p))?;
        (self.holder_at(place, base) != Some(s)).then_some(s)
    }

    /// Finds the live object shown with `dn` (compared ignoring case; a
    /// `CNF:` name included).
    pub fn find_live(&self, dn: &str) -> Option<Replica> {
        self.find_live_slot(dn).map(|s| at(&self.slab, s).clone())
    }

    /// The guid of the live object shown with `dn`.
    pub fn find_live_guid(&self, dn: &str) -> Option<Guid> {
        self.find_live_slot(dn)
            .map(|s| at(&self.slab, s).state.guid())
    }

    /// The dn a replica is shown with here: its rdn (`<rdn> CNF:<guid>`
    /// when another live object with a later naming write holds the name),
    /// then the dn of its parent: a fixed container's, the parent object's
    /// as shown here, or `cn=LostAndFound` when the parent object is not
    /// live here. A tombstone is shown with the name it last had: its rdn
    /// under its parent's dn, live or not.
    pub fn shown_dn(&self, st: &ObjectState) -> String {
        let mut segs: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        // The first state is the one asked about; it need not be held.
        let mut state: &ObjectState = st;
        let mut slot = self.slot(st.guid());
        loop {
            let held = slot.filter(|&s| at(&self.slab, s).state.guid() == state.guid());
            let lost = held.is_some_and(|s| self.slab.cell(s).lost());
            if !state.deleted() && held.is_some_and(|s| !self.is_holder(s)) {
                segs.push(format!("{}{CNF_MARK}{}", state.rdn(), state.guid()).into());
            } else {
                segs.push(state.rdn().into());
            }
            if segs.len() > MAX_DEPTH || (lost && !state.deleted()) {
                segs.push(LOST_AND_FOUND.into());
                break;
            }
            match state.parent() {
                ParentRef::Fixed(dn) => {
                    if !dn.is_empty() {
                        segs.push(dn.into());
                    }
                    break;
                }
                ParentRef::Object(g) => match self.slot(g) {
                    Some(s) => {
                        state = &at(&self.slab, s).state;
                        slot = Some(s);
                    }
                    None => {
                        segs.push(LOST_AND_FOUND.into());
                        break;
                    }
                },
            }
        }
        segs.join(",")
    }

    /// The live objects that share a name with live object `guid` here and
    /// do not hold it, each with the holder: (loser, holder).
    pub fn name_losers(&self, guid: Guid) -> Vec<(Guid, Guid)> {
        if self.name_conflicts.is_empty() {
            return Vec::new();
        }
        let Some(s) = self.live_slot(guid) else {
            return Vec::new();
        };
        let (place, rdn) = (place_of(&self.slab, s), at(&self.slab, s).state.rdn());
        let Some(all) = self.name_conflicts.get(&name_hash(&place, rdn)) else {
            return Vec::new();
        };
        let Some(holder) = self.holder_at(&place, rdn) else {
            return Vec::new();
        };
        let hg = at(&self.slab, holder).state.guid();
        let mut v: Vec<(Guid, Guid)> = (all.iter().copied())
            .filter(|&o| o != holder && has_name(&self.slab, o, &place, rdn))
            .map(|o| (at(&self.slab, o).state.guid(), hg))
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether live slot `s` holds its name.
    fn is_holder(&self, s: Slot) -> bool {
        let place = place_of(&self.slab, s);
        self.holder_at(&place, at(&self.slab, s).state.rdn()) == Some(s)
    }

    /// Live objects whose parent is object `parent`, in slot order.
    pub fn children(&self, parent: Guid) -> Vec<Guid> {
        let mut v: Vec<Slot> = (self.kids.find(widen(guid_hash(parent)), |e| e.0 == parent))
            .map(|e| e.1.clone())
            .unwrap_or_default();
        v.sort_unstable();
        v.into_iter()
            .map(|s| at(&self.slab, s).state.guid())
            .collect()
    }

    /// Whether `ancestor` is `guid` or one of the objects above it (by the
    /// parents held here, live or not).
    pub fn is_ancestor(&self, ancestor: Guid, guid: Guid) -> bool {
        let mut cur = guid;
        for _ in 0..MAX_DEPTH {
            if cur == ancestor {
                return true;
            }
            match self.get_ref(cur).and_then(|r| r.state.parent_object()) {
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    }

    /// Whether live object `guid` is shown in LostAndFound here.
    pub fn in_lost_and_found(&self, guid: Guid) -> bool {
        self.live_slot(guid).is_some_and(|s| {
            self.slab.cell(s).lost() || matches!(place_of(&self.slab, s), Place::Lost)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chunklog::CHUNK as LOG_CHUNK;
    use crate::core::object::Attr;

    fn stamp(inv: u64, usn: u64) -> Stamp {
        Stamp {
            version: 1,
            time: usn,
            invocation: InvocationId(inv),
            usn: Usn(usn),
        }
    }

    fn obj(guid: u128, dn: &str, created: Stamp, deleted: bool) -> ObjectState {
        let attrs = vec![Attr {
            name: "mail".into(),
            value: Some("x".into()),
            stamp: created,
        }];
        ObjectState::new(
            Guid(guid),
            dn,
            created,
            created,
            deleted,
            if deleted { Vec::new() } else { attrs },
        )
    }

    /// A slot [`ObjectTable::prefetch_apply`] found is only a guess: one
    /// that holds another object, a freed slot or one past the slab's end
    /// applies exactly as no guess does.
    #[test]
    fn a_wrong_found_slot_is_checked_not_trusted() {
        let (mut hinted, mut plain) = (ObjectTable::new(), ObjectTable::new());
        let g = Granularity::Object;
        for t in [&mut hinted, &mut plain] {
            for k in 1..=3u128 {
                t.merge_in(
                    &obj(k, &format!("cn={k}"), stamp(1, k as u64), false),
                    g,
                    || Usn(k as u64),
                );
            }
            t.remove(Guid(2));
        }
        let slot = |t: &ObjectTable, k: u128| Found {
            slot: t.slot(Guid(k)),
        };
        let at = |s| Found { slot: Some(s) };
        let writes = [
            // Object 1 guessed at object 3's slot.
            (obj(1, "cn=1", stamp(1, 10), false), slot(&hinted, 3)),
            // A new object guessed at the freed slot.
            (obj(4, "cn=4", stamp(1, 11), false), at(1)),
            // Past the slab's end.
            (obj(3, "cn=3", stamp(1, 12), false), at(1 << 30)),
            // Right.
            (obj(1, "cn=1", stamp(1, 13), false), slot(&hinted, 1)),
        ];
        for (u, (s, found)) in (20..).zip(writes) {
            assert!(hinted.merge_found(&s, g, found, || Usn(u)));
            assert!(plain.merge_in(&s, g, || Usn(u)));
        }
        assert_eq!(hinted.digest(), plain.digest());
        assert_eq!(hinted.len(), 3);
        for k in [1, 3, 4] {
            let (a, b) = (hinted.get(Guid(k)), plain.get(Guid(k)));
            let (a, b) = (a.expect("held"), b.expect("held"));
            assert_eq!(
                (a.state.stamp(), a.usn_changed),
                (b.state.stamp(), b.usn_changed)
            );
            assert_eq!(
                hinted
                    .get_ref_found(Guid(k), slot(&hinted, 3))
                    .map(|r| r.state.guid()),
                Some(Guid(k))
            );
        }
        assert!(hinted.get_ref_found(Guid(2), slot(&hinted, 1)).is_none());
        let names = |t: &ObjectTable| t.changed_after(Usn(0)).collect::<Vec<_>>();
        assert_eq!(names(&hinted), names(&plain));
    }

    /// Creates applied as a batch, each stage asked for ahead, are each
    /// found by name, whether shown where their parent puts them or in
    /// LostAndFound (a parent not held): the name hash a state carries
    /// files it in the first place only.
    #[test]
    fn a_batch_of_creates_is_found_by_name_where_each_is_shown() {
        let g = Granularity::Object;
        let states: Vec<ObjectState> = (1..=40u128)
            .map(|k| {
                let mut p = obj(k, &format!("cn=n{k}"), stamp(1, k as u64), false).to_parts();
                if k % 4 == 0 {
                    // Under an object never held: shown in LostAndFound.
                    p.parent = crate::core::Parent::Object(Guid(1_000 + k));
                }
                ObjectState::from_parts(p)
            })
            .collect();
        let mut t = ObjectTable::new();
        let mut ahead = Ahead::default();
        for (i, s) in states.iter().enumerate() {
            let found = t.prefetch_apply(&mut ahead, &states, i);
            assert!(t.merge_found(s, g, found, || Usn(100 + i as u64)));
        }
        for k in 1..=40u128 {
            let dn = if k % 4 == 0 {
                format!("cn=n{k},{LOST_AND_FOUND}")
            } else {
                format!("cn=n{k}")
            };
            assert_eq!(t.holder(&dn), Some(Guid(k)), "{dn}");
        }
    }

    #[test]
    fn conflicting_dns_keep_the_latest_created_as_holder() {
        let mut t = ObjectTable::new();
        t.put(obj(1, "cn=a", stamp(1, 1), false), Usn(1));
        t.put(obj(2, "cn=a", stamp(2, 5), false), Usn(2));
        t.put(obj(3, "cn=a", stamp(3, 3), false), Usn(3));
        assert_eq!(t.holder("cn=a"), Some(Guid(2)));
        // The holder becomes a tombstone: the next latest takes the name.
        t.put(obj(2, "cn=a", stamp(2, 5), true), Usn(4));
        assert_eq!(t.holder("cn=a"), Some(Guid(3)));
        t.remove(Guid(3));
        assert_eq!(t.holder("cn=a"), Some(Guid(1)));
        assert!(
            t.name_conflicts.is_empty(),
            "one live object left: no conflict"
        );
        t.put(obj(1, "cn=a", stamp(1, 1), true), Usn(5));
        assert_eq!(t.holder("cn=a"), None);
        assert_eq!((t.len(), t.live(), t.tombstones()), (2, 0, 2));
    }

    /// Objects 1..=n named cn=N, each written at USN N by invocation 1.
    fn numbered(n: u128) -> ObjectTable {
        let mut t = ObjectTable::new();
        for g in 1..=n {
            t.put(
                obj(g, &format!("cn={g}"), stamp(1, g as u64), false),
                Usn(g as u64),
            );
        }
        t
    }

    #[test]
    fn restamp_moves_only_the_range_to_new_usns() {
        let mut t = numbered(10);
        let (digest, live) = (t.digest(), t.live());
        let mut next = Usn(20);
        let moved = t.restamp(Usn(3), Usn(6), || {
            next = next.next();
            next
        });
        assert_eq!(moved, 3);
        let order: Vec<(u64, u128)> = t.changed_after(Usn(0)).map(|(u, g)| (u.0, g.0)).collect();
        assert_eq!(
            order,
            vec![
                (1, 1),
                (2, 2),
                (3, 3),
                (7, 7),
                (8, 8),
                (9, 9),
                (10, 10),
                (21, 4),
                (22, 5),
                (23, 6)
            ]
        );
        assert_eq!(t.get(Guid(5)).unwrap().usn_changed, Usn(22));
        assert_eq!(t.get(Guid(5)).unwrap().usn_created, Usn(5), "created stays");
        assert_eq!((t.digest(), t.live()), (digest, live));
        assert_eq!(t.find_live("cn=5").unwrap().state.guid(), Guid(5));
    }

    #[test]
    fn an_object_removed_after_a_clone_is_gone_from_every_index() {
        let mut t = numbered(100);
        let backup = t.clone();
        // The shared indexes still hold entries for the freed slot: every
        // lookup of its guid or name must skip them without reading it.
        assert!(t.remove(Guid(5)).is_some());
        assert!(t.get(Guid(5)).is_none());
        assert!(t.find_live("cn=5").is_none());
        assert_eq!(t.len(), 99);
        assert_eq!(backup.find_live("cn=5").unwrap().state.guid(), Guid(5));
        // Its slot is reused by the next object.
        t.put(obj(500, "cn=500", stamp(1, 500), false), Usn(500));
        assert!(t.get(Guid(5)).is_none());
        assert_eq!(t.find_live("cn=500").unwrap().state.guid(), Guid(500));
        assert_eq!(backup.get(Guid(5)).unwrap().state.guid(), Guid(5));
    }

    #[test]
    fn a_clone_shares_chunks_until_written() {
        let mut t = ObjectTable::new();
        for g in 0..3000u128 {
            t.put(
                obj(g, &format!("cn={g}"), stamp(1, g as u64 + 1), false),
                Usn(g as u64 + 1),
            );
        }
        let backup = t.clone();
        t.put(obj(5, "cn=5", stamp(2, 9000), true), Usn(9000));
        t.put(obj(7000, "cn=new", stamp(2, 9001), false), Usn(9001));
        let shared = |a: &ObjectTable, b: &ObjectTable| {
            (a.slab.chunks().zip(b.slab.chunks()))
                .filter(|(x, y)| Arc::ptr_eq(x, y))
                .count()
        };
        // Chunk 0 took the tombstone, the last chunk the new object; the
        // others are shared.
        let chunks = t.slab.chunks().count();
        assert_eq!(chunks, 3000usize.div_ceil(CHUNK));
        assert!(chunks > GROUP, "more than one group");
        assert_eq!(shared(&t, &backup), chunks - 2);
        assert_eq!(t.by_usn.chunks(), 3000usize.div_ceil(LOG_CHUNK));
        // The last chunk took two new entries; the old entry of 5 stays
        // in chunk 0, stale, so that chunk is still shared.
        assert_eq!(t.by_usn.shared_with(&backup.by_usn), t.by_usn.chunks() - 1);
        assert_eq!(t.changed_after(Usn(8999)).count(), 2);
        assert!(
            t.changed_after(Usn(0))
                .all(|(u, g)| g != Guid(5) || u == Usn(9000))
        );
        // The guid index: the new object in the overlay, the shared base
        // untouched.
        assert!(t.by_guid.shares_base_with(&backup.by_guid));
        assert_eq!(t.by_guid.overlay_len(), (1, 0), "guid 7000");
        assert_eq!(t.names.overlay_len(), (1, 1), "cn=new in, cn=5 out");
        assert!(backup.get(Guid(7000)).is_none());
        assert!(!backup.get(Guid(5)).unwrap().state.deleted());
        assert!(t.get(Guid(5)).unwrap().state.deleted());
        assert_eq!(backup.originated_by(InvocationId(2), Usn(0)).count(), 0);
        assert_eq!(t.originated_by(InvocationId(2), Usn(0)).count(), 2);
        assert_eq!(t.max_origin_usn(InvocationId(1)), Some(Usn(3000)));
        let before = t.clone();
        t.put(obj(8000, "cn=late", stamp(1, 5000), false), Usn(9002));
        // Invocation 1's full chunks stay shared; only the last took the
        // new stamp.
        let (now, then) = (inv1_origins(&t), inv1_origins(&before));
        assert_eq!(now.chunks(), 3000usize.div_ceil(LOG_CHUNK));
        assert_eq!(now.shared_with(then), now.chunks() - 1);
        assert_eq!(t.max_origin_usn(InvocationId(1)), Some(Usn(5000)));
        let got: Vec<u64> = t
            .originated_by(InvocationId(1), Usn(2998))
            .map(|(u, _)| u.0)
            .collect();
        assert_eq!(got, vec![2999, 3000, 5000]);
    }

    #[test]
    fn slots_are_reused_and_indexes_follow() {
        let mut t = ObjectTable::new();
        for g in 0..100u128 {
            t.put(
                obj(g, &format!("cn={g}"), stamp(1, g as u64 + 1), false),
                Usn(g as u64 + 1),
            );
        }
        for g in (0..100u128).step_by(2) {
            assert!(t.remove(Guid(g)).is_some());
        }
        for g in 100..150u128 {
            t.put(
                obj(g, &format!("cn={g}"), stamp(2, g as u64), false),
                Usn(g as u64 + 1),
            );
        }
        assert_eq!(t.slab.len, 100, "freed slots were reused");
        assert_eq!(t.len(), 100);
        for g in 0..150u128 {
            let held = g >= 100 || g % 2 == 1;
            assert_eq!(t.get(Guid(g)).is_some(), held, "guid {g}");
            assert_eq!(t.holder(&format!("cn={g}")).is_some(), held, "dn of {g}");
        }
        assert_eq!(t.originated_by(InvocationId(2), Usn(0)).count(), 50);
        assert_eq!(
            t.originated_by(InvocationId(1), Usn(0)).collect::<Vec<_>>(),
            t.originated_by_scan(InvocationId(1), Usn(0))
        );
        assert_eq!(t.scan().count(), 100);
    }

    /// Rewrites and removals leave by-USN and by-origin entries stale:
    /// reads skip them, and each index is rebuilt without them once they
    /// outnumber the objects (and [`STALE_FLOOR`]).
    #[test]
    fn stale_entries_are_skipped_then_dropped() {
        let mut t = ObjectTable::new();
        // Two objects stored at one USN (a table's own writes never are):
        // the index keeps the last, and its rebuild keeps the same one.
        let top = Usn(5_000_000);
        t.put(obj(100, "cn=100", stamp(2, 1), false), top);
        t.put(obj(101, "cn=101", stamp(2, 2), false), top);
        let shared = [(top, Guid(101))];
        assert_eq!(t.changed_after(Usn(top.0 - 1)).collect::<Vec<_>>(), shared);
        let mut usn = 0;
        let mut latest = [0u64; 10];
        for round in 1..=1000u64 {
            for g in 0..10u128 {
                usn += 1;
                t.put(obj(g, &format!("cn={g}"), stamp(1, usn), false), Usn(usn));
                latest[g as usize] = usn;
            }
            if round == 300 {
                let n = t.by_usn.after(Usn(0)).count();
                assert!(n >= 3000, "{n} entries, stale {}", t.usn_stale);
            }
        }
        let entries = t.by_usn.after(Usn(0)).count();
        assert!(
            entries <= 12 + STALE_FLOOR + 1,
            "{entries} entries: never rebuilt"
        );
        assert!(entries > 12, "rebuilt at every write");
        let origins = inv1_origins(&t).iter().count();
        assert!(
            origins <= 12 + STALE_FLOOR + 1,
            "{origins} entries: never rebuilt"
        );
        assert!(origins > 12, "rebuilt at every write");
        let want: Vec<(Usn, Guid)> = (0..10).map(|g| (Usn(latest[g]), Guid(g as u128))).collect();
        assert_eq!(t.changed_after(Usn(top.0 - 1)).collect::<Vec<_>>(), shared);
        let below_top: Vec<(Usn, Guid)> = t.changed_after(Usn(0)).filter(|e| e.0 < top).collect();
        assert_eq!(below_top, want);
        t.remove(Guid(100));
        t.remove(Guid(101));
        // Each object's stamps are those of its last write.
        assert_eq!(
            t.originated_by(InvocationId(1), Usn(0)).collect::<Vec<_>>(),
            want
        );
        assert_eq!(t.max_origin_usn(InvocationId(1)), Some(Usn(usn)));
        // A removed object's entry is skipped, and its slot's next object
        // shows once, at its own USN.
        t.remove(Guid(3));
        t.put(obj(77, "cn=77", stamp(1, usn + 1), false), Usn(usn + 1));
        let after: Vec<Guid> = t.changed_after(Usn(0)).map(|(_, g)| g).collect();
        assert_eq!(after.len(), 10);
        assert!(!after.contains(&Guid(3)));
        assert_eq!(after.last(), Some(&Guid(77)));
        let origins: Vec<Guid> = t
            .originated_by(InvocationId(1), Usn(0))
            .map(|(_, g)| g)
            .collect();
        assert_eq!(origins, after);
        // The top entry is stale once its object is gone: the highest
        // current one answers.
        t.remove(Guid(77));
        assert_eq!(t.max_origin_usn(InvocationId(1)), Some(Usn(usn)));
        t.put(obj(77, "cn=77", stamp(1, usn + 1), false), Usn(usn + 1));
        assert_eq!(t.restamp(Usn(usn), Usn(usn + 1), || Usn(usn + 5)), 1);
        assert_eq!(
            t.changed_after(Usn(usn)).collect::<Vec<_>>(),
            [(Usn(usn + 5), Guid(77))]
        );
    }

    /// A live object with one attribute per stamp in `attrs` (name, inv, usn).
    fn with_attrs(guid: u128, created: Stamp, attrs: &[(&str, u64, u64)]) -> ObjectState {
        let attrs: Vec<Attr> = attrs
            .iter()
            .map(|(n, inv, usn)| Attr {
                name: (*n).into(),
                value: Some("v".into()),
                stamp: stamp(*inv, *usn),
            })
            .collect();
        let top = attrs
            .iter()
            .map(|a| a.stamp)
            .max()
            .unwrap_or(created)
            .max(created);
        ObjectState::new(
            Guid(guid),
            &format!("cn={guid}"),
            created,
            top,
            false,
            attrs,
        )
    }

    /// What the by-origin index must answer, from the states themselves.
    fn expected_origins(states: &[&ObjectState], inv: u64, after: u64) -> Vec<(Usn, Guid)> {
        let mut v = Vec::new();
        for s in states {
            let mut keys: Vec<u64> = [s.created(), s.stamp()]
                .into_iter()
                .chain(s.attrs().map(|a| a.stamp))
                .filter(|st| st.invocation == InvocationId(inv) && st.usn.0 > after)
                .map(|st| st.usn.0)
                .collect();
            keys.sort_unstable();
            keys.dedup();
            v.extend(keys.into_iter().map(|u| (Usn(u), s.guid())));
        }
        v.sort_unstable();
        v
    }

    #[test]
    fn origin_keys_read_from_created_and_stamp_alone_are_all_of_them() {
        // Object 1 goes through states whose stamps are only its created
        // and object stamps (simple) and states with a third (not), in
        // every order; object 2 stays put beside it.
        let c = stamp(1, 1);
        let states = [
            (with_attrs(1, c, &[("a", 1, 1), ("b", 1, 1)]), true),
            (with_attrs(1, c, &[("a", 1, 1), ("b", 2, 50)]), true),
            (with_attrs(1, c, &[("a", 3, 40), ("b", 2, 60)]), false),
            (with_attrs(1, c, &[("a", 2, 70), ("b", 2, 70)]), true),
            (
                with_attrs(1, c, &[("a", 3, 80), ("b", 1, 1), ("c", 2, 90)]),
                false,
            ),
            (with_attrs(1, c, &[("a", 1, 1), ("b", 1, 1)]), true),
        ];
        let other = with_attrs(2, stamp(2, 5), &[("a", 2, 5)]);
        let mut t = ObjectTable::new();
        t.put(other.clone(), Usn(1));
        for (i, (st, simple)) in states.iter().enumerate() {
            t.put(st.clone(), Usn(10 + i as u64));
            let s = t.slot(Guid(1)).unwrap();
            assert_eq!(t.slab.cell(s).simple_keys(), *simple, "state {i}");
            for inv in 1..=3 {
                let got: Vec<_> = t.originated_by(InvocationId(inv), Usn(0)).collect();
                assert_eq!(
                    got,
                    expected_origins(&[st, &other], inv, 0),
                    "state {i}, inv {inv}"
                );
            }
        }
        // Removing it takes all its keys, read the simple way.
        t.remove(Guid(1));
        for inv in 1..=3 {
            let got: Vec<_> = t.originated_by(InvocationId(inv), Usn(0)).collect();
            assert_eq!(got, expected_origins(&[&other], inv, 0), "inv {inv}");
        }
    }

    #[test]
    fn the_origin_index_follows_objects_with_many_stamps() {
        // Nine distinct stamps: more than the inline keys hold.
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let attrs: Vec<(&str, u64, u64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, 1 + (i as u64 % 2), 10 + i as u64))
            .collect();
        let one = with_attrs(1, stamp(1, 1), &attrs);
        let mut t = ObjectTable::new();
        t.put(one.clone(), Usn(1));
        for (inv, after) in [(1, 0), (2, 0), (1, 12), (2, 13), (3, 0)] {
            let got: Vec<_> = t.originated_by(InvocationId(inv), Usn(after)).collect();
            assert_eq!(
                got,
                expected_origins(&[&one], inv, after),
                "inv {inv} after {after}"
            );
            assert_eq!(t.originated_by_scan(InvocationId(inv), Usn(after)), got);
        }
        // Rewritten: some stamps kept, some replaced, one new past a block.
        let mut attrs2 = attrs.clone();
        attrs2[0] = ("a", 2, 9000);
        attrs2[7] = ("h", 1, 30);
        let two = with_attrs(1, stamp(1, 1), &attrs2);
        t.put(two.clone(), Usn(2));
        for inv in [1, 2] {
            let got: Vec<_> = t.originated_by(InvocationId(inv), Usn(0)).collect();
            assert_eq!(got, expected_origins(&[&two], inv, 0), "inv {inv}");
        }
        assert_eq!(t.max_origin_usn(InvocationId(2)), Some(Usn(9000)));
        assert_eq!(t.max_origin_usn(InvocationId(1)), Some(Usn(30)));
        assert_eq!(t.max_origin_usn(InvocationId(3)), None);
        // Back to the first state: the block holding 9000 empties and goes.
        t.put(one.clone(), Usn(3));
        assert_eq!(t.max_origin_usn(InvocationId(2)), Some(Usn(17)));
        t.remove(Guid(1));
        assert_eq!(t.originated_by(InvocationId(1), Usn(0)).count(), 0);
        assert_eq!(t.max_origin_usn(InvocationId(1)), None);
    }

    #[test]
    fn a_reused_stamp_keeps_the_other_objects_entry() {
        // After a USN rollback two objects can carry one stamp.
        let mut t = ObjectTable::new();
        t.put(obj(1, "cn=a", stamp(1, 5), false), Usn(1));
        t.put(obj(2, "cn=b", stamp(1, 5), false), Usn(2));
        t.remove(Guid(1));
        let got: Vec<_> = t.originated_by(InvocationId(1), Usn(0)).collect();
        assert_eq!(got, vec![(Usn(5), Guid(2))]);
    }

    #[test]
    fn counts_and_digest_follow_every_change() {
        let mut t = ObjectTable::new();
        assert!(t.is_empty());
        let a = obj(1, "cn=a", stamp(1, 1), false);
        let b = obj(2, "cn=b", stamp(1, 2), false);
        let b_dead = obj(2, "cn=b", stamp(1, 3), true);
        t.put(a.clone(), Usn(1));
        t.put(b.clone(), Usn(2));
        let sum = |xs: &[&ObjectState]| Digest {
            sum: xs.iter().fold(0u128, |s, x| s.wrapping_add(x.hash())),
            count: xs.len(),
        };
        assert_eq!(t.digest(), sum(&[&a, &b]));
        assert_eq!(
            (t.len(), t.live(), t.tombstones(), t.is_empty()),
            (2, 2, 0, false)
        );
        t.put(b_dead.clone(), Usn(3));
        assert_eq!(t.digest(), sum(&[&a, &b_dead]));
        assert_eq!((t.len(), t.live(), t.tombstones()), (2, 1, 1));
        let r = t.get(Guid(2)).unwrap();
        assert_eq!((r.usn_created, r.usn_changed), (Usn(2), Usn(3)));
        assert_eq!(t.get_ref(Guid(2)).unwrap().state, b_dead);
        assert_eq!(t.remove(Guid(2)).unwrap().state, b_dead);
        assert!(t.remove(Guid(2)).is_none());
        assert_eq!(t.digest(), sum(&[&a]));
        assert_eq!((t.len(), t.live(), t.tombstones()), (1, 1, 0));
        let order: Vec<(Usn, Guid)> = t.scan().collect();
        assert_eq!(order, vec![(Usn(1), Guid(1))]);
    }

    #[test]
    fn merge_in_stores_only_what_changes() {
        let mut t = ObjectTable::new();
        let a = obj(1, "cn=a", stamp(1, 1), false);
        let mut next = 10;
        let mut usn = || {
            next += 1;
            Usn(next)
        };
        assert!(t.merge_in(&a, Granularity::Object, &mut usn));
        assert!(
            !t.merge_in(&a, Granularity::Object, &mut usn),
            "already held"
        );
        let dead = obj(1, "cn=a", stamp(2, 2), true);
        assert!(t.merge_in(&dead, Granularity::Object, &mut usn));
        let r = t.get(Guid(1)).unwrap();
        assert_eq!((r.usn_created, r.usn_changed), (Usn(11), Usn(12)));
        assert!(r.state.deleted());
    }

    #[test]
    fn changed_after_lists_later_local_usns_in_order() {
        let mut t = ObjectTable::new();
        for g in 1..=5u128 {
            t.put(
                obj(g, &format!("cn={g}"), stamp(1, g as u64), false),
                Usn(g as u64 * 10),
            );
        }
        // Object 2 changes again: it moves to the end.
        t.put(obj(2, "cn=2", stamp(1, 9), false), Usn(60));
        let got: Vec<(u64, u128)> = t.changed_after(Usn(20)).map(|(u, g)| (u.0, g.0)).collect();
        assert_eq!(got, vec![(30, 3), (40, 4), (50, 5), (60, 2)]);
        let origins: Vec<Origin> = t
            .changed_after_with_origin(Usn(40))
            .map(|(_, _, o)| o)
            .collect();
        let sole = |usn| Origin {
            invocation: InvocationId(1),
            usn: Usn(usn),
        };
        assert_eq!(origins, vec![sole(5), sole(9)]);
    }

    #[test]
    fn a_cell_keeps_its_origin_and_flags_apart() {
        let st = stamp(1, 1);
        let state = ObjectState::new(Guid(1), "cn=a", st, st, false, vec![]);
        let replica = |usn| Replica {
            state: state.clone(),
            usn_changed: Usn(usn),
            usn_created: Usn(usn),
        };
        for usn in [0, 7, MIXED - 1, MIXED, u64::MAX - 1, u64::MAX] {
            for (lost, simple) in [(false, false), (true, false), (false, true), (true, true)] {
                let origin = Origin {
                    invocation: InvocationId(3),
                    usn: Usn(usn),
                };
                let mut c = Cell::new(replica(usn), origin, lost, simple);
                // Past the packed range an origin reads as mixed: the scan
                // then reads the state, as it does for mixed origins.
                let want = if usn >= MIXED { u64::MAX } else { usn };
                assert_eq!(c.origin().usn, Usn(want), "usn {usn}");
                assert_eq!(c.origin().invocation, InvocationId(3));
                assert_eq!((c.lost(), c.simple_keys()), (lost, simple));
                c.set_lost(!lost);
                assert_eq!((c.lost(), c.simple_keys()), (!lost, simple));
                assert_eq!(c.origin().usn, Usn(want));
            }
        }
        assert_eq!(Cell::free().origin().usn, Usn(u64::MAX));
    }

    #[test]
    fn origin_is_the_sole_invocation_or_none() {
        let mixed = with_attrs(1, stamp(1, 1), &[("a", 1, 4), ("b", 2, 3)]);
        let o = Origin::of(&mixed);
        assert_eq!(
            o,
            Origin {
                invocation: InvocationId(1),
                usn: Usn(u64::MAX)
            }
        );
        let mut top = with_attrs(1, stamp(1, 1), &[("a", 1, 4)]).to_parts();
        top.stamp = stamp(2, 2);
        let top = ObjectState::from_parts(top);
        assert_eq!(
            Origin::of(&top).usn,
            Usn(u64::MAX),
            "the object stamp from another"
        );
        let sole = with_attrs(1, stamp(1, 2), &[("a", 1, 7), ("b", 1, 3)]);
        assert_eq!(
            Origin::of(&sole),
            Origin {
                invocation: InvocationId(1),
                usn: Usn(7)
            }
        );
        let mut created_last = sole.to_parts();
        created_last.created = stamp(1, 9);
        created_last.stamp = stamp(1, 8);
        let created_last = ObjectState::from_parts(created_last);
        assert_eq!(Origin::of(&created_last).usn, Usn(9));
    }

    #[test]
    fn cnf_names_find_the_loser_of_a_name_conflict() {
        let mut t = ObjectTable::new();
        t.put(obj(1, "cn=a", stamp(1, 1), false), Usn(1));
        t.put(obj(2, "cn=a", stamp(2, 2), false), Usn(2));
        let loser = t.get(Guid(1)).unwrap().state;
        let winner = t.get(Guid(2)).unwrap().state;
        let cnf = format!("cn=a CNF:{}", Guid(1));
        assert_eq!(t.shown_dn(&winner), "cn=a");
        assert_eq!(t.shown_dn(&loser), cnf);
        assert_eq!(t.find_live("cn=a").unwrap().state.guid(), Guid(2));
        assert_eq!(t.find_live(&cnf).unwrap().state.guid(), Guid(1));
        assert!(
            t.find_live(&format!("cn=a CNF:{}", Guid(2))).is_none(),
            "the holder has no CNF name"
        );
        assert!(
            t.find_live(&format!("cn=b CNF:{}", Guid(1))).is_none(),
            "another base"
        );
        assert!(t.find_live("cn=a CNF:zz").is_none());
        assert!(t.find_live("cn=zz").is_none());
        // A deleted loser is shown with its own dn and found by no name.
        t.put(obj(1, "cn=a", stamp(1, 3), true), Usn(3));
        let dead = t.get(Guid(1)).unwrap().state;
        assert_eq!(t.shown_dn(&dead), "cn=a");
        assert!(t.find_live(&cnf).is_none());
    }

    /// A backup or a restore (a clone of the table) copies no tombstone
    /// and no free slot: the copy shares both, and writes after it leave
    /// the copy as it was.
    #[test]
    fn a_copy_of_the_table_shares_its_tombstones_and_free_slots() {
        let mut t = ObjectTable::new();
        for k in 0..10_000u128 {
            let u = k as u64 + 1;
            t.put(obj(k, &format!("cn={k}"), stamp(1, u), true), Usn(u));
        }
        for k in 5_000..9_000u128 {
            t.remove(Guid(k));
        }
        let copy = t.clone();
        assert!(t.tombstones.ptr_eq(&copy.tombstones));
        assert!(t.free.ptr_eq(&copy.free));
        t.remove(Guid(5));
        t.put(obj(10_000, "cn=x", stamp(1, 20_000), true), Usn(20_000));
        assert!(!t.tombstones.ptr_eq(&copy.tombstones));
        assert!(!t.free.ptr_eq(&copy.free));
        assert_eq!((copy.tombstones(), t.tombstones()), (6_000, 6_000));
        assert!(copy.tombstones_before(u64::MAX).contains(&Guid(5)));
        assert!(!t.tombstones_before(u64::MAX).contains(&Guid(5)));
        assert_eq!(copy.tombstones_before(u64::MAX).len(), 6_000);
        // The removal freed a slot and the new tombstone took one.
        assert_eq!((copy.free.len(), t.free.len()), (4_000, 4_000));
    }

    #[test]
    fn tombstones_before_includes_the_cutoff() {
        let mut t = ObjectTable::new();
        for (g, time) in [(1u128, 5u64), (2, 10), (3, 15)] {
            let mut s = stamp(1, g as u64);
            s.time = time;
            let live = obj(g, &format!("cn={g}"), stamp(1, g as u64), false);
            t.put(live.clone(), Usn(g as u64));
            t.put(live.tombstone(s), Usn(10 + g as u64));
        }
        assert_eq!(t.tombstones_before(4), Vec::<Guid>::new());
        assert_eq!(t.tombstones_before(10), vec![Guid(1), Guid(2)]);
        assert_eq!(t.tombstones_before(99), vec![Guid(1), Guid(2), Guid(3)]);
    }

    /// Invocation 1's part of a table's by-origin index.
    fn inv1_origins(t: &ObjectTable) -> &crate::core::chunklog::ChunkLog {
        t.by_origin
            .log(InvocationId(1))
            .expect("invocation 1 holds stamps")
    }

    #[test]
    fn rewriting_an_object_copies_only_the_origin_chunks_it_changes() {
        // Three full chunks of invocation 1's stamps (the third the log's
        // tail, which each copy owns), then one object rewritten: the stamp
        // it keeps (its create) stays where it was, the new one is appended,
        // and a backup taken before keeps sharing the sealed chunks (DOMAIN:
        // a restored server copies only what it writes).
        let n = 3 * LOG_CHUNK as u64;
        let mut t = ObjectTable::new();
        for g in 1..=n {
            t.put(
                obj(g as u128, &format!("cn={g}"), stamp(1, g), false),
                Usn(g),
            );
        }
        let backup = t.clone();
        let mut s = t.get(Guid(1)).unwrap().state.to_parts();
        s.stamp = stamp(1, 5000);
        t.put(ObjectState::from_parts(s), Usn(n + 1));
        let (now, then) = (inv1_origins(&t), inv1_origins(&backup));
        assert_eq!((now.chunks(), then.chunks()), (4, 3));
        assert_eq!(now.shared_with(then), 2, "the sealed chunks untouched");
        let got: Vec<(Usn, Guid)> = t.originated_by(InvocationId(1), Usn(n - 2)).collect();
        let want = [(n - 1, n - 1), (n, n), (5000, 1)].map(|(u, g)| (Usn(u), Guid(g as u128)));
        assert_eq!(got, want);
        assert_eq!(
            t.originated_by(InvocationId(1), Usn(0)).count(),
            n as usize + 1
        );
        assert_eq!(
            backup.originated_by(InvocationId(1), Usn(0)).count(),
            n as usize
        );
    }
}
