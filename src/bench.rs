//! `backsync bench`: a fixed set of measurements run in one process, each
//! printed with the baseline it is judged against and the ratio, and the
//! workloads the criterion benches (`benches/`) share with it.
//!
//! Every figure is a ratio against a baseline measured in the same run, or
//! a size-free quantity (bytes per replica, simulated per wall second): the
//! machine's speed cancels out. See docs/PERFORMANCE.md for the figures
//! reached and how to reproduce them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Cluster, LoadSpec};
use crate::config::{Granularity, Profile, ReplicationConfig, RestoreStrategy};
use crate::core::{
    Ahead, CoreConfig, Dsa, GetChanges, Guid, GuidHasher, InvocationId, ObjectState, PullKind,
    UpToDatenessVector, Usn,
};
use crate::error::ClusterError;
use crate::shell::topology::{Connector, Site, Topology};
use crate::throughput::{self, ThroughputRun};

/// `backsync bench` options.
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[derive(Debug, Clone, Default)]
#[cfg_attr(
    feature = "cli",
    command(after_help = "Examples:
  backsync bench --quick
  backsync bench --json bench.json
  backsync bench --quick --json - > bench.json
  backsync bench --plot restore_growth.svg

Each figure prints on two lines: what is measured and its ratio to the
baseline against the target, then the figure next to the baseline's.
With `--json -` the JSON goes to stdout and the text to stderr.
Exit status: 0 every target met, 1 a target missed (or a figure could
not be measured: it counts as missed), 2 the bench could not run.")
)]
pub struct BenchArgs {
    /// Fewer repetitions, 6 simulated hours instead of a week: about a
    /// minute (the full run takes several; see docs/PERFORMANCE.md).
    #[cfg_attr(feature = "cli", arg(long))]
    pub quick: bool,
    /// Draw the restore wall time against directory size (10k, 100k, 1M
    /// objects) as an SVG here.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.svg"))]
    pub plot: Option<PathBuf>,
    /// Internal: run one measurement in this process and print it as JSON
    /// (the parent runs each memory-heavy figure in a child of its own, so
    /// that one figure's peak memory does not count in another's).
    #[cfg_attr(feature = "cli", arg(long, hide = true, value_name = "KIND"))]
    pub child: Option<String>,
    /// Write the figures as JSON here; `-`: to stdout, the text then going
    /// to stderr.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.json"))]
    pub json: Option<PathBuf>,
}

/// The version of the JSON `--json` writes (its `schema_version`), raised
/// when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 2;

/// Bench lines fit this many columns.
pub const WIDTH: usize = 100;

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The cluster refused a step.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A workload did not end as it must (a measurement of a wrong run is no measurement).
    #[error("bench workload failed: {0}")]
    Workload(String),
    /// The JSON or the text could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One printed figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// What is measured, in the words of a directory's administrator.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit: `B`, `objects/s`, `us`, `ms`, `copies/s` or `x real time`.
    pub unit: String,
    /// What it is judged against.
    pub baseline: String,
    /// The baseline's value, in the same unit.
    pub baseline_value: f64,
    /// `value / baseline_value` (or the figure itself when it is a ratio).
    pub ratio: f64,
    /// The issue's target for `ratio`, e.g. `>= 0.5`; [`NO_TARGET`] for a
    /// figure shown for comparison only.
    pub target: String,
    /// Whether the figure could be measured here (peak memory needs
    /// Linux's `/proc`); one that could not counts as missed.
    pub measured: bool,
    /// Whether the target is met (always, when there is none).
    pub met: bool,
}

/// The target of a figure shown for comparison only: it cannot be missed.
pub const NO_TARGET: &str = "none";

/// Everything a bench run measured: what `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `--quick` was given.
    pub quick: bool,
    /// Cores available.
    pub cores: usize,
    /// Core apply of replicated objects (insert and update), objects/s.
    pub apply_objects_per_s: f64,
    /// The floor an apply cannot beat, same objects, same run, objects/s:
    /// a `HashMap<u128, ObjectState>` with the table's guid hasher,
    /// the newer state's `Arc` stored, one push to a USN log.
    pub apply_baseline_objects_per_s: f64,
    /// Answering a backsync (1,000 originated) on 10k objects, µs.
    pub backsync_answer_10k_us: f64,
    /// The same on 1M objects, µs.
    pub backsync_answer_1m_us: f64,
    /// The same on 1M objects by the project's best full-table scan (the
    /// per-slot origin summary skips most states unread), µs.
    pub backsync_scan_answer_1m_us: f64,
    /// `backsync_answer_1m_us / backsync_answer_10k_us`.
    pub backsync_answer_ratio_1m_vs_10k: f64,
    /// Wall time of the convergence after restoring a 100k-object directory
    /// missing 1,000 objects: full resync / backsync (the `converge` step;
    /// the restore step, loading the backup, is in the end-to-end figure).
    pub backsync_vs_full_resync_speedup: f64,
    /// The same over the restore step and the convergence together.
    pub backsync_vs_full_resync_speedup_end_to_end: f64,
    /// The backsync restore's medians.
    pub restore_backsync: RestoreFigures,
    /// The full resync restore's medians.
    pub restore_full_resync: RestoreFigures,
    /// The new-invocation restore's medians.
    pub restore_new_invocation: RestoreFigures,
    /// Object replicas changed by replication per wall second (16 servers, 100k objects, throughput mode).
    pub cluster_object_applies_per_s: f64,
    /// The throughput run behind it.
    pub throughput: ThroughputRun,
    /// Peak RSS growth over object replicas (64 servers × 100k objects, a
    /// child process of its own); `null` where `/proc` is missing.
    pub bytes_per_object_replica: Option<f64>,
    /// Servers, objects and RSS figures behind it.
    pub memory: Option<MemoryFigure>,
    /// Restore and converge wall time of the growth story at 1M objects
    /// over the same at 100k (same loss: 1,000 created, 100 deleted).
    pub restore_growth_100k_to_1m: f64,
    /// The same, 100k over 10k objects.
    pub restore_growth_10k_to_100k: f64,
    /// The growth story at each size (each in a child process).
    pub restore_growth: Vec<GrowthPoint>,
    /// Peak RSS of the growth story at 1M objects (its child process's
    /// VmHWM) over the object replicas it ends with; `null` where `/proc`
    /// is missing.
    pub peak_rss_bytes_per_replica_1m: Option<f64>,
    /// Simulated seconds per wall second of a loaded simulated week: 20
    /// exchange55 sites, one write every simulated second.
    pub sim_to_wall_ratio_loaded: f64,
    /// The run behind it.
    pub sim_week: SimWeek,
    /// Every figure with its baseline, ratio and target, as printed.
    pub figures: Vec<Figure>,
}

// ---------------------------------------------------------------- workloads

/// The protocol settings the core benches use.
pub fn core_config(granularity: Granularity) -> CoreConfig {
    CoreConfig {
        granularity,
        tombstone_lifetime: 30 * 86_400_000,
        rollback_detection: false,
    }
}

/// A well-spread guid for the `k`-th object of invocation `inv`.
pub fn guid(inv: u64, k: u64) -> Guid {
    let mut z = (u128::from(inv) << 64) | u128::from(k);
    z = z.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    Guid(z ^ (z >> 61))
}

/// A server named `S<inv>` that created `n` objects shaped like the `load`
/// step's (`cn=<prefix><k>`, a mail and a title).
pub fn source(inv: u64, n: usize, prefix: &str) -> Dsa {
    let mut d = Dsa::new(
        format!("S{inv}").into(),
        InvocationId(inv),
        core_config(Granularity::Object),
    );
    create(&mut d, n, prefix);
    d
}

/// Creates `n` more objects on `d`.
pub fn create(d: &mut Dsa, n: usize, prefix: &str) {
    let inv = d.invocation().0;
    let start = d.table().len() as u64;
    for k in start..start + n as u64 {
        let dn = format!("cn={prefix}{k}");
        let mail = format!("{prefix}{k}@example.com");
        d.create(
            guid(inv, k),
            &dn,
            &[("mail", &mail), ("title", "loaded")],
            k,
        )
        .expect("a fresh dn");
    }
}

/// Modifies every object of `d` once (a newer title).
pub fn modify_all(d: &mut Dsa, prefix: &str) {
    let n = d.table().len() as u64;
    for k in 0..n {
        d.modify(
            &format!("cn={prefix}{k}"),
            &[("title", "modified")],
            &[],
            n + k,
        )
        .expect("a live dn");
    }
}

/// Every object of `d` as a replication reply carries it, in USN order.
pub fn replicated(d: &Dsa) -> Vec<ObjectState> {
    d.table()
        .changed_after_replicas(Usn(0))
        .map(|(_, r)| r.state.clone())
        .collect()
}

/// Applies replicated states as the core's apply loop does (each one's
/// lines asked for a few states ahead); returns how many changed.
pub fn apply_all(d: &mut Dsa, states: &[ObjectState]) -> usize {
    let mut ahead = Ahead::default();
    (states.iter().enumerate())
        .filter(|&(i, s)| {
            let found = d.table().prefetch_apply(&mut ahead, states, i);
            d.apply_state_found(s, found)
        })
        .count()
}

/// The guid map of [`baseline_apply`]: the table's guid hasher.
pub type BaselineMap = HashMap<u128, ObjectState, std::hash::BuildHasherDefault<GuidHasher>>;

/// The apply baseline no store of replicated states can beat: one probe of
/// a `HashMap` with the table's guid hasher, the newer state's `Arc` kept
/// (the higher object stamp wins, as object granularity merges), and one
/// push to a log by local USN. Returns whether it changed.
pub fn baseline_apply(
    map: &mut BaselineMap,
    log: &mut Vec<(Usn, u128)>,
    usn: &mut Usn,
    inc: &ObjectState,
) -> bool {
    match map.entry(inc.guid().0) {
        Entry::Vacant(e) => {
            e.insert(inc.clone());
        }
        Entry::Occupied(mut e) => {
            if inc.stamp() <= e.get().stamp() {
                return false;
            }
            e.insert(inc.clone());
        }
    }
    *usn = usn.next();
    log.push((*usn, inc.guid().0));
    true
}

/// A partner holding `total` objects of which `lost` were originated by the
/// restored server after its backup, and the backsync request that server
/// sends (one reply of up to 1,000 objects).
pub fn backsync_fixture(total: usize, lost: usize) -> (Dsa, GetChanges) {
    let mut restored = source(1, 0, "r");
    // Some objects the restored server originated before its backup: held,
    // so the answer must skip them.
    create(&mut restored, lost, "r");
    let backup_usn = restored.usn();
    create(&mut restored, lost, "r");
    let mut partner = source(2, total - lost, "p");
    for s in replicated(&restored) {
        partner.apply_state(&s);
    }
    let mut utdv = UpToDatenessVector::default();
    utdv.raise(restored.invocation(), backup_usn);
    let req = GetChanges {
        get_anc: false,
        request_id: 1,
        requester: restored.name().clone(),
        requester_invocation: restored.invocation(),
        source_invocation: None,
        from_usn: Usn(0),
        utdv,
        kind: PullKind::Backsync,
        max_objects: 1000,
    };
    (partner, req)
}

/// `servers` servers in sites of `per_site`; the first server of each site
/// is its bridgehead, joined to the first site's (hub and spoke).
pub fn hub_topology(servers: usize, per_site: usize) -> Topology {
    let per_site = per_site.max(1);
    let sites = servers.div_ceil(per_site);
    let mut t = Topology::new();
    for s in 0..sites {
        t.sites.push(Site {
            name: format!("Site{s}"),
            servers: (s * per_site..servers.min((s + 1) * per_site))
                .map(|i| format!("Server{i}"))
                .collect(),
            read_only: Vec::new(),
        });
    }
    for s in 1..sites {
        t.connectors.push(Connector {
            between: ["Site0".into(), format!("Site{s}")],
            bridgeheads: ["Server0".into(), format!("Server{}", s * per_site)],
            schedule: None,
            latency: None,
        });
    }
    t
}

/// The restore comparison's directory: KB Q190703's two sites, `objects`
/// loaded and converged, a backup of Server1, then `lost` objects created on
/// Server1 and replicated, then Server1 crashed. Restore `Server1` from
/// `nightly` next.
pub fn restore_fixture(objects: u64, lost: u64, seed: u64) -> Result<Cluster, BenchError> {
    let t = Topology::new()
        .site("Redmond", &["Server1", "Server2"])
        .site("Dublin", &["Server3", "Server4"])
        .connector(["Redmond", "Dublin"], ["Server2", "Server3"]);
    crashed_after_a_loss(&t, objects, lost, 0, seed)
}

/// The restore-growth story: three servers in one site, `objects` loaded
/// and converged, a backup of Server1, then 1,000 objects created on
/// Server1 and 100 of the loaded ones deleted, replicated, then Server1
/// crashed. What a restore loses is the same at every size; only the
/// directory grows. Restore `Server1` from `nightly` next.
pub fn growth_fixture(objects: u64, seed: u64) -> Result<Cluster, BenchError> {
    let t = Topology::new().site("Site", &["Server1", "Server2", "Server3"]);
    crashed_after_a_loss(&t, objects, GROWTH_LOST, GROWTH_DELETED, seed)
}

/// `objects` loaded on `t` and converged, a backup of Server1 named
/// `nightly`, then `created` objects created on Server1 and `deleted`
/// loaded ones deleted (each on the server that created it), replicated,
/// then Server1 crashed.
fn crashed_after_a_loss(
    t: &Topology,
    objects: u64,
    created: u64,
    deleted: u64,
    seed: u64,
) -> Result<Cluster, BenchError> {
    let mut c = Cluster::new(t, ReplicationConfig::default(), seed)?;
    c.load(&LoadSpec {
        creates: objects,
        ..LoadSpec::default()
    })?;
    converged(&mut c, Duration::from_secs(86_400), "initial load")?;
    c.backup("Server1", "nightly")?;
    c.load(&LoadSpec {
        servers: vec!["Server1".into()],
        creates: created,
        prefix: Some("lost".into()),
        ..LoadSpec::default()
    })?;
    if deleted > 0 {
        c.load(&LoadSpec {
            deletes: deleted,
            ..LoadSpec::default()
        })?;
    }
    converged(&mut c, Duration::from_secs(86_400), "after the backup")?;
    c.crash("Server1")?;
    Ok(c)
}

/// Objects the growth story creates after its backup.
pub const GROWTH_LOST: u64 = 1000;
/// Loaded objects the growth story deletes after its backup.
pub const GROWTH_DELETED: u64 = 100;

/// Median wall ms of one strategy's restores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RestoreFigures {
    /// The restore step (the backup loaded, the server started).
    pub restore_ms: f64,
    /// The convergence after it.
    pub converge_ms: f64,
    /// Both.
    pub total_ms: f64,
}

impl RestoreFigures {
    fn of(restore_ms: f64, converge_ms: f64, total_ms: f64) -> Self {
        RestoreFigures {
            restore_ms,
            converge_ms,
            total_ms,
        }
    }
}

/// The wall time of one restore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestoreTiming {
    /// The restore step: the supervisor's command and the restored server
    /// starting from the backup (loading its snapshot), up to its first
    /// message handled after that.
    pub restore: Duration,
    /// The convergence that follows (what a scenario's `converge` step reports).
    pub converge: Duration,
    /// Both.
    pub total: Duration,
}

/// Restores Server1 of a [`restore_fixture`] and waits for convergence,
/// timing both steps. Checks Server1 holds every live object its partners
/// hold, then crashes it again (not timed), ready for the next restore.
pub fn restore_once(
    c: &mut Cluster,
    strategy: RestoreStrategy,
) -> Result<RestoreTiming, BenchError> {
    let expect = c.live_objects("Server2")?;
    let t = Instant::now();
    c.restore("Server1", "nightly", Some(strategy))?;
    // A round trip to the restored server: its restore handler has run.
    c.watermarks("Server1")?;
    let restore = t.elapsed();
    converged(c, Duration::from_secs(2 * 86_400), strategy.as_str())?;
    let total = t.elapsed();
    let got = c.live_objects("Server1")?;
    if got != expect {
        return Err(BenchError::Workload(format!(
            "{strategy}: Server1 holds {got} live objects, partners {expect}"
        )));
    }
    c.crash("Server1")?;
    Ok(RestoreTiming {
        restore,
        converge: total - restore,
        total,
    })
}

fn converged(c: &mut Cluster, within: Duration, what: &str) -> Result<(), BenchError> {
    if c.converge(within)?.converged {
        Ok(())
    } else {
        Err(BenchError::Workload(format!("{what}: not converged")))
    }
}

// ------------------------------------------------------------- measurements

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// One `/proc/self/status` field in bytes (Linux; `None` elsewhere).
fn proc_status(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
}

/// The memory figure's run.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MemoryFigure {
    /// Servers (tables) built.
    pub servers: usize,
    /// Objects on each.
    pub objects: usize,
    /// RSS before, bytes.
    pub rss_before: u64,
    /// Peak RSS (VmHWM, reset before the run where the kernel allows) after, bytes.
    pub peak_rss: u64,
    /// RSS with every table alive, bytes.
    pub rss_after: u64,
}

/// Builds `servers` object tables of `objects` each by replication along a
/// chain (each server pulls every page from the previous one, as the
/// protocol does) and measures peak RSS growth per object replica; `None`
/// where `/proc` is missing. Run it in a process of its own (`bench`
/// does): the peak is the process's.
pub fn memory_per_replica(servers: usize, objects: usize) -> Option<(f64, MemoryFigure)> {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = proc_status("VmRSS:")?;
    let mut chain: Vec<Dsa> = vec![source(1, objects, "obj")];
    for i in 1..servers {
        let mut d = Dsa::new(
            format!("S{}", i + 1).into(),
            InvocationId(i as u64 + 1),
            core_config(Granularity::Object),
        );
        let src = chain[i - 1].name().clone();
        let mut req = d.pull(&src, PullKind::Normal, 1000, 0);
        while let Some(r) = req {
            let reply = chain[i - 1].answer(&r);
            req = d.apply(reply, 0).follow_up;
        }
        chain.push(d);
    }
    let rss_after = proc_status("VmRSS:")?;
    let peak_rss = proc_status("VmHWM:")?.max(rss_after);
    let replicas = (servers * objects) as f64;
    let fig = MemoryFigure {
        servers,
        objects,
        rss_before,
        peak_rss,
        rss_after,
    };
    drop(chain);
    Some((peak_rss.saturating_sub(rss_before) as f64 / replicas, fig))
}

/// The growth story at one size: median wall times of its restores and
/// the peak memory of the process that ran it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct GrowthPoint {
    /// Objects loaded before the backup.
    pub objects: u64,
    /// Object replicas at the end (three servers, each holding every
    /// object, tombstones included).
    pub replicas: u64,
    /// Restores timed.
    pub reps: usize,
    /// Median wall ms of the restore step.
    pub restore_ms: f64,
    /// Median wall ms of the convergence after it.
    pub converge_ms: f64,
    /// Median wall ms of both.
    pub total_ms: f64,
    /// Wall ms of both in a process's first restore, the only one whose
    /// caches hold nothing of the objects it touches (the later ones find
    /// the partners' entries for the same lost objects warm); the median
    /// over the processes when several ran.
    pub first_total_ms: f64,
    /// Peak RSS of the process (VmHWM), bytes, the highest when several
    /// ran; `None` where `/proc` is missing.
    pub peak_rss: Option<u64>,
    /// Every restore timed: the restore step and the convergence, wall ms.
    pub runs_ms: Vec<(f64, f64)>,
}

impl GrowthPoint {
    /// One point from the runs of several processes at the same size, the
    /// medians taken over all their restores: the bench runs the sizes in
    /// turn, round after round, so that a slow minute on a shared machine
    /// falls on every size instead of on one. `None` when no restore was
    /// timed or the points are of different sizes.
    ///
    /// ```
    /// use backsync::bench::GrowthPoint;
    /// let p = |runs_ms: Vec<(f64, f64)>| GrowthPoint {
    ///     objects: 10,
    ///     replicas: 30,
    ///     reps: runs_ms.len(),
    ///     restore_ms: 0.0,
    ///     converge_ms: 0.0,
    ///     total_ms: 0.0,
    ///     first_total_ms: runs_ms[0].0 + runs_ms[0].1,
    ///     peak_rss: Some(100),
    ///     runs_ms,
    /// };
    /// let both = GrowthPoint::pooled(vec![
    ///     p(vec![(1.0, 2.0), (1.0, 9.0)]),
    ///     p(vec![(2.0, 2.0), (1.0, 3.0), (1.0, 1.0)]),
    /// ])
    /// .unwrap();
    /// assert_eq!((both.reps, both.total_ms, both.converge_ms), (5, 4.0, 2.0));
    /// let mut other = p(vec![(1.0, 1.0)]);
    /// other.objects = 20;
    /// assert!(GrowthPoint::pooled(vec![p(vec![(1.0, 1.0)]), other]).is_none());
    /// ```
    pub fn pooled(points: Vec<GrowthPoint>) -> Option<GrowthPoint> {
        let first = points.first()?;
        let runs_ms: Vec<(f64, f64)> = points.iter().flat_map(|p| p.runs_ms.clone()).collect();
        if runs_ms.is_empty() || points.iter().any(|p| p.objects != first.objects) {
            return None;
        }
        let ms = |f: fn(&(f64, f64)) -> f64| median(runs_ms.iter().map(f).collect());
        Some(GrowthPoint {
            objects: first.objects,
            replicas: first.replicas,
            reps: runs_ms.len(),
            restore_ms: ms(|r| r.0),
            converge_ms: ms(|r| r.1),
            total_ms: ms(|r| r.0 + r.1),
            first_total_ms: median(points.iter().map(|p| p.first_total_ms).collect()),
            peak_rss: points.iter().filter_map(|p| p.peak_rss).max(),
            runs_ms,
        })
    }
}

/// Runs the growth story at `objects` ([`growth_fixture`], then `reps`
/// backsync restores, each converged and checked).
pub fn growth_point(objects: u64, reps: usize) -> Result<GrowthPoint, BenchError> {
    let mut c = growth_fixture(objects, 7)?;
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        runs.push(restore_once(&mut c, RestoreStrategy::Backsync)?);
    }
    let ms = |f: fn(&RestoreTiming) -> Duration| {
        median(runs.iter().map(|r| f(r).as_secs_f64() * 1e3).collect())
    };
    Ok(GrowthPoint {
        objects,
        replicas: 3 * (objects + GROWTH_LOST),
        reps: runs.len(),
        restore_ms: ms(|r| r.restore),
        converge_ms: ms(|r| r.converge),
        total_ms: ms(|r| r.total),
        first_total_ms: runs[0].total.as_secs_f64() * 1e3,
        peak_rss: proc_status("VmHWM:"),
        runs_ms: runs
            .iter()
            .map(|r| {
                (
                    r.restore.as_secs_f64() * 1e3,
                    r.converge.as_secs_f64() * 1e3,
                )
            })
            .collect(),
    })
}

/// Runs one `--child` measurement and prints it as one JSON line:
/// `memory` ([`memory_per_replica`], 64 servers × 100k objects) or
/// `growth:<objects>:<reps>` ([`growth_point`]).
pub fn run_child(kind: &str) -> Result<(), BenchError> {
    let json = match kind.split(':').collect::<Vec<_>>()[..] {
        ["memory"] => serde_json::to_string(&memory_per_replica(64, 100_000).map(|m| m.1)),
        ["growth", n, reps] => {
            let (Ok(n), Ok(reps)) = (n.parse::<u64>(), reps.parse::<usize>()) else {
                return Err(BenchError::Workload(format!("bad child kind {kind}")));
            };
            serde_json::to_string(&growth_point(n, reps)?)
        }
        _ => return Err(BenchError::Workload(format!("unknown child kind {kind}"))),
    }
    .expect("the figures serialise");
    println!("{json}");
    Ok(())
}

/// Runs `backsync bench --child <kind>` (this executable) and reads its JSON.
fn in_child<T: serde::de::DeserializeOwned>(kind: &str) -> Result<T, BenchError> {
    let fail = |why: String| BenchError::Workload(format!("child {kind}: {why}"));
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let out = std::process::Command::new(exe)
        .args(["bench", "--child", kind])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!("exited with {}", out.status)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))
}

/// Core apply vs [`baseline_apply`]: `n` objects inserted into an empty
/// replica, then `n` newer versions applied over them, the same `Arc`
/// states on both sides. Median of `reps`; returns (core objects/s,
/// baseline objects/s).
pub fn apply_rates(n: usize, reps: usize) -> (f64, f64) {
    let mut src = source(1, n, "obj");
    let v1 = replicated(&src);
    modify_all(&mut src, "obj");
    let v2 = replicated(&src);
    let (mut core, mut base) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut d = Dsa::new(
            "D".into(),
            InvocationId(9),
            core_config(Granularity::Object),
        );
        let (a, c1) = time(|| apply_all(&mut d, &v1));
        let (b, c2) = time(|| apply_all(&mut d, &v2));
        assert_eq!((c1, c2), (n, n), "every object applies");
        core.push((2 * n) as f64 / (a + b).as_secs_f64());
        drop(d);
        let mut m = BaselineMap::default();
        let mut log = Vec::new();
        let mut usn = Usn(0);
        let mut all = |v: &[ObjectState]| {
            v.iter()
                .filter(|o| baseline_apply(&mut m, &mut log, &mut usn, o))
                .count()
        };
        let (a, c1) = time(|| all(&v1));
        let (b, c2) = time(|| all(&v2));
        assert_eq!((c1, c2), (n, n), "every object merges");
        base.push((2 * n) as f64 / (a + b).as_secs_f64());
    }
    (median(core), median(base))
}

/// Median µs of answering the fixture's backsync request, `reps` times.
pub fn backsync_answer_us(partner: &Dsa, req: &GetChanges, reps: usize, scan: bool) -> f64 {
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (d, r) = time(|| {
            if scan {
                partner.answer_backsync_by_scan(req)
            } else {
                partner.answer(req)
            }
        });
        assert!(!r.changes.is_empty());
        v.push(d.as_secs_f64() * 1e6);
    }
    median(v)
}

/// The simulated-week run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimWeek {
    /// Sites.
    pub sites: usize,
    /// Servers.
    pub servers: usize,
    /// Objects loaded at the start (not timed).
    pub objects: u64,
    /// Simulated hours run with writes (a week: 168).
    pub hours: u64,
    /// Writes made meanwhile (one per simulated second).
    pub writes: u64,
    /// Simulated seconds timed.
    pub sim_s: f64,
    /// Wall seconds they took.
    pub wall_s: f64,
    /// Whether the directory converged after the last write.
    pub converged: bool,
}

/// `hours` simulated hours of a hub-and-spoke exchange55 organisation of
/// `sites` sites of `per_site` servers holding `objects` (loaded and
/// converged first, not timed), with one write every simulated second:
/// a modify of a loaded object on the server that created it, issued a
/// minute's worth (60) at a time at the start of each simulated minute.
pub fn sim_week(
    sites: usize,
    per_site: usize,
    objects: u64,
    hours: u64,
) -> Result<SimWeek, BenchError> {
    let t = hub_topology(sites * per_site, per_site);
    let mut c = Cluster::new(&t, ReplicationConfig::for_profile(Profile::Exchange55), 7)?;
    c.load(&LoadSpec {
        creates: objects,
        ..LoadSpec::default()
    })?;
    converged(
        &mut c,
        Duration::from_secs(7 * 86_400),
        "week: initial load",
    )?;
    let start = c.now();
    let wall = Instant::now();
    let mut writes = 0;
    for _ in 0..hours * 60 {
        writes += c
            .load(&LoadSpec {
                modifies: 60,
                ..LoadSpec::default()
            })?
            .applied;
        c.wait(Duration::from_secs(60));
    }
    let sim_s = (c.now() - start).as_secs_f64();
    let wall_s = wall.elapsed().as_secs_f64();
    let conv = c.converge(Duration::from_secs(86_400))?;
    Ok(SimWeek {
        sites,
        servers: sites * per_site,
        objects,
        hours,
        writes,
        sim_s,
        wall_s,
        converged: conv.converged,
    })
}

/// The restore wall time of the growth story against directory size, as
/// an SVG: a log-scaled size axis, one line each for the restore step,
/// the convergence after it, and both.
pub fn growth_svg(points: &[GrowthPoint]) -> String {
    use std::fmt::Write as _;
    let (w, h, l, r, t, b) = (680.0, 400.0, 70.0, 200.0, 50.0, 60.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let xs: Vec<f64> = points.iter().map(|p| (p.objects as f64).log10()).collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::MAX, f64::min).floor(),
        xs.iter().copied().fold(f64::MIN, f64::max).ceil(),
    );
    let top = points.iter().map(|p| p.total_ms).fold(0.0, f64::max);
    let ymax = nice_ceiling(top.max(1e-3));
    let px = |x: f64| l + (x - x0) / (x1 - x0).max(1.0) * pw;
    let py = |y: f64| t + ph - y / ymax * ph;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{l}" y="24" font-size="15">Restore of the same loss (1,000 created, 100 deleted) by backsync</text>
<text x="{l}" y="40" fill="#555">median wall time against directory size, 3 servers (backsync bench)</text>
"##
    );
    for k in 0..=4 {
        let y = ymax * k as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{l}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            l + pw,
            l - 6.0,
            py(y) + 4.0,
            if k == 0 { "0".into() } else { wall(y / 1e3) },
            y1 = py(y)
        );
    }
    let mut e = x0;
    while e <= x1 {
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{t}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            t + ph,
            t + ph + 16.0,
            si(10f64.powf(e), "objects"),
            x = px(e)
        );
        e += 1.0;
    }
    let series: [Series; 3] = [
        ("restore + converge", "#c0392b", |p| p.total_ms),
        ("converge", "#2471a3", |p| p.converge_ms),
        ("restore step", "#7d8c8d", |p| p.restore_ms),
    ];
    for (k, (name, colour, f)) in series.iter().enumerate() {
        let pts: Vec<String> = (points.iter().zip(&xs))
            .map(|(p, x)| format!("{:.1},{:.1}", px(*x), py(f(p))))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
            pts.join(" ")
        );
        for (p, x) in points.iter().zip(&xs) {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"##,
                px(*x),
                py(f(p))
            );
        }
        let ly = t + 10.0 + 18.0 * k as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"##,
            l + pw + 12.0,
            l + pw + 32.0,
            l + pw + 38.0,
            ly + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle">objects in the directory (log scale)</text>
</svg>"##,
        l + pw / 2.0,
        h - 12.0
    );
    svg
}

/// One line of the growth plot: its name, colour and value.
type Series = (&'static str, &'static str, fn(&GrowthPoint) -> f64);

/// The smallest of 1, 2 or 5 times a power of ten at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * p)
}

/// What each figure measures and what its baseline is, as printed.
pub mod titles {
    /// (what is measured, the baseline).
    pub const MEMORY: (&str, &str) = (
        "Memory per object copy (64 servers, 100,000 objects each)",
        "the ceiling aimed for",
    );
    /// (what is measured, the baseline).
    pub const APPLY: (&str, &str) = (
        "Apply replicated changes: 100,000 objects created then modified",
        "HashMap<u128, Arc<state>>, same hasher, + a USN log push",
    );
    /// (what is measured, the baseline).
    pub const ANSWER_1M: (&str, &str) = (
        "Answer a backsync: 1,000 lost objects among 1,000,000",
        "the same among 10,000 objects",
    );
    /// (what is measured, the baseline).
    pub const ANSWER_INDEX: (&str, &str) = (
        "Answer a backsync from the index vs by scanning all objects",
        "the best scan: 1,000,000 per-slot origin summaries",
    );
    /// (what is measured, the baseline).
    pub const CATCH_UP: (&str, &str) = (
        "Catch up after a backsync restore (100,000 objects, 1,000 lost)",
        "catching up by a full resync",
    );
    /// (what is measured, the baseline).
    pub const RESTORE_FULL: (&str, &str) = (
        "Restore and catch up, backsync (100,000 objects, 1,000 lost)",
        "restoring and catching up by a full resync",
    );
    /// (what is measured, the baseline).
    pub const RESTORE_NEW_ID: (&str, &str) = (
        "Restore and catch up, backsync (100,000 objects, 1,000 lost)",
        "the same with a new invocation id",
    );
    /// (what is measured, the baseline).
    pub const REPLICATE: (&str, &str) = (
        "Replicate 100,000 new objects to 16 servers: copies made",
        "the floor aimed for",
    );
    /// (what is measured, the baseline).
    pub const GROWTH_1M: (&str, &str) = (
        "Restore + catch up, same loss, 1,000,000 objects (3 servers)",
        "the same restore at 100,000 objects",
    );
    /// (what is measured, the baseline).
    pub const GROWTH_100K: (&str, &str) = (
        "Restore + catch up, same loss, 100,000 objects (3 servers)",
        "the same restore at 10,000 objects",
    );
    /// (what is measured, the baseline).
    pub const MEMORY_STORY: (&str, &str) = (
        "Peak memory per object copy, that restore at 1,000,000 objects",
        "the ceiling aimed for",
    );
    /// The simulated week's baseline.
    pub const WEEK_BASELINE: &str = "the floor aimed for";

    /// The simulated week's title (`--quick` runs 6 hours of it).
    pub fn week(hours: u64, objects: u64) -> String {
        let span = if hours == 7 * 24 {
            "a week".to_string()
        } else {
            crate::config::count(hours, "hour")
        };
        format!(
            "Simulate {span} of 20 sites, {} objects, a write a second",
            crate::config::group(objects)
        )
    }
}

/// A figure that could not be measured here: missed.
fn unmeasured(title: (&str, &str), unit: &str, target: (&str, f64)) -> Figure {
    Figure {
        name: title.0.into(),
        value: f64::NAN,
        unit: unit.into(),
        baseline: title.1.into(),
        baseline_value: f64::NAN,
        ratio: f64::NAN,
        target: format!("{} {}", target.0, target.1),
        measured: false,
        met: false,
    }
}

/// A measured figure, judged by `target` (`(NO_TARGET, _)`: shown, never missed).
fn figure(
    name: &str,
    value: f64,
    unit: &str,
    baseline: &str,
    baseline_value: f64,
    ratio: f64,
    target: (&str, f64),
) -> Figure {
    let met = match target.0 {
        NO_TARGET => true,
        ">=" => ratio >= target.1,
        _ => ratio <= target.1,
    };
    Figure {
        name: name.into(),
        value,
        unit: unit.into(),
        baseline: baseline.into(),
        baseline_value,
        ratio,
        target: match target.0 {
            NO_TARGET => NO_TARGET.into(),
            op => format!("{op} {}", target.1),
        },
        measured: true,
        met,
    }
}

/// `x` to three significant digits (`21.7`, `1.62`, `531`).
fn sig3(x: f64) -> String {
    let decimals = if x.abs() >= 100.0 || x == 0.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.decimals$}")
}

/// A quantity with an SI prefix, three significant digits: `3.79 M`,
/// `531 k`, `145 `; the unit follows the space.
///
/// ```
/// use backsync::bench::si;
/// assert_eq!(si(3_790_000.0, "objects/s"), "3.79 M objects/s");
/// assert_eq!(si(530_767.6, "copies/s"), "531 k copies/s");
/// assert_eq!(si(145.0, "B"), "145 B");
/// assert_eq!(si(1.2e9, "B"), "1.20 GB");
/// ```
pub fn si(x: f64, unit: &str) -> String {
    let mut v = x;
    let mut prefix = "";
    for p in ["k", "M", "G", "T"] {
        // 999.5 k rounds to 1.00 M, not 1000 k.
        if v.abs() < 999.5 {
            break;
        }
        v /= 1000.0;
        prefix = p;
    }
    // Bytes take the prefix as one word (`GB`); other units a space after it.
    if unit == "B" {
        format!("{} {prefix}B", sig3(v))
    } else if prefix.is_empty() {
        format!("{} {unit}", sig3(v))
    } else {
        format!("{} {prefix} {unit}", sig3(v))
    }
}

/// A wall time given in seconds, three significant digits in the unit
/// that suits it.
///
/// ```
/// use backsync::bench::wall;
/// assert_eq!(wall(21.7e-6), "21.7 µs");
/// assert_eq!(wall(0.0862675), "86.3 ms");
/// assert_eq!(wall(2.5), "2.50 s");
/// ```
pub fn wall(s: f64) -> String {
    if s < 1e-3 {
        format!("{} µs", sig3(s * 1e6))
    } else if s < 1.0 {
        format!("{} ms", sig3(s * 1e3))
    } else {
        format!("{} s", sig3(s))
    }
}

/// A ratio: two decimals under 10, one under 100, then whole and grouped.
///
/// ```
/// use backsync::bench::ratio;
/// assert_eq!(ratio(0.7061), "0.71");
/// assert_eq!(ratio(53.785), "53.8");
/// assert_eq!(ratio(3976.561), "3,977");
/// ```
pub fn ratio(r: f64) -> String {
    if !r.is_finite() {
        format!("{r}")
    } else if r >= 99.95 {
        crate::config::group(r.round() as u64)
    } else if r >= 9.995 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// A figure's value (or its baseline's) with its unit, for people.
pub fn show_value(v: f64, unit: &str) -> String {
    match unit {
        "us" => wall(v * 1e-6),
        "ms" => wall(v * 1e-3),
        "x real time" if v >= 999.5 => {
            format!("{}x real time", crate::config::group(v.round() as u64))
        }
        "x real time" => format!("{}x real time", sig3(v)),
        _ => si(v, unit),
    }
}

/// A figure as `bench` prints it: what is measured, with the ratio and
/// the target on the right; below it the figure next to the baseline's,
/// and what the baseline is. Both lines fit [`WIDTH`] columns (for names
/// and baselines as long as [`titles`]).
///
/// ```
/// use backsync::bench::{Figure, render_figure};
/// let f = Figure {
///     name: "Apply replicated changes: 100,000 objects created then modified".into(),
///     value: 1.62e6,
///     unit: "objects/s".into(),
///     baseline: "a plain hash-map merge of the same changes".into(),
///     baseline_value: 2.30e6,
///     ratio: 0.704,
///     target: ">= 0.5".into(),
///     measured: true,
///     met: true,
/// };
/// let text = render_figure(&f);
/// assert!(text.contains("1.62 M objects/s  vs  2.30 M objects/s, a plain"), "{text}");
/// assert!(text.contains("ratio  0.70 (target >= 0.5) met"), "{text}");
/// assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
/// ```
pub fn render_figure(f: &Figure) -> String {
    let judged = f.target != NO_TARGET;
    let target = if judged {
        format!("(target {})", f.target)
    } else {
        "(no target)".into()
    };
    let shown = if f.measured {
        ratio(f.ratio)
    } else {
        "-".into()
    };
    let verdict = format!(
        "ratio {shown:>5} {target:<15} {}",
        match (judged, f.met) {
            (false, _) => "shown",
            (true, true) => "met",
            (true, false) => "MISSED",
        }
    );
    let room = WIDTH.saturating_sub(verdict.chars().count() + 1);
    let head = format!("{:<room$} {verdict}", f.name);
    let (value, base) = if f.measured {
        (
            show_value(f.value, &f.unit),
            show_value(f.baseline_value, &f.unit),
        )
    } else {
        ("not measured".into(), "(no /proc here)".into())
    };
    let body = format!("  {value:>18}  vs  {base}, {}", f.baseline);
    format!("{}\n{}\n", head.trim_end(), body.trim_end())
}

/// Runs every measurement, prints each figure with its baseline and ratio,
/// and writes the JSON if asked.
pub fn run_cli(args: &BenchArgs) -> Result<BenchReport, BenchError> {
    use std::io::Write as _;
    let quick = args.quick;
    // Each repetition times the core and the baseline back to back, about
    // a tenth of a second in all: enough of them that a slow spell of this
    // shared machine moves neither median.
    let apply_reps = if quick { 5 } else { 15 };
    let json_to_stdout = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let write_err = |source| BenchError::Write {
        path: PathBuf::from("<output>"),
        source,
    };
    // With the JSON on stdout, the text goes to stderr.
    let mut text: Box<dyn std::io::Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    writeln!(
        text,
        "backsync bench{}, {}: each figure against a baseline measured in the same run",
        if quick { " --quick" } else { "" },
        crate::config::count(throughput::default_arbiters() as u64, "core")
    )
    .map_err(write_err)?;
    let mut figures = Vec::new();
    let mut printed = Ok(());
    let mut out = |f: Figure| {
        if printed.is_ok() {
            printed = text
                .write_all(render_figure(&f).as_bytes())
                .and_then(|()| text.flush());
        }
        figures.push(f);
    };

    // Memory-heavy figures run in children: each peak is its own.
    let memory: Option<MemoryFigure> = in_child("memory")?;
    let bytes = memory
        .as_ref()
        .map(|m| m.peak_rss.saturating_sub(m.rss_before) as f64 / (m.servers * m.objects) as f64);
    out(match bytes {
        Some(b) => figure(
            titles::MEMORY.0,
            b,
            "B",
            titles::MEMORY.1,
            200.0,
            b / 200.0,
            ("<=", 1.0),
        ),
        None => unmeasured(titles::MEMORY, "B", ("<=", 1.0)),
    });

    let (apply, apply_base) = apply_rates(100_000, apply_reps);
    out(figure(
        titles::APPLY.0,
        apply,
        "objects/s",
        titles::APPLY.1,
        apply_base,
        apply / apply_base,
        (">=", 0.5),
    ));

    let answer_reps = if quick { 51 } else { 201 };
    let (p10k, r10k) = backsync_fixture(10_000, 1000);
    let a10k = backsync_answer_us(&p10k, &r10k, answer_reps, false);
    drop(p10k);
    let (p1m, r1m) = backsync_fixture(1_000_000, 1000);
    let a1m = backsync_answer_us(&p1m, &r1m, answer_reps, false);
    let s1m = backsync_answer_us(&p1m, &r1m, if quick { 5 } else { 15 }, true);
    drop(p1m);
    out(figure(
        titles::ANSWER_1M.0,
        a1m,
        "us",
        titles::ANSWER_1M.1,
        a10k,
        a1m / a10k,
        ("<=", 2.0),
    ));
    out(figure(
        titles::ANSWER_INDEX.0,
        a1m,
        "us",
        titles::ANSWER_INDEX.1,
        s1m,
        s1m / a1m,
        (">=", 1.0),
    ));

    let mut c = restore_fixture(100_000, 1000, 7)?;
    let restore_reps = if quick { 3 } else { 7 };
    let mut runs: Vec<Vec<RestoreTiming>> = vec![Vec::new(); 3];
    let strategies = [
        RestoreStrategy::Backsync,
        RestoreStrategy::FullResync,
        RestoreStrategy::NewInvocation,
    ];
    for _ in 0..restore_reps {
        for (k, s) in strategies.into_iter().enumerate() {
            runs[k].push(restore_once(&mut c, s)?);
        }
    }
    drop(c);
    let ms = |k: usize, f: fn(&RestoreTiming) -> Duration| {
        median(runs[k].iter().map(|r| f(r).as_secs_f64() * 1e3).collect())
    };
    let restore = [0, 1, 2].map(|k| {
        RestoreFigures::of(
            ms(k, |r| r.restore),
            ms(k, |r| r.converge),
            ms(k, |r| r.total),
        )
    });
    let [bs, fr, ni] = restore;
    out(figure(
        titles::CATCH_UP.0,
        bs.converge_ms,
        "ms",
        titles::CATCH_UP.1,
        fr.converge_ms,
        fr.converge_ms / bs.converge_ms,
        (">=", 20.0),
    ));
    out(figure(
        titles::RESTORE_FULL.0,
        bs.total_ms,
        "ms",
        titles::RESTORE_FULL.1,
        fr.total_ms,
        fr.total_ms / bs.total_ms,
        (">=", 20.0),
    ));
    // Shown, not judged: backsync asks every directory it knows by design,
    // a new invocation id one partner (docs/PERFORMANCE.md).
    out(figure(
        titles::RESTORE_NEW_ID.0,
        bs.total_ms,
        "ms",
        titles::RESTORE_NEW_ID.1,
        ni.total_ms,
        ni.total_ms / bs.total_ms,
        (NO_TARGET, f64::NAN),
    ));

    // The growth story at three sizes, each in a child of its own, the
    // sizes in turn for a few rounds (a slow spell on a shared machine then
    // falls on every size). A rep costs milliseconds next to the fixture's
    // seconds, so even a quick run takes enough for a steady median.
    const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
    let (rounds, reps) = if quick { (3, 7) } else { (3, 11) };
    let mut runs: Vec<Vec<GrowthPoint>> = vec![Vec::new(); SIZES.len()];
    for _ in 0..rounds {
        for (n, runs) in SIZES.iter().zip(&mut runs) {
            runs.push(in_child(&format!("growth:{n}:{reps}"))?);
        }
    }
    let growth: Vec<GrowthPoint> = runs
        .into_iter()
        .map(|r| {
            GrowthPoint::pooled(r)
                .ok_or_else(|| BenchError::Workload("growth: no restore timed".into()))
        })
        .collect::<Result<_, _>>()?;
    let g = |i: usize| growth[i].total_ms;
    let (g1m, g100k) = (g(2) / g(1), g(1) / g(0));
    out(figure(
        titles::GROWTH_1M.0,
        g(2),
        "ms",
        titles::GROWTH_1M.1,
        g(1),
        g1m,
        ("<=", 1.5),
    ));
    out(figure(
        titles::GROWTH_100K.0,
        g(1),
        "ms",
        titles::GROWTH_100K.1,
        g(0),
        g100k,
        ("<=", 3.0),
    ));
    let story_bytes = growth[2]
        .peak_rss
        .map(|p| p as f64 / growth[2].replicas as f64);
    out(match story_bytes {
        Some(b) => figure(
            titles::MEMORY_STORY.0,
            b,
            "B",
            titles::MEMORY_STORY.1,
            200.0,
            b / 200.0,
            ("<=", 1.0),
        ),
        None => unmeasured(titles::MEMORY_STORY, "B", ("<=", 1.0)),
    });

    let one_site = hub_topology(16, 16);
    let mut tps = Vec::new();
    for _ in 0..if quick { 1 } else { 3 } {
        let (tp, c) = throughput::run(
            &one_site,
            &ReplicationConfig::default(),
            7,
            &LoadSpec {
                creates: 100_000,
                ..LoadSpec::default()
            },
            Duration::from_secs(600),
        )?;
        drop(c);
        if !tp.converged {
            return Err(BenchError::Workload("throughput run: not converged".into()));
        }
        tps.push(tp);
    }
    tps.sort_by(|a, b| a.applies_per_s.total_cmp(&b.applies_per_s));
    let tp = tps.swap_remove(tps.len() / 2);
    out(figure(
        titles::REPLICATE.0,
        tp.applies_per_s,
        "copies/s",
        titles::REPLICATE.1,
        1e6,
        tp.applies_per_s / 1e6,
        (">=", 1.0),
    ));

    let week = if quick {
        sim_week(20, 3, 20_000, 6)?
    } else {
        sim_week(20, 3, 100_000, 7 * 24)?
    };
    if !week.converged {
        return Err(BenchError::Workload("simulated week: not converged".into()));
    }
    let sim_to_wall = week.sim_s / week.wall_s;
    out(figure(
        &titles::week(week.hours, week.objects),
        sim_to_wall,
        "x real time",
        titles::WEEK_BASELINE,
        1e4,
        sim_to_wall / 1e4,
        (">=", 1.0),
    ));

    printed.map_err(write_err)?;
    if let Some(path) = &args.plot {
        std::fs::write(path, growth_svg(&growth)).map_err(|source| BenchError::Write {
            path: path.clone(),
            source,
        })?;
    }
    let report = BenchReport {
        schema_version: SCHEMA_VERSION,
        quick,
        cores: throughput::default_arbiters(),
        apply_objects_per_s: apply,
        apply_baseline_objects_per_s: apply_base,
        backsync_answer_10k_us: a10k,
        backsync_answer_1m_us: a1m,
        backsync_scan_answer_1m_us: s1m,
        backsync_answer_ratio_1m_vs_10k: a1m / a10k,
        backsync_vs_full_resync_speedup: fr.converge_ms / bs.converge_ms,
        backsync_vs_full_resync_speedup_end_to_end: fr.total_ms / bs.total_ms,
        restore_backsync: bs,
        restore_full_resync: fr,
        restore_new_invocation: ni,
        cluster_object_applies_per_s: tp.applies_per_s,
        throughput: tp,
        bytes_per_object_replica: bytes,
        memory,
        restore_growth_100k_to_1m: g1m,
        restore_growth_10k_to_100k: g100k,
        restore_growth: growth,
        peak_rss_bytes_per_replica_1m: story_bytes,
        sim_to_wall_ratio_loaded: sim_to_wall,
        sim_week: week,
        figures,
    };
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("the report serialises") + "\n";
        if json_to_stdout {
            let mut so = std::io::stdout().lock();
            so.write_all(json.as_bytes())
                .and_then(|()| so.flush())
                .map_err(write_err)?;
        } else {
            std::fs::write(path, json).map_err(|source| BenchError::Write {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst(name: &str, baseline: &str, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            value: 987_654_321.0,
            unit: unit.into(),
            baseline: baseline.into(),
            baseline_value: 123_456_789.0,
            ratio: 123_456.7,
            target: ">= 0.5".into(),
            measured: true,
            met: false,
        }
    }

    /// Every figure, with values as wide as they come, fits 100 columns.
    #[test]
    fn every_figure_fits_the_width() {
        let week = titles::week(6, 100_000);
        let all = [
            (titles::MEMORY, "B"),
            (titles::APPLY, "objects/s"),
            (titles::ANSWER_1M, "us"),
            (titles::ANSWER_INDEX, "us"),
            (titles::CATCH_UP, "ms"),
            (titles::RESTORE_FULL, "ms"),
            (titles::RESTORE_NEW_ID, "ms"),
            (titles::REPLICATE, "copies/s"),
            (titles::GROWTH_1M, "ms"),
            (titles::GROWTH_100K, "ms"),
            (titles::MEMORY_STORY, "B"),
            ((week.as_str(), titles::WEEK_BASELINE), "x real time"),
        ];
        for ((name, baseline), unit) in all {
            let text = render_figure(&worst(name, baseline, unit));
            assert_eq!(text.lines().count(), 2, "{text}");
            for line in text.lines() {
                assert!(
                    line.chars().count() <= WIDTH,
                    "{} columns: {line}",
                    line.len()
                );
            }
            assert!(text.contains(name) && text.contains(baseline), "{text}");
        }
    }

    #[test]
    fn a_figure_without_a_target_is_shown_not_judged() {
        let f = figure(
            titles::RESTORE_NEW_ID.0,
            0.94,
            "ms",
            titles::RESTORE_NEW_ID.1,
            0.48,
            0.51,
            (NO_TARGET, f64::NAN),
        );
        assert!(f.met && f.target == NO_TARGET, "{f:?}");
        let text = render_figure(&f);
        let head = text.lines().next().expect("two lines");
        assert!(
            head.contains("(no target)") && head.ends_with(" shown"),
            "{text}"
        );
        assert!(!text.contains("MISSED") && !text.contains(" met"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
    }

    #[test]
    fn an_unmeasured_figure_is_missed_and_says_so() {
        let f = unmeasured(titles::MEMORY_STORY, "B", ("<=", 1.0));
        assert!(!f.met && !f.measured);
        let text = render_figure(&f);
        assert!(text.contains("not measured"), "{text}");
        assert!(text.contains("MISSED"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        // The JSON carries it as null, not as a number.
        let json = serde_json::to_value(&f).unwrap();
        assert!(json["value"].is_null() && json["ratio"].is_null(), "{json}");
    }

    #[test]
    fn the_fair_apply_baseline_keeps_the_newer_state_and_logs_each_change() {
        let mut src = source(1, 50, "b");
        let v1 = replicated(&src);
        modify_all(&mut src, "b");
        let v2 = replicated(&src);
        let (mut m, mut log, mut usn) = (BaselineMap::default(), Vec::new(), Usn(0));
        let n1 = (v1.iter())
            .filter(|o| baseline_apply(&mut m, &mut log, &mut usn, o))
            .count();
        let n2 = (v2.iter())
            .filter(|o| baseline_apply(&mut m, &mut log, &mut usn, o))
            .count();
        // Older states again change nothing.
        let n3 = (v1.iter())
            .filter(|o| baseline_apply(&mut m, &mut log, &mut usn, o))
            .count();
        assert_eq!((n1, n2, n3), (50, 50, 0));
        assert_eq!(log.len(), 100);
        assert!(log.windows(2).all(|w| w[0].0 < w[1].0), "USNs grow");
        for s in &v2 {
            assert!(
                ObjectState::ptr_eq(&m[&s.guid().0], s),
                "the newer state is kept"
            );
        }
        // The core stores the same states.
        let mut d = Dsa::new(
            "D".into(),
            InvocationId(9),
            core_config(Granularity::Object),
        );
        assert_eq!(apply_all(&mut d, &v1), 50);
        assert_eq!(apply_all(&mut d, &v2), 50);
        for s in &v2 {
            assert!(ObjectState::ptr_eq(
                &d.table().get(s.guid()).unwrap().state,
                s
            ));
        }
    }

    #[test]
    fn the_growth_plot_places_each_size_on_a_log_axis() {
        let p = |objects: u64, total_ms: f64| GrowthPoint {
            objects,
            replicas: 3 * objects,
            reps: 1,
            restore_ms: total_ms / 4.0,
            converge_ms: total_ms * 3.0 / 4.0,
            total_ms,
            first_total_ms: total_ms,
            peak_rss: None,
            runs_ms: vec![(total_ms / 4.0, total_ms * 3.0 / 4.0)],
        };
        let svg = growth_svg(&[p(10_000, 1.0), p(100_000, 2.0), p(1_000_000, 3.0)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        for label in [
            "10.0 k objects",
            "100 k objects",
            "1.00 M objects",
            "5.00 ms",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        // Evenly spaced sizes on a log axis: equal steps in x.
        let line = svg
            .lines()
            .find(|l| l.contains("#c0392b\" stroke-width"))
            .unwrap();
        let xs: Vec<f64> = line
            .split('"')
            .nth(1)
            .unwrap()
            .split(' ')
            .map(|pt| pt.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() < 0.2, "{xs:?}");
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(20.0), 20.0);
    }

    #[test]
    fn values_carry_units_and_grouped_digits() {
        assert_eq!(show_value(145.0, "B"), "145 B");
        assert_eq!(show_value(1.2e9, "B"), "1.20 GB");
        assert_eq!(show_value(3_790_000.0, "objects/s"), "3.79 M objects/s");
        assert_eq!(show_value(999_700.0, "copies/s"), "1.00 M copies/s");
        assert_eq!(show_value(21.7, "us"), "21.7 µs");
        assert_eq!(show_value(86_267.5, "us"), "86.3 ms");
        assert_eq!(show_value(1.6, "ms"), "1.60 ms");
        assert_eq!(show_value(84_800.0, "ms"), "84.8 s");
        assert_eq!(show_value(366_129.9, "x real time"), "366,130x real time");
        assert_eq!(show_value(10_000.0, "x real time"), "10,000x real time");
        assert_eq!(ratio(1.0), "1.00");
        assert_eq!(ratio(25.907), "25.9");
        assert_eq!(ratio(1_234_567.0), "1,234,567");
    }
}
