//! Scenario files (docs/scenarios.md): parsed and fully validated before a
//! run, and written back ([`Scenario::to_toml`]) by the same serde types.
//!
//! ```
//! use backsync::scenario::{Action, Scenario};
//! let text = r#"
//! name = "two servers"
//! [[site]]
//! name = "Redmond"
//! servers = ["Server1", "Server2"]
//! [[step]]
//! do = "create"
//! server = "Server1"
//! dn = "cn=UserA"
//! [[step]]
//! do = "converge"
//! within = "1h"
//! "#;
//! let s = Scenario::from_str(text, "two.toml").unwrap();
//! assert_eq!(s.server_names(), ["Server1", "Server2"]);
//! assert_eq!(s.steps[1].action.name(), "converge");
//! assert_eq!(s.steps[1].line, 10);
//!
//! let err = Scenario::from_str("name = \"x\"\nsede = 1\n", "bad.toml").unwrap_err();
//! assert!(err.to_string().starts_with("bad.toml:2:1: field `sede`: unknown field"));
//! ```

mod error;
mod format;
mod parse;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use error::ScenarioError;

use crate::config::{Profile, ReplicationConfig, RestoreStrategy, UnknownName};

/// The dn prefix of `load` objects when a step gives none: `cn=obj1`, `cn=obj2`, ...
pub const DEFAULT_LOAD_PREFIX: &str = "obj";

/// A validated scenario: topology, settings and steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Free-text title (required, non-empty).
    pub name: String,
    /// Seed of every random choice in the run (default 0).
    pub seed: u64,
    /// Vendor profile the settings default from (default Exchange 5.5).
    pub profile: Profile,
    /// Sites in file order; every server is in exactly one.
    pub sites: Vec<SiteSpec>,
    /// Intersite connectors in file order, at most one per pair of sites.
    pub connectors: Vec<ConnectorSpec>,
    /// One-way connections in file order (never with `connectors`).
    pub connections: Vec<ConnectionSpec>,
    /// The profile's defaults with every `[replication]` override applied.
    pub config: ReplicationConfig,
    /// Network faults from `[network]`.
    pub network: NetworkSpec,
    /// Steps in run order.
    pub steps: Vec<Step>,
}

/// One `[[site]]`: the topology's own type, so a scenario's topology is
/// the cluster's without translation.
pub use crate::shell::topology::Site as SiteSpec;

/// One `[[connector]]` joining two sites through one bridgehead on each side.
pub use crate::shell::topology::Connector as ConnectorSpec;

/// One `[[connection]]`: `to` pulls from `from`.
pub use crate::shell::topology::Connection as ConnectionSpec;

/// `[network]`: faults applied to every message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkSpec {
    /// Probability (0 to 1) that a message is lost.
    pub loss: f64,
    /// Probability (0 to 1) that a message is delivered twice.
    pub duplicate: f64,
    /// Extra delay, uniform from zero to this, added to each message.
    pub jitter: Duration,
}

/// One `[[step]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 0-based position among the steps (`step[index]` in messages).
    pub index: usize,
    /// 1-based line of the step's `[[step]]` header.
    pub line: usize,
    /// What the step does.
    pub action: Action,
}

/// What a step does: one variant per `do` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Originating create on `server`.
    Create {
        /// Where the write originates.
        server: String,
        /// The new object's dn.
        dn: String,
        /// Its attributes.
        attrs: BTreeMap<String, String>,
        /// The step passes only if the server refuses the write.
        expect_refused: bool,
    },
    /// Originating modify on `server`.
    Modify {
        /// Where the write originates.
        server: String,
        /// The object's dn.
        dn: String,
        /// Attributes to set.
        attrs: BTreeMap<String, String>,
        /// Attributes to remove.
        remove: Vec<String>,
        /// The step passes only if the server refuses the write.
        expect_refused: bool,
    },
    /// Originating delete (tombstone) on `server`.
    Delete {
        /// Where the write originates.
        server: String,
        /// The object's dn.
        dn: String,
        /// Delete the object's whole subtree with it (without, an object
        /// with live children is refused).
        tree: bool,
        /// The step passes only if the server refuses the write.
        expect_refused: bool,
    },
    /// Originating rename or move on `server`: the object keeps its guid,
    /// its children follow it.
    Rename {
        /// Where the write originates.
        server: String,
        /// The object's dn.
        dn: String,
        /// Its new dn.
        new_dn: String,
        /// The step passes only if the server refuses the write.
        expect_refused: bool,
    },
    /// Bulk workload generated from the seed; dns `cn=<prefix><n>`.
    Load {
        /// Servers to spread it over; `None`: every running server.
        servers: Option<Vec<String>>,
        /// Objects to create.
        creates: u64,
        /// Modifies of existing objects.
        modifies: u64,
        /// Deletes of existing objects.
        deletes: u64,
        /// Dn prefix; `None`: [`DEFAULT_LOAD_PREFIX`].
        prefix: Option<String>,
    },
    /// Snapshot of `server`, kept under `name`.
    Backup {
        /// The server backed up.
        server: String,
        /// Name later `restore` steps use.
        name: String,
    },
    /// The server stops; its memory and messages to it are lost.
    Crash {
        /// The server that stops.
        server: String,
    },
    /// The server starts again from a backup taken from it.
    Restore {
        /// The server restored.
        server: String,
        /// Name of a backup of this server taken by an earlier step.
        backup: String,
        /// `None`: `config.restore`.
        strategy: Option<RestoreStrategy>,
        /// An authoritative restore's subtree (`None`: every object).
        subtree: Option<String>,
    },
    /// An operator returns a quarantined server to service
    /// ([`crate::Cluster::release`]).
    Release {
        /// The server released.
        server: String,
        /// The step passes only if the release is refused (the server is
        /// not quarantined, or is down).
        expect_refused: bool,
    },
    /// Messages between different groups are dropped until `heal`.
    Partition {
        /// At least two disjoint, non-empty groups of server names.
        groups: Vec<Vec<String>>,
    },
    /// Ends every partition.
    Heal,
    /// Deletes the connector between two sites.
    DeleteConnector {
        /// The connector's sites, in either order.
        between: [String; 2],
    },
    /// Lets simulated time pass (`for` in the file).
    Wait {
        /// How long.
        duration: Duration,
    },
    /// Runs until convergence, or `within` passes.
    Converge {
        /// The time limit.
        within: Duration,
        /// Whether convergence is expected within the limit.
        expect: ConvergeExpect,
        /// The step fails if it took more simulated time than this.
        max_sim: Option<Duration>,
        /// The step fails if replication sent more objects than this during it.
        max_objects_sent: Option<u64>,
    },
    /// Checks one server's directory or state.
    Expect {
        /// The server checked.
        server: String,
        /// What is checked.
        check: ExpectCheck,
    },
    /// Checks the acknowledged writes lost at this moment: held by no
    /// running server and by no backup that could still be restored
    /// (`do = "expect"` with `lost_unreplicated` and no `server`).
    ExpectLost {
        /// How many must be lost.
        lost_unreplicated: u64,
    },
}

impl Action {
    /// The `do` string of this action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Modify { .. } => "modify",
            Action::Delete { .. } => "delete",
            Action::Rename { .. } => "rename",
            Action::Load { .. } => "load",
            Action::Backup { .. } => "backup",
            Action::Crash { .. } => "crash",
            Action::Restore { .. } => "restore",
            Action::Release { .. } => "release",
            Action::Partition { .. } => "partition",
            Action::Heal => "heal",
            Action::DeleteConnector { .. } => "delete_connector",
            Action::Wait { .. } => "wait",
            Action::Converge { .. } => "converge",
            Action::Expect { .. } | Action::ExpectLost { .. } => "expect",
        }
    }
}

/// The outcome a `converge` step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvergeExpect {
    /// Fails unless convergence happens within the limit (the default).
    #[default]
    Converged,
    /// Fails if convergence happens within the limit.
    Diverged,
}

impl FromStr for ConvergeExpect {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "converged" => Ok(ConvergeExpect::Converged),
            "diverged" => Ok(ConvergeExpect::Diverged),
            _ => Err(UnknownName {
                what: "converge expectation",
                got: s.to_string(),
                expected: "converged, diverged",
            }),
        }
    }
}

/// What an `expect` step checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectCheck {
    /// A live object with exactly this dn is (or is not) there.
    Dn {
        /// The dn.
        dn: String,
        /// Whether a live object with that dn must exist.
        present: bool,
        /// Attributes it must have with exactly these values (only when present).
        attrs: BTreeMap<String, String>,
    },
    /// The number of live objects.
    Objects(u64),
    /// The server holds a tombstone of the object last named `dn` (and no
    /// live object has that dn there).
    Tombstone {
        /// The dn the object had.
        dn: String,
    },
    /// The server is in this state.
    State(ServerState),
    /// The server's last backsync got replies from exactly these servers
    /// (in any order; empty: from none).
    AnsweredBy(Vec<String>),
}

/// A server state an `expect` step checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Up and replicating normally.
    Running,
    /// Restored, asking its partners for its own lost writes.
    Backsync,
    /// Up, but out of replication after a detected USN rollback.
    Quarantined,
    /// Crashed and not restored.
    Down,
}

impl ServerState {
    /// The name used in scenario files and in `servers[].state` of reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Running => "running",
            ServerState::Backsync => "backsync",
            ServerState::Quarantined => "quarantined",
            ServerState::Down => "down",
        }
    }
}

impl FromStr for ServerState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ServerState::Running,
            ServerState::Backsync,
            ServerState::Quarantined,
            ServerState::Down,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| UnknownName {
            what: "server state",
            got: s.to_string(),
            expected: "running, backsync, quarantined, down",
        })
    }
}

impl Scenario {
    /// Parses and validates scenario text; `origin` (a path) names it in errors.
    pub fn from_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        parse::parse(text, origin)
    }

    /// The scenario as a file that [`Scenario::from_str`] reads back to an
    /// equal scenario (but for [`Step::line`], which follows the text).
    /// Durations are written in their largest exact unit (`"90s"`, `"2h"`,
    /// `"1500ms"`); `[replication]` and `[network]` hold only what differs
    /// from the profile's defaults. Settings the format has no field for
    /// (`connector_schedule`, `connector_latency` of [`ReplicationConfig`])
    /// are not written.
    ///
    /// ```
    /// use backsync::Scenario;
    /// let text = "name = \"t\"\n[[site]]\nname = \"A\"\nservers = [\"S1\"]\n[[step]]\ndo = \"wait\"\nfor = \"5400s\"\n";
    /// let s = Scenario::from_str(text, "t.toml").unwrap();
    /// let written = s.to_toml();
    /// assert!(written.contains("for = \"90m\""), "{written}");
    /// assert_eq!(Scenario::from_str(&written, "again.toml").unwrap().steps[0].action, s.steps[0].action);
    /// ```
    pub fn to_toml(&self) -> String {
        toml::to_string(&format::File::of(self)).expect("every scenario value has a TOML form")
    }

    /// Parses and validates raw bytes; anything not UTF-8 is an error.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Scenario, ScenarioError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Scenario::from_str(text, origin),
            Err(e) => {
                // Position the first bad byte using the valid text before it.
                let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
                let (line, column) = error::line_col(valid, valid.len());
                Err(ScenarioError {
                    file: origin.to_string(),
                    line: Some(line),
                    column: Some(column),
                    field: None,
                    message: "not UTF-8 text (a binary file?)".to_string(),
                })
            }
        }
    }

    /// Reads, parses and validates a scenario file.
    pub fn from_path(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ScenarioError {
            file: origin.clone(),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Scenario::from_bytes(&bytes, &origin)
    }

    /// The fixed containers the steps imply (docs/scenarios.md, "A
    /// directory tree"): every proper ancestor of a dn a step names that
    /// no step creates (by `create`, `load`, or as a `rename`'s `new_dn`)
    /// and none of whose ancestors a step creates; never a dn below
    /// `cn=LostAndFound` or with a `CNF:` rdn (those name objects). The
    /// root, `cn=LostAndFound` and, in a file that never creates it,
    /// `ou=Users` are fixed containers besides these.
    ///
    /// ```
    /// use backsync::Scenario;
    /// let text = "name = \"t\"\n[[site]]\nname = \"A\"\nservers = [\"S1\"]\n\
    ///     [[step]]\ndo = \"create\"\nserver = \"S1\"\ndn = \"ou=Sales,dc=corp\"\n\
    ///     [[step]]\ndo = \"create\"\nserver = \"S1\"\ndn = \"cn=Ann,ou=Sales,dc=corp\"\n\
    ///     [[step]]\ndo = \"create\"\nserver = \"S1\"\ndn = \"cn=Bob,ou=Users\"\n";
    /// let s = Scenario::from_str(text, "t.toml").unwrap();
    /// assert_eq!(s.fixed_containers(), ["dc=corp", "ou=Users"]);
    /// ```
    pub fn fixed_containers(&self) -> Vec<String> {
        const USERS: &str = "ou=Users";
        use crate::core::tree::{CNF_MARK, LOST_AND_FOUND, eq_ci, lower, rdns, split_dn};
        let mut created = std::collections::BTreeSet::new();
        let mut named: Vec<&str> = Vec::new();
        let mut loads: Vec<(String, u64)> = Vec::new();
        for st in &self.steps {
            match &st.action {
                Action::Create { dn, .. } => {
                    created.insert(lower(dn));
                    named.push(dn);
                }
                Action::Rename { dn, new_dn, .. } => {
                    created.insert(lower(new_dn));
                    named.extend([dn.as_str(), new_dn.as_str()]);
                }
                Action::Modify { dn, .. } | Action::Delete { dn, .. } => named.push(dn),
                Action::Expect {
                    check: ExpectCheck::Dn { dn, .. } | ExpectCheck::Tombstone { dn },
                    ..
                } => named.push(dn),
                Action::Load {
                    creates, prefix, ..
                } => {
                    let p = lower(prefix.as_deref().unwrap_or(DEFAULT_LOAD_PREFIX));
                    match loads.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, n)) => *n += creates,
                        None => loads.push((p, *creates)),
                    }
                }
                _ => {}
            }
        }
        // `cn=<prefix><n>` for a load's n (the loads of one prefix number on).
        let loaded = |dn: &str| {
            let Some(rest) = dn.strip_prefix("cn=") else {
                return false;
            };
            loads.iter().any(|(p, n)| {
                rest.strip_prefix(p.as_str())
                    .and_then(|k| k.parse::<u64>().ok())
                    .is_some_and(|k| k >= 1 && k <= *n)
            })
        };
        let is_created = |dn: &str| {
            let l = lower(dn);
            created.contains(&l) || loaded(&l)
        };
        let mut out: Vec<String> = Vec::new();
        for dn in named {
            let mut parent = split_dn(dn).1;
            while !parent.is_empty() {
                let ancestors_created = {
                    let mut p = parent;
                    let mut any = false;
                    while !p.is_empty() {
                        any |= is_created(p);
                        p = split_dn(p).1;
                    }
                    any
                };
                let below_lost = {
                    let mut p = split_dn(parent).1;
                    let mut any = false;
                    while !p.is_empty() {
                        any |= eq_ci(p, LOST_AND_FOUND);
                        p = split_dn(p).1;
                    }
                    any
                };
                let cnf = rdns(parent).any(|r| r.contains(CNF_MARK));
                if !ancestors_created
                    && !below_lost
                    && !cnf
                    && !eq_ci(parent, LOST_AND_FOUND)
                    && !out.iter().any(|o| eq_ci(o, parent))
                {
                    out.push(parent.to_string());
                }
                parent = split_dn(parent).1;
            }
        }
        // `ou=Users` exists from the start in a file that never creates it,
        // so a live lab (or a library user) can add users below it.
        if !is_created(USERS) && !out.iter().any(|o| eq_ci(o, USERS)) {
            out.push(USERS.to_string());
        }
        out.sort_by_key(|d| lower(d));
        out
    }

    /// Every server name, in site order.
    pub fn server_names(&self) -> Vec<String> {
        self.sites.iter().flat_map(|s| s.servers.clone()).collect()
    }

    /// The site a server is in.
    pub fn site_of(&self, server: &str) -> Option<&str> {
        self.sites
            .iter()
            .find(|s| s.servers.iter().any(|x| x == server))
            .map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests;
