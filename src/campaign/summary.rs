//! The campaign summary: seeds run, faults injected by kind, outage and
//! backup-age and convergence-time quantiles, violations by invariant.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::campaign::SeedResult;
use crate::campaign::invariants::Invariant;
use crate::campaign::runner::FaultCounts;
use crate::config::fmt_duration;
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

    fn show(&self) -> String {
        if self.count == 0 {
            return "none".into();
        }
        let d = |ms: u64| fmt_duration(Duration::from_millis(ms));
        format!(
            "p50 {}, p90 {}, p99 {}, max {} ({} values)",
            d(self.p50),
            d(self.p90),
            d(self.p99),
            d(self.max),
            self.count
        )
    }
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
    /// Wall-clock seconds.
    pub wall_s: f64,
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
        for r in results {
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

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let f = &self.faults;
        let mut o = String::new();
        let per = if self.seeds > 0 {
            self.wall_s * 1e3 / self.seeds as f64
        } else {
            0.0
        };
        let _ = writeln!(o, "summary");
        let _ = writeln!(
            o,
            "  seeds          {} ({}..={}) in {:.1} s, {:.0} ms per seed{}",
            self.seeds,
            self.first_seed,
            self.first_seed + self.seeds.saturating_sub(1),
            self.wall_s,
            per,
            if self.determinism_checked {
                ", each run twice"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "  faults         {} crashes, {} restores ({} of running servers), {} partitions, {} heals, {} connector deletions, {} link-fault periods ({} messages lost, {} duplicated), {} backups",
            f.crashes,
            f.restores,
            f.restores_of_running,
            f.partitions,
            f.heals,
            f.connector_deletions,
            f.link_fault_periods,
            f.messages_lost,
            f.messages_duplicated,
            f.backups
        );
        let _ = writeln!(o, "  outages        {}", self.outages.show());
        let _ = writeln!(o, "  backup ages    {}", self.backup_ages.show());
        let _ = writeln!(
            o,
            "  workload       {} writes applied, {} refused; {} lost by nature (counted, not flagged), {} purged by connector deletion",
            f.writes, f.writes_refused, f.lost_by_nature, f.purged_by_design
        );
        let kinds: Vec<String> = self
            .hazards
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  hazards        {}{}",
            kinds.join(", "),
            if self.hazards_generated {
                ""
            } else {
                " (--no-hazards: none generated)"
            }
        );
        let _ = writeln!(
            o,
            "  oracle         {} objects differ as announced, {} silently",
            self.announced_losses, self.silent_losses
        );
        let _ = writeln!(o, "  run length     {}", self.run_lengths.show());
        let _ = writeln!(o, "  convergence    {}", self.convergence.show());
        let _ = writeln!(o, "  bounds         {}", self.bounds.show());
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
                    self.violations.get(i.name()).copied().unwrap_or(0)
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  violations     {} seeds: {}",
            self.violating_seeds.len(),
            by.join(", ")
        );
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
}
