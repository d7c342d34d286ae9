//! Copy-on-write index structures a backup and a restore share with the
//! server they come from: cloning one copies a pointer per shard, and a
//! write after that copies only the shard it lands in. A restore then
//! costs what the restored server writes afterwards, not what it holds
//! (docs/PERFORMANCE.md, "Restore growth").

use std::sync::Arc;

use hashbrown::HashTable;

/// Average entries per shard before the shards double: the first write to
/// a shared shard copies about half a kilobyte.
const SHARD_LOAD: usize = 64;

/// Shards per group (2^GROUP_BITS): the first write to a shared group
/// copies this many pointers; a clone copies one pointer per group. Small
/// groups keep the first writes after a restore cheap; measured against
/// 64-shard groups of 128 entries, 1,100 writes after restoring 1M
/// objects took 2.4 ms instead of 3.6 to 5.6.
const GROUP_BITS: u32 = 4;

/// At most 2^MAX_BITS shards (2^26 entries at [`SHARD_LOAD`]); past that,
/// shards just grow.
const MAX_BITS: u32 = 20;

/// A group of shards.
type Group<T> = Vec<Arc<HashTable<T>>>;

/// A hash table split by hash into shards, in groups, both shared
/// copy-on-write: a persistent hash table two levels deep.
///
/// A clone copies a pointer per group (one per 1,024 entries); the first
/// write after it to a group copies the group's 16 pointers and the one
/// shard written (about half a kilobyte). A backup and a restore thus cost
/// what is written after them, not what the table holds.
///
/// The API is hashbrown's [`HashTable`]'s: callers hash and compare
/// (entries can be slot numbers whose key lives elsewhere). The shard of a
/// hash is the top bits of a multiplicative rehash, so that within a shard
/// the hash's own bits (hashbrown's bucket and tag) stay spread.
#[derive(Debug, Clone)]
pub(crate) struct CowHash<T> {
    groups: Vec<Arc<Group<T>>>,
    /// 2^bits shards.
    bits: u32,
    len: usize,
}

impl<T> Default for CowHash<T> {
    fn default() -> Self {
        CowHash {
            groups: vec![Arc::new(vec![Arc::new(HashTable::new())])],
            bits: 0,
            len: 0,
        }
    }
}

/// The group and the shard within it of `hash`, among 2^bits shards.
fn locate(hash: u64, bits: u32) -> (usize, usize) {
    let s = if bits == 0 {
        0
    } else {
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    };
    (s >> GROUP_BITS, s & ((1 << GROUP_BITS) - 1))
}

impl<T: Clone> CowHash<T> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn shard(&self, hash: u64) -> &HashTable<T> {
        let (g, i) = locate(hash, self.bits);
        &self.groups[g][i]
    }

    /// The shard of `hash`, unshared first (its group and it copied if a
    /// clone shares them).
    fn shard_mut(&mut self, hash: u64) -> &mut HashTable<T> {
        let (g, i) = locate(hash, self.bits);
        Arc::make_mut(&mut Arc::make_mut(&mut self.groups[g])[i])
    }

    /// Whether writing to the shard of `hash` would copy nothing.
    fn owned(&mut self, hash: u64) -> bool {
        let (g, i) = locate(hash, self.bits);
        Arc::get_mut(&mut self.groups[g]).is_some_and(|gr| Arc::get_mut(&mut gr[i]).is_some())
    }

    /// The entry with `hash` that `eq` accepts.
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        self.shard(hash).find(hash, eq)
    }

    /// The entry with `hash` that `eq` accepts, to change in place. Its
    /// shard is copied only when the entry is there and the shard shared.
    pub(crate) fn find_mut(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        if !self.owned(hash) && self.find(hash, &mut eq).is_none() {
            return None;
        }
        self.shard_mut(hash).find_mut(hash, eq)
    }

    /// Adds an entry no other entry equals. `hasher` gives an entry's hash
    /// (when the shards double or a shard grows).
    pub(crate) fn insert(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        self.shard_mut(hash).insert_unique(hash, value, &hasher);
        self.len += 1;
        if self.len > SHARD_LOAD << self.bits && self.bits < MAX_BITS {
            self.double(&hasher);
        }
    }

    /// Removes and returns the entry with `hash` that `eq` accepts.
    pub(crate) fn remove(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<T> {
        if !self.owned(hash) && self.find(hash, &mut eq).is_none() {
            return None;
        }
        let (v, _) = self.shard_mut(hash).find_entry(hash, eq).ok()?.remove();
        self.len -= 1;
        Some(v)
    }

    /// Splits every shard in two (amortised over the inserts that filled
    /// them, as a hash table's resize).
    fn double(&mut self, hasher: &impl Fn(&T) -> u64) {
        let bits = self.bits + 1;
        let mut next: Vec<HashTable<T>> = (0..1usize << bits)
            .map(|_| HashTable::with_capacity(SHARD_LOAD * 5 / 8))
            .collect();
        for group in std::mem::take(&mut self.groups) {
            let group = Arc::try_unwrap(group).unwrap_or_else(|a| (*a).clone());
            for shard in group {
                let shard = Arc::try_unwrap(shard).unwrap_or_else(|a| (*a).clone());
                for v in shard {
                    let h = hasher(&v);
                    let (g, i) = locate(h, bits);
                    next[(g << GROUP_BITS) | i].insert_unique(h, v, hasher);
                }
            }
        }
        let mut it = next.into_iter().map(Arc::new).peekable();
        while it.peek().is_some() {
            self.groups
                .push(Arc::new(it.by_ref().take(1 << GROUP_BITS).collect()));
        }
        self.bits = bits;
    }

    /// Every entry, in no meaningful order (tests and checks only).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.groups
            .iter()
            .flat_map(|g| g.iter())
            .flat_map(|s| s.iter())
    }

    /// How many shards two tables share (tests).
    #[cfg(test)]
    pub(crate) fn shared_with(&self, o: &CowHash<T>) -> usize {
        let shards = |t: &CowHash<T>| -> Vec<*const HashTable<T>> {
            (t.groups.iter().flat_map(|g| g.iter()))
                .map(Arc::as_ptr)
                .collect()
        };
        (shards(self).into_iter().zip(shards(o)))
            .filter(|(a, b)| a == b)
            .count()
    }

    /// How many groups two tables share (tests).
    #[cfg(test)]
    pub(crate) fn groups_shared_with(&self, o: &CowHash<T>) -> usize {
        (self.groups.iter().zip(&o.groups))
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }

    /// Number of shards (tests).
    #[cfg(test)]
    pub(crate) fn shards(&self) -> usize {
        1 << self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn h(k: u64) -> u64 {
        // A spread hash, with a collision every 1,000 keys to exercise `eq`.
        let k2 = k / 1000 * 1000 + (k % 1000 != 7) as u64 * (k % 1000);
        k2.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (k2 >> 7)
    }

    #[test]
    fn behaves_as_a_map_through_doubling_and_clones() {
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
            match x % 3 {
                0 | 1 => match t.find_mut(h(k), |e| e.0 == k) {
                    Some(e) => {
                        e.1 = step;
                        model.insert(k, step);
                    }
                    None => {
                        t.insert(h(k), (k, step), hasher);
                        model.insert(k, step);
                    }
                },
                _ => {
                    let got = t.remove(h(k), |e| e.0 == k).map(|e| e.1);
                    assert_eq!(got, model.remove(&k), "remove {k}");
                }
            }
            if step % 12_000 == 0 {
                snapshots.push((t.clone(), model.clone()));
            }
        }
        assert!(t.shards() > 16, "doubled past one group");
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
    fn a_write_after_a_clone_copies_one_shard() {
        let mut t: CowHash<(u64, u64)> = CowHash::default();
        for k in 0..20_000u64 {
            t.insert(h(k), (k, k), |e| h(e.0));
        }
        let n = t.shards();
        assert!(n >= 128, "{n} shards");
        let copy = t.clone();
        assert_eq!(t.shared_with(&copy), n);
        let groups = n / 16;
        assert_eq!(t.groups_shared_with(&copy), groups);
        t.find_mut(h(5), |e| e.0 == 5).unwrap().1 = 99;
        assert_eq!(t.shared_with(&copy), n - 1);
        assert_eq!(t.groups_shared_with(&copy), groups - 1);
        // A miss copies nothing.
        assert!(t.find_mut(h(20_001), |e| e.0 == 20_001).is_none());
        assert!(t.remove(h(20_002), |e| e.0 == 20_002).is_none());
        assert_eq!(t.shared_with(&copy), n - 1);
        assert_eq!(copy.find(h(5), |e| e.0 == 5), Some(&(5, 5)));
        assert_eq!(t.find(h(5), |e| e.0 == 5), Some(&(5, 99)));
    }
}
