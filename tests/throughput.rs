//! Throughput mode (servers on several arbiter threads, real clock) gives
//! up event order, not the result: the same workload converges to the same
//! directory as the deterministic cluster. No timing is asserted.

use std::collections::BTreeMap;
use std::time::Duration;

use backsync::core::Guid;
use backsync::{Cluster, LoadSpec, ReplicationConfig, Topology, throughput};

/// Every object of one server, without what is local by nature (USNs).
fn directory(
    c: &Cluster,
    server: &str,
) -> BTreeMap<Guid, (String, bool, BTreeMap<String, String>)> {
    c.objects(server)
        .unwrap()
        .expect("running")
        .into_iter()
        .map(|v| (v.guid, (v.dn, v.deleted, v.attrs)))
        .collect()
}

fn check_same(t: &Topology, cfg: ReplicationConfig, seed: u64, steps: &[LoadSpec]) {
    let mut det = Cluster::new(t, cfg.clone(), seed).unwrap();
    let mut fast = throughput::start_on(t, &cfg, seed, 2).unwrap();
    for spec in steps {
        let a = det.load(spec).unwrap();
        let b = fast.load(spec).unwrap();
        assert_eq!(a, b, "the same writes apply");
        assert!(
            det.converge(Duration::from_secs(7 * 86_400))
                .unwrap()
                .converged
        );
        assert!(
            fast.converge(Duration::from_secs(120)).unwrap().converged,
            "throughput mode converges"
        );
    }
    let want = directory(&det, &det.servers()[0]);
    assert!(!want.is_empty());
    let digest = |c: &Cluster| {
        c.status()
            .iter()
            .map(|s| (s.live_objects, s.tombstones))
            .collect::<Vec<_>>()
    };
    assert_eq!(digest(&det), digest(&fast));
    for s in fast.servers().to_vec() {
        assert_eq!(
            directory(&fast, &s),
            want,
            "{s} holds the deterministic directory"
        );
    }
    assert!(
        !throughput::arbiter_cpu_seconds(&fast).is_empty(),
        "servers ran on arbiters"
    );
}

#[test]
fn one_site_converges_to_the_deterministic_directory() {
    let t = Topology::new().site("Redmond", &["S1", "S2", "S3", "S4", "S5", "S6"]);
    let steps = [
        LoadSpec {
            creates: 3000,
            ..LoadSpec::default()
        },
        LoadSpec {
            modifies: 500,
            deletes: 200,
            ..LoadSpec::default()
        },
    ];
    check_same(&t, ReplicationConfig::default(), 11, &steps);
}

#[test]
fn sites_and_attribute_granularity_converge_to_the_deterministic_directory() {
    let t = Topology::new()
        .site("Redmond", &["S1", "S2"])
        .site("Dublin", &["S3", "S4"])
        .site("Tokyo", &["S5"])
        .connector(["Redmond", "Dublin"], ["S2", "S3"])
        .connector(["Dublin", "Tokyo"], ["S4", "S5"]);
    let steps = [
        LoadSpec {
            creates: 2000,
            ..LoadSpec::default()
        },
        LoadSpec {
            modifies: 300,
            deletes: 100,
            ..LoadSpec::default()
        },
    ];
    check_same(
        &t,
        ReplicationConfig::for_profile(backsync::Profile::Ad),
        5,
        &steps,
    );
}

#[test]
fn a_backsync_restore_in_throughput_mode_converges_to_the_deterministic_directory() {
    let t = Topology::new()
        .site("Redmond", &["S1", "S2", "S3"])
        .site("Dublin", &["S4"])
        .connector(["Redmond", "Dublin"], ["S3", "S4"]);
    let cfg = ReplicationConfig::default();
    let mut det = Cluster::new(&t, cfg.clone(), 3).unwrap();
    let mut fast = throughput::start_on(&t, &cfg, 3, 2).unwrap();
    for c in [&mut det, &mut fast] {
        // Throughput mode runs on the real clock: a real-time bound.
        let within = if c.config().notify_delay.is_zero() {
            Duration::from_secs(120)
        } else {
            Duration::from_secs(7 * 86_400)
        };
        c.load(&LoadSpec {
            creates: 2000,
            ..LoadSpec::default()
        })
        .unwrap();
        assert!(c.converge(within).unwrap().converged);
        c.backup("S1", "nightly").unwrap();
        c.load(&LoadSpec {
            servers: vec!["S1".into()],
            creates: 300,
            prefix: Some("lost".into()),
            ..LoadSpec::default()
        })
        .unwrap();
        assert!(c.converge(within).unwrap().converged);
        c.crash("S1").unwrap();
        c.restore("S1", "nightly", Some(backsync::RestoreStrategy::Backsync))
            .unwrap();
        assert!(
            c.converge(within).unwrap().converged,
            "converges after the restore"
        );
    }
    let want = directory(&det, "S1");
    assert_eq!(want.len(), 2300);
    for s in fast.servers().to_vec() {
        assert_eq!(
            directory(&fast, &s),
            want,
            "{s} holds the deterministic directory"
        );
    }
}
