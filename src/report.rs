//! Readable reports: plain text for the terminal, Markdown for files, and
//! the side-by-side table of `compare`.

use std::fmt::Write;
use std::path::{Component, Path};
use std::time::Duration;

/// The reference the plot measures against, in one sentence.
pub const PLOT_REFERENCE: &str = "Distance: objects a server holds differently from, or lacks in, the merge (by the replication rules: higher stamp wins) of every object state the running servers of its replication component hold at that moment.";

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

/// `1 object`, `2 objects`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What the run came to, one line each: restores, who answered each
/// backsync and what came back, what was lost, how it ended.
pub fn outcome(r: &RunReport) -> Vec<String> {
    let mut o = Vec::new();
    let restores: Vec<_> = (r.steps.iter())
        .filter(|s| s.action == "restore" && s.ok)
        .collect();
    if restores.is_empty() {
        o.push("restores: none".to_string());
    }
    for s in restores {
        o.push(format!("restore at {}: {}", t(s.sim_ms), s.detail));
    }
    for b in &r.backsyncs {
        let answered = if b.answers.is_empty() {
            "no partner answered".to_string()
        } else {
            let who: Vec<String> = (b.answers.iter())
                .map(|a| format!("{} ({} back)", a.from, count(a.restored, "object")))
                .collect();
            format!("answered by {}", who.join(", "))
        };
        let silent = b.silent.join(", ");
        let end = match (b.outcome, b.ended_ms) {
            ("complete", Some(e)) => format!("complete at {}", t(e)),
            (_, Some(e)) => format!("gave up at {} without {silent}", t(e)),
            _ if b.silent.is_empty() => "unfinished at the end".to_string(),
            _ => format!("unfinished at the end, waiting for {silent}"),
        };
        o.push(format!(
            "backsync of {} from {}: {answered}; {end}",
            b.server,
            t(b.started_ms)
        ));
    }
    if !r.backsyncs.is_empty() {
        let total: usize = r.backsyncs.iter().map(|b| b.restored()).sum();
        let mut from: Vec<(&str, usize)> = Vec::new();
        for a in r.backsyncs.iter().flat_map(|b| &b.answers) {
            match from.iter_mut().find(|f| f.0 == a.from) {
                Some(f) => f.1 += a.restored,
                None => from.push((&a.from, a.restored)),
            }
        }
        let by: Vec<String> = (from.iter().filter(|f| f.1 > 0))
            .map(|(n, k)| format!("{n}: {k}"))
            .collect();
        o.push(if by.is_empty() {
            format!("came back by backsync: {}", count(total, "object"))
        } else {
            format!(
                "came back by backsync: {} ({})",
                count(total, "object"),
                by.join(", ")
            )
        });
    }
    for s in r.steps.iter().filter(|s| s.action == "crash" && s.ok) {
        o.push(format!("crash: {}", s.detail));
    }
    o.push(format!(
        "lost for good: {} (held by no running server, in no backup that could still be restored)",
        count(r.lost_unreplicated as usize, "acknowledged write")
    ));
    if let Some(c) = r.convergence.last() {
        let (step, f) = (c.step, &c.figures);
        o.push(if f.converged {
            format!("end: converged at step {step} (after {})", t(f.sim_ms))
        } else {
            let expected = if c.expected == "diverged" {
                "as expected"
            } else {
                "convergence was expected"
            };
            format!(
                "end: not converged at step {step} (within {}; {expected})",
                t(f.sim_ms)
            )
        });
    }
    o
}

/// The path of `target` as a link from a file at `from` (relative to the
/// directory `from` is in, `/`-separated).
pub fn link_from(from: &Path, target: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (from, target) = (abs(from), abs(target));
    let dir: Vec<Component> = from
        .parent()
        .map_or(Vec::new(), |d| d.components().collect());
    let to: Vec<Component> = target.components().collect();
    let same = dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); dir.len() - same];
    parts.extend(
        to[same..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// The report printed by `backsync run`.
pub fn text(r: &RunReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario: {}", r.scenario);
    let _ = writeln!(
        o,
        "profile {}, seed {}, {}{}",
        r.profile,
        r.seed,
        crate::config::count(r.servers.len() as u64, "server"),
        r.strategy
            .map(|s| format!(", every restore with {s}"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "\noutcome");
    for l in outcome(r) {
        let _ = writeln!(o, "  {l}");
    }
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
    markdown_with_plot(r, None)
}

/// The Markdown report, linking the plot written with it (`plot`: its
/// path relative to the report's directory, see [`link_from`]).
pub fn markdown_with_plot(r: &RunReport, plot: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", r.scenario);
    let _ = writeln!(
        o,
        "Profile `{}`, seed {}, {}. **{}**\n",
        r.profile,
        r.seed,
        crate::config::count(r.servers.len() as u64, "server"),
        if r.passed {
            "Passed".to_string()
        } else {
            format!("Failed: {} steps", r.failures.len())
        }
    );
    let _ = writeln!(o, "## Outcome\n");
    for l in outcome(r) {
        let _ = writeln!(o, "- {}", l.replace('|', "\\|"));
    }
    if let Some(p) = plot {
        let p = if p.contains(' ') {
            format!("<{p}>")
        } else {
            p.to_string()
        };
        let _ = writeln!(
            o,
            "\nPlot: [{}]({p}). {}",
            p.trim_matches(['<', '>']),
            PLOT_REFERENCE
        );
    }
    let _ = writeln!(
        o,
        "\n## Steps\n\n| # | do | ok | at | detail |\n|---|---|---|---|---|"
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
                relayed: after.iter().map(|c| c.relayed).sum(),
                held: after.last().map_or(0, |c| c.held),
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

/// The header `repadmin /showrepl * /csv` prints, column for column.
pub const SHOWREPL_HEADER: &str = "showrepl_COLUMNS,Destination DSA Site,Destination DSA,Naming Context,Source DSA Site,Source DSA,Transport Type,Number of Failures,Last Failure Time,Last Success Time,Last Failure Status";

/// The naming context every row names: the simulated directory is one
/// domain partition.
pub const NAMING_CONTEXT: &str = "DC=example,DC=com";

/// The run's inbound links in the CSV of `repadmin /showrepl * /csv`: the
/// header, then one `showrepl_INFO` row per server and partner it pulls
/// from, as they stand at the end of the run.
///
/// Mapping: the transport is `RPC` (no SMTP is modelled); times are the
/// simulated clock as a UTC date, time 0 being Sunday 2026-01-04 00:00:00;
/// a time that never happened is `0`, as repadmin prints it; the failure
/// count is consecutive failures since the last success; the failure time
/// and status are those of the last pull if it failed (0 once a pull
/// succeeds again): 1722 (the partner did not answer: down, cut off) or
/// 8456 (it refused: in a backsync, quarantined).
pub fn showrepl_csv(r: &RunReport) -> String {
    let time = |t: Option<u64>| t.map_or_else(|| "0".to_string(), sim_date);
    let mut o = String::from(SHOWREPL_HEADER);
    o.push('\n');
    for l in &r.inbound {
        let s = &l.status;
        let row = [
            "showrepl_INFO".to_string(),
            csv_field(&l.destination_site),
            csv_field(&l.destination),
            csv_field(NAMING_CONTEXT),
            csv_field(&l.source_site),
            csv_field(&l.source),
            "RPC".to_string(),
            s.failures.to_string(),
            time(s.last_failure_ms),
            time(s.last_success_ms),
            s.last_failure_status.to_string(),
        ];
        o.push_str(&row.join(","));
        o.push('\n');
    }
    o
}

/// A CSV field, quoted when it holds a comma, a quote or a line break
/// (RFC 4180), as repadmin quotes naming contexts.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Simulated ms as a UTC date and time, `YYYY-MM-DD HH:MM:SS`, time 0 being
/// Sunday 2026-01-04 00:00:00 (the start of a SCHEDULE's week).
pub fn sim_date(ms: u64) -> String {
    // Days since 1970-01-01 of 2026-01-04.
    const EPOCH_DAYS: i64 = 20_457;
    let secs = ms / 1_000;
    let days = EPOCH_DAYS + (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a
/// day count from 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_dates_are_utc_from_sunday_2026_01_04() {
        // Expected values from Python's datetime, not from this code.
        let day = 86_400_000;
        let hms = 3_723_000;
        assert_eq!(sim_date(0), "2026-01-04 00:00:00");
        assert_eq!(sim_date(56 * day + hms), "2026-03-01 01:02:03");
        assert_eq!(sim_date(786 * day + hms), "2028-02-29 01:02:03");
        assert_eq!(sim_date(36_500 * day + hms), "2125-12-11 01:02:03");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("WIN01"), "WIN01");
        assert_eq!(csv_field("DC=example,DC=com"), "\"DC=example,DC=com\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn links_are_relative_to_the_report_directory() {
        let l = |a: &str, b: &str| link_from(Path::new(a), Path::new(b));
        assert_eq!(l("/o/r.md", "/o/r.svg"), "r.svg");
        assert_eq!(l("/o/a/r.md", "/o/b/p.svg"), "../b/p.svg");
        assert_eq!(l("/o/r.md", "/o/plots/p.svg"), "plots/p.svg");
        assert_eq!(l("r.md", "plots/p.svg"), "plots/p.svg");
    }

    #[test]
    fn counts_have_the_right_plural() {
        assert_eq!(count(1, "object"), "1 object");
        assert_eq!(count(0, "object"), "0 objects");
        assert_eq!(count(2, "acknowledged write"), "2 acknowledged writes");
    }
}
