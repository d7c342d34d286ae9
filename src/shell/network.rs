//! The simulated network: latency by route, partitions, crashed servers,
//! and seeded loss, duplication and jitter (which reorders).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::{ChangesReply, GetChanges};
use crate::error::ClusterError;
use crate::shell::observe::Fact;
use crate::shell::server::DirectoryServer;
use crate::shell::{Shared, topology::Layout};

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
        }
    }

    fn cut(&self, layout: &Layout, e: &Envelope) -> bool {
        self.down[e.to]
            || self.groups.as_ref().is_some_and(|g| g[e.from] != g[e.to])
            || layout.latency(e.from, e.to).is_none()
    }

    fn deliver(&mut self, e: Envelope) {
        if self.cut(&self.shared.layout(), &e) {
            self.shared.obs.dropped();
            return;
        }
        self.servers[e.to].do_send(e);
    }
}

impl Actor for Network {
    type Context = Context<Self>;
}

impl Handler<Envelope> for Network {
    type Result = ();
    fn handle(&mut self, e: Envelope, ctx: &mut Context<Self>) {
        let layout = self.shared.layout();
        let base = match layout.latency(e.from, e.to) {
            Some(d) if !self.cut(&layout, &e) => d,
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
            if self.shared.throughput && (base + jitter).is_zero() {
                self.deliver(e);
            } else {
                ctx.run_later(base + jitter, move |net, _| net.deliver(e));
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
}

impl Handler<NetControl> for Network {
    type Result = ();
    fn handle(&mut self, m: NetControl, _: &mut Context<Self>) {
        match m {
            NetControl::Register(a) => self.servers = a,
            NetControl::Down(i, d) => self.down[i] = d,
            NetControl::Partition(g) => self.groups = Some(g),
            NetControl::Heal => self.groups = None,
            NetControl::Faults(f) => self.faults = f,
        }
    }
}
