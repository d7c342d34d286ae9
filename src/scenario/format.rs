//! The scenario file format as serde types, read and written by the same
//! definitions (docs/scenarios.md): one struct per table, one per `do`
//! action, and value types that check their bounds as they are read.
//!
//! Reading keeps the span of every value a later check (a name a step
//! uses, a count that adds up over steps) reports on; writing gives every
//! span `0..0`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::{Action, ConvergeExpect, ExpectCheck, NetworkSpec, Scenario, ServerState};
use crate::config::{Granularity, Profile, ReplicationConfig, RestoreStrategy, parse_duration};
use crate::core::WeekWindows;
use crate::core::week::QUARTERS;
use crate::limits::{MAX_COUNT, MAX_OBJECTS_SENT, MAX_PACKET, check_count, check_duration};

/// A list of names, each with its span.
pub(super) type Names = Spanned<Vec<Spanned<Name>>>;
/// Two names (`between`, `bridgeheads`), with the span of the list.
pub(super) type Pair = Spanned<Two>;
/// Attribute name to value.
pub(super) type Attrs = BTreeMap<Name, String>;

/// A whole file; `S` is how steps are read (`IgnoredAny`: one by one,
/// dispatched on `do`, see [`StepTable::read`]) or written ([`StepTable`]).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File<S> {
    pub name: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Count<{ u64::MAX }>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Parsed<Profile>>,
    /// An LDIF export whose topology the file uses (read in `parse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
    #[serde(default)]
    pub site: Vec<Spanned<SiteTable>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connector: Vec<Spanned<ConnectorTable>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection: Vec<Spanned<ConnectionTable>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationTable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkTable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step: Vec<S>,
}

/// A file being read: its steps are read on their own.
pub(super) type FileIn = File<IgnoredAny>;

/// `[[site]]`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SiteTable {
    pub name: Spanned<Name>,
    pub servers: Names,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<Names>,
}

/// `[[connection]]`: `to` pulls from `from`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionTable {
    pub from: Spanned<Name>,
    pub to: Spanned<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Delay>,
}

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY_QUARTERS: usize = 96;

/// Opens in `w` the quarters of one window `"<days> <HH:MM>-<HH:MM>"`:
/// days `sun`..`sat` or a range `mon-fri` (it may wrap: `fri-mon`), times
/// on the quarter hour, `24:00` as an end only; an end before the start
/// runs past midnight into the next day.
pub(super) fn open_window(text: &str, w: &mut WeekWindows) -> Result<(), String> {
    let syntax = || {
        format!(
            "expected a window like \"mon-fri 20:00-06:00\" (days sun..sat, quarter-hour times), found {text:?}"
        )
    };
    let mut parts = text.split_whitespace();
    let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(syntax());
    };
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| *x == d)
            .ok_or_else(|| format!("unknown day `{d}` (expected one of: {})", DAYS.join(", ")))
    };
    let (first, last) = match days.split_once('-') {
        Some((a, b)) => (day(a)?, day(b)?),
        None => (day(days)?, day(days)?),
    };
    let (start, end) = times.split_once('-').ok_or_else(syntax)?;
    let time = |t: &str| -> Result<usize, String> {
        let (h, m) = t.split_once(':').ok_or_else(syntax)?;
        let ok = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
        if !ok(h) || !ok(m) {
            return Err(syntax());
        }
        let (h, m): (usize, usize) = (
            h.parse().map_err(|_| syntax())?,
            m.parse().map_err(|_| syntax())?,
        );
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(format!("`{t}` is not a time of day (00:00 to 24:00)"));
        }
        if m % 15 != 0 {
            return Err(format!(
                "`{t}` is not on a quarter hour: schedules open and close at :00, :15, :30 or :45"
            ));
        }
        Ok(h * 4 + m / 15)
    };
    let (a, b) = (time(start)?, time(end)?);
    if a == DAY_QUARTERS {
        return Err("a window cannot start at 24:00 (write 00:00 of the next day)".into());
    }
    if a == b {
        return Err(format!(
            "the window {start}-{end} is empty (for a whole day write 00:00-24:00)"
        ));
    }
    let len = if b > a { b - a } else { DAY_QUARTERS - a + b };
    let mut d = first;
    loop {
        for k in 0..len {
            w.open((d * DAY_QUARTERS + a + k) % QUARTERS);
        }
        if d == last {
            break;
        }
        d = (d + 1) % 7;
    }
    Ok(())
}

/// The windows of `w` in the form [`open_window`] reads: per day, its open
/// runs (none past midnight), days with the same runs joined into ranges.
/// Exact for every `WeekWindows`; `[]` for one never open.
pub(super) fn windows_text(w: &WeekWindows) -> Vec<String> {
    let runs = |d: usize| {
        let mut v = Vec::new();
        let mut q = 0;
        while q < DAY_QUARTERS {
            if w.quarter_open(d * DAY_QUARTERS + q) {
                let a = q;
                while q < DAY_QUARTERS && w.quarter_open(d * DAY_QUARTERS + q) {
                    q += 1;
                }
                v.push((a, q));
            } else {
                q += 1;
            }
        }
        v
    };
    let hm = |q: usize| format!("{:02}:{:02}", q / 4, q % 4 * 15);
    let all: Vec<_> = (0..7).map(runs).collect();
    let mut out = Vec::new();
    let mut d = 0;
    while d < 7 {
        let mut e = d;
        while e + 1 < 7 && all[e + 1] == all[d] {
            e += 1;
        }
        let days = if d == e {
            DAYS[d].to_string()
        } else {
            format!("{}-{}", DAYS[d], DAYS[e])
        };
        for (a, b) in &all[d] {
            out.push(format!("{days} {}-{}", hm(*a), hm(*b)));
        }
        d = e + 1;
    }
    out
}

/// `[[connector]]`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorTable {
    pub between: Pair,
    pub bridgeheads: Pair,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Delay>,
}

/// `[replication]`: each field overrides the profile's default.
#[derive(Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[rustfmt::skip]
pub(super) struct ReplicationTable {
    #[serde(skip_serializing_if = "Option::is_none")] pub notify_delay: Option<Delay>,
    #[serde(skip_serializing_if = "Option::is_none")] pub notify_spacing: Option<Delay>,
    #[serde(skip_serializing_if = "Option::is_none")] pub intrasite_latency: Option<Delay>,
    #[serde(skip_serializing_if = "Option::is_none")] pub intrasite_packet: Option<Packet>,
    #[serde(skip_serializing_if = "Option::is_none")] pub intersite_packet: Option<Packet>,
    #[serde(skip_serializing_if = "Option::is_none")] pub granularity: Option<Parsed<Granularity>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub tombstone_lifetime: Option<Delay>,
    #[serde(skip_serializing_if = "Option::is_none")] pub gc_interval: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")] pub restore: Option<Parsed<RestoreStrategy>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub backsync_timeout: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")] pub rollback_detection: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")] pub strict_replication: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")] pub startup_delay: Option<Delay>,
    #[serde(skip_serializing_if = "Option::is_none")] pub intrasite_schedule: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")] pub reply_timeout: Option<Period>,
}

/// `[network]`.
#[derive(Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<Fraction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Fraction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Delay>,
}

/// One `[[step]]`, tagged by `do`.
#[derive(Serialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub(super) enum StepTable {
    Create(WriteStep),
    Modify(WriteStep),
    Delete(WriteStep),
    Rename(RenameStep),
    Load(LoadStep),
    Backup(BackupStep),
    Crash(ServerStep),
    Restore(RestoreStep),
    Release(ReleaseStep),
    Partition(PartitionStep),
    Heal(NoFields),
    DeleteConnector(BetweenStep),
    Wait(WaitStep),
    Converge(ConvergeStep),
    Expect(ExpectStep),
}

/// Every `do` value, the fields it takes, and how its table is read.
macro_rules! actions {
    ($($name:literal => $variant:ident($table:ty) $(except $($no:literal),+)?;)*) => {
        /// Every `do` value, in the order messages list them.
        pub(super) const ACTIONS: &[&str] = &[$($name),*];

        impl StepTable {
            /// The fields action `name` takes besides `do`; `None`: no such action.
            pub fn fields(name: &str) -> Option<Vec<&'static str>> {
                match name {
                    $($name => Some(
                        fields_of::<$table>()
                            .iter()
                            .copied()
                            .filter(|f| ![$($($no),+)?].contains(f))
                            .collect(),
                    ),)*
                    _ => None,
                }
            }

            /// Reads the table of action `name` (without its `do`).
            pub fn read<'de, D: Deserializer<'de>>(name: &str, d: D) -> Result<Self, D::Error> {
                match name {
                    $($name => <$table>::deserialize(d).map(StepTable::$variant),)*
                    _ => Err(de::Error::custom(format!("unknown action `{name}`"))),
                }
            }
        }
    };
}

actions! {
    "create" => Create(WriteStep) except "remove", "tree";
    "modify" => Modify(WriteStep) except "tree";
    "delete" => Delete(WriteStep) except "attrs", "remove";
    "rename" => Rename(RenameStep);
    "load" => Load(LoadStep);
    "backup" => Backup(BackupStep);
    "crash" => Crash(ServerStep);
    "restore" => Restore(RestoreStep);
    "release" => Release(ReleaseStep);
    "partition" => Partition(PartitionStep);
    "heal" => Heal(NoFields);
    "delete_connector" => DeleteConnector(BetweenStep);
    "wait" => Wait(WaitStep);
    "converge" => Converge(ConvergeStep);
    "expect" => Expect(ExpectStep);
}

/// `create`, `modify`, `delete` (each takes the fields [`StepTable::fields`] lists).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteStep {
    pub server: Spanned<Name>,
    pub dn: Spanned<Name>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: Attrs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<Spanned<Name>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tree: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub expect_refused: bool,
}

/// `rename`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenameStep {
    pub server: Spanned<Name>,
    pub dn: Spanned<Name>,
    pub new_dn: Spanned<Name>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub expect_refused: bool,
}

/// `load`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Names>,
    pub creates: Spanned<Count<MAX_COUNT>>,
    #[serde(default, skip_serializing_if = "Count::is_zero")]
    pub modifies: Count<MAX_COUNT>,
    #[serde(default, skip_serializing_if = "Count::is_zero")]
    pub deletes: Count<MAX_COUNT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Spanned<Name>>,
}

/// `backup`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupStep {
    pub server: Spanned<Name>,
    pub name: Spanned<Name>,
}

/// `crash`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerStep {
    pub server: Spanned<Name>,
}

/// `release`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseStep {
    pub server: Spanned<Name>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub expect_refused: bool,
}

/// `restore`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreStep {
    pub server: Spanned<Name>,
    pub backup: Spanned<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Parsed<RestoreStrategy>>,
    /// `authoritative` only: the subtree raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Spanned<Name>>,
}

/// `partition`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartitionStep {
    pub groups: Spanned<Vec<Names>>,
}

/// `heal`: no fields.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoFields {}

/// `delete_connector`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BetweenStep {
    pub between: Pair,
}

/// `wait`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitStep {
    #[serde(rename = "for")]
    pub duration: Spanned<Delay>,
}

/// `converge`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConvergeStep {
    pub within: Spanned<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Parsed<ConvergeExpect>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sim: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_objects_sent: Option<Count<MAX_OBJECTS_SENT>>,
}

/// `expect`: which fields go together is checked after reading.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
#[rustfmt::skip]
pub(super) struct ExpectStep {
    #[serde(skip_serializing_if = "Option::is_none")] pub server: Option<Spanned<Name>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub dn: Option<Spanned<Name>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub present: Option<Spanned<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub attrs: Option<Spanned<Attrs>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub objects: Option<Spanned<Count<MAX_COUNT>>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub tombstone: Option<Spanned<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub state: Option<Spanned<Parsed<ServerState>>>,
    #[serde(skip_serializing_if = "Option::is_none")] pub answered_by: Option<Names>,
    #[serde(skip_serializing_if = "Option::is_none")] pub lost_unreplicated: Option<Spanned<Count<MAX_COUNT>>>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A span for a value being written.
pub(super) fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// The fields a derived `Deserialize` struct reads, as serde lists them.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            self.deserialize_any(v)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A name, dn or attribute name: any string that is not blank.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub(super) struct Name(pub String);

impl TryFrom<String> for Name {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.trim() {
            "" => Err("must not be empty"),
            _ => Ok(Name(s)),
        }
    }
}

/// A list of exactly two names.
#[derive(Deserialize, Serialize)]
#[serde(try_from = "Vec<Spanned<Name>>")]
pub(super) struct Two(pub [Spanned<Name>; 2]);

impl TryFrom<Vec<Spanned<Name>>> for Two {
    type Error = String;
    fn try_from(v: Vec<Spanned<Name>>) -> Result<Self, String> {
        let n = v.len();
        let two = v
            .try_into()
            .map_err(|_| format!("expected a list of exactly two names, found {n}"));
        two.map(Two)
    }
}

/// A non-negative integer of at most `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub(super) struct Count<const MAX: u64>(pub u64);

impl<const MAX: u64> Count<MAX> {
    fn is_zero(&self) -> bool {
        self.0 == 0
    }

    fn new(n: u64) -> Result<Self, String> {
        check_count(n, MAX).map(|()| Count(n))
    }
}

impl<'de, const MAX: u64> Deserialize<'de> for Count<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MAX: u64>;
        impl<const MAX: u64> Visitor<'_> for V<MAX> {
            type Value = Count<MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count<MAX>, E> {
                Count::new(n).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count<MAX>, E> {
                self.visit_i128(n.into())
            }
            fn visit_i128<E: de::Error>(self, n: i128) -> Result<Count<MAX>, E> {
                if n < 0 {
                    return Err(E::custom(format!("must not be negative (got {n})")));
                }
                self.visit_u128(n as u128)
            }
            fn visit_u128<E: de::Error>(self, n: u128) -> Result<Count<MAX>, E> {
                let n =
                    u64::try_from(n).map_err(|_| E::custom(format!("integer {n} is too large")))?;
                self.visit_u64(n)
            }
        }
        d.deserialize_u64(V::<MAX>)
    }
}

/// A packet size: from 1 to [`MAX_PACKET`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(super) struct Packet(pub usize);

impl<'de> Deserialize<'de> for Packet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Count::<MAX_PACKET>::deserialize(d)?.0 {
            0 => Err(de::Error::custom("must be at least 1 (got 0)")),
            n => Ok(Packet(n as usize)),
        }
    }
}

/// A duration string such as "90s" (see [`parse_duration`]), at most
/// [`MAX_DURATION`](crate::limits::MAX_DURATION); more than zero when
/// `POSITIVE` (a period or a timeout: zero would loop forever). Written
/// in the largest unit that divides it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dur<const POSITIVE: bool>(pub Duration);
/// A delay, latency or lifetime: zero allowed.
pub(super) type Delay = Dur<false>;
/// A period or timeout: more than zero.
pub(super) type Period = Dur<true>;

impl<'de, const POSITIVE: bool> Deserialize<'de> for Dur<POSITIVE> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn dur<const P: bool>(s: &str) -> Result<Dur<P>, String> {
            let d = parse_duration(s).map_err(|e| e.to_string())?;
            check_duration(d, P)?;
            Ok(Dur(d))
        }
        struct V<const P: bool>;
        impl<const P: bool> Visitor<'_> for V<P> {
            type Value = Dur<P>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"90s\" or \"3d\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur<P>, E> {
                dur(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V::<POSITIVE>)
    }
}

impl<const POSITIVE: bool> Serialize for Dur<POSITIVE> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&duration_text(self.0))
    }
}

/// A duration in the scenario format: whole milliseconds in the largest
/// unit that divides them (`"90s"`, `"2h"`, `"1500ms"`, `"0ms"`).
pub(super) fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    let units = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    match units
        .iter()
        .find(|(_, per)| ms > 0 && ms.is_multiple_of(*per))
    {
        Some((unit, per)) => format!("{}{unit}", ms / per),
        None => format!("{ms}ms"),
    }
}

/// A probability: a number from 0 to 1 (an integer 0 or 1 is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub(super) struct Fraction(pub f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn fraction(x: f64, text: String) -> Result<Fraction, String> {
            if !(0.0..=1.0).contains(&x) {
                return Err(format!("must be from 0 to 1 (got {text})"));
            }
            Ok(Fraction(x))
        }
        struct V;
        impl Visitor<'_> for V {
            type Value = Fraction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number from 0 to 1")
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Fraction, E> {
                fraction(x, x.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Fraction, E> {
                fraction(n as f64, n.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Fraction, E> {
                fraction(n as f64, n.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_f64(V)
    }
}

/// A name that parses as `T` (profile, granularity, strategy, state),
/// written as `T` serializes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    try_from = "String",
    bound(deserialize = "T: FromStr<Err: fmt::Display>")
)]
pub(super) struct Parsed<T>(pub T);

impl<T: FromStr> TryFrom<String> for Parsed<T> {
    type Error = T::Err;
    fn try_from(s: String) -> Result<Self, T::Err> {
        s.parse().map(Parsed)
    }
}

/// A file value and the value it stands for in a [`Scenario`](super::Scenario).
pub(super) trait Field {
    type Value;
    fn into_value(self) -> Self::Value;
    fn from_value(v: Self::Value) -> Self;
}

macro_rules! field {
    ($($t:ty => $v:ty),*) => {$(
        impl Field for $t {
            type Value = $v;
            fn into_value(self) -> $v {
                self.0
            }
            fn from_value(v: $v) -> Self {
                Self(v)
            }
        }
    )*};
}
field!(Packet => usize, Fraction => f64);

impl<const P: bool> Field for Dur<P> {
    type Value = Duration;
    fn into_value(self) -> Duration {
        self.0
    }
    fn from_value(v: Duration) -> Self {
        Dur(v)
    }
}

impl<T> Field for Parsed<T> {
    type Value = T;
    fn into_value(self) -> T {
        self.0
    }
    fn from_value(v: T) -> Self {
        Parsed(v)
    }
}

impl Field for bool {
    type Value = bool;
    fn into_value(self) -> bool {
        self
    }
    fn from_value(v: bool) -> Self {
        v
    }
}

/// A table of optional settings over a struct of values with the same
/// field names: applied when read, written where they differ from a base.
macro_rules! settings {
    ($table:ident for $values:ty: $($f:ident),*) => {
        impl $table {
            /// Overwrites each field of `to` given here.
            pub fn apply(self, to: &mut $values) {
                $(if let Some(x) = self.$f {
                    to.$f = x.into_value();
                })*
            }

            /// The fields of `v` that differ from `base`; `None` if none does.
            pub fn diff(v: &$values, base: &$values) -> Option<Self> {
                let t = $table {
                    $($f: (v.$f != base.$f).then(|| Field::from_value(v.$f.clone())),)*
                };
                (t != $table::default()).then_some(t)
            }
        }
    };
}

settings!(ReplicationTable for ReplicationConfig:
    notify_delay, notify_spacing, intrasite_latency, intrasite_packet, intersite_packet,
    granularity, tombstone_lifetime, gc_interval, restore, backsync_timeout,
    rollback_detection, strict_replication, startup_delay, intrasite_schedule, reply_timeout);
settings!(NetworkTable for NetworkSpec: loss, duplicate, jitter);

fn name(s: &str) -> Spanned<Name> {
    unspanned(Name(s.to_string()))
}

fn names(v: &[String]) -> Names {
    unspanned(v.iter().map(|s| name(s)).collect())
}

fn two(v: &[String; 2]) -> Pair {
    unspanned(Two(v.each_ref().map(|s| name(s))))
}

fn attrs(m: &BTreeMap<String, String>) -> Attrs {
    m.iter()
        .map(|(k, v)| (Name(k.clone()), v.clone()))
        .collect()
}

impl File<StepTable> {
    /// The file form of a scenario: `[replication]` and `[network]` hold
    /// only what differs from the profile's defaults.
    pub fn of(s: &Scenario) -> Self {
        File {
            name: Name(s.name.clone()),
            seed: Some(Count(s.seed)),
            profile: Some(Parsed(s.profile)),
            import: None,
            site: (s.sites.iter())
                .map(|x| {
                    unspanned(SiteTable {
                        name: name(&x.name),
                        servers: names(&x.servers),
                        read_only: (!x.read_only.is_empty()).then(|| names(&x.read_only)),
                    })
                })
                .collect(),
            connector: (s.connectors.iter())
                .map(|c| {
                    unspanned(ConnectorTable {
                        between: two(&c.between),
                        bridgeheads: two(&c.bridgeheads),
                        schedule: c.schedule.map(Dur),
                        latency: c.latency.map(Dur),
                    })
                })
                .collect(),
            connection: (s.connections.iter())
                .map(|c| {
                    unspanned(ConnectionTable {
                        from: name(&c.from),
                        to: name(&c.to),
                        schedule: c.schedule.map(Dur),
                        windows: c.windows.as_ref().map(|w| {
                            unspanned(windows_text(w).into_iter().map(unspanned).collect())
                        }),
                        latency: c.latency.map(Dur),
                    })
                })
                .collect(),
            replication: ReplicationTable::diff(
                &s.config,
                &ReplicationConfig::for_profile(s.profile),
            ),
            network: NetworkTable::diff(&s.network, &NetworkSpec::default()),
            step: s.steps.iter().map(|st| StepTable::of(&st.action)).collect(),
        }
    }
}

impl StepTable {
    /// The table of an action.
    fn of(a: &Action) -> Self {
        let write =
            |server: &str, dn: &str, set: &BTreeMap<String, String>, remove: &[String], refused| {
                WriteStep {
                    server: name(server),
                    dn: name(dn),
                    attrs: attrs(set),
                    remove: remove.iter().map(|r| name(r)).collect(),
                    tree: false,
                    expect_refused: refused,
                }
            };
        let none = BTreeMap::new();
        match a {
            Action::Create {
                server,
                dn,
                attrs,
                expect_refused,
            } => StepTable::Create(write(server, dn, attrs, &[], *expect_refused)),
            Action::Modify {
                server,
                dn,
                attrs,
                remove,
                expect_refused,
            } => StepTable::Modify(write(server, dn, attrs, remove, *expect_refused)),
            Action::Delete {
                server,
                dn,
                tree,
                expect_refused,
            } => StepTable::Delete(WriteStep {
                tree: *tree,
                ..write(server, dn, &none, &[], *expect_refused)
            }),
            Action::Rename {
                server,
                dn,
                new_dn,
                expect_refused,
            } => StepTable::Rename(RenameStep {
                server: name(server),
                dn: name(dn),
                new_dn: name(new_dn),
                expect_refused: *expect_refused,
            }),
            Action::Load {
                servers,
                creates,
                modifies,
                deletes,
                prefix,
            } => StepTable::Load(LoadStep {
                servers: servers.as_deref().map(names),
                creates: unspanned(Count(*creates)),
                modifies: Count(*modifies),
                deletes: Count(*deletes),
                prefix: prefix.as_deref().map(name),
            }),
            Action::Backup {
                server,
                name: backup,
            } => StepTable::Backup(BackupStep {
                server: name(server),
                name: name(backup),
            }),
            Action::Crash { server } => StepTable::Crash(ServerStep {
                server: name(server),
            }),
            Action::Restore {
                server,
                backup,
                strategy,
                subtree,
            } => StepTable::Restore(RestoreStep {
                server: name(server),
                backup: name(backup),
                strategy: strategy.map(Parsed),
                subtree: subtree.as_deref().map(name),
            }),
            Action::Release {
                server,
                expect_refused,
            } => StepTable::Release(ReleaseStep {
                server: name(server),
                expect_refused: *expect_refused,
            }),
            Action::Partition { groups } => StepTable::Partition(PartitionStep {
                groups: unspanned(groups.iter().map(|g| names(g)).collect()),
            }),
            Action::Heal => StepTable::Heal(NoFields {}),
            Action::DeleteConnector { between } => StepTable::DeleteConnector(BetweenStep {
                between: two(between),
            }),
            Action::Wait { duration } => StepTable::Wait(WaitStep {
                duration: unspanned(Dur(*duration)),
            }),
            Action::Converge {
                within,
                expect,
                max_sim,
                max_objects_sent,
            } => StepTable::Converge(ConvergeStep {
                within: unspanned(Dur(*within)),
                expect: (*expect != ConvergeExpect::default()).then_some(Parsed(*expect)),
                max_sim: max_sim.map(Dur),
                max_objects_sent: max_objects_sent.map(Count),
            }),
            Action::ExpectLost { lost_unreplicated } => StepTable::Expect(ExpectStep {
                lost_unreplicated: Some(unspanned(Count(*lost_unreplicated))),
                ..ExpectStep::default()
            }),
            Action::Expect { server, check } => {
                let mut e = ExpectStep {
                    server: Some(name(server)),
                    ..ExpectStep::default()
                };
                match check {
                    ExpectCheck::Dn {
                        dn,
                        present,
                        attrs: set,
                    } => {
                        e.dn = Some(name(dn));
                        e.present = Some(unspanned(*present));
                        e.attrs = (*present && !set.is_empty()).then(|| unspanned(attrs(set)));
                    }
                    ExpectCheck::Objects(n) => e.objects = Some(unspanned(Count(*n))),
                    ExpectCheck::Tombstone { dn } => {
                        e.dn = Some(name(dn));
                        e.tombstone = Some(unspanned(true));
                    }
                    ExpectCheck::State(s) => e.state = Some(unspanned(Parsed(*s))),
                    ExpectCheck::AnsweredBy(v) => e.answered_by = Some(names(v)),
                }
                StepTable::Expect(e)
            }
        }
    }
}
