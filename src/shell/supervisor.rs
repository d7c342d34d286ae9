//! The `Supervisor` actor: injects faults, keeps backups, counts what is
//! lost by nature, and detects and measures convergence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use crate::config::RestoreStrategy;
use crate::core::{Backup, Guid, InvocationId, OwnWrite, RestoreOptions, Stamp, Usn};
use crate::error::ClusterError;
use crate::shell::Shared;
use crate::shell::network::{NetControl, Network};
use crate::shell::observe::{Hazard, HazardKind};
use crate::shell::server::{CrashServer, DirectoryServer, Holds, Purge, RestoreServer, TakeBackup};

/// The figures of one convergence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Convergence {
    /// Whether every running server of each replication component held the
    /// same directory with nothing in flight before the bound.
    pub converged: bool,
    /// Simulated ms from the start of the wait to convergence (or the bound).
    pub sim_ms: u64,
    /// Wall-clock ms of the same.
    pub wall_ms: f64,
    /// Replication messages sent meanwhile.
    pub messages: u64,
    /// Objects carried in replies meanwhile.
    pub objects_sent: u64,
    /// Objects changed on some server by replication meanwhile.
    pub objects_repaired: u64,
    /// Connector hops of relayed messages meanwhile (store-and-forward
    /// between sites, `shell::network`).
    pub relayed: u64,
    /// Relayed messages still held by a server at the end (in flight: none
    /// once converged).
    pub held: u64,
}

/// The supervisor.
pub struct Supervisor {
    shared: Arc<Shared>,
    servers: Vec<Addr<DirectoryServer>>,
    net: Addr<Network>,
    /// Shared with the restores that use them: a restore moves a pointer,
    /// not a copy of the table.
    backups: BTreeMap<String, Arc<Backup>>,
    /// Per server, the newest backup's (invocation, usn): writes up to it survive a crash.
    newest_backup: Vec<Option<(InvocationId, Usn)>>,
    running: Vec<bool>,
    /// Which server each invocation id belongs to (connector purges).
    invocations: BTreeMap<InvocationId, usize>,
    incarnations: Vec<u64>,
    /// Per server, its restores so far: (when, the backup's taken_at, the
    /// backup's USN, its name). A backup taken between a restore's backup
    /// and the restore itself belongs to an abandoned timeline.
    restores: Vec<Vec<(u64, u64, Usn, String)>>,
    /// Writes of crashed servers that were in none of their backups: lost
    /// while no running server and no backup holds them (`LostCmd`).
    at_risk: BTreeMap<(Guid, Stamp), OwnWrite>,
    /// Whether a restore that keeps its invocation id (backsync, naive)
    /// has run: only those hand USNs out again.
    usns_reused: bool,
    /// Per server, the invocation ids it has run under, oldest first.
    ids: Vec<Vec<InvocationId>>,
}

impl Supervisor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        servers: Vec<Addr<DirectoryServer>>,
        net: Addr<Network>,
    ) -> Self {
        let n = servers.len();
        let invocations = (0..n).map(|i| (shared.invocation_for(i, 0), i)).collect();
        let ids = (0..n).map(|i| vec![shared.invocation_for(i, 0)]).collect();
        Supervisor {
            shared,
            servers,
            net,
            backups: BTreeMap::new(),
            newest_backup: vec![None; n],
            running: vec![true; n],
            invocations,
            incarnations: vec![0; n],
            restores: vec![Vec::new(); n],
            at_risk: BTreeMap::new(),
            usns_reused: false,
            ids,
        }
    }

    fn event(&self, text: String) {
        self.shared.obs.event(self.shared.now(), text);
    }

    /// Invocations of servers that `server`'s site can no longer reach.
    fn cut_off(&self, server: usize) -> BTreeSet<InvocationId> {
        let layout = self.shared.layout();
        if layout.has_connections() {
            // Connections are never deleted: no one is cut off.
            return BTreeSet::new();
        }
        let sites = layout.reachable_sites(layout.site_of[server]);
        self.invocations
            .iter()
            .filter(|(_, s)| !sites.contains(&layout.site_of[**s]))
            .map(|(i, _)| *i)
            .collect()
    }

    /// Crashes a running server and counts the writes that only it held;
    /// gives them too, with the rest of its writes in no backup of its.
    fn crash(
        &mut self,
        idx: usize,
    ) -> impl Future<Output = Result<(u64, Arc<Vec<OwnWrite>>), ClusterError>> + 'static {
        self.running[idx] = false;
        self.net.do_send(NetControl::Down(idx, true));
        let addr = self.servers[idx].clone();
        let kept = self.newest_backup[idx];
        let others: Vec<_> = (0..self.servers.len())
            .filter(|&o| o != idx && self.running[o])
            .map(|o| self.servers[o].clone())
            .collect();
        async move {
            let writes = Arc::new(addr.send(CrashServer { kept }).await?);
            let mut held = vec![false; writes.len()];
            for o in others {
                for (h, o) in held.iter_mut().zip(o.send(Holds(writes.clone())).await?) {
                    *h |= o;
                }
            }
            Ok((held.iter().filter(|h| !**h).count() as u64, writes))
        }
    }

    /// Keeps a crashed server's writes, for [`LostCmd`] to recount.
    fn remember(&mut self, writes: &[OwnWrite]) {
        for w in writes {
            self.at_risk.insert((w.guid, w.stamp), w.clone());
        }
    }
}

impl Supervisor {
    /// Announces what restoring `backup` on `server` risks beyond what the
    /// strategy itself decides: a backup from an abandoned timeline, or one
    /// older than the tombstone lifetime.
    fn announce_restore_hazards(
        &self,
        server: usize,
        name: &str,
        backup: &Backup,
        strategy: RestoreStrategy,
    ) {
        let now = self.shared.now();
        let who = self.shared.layout().servers[server].clone();
        // The earliest restore after this backup was taken that used an
        // older backup: the timeline this backup holds was abandoned then.
        let abandoned = self.restores[server]
            .iter()
            .find(|(at, taken, _, _)| *at > backup.taken_at && *taken < backup.taken_at);
        // An abandoned timeline is harmless to a safe backsync while no
        // restore has handed a USN out again: its writes' stamps were made
        // once, so they merge like any other old state (docs/DOMAIN.md).
        let harmless = strategy == RestoreStrategy::SafeBacksync && !self.usns_reused;
        if let Some((at, _, point, older)) = abandoned.filter(|_| !harmless) {
            // At risk: everything the abandoned timeline holds that the
            // backup it rolled back to does not, its own writes and those
            // of others alike (their originators may have lost and reused
            // those USNs meanwhile).
            let older = self.backups.get(older).map(|b| &b.table);
            let objects: Vec<_> = backup
                .table
                .scan()
                .filter_map(|(_, g)| {
                    let mine = backup.table.get(g)?.state;
                    let theirs = older.and_then(|t| t.get(g)).map(|r| r.state.hash());
                    (theirs != Some(mine.hash())).then_some(g)
                })
                .collect();
            self.shared.obs.hazard(Hazard {
                sim_ms: now,
                kind: HazardKind::AbandonedBackup,
                server,
                usns: Some((point.0, backup.usn.0)),
                text: format!(
                    "{who}: `{name}` was taken after the backup restored at {}: its {} changed since belong to a timeline the directory rolled back past, and their USNs (above {point} for its own writes) may have been handed out again",
                    crate::config::fmt_duration(Duration::from_millis(*at)),
                    crate::config::count(objects.len() as u64, "object")
                ),
                objects,
            });
        }
        let age = now.saturating_sub(backup.taken_at);
        let lifetime = self.shared.cfg.tombstone_lifetime.as_millis() as u64;
        if age > lifetime {
            let objects: Vec<_> = backup
                .table
                .scan()
                .filter(|(_, g)| backup.table.get(*g).is_some_and(|r| !r.state.deleted()))
                .map(|(_, g)| g)
                .collect();
            self.shared.obs.hazard(Hazard {
                sim_ms: now,
                kind: HazardKind::TombstoneLifetimeExceeded,
                server,
                usns: None,
                text: format!(
                    "{who}: `{name}` is {} old, past the tombstone lifetime of {}: objects deleted meanwhile may linger among its {} live objects and replicate back",
                    crate::config::fmt_duration(Duration::from_millis(age)),
                    crate::config::fmt_duration(self.shared.cfg.tombstone_lifetime),
                    objects.len()
                ),
                objects,
            });
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

/// Take a backup of a server under a name.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub(crate) struct BackupCmd {
    pub server: usize,
    pub name: String,
}

impl Handler<BackupCmd> for Supervisor {
    type Result = ResponseActFuture<Self, Result<(), ClusterError>>;
    fn handle(&mut self, m: BackupCmd, _: &mut Context<Self>) -> Self::Result {
        let addr = self.servers[m.server].clone();
        Box::pin(
            async move { addr.send(TakeBackup).await }
                .into_actor(self)
                .map(move |r, act, _| {
                    let name = act.shared.layout().servers[m.server].to_string();
                    let b = r?.ok_or(ClusterError::ServerDown(name.clone()))?;
                    act.event(format!(
                        "backup `{}` of {name}: {}, USN {}",
                        m.name,
                        crate::config::count(b.table.len() as u64, "object"),
                        b.usn
                    ));
                    act.newest_backup[m.server] = Some((b.invocation, b.usn));
                    act.backups.insert(m.name, Arc::new(b));
                    Ok(())
                }),
        )
    }
}

/// Crash a server.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, ClusterError>")]
pub(crate) struct CrashCmd(pub usize);

impl Handler<CrashCmd> for Supervisor {
    type Result = ResponseActFuture<Self, Result<u64, ClusterError>>;
    fn handle(&mut self, m: CrashCmd, _: &mut Context<Self>) -> Self::Result {
        let name = self.shared.layout().servers[m.0].clone();
        if !self.running[m.0] {
            self.event(format!("{name} is already down"));
            return Box::pin(actix::fut::ready(Ok(0)));
        }
        let fut = self.crash(m.0);
        Box::pin(fut.into_actor(self).map(move |r, act, _| {
            let (lost, writes) = r?;
            act.remember(&writes);
            act.event(format!(
                "crash {name}: {} held nowhere else now (lost unless a backup holds them)",
                crate::config::count(lost, "write")
            ));
            Ok(lost)
        }))
    }
}

/// Restore a server from a backup.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub(crate) struct RestoreCmd {
    pub server: usize,
    pub backup: String,
    pub strategy: RestoreStrategy,
    /// An authoritative restore's subtree (`None`: every object).
    pub subtree: Option<Arc<str>>,
}

impl Handler<RestoreCmd> for Supervisor {
    type Result = ResponseActFuture<Self, Result<(), ClusterError>>;
    fn handle(&mut self, m: RestoreCmd, _: &mut Context<Self>) -> Self::Result {
        let layout = self.shared.layout();
        let name = layout.servers[m.server].clone();
        // Check everything before anything changes.
        let backup = match self.backups.get(&m.backup) {
            None => {
                return Box::pin(actix::fut::ready(Err(ClusterError::UnknownBackup(
                    m.backup,
                ))));
            }
            Some(b) if b.server != name => {
                return Box::pin(actix::fut::ready(Err(ClusterError::WrongServer {
                    backup: m.backup,
                    taken_from: b.server.to_string(),
                    server: name.to_string(),
                })));
            }
            Some(b) => b.clone(),
        };
        // A full copy can only come from a partner running normally (one
        // that is down or restoring itself refuses it); with none, the
        // restore keeps the backup instead (`Dsa::restore`), else two
        // servers restoring at once would wait for each other forever.
        let obs = self.shared.obs.servers();
        let partners: Vec<Arc<str>> = layout
            .reachable_servers(m.server)
            .into_iter()
            .filter(|&i| m.strategy != RestoreStrategy::FullResync || obs[i].mode == "running")
            .map(|i| layout.servers[i].clone())
            .collect();
        drop(layout);
        let crash = self.running[m.server].then(|| self.crash(m.server));
        self.incarnations[m.server] += 1;
        let new_invocation = self
            .shared
            .invocation_for(m.server, self.incarnations[m.server]);
        let opts = RestoreOptions {
            strategy: m.strategy,
            partners,
            new_invocation,
            now: self.shared.now(),
            backsync_timeout: self.shared.cfg.backsync_timeout.as_millis() as u64,
            forget: self.cut_off(m.server),
            subtree: m.subtree.clone(),
            since_backup: self.ids[m.server]
                .iter()
                .skip_while(|i| **i != backup.invocation)
                .skip(1)
                .copied()
                .collect(),
        };
        if matches!(
            m.strategy,
            RestoreStrategy::NewInvocation
                | RestoreStrategy::FullResync
                | RestoreStrategy::Authoritative
                | RestoreStrategy::SafeBacksync
        ) {
            self.ids[m.server].push(new_invocation);
        }
        let addr = self.servers[m.server].clone();
        Box::pin(
            async move {
                let (lost, writes) = match crash {
                    Some(f) => f.await?,
                    None => (0, Arc::default()),
                };
                Ok::<_, ClusterError>((lost, writes, backup, opts))
            }
            .into_actor(self)
            .map(move |r, act, _| {
                let (lost, writes, backup, opts) = r?;
                act.remember(&writes);
                act.invocations.insert(new_invocation, m.server);
                act.running[m.server] = true;
                let taken = backup.taken_at;
                act.event(format!(
                    "restore {name} from `{}` (taken at {}) with {}{}{}",
                    m.backup,
                    crate::config::fmt_duration(Duration::from_millis(taken)),
                    m.strategy,
                    match (&m.subtree, m.strategy) {
                        (Some(root), RestoreStrategy::Authoritative) => {
                            format!(" of the subtree `{root}`")
                        }
                        _ => String::new(),
                    },
                    if lost > 0 {
                        format!("; {lost} unreplicated writes held nowhere else now")
                    } else {
                        String::new()
                    }
                ));
                act.announce_restore_hazards(m.server, &m.backup, &backup, m.strategy);
                let keeps_invocation = matches!(
                    m.strategy,
                    RestoreStrategy::Backsync | RestoreStrategy::Naive
                );
                act.usns_reused |= keeps_invocation;
                let now = act.shared.now();
                act.shared.set_restore_mark(
                    m.server,
                    keeps_invocation.then_some(crate::shell::RestoreMark {
                        epoch: act.incarnations[m.server],
                        invocation: backup.invocation,
                        backup_usn: backup.usn,
                    }),
                );
                act.restores[m.server].push((now, backup.taken_at, backup.usn, m.backup.clone()));
                addr.do_send(RestoreServer { backup, opts });
                act.net.do_send(NetControl::Down(m.server, false));
                Ok(())
            }),
        )
    }
}

/// Partition the network into groups (a group id per server), or heal it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct PartitionCmd(pub Option<Vec<usize>>);

impl Handler<PartitionCmd> for Supervisor {
    type Result = ();
    fn handle(&mut self, m: PartitionCmd, _: &mut Context<Self>) {
        match m.0 {
            Some(g) => {
                let layout = self.shared.layout();
                let mut groups: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
                for (i, k) in g.iter().enumerate() {
                    groups.entry(*k).or_default().push(&layout.servers[i]);
                }
                let text: Vec<String> = groups
                    .values()
                    .map(|v| format!("[{}]", v.join(", ")))
                    .collect();
                let text = format!("partition {}", text.join(" | "));
                drop(layout);
                self.event(text);
                self.net.do_send(NetControl::Partition(g));
            }
            None => {
                self.event("heal: every partition ends".into());
                self.net.do_send(NetControl::Heal);
            }
        }
    }
}

/// Delete the connector at a link index.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, ClusterError>")]
pub(crate) struct DeleteConnectorCmd(pub usize);

impl Handler<DeleteConnectorCmd> for Supervisor {
    type Result = ResponseActFuture<Self, Result<usize, ClusterError>>;
    fn handle(&mut self, m: DeleteConnectorCmd, _: &mut Context<Self>) -> Self::Result {
        let text = {
            let mut layout = self.shared.layout_mut();
            layout.links[m.0].deleted = true;
            let [a, b] = layout.links[m.0].sites;
            format!(
                "delete connector {} - {}",
                layout.site_names[a], layout.site_names[b]
            )
        };
        // Messages held for it take another way, or none.
        self.net.do_send(NetControl::LinkDeleted(m.0));
        let mut jobs = Vec::new();
        for i in (0..self.servers.len()).filter(|&i| self.running[i]) {
            let layout = self.shared.layout();
            let reach = layout.reachable_sites(layout.site_of[i]);
            let unreachable = (0..layout.servers.len())
                .filter(|&o| !reach.contains(&layout.site_of[o]))
                .map(|o| layout.servers[o].clone())
                .collect();
            drop(layout);
            jobs.push((
                self.servers[i].clone(),
                Purge {
                    forget: self.cut_off(i),
                    unreachable,
                },
            ));
        }
        Box::pin(
            async move {
                let mut n = 0;
                for (a, p) in jobs {
                    n += a.send(p).await?;
                }
                Ok::<usize, ClusterError>(n)
            }
            .into_actor(self)
            .map(move |r, act, _| {
                let n = r?;
                act.event(format!(
                    "{text}: {n} object replicas that came through it removed"
                ));
                Ok(n)
            }),
        )
    }
}

/// Writes lost by nature at this moment: acknowledged writes of crashed
/// servers held by no running server and by no backup that could still be
/// restored (a write that comes back, from a backup or a partner, is not lost).
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, ClusterError>")]
pub(crate) struct LostCmd;

impl Handler<LostCmd> for Supervisor {
    type Result = ResponseFuture<Result<u64, ClusterError>>;
    fn handle(&mut self, _: LostCmd, _: &mut Context<Self>) -> Self::Result {
        let writes: Arc<Vec<OwnWrite>> = Arc::new(
            self.at_risk
                .values()
                .filter(|w| !self.backups.values().any(|b| b.holds(w)))
                .cloned()
                .collect(),
        );
        let running: Vec<_> = (0..self.servers.len())
            .filter(|&i| self.running[i])
            .map(|i| self.servers[i].clone())
            .collect();
        Box::pin(async move {
            let mut held = vec![false; writes.len()];
            for s in running {
                for (h, o) in held.iter_mut().zip(s.send(Holds(writes.clone())).await?) {
                    *h |= o;
                }
            }
            Ok(held.iter().filter(|h| !**h).count() as u64)
        })
    }
}

/// Names of the backups taken so far, with their server.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(String, String)>")]
pub(crate) struct BackupsCmd;

impl Handler<BackupsCmd> for Supervisor {
    type Result = MessageResult<BackupsCmd>;
    fn handle(&mut self, _: BackupsCmd, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.backups
                .iter()
                .map(|(n, b)| (n.clone(), b.server.to_string()))
                .collect(),
        )
    }
}

/// Wait for convergence, at most `within` of simulated time.
#[derive(Debug, Message)]
#[rtype(result = "Convergence")]
pub(crate) struct ConvergeCmd {
    pub within: Duration,
}

impl Handler<ConvergeCmd> for Supervisor {
    type Result = ResponseFuture<Convergence>;
    fn handle(&mut self, m: ConvergeCmd, _: &mut Context<Self>) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(async move { wait_converged(shared, m.within).await })
    }
}

/// Whether, in every replication component, every running server holds
/// the same objects with the same replication metadata (the digest hashes
/// stamps and tombstones too), none is restoring or quarantined, and
/// nothing is in flight. A quarantined server is up but out of the
/// directory: the run is diverged while it stays so.
pub(crate) fn is_converged(shared: &Shared) -> bool {
    if shared.obs.in_flight() != 0 {
        return false;
    }
    let servers = shared.obs.servers();
    if servers.iter().any(|s| s.running && s.mode != "running") {
        return false;
    }
    shared.layout().components().iter().all(|comp| {
        let mut running = comp.iter().map(|&i| &servers[i]).filter(|s| s.running);
        match running.next() {
            None => true,
            Some(first) => running.all(|s| s.digest == first.digest),
        }
    })
}

async fn wait_converged(shared: Arc<Shared>, within: Duration) -> Convergence {
    let start = tokio::time::Instant::now();
    let wall = std::time::Instant::now();
    let c0 = shared.obs.counters();
    let deadline = start + within;
    let converged = loop {
        let notified = shared.obs.notified();
        if is_converged(&shared) {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };
    let d = shared.obs.counters() - c0;
    let sim_ms = (tokio::time::Instant::now() - start).as_millis() as u64;
    shared.obs.event(
        shared.now(),
        if converged {
            format!(
                "converged after {} ({}, {} sent, {} repaired)",
                crate::config::fmt_duration(Duration::from_millis(sim_ms)),
                crate::config::count(d.messages, "message"),
                crate::config::count(d.objects_sent, "object"),
                crate::config::group(d.objects_repaired)
            )
        } else {
            format!(
                "not converged within {}",
                crate::config::fmt_duration(within)
            )
        },
    );
    Convergence {
        converged,
        sim_ms,
        wall_ms: wall.elapsed().as_secs_f64() * 1e3,
        messages: d.messages,
        objects_sent: d.objects_sent,
        objects_repaired: d.objects_repaired,
        relayed: d.relayed,
        held: shared.obs.held_now().max(0) as u64,
    }
}
