//! Replication schedules as windows over the week, in the shape of the
//! SCHEDULE structure of MS-ADTS (section 7.1.4.5): 168 hours, and in each
//! the low four bits for its four quarter hours.
//!
//! Simulated time 0 is Sunday 00:00 UTC of the first week, as the first byte
//! of a SCHEDULE is; the week repeats. Plain data: the caller passes the
//! time, so the actor shell and the importer share it.

use std::time::Duration;

const QUARTER_MS: u64 = 15 * 60 * 1_000;
/// Quarter hours in a week.
pub const QUARTERS: usize = 168 * 4;
const WEEK_MS: u64 = QUARTERS as u64 * QUARTER_MS;

/// Which quarter hours of the week replication may run in.
///
/// ```
/// use std::time::Duration;
/// use backsync::core::WeekWindows;
/// // Open only on Monday (hour 24 of the week) from 00:15 to 00:30.
/// let mut hours = [0u8; 168];
/// hours[24] = 0b0100; // bit 3 is minutes 0-14, bit 2 minutes 15-29
/// let w = WeekWindows::from_hours(&hours);
/// let h = |h: u64, m: u64| Duration::from_secs(h * 3600 + m * 60);
/// assert!(w.is_open(h(24, 20)));
/// assert!(!w.is_open(h(24, 30)));
/// assert_eq!(w.next_open(h(0, 0)), Some(h(24, 15)));
/// // A week later, the same window.
/// assert_eq!(w.next_open(h(24, 31)), Some(h(24 + 168, 15)));
/// assert_eq!(WeekWindows::never().next_open(h(0, 0)), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WeekWindows {
    /// Per hour of the week, its quarters in the low four bits (bit 3 is
    /// minutes 0 to 14, bit 0 minutes 45 to 59), as in SCHEDULE; the high
    /// bits are always zero.
    hours: [u8; 168],
}

/// The bit of quarter `q` in its hour's byte: the SCHEDULE_HEADER
/// documentation (schedule.h) gives binary 1000 for minutes 0 to 14 and
/// 0001 for minutes 45 to 59.
fn quarter_bit(q: usize) -> u8 {
    0b1000 >> (q % 4)
}

impl std::fmt::Debug for WeekWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WeekWindows({} of {QUARTERS} quarters open)",
            self.open_quarters()
        )
    }
}

impl Default for WeekWindows {
    fn default() -> Self {
        Self::always()
    }
}

impl WeekWindows {
    /// Open all week.
    pub fn always() -> Self {
        WeekWindows { hours: [0x0F; 168] }
    }

    /// Never open: a connection on it never replicates.
    pub fn never() -> Self {
        WeekWindows { hours: [0; 168] }
    }

    /// From the 168 hour bytes of a SCHEDULE; the high four bits of each are
    /// ignored, as MS-ADTS says.
    pub fn from_hours(hours: &[u8; 168]) -> Self {
        WeekWindows {
            hours: hours.map(|b| b & 0x0F),
        }
    }

    /// The 168 hour bytes, as a SCHEDULE holds them.
    pub fn hours(&self) -> &[u8; 168] {
        &self.hours
    }

    /// Opens quarter `q` (0 = Sunday 00:00 to 00:15) of the week.
    pub fn open(&mut self, q: usize) {
        self.hours[q / 4] |= quarter_bit(q);
    }

    /// Whether quarter `q` of the week is open.
    pub fn quarter_open(&self, q: usize) -> bool {
        self.hours[q % QUARTERS / 4] & quarter_bit(q) != 0
    }

    /// How many of the week's 672 quarters are open.
    pub fn open_quarters(&self) -> usize {
        self.hours.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Whether replication may run at simulated time `at`.
    pub fn is_open(&self, at: Duration) -> bool {
        let ms = at.as_millis() as u64;
        self.quarter_open(((ms % WEEK_MS) / QUARTER_MS) as usize)
    }

    /// The earliest time at or after `at` inside a window; `None` if the
    /// schedule is never open.
    pub fn next_open(&self, at: Duration) -> Option<Duration> {
        if self.is_open(at) {
            return Some(at);
        }
        let ms = at.as_millis() as u64;
        let q0 = ms / QUARTER_MS;
        (1..=QUARTERS as u64)
            .find(|k| self.quarter_open(((q0 + k) % QUARTERS as u64) as usize))
            .map(|k| Duration::from_millis((q0 + k) * QUARTER_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn always_is_open_everywhere_and_never_nowhere() {
        for ms in [
            0,
            1,
            QUARTER_MS - 1,
            5 * H,
            WEEK_MS - 1,
            WEEK_MS,
            9 * WEEK_MS + 7,
        ] {
            assert!(WeekWindows::always().is_open(at(ms)));
            assert!(!WeekWindows::never().is_open(at(ms)));
        }
        assert_eq!(WeekWindows::always().open_quarters(), QUARTERS);
        assert_eq!(WeekWindows::never().open_quarters(), 0);
    }

    #[test]
    fn high_bits_are_ignored() {
        let w = WeekWindows::from_hours(&[0xF0; 168]);
        assert_eq!(w, WeekWindows::never());
    }

    #[test]
    fn the_last_quarter_of_the_week_wraps_to_the_first() {
        let mut w = WeekWindows::never();
        w.open(0);
        assert_eq!(w.next_open(at(WEEK_MS - 1)), Some(at(WEEK_MS)));
        assert_eq!(w.next_open(at(QUARTER_MS)), Some(at(WEEK_MS)));
        let mut last = WeekWindows::never();
        last.open(QUARTERS - 1);
        assert!(last.is_open(at(WEEK_MS - 1)));
        assert!(!last.is_open(at(WEEK_MS)));
        assert_eq!(last.next_open(at(0)), Some(at(WEEK_MS - QUARTER_MS)));
    }

    #[test]
    fn next_open_is_open_and_nothing_before_it_is() {
        let mut w = WeekWindows::never();
        for q in [3, 100, 101, 400, 671] {
            w.open(q);
        }
        for ms in (0..2 * WEEK_MS).step_by(7 * 60_000 + 13) {
            let n = w.next_open(at(ms)).unwrap();
            assert!(n >= at(ms) && w.is_open(n), "{ms}");
            // Every quarter start in between is closed.
            let mut t = ms.div_ceil(QUARTER_MS) * QUARTER_MS;
            while at(t) < n {
                assert!(!w.is_open(at(t)), "{t} open before {n:?}");
                t += QUARTER_MS;
            }
        }
    }
}
