//! Sites, servers, connectors or one-way connections, read-only servers,
//! and the routes between them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::core::WeekWindows;
use crate::error::ClusterError;

/// A site: well-connected servers that replicate directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Site name.
    pub name: String,
    /// Its servers.
    pub servers: Vec<String>,
    /// Those of its servers that are read-only (an RODC): they refuse
    /// originating writes and are never a replication source.
    pub read_only: Vec<String>,
}

/// A one-way connection: `to` pulls from `from` (an nTDSConnection object
/// of `to` whose fromServer is `from`).
///
/// When a topology has connections, scheduled and notified replication
/// follows only them (the KCC is not simulated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The source.
    pub from: String,
    /// The destination, which pulls.
    pub to: String,
    /// How often `to` pulls; `None`: the profile's intrasite schedule when
    /// both servers are in one site, its connector schedule otherwise.
    pub schedule: Option<Duration>,
    /// When replication may run (`None`: always). A pull or notification
    /// due while closed waits for the next open quarter hour.
    pub windows: Option<WeekWindows>,
    /// One-way delay of a message between the two; `None`: the intrasite
    /// latency within a site, the profile's connector latency between sites.
    pub latency: Option<Duration>,
}

/// A connector between two sites, with one bridgehead on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    /// The two sites.
    pub between: [String; 2],
    /// The bridgeheads, in the order of `between`.
    pub bridgeheads: [String; 2],
    /// How often the bridgeheads pull each other (profile default if `None`).
    pub schedule: Option<Duration>,
    /// One-way delay of a message across it (profile default if `None`).
    pub latency: Option<Duration>,
}

/// The organisation's layout.
///
/// ```
/// use backsync::Topology;
/// let t = Topology::new()
///     .site("Redmond", &["Server1", "Server2"])
///     .site("Dublin", &["Server3"])
///     .connector(["Redmond", "Dublin"], ["Server2", "Server3"]);
/// assert_eq!(t.server_names().len(), 3);
///
/// // One-way connections and a read-only branch server.
/// let t = Topology::new()
///     .site("Hub", &["DC1", "DC2"])
///     .site("Branch", &["RODC1"])
///     .read_only(&["RODC1"])
///     .connection("DC1", "DC2")
///     .connection("DC2", "DC1")
///     .connection("DC1", "RODC1");
/// assert_eq!(t.connections.len(), 3);
/// assert_eq!(t.sites[1].read_only, ["RODC1"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Sites.
    pub sites: Vec<Site>,
    /// Connectors (between sites, both ways). Not with `connections`.
    pub connectors: Vec<Connector>,
    /// One-way connections between servers. Not with `connectors`.
    pub connections: Vec<Connection>,
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a site.
    pub fn site(mut self, name: &str, servers: &[&str]) -> Self {
        self.sites.push(Site {
            name: name.into(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            read_only: Vec::new(),
        });
        self
    }

    /// Marks servers read-only, each in the site that lists it (a name no
    /// site lists is left for [`Cluster::new`](crate::Cluster::new) to reject).
    pub fn read_only(mut self, servers: &[&str]) -> Self {
        for name in servers {
            match self
                .sites
                .iter_mut()
                .find(|s| s.servers.iter().any(|x| x == name))
            {
                Some(site) => site.read_only.push(name.to_string()),
                None => {
                    if let Some(last) = self.sites.last_mut() {
                        last.read_only.push(name.to_string());
                    }
                }
            }
        }
        self
    }

    /// Adds a one-way connection (`to` pulls from `from`) with the default
    /// schedule and latency, open all week.
    pub fn connection(mut self, from: &str, to: &str) -> Self {
        self.connections.push(Connection {
            from: from.into(),
            to: to.into(),
            schedule: None,
            windows: None,
            latency: None,
        });
        self
    }

    /// Adds a connector with the profile's schedule and latency.
    pub fn connector(mut self, between: [&str; 2], bridgeheads: [&str; 2]) -> Self {
        self.connectors.push(Connector {
            between: between.map(String::from),
            bridgeheads: bridgeheads.map(String::from),
            schedule: None,
            latency: None,
        });
        self
    }

    /// Every server, in site order.
    pub fn server_names(&self) -> Vec<String> {
        self.sites.iter().flat_map(|s| s.servers.clone()).collect()
    }
}

/// A connector resolved to indexes.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub sites: [usize; 2],
    pub bridgeheads: [usize; 2],
    pub schedule: Duration,
    pub latency: Duration,
    pub deleted: bool,
}

/// A connection resolved to indexes.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub from: usize,
    pub to: usize,
    pub schedule: Duration,
    pub windows: Option<WeekWindows>,
    pub latency: Duration,
}

/// Where a relayed message goes next ([`Layout::next_hop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// To this server of the same site, after the intrasite latency.
    Site(usize),
    /// Across this connector (link index), from its bridgehead on `side`
    /// (0 or 1, as in `Link::sites`), on the connector's schedule.
    Link {
        /// The link index.
        link: usize,
        /// The side the message leaves from.
        side: usize,
    },
}

/// The topology resolved to indexes, as the shell uses it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub servers: Vec<Arc<str>>,
    pub site_of: Vec<usize>,
    pub site_names: Vec<String>,
    pub links: Vec<Link>,
    pub intrasite_latency: Duration,
    /// Per server, whether it is read-only.
    pub read_only: Vec<bool>,
    /// One-way connections; when there are any, replication follows only them.
    pub conns: Vec<Conn>,
    /// The latency between sites no connection path joins.
    pub default_latency: Duration,
}

impl Layout {
    pub fn resolve(
        t: &Topology,
        default_schedule: Duration,
        default_latency: Duration,
        intrasite_latency: Duration,
        intrasite_schedule: Duration,
    ) -> Result<Layout, ClusterError> {
        let mut servers: Vec<Arc<str>> = Vec::new();
        let mut site_of = Vec::new();
        let mut site_names: Vec<String> = Vec::new();
        for (i, s) in t.sites.iter().enumerate() {
            if site_names.contains(&s.name) {
                return Err(ClusterError::Topology(format!(
                    "site `{}` defined twice",
                    s.name
                )));
            }
            site_names.push(s.name.clone());
            for name in &s.servers {
                if servers.iter().any(|x| **x == **name) {
                    return Err(ClusterError::Topology(format!(
                        "server `{name}` is in more than one site"
                    )));
                }
                servers.push(name.as_str().into());
                site_of.push(i);
            }
        }
        if servers.is_empty() {
            return Err(ClusterError::Topology("no servers".into()));
        }
        let n = servers.len();
        let mut layout = Layout {
            servers,
            site_of,
            site_names,
            links: Vec::new(),
            intrasite_latency,
            read_only: vec![false; n],
            conns: Vec::new(),
            default_latency,
        };
        for (i, s) in t.sites.iter().enumerate() {
            for name in &s.read_only {
                let k = layout.server(name)?;
                if layout.site_of[k] != i {
                    return Err(ClusterError::Topology(format!(
                        "read-only server `{name}` is not in site `{}`",
                        s.name
                    )));
                }
                layout.read_only[k] = true;
            }
        }
        if !t.connections.is_empty() && !t.connectors.is_empty() {
            return Err(ClusterError::Topology(
                "connections and connectors do not mix in one topology".into(),
            ));
        }
        for c in &t.connections {
            let (from, to) = (layout.server(&c.from)?, layout.server(&c.to)?);
            if from == to {
                return Err(ClusterError::Topology(format!(
                    "connection from `{}` to itself",
                    c.from
                )));
            }
            if layout.read_only[from] {
                return Err(ClusterError::Topology(format!(
                    "connection from read-only server `{}`: a read-only server is never a source",
                    c.from
                )));
            }
            if layout.conns.iter().any(|x| x.from == from && x.to == to) {
                return Err(ClusterError::Topology(format!(
                    "more than one connection from `{}` to `{}`",
                    c.from, c.to
                )));
            }
            let same = layout.same_site(from, to);
            layout.conns.push(Conn {
                from,
                to,
                schedule: c.schedule.unwrap_or(if same {
                    intrasite_schedule
                } else {
                    default_schedule
                }),
                windows: c.windows.clone(),
                latency: c.latency.unwrap_or(if same {
                    intrasite_latency
                } else {
                    default_latency
                }),
            });
        }
        for c in &t.connectors {
            let site = |n: &str| {
                layout
                    .site_names
                    .iter()
                    .position(|s| s == n)
                    .ok_or_else(|| ClusterError::UnknownSite(n.to_string()))
            };
            let sites = [site(&c.between[0])?, site(&c.between[1])?];
            let bh = [
                layout.server(&c.bridgeheads[0])?,
                layout.server(&c.bridgeheads[1])?,
            ];
            if sites[0] == sites[1] {
                return Err(ClusterError::Topology(format!(
                    "connector joins site `{}` to itself",
                    c.between[0]
                )));
            }
            for k in 0..2 {
                if layout.site_of[bh[k]] != sites[k] {
                    return Err(ClusterError::Topology(format!(
                        "bridgehead `{}` is not in site `{}`",
                        c.bridgeheads[k], c.between[k]
                    )));
                }
            }
            if layout.link_between(sites[0], sites[1]).is_some() {
                return Err(ClusterError::Topology(format!(
                    "more than one connector between `{}` and `{}`",
                    c.between[0], c.between[1]
                )));
            }
            layout.links.push(Link {
                sites,
                bridgeheads: bh,
                schedule: c.schedule.unwrap_or(default_schedule),
                latency: c.latency.unwrap_or(default_latency),
                deleted: false,
            });
        }
        Ok(layout)
    }

    pub fn server(&self, name: &str) -> Result<usize, ClusterError> {
        self.servers
            .iter()
            .position(|s| **s == *name)
            .ok_or_else(|| ClusterError::UnknownServer(name.to_string()))
    }

    pub fn link_between(&self, a: usize, b: usize) -> Option<usize> {
        self.links
            .iter()
            .position(|l| !l.deleted && (l.sites == [a, b] || l.sites == [b, a]))
    }

    pub fn same_site(&self, a: usize, b: usize) -> bool {
        self.site_of[a] == self.site_of[b]
    }

    /// Intrasite partners of a server, in server order.
    pub fn intrasite(&self, s: usize) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&o| o != s && self.same_site(o, s))
            .collect()
    }

    /// Peers a bridgehead pulls from on a schedule: (link index, peer).
    pub fn bridge_peers(&self, s: usize) -> Vec<(usize, usize)> {
        self.links
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.deleted)
            .filter_map(|(i, l)| match l.bridgeheads {
                [a, b] if a == s => Some((i, b)),
                [a, b] if b == s => Some((i, a)),
                _ => None,
            })
            .collect()
    }

    /// Whether replication follows one-way connections.
    pub fn has_connections(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Indexes of the connections `s` pulls over, in file order.
    pub fn inbound(&self, s: usize) -> Vec<usize> {
        (0..self.conns.len())
            .filter(|&c| self.conns[c].to == s)
            .collect()
    }

    /// Indexes of the connections others pull from `s` over (whom it notifies).
    pub fn outbound(&self, s: usize) -> Vec<usize> {
        (0..self.conns.len())
            .filter(|&c| self.conns[c].from == s)
            .collect()
    }

    /// Direct replication partners (whom a server pulls from at start-up):
    /// intrasite plus bridgehead peers, or the sources of its inbound
    /// connections; never a read-only server.
    pub fn partners(&self, s: usize) -> Vec<usize> {
        if self.has_connections() {
            return self
                .inbound(s)
                .into_iter()
                .map(|c| self.conns[c].from)
                .collect();
        }
        let mut p = self.intrasite(s);
        p.extend(self.bridge_peers(s).into_iter().map(|(_, b)| b));
        p
    }

    /// Sites reachable from `site` through connectors that still exist.
    pub fn reachable_sites(&self, site: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::from([site]);
        let mut q = VecDeque::from([site]);
        while let Some(x) = q.pop_front() {
            for l in self.links.iter().filter(|l| !l.deleted) {
                for (a, b) in [(l.sites[0], l.sites[1]), (l.sites[1], l.sites[0])] {
                    if a == x && seen.insert(b) {
                        q.push_back(b);
                    }
                }
            }
        }
        seen
    }

    /// Every writable server a server can reach, same site first: whom
    /// backsync asks. With connections, every writable server of the
    /// topology, connected or not.
    pub fn reachable_servers(&self, s: usize) -> Vec<usize> {
        let mut v = self.reachable_all(s);
        v.retain(|&o| !self.read_only[o]);
        v
    }

    fn reachable_all(&self, s: usize) -> Vec<usize> {
        if self.has_connections() {
            let mut v = self.intrasite(s);
            v.extend((0..self.servers.len()).filter(|&o| !self.same_site(o, s)));
            return v;
        }
        let sites = self.reachable_sites(self.site_of[s]);
        let mut v = self.intrasite(s);
        v.extend(
            (0..self.servers.len())
                .filter(|&o| !self.same_site(o, s) && sites.contains(&self.site_of[o])),
        );
        v
    }

    /// Replication components: groups of servers joined by sites and
    /// connectors, or by connections in either direction when there are
    /// any. Convergence is judged inside each.
    pub fn components(&self) -> Vec<Vec<usize>> {
        if self.has_connections() {
            let n = self.servers.len();
            let mut comp: Vec<Option<usize>> = vec![None; n];
            let mut out: Vec<Vec<usize>> = Vec::new();
            for start in 0..n {
                if comp[start].is_some() {
                    continue;
                }
                let id = out.len();
                comp[start] = Some(id);
                let mut members = vec![start];
                let mut q = VecDeque::from([start]);
                while let Some(x) = q.pop_front() {
                    for c in &self.conns {
                        for (a, b) in [(c.from, c.to), (c.to, c.from)] {
                            if a == x && comp[b].is_none() {
                                comp[b] = Some(id);
                                members.push(b);
                                q.push_back(b);
                            }
                        }
                    }
                }
                members.sort_unstable();
                out.push(members);
            }
            return out;
        }
        let mut done = BTreeSet::new();
        let mut out = Vec::new();
        for site in 0..self.site_names.len() {
            if done.contains(&site) {
                continue;
            }
            let sites = self.reachable_sites(site);
            done.extend(sites.iter().copied());
            out.push(
                (0..self.servers.len())
                    .filter(|&o| sites.contains(&self.site_of[o]))
                    .collect(),
            );
        }
        out
    }

    /// One-way delay from one server to another: intrasite latency inside a
    /// site, plus each connector's latency on the fewest-hops path. `None`
    /// when no connector path joins them.
    ///
    /// With connections every message is routed: a direct connection's
    /// latency (either direction), else the intrasite latency within a
    /// site, else the sum along the fewest-hops path of connections (either
    /// direction), else the profile's connector latency.
    pub fn latency(&self, from: usize, to: usize) -> Option<Duration> {
        if self.has_connections() {
            return Some(self.conn_latency(from, to));
        }
        let (a, b) = (self.site_of[from], self.site_of[to]);
        if a == b {
            return Some(self.intrasite_latency);
        }
        let n = self.site_names.len();
        let mut best: Vec<Option<Duration>> = vec![None; n];
        best[a] = Some(Duration::ZERO);
        let mut q = VecDeque::from([a]);
        while let Some(x) = q.pop_front() {
            for l in self.links.iter().filter(|l| !l.deleted) {
                for (p, r) in [(l.sites[0], l.sites[1]), (l.sites[1], l.sites[0])] {
                    if p == x && best[r].is_none() {
                        best[r] = best[x].map(|d| d + l.latency);
                        q.push_back(r);
                    }
                }
            }
        }
        best[b].map(|d| d + self.intrasite_latency)
    }

    /// Whether a message from `from` to `to` is relayed hop by hop through
    /// the bridgeheads of the sites on its path (Exchange 5.5's intersite
    /// directory replication, carried by the bridgeheads' MTAs): between
    /// sites of a connector topology, unless the two are the bridgeheads of
    /// one connector that still exists (its own replication, which crosses
    /// directly). Never with connections (AD replicates by RPC between the
    /// two servers, with no store-and-forward).
    pub fn relayed(&self, from: usize, to: usize) -> bool {
        !self.has_connections() && !self.same_site(from, to) && !self.peers(from, to)
    }

    /// Whether `a` and `b` are the two bridgeheads of a connector that
    /// still exists.
    pub fn peers(&self, a: usize, b: usize) -> bool {
        (self.links.iter())
            .any(|l| !l.deleted && (l.bridgeheads == [a, b] || l.bridgeheads == [b, a]))
    }

    /// The connectors (link indexes, in order) on the fewest-hops path from
    /// site `a` to site `b` through connectors that still exist, the first
    /// found in link order; `None` when none joins them.
    pub fn site_path(&self, a: usize, b: usize) -> Option<Vec<usize>> {
        let n = self.site_names.len();
        // Per site, the link it was first reached over.
        let mut via: Vec<Option<usize>> = vec![None; n];
        let mut seen = vec![false; n];
        seen[a] = true;
        let mut q = VecDeque::from([a]);
        while let Some(x) = q.pop_front() {
            if x == b {
                break;
            }
            for (i, l) in self.links.iter().enumerate().filter(|(_, l)| !l.deleted) {
                for (p, r) in [(l.sites[0], l.sites[1]), (l.sites[1], l.sites[0])] {
                    if p == x && !seen[r] {
                        seen[r] = true;
                        via[r] = Some(i);
                        q.push_back(r);
                    }
                }
            }
        }
        if !seen[b] {
            return None;
        }
        let mut path = Vec::new();
        let mut x = b;
        while x != a {
            let i = via[x].expect("a reached site other than the start has a link");
            path.push(i);
            let [s0, s1] = self.links[i].sites;
            x = if s1 == x { s0 } else { s1 };
        }
        path.reverse();
        Some(path)
    }

    /// The next hop of a relayed message held at `at` for `to`: a server of
    /// the same site (the destination, or the bridgehead of the next
    /// connector), or the connector to cross when `at` is its bridgehead.
    /// `None` when no connector path joins their sites.
    pub fn next_hop(&self, at: usize, to: usize) -> Option<Hop> {
        let (a, b) = (self.site_of[at], self.site_of[to]);
        if a == b {
            return Some(Hop::Site(to));
        }
        let link = *self.site_path(a, b)?.first()?;
        let l = &self.links[link];
        let side = usize::from(l.sites[0] != a);
        match l.bridgeheads[side] {
            bh if bh == at => Some(Hop::Link { link, side }),
            bh => Some(Hop::Site(bh)),
        }
    }

    /// The longest a relayed message from `from` to `to` takes with every
    /// server up: each connector on the path, a schedule period of waiting
    /// plus its latency, and an intrasite latency for each of the (at most)
    /// two hops inside each site. Zero when the two talk directly.
    pub fn relay_allowance(&self, from: usize, to: usize) -> Duration {
        if !self.relayed(from, to) {
            return Duration::ZERO;
        }
        let Some(path) = self.site_path(self.site_of[from], self.site_of[to]) else {
            return Duration::ZERO;
        };
        let hops = path.len() as u32 + 1;
        path.iter()
            .map(|&i| self.links[i].schedule + self.links[i].latency)
            .sum::<Duration>()
            + self.intrasite_latency * (2 * hops)
    }

    fn conn_latency(&self, from: usize, to: usize) -> Duration {
        let direct = (self.conns.iter())
            .find(|c| (c.from, c.to) == (from, to) || (c.from, c.to) == (to, from));
        if let Some(c) = direct {
            return c.latency;
        }
        if self.same_site(from, to) {
            return self.intrasite_latency;
        }
        let mut best: Vec<Option<Duration>> = vec![None; self.servers.len()];
        best[from] = Some(Duration::ZERO);
        let mut q = VecDeque::from([from]);
        while let Some(x) = q.pop_front() {
            for c in &self.conns {
                for (p, r) in [(c.from, c.to), (c.to, c.from)] {
                    if p == x && best[r].is_none() {
                        best[r] = best[x].map(|d| d + c.latency);
                        q.push_back(r);
                    }
                }
            }
        }
        best[to].unwrap_or(self.default_latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn resolve(t: &Topology) -> Result<Layout, ClusterError> {
        Layout::resolve(t, 60 * S, 2 * S, S / 10, 300 * S)
    }

    fn err(t: &Topology) -> String {
        resolve(t).unwrap_err().to_string()
    }

    fn base() -> Topology {
        Topology::new()
            .site("Hub", &["A", "B"])
            .site("Branch", &["R"])
            .read_only(&["R"])
    }

    #[test]
    fn connections_resolve_with_defaults_by_site() {
        let t = base().connection("A", "B").connection("A", "R");
        let l = resolve(&t).unwrap();
        assert!(l.read_only[2] && !l.read_only[0]);
        assert_eq!(l.conns[0].schedule, 300 * S);
        assert_eq!(l.conns[0].latency, S / 10);
        assert_eq!(l.conns[1].schedule, 60 * S);
        assert_eq!(l.conns[1].latency, 2 * S);
        assert_eq!(l.partners(1), [0]);
        assert!(l.partners(0).is_empty());
        assert_eq!(l.outbound(0), [0, 1]);
        // Backsync asks every writable server, connected or not.
        assert_eq!(l.reachable_servers(2), [0, 1]);
        assert_eq!(l.reachable_servers(1), [0]);
        assert_eq!(l.components(), vec![vec![0, 1, 2]]);
        // B and R join only through A: the sum along the path.
        assert_eq!(l.latency(1, 2), Some(S / 10 + 2 * S));
    }

    #[test]
    fn components_follow_connections_either_way() {
        let t = Topology::new()
            .site("S", &["A", "B", "C", "D"])
            .connection("B", "A")
            .connection("C", "D");
        assert_eq!(
            resolve(&t).unwrap().components(),
            vec![vec![0, 1], vec![2, 3]]
        );
    }

    #[test]
    fn invalid_connections_are_rejected() {
        assert!(err(&base().connection("A", "X")).contains("unknown server `X`"));
        assert!(err(&base().connection("A", "A")).contains("to itself"));
        assert!(err(&base().connection("R", "A")).contains("read-only server `R`"));
        assert!(err(&base().connection("A", "B").connection("A", "B")).contains("more than one"));
        let mixed = base()
            .connection("A", "B")
            .connector(["Hub", "Branch"], ["A", "R"]);
        assert!(err(&mixed).contains("do not mix"));
        let mut stray = base();
        stray.sites[0].read_only.push("R".into());
        assert!(err(&stray).contains("not in site `Hub`"));
        assert!(err(&base().read_only(&["Nowhere"])).contains("unknown server `Nowhere`"));
    }

    #[test]
    fn without_connections_nothing_changes() {
        let t = Topology::new()
            .site("Redmond", &["S1", "S2"])
            .site("Dublin", &["S3"])
            .connector(["Redmond", "Dublin"], ["S2", "S3"]);
        let l = resolve(&t).unwrap();
        assert_eq!(l.partners(0), [1]);
        assert_eq!(l.partners(1), [0, 2]);
        assert_eq!(l.reachable_servers(2), [0, 1]);
        assert_eq!(l.latency(0, 2), Some(2 * S + S / 10));
    }

    /// W - X - Y - Z, X's bridgehead to Y (X2) not its bridgehead to W (X1).
    fn chain() -> Layout {
        let t = Topology::new()
            .site("W", &["W1", "W2"])
            .site("X", &["X1", "X2"])
            .site("Y", &["Y1"])
            .site("Z", &["Z1", "Z2"])
            .connector(["W", "X"], ["W2", "X1"])
            .connector(["X", "Y"], ["X2", "Y1"])
            .connector(["Y", "Z"], ["Y1", "Z1"]);
        resolve(&t).unwrap()
    }

    #[test]
    fn relayed_messages_go_bridgehead_to_bridgehead() {
        let l = chain();
        let (w1, w2, x1, x2, y1, z1, z2) = (0, 1, 2, 3, 4, 5, 6);
        // Inside a site and between one connector's bridgeheads: direct.
        assert!(!l.relayed(w1, w2) && !l.relayed(w2, x1) && !l.relayed(y1, x2));
        assert!(l.relayed(w1, x1) && l.relayed(w2, x2) && l.relayed(z2, w1));
        assert_eq!(l.site_path(0, 3), Some(vec![0, 1, 2]));
        assert_eq!(l.site_path(3, 0), Some(vec![2, 1, 0]));
        // W1 -> Z2: to W2, across W - X, to X2, across X - Y, across Y - Z, to Z2.
        assert_eq!(l.next_hop(w1, z2), Some(Hop::Site(w2)));
        assert_eq!(l.next_hop(w2, z2), Some(Hop::Link { link: 0, side: 0 }));
        assert_eq!(l.next_hop(x1, z2), Some(Hop::Site(x2)));
        assert_eq!(l.next_hop(x2, z2), Some(Hop::Link { link: 1, side: 0 }));
        assert_eq!(l.next_hop(y1, z2), Some(Hop::Link { link: 2, side: 0 }));
        assert_eq!(l.next_hop(z1, z2), Some(Hop::Site(z2)));
        // And back, from the other sides.
        assert_eq!(l.next_hop(z1, w1), Some(Hop::Link { link: 2, side: 1 }));
        assert_eq!(l.next_hop(x2, w1), Some(Hop::Site(x1)));
        assert_eq!(l.next_hop(x1, w1), Some(Hop::Link { link: 0, side: 1 }));
        // Three connectors of 60 s + 2 s, four sites of two intrasite hops.
        assert_eq!(l.relay_allowance(w1, z2), 3 * 62 * S + 8 * (S / 10));
        assert_eq!(l.relay_allowance(w2, x1), Duration::ZERO);
    }

    #[test]
    fn a_deleted_connector_leaves_no_route() {
        let mut l = chain();
        l.links[1].deleted = true;
        assert_eq!(l.site_path(0, 3), None);
        assert_eq!(l.next_hop(0, 6), None);
        assert_eq!(l.next_hop(0, 3), Some(Hop::Site(1)));
        // Bridgeheads of a deleted connector are no longer peers.
        assert!(l.relayed(3, 4) && !l.peers(3, 4));
    }
}
