//! The campaign summary: seeds run, faults injected by kind, outage and
//! backup-age and convergence-time quantiles, violations by invariant.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::campaign::SeedResult;
use crate::campaign::invariants::Invariant;
use crate::campaign::runner::FaultCounts;
use crate::config::{count, fmt_duration, group};
use crate::shell::observe::HazardKind;

/// Quantiles of a set of simulated durations, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// How many.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Quantiles {
    /// The quantiles of `v` (nearest rank).
    pub fn of(mut v: Vec<u64>) -> Self {
        if v.is_empty() {
            return Quantiles::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Quantiles {
            count: v.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: *v.last().expect("not empty"),
        }
    }

    /// The cells of a row: p50, p90, p99, max.
    fn cells(&self) -> [String; 4] {
        let d = |ms: u64| fmt_duration(Duration::from_millis(ms));
        [d(self.p50), d(self.p90), d(self.p99), d(self.max)]
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Summary lines wrap before this column (the command line does not).
pub const WIDTH: usize = 100;

/// `label` in the summary's first column, then `items` joined by `, `,
/// wrapped at [`WIDTH`] under the second column.
fn list(o: &mut String, label: &str, items: &[String]) {
    list_sep(o, label, items, ",");
}

/// [`list`] with `sep` after each item but the last (the first, which
/// ends with its own colon, excepted when `sep` is not a comma).
fn list_sep(o: &mut String, label: &str, items: &[String], sep: &str) {
    let indent = " ".repeat(17);
    let mut line = format!("  {label:<15}");
    let mut first = true;
    for (k, item) in items.iter().enumerate() {
        let sep = if k + 1 == items.len() || (k == 0 && sep != ",") {
            ""
        } else {
            sep
        };
        let piece = format!("{item}{sep}");
        if !first && line.chars().count() + 1 + piece.chars().count() > WIDTH {
            let _ = writeln!(o, "{}", line.trim_end());
            line = indent.clone();
            first = true;
        }
        if !first {
            line.push(' ');
        }
        line.push_str(&piece);
        first = false;
    }
    let _ = writeln!(o, "{}", line.trim_end());
}

/// A shrunk schedule, as the summary lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShrunkEntry {
    /// The seed.
    pub seed: u64,
    /// The invariant it breaks.
    pub invariant: Invariant,
    /// The scenario file written, if any.
    pub file: Option<String>,
    /// Whether the file holds the shrunk schedule (else the whole one).
    pub shrunk: bool,
    /// Steps kept and steps of the failing schedule.
    pub steps: (usize, usize),
    /// Why there is no file.
    pub note: String,
}

/// The shard a summary covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardOf {
    /// `I/N`.
    pub shard: String,
    /// Seeds in the whole range.
    pub range_seeds: u64,
}

/// The failing seeds of one signature (the invariants they broke).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignatureGroup {
    /// The invariants, joined by `+`.
    pub signature: String,
    /// Seeds with it.
    pub seeds: u64,
    /// The lowest of them (the one shrunk for it).
    pub lowest: u64,
}

/// The figures of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// The first.
    pub first_seed: u64,
    /// Topology size.
    pub servers: usize,
    /// Sites.
    pub sites: usize,
    /// Objects per run.
    pub objects: usize,
    /// Restore strategy.
    pub strategy: String,
    /// Profile.
    pub profile: String,
    /// Whether each seed ran twice and its event logs were compared.
    pub determinism_checked: bool,
    /// Wall-clock seconds of the run; for `campaign merge`, which cannot
    /// know the shards' clocks, the seeds' summed wall times.
    pub wall_s: f64,
    /// The seeds' CPU times summed, in seconds: the core time the seeds
    /// took (each seed runs on one thread; the wall time where there is no
    /// thread CPU clock).
    pub core_s: f64,
    /// Seeds per second per core: `seeds / core_s`.
    pub seeds_per_core_s: f64,
    /// The shard these seeds are, if only one (`--shard`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardOf>,
    /// Seeds of the range with no record (`campaign merge --partial`).
    #[serde(skip_serializing_if = "is_zero")]
    pub missing_seeds: u64,
    /// Faults injected and workload, summed.
    pub faults: FaultCounts,
    /// Outage durations (crash to restore).
    pub outages: Quantiles,
    /// Ages of the backups restored.
    pub backup_ages: Quantiles,
    /// Simulated time from the final heal to convergence, of converged runs.
    pub convergence: Quantiles,
    /// The bounds of the runs.
    pub bounds: Quantiles,
    /// Simulated time of the runs.
    pub run_lengths: Quantiles,
    /// Hazards announced, by kind (every kind listed, zero included).
    pub hazards: BTreeMap<String, u64>,
    /// Objects whose final state differed from the oracle's, each
    /// difference covered by an announced hazard.
    pub announced_losses: u64,
    /// Objects with a difference no announcement covered.
    pub silent_losses: u64,
    /// Whether the generator included the hazards (`--no-hazards` not given).
    pub hazards_generated: bool,
    /// Seeds that broke each invariant.
    pub violations: BTreeMap<String, u64>,
    /// Seeds with at least one violation.
    pub violating_seeds: Vec<u64>,
    /// The failing seeds by signature, the group with the lowest seed first.
    pub signatures: Vec<SignatureGroup>,
    /// Shrunk schedules.
    pub shrunk: Vec<ShrunkEntry>,
    /// The command that reproduces the campaign.
    pub command: String,
}

impl Summary {
    /// Sums the seeds' results.
    pub fn of(results: &[SeedResult], head: Summary) -> Summary {
        let mut s = head;
        let mut conv = Vec::new();
        let mut bounds = Vec::new();
        let mut lengths = Vec::new();
        for inv in Invariant::ALL {
            s.violations.insert(inv.name().into(), 0);
        }
        let mut core_ms = 0.0;
        let mut wall_ms = 0.0;
        for r in results {
            core_ms += r.cpu_ms;
            wall_ms += r.wall_ms;
            s.faults.add(&r.counts);
            if r.converged {
                conv.push(r.convergence_ms);
            }
            bounds.push(r.bound_ms);
            lengths.push(r.sim_ms);
            let mut broken: Vec<Invariant> = r.violations.iter().map(|v| v.invariant).collect();
            broken.sort();
            broken.dedup();
            for b in &broken {
                *s.violations.entry(b.name().into()).or_default() += 1;
            }
            if !broken.is_empty() {
                s.violating_seeds.push(r.seed);
            }
        }
        s.core_s = core_ms / 1e3;
        s.wall_s = wall_ms / 1e3;
        s.seeds_per_core_s = if s.core_s > 0.0 {
            results.len() as f64 / s.core_s
        } else {
            0.0
        };
        let mut groups: Vec<SignatureGroup> = crate::campaign::records::groups(results)
            .into_iter()
            .map(|(signature, seeds)| SignatureGroup {
                signature,
                seeds: seeds.len() as u64,
                lowest: seeds[0],
            })
            .collect();
        groups.sort_by_key(|g| g.lowest);
        s.signatures = groups;
        s.hazards = HazardKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), 0))
            .chain(s.faults.hazards.clone())
            .collect();
        s.announced_losses = s.faults.announced_losses;
        s.silent_losses = s.faults.silent_losses;
        s.outages = Quantiles::of(std::mem::take(&mut s.faults.outages_ms));
        s.backup_ages = Quantiles::of(std::mem::take(&mut s.faults.backup_ages_ms));
        s.convergence = Quantiles::of(conv);
        s.bounds = Quantiles::of(bounds);
        s.run_lengths = Quantiles::of(lengths);
        s
    }

    /// The human-readable summary: counts with their nouns, durations in
    /// one short form ([`fmt_duration`]), simulated times as a table whose
    /// columns stay aligned whatever the durations, lines wrapped at
    /// [`WIDTH`] columns (the command excepted, to copy it whole).
    pub fn render(&self) -> String {
        let f = &self.faults;
        let mut o = String::new();
        let per = if self.seeds > 0 {
            self.wall_s / self.seeds as f64
        } else {
            0.0
        };
        let wall = |s: f64| fmt_duration(Duration::from_secs_f64(s.max(0.0)));
        let range = self
            .shard
            .as_ref()
            .map_or(self.seeds + self.missing_seeds, |s| s.range_seeds);
        let last = self.first_seed + range.saturating_sub(1);
        let mut which = if range == 1 {
            format!("seed {}", self.first_seed)
        } else {
            format!("{} to {last}", self.first_seed)
        };
        if let Some(s) = &self.shard {
            which = format!("shard {} of {which}", s.shard);
        }
        if self.missing_seeds > 0 {
            which = format!("{which}, {} missing", group(self.missing_seeds));
        }
        let _ = writeln!(o, "summary");
        let _ = writeln!(
            o,
            "  seeds          {} ({which}) in {}, {} per seed{}",
            count(self.seeds, "seed"),
            wall(self.wall_s),
            wall(per),
            if self.determinism_checked {
                ", each run twice"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "  throughput     {:.2} seeds per second per core ({} of CPU time)",
            self.seeds_per_core_s,
            wall(self.core_s)
        );
        list(
            &mut o,
            "faults",
            &[
                count(f.crashes, "crash"),
                format!(
                    "{} ({} of a running server)",
                    count(f.restores, "restore"),
                    group(f.restores_of_running)
                ),
                count(f.partitions, "partition"),
                count(f.heals, "heal"),
                count(f.connector_deletions, "connector deletion"),
                format!(
                    "{} ({} lost, {} duplicated)",
                    count(f.link_fault_periods, "link-fault period"),
                    count(f.messages_lost, "message"),
                    group(f.messages_duplicated)
                ),
                count(f.backups, "backup"),
            ],
        );
        list(
            &mut o,
            "workload",
            &[
                format!("{} applied", count(f.writes, "write")),
                format!("{} refused", group(f.writes_refused)),
                format!(
                    "{} lost by nature (counted, not flagged)",
                    group(f.lost_by_nature)
                ),
                format!("{} purged by connector deletion", group(f.purged_by_design)),
            ],
        );
        list(
            &mut o,
            "traffic",
            &[format!(
                "{} sent in replies",
                count(f.objects_sent, "object")
            )],
        );
        let mut kinds: Vec<String> = self
            .hazards
            .iter()
            .map(|(k, n)| format!("{k} {}", group(*n)))
            .collect();
        if !self.hazards_generated {
            kinds.push("(--no-hazards: none generated)".into());
        }
        list(&mut o, "hazards", &kinds);
        let _ = writeln!(
            o,
            "  oracle         differences in {}: {} announced, {} silent",
            count(self.announced_losses + self.silent_losses, "object"),
            group(self.announced_losses),
            group(self.silent_losses)
        );
        if self.announced_losses > 0 {
            let by: Vec<String> = self
                .faults
                .announced_by_cover
                .iter()
                .map(|(k, n)| format!("{k} {}", group(*n)))
                .collect();
            list(&mut o, "announced by", &by);
        }
        // Simulated times, one row each, columns as wide as their widest cell.
        let rows: [(&str, &Quantiles, &str); 5] = [
            ("outages", &self.outages, "outage"),
            ("backup ages", &self.backup_ages, "restore"),
            ("run length", &self.run_lengths, "run"),
            ("convergence", &self.convergence, "converged run"),
            ("bounds", &self.bounds, "run"),
        ];
        let cells: Vec<[String; 4]> = rows.iter().map(|(_, q, _)| q.cells()).collect();
        let heads = ["p50", "p90", "p99", "max"];
        let widths: Vec<usize> = (0..4)
            .map(|k| {
                rows.iter()
                    .zip(&cells)
                    .filter(|((_, q, _), _)| q.count > 0)
                    .map(|(_, c)| c[k].chars().count())
                    .chain([heads[k].len()])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let mut head = format!("  {:<15}", "simulated");
        for (k, h) in heads.iter().enumerate() {
            let _ = write!(head, "{h:>w$}  ", w = widths[k]);
        }
        let _ = writeln!(o, "{}", head.trim_end());
        for ((label, q, noun), c) in rows.iter().zip(&cells) {
            let mut line = format!("  {label:<15}");
            if q.count == 0 {
                line.push_str("none");
            } else {
                for (k, cell) in c.iter().enumerate() {
                    let _ = write!(line, "{cell:>w$}  ", w = widths[k]);
                }
                line.push_str(&count(q.count as u64, noun));
            }
            let _ = writeln!(o, "{}", line.trim_end());
        }
        let by: Vec<String> = Invariant::ALL
            .iter()
            .filter(|i| {
                Invariant::CHECKED.contains(i)
                    || self.violations.get(i.name()).copied().unwrap_or(0) > 0
                    || (**i == Invariant::Determinism && self.determinism_checked)
            })
            .map(|i| {
                format!(
                    "{} {}",
                    i.name(),
                    group(self.violations.get(i.name()).copied().unwrap_or(0))
                )
            })
            .collect();
        let mut items = by;
        items[0] = format!(
            "{} failing, by invariant: {}",
            count(self.violating_seeds.len() as u64, "seed"),
            items[0]
        );
        list(&mut o, "violations", &items);
        for g in &self.signatures {
            let mut items = vec![format!("{} (lowest {}):", count(g.seeds, "seed"), g.lowest)];
            items.extend(g.signature.split('+').map(str::to_string));
            // `list` puts commas between items; a signature reads better with `+`.
            let label = if std::ptr::eq(g, &self.signatures[0]) {
                "by signature"
            } else {
                ""
            };
            list_sep(&mut o, label, &items, " +");
        }
        for e in &self.shrunk {
            let what = match &e.file {
                Some(file) if e.shrunk => format!(
                    "{file} ({} of {}; fails as a scenario: `backsync run {file}`)",
                    e.steps.0,
                    count(e.steps.1 as u64, "step"),
                ),
                Some(file) => format!(
                    "{file} (not shrunk, all {}; fails as a scenario: `backsync run {file}`)",
                    count(e.steps.1 as u64, "step"),
                ),
                None => format!("no scenario file: {}", e.note),
            };
            let _ = writeln!(
                o,
                "  shrunk         seed {} [{}]: {what}",
                e.seed, e.invariant
            );
        }
        let _ = writeln!(o, "  command        {}", self.command);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let q = Quantiles::of((1..=100).collect());
        assert_eq!(
            (q.p50, q.p90, q.p99, q.max, q.count),
            (50, 90, 99, 100, 100)
        );
        assert_eq!(Quantiles::of(vec![7]).p50, 7);
        assert_eq!(Quantiles::of(Vec::new()), Quantiles::default());
    }

    fn sample() -> Summary {
        Summary {
            seeds: 1,
            first_seed: 7,
            servers: 2,
            sites: 1,
            objects: 1,
            strategy: "backsync".into(),
            profile: "exchange55".into(),
            determinism_checked: false,
            wall_s: 0.25,
            core_s: 0.5,
            seeds_per_core_s: 2.0,
            shard: None,
            missing_seeds: 0,
            faults: FaultCounts {
                crashes: 1,
                restores: 1,
                backups: 12_345,
                ..FaultCounts::default()
            },
            outages: Quantiles::of(vec![250, 3650 * 86_400_000 + 3_600_000]),
            backup_ages: Quantiles::of(vec![12_500]),
            convergence: Quantiles::default(),
            bounds: Quantiles::of(vec![330_000]),
            run_lengths: Quantiles::of(vec![17 * 3_600_000 + 300_000]),
            hazards: BTreeMap::new(),
            announced_losses: 0,
            silent_losses: 1,
            hazards_generated: true,
            violations: BTreeMap::new(),
            violating_seeds: vec![7],
            signatures: vec![SignatureGroup {
                signature: "convergence+no-lost-write+no-resurrection+usn-monotonic+no-silent-loss"
                    .into(),
                seeds: 1,
                lowest: 7,
            }],
            shrunk: Vec::new(),
            command: "backsync campaign --seeds 1".into(),
        }
    }

    /// Durations from 250ms to 3650 days keep the columns aligned.
    #[test]
    fn time_columns_stay_aligned_for_long_durations() {
        let text = sample().render();
        let lines: Vec<&str> = text.lines().collect();
        let head = lines
            .iter()
            .find(|l| l.trim_start().starts_with("simulated"))
            .expect("a table head");
        let ends: Vec<usize> = ["p50", "p90", "p99", "max"]
            .iter()
            .map(|h| head.find(h).unwrap() + h.len())
            .collect();
        for (label, q) in [
            ("outages", sample().outages),
            ("backup ages", sample().backup_ages),
            ("run length", sample().run_lengths),
            ("bounds", sample().bounds),
        ] {
            let row = lines
                .iter()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap();
            let mut from = 17;
            for (cell, end) in q.cells().iter().zip(&ends) {
                let at = row[from..].find(cell.as_str()).unwrap() + from;
                assert_eq!(at + cell.len(), *end, "{label}: {cell} in\n{text}");
                from = at + cell.len();
            }
        }
        assert!(text.contains("3650d 1h"), "{text}");
        assert!(text.contains("  convergence    none"), "{text}");
    }

    /// Counts of one are singular; large ones grouped; lines fit 100 columns.
    #[test]
    fn counts_read_right() {
        let text = sample().render();
        for want in [
            "1 seed (seed 7) in 250ms, 250ms per seed",
            "1 crash, 1 restore (0 of a running server)",
            "12,345 backups",
            "differences in 1 object: 0 announced, 1 silent",
            "1 seed failing",
            "  throughput     2.00 seeds per second per core (500ms of CPU time)",
            "  by signature   1 seed (lowest 7): convergence + no-lost-write + no-resurrection + usn-monotonic +\n                 no-silent-loss\n",
            "2 outages",
            "1 restore\n",
            "1 run\n",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        for l in text.lines().filter(|l| !l.contains("backsync campaign")) {
            assert!(l.chars().count() <= WIDTH, "{l}");
        }
    }
}
