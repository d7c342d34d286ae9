//! Readable reports: plain text for the terminal, Markdown for files, and
//! the side-by-side table of `compare`.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::config::{RestoreStrategy, fmt_duration};
use crate::run::RunReport;
use crate::shell::supervisor::Convergence;

fn t(ms: u64) -> String {
    if ms == 0 {
        "0s".into()
    } else {
        fmt_duration(Duration::from_millis(ms))
    }
}

/// The report printed by `backsync run`.
pub fn text(r: &RunReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario: {}", r.scenario);
    let _ = writeln!(
        o,
        "profile {}, seed {}, {} servers{}",
        r.profile,
        r.seed,
        r.servers.len(),
        r.strategy
            .map(|s| format!(", every restore with {s}"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "\nsteps");
    for s in &r.steps {
        let _ = writeln!(
            o,
            "  {} {:>3}  {:<16} {:>12}  {}",
            if s.ok { "ok  " } else { "FAIL" },
            s.index,
            s.action,
            t(s.sim_ms),
            s.detail
        );
    }
    if !r.convergence.is_empty() {
        let _ = writeln!(o, "\nconvergence");
        let _ = writeln!(
            o,
            "  {:>4}  {:<10} {:>14} {:>10} {:>9} {:>13} {:>9}",
            "step", "result", "simulated", "wall ms", "messages", "objects sent", "repaired"
        );
        for (step, c) in r.convergence.iter().map(|c| (c.step, &c.figures)) {
            let _ = writeln!(
                o,
                "  {:>4}  {:<10} {:>14} {:>10.1} {:>9} {:>13} {:>9}",
                step,
                if c.converged { "converged" } else { "diverged" },
                t(c.sim_ms),
                c.wall_ms,
                c.messages,
                c.objects_sent,
                c.objects_repaired
            );
        }
    }
    let _ = writeln!(o, "\nservers");
    let _ = writeln!(
        o,
        "  {:<12} {:<12} {:<12} {:>8} {:>10} {:>9}  invocation",
        "name", "site", "state", "live", "tombstones", "usn"
    );
    for s in &r.servers {
        let _ = writeln!(
            o,
            "  {:<12} {:<12} {:<12} {:>8} {:>10} {:>9}  {}",
            s.name, s.site, s.state, s.live_objects, s.tombstones, s.usn, s.invocation_id
        );
    }
    let _ = writeln!(o, "\nevents");
    for e in &r.events {
        let _ = writeln!(o, "  {:>12}  {}", t(e.sim_ms), e.text);
    }
    let _ = writeln!(
        o,
        "\nwrites lost by nature: {}; local writes refused: {}",
        r.lost_unreplicated, r.refused_writes
    );
    if r.passed {
        let _ = writeln!(o, "PASSED: all {} steps", r.steps.len());
    } else {
        let _ = writeln!(o, "FAILED: {} of {} steps", r.failures.len(), r.steps.len());
        for f in &r.failures {
            let _ = writeln!(o, "  - {f}");
        }
    }
    o
}

/// The same report as Markdown.
pub fn markdown(r: &RunReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", r.scenario);
    let _ = writeln!(
        o,
        "Profile `{}`, seed {}, {} servers. **{}**\n",
        r.profile,
        r.seed,
        r.servers.len(),
        if r.passed {
            "Passed".to_string()
        } else {
            format!("Failed: {} steps", r.failures.len())
        }
    );
    let _ = writeln!(
        o,
        "## Steps\n\n| # | do | ok | at | detail |\n|---|---|---|---|---|"
    );
    for s in &r.steps {
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | {} | {} |",
            s.index,
            s.action,
            if s.ok { "✓" } else { "✗" },
            t(s.sim_ms),
            s.detail.replace('|', "\\|")
        );
    }
    if !r.convergence.is_empty() {
        let _ = writeln!(
            o,
            "\n## Convergence\n\n| step | result | simulated | wall ms | messages | objects sent | repaired |\n|---|---|---|---|---|---|---|"
        );
        for (step, c) in r.convergence.iter().map(|c| (c.step, &c.figures)) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.1} | {} | {} | {} |",
                step,
                if c.converged { "converged" } else { "diverged" },
                t(c.sim_ms),
                c.wall_ms,
                c.messages,
                c.objects_sent,
                c.objects_repaired
            );
        }
    }
    let _ = writeln!(
        o,
        "\n## Servers\n\n| name | site | state | live | tombstones | usn | invocation |\n|---|---|---|---|---|---|---|"
    );
    for s in &r.servers {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | `{}` |",
            s.name, s.site, s.state, s.live_objects, s.tombstones, s.usn, s.invocation_id
        );
    }
    let _ = writeln!(o, "\n## Events\n");
    for e in &r.events {
        let _ = writeln!(o, "- `{}` {}", t(e.sim_ms), e.text);
    }
    let _ = writeln!(
        o,
        "\nWrites lost by nature: {}. Local writes refused: {}.",
        r.lost_unreplicated, r.refused_writes
    );
    if !r.failures.is_empty() {
        let _ = writeln!(o, "\n## Failures\n");
        for f in &r.failures {
            let _ = writeln!(o, "- {f}");
        }
    }
    o
}

/// One strategy's row of `compare`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    /// The strategy every restore used.
    pub strategy: RestoreStrategy,
    /// Every step passed.
    pub passed: bool,
    /// The `converge` steps after the first restore, summed; `converged`
    /// when all of them converged (flattened into the JSON object).
    #[serde(flatten)]
    pub after_restore: Convergence,
    /// Writes lost by nature at the end of the run (held by no running server, in no backup).
    pub lost_unreplicated: u64,
    /// Local writes refused in the whole run.
    pub refused_writes: u64,
    /// Failed steps.
    pub failures: Vec<String>,
}

impl CompareRow {
    /// Sums the convergence after the first restore step of a run.
    pub fn from_run(strategy: RestoreStrategy, r: &RunReport) -> Self {
        let first_restore = r
            .steps
            .iter()
            .find(|s| s.action == "restore")
            .map(|s| s.index);
        let after: Vec<_> = r
            .convergence
            .iter()
            .filter(|c| first_restore.is_some_and(|i| c.step > i))
            .map(|c| &c.figures)
            .collect();
        CompareRow {
            strategy,
            passed: r.passed,
            after_restore: Convergence {
                converged: !after.is_empty() && after.iter().all(|c| c.converged),
                sim_ms: after.iter().map(|c| c.sim_ms).sum(),
                wall_ms: after.iter().map(|c| c.wall_ms).sum(),
                messages: after.iter().map(|c| c.messages).sum(),
                objects_sent: after.iter().map(|c| c.objects_sent).sum(),
                objects_repaired: after.iter().map(|c| c.objects_repaired).sum(),
            },
            lost_unreplicated: r.lost_unreplicated,
            refused_writes: r.refused_writes,
            failures: r.failures.clone(),
        }
    }
}

/// The side-by-side table of `compare`.
pub fn compare_table(scenario: &str, rows: &[CompareRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario: {scenario}");
    let _ = writeln!(
        o,
        "every restore step switched to each strategy; figures are the converge steps after the first restore\n"
    );
    let _ = writeln!(
        o,
        "{:<15} {:<10} {:>14} {:>9} {:>9} {:>13} {:>9} {:>6} {:>8}  steps",
        "strategy",
        "result",
        "simulated",
        "wall ms",
        "messages",
        "objects sent",
        "repaired",
        "lost",
        "refused"
    );
    for r in rows {
        let c = &r.after_restore;
        let _ = writeln!(
            o,
            "{:<15} {:<10} {:>14} {:>9.1} {:>9} {:>13} {:>9} {:>6} {:>8}  {}",
            r.strategy.as_str(),
            if c.converged { "converged" } else { "diverged" },
            t(c.sim_ms),
            c.wall_ms,
            c.messages,
            c.objects_sent,
            c.objects_repaired,
            r.lost_unreplicated,
            r.refused_writes,
            if r.passed {
                "all passed".to_string()
            } else {
                format!("{} failed", r.failures.len())
            }
        );
    }
    o
}
