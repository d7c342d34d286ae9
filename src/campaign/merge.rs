//! `backsync campaign merge`: the records of a campaign's shards (each
//! `campaign --shard I/N --jsonl OUT`) joined into one verdict, the same
//! summary, failures, exit status and JSON as one process running the
//! range, through the same [`conclude`](crate::campaign::conclude).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::campaign::records::{self, CampaignKey, Read};
use crate::campaign::{CampaignError, CampaignReport, DEFAULT_SHOW, Finish, SeedResult, conclude};
use crate::config::count;
use crate::limits::{MAX_MERGE_FILES, MAX_SHRINK, MAX_SHRINK_BUDGET};

/// `backsync campaign merge`: joins shards' records into one campaign.
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "cli",
    command(after_help = "Examples:
  backsync campaign --seeds 1000 --shard 0/2 --jsonl a.jsonl
  backsync campaign --seeds 1000 --shard 1/2 --jsonl b.jsonl
  backsync campaign merge a.jsonl b.jsonl --json campaign.json

Exit status: 0 no violation, 1 a violation, 2 the records do not make one whole campaign
(mixed parameters, a seed missing without --partial, a seed recorded twice with different results).")
)]
pub struct MergeArgs {
    /// The records files (`--jsonl` of each shard).
    #[cfg_attr(feature = "cli", arg(required = true, value_name = "RECORDS.jsonl"))]
    pub files: Vec<PathBuf>,
    /// Write the summary and every failing seed as JSON here (`-`: stdout).
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.json"))]
    pub json: Option<PathBuf>,
    /// Failing seeds to show after the summary, the lowest first.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N", default_value_t = DEFAULT_SHOW))]
    pub show: usize,
    /// Shrink the lowest failing seed of this many signatures; 0: none.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 3))]
    pub shrink: usize,
    /// Runs a shrink may take per seed.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 150))]
    pub shrink_budget: usize,
    /// Where shrunk scenario files go (default: the current directory).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub shrink_dir: Option<PathBuf>,
    /// Store each failing seed's record, reproduction command and shrunk
    /// scenario under DIR/seed-S/.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub keep_failures: Option<PathBuf>,
    /// Threads for shrinking.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = crate::campaign::default_jobs()))]
    pub jobs: usize,
    /// Accept seeds missing from the records: the verdict is then on the
    /// seeds present (exit 0 or 1), the summary saying how many are missing.
    #[cfg_attr(feature = "cli", arg(long))]
    pub partial: bool,
}

impl Default for MergeArgs {
    fn default() -> Self {
        MergeArgs {
            files: Vec::new(),
            json: None,
            show: DEFAULT_SHOW,
            shrink: 3,
            shrink_budget: 150,
            shrink_dir: None,
            keep_failures: None,
            jobs: crate::campaign::default_jobs(),
            partial: false,
        }
    }
}

/// What a merge found besides the report.
#[derive(Debug)]
pub struct Merged {
    /// The report, as a single process would give it.
    pub report: CampaignReport,
    /// The campaign.
    pub key: CampaignKey,
    /// Records read.
    pub records: usize,
    /// Seeds of the range with no record.
    pub missing: Vec<u64>,
}

/// Reads the records, checks they make one campaign, and concludes it.
/// Errors: a file unreadable or not records; records of different
/// campaigns (naming the files of each); a seed recorded twice with
/// different results; seeds missing, unless `partial`.
pub fn merge(args: &MergeArgs) -> Result<Merged, CampaignError> {
    let bad = |m: String| CampaignError::Invalid {
        arg: "campaign merge",
        message: m,
    };
    if args.files.is_empty() || args.files.len() > MAX_MERGE_FILES {
        return Err(bad(format!(
            "give from 1 to {MAX_MERGE_FILES} records files (got {})",
            args.files.len()
        )));
    }
    if args.shrink > MAX_SHRINK || args.shrink_budget > MAX_SHRINK_BUDGET {
        return Err(bad(format!(
            "--shrink at most {MAX_SHRINK}, --shrink-budget at most {MAX_SHRINK_BUDGET}"
        )));
    }
    if args.jobs == 0 || args.jobs > 1024 {
        return Err(bad(format!(
            "--jobs must be from 1 to 1024 (got {})",
            args.jobs
        )));
    }
    let mut notes = Vec::new();
    let mut all: Vec<Read> = Vec::new();
    // The files holding each distinct campaign, for the error.
    let mut campaigns: Vec<(CampaignKey, Vec<String>)> = Vec::new();
    for path in &args.files {
        let f = records::read_file(path)?;
        if let Some(line) = f.torn_line {
            notes.push(format!(
                "{}:{line}: a torn last line (a shard killed mid-write) left out",
                path.display()
            ));
        }
        for r in &f.records {
            let name = path.display().to_string();
            match campaigns.iter_mut().find(|(k, _)| *k == r.record.campaign) {
                Some((_, files)) => {
                    if !files.contains(&name) {
                        files.push(name);
                    }
                }
                None => campaigns.push((r.record.campaign.clone(), vec![name])),
            }
        }
        all.extend(f.records);
        // Bounded: no campaign has more seeds (duplicates aside).
        if all.len() as u64 > crate::limits::MAX_SEEDS {
            return Err(CampaignError::Merge(format!(
                "more than {} records (the most seeds a campaign runs) by {}",
                crate::limits::MAX_SEEDS,
                path.display()
            )));
        }
    }
    let Some((key, _)) = campaigns.first().cloned() else {
        return Err(CampaignError::Merge(format!(
            "no record in {}",
            args.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if campaigns.len() > 1 {
        let mut m = format!(
            "the records belong to {} different campaigns:",
            campaigns.len()
        );
        for (k, files) in &campaigns {
            let diff = k.differences(&key);
            m.push_str(&format!(
                "\n  {}: {}",
                files.join(", "),
                if diff.is_empty() {
                    format!(
                        "{} seeds from {}, {} servers, {} sites, {} objects, strategy {}, profile {}",
                        k.seeds, k.first_seed, k.servers, k.sites, k.objects, k.strategy, k.profile
                    )
                } else {
                    format!(
                        "differs from the first (its value in brackets) in {}",
                        diff.join(", ")
                    )
                }
            ));
        }
        return Err(CampaignError::Merge(m));
    }
    // One result per seed; a seed twice must have the same result (the
    // run is deterministic: a difference means another build or machine
    // fault, and no verdict can be trusted).
    let records_read = all.len();
    let mut by_seed: BTreeMap<u64, Read> = BTreeMap::new();
    let mut twice: Vec<u64> = Vec::new();
    for r in all {
        let seed = r.record.result.seed;
        match by_seed.get(&seed) {
            None => {
                by_seed.insert(seed, r);
            }
            Some(first) => {
                if same_run(&first.record.result, &r.record.result) {
                    twice.push(seed);
                } else {
                    return Err(CampaignError::Merge(format!(
                        "seed {seed} has different results in {}:{} and {}:{} \
                         (records of different builds, or a nondeterministic run)",
                        first.path.display(),
                        first.line,
                        r.path.display(),
                        r.line
                    )));
                }
            }
        }
    }
    if !twice.is_empty() {
        twice.sort_unstable();
        twice.dedup();
        notes.push(format!(
            "{} recorded more than once, with the same results (counted once): {}",
            count(twice.len() as u64, "seed"),
            records::ranges(&twice)
        ));
    }
    let missing: Vec<u64> = key.range().filter(|s| !by_seed.contains_key(s)).collect();
    if !missing.is_empty() {
        let m = format!(
            "{} of the campaign's {} missing: {}",
            count(missing.len() as u64, "seed"),
            key.seeds,
            records::ranges(&missing)
        );
        if !args.partial {
            return Err(CampaignError::Merge(format!(
                "{m} (rerun their shards with --resume, or --partial for a verdict on the rest)"
            )));
        }
        notes.push(m);
    }
    let results: Vec<SeedResult> = by_seed.into_values().map(|r| r.record.result).collect();
    let finish = Finish {
        shrink: args.shrink,
        shrink_budget: args.shrink_budget,
        shrink_dir: args.shrink_dir.clone(),
        keep_failures: args.keep_failures.clone(),
        jobs: args.jobs,
    };
    let mut report = conclude(&key, None, &results, missing.len() as u64, &finish)?;
    report.notes = notes;
    Ok(Merged {
        report,
        key,
        records: records_read,
        missing,
    })
}

/// Whether two results are one run's (wall and CPU times aside).
fn same_run(a: &SeedResult, b: &SeedResult) -> bool {
    SeedResult {
        wall_ms: 0.0,
        cpu_ms: 0.0,
        ..a.clone()
    } == SeedResult {
        wall_ms: 0.0,
        cpu_ms: 0.0,
        ..b.clone()
    }
}

/// The `backsync campaign merge` command (feature `cli`): merges, prints
/// the summary and failing seeds as `campaign` does, writes `--json`.
/// `Ok(true)` when no invariant broke.
#[cfg(feature = "cli")]
pub fn run_cli(args: &MergeArgs) -> Result<bool, CampaignError> {
    use std::io::Write as _;
    let m = merge(args)?;
    for n in &m.report.notes {
        eprintln!("note: {n}");
    }
    let k = &m.key;
    let mut out = crate::campaign::text_out(args.json.as_deref());
    writeln!(
        out,
        "backsync campaign merge: {} from {} files; the campaign: {} from {}, {} in {}, {}, strategy {}, profile {}{}",
        count(m.records as u64, "record"),
        args.files.len(),
        count(k.seeds, "seed"),
        k.first_seed,
        count(k.servers as u64, "server"),
        count(k.sites as u64, "site"),
        count(k.objects as u64, "object"),
        k.strategy,
        k.profile,
        if k.check_determinism {
            ", determinism checked"
        } else {
            ""
        }
    )
    .map_err(|source| CampaignError::Io {
        path: PathBuf::from("<output>"),
        source,
    })?;
    crate::campaign::emit(out, &m.report, args.show, args.json.as_deref())?;
    Ok(m.report.failures.is_empty())
}
