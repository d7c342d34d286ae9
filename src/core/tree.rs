//! The directory tree's vocabulary: dns split at their first unescaped
//! comma, names compared as LDAP compares them (case-insensitively), an
//! object's parent, and which parent dns are fixed containers.
//!
//! An object stores its own rdn and its parent (a fixed container's dn, or
//! the guid of the parent object); the dn it is shown with is derived from
//! them on the server that shows it (`ObjectTable::shown_dn`), so renaming
//! a container is one write and its children follow it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;

use crate::core::ids::Guid;

/// The fixed container that holds objects whose parent is a tombstone (or
/// is not held) on the server that shows them.
pub const LOST_AND_FOUND: &str = "cn=LostAndFound";

/// What follows an rdn whose object lost a name conflict: `<rdn> CNF:<guid>`.
pub const CNF_MARK: &str = " CNF:";

/// Where an object hangs.
///
/// Ordered (fixed containers first, by dn; then objects, by guid) only so
/// that a name conflict between two writes with equal stamps (a USN
/// rollback's reuse) resolves the same way on every server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Parent {
    /// A fixed container, by its dn (`""`: the root).
    Fixed(Arc<str>),
    /// Another object, by guid.
    Object(Guid),
}

impl Parent {
    /// The parent object's guid, if the parent is an object.
    pub fn object(&self) -> Option<Guid> {
        match self {
            Parent::Object(g) => Some(*g),
            Parent::Fixed(_) => None,
        }
    }

    /// The parent, borrowed.
    pub fn as_ref(&self) -> ParentRef<'_> {
        match self {
            Parent::Fixed(dn) => ParentRef::Fixed(dn),
            Parent::Object(g) => ParentRef::Object(*g),
        }
    }
}

/// A [`Parent`] borrowed from a packed state; ordered as `Parent` is.
///
/// ```
/// use backsync::core::{Guid, Parent, ParentRef};
/// let p = Parent::Object(Guid(3));
/// assert_eq!(p.as_ref(), ParentRef::Object(Guid(3)));
/// assert_eq!(ParentRef::Fixed("ou=Users").to_parent(), Parent::Fixed("ou=Users".into()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParentRef<'a> {
    /// A fixed container, by its dn (`""`: the root).
    Fixed(&'a str),
    /// Another object, by guid.
    Object(Guid),
}

impl ParentRef<'_> {
    /// The parent object's guid, if the parent is an object.
    pub fn object(self) -> Option<Guid> {
        match self {
            ParentRef::Object(g) => Some(g),
            ParentRef::Fixed(_) => None,
        }
    }

    /// The parent, owned.
    pub fn to_parent(self) -> Parent {
        match self {
            ParentRef::Fixed(dn) => Parent::Fixed(dn.into()),
            ParentRef::Object(g) => Parent::Object(g),
        }
    }
}

/// Splits a dn at its first unescaped comma: `(rdn, parent dn)`; the parent
/// of a one-component dn is the root, `""`.
///
/// ```
/// use backsync::core::tree::split_dn;
/// assert_eq!(split_dn("cn=Ann,ou=Sales,dc=x"), ("cn=Ann", "ou=Sales,dc=x"));
/// assert_eq!(split_dn(r"cn=Smith\, Ann,ou=Sales"), (r"cn=Smith\, Ann", "ou=Sales"));
/// assert_eq!(split_dn("cn=Ann"), ("cn=Ann", ""));
/// ```
pub fn split_dn(dn: &str) -> (&str, &str) {
    let b = dn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b',' => return (&dn[..i], &dn[i + 1..]),
            _ => i += 1,
        }
    }
    (dn, "")
}

/// The rdns of a dn, leaf first.
pub fn rdns(dn: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(dn);
    std::iter::from_fn(move || {
        let d = rest?;
        let (rdn, parent) = split_dn(d);
        rest = (!parent.is_empty()).then_some(parent);
        Some(rdn)
    })
}

/// Checks that a dn is one a write can name: rdns `type=value` joined by
/// commas, none empty, with a non-empty type and value, no dangling
/// backslash. Returns why not.
///
/// ```
/// use backsync::core::tree::check_dn;
/// assert!(check_dn("cn=Ann,ou=Sales").is_ok());
/// assert!(check_dn("cn=Ann,,ou=Sales").is_err());
/// assert!(check_dn("Ann").is_err());
/// assert!(check_dn("cn=").is_err());
/// ```
pub fn check_dn(dn: &str) -> Result<(), String> {
    if dn.trim().is_empty() {
        return Err("a dn must not be empty".into());
    }
    if dn.ends_with(',') && !dn.ends_with("\\,") {
        return Err("ends with a comma".into());
    }
    for rdn in rdns(dn) {
        if rdn.trim().is_empty() {
            return Err("has an empty rdn (two commas in a row, or a leading comma)".into());
        }
        let escaped_end = rdn.len() - rdn.trim_end_matches('\\').len();
        if escaped_end % 2 == 1 {
            return Err(format!("`{rdn}` ends with a lone backslash"));
        }
        let Some((ty, value)) = rdn.split_once('=') else {
            return Err(format!("`{rdn}` is not of the form type=value"));
        };
        if ty.trim().is_empty() || value.trim().is_empty() {
            return Err(format!("`{rdn}` has an empty type or value"));
        }
    }
    Ok(())
}

/// Folds one character as LDAP's case-insensitive matching does here
/// (Unicode simple lowercase).
fn fold(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// Whether two names are equal ignoring case, without allocating.
pub fn eq_ci(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    fold(a).eq(fold(b))
}

/// Compares two names ignoring case.
pub fn cmp_ci(a: &str, b: &str) -> Ordering {
    fold(a).cmp(fold(b))
}

/// The lowercase form of a name (the key of maps that need an owned one).
pub fn lower(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        fold(s).collect()
    }
}

/// A 64-bit hash of a name that is equal for names [`eq_ci`] calls equal:
/// XXH3 of its lowercase bytes.
pub fn hash_ci(s: &str) -> u64 {
    let b = s.as_bytes();
    let n = b.len();
    // The usual short ASCII name, lowercased in registers: XXH3 reads at
    // most two words of a name of 4 to 16 bytes (the first and the last 8
    // bytes, or 4 below 9), so exactly those are read, lowercased and
    // hashed as XXH3 does. Lowercasing a stack copy and hashing that
    // stalled each read on store forwarding (the words overlap): about a
    // sixth of a new object's insert.
    if (4..=16).contains(&n) && s.is_ascii() {
        let word = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4")));
        if n <= 8 {
            return xxh3_4to8(lower_word(word(0)), lower_word(word(n - 4)), n);
        }
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
        return xxh3_9to16(lower_word(word(0)), lower_word(word(n - 8)), n);
    }
    hash_ci_long(s)
}

/// Words of XXH3's default secret, little-endian, at byte offsets 8 to 48:
/// what its short-input functions below key with.
const SECRET: [u64; 6] = [
    0x1cad_21f7_2c81_017c,
    0xdb97_9083_e96d_d4de,
    0x1f67_b3b7_a4a4_4072,
    0x78e5_c0cc_4ee6_79cb,
    0x2172_ffcc_7dd0_5a82,
    0x8e24_43f7_7446_08b8,
];

/// XXH3-64 (seed 0) of 4 to 8 bytes whose first and last 4 are `first`
/// and `last` (the crate's `xxh3_64_4to8`).
fn xxh3_4to8(first: u64, last: u64, n: usize) -> u64 {
    let keyed = (last + (first << 32)) ^ (SECRET[0] ^ SECRET[1]);
    let mut v = keyed ^ keyed.rotate_left(49) ^ keyed.rotate_left(24);
    v = v.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    v ^= (v >> 35).wrapping_add(n as u64);
    v = v.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    v ^ (v >> 28)
}

/// XXH3-64 (seed 0) of 9 to 16 bytes whose first and last 8 are `first`
/// and `last` (the crate's `xxh3_64_9to16`).
fn xxh3_9to16(first: u64, last: u64, n: usize) -> u64 {
    let lo = first ^ (SECRET[2] ^ SECRET[3]);
    let hi = last ^ (SECRET[4] ^ SECRET[5]);
    let product = u128::from(lo) * u128::from(hi);
    let fold = (product as u64) ^ ((product >> 64) as u64);
    let mut acc = (n as u64)
        .wrapping_add(lo.swap_bytes())
        .wrapping_add(hi)
        .wrapping_add(fold);
    acc ^= acc >> 37;
    acc = acc.wrapping_mul(0x1656_6791_9E37_79F9);
    acc ^ (acc >> 32)
}

/// Lowercases the ASCII letters of up to eight ASCII bytes at once: a
/// byte gets 0x20 where adding to it carries it past `A - 1` but not past
/// `Z` (no byte is above 0x7f, so no carry crosses into the next).
fn lower_word(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let ge_a = x + (0x80 - u64::from(b'A')) * ONES;
    let gt_z = x + (0x80 - u64::from(b'Z') - 1) * ONES;
    x | ((ge_a & !gt_z & (0x80 * ONES)) >> 2)
}

/// [`hash_ci`] of any other name (kept out of line: its buffers would
/// widen the short path's stack frame).
#[inline(never)]
fn hash_ci_long(s: &str) -> u64 {
    // Lowercased a block at a time into a stack buffer: the same XXH3 as
    // byte by byte (a streaming hash of the concatenation), a fraction of
    // the cost, and no allocation.
    const BLOCK: usize = 128;
    let mut buf = [0u8; BLOCK];
    if s.is_ascii() && s.len() <= BLOCK {
        let b = &mut buf[..s.len()];
        b.copy_from_slice(s.as_bytes());
        b.make_ascii_lowercase();
        return xxhash_rust::xxh3::xxh3_64(b);
    }
    let mut h = crate::core::StableHasher::new();
    if s.is_ascii() {
        for part in s.as_bytes().chunks(BLOCK) {
            let b = &mut buf[..part.len()];
            b.copy_from_slice(part);
            b.make_ascii_lowercase();
            h.write(b);
        }
    } else {
        let mut buf = [0u8; 4];
        for c in fold(s) {
            h.write(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    h.finish()
}

/// Which parent dns are fixed containers: exist on every server from the
/// start, are not objects, and cannot be written, deleted or renamed.
///
/// The root (`""`) and [`LOST_AND_FOUND`] are fixed under every policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Containers {
    /// The library's default, and the flat behaviour of earlier releases:
    /// a parent dn that names no live object on the server where the write
    /// originates is a fixed container of that name. Nothing is refused
    /// for want of a parent.
    #[default]
    Implicit,
    /// Exactly these dns (by their lowercase form, each with the spelling
    /// shown) are fixed containers; every other parent must be a live
    /// object on the server where the write originates. Scenario files run
    /// under this policy, with the set their steps imply
    /// ([`crate::Scenario::fixed_containers`]).
    Fixed(BTreeMap<String, Arc<str>>),
}

impl Containers {
    /// The explicit policy over these dns (the first spelling of each wins).
    ///
    /// ```
    /// use backsync::core::tree::Containers;
    /// let c = Containers::fixed(["ou=Users", "OU=USERS", "dc=corp"]);
    /// assert_eq!(c.fixed_dn("ou=users").as_deref(), Some("ou=Users"));
    /// assert_eq!(c.fixed_dn("").as_deref(), Some(""));
    /// assert_eq!(c.fixed_dn("ou=Sales"), None);
    /// ```
    pub fn fixed<I, S>(dns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut m = BTreeMap::new();
        for d in dns {
            let d = d.as_ref();
            m.entry(lower(d)).or_insert_with(|| Arc::from(d));
        }
        Containers::Fixed(m)
    }

    /// The shown spelling of `dn` if the policy names it a fixed container
    /// (the root and LostAndFound always; under [`Containers::Implicit`],
    /// only those two: the rest depends on what the server holds).
    pub fn fixed_dn(&self, dn: &str) -> Option<Arc<str>> {
        if dn.is_empty() {
            return Some(Arc::from(""));
        }
        if eq_ci(dn, LOST_AND_FOUND) {
            return Some(Arc::from(LOST_AND_FOUND));
        }
        match self {
            Containers::Implicit => None,
            Containers::Fixed(m) => m.get(&lower(dn)).cloned(),
        }
    }

    /// Whether this is the explicit policy.
    pub fn is_explicit(&self) -> bool {
        matches!(self, Containers::Fixed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_ignoring_case_and_hash_alike() {
        for (a, b) in [("cn=Ann", "CN=ann"), ("ou=Ärger", "OU=ärger"), ("", "")] {
            assert!(eq_ci(a, b), "{a} {b}");
            assert_eq!(hash_ci(a), hash_ci(b), "{a} {b}");
            assert_eq!(cmp_ci(a, b), Ordering::Equal);
            assert_eq!(lower(a), lower(b));
        }
        assert!(!eq_ci("cn=Ann", "cn=Anne"));
        assert_ne!(hash_ci("cn=Ann"), hash_ci("cn=Anne"));
    }

    #[test]
    fn a_name_hashes_as_xxh3_of_its_lowercase_bytes_at_any_length() {
        // Across the stack buffer's block size and a multiple of it.
        for n in (0..=20).chain([127, 128, 129, 300]) {
            let name: String = (0..n).map(|i| if i % 3 == 0 { 'Q' } else { 'z' }).collect();
            let want = xxhash_rust::xxh3::xxh3_64(name.to_ascii_lowercase().as_bytes());
            assert_eq!(hash_ci(&name), want, "length {n}");
        }
        // Every byte at every place of the short path's two words.
        for n in 4..=16 {
            for at in 0..n {
                for c in 0..=127u8 {
                    let mut name = vec![b'x'; n];
                    name[at] = c;
                    let name = String::from_utf8(name).expect("ascii");
                    let want = xxhash_rust::xxh3::xxh3_64(name.to_ascii_lowercase().as_bytes());
                    assert_eq!(hash_ci(&name), want, "{name:?}");
                }
            }
        }
        let wide = "OU=Ärger,".repeat(30);
        assert_eq!(
            hash_ci(&wide),
            xxhash_rust::xxh3::xxh3_64(wide.to_lowercase().as_bytes())
        );
    }

    #[test]
    fn rdns_walk_up_to_the_root() {
        let v: Vec<&str> = rdns(r"cn=a\,b,ou=x,dc=y").collect();
        assert_eq!(v, [r"cn=a\,b", "ou=x", "dc=y"]);
        assert_eq!(rdns("cn=a").count(), 1);
    }

    #[test]
    fn malformed_dns_are_named() {
        for bad in [
            "",
            " ",
            ",cn=a",
            "cn=a,",
            "cn=a,,ou=b",
            "cn",
            "=a",
            "cn=",
            r"cn=a\",
        ] {
            assert!(check_dn(bad).is_err(), "{bad:?}");
        }
        for good in ["cn=a", r"cn=a\,b,ou=x", "cn=x CNF:1234,ou=y", r"cn=a\\"] {
            assert!(check_dn(good).is_ok(), "{good:?}");
        }
    }
}
