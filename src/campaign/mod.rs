//! Fault campaigns: many seeded random fault schedules against a workload,
//! each checked by invariants, each reproducible from its seed (in the
//! spirit of FoundationDB's simulation tests and Jepsen's nemesis and
//! checker). See docs/RELIABILITY.md.
//!
//! For each seed: [`generator`] builds a topology, a workload of creates,
//! modifies and deletes, and a fault schedule (crashes, restores from
//! backups of different ages, partitions, link loss, duplication and
//! jitter, rarely a connector deletion); [`runner`] runs it on a
//! [`Cluster`](crate::Cluster) with the shell's fact recording on, heals
//! everything, restores crashed servers and lets the directory reach
//! quiescence; [`invariants`] checks the [`History`] it leaves. A failing
//! seed prints a reproduction command, and [`shrink`] cuts its schedule
//! down to a scenario file that still fails.
//!
//! ```
//! use backsync::campaign::{CampaignArgs, run_campaign};
//! // A small topology keeps it to a second or so; `shrink: 0` writes no
//! // shrunk scenario files.
//! let args = CampaignArgs {
//!     seeds: 10,
//!     servers: 4,
//!     objects: 60,
//!     strategy: "naive".into(),
//!     shrink: 0,
//!     ..CampaignArgs::default()
//! };
//! let report = run_campaign(&args, &|| {}).unwrap();
//! assert!(!report.failures.is_empty(), "naive restores are caught");
//! ```

pub mod generator;
pub mod history;
pub mod invariants;
pub mod merge;
pub mod oracle;
pub mod records;
pub mod runner;
pub mod schedule;
pub mod shrink;
pub mod summary;

use std::collections::BTreeMap;
#[cfg(feature = "cli")]
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use generator::{Params, Plan, plan};
pub use history::History;
pub use invariants::{Invariant, Violation, check_all};
pub use merge::MergeArgs;
pub use records::{CampaignKey, SeedRecord, Shard};
pub use runner::{FaultCounts, RunOutput};
pub use schedule::{Intent, Op, Setup};
pub use shrink::Shrunk;
pub use summary::Summary;

use crate::config::{Profile, RestoreStrategy, count};

/// `backsync campaign`: runs seeded fault schedules and checks invariants.
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "cli",
    command(after_help = "Examples:
  backsync campaign --seeds 1000
  backsync campaign --seeds 200 --strategy naive --show 3
  backsync campaign --seeds 200 --strategy naive --json - > campaign.json
  backsync campaign --seeds 1 --first-seed 17 --check-determinism
  backsync campaign --seeds 10000 --shard 3/16 --jsonl shard-3.jsonl --resume
  backsync campaign merge shard-*.jsonl --json campaign.json

The summary comes first, then the lowest failing seeds (--show); --json has every one.
With `--json -` the JSON goes to stdout and the text to stderr.")
)]
pub struct CampaignArgs {
    /// Number of seeds to run.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 100))]
    pub seeds: u64,
    /// The first seed (seeds run are first-seed, first-seed + 1, ...).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub first_seed: u64,
    /// Servers in each generated topology (at least 2).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 6))]
    pub servers: usize,
    /// Sites (at least 1, at most --servers).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2))]
    pub sites: usize,
    /// Objects created over each run (at least 1).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 200))]
    pub objects: usize,
    /// Restore strategy of every restore: backsync, new-invocation, naive, full-resync,
    /// safe-backsync (not authoritative, which overrules acknowledged writes by design).
    #[cfg_attr(feature = "cli", arg(long, default_value = "backsync"))]
    pub strategy: String,
    /// Profile: exchange55 or ad.
    #[cfg_attr(feature = "cli", arg(long, default_value = "exchange55"))]
    pub profile: String,
    /// Write the summary and every failing seed as JSON here; `-`: to
    /// stdout, the text then going to stderr.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.json"))]
    pub json: Option<PathBuf>,
    /// Failing seeds to show after the summary, the lowest first; 0: none.
    /// The JSON (`--json`) has every one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N", default_value_t = DEFAULT_SHOW))]
    pub show: usize,
    /// Run each seed twice and compare the event logs and trace hashes.
    #[cfg_attr(feature = "cli", arg(long))]
    pub check_determinism: bool,
    /// Threads (default: the cores available); each runs its seeds in its
    /// own single-threaded actor system. Results are merged in seed order,
    /// so the output does not depend on it.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = default_jobs()))]
    pub jobs: usize,
    /// Where shrunk scenario files go (default: the current directory).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub shrink_dir: Option<PathBuf>,
    /// Shrink at most this many failing seeds (the lowest); 0: none.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 3))]
    pub shrink: usize,
    /// Runs a shrink may take per seed.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 150))]
    pub shrink_budget: usize,
    /// Leave out the restore hazards (abandoned backups, backsync
    /// timeouts, servers away past the tombstone lifetime, restores while
    /// the server's replies are in flight): the restricted generator.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_hazards: bool,
    /// Run only shard I of N: the seeds whose index in the range (seed
    /// minus --first-seed) is I modulo N. N processes, I = 0 to N - 1,
    /// cover the range exactly once; `campaign merge` joins their records.
    #[cfg_attr(feature = "cli", arg(long, value_name = "I/N"))]
    pub shard: Option<Shard>,
    /// Write one JSON record per seed here as it finishes (appended and
    /// flushed line by line, so a killed run keeps what it did). An
    /// existing non-empty file is refused unless --resume is given.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.jsonl"))]
    pub jsonl: Option<PathBuf>,
    /// With --jsonl: keep the records already in OUT (of this campaign and
    /// shard) and run only the seeds missing from it; a torn last line
    /// (a run killed mid-write) is cut off. No file yet: a fresh start.
    #[cfg_attr(feature = "cli", arg(long, requires = "jsonl"))]
    pub resume: bool,
    /// Store each failing seed under DIR/seed-S/: its record
    /// (record.json), the command that reruns it (reproduce.txt) and, for
    /// the seed shrunk for its signature, the shrunk scenario (shrunk.toml).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub keep_failures: Option<PathBuf>,
}

impl Default for CampaignArgs {
    fn default() -> Self {
        CampaignArgs {
            seeds: 100,
            first_seed: 0,
            servers: 6,
            sites: 2,
            objects: 200,
            strategy: "backsync".into(),
            profile: "exchange55".into(),
            json: None,
            show: DEFAULT_SHOW,
            check_determinism: false,
            jobs: default_jobs(),
            shrink_dir: None,
            shrink: 3,
            shrink_budget: 150,
            no_hazards: false,
            shard: None,
            jsonl: None,
            resume: false,
            keep_failures: None,
        }
    }
}

/// Failing seeds shown after the summary unless `--show` says otherwise.
pub const DEFAULT_SHOW: usize = 10;

/// The version of the JSON `--json` writes (its `schema_version`), raised
/// when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// The cores available (1 if unknown): `--jobs` by default.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Whether a `--json` path means stdout.
pub fn is_stdout(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// Why a campaign could not run.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// A bad argument.
    #[error("invalid argument {arg}: {message}")]
    Invalid {
        /// The option.
        arg: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A record of `--jsonl` or `campaign merge` is not one, or does not
    /// belong with the others.
    #[error("{}:{line}: {message}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The records given to `campaign merge` do not make one campaign.
    #[error("{0}")]
    Merge(String),
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn invalid(arg: &'static str, message: impl Into<String>) -> CampaignError {
    CampaignError::Invalid {
        arg,
        message: message.into(),
    }
}

impl CampaignArgs {
    /// Checks the arguments; the generator's parameters.
    pub fn params(&self) -> Result<Params, CampaignError> {
        use crate::limits::{MAX_SEEDS, MAX_SHRINK, MAX_SHRINK_BUDGET};
        if self.seeds == 0 {
            return Err(invalid("--seeds", "must be at least 1"));
        }
        let bounds = [
            ("--seeds", self.seeds, MAX_SEEDS),
            ("--shrink", self.shrink as u64, MAX_SHRINK as u64),
            (
                "--shrink-budget",
                self.shrink_budget as u64,
                MAX_SHRINK_BUDGET as u64,
            ),
        ];
        for (arg, got, max) in bounds {
            if got > max {
                return Err(invalid(arg, format!("must be at most {max} (got {got})")));
            }
        }
        if self.first_seed.checked_add(self.seeds - 1).is_none() {
            return Err(invalid(
                "--first-seed",
                "first-seed + seeds overflows a 64-bit seed",
            ));
        }
        if self.servers < 2 {
            return Err(invalid(
                "--servers",
                format!(
                    "must be at least 2 (got {}): replication needs a partner",
                    self.servers
                ),
            ));
        }
        if self.servers > 64 {
            return Err(invalid(
                "--servers",
                format!("at most 64 (got {})", self.servers),
            ));
        }
        if self.sites == 0 || self.sites > self.servers {
            return Err(invalid(
                "--sites",
                format!(
                    "must be from 1 to --servers ({}), every site needs a server (got {})",
                    self.servers, self.sites
                ),
            ));
        }
        if self.objects == 0 || self.objects > 1_000_000 {
            return Err(invalid(
                "--objects",
                format!("must be from 1 to 1000000 (got {})", self.objects),
            ));
        }
        if self.jobs == 0 || self.jobs > 1024 {
            return Err(invalid(
                "--jobs",
                format!("must be from 1 to 1024 (got {})", self.jobs),
            ));
        }
        let strategy: RestoreStrategy = self
            .strategy
            .parse()
            .map_err(|e: crate::config::UnknownName| invalid("--strategy", e.to_string()))?;
        if strategy == RestoreStrategy::Authoritative {
            // It overrides acknowledged writes by design (later modifies and
            // deletes lose), which the oracle and invariants would report as
            // lost: modelling it is left out of campaigns.
            return Err(invalid(
                "--strategy",
                "`authoritative` is not run by campaigns (it discards later writes by design, \
                 which the oracle does not model); use backsync, new-invocation, naive or full-resync"
                    .to_string(),
            ));
        }
        let profile: Profile = self
            .profile
            .parse()
            .map_err(|e: crate::config::UnknownName| invalid("--profile", e.to_string()))?;
        if self.resume && self.jsonl.is_none() {
            return Err(invalid(
                "--resume",
                "needs --jsonl OUT, the records to resume from",
            ));
        }
        if let Some(s) = self.shard
            && (s.count == 0 || s.count > crate::limits::MAX_SHARDS || s.index >= s.count)
        {
            return Err(invalid(
                "--shard",
                format!(
                    "{s}: N from 1 to {} and I below N",
                    crate::limits::MAX_SHARDS
                ),
            ));
        }
        Ok(Params {
            servers: self.servers,
            sites: self.sites,
            objects: self.objects,
            strategy,
            profile,
            hazards: !self.no_hazards,
        })
    }

    /// The parameters every record of this campaign carries (`p`: its
    /// checked [`params`](Self::params)).
    pub fn key(&self, p: &Params) -> CampaignKey {
        CampaignKey {
            version: env!("CARGO_PKG_VERSION").to_string(),
            first_seed: self.first_seed,
            seeds: self.seeds,
            servers: self.servers,
            sites: self.sites,
            objects: self.objects,
            strategy: p.strategy.to_string(),
            profile: p.profile.to_string(),
            hazards: p.hazards,
            check_determinism: self.check_determinism,
        }
    }

    /// The command that reruns `seeds` seeds from `first`.
    pub fn command(&self, first: u64, seeds: u64) -> String {
        format!(
            "backsync campaign --seeds {seeds} --first-seed {first} --servers {} --sites {} --objects {} --strategy {} --profile {}{}{}",
            self.servers,
            self.sites,
            self.objects,
            self.strategy,
            self.profile,
            if self.check_determinism {
                " --check-determinism"
            } else {
                ""
            },
            if self.no_hazards { " --no-hazards" } else { "" }
        )
    }
}

/// Violation details kept per invariant and seed (all are counted).
pub const DETAILS_KEPT: usize = 3;

/// One seed's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// What broke: the first [`DETAILS_KEPT`] of each invariant.
    pub violations: Vec<Violation>,
    /// How many violations of each invariant there were.
    pub violation_counts: BTreeMap<Invariant, usize>,
    /// Faults injected, hazards announced, the oracle's counts, traffic,
    /// each outage and restored backup's age.
    pub counts: FaultCounts,
    /// Whether the final convergence happened.
    pub converged: bool,
    /// Simulated ms from the final heal to convergence.
    pub convergence_ms: u64,
    /// The bound it had to meet.
    pub bound_ms: u64,
    /// Simulated ms of the whole run.
    pub sim_ms: u64,
    /// Steps of the schedule as run.
    pub steps: usize,
    /// Wall ms.
    pub wall_ms: f64,
    /// CPU ms of the thread that ran it (the wall time where the platform
    /// has no thread CPU clock): unlike the wall time, not stretched by
    /// other processes or threads sharing the cores.
    #[serde(default)]
    pub cpu_ms: f64,
}

/// The calling thread's CPU time, in ms, where the platform has a clock
/// for it. A seed runs its whole actor system on the calling thread.
fn thread_cpu_ms() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec to write to, and the clock id
        // is one libc defines.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        (rc == 0).then(|| t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

fn guarded<T>(f: impl FnOnce() -> Result<T, crate::ClusterError>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("the engine failed: {e}")),
        Err(p) => Err(format!(
            "the engine panicked: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

/// Runs one seed and checks every invariant (and, if asked, determinism).
pub fn run_seed(p: &Params, seed: u64, check_determinism: bool) -> SeedResult {
    let wall = Instant::now();
    let cpu = thread_cpu_ms();
    let plan = generator::plan(seed, p);
    let mut r = SeedResult {
        seed,
        violations: Vec::new(),
        violation_counts: BTreeMap::new(),
        counts: FaultCounts::default(),
        converged: false,
        convergence_ms: 0,
        bound_ms: 0,
        sim_ms: 0,
        steps: 0,
        wall_ms: 0.0,
        cpu_ms: 0.0,
    };
    match guarded(|| runner::run(&plan.setup, &plan.intents)) {
        Err(e) => r.violations.push(Violation::new(Invariant::EngineError, e)),
        Ok(out) => {
            let (violations, verdict) = invariants::check_with_oracle(&out.history);
            r.violations = violations;
            for s in &out.self_check {
                r.violations.push(Violation::new(
                    Invariant::EngineError,
                    format!("recorded facts disagree with the server: {s}"),
                ));
            }
            if check_determinism {
                match guarded(|| runner::run(&plan.setup, &plan.intents)) {
                    Err(e) => r.violations.push(Violation::new(Invariant::EngineError, e)),
                    Ok(again) => {
                        if let Some(d) = first_difference(&out, &again) {
                            r.violations.push(Violation::new(Invariant::Determinism, d));
                        }
                    }
                }
            }
            r.counts = out.counts.clone();
            r.counts.lost_by_nature = verdict.lost_by_nature as u64;
            r.counts.purged_by_design = verdict.purged as u64;
            r.counts.announced_losses = verdict.announced_losses() as u64;
            r.counts.silent_losses = verdict.silent_losses() as u64;
            r.counts.announced_by_cover = verdict
                .announced_by_cover()
                .into_iter()
                .map(|(k, n)| (k, n as u64))
                .collect();
            r.converged = out.history.converged;
            r.convergence_ms = out.history.convergence_ms;
            r.bound_ms = out.history.bound_ms;
            r.sim_ms = out.sim_ms;
            r.steps = out.executed.len();
        }
    }
    // Count them all, keep a few of each: a naive campaign breaks hundreds
    // per seed, and thousands of seeds would hold them all in memory.
    let mut kept = Vec::new();
    for v in std::mem::take(&mut r.violations) {
        let n = r.violation_counts.entry(v.invariant).or_default();
        *n += 1;
        if *n <= DETAILS_KEPT {
            kept.push(v);
        }
    }
    r.violations = kept;
    r.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    r.cpu_ms = match (cpu, thread_cpu_ms()) {
        (Some(a), Some(b)) => b - a,
        _ => r.wall_ms,
    };
    r
}

/// Where two runs of one seed differ, if they do.
fn first_difference(a: &RunOutput, b: &RunOutput) -> Option<String> {
    if let Some(i) =
        (0..a.events.len().max(b.events.len())).find(|&i| a.events.get(i) != b.events.get(i))
    {
        let show = |e: Option<&crate::Event>| {
            e.map_or("(none)".into(), |e| {
                format!("{}: {}", invariants::at(e.sim_ms), e.text)
            })
        };
        return Some(format!(
            "event {i} differs between two runs: `{}` vs `{}`",
            show(a.events.get(i)),
            show(b.events.get(i))
        ));
    }
    (a.trace_hash != b.trace_hash).then(|| {
        format!(
            "same event logs, but the trace hashes differ ({:016x} vs {:016x})",
            a.trace_hash, b.trace_hash
        )
    })
}

/// A campaign's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The figures.
    pub summary: Summary,
    /// Seeds with violations, in seed order.
    pub failures: Vec<Failure>,
    /// What the run says beside the report (resumed records, a torn line,
    /// a merge's duplicates), for stderr.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// One failing seed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What broke (the first few of each invariant).
    pub violations: Vec<Violation>,
    /// How many violations of each invariant there were.
    pub violation_counts: BTreeMap<Invariant, usize>,
    /// The command that reruns it.
    pub reproduce: String,
    /// Its shrunk schedule, if shrunk.
    pub shrunk: Option<Shrunk>,
    /// The scenario file written.
    pub file: Option<String>,
}

/// Runs `f` over `items` on `jobs` threads; results in item order.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    out.lock().expect("results lock")[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// How a campaign's records become its report: shrinking, where the files
/// go. `run_campaign` and `campaign merge` both end in [`conclude`].
#[derive(Debug, Clone)]
pub struct Finish {
    /// Shrink the lowest failing seed of this many signatures (the groups
    /// with the lowest seeds first).
    pub shrink: usize,
    /// Runs one shrink may take.
    pub shrink_budget: usize,
    /// Where shrunk scenario files go (default: the current directory).
    pub shrink_dir: Option<PathBuf>,
    /// Where each failing seed's files go (`--keep-failures`).
    pub keep_failures: Option<PathBuf>,
    /// Threads for the shrinks.
    pub jobs: usize,
}

/// Runs a campaign (or its `--shard`), writing `--jsonl` records as seeds
/// finish and resuming from them with `--resume`; `progress` is called
/// after each seed run.
pub fn run_campaign(
    args: &CampaignArgs,
    progress: &(dyn Fn() + Sync),
) -> Result<CampaignReport, CampaignError> {
    let p = args.params()?;
    let key = args.key(&p);
    let wall = Instant::now();
    let mine: Vec<u64> = key
        .range()
        .filter(|&s| args.shard.is_none_or(|sh| sh.holds(key.first_seed, s)))
        .collect();
    let mut notes = Vec::new();
    let mut done: BTreeMap<u64, SeedResult> = BTreeMap::new();
    // Locked before it is read, so no other process appends meanwhile.
    let mut writer = match &args.jsonl {
        Some(path) => Some(records::Writer::open(path)?),
        None => None,
    };
    if let (Some(path), Some(w)) = (&args.jsonl, writer.as_mut()) {
        let exists = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if exists && !args.resume {
            return Err(invalid(
                "--jsonl",
                format!(
                    "{} exists: --resume continues it; or remove it",
                    path.display()
                ),
            ));
        }
        if exists {
            let f = records::read_file(path)?;
            for r in f.records {
                let diff = key.differences(&r.record.campaign);
                if !diff.is_empty() {
                    return Err(CampaignError::Record {
                        path: r.path,
                        line: r.line,
                        message: format!("a record of another campaign: {}", diff.join(", ")),
                    });
                }
                if mine.binary_search(&r.record.result.seed).is_err() {
                    return Err(CampaignError::Record {
                        path: r.path,
                        line: r.line,
                        message: format!(
                            "seed {} is not one of {}",
                            r.record.result.seed,
                            args.shard
                                .map_or("this campaign's seeds".into(), |s| format!(
                                    "shard {s}'s seeds"
                                ))
                        ),
                    });
                }
                done.entry(r.record.result.seed).or_insert(r.record.result);
            }
            notes.push(format!(
                "resumed {}: {} already done, {} to run",
                path.display(),
                count(done.len() as u64, "seed"),
                mine.len() - done.len()
            ));
            if let Some(line) = f.torn_line {
                notes.push(format!(
                    "{}:{line}: a torn last line (a run killed mid-write) cut off; its seed runs again",
                    path.display()
                ));
            }
            w.keep(f.whole_len)?;
        }
    }
    let writer = writer.map(Mutex::new);
    let todo: Vec<u64> = mine
        .iter()
        .copied()
        .filter(|s| !done.contains_key(s))
        .collect();
    let failed: Mutex<Option<CampaignError>> = Mutex::new(None);
    let fresh = parallel(&todo, args.jobs, |&seed| {
        if failed.lock().expect("error lock").is_some() {
            return None;
        }
        let r = run_seed(&p, seed, args.check_determinism);
        if let Some(w) = &writer {
            let written = w
                .lock()
                .expect("writer lock")
                .write(&SeedRecord::new(&key, r.clone()));
            if let Err(e) = written {
                failed.lock().expect("error lock").get_or_insert(e);
            }
        }
        progress();
        Some(r)
    });
    if let Some(e) = failed.into_inner().expect("error lock") {
        return Err(e);
    }
    done.extend(fresh.into_iter().flatten().map(|r| (r.seed, r)));
    let results: Vec<SeedResult> = done.into_values().collect();
    let finish = Finish {
        shrink: args.shrink,
        shrink_budget: args.shrink_budget,
        shrink_dir: args.shrink_dir.clone(),
        keep_failures: args.keep_failures.clone(),
        jobs: args.jobs,
    };
    let mut report = conclude(&key, args.shard, &results, 0, &finish)?;
    report.summary.wall_s = wall.elapsed().as_secs_f64();
    report.notes = notes;
    Ok(report)
}

/// From a campaign's seed results (in seed order, one per seed; `missing`
/// seeds of its range or shard have none) to its report: the summary,
/// failures grouped by signature, the lowest seed of the first
/// `finish.shrink` signatures shrunk, `--keep-failures` written. The
/// summary's `wall_s` is the seeds' summed wall times, for the caller to
/// replace with its own clock when it has one.
pub fn conclude(
    key: &CampaignKey,
    shard: Option<Shard>,
    results: &[SeedResult],
    missing: u64,
    finish: &Finish,
) -> Result<CampaignReport, CampaignError> {
    let args = CampaignArgs {
        shard,
        ..key.args()
    };
    let p = args.params()?;
    // Shrink the lowest seed of each signature (groups in the order of
    // their lowest seeds), on the first invariant of the signature.
    let mut heads: Vec<(u64, String)> = records::groups(results)
        .into_iter()
        .map(|(sig, seeds)| (seeds[0], sig))
        .collect();
    heads.sort();
    let targets: Vec<(u64, Invariant)> = heads
        .iter()
        .filter_map(|(seed, _)| {
            let r = results.iter().find(|r| r.seed == *seed)?;
            let inv = Invariant::CHECKED
                .into_iter()
                .find(|i| r.violation_counts.contains_key(i))?;
            Some((*seed, inv))
        })
        .take(finish.shrink)
        .collect();
    let shrunk = parallel(&targets, finish.jobs, |&(seed, inv)| {
        let plan = generator::plan(seed, &p);
        let out = runner::run(&plan.setup, &plan.intents).ok()?;
        Some(shrink::shrink(
            &plan.setup,
            &out,
            inv,
            finish.shrink_budget,
            &args.command(seed, 1),
        ))
    });
    let dir = finish
        .shrink_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| CampaignError::Io { path, source }
    };
    let mut failures = Vec::new();
    let mut entries = Vec::new();
    for r in results {
        if r.violation_counts.is_empty() {
            continue;
        }
        let s = targets
            .iter()
            .position(|t| t.0 == r.seed)
            .and_then(|k| shrunk[k].clone());
        let mut file = None;
        if let Some(s) = &s {
            if let Some(text) = &s.scenario {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let path = dir.join(format!("campaign-shrunk-seed-{}.toml", r.seed));
                std::fs::write(&path, text).map_err(io(&path))?;
                file = Some(path.display().to_string());
            }
            entries.push(summary::ShrunkEntry {
                seed: r.seed,
                invariant: s.invariant,
                file: file.clone(),
                shrunk: s.shrunk_file,
                steps: (s.steps, s.original_steps),
                note: s.note.clone(),
            });
        }
        failures.push(Failure {
            seed: r.seed,
            violations: r.violations.clone(),
            violation_counts: r.violation_counts.clone(),
            reproduce: args.command(r.seed, 1),
            shrunk: s,
            file,
        });
    }
    if let Some(keep) = &finish.keep_failures {
        keep_failures(keep, key, results, &failures)?;
    }
    let head = Summary {
        seeds: results.len() as u64,
        first_seed: key.first_seed,
        servers: key.servers,
        sites: key.sites,
        objects: key.objects,
        strategy: key.strategy.clone(),
        profile: key.profile.clone(),
        determinism_checked: key.check_determinism,
        wall_s: 0.0,
        core_s: 0.0,
        seeds_per_core_s: 0.0,
        shard: shard.map(|s| summary::ShardOf {
            shard: s.to_string(),
            range_seeds: key.seeds,
        }),
        missing_seeds: missing,
        faults: FaultCounts::default(),
        outages: Default::default(),
        backup_ages: Default::default(),
        convergence: Default::default(),
        bounds: Default::default(),
        run_lengths: Default::default(),
        hazards: Default::default(),
        announced_losses: 0,
        silent_losses: 0,
        hazards_generated: p.hazards,
        violations: Default::default(),
        violating_seeds: Vec::new(),
        signatures: Vec::new(),
        shrunk: entries,
        command: args.command(key.first_seed, key.seeds)
            + &shard.map_or(String::new(), |s| format!(" --shard {s}")),
    };
    let summary = Summary::of(results, head);
    Ok(CampaignReport {
        schema_version: SCHEMA_VERSION,
        summary,
        failures,
        notes: Vec::new(),
    })
}

/// `--keep-failures DIR`: per failing seed, DIR/seed-S/ holds its record,
/// the command that reruns it and, for the seed shrunk for its signature,
/// the shrunk scenario; the others say which seed that is.
fn keep_failures(
    dir: &std::path::Path,
    key: &CampaignKey,
    results: &[SeedResult],
    failures: &[Failure],
) -> Result<(), CampaignError> {
    let groups = records::groups(results);
    for f in failures {
        let Some(r) = results.iter().find(|r| r.seed == f.seed) else {
            continue;
        };
        let record = SeedRecord::new(key, r.clone());
        let sub = dir.join(format!("seed-{}", f.seed));
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| CampaignError::Io { path, source }
        };
        std::fs::create_dir_all(&sub).map_err(io(&sub))?;
        let write = |name: &str, text: String| {
            let path = sub.join(name);
            std::fs::write(&path, text).map_err(io(&path))
        };
        write(
            "record.json",
            serde_json::to_string_pretty(&record).expect("a record serialises") + "\n",
        )?;
        write("reproduce.txt", format!("{}\n", f.reproduce))?;
        match f.shrunk.as_ref().and_then(|s| s.scenario.clone()) {
            Some(text) => write("shrunk.toml", text)?,
            None => {
                let lowest = groups
                    .get(&record.signature)
                    .and_then(|g| g.first().copied());
                let why = match (&f.shrunk, lowest) {
                    (Some(s), _) => format!("no shrunk scenario: {}", s.note),
                    (None, Some(l)) if l != f.seed => format!(
                        "not shrunk: seed {l}, the lowest with the same signature ({}), \
                         stands for it (../seed-{l}/; shrunk when its signature is among \
                         the first --shrink)",
                        record.signature
                    ),
                    _ => format!(
                        "not shrunk: its signature ({}) is not among the first --shrink, \
                         or none of its invariants can be shrunk",
                        record.signature
                    ),
                };
                write("shrunk.txt", why + "\n")?;
            }
        }
    }
    Ok(())
}

/// One failing seed, as `campaign` shows it: a line naming the seed and
/// each invariant it broke with how many times, the first violation of
/// each, and the command that reruns it.
///
/// ```text
/// seed 16: 36 violations (convergence 3, no-lost-write 14, usn-monotonic 5, no-silent-loss 14)
///   convergence      not converged 1d 17h after healing (bound 13h 47m)
///   no-lost-write    the create of `cn=x35` by S3 at 20h 7m (...) is missing on S1 at the end
///   ...
///   reproduce: backsync campaign --seeds 1 --first-seed 16 ...
/// ```
pub fn render_failure(f: &Failure) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let broken: Vec<(Invariant, usize)> =
        f.violation_counts.iter().map(|(i, n)| (*i, *n)).collect();
    let counts: Vec<String> = broken.iter().map(|(i, n)| format!("{i} {n}")).collect();
    let total: usize = broken.iter().map(|(_, n)| n).sum();
    let _ = writeln!(
        o,
        "seed {}: {} ({})",
        f.seed,
        crate::config::count(total as u64, "violation"),
        counts.join(", ")
    );
    for (inv, _) in &broken {
        if let Some(v) = f.violations.iter().find(|v| v.invariant == *inv) {
            let _ = writeln!(o, "  {:<16} {}", inv.name(), v.detail);
        }
    }
    let _ = writeln!(o, "  reproduce: {}", f.reproduce);
    o
}

/// The line after the failing seeds shown: how many more there are and
/// where to see them; `None` when every one was shown.
pub fn more_line(failing: usize, shown: usize, json: Option<&std::path::Path>) -> Option<String> {
    let more = failing.saturating_sub(shown);
    if more == 0 {
        return None;
    }
    let seeds = if shown > 0 {
        crate::config::count(more as u64, "more failing seed")
    } else {
        crate::config::count(more as u64, "failing seed")
    };
    let all = match json {
        Some(p) if is_stdout(p) => "the JSON on stdout has all of them".to_string(),
        Some(p) => format!("{} has all of them", p.display()),
        None => "--json OUT.json (or --json - for stdout) has all of them".to_string(),
    };
    Some(format!("{seeds} not shown: {all}; --show N shows more"))
}

#[cfg(feature = "cli")]
fn out_err(source: std::io::Error) -> CampaignError {
    CampaignError::Io {
        path: PathBuf::from("<output>"),
        source,
    }
}

/// The `backsync campaign` command (feature `cli`): runs, prints the summary and then the lowest
/// `--show` failing seeds, writes `--json` (to stdout for `-`, the text then
/// going to stderr). `Ok(true)` when no invariant broke.
///
/// `progress`: draw a progress bar on stderr when it is a terminal (off for `-q`).
#[cfg(feature = "cli")]
pub fn run_cli(args: &CampaignArgs, progress: bool) -> Result<bool, CampaignError> {
    use std::io::Write as _;
    let p = args.params()?;
    let mut out = text_out(args.json.as_deref());
    let seeds = match args.shard {
        Some(s) => format!(
            "shard {s} of {} from {}",
            count(args.seeds, "seed"),
            args.first_seed
        ),
        None => format!("{} from {}", count(args.seeds, "seed"), args.first_seed),
    };
    writeln!(
        out,
        "backsync campaign: {seeds}, {} in {}, {}, strategy {}, profile {}{}",
        count(args.servers as u64, "server"),
        count(args.sites as u64, "site"),
        count(args.objects as u64, "object"),
        p.strategy,
        p.profile,
        if args.check_determinism {
            ", determinism checked"
        } else {
            ""
        }
    )
    .map_err(out_err)?;
    out.flush().map_err(out_err)?;
    let total = args.shard.map_or(args.seeds, |s| {
        (args.seeds + s.count - 1 - s.index.min(args.seeds)) / s.count
    });
    let bar = if progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} seeds ({eta} left)",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = run_campaign(args, &|| bar.inc(1))?;
    bar.finish_and_clear();
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    emit(out, &report, args.show, args.json.as_deref())?;
    Ok(report.failures.is_empty())
}

/// Where the text goes: stdout, or stderr when `--json -` takes stdout.
#[cfg(feature = "cli")]
pub(crate) fn text_out(json: Option<&std::path::Path>) -> Box<dyn std::io::Write> {
    if json.is_some_and(is_stdout) {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    }
}

/// Prints a report's summary and its lowest `show` failing seeds to
/// `out`, then writes `json` (to stdout for `-`).
#[cfg(feature = "cli")]
pub(crate) fn emit(
    mut out: Box<dyn std::io::Write>,
    report: &CampaignReport,
    show: usize,
    json: Option<&std::path::Path>,
) -> Result<(), CampaignError> {
    use std::io::Write as _;
    write!(out, "{}", report.summary.render()).map_err(out_err)?;
    let shown = report.failures.len().min(show);
    if shown > 0 {
        writeln!(
            out,
            "{}",
            if shown < report.failures.len() {
                format!(
                    "failing seeds: the lowest {} of {}",
                    shown,
                    report.failures.len()
                )
            } else {
                "failing seeds".to_string()
            }
        )
        .map_err(out_err)?;
    }
    for f in &report.failures[..shown] {
        write!(out, "{}", render_failure(f)).map_err(out_err)?;
    }
    if let Some(line) = more_line(report.failures.len(), shown, json) {
        writeln!(out, "{line}").map_err(out_err)?;
    }
    out.flush().map_err(out_err)?;
    drop(out);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).expect("the report serialises") + "\n";
        if is_stdout(path) {
            let mut so = std::io::stdout().lock();
            so.write_all(text.as_bytes())
                .and_then(|()| so.flush())
                .map_err(out_err)?;
        } else {
            std::fs::write(path, text).map_err(|source| CampaignError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}
