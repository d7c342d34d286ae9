//! `Cluster`: the synchronous library API over the actors.
//!
//! One actix system on one thread, over a current-thread tokio runtime with
//! a paused clock: timers fire in simulated time (the runtime jumps to the
//! next one whenever everything is idle), so weeks of schedule run in
//! milliseconds and the same seed gives the same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{ReplicationConfig, RestoreStrategy};
use crate::core::{Guid, WriteError};
use crate::error::ClusterError;
use crate::limits::{MAX_CONNECTIONS, MAX_COUNT, MAX_SERVERS, check_count, check_duration};
use crate::shell::Shared;
use crate::shell::network::{LinkFaults, NetControl, Network};
use crate::shell::observe::{Counters, Event};
use crate::shell::server::{
    BacksyncAnswered, DirectoryServer, Inspect, Release, SetContainers, Watermarks, WriteOp, Writes,
};
use crate::shell::supervisor::{
    BackupCmd, BackupsCmd, ConvergeCmd, Convergence, CrashCmd, DeleteConnectorCmd, LostCmd,
    PartitionCmd, RestoreCmd, Supervisor,
};
use crate::shell::topology::{Layout, Topology};
use crate::view::{ObjectView, ServerStatus};

/// The longest single sleep of [`Cluster::wait`]: 365 days, well inside the
/// horizon of tokio's timers.
pub const WAIT_CHUNK: Duration = Duration::from_secs(365 * 86_400);

/// A bulk workload (the `load` step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadSpec {
    /// Servers to spread it over; empty: every running writable server.
    pub servers: Vec<String>,
    /// Objects to create.
    pub creates: u64,
    /// Modifies of objects loaded earlier.
    pub modifies: u64,
    /// Deletes of objects loaded earlier.
    pub deletes: u64,
    /// dns are `cn=<prefix><n>`; default `obj`.
    pub prefix: Option<String>,
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadReport {
    /// Writes that succeeded.
    pub applied: u64,
    /// Writes the servers refused (busy, down, gone meanwhile).
    pub refused: u64,
}

/// An in-process multi-master directory.
///
/// ```
/// use std::time::Duration;
/// use backsync::{Cluster, Topology, ReplicationConfig, RestoreStrategy};
/// let t = Topology::new().site("Redmond", &["Server1", "Server2"]);
/// let mut c = Cluster::new(&t, ReplicationConfig::default(), 1).unwrap();
/// c.backup("Server1", "nightly").unwrap();
/// c.create("Server1", "cn=UserA", &[("mail", "a@example.com")]).unwrap();
/// assert!(c.converge(Duration::from_secs(3600)).unwrap().converged);
/// c.restore("Server1", "nightly", Some(RestoreStrategy::Backsync)).unwrap();
/// assert!(c.converge(Duration::from_secs(3600)).unwrap().converged);
/// assert!(c.lookup("Server1", "cn=UserA").unwrap().is_some());
/// ```
pub struct Cluster {
    rt: actix::SystemRunner,
    /// The server threads in throughput mode; empty when deterministic.
    arbiters: Vec<Arbiter>,
    shared: Arc<Shared>,
    servers: Vec<Addr<DirectoryServer>>,
    sup: Addr<Supervisor>,
    net: Addr<Network>,
    names: Vec<String>,
    sites: Vec<String>,
    rng: ChaCha8Rng,
    /// Per prefix: the next number and the objects loaded, each as the
    /// server that created it and its number (its dn is `cn=<prefix><n>`:
    /// 16 bytes an object instead of a dn string's 48).
    loaded: BTreeMap<String, (u64, Vec<(u32, u64)>)>,
    refused: u64,
}

/// The dn of the `n`th object a load with `prefix` created.
fn loaded_dn(prefix: &str, n: u64) -> String {
    format!("cn={prefix}{n}")
}

impl Cluster {
    /// Starts a cluster with no link faults.
    pub fn new(t: &Topology, cfg: ReplicationConfig, seed: u64) -> Result<Self, ClusterError> {
        Self::with_faults(t, cfg, seed, LinkFaults::default())
    }

    /// Starts a cluster whose network loses, duplicates and delays messages.
    pub fn with_faults(
        t: &Topology,
        cfg: ReplicationConfig,
        seed: u64,
        faults: LinkFaults,
    ) -> Result<Self, ClusterError> {
        Self::build(t, cfg, seed, faults, 0)
    }

    /// Starts a cluster. `arbiters == 0`: everything on this thread over a
    /// paused clock (deterministic). Otherwise the servers are spread over
    /// that many arbiter threads on the real clock ([`crate::throughput`]).
    pub(crate) fn build(
        t: &Topology,
        cfg: ReplicationConfig,
        seed: u64,
        faults: LinkFaults,
        arbiters: usize,
    ) -> Result<Self, ClusterError> {
        cfg.validate()?;
        faults.validate()?;
        check_topology(t)?;
        let layout = Layout::resolve(
            t,
            cfg.connector_schedule,
            cfg.connector_latency,
            cfg.intrasite_latency,
            cfg.intrasite_schedule,
        )?;
        let rt = actix::System::with_tokio_rt(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(arbiters == 0)
                .build()
                .expect("a current-thread runtime builds")
        });
        let names: Vec<String> = layout.servers.iter().map(|s| s.to_string()).collect();
        let sites = layout
            .site_of
            .iter()
            .map(|&i| layout.site_names[i].clone())
            .collect();
        let (shared, servers, sup, net, arbiters) = rt.block_on(async move {
            let shared = Shared::new(cfg, layout, seed, arbiters > 0);
            let net = Network::new(shared.clone(), seed, faults).start();
            let arbs: Vec<Arbiter> = (0..arbiters).map(|_| Arbiter::new()).collect();
            let servers: Vec<_> = (0..names_len(&shared))
                .map(|i| {
                    let server = DirectoryServer::new(i, shared.clone(), net.clone(), seed);
                    match arbs.get(i % arbiters.max(1)) {
                        Some(a) => DirectoryServer::start_in_arbiter(&a.handle(), move |_| server),
                        None => server.start(),
                    }
                })
                .collect();
            net.do_send(NetControl::Register(servers.clone()));
            let sup = Supervisor::new(shared.clone(), servers.clone(), net.clone()).start();
            (shared, servers, sup, net, arbs)
        });
        // Actors start asynchronously: one round trip each makes sure every
        // server has started and published before the first step.
        for s in &servers {
            rt.block_on(s.send(Watermarks))?;
        }
        Ok(Cluster {
            rt,
            arbiters,
            shared,
            servers,
            sup,
            net,
            names,
            sites,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6c6f_6164),
            loaded: BTreeMap::new(),
            refused: 0,
        })
    }

    fn idx(&self, server: &str) -> Result<usize, ClusterError> {
        self.names
            .iter()
            .position(|n| n == server)
            .ok_or_else(|| ClusterError::UnknownServer(server.to_string()))
    }

    fn ask<M>(&self, addr: &Addr<DirectoryServer>, m: M) -> Result<M::Result, ClusterError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        DirectoryServer: Handler<M>,
    {
        Ok(self.rt.block_on(addr.send(m))?)
    }

    fn sup<M>(&self, m: M) -> Result<M::Result, ClusterError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Supervisor: Handler<M>,
    {
        Ok(self.rt.block_on(self.sup.send(m))?)
    }

    /// The arbiters the servers run on (throughput mode; empty otherwise).
    pub(crate) fn arbiter_handles(&self) -> Vec<ArbiterHandle> {
        self.arbiters.iter().map(Arbiter::handle).collect()
    }

    /// Server names, in site order.
    pub fn servers(&self) -> &[String] {
        &self.names
    }

    /// The settings it runs with.
    pub fn config(&self) -> &ReplicationConfig {
        &self.shared.cfg
    }

    fn write(&mut self, server: &str, op: WriteOp) -> Result<Guid, ClusterError> {
        let i = self.idx(server)?;
        let dn = match &op {
            WriteOp::Create { dn, .. }
            | WriteOp::Modify { dn, .. }
            | WriteOp::Delete { dn }
            | WriteOp::DeleteTree { dn } => dn,
            WriteOp::Rename { dn, new_dn } => {
                check_dn(new_dn)?;
                dn
            }
        };
        check_dn(dn)?;
        let r = self
            .ask(&self.servers[i], Writes(vec![op]))?
            .pop()
            .expect("one result per write");
        if matches!(
            r,
            Err(WriteError::Busy(_) | WriteError::Quarantined(_) | WriteError::Down(_))
        ) {
            self.refused += 1;
        }
        Ok(r?)
    }

    /// Originating create.
    pub fn create(
        &mut self,
        server: &str,
        dn: &str,
        attrs: &[(&str, &str)],
    ) -> Result<Guid, ClusterError> {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.write(
            server,
            WriteOp::Create {
                dn: dn.into(),
                attrs,
            },
        )
    }

    /// Originating modify.
    pub fn modify(
        &mut self,
        server: &str,
        dn: &str,
        set: &[(&str, &str)],
        remove: &[&str],
    ) -> Result<Guid, ClusterError> {
        let set = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let remove = remove.iter().map(|s| s.to_string()).collect();
        self.write(
            server,
            WriteOp::Modify {
                dn: dn.into(),
                set,
                remove,
            },
        )
    }

    /// Originating delete. Refused ([`WriteError::NotLeaf`]) when the
    /// object has live children on that server: see [`Cluster::delete_tree`].
    pub fn delete(&mut self, server: &str, dn: &str) -> Result<Guid, ClusterError> {
        self.write(server, WriteOp::Delete { dn: dn.into() })
    }

    /// Originating tree delete: the object and every live object below it
    /// on that server become tombstones. Returns the named object's guid.
    pub fn delete_tree(&mut self, server: &str, dn: &str) -> Result<Guid, ClusterError> {
        self.write(server, WriteOp::DeleteTree { dn: dn.into() })
    }

    /// Originating rename or move: the object keeps its guid and its
    /// children move with it. Refused when `dn` is not live there, `new_dn`
    /// is ([`WriteError::DnExists`]), the new parent is not
    /// ([`WriteError::NoSuchParent`]), the new parent is the object or
    /// below it, or the server refuses writes.
    ///
    /// ```
    /// use backsync::{Cluster, Topology, ReplicationConfig};
    /// let t = Topology::new().site("Redmond", &["Server1"]);
    /// let mut c = Cluster::new(&t, ReplicationConfig::default(), 1).unwrap();
    /// c.set_fixed_containers(&["dc=corp"]).unwrap();
    /// c.create("Server1", "ou=Sales,dc=corp", &[]).unwrap();
    /// c.create("Server1", "cn=Ann,ou=Sales,dc=corp", &[]).unwrap();
    /// c.rename("Server1", "ou=Sales,dc=corp", "ou=Marketing,dc=corp").unwrap();
    /// assert!(c.lookup("Server1", "cn=Ann,ou=Marketing,dc=corp").unwrap().is_some());
    /// ```
    pub fn rename(&mut self, server: &str, dn: &str, new_dn: &str) -> Result<Guid, ClusterError> {
        self.write(
            server,
            WriteOp::Rename {
                dn: dn.into(),
                new_dn: new_dn.into(),
            },
        )
    }

    /// Makes the directory a tree with exactly these fixed containers
    /// (besides the root and `cn=LostAndFound`): every other parent a write
    /// names must be a live object on the server it is written to
    /// ([`crate::core::Containers::Fixed`]). Without it, a parent dn that
    /// names no live object there is taken for a fixed container
    /// ([`crate::core::Containers::Implicit`], the flat behaviour of
    /// earlier releases). For the writes that follow, on every server,
    /// restored ones included.
    pub fn set_fixed_containers<S: AsRef<str>>(&mut self, dns: &[S]) -> Result<(), ClusterError> {
        let c = Arc::new(crate::core::Containers::fixed(
            dns.iter().map(AsRef::as_ref),
        ));
        *self.shared.containers.write().expect("containers lock") = c.clone();
        for s in &self.servers {
            self.ask(s, SetContainers(c.clone()))?;
        }
        Ok(())
    }

    /// A bulk workload generated from the seed: creates spread round-robin
    /// over the servers, modifies and deletes of objects loaded earlier.
    pub fn load(&mut self, spec: &LoadSpec) -> Result<LoadReport, ClusterError> {
        self.load_with_progress(spec, &mut |_, _| {})
    }

    /// [`Cluster::load`], calling `progress(done, total)` as writes apply.
    pub fn load_with_progress(
        &mut self,
        spec: &LoadSpec,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<LoadReport, ClusterError> {
        for (what, n) in [
            ("load creates", spec.creates),
            ("load modifies", spec.modifies),
            ("load deletes", spec.deletes),
        ] {
            check_count(n, MAX_COUNT)
                .map_err(|message| ClusterError::OutOfBounds { what, message })?;
        }
        let targets: Vec<usize> = if spec.servers.is_empty() {
            let obs = self.shared.obs.servers();
            let read_only = self.shared.layout().read_only.clone();
            (0..self.names.len())
                .filter(|&i| obs[i].running && !read_only[i])
                .collect()
        } else {
            spec.servers
                .iter()
                .map(|s| self.idx(s))
                .collect::<Result<_, _>>()?
        };
        let prefix = spec.prefix.clone().unwrap_or_else(|| "obj".into());
        let mut batches: Vec<Vec<WriteOp>> = vec![Vec::new(); self.names.len()];
        let (next, pool) = self.loaded.entry(prefix.clone()).or_insert((1, Vec::new()));
        if !targets.is_empty() {
            for k in 0..spec.creates {
                let s = targets[(k % targets.len() as u64) as usize];
                let n = *next;
                *next += 1;
                let attrs = vec![
                    ("mail".to_string(), format!("{prefix}{n}@example.com")),
                    ("title".to_string(), "loaded".to_string()),
                ];
                batches[s].push(WriteOp::Create {
                    dn: loaded_dn(&prefix, n),
                    attrs,
                });
                pool.push((s as u32, n));
            }
        }
        // Modifies and deletes go to the server that created the object, so
        // they find it live there without waiting for replication.
        for k in 0..spec.modifies {
            if pool.is_empty() {
                break;
            }
            let (s, n) = pool[self.rng.random_range(0..pool.len())];
            batches[s as usize].push(WriteOp::Modify {
                dn: loaded_dn(&prefix, n),
                set: vec![("title".into(), format!("modified {k}"))],
                remove: Vec::new(),
            });
        }
        // Deletes draw without replacement: a swap-remove per draw, where a
        // shuffle of the whole pool on every call cost O(objects) each
        // minute of a loaded week.
        for _ in 0..spec.deletes {
            if pool.is_empty() {
                break;
            }
            let (s, n) = pool.swap_remove(self.rng.random_range(0..pool.len()));
            batches[s as usize].push(WriteOp::Delete {
                dn: loaded_dn(&prefix, n),
            });
        }
        let mut report = LoadReport::default();
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        for (i, ops) in batches.into_iter().enumerate() {
            // Chunks keep a progress bar moving; all take no simulated time.
            let mut ops = ops.into_iter().peekable();
            while ops.peek().is_some() {
                let chunk: Vec<WriteOp> = ops.by_ref().take(10_000).collect();
                for r in self.ask(&self.servers[i], Writes(chunk))? {
                    match r {
                        Ok(_) => report.applied += 1,
                        Err(_) => report.refused += 1,
                    }
                }
                progress(report.applied + report.refused, total);
            }
        }
        self.event(format!(
            "load: {} applied, {} refused",
            crate::config::count(report.applied, "write"),
            report.refused
        ));
        Ok(report)
    }

    fn event(&self, text: String) {
        let shared = self.shared.clone();
        self.rt
            .block_on(async move { shared.obs.event(shared.now(), text) });
    }

    /// Takes a backup of a server under a name (a later one replaces it).
    pub fn backup(&mut self, server: &str, name: &str) -> Result<(), ClusterError> {
        let server = self.idx(server)?;
        self.sup(BackupCmd {
            server,
            name: name.into(),
        })?
    }

    /// Crashes a server; returns the writes lost by nature.
    pub fn crash(&mut self, server: &str) -> Result<u64, ClusterError> {
        let i = self.idx(server)?;
        self.sup(CrashCmd(i))?
    }

    /// Restores a server from a backup (stopping it first if running).
    /// `None` uses the configured default strategy (an authoritative one
    /// then raises every object).
    pub fn restore(
        &mut self,
        server: &str,
        backup: &str,
        strategy: Option<RestoreStrategy>,
    ) -> Result<(), ClusterError> {
        let strategy = strategy.unwrap_or(self.shared.cfg.restore);
        self.restore_with(server, backup, strategy, None)
    }

    /// Restores a server authoritatively, as ntdsutil's "authoritative
    /// restore" does ([`RestoreStrategy::Authoritative`]): as
    /// `new-invocation`, then every live object of the backup under
    /// `subtree` (the object with that dn and those below it; every object
    /// when `None`) is rewritten with its version raised by 100,000 per day,
    /// or part of one, since the backup, so that it wins on every server
    /// over what happened since, deletes included.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backsync::{Cluster, ReplicationConfig, Topology};
    /// let t = Topology::new().site("Redmond", &["Server1", "Server2"]);
    /// let mut c = Cluster::new(&t, ReplicationConfig::default(), 1).unwrap();
    /// let hour = Duration::from_secs(3600);
    /// c.create("Server1", "cn=Ann,ou=Sales", &[]).unwrap();
    /// assert!(c.converge(hour).unwrap().converged);
    /// c.backup("Server1", "nightly").unwrap();
    /// c.delete("Server2", "cn=Ann,ou=Sales").unwrap();
    /// assert!(c.converge(hour).unwrap().converged);
    /// c.restore_authoritative("Server1", "nightly", Some("ou=Sales")).unwrap();
    /// assert!(c.converge(hour).unwrap().converged);
    /// assert!(c.lookup("Server2", "cn=Ann,ou=Sales").unwrap().is_some(), "back on every server");
    /// ```
    pub fn restore_authoritative(
        &mut self,
        server: &str,
        backup: &str,
        subtree: Option<&str>,
    ) -> Result<(), ClusterError> {
        let strategy = RestoreStrategy::Authoritative;
        self.restore_with(server, backup, strategy, subtree.map(Arc::from))
    }

    fn restore_with(
        &mut self,
        server: &str,
        backup: &str,
        strategy: RestoreStrategy,
        subtree: Option<Arc<str>>,
    ) -> Result<(), ClusterError> {
        let server = self.idx(server)?;
        self.sup(RestoreCmd {
            server,
            backup: backup.into(),
            strategy,
            subtree,
        })??;
        if !self.arbiters.is_empty() {
            // Throughput mode: the server restores on its own thread. A round
            // trip after the supervisor's message makes sure it has, so that
            // a `converge` next does not see it still down.
            self.ask(&self.servers[server], Watermarks)?;
        }
        Ok(())
    }

    /// Returns a quarantined server (a USN rollback detected) to service, as
    /// an administrator would after a naive restore (in AD: clearing "Dsa
    /// Not Writable"). Refused with [`ClusterError::Release`] when the server
    /// is not quarantined or is down.
    ///
    /// What it risks: the server's counter is behind what its partners saw
    /// of it, so its next writes reuse USNs those partners already hold;
    /// they never pull those writes, and the divergence stays, silently.
    /// Rollback detection stays off for this database instance afterwards.
    pub fn release(&mut self, server: &str) -> Result<(), ClusterError> {
        let i = self.idx(server)?;
        self.ask(&self.servers[i], Release)??;
        Ok(())
    }

    /// Partitions the network: messages between different groups are
    /// dropped. Servers named in no group form one more group together.
    pub fn partition(&mut self, groups: &[Vec<String>]) -> Result<(), ClusterError> {
        let n = self.names.len();
        let mut of = vec![groups.len(); n];
        let mut seen = vec![false; n];
        for (g, members) in groups.iter().enumerate() {
            for m in members {
                let i = self.idx(m)?;
                if seen[i] {
                    return Err(ClusterError::Partition(format!("`{m}` is in two groups")));
                }
                seen[i] = true;
                of[i] = g;
            }
        }
        self.sup(PartitionCmd(Some(of)))
    }

    /// Ends every partition.
    pub fn heal(&mut self) -> Result<(), ClusterError> {
        self.sup(PartitionCmd(None))
    }

    /// Changes the link faults (checked as by [`LinkFaults::validate`]).
    pub fn set_faults(&mut self, f: LinkFaults) -> Result<(), ClusterError> {
        f.validate()?;
        Ok(self.rt.block_on(self.net.send(NetControl::Faults(f)))?)
    }

    /// Deletes the connector between two sites (docs/DOMAIN.md section 7);
    /// returns the object replicas purged.
    pub fn delete_connector(&mut self, a: &str, b: &str) -> Result<usize, ClusterError> {
        let layout = self.shared.layout();
        let site = |n: &str| {
            layout
                .site_names
                .iter()
                .position(|s| s == n)
                .ok_or_else(|| ClusterError::UnknownSite(n.to_string()))
        };
        let (sa, sb) = (site(a)?, site(b)?);
        let link = layout
            .link_between(sa, sb)
            .ok_or_else(|| ClusterError::NoConnector(a.into(), b.into()))?;
        drop(layout);
        self.sup(DeleteConnectorCmd(link))?
    }

    /// Lets simulated time pass; returns the simulated time that really
    /// passed (measured on the clock, not the time asked for).
    ///
    /// A long wait sleeps in chunks of [`WAIT_CHUNK`], each well inside
    /// tokio's timer horizon (about 30 years from now), so a wait of any
    /// length behaves as the sum of shorter waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backsync::{Cluster, Topology, ReplicationConfig};
    /// let t = Topology::new().site("Redmond", &["Server1"]);
    /// let mut c = Cluster::new(&t, ReplicationConfig::default(), 1).unwrap();
    /// let fifty_years = Duration::from_secs(50 * 365 * 86_400);
    /// assert_eq!(c.wait(fifty_years), fifty_years);
    /// assert_eq!(c.now(), fifty_years);
    /// ```
    pub fn wait(&mut self, d: Duration) -> Duration {
        let before = self.now();
        self.rt.block_on(async move {
            let start = tokio::time::Instant::now();
            let mut done = Duration::ZERO;
            while done < d {
                done += (d - done).min(WAIT_CHUNK);
                // Deadlines from the start, not from each wake-up: no drift.
                tokio::time::sleep_until(start + done).await;
            }
        });
        self.now().saturating_sub(before)
    }

    /// Runs until every running server of each replication component holds
    /// the same directory with nothing in flight, or `within` has passed.
    /// `within` is more than zero and at most
    /// [`MAX_DURATION`](crate::limits::MAX_DURATION).
    pub fn converge(&mut self, within: Duration) -> Result<Convergence, ClusterError> {
        check_duration(within, true).map_err(|message| ClusterError::OutOfBounds {
            what: "converge limit",
            message,
        })?;
        self.sup(ConvergeCmd { within })
    }

    /// Whether the cluster is converged at this moment, as [`Cluster::converge`]
    /// would find it, without letting time pass.
    pub fn is_converged(&self) -> bool {
        crate::shell::supervisor::is_converged(&self.shared)
    }

    /// The live object shown with `dn` on a server (`None` if absent or the
    /// server is down).
    pub fn lookup(&self, server: &str, dn: &str) -> Result<Option<ObjectView>, ClusterError> {
        let i = self.idx(server)?;
        check_dn(dn)?;
        Ok(self
            .ask(&self.servers[i], Inspect(Some(dn.into())))?
            .and_then(|mut v| v.pop()))
    }

    /// Every object on a server, tombstones included, in its USN order
    /// (`None` when it is down).
    pub fn objects(&self, server: &str) -> Result<Option<Vec<ObjectView>>, ClusterError> {
        let i = self.idx(server)?;
        self.ask(&self.servers[i], Inspect(None))
    }

    /// The partners that answered the server's last backsync (the one
    /// running, or the last that ended since its last restore), sorted by
    /// name; `None` when it is down or has run no backsync since.
    pub fn backsync_answered(&self, server: &str) -> Result<Option<Vec<String>>, ClusterError> {
        let i = self.idx(server)?;
        let mut answered = self.ask(&self.servers[i], BacksyncAnswered)?;
        if let Some(a) = &mut answered {
            a.sort();
        }
        Ok(answered)
    }

    /// A server's state: `running`, `backsync`, `resync`, `quarantined` or `down`.
    pub fn state(&self, server: &str) -> Result<&'static str, ClusterError> {
        let i = self.idx(server)?;
        Ok(self.shared.obs.servers()[i].mode)
    }

    /// The tombstone a server holds of the object last named `dn`: `None`
    /// when a live object has that dn there, when it holds no tombstone
    /// with that dn, or when it is down. Of several, the last changed.
    pub fn tombstone(&self, server: &str, dn: &str) -> Result<Option<ObjectView>, ClusterError> {
        if self.lookup(server, dn)?.is_some() {
            return Ok(None);
        }
        Ok(self
            .objects(server)?
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.deleted && crate::core::tree::eq_ci(&o.dn, dn))
            .max_by_key(|o| o.usn_changed))
    }

    /// A server's watermarks by source: (source invocation, USN).
    pub fn watermarks(
        &self,
        server: &str,
    ) -> Result<BTreeMap<String, (crate::core::InvocationId, crate::core::Usn)>, ClusterError> {
        let i = self.idx(server)?;
        self.ask(&self.servers[i], Watermarks)
    }

    /// Every server's state.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.shared
            .obs
            .servers()
            .into_iter()
            .enumerate()
            .map(|(i, o)| ServerStatus {
                name: self.names[i].clone(),
                site: self.sites[i].clone(),
                live_objects: o.live,
                tombstones: o.tombstones,
                usn: o.usn,
                invocation_id: if o.running {
                    o.invocation.to_string()
                } else {
                    String::new()
                },
                state: o.mode.to_string(),
            })
            .collect()
    }

    /// Live objects on a server (0 when down).
    pub fn live_objects(&self, server: &str) -> Result<usize, ClusterError> {
        let i = self.idx(server)?;
        Ok(self.shared.obs.servers()[i].live)
    }

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        let shared = self.shared.clone();
        Duration::from_millis(self.rt.block_on(async move { shared.now() }))
    }

    /// The event log.
    pub fn events(&self) -> Vec<Event> {
        self.shared.obs.events()
    }

    /// Every restore hazard announced so far (also in the event log as
    /// `hazard: <kind>: ...` lines).
    pub fn hazards(&self) -> Vec<crate::shell::observe::Hazard> {
        self.shared.obs.hazards()
    }

    /// Every inbound replication link now, as `repadmin /showrepl` lists
    /// them: one per server and partner it pulls from, in server order.
    pub fn inbound_links(&self) -> Vec<InboundLink> {
        let layout = self.shared.layout();
        let site = |i: usize| layout.site_names[layout.site_of[i]].clone();
        (0..layout.servers.len())
            .flat_map(|dest| {
                let mut sources = layout.partners(dest);
                sources.sort_unstable();
                sources.into_iter().map(move |source| (dest, source))
            })
            .map(|(dest, source)| InboundLink {
                destination_site: site(dest),
                destination: layout.servers[dest].to_string(),
                source_site: site(source),
                source: layout.servers[source].to_string(),
                status: self.shared.obs.link(dest, source),
            })
            .collect()
    }

    /// Every backsync step so far: starts, answers, ends.
    pub fn backsync_notes(&self) -> Vec<crate::shell::observe::BacksyncNote> {
        self.shared.obs.backsync_notes()
    }

    /// Replication components now: groups of server indices that sites and
    /// connectors still join (convergence is judged inside each).
    pub fn components(&self) -> Vec<Vec<usize>> {
        self.shared.layout().components()
    }

    /// A hash of every delivery, apply and write so far (determinism checks).
    pub fn trace_hash(&self) -> u64 {
        self.shared.obs.trace_hash()
    }

    /// Records every table change from now on, for [`Cluster::take_changes`].
    pub fn record_changes(&mut self) {
        self.shared.obs.set_recording(true);
    }

    /// The table changes recorded so far (empty unless recording).
    pub fn take_changes(&self) -> Vec<crate::shell::observe::Change> {
        self.shared.obs.take_changes()
    }

    /// Campaign hook: records every [`Fact`](crate::shell::observe::Fact)
    /// (replica stored or removed, crash, restore, reply, link fault) from
    /// now on, for [`Cluster::take_facts`]. Observation only: the run is the same.
    pub fn record_facts(&mut self) {
        self.shared.obs.set_facts(true);
    }

    /// Takes the facts recorded so far (empty unless recording).
    pub fn take_facts(&self) -> Vec<crate::shell::observe::Fact> {
        self.shared.obs.take_facts()
    }

    /// Traffic counters since the start.
    pub fn counters(&self) -> Counters {
        self.shared.obs.counters()
    }

    /// Relayed messages held by a server now: waiting at a bridgehead for
    /// a connector's schedule tick, or for the next server on their way to
    /// be up and reachable (store-and-forward between sites). They count as
    /// in flight: the run has not converged while any is held.
    pub fn held(&self) -> u64 {
        self.shared.obs.held_now().max(0) as u64
    }

    /// Messages in flight now, held ones included.
    pub fn in_flight(&self) -> u64 {
        self.shared.obs.in_flight().max(0) as u64
    }

    /// Writes lost by nature at this moment: acknowledged writes held by no
    /// running server and by no backup that could still be restored. A
    /// write that comes back later (a restore, a partner) is no longer counted.
    pub fn lost_unreplicated(&self) -> Result<u64, ClusterError> {
        self.sup(LostCmd)?
    }

    /// Local writes refused so far (busy, quarantined or down).
    pub fn refused_writes(&self) -> u64 {
        self.refused
    }

    /// Backups taken: (name, server).
    pub fn backups(&self) -> Result<Vec<(String, String)>, ClusterError> {
        self.sup(BackupsCmd)
    }
}

/// A dn must not be empty or blank.
fn check_dn(dn: &str) -> Result<(), ClusterError> {
    if dn.trim().is_empty() {
        return Err(ClusterError::EmptyDn);
    }
    Ok(())
}

/// The bounds of a topology: at most [`MAX_SERVERS`] servers and
/// [`MAX_CONNECTIONS`] connections, connector and connection schedules
/// more than zero, schedules and latencies at most
/// [`MAX_DURATION`](crate::limits::MAX_DURATION).
fn check_topology(t: &Topology) -> Result<(), ClusterError> {
    let servers: usize = t.sites.iter().map(|s| s.servers.len()).sum();
    if servers > MAX_SERVERS {
        return Err(ClusterError::Topology(format!(
            "{servers} servers: at most {MAX_SERVERS}"
        )));
    }
    if t.connections.len() > MAX_CONNECTIONS {
        return Err(ClusterError::Topology(format!(
            "{} connections: at most {MAX_CONNECTIONS}",
            t.connections.len()
        )));
    }
    for c in &t.connections {
        for (what, d, positive) in [
            ("schedule", c.schedule, true),
            ("latency", c.latency, false),
        ] {
            if let Some(d) = d {
                check_duration(d, positive).map_err(|m| {
                    ClusterError::Topology(format!("connection {} -> {}: {what} {m}", c.from, c.to))
                })?;
            }
        }
    }
    for c in &t.connectors {
        let [a, b] = &c.between;
        for (what, d, positive) in [
            ("schedule", c.schedule, true),
            ("latency", c.latency, false),
        ] {
            if let Some(d) = d {
                check_duration(d, positive).map_err(|m| {
                    ClusterError::Topology(format!("connector {a} - {b}: {what} {m}"))
                })?;
            }
        }
    }
    Ok(())
}

fn names_len(shared: &Shared) -> usize {
    shared.layout().servers.len()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in self.arbiters.drain(..) {
            a.stop();
            let _ = a.join();
        }
        actix::System::current().stop();
    }
}

/// One inbound replication link: a server, a partner it pulls from, and how
/// its last pulls went ([`Cluster::inbound_links`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundLink {
    /// The site of the server that pulls.
    pub destination_site: String,
    /// The server that pulls.
    pub destination: String,
    /// The site of the partner pulled from.
    pub source_site: String,
    /// The partner pulled from.
    pub source: String,
    /// Its last success, last failure and failures since.
    pub status: crate::shell::observe::LinkStatus,
}
