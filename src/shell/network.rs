//! The simulated network: latency by route, partitions, crashed servers,
//! and seeded loss, duplication and jitter (which reorders); and the
//! bridgeheads' store-and-forward between sites.
//!
//! A message between sites of a connector topology (other than between the
//! two bridgeheads of one connector) is relayed as Exchange 5.5's MTAs
//! carry intersite directory replication: from its sender to its site's
//! bridgehead, then across each connector on the path from bridgehead to
//! bridgehead, then to its destination. A connector hop leaves at the first
//! tick of the connector's schedule (whole multiples of it from the start
//! of the run) at which the next bridgehead is up, in the holder's
//! partition group and the connector still exists, and takes the
//! connector's latency; a hop inside a site leaves as soon as the next
//! server is up and reachable, and takes the intrasite latency. Until then
//! the message is held, in arrival order, by the server that has it, and
//! still counts as in flight. A holder that crashes loses what it holds; a
//! deleted connector's queue is routed anew (or dropped with no route left).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::{ChangesReply, GetChanges};
use crate::error::ClusterError;
use crate::shell::Shared;
use crate::shell::observe::Fact;
use crate::shell::server::DirectoryServer;
use crate::shell::topology::{Hop, Layout};

/// Link faults applied to every message.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LinkFaults {
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Extra delay, uniform in `[0, jitter]`: messages overtake each other.
    pub jitter: Duration,
}

impl LinkFaults {
    /// Checks the bounds: `loss` and `duplicate` finite and from 0 to 1,
    /// `jitter` at most [`MAX_DURATION`](crate::limits::MAX_DURATION).
    ///
    /// ```
    /// use backsync::LinkFaults;
    /// assert!(LinkFaults { loss: 0.5, ..LinkFaults::default() }.validate().is_ok());
    /// assert!(LinkFaults { loss: 2.0, ..LinkFaults::default() }.validate().is_err());
    /// assert!(LinkFaults { duplicate: f64::NAN, ..LinkFaults::default() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), ClusterError> {
        for (field, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(ClusterError::Faults {
                    field,
                    message: format!("must be a number from 0 to 1 (got {p})"),
                });
            }
        }
        crate::limits::check_duration(self.jitter, false).map_err(|message| ClusterError::Faults {
            field: "jitter",
            message,
        })
    }
}

/// What travels.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A pull.
    Request(GetChanges),
    /// Its answer.
    Reply(ChangesReply),
    /// "I have changes": the receiver pulls from the sender.
    Notify,
}

/// A message between two servers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Envelope {
    /// Sender index.
    pub from: usize,
    /// Receiver index.
    pub to: usize,
    /// The sender's database instance count (restores so far) when it sent.
    pub epoch: u64,
    /// Its number, unique in the cluster (both copies of a duplicate share it).
    pub id: u64,
    /// Content.
    pub payload: Payload,
}

/// The network actor.
pub struct Network {
    shared: Arc<Shared>,
    servers: Vec<Addr<DirectoryServer>>,
    /// Partition group of each server; `None` when healed.
    groups: Option<Vec<usize>>,
    down: Vec<bool>,
    faults: LinkFaults,
    rng: ChaCha8Rng,
    /// Relayed messages held by a bridgehead for a connector's next tick,
    /// per (link, side it leaves from), in arrival order.
    queues: BTreeMap<(usize, usize), VecDeque<Envelope>>,
    /// The queues whose tick timer is set.
    armed: BTreeSet<(usize, usize)>,
    /// Relayed messages held by a server for the next server of its site
    /// (down or partitioned away): (holder, next, message), in arrival order.
    waiting: Vec<(usize, usize, Envelope)>,
}

impl Network {
    pub(crate) fn new(shared: Arc<Shared>, seed: u64, faults: LinkFaults) -> Self {
        let n = shared.layout().servers.len();
        Network {
            shared,
            servers: Vec::new(),
            groups: None,
            down: vec![false; n],
            faults,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x006e_6574_776f_726b),
            queues: BTreeMap::new(),
            armed: BTreeSet::new(),
            waiting: Vec::new(),
        }
    }

    /// Whether a message from `from` (its sender, or the server relaying
    /// it) to `to` would be dropped now.
    fn cut(&self, layout: &Layout, from: usize, to: usize) -> bool {
        self.down[to] || !self.together(from, to) || layout.latency(from, to).is_none()
    }

    /// Whether two servers are in one partition group.
    fn together(&self, a: usize, b: usize) -> bool {
        self.groups.as_ref().is_none_or(|g| g[a] == g[b])
    }

    /// Hands `e` to its destination, arriving from `from`.
    fn deliver(&mut self, from: usize, e: Envelope) {
        if self.cut(&self.shared.layout(), from, e.to) {
            self.shared.obs.dropped();
            return;
        }
        self.servers[e.to].do_send(e);
    }

    /// A relayed message is at server `at` (its sender, or a server it
    /// reached): hands it on, or holds it.
    fn arrive(&mut self, at: usize, e: Envelope, ctx: &mut Context<Self>) {
        if at == e.to {
            return self.deliver(at, e);
        }
        let layout = self.shared.layout();
        let hop = layout.next_hop(at, e.to);
        let intrasite = layout.intrasite_latency;
        drop(layout);
        match hop {
            None => self.shared.obs.dropped(),
            Some(Hop::Site(next)) if next == e.to => {
                ctx.run_later(intrasite, move |net, _| net.deliver(at, e));
            }
            Some(Hop::Site(next)) if !self.down[next] && self.together(at, next) => {
                ctx.run_later(intrasite, move |net, ctx| net.reach(next, e, ctx));
            }
            Some(Hop::Site(next)) => {
                self.shared.obs.held(1);
                self.waiting.push((at, next, e));
            }
            Some(Hop::Link { link, side }) => {
                self.shared.obs.held(1);
                let q = self.queues.entry((link, side)).or_default();
                q.push_back(e);
                self.arm((link, side), false, ctx);
            }
        }
    }

    /// A relayed message reached `at`, unless `at` crashed meanwhile.
    fn reach(&mut self, at: usize, e: Envelope, ctx: &mut Context<Self>) {
        if self.down[at] {
            self.shared.obs.dropped();
            return;
        }
        self.arrive(at, e, ctx);
    }

    /// Sets the tick timer of a connector queue: the connector's next
    /// schedule tick (now, if it falls now and `later` is false).
    fn arm(&mut self, key: (usize, usize), later: bool, ctx: &mut Context<Self>) {
        if !self.armed.insert(key) {
            return;
        }
        let period = self.shared.layout().links[key.0].schedule.as_millis() as u64;
        let now = self.shared.now();
        let ticks = if later {
            now / period + 1
        } else {
            now.div_ceil(period)
        };
        let wait = Duration::from_millis(ticks * period - now);
        ctx.run_later(wait, move |net, ctx| net.tick(key, ctx));
    }

    /// A connector's schedule tick for the queue leaving from one side:
    /// everything it holds crosses if the far bridgehead is up and
    /// reachable, else waits for the next tick.
    fn tick(&mut self, key: (usize, usize), ctx: &mut Context<Self>) {
        self.armed.remove(&key);
        let Some(q) = self.queues.remove(&key) else {
            return;
        };
        let (link, side) = key;
        let layout = self.shared.layout();
        let l = &layout.links[link];
        let (deleted, holder, peer, latency) = (
            l.deleted,
            l.bridgeheads[side],
            l.bridgeheads[1 - side],
            l.latency,
        );
        drop(layout);
        if deleted {
            return self.reroute(holder, q, ctx);
        }
        if self.down[peer] || !self.together(holder, peer) {
            self.queues.insert(key, q);
            return self.arm(key, true, ctx);
        }
        self.shared.obs.held(-(q.len() as i64));
        self.shared.obs.relayed(q.len() as u64);
        ctx.run_later(latency, move |net, ctx| {
            for e in q {
                net.reach(peer, e, ctx);
            }
        });
    }

    /// Held messages whose way changed: each routed anew from its holder.
    fn reroute(&mut self, holder: usize, q: VecDeque<Envelope>, ctx: &mut Context<Self>) {
        self.shared.obs.held(-(q.len() as i64));
        for e in q {
            self.arrive(holder, e, ctx);
        }
    }

    /// Messages held for a server of the same site leave once it is up and
    /// reachable (after a server comes up or the partitions change).
    fn release_waiting(&mut self, ctx: &mut Context<Self>) {
        let intrasite = self.shared.layout().intrasite_latency;
        for (at, next, e) in std::mem::take(&mut self.waiting) {
            if !self.down[next] && self.together(at, next) {
                self.shared.obs.held(-1);
                ctx.run_later(intrasite, move |net, ctx| net.reach(next, e, ctx));
            } else {
                self.waiting.push((at, next, e));
            }
        }
    }

    /// A crashed server's memory is gone: what it held is lost.
    fn lose_held_by(&mut self, server: usize) {
        let layout = self.shared.layout();
        let gone: Vec<(usize, usize)> = (self.queues.keys())
            .filter(|(link, side)| layout.links[*link].bridgeheads[*side] == server)
            .copied()
            .collect();
        drop(layout);
        let mut lost = 0;
        for key in gone {
            lost += self.queues.remove(&key).map_or(0, |q| q.len());
        }
        let before = self.waiting.len();
        self.waiting.retain(|(at, _, _)| *at != server);
        lost += before - self.waiting.len();
        self.shared.obs.held(-(lost as i64));
        for _ in 0..lost {
            self.shared.obs.dropped();
        }
    }

    /// A deleted connector's queues are routed anew at once (the tick
    /// timer, still set, then finds nothing).
    fn link_deleted(&mut self, link: usize, ctx: &mut Context<Self>) {
        for side in 0..2 {
            if let Some(q) = self.queues.remove(&(link, side)) {
                let holder = self.shared.layout().links[link].bridgeheads[side];
                self.reroute(holder, q, ctx);
            }
        }
    }
}

impl Actor for Network {
    type Context = Context<Self>;
}

impl Handler<Envelope> for Network {
    type Result = ();
    fn handle(&mut self, e: Envelope, ctx: &mut Context<Self>) {
        let layout = self.shared.layout();
        // The throughput mode measures the engine on a real clock: no
        // schedule waits there.
        let relayed = !self.shared.throughput && layout.relayed(e.from, e.to);
        let base = match layout.latency(e.from, e.to) {
            // A relayed message's first hop may be held, not dropped.
            Some(_) if relayed => Duration::ZERO,
            Some(d) if !self.cut(&layout, e.from, e.to) => d,
            _ => {
                drop(layout);
                self.shared.obs.dropped();
                return;
            }
        };
        drop(layout);
        let f = self.faults;
        if f.loss > 0.0 && self.rng.random_bool(f.loss) {
            self.shared.obs.dropped();
            // Campaign hook: count the link fault.
            if self.shared.obs.facts_on() {
                let sim_ms = self.shared.now();
                self.shared.obs.facts([Fact::LinkLost { sim_ms }]);
            }
            return;
        }
        let copies = if f.duplicate > 0.0 && self.rng.random_bool(f.duplicate) {
            self.shared.obs.duplicated();
            // Campaign hook: count the link fault.
            if self.shared.obs.facts_on() {
                let sim_ms = self.shared.now();
                self.shared.obs.facts([Fact::LinkDuplicated { sim_ms }]);
            }
            2
        } else {
            1
        };
        let mut e = Some(e);
        for copy in (0..copies).rev() {
            let jitter = if f.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_millis(self.rng.random_range(0..=f.jitter.as_millis() as u64))
            };
            // Only a duplicate copies the message (a reply's object list).
            let e = match copy {
                0 => e.take().expect("the last copy takes the original"),
                _ => e.clone().expect("the original is kept until the last copy"),
            };
            let from = e.from;
            if relayed && jitter.is_zero() {
                self.arrive(from, e, ctx);
            } else if relayed {
                ctx.run_later(jitter, move |net, ctx| net.arrive(from, e, ctx));
            } else if self.shared.throughput && (base + jitter).is_zero() {
                self.deliver(from, e);
            } else {
                ctx.run_later(base + jitter, move |net, _| net.deliver(from, e));
            }
        }
    }
}

/// Control messages from the supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum NetControl {
    /// The server addresses, once they exist.
    Register(Vec<Addr<DirectoryServer>>),
    /// A server went down or came up.
    Down(usize, bool),
    /// Messages between different groups are dropped.
    Partition(Vec<usize>),
    /// Ends every partition.
    Heal,
    /// New link faults.
    Faults(LinkFaults),
    /// The connector at this link index was deleted (the layout says so
    /// already): its held messages are routed anew.
    LinkDeleted(usize),
}

impl Handler<NetControl> for Network {
    type Result = ();
    fn handle(&mut self, m: NetControl, ctx: &mut Context<Self>) {
        match m {
            NetControl::Register(a) => self.servers = a,
            NetControl::Down(i, d) => {
                self.down[i] = d;
                if d {
                    self.lose_held_by(i);
                } else {
                    self.release_waiting(ctx);
                }
            }
            NetControl::Partition(g) => {
                self.groups = Some(g);
                self.release_waiting(ctx);
            }
            NetControl::Heal => {
                self.groups = None;
                self.release_waiting(ctx);
            }
            NetControl::Faults(f) => self.faults = f,
            NetControl::LinkDeleted(l) => self.link_deleted(l, ctx),
        }
    }
}
