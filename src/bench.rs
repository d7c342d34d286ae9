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
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Cluster, LoadSpec};
use crate::config::{Granularity, Profile, ReplicationConfig, RestoreStrategy};
use crate::core::{
    CoreConfig, Dsa, GetChanges, Guid, InvocationId, ObjectState, PullKind, Stamp,
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

Each figure prints on two lines: what is measured and its ratio to the
baseline against the target, then the figure next to the baseline's.
With `--json -` the JSON goes to stdout and the text to stderr.")
)]
pub struct BenchArgs {
    /// Fewer repetitions and a smaller simulated week: under 2 minutes.
    #[cfg_attr(feature = "cli", arg(long))]
    pub quick: bool,
    /// Write the figures as JSON here; `-`: to stdout, the text then going
    /// to stderr.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OUT.json"))]
    pub json: Option<PathBuf>,
}

/// The version of the JSON `--json` writes (its `schema_version`), raised
/// when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// The issue's target for `ratio`, e.g. `>= 0.5`.
    pub target: String,
    /// Whether the target is met.
    pub met: bool,
}

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
    /// The plain `HashMap` merge of the same objects, same run, objects/s.
    pub apply_baseline_objects_per_s: f64,
    /// Answering a backsync (1,000 originated) on 10k objects, µs.
    pub backsync_answer_10k_us: f64,
    /// The same on 1M objects, µs.
    pub backsync_answer_1m_us: f64,
    /// The same on 1M objects by a full-table scan, µs.
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
    /// Peak RSS growth over object replicas (64 servers × 100k objects).
    pub bytes_per_object_replica: f64,
    /// Servers, objects and RSS figures behind it.
    pub memory: MemoryFigure,
    /// Simulated seconds per wall second over 7 days of a 20-site exchange55 topology.
    pub sim_to_wall_ratio: f64,
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
pub fn replicated(d: &Dsa) -> Vec<Arc<ObjectState>> {
    d.table()
        .changed_after_replicas(Usn(0))
        .map(|(_, r)| r.state.clone())
        .collect()
}

/// Applies replicated states as the core's apply loop does; returns how many changed.
pub fn apply_all(d: &mut Dsa, states: &[Arc<ObjectState>]) -> usize {
    states.iter().filter(|s| d.apply_state(s)).count()
}

/// The plain-Rust baseline object: owned strings, one stamp per attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainObject {
    /// Guid.
    pub guid: u128,
    /// dn.
    pub dn: String,
    /// Object stamp.
    pub stamp: Stamp,
    /// Tombstone flag.
    pub deleted: bool,
    /// (name, value, stamp).
    pub attrs: Vec<(String, String, Stamp)>,
}

/// Deep copies of states, for the baseline.
pub fn plain(states: &[Arc<ObjectState>]) -> Vec<PlainObject> {
    states
        .iter()
        .map(|s| PlainObject {
            guid: s.guid.0,
            dn: s.rdn.to_string(),
            stamp: s.stamp,
            deleted: s.deleted,
            attrs: s
                .attrs
                .iter()
                .filter_map(|a| Some((a.name.to_string(), a.value.as_ref()?.to_string(), a.stamp)))
                .collect(),
        })
        .collect()
}

/// The baseline apply: a `HashMap` by guid; compare stamps, copy newer
/// attributes (a deep copy of what is taken). Returns whether it changed.
pub fn plain_merge(map: &mut HashMap<u128, PlainObject>, inc: &PlainObject) -> bool {
    match map.entry(inc.guid) {
        Entry::Vacant(e) => {
            e.insert(inc.clone());
            true
        }
        Entry::Occupied(mut e) => {
            let cur = e.get_mut();
            if inc.stamp <= cur.stamp {
                return false;
            }
            cur.stamp = inc.stamp;
            cur.deleted = inc.deleted;
            for (n, v, s) in &inc.attrs {
                match cur.attrs.iter_mut().find(|a| a.0 == *n) {
                    Some(a) if *s > a.2 => {
                        a.1.clone_from(v);
                        a.2 = *s;
                    }
                    Some(_) => {}
                    None => cur.attrs.push((n.clone(), v.clone(), *s)),
                }
            }
            true
        }
    }
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
    let mut c = Cluster::new(&t, ReplicationConfig::default(), seed)?;
    c.load(&LoadSpec {
        creates: objects,
        ..LoadSpec::default()
    })?;
    converged(&mut c, Duration::from_secs(86_400), "initial load")?;
    c.backup("Server1", "nightly")?;
    c.load(&LoadSpec {
        servers: vec!["Server1".into()],
        creates: lost,
        prefix: Some("lost".into()),
        ..LoadSpec::default()
    })?;
    converged(&mut c, Duration::from_secs(86_400), "after the backup")?;
    c.crash("Server1")?;
    Ok(c)
}

/// The restore-growth story: three servers in one site, `objects` loaded
/// and converged, a backup of Server1, then 1,000 objects created on
/// Server1 and 100 of the loaded ones deleted, replicated, then Server1
/// crashed. What a restore loses is the same at every size; only the
/// directory grows. Restore `Server1` from `nightly` next.
pub fn growth_fixture(objects: u64, seed: u64) -> Result<Cluster, BenchError> {
    let t = Topology::new().site("Site", &["Server1", "Server2", "Server3"]);
    let mut c = Cluster::new(&t, ReplicationConfig::default(), seed)?;
    c.load(&LoadSpec {
        creates: objects,
        ..LoadSpec::default()
    })?;
    converged(&mut c, Duration::from_secs(86_400), "initial load")?;
    c.backup("Server1", "nightly")?;
    c.load(&LoadSpec {
        servers: vec!["Server1".into()],
        creates: GROWTH_LOST,
        prefix: Some("lost".into()),
        ..LoadSpec::default()
    })?;
    c.load(&LoadSpec {
        deletes: GROWTH_DELETED,
        ..LoadSpec::default()
    })?;
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

/// One `/proc/self/status` field in bytes (Linux; 0 elsewhere).
fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The memory figure's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
/// protocol does) and measures peak RSS growth per object replica.
pub fn memory_per_replica(servers: usize, objects: usize) -> (f64, MemoryFigure) {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = proc_status("VmRSS:");
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
    let rss_after = proc_status("VmRSS:");
    let peak_rss = proc_status("VmHWM:").max(rss_after);
    let replicas = (servers * objects) as f64;
    let fig = MemoryFigure {
        servers,
        objects,
        rss_before,
        peak_rss,
        rss_after,
    };
    drop(chain);
    (peak_rss.saturating_sub(rss_before) as f64 / replicas, fig)
}

/// Core apply vs the plain `HashMap` merge: `n` objects inserted into an
/// empty replica, then `n` newer versions applied over them. Median of
/// `reps`; returns (core objects/s, baseline objects/s).
pub fn apply_rates(n: usize, reps: usize) -> (f64, f64) {
    let mut src = source(1, n, "obj");
    let v1 = replicated(&src);
    modify_all(&mut src, "obj");
    let v2 = replicated(&src);
    let (p1, p2) = (plain(&v1), plain(&v2));
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
        let mut m: HashMap<u128, PlainObject> = HashMap::new();
        let (a, c1) = time(|| p1.iter().filter(|o| plain_merge(&mut m, o)).count());
        let (b, c2) = time(|| p2.iter().filter(|o| plain_merge(&mut m, o)).count());
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
    /// Objects loaded at the start.
    pub objects: u64,
    /// Simulated seconds run.
    pub sim_s: f64,
    /// Wall seconds it took.
    pub wall_s: f64,
    /// Whether the directory had converged at the end.
    pub converged: bool,
}

/// 7 simulated days of a hub-and-spoke exchange55 organisation of `sites`
/// sites of `per_site` servers with `objects` loaded at the start.
pub fn sim_week(sites: usize, per_site: usize, objects: u64) -> Result<SimWeek, BenchError> {
    let week = Duration::from_secs(7 * 86_400);
    let t = hub_topology(sites * per_site, per_site);
    let wall = Instant::now();
    let mut c = Cluster::new(&t, ReplicationConfig::for_profile(Profile::Exchange55), 7)?;
    c.load(&LoadSpec {
        creates: objects,
        ..LoadSpec::default()
    })?;
    let conv = c.converge(week)?;
    let left = week.saturating_sub(c.now());
    c.wait(left);
    let sim_s = c.now().as_secs_f64();
    let wall_s = wall.elapsed().as_secs_f64();
    Ok(SimWeek {
        sites,
        servers: sites * per_site,
        objects,
        sim_s,
        wall_s,
        converged: conv.converged,
    })
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
        "a plain hash-map merge of the same changes",
    );
    /// (what is measured, the baseline).
    pub const ANSWER_1M: (&str, &str) = (
        "Answer a backsync: 1,000 lost objects among 1,000,000",
        "the same among 10,000 objects",
    );
    /// (what is measured, the baseline).
    pub const ANSWER_INDEX: (&str, &str) = (
        "Answer a backsync from the index vs by scanning all objects",
        "scanning all 1,000,000 objects for the lost ones",
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
    /// The simulated week's, its object count (`{}`) left to fill in.
    pub const WEEK: (&str, &str) = (
        "Simulate a week of 20 sites, 60 servers, {} objects",
        "the floor aimed for",
    );
}

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
        target: format!("{} {}", target.0, target.1),
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
///     met: true,
/// };
/// let text = render_figure(&f);
/// assert!(text.contains("1.62 M objects/s  vs  2.30 M objects/s, a plain"), "{text}");
/// assert!(text.contains("ratio  0.70 (target >= 0.5) met"), "{text}");
/// assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
/// ```
pub fn render_figure(f: &Figure) -> String {
    let target = format!("(target {})", f.target);
    let verdict = format!(
        "ratio {:>5} {target:<15} {}",
        ratio(f.ratio),
        if f.met { "met" } else { "MISSED" }
    );
    let room = WIDTH.saturating_sub(verdict.chars().count() + 1);
    let head = format!("{:<room$} {verdict}", f.name);
    let value = show_value(f.value, &f.unit);
    let base = show_value(f.baseline_value, &f.unit);
    let body = format!("  {value:>18}  vs  {base}, {}", f.baseline);
    format!("{}\n{}\n", head.trim_end(), body.trim_end())
}

/// Runs every measurement, prints each figure with its baseline and ratio,
/// and writes the JSON if asked.
pub fn run_cli(args: &BenchArgs) -> Result<BenchReport, BenchError> {
    use std::io::Write as _;
    let quick = args.quick;
    let reps = if quick { 3 } else { 7 };
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

    // Memory first: the peak is the process's.
    let (bytes, memory) = memory_per_replica(64, 100_000);
    out(figure(
        titles::MEMORY.0,
        bytes,
        "B",
        titles::MEMORY.1,
        200.0,
        bytes / 200.0,
        ("<=", 1.0),
    ));

    let (apply, apply_base) = apply_rates(100_000, reps);
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
    let s1m = backsync_answer_us(&p1m, &r1m, 3, true);
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
    let restore = [
        RestoreFigures::of(
            ms(0, |r| r.restore),
            ms(0, |r| r.converge),
            ms(0, |r| r.total),
        ),
        RestoreFigures::of(
            ms(1, |r| r.restore),
            ms(1, |r| r.converge),
            ms(1, |r| r.total),
        ),
        RestoreFigures::of(
            ms(2, |r| r.restore),
            ms(2, |r| r.converge),
            ms(2, |r| r.total),
        ),
    ];
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
    out(figure(
        titles::RESTORE_NEW_ID.0,
        bs.total_ms,
        "ms",
        titles::RESTORE_NEW_ID.1,
        ni.total_ms,
        ni.total_ms / bs.total_ms,
        (">=", 1.0),
    ));

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

    let week = sim_week(20, 3, if quick { 20_000 } else { 100_000 })?;
    if !week.converged {
        return Err(BenchError::Workload("simulated week: not converged".into()));
    }
    let sim_to_wall = week.sim_s / week.wall_s;
    out(figure(
        &titles::WEEK
            .0
            .replace("{}", &crate::config::group(week.objects)),
        sim_to_wall,
        "x real time",
        titles::WEEK.1,
        1e4,
        sim_to_wall / 1e4,
        (">=", 1.0),
    ));

    printed.map_err(write_err)?;
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
        sim_to_wall_ratio: sim_to_wall,
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
            met: false,
        }
    }

    /// Every figure, with values as wide as they come, fits 100 columns.
    #[test]
    fn every_figure_fits_the_width() {
        let week = titles::WEEK.0.replace("{}", &crate::config::group(100_000));
        let all = [
            (titles::MEMORY, "B"),
            (titles::APPLY, "objects/s"),
            (titles::ANSWER_1M, "us"),
            (titles::ANSWER_INDEX, "us"),
            (titles::CATCH_UP, "ms"),
            (titles::RESTORE_FULL, "ms"),
            (titles::RESTORE_NEW_ID, "ms"),
            (titles::REPLICATE, "copies/s"),
            ((week.as_str(), titles::WEEK.1), "x real time"),
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
