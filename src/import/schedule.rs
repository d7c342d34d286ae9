//! The binary SCHEDULE structure of MS-ADTS (section 7.1.4.5, "SCHEDULE";
//! the same as `SCHEDULE` of the Win32 `schedule.h`), as `schedule`
//! attributes of nTDSConnection and siteLink objects hold it.
//!
//! All little-endian: `Size` (u32, the whole structure: 188), `Bandwidth`
//! (u32, not used), `NumberOfSchedules` (u32, always 1), one
//! SCHEDULE_HEADER: `Type` (u32, 0 = SCHEDULE_INTERVAL) and `Offset` (u32,
//! from the start of the structure to the data: 20); then the 168 hour
//! bytes, the first Sunday 00:00 UTC, each with its four quarter hours in
//! the low four bits.
//!
//! ```
//! use backsync::core::WeekWindows;
//! use backsync::import::schedule::{decode, encode, SIZE};
//! let blob = encode(&WeekWindows::always());
//! assert_eq!(blob.len(), SIZE);
//! assert_eq!(decode(&blob), Ok(WeekWindows::always()));
//! assert!(decode(&blob[..100]).is_err());
//! ```

use crate::core::WeekWindows;

/// The size of a SCHEDULE with one SCHEDULE_INTERVAL: 188 bytes.
pub const SIZE: usize = 12 + 8 + 168;
/// Where the hour bytes start: 20.
pub const OFFSET: u32 = 20;
/// `Type` SCHEDULE_INTERVAL.
pub const SCHEDULE_INTERVAL: u32 = 0;

/// Why a blob is not a SCHEDULE this importer reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The value is not 188 bytes long.
    #[error("a SCHEDULE of {0} bytes, not {SIZE}")]
    Length(usize),
    /// The `Size` field is not 188.
    #[error("SCHEDULE `Size` is {0}, not {SIZE}")]
    Size(u32),
    /// `NumberOfSchedules` is not 1.
    #[error("SCHEDULE `NumberOfSchedules` is {0}, not 1")]
    Count(u32),
    /// The header's `Type` is not SCHEDULE_INTERVAL (0).
    #[error("SCHEDULE_HEADER `Type` is {0}, not 0 (SCHEDULE_INTERVAL)")]
    Type(u32),
    /// The header's `Offset` is not 20.
    #[error("SCHEDULE_HEADER `Offset` is {0}, not {OFFSET}")]
    Offset(u32),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a SCHEDULE into the windows it opens.
pub fn decode(blob: &[u8]) -> Result<WeekWindows, ScheduleError> {
    if blob.len() != SIZE {
        return Err(ScheduleError::Length(blob.len()));
    }
    let size = u32_at(blob, 0);
    if size as usize != SIZE {
        return Err(ScheduleError::Size(size));
    }
    let count = u32_at(blob, 8);
    if count != 1 {
        return Err(ScheduleError::Count(count));
    }
    let ty = u32_at(blob, 12);
    if ty != SCHEDULE_INTERVAL {
        return Err(ScheduleError::Type(ty));
    }
    let offset = u32_at(blob, 16);
    if offset != OFFSET {
        return Err(ScheduleError::Offset(offset));
    }
    let hours: &[u8; 168] = blob[OFFSET as usize..]
        .try_into()
        .expect("188 - 20 = 168 bytes");
    Ok(WeekWindows::from_hours(hours))
}

/// Encodes windows as a SCHEDULE (`Bandwidth` 0).
pub fn encode(w: &WeekWindows) -> Vec<u8> {
    let mut b = Vec::with_capacity(SIZE);
    b.extend_from_slice(&(SIZE as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&SCHEDULE_INTERVAL.to_le_bytes());
    b.extend_from_slice(&OFFSET.to_le_bytes());
    b.extend_from_slice(w.hours());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_each_field() {
        let mut hours = [0u8; 168];
        hours[3] = 0x0F;
        hours[100] = 0x05;
        let w = WeekWindows::from_hours(&hours);
        let blob = encode(&w);
        assert_eq!(decode(&blob), Ok(w));
        let patch = |at: usize, v: u32| {
            let mut b = blob.clone();
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            decode(&b)
        };
        assert_eq!(patch(0, 200), Err(ScheduleError::Size(200)));
        assert!(patch(4, 12345).is_ok(), "Bandwidth is ignored");
        assert_eq!(patch(8, 2), Err(ScheduleError::Count(2)));
        assert_eq!(patch(12, 1), Err(ScheduleError::Type(1)));
        assert_eq!(patch(16, 24), Err(ScheduleError::Offset(24)));
        assert_eq!(decode(&blob[..187]), Err(ScheduleError::Length(187)));
        assert_eq!(decode(&[]), Err(ScheduleError::Length(0)));
    }
}
