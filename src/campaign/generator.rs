//! The generator: from one seed, a topology, a workload and a fault
//! schedule (the nemesis).
//!
//! The schedule is a run of *epochs*. Each epoch lasts 20 minutes to 10
//! hours; during it writes arrive in bursts on random servers while faults
//! strike: crashes (one or two servers), restores from backups of different
//! ages (mid-epoch or at its end), restores of running servers (a crash and a
//! restore at the same instant), a partition, link faults (loss, duplication,
//! jitter), backups, and rarely a connector deletion. Some crashes are timed
//! to land while replication messages are in flight (just after a change
//! notification, or a connector's scheduled pull). Each epoch ends with every
//! fault healed and every crashed server restored, then a calm hour or more.
//! At most one server per run has a long outage (one to five days) across
//! epochs; no other server crashes or restores meanwhile.
//!
//! This keeps what operators must keep: outages and backup ages shorter
//! than the tombstone lifetime (a run lasts under 20 days); every backsync
//! able to reach each of its partners before its timeout (no partner stays
//! away longer than an epoch plus the calm after it, under 16 hours, and
//! no server goes away long while a backsync relayed between sites may
//! still wait for it, or, a bridgehead, hold it); no restore while a reply its server sent
//! before crashing may still be on its way (relayed between sites, a
//! schedule and a latency per connector at most); and
//! once a server is restored from a backup, its backups taken after that
//! one are abandoned, never restored later (they hold a timeline the
//! directory rolled back past). Breaking these makes lingering objects,
//! aborted backsyncs and reused USNs, failures by design that docs/DOMAIN.md
//! describes and scenario tests cover.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::campaign::schedule::{Intent, Op, Setup};
use crate::config::{Profile, ReplicationConfig, RestoreStrategy};
use crate::scenario::Action;
use crate::shell::network::LinkFaults;
use crate::shell::topology::{Connector, Site, Topology};

const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// The shape of the runs a campaign generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Servers in the topology (at least 2).
    pub servers: usize,
    /// Sites (at least 1, at most `servers`).
    pub sites: usize,
    /// Objects created over the run.
    pub objects: usize,
    /// The strategy of every restore.
    pub strategy: RestoreStrategy,
    /// Vendor profile.
    pub profile: Profile,
    /// Whether to generate the restore hazards (see the module docs).
    pub hazards: bool,
}

/// One seed's setup and what the generator asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Topology, profile, strategy, seed.
    pub setup: Setup,
    /// The workload and the fault schedule.
    pub intents: Vec<Intent>,
}

/// The plan of one seed.
pub fn plan(seed: u64, p: &Params) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6361_6d70_6169_676e);
    let config = ReplicationConfig::for_profile(p.profile);
    let topology = topology(&mut rng, p);
    let setup = Setup {
        seed,
        profile: p.profile,
        strategy: p.strategy,
        topology,
        config,
    };
    let names = setup.topology.server_names();
    let n = names.len();
    let mut g = Gen {
        rng,
        strategy: p.strategy,
        cfg: setup.config.clone(),
        site_of: site_index(&setup.topology),
        names,
        connectors: setup
            .topology
            .connectors
            .iter()
            .map(|c| {
                (
                    c.between.clone(),
                    c.schedule.unwrap_or_default(),
                    c.latency.unwrap_or_default(),
                )
            })
            .collect(),
        bridgeheads: (setup.topology.connectors.iter())
            .flat_map(|c| c.bridgeheads.clone())
            .filter_map(|b| setup.topology.server_names().iter().position(|s| *s == b))
            .collect(),
        last_restore: None,
        last_heal: 0,
        now: 0,
        up: vec![true; n],
        backups: vec![Vec::new(); n],
        next_backup: 1,
        next_obj: 1,
        next_value: 1,
        creates: p.objects.max(1),
        modifies: p.objects * 2 / 3,
        deletes: p.objects / 5,
        partitioned: false,
        faults: false,
        connector_deleted: false,
        long: None,
        long_done: false,
        out: Vec::new(),
        hazards: p.hazards,
        all_backups: vec![Vec::new(); n],
        last_crash: 0,
    };
    g.run();
    Plan {
        setup,
        intents: g.out,
    }
}

fn site_index(t: &Topology) -> Vec<usize> {
    t.sites
        .iter()
        .enumerate()
        .flat_map(|(i, s)| std::iter::repeat_n(i, s.servers.len()))
        .collect()
}

/// Sites of random sizes (each at least one server), joined by a random
/// tree of connectors, sometimes with one more connector (a cycle).
fn topology(rng: &mut ChaCha8Rng, p: &Params) -> Topology {
    let (n, k) = (p.servers, p.sites);
    let mut sizes = vec![1usize; k];
    for _ in k..n {
        sizes[rng.random_range(0..k)] += 1;
    }
    let mut t = Topology::new();
    let mut next = 1;
    for (i, size) in sizes.iter().enumerate() {
        t.sites.push(Site {
            name: format!("Site{}", i + 1),
            servers: (0..*size).map(|j| format!("S{}", next + j)).collect(),
            read_only: Vec::new(),
        });
        next += size;
    }
    let schedules: &[u64] = match p.profile {
        Profile::Exchange55 => &[15, 30, 60, 120],
        Profile::Ad => &[15, 60, 180],
    };
    let latencies: &[u64] = &[1, 2, 10, 30];
    let mut pairs: Vec<(usize, usize)> = (1..k).map(|i| (rng.random_range(0..i), i)).collect();
    if k >= 3 && rng.random_bool(0.3) {
        let a = rng.random_range(0..k);
        let b = rng.random_range(0..k);
        if a != b
            && !pairs
                .iter()
                .any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
        {
            pairs.push((a.min(b), a.max(b)));
        }
    }
    for (a, b) in pairs {
        let bh = |rng: &mut ChaCha8Rng, s: usize| {
            let servers = &t.sites[s].servers;
            servers[rng.random_range(0..servers.len())].clone()
        };
        let bridgeheads = [bh(rng, a), bh(rng, b)];
        t.connectors.push(Connector {
            between: [t.sites[a].name.clone(), t.sites[b].name.clone()],
            bridgeheads,
            schedule: Some(Duration::from_secs(
                60 * schedules[rng.random_range(0..schedules.len())],
            )),
            latency: Some(Duration::from_secs(
                latencies[rng.random_range(0..latencies.len())],
            )),
        });
    }
    t
}

/// What happens at one instant of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Writes(usize),
    Backup(usize),
    Crash(usize),
    LongCrash(usize),
    Restore(usize),
    RestoreRunning(usize),
    Partition,
    Heal,
    FaultsOn,
    FaultsOff,
    DeleteConnector,
}

struct Gen {
    rng: ChaCha8Rng,
    strategy: RestoreStrategy,
    cfg: ReplicationConfig,
    names: Vec<String>,
    site_of: Vec<usize>,
    connectors: Vec<([String; 2], Duration, Duration)>,
    /// Servers that bridge a connector: messages between sites wait for
    /// them (store-and-forward).
    bridgeheads: std::collections::BTreeSet<usize>,
    /// The latest restore.
    last_restore: Option<u64>,
    /// The latest heal.
    last_heal: u64,
    /// Plan time: the sum of the waits so far (writes take no time).
    now: u64,
    up: Vec<bool>,
    backups: Vec<Vec<String>>,
    next_backup: usize,
    next_obj: usize,
    next_value: usize,
    creates: usize,
    modifies: usize,
    deletes: usize,
    partitioned: bool,
    faults: bool,
    connector_deleted: bool,
    /// The server on a long outage, and when it may come back.
    long: Option<(usize, u64)>,
    long_done: bool,
    out: Vec<Intent>,
    /// Generate the restore hazards.
    hazards: bool,
    /// Every backup of each server, those of abandoned timelines included.
    all_backups: Vec<Vec<String>>,
    /// The latest crash: without hazards, a restore waits until no reply
    /// sent before it can still be in flight.
    last_crash: u64,
}

impl Gen {
    fn push(&mut self, a: Action) {
        self.out.push(Intent::Op(Op::Step(a)));
    }

    fn wait_until(&mut self, t: u64) {
        if t > self.now {
            self.push(Action::Wait {
                duration: Duration::from_millis(t - self.now),
            });
            self.now = t;
        }
    }

    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        self.rng.random_range(a..=b).exp() as u64
    }

    fn run(&mut self) {
        // Initial load, then a backup of every server.
        let initial = (self.creates / 3).max(1);
        let bursts = 3;
        for b in 0..bursts {
            let k = initial / bursts + usize::from(b < initial % bursts);
            self.writes_of(k, true);
            let d = self.rng.random_range(1_000..=10 * MIN);
            let t = self.now + d;
            self.wait_until(t);
        }
        let t = self.now + self.rng.random_range(30 * MIN..=2 * HOUR);
        self.wait_until(t);
        for i in 0..self.names.len() {
            self.backup(i);
        }
        let t = self.now + self.rng.random_range(MIN..=HOUR);
        self.wait_until(t);
        let epochs = self.rng.random_range(4..=8);
        for e in 0..epochs {
            self.epoch(epochs - e);
        }
        // Whatever is left of the workload, in the calm before the end.
        let left = self.creates + self.modifies + self.deletes;
        self.writes_of(left, false);
        // The long outage ends with the run at the latest.
        if let Some((i, until)) = self.long.take() {
            let t = (self.now + self.rng.random_range(MIN..=HOUR)).max(until);
            self.wait_until(t);
            self.restore(i);
        }
    }

    fn epoch(&mut self, epochs_left: usize) {
        let start = self.now;
        let len = self.log_uniform(20 * MIN, 10 * HOUR);
        let end = start + len;
        let n = self.names.len();
        let mut evs: Vec<(u64, Ev)> = Vec::new();
        let budget = (self.creates + self.modifies + self.deletes) / (epochs_left + 1);
        let bursts = self.rng.random_range(1..=(budget / 3).clamp(1, 8));
        let mut burst_times = Vec::new();
        for b in 0..bursts {
            let k = budget / bursts + usize::from(b < budget % bursts);
            let t = self.rng.random_range(start..end);
            burst_times.push(t);
            evs.push((t, Ev::Writes(k)));
        }
        for i in 0..n {
            if self.rng.random_bool(0.35) {
                evs.push((self.rng.random_range(start..end), Ev::Backup(i)));
            }
        }
        // A long outage starts with an epoch, when every earlier restore has
        // finished (the calm before): no backsync is left waiting for it.
        let p_long = if self.hazards { 0.2 } else { 0.1 };
        if self.long.is_none() && !self.long_done && self.rng.random_bool(p_long) {
            let i = self.rng.random_range(0..n);
            evs.push((start, Ev::LongCrash(i)));
        }
        let long_active =
            self.long.is_some() || evs.iter().any(|e| matches!(e.1, Ev::LongCrash(_)));
        // With hazards, other servers crash and restore during a long
        // outage too: their backsyncs wait for the absent server and time out.
        if !long_active || (self.hazards && self.rng.random_bool(0.5)) {
            if self.rng.random_bool(0.55) {
                let k = if n > 2 && self.rng.random_bool(0.3) {
                    2
                } else {
                    1
                };
                let mut pick: Vec<usize> = (0..n).collect();
                pick.shuffle(&mut self.rng);
                for &i in pick.iter().take(k) {
                    let t = self.hot_time(start, end, &burst_times);
                    evs.push((t, Ev::Crash(i)));
                    if self.rng.random_bool(0.5) {
                        let r = self.rng.random_range(t..=end);
                        evs.push((r, Ev::Restore(i)));
                    }
                }
            }
            // A restore of a running server, often while its replies are
            // in flight: a hazard (write in flight at the restore).
            if self.hazards && self.rng.random_bool(0.15) {
                let i = self.rng.random_range(0..n);
                let t = self.hot_time(start, end, &burst_times);
                evs.push((t, Ev::RestoreRunning(i)));
            }
        }
        if self.rng.random_bool(0.35) {
            let t = self.rng.random_range(start..end);
            evs.push((t, Ev::Partition));
            if self.rng.random_bool(0.5) {
                evs.push((self.rng.random_range(t..=end), Ev::Heal));
            }
        }
        if self.rng.random_bool(0.4) {
            let t = self.rng.random_range(start..end);
            evs.push((t, Ev::FaultsOn));
            if self.rng.random_bool(0.5) {
                evs.push((self.rng.random_range(t..=end), Ev::FaultsOff));
            }
        }
        if !self.connector_deleted && !self.connectors.is_empty() && self.rng.random_bool(0.03) {
            evs.push((self.rng.random_range(start..end), Ev::DeleteConnector));
        }
        // Stable: events drawn at the same instant keep their order.
        evs.sort_by_key(|e| e.0);
        for (t, ev) in evs {
            self.wait_until(t);
            self.event(ev);
        }
        // The epoch ends: everything heals, crashed servers come back.
        self.wait_until(end);
        if self.partitioned {
            self.event(Ev::Heal);
        }
        if self.faults {
            self.event(Ev::FaultsOff);
        }
        // After the heal: what a partition held between sites leaves then.
        self.wait_in_flight();
        for i in 0..n {
            if !self.up[i] && self.long.is_none_or(|(l, _)| l != i) {
                self.restore(i);
            }
        }
        if let Some((i, until)) = self.long
            && self.now >= until
        {
            self.long = None;
            self.restore(i);
        }
        // Calm: writes only, long enough for every backsync to finish.
        let calm = self.rng.random_range(HOUR..=3 * HOUR);
        let mid = self.now + self.rng.random_range(0..calm);
        let end = self.now + calm;
        self.wait_until(mid);
        let k = self.rng.random_range(0..=budget / 4 + 1);
        self.writes_of(k, false);
        self.wait_until(end);
    }

    /// A time when replication messages are likely in flight (40%): just
    /// after a burst's change notifications, or a connector's scheduled
    /// pull; otherwise uniform in the epoch.
    fn hot_time(&mut self, start: u64, end: u64, bursts: &[u64]) -> u64 {
        if self.rng.random_bool(0.4) {
            let t = if !self.connectors.is_empty() && self.rng.random_bool(0.4) {
                let c = self.rng.random_range(0..self.connectors.len());
                let (every, latency) = (
                    self.connectors[c].1.as_millis() as u64,
                    self.connectors[c].2.as_millis() as u64,
                );
                let k = start.div_ceil(every.max(1));
                k * every + self.rng.random_range(0..=2 * latency + 500)
            } else if let Some(&b) = bursts.get(self.rng.random_range(0..bursts.len().max(1))) {
                let spacing = self.cfg.notify_spacing.as_millis() as u64;
                let j = self.rng.random_range(0..4);
                b + self.cfg.notify_delay.as_millis() as u64
                    + j * spacing
                    + self.rng.random_range(0..=100)
            } else {
                start
            };
            if (start..end).contains(&t) {
                return t;
            }
        }
        self.rng.random_range(start..end)
    }

    fn event(&mut self, ev: Ev) {
        let n = self.names.len();
        match ev {
            Ev::Writes(k) => self.writes_of(k, false),
            Ev::Backup(i) => {
                if self.up[i] {
                    self.backup(i);
                }
            }
            Ev::Crash(i) => {
                // Never every server at once, and none while one is away
                // long (unless hazards are generated).
                let down = self.up.iter().filter(|u| !**u).count();
                if self.up[i] && down + 1 < n && (self.long.is_none() || self.hazards) {
                    self.up[i] = false;
                    self.last_crash = self.now;
                    self.push(Action::Crash {
                        server: self.names[i].clone(),
                    });
                }
            }
            Ev::LongCrash(i) => {
                let down = self.up.iter().filter(|u| !**u).count();
                // Without hazards, no server goes away long while a
                // backsync relayed between sites may still wait for it: a
                // bridgehead holds the others' traffic (up to the backsync
                // timeout), any other server may still be asked (a round
                // trip through the bridgeheads, then a reply timeout).
                let window = if self.bridgeheads.contains(&i) {
                    self.cfg.backsync_timeout.as_millis() as u64
                } else {
                    2 * self.relay_span() + self.cfg.reply_timeout.as_millis() as u64
                };
                let relaying = !self.connectors.is_empty()
                    && self.last_restore.is_some_and(|t| self.now < t + window);
                if self.up[i]
                    && down == 0
                    && self.long.is_none()
                    && !self.long_done
                    && (self.hazards || !relaying)
                {
                    // Rarely, with hazards, away past the tombstone lifetime.
                    let tsl = self.cfg.tombstone_lifetime.as_millis() as u64;
                    let away = if self.hazards && self.rng.random_bool(0.15) {
                        tsl + self.rng.random_range(DAY..=3 * DAY)
                    } else {
                        self.rng.random_range(DAY..=5 * DAY)
                    };
                    let until = self.now + away;
                    self.long = Some((i, until));
                    self.long_done = true;
                    self.up[i] = false;
                    self.push(Action::Crash {
                        server: self.names[i].clone(),
                    });
                }
            }
            Ev::Restore(i) => {
                // Without hazards, not while a partition may hold a reply
                // of its between sites (the epoch's end restores it).
                let held = !self.hazards && self.partitioned && !self.connectors.is_empty();
                if !self.up[i] && self.long.is_none_or(|(l, _)| l != i) && !held {
                    self.wait_in_flight();
                    self.restore(i);
                }
            }
            Ev::RestoreRunning(i) => {
                if self.up[i] && (self.long.is_none() || self.hazards) {
                    self.restore(i);
                }
            }
            Ev::Partition => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                let k = if n >= 3 && self.rng.random_bool(0.2) {
                    3
                } else {
                    2
                };
                // Cut points so that every group has at least one server.
                let mut groups: Vec<Vec<String>> = vec![Vec::new(); k];
                for (j, &i) in order.iter().enumerate() {
                    let g = if j < k {
                        j
                    } else {
                        self.rng.random_range(0..k)
                    };
                    groups[g].push(self.names[i].clone());
                }
                // Sometimes a site against the rest: the realistic WAN cut.
                if self.rng.random_bool(0.4) {
                    let s = self.site_of[self.rng.random_range(0..n)];
                    let (a, b): (Vec<usize>, Vec<usize>) =
                        (0..n).partition(|&i| self.site_of[i] == s);
                    if !a.is_empty() && !b.is_empty() {
                        groups = vec![
                            a.iter().map(|&i| self.names[i].clone()).collect(),
                            b.iter().map(|&i| self.names[i].clone()).collect(),
                        ];
                    }
                }
                self.partitioned = true;
                self.push(Action::Partition { groups });
            }
            Ev::Heal => {
                self.partitioned = false;
                self.last_heal = self.now;
                self.push(Action::Heal);
            }
            Ev::FaultsOn => {
                let loss = [0.0, 0.05, 0.1, 0.2, 0.3][self.rng.random_range(0..5)];
                let duplicate = [0.0, 0.05, 0.1, 0.3][self.rng.random_range(0..4)];
                let jitter = [0, 50, 500, 5_000][self.rng.random_range(0..4)];
                let mut f = LinkFaults {
                    loss,
                    duplicate,
                    jitter: Duration::from_millis(jitter),
                };
                if f == LinkFaults::default() {
                    f.duplicate = 0.1;
                }
                self.faults = true;
                self.out.push(Intent::Op(Op::Faults(f)));
            }
            Ev::FaultsOff => {
                if self.faults {
                    self.faults = false;
                    self.out.push(Intent::Op(Op::Faults(LinkFaults::default())));
                }
            }
            Ev::DeleteConnector => {
                let c = self.rng.random_range(0..self.connectors.len());
                self.connector_deleted = true;
                let between = self.connectors[c].0.clone();
                self.push(Action::DeleteConnector { between });
            }
        }
    }

    /// Without hazards, no restore while a reply sent before the latest
    /// crash may still be in flight (the longest latency plus jitter is
    /// well under two minutes).
    /// Between sites, a reply may also wait at each bridgehead on its way
    /// for the connector's tick (store-and-forward): at most a schedule
    /// and a latency per connector.
    fn wait_in_flight(&mut self) {
        if !self.hazards {
            let relay = self.relay_span();
            // A partition holds relayed messages until it heals.
            let heal = if relay > 0 { self.last_heal + relay } else { 0 };
            self.wait_until((self.last_crash + 2 * MIN + relay).max(heal));
        }
    }

    /// The longest a message relayed between sites waits and travels with
    /// every bridgehead up: a schedule and a latency per connector.
    fn relay_span(&self) -> u64 {
        (self.connectors.iter())
            .map(|(_, s, l)| (*s + *l).as_millis() as u64)
            .sum()
    }

    fn backup(&mut self, i: usize) {
        let name = format!("b{}", self.next_backup);
        self.next_backup += 1;
        self.backups[i].push(name.clone());
        self.all_backups[i].push(name.clone());
        self.push(Action::Backup {
            server: self.names[i].clone(),
            name,
        });
    }

    /// Restores from one of the server's backups, of any age. The backups
    /// newer than the one restored belong to a timeline the directory has
    /// rolled back past: an operator never restores them afterwards (they
    /// would bring back writes lost meanwhile, whose USNs a backsync may
    /// have handed out again).
    fn restore(&mut self, i: usize) {
        // With hazards, sometimes any backup ever taken, an abandoned
        // timeline's included.
        let all = &self.all_backups[i];
        let abandoned: Vec<&String> = all
            .iter()
            .filter(|b| !self.backups[i].contains(b))
            .collect();
        let backup = if self.hazards && !abandoned.is_empty() && self.rng.random_bool(0.2) {
            abandoned[self.rng.random_range(0..abandoned.len())].clone()
        } else {
            let b = &mut self.backups[i];
            let k = self.rng.random_range(0..b.len());
            b.truncate(k + 1);
            b[k].clone()
        };
        self.up[i] = true;
        self.last_restore = Some(self.now);
        self.push(Action::Restore {
            server: self.names[i].clone(),
            backup,
            strategy: Some(self.strategy),
            subtree: None,
        });
    }

    fn writes_of(&mut self, k: usize, creates_only: bool) {
        for _ in 0..k {
            self.write(creates_only);
        }
    }

    fn write(&mut self, creates_only: bool) {
        let n = self.names.len();
        let (c, m, d) = if creates_only {
            (self.creates, 0, 0)
        } else {
            (self.creates, self.modifies, self.deletes)
        };
        let total = c + m + d;
        if total == 0 {
            return;
        }
        let up: Vec<usize> = (0..n).filter(|&i| self.up[i]).collect();
        let server_idx = if !up.is_empty() && self.rng.random_bool(0.9) {
            up[self.rng.random_range(0..up.len())]
        } else {
            self.rng.random_range(0..n)
        };
        let server = self.names[server_idx].clone();
        let r = self.rng.random_range(0..total);
        if r < c {
            self.creates -= 1;
            if n >= 2 && self.creates > 0 && self.rng.random_bool(0.06) {
                // A name conflict: the same dn created on two servers at the
                // same instant, before either can hear of the other.
                self.creates -= 1;
                let dn = format!("cn=x{}", self.next_obj);
                self.next_obj += 1;
                let other = (server_idx + self.rng.random_range(1..n)) % n;
                for s in [server_idx, other] {
                    let attrs = self.attrs_for(&dn);
                    self.push(Action::Create {
                        server: self.names[s].clone(),
                        dn: dn.clone(),
                        attrs,
                        expect_refused: false,
                    });
                }
                return;
            }
            let dn = format!("cn=o{}", self.next_obj);
            self.next_obj += 1;
            let attrs = self.attrs_for(&dn);
            self.push(Action::Create {
                server,
                dn,
                attrs,
                expect_refused: false,
            });
        } else if r < c + m {
            self.modifies -= 1;
            let v = self.next_value;
            self.next_value += 1;
            let mut attrs = BTreeMap::new();
            attrs.insert("title".to_string(), format!("t{v}"));
            let mut remove = Vec::new();
            match self.rng.random_range(0..10) {
                0..=2 => {
                    attrs.insert("phone".to_string(), format!("p{v}"));
                }
                3 => remove.push("phone".to_string()),
                _ => {}
            }
            let pick = self.rng.random();
            self.out.push(Intent::Modify {
                server,
                pick,
                attrs,
                remove,
            });
        } else {
            self.deletes -= 1;
            let pick = self.rng.random();
            self.out.push(Intent::Delete { server, pick });
        }
    }

    fn attrs_for(&mut self, dn: &str) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let cn = dn.trim_start_matches("cn=");
        a.insert("mail".to_string(), format!("{cn}@example.com"));
        a.insert("title".to_string(), "t0".to_string());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            servers: 5,
            sites: 3,
            objects: 60,
            strategy: RestoreStrategy::Backsync,
            profile: Profile::Exchange55,
            hazards: false,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        assert_eq!(plan(7, &params()), plan(7, &params()));
        assert_ne!(plan(7, &params()), plan(8, &params()));
    }

    #[test]
    fn topologies_have_every_site_and_a_connector_path() {
        for seed in 0..50 {
            let p = plan(seed, &params());
            let t = &p.setup.topology;
            assert_eq!(t.sites.len(), 3);
            assert_eq!(t.server_names().len(), 5);
            assert!(t.connectors.len() >= 2, "a spanning tree at least");
            crate::shell::topology::Layout::resolve(
                t,
                Duration::from_secs(900),
                Duration::from_secs(1),
                Duration::from_millis(10),
                Duration::from_secs(3600),
            )
            .expect("a valid topology");
        }
    }

    #[test]
    fn outages_stay_short_and_runs_under_the_tombstone_lifetime() {
        for seed in 0..200 {
            let p = plan(seed, &params());
            let mut now = 0u64;
            let mut down_since: BTreeMap<String, u64> = BTreeMap::new();
            let mut long = 0;
            for i in &p.intents {
                match i {
                    Intent::Op(Op::Step(Action::Wait { duration })) => {
                        now += duration.as_millis() as u64
                    }
                    Intent::Op(Op::Step(Action::Crash { server })) => {
                        down_since.insert(server.clone(), now);
                    }
                    Intent::Op(Op::Step(Action::Restore { server, .. })) => {
                        if let Some(t) = down_since.remove(server) {
                            let out = now - t;
                            assert!(out < 6 * DAY, "seed {seed}: outage of {out} ms");
                            if out > 16 * HOUR {
                                long += 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
            assert!(long <= 1, "seed {seed}: at most one long outage");
            assert!(down_since.is_empty() || down_since.len() <= 4);
            assert!(now < 20 * DAY, "seed {seed}: run of {now} ms");
        }
    }
}
