//! The `DirectoryServer` actor: carries the core's messages and timers.
//!
//! The actor outlives its database: a crash drops the core (its memory is
//! gone) but keeps the mailbox and the schedule, as a machine keeps its
//! network card and clock. Timers of an old incarnation carry its epoch and
//! do nothing once it is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::{
    Backup, ChangesReply, CoreConfig, CoreEvent, Dsa, GetChanges, Guid, InvocationId, Mode,
    OwnWrite, PullKind, RestoreOptions, Usn, WriteError,
};
use crate::error::ReleaseError;
use crate::shell::Shared;
use crate::shell::network::{Envelope, Network, Payload};
use crate::shell::observe::{
    BacksyncNote, BacksyncStep, ChangeKind, Fact, Hazard, HazardKind, PutCause, RemoveCause,
    ServerObs,
};
use crate::view::ObjectView;

/// One directory server.
pub struct DirectoryServer {
    idx: usize,
    name: Arc<str>,
    core: Option<Dsa>,
    epoch: u64,
    shared: Arc<Shared>,
    net: Addr<Network>,
    notify_pending: bool,
    /// Sources that notified while a pull from them was outstanding.
    repull: BTreeSet<usize>,
    rng: ChaCha8Rng,
    /// The running backsync's timeout. Cancelled once it is moot: actix
    /// polls every pending timer of an actor whenever it wakes, so 16-hour
    /// timers of finished backsyncs would slow every later message.
    deadline: Option<SpawnHandle>,
    /// Per source, when it last applied a reply from it: a server that has
    /// not replicated from a source for longer than the tombstone lifetime
    /// may hold objects the source's side deleted and collected meanwhile.
    last_inbound: BTreeMap<usize, u64>,
    /// When this database instance started (a source never heard from
    /// counts from here).
    started_at: u64,
    /// Inbound connections with a pull waiting for their window to open.
    deferred: BTreeSet<(u64, usize)>,
    /// Sources refused under strict replication consistency, for the rest
    /// of the run.
    strict_refused: BTreeSet<usize>,
    /// Backsync requests relayed between sites (store-and-forward), per
    /// source, with when they were last sent: resent as they are (the same
    /// request id) when no reply came in time, so a reply to any copy
    /// answers them. A new request each time would leave the replies to
    /// copies held on the way answering nothing outstanding.
    relayed_asks: BTreeMap<usize, (GetChanges, u64)>,
}

impl DirectoryServer {
    pub(crate) fn new(idx: usize, shared: Arc<Shared>, net: Addr<Network>, seed: u64) -> Self {
        let name = shared.layout().servers[idx].clone();
        let cfg = shared.core_config();
        let inv = shared.invocation_for(idx, 0);
        let mut core = Dsa::new(name.clone(), inv, cfg);
        core.set_containers(shared.containers());
        DirectoryServer {
            idx,
            core: Some(core),
            name,
            epoch: 0,
            shared,
            net,
            notify_pending: false,
            repull: BTreeSet::new(),
            last_inbound: BTreeMap::new(),
            started_at: 0,
            deferred: BTreeSet::new(),
            strict_refused: BTreeSet::new(),
            relayed_asks: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            deadline: None,
        }
    }

    fn now(&self) -> u64 {
        self.shared.now()
    }

    /// Sends a message; returns its number.
    fn send(&self, to: usize, payload: Payload) -> u64 {
        let objects = match &payload {
            Payload::Reply(r) => r.changes.len(),
            _ => 0,
        };
        let id = self.shared.obs.sent(objects);
        self.net.do_send(Envelope {
            from: self.idx,
            to,
            epoch: self.epoch,
            id,
            payload,
        });
        id
    }

    fn packet(&self, peer: usize) -> usize {
        let cfg = &self.shared.cfg;
        if self.shared.layout().same_site(self.idx, peer) {
            cfg.intrasite_packet
        } else {
            cfg.intersite_packet
        }
    }

    /// Starts a pull from `source` if none is outstanding.
    fn pull(&mut self, source: usize, kind: PullKind) {
        let now = self.now();
        let max = self.packet(source);
        let src = self.shared.layout().servers[source].clone();
        // A read-only server is never a source.
        if self.shared.layout().read_only[source] {
            return;
        }
        let Some(core) = self.core.as_mut() else {
            return;
        };
        if kind == PullKind::Normal
            && (core.pulling(&src) || (self.shared.throughput && core.pulling_any()))
        {
            self.repull.insert(source);
            return;
        }
        if let Some(req) = core.pull(&src, kind, max, now) {
            let _span = tracing::debug_span!("replication_cycle", server = %self.name, source = %src, ?kind).entered();
            tracing::debug!(from_usn = req.from_usn.0, "GetChanges");
            if kind == PullKind::Backsync && self.shared.layout().relayed(self.idx, source) {
                self.relayed_asks.insert(source, (req.clone(), now));
            }
            self.send(source, Payload::Request(req));
        }
    }

    fn pull_all(&mut self, peers: Vec<usize>, kind: PullKind) {
        for p in peers {
            self.pull(p, kind);
        }
    }

    /// After a local change: notify intrasite partners (or, with
    /// connections, the servers that pull from this one, each when its
    /// connection's window is open), first after the notify delay, then one
    /// every notify spacing. A read-only server notifies no one.
    fn changed(&mut self, ctx: &mut Context<Self>) {
        if self.notify_pending || self.shared.layout().read_only[self.idx] {
            return;
        }
        self.notify_pending = true;
        let epoch = self.epoch;
        ctx.run_later(self.shared.cfg.notify_delay, move |act, ctx| {
            if act.epoch != epoch {
                return;
            }
            act.notify_pending = false;
            let spacing = act.shared.cfg.notify_spacing;
            let now = Duration::from_millis(act.now());
            for (i, (to, windows)) in act.notify_targets().into_iter().enumerate() {
                let at = now + spacing * i as u32;
                let Some(at) = windows.map_or(Some(at), |w| w.next_open(at)) else {
                    continue;
                };
                ctx.run_later(at - now, move |act, _| {
                    if act.epoch == epoch && act.core.is_some() {
                        act.send(to, Payload::Notify);
                    }
                });
            }
        });
    }

    /// Whom a change is notified to, with the window each notification
    /// waits for: the servers pulling over a connection from this one, or,
    /// without connections, the intrasite partners.
    fn notify_targets(&self) -> Vec<(usize, Option<crate::core::WeekWindows>)> {
        let layout = self.shared.layout();
        if layout.has_connections() {
            (layout.outbound(self.idx).into_iter())
                .map(|c| (layout.conns[c].to, layout.conns[c].windows.clone()))
                .collect()
        } else {
            (layout.intrasite(self.idx).into_iter())
                .map(|p| (p, None))
                .collect()
        }
    }

    /// A pull over inbound connection `c`: now if its window is open, else
    /// at the next open quarter hour (once, however many ticks fall in the
    /// closed time); never if it never opens.
    fn pull_over(&mut self, c: usize, ctx: &mut Context<Self>) {
        let (from, windows) = {
            let layout = self.shared.layout();
            (layout.conns[c].from, layout.conns[c].windows.clone())
        };
        let now = Duration::from_millis(self.now());
        match windows.map(|w| w.next_open(now)) {
            None => self.pull(from, PullKind::Normal),
            Some(Some(at)) if at == now => self.pull(from, PullKind::Normal),
            Some(Some(at)) => {
                let epoch = self.epoch;
                if self.deferred.insert((epoch, c)) {
                    ctx.run_later(at - now, move |act, _| {
                        act.deferred.remove(&(epoch, c));
                        if act.epoch == epoch {
                            act.pull(from, PullKind::Normal);
                        }
                    });
                }
            }
            Some(None) => {}
        }
    }

    /// Records the current content of these objects (plots only).
    fn record(&self, guids: &[Guid]) {
        if !self.shared.obs.recording() {
            return;
        }
        let Some(c) = self.core.as_ref() else { return };
        let kinds = guids.iter().map(|g| match c.table().get(*g) {
            Some(r) => ChangeKind::Put(*g, r.state.clone()),
            None => ChangeKind::Remove(*g),
        });
        self.shared.obs.record(self.now(), self.idx, kinds);
    }

    /// Campaign hook: the replicas of `guids` as now stored, by `cause`.
    fn fact_puts(&self, guids: &[Guid], cause: PutCause) {
        if !self.shared.obs.facts_on() {
            return;
        }
        let Some(c) = self.core.as_ref() else { return };
        let (sim_ms, server, invocation) = (self.now(), self.idx, c.invocation());
        // In local-USN order (finishing a backsync re-stamps some of them).
        let mut held: Vec<_> = guids.iter().filter_map(|g| c.table().get(*g)).collect();
        held.sort_by_key(|r| r.usn_changed);
        self.shared.obs.facts(held.into_iter().map(|r| Fact::Put {
            sim_ms,
            server,
            invocation,
            usn: r.usn_changed,
            state: r.state,
            cause,
        }));
    }

    /// Campaign hook: these replicas are gone.
    fn fact_removes(&self, guids: &[Guid], cause: RemoveCause) {
        if self.shared.obs.facts_on() {
            let (sim_ms, server) = (self.now(), self.idx);
            self.shared
                .obs
                .facts(guids.iter().map(|&guid| Fact::Remove {
                    sim_ms,
                    server,
                    guid,
                    cause,
                }));
        }
    }

    /// Records the whole table anew (after a restore or a purge).
    fn record_all(&self) {
        if !self.shared.obs.recording() {
            return;
        }
        let Some(c) = self.core.as_ref() else { return };
        let guids: Vec<Guid> = c.table().scan().map(|(_, g)| g).collect();
        self.shared
            .obs
            .record(self.now(), self.idx, [ChangeKind::Reset]);
        self.record(&guids);
    }

    fn publish(&self) {
        let obs = match &self.core {
            None => ServerObs {
                running: false,
                digest: Default::default(),
                live: 0,
                tombstones: 0,
                usn: 0,
                invocation: InvocationId(0),
                mode: "down",
            },
            Some(c) => ServerObs {
                running: true,
                digest: c.digest(),
                live: c.table().live(),
                tombstones: c.table().tombstones(),
                usn: c.usn().0,
                invocation: c.invocation(),
                mode: c.mode().name(),
            },
        };
        self.shared.obs.publish(self.now(), self.idx, obs);
    }

    fn report(&self, e: CoreEvent) {
        if let CoreEvent::BacksyncDone { missing, .. } = e {
            self.shared.obs.backsync_note(BacksyncNote {
                sim_ms: self.now(),
                server: self.idx,
                kind: BacksyncStep::Done { missing },
            });
        }
        let text = match e {
            CoreEvent::BacksyncDone {
                answered,
                missing,
                resumed_at,
                safe,
                ..
            } => {
                if safe {
                    format!(
                        "{}: safe backsync {}, {} answered{}, writes go on under the new invocation id from USN {resumed_at}",
                        self.name,
                        if missing == 0 {
                            "complete"
                        } else {
                            "gave up waiting"
                        },
                        crate::config::count(answered as u64, "partner"),
                        if missing == 0 {
                            String::new()
                        } else {
                            format!(
                                ", {missing} never did (their copies come back by ordinary replication)"
                            )
                        }
                    )
                } else if missing == 0 {
                    format!(
                        "{}: backsync complete, {} answered, USN resumes at {resumed_at}",
                        self.name,
                        crate::config::count(answered as u64, "partner")
                    )
                } else {
                    format!(
                        "{}: backsync timed out, {answered} answered, {missing} never did, USN resumes at {resumed_at}",
                        self.name
                    )
                }
            }
            CoreEvent::ResyncCutOff { partner } => format!(
                "{}: full resync lost its last partner {partner} to a connector deletion: an empty replica, filled by ordinary replication",
                self.name
            ),
            CoreEvent::ResyncDone { from } => {
                format!("{}: full resync from {from} complete", self.name)
            }
            // Worded after MSExchangeDS event 1074 (KB 195911).
            CoreEvent::UpdateConflict {
                dn,
                lost_invocation,
                won_invocation,
                ..
            } => format!(
                "{}: replication warning: there was a conflict with replication. Modifications made to object {dn} by directory with invocation id {lost_invocation}{} were lost (the later change, from {won_invocation}, won)",
                self.name,
                self.directory_of(lost_invocation)
            ),
            CoreEvent::NameConflict {
                guid,
                shown,
                holder,
            } => format!(
                "{}: replication warning: there was a name conflict with replication. Object {guid} is now shown as {shown}; {holder}, named later, keeps the name",
                self.name
            ),
            CoreEvent::Quarantined {
                partner,
                partner_usn,
                own_usn,
            } => format!(
                "{}: USN rollback detected ({partner} has seen USN {partner_usn}, own USN {own_usn}): quarantined",
                self.name
            ),
        };
        self.shared.obs.event(self.now(), text);
    }

    /// ` <server>` for an invocation id one of the servers had (its first
    /// few database instances), as event 1074 names the directory.
    fn directory_of(&self, inv: InvocationId) -> String {
        let n = self.shared.layout().servers.len();
        (0..n)
            .flat_map(|i| (0..64u64).map(move |k| (i, k)))
            .find(|&(i, k)| self.shared.invocation_for(i, k) == inv)
            .map(|(i, _)| format!(" {}", self.shared.layout().servers[i]))
            .unwrap_or_default()
    }

    fn start_schedules(&mut self, ctx: &mut Context<Self>) {
        let cfg = self.shared.cfg.clone();
        ctx.run_interval(cfg.gc_interval, |act, _| {
            let now = act.now();
            if let Some(c) = act.core.as_mut() {
                let doomed = if act.shared.obs.recording() || act.shared.obs.facts_on() {
                    let cutoff =
                        now.saturating_sub(act.shared.cfg.tombstone_lifetime.as_millis() as u64);
                    c.table().tombstones_before(cutoff)
                } else {
                    Vec::new()
                };
                let n = c.gc(now);
                act.record(&doomed);
                act.fact_removes(&doomed, RemoveCause::Gc);
                if n > 0 {
                    tracing::debug!(server = %act.name, removed = n, "tombstone gc");
                    act.shared.obs.trace(&(now, act.idx, "gc", n));
                    act.publish();
                }
            }
        });
        if self.shared.layout().has_connections() {
            // Each inbound connection on its own schedule and windows.
            let inbound = self.shared.layout().inbound(self.idx);
            for c in inbound {
                let every = self.shared.layout().conns[c].schedule;
                ctx.run_interval(every, move |act, ctx| act.pull_over(c, ctx));
            }
        } else {
            ctx.run_interval(cfg.intrasite_schedule, |act, _| {
                let peers = act.shared.layout().intrasite(act.idx);
                act.pull_all(peers, PullKind::Normal);
            });
        }
        let links = self.shared.layout().bridge_peers(self.idx);
        for (link, peer) in links {
            let every = self.shared.layout().links[link].schedule;
            ctx.run_interval(every, move |act, _| {
                if !act.shared.layout().links[link].deleted {
                    act.pull(peer, PullKind::Normal);
                }
            });
        }
        // Replies lost on the way would block a source for good: give up on
        // them after the reply timeout and ask again where a restore waits.
        ctx.run_interval(cfg.reply_timeout, |act, _| {
            let now = act.now();
            let timeout = act.shared.cfg.reply_timeout.as_millis() as u64;
            // A source reached by store-and-forward gets the longest its
            // request and reply may be held on the way, on top: else every
            // reply would land after its request was given up, ignored.
            let layout = act.shared.layout();
            let allowance: BTreeMap<Arc<str>, u64> = (0..layout.servers.len())
                .map(|o| (o, layout.relay_allowance(act.idx, o)))
                .filter(|(_, d)| !d.is_zero())
                .map(|(o, d)| (layout.servers[o].clone(), 2 * d.as_millis() as u64))
                .collect();
            drop(layout);
            let Some(c) = act.core.as_mut() else { return };
            // A relayed backsync request still outstanding is resent, not
            // given up.
            let backsync = matches!(c.mode(), Mode::Backsync(_));
            act.relayed_asks.retain(|&s, (r, _)| {
                backsync
                    && r.kind == PullKind::Backsync
                    && c.pulling(&act.shared.layout().servers[s])
            });
            let resent: BTreeSet<Arc<str>> = (act.relayed_asks.keys())
                .map(|&s| act.shared.layout().servers[s].clone())
                .collect();
            let late = c.expire_pulls_by(|src, sent_at| {
                let extra = allowance.get(src).copied().unwrap_or(0);
                !resent.contains(src)
                    && sent_at.saturating_add(timeout).saturating_add(extra) <= now
            });
            let mut again = Vec::new();
            for (&s, (req, sent_at)) in act.relayed_asks.iter_mut() {
                let name = &act.shared.layout().servers[s];
                let extra = allowance.get(name).copied().unwrap_or(0);
                if sent_at.saturating_add(timeout).saturating_add(extra) <= now {
                    *sent_at = now;
                    again.push((s, req.clone()));
                }
            }
            for (s, req) in again {
                act.send(s, Payload::Request(req));
            }
            for (src, kind) in late {
                let Ok(i) = act.shared.layout().server(&src) else {
                    continue;
                };
                match kind {
                    PullKind::Normal => {
                        let unavailable = crate::shell::observe::STATUS_UNAVAILABLE;
                        act.shared.obs.pull_ended(now, act.idx, i, unavailable);
                    }
                    PullKind::Backsync => act.pull(i, kind),
                    PullKind::Full => {
                        let next = act.core.as_mut().and_then(|c| c.resync_partner(true));
                        if let Some(n) = next.and_then(|n| act.shared.layout().server(&n).ok()) {
                            act.pull(n, kind);
                        }
                    }
                }
            }
            // Safety net: a full copy with no pull outstanding (its pull was
            // refused, or dropped with a partner cut off) asks again.
            let current = act.core.as_mut().and_then(|c| c.resync_partner(false));
            if let Some(n) = current.and_then(|n| act.shared.layout().server(&n).ok()) {
                act.pull(n, PullKind::Full);
            }
        });
    }

    fn start_up(&mut self, ctx: &mut Context<Self>) {
        let epoch = self.epoch;
        ctx.run_later(self.shared.cfg.startup_delay, move |act, ctx| {
            if act.epoch == epoch {
                if act.shared.layout().has_connections() {
                    let inbound = act.shared.layout().inbound(act.idx);
                    for c in inbound {
                        act.pull_over(c, ctx);
                    }
                    return;
                }
                let peers = act.shared.layout().partners(act.idx);
                act.pull_all(peers, PullKind::Normal);
            }
        });
    }
}

impl Actor for DirectoryServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_schedules(ctx);
        self.start_up(ctx);
        self.record_all();
        self.publish();
    }
}

impl Handler<Envelope> for DirectoryServer {
    type Result = ();
    fn handle(&mut self, e: Envelope, ctx: &mut Context<Self>) {
        let now = self.now();
        if self.core.is_some() {
            match e.payload {
                Payload::Notify => {
                    self.shared.obs.trace(&(now, e.from, e.to, "notify"));
                    self.pull(e.from, PullKind::Normal);
                }
                Payload::Request(req) => {
                    let reply = self.core.as_ref().map(|c| c.answer(&req));
                    if let Some(reply) = reply {
                        let guids: Option<Vec<Guid>> = self
                            .shared
                            .obs
                            .facts_on()
                            .then(|| reply.changes.iter().map(|s| s.guid()).collect());
                        self.shared.obs.trace(&(
                            now,
                            e.from,
                            e.to,
                            "req",
                            req.request_id,
                            reply.changes.len(),
                        ));
                        tracing::debug!(server = %self.name, to = %req.requester, objects = reply.changes.len(), backsync = req.kind == PullKind::Backsync, "answer");
                        let message = self.send(e.from, Payload::Reply(reply));
                        if let Some(guids) = guids {
                            self.shared.obs.facts([Fact::Answered {
                                sim_ms: now,
                                server: self.idx,
                                to: e.from,
                                request_id: req.request_id,
                                message,
                                guids,
                            }]);
                        }
                    }
                }
                Payload::Reply(reply) => self.on_reply(e.from, (e.id, e.epoch), reply, ctx),
            }
            self.publish();
        }
        self.shared.obs.done();
    }
}

impl DirectoryServer {
    /// A reply `from` sent before its last restore, carrying its own
    /// writes (or a watermark or vector entry) above the restored backup:
    /// they escaped the restore, and the restored instance, under the same
    /// invocation id, will hand those USNs out again.
    fn escaped(&self, from: usize, epoch: u64, reply: &ChangesReply) -> Option<Hazard> {
        let m = self.shared.restore_mark(from)?;
        // Sent by an earlier instance than the restored one, even at the
        // same simulated instant.
        if epoch >= m.epoch || reply.source_invocation != m.invocation {
            return None;
        }
        let mut hi = reply.utdv.as_ref().map_or(Usn(0), |v| v.get(m.invocation));
        if reply.kind == PullKind::Normal && !reply.refused {
            hi = hi.max(reply.watermark);
        }
        let mut objects = Vec::new();
        for s in &reply.changes {
            let top = s
                .stamps()
                .filter(|st| st.invocation == m.invocation && st.usn > m.backup_usn)
                .map(|st| st.usn)
                .max();
            if let Some(u) = top {
                hi = hi.max(u);
                objects.push(s.guid());
            }
        }
        if hi <= m.backup_usn {
            return None;
        }
        let layout = self.shared.layout();
        let text = format!(
            "{} got a reply {} sent before its restore, with its writes up to USN {hi} (restored backup: USN {}, {} carried): {} may hand those USNs out again",
            self.name,
            layout.servers[from],
            m.backup_usn,
            crate::config::count(objects.len() as u64, "object"),
            layout.servers[from],
        );
        Some(Hazard {
            sim_ms: self.now(),
            kind: HazardKind::WriteInFlightAtRestore,
            server: from,
            objects,
            usns: Some((m.backup_usn.0, hi.0)),
            text,
        })
    }

    /// Notes an inbound replication; announces the first one from a source
    /// after a silence longer than the tombstone lifetime (AD logs event
    /// 2042 for that source and, with strict replication consistency,
    /// refuses it).
    fn heard_from(&mut self, from: usize, now: u64) {
        let last = self
            .last_inbound
            .insert(from, now)
            .unwrap_or(self.started_at);
        let silent = now.saturating_sub(last);
        let lifetime = self.shared.cfg.tombstone_lifetime;
        if silent <= lifetime.as_millis() as u64 {
            return;
        }
        let Some(c) = self.core.as_ref() else { return };
        let objects: Vec<Guid> = c
            .objects()
            .into_iter()
            .filter(|(_, r)| !r.state.deleted())
            .map(|(_, r)| r.state.guid())
            .collect();
        let text = format!(
            "{} replicated from {} for the first time in {}, past the tombstone lifetime of {}: objects deleted meanwhile may linger among its {} live objects",
            self.name,
            self.shared.layout().servers[from],
            crate::config::fmt_duration(Duration::from_millis(silent)),
            crate::config::fmt_duration(lifetime),
            objects.len()
        );
        self.shared.obs.hazard(Hazard {
            sim_ms: now,
            kind: HazardKind::TombstoneLifetimeExceeded,
            server: self.idx,
            objects,
            usns: None,
            text,
        });
    }

    /// Strict replication consistency (AD's event 1988): refuses an
    /// ordinary reply from a source silent past the tombstone lifetime (the
    /// silence [`Self::heard_from`] measures), and that source for the rest
    /// of the run. Returns whether the reply was refused.
    fn strict_refuses(
        &mut self,
        from: usize,
        message: u64,
        reply: &crate::core::ChangesReply,
        now: u64,
    ) -> bool {
        if !self.shared.cfg.strict_replication || reply.kind != PullKind::Normal || reply.refused {
            return false;
        }
        let last = self
            .last_inbound
            .get(&from)
            .copied()
            .unwrap_or(self.started_at);
        let silent = now.saturating_sub(last);
        let lifetime = self.shared.cfg.tombstone_lifetime;
        let first = silent > lifetime.as_millis() as u64 && self.strict_refused.insert(from);
        if !first && !self.strict_refused.contains(&from) {
            return false;
        }
        let Some(core) = self.core.as_mut() else {
            return false;
        };
        if !core.discard(reply) {
            return false;
        }
        self.shared
            .obs
            .trace(&(now, from, self.idx, "strict-refused"));
        if self.shared.obs.facts_on() {
            self.shared.obs.facts([Fact::StrictRefused {
                sim_ms: now,
                server: self.idx,
                from,
                message,
            }]);
        }
        self.shared.obs.pull_ended(
            now,
            self.idx,
            from,
            crate::shell::observe::STATUS_LIFETIME_EXCEEDED,
        );
        if first {
            let text = format!(
                "{}: strict replication consistency: refuses replication from {} for the rest of the run, not heard from for {}, past the tombstone lifetime of {} (event 1988): objects it holds that were deleted and collected here stay out",
                self.name,
                self.shared.layout().servers[from],
                crate::config::fmt_duration(Duration::from_millis(silent)),
                crate::config::fmt_duration(lifetime),
            );
            self.shared.obs.event(now, text);
        }
        true
    }

    fn on_reply(
        &mut self,
        from: usize,
        (message, epoch): (u64, u64),
        reply: crate::core::ChangesReply,
        ctx: &mut Context<Self>,
    ) {
        let now = self.now();
        if self.strict_refuses(from, message, &reply, now) {
            return;
        }
        let escaped = self.escaped(from, epoch, &reply);
        let kind = reply.kind;
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let _span =
            tracing::debug_span!("apply", server = %self.name, source = %reply.source, ?kind)
                .entered();
        let refused = reply.refused;
        // Campaign hook: what the Reply fact needs from before the apply.
        let fact = self.shared.obs.facts_on().then(|| {
            let wm = (reply.kind == PullKind::Normal && !reply.refused)
                .then_some((reply.source_invocation, reply.watermark));
            (core.digest(), reply.request_id, wm)
        });
        let applied = core.apply(reply, now);
        if let Some((before, request_id, wm)) = fact {
            let after = core.digest();
            self.shared.obs.facts([Fact::Reply {
                sim_ms: now,
                server: self.idx,
                from,
                request_id,
                message,
                kind,
                ignored: applied.ignored,
                refused,
                changed: applied.changed,
                before,
                after,
                watermark: wm.filter(|_| !applied.ignored && !applied.get_anc_retry),
            }]);
            self.fact_puts(&applied.changed_guids, PutCause::Apply);
        }
        self.shared.obs.trace(&(
            now,
            from,
            self.idx,
            "reply",
            applied.ignored,
            &applied.changed_guids,
        ));
        if applied.ignored {
            return;
        }
        if let Some(h) = escaped {
            self.shared.obs.hazard(h);
        }
        if !refused {
            self.heard_from(from, now);
        }
        if kind == PullKind::Normal {
            let status = if refused {
                crate::shell::observe::STATUS_SOURCE_DISABLED
            } else {
                0
            };
            self.shared.obs.pull_ended(now, self.idx, from, status);
        }
        if kind == PullKind::Backsync {
            self.shared.obs.backsync_note(BacksyncNote {
                sim_ms: now,
                server: self.idx,
                kind: BacksyncStep::Answer {
                    from,
                    sent: applied.sent,
                    restored: applied.changed,
                },
            });
            let text = format!(
                "{}: backsync answer from {}: {} sent, {} restored",
                self.name,
                self.shared.layout().servers[from],
                crate::config::count(applied.sent as u64, "object"),
                applied.changed
            );
            self.shared.obs.event(now, text);
        }
        // Exchange 5.5 logged the losers of conflicts (event 1074); its
        // per-object model is the object granularity.
        if self.shared.cfg.granularity == crate::config::Granularity::Object {
            for c in applied.conflicts.iter().cloned() {
                self.report(c);
            }
        }
        if applied.changed > 0 {
            self.record(&applied.changed_guids);
            self.shared.obs.repaired(applied.changed);
            self.changed(ctx);
        }
        let mut resynced = false;
        if let Some(ev) = applied.event {
            resynced = matches!(ev, CoreEvent::ResyncDone { .. });
            if matches!(ev, CoreEvent::BacksyncDone { .. }) {
                if let Some(h) = self.deadline.take() {
                    ctx.cancel_future(h);
                }
                // Finishing re-stamps what backsync applied (Dsa::finish_backsync):
                // a local change, and partners' pulls were refused meanwhile.
                self.changed(ctx);
            }
            self.report(ev);
        }
        if let Some(req) = applied.follow_up {
            self.send(from, Payload::Request(req));
        } else if self.repull.remove(&from) {
            self.pull(from, PullKind::Normal);
        } else if self.shared.throughput {
            // The next queued source after the one just pulled, in a ring:
            // destinations spread over sources instead of all queueing on
            // the lowest-numbered one.
            let next = self.repull.range(from + 1..).next().or(self.repull.first());
            if let Some(next) = next.copied() {
                self.repull.remove(&next);
                self.pull(next, PullKind::Normal);
            }
        }
        if resynced {
            let peers = self.shared.layout().partners(self.idx);
            self.pull_all(peers, PullKind::Normal);
        }
        if kind == PullKind::Full && refused {
            // The partner is itself restoring and refused the copy: ask the
            // next one after the reply timeout (not at once, which would spin
            // at network speed while every partner is restoring).
            let epoch = self.epoch;
            ctx.run_later(self.shared.cfg.reply_timeout, move |act, _| {
                if act.epoch != epoch {
                    return;
                }
                let next = act.core.as_mut().and_then(|c| c.resync_partner(true));
                if let Some(n) = next.and_then(|n| act.shared.layout().server(&n).ok()) {
                    act.pull(n, PullKind::Full);
                }
            });
        }
    }
}

/// An originating write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Create `dn` with attributes.
    Create {
        /// The dn.
        dn: String,
        /// Attributes.
        attrs: Vec<(String, String)>,
    },
    /// Modify `dn`.
    Modify {
        /// The dn.
        dn: String,
        /// Attributes to set.
        set: Vec<(String, String)>,
        /// Attributes to remove.
        remove: Vec<String>,
    },
    /// Delete `dn`.
    Delete {
        /// The dn.
        dn: String,
    },
    /// Delete `dn` and every live object below it.
    DeleteTree {
        /// The dn.
        dn: String,
    },
    /// Rename or move `dn` to `new_dn`.
    Rename {
        /// The dn.
        dn: String,
        /// The new dn.
        new_dn: String,
    },
}

/// Writes applied in one handler (a `load` step).
#[derive(Debug, Message)]
#[rtype(result = "Vec<Result<Guid, WriteError>>")]
pub(crate) struct Writes(pub Vec<WriteOp>);

impl Handler<Writes> for DirectoryServer {
    type Result = MessageResult<Writes>;
    fn handle(&mut self, m: Writes, ctx: &mut Context<Self>) -> Self::Result {
        let now = self.now();
        let name = self.name.to_string();
        let read_only = self.shared.layout().read_only[self.idx];
        let mut out = Vec::with_capacity(m.0.len());
        let mut any = false;
        for op in m.0 {
            let guid = Guid(self.rng.random());
            let r = match self.core.as_mut() {
                None => Err(WriteError::Down(name.clone())),
                Some(_) if read_only => Err(WriteError::ReadOnly(name.clone())),
                Some(c) => match &op {
                    WriteOp::Create { dn, attrs } => {
                        let a: Vec<(&str, &str)> = attrs
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        c.create(guid, dn, &a, now).map(|g| vec![g])
                    }
                    WriteOp::Modify { dn, set, remove } => {
                        let s: Vec<(&str, &str)> =
                            set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        let r: Vec<&str> = remove.iter().map(String::as_str).collect();
                        c.modify(dn, &s, &r, now).map(|g| vec![g])
                    }
                    WriteOp::Delete { dn } => c.delete(dn, now).map(|g| vec![g]),
                    // The named object last: its guid is the write's.
                    WriteOp::DeleteTree { dn } => c.delete_tree(dn, now).map(|mut v| {
                        v.rotate_right(1);
                        v
                    }),
                    WriteOp::Rename { dn, new_dn } => c.rename(dn, new_dn, now).map(|g| vec![g]),
                },
            };
            if let Ok(gs) = &r {
                self.record(gs);
                self.fact_puts(gs, PutCause::Write);
            }
            let r = r.map(|gs| gs[0]);
            any |= r.is_ok();
            self.shared.obs.trace(&(now, self.idx, "write", r.is_ok()));
            out.push(r);
        }
        if any {
            self.changed(ctx);
            self.publish();
        }
        MessageResult(out)
    }
}

/// Take a backup.
#[derive(Debug, Message)]
#[rtype(result = "Option<Backup>")]
pub(crate) struct TakeBackup;

impl Handler<TakeBackup> for DirectoryServer {
    type Result = Option<Backup>;
    fn handle(&mut self, _: TakeBackup, _: &mut Context<Self>) -> Option<Backup> {
        let now = self.now();
        if self.core.is_some() && self.shared.obs.facts_on() {
            self.shared.obs.facts([Fact::BackedUp {
                sim_ms: now,
                server: self.idx,
            }]);
        }
        self.core.as_ref().map(|c| c.backup(now))
    }
}

/// Crash: returns the own writes past the newest backup (what may be lost).
#[derive(Debug, Message)]
#[rtype(result = "Vec<OwnWrite>")]
pub(crate) struct CrashServer {
    /// The newest backup of this server: (invocation, usn).
    pub kept: Option<(InvocationId, Usn)>,
}

impl Handler<CrashServer> for DirectoryServer {
    type Result = MessageResult<CrashServer>;
    fn handle(&mut self, m: CrashServer, ctx: &mut Context<Self>) -> Self::Result {
        let Some(core) = self.core.take() else {
            return MessageResult(Vec::new());
        };
        if let Some(h) = self.deadline.take() {
            ctx.cancel_future(h);
        }
        let after = match m.kept {
            Some((inv, usn)) if inv == core.invocation() => usn,
            _ => Usn(0),
        };
        self.epoch += 1;
        self.notify_pending = false;
        self.repull.clear();
        self.relayed_asks.clear();
        self.publish();
        if self.shared.obs.recording() {
            self.shared
                .obs
                .record(self.now(), self.idx, [ChangeKind::Down]);
        }
        if self.shared.obs.facts_on() {
            let (sim_ms, server) = (self.now(), self.idx);
            self.shared.obs.facts([Fact::Down { sim_ms, server }]);
        }
        MessageResult(core.own_writes_after(after))
    }
}

/// Which of these writes this server holds.
#[derive(Debug, Message)]
#[rtype(result = "Vec<bool>")]
pub(crate) struct Holds(pub Arc<Vec<OwnWrite>>);

impl Handler<Holds> for DirectoryServer {
    type Result = MessageResult<Holds>;
    fn handle(&mut self, m: Holds, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match &self.core {
            None => vec![false; m.0.len()],
            Some(c) => m.0.iter().map(|w| c.holds(w)).collect(),
        })
    }
}

/// Start from a backup.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct RestoreServer {
    pub backup: Arc<Backup>,
    pub opts: RestoreOptions,
}

impl Handler<RestoreServer> for DirectoryServer {
    type Result = ();
    fn handle(&mut self, m: RestoreServer, ctx: &mut Context<Self>) {
        let cfg: CoreConfig = self.shared.core_config();
        let strategy = m.opts.strategy;
        let timeout = Duration::from_millis(m.opts.backsync_timeout);
        let _span = tracing::info_span!("restore", server = %self.name, %strategy).entered();
        let mut core = Dsa::restore(&m.backup, cfg, m.opts);
        core.set_containers(self.shared.containers());
        if let Some(r) = core.authoritative_raise() {
            let text = format!(
                "{}: authoritative restore raised the version of {} by {}",
                self.name,
                crate::config::count(r.objects as u64, "object"),
                crate::config::group(u64::from(r.by))
            );
            self.shared.obs.event(self.now(), text);
        }
        self.core = Some(core);
        // The restore's own age is the supervisor's to announce.
        self.last_inbound.clear();
        self.started_at = self.now();
        self.epoch += 1;
        self.notify_pending = false;
        self.repull.clear();
        self.relayed_asks.clear();
        let epoch = self.epoch;
        let layout = self.shared.layout();
        let waiting: Vec<usize> = self
            .core
            .as_ref()
            .map(|c| c.backsync_waiting())
            .unwrap_or_default()
            .iter()
            .filter_map(|n| layout.server(n).ok())
            .collect();
        drop(layout);
        match self.core.as_ref().map(|c| c.mode().clone()) {
            Some(Mode::Backsync(_)) => {
                tracing::info!(
                    partners = waiting.len(),
                    "backsync: asking every known directory"
                );
                self.shared.obs.backsync_note(BacksyncNote {
                    sim_ms: self.now(),
                    server: self.idx,
                    kind: BacksyncStep::Started(waiting.clone()),
                });
                self.pull_all(waiting, PullKind::Backsync);
                if let Some(h) = self.deadline.take() {
                    ctx.cancel_future(h);
                }
                let h = ctx.run_later(timeout, move |act, ctx| {
                    act.deadline = None;
                    if act.epoch != epoch {
                        return;
                    }
                    let now = act.now();
                    let silent = act.core.as_ref().map(|c| c.backsync_waiting()).unwrap_or_default();
                    if let Some(ev) = act.core.as_mut().and_then(|c| c.backsync_deadline(now)) {
                        act.changed(ctx);
                        // A safe backsync that gives up risks nothing: no USN
                        // is handed out again, and silent partners send the
                        // old id's writes by ordinary replication later.
                        if let CoreEvent::BacksyncDone { resumed_at, backup_usn, missing, safe: false, .. } = &ev
                            && *missing > 0
                        {
                            let names: Vec<&str> = silent.iter().map(|s| &**s).collect();
                            act.shared.obs.hazard(Hazard {
                                sim_ms: now,
                                kind: HazardKind::BacksyncTimeout,
                                server: act.idx,
                                objects: Vec::new(),
                                usns: Some((backup_usn.0, resumed_at.0)),
                                text: format!(
                                    "{}: backsync gave up waiting for {}: its own writes above USN {backup_usn} that only they hold may be lost, and USNs up to {resumed_at} may be handed out again",
                                    act.name,
                                    names.join(", ")
                                ),
                            });
                        }
                        act.report(ev);
                        act.publish();
                    }
                });
                self.deadline = Some(h);
            }
            Some(Mode::Resync { .. }) => {
                let first = self.core.as_mut().and_then(|c| c.resync_partner(false));
                if let Some(i) = first.and_then(|n| self.shared.layout().server(&n).ok()) {
                    self.pull(i, PullKind::Full);
                }
            }
            _ => {}
        }
        self.start_up(ctx);
        if self
            .core
            .as_ref()
            .and_then(|c| c.authoritative_raise())
            .is_some_and(|r| r.objects > 0)
        {
            // The raised objects are this instance's own writes: partners
            // hear of them as of any write, not only at their next schedule.
            self.changed(ctx);
        }
        self.record_all();
        if let (true, Some(c)) = (self.shared.obs.facts_on(), self.core.as_ref()) {
            // Campaign hook: the restored table, as loaded.
            let hwm = (self.shared.layout().servers.iter())
                .filter_map(|s| c.hwm(s).map(|h| (h.invocation, h.usn)))
                .collect();
            self.shared.obs.facts([Fact::Restored {
                sim_ms: self.now(),
                server: self.idx,
                invocation: c.invocation(),
                strategy,
                backup_taken_at: m.backup.taken_at,
                hwm,
            }]);
            let guids: Vec<Guid> = c.table().scan().map(|(_, g)| g).collect();
            self.fact_puts(&guids, PutCause::Restore);
        }
        self.publish();
    }
}

/// Forget the objects created by cut-off invocations (connector deletion).
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub(crate) struct Purge {
    pub forget: BTreeSet<InvocationId>,
    pub unreachable: Vec<Arc<str>>,
}

impl Handler<Purge> for DirectoryServer {
    type Result = usize;
    fn handle(&mut self, m: Purge, ctx: &mut Context<Self>) -> usize {
        let Some(c) = self.core.as_mut() else {
            return 0;
        };
        let mut ended = None;
        for s in &m.unreachable {
            ended = c.forget_source(s).or(ended);
        }
        // A full copy that was asking a partner now cut off asks the next.
        let next = c.resync_partner(false);
        // Campaign hook: which replicas the purge removes.
        let held: Vec<Guid> = if self.shared.obs.facts_on() {
            c.table().scan().map(|(_, g)| g).collect()
        } else {
            Vec::new()
        };
        let n = c.purge_created_by(&m.forget);
        if n > 0 {
            let gone: Vec<Guid> = held
                .into_iter()
                .filter(|g| c.table().get(*g).is_none())
                .collect();
            self.fact_removes(&gone, RemoveCause::Purge);
            self.record_all();
        }
        if let Some(i) = next.and_then(|p| self.shared.layout().server(&p).ok()) {
            self.pull(i, PullKind::Full);
        }
        if let Some(ev) = ended {
            // The restore waited only for partners now cut off: it ends.
            self.changed(ctx);
            self.report(ev);
        }
        self.publish();
        n
    }
}

/// Read objects: one dn, or all.
#[derive(Debug, Message)]
#[rtype(result = "Option<Vec<ObjectView>>")]
pub(crate) struct Inspect(pub Option<String>);

impl Handler<Inspect> for DirectoryServer {
    type Result = Option<Vec<ObjectView>>;
    fn handle(&mut self, m: Inspect, _: &mut Context<Self>) -> Self::Result {
        let c = self.core.as_ref()?;
        Some(match m.0 {
            Some(dn) => c
                .lookup(&dn)
                .map(|r| ObjectView::new(c.table().shown_dn(&r.state), &r))
                .into_iter()
                .collect(),
            None => c
                .objects()
                .into_iter()
                .map(|(dn, r)| ObjectView::new(dn, &r))
                .collect(),
        })
    }
}

/// Sets which parent dns are fixed containers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct SetContainers(pub Arc<crate::core::Containers>);

impl Handler<SetContainers> for DirectoryServer {
    type Result = ();
    fn handle(&mut self, m: SetContainers, _: &mut Context<Self>) {
        if let Some(c) = self.core.as_mut() {
            c.set_containers(m.0);
        }
    }
}

/// Per-source watermarks (for reports and tests).
#[derive(Debug, Message)]
#[rtype(result = "BTreeMap<String, (InvocationId, Usn)>")]
pub(crate) struct Watermarks;

impl Handler<Watermarks> for DirectoryServer {
    type Result = MessageResult<Watermarks>;
    fn handle(&mut self, _: Watermarks, _: &mut Context<Self>) -> Self::Result {
        let layout = self.shared.layout();
        let Some(c) = self.core.as_ref() else {
            return MessageResult(BTreeMap::new());
        };
        MessageResult(
            layout
                .servers
                .iter()
                .filter_map(|s| c.hwm(s).map(|h| (s.to_string(), (h.invocation, h.usn))))
                .collect(),
        )
    }
}

/// The partners that answered the server's last backsync, by name (`None`
/// when it is down or its current instance has run no backsync).
#[derive(Debug, Message)]
#[rtype(result = "Option<Vec<String>>")]
pub(crate) struct BacksyncAnswered;

impl Handler<BacksyncAnswered> for DirectoryServer {
    type Result = Option<Vec<String>>;
    fn handle(&mut self, _: BacksyncAnswered, _: &mut Context<Self>) -> Self::Result {
        let answered = self.core.as_ref()?.backsync_answered()?;
        Some(answered.iter().map(|s| s.to_string()).collect())
    }
}

/// Return a quarantined server to service (an operator's act): the
/// partner that showed the rollback and its entry for this server, or why
/// not.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReleaseError>")]
pub(crate) struct Release;

impl Handler<Release> for DirectoryServer {
    type Result = Result<(), ReleaseError>;
    fn handle(&mut self, _: Release, _: &mut Context<Self>) -> Self::Result {
        let name = self.name.to_string();
        let Some(c) = self.core.as_mut() else {
            return Err(ReleaseError::Down(name));
        };
        let mode = c.mode().name();
        let Some((partner, seen)) = c.release() else {
            return Err(ReleaseError::NotQuarantined { server: name, mode });
        };
        let own = c.usn();
        let text = format!(
            "{name}: released from quarantine by an operator at USN {own}: {partner} has seen its USNs up to {seen}, and writes made under USNs it already saw will never replicate to it"
        );
        self.shared.obs.event(self.now(), text);
        self.publish();
        Ok(())
    }
}
