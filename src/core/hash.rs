//! The one hash of replicated content: XXH3 (the `xxhash-rust` crate), fed
//! explicit little-endian bytes, so a digest or a trace hash recorded today
//! reads the same on any toolchain and platform. std's `DefaultHasher`
//! makes no such promise (its algorithm may change between releases).

use std::hash::Hasher;

use xxhash_rust::xxh3::Xxh3;

/// A streaming XXH3 hasher with fixed-width, little-endian integers:
/// `usize` is hashed as a `u64`, so 32- and 64-bit hosts agree.
///
/// ```
/// use std::hash::Hasher;
/// use backsync::core::StableHasher;
/// let mut h = StableHasher::new();
/// h.write_u64(7);
/// h.write(b"cn=UserA");
/// // XXH3-64 of those 16 bytes: the same on every platform and release.
/// assert_eq!(h.finish(), StableHasher::of(&[&7u64.to_le_bytes()[..], b"cn=UserA"]));
/// ```
#[derive(Clone, Default)]
pub struct StableHasher(Xxh3);

impl StableHasher {
    /// A hasher with seed 0.
    pub fn new() -> Self {
        StableHasher(Xxh3::new())
    }

    /// A hasher with a seed (independent halves of a 128-bit hash).
    pub fn with_seed(seed: u64) -> Self {
        StableHasher(Xxh3::with_seed(seed))
    }

    /// The 64-bit hash of the concatenation of `parts`.
    pub fn of(parts: &[&[u8]]) -> u64 {
        let mut h = StableHasher::new();
        for p in parts {
            h.write(p);
        }
        h.finish()
    }

    /// The 128-bit XXH3 hash of what was written.
    pub fn finish128(&self) -> u128 {
        self.0.digest128()
    }

    /// Writes a string, length first, so that concatenations cannot collide.
    pub fn write_str_lp(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write(s.as_bytes());
    }
}

impl std::fmt::Debug for StableHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StableHasher")
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0.digest()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh3_of_a_known_input_is_pinned() {
        // Pinned: a change of algorithm or byte layout must fail here.
        assert_eq!(StableHasher::of(&[]), 0x2d06_8005_38d3_94c2);
        assert_ne!(StableHasher::of(&[b"a"]), StableHasher::of(&[b"b"]));
    }

    #[test]
    fn usize_hashes_as_u64() {
        let mut a = StableHasher::new();
        a.write_usize(42);
        let mut b = StableHasher::new();
        b.write_u64(42);
        assert_eq!(a.finish(), b.finish());
    }
}

#[cfg(test)]
mod layout_tests {
    //! Each write is the bytes documented above, checked against the
    //! `xxhash-rust` functions over those bytes.
    use super::*;
    use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, xxh3_128};

    fn one(f: impl FnOnce(&mut StableHasher)) -> u64 {
        let mut h = StableHasher::new();
        f(&mut h);
        h.finish()
    }

    #[test]
    fn integers_hash_as_their_little_endian_bytes() {
        assert_eq!(one(|h| h.write_u8(0xa5)), xxh3_64(&[0xa5]));
        assert_eq!(one(|h| h.write_u16(0x1234)), xxh3_64(&[0x34, 0x12]));
        assert_eq!(one(|h| h.write_u32(7)), xxh3_64(&7u32.to_le_bytes()));
        assert_eq!(one(|h| h.write_u64(7)), xxh3_64(&7u64.to_le_bytes()));
        assert_eq!(one(|h| h.write_u128(7)), xxh3_64(&7u128.to_le_bytes()));
        assert_eq!(one(|h| h.write_i64(-2)), xxh3_64(&(-2i64).to_le_bytes()));
        assert_eq!(one(|h| h.write_isize(-2)), xxh3_64(&(-2i64).to_le_bytes()));
    }

    #[test]
    fn strings_are_length_prefixed() {
        let mut want = 3u64.to_le_bytes().to_vec();
        want.extend_from_slice(b"abc");
        assert_eq!(one(|h| h.write_str_lp("abc")), xxh3_64(&want));
        assert_eq!(StableHasher::of(&[b"ab", b"c"]), xxh3_64(b"abc"));
    }

    #[test]
    fn seeds_and_the_128_bit_digest() {
        let mut h = StableHasher::with_seed(99);
        h.write(b"abc");
        assert_eq!(h.finish(), xxh3_64_with_seed(b"abc", 99));
        let mut h = StableHasher::new();
        h.write(b"abc");
        assert_eq!(h.finish128(), xxh3_128(b"abc"));
        assert_eq!(format!("{h:?}"), "StableHasher");
    }
}
