//! Runs a [`Scenario`] on a [`Cluster`] and collects what happened.

use std::time::Duration;

use serde::Serialize;

use crate::cluster::{Cluster, LoadSpec};
use crate::config::{Granularity, RestoreStrategy, count};
use crate::error::ClusterError;
use crate::scenario::{Action, ConvergeExpect, ExpectCheck, Scenario};
use crate::shell::network::LinkFaults;
use crate::shell::observe::{BacksyncNote, BacksyncStep, Change, Event};
use crate::shell::supervisor::Convergence;
use crate::shell::topology::Topology;
use crate::view::ServerStatus;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the file's seed.
    pub seed: Option<u64>,
    /// Switches every `restore` step to this strategy (`compare`).
    pub strategy: Option<RestoreStrategy>,
    /// Called with (done, total) while a `load` step applies.
    pub progress: Option<fn(u64, u64)>,
    /// Record every table change (for `--svg`).
    pub record: bool,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// 0-based step index.
    pub index: usize,
    /// The action.
    #[serde(rename = "do")]
    pub action: String,
    /// Whether it passed.
    pub ok: bool,
    /// Simulated ms when it ended.
    pub sim_ms: u64,
    /// Wall-clock ms the step took.
    pub wall_ms: f64,
    /// What happened.
    pub detail: String,
    /// Line of its `[[step]]` in the file.
    pub line: usize,
}

/// One `converge` step's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConvergenceReport {
    /// The step index.
    pub step: usize,
    /// What the step expected.
    pub expected: &'static str,
    /// The supervisor's measurement (flattened into the JSON object).
    #[serde(flatten)]
    pub figures: Convergence,
}

/// The version of the JSON layout `--json` and `compare --json` write:
/// raised when a field changes meaning or goes away (added fields keep it).
pub const SCHEMA_VERSION: u32 = 1;

/// One partner's answers to a backsync, summed over its reply pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BacksyncAnswer {
    /// The partner.
    pub from: String,
    /// Simulated ms of its first answer.
    pub sim_ms: u64,
    /// Objects its replies carried.
    pub objects_sent: usize,
    /// Objects that changed on the restored server: what came back from it.
    pub restored: usize,
}

/// One backsync: who was asked, who answered, how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BacksyncReport {
    /// The restored server.
    pub server: String,
    /// Simulated ms of the restore that started it.
    pub started_ms: u64,
    /// The partners asked.
    pub asked: Vec<String>,
    /// The partners that answered, in order of their first answer.
    pub answers: Vec<BacksyncAnswer>,
    /// Simulated ms when it ended (`None`: still running at the end, or
    /// cut short by a crash or another restore).
    pub ended_ms: Option<u64>,
    /// `complete` (every partner answered), `gave up` (the timeout, or the
    /// partners left were cut off by a connector deletion) or `unfinished`.
    pub outcome: &'static str,
    /// The partners asked that never answered.
    pub silent: Vec<String>,
}

impl BacksyncReport {
    /// Objects that came back, from every partner.
    pub fn restored(&self) -> usize {
        self.answers.iter().map(|a| a.restored).sum()
    }
}

/// Pairs the backsync notes of a run into one report per backsync.
pub fn backsyncs(notes: &[BacksyncNote], names: &[String]) -> Vec<BacksyncReport> {
    let mut out: Vec<BacksyncReport> = Vec::new();
    // Per server, the index in `out` of its backsync under way.
    let mut open: Vec<Option<usize>> = vec![None; names.len()];
    for n in notes {
        match &n.kind {
            BacksyncStep::Started(asked) => {
                open[n.server] = Some(out.len());
                out.push(BacksyncReport {
                    server: names[n.server].clone(),
                    started_ms: n.sim_ms,
                    asked: asked.iter().map(|&i| names[i].clone()).collect(),
                    answers: Vec::new(),
                    ended_ms: None,
                    outcome: "unfinished",
                    silent: Vec::new(),
                });
            }
            BacksyncStep::Answer {
                from,
                sent,
                restored,
            } => {
                let Some(b) = open[n.server].map(|i| &mut out[i]) else {
                    continue;
                };
                match b.answers.iter_mut().find(|a| a.from == names[*from]) {
                    Some(a) => {
                        a.objects_sent += sent;
                        a.restored += restored;
                    }
                    None => b.answers.push(BacksyncAnswer {
                        from: names[*from].clone(),
                        sim_ms: n.sim_ms,
                        objects_sent: *sent,
                        restored: *restored,
                    }),
                }
            }
            BacksyncStep::Done { missing } => {
                let Some(b) = open[n.server].take().map(|i| &mut out[i]) else {
                    continue;
                };
                b.ended_ms = Some(n.sim_ms);
                b.outcome = if *missing == 0 { "complete" } else { "gave up" };
            }
        }
    }
    for b in &mut out {
        b.silent = (b.asked.iter())
            .filter(|p| !b.answers.iter().any(|a| &a.from == *p))
            .cloned()
            .collect();
    }
    out
}

/// Everything a run produced: what `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The JSON layout's version: [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// The profile.
    pub profile: String,
    /// The strategy forced on every restore, if any.
    pub strategy: Option<RestoreStrategy>,
    /// Whether every step passed.
    pub passed: bool,
    /// Per step.
    pub steps: Vec<StepReport>,
    /// Per `converge` step.
    pub convergence: Vec<ConvergenceReport>,
    /// Final state of each server.
    pub servers: Vec<ServerStatus>,
    /// Acknowledged writes lost at the end: held by no running server and
    /// by no backup that could still be restored.
    pub lost_unreplicated: u64,
    /// Local writes refused (busy, quarantined, down).
    pub refused_writes: u64,
    /// Failed steps, one line each.
    pub failures: Vec<String>,
    /// Every backsync, in the order the restores started them.
    pub backsyncs: Vec<BacksyncReport>,
    /// Every inbound replication link at the end, with its last pulls
    /// (`--showrepl` writes them as repadmin's CSV).
    pub inbound: Vec<crate::cluster::InboundLink>,
    /// The event log.
    pub events: Vec<Event>,
    /// Simulated ms at the end.
    pub sim_ms: u64,
    /// Server names, by index.
    #[serde(skip)]
    pub names: Vec<String>,
    /// Recorded table changes (with `RunOptions::record`).
    #[serde(skip)]
    pub changes: Vec<Change>,
    /// Replication components over time: from each simulated ms on, the
    /// groups of server indices that sites and connectors join (a new
    /// entry after each step that changed them).
    #[serde(skip)]
    pub components: Vec<(u64, Vec<Vec<usize>>)>,
    /// The conflict granularity the run used (to merge recorded states).
    #[serde(skip)]
    pub granularity: Granularity,
}

/// The topology a scenario describes.
pub fn topology(s: &Scenario) -> Topology {
    Topology {
        sites: s.sites.clone(),
        connectors: s.connectors.clone(),
        connections: s.connections.clone(),
    }
}

/// A write the server refused, for any reason (busy, quarantined, down,
/// read-only, no such object or parent, non-leaf, name taken, fixed
/// container): what `expect_refused` accepts.
fn refused(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Write(_))
}

/// Runs a validated scenario to the end; every failure is collected, none stops it.
pub fn run(s: &Scenario, opts: &RunOptions) -> Result<RunReport, ClusterError> {
    let mut c = start(s, opts)?;
    run_on(&mut c, s, opts)
}

/// The cluster a scenario describes, before its first step: its topology,
/// settings, network faults, seed (`opts.seed` or the file's) and fixed
/// containers.
pub fn start(s: &Scenario, opts: &RunOptions) -> Result<Cluster, ClusterError> {
    let seed = opts.seed.unwrap_or(s.seed);
    let faults = LinkFaults {
        loss: s.network.loss,
        duplicate: s.network.duplicate,
        jitter: s.network.jitter,
    };
    let mut c = Cluster::with_faults(&topology(s), s.config.clone(), seed, faults)?;
    // A scenario's directory is a tree: its parents are objects but for
    // the fixed containers its steps imply.
    c.set_fixed_containers(&s.fixed_containers())?;
    if opts.record {
        c.record_changes();
    }
    Ok(c)
}

/// Runs a scenario's steps on a cluster [`start`] built for it, and
/// reports the run; the cluster stays usable (the live lab serves it).
pub fn run_on(c: &mut Cluster, s: &Scenario, opts: &RunOptions) -> Result<RunReport, ClusterError> {
    let seed = opts.seed.unwrap_or(s.seed);
    let c = &mut *c;
    let mut steps = Vec::new();
    let mut convergence = Vec::new();
    let mut failures = Vec::new();
    let mut components = vec![(0, c.components())];
    for step in &s.steps {
        let wall = std::time::Instant::now();
        let (ok, detail) = match run_step(c, &step.action, opts, step.index, &mut convergence) {
            Ok(r) => r,
            Err(e) => (false, e.to_string()),
        };
        if !ok {
            failures.push(format!(
                "step {} (`{}`, line {}): {detail}",
                step.index,
                step.action.name(),
                step.line
            ));
        }
        steps.push(StepReport {
            index: step.index,
            action: step.action.name().to_string(),
            ok,
            sim_ms: c.now().as_millis() as u64,
            wall_ms: wall.elapsed().as_secs_f64() * 1e3,
            detail,
            line: step.line,
        });
        let now = c.components();
        if components.last().is_none_or(|(_, last)| *last != now) {
            components.push((c.now().as_millis() as u64, now));
        }
    }
    let names = c.servers().to_vec();
    Ok(RunReport {
        schema_version: SCHEMA_VERSION,
        scenario: s.name.clone(),
        seed,
        profile: s.profile.to_string(),
        strategy: opts.strategy,
        passed: failures.is_empty(),
        steps,
        convergence,
        servers: c.status(),
        lost_unreplicated: c.lost_unreplicated()?,
        refused_writes: c.refused_writes(),
        failures,
        backsyncs: backsyncs(&c.backsync_notes(), &names),
        inbound: c.inbound_links(),
        events: c.events(),
        sim_ms: c.now().as_millis() as u64,
        names,
        changes: c.take_changes(),
        components,
        granularity: c.config().granularity,
    })
}

fn write_outcome(
    r: Result<crate::core::Guid, ClusterError>,
    expect_refused: bool,
    what: &str,
) -> (bool, String) {
    match (r, expect_refused) {
        (Ok(g), false) => (true, format!("{what} ({g})")),
        (Ok(_), true) => (
            false,
            format!("{what} was accepted, but a refusal was expected"),
        ),
        (Err(e), true) if refused(&e) => (true, format!("refused as expected: {e}")),
        (Err(e), _) => (false, e.to_string()),
    }
}

fn run_step(
    c: &mut Cluster,
    a: &Action,
    opts: &RunOptions,
    index: usize,
    convergence: &mut Vec<ConvergenceReport>,
) -> Result<(bool, String), ClusterError> {
    let pairs = |m: &std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    Ok(match a {
        Action::Create {
            server,
            dn,
            attrs,
            expect_refused,
        } => {
            let p = pairs(attrs);
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            write_outcome(
                c.create(server, dn, &p),
                *expect_refused,
                &format!("created {dn} on {server}"),
            )
        }
        Action::Modify {
            server,
            dn,
            attrs,
            remove,
            expect_refused,
        } => {
            let p = pairs(attrs);
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let r: Vec<&str> = remove.iter().map(String::as_str).collect();
            write_outcome(
                c.modify(server, dn, &p, &r),
                *expect_refused,
                &format!("modified {dn} on {server}"),
            )
        }
        Action::Delete {
            server,
            dn,
            tree,
            expect_refused,
        } => {
            let r = if *tree {
                c.delete_tree(server, dn)
            } else {
                c.delete(server, dn)
            };
            let what = if *tree { "deleted the tree" } else { "deleted" };
            write_outcome(r, *expect_refused, &format!("{what} {dn} on {server}"))
        }
        Action::Rename {
            server,
            dn,
            new_dn,
            expect_refused,
        } => write_outcome(
            c.rename(server, dn, new_dn),
            *expect_refused,
            &format!("renamed {dn} to {new_dn} on {server}"),
        ),
        Action::Load {
            servers,
            creates,
            modifies,
            deletes,
            prefix,
        } => {
            let spec = LoadSpec {
                servers: servers.clone().unwrap_or_default(),
                creates: *creates,
                modifies: *modifies,
                deletes: *deletes,
                prefix: prefix.clone(),
            };
            let r = match opts.progress {
                Some(p) => c.load_with_progress(&spec, &mut |d, t| p(d, t))?,
                None => c.load(&spec)?,
            };
            (
                true,
                format!(
                    "{} applied, {} refused",
                    count(r.applied, "write"),
                    r.refused
                ),
            )
        }
        Action::Backup { server, name } => {
            c.backup(server, name)?;
            (true, format!("backup `{name}` of {server}"))
        }
        Action::Crash { server } => {
            let lost = c.crash(server)?;
            (
                true,
                format!("{server} crashed; {lost} unreplicated writes lost"),
            )
        }
        Action::Restore {
            server,
            backup,
            strategy,
            subtree,
        } => {
            let st = opts.strategy.or(*strategy).unwrap_or(c.config().restore);
            match (st, subtree) {
                // `compare` may force another strategy on the step: the
                // subtree then means nothing and is left out.
                (RestoreStrategy::Authoritative, Some(root)) => {
                    c.restore_authoritative(server, backup, Some(root))?;
                    (
                        true,
                        format!(
                            "{server} restored from `{backup}` with {st} of the subtree `{root}`"
                        ),
                    )
                }
                _ => {
                    c.restore(server, backup, Some(st))?;
                    (true, format!("{server} restored from `{backup}` with {st}"))
                }
            }
        }
        Action::Release {
            server,
            expect_refused,
        } => match (c.release(server), *expect_refused) {
            (Ok(()), false) => (true, format!("{server} released from quarantine")),
            (Ok(()), true) => (
                false,
                format!("{server} was released, but a refusal was expected"),
            ),
            (Err(e @ ClusterError::Release(_)), true) => {
                (true, format!("refused as expected: {e}"))
            }
            (Err(e @ ClusterError::Release(_)), false) => (false, e.to_string()),
            (Err(e), _) => return Err(e),
        },
        Action::Partition { groups } => {
            c.partition(groups)?;
            let g: Vec<String> = groups
                .iter()
                .map(|g| format!("[{}]", g.join(", ")))
                .collect();
            (true, format!("partitioned {}", g.join(" | ")))
        }
        Action::Heal => {
            c.heal()?;
            (true, "healed".into())
        }
        Action::DeleteConnector { between } => {
            let n = c.delete_connector(&between[0], &between[1])?;
            (
                true,
                format!(
                    "connector {} - {} deleted; {n} object replicas purged",
                    between[0], between[1]
                ),
            )
        }
        Action::Wait { duration } => {
            let passed = c.wait(*duration);
            let shown = crate::config::fmt_duration(passed);
            if passed == *duration {
                (true, format!("waited {shown}"))
            } else {
                let asked = crate::config::fmt_duration(*duration);
                (false, format!("waited {shown}, but {asked} was asked for"))
            }
        }
        Action::Converge {
            within,
            expect,
            max_sim,
            max_objects_sent,
        } => {
            let r = c.converge(*within)?;
            let want = *expect == ConvergeExpect::Converged;
            convergence.push(ConvergenceReport {
                step: index,
                expected: if want { "converged" } else { "diverged" },
                figures: r,
            });
            let t = crate::config::fmt_duration(Duration::from_millis(r.sim_ms));
            let detail = match (r.converged, want) {
                (true, true) => format!(
                    "converged after {t}: {}, {} sent, {} repaired",
                    count(r.messages, "message"),
                    count(r.objects_sent, "object"),
                    crate::config::group(r.objects_repaired)
                ),
                (false, false) => format!("diverged as expected: not converged within {t}"),
                (true, false) => format!("converged after {t}, but divergence was expected"),
                (false, true) => format!("not converged within {t}"),
            };
            let mut over = Vec::new();
            if let Some(m) = max_sim
                && r.sim_ms > m.as_millis() as u64
            {
                let m = crate::config::fmt_duration(*m);
                over.push(format!("took {t}, more than max_sim {m}"));
            }
            if let Some(m) = max_objects_sent
                && r.objects_sent > *m
            {
                let n = r.objects_sent;
                over.push(format!(
                    "sent {}, more than max_objects_sent {m}",
                    count(n, "object")
                ));
            }
            if over.is_empty() {
                (r.converged == want, detail)
            } else {
                (false, format!("{detail}; but {}", over.join(" and ")))
            }
        }
        Action::Expect { server, check } => expect(c, server, check)?,
        Action::ExpectLost { lost_unreplicated } => {
            let lost = c.lost_unreplicated()?;
            (
                lost == *lost_unreplicated,
                format!("{lost} acknowledged writes are lost (expected {lost_unreplicated})"),
            )
        }
    })
}

fn expect(c: &Cluster, server: &str, check: &ExpectCheck) -> Result<(bool, String), ClusterError> {
    Ok(match check {
        ExpectCheck::Tombstone { dn } => match c.tombstone(server, dn)? {
            Some(t) => (
                true,
                format!("{server} holds a tombstone of {dn} ({})", t.guid),
            ),
            None if c.lookup(server, dn)?.is_some() => {
                (false, format!("{dn} is live on {server}, not a tombstone"))
            }
            None => (false, format!("{server} holds no tombstone of {dn}")),
        },
        ExpectCheck::State(want) => {
            let state = c.state(server)?;
            (
                state == want.as_str(),
                format!("{server} is {state} (expected {})", want.as_str()),
            )
        }
        ExpectCheck::AnsweredBy(want) => {
            let mut want = want.clone();
            want.sort();
            let shown = |v: &[String]| format!("[{}]", v.join(", "));
            match c.backsync_answered(server)? {
                Some(got) => (
                    got == want,
                    format!(
                        "the last backsync of {server} got replies from {} (expected {})",
                        shown(&got),
                        shown(&want)
                    ),
                ),
                None => (
                    false,
                    format!(
                        "{server} has run no backsync since its last restore (or is down); expected replies from {}",
                        shown(&want)
                    ),
                ),
            }
        }
        ExpectCheck::Objects(n) => {
            let live = c.live_objects(server)? as u64;
            (
                live == *n,
                format!("{server} holds {live} live objects (expected {n})"),
            )
        }
        ExpectCheck::Dn { dn, present, attrs } => match (c.lookup(server, dn)?, present) {
            (None, false) => (true, format!("{dn} is absent from {server}, as expected")),
            (None, true) => (false, format!("{dn} is missing from {server}")),
            (Some(o), false) => (
                false,
                format!(
                    "{dn} is present on {server} ({}), but was expected absent",
                    o.guid
                ),
            ),
            (Some(o), true) => {
                let wrong: Vec<String> = attrs
                    .iter()
                    .filter(|(k, v)| o.attrs.get(*k) != Some(*v))
                    .map(|(k, v)| {
                        format!(
                            "{k} = {:?} (expected {v:?})",
                            o.attrs.get(k).map(String::as_str).unwrap_or("<absent>")
                        )
                    })
                    .collect();
                if wrong.is_empty() {
                    (true, format!("{dn} is present on {server}"))
                } else {
                    (false, format!("{dn} on {server}: {}", wrong.join(", ")))
                }
            }
        },
    })
}
