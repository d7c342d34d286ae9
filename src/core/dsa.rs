//! One directory server's protocol state machine: writes, GetChanges,
//! apply, backup and the restore strategies. Plain Rust: the caller brings
//! the time and carries the messages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{Granularity, RestoreStrategy};
use crate::core::ids::{Guid, InvocationId, SimTime, Stamp, Usn};
use crate::core::messages::{ChangesReply, GetChanges, PullKind};
use crate::core::object::{Attr, Name, ObjectState, StateParts};
use crate::core::table::{Ahead, Digest, Found, GuidHasher, ObjectTable, Replica};
use crate::core::tree::{Containers, Parent, check_dn, eq_ci, split_dn};
use crate::core::vectors::{HighWatermark, UpToDatenessVector};

/// A set of guids hashed by one splitmix round (guids are random): the
/// per-reply sets of what was sent or seen, far cheaper than SipHash.
type GuidSet = std::collections::HashSet<Guid, std::hash::BuildHasherDefault<GuidHasher>>;

/// The settings the protocol core needs (the rest is the shell's timing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreConfig {
    /// Conflict granularity.
    pub granularity: Granularity,
    /// Tombstone lifetime in ms.
    pub tombstone_lifetime: u64,
    /// Quarantine on a detected USN rollback.
    pub rollback_detection: bool,
}

/// Why a local write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Backsync (or a full copy) is running: the directory is busy.
    #[error("{0} is busy: a restore is still running, local writes are refused")]
    Busy(String),
    /// A USN rollback was detected and the server quarantined itself.
    #[error("{0} is quarantined after a detected USN rollback")]
    Quarantined(String),
    /// The server is down.
    #[error("{0} is down")]
    Down(String),
    /// The server is read-only (an RODC): it takes no originating writes.
    #[error("{0} is read-only: originating writes are refused")]
    ReadOnly(String),
    /// A create of a dn that is live on this server.
    #[error("`{dn}` already exists on {server}")]
    DnExists {
        /// The server.
        server: String,
        /// The dn.
        dn: String,
    },
    /// A modify, delete or rename of a dn that is not live on this server.
    #[error("no live object `{dn}` on {server}")]
    NoSuchDn {
        /// The server.
        server: String,
        /// The dn.
        dn: String,
    },
    /// A create or rename under a parent that is neither a fixed container
    /// nor a live object on this server.
    #[error("cannot write `{dn}` on {server}: its parent `{parent}` is not a live object there")]
    NoSuchParent {
        /// The server.
        server: String,
        /// The dn written.
        dn: String,
        /// Its parent's dn.
        parent: String,
    },
    /// A delete (without `tree`) of an object with live children.
    #[error(
        "cannot delete `{dn}` on {server}: it has {children} live children (delete the tree to take them too)"
    )]
    NotLeaf {
        /// The server.
        server: String,
        /// The dn.
        dn: String,
        /// How many live children it has there.
        children: usize,
    },
    /// A modify, delete or rename of a fixed container.
    #[error("`{dn}` is a fixed container: it cannot be modified, deleted or renamed")]
    FixedContainer {
        /// The dn.
        dn: String,
    },
    /// A rename of an object under itself or one of its descendants.
    #[error(
        "cannot move `{dn}` to `{new_dn}` on {server}: the new parent is the object or below it"
    )]
    IntoOwnSubtree {
        /// The server.
        server: String,
        /// The object's dn.
        dn: String,
        /// The dn asked for.
        new_dn: String,
    },
    /// A dn that is not `type=value` rdns joined by commas.
    #[error("invalid dn `{dn}`: {reason}")]
    InvalidDn {
        /// The dn.
        dn: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl WriteError {
    /// The LDAP result (RFC 4511 section 4.1.9) an LDAP front end answers
    /// this refusal with.
    ///
    /// ```
    /// use backsync::core::WriteError;
    /// let e = WriteError::NotLeaf { server: "S1".into(), dn: "ou=Sales".into(), children: 2 };
    /// assert_eq!(e.ldap_result(), "notAllowedOnNonLeaf");
    /// ```
    pub fn ldap_result(&self) -> &'static str {
        match self {
            WriteError::Busy(_) => "busy",
            WriteError::Down(_) => "unavailable",
            WriteError::Quarantined(_)
            | WriteError::ReadOnly(_)
            | WriteError::FixedContainer { .. }
            | WriteError::IntoOwnSubtree { .. } => "unwillingToPerform",
            WriteError::DnExists { .. } => "entryAlreadyExists",
            WriteError::NoSuchDn { .. } | WriteError::NoSuchParent { .. } => "noSuchObject",
            WriteError::NotLeaf { .. } => "notAllowedOnNonLeaf",
            WriteError::InvalidDn { .. } => "invalidDNSyntax",
        }
    }
}

/// What a server is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Replicating and taking writes.
    Normal,
    /// Restored with backsync: waiting for partners, refusing local writes.
    Backsync(BacksyncRun),
    /// Restored by full resynchronisation: copying the directory from a partner.
    Resync {
        /// Partners to copy from, in order of preference.
        partners: Vec<Arc<str>>,
        /// The one asked now.
        current: usize,
        /// Cursor into its table.
        cursor: HighWatermark,
    },
    /// Detected its own USN rollback: no writes, no replication.
    Quarantined {
        /// The partner whose vector showed it.
        partner: Arc<str>,
        /// That partner's entry for this server: the USNs from the own
        /// counter up to here were handed out before the rollback.
        seen: Usn,
    },
}

impl Mode {
    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Normal => "running",
            Mode::Backsync(_) => "backsync",
            Mode::Resync { .. } => "resync",
            Mode::Quarantined { .. } => "quarantined",
        }
    }
}

/// A backsync in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacksyncRun {
    /// The restored backup's USN: the server claims its own writes up to here only.
    pub backup_usn: Usn,
    /// Partners that have not answered yet.
    pub waiting: BTreeSet<Arc<str>>,
    /// Partners that answered.
    pub answered: BTreeSet<Arc<str>>,
    /// Highest USN of this server any partner reported having seen.
    pub seen: Usn,
    /// Per partner, the originating-USN cursor of its paged answer.
    pub cursor: BTreeMap<Arc<str>, Usn>,
    /// When it gives up.
    pub deadline: SimTime,
    /// The invocations whose objects it asks partners for, one after the
    /// other: the restored backup's (for plain backsync, also the server's
    /// own) and, for a safe backsync, the server's later ones.
    pub asks_for: Vec<InvocationId>,
    /// Per partner, the index in `asks_for` its answer has reached.
    pub round: BTreeMap<Arc<str>, usize>,
    /// Safe backsync: the server writes under a fresh invocation id, so no
    /// USN of `asks_for` is handed out again, and it claims `asks_for`'s
    /// writes only as far as partners vouch for them.
    pub safe: bool,
}

/// Something the core decided that the shell reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent {
    /// Backsync ended.
    BacksyncDone {
        /// Partners that answered.
        answered: usize,
        /// Partners that never did.
        missing: usize,
        /// The USN the counter resumed at.
        resumed_at: Usn,
        /// The restored backup's USN: own writes above it came back only
        /// from the partners that answered.
        backup_usn: Usn,
        /// Safe backsync: no USN was handed out again, and what partners
        /// that never answered hold comes back by ordinary replication.
        safe: bool,
    },
    /// A full copy lost its last partner to a connector deletion: the
    /// replica starts empty, and ordinary replication fills it.
    ResyncCutOff {
        /// The last partner, now cut off.
        partner: Arc<str>,
    },
    /// A full copy ended.
    ResyncDone {
        /// The partner copied.
        from: Arc<str>,
    },
    /// Replication left two live objects with one name here: `guid` lost
    /// it and is shown `<rdn> CNF:<guid>` (the object named last keeps it).
    NameConflict {
        /// The object that lost the name.
        guid: Guid,
        /// The dn it is shown with now.
        shown: String,
        /// The object that holds the name.
        holder: Guid,
    },
    /// Per-object conflict resolution (Exchange 5.5) discarded a write:
    /// two writes of one object with the same version from different
    /// originators; the later won and the other's modifications were lost.
    UpdateConflict {
        /// The object.
        guid: Guid,
        /// The dn it is shown with.
        dn: String,
        /// The originator whose write was lost.
        lost_invocation: InvocationId,
        /// The originator whose write won.
        won_invocation: InvocationId,
    },
    /// USN rollback detected: quarantined.
    Quarantined {
        /// The partner whose vector showed it.
        partner: Arc<str>,
        /// That partner's entry for this server.
        partner_usn: Usn,
        /// This server's USN.
        own_usn: Usn,
    },
}

/// What applying a reply did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The reply answered no outstanding request (stale or duplicated): ignored.
    pub ignored: bool,
    /// Objects the reply carried.
    pub sent: usize,
    /// Objects that changed here.
    pub changed: usize,
    /// Guids of the objects that changed, in apply order.
    pub changed_guids: Vec<Guid>,
    /// Ask the same source again (more pages).
    pub follow_up: Option<GetChanges>,
    /// Something to report.
    pub event: Option<CoreEvent>,
    /// Conflicts this reply resolved here, losers first named
    /// ([`CoreEvent::NameConflict`], [`CoreEvent::UpdateConflict`]).
    pub conflicts: Vec<CoreEvent>,
    /// The reply carried an object before its parent and was not applied:
    /// `follow_up` asks for the same changes with ancestors first.
    pub get_anc_retry: bool,
}

/// A consistent snapshot of one server (docs/DOMAIN.md section 6).
#[derive(Debug, Clone)]
pub struct Backup {
    /// The server it was taken from.
    pub server: Arc<str>,
    /// Its database instance then.
    pub invocation: InvocationId,
    /// Its USN counter then.
    pub usn: Usn,
    /// Its objects.
    pub table: ObjectTable,
    /// Its vector (own entry included).
    pub utdv: UpToDatenessVector,
    /// Its watermarks.
    pub hwm: BTreeMap<Arc<str>, HighWatermark>,
    /// When it was taken.
    pub taken_at: SimTime,
}

impl Backup {
    /// Whether the snapshot holds the write (or one that supersedes it):
    /// restoring it would bring the write back.
    pub fn holds(&self, w: &OwnWrite) -> bool {
        self.table
            .get(w.guid)
            .is_some_and(|r| r.state.holds(&w.stamp, w.attr.as_deref()))
    }
}

/// How to restore (what the shell knows: topology, time, fresh ids).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The strategy.
    pub strategy: RestoreStrategy,
    /// Every directory the server can reach, preferred (same-site) first.
    pub partners: Vec<Arc<str>>,
    /// A fresh invocation id, used by the strategies that take one.
    pub new_invocation: InvocationId,
    /// Now.
    pub now: SimTime,
    /// Backsync gives up after this long (ms).
    pub backsync_timeout: u64,
    /// Creators cut off by a deleted connector: their objects are forgotten.
    pub forget: BTreeSet<InvocationId>,
    /// The server's own invocation ids since the backup's, oldest first
    /// (Active Directory keeps such a list with the server's object, the
    /// retiredReplDSASignatures attribute): a safe backsync asks partners
    /// for their objects too, since the backup knows nothing of them.
    pub since_backup: Vec<InvocationId>,
    /// [`RestoreStrategy::Authoritative`] only: the root of the subtree whose
    /// objects are raised (`None`: every object). Ignored by other strategies.
    pub subtree: Option<Arc<str>>,
}

/// Version added per day, or part of a day, since the backup by an
/// authoritative restore (ntdsutil's default, Microsoft KB 840001).
pub const VERSION_RAISE_PER_DAY: u32 = 100_000;

/// The version raise of an authoritative restore of a backup taken at
/// `taken_at`, made at `now`: [`VERSION_RAISE_PER_DAY`] for each day or part
/// of a day between them, at least one day's worth (a restore made the
/// instant the backup was taken still raises), saturating at `u32::MAX`.
///
/// ```
/// use backsync::core::{version_raise, VERSION_RAISE_PER_DAY};
/// const DAY: u64 = 86_400_000;
/// assert_eq!(version_raise(5, 5), VERSION_RAISE_PER_DAY);
/// assert_eq!(version_raise(0, DAY + 1), 2 * VERSION_RAISE_PER_DAY);
/// ```
pub fn version_raise(taken_at: SimTime, now: SimTime) -> u32 {
    const DAY_MS: u64 = 86_400_000;
    let days = now.saturating_sub(taken_at).div_ceil(DAY_MS).max(1);
    u32::try_from(days.saturating_mul(u64::from(VERSION_RAISE_PER_DAY))).unwrap_or(u32::MAX)
}

/// What an authoritative restore raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthoritativeRaise {
    /// Live objects whose versions were raised.
    pub objects: usize,
    /// By how much (see [`version_raise`]).
    pub by: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    kind: PullKind,
    max_objects: usize,
    sent_at: SimTime,
    /// Asked with ancestors first (`GetChanges::get_anc`).
    get_anc: bool,
}

/// One directory server's state: object table, USN counter, watermarks,
/// up-to-dateness vector and what it is doing.
///
/// ```
/// use std::sync::Arc;
/// use backsync::core::*;
/// use backsync::Granularity;
/// let cfg = CoreConfig { granularity: Granularity::Object, tombstone_lifetime: 1_000, rollback_detection: false };
/// let mut a = Dsa::new("A".into(), InvocationId(1), cfg);
/// let mut b = Dsa::new("B".into(), InvocationId(2), cfg);
/// a.create(Guid(7), "cn=x", &[("mail", "x@example.com")], 0).unwrap();
/// let req = b.pull(&Arc::from("A"), PullKind::Normal, 100, 0).unwrap();
/// let reply = a.answer(&req);
/// assert_eq!(b.apply(reply, 1).changed, 1);
/// assert_eq!(a.digest(), b.digest());
/// ```
#[derive(Debug, Clone)]
pub struct Dsa {
    name: Arc<str>,
    invocation: InvocationId,
    usn: Usn,
    table: ObjectTable,
    /// Entries for other invocations; the own entry is derived (`own_claim`).
    utdv: UpToDatenessVector,
    hwm: BTreeMap<Arc<str>, HighWatermark>,
    pending: BTreeMap<Arc<str>, Pending>,
    next_request: u64,
    mode: Mode,
    cfg: CoreConfig,
    /// Creators cut off by a deleted connector: their objects were purged
    /// and stay so, even when a reply sent before the purge arrives after it.
    forgotten: BTreeSet<InvocationId>,
    /// The partners that answered the last backsync that ended.
    last_backsync: Option<BTreeSet<Arc<str>>>,
    /// An operator released this instance from quarantine: the rollback is
    /// acknowledged and not detected again (until a restore starts a new
    /// instance).
    released: bool,
    /// What the authoritative restore that started this instance raised.
    raised: Option<AuthoritativeRaise>,
    /// Which parent dns are fixed containers.
    containers: Arc<Containers>,
    /// After a safe-backsync restore: the instance the restored backup was
    /// taken from and the USN up to which this instance's local USNs name
    /// the same changes as that instance's did. A partner's watermark read
    /// from that instance stays valid up to there.
    lineage: Option<HighWatermark>,
}

type AttrList<'a> = &'a [(&'a str, &'a str)];

impl Dsa {
    /// A new, empty database instance.
    pub fn new(name: Arc<str>, invocation: InvocationId, cfg: CoreConfig) -> Self {
        Dsa {
            name,
            invocation,
            usn: Usn(0),
            table: ObjectTable::new(),
            utdv: UpToDatenessVector::default(),
            hwm: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 1,
            mode: Mode::Normal,
            cfg,
            forgotten: BTreeSet::new(),
            last_backsync: None,
            released: false,
            raised: None,
            containers: Arc::new(Containers::Implicit),
            lineage: None,
        }
    }

    /// What the authoritative restore that started this database instance
    /// raised; `None` for an instance started otherwise.
    pub fn authoritative_raise(&self) -> Option<AuthoritativeRaise> {
        self.raised
    }

    /// Sets which parent dns are fixed containers (for the writes that
    /// follow; the default is [`Containers::Implicit`]).
    pub fn set_containers(&mut self, c: Arc<Containers>) {
        self.containers = c;
    }

    /// Which parent dns are fixed containers.
    pub fn containers(&self) -> &Arc<Containers> {
        &self.containers
    }

    /// Returns a quarantined server to service, as an administrator would
    /// after a naive restore (AD: clearing "Dsa Not Writable"). Returns the
    /// partner that showed the rollback and its entry for this server, or
    /// `None` (nothing changed) when the server is not quarantined.
    ///
    /// The risk it takes: the own USNs from the current counter up to that
    /// entry were already handed out before the rollback. Writes made under
    /// them now carry USNs partners have already seen, so those partners
    /// never pull them: the divergence stays, and nothing reports it.
    pub fn release(&mut self) -> Option<(Arc<str>, Usn)> {
        let Mode::Quarantined { partner, seen } = &self.mode else {
            return None;
        };
        let out = (partner.clone(), *seen);
        self.mode = Mode::Normal;
        self.released = true;
        Some(out)
    }

    /// The partners that answered this instance's last backsync (the one
    /// running, or else the last that ended), by name; `None` when it has
    /// run none.
    pub fn backsync_answered(&self) -> Option<Vec<Arc<str>>> {
        match &self.mode {
            Mode::Backsync(b) => Some(b.answered.iter().cloned().collect()),
            _ => self
                .last_backsync
                .as_ref()
                .map(|a| a.iter().cloned().collect()),
        }
    }

    /// The server's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
    /// Its current database instance.
    pub fn invocation(&self) -> InvocationId {
        self.invocation
    }
    /// Its USN counter (last USN used).
    pub fn usn(&self) -> Usn {
        self.usn
    }
    /// What it is doing.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }
    /// Its object table.
    pub fn table(&self) -> &ObjectTable {
        &self.table
    }
    /// Its directory fingerprint.
    pub fn digest(&self) -> Digest {
        self.table.digest()
    }
    /// Its watermark for one source.
    pub fn hwm(&self, source: &str) -> Option<HighWatermark> {
        self.hwm.get(source).copied()
    }

    /// Its up-to-dateness vector as sent to sources.
    pub fn utdv(&self) -> UpToDatenessVector {
        let mut v = self.utdv.clone();
        v.raise(self.invocation, self.own_claim());
        v
    }

    /// How far it claims to hold its own writes. While backsync runs, only
    /// up to the backup: claiming more would tell partners it holds writes
    /// it lost, and they would never send them back.
    fn own_claim(&self) -> Usn {
        match &self.mode {
            // A safe backsync's own id is fresh: it holds every write of it.
            Mode::Backsync(b) if !b.safe => b.backup_usn,
            _ => self.usn,
        }
    }

    fn writable(&self) -> Result<(), WriteError> {
        match &self.mode {
            Mode::Normal => Ok(()),
            Mode::Backsync(_) | Mode::Resync { .. } => Err(WriteError::Busy(self.name.to_string())),
            Mode::Quarantined { .. } => Err(WriteError::Quarantined(self.name.to_string())),
        }
    }

    fn stamp(&mut self, version: u32, now: SimTime) -> Stamp {
        self.usn = self.usn.next();
        Stamp {
            version,
            time: now,
            invocation: self.invocation,
            usn: self.usn,
        }
    }

    /// The live object shown as `dn`; a fixed container is refused as such.
    fn live(&self, dn: &str) -> Result<Replica, WriteError> {
        if let Some(r) = self.table.find_live(dn) {
            return Ok(r);
        }
        if self.containers.fixed_dn(dn).is_some() {
            return Err(WriteError::FixedContainer { dn: dn.to_string() });
        }
        Err(WriteError::NoSuchDn {
            server: self.name.to_string(),
            dn: dn.to_string(),
        })
    }

    /// Whether `dn` names something live here: an object or a fixed container.
    fn taken(&self, dn: &str) -> Option<Guid> {
        self.table.find_live_guid(dn).or_else(|| {
            self.containers
                .fixed_dn(dn)
                .is_some()
                .then_some(Guid(u128::MAX))
        })
    }

    /// The parent a write of `dn` goes under: the live object shown as its
    /// parent dn, else a fixed container (by the policy), else refused.
    fn parent_of(&mut self, dn: &str) -> Result<(Arc<str>, Parent), WriteError> {
        check_dn(dn).map_err(|reason| WriteError::InvalidDn {
            dn: dn.to_string(),
            reason,
        })?;
        let (rdn, parent) = split_dn(dn);
        let rdn: Arc<str> = rdn.into();
        if let Some(fixed) = self.containers.fixed_dn(parent) {
            return Ok((rdn, Parent::Fixed(fixed)));
        }
        if let Some(g) = self.table.find_live_guid(parent) {
            return Ok((rdn, Parent::Object(g)));
        }
        match &*self.containers {
            Containers::Implicit => Ok((rdn, Parent::Fixed(Arc::from(parent)))),
            Containers::Fixed(_) => Err(WriteError::NoSuchParent {
                server: self.name.to_string(),
                dn: dn.to_string(),
                parent: parent.to_string(),
            }),
        }
    }

    /// Originating create.
    pub fn create(
        &mut self,
        guid: Guid,
        dn: &str,
        attrs: AttrList<'_>,
        now: SimTime,
    ) -> Result<Guid, WriteError> {
        self.writable()?;
        if self.taken(dn).is_some() {
            return Err(WriteError::DnExists {
                server: self.name.to_string(),
                dn: dn.to_string(),
            });
        }
        let (rdn, parent) = self.parent_of(dn)?;
        let st = self.stamp(1, now);
        let attrs = attrs
            .iter()
            .map(|(n, v)| Attr {
                name: Arc::from(*n),
                value: Some((*v).into()),
                stamp: st,
            })
            .collect();
        let name = Name {
            rdn,
            parent,
            named: st,
        };
        let s = ObjectState::with_name(guid, name, st, st, false, attrs);
        self.table.put(s, st.usn);
        Ok(guid)
    }

    /// Originating modify: set `set`, remove `remove`.
    pub fn modify(
        &mut self,
        dn: &str,
        set: AttrList<'_>,
        remove: &[&str],
        now: SimTime,
    ) -> Result<Guid, WriteError> {
        self.writable()?;
        let cur = self.live(dn)?.state;
        let st = self.stamp(cur.stamp().version.saturating_add(1), now);
        let mut attrs: BTreeMap<Arc<str>, Attr> = cur
            .attrs()
            .map(|a| (Arc::from(a.name), a.to_attr()))
            .collect();
        let granularity = self.cfg.granularity;
        let mut writes: Vec<(Arc<str>, Option<&str>)> =
            Vec::with_capacity(set.len() + remove.len());
        for (n, v) in set {
            writes.push((Arc::from(*n), Some(*v)));
        }
        for n in remove {
            writes.push((Arc::from(*n), None));
        }
        for (name, value) in writes {
            let prev = attrs.get(&name);
            let version = match granularity {
                Granularity::Attribute => prev.map_or(1, |a| a.stamp.version.saturating_add(1)),
                Granularity::Object => st.version,
            };
            attrs.insert(
                name.clone(),
                Attr {
                    name,
                    value: value.map(Into::into),
                    stamp: Stamp { version, ..st },
                },
            );
        }
        let mut attrs: Vec<Attr> = attrs.into_values().collect();
        if self.cfg.granularity == Granularity::Object {
            // One stamp per object: a removed attribute needs no stamp of its own.
            attrs.retain(|a| a.value.is_some());
        }
        // Packed once, with the liveness stamp it keeps.
        let s = ObjectState::from_parts(StateParts {
            stamp: st,
            deleted: false,
            attrs,
            ..cur.parts_without_attrs()
        });
        self.table.put(s, st.usn);
        Ok(cur.guid())
    }

    /// Originating delete: the object becomes a tombstone. Refused when it
    /// has live children here.
    pub fn delete(&mut self, dn: &str, now: SimTime) -> Result<Guid, WriteError> {
        self.writable()?;
        let cur = self.live(dn)?.state;
        let children = self.table.children(cur.guid()).len();
        if children > 0 {
            return Err(WriteError::NotLeaf {
                server: self.name.to_string(),
                dn: dn.to_string(),
                children,
            });
        }
        // Saturating: an authoritative restore can raise versions near the top.
        let st = self.stamp(cur.stamp().version.saturating_add(1), now);
        self.table.put(cur.tombstone(st), st.usn);
        Ok(cur.guid())
    }

    /// Originating tree delete: the object and every live object below it
    /// here become tombstones, the deepest first (each its own write).
    /// Returns the guids deleted, the named object last.
    pub fn delete_tree(&mut self, dn: &str, now: SimTime) -> Result<Vec<Guid>, WriteError> {
        self.writable()?;
        let top = self.live(dn)?.state.guid();
        // Breadth first from the top; deleted in reverse, leaves first.
        let mut order = vec![top];
        let mut i = 0;
        while i < order.len() {
            for k in self.table.children(order[i]) {
                if !order.contains(&k) {
                    order.push(k);
                }
            }
            i += 1;
        }
        for g in order.iter().rev() {
            let Some(cur) = self.table.get(*g).map(|r| r.state) else {
                continue;
            };
            let st = self.stamp(cur.stamp().version.saturating_add(1), now);
            self.table.put(cur.tombstone(st), st.usn);
        }
        order.reverse();
        Ok(order)
    }

    /// Originating rename or move: the object shown as `dn` takes the name
    /// `new_dn`, keeping its guid; its children follow it. A case-only
    /// rename changes only the case shown.
    pub fn rename(&mut self, dn: &str, new_dn: &str, now: SimTime) -> Result<Guid, WriteError> {
        self.writable()?;
        let cur = self.live(dn)?.state;
        if self.taken(new_dn).is_some_and(|g| g != cur.guid()) || dn == new_dn {
            return Err(WriteError::DnExists {
                server: self.name.to_string(),
                dn: new_dn.to_string(),
            });
        }
        let (rdn, parent) = self.parent_of(new_dn)?;
        if let Parent::Object(p) = parent
            && self.table.is_ancestor(cur.guid(), p)
        {
            return Err(WriteError::IntoOwnSubtree {
                server: self.name.to_string(),
                dn: dn.to_string(),
                new_dn: new_dn.to_string(),
            });
        }
        let st = self.stamp(cur.stamp().version.saturating_add(1), now);
        let named = match self.cfg.granularity {
            Granularity::Attribute => Stamp {
                version: cur.named().version.saturating_add(1),
                ..st
            },
            Granularity::Object => st,
        };
        // A case-only rename keeps the parent as it was written.
        let parent = if eq_ci(cur.rdn(), &rdn) && cur.parent() == parent.as_ref() {
            cur.parent().to_parent()
        } else {
            parent
        };
        let name = Name { rdn, parent, named };
        let attrs = cur.attrs().map(|a| a.to_attr()).collect();
        let s = ObjectState::with_name(cur.guid(), name, cur.created(), st, false, attrs);
        self.table.put(s, st.usn);
        Ok(cur.guid())
    }

    /// Builds a pull from `source`, or `None` while one is outstanding (or
    /// the server is quarantined).
    pub fn pull(
        &mut self,
        source: &Arc<str>,
        kind: PullKind,
        max_objects: usize,
        now: SimTime,
    ) -> Option<GetChanges> {
        self.pull_with(source, kind, max_objects, now, false)
    }

    /// [`Dsa::pull`], asking for ancestors first when `get_anc`.
    fn pull_with(
        &mut self,
        source: &Arc<str>,
        kind: PullKind,
        max_objects: usize,
        now: SimTime,
        get_anc: bool,
    ) -> Option<GetChanges> {
        // A restore's pull (backsync, full copy) takes the place of an
        // ordinary one outstanding to the same source: refused here, it would
        // never be asked again and the restore would wait for good. The
        // ordinary reply then matches nothing and is ignored; the next
        // notification or schedule pulls again.
        let busy = self
            .pending
            .get(source)
            .is_some_and(|p| p.kind != PullKind::Normal || kind == PullKind::Normal);
        if matches!(self.mode, Mode::Quarantined { .. }) || busy {
            return None;
        }
        let mut asks_for = self.invocation;
        let (from, src_inv, utdv) = match (&self.mode, kind) {
            (Mode::Backsync(b), PullKind::Backsync) => {
                (b.cursor.get(source).copied().unwrap_or_default(), None, {
                    let round = b.round.get(source).copied().unwrap_or(0);
                    asks_for = b.asks_for.get(round).copied().unwrap_or(self.invocation);
                    self.utdv()
                })
            }
            (_, PullKind::Backsync) => return None,
            (Mode::Resync { cursor, .. }, PullKind::Full) => (
                cursor.usn,
                Some(cursor.invocation),
                UpToDatenessVector::default(),
            ),
            (_, PullKind::Full) => return None,
            (_, PullKind::Normal) => {
                let h = self.hwm.get(source);
                (
                    h.map_or(Usn(0), |h| h.usn),
                    h.map(|h| h.invocation),
                    self.utdv(),
                )
            }
        };
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let max_objects = max_objects.max(1);
        self.pending.insert(
            source.clone(),
            Pending {
                id,
                kind,
                max_objects,
                sent_at: now,
                get_anc,
            },
        );
        Some(GetChanges {
            request_id: id,
            requester: self.name.clone(),
            requester_invocation: asks_for,
            source_invocation: src_inv,
            from_usn: from,
            utdv,
            kind,
            max_objects,
            get_anc,
        })
    }

    /// Forgets pulls outstanding since before `cutoff` (their request or
    /// reply was lost), returning them so the caller can ask again.
    pub fn expire_pulls(&mut self, cutoff: SimTime) -> Vec<(Arc<str>, PullKind)> {
        self.expire_pulls_by(|_, sent_at| sent_at <= cutoff)
    }

    /// Forgets the pulls that `late(source, sent_at)` judges lost (a
    /// source further away may be given longer), returning them, in source
    /// order.
    pub fn expire_pulls_by(
        &mut self,
        mut late: impl FnMut(&str, SimTime) -> bool,
    ) -> Vec<(Arc<str>, PullKind)> {
        let late: Vec<_> = self
            .pending
            .iter()
            .filter(|(s, p)| late(s, p.sent_at))
            .map(|(s, p)| (s.clone(), p.kind))
            .collect();
        for (s, _) in &late {
            self.pending.remove(s);
        }
        late
    }

    /// Whether a pull from `source` is outstanding.
    pub fn pulling(&self, source: &str) -> bool {
        self.pending.contains_key(source)
    }

    /// Whether an ordinary pull from any source is outstanding.
    pub fn pulling_any(&self) -> bool {
        self.pending.values().any(|p| p.kind == PullKind::Normal)
    }

    /// A reply to `req` carrying nothing yet.
    fn empty_reply(&self, req: &GetChanges) -> ChangesReply {
        ChangesReply {
            request_id: req.request_id,
            kind: req.kind,
            source: self.name.clone(),
            source_invocation: self.invocation,
            changes: Vec::new(),
            more: false,
            watermark: Usn(0),
            utdv: None,
            seen_requester_usn: None,
            refused: false,
        }
    }

    /// Answers a pull, as a source.
    pub fn answer(&self, req: &GetChanges) -> ChangesReply {
        let mut reply = self.empty_reply(req);
        let refuse = match &self.mode {
            Mode::Normal => false,
            // Until its own backsync completes a server knows too little of
            // itself to feed partners' vectors; it answers backsyncs only.
            Mode::Backsync(_) => req.kind != PullKind::Backsync,
            Mode::Resync { .. } | Mode::Quarantined { .. } => true,
        };
        if refuse {
            reply.refused = true;
            return reply;
        }
        if req.kind == PullKind::Backsync {
            self.answer_backsync(req, &mut reply);
            return reply;
        }
        let from = match (req.source_invocation, self.lineage) {
            (Some(i), _) if i == self.invocation => req.from_usn,
            // A watermark read from the instance this one was restored
            // from: the changes up to the backup's USN are the same ones.
            (Some(i), Some(l)) if i == l.invocation => req.from_usn.min(l.usn),
            _ => Usn(0),
        };
        let full = req.kind == PullKind::Full;
        // GET_ANC: the objects sent so far in this reply, ancestors included.
        let mut sent = GuidSet::default();
        let mut scan = self.table.changed_after_with_origin(from).peekable();
        // Consecutive replicas mostly come from one originator: remember
        // its vector entry instead of looking it up again.
        let mut memo: Option<(InvocationId, Usn)> = None;
        while let Some((usn, r, origin)) = scan.next() {
            let claim = match memo {
                Some((inv, u)) if inv == origin.invocation => u,
                _ => {
                    let u = req.utdv.get(origin.invocation);
                    memo = Some((origin.invocation, u));
                    u
                }
            };
            // One originator, all covered: skip without reading the state.
            let quick_covered = origin.usn.0 != u64::MAX && claim >= origin.usn;
            if full || !(quick_covered || covered(&r.state, &req.utdv)) {
                if req.get_anc {
                    self.push_ancestors(&r.state, &mut sent, &mut reply.changes);
                    if !sent.insert(r.state.guid()) {
                        continue;
                    }
                }
                reply.changes.push(r.state.clone());
                // `>=`: ancestors may have taken the page past its size.
                if reply.changes.len() >= req.max_objects && scan.peek().is_some() {
                    reply.more = true;
                    reply.watermark = usn;
                    return reply;
                }
            }
        }
        reply.watermark = self.usn;
        reply.utdv = Some(self.utdv());
        reply
    }

    /// GET_ANC: pushes the ancestors of `s` this reply has not sent yet,
    /// the highest first, whatever the requester's vector says (it asked
    /// because it lacks one).
    fn push_ancestors(&self, s: &ObjectState, sent: &mut GuidSet, out: &mut Vec<ObjectState>) {
        let mut chain = Vec::new();
        let mut cur = s.parent_object();
        while let Some(g) = cur {
            if sent.contains(&g) || chain.len() > 4096 || g == s.guid() {
                break;
            }
            let Some(r) = self.table.get_ref(g) else {
                break;
            };
            chain.push(r.state.clone());
            cur = r.state.parent_object();
        }
        for a in chain.into_iter().rev() {
            if sent.insert(a.guid()) {
                out.push(a);
            }
        }
    }

    /// Whether a reply carries a live object whose parent object this
    /// server neither holds nor gets earlier in the same reply: applied as
    /// it is, that object would be orphaned (shown in LostAndFound) until
    /// its parent comes.
    fn orphans(&self, changes: &[ObjectState]) -> bool {
        let mut earlier = GuidSet::with_capacity_and_hasher(changes.len(), Default::default());
        for s in changes {
            if !s.deleted()
                && let Some(p) = s.parent_object()
                && !earlier.contains(&p)
                && self.table.get_ref(p).is_none()
            {
                return true;
            }
            earlier.insert(s.guid());
        }
        false
    }

    /// Backsync: every object the requester originated past what it holds,
    /// read from the by-origin index, so the cost follows what was lost.
    fn answer_backsync(&self, req: &GetChanges, reply: &mut ChangesReply) {
        let inv = req.requester_invocation;
        let after = req.from_usn.max(req.utdv.get(inv));
        let mut it = self.table.originated_by_replicas(inv, after).peekable();
        while let Some((ousn, r)) = it.next() {
            reply.watermark = ousn;
            // An object carrying several such stamps goes out once, at the
            // first: no set of guids sent is needed.
            if first_origin_after(&r.state, inv, after) == Some(ousn) {
                reply.changes.push(r.state.clone());
                if reply.changes.len() == req.max_objects && it.peek().is_some() {
                    reply.more = true;
                    break;
                }
            }
        }
        self.backsync_seen(req, reply);
    }

    /// The same answer as [`Dsa::answer`] gives a backsync request, found by
    /// scanning the whole table instead of the by-origin index: the baseline
    /// the benchmarks compare the index with. Not used by the protocol.
    pub fn answer_backsync_by_scan(&self, req: &GetChanges) -> ChangesReply {
        let mut reply = self.empty_reply(req);
        let inv = req.requester_invocation;
        let after = req.from_usn.max(req.utdv.get(inv));
        let found = self.table.originated_by_scan(inv, after);
        let mut sent = BTreeSet::new();
        let mut it = found.into_iter().peekable();
        while let Some((ousn, guid)) = it.next() {
            reply.watermark = ousn;
            if sent.insert(guid) {
                if let Some(r) = self.table.get_ref(guid) {
                    reply.changes.push(r.state.clone());
                }
                if reply.changes.len() == req.max_objects && it.peek().is_some() {
                    reply.more = true;
                    break;
                }
            }
        }
        self.backsync_seen(req, &mut reply);
        reply
    }

    fn backsync_seen(&self, req: &GetChanges, reply: &mut ChangesReply) {
        let inv = req.requester_invocation;
        let from_hwm = self
            .hwm
            .get(&req.requester)
            .filter(|h| h.invocation == inv)
            .map(|h| h.usn);
        let seen = [
            self.table.max_origin_usn(inv),
            from_hwm,
            Some(self.utdv.get(inv)),
        ];
        reply.seen_requester_usn = seen.into_iter().flatten().max();
    }

    /// Applies one replicated state; returns whether the table changed.
    pub fn apply_state(&mut self, inc: &ObjectState) -> bool {
        self.apply_state_found(inc, Found::default())
    }

    /// [`Dsa::apply_state`], trying the slot [`ObjectTable::prefetch_apply`]
    /// found first.
    pub fn apply_state_found(&mut self, inc: &ObjectState, found: Found) -> bool {
        if self.forgotten.contains(&inc.created().invocation) {
            return false;
        }
        let mut usn = self.usn;
        let changed = self
            .table
            .merge_found(inc, self.cfg.granularity, found, || {
                usn = usn.next();
                usn
            });
        self.usn = usn;
        changed
    }

    /// Drops a reply unapplied (the destination refuses its source): the
    /// pull it answers is no longer outstanding. Returns whether it
    /// answered one.
    pub fn discard(&mut self, reply: &ChangesReply) -> bool {
        match self.pending.get(&reply.source) {
            Some(p) if p.id == reply.request_id && p.kind == reply.kind => {
                self.pending.remove(&reply.source);
                true
            }
            _ => false,
        }
    }

    /// Applies a reply, as the destination.
    pub fn apply(&mut self, reply: ChangesReply, now: SimTime) -> Applied {
        let mut out = Applied::default();
        let (asked, get_anc) = match self.pending.get(&reply.source) {
            Some(p) if p.id == reply.request_id && p.kind == reply.kind => {
                let asked = (p.max_objects, p.get_anc);
                self.pending.remove(&reply.source);
                asked
            }
            _ => {
                out.ignored = true;
                return out;
            }
        };
        if matches!(self.mode, Mode::Quarantined { .. }) {
            out.ignored = true;
            return out;
        }
        if let (true, false, Mode::Normal, Some(v)) = (
            self.cfg.rollback_detection,
            self.released,
            &self.mode,
            &reply.utdv,
        ) {
            let theirs = v.get(self.invocation);
            if theirs > self.usn {
                self.mode = Mode::Quarantined {
                    partner: reply.source.clone(),
                    seen: theirs,
                };
                out.event = Some(CoreEvent::Quarantined {
                    partner: reply.source.clone(),
                    partner_usn: theirs,
                    own_usn: self.usn,
                });
                return out;
            }
        }
        out.sent = reply.changes.len();
        // GET_ANC (MS-DRSR 4.1.10): a child before its parent (paged by
        // usnChanged after the parent changed later, or moved under a newer
        // parent) is not applied; the same page is asked for again, with
        // ancestors first, and the watermark stays where it was.
        if reply.kind == PullKind::Normal
            && !reply.refused
            && !get_anc
            && self.orphans(&reply.changes)
        {
            out.get_anc_retry = true;
            out.follow_up = self.pull_with(&reply.source, reply.kind, asked, now, true);
            return out;
        }
        let mut again = false;
        let mut ahead = Ahead::default();
        for (i, s) in reply.changes.iter().enumerate() {
            let found = self.table.prefetch_apply(&mut ahead, &reply.changes, i);
            // Exchange 5.5 (KB 195911): equal Object-Versions from different
            // originators: the later change wins, the other is lost. A
            // create (version 1) never meets another of the same object.
            let lost = (self.cfg.granularity == Granularity::Object && s.stamp().version > 1)
                .then(|| self.table.get_ref_found(s.guid(), found))
                .flatten()
                .filter(|r| {
                    !r.state.deleted()
                        && !s.deleted()
                        && r.state.stamp().version == s.stamp().version
                        && r.state.stamp().invocation != s.stamp().invocation
                })
                .map(|r| r.state.clone());
            if self.apply_state_found(s, found) {
                out.changed += 1;
                out.changed_guids.push(s.guid());
            }
            if let Some(c) = lost {
                let (lost, won) = if (c.stamp(), c.hash()) < (s.stamp(), s.hash()) {
                    (c.stamp().invocation, s.stamp().invocation)
                } else {
                    (s.stamp().invocation, c.stamp().invocation)
                };
                out.conflicts.push(CoreEvent::UpdateConflict {
                    guid: s.guid(),
                    dn: self.table.shown_dn(&c),
                    lost_invocation: lost,
                    won_invocation: won,
                });
            }
        }
        // Conflict losers are Exchange 5.5's events (object granularity):
        // AD logs none, so its apply loop does not look for them.
        let mut named = BTreeSet::new();
        let changed: &[Guid] = match self.cfg.granularity {
            Granularity::Object => &out.changed_guids,
            Granularity::Attribute => &[],
        };
        for g in changed {
            for (loser, holder) in self.table.name_losers(*g) {
                if named.insert(loser)
                    && let Some(r) = self.table.get_ref(loser)
                {
                    out.conflicts.push(CoreEvent::NameConflict {
                        guid: loser,
                        shown: self.table.shown_dn(&r.state),
                        holder,
                    });
                }
            }
        }
        match reply.kind {
            PullKind::Normal => {
                if reply.refused {
                    return out;
                }
                self.hwm.insert(
                    reply.source.clone(),
                    HighWatermark {
                        invocation: reply.source_invocation,
                        usn: reply.watermark,
                    },
                );
                if let Some(v) = &reply.utdv {
                    // The whole cycle is in: this server now holds all the source held.
                    self.utdv.merge_from(v, self.invocation);
                }
            }
            PullKind::Full => self.apply_full(&reply, &mut out),
            PullKind::Backsync => again = self.apply_backsync(&reply, &mut out),
        }
        if (reply.more && !reply.refused) || again {
            out.follow_up = self.pull_with(&reply.source, reply.kind, asked, now, get_anc);
        }
        out
    }

    fn apply_full(&mut self, reply: &ChangesReply, out: &mut Applied) {
        let Mode::Resync { cursor, .. } = &mut self.mode else {
            return;
        };
        if reply.refused {
            return;
        }
        *cursor = HighWatermark {
            invocation: reply.source_invocation,
            usn: reply.watermark,
        };
        if let Some(v) = &reply.utdv {
            self.utdv.merge_from(v, self.invocation);
            self.hwm.insert(reply.source.clone(), *cursor);
            self.mode = Mode::Normal;
            out.event = Some(CoreEvent::ResyncDone {
                from: reply.source.clone(),
            });
        }
    }

    /// Returns whether to ask the partner again (the next invocation).
    fn apply_backsync(&mut self, reply: &ChangesReply, out: &mut Applied) -> bool {
        let Mode::Backsync(b) = &mut self.mode else {
            return false;
        };
        let round = b.round.get(&reply.source).copied().unwrap_or(0);
        if let Some(seen) = reply.seen_requester_usn {
            b.seen = b.seen.max(seen);
        }
        // A safe backsync claims nothing more of the ids it asked for: a
        // partner's vector entry may cover a write through a later state of
        // the object that the by-origin answer does not carry (and that
        // may be lost with the partner); ordinary replication settles it.
        b.cursor.insert(reply.source.clone(), reply.watermark);
        if reply.more && !reply.refused {
            return false;
        }
        if !reply.refused && round + 1 < b.asks_for.len() {
            // This invocation is done: the next one, from its start.
            b.round.insert(reply.source.clone(), round + 1);
            b.cursor.remove(&reply.source);
            return true;
        }
        b.waiting.remove(&reply.source);
        b.answered.insert(reply.source.clone());
        let done = b.waiting.is_empty();
        if done {
            out.event = self.finish_backsync();
        }
        false
    }

    /// Ends a backsync: resumes the USN counter above what partners saw.
    fn finish_backsync(&mut self) -> Option<CoreEvent> {
        let Mode::Backsync(b) = std::mem::replace(&mut self.mode, Mode::Normal) else {
            return None;
        };
        if b.safe {
            // Nothing to re-stamp and no counter to move: every USN this
            // instance handed out is above the lineage's, under a fresh id.
            let event = CoreEvent::BacksyncDone {
                answered: b.answered.len(),
                missing: b.waiting.len(),
                resumed_at: self.usn,
                backup_usn: b.backup_usn,
                safe: true,
            };
            self.last_backsync = Some(b.answered);
            return Some(event);
        }
        // Objects applied while backsync ran took USNs counted on from the
        // backup's, which partners may have passed before the crash: a
        // partner pulling from its high-watermark would skip them for good
        // (a bridgehead's backsync answers from the other site never reached
        // its own site). Re-stamp them locally above every USN a partner saw;
        // their replicated state is unchanged.
        let mut usn = self.usn.max(b.seen);
        self.table.restamp(b.backup_usn, b.seen, || {
            usn = usn.next();
            usn
        });
        self.usn = usn;
        let event = CoreEvent::BacksyncDone {
            answered: b.answered.len(),
            missing: b.waiting.len(),
            resumed_at: self.usn,
            backup_usn: b.backup_usn,
            safe: false,
        };
        self.last_backsync = Some(b.answered);
        Some(event)
    }

    /// Gives up a backsync past its deadline (the timeout of docs/DOMAIN.md section 6).
    pub fn backsync_deadline(&mut self, now: SimTime) -> Option<CoreEvent> {
        match &self.mode {
            Mode::Backsync(b) if now >= b.deadline => self.finish_backsync(),
            _ => None,
        }
    }

    /// Partners the running backsync still waits for.
    pub fn backsync_waiting(&self) -> Vec<Arc<str>> {
        match &self.mode {
            Mode::Backsync(b) => b.waiting.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The partner a running full copy asks; `advance` moves to the next.
    pub fn resync_partner(&mut self, advance: bool) -> Option<Arc<str>> {
        let Mode::Resync {
            partners, current, ..
        } = &mut self.mode
        else {
            return None;
        };
        if advance {
            *current = (*current + 1) % partners.len().max(1);
        }
        partners.get(*current).cloned()
    }

    /// A consistent snapshot.
    pub fn backup(&self, now: SimTime) -> Backup {
        Backup {
            server: self.name.clone(),
            invocation: self.invocation,
            usn: self.usn,
            table: self.table.clone(),
            utdv: self.utdv(),
            hwm: self.hwm.clone(),
            taken_at: now,
        }
    }

    /// Starts a database instance from a backup with a strategy.
    pub fn restore(backup: &Backup, cfg: CoreConfig, opts: RestoreOptions) -> Dsa {
        let mut d = Dsa::new(backup.server.clone(), backup.invocation, cfg);
        // Request ids must not repeat across database instances: a reply the
        // crashed instance was waiting for may still arrive, and must match
        // nothing the restored one asks (it would carry a cursor and a
        // dampening that belong to the data the crash lost). The fresh
        // invocation id is a seeded 64-bit random, so it serves as a base.
        d.next_request = opts.new_invocation.0 | 1;
        // With no partner to copy from (the last connector of its site was
        // deleted), a full resync could never end and would have thrown the
        // data away: keep the backup under a new invocation id instead.
        if opts.strategy == RestoreStrategy::FullResync && !opts.partners.is_empty() {
            // The restored data is thrown away: a fresh replica, copied whole.
            d.invocation = opts.new_invocation;
            d.forgotten = opts.forget.clone();
            d.mode = Mode::Resync {
                partners: opts.partners,
                current: 0,
                cursor: HighWatermark {
                    invocation: InvocationId(0),
                    usn: Usn(0),
                },
            };
            return d;
        }
        d.table = backup.table.clone();
        d.usn = backup.usn;
        d.utdv = backup.utdv.clone();
        d.utdv.0.remove(&backup.invocation);
        d.hwm = backup.hwm.clone();
        d.purge_created_by(&opts.forget);
        // What the backup vouches for of its own writes: its counter, unless
        // it was taken while a backsync ran. Then objects applied meanwhile
        // sit at USNs partners may have passed, and its claim was the backup
        // that backsync started from (`own_claim`).
        let vouched = backup.utdv.get(backup.invocation).min(backup.usn);
        match opts.strategy {
            RestoreStrategy::Naive => {}
            // FullResync here: no partner (see above).
            RestoreStrategy::NewInvocation
            | RestoreStrategy::FullResync
            | RestoreStrategy::Authoritative => {
                // The old id's entry stays at the backup: its later writes are
                // not covered, so partners send them back.
                d.utdv.raise(backup.invocation, vouched);
                d.invocation = opts.new_invocation;
                if opts.strategy == RestoreStrategy::Authoritative {
                    let by = version_raise(backup.taken_at, opts.now);
                    let objects = d.raise_versions(opts.subtree.as_deref(), by, opts.now);
                    d.raised = Some(AuthoritativeRaise { objects, by });
                }
            }
            RestoreStrategy::Backsync | RestoreStrategy::SafeBacksync => {
                let safe = opts.strategy == RestoreStrategy::SafeBacksync;
                let mut asks_for = vec![backup.invocation];
                if safe {
                    // New writes take a fresh id: whatever partners saw of
                    // the old one (a silent partner, a reply in flight, an
                    // abandoned timeline), no stamp of it is made again. The
                    // old id is claimed only up to what the backup vouched
                    // for, so its later writes are still owed to this server,
                    // by backsync or, from partners that never answer it, by
                    // ordinary replication.
                    d.utdv.raise(backup.invocation, vouched);
                    d.invocation = opts.new_invocation;
                    // The ids the server wrote under after the backup are
                    // owed to it as well: a partner may be their only holder.
                    for inv in &opts.since_backup {
                        if !asks_for.contains(inv) && *inv != opts.new_invocation {
                            asks_for.push(*inv);
                        }
                    }
                    // Local USNs go on from the backup's: up to what it
                    // vouched for they name the old instance's changes, so
                    // partners' watermarks on it stay valid that far only.
                    d.lineage = Some(HighWatermark {
                        invocation: backup.invocation,
                        usn: vouched,
                    });
                }
                d.mode = Mode::Backsync(BacksyncRun {
                    backup_usn: vouched,
                    waiting: opts.partners.iter().cloned().collect(),
                    answered: BTreeSet::new(),
                    seen: backup.usn,
                    cursor: BTreeMap::new(),
                    deadline: opts.now + opts.backsync_timeout,
                    asks_for,
                    round: BTreeMap::new(),
                    safe,
                });
                if opts.partners.is_empty() {
                    d.finish_backsync();
                }
            }
        }
        d
    }

    /// Authoritative restore: rewrites every live object in the subtree of
    /// `root` (every live object when `None`) as an originating write of
    /// this instance, each version raised by `by`, the object's liveness
    /// with it, so it wins over what partners did since the backup, deletes
    /// included. Tombstones are left as they are: ntdsutil marks objects,
    /// and a deleted one in the backup stays deleted. Returns how many.
    fn raise_versions(&mut self, root: Option<&str>, by: u32, now: SimTime) -> usize {
        let raise = |v: u32| v.saturating_add(by);
        // USN order: the new USNs follow the backup's order, deterministically.
        let chosen: Vec<ObjectState> = (self.table.scan())
            .filter_map(|(_, g)| self.table.get(g))
            .map(|r| r.state)
            .filter(|s| !s.deleted() && root.is_none_or(|r| self.in_subtree(s, r)))
            .collect();
        for cur in &chosen {
            let st = self.stamp(raise(cur.stamp().version), now);
            let attrs = (cur.attrs())
                .map(|a| Attr {
                    stamp: Stamp {
                        version: raise(a.stamp.version),
                        ..st
                    },
                    ..a.to_attr()
                })
                .collect();
            let s = ObjectState::from_parts(StateParts {
                // The name is raised too: ntdsutil raises every attribute, the rdn included.
                named: Stamp {
                    version: raise(cur.named().version),
                    ..st
                },
                stamp: st,
                alive: st,
                deleted: false,
                attrs,
                ..cur.parts_without_attrs()
            });
            self.table.put(s, st.usn);
        }
        chosen.len()
    }

    /// Whether an object is `root` or below it, by the dn it is shown with
    /// on this server (so `root` may be a fixed container).
    fn in_subtree(&self, s: &ObjectState, root: &str) -> bool {
        dn_in_subtree(&self.table.shown_dn(s), root)
    }

    /// Forgets every object created by one of `invs` and what it knew of
    /// them (connector deletion: as if replication had never happened).
    pub fn purge_created_by(&mut self, invs: &BTreeSet<InvocationId>) -> usize {
        let mut n = 0;
        self.forgotten.extend(invs.iter().copied());
        for inv in invs {
            let guids: Vec<Guid> = self
                .table
                .originated_by(inv.to_owned(), Usn(0))
                .map(|(_, g)| g)
                .collect();
            for g in guids {
                let created_there = self
                    .table
                    .get(g)
                    .is_some_and(|r| r.state.created().invocation == *inv);
                if created_there && self.table.remove(g).is_some() {
                    n += 1;
                }
            }
            self.utdv.0.remove(inv);
        }
        n
    }

    /// Forgets its watermark for a source it can no longer reach. A running
    /// backsync stops waiting for it: a partner across a deleted connector
    /// sends nothing (docs/DOMAIN.md section 6). A full copy drops it from its
    /// partners. Returns the event when that was the last partner.
    pub fn forget_source(&mut self, source: &str) -> Option<CoreEvent> {
        self.hwm.remove(source);
        self.pending.remove(source);
        if let Mode::Backsync(b) = &mut self.mode
            && b.waiting.remove(source)
            && b.waiting.is_empty()
        {
            return self.finish_backsync();
        }
        // A full copy stops asking it (and the caller asks the next one).
        if let Mode::Resync {
            partners, current, ..
        } = &mut self.mode
            && let Some(k) = partners.iter().position(|p| &**p == source)
        {
            partners.remove(k);
            if partners.is_empty() {
                self.mode = Mode::Normal;
                return Some(CoreEvent::ResyncCutOff {
                    partner: source.into(),
                });
            }
            if *current > k {
                *current -= 1;
            }
            *current %= partners.len();
        }
        None
    }

    /// Garbage-collects tombstones older than the tombstone lifetime.
    pub fn gc(&mut self, now: SimTime) -> usize {
        let Some(cutoff) = now.checked_sub(self.cfg.tombstone_lifetime) else {
            return 0;
        };
        let old = self.table.tombstones_before(cutoff);
        for g in &old {
            self.table.remove(*g);
        }
        old.len()
    }

    /// This server's own writes with originating USN above `after`: what a
    /// crash would lose unless another server holds them.
    pub fn own_writes_after(&self, after: Usn) -> Vec<OwnWrite> {
        self.table
            .originated_by(self.invocation, after)
            .filter_map(|(usn, guid)| {
                let s = self.table.get(guid)?.state;
                let attr = s
                    .attrs()
                    .find(|a| a.stamp.invocation == self.invocation && a.stamp.usn == usn)
                    .map(|a| Arc::from(a.name));
                let stamp = s
                    .stamps()
                    .find(|st| st.invocation == self.invocation && st.usn == usn)?;
                Some(OwnWrite { guid, attr, stamp })
            })
            .collect()
    }

    /// Whether this server holds the write (or one that supersedes it).
    pub fn holds(&self, w: &OwnWrite) -> bool {
        self.table
            .get(w.guid)
            .is_some_and(|r| r.state.holds(&w.stamp, w.attr.as_deref()))
    }

    /// Every object in local USN order, with the dn it is shown with.
    pub fn objects(&self) -> Vec<(String, Replica)> {
        self.table
            .scan()
            .filter_map(|(_, g)| self.table.get(g))
            .map(|r| (self.table.shown_dn(&r.state), r))
            .collect()
    }

    /// The live object shown with `dn`.
    pub fn lookup(&self, dn: &str) -> Option<Replica> {
        self.table.find_live(dn)
    }
}

/// One originating write, identified by its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnWrite {
    /// The object written.
    pub guid: Guid,
    /// The attribute, when the stamp is an attribute's.
    pub attr: Option<Arc<str>>,
    /// The write's stamp.
    pub stamp: Stamp,
}

/// Whether `dn` is `root` or under it: `root` is a suffix of `dn` starting
/// at an rdn boundary (an unescaped comma), compared case-insensitively
/// (ASCII), as LDAP compares attribute types and, mostly, values.
///
/// ```
/// use backsync::core::dn_in_subtree;
/// assert!(dn_in_subtree("cn=Ann,ou=Sales", "OU=sales"));
/// assert!(dn_in_subtree("ou=Sales", "ou=Sales"));
/// assert!(!dn_in_subtree("cn=Ann,ou=PreSales", "ou=Sales"));
/// assert!(!dn_in_subtree("cn=Ann\\,ou=Sales", "ou=Sales"), "an escaped comma");
/// ```
pub fn dn_in_subtree(dn: &str, root: &str) -> bool {
    let (dn, root) = (dn.as_bytes(), root.as_bytes());
    if root.is_empty() || dn.len() < root.len() {
        return false;
    }
    let cut = dn.len() - root.len();
    if !dn[cut..].eq_ignore_ascii_case(root) {
        return false;
    }
    if cut == 0 {
        return true;
    }
    // The byte before the suffix must be a comma no backslash escapes (an
    // even run of backslashes before it escapes each other).
    let backslashes = dn[..cut - 1]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    dn[cut - 1] == b',' && backslashes % 2 == 0
}

/// Whether the requester's vector covers every write a state carries
/// (propagation dampening), without collecting the stamps.
fn covered(s: &ObjectState, v: &UpToDatenessVector) -> bool {
    v.covers(&s.created())
        && (s.stamp() == s.created() || v.covers(&s.stamp()))
        && (s.named() == s.created() || s.named() == s.stamp() || v.covers(&s.named()))
        && (s.alive() == s.created() || s.alive() == s.stamp() || v.covers(&s.alive()))
        && s.attrs()
            .all(|a| a.stamp == s.stamp() || a.stamp == s.created() || v.covers(&a.stamp))
}

/// The lowest originating USN above `after` among the stamps of `inv` a
/// state carries.
fn first_origin_after(s: &ObjectState, inv: InvocationId, after: Usn) -> Option<Usn> {
    s.stamp_keys()
        .filter(|&(i, usn)| i == inv && usn > after)
        .map(|(_, usn)| usn)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CoreConfig {
        CoreConfig {
            granularity: Granularity::Object,
            tombstone_lifetime: 1_000_000,
            rollback_detection: false,
        }
    }

    #[test]
    fn a_reply_to_the_crashed_instance_matches_nothing_the_restored_one_asks() {
        let (sa, sb): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut a = Dsa::new(sa.clone(), InvocationId(1), cfg());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        let backup = a.backup(0);
        b.create(Guid(1), "cn=x", &[], 1).unwrap();
        let old = a.pull(&sb, PullKind::Normal, 100, 1).unwrap();
        let stale = b.answer(&old);
        let opts = RestoreOptions {
            strategy: RestoreStrategy::Naive,
            partners: vec![sb.clone()],
            new_invocation: InvocationId(0x5eed),
            now: 2,
            backsync_timeout: 1_000,
            forget: BTreeSet::new(),
            subtree: None,
            since_backup: Vec::new(),
        };
        let mut a = Dsa::restore(&backup, cfg(), opts);
        let fresh = a.pull(&sb, PullKind::Normal, 100, 2).unwrap();
        assert_ne!(fresh.request_id, old.request_id);
        assert!(a.apply(stale, 3).ignored);
        assert_eq!(a.apply(b.answer(&fresh), 3).changed, 1);
    }

    #[test]
    fn a_reply_of_another_kind_is_ignored() {
        let sb: Arc<str> = "B".into();
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        let req = a.pull(&sb, PullKind::Normal, 100, 0).unwrap();
        let mut reply = b.answer(&req);
        reply.kind = PullKind::Backsync;
        assert!(a.apply(reply, 1).ignored);
    }

    #[test]
    fn a_backup_holds_the_writes_made_before_it_and_not_after() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        a.create(Guid(1), "cn=early", &[], 1).unwrap();
        let backup = a.backup(2);
        a.create(Guid(2), "cn=late", &[], 3).unwrap();
        let writes = a.own_writes_after(Usn(0));
        assert_eq!(writes.len(), 2);
        let held: Vec<bool> = writes.iter().map(|w| backup.holds(w)).collect();
        assert_eq!(held, [true, false], "{writes:?}");
    }

    #[test]
    fn the_scan_baseline_answers_a_backsync_as_the_index_does() {
        let (sa, sb): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut a = Dsa::new(sa.clone(), InvocationId(1), cfg());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        let backup = a.backup(0);
        for k in 1..=4u128 {
            a.create(Guid(k), &format!("cn=a{k}"), &[], k as u64)
                .unwrap();
        }
        b.create(Guid(9), "cn=b", &[], 5).unwrap();
        let req = b.pull(&sa, PullKind::Normal, 100, 6).unwrap();
        b.apply(a.answer(&req), 6);
        let mut a = Dsa::restore(&backup, cfg(), opts(RestoreStrategy::Backsync, &["B"], 7));
        let req = a.pull(&sb, PullKind::Backsync, 2, 7).unwrap();
        let by_index = b.answer(&req);
        let by_scan = b.answer_backsync_by_scan(&req);
        let guids = |r: &ChangesReply| r.changes.iter().map(|s| s.guid()).collect::<Vec<_>>();
        // A's own objects only, never B's, paged at two.
        assert_eq!(guids(&by_index), [Guid(1), Guid(2)]);
        assert_eq!(guids(&by_scan), guids(&by_index));
        assert_eq!(
            (by_scan.more, by_scan.watermark, by_scan.seen_requester_usn),
            (
                by_index.more,
                by_index.watermark,
                by_index.seen_requester_usn
            )
        );
    }

    #[test]
    fn finishing_a_backsync_restamps_what_it_applied_above_what_partners_saw() {
        let (sa, sb): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut a = Dsa::new(sa.clone(), InvocationId(1), cfg());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        let backup = a.backup(0);
        for k in 1..=3u128 {
            a.create(Guid(k), &format!("cn=a{k}"), &[], k as u64)
                .unwrap();
        }
        let req = b.pull(&sa, PullKind::Normal, 100, 4).unwrap();
        b.apply(a.answer(&req), 4);
        // Restored at USN 0; B has seen A up to USN 3.
        let mut a = Dsa::restore(&backup, cfg(), opts(RestoreStrategy::Backsync, &["B"], 5));
        let req = a.pull(&sb, PullKind::Backsync, 100, 5).unwrap();
        let done = a.apply(b.answer(&req), 5);
        assert!(matches!(done.event, Some(CoreEvent::BacksyncDone { .. })));
        assert_eq!(a.mode().name(), "running");
        // The three objects came back at local USNs 1 to 3, which B has
        // passed: each is re-stamped above 3, and the counter follows.
        assert_eq!(a.usn(), Usn(6));
        for k in 1..=3u128 {
            assert!(a.table().get(Guid(k)).unwrap().usn_changed > Usn(3), "a{k}");
        }
    }

    fn attr_cfg() -> CoreConfig {
        CoreConfig {
            granularity: Granularity::Attribute,
            ..cfg()
        }
    }

    fn opts(strategy: RestoreStrategy, partners: &[&str], now: SimTime) -> RestoreOptions {
        RestoreOptions {
            strategy,
            partners: partners.iter().map(|p| Arc::from(*p)).collect(),
            new_invocation: InvocationId(0x77),
            now,
            backsync_timeout: 100,
            forget: BTreeSet::new(),
            subtree: None,
            since_backup: Vec::new(),
        }
    }

    const DAY: SimTime = 86_400_000;

    #[test]
    fn the_version_raise_counts_each_day_or_part_of_one() {
        // (backup taken at, restored at, raise): worked out by hand.
        let cases = [
            (0, 0, 100_000),
            (0, 1, 100_000),
            (7, 7 + DAY, 100_000),
            (0, DAY + 1, 200_000),
            (5, 5 + 3 * DAY - 1, 300_000),
            (0, 3650 * DAY, 365_000_000),
            // A clock behind the backup (never in a run): still one day.
            (10, 3, 100_000),
            (0, u64::MAX, u32::MAX),
        ];
        for (taken, now, want) in cases {
            assert_eq!(version_raise(taken, now), want, "taken {taken}, now {now}");
        }
    }

    #[test]
    fn subtrees_match_on_rdn_boundaries_ignoring_case() {
        let yes = [
            ("ou=Sales", "ou=Sales"),
            ("cn=Ann,ou=Sales", "ou=Sales"),
            ("cn=Ann,OU=SALES", "ou=sales"),
            ("cn=x,cn=Ann,ou=Sales,dc=corp", "ou=Sales,dc=corp"),
            // `\\` is an escaped backslash: the comma after it is real.
            ("cn=a\\\\,ou=Sales", "ou=Sales"),
        ];
        let no = [
            ("cn=Ann,ou=PreSales", "ou=Sales"),
            ("ou=Sales,dc=corp", "ou=Sales"),
            ("cn=Ann\\,ou=Sales", "ou=Sales"),
            ("Sales", "ou=Sales"),
            ("cn=Ann,ou=Sales", ""),
        ];
        for (dn, root) in yes {
            assert!(dn_in_subtree(dn, root), "{dn} under {root}");
        }
        for (dn, root) in no {
            assert!(!dn_in_subtree(dn, root), "{dn} not under {root}");
        }
    }

    /// A (invocation 1) creates ou=Sales, Ann and Bob under it, Carl in
    /// ou=Eng, and Gone under ou=Sales, which it deletes; B copies all; A
    /// is backed up at `taken`.
    fn sales(g: CoreConfig, taken: SimTime) -> (Dsa, Dsa, Backup) {
        let mut a = Dsa::new("A".into(), InvocationId(1), g);
        let mut b = Dsa::new("B".into(), InvocationId(2), g);
        a.create(Guid(1), "ou=Sales", &[], 1).unwrap();
        a.create(Guid(2), "cn=Ann,ou=Sales", &[("title", "Buyer")], 2)
            .unwrap();
        a.create(Guid(3), "cn=Bob,OU=SALES", &[("title", "Seller")], 3)
            .unwrap();
        a.create(Guid(4), "cn=Carl,ou=Eng", &[], 4).unwrap();
        a.create(Guid(5), "cn=Gone,ou=Sales", &[], 5).unwrap();
        a.delete("cn=Gone,ou=Sales", 6).unwrap();
        a.modify("cn=Ann,ou=Sales", &[("title", "Lead buyer")], &[], 7)
            .unwrap();
        cycle(&mut b, &a, PullKind::Normal, 100, 8);
        assert_eq!(a.digest(), b.digest());
        let backup = a.backup(taken);
        (a, b, backup)
    }

    #[test]
    fn an_authoritative_restore_rewrites_the_live_objects_of_its_subtree() {
        for g in [cfg(), attr_cfg()] {
            let taken = 10;
            let now = taken + DAY + 1;
            let (_, _, backup) = sales(g, taken);
            let mut o = opts(RestoreStrategy::Authoritative, &["B"], now);
            o.subtree = Some("OU=Sales".into());
            let a = Dsa::restore(&backup, g, o);
            assert_eq!(a.invocation(), InvocationId(0x77), "a new invocation");
            let raised = a.authoritative_raise().unwrap();
            assert_eq!(
                (raised.objects, raised.by),
                (3, 200_000),
                "ou=Sales, Ann, Bob"
            );
            // Backup USN 7; the three take 8, 9 and 10 in the backup's USN order.
            assert_eq!(a.usn(), Usn(10));
            let st = |guid: u128| a.table().get(Guid(guid)).unwrap().state;
            let old = |guid: u128| backup.table.get(Guid(guid)).unwrap().state;
            for (guid, usn) in [(1, 8), (3, 9), (2, 10)] {
                let (s, o) = (st(guid), old(guid));
                let want = Stamp {
                    version: o.stamp().version + 200_000,
                    time: now,
                    invocation: InvocationId(0x77),
                    usn: Usn(usn),
                };
                assert_eq!((s.stamp(), s.alive()), (want, want), "guid {guid}");
                assert_eq!((s.created(), s.values()), (o.created(), o.values()));
                for (a, b) in s.attrs().zip(o.attrs()) {
                    assert_eq!(a.stamp.version, b.stamp.version + 200_000);
                    assert_eq!(
                        (a.stamp.invocation, a.stamp.usn),
                        (want.invocation, want.usn)
                    );
                }
            }
            // Outside the subtree, and a tombstone inside it: as in the backup.
            assert_eq!(st(4).hash(), old(4).hash());
            assert!(st(5).deleted());
            assert_eq!(st(5).hash(), old(5).hash());
        }
    }

    #[test]
    fn an_authoritatively_restored_object_wins_over_later_deletes_and_modifies() {
        for g in [cfg(), attr_cfg()] {
            let (_, mut b, backup) = sales(g, 10);
            // After the backup, B deletes Ann and Carl and retitles Bob.
            b.delete("cn=Ann,ou=Sales", 20).unwrap();
            b.delete("cn=Carl,ou=Eng", 21).unwrap();
            b.modify("cn=Bob,OU=SALES", &[("title", "Manager")], &[], 22)
                .unwrap();
            let mut o = opts(RestoreStrategy::Authoritative, &["B"], 30);
            o.subtree = Some("ou=Sales".into());
            let mut a = Dsa::restore(&backup, g, o);
            cycle(&mut a, &b, PullKind::Normal, 100, 31);
            cycle(&mut b, &a, PullKind::Normal, 100, 32);
            assert_eq!(a.digest(), b.digest());
            for d in [&a, &b] {
                let ann = d.lookup("cn=Ann,ou=Sales").expect("Ann is back");
                assert_eq!(ann.state.value("title"), Some("Lead buyer"));
                let bob = d.lookup("cn=Bob,OU=SALES").unwrap();
                assert_eq!(bob.state.value("title"), Some("Seller"), "the backup's");
                assert!(
                    d.lookup("cn=Carl,ou=Eng").is_none(),
                    "outside: stays deleted"
                );
                assert!(
                    d.lookup("cn=Gone,ou=Sales").is_none(),
                    "deleted before the backup"
                );
            }
            // A delete after the restore wins in turn, and a modify of the
            // restored object replicates as usual.
            b.modify("cn=Bob,OU=SALES", &[("title", "Boss")], &[], 40)
                .unwrap();
            a.delete("cn=Ann,ou=Sales", 41).unwrap();
            cycle(&mut a, &b, PullKind::Normal, 100, 42);
            cycle(&mut b, &a, PullKind::Normal, 100, 43);
            assert_eq!(a.digest(), b.digest());
            assert!(b.lookup("cn=Ann,ou=Sales").is_none());
            let bob = a.lookup("cn=Bob,OU=SALES").unwrap();
            assert_eq!(bob.state.value("title"), Some("Boss"));
        }
    }

    #[test]
    fn without_a_subtree_every_live_object_is_raised() {
        let (_, _, backup) = sales(cfg(), 0);
        let a = Dsa::restore(&backup, cfg(), opts(RestoreStrategy::Authoritative, &[], 5));
        let raised = a.authoritative_raise().unwrap();
        assert_eq!((raised.objects, raised.by), (4, 100_000));
        let plain = Dsa::restore(&backup, cfg(), opts(RestoreStrategy::NewInvocation, &[], 5));
        assert_eq!(plain.authoritative_raise(), None);
        assert_eq!(plain.digest(), backup.table.digest(), "nothing rewritten");
    }

    /// Every page of one pull cycle of `dst` from `src`; the objects changed.
    fn cycle(dst: &mut Dsa, src: &Dsa, kind: PullKind, page: usize, now: SimTime) -> Vec<Applied> {
        let mut req = dst.pull(src.name(), kind, page, now).expect("a pull");
        let mut out = Vec::new();
        loop {
            let a = dst.apply(src.answer(&req), now);
            let next = a.follow_up.clone();
            out.push(a);
            match next {
                Some(r) => req = r,
                None => return out,
            }
        }
    }

    #[test]
    fn writes_stamp_the_next_usn_and_versions() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        a.create(Guid(1), "cn=x", &[("mail", "m")], 5).unwrap();
        a.modify("cn=x", &[("title", "t")], &["mail"], 6).unwrap();
        let r = a.lookup("cn=x").unwrap();
        assert_eq!(a.usn(), Usn(2));
        assert_eq!(
            r.state.stamp(),
            Stamp {
                version: 2,
                time: 6,
                invocation: InvocationId(1),
                usn: Usn(2)
            }
        );
        assert_eq!(
            r.state.values().into_iter().collect::<Vec<_>>(),
            [("title".into(), "t".into())]
        );
        assert_eq!(
            a.create(Guid(2), "cn=x", &[], 7),
            Err(WriteError::DnExists {
                server: "A".into(),
                dn: "cn=x".into()
            })
        );
        assert_eq!(a.delete("cn=x", 8), Ok(Guid(1)));
        assert!(a.lookup("cn=x").is_none());
        assert!(matches!(
            a.modify("cn=x", &[], &[], 9),
            Err(WriteError::NoSuchDn { .. })
        ));
        assert!(matches!(
            a.delete("cn=x", 9),
            Err(WriteError::NoSuchDn { .. })
        ));
        let t = a.table().get(Guid(1)).unwrap().state;
        assert!(t.deleted());
        assert_eq!((t.stamp().version, t.stamp().usn), (3, Usn(3)));
    }

    #[test]
    fn attribute_versions_count_per_attribute() {
        let c = attr_cfg();
        let mut a = Dsa::new("A".into(), InvocationId(1), c);
        a.create(Guid(1), "cn=x", &[("mail", "m"), ("title", "t")], 0)
            .unwrap();
        a.modify("cn=x", &[("mail", "n")], &[], 1).unwrap();
        a.modify("cn=x", &[("mail", "o")], &["title"], 2).unwrap();
        let s = a.lookup("cn=x").unwrap().state;
        let v: Vec<(&str, u32, Option<&str>)> = s
            .attrs()
            .map(|x| (x.name, x.stamp.version, x.value))
            .collect();
        assert_eq!(
            v,
            [("mail", 3, Some("o")), ("title", 2, None)],
            "a removal keeps its stamp"
        );
        assert_eq!(s.stamp().version, 3);
    }

    #[test]
    fn pulls_wait_for_their_reply_and_expire() {
        let sb: Arc<str> = "B".into();
        let sc: Arc<str> = "C".into();
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        assert!(!a.pulling("B") && !a.pulling_any());
        let r = a.pull(&sb, PullKind::Normal, 0, 10).unwrap();
        assert_eq!(r.max_objects, 1, "at least one object a page");
        assert!(a.pulling("B") && a.pulling_any() && !a.pulling("C"));
        assert!(
            a.pull(&sb, PullKind::Normal, 5, 11).is_none(),
            "one outstanding"
        );
        a.pull(&sc, PullKind::Normal, 5, 20).unwrap();
        assert_eq!(a.expire_pulls(9), vec![]);
        assert_eq!(a.expire_pulls(10), vec![(sb.clone(), PullKind::Normal)]);
        assert!(!a.pulling("B") && a.pulling("C"));
        let r2 = a.pull(&sb, PullKind::Normal, 5, 21).unwrap();
        assert_ne!(r2.request_id, r.request_id);
        assert_eq!(a.expire_pulls(21).len(), 2);
        assert!(!a.pulling_any());
        // Only a restore's pull exists outside normal mode.
        assert!(a.pull(&sb, PullKind::Backsync, 5, 22).is_none());
        assert!(a.pull(&sb, PullKind::Full, 5, 22).is_none());
    }

    #[test]
    fn answers_page_and_carry_the_vector_with_the_last_page() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut b = Dsa::new("B".into(), InvocationId(2), cfg());
        for g in 1..=5u128 {
            a.create(Guid(g), &format!("cn={g}"), &[], 0).unwrap();
        }
        let pages = cycle(&mut b, &a, PullKind::Normal, 2, 1);
        let sizes: Vec<usize> = pages.iter().map(|p| p.changed).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(
            b.hwm("A"),
            Some(HighWatermark {
                invocation: InvocationId(1),
                usn: Usn(5)
            })
        );
        assert_eq!(b.utdv().get(InvocationId(1)), Usn(5));
        assert_eq!(b.digest(), a.digest());
        // Exactly one page of changes: no empty extra page.
        a.create(Guid(6), "cn=6", &[], 2).unwrap();
        a.create(Guid(7), "cn=7", &[], 2).unwrap();
        let pages = cycle(&mut b, &a, PullKind::Normal, 2, 3);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].changed_guids, [Guid(6), Guid(7)]);
        // A pull from a new invocation of the source starts from zero.
        let mut a2 = a.clone();
        a2.invocation = InvocationId(3);
        let req = b.pull(&Arc::from("A"), PullKind::Normal, 100, 4).unwrap();
        assert_eq!(req.from_usn, Usn(7));
        assert_eq!(a.answer(&req).changes.len(), 0);
        assert_eq!(
            a2.answer(&req).changes.len(),
            0,
            "dampened, but scanned from zero"
        );
        let mut fresh = req.clone();
        fresh.utdv = UpToDatenessVector::default();
        assert_eq!(a2.answer(&fresh).changes.len(), 7);
        assert_eq!(
            a.answer(&fresh).changes.len(),
            0,
            "same invocation: from the watermark"
        );
    }

    #[test]
    fn who_answers_what() {
        let (sa, sb): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        b.create(Guid(1), "cn=x", &[], 0).unwrap();
        let mut a = Dsa::new(sa.clone(), InvocationId(1), cfg());
        let normal = a.pull(&sb, PullKind::Normal, 10, 0).unwrap();
        assert!(!b.answer(&normal).refused);
        // Backsync: answers backsyncs only.
        let mut bs = Dsa::restore(
            &b.backup(0),
            cfg(),
            opts(RestoreStrategy::Backsync, &["A"], 0),
        );
        assert!(bs.answer(&normal).refused);
        let mut back = normal.clone();
        back.kind = PullKind::Backsync;
        assert!(!bs.answer(&back).refused);
        assert_eq!(bs.mode().name(), "backsync");
        assert_eq!(bs.backsync_waiting(), vec![sa.clone()]);
        assert!(matches!(
            bs.create(Guid(9), "cn=y", &[], 1),
            Err(WriteError::Busy(_))
        ));
        assert_eq!(bs.backsync_deadline(99), None);
        assert!(matches!(
            bs.backsync_deadline(100),
            Some(CoreEvent::BacksyncDone {
                answered: 0,
                missing: 1,
                ..
            })
        ));
        assert_eq!(bs.mode().name(), "running");
        assert!(bs.backsync_waiting().is_empty());
        // Full resync and quarantine refuse everything.
        let rs = Dsa::restore(
            &b.backup(0),
            cfg(),
            opts(RestoreStrategy::FullResync, &["A"], 0),
        );
        assert_eq!(rs.mode().name(), "resync");
        assert!(rs.answer(&normal).refused && rs.answer(&back).refused);
        assert!(matches!(rs.writable(), Err(WriteError::Busy(_))));
        let q = Dsa {
            mode: Mode::Quarantined {
                partner: sa.clone(),
                seen: Usn(7),
            },
            ..b.clone()
        };
        assert_eq!(q.mode().name(), "quarantined");
        assert!(q.answer(&normal).refused);
        assert!(matches!(q.writable(), Err(WriteError::Quarantined(_))));
    }

    #[test]
    fn a_partner_ahead_of_the_own_usn_quarantines() {
        let c = CoreConfig {
            rollback_detection: true,
            ..cfg()
        };
        let sb: Arc<str> = "B".into();
        let mut a = Dsa::new("A".into(), InvocationId(1), c);
        let mut b = Dsa::new(sb.clone(), InvocationId(2), c);
        a.create(Guid(1), "cn=x", &[], 0).unwrap();
        let backup = a.backup(0);
        a.create(Guid(2), "cn=y", &[], 1).unwrap();
        cycle(&mut b, &a, PullKind::Normal, 10, 2);
        // Equal: fine.
        let mut same = Dsa::restore(&a.backup(2), c, opts(RestoreStrategy::Naive, &["B"], 2));
        assert!(
            cycle(&mut same, &b, PullKind::Normal, 10, 3)[0]
                .event
                .is_none()
        );
        // Rolled back one USN: quarantined, and nothing applied.
        let mut old = Dsa::restore(&backup, c, opts(RestoreStrategy::Naive, &["B"], 2));
        let got = cycle(&mut old, &b, PullKind::Normal, 10, 3);
        assert_eq!(
            got[0].event,
            Some(CoreEvent::Quarantined {
                partner: sb.clone(),
                partner_usn: Usn(2),
                own_usn: Usn(1)
            })
        );
        assert_eq!(got[0].changed, 0);
        assert_eq!(old.mode().name(), "quarantined");
        assert!(old.pull(&sb, PullKind::Normal, 10, 4).is_none());
        // Released: running again, not quarantined again, and a write made
        // under a reused USN never reaches the partner that saw that USN.
        assert_eq!(old.release(), Some((sb.clone(), Usn(2))));
        assert_eq!(old.release(), None);
        assert_eq!(old.mode().name(), "running");
        old.create(Guid(3), "cn=z", &[], 5).unwrap();
        assert!(
            cycle(&mut old, &b, PullKind::Normal, 10, 6)[0]
                .event
                .is_none()
        );
        assert_eq!(old.mode().name(), "running");
        cycle(&mut b, &old, PullKind::Normal, 10, 7);
        assert!(b.lookup("cn=z").is_none());
    }

    #[test]
    fn a_full_copy_walks_its_partners_and_ends() {
        let mut b = Dsa::new("B".into(), InvocationId(2), cfg());
        for g in 1..=3u128 {
            b.create(Guid(g), &format!("cn={g}"), &[], 0).unwrap();
        }
        let a = Dsa::new("A".into(), InvocationId(1), cfg());
        let backup = a.backup(0);
        let mut r = Dsa::restore(
            &backup,
            cfg(),
            opts(RestoreStrategy::FullResync, &["B", "C", "D"], 0),
        );
        assert_eq!(r.invocation(), InvocationId(0x77));
        assert_eq!(r.resync_partner(false).as_deref(), Some("B"));
        assert_eq!(r.resync_partner(true).as_deref(), Some("C"));
        assert_eq!(r.resync_partner(true).as_deref(), Some("D"));
        assert_eq!(r.resync_partner(true).as_deref(), Some("B"), "wraps around");
        // Dropping a partner before the current one keeps pointing at it.
        r.resync_partner(true);
        assert_eq!(r.forget_source("B"), None);
        assert_eq!(r.resync_partner(false).as_deref(), Some("C"));
        r.resync_partner(true);
        assert_eq!(r.forget_source("D"), None);
        assert_eq!(r.resync_partner(false).as_deref(), Some("C"));
        let mut r2 = r.clone();
        assert_eq!(
            r2.forget_source("C"),
            Some(CoreEvent::ResyncCutOff {
                partner: "C".into()
            })
        );
        assert_eq!(r2.mode().name(), "running");
        let mut r = Dsa::restore(&backup, cfg(), opts(RestoreStrategy::FullResync, &["B"], 0));
        let pages = cycle(&mut r, &b, PullKind::Full, 2, 1);
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].event, None);
        assert_eq!(
            pages[1].event,
            Some(CoreEvent::ResyncDone { from: "B".into() })
        );
        assert_eq!(r.mode().name(), "running");
        assert_eq!(r.digest(), b.digest());
        assert_eq!(
            r.hwm("B"),
            Some(HighWatermark {
                invocation: InvocationId(2),
                usn: Usn(3)
            })
        );
        assert_eq!(r.utdv().get(InvocationId(2)), Usn(3));
        assert_eq!(r.resync_partner(false), None);
    }

    #[test]
    fn gc_removes_tombstones_older_than_the_lifetime() {
        let c = CoreConfig {
            tombstone_lifetime: 100,
            ..cfg()
        };
        let mut a = Dsa::new("A".into(), InvocationId(1), c);
        a.create(Guid(1), "cn=x", &[], 0).unwrap();
        a.create(Guid(2), "cn=y", &[], 0).unwrap();
        a.delete("cn=x", 10).unwrap();
        a.delete("cn=y", 20).unwrap();
        assert_eq!(a.gc(50), 0, "before the lifetime: no cutoff");
        assert_eq!(a.gc(109), 0);
        assert_eq!(a.gc(110), 1);
        assert!(a.table().get(Guid(1)).is_none() && a.table().get(Guid(2)).is_some());
        assert_eq!(a.gc(1000), 1);
        assert!(a.table().is_empty());
    }

    #[test]
    fn own_writes_are_listed_and_held_until_superseded() {
        let c = attr_cfg();
        let mut a = Dsa::new("A".into(), InvocationId(1), c);
        let mut b = Dsa::new("B".into(), InvocationId(2), c);
        a.create(Guid(1), "cn=x", &[("mail", "m")], 0).unwrap();
        a.modify("cn=x", &[("title", "t")], &[], 1).unwrap();
        let w = a.own_writes_after(Usn(0));
        let got: Vec<(Option<&str>, u64)> = w
            .iter()
            .map(|w| (w.attr.as_deref(), w.stamp.usn.0))
            .collect();
        // USN 1 is the create (created stamp, and mail's); USN 2 the title.
        assert_eq!(got, [(Some("mail"), 1), (Some("title"), 2)]);
        assert_eq!(a.own_writes_after(Usn(1)).len(), 1);
        assert!(w.iter().all(|w| a.holds(w)));
        assert!(w.iter().all(|w| !b.holds(w)));
        cycle(&mut b, &a, PullKind::Normal, 10, 2);
        assert!(w.iter().all(|w| b.holds(w)));
        let objs = b.objects();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].0, "cn=x");
    }

    #[test]
    fn purging_a_creator_forgets_its_objects_for_good() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut b = Dsa::new("B".into(), InvocationId(2), cfg());
        b.create(Guid(1), "cn=x", &[], 0).unwrap();
        b.create(Guid(2), "cn=y", &[], 0).unwrap();
        a.create(Guid(3), "cn=z", &[], 0).unwrap();
        cycle(&mut b, &a, PullKind::Normal, 10, 1);
        // B modifies what A created: still A's, not purged with B's.
        b.modify("cn=z", &[("mail", "m")], &[], 1).unwrap();
        cycle(&mut a, &b, PullKind::Normal, 10, 1);
        assert_eq!(a.table().len(), 3);
        b.modify("cn=y", &[("mail", "m")], &[], 2).unwrap();
        let reply_before = {
            let req = a.pull(b.name(), PullKind::Normal, 10, 3).unwrap();
            b.answer(&req)
        };
        assert_eq!(reply_before.changes.len(), 1);
        let n = a.purge_created_by(&[InvocationId(2)].into_iter().collect());
        assert_eq!(n, 2);
        assert_eq!(a.table().len(), 1);
        assert_eq!(a.lookup("cn=z").unwrap().state.value("mail"), Some("m"));
        assert_eq!(a.utdv().get(InvocationId(2)), Usn(0));
        assert_eq!(
            a.apply(reply_before, 4).changed,
            0,
            "a late reply cannot bring them back"
        );
        assert_eq!(a.table().len(), 1);
    }

    #[test]
    fn a_restore_pull_replaces_an_ordinary_one_but_not_the_reverse() {
        let sb: Arc<str> = "B".into();
        let a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut r = Dsa::restore(
            &a.backup(0),
            cfg(),
            opts(RestoreStrategy::Backsync, &["B"], 0),
        );
        let normal = r.pull(&sb, PullKind::Normal, 10, 1).unwrap();
        let back = r.pull(&sb, PullKind::Backsync, 10, 1).expect("takes over");
        assert_ne!(back.request_id, normal.request_id);
        assert!(r.pull(&sb, PullKind::Normal, 10, 1).is_none());
        assert!(r.pull(&sb, PullKind::Backsync, 10, 1).is_none());
        // The ordinary reply now matches nothing.
        let b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        assert!(r.apply(b.answer(&normal), 2).ignored);
        assert!(!r.apply(b.answer(&back), 2).ignored);
    }

    #[test]
    fn a_full_copy_sends_everything_whatever_the_vector() {
        let mut b = Dsa::new("B".into(), InvocationId(2), cfg());
        b.create(Guid(1), "cn=x", &[], 0).unwrap();
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut req = a.pull(b.name(), PullKind::Normal, 10, 0).unwrap();
        req.utdv.raise(InvocationId(2), Usn(99));
        assert!(b.answer(&req).changes.is_empty(), "covered");
        req.kind = PullKind::Full;
        assert_eq!(b.answer(&req).changes.len(), 1);
    }

    #[test]
    fn a_full_resync_without_partners_keeps_the_backup() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        a.create(Guid(1), "cn=x", &[], 0).unwrap();
        let r = Dsa::restore(
            &a.backup(0),
            cfg(),
            opts(RestoreStrategy::FullResync, &[], 0),
        );
        assert_eq!(r.mode().name(), "running");
        assert_eq!(r.invocation(), InvocationId(0x77));
        assert_eq!(r.digest(), a.digest());
        assert_eq!(
            r.utdv().get(InvocationId(1)),
            Usn(1),
            "the old id stays claimed"
        );
    }

    #[test]
    fn backsync_reports_what_the_watermark_saw_of_the_requester() {
        // A holds C's objects at A's USNs 1..3; B has read one page of
        // them: only B's watermark for A knows A reached USN 1.
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut b = Dsa::new("B".into(), InvocationId(2), cfg());
        let mut c = Dsa::new("C".into(), InvocationId(3), cfg());
        for g in 1..=3u128 {
            c.create(Guid(g), &format!("cn={g}"), &[], 0).unwrap();
        }
        cycle(&mut a, &c, PullKind::Normal, 10, 1);
        let req = b.pull(a.name(), PullKind::Normal, 1, 1).unwrap();
        let first = b.apply(a.answer(&req), 1);
        assert!(first.follow_up.is_some(), "more pages wait");
        assert_eq!(b.hwm("A").map(|h| h.usn), Some(Usn(1)));
        assert_eq!(b.utdv().get(InvocationId(1)), Usn(0), "no vector yet");
        let mut r = Dsa::restore(
            &a.backup(1),
            cfg(),
            opts(RestoreStrategy::Backsync, &["B"], 1),
        );
        let back = r.pull(b.name(), PullKind::Backsync, 10, 2).unwrap();
        let reply = b.answer(&back);
        assert_eq!(reply.seen_requester_usn, Some(Usn(1)));
        // A watermark read from another invocation of A says nothing of this one.
        let other = GetChanges {
            requester_invocation: InvocationId(9),
            ..back
        };
        assert_eq!(b.answer(&other).seen_requester_usn, Some(Usn(0)));
    }

    #[test]
    fn the_first_lost_stamp_decides_where_an_object_is_sent() {
        let s = ObjectState::new(
            Guid(1),
            "cn=x",
            Stamp {
                version: 1,
                time: 0,
                invocation: InvocationId(1),
                usn: Usn(5),
            },
            Stamp {
                version: 2,
                time: 1,
                invocation: InvocationId(1),
                usn: Usn(8),
            },
            false,
            vec![Attr {
                name: "mail".into(),
                value: Some("m".into()),
                stamp: Stamp {
                    version: 1,
                    time: 0,
                    invocation: InvocationId(2),
                    usn: Usn(6),
                },
            }],
        );
        assert_eq!(
            first_origin_after(&s, InvocationId(1), Usn(0)),
            Some(Usn(5))
        );
        assert_eq!(
            first_origin_after(&s, InvocationId(1), Usn(5)),
            Some(Usn(8))
        );
        assert_eq!(first_origin_after(&s, InvocationId(1), Usn(8)), None);
        assert_eq!(
            first_origin_after(&s, InvocationId(2), Usn(0)),
            Some(Usn(6))
        );
        assert_eq!(first_origin_after(&s, InvocationId(3), Usn(0)), None);
    }

    #[test]
    fn dampening_reads_every_stamp_of_a_mixed_object() {
        let c = attr_cfg();
        let mut a = Dsa::new("A".into(), InvocationId(1), c);
        let mut b = Dsa::new("B".into(), InvocationId(2), c);
        a.create(Guid(1), "cn=x", &[("mail", "m"), ("title", "t")], 0)
            .unwrap();
        cycle(&mut b, &a, PullKind::Normal, 10, 1);
        b.modify("cn=x", &[("mail", "n")], &[], 2).unwrap();
        let b_write = b.usn();
        cycle(&mut a, &b, PullKind::Normal, 10, 3);
        a.modify("cn=x", &[("title", "u")], &[], 4).unwrap();
        // Created and last written by A, mail by B.
        let s = a.lookup("cn=x").unwrap().state;
        let mail = s.attrs().find(|x| x.name == "mail").unwrap().stamp;
        assert_eq!(
            (s.created().invocation, s.stamp().invocation),
            (InvocationId(1), InvocationId(1))
        );
        assert_eq!((mail.invocation, mail.usn), (InvocationId(2), b_write));
        let mut fresh = Dsa::new("C".into(), InvocationId(3), c);
        let mut req = fresh.pull(a.name(), PullKind::Normal, 10, 5).unwrap();
        req.utdv.raise(InvocationId(1), s.stamp().usn);
        assert_eq!(
            a.answer(&req).changes.len(),
            1,
            "B's write of mail is not held"
        );
        req.utdv.raise(InvocationId(2), b_write);
        assert!(a.answer(&req).changes.is_empty(), "every stamp is held");
    }

    #[test]
    fn a_backsync_stops_waiting_for_a_forgotten_partner() {
        let a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut r = Dsa::restore(
            &a.backup(0),
            cfg(),
            opts(RestoreStrategy::Backsync, &["B", "C"], 0),
        );
        assert_eq!(r.forget_source("X"), None, "not a partner");
        assert_eq!(r.forget_source("B"), None, "C is still awaited");
        assert_eq!(r.mode().name(), "backsync");
        assert_eq!(r.backsync_waiting(), vec![Arc::<str>::from("C")]);
        assert!(matches!(
            r.forget_source("C"),
            Some(CoreEvent::BacksyncDone {
                answered: 0,
                missing: 0,
                ..
            })
        ));
        assert_eq!(r.mode().name(), "running");
    }

    #[test]
    fn forgetting_the_partner_a_full_copy_asks_moves_to_the_next() {
        let a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut r = Dsa::restore(
            &a.backup(0),
            cfg(),
            opts(RestoreStrategy::FullResync, &["B", "C", "D"], 0),
        );
        assert_eq!(r.resync_partner(true).as_deref(), Some("C"));
        assert_eq!(r.forget_source("C"), None);
        assert_eq!(r.resync_partner(false).as_deref(), Some("D"));
    }

    /// A and B; A writes cn=late after its backup, and its answer to B's
    /// pull is still on the wire when A is restored with `strategy`; B
    /// answers the backsync before that answer lands. Returns A restored
    /// (backsync done), B (with the late write), and the late write's stamp.
    fn write_in_flight(strategy: RestoreStrategy) -> (Dsa, Dsa, Stamp) {
        let (sa, sb): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut a = Dsa::new(sa.clone(), InvocationId(1), cfg());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        a.create(Guid(1), "cn=early", &[], 0).unwrap();
        cycle(&mut b, &a, PullKind::Normal, 10, 1);
        let backup = a.backup(2);
        a.create(Guid(2), "cn=late", &[], 3).unwrap();
        let late = a.lookup("cn=late").unwrap().state.stamp();
        let req = b.pull(&sa, PullKind::Normal, 10, 4).unwrap();
        let in_flight = a.answer(&req);
        let mut r = Dsa::restore(&backup, cfg(), opts(strategy, &["B"], 5));
        let back = r.pull(&sb, PullKind::Backsync, 10, 5).unwrap();
        let done = r.apply(b.answer(&back), 6);
        assert!(
            matches!(done.event, Some(CoreEvent::BacksyncDone { missing: 0, .. })),
            "{:?}",
            done.event
        );
        assert_eq!(done.changed, 0, "B had nothing of A's above the backup yet");
        assert_eq!(b.apply(in_flight, 7).changed, 1, "the late write lands");
        (r, b, late)
    }

    #[test]
    fn a_safe_backsync_names_its_new_writes_with_a_fresh_id() {
        // Plain backsync: the next write takes USN 2 of invocation 1 again,
        // the late write's name, so B (whose vector covers it) skips it.
        let (mut r, mut b, late) = write_in_flight(RestoreStrategy::Backsync);
        assert_eq!((late.invocation, late.usn), (InvocationId(1), Usn(2)));
        r.create(Guid(3), "cn=after", &[], 8).unwrap();
        let after = r.lookup("cn=after").unwrap().state.stamp();
        assert_eq!((after.invocation, after.usn), (late.invocation, late.usn));
        cycle(&mut b, &r, PullKind::Normal, 10, 9);
        assert!(b.lookup("cn=after").is_none(), "the hazard backsync has");
        // Safe backsync: the write takes invocation 0x77 (the fresh id the
        // options give), USN 2 (backup's USN 1, plus one), a new name.
        let (mut r, mut b, _) = write_in_flight(RestoreStrategy::SafeBacksync);
        assert_eq!(r.invocation(), InvocationId(0x77));
        r.create(Guid(3), "cn=after", &[], 8).unwrap();
        let after = r.lookup("cn=after").unwrap().state.stamp();
        assert_eq!((after.invocation, after.usn), (InvocationId(0x77), Usn(2)));
        // B's watermark on A is (1, 2), from the answer in flight: above the
        // backup's USN 1, so it is read as 1 and B gets cn=after.
        assert_eq!(
            b.hwm("A"),
            Some(HighWatermark {
                invocation: InvocationId(1),
                usn: Usn(2)
            })
        );
        cycle(&mut b, &r, PullKind::Normal, 10, 9);
        assert!(b.lookup("cn=after").is_some());
        assert_eq!(
            b.hwm("A"),
            Some(HighWatermark {
                invocation: InvocationId(0x77),
                usn: Usn(2)
            })
        );
        // A still owes itself invocation 1's writes above USN 1: it pulls
        // the late write back from B.
        assert_eq!(r.utdv().get(InvocationId(1)), Usn(1));
        cycle(&mut r, &b, PullKind::Normal, 10, 10);
        assert!(r.lookup("cn=late").is_some());
        assert_eq!(r.digest(), b.digest());
    }

    #[test]
    fn a_safe_backsync_that_times_out_still_gets_the_silent_partners_copies() {
        let (sa, sc): (Arc<str>, Arc<str>) = ("A".into(), "C".into());
        let mut a = Dsa::new(sa.clone(), InvocationId(1), cfg());
        let mut c = Dsa::new(sc.clone(), InvocationId(3), cfg());
        let backup = a.backup(0);
        a.create(Guid(1), "cn=late", &[], 1).unwrap();
        cycle(&mut c, &a, PullKind::Normal, 10, 2);
        for (strategy, comes_back) in [
            (RestoreStrategy::Backsync, false),
            (RestoreStrategy::SafeBacksync, true),
        ] {
            // B answers, C (the only holder of cn=late) never does.
            let mut r = Dsa::restore(&backup, cfg(), opts(strategy, &["B", "C"], 3));
            let b = Dsa::new("B".into(), InvocationId(2), cfg());
            let req = r.pull(b.name(), PullKind::Backsync, 10, 3).unwrap();
            r.apply(b.answer(&req), 4);
            assert_eq!(r.backsync_deadline(102), None, "deadline is 3 + 100");
            let ev = r.backsync_deadline(103);
            assert!(
                matches!(ev, Some(CoreEvent::BacksyncDone { missing: 1, safe, .. }) if safe == comes_back),
                "{strategy}: {ev:?}"
            );
            // A write after the timeout: plain backsync gives it USN 1 of
            // invocation 1, cn=late's name, and then claims it holds cn=late.
            r.create(Guid(9), "cn=after", &[], 104).unwrap();
            let req = r.pull(&sc, PullKind::Normal, 10, 105).unwrap();
            r.apply(c.answer(&req), 105);
            assert_eq!(r.lookup("cn=late").is_some(), comes_back, "{strategy}");
        }
    }

    #[test]
    fn a_safe_backsync_claims_no_more_of_the_old_id_than_the_backup_did() {
        let sb: Arc<str> = "B".into();
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        let backup = a.backup(0);
        for g in 1..=3u128 {
            a.create(Guid(g), &format!("cn={g}"), &[], g as u64)
                .unwrap();
        }
        cycle(&mut b, &a, PullKind::Normal, 10, 4);
        assert_eq!(b.utdv().get(InvocationId(1)), Usn(3));
        // One page or three, B vouching for invocation 1 up to 3 or not: the
        // claim stays the backup's, ordinary replication raises it.
        let mut r = Dsa::restore(
            &backup,
            cfg(),
            opts(RestoreStrategy::SafeBacksync, &["B"], 5),
        );
        assert_eq!(r.utdv().get(InvocationId(1)), Usn(0));
        assert_eq!(cycle(&mut r, &b, PullKind::Backsync, 10, 5).len(), 1);
        assert_eq!(r.mode().name(), "running");
        assert_eq!(r.utdv().get(InvocationId(1)), Usn(0));
        assert_eq!(r.table().len(), 3);
        let mut r = Dsa::restore(
            &backup,
            cfg(),
            opts(RestoreStrategy::SafeBacksync, &["B"], 5),
        );
        assert_eq!(cycle(&mut r, &b, PullKind::Backsync, 1, 5).len(), 3);
        assert_eq!(r.mode().name(), "running");
        assert_eq!(r.table().len(), 3);
        assert_eq!(r.utdv().get(InvocationId(1)), Usn(0));
    }

    #[test]
    fn a_watermark_from_another_instance_than_the_lineage_reads_from_zero() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        for g in 1..=2u128 {
            a.create(Guid(g), &format!("cn={g}"), &[], 0).unwrap();
        }
        let backup = a.backup(1);
        let r = Dsa::restore(&backup, cfg(), opts(RestoreStrategy::SafeBacksync, &[], 2));
        assert_eq!(r.mode().name(), "running", "no partner: done at once");
        let mut fresh = Dsa::new("D".into(), InvocationId(4), cfg());
        let mut req = fresh.pull(r.name(), PullKind::Normal, 10, 3).unwrap();
        let sent = |req: &GetChanges| r.answer(req).changes.len();
        req.source_invocation = Some(InvocationId(1));
        req.from_usn = Usn(1);
        assert_eq!(sent(&req), 1, "the lineage's: from USN 1");
        req.from_usn = Usn(50);
        assert_eq!(sent(&req), 0, "capped at the backup's USN 2");
        req.source_invocation = Some(InvocationId(9));
        assert_eq!(sent(&req), 2, "another instance's: from zero");
        req.source_invocation = Some(InvocationId(0x77));
        req.from_usn = Usn(1);
        assert_eq!(sent(&req), 1, "its own: as asked");
    }

    /// A restored from `backup` with safe-backsync (no partner: at once,
    /// under 0x77) writes `dn`; B pulls it. Returns B.
    fn written_under_0x77(backup: &Backup, guid: Guid, dn: &str) -> Dsa {
        let mut r = Dsa::restore(backup, cfg(), opts(RestoreStrategy::SafeBacksync, &[], 1));
        r.create(guid, dn, &[], 2).unwrap();
        let mut b = Dsa::new("B".into(), InvocationId(2), cfg());
        cycle(&mut b, &r, PullKind::Normal, 10, 3);
        b
    }

    /// A second safe-backsync restore of A (partner B), under 0x78, after
    /// a first one under 0x77 (which the shell lists since the backup).
    fn restored_again(backup: &Backup, now: SimTime) -> Dsa {
        let mut o = opts(RestoreStrategy::SafeBacksync, &["B"], now);
        o.new_invocation = InvocationId(0x78);
        o.since_backup = vec![InvocationId(0x77)];
        Dsa::restore(backup, cfg(), o)
    }

    #[test]
    fn restoring_an_abandoned_timeline_safely_names_no_write_twice() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let older = a.backup(0);
        a.create(Guid(1), "cn=old-timeline", &[], 1).unwrap();
        let newer = a.backup(2);
        // Rolled back past `newer`: the first restore writes under 0x77.
        let b = written_under_0x77(&older, Guid(2), "cn=new-timeline");
        // Then the abandoned `newer` is restored, with another fresh id.
        let mut r = restored_again(&newer, 6);
        cycle(&mut r, &b, PullKind::Backsync, 10, 6);
        cycle(&mut r, &b, PullKind::Normal, 10, 7);
        r.create(Guid(3), "cn=third", &[], 8).unwrap();
        let names: BTreeSet<(InvocationId, Usn)> = r
            .objects()
            .iter()
            .map(|(_, x)| (x.state.created().invocation, x.state.created().usn))
            .collect();
        // Each timeline wrote USN 1 or 2 (the counter went on from the
        // backup's), each under its own id: three writes, three names.
        let want: BTreeSet<(InvocationId, Usn)> = [
            (InvocationId(1), Usn(1)),
            (InvocationId(0x77), Usn(1)),
            (InvocationId(0x78), Usn(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(names, want);
    }

    #[test]
    fn a_safe_backsync_asks_for_the_ids_the_server_wrote_under_since_the_backup() {
        let sb: Arc<str> = "B".into();
        let a = Dsa::new("A".into(), InvocationId(1), cfg());
        let backup = a.backup(0);
        let b = written_under_0x77(&backup, Guid(1), "cn=mid");
        // Restored again from the same backup, under 0x78: the backup knows
        // nothing of 0x77, so the backsync asks for 1, then for 0x77.
        let mut r = restored_again(&backup, 4);
        let req = r.pull(&sb, PullKind::Backsync, 10, 4).unwrap();
        assert_eq!(req.requester_invocation, InvocationId(1));
        let first_round = r.apply(b.answer(&req), 5);
        assert_eq!(first_round.changed, 0);
        assert_eq!(r.mode().name(), "backsync", "one more round");
        let req = first_round.follow_up.expect("the next id");
        assert_eq!(req.requester_invocation, InvocationId(0x77));
        assert_eq!(req.from_usn, Usn(0), "from its start");
        let second = r.apply(b.answer(&req), 6);
        assert_eq!(second.changed, 1);
        assert!(matches!(second.event, Some(CoreEvent::BacksyncDone { .. })));
        assert!(r.lookup("cn=mid").is_some());
        assert_eq!(
            r.utdv().get(InvocationId(0x77)),
            Usn(0),
            "claims nothing of it"
        );
    }

    #[test]
    fn a_backsync_claims_its_own_writes_only_up_to_the_backup() {
        let sb: Arc<str> = "B".into();
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut b = Dsa::new(sb.clone(), InvocationId(2), cfg());
        a.create(Guid(1), "cn=x", &[], 0).unwrap();
        let backup = a.backup(0);
        a.create(Guid(2), "cn=y", &[], 1).unwrap();
        cycle(&mut b, &a, PullKind::Normal, 10, 2);
        let mut r = Dsa::restore(
            &backup,
            cfg(),
            opts(RestoreStrategy::Backsync, &["B", "C"], 2),
        );
        let req = r.pull(&sb, PullKind::Backsync, 10, 3).unwrap();
        assert_eq!(
            r.apply(b.answer(&req), 3).changed,
            1,
            "the lost cn=y came back"
        );
        assert_eq!(r.usn(), Usn(2), "applied at the next local USN");
        assert_eq!(r.mode().name(), "backsync", "C is still awaited");
        assert_eq!(
            r.backsync_waiting(),
            vec![Arc::<str>::from("C")],
            "B answered"
        );
        assert_eq!(
            r.utdv().get(InvocationId(1)),
            Usn(1),
            "the backup's USN, not the counter"
        );
    }

    #[test]
    fn each_originator_is_checked_against_its_own_vector_entry() {
        let mut a = Dsa::new("A".into(), InvocationId(1), cfg());
        let mut c = Dsa::new("C".into(), InvocationId(3), cfg());
        c.create(Guid(1), "cn=c", &[], 0).unwrap();
        cycle(&mut a, &c, PullKind::Normal, 10, 1);
        a.create(Guid(2), "cn=a", &[], 2).unwrap();
        // In A's USN order: C's object, then A's own.
        let mut fresh = Dsa::new("D".into(), InvocationId(4), cfg());
        let mut req = fresh.pull(a.name(), PullKind::Normal, 10, 3).unwrap();
        req.utdv.raise(InvocationId(3), Usn(99));
        let got: Vec<Guid> = a.answer(&req).changes.iter().map(|s| s.guid()).collect();
        assert_eq!(got, [Guid(2)], "C's is held, A's is not");
    }
}
