//! What a run leaves for the invariants: the facts recorded by the shell's
//! campaign hooks (every replica stored or removed, crashes, restores,
//! replies, link faults), the servers' final directories as they answer
//! them, and the convergence figures. Invariants are pure functions of it.
//!
//! [`Replay`] walks the facts once and keeps, per server, the table it held
//! at each moment, and per originating write where it is held:
//!
//! - *actually*: on which servers the replica holds the write (or a later
//!   one that supersedes it);
//! - *in the model*: the same, except that a server only stops holding a
//!   write when it crashes, is restored from a backup, or removes the
//!   object by design (tombstone garbage collection, connector purge). A
//!   correct directory never forgets a write otherwise, so a write the model
//!   still places somewhere at the end must be on every running server of
//!   that replication component. A write whose model holders all went
//!   down is *lost by nature* (it was on no other server): counted, not
//!   flagged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::config::Granularity;
use crate::core::{Guid, InvocationId, ObjectState, Stamp, Usn};
use crate::shell::observe::{Fact, PutCause, RemoveCause};
use crate::view::ObjectView;

/// One server at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalServer {
    /// Its name.
    pub name: String,
    /// `running`, `backsync`, `resync`, `quarantined` or `down`.
    pub mode: String,
    /// Its directory as it answers (`None` when down).
    pub objects: Option<Vec<ObjectView>>,
}

/// Everything one run leaves for the invariants.
#[derive(Debug, Clone)]
pub struct History {
    /// The seed.
    pub seed: u64,
    /// Server names, by index.
    pub servers: Vec<String>,
    /// Replication components at the end (servers joined by sites and
    /// connectors that still exist).
    pub components: Vec<Vec<usize>>,
    /// Per server, the servers it pulls from at the end (its site, and the
    /// bridgeheads across the connectors that still exist).
    pub partners: Vec<Vec<usize>>,
    /// Strict replication consistency was on.
    pub strict_replication: bool,
    /// Conflict granularity.
    pub granularity: Granularity,
    /// The facts, in the order they happened.
    pub facts: Vec<Fact>,
    /// Each server at the end.
    pub finals: Vec<FinalServer>,
    /// Whether the final convergence happened before the campaign stopped waiting.
    pub converged: bool,
    /// Simulated ms from the final heal to convergence (or to giving up).
    pub convergence_ms: u64,
    /// The bound convergence must meet, from the topology's schedules.
    pub bound_ms: u64,
    /// What the client asked, backups, restores and connector deletions,
    /// recorded at the API boundary for the oracle.
    pub api: Vec<crate::campaign::oracle::ApiRec>,
    /// Hazards the engine announced.
    pub hazards: Vec<crate::shell::observe::Hazard>,
    /// Simulated ms at the end.
    pub end_ms: u64,
    /// The tombstone lifetime, ms.
    pub tombstone_lifetime_ms: u64,
}

/// What an originating write was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WriteKind {
    /// A create.
    Create,
    /// A modify.
    Modify,
    /// A delete.
    Delete,
}

/// One originating write, as the writer stored it.
#[derive(Debug, Clone)]
pub struct WriteRec {
    /// Index in [`Replay::writes`].
    pub id: usize,
    /// When.
    pub sim_ms: u64,
    /// The writing server.
    pub server: usize,
    /// Its database instance.
    pub invocation: InvocationId,
    /// The object.
    pub guid: Guid,
    /// Create, modify or delete.
    pub kind: WriteKind,
    /// The write's stamp.
    pub stamp: Stamp,
    /// Attributes it set or removed, with their stamps (what attribute
    /// granularity compares).
    pub attrs: Vec<(Arc<str>, Stamp)>,
    /// The state it left on the writer.
    pub state: ObjectState,
}

impl WriteRec {
    fn of(
        id: usize,
        sim_ms: u64,
        server: usize,
        invocation: InvocationId,
        state: &ObjectState,
    ) -> Self {
        let stamp = state.stamp();
        let kind = if state.deleted() {
            WriteKind::Delete
        } else if state.created() == stamp {
            WriteKind::Create
        } else {
            WriteKind::Modify
        };
        let attrs = state
            .attrs()
            .filter(|a| (a.stamp.invocation, a.stamp.usn) == (stamp.invocation, stamp.usn))
            .map(|a| (Arc::from(a.name), a.stamp))
            .collect();
        WriteRec {
            id,
            sim_ms,
            server,
            invocation,
            guid: state.guid(),
            kind,
            stamp,
            attrs,
            state: state.clone(),
        }
    }

    /// A short description for messages.
    pub fn describe(&self, servers: &[String]) -> String {
        format!(
            "{} of `{}` by {} at {} (invocation {}, USN {})",
            self.kind,
            self.state.rdn(),
            servers.get(self.server).map_or("?", String::as_str),
            crate::campaign::invariants::at(self.sim_ms),
            self.invocation,
            self.stamp.usn
        )
    }
}

impl std::fmt::Display for WriteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteKind::Create => "create",
            WriteKind::Modify => "modify",
            WriteKind::Delete => "delete",
        })
    }
}

/// Whether `state` holds write `w`, or a later write that supersedes it
/// (a tombstone supersedes everything; docs/DOMAIN.md sections 4 and 5).
pub fn holds(state: &ObjectState, w: &WriteRec, g: Granularity) -> bool {
    if state.guid() != w.guid {
        return false;
    }
    if state.deleted() {
        return true;
    }
    match w.kind {
        WriteKind::Create => true,
        WriteKind::Delete => false,
        WriteKind::Modify => match g {
            Granularity::Object => state.stamp() >= w.stamp,
            Granularity::Attribute => w
                .attrs
                .iter()
                .all(|(n, st)| state.attrs().any(|a| a.name == &**n && a.stamp >= *st)),
        },
    }
}

/// Per (invocation, USN), the originating times of the stamps held with
/// it, counted (attribute stamps of one write differ only in version).
type StampCounts = BTreeMap<(InvocationId, Usn), BTreeMap<u64, u32>>;

fn unstamp(m: &mut StampCounts, s: &ObjectState) {
    for st in s.stamps() {
        let key = (st.invocation, st.usn);
        if let Some(c) = m.get_mut(&key) {
            if let Some(k) = c.get_mut(&st.time) {
                *k -= 1;
                if *k == 0 {
                    c.remove(&st.time);
                }
            }
            if c.is_empty() {
                m.remove(&key);
            }
        }
    }
}

/// A server stopped holding a write without crashing, being restored or
/// removing the object by design.
#[derive(Debug, Clone)]
pub struct Regression {
    /// When.
    pub sim_ms: u64,
    /// Where.
    pub server: usize,
    /// The write.
    pub write: usize,
}

/// A server that held an object's tombstone took a live state of it again.
#[derive(Debug, Clone)]
pub struct Resurrection {
    /// When.
    pub sim_ms: u64,
    /// Where.
    pub server: usize,
    /// The object.
    pub guid: Guid,
    /// Its dn.
    pub dn: Arc<str>,
    /// Whether the tombstone had been garbage-collected (a lingering object).
    pub after_gc: bool,
}

/// An originating write took a USN at or below one of its invocation's
/// USNs that a running server already knows: a stamp it holds, or its
/// high-watermark for that invocation. Partners then skip the new write.
#[derive(Debug, Clone)]
pub struct UsnReuse {
    /// The write.
    pub write: usize,
    /// The highest USN of the invocation known elsewhere then.
    pub known: Usn,
    /// The server that knew it, and how (`"a stamp"` or `"its high-watermark"`).
    pub by: (usize, &'static str),
}

/// Two different writes of one invocation with the same USN held at once
/// (a reused USN met the write it reused, for example from an old backup).
#[derive(Debug, Clone)]
pub struct UsnCollision {
    /// When.
    pub sim_ms: u64,
    /// The server that took the second one.
    pub server: usize,
    /// The server holding the other.
    pub other: usize,
    /// The two stamps.
    pub stamps: (Stamp, Stamp),
}

/// A server's local USNs went backwards inside one database instance.
#[derive(Debug, Clone)]
pub struct LocalUsnBackwards {
    /// When.
    pub sim_ms: u64,
    /// Where.
    pub server: usize,
    /// The previous USN and this one.
    pub usns: (Usn, Usn),
}

/// One reply delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When.
    pub sim_ms: u64,
    /// The receiver.
    pub server: usize,
    /// Its database instance count (restores so far).
    pub incarnation: usize,
    /// The source.
    pub from: usize,
    /// The request.
    pub request_id: u64,
    /// Ignored as stale or duplicated.
    pub ignored: bool,
    /// Objects changed.
    pub changed: usize,
    /// Whether the digest moved.
    pub digest_moved: bool,
}

/// The facts walked once.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every originating write.
    pub writes: Vec<WriteRec>,
    /// Writes by object.
    pub by_guid: HashMap<Guid, Vec<usize>>,
    /// Per write, the servers whose replica actually holds it now.
    pub actual: Vec<BTreeSet<usize>>,
    /// Per write, the servers that hold it in the model.
    pub model: Vec<BTreeSet<usize>>,
    /// Per write, whether its model holders all went down at some point.
    pub lost_by_nature: Vec<bool>,
    /// Per write, whether a connector purge removed its last model holder.
    pub purged: Vec<bool>,
    /// Per server, its table at the end (`None` when down).
    pub tables: Vec<Option<BTreeMap<Guid, ObjectState>>>,
    /// Per server, objects whose tombstone it garbage-collected.
    pub collected: Vec<BTreeSet<Guid>>,
    /// Writes forgotten by a running server.
    pub regressions: Vec<Regression>,
    /// Deleted objects that came back.
    pub resurrections: Vec<Resurrection>,
    /// USNs reused.
    pub usn_reuses: Vec<UsnReuse>,
    /// Stamps that named two writes at once.
    pub usn_collisions: Vec<UsnCollision>,
    /// Local USNs that went backwards.
    pub local_backwards: Vec<LocalUsnBackwards>,
    /// Every reply delivered.
    pub deliveries: Vec<Delivery>,
    /// Per server, restores so far.
    pub incarnations: Vec<usize>,
}

impl Replay {
    /// Walks a history's facts.
    pub fn of(h: &History) -> Replay {
        let n = h.servers.len();
        let g = h.granularity;
        let mut r = Replay {
            tables: vec![Some(BTreeMap::new()); n],
            collected: vec![BTreeSet::new(); n],
            incarnations: vec![0; n],
            ..Replay::default()
        };
        // Per server, guids whose tombstone it holds (or collected).
        let mut tomb: Vec<BTreeMap<Guid, bool>> = vec![BTreeMap::new(); n];
        let mut last_usn: Vec<Option<Usn>> = vec![None; n];
        // Per server, the stamps its replicas carry (with counts), and its
        // high-watermarks by source invocation.
        let mut stamps: Vec<StampCounts> = vec![BTreeMap::new(); n];
        let mut hwm: Vec<BTreeMap<InvocationId, Usn>> = vec![BTreeMap::new(); n];
        let comp: Vec<usize> = (0..n)
            .map(|s| {
                h.components
                    .iter()
                    .position(|c| c.contains(&s))
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let mut collided: BTreeSet<(InvocationId, Usn)> = BTreeSet::new();
        for f in &h.facts {
            match f {
                Fact::Put {
                    sim_ms,
                    server,
                    invocation,
                    usn,
                    state,
                    cause,
                } => {
                    let s = *server;
                    if *cause != PutCause::Restore
                        && let Some(prev) = last_usn[s]
                        && *usn <= prev
                    {
                        r.local_backwards.push(LocalUsnBackwards {
                            sim_ms: *sim_ms,
                            server: s,
                            usns: (prev, *usn),
                        });
                    }
                    last_usn[s] = Some(last_usn[s].map_or(*usn, |p| p.max(*usn)));
                    if *cause == PutCause::Write {
                        let id = r.writes.len();
                        let w = WriteRec::of(id, *sim_ms, s, *invocation, state);
                        r.by_guid.entry(w.guid).or_default().push(id);
                        r.writes.push(w);
                        r.actual.push(BTreeSet::new());
                        r.model.push(BTreeSet::new());
                        r.lost_by_nature.push(false);
                        r.purged.push(false);
                    }
                    let table = r.tables[s].get_or_insert_with(BTreeMap::new);
                    if let Some(old) = table.insert(state.guid(), state.clone()) {
                        unstamp(&mut stamps[s], &old);
                    }
                    if *cause == PutCause::Write {
                        // The write's USN must be above every USN of its
                        // invocation known to a running server of its component.
                        let w = r.writes.last().expect("just pushed");
                        let inv = w.stamp.invocation;
                        for p in (0..n).filter(|&p| comp[p] == comp[s] && r.tables[p].is_some()) {
                            let held = stamps[p]
                                .range((inv, Usn(0))..=(inv, Usn(u64::MAX)))
                                .next_back()
                                .map(|((_, u), _)| (*u, "a stamp"));
                            let mark = (p != s)
                                .then(|| hwm[p].get(&inv).map(|u| (*u, "its high-watermark")))
                                .flatten();
                            for (known, how) in held.into_iter().chain(mark) {
                                if known >= w.stamp.usn {
                                    r.usn_reuses.push(UsnReuse {
                                        write: w.id,
                                        known,
                                        by: (p, how),
                                    });
                                }
                            }
                        }
                    }
                    // One stamp, one write: a different write with the same
                    // (invocation, USN) on a running server of the component.
                    for st in state.stamps() {
                        let key = (st.invocation, st.usn);
                        if collided.contains(&key) {
                            continue;
                        }
                        let other = (0..n).find(|&p| {
                            comp[p] == comp[s]
                                && r.tables[p].is_some()
                                && stamps[p]
                                    .get(&key)
                                    .is_some_and(|m| m.keys().any(|t| *t != st.time))
                        });
                        if let Some(p) = other {
                            let t = *stamps[p][&key]
                                .keys()
                                .find(|t| **t != st.time)
                                .expect("found");
                            let theirs = Stamp { time: t, ..st };
                            collided.insert(key);
                            r.usn_collisions.push(UsnCollision {
                                sim_ms: *sim_ms,
                                server: s,
                                other: p,
                                stamps: (st, theirs),
                            });
                        }
                    }
                    for st in state.stamps() {
                        *stamps[s]
                            .entry((st.invocation, st.usn))
                            .or_default()
                            .entry(st.time)
                            .or_default() += 1;
                    }
                    // Resurrection: a tombstone (or its collection) then alive.
                    if state.deleted() {
                        tomb[s].insert(state.guid(), false);
                    } else if let Some(&after_gc) = tomb[s].get(&state.guid())
                        && *cause != PutCause::Restore
                    {
                        r.resurrections.push(Resurrection {
                            sim_ms: *sim_ms,
                            server: s,
                            guid: state.guid(),
                            dn: state.rdn().into(),
                            after_gc,
                        });
                        tomb[s].remove(&state.guid());
                    }
                    for &w in r.by_guid.get(&state.guid()).map_or(&[][..], |v| &v[..]) {
                        let now = holds(state, &r.writes[w], g);
                        if now {
                            r.actual[w].insert(s);
                            r.model[w].insert(s);
                        } else if r.actual[w].remove(&s) && *cause != PutCause::Restore {
                            r.regressions.push(Regression {
                                sim_ms: *sim_ms,
                                server: s,
                                write: w,
                            });
                        }
                    }
                }
                Fact::Remove {
                    server,
                    guid,
                    cause,
                    ..
                } => {
                    let s = *server;
                    let old = r.tables[s].as_mut().and_then(|t| t.remove(guid));
                    if let Some(o) = &old {
                        unstamp(&mut stamps[s], o);
                    }
                    if *cause == RemoveCause::Gc && old.is_some_and(|o| o.deleted()) {
                        r.collected[s].insert(*guid);
                        tomb[s].insert(*guid, true);
                    }
                    let ids = r.by_guid.get(guid).cloned().unwrap_or_default();
                    for w in ids {
                        r.actual[w].remove(&s);
                        // A collected tombstone still counts as held.
                        if *cause == RemoveCause::Purge
                            && r.model[w].remove(&s)
                            && r.model[w].is_empty()
                        {
                            r.purged[w] = true;
                        }
                    }
                }
                Fact::Down { server, .. } | Fact::Restored { server, .. } => {
                    let s = *server;
                    let restored = matches!(f, Fact::Restored { .. });
                    r.tables[s] = restored.then(BTreeMap::new);
                    stamps[s].clear();
                    hwm[s] = match f {
                        Fact::Restored { hwm, .. } => hwm.iter().copied().collect(),
                        _ => BTreeMap::new(),
                    };
                    tomb[s].clear();
                    last_usn[s] = None;
                    if restored {
                        r.incarnations[s] += 1;
                        r.collected[s].clear();
                    }
                    for w in 0..r.writes.len() {
                        r.actual[w].remove(&s);
                        if r.model[w].remove(&s) && r.model[w].is_empty() {
                            r.lost_by_nature[w] = true;
                        }
                    }
                }
                Fact::Reply {
                    sim_ms,
                    server,
                    from,
                    request_id,
                    ignored,
                    changed,
                    before,
                    after,
                    watermark,
                    ..
                } => {
                    if let Some((inv, u)) = watermark {
                        hwm[*server].insert(*inv, *u);
                    }
                    r.deliveries.push(Delivery {
                        sim_ms: *sim_ms,
                        server: *server,
                        incarnation: r.incarnations[*server],
                        from: *from,
                        request_id: *request_id,
                        ignored: *ignored,
                        changed: *changed,
                        digest_moved: before != after,
                    })
                }
                Fact::LinkLost { .. }
                | Fact::LinkDuplicated { .. }
                | Fact::Answered { .. }
                | Fact::BackedUp { .. }
                | Fact::StrictRefused { .. } => {}
            }
        }
        r
    }

    /// The component (index into `h.components`) of a server.
    pub fn component_of(h: &History, server: usize) -> Option<usize> {
        h.components.iter().position(|c| c.contains(&server))
    }

    /// Writes that must be on every running server of component `c` at
    /// the end: those the model still places on a server of it.
    pub fn required_in<'a>(&'a self, h: &'a History, c: usize) -> impl Iterator<Item = usize> + 'a {
        let comp = &h.components[c];
        (0..self.writes.len()).filter(move |&w| self.model[w].iter().any(|s| comp.contains(s)))
    }

    /// Writes lost by nature (all their holders went down), and writes
    /// removed by a connector purge, at the end.
    pub fn lost_counts(&self) -> (usize, usize) {
        let lost = (0..self.writes.len())
            .filter(|&w| self.model[w].is_empty() && self.lost_by_nature[w] && !self.purged[w])
            .count();
        let purged = (0..self.writes.len())
            .filter(|&w| self.model[w].is_empty() && self.purged[w])
            .count();
        (lost, purged)
    }
}
