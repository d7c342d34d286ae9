//! The library checks the bounds a scenario file is checked against, and
//! reports each violation as a typed error.

use std::time::Duration;

use backsync::{Cluster, ClusterError, LinkFaults, LoadSpec, ReplicationConfig, Topology};

fn topology() -> Topology {
    Topology::new().site("Redmond", &["Server1", "Server2"])
}

fn faults_error(f: LinkFaults) -> &'static str {
    match Cluster::with_faults(&topology(), ReplicationConfig::default(), 1, f) {
        Err(ClusterError::Faults { field, .. }) => field,
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("{f:?} accepted"),
    }
}

#[test]
fn link_faults_out_of_bounds_are_rejected() {
    let none = LinkFaults::default();
    assert_eq!(faults_error(LinkFaults { loss: 2.0, ..none }), "loss");
    assert_eq!(faults_error(LinkFaults { loss: -0.1, ..none }), "loss");
    let nan = LinkFaults {
        duplicate: f64::NAN,
        ..none
    };
    assert_eq!(faults_error(nan), "duplicate");
    let inf = LinkFaults {
        duplicate: f64::INFINITY,
        ..none
    };
    assert_eq!(faults_error(inf), "duplicate");
    let jitter = LinkFaults {
        jitter: Duration::from_secs(3651 * 86_400),
        ..none
    };
    assert_eq!(faults_error(jitter), "jitter");
    let ok = LinkFaults {
        loss: 1.0,
        duplicate: 0.0,
        jitter: Duration::from_secs(1),
    };
    let mut c = Cluster::with_faults(&topology(), ReplicationConfig::default(), 1, ok).unwrap();
    let bad = LinkFaults { loss: 1.5, ..none };
    assert!(matches!(
        c.set_faults(bad),
        Err(ClusterError::Faults { field: "loss", .. })
    ));
}

#[test]
fn zero_periods_and_timeouts_are_rejected() {
    let zero = Duration::ZERO;
    type Set = fn(&mut ReplicationConfig, Duration);
    let cases: [(&str, Set); 5] = [
        ("reply_timeout", |c, d| c.reply_timeout = d),
        ("backsync_timeout", |c, d| c.backsync_timeout = d),
        ("gc_interval", |c, d| c.gc_interval = d),
        ("intrasite_schedule", |c, d| c.intrasite_schedule = d),
        ("connector_schedule", |c, d| c.connector_schedule = d),
    ];
    for (name, set) in cases {
        let mut cfg = ReplicationConfig::default();
        set(&mut cfg, zero);
        match Cluster::new(&topology(), cfg, 1) {
            Err(ClusterError::Config(e)) => assert_eq!(e.field, name),
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) => panic!("{name} = 0 accepted"),
        }
    }
    let cfg = ReplicationConfig {
        tombstone_lifetime: Duration::from_secs(4000 * 86_400),
        ..ReplicationConfig::default()
    };
    assert!(matches!(
        Cluster::new(&topology(), cfg, 1),
        Err(ClusterError::Config(e)) if e.field == "tombstone_lifetime"
    ));
    let cfg = ReplicationConfig {
        intrasite_packet: 0,
        ..ReplicationConfig::default()
    };
    assert!(matches!(
        Cluster::new(&topology(), cfg, 1),
        Err(ClusterError::Config(e)) if e.field == "intrasite_packet"
    ));
}

#[test]
fn empty_dns_are_rejected_everywhere() {
    let mut c = Cluster::new(&topology(), ReplicationConfig::default(), 1).unwrap();
    c.create("Server1", "cn=A", &[]).unwrap();
    for dn in ["", "   "] {
        assert_eq!(c.create("Server1", dn, &[]), Err(ClusterError::EmptyDn));
        assert_eq!(
            c.modify("Server1", dn, &[("mail", "x")], &[]),
            Err(ClusterError::EmptyDn)
        );
        assert_eq!(c.delete("Server1", dn), Err(ClusterError::EmptyDn));
        assert_eq!(c.lookup("Server1", dn), Err(ClusterError::EmptyDn));
    }
    assert_eq!(c.refused_writes(), 0, "an invalid write is not a refusal");
    assert_eq!(c.live_objects("Server1").unwrap(), 1);
}

#[test]
fn converge_limits_and_load_counts_are_bounded() {
    let mut c = Cluster::new(&topology(), ReplicationConfig::default(), 1).unwrap();
    for within in [Duration::ZERO, Duration::MAX] {
        assert!(matches!(
            c.converge(within),
            Err(ClusterError::OutOfBounds {
                what: "converge limit",
                ..
            })
        ));
    }
    assert!(c.converge(Duration::from_secs(60)).unwrap().converged);
    let huge = LoadSpec {
        creates: i64::MAX as u64,
        ..LoadSpec::default()
    };
    assert!(matches!(
        c.load(&huge),
        Err(ClusterError::OutOfBounds {
            what: "load creates",
            ..
        })
    ));
    assert_eq!(c.live_objects("Server1").unwrap(), 0);
    assert_eq!(c.lost_unreplicated(), Ok(0));
    assert_eq!(c.backups(), Ok(Vec::new()));
}

#[test]
fn connector_bounds_are_checked() {
    let mut t = Topology::new()
        .site("A", &["S1"])
        .site("B", &["S2"])
        .connector(["A", "B"], ["S1", "S2"]);
    t.connectors[0].schedule = Some(Duration::ZERO);
    assert!(matches!(
        Cluster::new(&t, ReplicationConfig::default(), 1),
        Err(ClusterError::Topology(m)) if m.contains("schedule must be more than zero")
    ));
}
