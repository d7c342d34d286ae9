//! The oracle: a small reference model of the directory, written apart from
//! the engine and sharing no code with `core::merge`, that says what every
//! converged replication component must hold.
//!
//! What it reads, and from where:
//!
//! - **Client writes**, recorded by the runner at the API boundary before
//!   the engine sees them: server, operation, dn, attributes. The engine's
//!   acknowledgement gives only the write's identity: the object's guid and
//!   the (invocation, USN) the write took. Values, versions and conflict
//!   outcomes are the oracle's own.
//! - **Backups**: the oracle keeps its own copy of its model of the server
//!   at the moment the backup is taken; a restore loads that copy, whatever
//!   the engine's backup holds.
//! - **Deliveries**, recorded by the shell: which objects each reply carried
//!   (by guid) and whether the receiver took it (a reply to no outstanding
//!   request is dropped). The content of each carried object is the
//!   sender's state *in the oracle's model* when it answered.
//! - **Crashes** and **connector deletions**.
//! - **Strict replication consistency** (AD's event 1988), when on: the
//!   oracle keeps, per server, when it last heard from each source (the
//!   replies it applied from a source that answered, from its start or
//!   restore on) and decides on its own, at every ordinary reply that
//!   arrives, whether the server must refuse that source from then on: once
//!   silent past the tombstone lifetime, for the rest of the run. A refusal
//!   the oracle does not owe, or a reply applied from a refused source, is a
//!   [`StrictBreach`]. Its expectation for a server then merges only the
//!   replicas that can feed it: itself and, transitively, the partners it
//!   pulls from and does not refuse.
//!
//! Each modelled replica keeps, per object, every acknowledged write it has
//! seen (the write ids only grow by union), so a write is *lost by nature*
//! when no running replica has seen it at the end. The expected content of
//! a component is the merge of its running replicas under the oracle's own
//! rules: a tombstone absorbs a live state; otherwise the higher stamp
//! (version, time, invocation, USN) wins, per object or per attribute.
//! [`check`] compares every running server's final directory with it.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Granularity, RestoreStrategy};
use crate::core::Guid;
use crate::shell::observe::{Fact, Hazard, PutCause};
use crate::view::ObjectView;

/// A client operation, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Create `dn` with attributes.
    Create {
        /// The dn.
        dn: String,
        /// Its attributes.
        attrs: BTreeMap<String, String>,
    },
    /// Set and remove attributes of `dn`.
    Modify {
        /// The dn.
        dn: String,
        /// Attributes set.
        set: BTreeMap<String, String>,
        /// Attributes removed.
        remove: Vec<String>,
    },
    /// Delete `dn`.
    Delete {
        /// The dn.
        dn: String,
    },
}

/// What the runner records at the API boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiOp {
    /// A client write and whether the engine acknowledged it. An
    /// acknowledged write sits at the position of the engine's `Put` of it.
    Write {
        /// Server index.
        server: usize,
        /// What the client asked.
        op: ClientOp,
        /// Acknowledged.
        acked: bool,
    },
    /// A backup taken under a name (at the position of its `BackedUp`).
    Backup {
        /// Server index.
        server: usize,
        /// The name.
        name: String,
    },
    /// A restore (at the position of its `Restored`).
    Restore {
        /// Server index.
        server: usize,
        /// The backup restored.
        backup: String,
        /// The strategy.
        strategy: RestoreStrategy,
    },
    /// A connector deletion: per server, the servers it can still reach.
    ConnectorDeleted {
        /// Reachable servers, by server.
        reach: Vec<BTreeSet<usize>>,
    },
}

/// An API record and the number of facts recorded before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRec {
    /// Facts before this record.
    pub at_fact: usize,
    /// The record.
    pub op: ApiOp,
}

/// A stamp as the oracle orders it: version, time, invocation, USN.
type Key = (u32, u64, u64, u64);

/// One object in one modelled replica.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Obj {
    dn: String,
    /// The server whose client created it (connector purges).
    creator: usize,
    deleted: bool,
    stamp: Key,
    /// Name to value (`None`: removed) and the key of the write that set it.
    attrs: BTreeMap<String, (Option<String>, Key)>,
    /// Every acknowledged write this replica has seen of the object.
    writes: BTreeSet<usize>,
}

impl Obj {
    fn values(&self) -> BTreeMap<String, String> {
        if self.deleted {
            return BTreeMap::new();
        }
        self.attrs
            .iter()
            .filter_map(|(n, (v, _))| v.clone().map(|v| (n.clone(), v)))
            .collect()
    }

    /// Folds `inc` into `self` (same object).
    fn absorb(&mut self, inc: &Obj, g: Granularity) {
        let writes: BTreeSet<usize> = self.writes.union(&inc.writes).copied().collect();
        let take_whole = match (self.deleted, inc.deleted) {
            (true, false) => false,
            (false, true) => true,
            (true, true) => inc.stamp > self.stamp,
            (false, false) if g == Granularity::Object => {
                // A tie of keys is two writes with one stamp (a reused USN):
                // pick by content so that the order of arrival cannot matter.
                inc.stamp > self.stamp || (inc.stamp == self.stamp && inc.attrs > self.attrs)
            }
            (false, false) => {
                for (n, (v, k)) in &inc.attrs {
                    let mine = self.attrs.get(n);
                    if mine.is_none_or(|(mv, mk)| (k, v) > (mk, mv)) {
                        self.attrs.insert(n.clone(), (v.clone(), *k));
                    }
                }
                self.stamp = self.stamp.max(inc.stamp);
                false
            }
        };
        if take_whole {
            self.deleted = inc.deleted;
            self.stamp = inc.stamp;
            self.attrs = inc.attrs.clone();
        }
        self.writes = writes;
    }
}

type Replica = BTreeMap<Guid, Obj>;

/// One acknowledged write, as the oracle knows it.
#[derive(Debug, Clone)]
struct Write {
    server: usize,
    guid: Guid,
}

/// One object whose final state on a server differs from the oracle's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The server.
    pub server: usize,
    /// The object.
    pub guid: Guid,
    /// What the server holds.
    pub held: String,
    /// What the oracle expects.
    pub expected: String,
    /// Whether an earlier hazard announcement covers it.
    pub announced: bool,
    /// The kinds of the announcements that cover it.
    pub covered_by: BTreeSet<&'static str>,
}

/// A server that handled a source otherwise than strict replication
/// consistency says it must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictBreach {
    /// Simulated ms of the reply.
    pub sim_ms: u64,
    /// The receiving server.
    pub server: usize,
    /// The source.
    pub from: usize,
    /// Whether the server refused the reply (else it applied it).
    pub refused: bool,
    /// How long the server had not heard from the source, ms.
    pub silent_ms: u64,
}

/// What the oracle concludes about one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Acknowledged writes.
    pub acked: usize,
    /// Acknowledged writes no running replica has seen at the end.
    pub lost_by_nature: usize,
    /// Acknowledged writes removed by a connector deletion, by design.
    pub purged: usize,
    /// Every difference, in server then guid order.
    pub differences: Vec<Difference>,
    /// Strict replication: the (server, source) pairs the oracle says are
    /// refused at the end, in order.
    pub refusals: Vec<(usize, usize)>,
    /// Strict replication: replies handled otherwise than it says.
    pub strict_breaches: Vec<StrictBreach>,
}

impl Verdict {
    /// Objects with a difference that every covering announcement explains.
    pub fn announced_losses(&self) -> usize {
        let silent = self.silent_objects();
        let all: BTreeSet<Guid> = self.differences.iter().map(|d| d.guid).collect();
        all.difference(&silent).count()
    }

    /// Objects with at least one difference no announcement covers.
    pub fn silent_losses(&self) -> usize {
        self.silent_objects().len()
    }

    /// The objects counted in [`Verdict::announced_losses`], by the kinds
    /// of the announcements covering their differences, joined with ` + `
    /// in name order: which hazards the losses are owed to.
    pub fn announced_by_cover(&self) -> BTreeMap<String, usize> {
        let silent = self.silent_objects();
        let mut kinds: BTreeMap<Guid, BTreeSet<&'static str>> = BTreeMap::new();
        for d in self
            .differences
            .iter()
            .filter(|d| !silent.contains(&d.guid))
        {
            kinds
                .entry(d.guid)
                .or_default()
                .extend(d.covered_by.iter().copied());
        }
        let mut out = BTreeMap::new();
        for k in kinds.values() {
            let key: Vec<&str> = k.iter().copied().collect();
            *out.entry(key.join(" + ")).or_default() += 1;
        }
        out
    }

    fn silent_objects(&self) -> BTreeSet<Guid> {
        self.differences
            .iter()
            .filter(|d| !d.announced)
            .map(|d| d.guid)
            .collect()
    }
}

/// What the oracle needs of a run besides the records.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Conflict granularity.
    pub granularity: Granularity,
    /// Servers, by index.
    pub servers: usize,
    /// Replication components at the end.
    pub components: &'a [Vec<usize>],
    /// The shell's facts, in order.
    pub facts: &'a [Fact],
    /// The API records, in order of `at_fact`.
    pub api: &'a [ApiRec],
    /// Each server's final directory (`None` when down).
    pub finals: &'a [Option<Vec<ObjectView>>],
    /// Hazards the engine announced.
    pub hazards: &'a [Hazard],
    /// Simulated ms at the end.
    pub end_ms: u64,
    /// Tombstone lifetime, ms: an older tombstone may have been collected.
    pub tombstone_lifetime_ms: u64,
    /// Per server, the servers it pulls from at the end.
    pub partners: &'a [Vec<usize>],
    /// Strict replication consistency was on.
    pub strict_replication: bool,
}

/// The oracle's own account of strict replication consistency.
struct Strict {
    lifetime_ms: u64,
    /// Per server: when it started (the run's start or its last restore).
    started: Vec<u64>,
    /// Per server: when it last heard from each source since then.
    heard: Vec<BTreeMap<usize, u64>>,
    /// Per server: the sources it refuses (for the rest of the run).
    refused: Vec<BTreeSet<usize>>,
    breaches: Vec<StrictBreach>,
}

impl Strict {
    fn new(servers: usize, lifetime_ms: u64) -> Self {
        Strict {
            lifetime_ms,
            started: vec![0; servers],
            heard: vec![BTreeMap::new(); servers],
            refused: vec![BTreeSet::new(); servers],
            breaches: Vec::new(),
        }
    }

    /// An ordinary reply from a source that answered reaches `server`:
    /// whether it must be refused, and the silence behind that.
    fn due(&mut self, server: usize, from: usize, now: u64) -> (bool, u64) {
        let last = (self.heard[server].get(&from).copied()).unwrap_or(self.started[server]);
        let silent = now.saturating_sub(last);
        if silent > self.lifetime_ms {
            self.refused[server].insert(from);
        }
        (self.refused[server].contains(&from), silent)
    }

    fn fact(&mut self, f: &Fact) {
        match *f {
            Fact::Restored { server, sim_ms, .. } => {
                // A new instance counts silences from its restore; what it
                // refuses, it refuses for the rest of the run.
                self.started[server] = sim_ms;
                self.heard[server].clear();
            }
            Fact::StrictRefused {
                sim_ms,
                server,
                from,
                ..
            } => {
                let (due, silent_ms) = self.due(server, from, sim_ms);
                if !due {
                    self.breaches.push(StrictBreach {
                        sim_ms,
                        server,
                        from,
                        refused: true,
                        silent_ms,
                    });
                }
            }
            Fact::Reply {
                sim_ms,
                server,
                from,
                kind,
                ignored,
                refused: false,
                ..
            } => {
                if kind == crate::core::PullKind::Normal {
                    let (due, silent_ms) = self.due(server, from, sim_ms);
                    // A stale reply is ignored anyway; an applied one is a breach.
                    if due && !ignored {
                        self.breaches.push(StrictBreach {
                            sim_ms,
                            server,
                            from,
                            refused: false,
                            silent_ms,
                        });
                    }
                }
                if !ignored {
                    self.heard[server].insert(from, sim_ms);
                }
            }
            _ => {}
        }
    }
}

/// The servers whose replicas feed `s` at the end: itself and, through
/// running servers, every partner each pulls from and does not refuse.
fn feeders(
    s: usize,
    partners: &[Vec<usize>],
    refused: &[BTreeSet<usize>],
    running: &[bool],
) -> BTreeSet<usize> {
    let mut seen = BTreeSet::from([s]);
    let mut todo = vec![s];
    while let Some(x) = todo.pop() {
        for &y in partners.get(x).into_iter().flatten() {
            if running[y] && !refused[x].contains(&y) && seen.insert(y) {
                todo.push(y);
            }
        }
    }
    seen
}

struct Model {
    g: Granularity,
    replicas: Vec<Option<Replica>>,
    backups: BTreeMap<String, Replica>,
    /// Per server, creators whose objects it forgets (connector purges).
    forgotten: Vec<BTreeSet<usize>>,
    /// Replies answered, by message number: the states they carry.
    in_flight: BTreeMap<u64, Vec<(Guid, Obj)>>,
    /// A full resync that kept its backup (no partner) loads it: pending.
    resync_keep: Vec<Option<Replica>>,
    writes: Vec<Write>,
    purged: BTreeSet<usize>,
    /// Per server, the invocation ids its acknowledged writes took.
    written_under: Vec<BTreeSet<u64>>,
    /// Per server, the ids a safe-backsync restore left behind: no write
    /// of the restored server may take one of them again.
    retired: Vec<BTreeSet<u64>>,
    /// Writes that took a retired id: (server, guid, invocation, USN).
    reused: Vec<(usize, Guid, u64, u64)>,
}

impl Model {
    fn write(&mut self, server: usize, op: &ClientOp, ack: (Guid, u64, u64, u64)) {
        let (guid, time, inv, usn) = ack;
        if self.retired[server].contains(&inv) {
            self.reused.push((server, guid, inv, usn));
        }
        self.written_under[server].insert(inv);
        let id = self.writes.len();
        self.writes.push(Write { server, guid });
        let g = self.g;
        let Some(rep) = self.replicas[server].as_mut() else {
            return;
        };
        match op {
            ClientOp::Create { dn, attrs } => {
                let key = (1, time, inv, usn);
                rep.insert(
                    guid,
                    Obj {
                        dn: dn.clone(),
                        creator: server,
                        deleted: false,
                        stamp: key,
                        attrs: attrs
                            .iter()
                            .map(|(n, v)| (n.clone(), (Some(v.clone()), key)))
                            .collect(),
                        writes: BTreeSet::from([id]),
                    },
                );
            }
            ClientOp::Modify { set, remove, .. } => {
                let Some(o) = rep.get_mut(&guid) else { return };
                let key = (o.stamp.0 + 1, time, inv, usn);
                o.stamp = key;
                let changes = set
                    .iter()
                    .map(|(n, v)| (n, Some(v.clone())))
                    .chain(remove.iter().map(|n| (n, None)));
                for (n, v) in changes {
                    let k = match g {
                        Granularity::Object => key,
                        Granularity::Attribute => {
                            let prev = o.attrs.get(n).map_or(0, |(_, k)| k.0);
                            (prev + 1, time, inv, usn)
                        }
                    };
                    o.attrs.insert(n.clone(), (v, k));
                }
                o.writes.insert(id);
            }
            ClientOp::Delete { .. } => {
                let Some(o) = rep.get_mut(&guid) else { return };
                o.stamp = (o.stamp.0 + 1, time, inv, usn);
                o.deleted = true;
                o.attrs.clear();
                o.writes.insert(id);
            }
        }
    }

    fn deliver(&mut self, to: usize, states: &[(Guid, Obj)]) {
        let g = self.g;
        let forgotten = &self.forgotten[to];
        let Some(rep) = self.replicas[to].as_mut() else {
            return;
        };
        for (guid, inc) in states {
            if forgotten.contains(&inc.creator) {
                continue;
            }
            match rep.get_mut(guid) {
                Some(cur) => cur.absorb(inc, g),
                None => {
                    rep.insert(*guid, inc.clone());
                }
            }
        }
    }

    fn forget(&mut self, server: usize) {
        let forgotten = &self.forgotten[server];
        if let Some(rep) = self.replicas[server].as_mut() {
            rep.retain(|_, o| !forgotten.contains(&o.creator));
        }
    }

    fn api(&mut self, op: &ApiOp, ack: Option<&Fact>) {
        match op {
            ApiOp::Write { server, op, acked } => {
                if let (
                    true,
                    Some(Fact::Put {
                        state,
                        invocation,
                        usn,
                        sim_ms,
                        ..
                    }),
                ) = (*acked, ack)
                {
                    self.write(*server, op, (state.guid(), *sim_ms, invocation.0, usn.0));
                }
            }
            ApiOp::Backup { server, name } => {
                if let Some(r) = &self.replicas[*server] {
                    self.backups.insert(name.clone(), r.clone());
                }
            }
            ApiOp::Restore {
                server,
                backup,
                strategy,
            } => {
                let copy = self.backups.get(backup).cloned().unwrap_or_default();
                match strategy {
                    RestoreStrategy::FullResync => {
                        // The backup is thrown away, unless the engine found
                        // no partner to copy from and kept it (its `Put`s
                        // follow).
                        self.replicas[*server] = Some(Replica::new());
                        self.resync_keep[*server] = Some(copy);
                    }
                    RestoreStrategy::SafeBacksync => {
                        // The oracle's reading of a safe backsync: the server
                        // comes back as its backup, and whatever identity its
                        // writes had before, the ones it makes from now on
                        // are named by one never used: no later write may
                        // share a name with a write the backup, a partner or
                        // a message on the wire may still carry.
                        self.replicas[*server] = Some(copy);
                        let before = self.written_under[*server].clone();
                        self.retired[*server].extend(before);
                    }
                    // Campaigns refuse authoritative restores (`CampaignArgs::params`):
                    // here it would only be the backup coming back.
                    RestoreStrategy::Backsync
                    | RestoreStrategy::NewInvocation
                    | RestoreStrategy::Naive
                    | RestoreStrategy::Authoritative => {
                        self.replicas[*server] = Some(copy);
                    }
                }
                self.forget(*server);
            }
            ApiOp::ConnectorDeleted { reach } => {
                for (s, r) in reach.iter().enumerate() {
                    let cut: BTreeSet<usize> =
                        (0..reach.len()).filter(|o| !r.contains(o)).collect();
                    // Writes held only by the forgotten copies are purged by
                    // design, not lost.
                    if let Some(rep) = &self.replicas[s] {
                        for o in rep.values().filter(|o| cut.contains(&o.creator)) {
                            self.purged.extend(o.writes.iter().copied());
                        }
                    }
                    self.forgotten[s].extend(cut);
                    self.forget(s);
                }
            }
        }
    }

    fn fact(&mut self, f: &Fact) {
        match f {
            Fact::Down { server, .. } => {
                self.replicas[*server] = None;
                self.resync_keep[*server] = None;
            }
            Fact::Answered {
                server,
                message,
                guids,
                ..
            } => {
                let states = self.replicas[*server]
                    .as_ref()
                    .map(|r| {
                        guids
                            .iter()
                            .filter_map(|g| r.get(g).map(|o| (*g, o.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                self.in_flight.insert(*message, states);
            }
            Fact::Reply {
                server,
                message,
                ignored: false,
                ..
            } => {
                if let Some(states) = self.in_flight.get(message) {
                    let states = states.clone();
                    self.deliver(*server, &states);
                }
            }
            Fact::Put {
                server,
                cause: PutCause::Restore,
                ..
            } => {
                if let Some(kept) = self.resync_keep[*server].take() {
                    self.replicas[*server] = Some(kept);
                    self.forget(*server);
                }
            }
            _ => {}
        }
    }
}

fn show(o: Option<(bool, &BTreeMap<String, String>)>) -> String {
    match o {
        None => "absent".into(),
        Some((true, _)) => "deleted".into(),
        Some((false, v)) => format!("{v:?}"),
    }
}

/// Runs the model over a run's records and compares its expectation with
/// every running server's final directory.
pub fn check(inp: &Inputs<'_>) -> Verdict {
    let n = inp.servers;
    let mut m = Model {
        g: inp.granularity,
        replicas: vec![Some(Replica::new()); n],
        backups: BTreeMap::new(),
        forgotten: vec![BTreeSet::new(); n],
        in_flight: BTreeMap::new(),
        resync_keep: vec![None; n],
        writes: Vec::new(),
        purged: BTreeSet::new(),
        written_under: vec![BTreeSet::new(); n],
        retired: vec![BTreeSet::new(); n],
        reused: Vec::new(),
    };
    // API records take the place of the fact at their position when that
    // fact is the engine's side of them (a write's Put, a backup, a
    // restore); otherwise they come before it.
    let mut api = inp.api.iter().peekable();
    let mut strict = (inp.strict_replication).then(|| Strict::new(n, inp.tombstone_lifetime_ms));
    for (i, f) in inp.facts.iter().enumerate() {
        if let Some(st) = strict.as_mut() {
            st.fact(f);
        }
        let mut replaced = false;
        while let Some(a) = api.next_if(|a| a.at_fact == i) {
            let own = matches!(
                (&a.op, f),
                (
                    ApiOp::Write { acked: true, .. },
                    Fact::Put {
                        cause: PutCause::Write,
                        ..
                    }
                ) | (ApiOp::Backup { .. }, Fact::BackedUp { .. })
                    | (ApiOp::Restore { .. }, Fact::Restored { .. })
            );
            m.api(&a.op, own.then_some(f));
            replaced |= own;
        }
        if !replaced {
            m.fact(f);
        }
    }
    for a in api {
        m.api(&a.op, None);
    }
    // Which writes each object had, and by whom: what an announcement on a
    // server covers.
    let mut writers: BTreeMap<Guid, BTreeSet<usize>> = BTreeMap::new();
    for w in &m.writes {
        writers.entry(w.guid).or_default().insert(w.server);
    }
    let running: Vec<bool> = inp.finals.iter().map(Option::is_some).collect();
    let seen: BTreeSet<usize> = (0..n)
        .filter(|&s| running[s])
        .filter_map(|s| m.replicas[s].as_ref())
        .flat_map(|r| r.values().flat_map(|o| o.writes.iter().copied()))
        .collect();
    let mut v = Verdict {
        acked: m.writes.len(),
        lost_by_nature: (0..m.writes.len())
            .filter(|w| !seen.contains(w) && !m.purged.contains(w))
            .count(),
        purged: (0..m.writes.len())
            .filter(|w| !seen.contains(w) && m.purged.contains(w))
            .count(),
        differences: Vec::new(),
        refusals: Vec::new(),
        strict_breaches: Vec::new(),
    };
    // A write after a safe-backsync restore under an id the server wrote
    // under before: the restore did not do what it promises, whatever the
    // directories show.
    for &(server, guid, inv, usn) in &m.reused {
        v.differences.push(Difference {
            server,
            guid,
            held: format!("a write under invocation {inv:016x} (USN {usn}), an id it wrote under before its safe-backsync restore"),
            expected: "a write under an invocation id never used before".into(),
            announced: false,
            covered_by: BTreeSet::new(),
        });
    }
    let refused = match strict {
        Some(st) => {
            v.strict_breaches = st.breaches;
            st.refused
        }
        None => vec![BTreeSet::new(); n],
    };
    v.refusals = (refused.iter().enumerate())
        .flat_map(|(s, r)| r.iter().map(move |&f| (s, f)))
        .collect();
    let merged = |servers: &mut dyn Iterator<Item = usize>| {
        let mut expected = Replica::new();
        for s in servers {
            for (g, o) in m.replicas[s].iter().flatten() {
                match expected.get_mut(g) {
                    Some(cur) => cur.absorb(o, m.g),
                    None => {
                        expected.insert(*g, o.clone());
                    }
                }
            }
        }
        expected
    };
    for comp in inp.components {
        let whole = merged(&mut comp.iter().copied().filter(|&s| running[s]));
        // With a refused source inside, the component never converges:
        // each server is held to what can still reach it.
        let split = comp.iter().any(|&s| !refused[s].is_empty());
        for &s in comp {
            let Some(objs) = &inp.finals[s] else { continue };
            let own;
            let expected = if split {
                own = merged(&mut feeders(s, inp.partners, &refused, &running).into_iter());
                &own
            } else {
                &whole
            };
            let held: BTreeMap<Guid, &ObjectView> = objs.iter().map(|o| (o.guid, o)).collect();
            let guids: BTreeSet<Guid> = held.keys().chain(expected.keys()).copied().collect();
            for g in guids {
                let e = expected.get(&g);
                let h = held.get(&g);
                let ok = match (e, h) {
                    (Some(e), Some(h)) => e.deleted == h.deleted && e.values() == h.attrs,
                    // A tombstone past its lifetime may have been collected.
                    (Some(e), None) => {
                        e.deleted && e.stamp.1 + inp.tombstone_lifetime_ms <= inp.end_ms
                    }
                    (None, Some(h)) => h.deleted,
                    (None, None) => true,
                };
                if ok {
                    continue;
                }
                let covered_by: BTreeSet<&'static str> = inp
                    .hazards
                    .iter()
                    .filter(|hz| {
                        hz.server == s
                            || hz.objects.contains(&g)
                            || writers.get(&g).is_some_and(|w| w.contains(&hz.server))
                    })
                    .map(|hz| hz.kind.name())
                    .collect();
                let announced = !covered_by.is_empty();
                let ev = e.map(|e| e.values());
                v.differences.push(Difference {
                    server: s,
                    guid: g,
                    held: show(h.map(|h| (h.deleted, &h.attrs))),
                    expected: match (e, &ev) {
                        (Some(e), Some(vals)) => {
                            format!("`{}` {}", e.dn, show(Some((e.deleted, vals))))
                        }
                        _ => "absent".into(),
                    },
                    announced,
                    covered_by,
                });
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(stamp: Key, deleted: bool, attrs: &[(&str, Option<&str>, Key)]) -> Obj {
        Obj {
            dn: "cn=x".into(),
            creator: 0,
            deleted,
            stamp,
            attrs: attrs
                .iter()
                .map(|(n, v, k)| (n.to_string(), (v.map(str::to_string), *k)))
                .collect(),
            writes: BTreeSet::new(),
        }
    }

    #[test]
    fn a_tombstone_absorbs_a_later_live_state() {
        let mut t = obj((2, 5, 1, 2), true, &[]);
        let live = obj((9, 9, 2, 9), false, &[("mail", Some("a"), (9, 9, 2, 9))]);
        t.absorb(&live, Granularity::Object);
        assert!(t.deleted);
        let mut l = live.clone();
        l.absorb(&obj((2, 5, 1, 2), true, &[]), Granularity::Object);
        assert!(l.deleted, "in either order");
    }

    #[test]
    fn attribute_granularity_keeps_each_attributes_newest_write() {
        let a = obj(
            (2, 10, 1, 5),
            false,
            &[
                ("mail", Some("new"), (2, 10, 1, 5)),
                ("title", Some("t0"), (1, 1, 1, 1)),
            ],
        );
        let b = obj(
            (2, 20, 2, 7),
            false,
            &[
                ("mail", Some("a"), (1, 1, 1, 1)),
                ("title", Some("boss"), (2, 20, 2, 7)),
            ],
        );
        let mut ab = a.clone();
        ab.absorb(&b, Granularity::Attribute);
        let mut ba = b.clone();
        ba.absorb(&a, Granularity::Attribute);
        let want = BTreeMap::from([
            ("mail".to_string(), "new".to_string()),
            ("title".to_string(), "boss".to_string()),
        ]);
        assert_eq!(ab.values(), want);
        assert_eq!(ba.values(), want);
        // At object granularity the higher stamp wins whole.
        let mut ob = a.clone();
        ob.absorb(&b, Granularity::Object);
        assert_eq!(ob.values()["mail"], "a");
    }

    /// Server 0 writes under invocation 1, is restored with `strategy`,
    /// then writes under `then`: the differences the oracle finds.
    fn after_restore(strategy: RestoreStrategy, then: u64) -> Vec<Difference> {
        use crate::core::{InvocationId, ObjectState, Stamp, Usn};
        let put = |guid: u128, inv: u64, usn: u64| {
            let st = Stamp {
                version: 1,
                time: 0,
                invocation: InvocationId(inv),
                usn: Usn(usn),
            };
            Fact::Put {
                sim_ms: 0,
                server: 0,
                invocation: InvocationId(inv),
                usn: Usn(usn),
                state: ObjectState::new(
                    Guid(guid),
                    &format!("cn={guid}"),
                    st,
                    st,
                    false,
                    Vec::new(),
                ),
                cause: PutCause::Write,
            }
        };
        let facts = vec![
            put(1, 1, 1),
            Fact::Restored {
                sim_ms: 0,
                server: 0,
                invocation: InvocationId(then),
                strategy,
                backup_taken_at: 0,
                hwm: Vec::new(),
            },
            put(2, then, 2),
        ];
        let create = |dn: &str| ApiOp::Write {
            server: 0,
            op: ClientOp::Create {
                dn: dn.into(),
                attrs: BTreeMap::new(),
            },
            acked: true,
        };
        let api = vec![
            ApiRec {
                at_fact: 0,
                op: create("cn=1"),
            },
            ApiRec {
                at_fact: 1,
                op: ApiOp::Restore {
                    server: 0,
                    backup: "b".into(),
                    strategy,
                },
            },
            ApiRec {
                at_fact: 2,
                op: create("cn=2"),
            },
        ];
        check(&Inputs {
            granularity: Granularity::Object,
            servers: 1,
            components: &[vec![0]],
            facts: &facts,
            api: &api,
            finals: &[None],
            hazards: &[],
            end_ms: 0,
            tombstone_lifetime_ms: 1,
            partners: &[vec![]],
            strict_replication: false,
        })
        .differences
    }

    #[test]
    fn a_write_after_a_safe_backsync_under_an_old_id_is_a_silent_difference() {
        let d = after_restore(RestoreStrategy::SafeBacksync, 1);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].server, d[0].guid, d[0].announced),
            (0, Guid(2), false)
        );
        assert!(d[0].held.contains("0000000000000001 (USN 2)"), "{d:?}");
        assert!(after_restore(RestoreStrategy::SafeBacksync, 0x77).is_empty());
        // Plain backsync promises no new id: the oracle asks for none.
        assert!(after_restore(RestoreStrategy::Backsync, 1).is_empty());
    }

    #[test]
    fn writes_seen_only_grow() {
        let mut a = obj((1, 1, 1, 1), false, &[]);
        a.writes = BTreeSet::from([1, 2]);
        let mut b = obj((3, 1, 1, 3), false, &[]);
        b.writes = BTreeSet::from([3]);
        a.absorb(&b, Granularity::Object);
        assert_eq!(a.writes, BTreeSet::from([1, 2, 3]));
    }
}
