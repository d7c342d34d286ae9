//! Profiles and replication settings: the defaults of docs/DOMAIN.md, each overridable.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// How conflicts are resolved: per attribute (Active Directory) or per object
/// (Exchange 5.5, which replicated whole objects with one Object-Version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One stamp per object; the winning write carries the whole object.
    Object,
    /// One stamp per attribute; concurrent writes of different attributes both survive.
    Attribute,
}

/// What a server does when it is started from a backup (docs/DOMAIN.md section 6).
///
/// ```
/// use backsync::RestoreStrategy;
/// let s: RestoreStrategy = "new-invocation".parse().unwrap();
/// assert_eq!(s, RestoreStrategy::NewInvocation);
/// assert_eq!(s.to_string(), "new-invocation");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreStrategy {
    /// Exchange 5.x: ask every partner for the objects this server originated.
    Backsync,
    /// AD non-authoritative restore: a new invocation id, so partners pull from zero.
    NewInvocation,
    /// Load the snapshot and do nothing else: USN rollback.
    Naive,
    /// 389-DS reinitialisation: drop the data, copy the whole directory from a partner.
    FullResync,
    /// AD authoritative restore (ntdsutil): as `NewInvocation`, then every
    /// restored live object (of a subtree, or all) is rewritten with its
    /// version raised by 100,000 per day since the backup, so it wins over
    /// every later change, deletes included.
    Authoritative,
    /// Backsync under a fresh invocation id: new writes (and the local USNs
    /// partners' watermarks read) belong to the new id, while backsync still
    /// asks partners, from their by-origin index, for the old id's objects
    /// (docs/DOMAIN.md section 6).
    SafeBacksync,
}

impl RestoreStrategy {
    /// Every strategy, in the order reports show them.
    pub const ALL: [RestoreStrategy; 6] = [
        RestoreStrategy::Backsync,
        RestoreStrategy::NewInvocation,
        RestoreStrategy::Naive,
        RestoreStrategy::FullResync,
        RestoreStrategy::Authoritative,
        RestoreStrategy::SafeBacksync,
    ];

    /// The name used in scenario files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreStrategy::Backsync => "backsync",
            RestoreStrategy::NewInvocation => "new-invocation",
            RestoreStrategy::Naive => "naive",
            RestoreStrategy::FullResync => "full-resync",
            RestoreStrategy::Authoritative => "authoritative",
            RestoreStrategy::SafeBacksync => "safe-backsync",
        }
    }
}

impl fmt::Display for RestoreStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{got}` (expected one of: {expected})")]
pub struct UnknownName {
    /// What kind of name it was meant to be.
    pub what: &'static str,
    /// What was given.
    pub got: String,
    /// The accepted values, comma separated.
    pub expected: &'static str,
}

impl FromStr for RestoreStrategy {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RestoreStrategy::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "restore strategy",
                got: s.to_string(),
                expected: "backsync, new-invocation, naive, full-resync, authoritative, safe-backsync",
            })
    }
}

impl FromStr for Granularity {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "object" => Ok(Granularity::Object),
            "attribute" => Ok(Granularity::Attribute),
            _ => Err(UnknownName {
                what: "granularity",
                got: s.to_string(),
                expected: "object, attribute",
            }),
        }
    }
}

/// A vendor's set of defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Microsoft Exchange 5.5 directory.
    Exchange55,
    /// Active Directory (Windows Server 2003 and later).
    Ad,
}

impl FromStr for Profile {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exchange55" => Ok(Profile::Exchange55),
            "ad" => Ok(Profile::Ad),
            _ => Err(UnknownName {
                what: "profile",
                got: s.to_string(),
                expected: "exchange55, ad",
            }),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Exchange55 => "exchange55",
            Profile::Ad => "ad",
        })
    }
}

/// Every replication setting a cluster runs with.
///
/// ```
/// use backsync::{Profile, ReplicationConfig, Granularity};
/// let ad = ReplicationConfig::for_profile(Profile::Ad);
/// assert_eq!(ad.granularity, Granularity::Attribute);
/// assert_eq!(ad.notify_delay.as_secs(), 15);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationConfig {
    /// Delay from a write to the first change notification.
    pub notify_delay: Duration,
    /// Delay between notifying successive intrasite partners.
    pub notify_spacing: Duration,
    /// One-way delay of a message inside a site.
    pub intrasite_latency: Duration,
    /// Objects per intrasite GetChanges reply.
    pub intrasite_packet: usize,
    /// Objects per intersite GetChanges reply.
    pub intersite_packet: usize,
    /// Conflict granularity.
    pub granularity: Granularity,
    /// How long a tombstone is kept before garbage collection.
    pub tombstone_lifetime: Duration,
    /// How often garbage collection runs.
    pub gc_interval: Duration,
    /// Default restore strategy.
    pub restore: RestoreStrategy,
    /// How long a backsync waits for partners before it gives up.
    pub backsync_timeout: Duration,
    /// AD-style USN-rollback detection and quarantine.
    pub rollback_detection: bool,
    /// AD's "Strict Replication Consistency": a server refuses the replies
    /// of a source it has not replicated from for longer than the tombstone
    /// lifetime, for the rest of the run, so lingering objects stay out.
    pub strict_replication: bool,
    /// Delay from a server's start to its start-up pulls.
    pub startup_delay: Duration,
    /// Periodic intrasite pull, a safety net for lost notifications.
    pub intrasite_schedule: Duration,
    /// How long a destination waits for a reply before it gives up on a pull.
    pub reply_timeout: Duration,
    /// Default intersite schedule of a connector without one.
    pub connector_schedule: Duration,
    /// Default one-way latency of a connector without one.
    pub connector_latency: Duration,
}

impl ReplicationConfig {
    /// The defaults of a profile (docs/DOMAIN.md section 1).
    pub fn for_profile(p: Profile) -> Self {
        let s = Duration::from_secs;
        match p {
            Profile::Exchange55 => ReplicationConfig {
                notify_delay: s(300),
                notify_spacing: s(30),
                intrasite_latency: Duration::from_millis(10),
                intrasite_packet: 100,
                intersite_packet: 512,
                granularity: Granularity::Object,
                tombstone_lifetime: s(30 * 86_400),
                gc_interval: s(12 * 3600),
                restore: RestoreStrategy::Backsync,
                backsync_timeout: s(16 * 3600),
                rollback_detection: false,
                strict_replication: false,
                startup_delay: s(300),
                intrasite_schedule: s(6 * 3600),
                reply_timeout: s(600),
                connector_schedule: s(15 * 60),
                connector_latency: s(1),
            },
            Profile::Ad => ReplicationConfig {
                notify_delay: s(15),
                notify_spacing: s(3),
                intrasite_latency: Duration::from_millis(10),
                intrasite_packet: 100,
                intersite_packet: 512,
                granularity: Granularity::Attribute,
                tombstone_lifetime: s(180 * 86_400),
                gc_interval: s(12 * 3600),
                restore: RestoreStrategy::NewInvocation,
                backsync_timeout: s(16 * 3600),
                rollback_detection: true,
                // On, as in AD forests created since Windows Server 2003.
                strict_replication: true,
                startup_delay: s(60),
                intrasite_schedule: s(3600),
                reply_timeout: s(600),
                connector_schedule: s(180 * 60),
                connector_latency: s(1),
            },
        }
    }
}

/// A replication setting out of its bounds ([`crate::limits`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid replication setting `{field}`: {message}")]
pub struct ConfigError {
    /// The setting, named as in a scenario's `[replication]`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ReplicationConfig {
    /// Checks every setting against [`crate::limits`]: each duration at most
    /// [`MAX_DURATION`](crate::limits::MAX_DURATION); periods and timeouts
    /// (`gc_interval`, `intrasite_schedule`, `reply_timeout`,
    /// `backsync_timeout`, `connector_schedule`) more than zero; packet
    /// sizes from 1 to [`MAX_PACKET`](crate::limits::MAX_PACKET).
    ///
    /// ```
    /// use std::time::Duration;
    /// use backsync::ReplicationConfig;
    /// let mut c = ReplicationConfig::default();
    /// assert!(c.validate().is_ok());
    /// c.reply_timeout = Duration::ZERO;
    /// assert_eq!(c.validate().unwrap_err().field, "reply_timeout");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::limits::{MAX_PACKET, check_count, check_duration};
        let durations = [
            ("notify_delay", self.notify_delay, false),
            ("notify_spacing", self.notify_spacing, false),
            ("intrasite_latency", self.intrasite_latency, false),
            ("tombstone_lifetime", self.tombstone_lifetime, false),
            ("gc_interval", self.gc_interval, true),
            ("backsync_timeout", self.backsync_timeout, true),
            ("startup_delay", self.startup_delay, false),
            ("intrasite_schedule", self.intrasite_schedule, true),
            ("reply_timeout", self.reply_timeout, true),
            ("connector_schedule", self.connector_schedule, true),
            ("connector_latency", self.connector_latency, false),
        ];
        for (field, d, positive) in durations {
            check_duration(d, positive).map_err(|message| ConfigError { field, message })?;
        }
        for (field, n) in [
            ("intrasite_packet", self.intrasite_packet),
            ("intersite_packet", self.intersite_packet),
        ] {
            if n == 0 {
                let message = "must be at least 1 (got 0)".to_string();
                return Err(ConfigError { field, message });
            }
            check_count(n as u64, MAX_PACKET).map_err(|message| ConfigError { field, message })?;
        }
        Ok(())
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig::for_profile(Profile::Exchange55)
    }
}

/// A duration that is not an integer followed by `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad duration `{0}`: expected an integer with a unit ms, s, m, h or d, like \"90s\" or \"3d\""
)]
pub struct BadDuration(pub String);

/// Parses a scenario duration: an integer with a unit (`ms`, `s`, `m`, `h`, `d`).
///
/// The format is stricter than `humantime`'s (no spaces, no compound values),
/// so it is parsed here.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(backsync::parse_duration("90s").unwrap(), Duration::from_secs(90));
/// assert_eq!(backsync::parse_duration("3d").unwrap(), Duration::from_secs(3 * 86_400));
/// assert!(backsync::parse_duration("-1s").is_err());
/// assert!(backsync::parse_duration("1.5h").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration(s.to_string());
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms_per: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// Formats a simulated duration for people, in one short form used by every
/// report, event and violation line: the two largest units, days at most
/// (months and years have no fixed length).
///
/// ```
/// use std::time::Duration;
/// use backsync::fmt_duration;
/// assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
/// assert_eq!(fmt_duration(Duration::from_millis(12_500)), "12.5s");
/// assert_eq!(fmt_duration(Duration::from_secs(330)), "5m 30s");
/// assert_eq!(fmt_duration(Duration::from_secs(17 * 3600 + 300)), "17h 5m");
/// assert_eq!(fmt_duration(Duration::from_secs(3650 * 86_400)), "3650d");
/// ```
pub fn fmt_duration(d: Duration) -> String {
    // Whole milliseconds: simulated time has no finer grain.
    let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
    let (s, m, h, days) = (ms / 1_000, ms / 60_000, ms / 3_600_000, ms / 86_400_000);
    let two = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu} {small}{su}")
        }
    };
    if days > 0 {
        two(days, "d", h % 24, "h")
    } else if h > 0 {
        two(h, "h", m % 60, "m")
    } else if m > 0 {
        two(m, "m", s % 60, "s")
    } else if s > 0 {
        let frac = format!("{:03}", ms % 1_000);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{s}s")
        } else {
            format!("{s}.{frac}s")
        }
    } else {
        format!("{ms}ms")
    }
}

/// `n` with its digits grouped by thousands, for people: `12,345`.
///
/// ```
/// assert_eq!(backsync::group(999), "999");
/// assert_eq!(backsync::group(12_345), "12,345");
/// assert_eq!(backsync::group(1_000_000), "1,000,000");
/// ```
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The plural of an English noun (of its last word): `-y` after a
/// consonant becomes `-ies`; `-s`, `-sh`, `-ch`, `-x` and `-z` take
/// `-es`; others take `-s`. Irregular nouns are not handled: word the
/// text around them.
///
/// ```
/// use backsync::plural;
/// assert_eq!(plural("object"), "objects");
/// assert_eq!(plural("reply"), "replies");
/// assert_eq!(plural("delay"), "delays");
/// assert_eq!(plural("crash"), "crashes");
/// assert_eq!(plural("link-fault period"), "link-fault periods");
/// ```
pub fn plural(noun: &str) -> String {
    let consonant_y = noun.len() >= 2
        && noun.ends_with('y')
        && !noun[..noun.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if consonant_y {
        format!("{}ies", &noun[..noun.len() - 1])
    } else if ["s", "sh", "ch", "x", "z"]
        .iter()
        .any(|e| noun.ends_with(e))
    {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// A count with its noun, singular or plural as the count asks, the count
/// grouped by thousands ([`group`], [`plural`]): the one way campaign and
/// bench texts say how many of something there are.
///
/// ```
/// use backsync::count;
/// assert_eq!(count(1, "object"), "1 object");
/// assert_eq!(count(0, "seed"), "0 seeds");
/// assert_eq!(count(2, "crash"), "2 crashes");
/// assert_eq!(count(3, "reply"), "3 replies");
/// assert_eq!(count(12_345, "write"), "12,345 writes");
/// ```
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {}", group(n), plural(noun))
    }
}
