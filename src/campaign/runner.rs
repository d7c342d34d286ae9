//! The runner: executes a plan on a [`Cluster`] with the shell's fact
//! recording on, then heals everything, restores crashed servers, lets the
//! directory reach quiescence and assembles the [`History`].
//!
//! Every scenario step is executed with exactly the `Cluster` calls that
//! `run::run` makes for it (and nothing else between them), so a schedule
//! without link-fault changes replays as a scenario file step for step.
//! Steps that would not be valid at their point (a modify of an object not
//! live there, a restore of a backup never taken, a backup of a server that
//! is down) are skipped, so a shrunk schedule stays a valid scenario; a write
//! the server will refuse (busy, quarantined, down) is issued and marked
//! `expect_refused`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::campaign::history::{FinalServer, History};
use crate::campaign::oracle::{ApiOp, ApiRec, ClientOp};
use crate::campaign::schedule::{Intent, Op, Setup};
use crate::cluster::Cluster;
use crate::core::{Guid, ObjectState, WriteError};
use crate::error::ClusterError;
use crate::scenario::{Action, ConvergeExpect};
use crate::shell::network::LinkFaults;
use crate::shell::observe::{Event, Fact, PutCause};

/// Faults and workload of one run (or, summed, of a campaign).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Servers crashed.
    pub crashes: u64,
    /// Restores from a backup (any strategy).
    pub restores: u64,
    /// Of which of a running server (crash and restore at one instant).
    pub restores_of_running: u64,
    /// Partitions.
    pub partitions: u64,
    /// Heals.
    pub heals: u64,
    /// Connectors deleted.
    pub connector_deletions: u64,
    /// Periods with link faults (loss, duplication, jitter).
    pub link_fault_periods: u64,
    /// Messages the link faults lost.
    pub messages_lost: u64,
    /// Messages the link faults delivered twice.
    pub messages_duplicated: u64,
    /// Backups taken.
    pub backups: u64,
    /// Originating writes applied.
    pub writes: u64,
    /// Writes refused (busy, quarantined, down).
    pub writes_refused: u64,
    /// Writes lost by nature (on no other server when theirs crashed).
    pub lost_by_nature: u64,
    /// Objects carried by replies answered (every pull kind, duplicates
    /// and replies lost on the way included): the replication traffic.
    pub objects_sent: u64,
    /// Writes removed by a connector deletion, by design.
    pub purged_by_design: u64,
    /// Hazards announced, by kind.
    pub hazards: BTreeMap<String, u64>,
    /// Objects whose final state differs from the oracle's, every
    /// difference covered by an announced hazard.
    pub announced_losses: u64,
    /// Objects with a difference no announcement covers (violations).
    pub silent_losses: u64,
    /// The announced losses by the kinds of hazard covering them (kinds
    /// joined with ` + `).
    pub announced_by_cover: BTreeMap<String, u64>,
    /// Age of each restored backup, ms: in a seed's record, not in the
    /// summary (which takes them for its quantiles, leaving them empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_ages_ms: Vec<u64>,
    /// Each outage (crash to restore), ms (like `backup_ages_ms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages_ms: Vec<u64>,
}

impl FaultCounts {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &FaultCounts) {
        self.crashes += o.crashes;
        self.restores += o.restores;
        self.restores_of_running += o.restores_of_running;
        self.partitions += o.partitions;
        self.heals += o.heals;
        self.connector_deletions += o.connector_deletions;
        self.link_fault_periods += o.link_fault_periods;
        self.messages_lost += o.messages_lost;
        self.messages_duplicated += o.messages_duplicated;
        self.backups += o.backups;
        self.writes += o.writes;
        self.writes_refused += o.writes_refused;
        self.lost_by_nature += o.lost_by_nature;
        self.objects_sent += o.objects_sent;
        self.purged_by_design += o.purged_by_design;
        for (k, n) in &o.hazards {
            *self.hazards.entry(k.clone()).or_default() += n;
        }
        self.announced_losses += o.announced_losses;
        self.silent_losses += o.silent_losses;
        for (k, n) in &o.announced_by_cover {
            *self.announced_by_cover.entry(k.clone()).or_default() += n;
        }
        self.backup_ages_ms.extend(&o.backup_ages_ms);
        self.outages_ms.extend(&o.outages_ms);
    }
}

/// What one run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// For the invariants.
    pub history: History,
    /// The schedule as run (skipped steps left out, refusals marked).
    pub executed: Vec<Op>,
    /// The final steps: heal, restores, converge within the bound.
    pub finale: Vec<Action>,
    /// Faults injected.
    pub counts: FaultCounts,
    /// The event log.
    pub events: Vec<Event>,
    /// The trace hash (every delivery, apply and write).
    pub trace_hash: u64,
    /// Simulated ms at the end.
    pub sim_ms: u64,
    /// Writes that failed otherwise than predicted (the schedule then
    /// does not replay as a valid scenario).
    pub unexpressible: usize,
    /// Where the recorded facts and the servers' own answers disagree
    /// (a bug in the hooks, reported as an engine error).
    pub self_check: Vec<String>,
}

/// The convergence bound of a topology: start-up pulls, expired pulls
/// retried, the periodic intrasite pull (the safety net after lost
/// notifications, twice), and per connector hop on the longest path a
/// scheduled pull, its latency and the notifications inside the next site.
///
/// `extra_rounds` backsync rounds beyond the first (a safe backsync's, one per
/// id written under since the backup) each add a relayed round trip across
/// the diameter and a reply timeout.
pub fn convergence_bound(
    setup: &Setup,
    deleted: &BTreeSet<[String; 2]>,
    extra_rounds: u32,
) -> Duration {
    let cfg = &setup.config;
    let t = &setup.topology;
    let live: Vec<_> = t
        .connectors
        .iter()
        .filter(|c| !deleted.contains(&pair(&c.between)))
        .collect();
    let k = t.sites.len();
    let site = |n: &str| t.sites.iter().position(|s| s.name == n).unwrap_or(0);
    let mut diameter = 0u32;
    for s in 0..k {
        let mut dist = vec![u32::MAX; k];
        dist[s] = 0;
        let mut q = std::collections::VecDeque::from([s]);
        while let Some(x) = q.pop_front() {
            for c in &live {
                let (a, b) = (site(&c.between[0]), site(&c.between[1]));
                for (p, r) in [(a, b), (b, a)] {
                    if p == x && dist[r] == u32::MAX {
                        dist[r] = dist[x] + 1;
                        q.push_back(r);
                    }
                }
            }
        }
        diameter = diameter.max(
            dist.into_iter()
                .filter(|d| *d != u32::MAX)
                .max()
                .unwrap_or(0),
        );
    }
    let schedule = live
        .iter()
        .map(|c| c.schedule.unwrap_or(cfg.connector_schedule))
        .max()
        .unwrap_or_default();
    let latency = live
        .iter()
        .map(|c| c.latency.unwrap_or(cfg.connector_latency))
        .max()
        .unwrap_or_default();
    let site_max = t.sites.iter().map(|s| s.servers.len()).max().unwrap_or(1) as u32;
    let intrasite = cfg.notify_delay + cfg.notify_spacing * site_max + cfg.intrasite_latency * 8;
    let hop = schedule * 2 + latency * 8 + intrasite;
    cfg.startup_delay
        + cfg.reply_timeout * 3
        + cfg.intrasite_schedule * 2
        + intrasite
        + hop * diameter
        + (hop * diameter * 2 + cfg.reply_timeout) * extra_rounds
}

fn pair(b: &[String; 2]) -> [String; 2] {
    let mut p = b.clone();
    p.sort();
    p
}

/// Replication components: servers joined by sites and live connectors.
fn components(setup: &Setup, deleted: &BTreeSet<[String; 2]>) -> Vec<Vec<usize>> {
    let t = &setup.topology;
    let k = t.sites.len();
    let mut root: Vec<usize> = (0..k).collect();
    fn find(r: &mut [usize], x: usize) -> usize {
        let mut x = x;
        while r[x] != x {
            r[x] = r[r[x]];
            x = r[x];
        }
        x
    }
    let site = |n: &str| t.sites.iter().position(|s| s.name == n).unwrap_or(0);
    for c in t
        .connectors
        .iter()
        .filter(|c| !deleted.contains(&pair(&c.between)))
    {
        let (a, b) = (
            find(&mut root, site(&c.between[0])),
            find(&mut root, site(&c.between[1])),
        );
        root[a] = b;
    }
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut idx = 0;
    for (si, s) in t.sites.iter().enumerate() {
        let r = find(&mut root, si);
        for _ in &s.servers {
            by_root.entry(r).or_default().push(idx);
            idx += 1;
        }
    }
    by_root.into_values().collect()
}

/// Who pulls from whom at the end, by server: every server of its site,
/// and for a bridgehead the bridgehead across each connector that still
/// exists (the campaign's topologies have no one-way connections).
fn partners(setup: &Setup, deleted: &BTreeSet<[String; 2]>) -> Vec<Vec<usize>> {
    let t = &setup.topology;
    let names: Vec<&str> = t
        .sites
        .iter()
        .flat_map(|s| s.servers.iter())
        .map(String::as_str)
        .collect();
    let idx = |n: &str| names.iter().position(|m| *m == n);
    let mut out: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); names.len()];
    for s in &t.sites {
        let members: Vec<usize> = s.servers.iter().filter_map(|n| idx(n)).collect();
        for &a in &members {
            out[a].extend(members.iter().copied().filter(|&b| b != a));
        }
    }
    for c in (t.connectors.iter()).filter(|c| !deleted.contains(&pair(&c.between))) {
        if let (Some(a), Some(b)) = (idx(&c.bridgeheads[0]), idx(&c.bridgeheads[1])) {
            out[a].insert(b);
            out[b].insert(a);
        }
    }
    out.into_iter().map(|p| p.into_iter().collect()).collect()
}

enum W {
    Create {
        dn: String,
        attrs: BTreeMap<String, String>,
    },
    Modify {
        dn: Option<String>,
        pick: u64,
        attrs: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    Delete {
        dn: Option<String>,
        pick: u64,
    },
}

struct Runner<'a> {
    setup: &'a Setup,
    c: Cluster,
    idx: BTreeMap<String, usize>,
    mirror: Vec<Option<BTreeMap<Guid, ObjectState>>>,
    facts: Vec<Fact>,
    /// What the oracle reads: client requests, backups, restores and
    /// connector deletions, positioned among the facts.
    api: Vec<ApiRec>,
    up: Vec<bool>,
    down_since: Vec<u64>,
    /// Restored at the current instant: its restore may still be queued,
    /// so whether it takes writes is unknown; writes to it are skipped.
    restored_now: BTreeSet<usize>,
    /// Backups taken: name, server, when, order.
    backups: BTreeMap<String, (usize, u64, usize)>,
    /// Backups taken after the one a later restore used: never restored.
    abandoned: BTreeSet<String>,
    deleted: BTreeSet<[String; 2]>,
    faults: LinkFaults,
    executed: Vec<Op>,
    counts: FaultCounts,
    created: Vec<String>,
    unexpressible: usize,
    now: u64,
}

/// Runs a plan's intents, or a concrete schedule (`Intent::Op`s only).
pub fn run(setup: &Setup, intents: &[Intent]) -> Result<RunOutput, ClusterError> {
    let mut c = Cluster::new(&setup.topology, setup.config.clone(), setup.seed)?;
    c.record_facts();
    let names = c.servers().to_vec();
    let n = names.len();
    let mut r = Runner {
        setup,
        c,
        idx: names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect(),
        mirror: vec![Some(BTreeMap::new()); n],
        facts: Vec::new(),
        api: Vec::new(),
        up: vec![true; n],
        down_since: vec![0; n],
        restored_now: BTreeSet::new(),
        backups: BTreeMap::new(),
        abandoned: BTreeSet::new(),
        deleted: BTreeSet::new(),
        faults: LinkFaults::default(),
        executed: Vec::new(),
        counts: FaultCounts::default(),
        created: Vec::new(),
        unexpressible: 0,
        now: 0,
    };
    for i in intents {
        match i {
            Intent::Op(op) => r.exec(op.clone())?,
            Intent::Modify {
                server,
                pick,
                attrs,
                remove,
            } => r.write(
                server,
                W::Modify {
                    dn: None,
                    pick: *pick,
                    attrs: attrs.clone(),
                    remove: remove.clone(),
                },
            )?,
            Intent::Delete { server, pick } => r.write(
                server,
                W::Delete {
                    dn: None,
                    pick: *pick,
                },
            )?,
        }
        r.drain();
    }
    r.finish(names)
}

impl Runner<'_> {
    /// What `run::run` does after every step.
    fn stepped(&mut self) {
        self.now = self.c.now().as_millis() as u64;
    }

    fn drain(&mut self) {
        for f in self.c.take_facts() {
            match &f {
                Fact::Put { server, state, .. } => {
                    self.mirror[*server]
                        .get_or_insert_with(BTreeMap::new)
                        .insert(state.guid(), state.clone());
                }
                Fact::Remove { server, guid, .. } => {
                    if let Some(t) = &mut self.mirror[*server] {
                        t.remove(guid);
                    }
                }
                Fact::Down { server, .. } => self.mirror[*server] = None,
                Fact::Restored { server, .. } => self.mirror[*server] = Some(BTreeMap::new()),
                Fact::LinkLost { .. } => self.counts.messages_lost += 1,
                Fact::LinkDuplicated { .. } => self.counts.messages_duplicated += 1,
                Fact::Answered { guids, .. } => self.counts.objects_sent += guids.len() as u64,
                Fact::Reply { .. } | Fact::BackedUp { .. } | Fact::StrictRefused { .. } => {}
            }
            self.facts.push(f);
        }
    }

    /// Records `op` at the position of the first fact since `from` that
    /// `is_own` accepts (the engine's side of it), else after every fact.
    fn record_api(&mut self, from: usize, op: ApiOp, is_own: impl Fn(&Fact) -> bool) {
        let at_fact = self.facts[from..]
            .iter()
            .position(is_own)
            .map_or(self.facts.len(), |k| from + k);
        self.api.push(ApiRec { at_fact, op });
    }

    fn live_dns(&self, i: usize) -> Vec<&str> {
        let set: BTreeSet<&str> = self.mirror[i]
            .iter()
            .flat_map(|t| t.values())
            .filter(|s| !s.deleted())
            .map(|s| s.rdn())
            .collect();
        set.into_iter().collect()
    }

    fn is_live(&self, i: usize, dn: &str) -> bool {
        self.mirror[i]
            .as_ref()
            .is_some_and(|t| t.values().any(|s| !s.deleted() && s.rdn() == dn))
    }

    fn exec(&mut self, op: Op) -> Result<(), ClusterError> {
        match op {
            Op::Faults(f) => {
                if f != self.faults {
                    self.c.set_faults(f)?;
                    if f != LinkFaults::default() {
                        self.counts.link_fault_periods += 1;
                    }
                    self.faults = f;
                    self.executed.push(Op::Faults(f));
                }
            }
            Op::Step(a) => self.step(a)?,
        }
        self.drain();
        Ok(())
    }

    fn step(&mut self, a: Action) -> Result<(), ClusterError> {
        let i = |r: &Self, s: &str| {
            r.idx
                .get(s)
                .copied()
                .ok_or_else(|| ClusterError::UnknownServer(s.into()))
        };
        match a {
            Action::Create {
                server, dn, attrs, ..
            } => return self.write(&server, W::Create { dn, attrs }),
            Action::Modify {
                server,
                dn,
                attrs,
                remove,
                ..
            } => {
                return self.write(
                    &server,
                    W::Modify {
                        dn: Some(dn),
                        pick: 0,
                        attrs,
                        remove,
                    },
                );
            }
            // The generator makes no renames: the oracle models a flat directory.
            Action::Rename { .. } => {
                return Err(ClusterError::OutOfBounds {
                    what: "campaign step",
                    message: "campaigns do not rename".into(),
                });
            }
            Action::Delete { server, dn, .. } => {
                return self.write(
                    &server,
                    W::Delete {
                        dn: Some(dn),
                        pick: 0,
                    },
                );
            }
            Action::Backup {
                ref server,
                ref name,
            } => {
                let s = i(self, server)?;
                if !self.up[s] || self.backups.contains_key(name) {
                    return Ok(());
                }
                self.drain();
                let from = self.facts.len();
                self.c.backup(server, name)?;
                self.stepped();
                self.drain();
                let op = ApiOp::Backup {
                    server: s,
                    name: name.clone(),
                };
                self.record_api(
                    from,
                    op,
                    |f| matches!(f, Fact::BackedUp { server, .. } if *server == s),
                );
                let order = self.backups.len();
                self.backups.insert(name.clone(), (s, self.now, order));
                self.counts.backups += 1;
            }
            Action::Crash { ref server } => {
                let s = i(self, server)?;
                self.c.crash(server)?;
                self.stepped();
                if self.up[s] {
                    self.counts.crashes += 1;
                    self.down_since[s] = self.now;
                }
                self.up[s] = false;
            }
            Action::Restore {
                ref server,
                ref backup,
                strategy,
                subtree: _,
            } => {
                let s = i(self, server)?;
                let Some(&(bs, taken, _)) = self.backups.get(backup) else {
                    return Ok(());
                };
                if bs != s {
                    return Ok(());
                }
                let running = self.up[s];
                let strategy = strategy.unwrap_or(self.setup.strategy);
                let order = self.backups[backup].2;
                self.drain();
                let from = self.facts.len();
                self.c.restore(server, backup, Some(strategy))?;
                self.stepped();
                self.drain();
                let op = ApiOp::Restore {
                    server: s,
                    backup: backup.clone(),
                    strategy,
                };
                self.record_api(
                    from,
                    op,
                    |f| matches!(f, Fact::Restored { server, .. } if *server == s),
                );
                self.counts.restores += 1;
                if running {
                    self.counts.restores_of_running += 1;
                } else {
                    self.counts.outages_ms.push(self.now - self.down_since[s]);
                }
                self.counts.backup_ages_ms.push(self.now - taken);
                self.up[s] = true;
                self.restored_now.insert(s);
                // Its newer backups are abandoned (see `generator`).
                self.abandoned.extend(
                    self.backups
                        .iter()
                        .filter(|(_, b)| b.0 == s && b.2 > order)
                        .map(|(n, _)| n.clone()),
                );
            }
            Action::Partition { ref groups } => {
                self.c.partition(groups)?;
                self.stepped();
                self.counts.partitions += 1;
            }
            Action::Heal => {
                self.c.heal()?;
                self.stepped();
                self.counts.heals += 1;
            }
            Action::DeleteConnector { ref between } => {
                let key = pair(between);
                if self.deleted.contains(&key) {
                    return Ok(());
                }
                self.drain();
                let mut after = self.deleted.clone();
                after.insert(key.clone());
                let comps = components(self.setup, &after);
                let reach = (0..self.up.len())
                    .map(|s| {
                        comps
                            .iter()
                            .find(|c| c.contains(&s))
                            .map(|c| c.iter().copied().collect())
                            .unwrap_or_default()
                    })
                    .collect();
                self.api.push(ApiRec {
                    at_fact: self.facts.len(),
                    op: ApiOp::ConnectorDeleted { reach },
                });
                self.c.delete_connector(&between[0], &between[1])?;
                self.stepped();
                self.deleted.insert(key);
                self.counts.connector_deletions += 1;
            }
            Action::Wait { duration } => {
                self.c.wait(duration);
                self.stepped();
                if !duration.is_zero() {
                    self.restored_now.clear();
                }
            }
            // Never generated: a campaign checks with invariants, not steps,
            // and runs without rollback detection (nothing to release).
            Action::Load { .. }
            | Action::Release { .. }
            | Action::Converge { .. }
            | Action::Expect { .. }
            | Action::ExpectLost { .. } => return Ok(()),
        }
        self.executed.push(Op::Step(a));
        Ok(())
    }

    fn write(&mut self, server: &str, w: W) -> Result<(), ClusterError> {
        let Some(&i) = self.idx.get(server) else {
            return Err(ClusterError::UnknownServer(server.into()));
        };
        if self.restored_now.contains(&i) {
            return Ok(());
        }
        let writable = self.up[i] && self.c.status()[i].state == "running";
        let dn = match &w {
            W::Create { dn, .. } => dn.clone(),
            W::Modify { dn: Some(d), .. } | W::Delete { dn: Some(d), .. } => d.clone(),
            W::Modify { dn: None, pick, .. } | W::Delete { dn: None, pick } => {
                let pool: Vec<&str> = if writable {
                    self.live_dns(i)
                } else {
                    self.created.iter().map(String::as_str).collect()
                };
                if pool.is_empty() {
                    return Ok(());
                }
                pool[(*pick % pool.len() as u64) as usize].to_string()
            }
        };
        if writable {
            let live = self.is_live(i, &dn);
            let valid = match w {
                W::Create { .. } => !live,
                _ => live,
            };
            if !valid {
                return Ok(());
            }
        }
        let client = match &w {
            W::Create { attrs, .. } => ClientOp::Create {
                dn: dn.clone(),
                attrs: attrs.clone(),
            },
            W::Modify { attrs, remove, .. } => ClientOp::Modify {
                dn: dn.clone(),
                set: attrs.clone(),
                remove: remove.clone(),
            },
            W::Delete { .. } => ClientOp::Delete { dn: dn.clone() },
        };
        self.drain();
        let from = self.facts.len();
        let pairs = |m: &BTreeMap<String, String>| -> Vec<(String, String)> {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let (r, action) = match w {
            W::Create { attrs, .. } => {
                let p = pairs(&attrs);
                let p: Vec<(&str, &str)> =
                    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let r = self.c.create(server, &dn, &p);
                let a = Action::Create {
                    server: server.into(),
                    dn: dn.clone(),
                    attrs,
                    expect_refused: false,
                };
                (r, a)
            }
            W::Modify { attrs, remove, .. } => {
                let p = pairs(&attrs);
                let p: Vec<(&str, &str)> =
                    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let rm: Vec<&str> = remove.iter().map(String::as_str).collect();
                let r = self.c.modify(server, &dn, &p, &rm);
                let a = Action::Modify {
                    server: server.into(),
                    dn: dn.clone(),
                    attrs,
                    remove,
                    expect_refused: false,
                };
                (r, a)
            }
            W::Delete { .. } => {
                let r = self.c.delete(server, &dn);
                let a = Action::Delete {
                    server: server.into(),
                    dn: dn.clone(),
                    tree: false,
                    expect_refused: false,
                };
                (r, a)
            }
        };
        self.stepped();
        self.drain();
        let acked = r.is_ok();
        let op = ApiOp::Write {
            server: i,
            op: client,
            acked,
        };
        self.record_api(from, op, |f| {
            acked && matches!(f, Fact::Put { server, cause: PutCause::Write, .. } if *server == i)
        });
        let refused = match r {
            Ok(_) => {
                self.counts.writes += 1;
                if matches!(action, Action::Create { .. }) {
                    self.created.push(dn);
                }
                false
            }
            Err(ClusterError::Write(
                WriteError::Busy(_) | WriteError::Quarantined(_) | WriteError::Down(_),
            )) => {
                self.counts.writes_refused += 1;
                true
            }
            Err(ClusterError::Write(_)) => {
                self.unexpressible += 1;
                false
            }
            Err(e) => return Err(e),
        };
        let action = match action {
            Action::Create {
                server, dn, attrs, ..
            } => Action::Create {
                server,
                dn,
                attrs,
                expect_refused: refused,
            },
            Action::Modify {
                server,
                dn,
                attrs,
                remove,
                ..
            } => Action::Modify {
                server,
                dn,
                attrs,
                remove,
                expect_refused: refused,
            },
            Action::Delete {
                server, dn, tree, ..
            } => Action::Delete {
                server,
                dn,
                tree,
                expect_refused: refused,
            },
            other => other,
        };
        self.executed.push(Op::Step(action));
        Ok(())
    }

    /// Heals everything, restores every crashed server from its newest
    /// backup that is not abandoned, converges, and reads every server's directory.
    fn finish(mut self, names: Vec<String>) -> Result<RunOutput, ClusterError> {
        let n = names.len();
        let steps_before = self.executed.len();
        self.exec(Op::Step(Action::Heal))?;
        if self.faults != LinkFaults::default() {
            self.c.set_faults(LinkFaults::default())?;
            self.faults = LinkFaults::default();
        }
        for (s, name) in names.iter().enumerate() {
            if self.up[s] {
                continue;
            }
            let newest = self
                .backups
                .iter()
                .filter(|(name, b)| b.0 == s && !self.abandoned.contains(*name))
                .max_by_key(|(_, b)| b.2)
                .map(|(name, _)| name.clone());
            if let Some(backup) = newest {
                self.exec(Op::Step(Action::Restore {
                    server: name.clone(),
                    backup,
                    strategy: Some(self.setup.strategy),
                    subtree: None,
                }))?;
            }
        }
        let mut finale: Vec<Action> = self
            .executed
            .drain(steps_before..)
            .filter_map(|op| match op {
                Op::Step(a) => Some(a),
                Op::Faults(_) => None,
            })
            .collect();
        // A safe backsync asks each partner once per id its server wrote
        // under since the backup: at most one id per restore of that server.
        let mut restores: BTreeMap<usize, u32> = BTreeMap::new();
        for rec in &self.api {
            if let ApiOp::Restore {
                server,
                strategy: crate::config::RestoreStrategy::SafeBacksync,
                ..
            } = &rec.op
            {
                *restores.entry(*server).or_default() += 1;
            }
        }
        let extra_rounds = restores.into_values().max().unwrap_or(0).saturating_sub(1);
        let bound = convergence_bound(self.setup, &self.deleted, extra_rounds);
        let conv = self.c.converge(bound * 3)?;
        self.stepped();
        finale.push(Action::Converge {
            within: bound,
            expect: ConvergeExpect::Converged,
            max_sim: None,
            max_objects_sent: None,
        });
        self.drain();
        let status = self.c.status();
        let mut finals = Vec::with_capacity(n);
        let mut self_check = Vec::new();
        for (s, name) in names.iter().enumerate() {
            let objects = self.c.objects(name)?;
            if let Some(objs) = &objects {
                let from_facts: BTreeMap<Guid, (bool, u128)> = self.mirror[s]
                    .iter()
                    .flat_map(|t| t.values())
                    .map(|st| (st.guid(), (st.deleted(), st.hash())))
                    .collect();
                let mirror = self.mirror[s].as_ref();
                let same = objs.len() == from_facts.len()
                    && objs.iter().all(|o| {
                        mirror
                            .and_then(|t| t.get(&o.guid))
                            .is_some_and(|st| st.deleted() == o.deleted && st.values() == o.attrs)
                    });
                if !same {
                    self_check.push(format!(
                        "{name}: the recorded facts give {}, the server shows {}",
                        crate::config::count(from_facts.len() as u64, "object"),
                        objs.len()
                    ));
                }
            } else if self.mirror[s].is_some() {
                self_check.push(format!("{name}: down, but the facts give it a table"));
            }
            finals.push(FinalServer {
                name: name.clone(),
                mode: status[s].state.clone(),
                objects,
            });
        }
        let history = History {
            seed: self.setup.seed,
            servers: names,
            components: components(self.setup, &self.deleted),
            partners: partners(self.setup, &self.deleted),
            strict_replication: self.setup.config.strict_replication,
            granularity: self.setup.config.granularity,
            facts: std::mem::take(&mut self.facts),
            finals,
            converged: conv.converged,
            convergence_ms: conv.sim_ms,
            bound_ms: bound.as_millis() as u64,
            api: std::mem::take(&mut self.api),
            hazards: self.c.hazards(),
            end_ms: self.now,
            tombstone_lifetime_ms: self.setup.config.tombstone_lifetime.as_millis() as u64,
        };
        for h in &history.hazards {
            *self.counts.hazards.entry(h.kind.name().into()).or_default() += 1;
        }
        Ok(RunOutput {
            history,
            executed: self.executed,
            finale,
            counts: self.counts,
            events: self.c.events(),
            trace_hash: self.c.trace_hash(),
            sim_ms: self.now,
            unexpressible: self.unexpressible,
            self_check,
        })
    }
}
