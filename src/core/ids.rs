//! Identities and stamps: the vocabulary every other module speaks.

use std::fmt;

use serde::Serialize;

/// An update sequence number: local to one database instance, never compared
/// across servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Usn(pub u64);

impl Usn {
    /// The USN after this one.
    pub fn next(self) -> Usn {
        Usn(self.0 + 1)
    }
}

impl fmt::Display for Usn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one database instance of a server; some restores replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct InvocationId(pub u64);

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An object's globally unique id, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Guid(pub u128);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl std::str::FromStr for Guid {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return Err(());
        }
        u128::from_str_radix(&hex, 16).map(Guid).map_err(|_| ())
    }
}

/// Simulated time in milliseconds since the cluster started.
pub type SimTime = u64;

/// The metadata that travels with a write (docs/DOMAIN.md section 2).
///
/// Stamps are totally ordered: version, then originating time, then
/// originating invocation, then originating USN. Both conflict rules of
/// section 4 are this order; they differ only in what one stamp covers.
///
/// ```
/// use backsync::core::{Stamp, InvocationId, Usn};
/// let a = Stamp { version: 2, time: 10, invocation: InvocationId(1), usn: Usn(5) };
/// let b = Stamp { version: 1, time: 99, invocation: InvocationId(9), usn: Usn(9) };
/// assert!(a > b, "a higher version wins whatever the time");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Stamp {
    /// Incremented by every originating write of what the stamp covers.
    pub version: u32,
    /// Originating time (simulated ms).
    pub time: SimTime,
    /// The database instance that made the write.
    pub invocation: InvocationId,
    /// The USN the write took on its originating server.
    pub usn: Usn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usn_next_is_one_more() {
        assert_eq!(Usn(41).next(), Usn(42));
        assert_eq!(Usn(0).next(), Usn(1));
    }

    #[test]
    fn ids_display_as_documented() {
        assert_eq!(Usn(1234).to_string(), "1234");
        assert_eq!(InvocationId(0xab).to_string(), "00000000000000ab");
        let g = Guid(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(g.to_string(), "01234567-89ab-cdef-0011-223344556677");
    }

    #[test]
    fn a_guid_parses_back_from_its_display() {
        let g = Guid(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!("01234567-89ab-cdef-0011-223344556677".parse(), Ok(g));
        assert_eq!(g.to_string().parse(), Ok(g));
        assert_eq!("0123456789abcdef0011223344556677".parse(), Ok(g));
        // Too short, too long, not hex.
        assert_eq!("01234567-89ab".parse::<Guid>(), Err(()));
        assert_eq!(format!("{g}0").parse::<Guid>(), Err(()));
        assert_eq!(
            "z1234567-89ab-cdef-0011-223344556677".parse::<Guid>(),
            Err(())
        );
    }

    #[test]
    fn stamps_order_by_version_time_invocation_usn() {
        let s = |version, time, inv, usn| Stamp {
            version,
            time,
            invocation: InvocationId(inv),
            usn: Usn(usn),
        };
        assert!(s(2, 0, 0, 0) > s(1, 9, 9, 9));
        assert!(s(1, 2, 0, 0) > s(1, 1, 9, 9));
        assert!(s(1, 1, 2, 0) > s(1, 1, 1, 9));
        assert!(s(1, 1, 1, 2) > s(1, 1, 1, 1));
    }
}
