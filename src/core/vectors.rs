//! Watermarks and up-to-dateness vectors (docs/DOMAIN.md section 3).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::ids::{InvocationId, Stamp, Usn};

/// A destination's cursor into one source: the highest source USN it has
/// received, valid only for the source's invocation id it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HighWatermark {
    /// The source database instance the USN belongs to.
    pub invocation: InvocationId,
    /// Highest source USN received.
    pub usn: Usn,
}

/// Per originating invocation, the highest originating USN a server holds
/// everything up to. Ordered map: iteration is deterministic.
///
/// ```
/// use backsync::core::{UpToDatenessVector, InvocationId, Usn, Stamp};
/// let mut v = UpToDatenessVector::default();
/// v.raise(InvocationId(1), Usn(10));
/// let s = Stamp { version: 1, time: 0, invocation: InvocationId(1), usn: Usn(7) };
/// assert!(v.covers(&s));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpToDatenessVector(pub BTreeMap<InvocationId, Usn>);

impl UpToDatenessVector {
    /// The entry for `inv`, zero when absent.
    pub fn get(&self, inv: InvocationId) -> Usn {
        self.0.get(&inv).copied().unwrap_or_default()
    }

    /// Raises the entry for `inv` to at least `usn`.
    pub fn raise(&mut self, inv: InvocationId, usn: Usn) {
        let e = self.0.entry(inv).or_default();
        *e = (*e).max(usn);
    }

    /// Whether the write `s` is already held: propagation dampening.
    pub fn covers(&self, s: &Stamp) -> bool {
        self.get(s.invocation) >= s.usn
    }

    /// Takes the higher entry of both vectors, except for `skip` (a server
    /// keeps the claim on its own writes itself).
    pub fn merge_from(&mut self, other: &UpToDatenessVector, skip: InvocationId) {
        for (inv, usn) in &other.0 {
            if *inv != skip {
                self.raise(*inv, *usn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(inv: u64, usn: u64) -> Stamp {
        Stamp {
            version: 1,
            time: 0,
            invocation: InvocationId(inv),
            usn: Usn(usn),
        }
    }

    #[test]
    fn an_entry_covers_up_to_and_including_its_usn() {
        let mut v = UpToDatenessVector::default();
        assert_eq!(v.get(InvocationId(1)), Usn(0), "absent reads as zero");
        v.raise(InvocationId(1), Usn(10));
        assert_eq!(v.get(InvocationId(1)), Usn(10));
        assert!(v.covers(&stamp(1, 10)));
        assert!(v.covers(&stamp(1, 9)));
        assert!(!v.covers(&stamp(1, 11)));
        assert!(
            !v.covers(&stamp(2, 1)),
            "another invocation's entry is zero"
        );
    }

    #[test]
    fn raise_never_lowers() {
        let mut v = UpToDatenessVector::default();
        v.raise(InvocationId(1), Usn(10));
        v.raise(InvocationId(1), Usn(4));
        assert_eq!(v.get(InvocationId(1)), Usn(10));
        v.raise(InvocationId(1), Usn(12));
        assert_eq!(v.get(InvocationId(1)), Usn(12));
    }

    #[test]
    fn merge_takes_the_higher_entries_except_the_skipped_one() {
        let mut a = UpToDatenessVector::default();
        a.raise(InvocationId(1), Usn(5));
        a.raise(InvocationId(2), Usn(50));
        let mut b = UpToDatenessVector::default();
        b.raise(InvocationId(1), Usn(7));
        b.raise(InvocationId(2), Usn(20));
        b.raise(InvocationId(3), Usn(30));
        b.raise(InvocationId(9), Usn(90));
        a.merge_from(&b, InvocationId(9));
        let want: BTreeMap<InvocationId, Usn> = [(1, 7), (2, 50), (3, 30)]
            .into_iter()
            .map(|(i, u)| (InvocationId(i), Usn(u)))
            .collect();
        assert_eq!(a.0, want);
    }
}
