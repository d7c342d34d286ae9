//! The invariants: pure functions of a [`History`], each named in reports.
//!
//! 1. `convergence`: the final convergence happened within the bound, every
//!    running server of each replication component answers the same
//!    directory (guids, dns, live/deleted, values) and is back to normal
//!    operation (not busy, quarantined or resyncing).
//! 2. `no-lost-write`: no running server forgets a write it held except by
//!    crashing, being restored or removing the object by design; so every
//!    write that reached another server before a crash is, after the
//!    restore, on every running server of its component (or superseded by a
//!    later write). Writes lost by nature are counted, not flagged; writes
//!    purged by a connector deletion belong only to the side they stay on.
//! 3. `no-resurrection`: a server that held an object's tombstone never
//!    takes a live state of it again, and an object whose delete survived is
//!    alive nowhere at the end.
//! 4. `unique-dns`: after convergence each server shows every live dn once:
//!    the latest-created object keeps the name, the others `<dn> CNF:<guid>`.
//! 5. `usn-monotonic`: each invocation's originating writes take USNs above
//!    every USN it used for a write still held somewhere; each server's local
//!    USNs increase within one database instance.
//! 6. `idempotence`: duplicated and reordered messages change nothing: a
//!    reply ignored as stale or duplicated leaves the table as it was, no
//!    reply is applied twice, and the final state of every object is exactly
//!    the merge of the writes that survived, in whatever order (the fold is
//!    checked in both orders).

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::campaign::history::{History, Replay, WriteKind, holds};
use crate::campaign::oracle::{self, Verdict};
use crate::config::{count, fmt_duration};
use crate::core::Guid;

/// An invariant (or a harness check), as reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// 1: converged within the bound.
    Convergence,
    /// 2: no replicated write lost.
    NoLostWrite,
    /// 3: no deleted object alive again.
    NoResurrection,
    /// 4: every live dn shown once.
    UniqueDns,
    /// 5: USNs of each invocation increase.
    UsnMonotonic,
    /// 6: duplicates and reordering change nothing.
    Idempotence,
    /// 7: every object whose final state differs from the oracle's is
    /// covered by an earlier hazard announcement on a server involved.
    NoSilentLoss,
    /// `--check-determinism`: the same seed gave another run.
    Determinism,
    /// The engine failed (an error or a panic) during the run.
    EngineError,
}

impl Invariant {
    /// The six invariants checked on every run.
    pub const CHECKED: [Invariant; 7] = [
        Invariant::Convergence,
        Invariant::NoLostWrite,
        Invariant::NoResurrection,
        Invariant::UniqueDns,
        Invariant::UsnMonotonic,
        Invariant::Idempotence,
        Invariant::NoSilentLoss,
    ];

    /// The invariants a run that announced a hazard may break: the hazard
    /// is the announcement of exactly that. Such a run is still held to
    /// [`Invariant::NoSilentLoss`], object by object.
    pub const EXCUSED_BY_HAZARDS: [Invariant; 4] = [
        Invariant::Convergence,
        Invariant::NoLostWrite,
        Invariant::NoResurrection,
        Invariant::UsnMonotonic,
    ];

    /// Every name a report can show.
    pub const ALL: [Invariant; 9] = [
        Invariant::Convergence,
        Invariant::NoLostWrite,
        Invariant::NoResurrection,
        Invariant::UniqueDns,
        Invariant::UsnMonotonic,
        Invariant::Idempotence,
        Invariant::NoSilentLoss,
        Invariant::Determinism,
        Invariant::EngineError,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Convergence => "convergence",
            Invariant::NoLostWrite => "no-lost-write",
            Invariant::NoResurrection => "no-resurrection",
            Invariant::UniqueDns => "unique-dns",
            Invariant::UsnMonotonic => "usn-monotonic",
            Invariant::Idempotence => "idempotence",
            Invariant::NoSilentLoss => "no-silent-loss",
            Invariant::Determinism => "determinism",
            Invariant::EngineError => "engine-error",
        }
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario `expect` step that shows a violation (for shrunk files).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Check {
    /// A live object with this dn (and these values) must be on the server.
    Present {
        /// The server.
        server: String,
        /// The dn.
        dn: String,
        /// Values it must have.
        attrs: BTreeMap<String, String>,
    },
    /// No live object with this dn may be on the server.
    Absent {
        /// The server.
        server: String,
        /// The dn.
        dn: String,
    },
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
    /// A scenario check that shows it, where one can.
    #[serde(skip)]
    pub check: Option<Check>,
}

impl Violation {
    pub(crate) fn new(invariant: Invariant, detail: String) -> Self {
        Violation {
            invariant,
            detail,
            check: None,
        }
    }

    fn with(mut self, c: Option<Check>) -> Self {
        self.check = c;
        self
    }
}

/// Every invariant on one history.
pub fn check_all(h: &History) -> Vec<Violation> {
    check_with_oracle(h).0
}

/// Every invariant on one history, and the oracle's verdict. In a run
/// that announced a hazard, violations of [`Invariant::EXCUSED_BY_HAZARDS`]
/// are dropped: what they would flag is what was announced, and the
/// oracle still holds every object to account.
pub fn check_with_oracle(h: &History) -> (Vec<Violation>, Verdict) {
    let r = Replay::of(h);
    let finals: Vec<_> = h.finals.iter().map(|f| f.objects.clone()).collect();
    let verdict = oracle::check(&oracle::Inputs {
        granularity: h.granularity,
        servers: h.servers.len(),
        components: &h.components,
        facts: &h.facts,
        api: &h.api,
        finals: &finals,
        hazards: &h.hazards,
        end_ms: h.end_ms,
        tombstone_lifetime_ms: h.tombstone_lifetime_ms,
        partners: &h.partners,
        strict_replication: h.strict_replication,
    });
    // A source refused under strict replication keeps its component apart
    // for good, by design: the convergence and no-lost-write claims do not
    // hold there, and the oracle holds each server to what can reach it.
    let apart = !verdict.refusals.is_empty();
    let mut v = convergence_in(h, apart);
    if !apart {
        v.extend(no_lost_write_in(h, &r));
    }
    v.extend(no_resurrection_in(h, &r));
    v.extend(unique_dns_in(h, &r));
    v.extend(usn_monotonic_in(h, &r));
    v.extend(idempotence_in(h, &r));
    if !h.hazards.is_empty() {
        v.retain(|x| !Invariant::EXCUSED_BY_HAZARDS.contains(&x.invariant));
    }
    // No hazard excuses these: the oracle decided on its own.
    for b in &verdict.strict_breaches {
        let lifetime = at(h.tombstone_lifetime_ms);
        let (src, silent) = (name(h, b.from), at(b.silent_ms));
        v.push(if b.refused {
            Violation::new(
                Invariant::Convergence,
                format!(
                    "{} refused replication from {src} at {} under strict replication consistency, having heard from it {silent} before, within the tombstone lifetime of {lifetime}",
                    name(h, b.server),
                    at(b.sim_ms)
                ),
            )
        } else {
            Violation::new(
                Invariant::NoResurrection,
                format!(
                    "{} applied a reply from {src} at {} that strict replication consistency refuses (not heard from for {silent}, past the tombstone lifetime of {lifetime}, or refused before): lingering objects may come back",
                    name(h, b.server),
                    at(b.sim_ms)
                ),
            )
        });
    }
    let silent: Vec<_> = verdict
        .differences
        .iter()
        .filter(|d| !d.announced)
        .collect();
    for d in &silent {
        v.push(Violation::new(
            Invariant::NoSilentLoss,
            format!(
                "{} holds {} as {}, the oracle expects {}, and no hazard was announced on {} or on a server that wrote it",
                name(h, d.server),
                d.guid,
                d.held,
                d.expected,
                name(h, d.server)
            ),
        ));
    }
    (v, verdict)
}

/// A simulated time (since the run's start) or span, as reports show it.
pub(crate) fn at(ms: u64) -> String {
    fmt_duration(Duration::from_millis(ms))
}

fn name(h: &History, s: usize) -> &str {
    h.servers.get(s).map_or("?", String::as_str)
}

fn names(h: &History, s: impl IntoIterator<Item = usize>) -> String {
    let v: Vec<&str> = s.into_iter().map(|s| name(h, s)).collect();
    v.join(", ")
}

fn running(h: &History, r: &Replay, s: usize) -> bool {
    r.tables.get(s).is_some_and(Option::is_some)
        && h.finals.get(s).is_some_and(|f| f.objects.is_some())
}

/// Whether a dn is used by one object only over the whole run (then a
/// scenario check by dn is unambiguous).
fn unique_dn(r: &Replay, dn: &str) -> bool {
    let guids: BTreeSet<Guid> = r
        .writes
        .iter()
        .filter(|w| w.state.rdn() == dn)
        .map(|w| w.guid)
        .collect();
    guids.len() == 1
}

/// Invariant 1: convergence within the bound, to the same directory, with
/// every server back to normal.
pub fn convergence(h: &History) -> Vec<Violation> {
    convergence_in(h, false)
}

/// Invariant 1; `apart`: a component kept apart by strict replication is
/// held only to every server being back to normal.
fn convergence_in(h: &History, apart: bool) -> Vec<Violation> {
    let mut v = Vec::new();
    let c = Invariant::Convergence;
    if apart {
        // Not converging is what strict replication does here.
    } else if !h.converged {
        v.push(Violation::new(
            c,
            format!(
                "not converged {} after healing (bound {})",
                at(h.convergence_ms),
                at(h.bound_ms)
            ),
        ));
    } else if h.convergence_ms > h.bound_ms {
        v.push(Violation::new(
            c,
            format!(
                "converged {} after healing, over the bound of {}",
                at(h.convergence_ms),
                at(h.bound_ms)
            ),
        ));
    }
    for f in &h.finals {
        if f.objects.is_some() && f.mode != "running" {
            v.push(Violation::new(
                c,
                format!("{} is still `{}` at the end", f.name, f.mode),
            ));
        }
    }
    type Canon = BTreeMap<Guid, (String, bool, BTreeMap<String, String>)>;
    for comp in h.components.iter().filter(|_| !apart) {
        let dirs: Vec<(usize, Canon)> = comp
            .iter()
            .filter_map(|&s| {
                let objs = h.finals.get(s)?.objects.as_ref()?;
                let canon = objs
                    .iter()
                    .map(|o| (o.guid, (o.dn.clone(), o.deleted, o.attrs.clone())))
                    .collect();
                Some((s, canon))
            })
            .collect();
        let Some((first, base)) = dirs.first() else {
            continue;
        };
        for (s, d) in &dirs[1..] {
            if d == base {
                continue;
            }
            let guid = base
                .keys()
                .chain(d.keys())
                .find(|g| base.get(g) != d.get(g))
                .copied();
            let show = |m: &Canon| match guid.and_then(|g| m.get(&g)) {
                None => "absent".to_string(),
                Some((dn, true, _)) => format!("`{dn}` deleted"),
                Some((dn, false, a)) => format!("`{dn}` {a:?}"),
            };
            v.push(Violation::new(
                c,
                format!(
                    "{} and {} hold different directories ({} vs {}): {} is {} on {} but {} on {}",
                    name(h, *first),
                    name(h, *s),
                    count(base.len() as u64, "object"),
                    count(d.len() as u64, "object"),
                    guid.map_or("?".into(), |g| g.to_string()),
                    show(base),
                    name(h, *first),
                    show(d),
                    name(h, *s)
                ),
            ));
        }
    }
    v
}

/// Invariant 2: no lost replicated write.
pub fn no_lost_write(h: &History) -> Vec<Violation> {
    no_lost_write_in(h, &Replay::of(h))
}

fn no_lost_write_in(h: &History, r: &Replay) -> Vec<Violation> {
    let c = Invariant::NoLostWrite;
    let mut v = Vec::new();
    for g in &r.regressions {
        let w = &r.writes[g.write];
        v.push(Violation::new(
            c,
            format!(
                "{} forgot the {} at {}: a later state that does not hold it replaced it",
                name(h, g.server),
                w.describe(&h.servers),
                at(g.sim_ms)
            ),
        ));
    }
    for (ci, comp) in h.components.iter().enumerate() {
        for wi in r.required_in(h, ci) {
            let w = &r.writes[wi];
            for &s in comp {
                if !running(h, r, s) {
                    continue;
                }
                let table = r.tables[s].as_ref().expect("running");
                let ok = match table.get(&w.guid) {
                    Some(st) => holds(st, w, h.granularity),
                    None => r.collected[s].contains(&w.guid),
                };
                if ok {
                    continue;
                }
                let held: Vec<usize> = r.model[wi]
                    .iter()
                    .copied()
                    .filter(|x| comp.contains(x))
                    .collect();
                let dn = w.state.rdn().to_string();
                let check = match w.kind {
                    WriteKind::Create if unique_dn(r, &dn) => Some(Check::Present {
                        server: name(h, s).into(),
                        dn,
                        attrs: BTreeMap::new(),
                    }),
                    WriteKind::Delete if unique_dn(r, &dn) => Some(Check::Absent {
                        server: name(h, s).into(),
                        dn,
                    }),
                    WriteKind::Modify if unique_dn(r, &dn) => {
                        // Only when no later surviving write supersedes it.
                        let later = r.by_guid[&w.guid].iter().any(|&o| {
                            o != wi
                                && r.writes[o].stamp > w.stamp
                                && r.required_in(h, ci).any(|x| x == o)
                        });
                        (!later).then(|| Check::Present {
                            server: name(h, s).into(),
                            dn,
                            attrs: w
                                .attrs
                                .iter()
                                .filter_map(|(n, _)| {
                                    w.state.value(n).map(|x| (n.to_string(), x.to_string()))
                                })
                                .collect(),
                        })
                    }
                    _ => None,
                };
                v.push(
                    Violation::new(
                        c,
                        format!(
                            "the {}, held by {}, is missing on {} at the end",
                            w.describe(&h.servers),
                            names(h, held),
                            name(h, s)
                        ),
                    )
                    .with(check),
                );
            }
        }
    }
    v
}

/// Invariant 3: no resurrection.
pub fn no_resurrection(h: &History) -> Vec<Violation> {
    no_resurrection_in(h, &Replay::of(h))
}

fn no_resurrection_in(h: &History, r: &Replay) -> Vec<Violation> {
    let c = Invariant::NoResurrection;
    let mut v = Vec::new();
    for x in &r.resurrections {
        let check = unique_dn(r, &x.dn).then(|| Check::Absent {
            server: name(h, x.server).into(),
            dn: x.dn.to_string(),
        });
        v.push(
            Violation::new(
                c,
                format!(
                    "`{}` ({}) came back alive on {} at {} after its tombstone{}",
                    x.dn,
                    x.guid,
                    name(h, x.server),
                    at(x.sim_ms),
                    if x.after_gc {
                        " was garbage-collected (a lingering object)"
                    } else {
                        ""
                    }
                ),
            )
            .with(check),
        );
    }
    for (ci, comp) in h.components.iter().enumerate() {
        for wi in r.required_in(h, ci) {
            let w = &r.writes[wi];
            if w.kind != WriteKind::Delete {
                continue;
            }
            for &s in comp {
                let alive = running(h, r, s)
                    && r.tables[s]
                        .as_ref()
                        .and_then(|t| t.get(&w.guid))
                        .is_some_and(|st| !st.deleted());
                if alive {
                    let check = unique_dn(r, w.state.rdn()).then(|| Check::Absent {
                        server: name(h, s).into(),
                        dn: w.state.rdn().to_string(),
                    });
                    v.push(
                        Violation::new(
                            c,
                            format!(
                                "the {} survived, yet the object is alive on {} at the end",
                                w.describe(&h.servers),
                                name(h, s)
                            ),
                        )
                        .with(check),
                    );
                }
            }
        }
    }
    v
}

/// Invariant 4: unique live dns after convergence.
pub fn unique_dns(h: &History) -> Vec<Violation> {
    unique_dns_in(h, &Replay::of(h))
}

fn unique_dns_in(h: &History, r: &Replay) -> Vec<Violation> {
    let c = Invariant::UniqueDns;
    let mut v = Vec::new();
    for (s, f) in h.finals.iter().enumerate() {
        let Some(objs) = &f.objects else { continue };
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for o in objs.iter().filter(|o| !o.deleted) {
            *shown.entry(&o.dn).or_default() += 1;
        }
        for (dn, k) in shown.iter().filter(|(_, k)| **k > 1) {
            v.push(Violation::new(
                c,
                format!(
                    "{}: `{dn}` is shown for {}",
                    f.name,
                    count(*k as u64, "live object")
                ),
            ));
        }
        // The name rule, from the replicas' creation stamps.
        let Some(Some(table)) = r.tables.get(s) else {
            continue;
        };
        let mut holder: BTreeMap<&str, (crate::core::Stamp, Guid)> = BTreeMap::new();
        for st in table.values().filter(|st| !st.deleted()) {
            let e = holder.entry(st.rdn()).or_insert((st.created(), st.guid()));
            *e = (*e).max((st.created(), st.guid()));
        }
        for o in objs.iter().filter(|o| !o.deleted) {
            let Some(st) = table.get(&o.guid) else {
                continue;
            };
            let want = if holder.get(st.rdn()).map(|x| x.1) == Some(o.guid) {
                st.rdn().to_string()
            } else {
                format!("{} CNF:{}", st.rdn(), o.guid)
            };
            if o.dn != want {
                v.push(Violation::new(
                    c,
                    format!(
                        "{}: {} is shown as `{}`, the name rule gives `{want}`",
                        f.name, o.guid, o.dn
                    ),
                ));
            }
        }
    }
    v
}

/// Invariant 5: USNs of each invocation strictly increase.
pub fn usn_monotonic(h: &History) -> Vec<Violation> {
    usn_monotonic_in(h, &Replay::of(h))
}

fn usn_monotonic_in(h: &History, r: &Replay) -> Vec<Violation> {
    let c = Invariant::UsnMonotonic;
    let mut v = Vec::new();
    for x in &r.usn_reuses {
        let w = &r.writes[x.write];
        v.push(Violation::new(
            c,
            format!(
                "the {} reuses a USN: {} already knew USN {} of that invocation ({})",
                w.describe(&h.servers),
                name(h, x.by.0),
                x.known,
                x.by.1
            ),
        ));
    }
    for x in &r.usn_collisions {
        let (a, b) = x.stamps;
        v.push(Violation::new(
            c,
            format!(
                "USN {} of invocation {} names two writes at once at {}: one made at {} on {}, one made at {} on {}",
                a.usn,
                a.invocation,
                at(x.sim_ms),
                at(a.time),
                name(h, x.server),
                at(b.time),
                name(h, x.other)
            ),
        ));
    }
    for x in &r.local_backwards {
        v.push(Violation::new(
            c,
            format!(
                "{}'s local USN went from {} back to {} at {} within one database instance",
                name(h, x.server),
                x.usns.0,
                x.usns.1,
                at(x.sim_ms)
            ),
        ));
    }
    v
}

/// Invariant 6: idempotence: a reply ignored as stale or duplicated
/// changes nothing, and no reply is applied twice.
pub fn idempotence(h: &History) -> Vec<Violation> {
    idempotence_in(h, &Replay::of(h))
}

fn idempotence_in(h: &History, r: &Replay) -> Vec<Violation> {
    let c = Invariant::Idempotence;
    let mut v = Vec::new();
    let mut applied: BTreeMap<(usize, usize, usize, u64), u64> = BTreeMap::new();
    for d in &r.deliveries {
        if d.ignored {
            if d.digest_moved || d.changed > 0 {
                v.push(Violation::new(
                    c,
                    format!(
                        "{} ignored reply #{} from {} at {} as stale or duplicated, yet its table changed",
                        name(h, d.server),
                        d.request_id,
                        name(h, d.from),
                        at(d.sim_ms)
                    ),
                ));
            }
        } else if let Some(first) =
            applied.insert((d.server, d.incarnation, d.from, d.request_id), d.sim_ms)
        {
            v.push(Violation::new(
                c,
                format!(
                    "{} applied reply #{} from {} twice (at {} and {})",
                    name(h, d.server),
                    d.request_id,
                    name(h, d.from),
                    at(first),
                    at(d.sim_ms)
                ),
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::history::FinalServer;
    use crate::campaign::oracle::{ApiOp, ApiRec, ClientOp};
    use crate::config::Granularity;
    use crate::core::ObjectState;
    use crate::core::{Attr, InvocationId, Replica, Stamp, Usn};
    use crate::shell::observe::{Fact, PutCause, RemoveCause};
    use crate::view::ObjectView;

    const A: usize = 0;
    const B: usize = 1;
    const IA: InvocationId = InvocationId(0xA);
    const IB: InvocationId = InvocationId(0xB);

    fn stamp(version: u32, time: u64, inv: InvocationId, usn: u64) -> Stamp {
        Stamp {
            version,
            time,
            invocation: inv,
            usn: Usn(usn),
        }
    }

    fn state(
        guid: u128,
        dn: &str,
        created: Stamp,
        st: Stamp,
        attrs: &[(&str, &str)],
    ) -> ObjectState {
        let attrs = attrs
            .iter()
            .map(|(n, v)| Attr {
                name: (*n).into(),
                value: Some((*v).into()),
                stamp: st,
            })
            .collect();
        ObjectState::new(Guid(guid), dn, created, st, false, attrs)
    }

    /// A small history builder: facts in order, finals from the tables.
    struct Hb {
        facts: Vec<Fact>,
        api: Vec<ApiRec>,
        next_request: u64,
        t: u64,
        converged: bool,
        convergence_ms: u64,
        modes: Vec<&'static str>,
        usn: [u64; 2],
    }

    impl Hb {
        fn new() -> Self {
            Hb {
                facts: Vec::new(),
                api: Vec::new(),
                next_request: 1_000,
                t: 0,
                converged: true,
                convergence_ms: 1_000,
                modes: vec!["running", "running"],
                usn: [0, 0],
            }
        }

        fn put(
            &mut self,
            server: usize,
            inv: InvocationId,
            s: &ObjectState,
            cause: PutCause,
        ) -> &mut Self {
            self.t += 10;
            self.usn[server] += 1;
            self.facts.push(Fact::Put {
                sim_ms: self.t,
                server,
                invocation: inv,
                usn: Usn(self.usn[server]),
                state: s.clone(),
                cause,
            });
            self
        }

        /// A client write: the request the oracle reads, at the position
        /// of the engine's Put of it.
        fn write(&mut self, server: usize, inv: InvocationId, s: &ObjectState) -> &mut Self {
            let dn = s.rdn().to_string();
            let op = if s.deleted() {
                ClientOp::Delete { dn }
            } else if s.created() == s.stamp() {
                ClientOp::Create {
                    dn,
                    attrs: s.values(),
                }
            } else {
                ClientOp::Modify {
                    dn,
                    set: s.values(),
                    remove: Vec::new(),
                }
            };
            self.api.push(ApiRec {
                at_fact: self.facts.len(),
                op: ApiOp::Write {
                    server,
                    op,
                    acked: true,
                },
            });
            self.put(server, inv, s, PutCause::Write)
        }

        /// A reply from the other server carrying `s`, applied.
        fn apply(&mut self, server: usize, inv: InvocationId, s: &ObjectState) -> &mut Self {
            self.next_request += 1;
            let d = crate::core::Digest::default();
            self.facts.push(Fact::Answered {
                sim_ms: self.t,
                server: 1 - server,
                to: server,
                request_id: self.next_request,
                message: self.next_request,
                guids: vec![s.guid()],
            });
            self.facts.push(Fact::Reply {
                sim_ms: self.t,
                server,
                from: 1 - server,
                request_id: self.next_request,
                message: self.next_request,
                kind: crate::core::PullKind::Normal,
                ignored: false,
                refused: false,
                changed: 1,
                before: d,
                after: d,
                watermark: None,
            });
            self.put(server, inv, s, PutCause::Apply)
        }

        fn restored(
            &mut self,
            server: usize,
            inv: InvocationId,
            table: &[&ObjectState],
            usn: u64,
        ) -> &mut Self {
            self.t += 10;
            self.facts.push(Fact::Restored {
                sim_ms: self.t,
                server,
                invocation: inv,
                strategy: crate::RestoreStrategy::Naive,
                backup_taken_at: 0,
                hwm: Vec::new(),
            });
            self.usn[server] = 0;
            for s in table {
                self.put(server, inv, s, PutCause::Restore);
            }
            self.usn[server] = usn;
            self
        }

        fn down(&mut self, server: usize) -> &mut Self {
            self.t += 10;
            self.facts.push(Fact::Down {
                sim_ms: self.t,
                server,
            });
            self
        }

        fn reply(
            &mut self,
            server: usize,
            request_id: u64,
            ignored: bool,
            moved: bool,
        ) -> &mut Self {
            self.t += 10;
            let d = crate::core::Digest::default();
            let mut after = d;
            if moved {
                after.count += 1;
            }
            self.facts.push(Fact::Reply {
                sim_ms: self.t,
                server,
                from: 1 - server,
                request_id,
                message: request_id,
                kind: crate::core::PullKind::Normal,
                ignored,
                refused: false,
                changed: 0,
                before: d,
                after,
                watermark: None,
            });
            self
        }

        fn build(&self) -> History {
            let mut h = History {
                seed: 0,
                servers: vec!["A".into(), "B".into()],
                components: vec![vec![A, B]],
                partners: vec![vec![B], vec![A]],
                strict_replication: false,
                granularity: Granularity::Object,
                facts: self.facts.clone(),
                finals: Vec::new(),
                converged: self.converged,
                convergence_ms: self.convergence_ms,
                bound_ms: 10_000,
                api: self.api.clone(),
                hazards: Vec::new(),
                end_ms: 0,
                tombstone_lifetime_ms: u64::MAX / 2,
            };
            let r = Replay::of(&h);
            h.finals = (0..2)
                .map(|s| FinalServer {
                    name: h.servers[s].clone(),
                    mode: self.modes[s].to_string(),
                    objects: r.tables[s].as_ref().map(views),
                })
                .collect();
            h
        }
    }

    /// Objects as a server shows them (the CNF rule applied).
    fn views(t: &BTreeMap<Guid, ObjectState>) -> Vec<ObjectView> {
        let mut holder: BTreeMap<&str, (Stamp, Guid)> = BTreeMap::new();
        for s in t.values().filter(|s| !s.deleted()) {
            let e = holder.entry(s.rdn()).or_insert((s.created(), s.guid()));
            *e = (*e).max((s.created(), s.guid()));
        }
        t.values()
            .map(|s| {
                let dn = match holder.get(s.rdn()) {
                    Some((_, g)) if *g != s.guid() && !s.deleted() => {
                        format!("{} CNF:{}", s.rdn(), s.guid())
                    }
                    _ => s.rdn().to_string(),
                };
                let r = Replica {
                    state: s.clone(),
                    usn_changed: Usn(1),
                    usn_created: Usn(1),
                };
                ObjectView::new(dn, &r)
            })
            .collect()
    }

    /// A correct story: A creates o1 and modifies it, B creates o2 and
    /// deletes it, each replicates to the other.
    fn correct() -> Hb {
        let c1 = stamp(1, 10, IA, 1);
        let o1 = state(1, "cn=o1", c1, c1, &[("title", "t0")]);
        let m1 = stamp(2, 20, IA, 2);
        let o1m = state(1, "cn=o1", c1, m1, &[("title", "t1")]);
        let c2 = stamp(1, 30, IB, 1);
        let o2 = state(2, "cn=o2", c2, c2, &[("title", "t0")]);
        let o2d = o2.tombstone(stamp(2, 40, IB, 2));
        let mut b = Hb::new();
        b.write(A, IA, &o1)
            .write(A, IA, &o1m)
            .apply(B, IB, &o1m)
            .write(B, IB, &o2)
            .apply(A, IA, &o2)
            .write(B, IB, &o2d)
            .reply(A, 1, false, true)
            .reply(A, 1, true, false)
            .apply(A, IA, &o2d);
        b
    }

    fn fired(v: &[Violation], i: Invariant) -> bool {
        v.iter().any(|x| x.invariant == i)
    }

    #[test]
    fn a_correct_history_breaks_nothing() {
        let h = correct().build();
        assert_eq!(check_all(&h), Vec::new());
        let r = Replay::of(&h);
        assert_eq!(r.writes.len(), 4);
        assert_eq!(r.lost_counts(), (0, 0));
    }

    #[test]
    fn convergence_fires_when_not_converged_late_or_different() {
        let mut b = correct();
        b.converged = false;
        assert!(fired(&convergence(&b.build()), Invariant::Convergence));
        let mut b = correct();
        b.convergence_ms = 20_000;
        assert!(fired(&convergence(&b.build()), Invariant::Convergence));
        let mut b = correct();
        b.modes[B] = "backsync";
        assert!(fired(&convergence(&b.build()), Invariant::Convergence));
        // B never hears of the delete: the directories differ.
        let mut b = correct();
        b.facts.pop();
        let c = convergence(&b.build());
        assert!(fired(&c, Invariant::Convergence), "{c:?}");
        assert!(convergence(&correct().build()).is_empty());
    }

    #[test]
    fn no_lost_write_fires_on_a_forgotten_or_missing_write() {
        // B replaces A's modify with the older state: a regression.
        let c1 = stamp(1, 10, IA, 1);
        let o1 = state(1, "cn=o1", c1, c1, &[("title", "t0")]);
        let mut b = correct();
        b.apply(B, IB, &o1);
        let v = no_lost_write(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("forgot")), "{v:?}");
        // A write that reached B, A crashes and comes back without it.
        let mut b = correct();
        b.down(A).restored(A, IA, &[], 0);
        let v = no_lost_write(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("missing on A")), "{v:?}");
        assert!(v.iter().any(|x| x.check.is_some()));
        assert!(no_lost_write(&correct().build()).is_empty());
    }

    #[test]
    fn writes_lost_by_nature_are_counted_not_flagged() {
        // A creates o3 and crashes before it replicates anywhere.
        let c3 = stamp(1, 100, IA, 3);
        let o3 = state(3, "cn=o3", c3, c3, &[]);
        let mut b = correct();
        b.write(A, IA, &o3).down(A);
        let restored: Vec<ObjectState> = {
            let r = Replay::of(&correct().build());
            r.tables[A].as_ref().unwrap().values().cloned().collect()
        };
        b.restored(
            A,
            InvocationId(0xA2),
            &restored.iter().collect::<Vec<_>>(),
            0,
        );
        let h = b.build();
        assert_eq!(check_all(&h), Vec::new());
        assert_eq!(Replay::of(&h).lost_counts(), (1, 0));
    }

    #[test]
    fn no_resurrection_fires_when_a_tombstone_comes_back_alive() {
        let c2 = stamp(1, 30, IB, 1);
        let o2 = state(2, "cn=o2", c2, c2, &[("title", "t0")]);
        let mut b = correct();
        b.apply(A, IA, &o2);
        let v = no_resurrection(&b.build());
        assert!(fired(&v, Invariant::NoResurrection), "{v:?}");
        assert!(no_resurrection(&correct().build()).is_empty());
        // Alive at the end although its delete survived (a restore brought it).
        let mut b = correct();
        let c1 = stamp(1, 10, IA, 1);
        let o1 = state(1, "cn=o1", c1, stamp(2, 20, IA, 2), &[("title", "t1")]);
        b.down(A).restored(A, IA, &[&o1, &o2], 2);
        let v = no_resurrection(&b.build());
        assert!(
            v.iter().any(|x| x.detail.contains("alive on A at the end")),
            "{v:?}"
        );
    }

    #[test]
    fn a_gc_then_alive_again_is_a_lingering_object() {
        let c2 = stamp(1, 30, IB, 1);
        let o2 = state(2, "cn=o2", c2, c2, &[("title", "t0")]);
        let mut b = correct();
        b.facts.push(Fact::Remove {
            sim_ms: 500,
            server: A,
            guid: Guid(2),
            cause: RemoveCause::Gc,
        });
        assert!(
            no_resurrection(&b.build()).is_empty(),
            "a collected tombstone is fine"
        );
        b.apply(A, IA, &o2);
        let v = no_resurrection(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("lingering")), "{v:?}");
    }

    #[test]
    fn unique_dns_fires_on_a_shown_duplicate_or_a_wrong_holder() {
        let mut h = correct().build();
        let mut twin = h.finals[A].objects.as_ref().unwrap()[0].clone();
        twin.guid = Guid(99);
        h.finals[A].objects.as_mut().unwrap().push(twin);
        assert!(fired(&unique_dns(&h), Invariant::UniqueDns));
        // A name conflict shown the wrong way round.
        let cx = stamp(1, 50, IA, 3);
        let cy = stamp(1, 50, IB, 3);
        let x = state(10, "cn=x", cx, cx, &[]);
        let y = state(11, "cn=x", cy, cy, &[]);
        let mut b = correct();
        b.write(A, IA, &x)
            .write(B, IB, &y)
            .apply(A, IA, &y)
            .apply(B, IB, &x);
        let mut h = b.build();
        assert!(check_all(&h).is_empty(), "{:?}", check_all(&h));
        for o in h.finals[B].objects.as_mut().unwrap() {
            if o.guid == Guid(10) {
                o.dn = "cn=x".into();
            } else if o.guid == Guid(11) {
                o.dn = format!("cn=x CNF:{}", Guid(11));
            }
        }
        let v = unique_dns(&h);
        assert!(v.iter().any(|x| x.detail.contains("name rule")), "{v:?}");
    }

    #[test]
    fn usn_monotonic_fires_on_a_reused_usn() {
        // A restored (same invocation) from a backup at USN 1 writes USN 2
        // again, while B holds A's first USN 2 write.
        let mut b = correct();
        let c1 = stamp(1, 10, IA, 1);
        let o1 = state(1, "cn=o1", c1, c1, &[("title", "t0")]);
        b.down(A).restored(A, IA, &[&o1], 1);
        let c5 = stamp(1, 900, IA, 2);
        let o5 = state(5, "cn=o5", c5, c5, &[]);
        b.write(A, IA, &o5);
        let v = usn_monotonic(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("reuses a USN")), "{v:?}");
        // Local USNs going backwards inside one instance.
        let mut b = correct();
        b.usn[B] = 0;
        let c6 = stamp(1, 950, IB, 9);
        b.write(B, IB, &state(6, "cn=o6", c6, c6, &[]));
        let v = usn_monotonic(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("went from")), "{v:?}");
        assert!(usn_monotonic(&correct().build()).is_empty());
    }

    #[test]
    fn a_reused_usn_of_a_write_lost_by_nature_is_fine() {
        let mut b = Hb::new();
        let c1 = stamp(1, 10, IA, 1);
        let o1 = state(1, "cn=o1", c1, c1, &[]);
        b.write(A, IA, &o1).down(A).restored(A, IA, &[], 0);
        let c2 = stamp(1, 20, IA, 1);
        b.write(A, IA, &state(2, "cn=o2", c2, c2, &[])).apply(
            B,
            IB,
            &state(2, "cn=o2", c2, c2, &[]),
        );
        assert!(usn_monotonic(&b.build()).is_empty());
    }

    #[test]
    fn idempotence_fires_on_a_changing_duplicate_or_an_applied_twice() {
        let mut b = correct();
        b.reply(A, 7, true, true);
        let v = idempotence(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("ignored")), "{v:?}");
        let mut b = correct();
        b.reply(A, 1, false, false);
        let v = idempotence(&b.build());
        assert!(v.iter().any(|x| x.detail.contains("twice")), "{v:?}");
        assert!(idempotence(&correct().build()).is_empty());
    }

    #[test]
    fn no_silent_loss_fires_on_a_state_no_write_makes_unless_announced() {
        // B ends with an old value of o1: no acknowledged write set it last.
        let mut h = correct().build();
        for o in h.finals[B].objects.as_mut().unwrap() {
            if o.guid == Guid(1) {
                o.attrs.insert("title".into(), "t0".into());
            }
        }
        let v = check_all(&h);
        assert!(fired(&v, Invariant::NoSilentLoss), "{v:?}");
        assert!(v.iter().any(|x| x.detail.contains("B holds")), "{v:?}");
        // The same difference after a hazard announced on B is announced.
        let hazard = |server| crate::shell::observe::Hazard {
            sim_ms: 1,
            kind: crate::shell::observe::HazardKind::BacksyncTimeout,
            server,
            objects: Vec::new(),
            usns: None,
            text: String::new(),
        };
        h.hazards.push(hazard(B));
        let (v, verdict) = check_with_oracle(&h);
        assert!(!fired(&v, Invariant::NoSilentLoss), "{v:?}");
        assert_eq!(
            (verdict.announced_losses(), verdict.silent_losses()),
            (1, 0)
        );
        // On A, which wrote o1, it is announced too; a server that neither
        // holds nor wrote the object does not cover it.
        h.hazards = vec![hazard(A)];
        assert_eq!(check_with_oracle(&h).1.silent_losses(), 0);
        h.hazards = vec![hazard(7)];
        assert_eq!(check_with_oracle(&h).1.silent_losses(), 1);
        // A missing object is a difference as well.
        let mut h = correct().build();
        h.finals[A]
            .objects
            .as_mut()
            .unwrap()
            .retain(|o| o.guid != Guid(1));
        assert!(fired(&check_all(&h), Invariant::NoSilentLoss));
    }

    #[test]
    fn usn_monotonic_fires_when_a_reused_usn_meets_its_first_write() {
        // A writes o1 at USN 1 (it reaches B), is restored from nothing and
        // reuses USN 1 for o2 (fine: B was down, nobody knew it); then B
        // comes back from a backup holding the first write: two writes, one stamp.
        let c1 = stamp(1, 10, IA, 1);
        let o1 = state(1, "cn=o1", c1, c1, &[]);
        let mut b = Hb::new();
        b.write(A, IA, &o1)
            .apply(B, IB, &o1)
            .down(B)
            .down(A)
            .restored(A, IA, &[], 0);
        let c2 = stamp(1, 20, IA, 1);
        let o2 = state(2, "cn=o2", c2, c2, &[]);
        b.write(A, IA, &o2);
        assert!(usn_monotonic(&b.build()).is_empty());
        b.restored(B, IB, &[&o1], 5);
        let v = usn_monotonic(&b.build());
        assert!(
            v.iter().any(|x| x.detail.contains("names two writes")),
            "{v:?}"
        );
    }
}
