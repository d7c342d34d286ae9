//! The upper (and lower) bounds of every number a scenario or the library
//! takes, so that a run can neither exhaust memory nor outlive the clock.
//!
//! The scenario parser checks them before a run (docs/scenarios.md, "Bounds")
//! and the library checks the same ones ([`crate::ReplicationConfig::validate`],
//! [`crate::Cluster::with_faults`]).
//!
//! ```
//! use backsync::limits;
//! assert_eq!(limits::MAX_DURATION.as_secs(), 3650 * 86_400);
//! assert!(limits::MAX_LOAD_TOTAL <= limits::MAX_COUNT);
//! ```

use std::time::Duration;

/// The longest single duration (a wait, a limit, a delay, a period):
/// 3650 days, about 10 years of simulated time.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The text of [`MAX_DURATION`] in scenario syntax.
pub const MAX_DURATION_TEXT: &str = "3650d";

/// The most simulated time the `wait` and `converge` steps of one scenario
/// may add up to: 36,500 days, about 100 years.
pub const MAX_TOTAL_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// The text of [`MAX_TOTAL_DURATION`] in scenario syntax.
pub const MAX_TOTAL_DURATION_TEXT: &str = "36500d";

/// The largest count of objects or writes a field may give (`creates`,
/// `modifies`, `deletes`, `objects`, `lost_unreplicated`).
pub const MAX_COUNT: u64 = 10_000_000;

/// The most writes all `load` steps of one scenario may add up to.
pub const MAX_LOAD_TOTAL: u64 = 10_000_000;

/// The most object replicas the `load` steps of one scenario may create:
/// loaded objects times servers.
pub const MAX_REPLICAS: u64 = 100_000_000;

/// The most objects one replication reply may carry (packet sizes).
pub const MAX_PACKET: u64 = 1_000_000;

/// The most servers in one cluster.
pub const MAX_SERVERS: usize = 1_000;

/// The most one-way connections in one cluster (`[[connection]]` tables).
pub const MAX_CONNECTIONS: usize = 10_000;

/// The largest `max_objects_sent` of a `converge` step.
pub const MAX_OBJECTS_SENT: u64 = 1_000_000_000_000;

/// The most seeds one campaign runs.
pub const MAX_SEEDS: u64 = 10_000_000;

/// The most failing seeds one campaign shrinks.
pub const MAX_SHRINK: usize = 1_000;

/// The most runs one shrink may take.
pub const MAX_SHRINK_BUDGET: usize = 100_000;

/// The most shards a campaign's range is split into (`--shard I/N`).
pub const MAX_SHARDS: u64 = 1_000_000;

/// The longest line of a campaign's records file (`--jsonl`) read back:
/// a record keeps at most three violation details per invariant, a few
/// kilobytes.
pub const MAX_RECORD_LINE: usize = 1 << 20;

/// The most records files one `campaign merge` reads.
pub const MAX_MERGE_FILES: usize = 100_000;

/// Checks one duration against [`MAX_DURATION`] and, when `positive`, that
/// it is more than zero (a period or a timeout: zero would loop forever).
/// The error is the message, without the field.
///
/// ```
/// use std::time::Duration;
/// use backsync::limits::check_duration;
/// assert!(check_duration(Duration::ZERO, false).is_ok());
/// assert!(check_duration(Duration::ZERO, true).is_err());
/// assert!(check_duration(Duration::from_secs(3651 * 86_400), false).is_err());
/// ```
pub fn check_duration(d: Duration, positive: bool) -> Result<(), String> {
    if positive && d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    if d > MAX_DURATION {
        return Err(format!(
            "must be at most {MAX_DURATION_TEXT} (about 10 years of simulated time), got {}",
            crate::config::fmt_duration(d)
        ));
    }
    Ok(())
}

/// Checks a count against an upper bound; the error is the message.
///
/// ```
/// use backsync::limits::{check_count, MAX_COUNT};
/// assert!(check_count(MAX_COUNT, MAX_COUNT).is_ok());
/// assert!(check_count(u64::MAX, MAX_COUNT).is_err());
/// ```
pub fn check_count(n: u64, max: u64) -> Result<(), String> {
    if n > max {
        return Err(format!("must be at most {max} (got {n})"));
    }
    Ok(())
}

/// The largest LDIF file [`crate::import::Forest::from_ldif`] reads: 64 MiB
/// (a forest of 1,000 servers exports to well under 2 MiB).
pub const MAX_LDIF_BYTES: usize = 64 * 1024 * 1024;

/// The longest line of an LDIF file, after unfolding: 1 MiB.
pub const MAX_LDIF_LINE: usize = 1024 * 1024;

/// The largest single attribute value of an LDIF entry, after base64
/// decoding: 256 KiB (a SCHEDULE is 188 bytes).
pub const MAX_LDIF_VALUE: usize = 256 * 1024;

/// The most attribute values of one LDIF entry.
pub const MAX_LDIF_VALUES_PER_ENTRY: usize = 10_000;

/// The most entries of one LDIF file.
pub const MAX_LDIF_ENTRIES: usize = 1_000_000;
