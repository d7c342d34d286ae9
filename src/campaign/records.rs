//! Per-seed records: what a campaign keeps of each seed, one JSON object a
//! line in `--jsonl OUT`, and what its summary is reduced from. A campaign
//! run in one process and the same seeds run in shards and merged
//! (`campaign merge`) go through the same reduction over these records, so
//! they give the same summary, verdict and JSON.
//!
//! ```
//! use backsync::campaign::records::Shard;
//! let s: Shard = "1/4".parse().unwrap();
//! // Round-robin: seed index k (seed - first seed) belongs to shard k mod N.
//! assert!(s.holds(100, 105) && !s.holds(100, 106));
//! assert!("4/4".parse::<Shard>().is_err());
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::campaign::invariants::Invariant;
use crate::campaign::{CampaignError, SeedResult};
use crate::limits::{MAX_RECORD_LINE, MAX_SHARDS};

/// The parameters that make two records part of one campaign: the
/// generator's inputs, the seed range and the version of the program
/// (another version may run the same seed differently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignKey {
    /// `backsync`'s version (the crate's).
    pub version: String,
    /// The range's first seed.
    pub first_seed: u64,
    /// Seeds in the range (every shard's).
    pub seeds: u64,
    /// Servers per topology.
    pub servers: usize,
    /// Sites.
    pub sites: usize,
    /// Objects per run.
    pub objects: usize,
    /// Restore strategy (its canonical name).
    pub strategy: String,
    /// Profile (its canonical name).
    pub profile: String,
    /// Whether the generator included the restore hazards.
    pub hazards: bool,
    /// Whether each seed ran twice.
    pub check_determinism: bool,
}

impl CampaignKey {
    /// The range's seeds, in order.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.first_seed..self.first_seed.saturating_add(self.seeds)
    }

    /// The campaign's options as `backsync campaign` reads them: what the
    /// key does not hold (threads, shrinking, outputs) at their defaults.
    pub fn args(&self) -> crate::campaign::CampaignArgs {
        crate::campaign::CampaignArgs {
            seeds: self.seeds,
            first_seed: self.first_seed,
            servers: self.servers,
            sites: self.sites,
            objects: self.objects,
            strategy: self.strategy.clone(),
            profile: self.profile.clone(),
            check_determinism: self.check_determinism,
            no_hazards: !self.hazards,
            ..crate::campaign::CampaignArgs::default()
        }
    }

    /// The parameters in which `self` differs from `other`, as
    /// `name VALUE (OTHER)`, for an error message.
    pub fn differences(&self, other: &CampaignKey) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).expect("a key serialises"),
            serde_json::to_value(other).expect("a key serialises"),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| format!("{k} {v} ({})", b.get(k).cloned().unwrap_or_default()))
            .collect()
    }
}

/// One shard of a seed range: `I/N` takes the seeds whose index in the
/// range (seed minus the first seed) is I modulo N. Round-robin rather
/// than contiguous blocks: a shard's seeds spread over the whole range,
/// so a killed or slow shard leaves gaps everywhere rather than one
/// missing block, and slow seeds (long outages) spread evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// I: 0 to N - 1.
    pub index: u64,
    /// N: 1 to [`MAX_SHARDS`].
    pub count: u64,
}

impl Shard {
    /// Whether `seed` of the range starting at `first` is this shard's.
    pub fn holds(&self, first: u64, seed: u64) -> bool {
        seed >= first && (seed - first) % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}`: expected I/N, with N from 1 to {MAX_SHARDS} and I below N");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Whether a seed broke an invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No violation.
    Pass,
    /// At least one.
    Fail,
}

/// The signature of a seed's violations: the invariants it broke, in
/// report order, joined by `+` (`convergence+no-silent-loss`); empty for a
/// clean seed. Seeds with one signature are usually one bug, so a merge
/// shrinks one seed per signature.
pub fn signature(r: &SeedResult) -> String {
    Invariant::ALL
        .iter()
        .filter(|i| r.violation_counts.get(i).is_some_and(|n| *n > 0))
        .map(|i| i.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// One seed's record: a line of `--jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRecord {
    /// The campaign it belongs to.
    pub campaign: CampaignKey,
    /// Pass or fail.
    pub outcome: Outcome,
    /// [`signature`].
    pub signature: String,
    /// The seed's result: seed, violations (the first few of each
    /// invariant, all counted), faults, hazards, oracle counts, traffic,
    /// convergence, wall time.
    pub result: SeedResult,
}

impl SeedRecord {
    /// The record of `result` in the campaign `key`.
    pub fn new(campaign: &CampaignKey, result: SeedResult) -> Self {
        SeedRecord {
            campaign: campaign.clone(),
            outcome: if result.violation_counts.is_empty() {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            signature: signature(&result),
            result,
        }
    }

    /// The line written (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }
}

/// A record read back, with where it came from.
#[derive(Debug, Clone)]
pub struct Read {
    /// The record.
    pub record: SeedRecord,
    /// The file.
    pub path: PathBuf,
    /// Its line (from 1).
    pub line: usize,
}

/// What reading a records file gave.
#[derive(Debug, Default)]
pub struct ReadFile {
    /// The records, in file order.
    pub records: Vec<Read>,
    /// A last line without its newline (a writer killed mid-line) was
    /// left out: its line number.
    pub torn_line: Option<usize>,
    /// Bytes up to the end of the last whole line (where appending resumes).
    pub whole_len: u64,
}

fn record_err(path: &Path, line: usize, message: impl Into<String>) -> CampaignError {
    CampaignError::Record {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Reads a records file. Every line must be a record; only a last line
/// without its newline, which a killed writer leaves, is skipped (and said).
pub fn read_file(path: &Path) -> Result<ReadFile, CampaignError> {
    let io = |source| CampaignError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::new(f);
    let mut out = ReadFile::default();
    let mut buf = Vec::new();
    for line in 1.. {
        buf.clear();
        // Bounded: a line longer than any record is not read whole.
        let n = std::io::Read::by_ref(&mut reader)
            .take(MAX_RECORD_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if n > MAX_RECORD_LINE {
                return Err(record_err(
                    path,
                    line,
                    format!("longer than {MAX_RECORD_LINE} bytes: not a record"),
                ));
            }
            out.torn_line = Some(line);
            break;
        }
        out.whole_len += n as u64;
        let text = std::str::from_utf8(&buf).map_err(|_| record_err(path, line, "not UTF-8"))?;
        if text.trim().is_empty() {
            continue;
        }
        let record: SeedRecord =
            serde_json::from_str(text).map_err(|e| record_err(path, line, e.to_string()))?;
        if !record.campaign.range().contains(&record.result.seed) {
            return Err(record_err(
                path,
                line,
                format!(
                    "seed {} is outside its campaign's range ({} seeds from {})",
                    record.result.seed, record.campaign.seeds, record.campaign.first_seed
                ),
            ));
        }
        if record.signature != signature(&record.result) {
            return Err(record_err(
                path,
                line,
                format!(
                    "signature `{}` does not match the violations counted",
                    record.signature
                ),
            ));
        }
        out.records.push(Read {
            record,
            path: path.to_path_buf(),
            line,
        });
    }
    Ok(out)
}

/// Appends records to `--jsonl OUT`, one line each, written whole and
/// flushed as each seed finishes: a killed shard keeps every seed it
/// finished, and at worst a torn last line, which `--resume` cuts off.
#[derive(Debug)]
pub struct Writer {
    file: std::fs::File,
    path: PathBuf,
}

impl Writer {
    /// Opens `path` for appending, creating it and its directory, and
    /// takes an exclusive lock on it (on Unix): a second process given the
    /// same file (a restarted pod while the old one still runs) is refused
    /// rather than interleaving its lines with the first's.
    pub fn open(path: &Path) -> Result<Writer, CampaignError> {
        let io = |source| CampaignError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd as _;
            // SAFETY: the descriptor is `file`'s, open for the call's length.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                    CampaignError::Invalid {
                        arg: "--jsonl",
                        message: format!(
                            "{} is being written by another process (locked)",
                            path.display()
                        ),
                    }
                } else {
                    io(e)
                });
            }
        }
        Ok(Writer {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Keeps the file's first `len` bytes (the whole lines a resume
    /// keeps), cutting what follows: a torn last line.
    pub fn keep(&mut self, len: u64) -> Result<(), CampaignError> {
        self.file.set_len(len).map_err(|source| CampaignError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes one record and flushes it to the file.
    pub fn write(&mut self, r: &SeedRecord) -> Result<(), CampaignError> {
        let mut line = r.to_line();
        line.push('\n');
        // One write of the whole line: with O_APPEND, a crash leaves at most
        // a torn last line.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| CampaignError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Seed ranges as runs, for messages: `3, 7 to 9`; past 20 runs, how
/// many more.
pub fn ranges(seeds: &[u64]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seeds.len() {
        if out.len() == SHOWN {
            out.push(format!("and {} more", seeds.len() - i));
            break;
        }
        let mut j = i;
        while j + 1 < seeds.len() && seeds[j + 1] == seeds[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seeds[i].to_string()
        } else {
            format!("{} to {}", seeds[i], seeds[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The failing seeds grouped by [`signature`]: each group's seeds in order.
pub fn groups(results: &[SeedResult]) -> BTreeMap<String, Vec<u64>> {
    let mut g: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in results {
        let s = signature(r);
        if !s.is_empty() {
            g.entry(s).or_default().push(r.seed);
        }
    }
    for seeds in g.values_mut() {
        seeds.sort_unstable();
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_a_range_exactly_once() {
        for n in 1..6u64 {
            let shards: Vec<Shard> = (0..n)
                .map(|i| format!("{i}/{n}").parse().unwrap())
                .collect();
            for seed in 10..40 {
                assert_eq!(
                    shards.iter().filter(|s| s.holds(10, seed)).count(),
                    1,
                    "seed {seed} of {n} shards"
                );
            }
        }
        for bad in ["", "1", "2/2", "0/0", "a/2", "-1/2", "0/1000001"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(" 3 / 8 ".parse::<Shard>().unwrap().to_string(), "3/8");
    }

    fn key() -> CampaignKey {
        let args = crate::campaign::CampaignArgs {
            seeds: 10,
            first_seed: 100,
            ..crate::campaign::CampaignArgs::default()
        };
        args.key(&args.params().unwrap())
    }

    fn result(seed: u64, broke: &[Invariant]) -> SeedResult {
        let mut r = SeedResult {
            seed,
            violations: Vec::new(),
            violation_counts: BTreeMap::new(),
            counts: Default::default(),
            converged: true,
            convergence_ms: 1,
            bound_ms: 2,
            sim_ms: 3,
            steps: 4,
            wall_ms: 5.5,
            cpu_ms: 4.25,
        };
        r.counts.outages_ms = vec![7, 8];
        for i in broke {
            r.violations
                .push(crate::campaign::Violation::new(*i, format!("{i} broke")));
            r.violation_counts.insert(*i, 2);
        }
        r
    }

    /// Records read back are the records written, every field included
    /// (the outages the summary's quantiles need too); a torn last line is
    /// left out and said; a bad line names its file and line.
    #[test]
    fn records_round_trip_and_torn_or_bad_lines_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let a = SeedRecord::new(&key(), result(100, &[]));
        let b = SeedRecord::new(
            &key(),
            result(103, &[Invariant::NoSilentLoss, Invariant::Convergence]),
        );
        assert_eq!((a.outcome, a.signature.as_str()), (Outcome::Pass, ""));
        assert_eq!(
            (b.outcome, b.signature.as_str()),
            (Outcome::Fail, "convergence+no-silent-loss")
        );
        let mut w = Writer::open(&path).unwrap();
        w.write(&a).unwrap();
        w.write(&b).unwrap();
        let whole = std::fs::metadata(&path).unwrap().len();
        w.file.write_all(b"{\"campaign\": {\"ver").unwrap();
        let f = read_file(&path).unwrap();
        let back: Vec<SeedRecord> = f.records.iter().map(|r| r.record.clone()).collect();
        assert_eq!(back, vec![a.clone(), b]);
        assert_eq!((f.torn_line, f.whole_len), (Some(3), whole));
        assert_eq!(f.records[1].line, 2);
        // Another process cannot take the file while it is held.
        #[cfg(unix)]
        assert!(Writer::open(&path).is_err());
        drop(w);

        let bad = dir.path().join("bad.jsonl");
        let mut wrong = a.clone();
        wrong.signature = "convergence".into();
        let out_of_range = SeedRecord::new(&key(), result(110, &[]));
        for (line, needle) in [
            ("{\"seed\": 1}".to_string(), "missing field"),
            (wrong.to_line(), "does not match"),
            (out_of_range.to_line(), "outside its campaign's range"),
        ] {
            std::fs::write(&bad, format!("{}\n{line}\n", a.to_line())).unwrap();
            let e = read_file(&bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{}:2: ", bad.display())), "{e}");
            assert!(e.contains(needle), "{needle} in {e}");
        }
    }

    #[test]
    fn ranges_read_as_runs() {
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1 to 3, 5, 7 to 8");
        assert_eq!(ranges(&[]), "");
        let odd: Vec<u64> = (0..30).map(|k| 2 * k).collect();
        assert!(
            ranges(&odd).ends_with("38, and 10 more"),
            "{}",
            ranges(&odd)
        );
    }
}
