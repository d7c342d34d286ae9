//! Store-and-forward between sites: a message between sites of a connector
//! topology travels hop by hop through the bridgeheads of the sites on its
//! path, each connector hop on the connector's schedule tick and latency,
//! held while the next bridgehead is down or partitioned away.
//!
//! The expected times are computed here from the topology's numbers alone
//! (ticks at whole multiples of each connector's schedule from the start of
//! the run), not by the network code under test.

use std::time::Duration;

use backsync::shell::observe::BacksyncStep;
use backsync::{Cluster, ReplicationConfig, RestoreStrategy, Topology};

const MIN: u64 = 60_000;

/// Per connector W - X, X - Y, Y - Z: (schedule, latency) in ms.
const LINKS: [(u64, u64); 3] = [(7 * MIN, 2_000), (11 * MIN, 3_000), (13 * MIN, 5_000)];

/// Four sites in a chain; X1 and Y1 bridge both their connectors.
fn chain() -> Topology {
    let mut t = Topology::new()
        .site("W", &["W1", "W2"])
        .site("X", &["X1", "X2"])
        .site("Y", &["Y1", "Y2"])
        .site("Z", &["Z1", "Z2"])
        .connector(["W", "X"], ["W2", "X1"])
        .connector(["X", "Y"], ["X1", "Y1"])
        .connector(["Y", "Z"], ["Y1", "Z1"]);
    for (c, (s, l)) in t.connectors.iter_mut().zip(LINKS) {
        c.schedule = Some(Duration::from_millis(s));
        c.latency = Some(Duration::from_millis(l));
    }
    t
}

const NAMES: [&str; 8] = ["W1", "W2", "X1", "X2", "Y1", "Y2", "Z1", "Z2"];

fn intrasite() -> u64 {
    ReplicationConfig::default().intrasite_latency.as_millis() as u64
}

/// The next tick of a schedule at or after `t`.
fn tick(t: u64, period: u64) -> u64 {
    t.div_ceil(period) * period
}

/// When a message W1 sends at `t` reaches `to`: W1 -> W2 inside W, then
/// each connector from its bridgehead, then inside the last site.
fn w1_to(to: &str, t: u64) -> u64 {
    let site = "WXYZ".find(&to[..1]).unwrap();
    let mut t = t + intrasite();
    for &(s, l) in &LINKS[..site] {
        t = tick(t, s) + l;
    }
    // The sites' first servers are the bridgeheads on the W side (X1, Y1,
    // Z1); W2 is W's.
    let bridgehead = if site == 0 { "W2" } else { NAMES[2 * site] };
    if to != bridgehead {
        t += intrasite();
    }
    t
}

/// When a message `from` sends at `t` reaches W1: the same way back.
fn to_w1(from: &str, t: u64) -> u64 {
    let site = "WXYZ".find(&from[..1]).unwrap();
    let bridgehead = if site == 0 { "W2" } else { NAMES[2 * site] };
    let mut t = t;
    if from != bridgehead {
        t += intrasite();
    }
    for &(s, l) in LINKS[..site].iter().rev() {
        t = tick(t, s) + l;
    }
    t + intrasite()
}

fn cluster() -> Cluster {
    Cluster::new(&chain(), ReplicationConfig::default(), 5).unwrap()
}

/// W1's backsync: when it started and, per partner, when its answer landed.
fn answers(c: &Cluster) -> (u64, Vec<(String, u64)>) {
    let notes = c.backsync_notes();
    let start = notes
        .iter()
        .find(|n| matches!(n.kind, BacksyncStep::Started(_)))
        .expect("a backsync started")
        .sim_ms;
    let got = notes
        .iter()
        .filter_map(|n| match n.kind {
            BacksyncStep::Answer { from, .. } => Some((NAMES[from].to_string(), n.sim_ms)),
            _ => None,
        })
        .collect();
    (start, got)
}

#[test]
fn each_hop_waits_for_its_connectors_tick_then_its_latency() {
    let mut c = cluster();
    c.backup("W1", "nightly").unwrap();
    // Off every tick: 1 h 0 m 37.5 s.
    c.wait(Duration::from_millis(3_637_500));
    c.restore("W1", "nightly", Some(RestoreStrategy::Backsync))
        .unwrap();
    assert!(c.converge(Duration::from_secs(6 * 3600)).unwrap().converged);
    let (t0, got) = answers(&c);
    assert_eq!(got.len(), 7, "every partner answered once: {got:?}");
    for (from, at) in &got {
        let expected = to_w1(from, w1_to(from, t0));
        assert_eq!(*at, expected, "answer of {from} (asked at {t0} ms)");
    }
    // Z2's answer crossed six connector hops (three each way), each at
    // least its latency, and waited for ticks.
    let z2 = got.iter().find(|(f, _)| f == "Z2").unwrap().1;
    let latencies: u64 = LINKS.iter().map(|l| 2 * l.1).sum();
    assert!(z2 - t0 > latencies + 4 * intrasite());
    assert!(
        c.counters().relayed >= 2 * 3 * 2,
        "Z1 and Z2 asked and answered"
    );
    assert_eq!(c.held(), 0);
}

#[test]
fn crashed_intermediate_bridgeheads_hold_the_traffic_until_they_return() {
    let mut c = cluster();
    for s in ["W1", "X1", "Y1"] {
        c.backup(s, &format!("{s}-nightly")).unwrap();
    }
    c.crash("X1").unwrap();
    c.crash("Y1").unwrap();
    c.restore("W1", "W1-nightly", Some(RestoreStrategy::Backsync))
        .unwrap();
    c.wait(Duration::from_secs(3 * 3600));
    assert_eq!(
        c.backsync_answered("W1").unwrap(),
        Some(vec!["W2".to_string()])
    );
    assert_eq!(c.state("W1").unwrap(), "backsync");
    assert!(c.held() > 0, "the requests wait at W2");
    assert!(c.in_flight() >= c.held());
    let r = c.converge(Duration::from_secs(3600)).unwrap();
    assert!(!r.converged && r.held > 0, "held messages are in flight");
    for s in ["X1", "Y1"] {
        c.restore(
            s,
            &format!("{s}-nightly"),
            Some(RestoreStrategy::FullResync),
        )
        .unwrap();
    }
    let r = c.converge(Duration::from_secs(8 * 3600)).unwrap();
    assert!(r.converged && r.held == 0 && r.relayed > 0, "{r:?}");
    let mut answered = c.backsync_answered("W1").unwrap().unwrap();
    answered.sort();
    assert_eq!(answered, ["W2", "X1", "X2", "Y1", "Y2", "Z1", "Z2"]);
    assert_eq!(c.state("W1").unwrap(), "running");
}

/// W1's backsync asks the six servers beyond W - X; with X1 down, W2 holds
/// the six requests.
fn six_held_at_w2() -> Cluster {
    let mut c = cluster();
    c.backup("W1", "nightly").unwrap();
    c.crash("X1").unwrap();
    c.restore("W1", "nightly", Some(RestoreStrategy::Backsync))
        .unwrap();
    c.wait(Duration::from_secs(60));
    assert_eq!(c.held(), 6);
    c
}

#[test]
fn a_holder_that_crashes_loses_what_it_holds() {
    let mut c = six_held_at_w2();
    let dropped = c.counters().dropped;
    c.crash("W2").unwrap();
    c.wait(Duration::from_millis(1));
    assert_eq!(c.held(), 0);
    assert_eq!(c.counters().dropped - dropped, 6);
}

#[test]
fn a_deleted_connector_drops_what_waits_for_it_with_no_other_way() {
    let mut c = six_held_at_w2();
    let dropped = c.counters().dropped;
    c.delete_connector("W", "X").unwrap();
    c.wait(Duration::from_millis(1));
    assert_eq!(c.held(), 0);
    assert_eq!(c.counters().dropped - dropped, 6);
}

#[test]
fn a_partition_holds_the_traffic_per_hop_until_healed() {
    let mut c = cluster();
    c.backup("W1", "nightly").unwrap();
    let (w, rest): (Vec<_>, Vec<_>) = NAMES
        .iter()
        .map(|s| s.to_string())
        .partition(|s| s.starts_with('W'));
    c.partition(&[w, rest]).unwrap();
    c.restore("W1", "nightly", Some(RestoreStrategy::Backsync))
        .unwrap();
    c.wait(Duration::from_secs(60));
    assert_eq!(c.held(), 6, "at W2, for the W - X tick with X1 reachable");
    c.wait(Duration::from_secs(3600));
    assert_eq!(
        c.backsync_answered("W1").unwrap(),
        Some(vec!["W2".to_string()])
    );
    assert!(c.held() >= 6, "and the re-asks");
    c.heal().unwrap();
    assert!(c.converge(Duration::from_secs(8 * 3600)).unwrap().converged);
    assert_eq!(c.backsync_answered("W1").unwrap().unwrap().len(), 7);
}
