//! Campaign schedules: the setup of one seed (topology, profile, strategy)
//! and the concrete steps run on it, and their scenario-file form.

use std::collections::BTreeMap;

use crate::config::{Profile, ReplicationConfig, RestoreStrategy};
use crate::scenario::{Action, NetworkSpec, Scenario, Step};
use crate::shell::network::LinkFaults;
use crate::shell::topology::Topology;

/// What one seed runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The seed: of the schedule, and of the cluster.
    pub seed: u64,
    /// Vendor profile; the settings are its defaults.
    pub profile: Profile,
    /// The strategy of every restore.
    pub strategy: RestoreStrategy,
    /// Sites, servers, connectors (each connector with an explicit schedule and latency).
    pub topology: Topology,
    /// The settings (the profile's defaults).
    pub config: ReplicationConfig,
}

/// One concrete step of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A scenario action (create, modify, delete, backup, crash, restore,
    /// partition, heal, delete_connector, wait).
    Step(Action),
    /// Link faults from now on. A campaign-only step: scenario files have
    /// fixed `[network]` faults, so a schedule that still needs one of these
    /// cannot be written as a scenario.
    Faults(LinkFaults),
}

/// What the generator asks for; the runner resolves it against the real
/// state (a modify or delete needs a live object) into an [`Op`].
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// A concrete step.
    Op(Op),
    /// Modify the `pick`-th live object (by dn) on `server`.
    Modify {
        /// Where the write originates.
        server: String,
        /// Which live object, modulo their number.
        pick: u64,
        /// Attributes to set.
        attrs: BTreeMap<String, String>,
        /// Attributes to remove.
        remove: Vec<String>,
    },
    /// Delete the `pick`-th live object (by dn) on `server`.
    Delete {
        /// Where the write originates.
        server: String,
        /// Which live object, modulo their number.
        pick: u64,
    },
}

/// Writes a schedule as a scenario file ([`Scenario::to_toml`]) headed by
/// `comment` as `#` lines. `None` when a step cannot be expressed (link
/// faults that change during the run).
pub fn to_scenario(setup: &Setup, title: &str, steps: &[Op], comment: &str) -> Option<String> {
    let steps = (steps.iter().enumerate())
        .map(|(index, op)| match op {
            Op::Step(action) => Some(Step {
                index,
                line: 0,
                action: action.clone(),
            }),
            Op::Faults(_) => None,
        })
        .collect::<Option<Vec<Step>>>()?;
    let scenario = Scenario {
        name: title.to_string(),
        seed: setup.seed,
        profile: setup.profile,
        sites: setup.topology.sites.clone(),
        connectors: setup.topology.connectors.clone(),
        connections: setup.topology.connections.clone(),
        config: setup.config.clone(),
        network: NetworkSpec::default(),
        steps,
    };
    let header: String = comment.lines().map(|l| format!("# {l}\n")).collect();
    Some(format!("{header}{}", scenario.to_toml()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scenario::{ConvergeExpect, ExpectCheck};

    #[test]
    fn a_written_schedule_parses_back_to_the_same_steps() {
        let setup = Setup {
            seed: 9,
            profile: Profile::Exchange55,
            strategy: RestoreStrategy::Backsync,
            topology: Topology::new()
                .site("Site1", &["S1", "S2"])
                .site("Site2", &["S3"])
                .connector(["Site1", "Site2"], ["S2", "S3"]),
            config: ReplicationConfig::default(),
        };
        let mut attrs = BTreeMap::new();
        attrs.insert("mail".to_string(), "a \"quoted\" \\ value".to_string());
        let steps = vec![
            Action::Create {
                server: "S1".into(),
                dn: "cn=o1".into(),
                attrs: attrs.clone(),
                expect_refused: false,
            },
            Action::Backup {
                server: "S1".into(),
                name: "b1".into(),
            },
            Action::Modify {
                server: "S1".into(),
                dn: "cn=o1".into(),
                attrs: BTreeMap::new(),
                remove: vec!["mail".into()],
                expect_refused: false,
            },
            Action::Partition {
                groups: vec![vec!["S1".into()], vec!["S2".into(), "S3".into()]],
            },
            Action::Wait {
                duration: Duration::from_millis(1234),
            },
            Action::Heal,
            Action::Crash {
                server: "S1".into(),
            },
            Action::Restore {
                server: "S1".into(),
                backup: "b1".into(),
                strategy: Some(RestoreStrategy::Naive),
                subtree: None,
            },
            Action::Delete {
                server: "S2".into(),
                dn: "cn=o1".into(),
                tree: false,
                expect_refused: true,
            },
            Action::DeleteConnector {
                between: ["Site1".into(), "Site2".into()],
            },
            Action::Converge {
                within: Duration::from_secs(3600),
                expect: ConvergeExpect::Converged,
                max_sim: Some(Duration::from_secs(1800)),
                max_objects_sent: Some(40),
            },
            Action::Expect {
                server: "S2".into(),
                check: ExpectCheck::Tombstone { dn: "cn=o1".into() },
            },
            Action::Expect {
                server: "S3".into(),
                check: ExpectCheck::State(crate::scenario::ServerState::Down),
            },
            Action::Expect {
                server: "S1".into(),
                check: ExpectCheck::AnsweredBy(vec!["S3".into(), "S2".into()]),
            },
            Action::ExpectLost {
                lost_unreplicated: 2,
            },
            Action::Expect {
                server: "S1".into(),
                check: ExpectCheck::Dn {
                    dn: "cn=o1".into(),
                    present: true,
                    attrs,
                },
            },
        ];
        let ops: Vec<Op> = steps.iter().cloned().map(Op::Step).collect();
        let text = to_scenario(&setup, "t", &ops, "a comment\nover two lines").unwrap();
        assert!(
            text.starts_with("# a comment\n# over two lines\nname = \"t\"\n"),
            "{text}"
        );
        let s =
            crate::Scenario::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(crate::run::topology(&s), setup.topology);
        let got: Vec<Action> = s.steps.into_iter().map(|s| s.action).collect();
        assert_eq!(got, steps);
        assert_eq!(s.seed, 9);
        assert!(to_scenario(&setup, "t", &[Op::Faults(LinkFaults::default())], "").is_none());
    }
}
