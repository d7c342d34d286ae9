//! From an imported forest to a scenario: sites, read-only servers and
//! one-way connections, spelled out; no steps.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::{Profile, ReplicationConfig};
use crate::core::WeekWindows;
use crate::scenario::{ConnectionSpec, NetworkSpec, Scenario, SiteSpec};

use super::Forest;

/// How often a connection with its own schedule pulls inside its windows:
/// once per open quarter hour, as each bit of a SCHEDULE is one.
pub const SCHEDULED_PULL: Duration = Duration::from_secs(15 * 60);

impl Forest {
    /// The forest as a scenario named `name` in the `ad` profile, with no
    /// steps:
    ///
    /// - a site per site, its servers in file order, read-only DCs in
    ///   `read_only`;
    /// - a connection per imported nTDSConnection (a second one in the same
    ///   direction adds nothing and is left out). With its own schedule, it
    ///   pulls at each open quarter hour of it; without one, between sites,
    ///   every `replInterval` of the cheapest site link joining the two
    ///   sites, inside that link's schedule; within a site, on the profile's
    ///   intrasite schedule.
    ///
    /// ```
    /// use backsync::import::{Forest, synthetic_forest_ldif};
    /// let f = Forest::from_ldif(&synthetic_forest_ldif(3, 9)).unwrap();
    /// let s = f.to_scenario("three sites");
    /// assert_eq!(s.sites.len(), 3);
    /// assert_eq!(s.server_names().len(), 9);
    /// assert!(!s.connections.is_empty() && s.steps.is_empty());
    /// ```
    pub fn to_scenario(&self, name: &str) -> Scenario {
        let sites = self
            .sites
            .iter()
            .map(|site| {
                let of_site = || self.servers.iter().filter(|s| s.site == site.name);
                SiteSpec {
                    name: site.name.clone(),
                    servers: of_site().map(|s| s.name.clone()).collect(),
                    read_only: of_site()
                        .filter(|s| s.read_only)
                        .map(|s| s.name.clone())
                        .collect(),
                }
            })
            .filter(|s| !s.servers.is_empty())
            .collect();
        let site_of = |server: &str| {
            self.servers
                .iter()
                .find(|s| s.name == server)
                .map(|s| s.site.as_str())
        };
        let mut seen = BTreeSet::new();
        let mut connections = Vec::new();
        for c in &self.connections {
            if !seen.insert((c.from.clone(), c.to.clone())) {
                continue;
            }
            let (schedule, windows) = match (&c.schedule, site_of(&c.from), site_of(&c.to)) {
                (Some(w), _, _) => (Some(SCHEDULED_PULL), Some(w.clone())),
                (None, Some(a), Some(b)) if a != b => match self.link_between(a, b) {
                    Some(l) => (
                        Some(Duration::from_secs(
                            u64::from(l.repl_interval_minutes.max(1)) * 60,
                        )),
                        l.schedule.clone(),
                    ),
                    None => (None, None),
                },
                _ => (None, None),
            };
            connections.push(ConnectionSpec {
                from: c.from.clone(),
                to: c.to.clone(),
                schedule,
                windows: windows.filter(|w| *w != WeekWindows::always()),
                latency: None,
            });
        }
        Scenario {
            name: name.to_string(),
            seed: 0,
            profile: Profile::Ad,
            sites,
            connectors: Vec::new(),
            connections,
            config: ReplicationConfig::for_profile(Profile::Ad),
            network: NetworkSpec::default(),
            steps: Vec::new(),
        }
    }

    /// The cheapest site link whose site list holds both sites.
    fn link_between(&self, a: &str, b: &str) -> Option<&super::SiteLink> {
        self.site_links
            .iter()
            .filter(|l| l.sites.iter().any(|s| s == a) && l.sites.iter().any(|s| s == b))
            .min_by_key(|l| l.cost)
    }
}
