//! Throughput mode: the same `DirectoryServer` actors spread over one
//! actix [`Arbiter`](actix::Arbiter) (thread) per core, on the real clock,
//! with no notification, latency or schedule delays.
//!
//! What it gives up: **event order is not deterministic**. Servers on
//! different threads interleave as the OS schedules them, so the trace hash,
//! the USNs each server hands out, the number of messages and the objects
//! sent twice differ from run to run. What it keeps: the protocol is the
//! same code, merge is order-independent, and with the same topology,
//! workload and seed every server **converges to the same directory** (same
//! guids, dns, live/deleted state and values, hence the same digest) as the
//! deterministic [`Cluster`]; `tests/throughput.rs` checks that.
//!
//! Design: the servers are placed round-robin on the arbiters
//! (`Actor::start_in_arbiter`); the `Network` and `Supervisor` actors stay on
//! the caller's thread, which runs them while it waits in a [`Cluster`] call.
//! Messages carry `Arc`-shared object states, so crossing a thread moves
//! pointers. The caller collects per-arbiter CPU time over a
//! crossbeam channel (see [`arbiter_cpu_seconds`]) to show how the work spread.
//!
//! Writes carry the real time as their originating time, so a workload with
//! concurrent conflicting writes of the same object could resolve them
//! differently from the simulated run; the load generator sends every write
//! of an object to the server that created it, which keeps the result the same.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Cluster, LoadSpec};
use crate::config::ReplicationConfig;
use crate::error::ClusterError;
use crate::shell::network::LinkFaults;
use crate::shell::topology::Topology;

/// The replication settings of throughput mode: `base` with every delay
/// zero (notification, spacing, latency, start-up), intersite schedules of a
/// few milliseconds, and bigger replies (fewer messages).
pub fn config(base: &ReplicationConfig) -> ReplicationConfig {
    ReplicationConfig {
        notify_delay: Duration::ZERO,
        notify_spacing: Duration::ZERO,
        intrasite_latency: Duration::ZERO,
        connector_latency: Duration::ZERO,
        startup_delay: Duration::ZERO,
        connector_schedule: Duration::from_millis(50),
        // A reply lost to a crash must not hold a destination's queue of
        // pulls (one source at a time, see `Shared::throughput`) for long.
        reply_timeout: Duration::from_secs(2),
        intrasite_packet: base.intrasite_packet.max(1000),
        intersite_packet: base.intersite_packet.max(1000),
        ..base.clone()
    }
}

/// `t` with every connector on the throughput config's schedule and latency.
pub fn topology(t: &Topology) -> Topology {
    let mut t = t.clone();
    for c in &mut t.connectors {
        c.schedule = None;
        c.latency = None;
    }
    t
}

/// One arbiter per core.
pub fn default_arbiters() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Starts a cluster in throughput mode on [`default_arbiters`] threads,
/// with [`config`] and [`topology`] applied.
pub fn start(t: &Topology, cfg: &ReplicationConfig, seed: u64) -> Result<Cluster, ClusterError> {
    start_on(t, cfg, seed, default_arbiters())
}

/// [`start`] on `arbiters` threads (at least one).
pub fn start_on(
    t: &Topology,
    cfg: &ReplicationConfig,
    seed: u64,
    arbiters: usize,
) -> Result<Cluster, ClusterError> {
    Cluster::build(
        &topology(t),
        config(cfg),
        seed,
        LinkFaults::default(),
        arbiters.max(1),
    )
}

/// CPU seconds each arbiter thread has used so far, collected from the
/// threads themselves over a crossbeam channel (empty for a deterministic
/// cluster). Linux only (`/proc/thread-self/stat`, 10 ms resolution);
/// elsewhere zeros.
pub fn arbiter_cpu_seconds(c: &Cluster) -> Vec<f64> {
    let handles = c.arbiter_handles();
    let (tx, rx) = crossbeam_channel::bounded(handles.len());
    for (i, h) in handles.iter().enumerate() {
        let tx = tx.clone();
        h.spawn_fn(move || {
            let _ = tx.send((i, thread_cpu_seconds()));
        });
    }
    drop(tx);
    let mut out = vec![0.0; handles.len()];
    for _ in 0..handles.len() {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((i, s)) => out[i] = s,
            Err(_) => break,
        }
    }
    out
}

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest starts at field 3: utime (14) is rest[11], stime (15) rest[12].
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// What one throughput run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThroughputRun {
    /// Servers.
    pub servers: usize,
    /// Arbiter threads.
    pub arbiters: usize,
    /// Originating writes applied.
    pub writes: u64,
    /// Object replicas changed by replication (applies that changed a table).
    pub applies: u64,
    /// Objects carried in replies (dampening misses included).
    pub objects_sent: u64,
    /// Wall seconds from the first write to convergence.
    pub wall_s: f64,
    /// `applies / wall_s`.
    pub applies_per_s: f64,
    /// CPU seconds each arbiter used over the run.
    pub arbiter_cpu_s: Vec<f64>,
    /// Whether it converged within the bound.
    pub converged: bool,
}

/// Loads `spec` into a fresh throughput-mode cluster and waits (real time,
/// at most `within`) until it has converged.
pub fn run(
    t: &Topology,
    cfg: &ReplicationConfig,
    seed: u64,
    spec: &LoadSpec,
    within: Duration,
) -> Result<(ThroughputRun, Cluster), ClusterError> {
    let mut c = start(t, cfg, seed)?;
    let cpu0 = arbiter_cpu_seconds(&c);
    let n0 = c.counters();
    let wall = Instant::now();
    let load = c.load(spec)?;
    let conv = c.converge(within)?;
    let wall_s = wall.elapsed().as_secs_f64();
    let d = c.counters() - n0;
    let cpu: Vec<f64> = arbiter_cpu_seconds(&c)
        .iter()
        .zip(&cpu0)
        .map(|(a, b)| a - b)
        .collect();
    let run = ThroughputRun {
        servers: c.servers().len(),
        arbiters: cpu.len(),
        writes: load.applied,
        applies: d.objects_repaired,
        objects_sent: d.objects_sent,
        wall_s,
        applies_per_s: d.objects_repaired as f64 / wall_s.max(1e-9),
        arbiter_cpu_s: cpu,
        converged: conv.converged,
    };
    Ok((run, c))
}
