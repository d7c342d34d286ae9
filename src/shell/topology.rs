//! Sites, servers and connectors, and the routes between them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ClusterError;

/// A site: well-connected servers that replicate directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Site name.
    pub name: String,
    /// Its servers.
    pub servers: Vec<String>,
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
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Sites.
    pub sites: Vec<Site>,
    /// Connectors.
    pub connectors: Vec<Connector>,
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

/// The topology resolved to indexes, as the shell uses it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub servers: Vec<Arc<str>>,
    pub site_of: Vec<usize>,
    pub site_names: Vec<String>,
    pub links: Vec<Link>,
    pub intrasite_latency: Duration,
}

impl Layout {
    pub fn resolve(
        t: &Topology,
        default_schedule: Duration,
        default_latency: Duration,
        intrasite_latency: Duration,
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
        let mut layout = Layout {
            servers,
            site_of,
            site_names,
            links: Vec::new(),
            intrasite_latency,
        };
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

    /// Direct replication partners: intrasite plus bridgehead peers.
    pub fn partners(&self, s: usize) -> Vec<usize> {
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

    /// Every server a server can reach, same site first: whom backsync asks.
    pub fn reachable_servers(&self, s: usize) -> Vec<usize> {
        let sites = self.reachable_sites(self.site_of[s]);
        let mut v = self.intrasite(s);
        v.extend(
            (0..self.servers.len())
                .filter(|&o| !self.same_site(o, s) && sites.contains(&self.site_of[o])),
        );
        v
    }

    /// Replication components: groups of servers joined by sites and
    /// connectors. Convergence is judged inside each.
    pub fn components(&self) -> Vec<Vec<usize>> {
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
    pub fn latency(&self, from: usize, to: usize) -> Option<Duration> {
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
}
