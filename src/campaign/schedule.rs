//! Campaign schedules: the setup of one seed (topology, profile, strategy)
//! and the concrete steps run on it, and their scenario-file form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{Profile, ReplicationConfig, RestoreStrategy};
use crate::scenario::{Action, ConvergeExpect, ExpectCheck};
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

/// A duration in the scenario format: the largest unit that divides it.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms.is_multiple_of(per) {
            return format!("\"{}{unit}\"", ms / per);
        }
    }
    format!("\"{ms}ms\"")
}

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

fn table(m: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{} = {}", q(k), q(v)))
        .collect();
    format!("{{ {} }}", v.join(", "))
}

/// Writes a schedule as a scenario file (SCENARIOS.md). `None` when a
/// step cannot be expressed (link faults that change during the run).
pub fn to_scenario(setup: &Setup, title: &str, steps: &[Op], comment: &str) -> Option<String> {
    let mut out = String::new();
    for line in comment.lines() {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "name = {}", q(title));
    let _ = writeln!(out, "seed = {}", setup.seed);
    let _ = writeln!(out, "profile = {}", q(&setup.profile.to_string()));
    for s in &setup.topology.sites {
        let _ = writeln!(
            out,
            "\n[[site]]\nname = {}\nservers = {}",
            q(&s.name),
            list(&s.servers)
        );
    }
    for c in &setup.topology.connectors {
        let _ = writeln!(
            out,
            "\n[[connector]]\nbetween = {}\nbridgeheads = {}",
            list(&c.between),
            list(&c.bridgeheads)
        );
        if let Some(d) = c.schedule {
            let _ = writeln!(out, "schedule = {}", fmt_duration(d));
        }
        if let Some(d) = c.latency {
            let _ = writeln!(out, "latency = {}", fmt_duration(d));
        }
    }
    for op in steps {
        let Op::Step(a) = op else {
            return None;
        };
        out.push_str("\n[[step]]\n");
        step(&mut out, a);
    }
    Some(out)
}

fn step(out: &mut String, a: &Action) {
    let _ = writeln!(out, "do = {}", q(a.name()));
    let refused = |out: &mut String, r: bool| {
        if r {
            out.push_str("expect_refused = true\n");
        }
    };
    match a {
        Action::Create {
            server,
            dn,
            attrs,
            expect_refused,
        } => {
            let _ = writeln!(out, "server = {}\ndn = {}", q(server), q(dn));
            if !attrs.is_empty() {
                let _ = writeln!(out, "attrs = {}", table(attrs));
            }
            refused(out, *expect_refused);
        }
        Action::Modify {
            server,
            dn,
            attrs,
            remove,
            expect_refused,
        } => {
            let _ = writeln!(out, "server = {}\ndn = {}", q(server), q(dn));
            if !attrs.is_empty() {
                let _ = writeln!(out, "attrs = {}", table(attrs));
            }
            if !remove.is_empty() {
                let _ = writeln!(out, "remove = {}", list(remove));
            }
            refused(out, *expect_refused);
        }
        Action::Delete {
            server,
            dn,
            expect_refused,
        } => {
            let _ = writeln!(out, "server = {}\ndn = {}", q(server), q(dn));
            refused(out, *expect_refused);
        }
        Action::Load {
            servers,
            creates,
            modifies,
            deletes,
            prefix,
        } => {
            let _ = writeln!(
                out,
                "creates = {creates}\nmodifies = {modifies}\ndeletes = {deletes}"
            );
            if let Some(s) = servers {
                let _ = writeln!(out, "servers = {}", list(s));
            }
            if let Some(p) = prefix {
                let _ = writeln!(out, "prefix = {}", q(p));
            }
        }
        Action::Backup { server, name } => {
            let _ = writeln!(out, "server = {}\nname = {}", q(server), q(name));
        }
        Action::Crash { server } => {
            let _ = writeln!(out, "server = {}", q(server));
        }
        Action::Restore {
            server,
            backup,
            strategy,
        } => {
            let _ = writeln!(out, "server = {}\nbackup = {}", q(server), q(backup));
            if let Some(s) = strategy {
                let _ = writeln!(out, "strategy = {}", q(s.as_str()));
            }
        }
        Action::Partition { groups } => {
            let g: Vec<String> = groups.iter().map(|g| list(g)).collect();
            let _ = writeln!(out, "groups = [{}]", g.join(", "));
        }
        Action::Heal => {}
        Action::DeleteConnector { between } => {
            let _ = writeln!(out, "between = {}", list(between));
        }
        Action::Wait { duration } => {
            let _ = writeln!(out, "for = {}", fmt_duration(*duration));
        }
        Action::Converge {
            within,
            expect,
            max_sim,
            max_objects_sent,
        } => {
            let _ = writeln!(out, "within = {}", fmt_duration(*within));
            if *expect == ConvergeExpect::Diverged {
                out.push_str("expect = \"diverged\"\n");
            }
            if let Some(m) = max_sim {
                let _ = writeln!(out, "max_sim = {}", fmt_duration(*m));
            }
            if let Some(n) = max_objects_sent {
                let _ = writeln!(out, "max_objects_sent = {n}");
            }
        }
        Action::ExpectLost { lost_unreplicated } => {
            let _ = writeln!(out, "lost_unreplicated = {lost_unreplicated}");
        }
        Action::Expect { server, check } => {
            let _ = writeln!(out, "server = {}", q(server));
            match check {
                ExpectCheck::Objects(n) => {
                    let _ = writeln!(out, "objects = {n}");
                }
                ExpectCheck::Dn { dn, present, attrs } => {
                    let _ = writeln!(out, "dn = {}\npresent = {present}", q(dn));
                    if *present && !attrs.is_empty() {
                        let _ = writeln!(out, "attrs = {}", table(attrs));
                    }
                }
                ExpectCheck::Tombstone { dn } => {
                    let _ = writeln!(out, "dn = {}\ntombstone = true", q(dn));
                }
                ExpectCheck::State(state) => {
                    let _ = writeln!(out, "state = {}", q(state.as_str()));
                }
                ExpectCheck::AnsweredBy(servers) => {
                    let _ = writeln!(out, "answered_by = {}", list(servers));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(fmt_duration(Duration::from_secs(90)), "\"90s\"");
        assert_eq!(fmt_duration(Duration::from_secs(7200)), "\"2h\"");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "\"1500ms\"");
        assert_eq!(fmt_duration(Duration::from_secs(2 * 86_400)), "\"2d\"");
        assert_eq!(fmt_duration(Duration::ZERO), "\"0ms\"");
    }

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
            },
            Action::Delete {
                server: "S2".into(),
                dn: "cn=o1".into(),
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
        let s =
            crate::Scenario::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(crate::run::topology(&s), setup.topology);
        let got: Vec<Action> = s.steps.into_iter().map(|s| s.action).collect();
        assert_eq!(got, steps);
        assert_eq!(s.seed, 9);
        assert!(to_scenario(&setup, "t", &[Op::Faults(LinkFaults::default())], "").is_none());
    }
}
