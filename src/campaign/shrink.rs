//! Shrinking: a failing schedule cut down (delta debugging over its steps)
//! to one that still breaks the same invariant, written as a scenario file
//! whose checks fail under `run::run`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::campaign::invariants::{Check, Invariant, Violation, check_all};
use crate::campaign::runner::{self, RunOutput};
use crate::campaign::schedule::{Intent, Op, Setup, to_scenario};
use crate::run::RunOptions;
use crate::scenario::{Action, ExpectCheck, Scenario};

/// What shrinking one seed gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shrunk {
    /// The invariant it keeps breaking.
    pub invariant: Invariant,
    /// Steps of the failing schedule.
    pub original_steps: usize,
    /// Steps left.
    pub steps: usize,
    /// Runs it took.
    pub runs: usize,
    /// The scenario file text, when one fails as a scenario.
    #[serde(skip)]
    pub scenario: Option<String>,
    /// Whether that file is the shrunk schedule (or, failing that, the whole one).
    pub shrunk_file: bool,
    /// Why there is no file, if none.
    pub note: String,
}

fn ops(v: &[Op]) -> Vec<Intent> {
    v.iter().cloned().map(Intent::Op).collect()
}

/// Runs a concrete schedule; its violations if it breaks `target`. A
/// candidate must end as generated runs do, every server restored and
/// running (cutting the backups a final restore needs would leave a server
/// down, a failure of the schedule rather than of the strategy).
fn violates(setup: &Setup, cand: &[Op], target: Invariant) -> Option<(RunOutput, Vec<Violation>)> {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runner::run(setup, &ops(cand))
    }));
    let out = run.ok()?.ok()?;
    if out.history.finals.iter().any(|f| f.objects.is_none()) {
        return None;
    }
    let v = check_all(&out.history);
    v.iter().any(|x| x.invariant == target).then_some((out, v))
}

/// Delta debugging: removes chunks of steps (halves, then quarters, down
/// to single steps) while the schedule still breaks `target`, within
/// `budget` runs. Link-fault steps go first, as only schedules without them
/// can be written as scenario files.
pub fn shrink_ops(
    setup: &Setup,
    failing: &[Op],
    target: Invariant,
    budget: usize,
) -> (Vec<Op>, usize) {
    let mut cur = failing.to_vec();
    let mut runs = 0;
    let calm: Vec<Op> = cur
        .iter()
        .filter(|o| !matches!(o, Op::Faults(_)))
        .cloned()
        .collect();
    if calm.len() < cur.len() {
        runs += 1;
        if violates(setup, &calm, target).is_some() {
            cur = calm;
        }
    }
    let mut parts = 2usize;
    while cur.len() > 1 && runs < budget {
        let chunk = cur.len().div_ceil(parts);
        let mut reduced = false;
        let mut start = 0;
        while start < cur.len() && runs < budget {
            let end = (start + chunk).min(cur.len());
            let cand: Vec<Op> = cur[..start].iter().chain(&cur[end..]).cloned().collect();
            runs += 1;
            if violates(setup, &cand, target).is_some() {
                cur = cand;
                reduced = true;
            } else {
                start = end;
            }
        }
        if reduced {
            parts = parts.saturating_sub(1).max(2);
        } else if chunk == 1 {
            break;
        } else {
            parts = (parts * 2).min(cur.len());
        }
    }
    (cur, runs)
}

/// The scenario checks that show these violations: the final `converge`
/// (already in the finale), then `expect` steps.
fn checks(v: &[Violation], target: Invariant) -> Vec<Action> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let ordered = v
        .iter()
        .filter(|x| x.invariant == target)
        .chain(v.iter().filter(|x| x.invariant != target));
    for x in ordered {
        let Some(c) = &x.check else { continue };
        if !seen.insert(c.clone()) {
            continue;
        }
        out.push(match c {
            Check::Present { server, dn, attrs } => Action::Expect {
                server: server.clone(),
                check: ExpectCheck::Dn {
                    dn: dn.clone(),
                    present: true,
                    attrs: attrs.clone(),
                },
            },
            Check::Absent { server, dn } => Action::Expect {
                server: server.clone(),
                check: ExpectCheck::Dn {
                    dn: dn.clone(),
                    present: false,
                    attrs: BTreeMap::new(),
                },
            },
        });
        if out.len() == 8 {
            break;
        }
    }
    out
}

/// The scenario text of a run, with checks for its violations.
pub fn scenario_of(
    setup: &Setup,
    out: &RunOutput,
    v: &[Violation],
    target: Invariant,
    comment: &str,
) -> Option<String> {
    if out.unexpressible > 0 {
        return None;
    }
    let mut steps = out.executed.clone();
    steps.extend(out.finale.iter().cloned().map(Op::Step));
    steps.extend(checks(v, target).into_iter().map(Op::Step));
    let title = format!(
        "campaign seed {}: {} ({} restores)",
        setup.seed, target, setup.strategy
    );
    to_scenario(setup, &title, &steps, comment)
}

/// Whether a scenario text fails as a scenario because of its checks:
/// every schedule step passes, and the final converge or an expect fails.
pub fn fails_as_scenario(text: &str, origin: &str, schedule_steps: usize) -> Result<bool, String> {
    let s = Scenario::from_str(text, origin).map_err(|e| e.to_string())?;
    let r = crate::run::run(&s, &RunOptions::default()).map_err(|e| e.to_string())?;
    let schedule_ok = r.steps.iter().take(schedule_steps).all(|x| x.ok);
    let check_failed = r.steps.iter().skip(schedule_steps).any(|x| !x.ok);
    Ok(schedule_ok && check_failed)
}

/// Shrinks a failing run and writes the result as a scenario that still
/// fails, falling back to the whole schedule when the shrunk one does not.
pub fn shrink(
    setup: &Setup,
    failing: &RunOutput,
    target: Invariant,
    budget: usize,
    repro: &str,
) -> Shrunk {
    let (small, runs) = shrink_ops(setup, &failing.executed, target, budget);
    let mut note = String::new();
    let attempt = |ops: &[Op], label: &str| -> Result<String, String> {
        let (out, v) = violates(setup, ops, target).ok_or("no longer fails when rerun")?;
        let detail = v
            .iter()
            .find(|x| x.invariant == target)
            .map_or(String::new(), |x| x.detail.clone());
        let comment = format!(
            "{label} by `backsync campaign` from seed {} ({} of {} steps kept).\nViolates {target}: {detail}\nReproduce: {repro}",
            setup.seed,
            out.executed.len(),
            failing.executed.len()
        );
        let text = scenario_of(setup, &out, &v, target, &comment).ok_or(
            "it needs link faults that change during the run, which scenario files cannot express",
        )?;
        let n = out.executed.len() + out.finale.len() - 1;
        match fails_as_scenario(&text, "campaign-shrunk.toml", n)? {
            true => Ok(text),
            false => Err("as a scenario file its checks pass".to_string()),
        }
    };
    let (scenario, shrunk_file) = match attempt(&small, "Shrunk") {
        Ok(t) => (Some(t), true),
        Err(e) => {
            note = format!("shrunk schedule: {e}");
            match attempt(&failing.executed, "Written whole") {
                Ok(t) => (Some(t), false),
                Err(e2) => {
                    note = format!("{note}; whole schedule: {e2}");
                    (None, false)
                }
            }
        }
    };
    Shrunk {
        invariant: target,
        original_steps: failing.executed.len(),
        steps: small.len(),
        runs,
        scenario,
        shrunk_file,
        note,
    }
}
