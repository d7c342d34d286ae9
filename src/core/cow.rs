//! Copy-on-write hash indexes a backup and a restore share with the server
//! they come from: cloning one copies two pointers, and the writes after it
//! go to a small overlay instead of copying anything of the shared table. A
//! restore then costs what the restored server writes afterwards, not what
//! it holds (docs/PERFORMANCE.md, "Restore growth").

use triomphe::Arc;

use hashbrown::HashTable;

use crate::core::ids::Guid;
use crate::core::prefetch::prefetch;
use crate::core::table::guid_hash64;

/// An entry's identity: two entries of one table never share it, and an
/// entry keeps it while it is changed in place. The overlay records the
/// shared entries it hides by identity.
pub(crate) trait Identified {
    /// The identity (any 128 bits that tell entries apart).
    fn id(&self) -> u128;
}

/// The overlay is folded into the table once it holds more than
/// 1/FOLD_FRACTION of the table's entries (and more than [`FOLD_MIN`]):
/// the fold copies the shared table once, so it costs each write after a
/// backup or a restore about FOLD_FRACTION entry copies, amortised, and a
/// clone taken before it copies at most that fraction.
const FOLD_FRACTION: usize = 16;
const FOLD_MIN: usize = 1024;

/// Control bytes hashbrown reads per probe step (an SSE2 group).
const GROUP_WIDTH: usize = 16;

/// What was written since the table was last shared: entries added or
/// changed, and the shared entries they hide or that were removed.
#[derive(Debug)]
struct Overlay<T> {
    adds: HashTable<T>,
    hidden: HashTable<u128>,
}

impl<T: Clone> Clone for Overlay<T> {
    fn clone(&self) -> Self {
        Overlay {
            adds: self.adds.clone(),
            hidden: self.hidden.clone(),
        }
    }
}

impl<T> Default for Overlay<T> {
    fn default() -> Self {
        Overlay {
            adds: HashTable::new(),
            hidden: HashTable::new(),
        }
    }
}

impl<T> Overlay<T> {
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.hidden.is_empty()
    }

    fn hides(&self, id: u128) -> bool {
        !self.hidden.is_empty() && self.hidden.find(id_hash(id), |x| *x == id).is_some()
    }

    fn hide(&mut self, id: u128) {
        self.hidden.insert_unique(id_hash(id), id, |x| id_hash(*x));
    }
}

fn id_hash(id: u128) -> u64 {
    guid_hash64(Guid(id))
}

/// A hash table shared copy-on-write as a base and an overlay: while no
/// clone shares the base, it is an ordinary flat hashbrown table written in
/// place (one probe a lookup). Once shared (a backup or a restore), writes
/// go to the overlay, which adds entries and hides the base's changed or
/// removed ones by [`Identified::id`]; lookups read the overlay first. An
/// insert folds the overlay in once it passes a sixteenth of the table, or
/// once nothing shares the base any more (a backup dropped).
///
/// The API is hashbrown's [`HashTable`]'s: callers hash and compare
/// (entries can be slot numbers whose key lives elsewhere).
#[derive(Debug, Clone)]
pub(crate) struct CowHash<T> {
    base: Arc<HashTable<T>>,
    overlay: Arc<Overlay<T>>,
}

impl<T> Default for CowHash<T> {
    fn default() -> Self {
        CowHash {
            base: Arc::new(HashTable::new()),
            overlay: Arc::new(Overlay::default()),
        }
    }
}

impl<T: Clone + Identified> CowHash<T> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.base.len() + self.overlay.adds.len() - self.overlay.hidden.len()
    }

    /// Whether it holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry with `hash` that `eq` accepts.
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        let o = &*self.overlay;
        if o.is_empty() {
            return self.base.find(hash, eq);
        }
        if let Some(v) = o.adds.find(hash, &mut eq) {
            return Some(v);
        }
        self.visible_in_base(hash, eq)
    }

    /// The base's entry with `hash` that `eq` accepts, unless the overlay
    /// hides it.
    fn visible_in_base(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        let o = &*self.overlay;
        // Hidden first: a hidden entry's key may be gone (its slot freed).
        self.base.find(hash, |e| !o.hides(e.id()) && eq(e))
    }

    /// Asks for the lines a lookup of `hash` reads first in the base (its
    /// control bytes and the entries of their group, both ends: with
    /// 8-byte entries a group's 16 span two or three lines), so that the
    /// lookup, a little later, finds them cached. The addresses follow
    /// hashbrown's layout (entries stored downward from the control bytes,
    /// found from any occupied bucket); were it to change, the hint would
    /// only miss.
    pub(crate) fn prefetch(&self, hash: u64) {
        let Some(ctrl) = self.ctrl() else {
            return;
        };
        let pos = (hash as usize) & (self.base.num_buckets() - 1);
        prefetch(ctrl.wrapping_add(pos));
        prefetch(ctrl.wrapping_sub((pos + 1) * std::mem::size_of::<T>()));
        prefetch(ctrl.wrapping_sub((pos + GROUP_WIDTH) * std::mem::size_of::<T>()));
    }

    /// Where the base's control bytes start, derived from an occupied
    /// bucket (none when empty). Never read through: only a hint's address.
    fn ctrl(&self) -> Option<*const u8> {
        let i = self.base.iter_buckets().next()?;
        let e: *const T = self.base.get_bucket(i)?;
        Some(
            e.cast::<u8>()
                .wrapping_add((i + 1) * std::mem::size_of::<T>()),
        )
    }

    /// The entry with `hash` that `eq` accepts, to change in place (its
    /// [`Identified::id`] may change). A shared entry is copied into the
    /// overlay first; `hasher` gives an entry's hash should the overlay grow.
    pub(crate) fn find_mut(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
    ) -> Option<&mut T> {
        if self.unshared() {
            return Arc::get_mut(&mut self.base)?.find_mut(hash, eq);
        }
        if self.overlay.adds.find(hash, &mut eq).is_some() {
            return Arc::make_mut(&mut self.overlay).adds.find_mut(hash, eq);
        }
        let v = self.visible_in_base(hash, eq)?.clone();
        let o = Arc::make_mut(&mut self.overlay);
        o.hide(v.id());
        Some(o.adds.insert_unique(hash, v, hasher).into_mut())
    }

    /// The entry with `hash` that `eq` accepts, to change in place, as
    /// [`CowHash::find_mut`]; or, when there is none, `value` added (and
    /// `None` returned), as [`CowHash::insert`]. An unshared table probes
    /// once for both.
    pub(crate) fn find_mut_or_insert(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
        value: T,
    ) -> Option<&mut T> {
        if self.unshared() {
            return self.base_entry(hash, eq, hasher, value);
        }
        if self.find(hash, &mut eq).is_none() {
            self.insert(hash, value, hasher);
            return None;
        }
        self.find_mut(hash, eq, hasher)
    }

    /// The entry with `hash` that `eq` accepts, read only; or, when there
    /// is none, `value` added (and `None` returned), as [`CowHash::insert`].
    /// An unshared table probes once for both; a shared one copies nothing
    /// it finds.
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
        value: T,
    ) -> Option<&T> {
        if self.unshared() {
            return self.base_entry(hash, eq, hasher, value).map(|e| &*e);
        }
        if self.find(hash, &mut eq).is_none() {
            self.insert(hash, value, hasher);
            return None;
        }
        self.find(hash, eq)
    }

    /// Whether nothing shares the base and nothing was written aside: the
    /// table is then written in place. One plain load decides:
    /// `triomphe::Arc` keeps no weak count, so its `get_mut` and `make_mut`
    /// take no locked compare-and-swap, as std's do, on every write.
    fn unshared(&self) -> bool {
        self.overlay.is_empty() && Arc::count(&self.base) == 1
    }

    /// The unshared base's entry with `hash` that `eq` accepts, or else
    /// `value` added there (and `None` returned): one probe for both.
    fn base_entry(
        &mut self,
        hash: u64,
        eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
        value: T,
    ) -> Option<&mut T> {
        let base = Arc::get_mut(&mut self.base).expect("one reference: unique");
        match base.entry(hash, eq, hasher) {
            hashbrown::hash_table::Entry::Occupied(e) => Some(e.into_mut()),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(value);
                None
            }
        }
    }

    /// Adds an entry no other entry equals. `hasher` gives an entry's hash
    /// (when the table grows or the overlay is folded in).
    pub(crate) fn insert(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        if !self.overlay.is_empty()
            && (Arc::count(&self.base) == 1
                || self.overlay.adds.len() + self.overlay.hidden.len() > self.fold_at())
        {
            self.fold(&hasher);
        }
        match Arc::get_mut(&mut self.base) {
            Some(base) => {
                base.insert_unique(hash, value, &hasher);
            }
            None => {
                Arc::make_mut(&mut self.overlay)
                    .adds
                    .insert_unique(hash, value, &hasher);
            }
        }
    }

    /// Removes and returns the entry with `hash` that `eq` accepts.
    pub(crate) fn remove(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<T> {
        if self.overlay.is_empty()
            && let Some(base) = Arc::get_mut(&mut self.base)
        {
            let (v, _) = base.find_entry(hash, eq).ok()?.remove();
            return Some(v);
        }
        if self.overlay.adds.find(hash, &mut eq).is_some() {
            let o = Arc::make_mut(&mut self.overlay);
            let (v, _) = o.adds.find_entry(hash, eq).ok()?.remove();
            return Some(v);
        }
        let v = self.visible_in_base(hash, eq)?.clone();
        Arc::make_mut(&mut self.overlay).hide(v.id());
        Some(v)
    }

    /// The overlay size that triggers a fold.
    fn fold_at(&self) -> usize {
        (self.base.len() / FOLD_FRACTION).max(FOLD_MIN)
    }

    /// Folds the overlay into the base (copying the base if shared).
    fn fold(&mut self, hasher: &impl Fn(&T) -> u64) {
        let overlay = std::mem::take(&mut self.overlay);
        let overlay = Arc::try_unwrap(overlay).unwrap_or_else(|o| (*o).clone());
        let base = Arc::make_mut(&mut self.base);
        if !overlay.hidden.is_empty() {
            base.retain(|e| !overlay.hides(e.id()));
        }
        for v in overlay.adds {
            base.insert_unique(hasher(&v), v, hasher);
        }
    }

    /// Every entry, in no meaningful order (tests and checks only).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        let o = &*self.overlay;
        (self.base.iter().filter(|e| !o.hides(e.id()))).chain(o.adds.iter())
    }

    /// Whether two tables share their base (tests).
    #[cfg(test)]
    pub(crate) fn shares_base_with(&self, o: &CowHash<T>) -> bool {
        Arc::ptr_eq(&self.base, &o.base)
    }

    /// Entries written since the base was shared: added, and hidden (tests).
    #[cfg(test)]
    pub(crate) fn overlay_len(&self) -> (usize, usize) {
        (self.overlay.adds.len(), self.overlay.hidden.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    impl Identified for (u64, u64) {
        fn id(&self) -> u128 {
            u128::from(self.0)
        }
    }

    fn h(k: u64) -> u64 {
        // A spread hash, with a collision every 1,000 keys to exercise `eq`.
        let k2 = k / 1000 * 1000 + (k % 1000 != 7) as u64 * (k % 1000);
        k2.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (k2 >> 7)
    }

    /// The prefetch hint's addresses assume hashbrown's layout: entry `i`
    /// just below the control bytes, `i + 1` entries down. A new layout
    /// would fail here rather than make the hint silently useless.
    #[test]
    fn the_prefetch_hint_finds_every_entry_where_hashbrown_keeps_it() {
        let mut t: CowHash<(u64, u64)> = CowHash::default();
        assert!(t.ctrl().is_none());
        for k in 0..5000u64 {
            t.insert(h(k), (k, k), |e| h(e.0));
        }
        let ctrl = t.ctrl().expect("occupied");
        let size = std::mem::size_of::<(u64, u64)>();
        let mut seen = 0;
        for i in t.base.iter_buckets() {
            let e: *const (u64, u64) = t.base.get_bucket(i).expect("occupied");
            assert_eq!(e.cast::<u8>(), ctrl.wrapping_sub((i + 1) * size));
            seen += 1;
        }
        assert_eq!(seen, 5000);
    }

    #[test]
    fn behaves_as_a_map_through_clones_and_folds() {
        let mut t: CowHash<(u64, u64)> = CowHash::default();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let hasher = |e: &(u64, u64)| h(e.0);
        let mut snapshots = Vec::new();
        // A deterministic mix of inserts, updates and removes.
        let mut x = 12345u64;
        for step in 0..60_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 30_000;
            match x % 4 {
                0 => match t.find_mut(h(k), |e| e.0 == k, hasher) {
                    Some(e) => {
                        e.1 = step;
                        model.insert(k, step);
                    }
                    None => {
                        t.insert(h(k), (k, step), hasher);
                        model.insert(k, step);
                    }
                },
                1 => {
                    let held = model.insert(k, step).is_some();
                    match t.find_mut_or_insert(h(k), |e| e.0 == k, hasher, (k, step)) {
                        Some(e) => {
                            assert!(held, "{k} found but not held");
                            e.1 = step;
                        }
                        None => assert!(!held, "{k} held but added"),
                    }
                }
                2 => {
                    let before = t.overlay_len();
                    let got = t.find_or_insert(h(k), |e| e.0 == k, hasher, (k, step));
                    match (got.map(|e| e.1), model.get(&k)) {
                        (Some(v), Some(&m)) => {
                            assert_eq!(v, m, "{k} found changed");
                            // Read only: a found entry is not copied.
                            assert_eq!(t.overlay_len(), before, "{k} copied");
                        }
                        (None, None) => {
                            model.insert(k, step);
                        }
                        (got, held) => panic!("{k}: found {got:?}, held {held:?}"),
                    }
                }
                _ => {
                    let got = t.remove(h(k), |e| e.0 == k).map(|e| e.1);
                    assert_eq!(got, model.remove(&k), "remove {k}");
                }
            }
            // Clones kept (so the base stays shared and the overlay
            // works) and clones dropped (so the base is written in place).
            if step % 6_000 == 0 {
                snapshots.push((t.clone(), model.clone()));
            }
            if step % 6_000 == 3_000 {
                drop(t.clone());
            }
        }
        snapshots.push((t, model));
        // Every snapshot still reads as it was when taken.
        for (t, model) in &snapshots {
            assert_eq!(t.len(), model.len());
            for k in 0..30_000u64 {
                assert_eq!(
                    t.find(h(k), |e| e.0 == k).map(|e| e.1),
                    model.get(&k).copied()
                );
            }
            let mut all: Vec<(u64, u64)> = t.iter().copied().collect();
            all.sort_unstable();
            assert_eq!(all, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn writes_after_a_clone_copy_nothing_shared_until_the_overlay_folds() {
        let mut t: CowHash<(u64, u64)> = CowHash::default();
        let n = 20_000u64;
        for k in 0..n {
            t.insert(h(k), (k, k), |e| h(e.0));
        }
        // No clone: changes and removals are written in place too.
        t.find_mut(h(3), |e| e.0 == 3, |e| h(e.0)).unwrap().1 = 3;
        assert_eq!(t.remove(h(n - 1), |e| e.0 == n - 1), Some((n - 1, n - 1)));
        t.insert(h(n - 1), (n - 1, n - 1), |e| h(e.0));
        assert_eq!(t.overlay_len(), (0, 0), "no clone: written in place");
        let copy = t.clone();
        t.find_mut(h(5), |e| e.0 == 5, |e| h(e.0)).unwrap().1 = 99;
        assert!(t.remove(h(6), |e| e.0 == 6).is_some());
        t.insert(h(n), (n, n), |e| h(e.0));
        // A miss copies nothing.
        assert!(t.find_mut(h(n + 1), |e| e.0 == n + 1, |e| h(e.0)).is_none());
        assert!(t.remove(h(n + 2), |e| e.0 == n + 2).is_none());
        assert!(t.shares_base_with(&copy));
        assert_eq!(
            t.overlay_len(),
            (2, 2),
            "5 changed and 6 removed hide theirs"
        );
        assert_eq!(t.len(), n as usize);
        assert_eq!(copy.find(h(5), |e| e.0 == 5), Some(&(5, 5)));
        assert_eq!(t.find(h(5), |e| e.0 == 5), Some(&(5, 99)));
        assert_eq!(t.find(h(6), |e| e.0 == 6), None);
        assert_eq!(copy.find(h(6), |e| e.0 == 6), Some(&(6, 6)));
        // Past a sixteenth of the table (and the minimum), the next insert
        // folds the overlay into a base of its own.
        let fold = (n as usize / FOLD_FRACTION).max(FOLD_MIN);
        let mut k = n + 10;
        while t.shares_base_with(&copy) {
            t.insert(h(k), (k, k), |e| h(e.0));
            k += 1;
        }
        assert_eq!(k - (n + 10), fold as u64 - 2, "inserts until the fold");
        assert_eq!(t.overlay_len(), (0, 0));
        assert_eq!(t.len(), n as usize + (k - n - 10) as usize);
        assert_eq!(t.find(h(5), |e| e.0 == 5), Some(&(5, 99)));
        assert_eq!(t.find(h(6), |e| e.0 == 6), None);
        assert_eq!(copy.len(), n as usize);
        assert_eq!(copy.find(h(n), |e| e.0 == n), None);
    }
}
