//! One-way connections, read-only servers and schedule windows (issue 10),
//! through the library API and the command line.

use std::process::Command;
use std::time::Duration;

use backsync::core::{WeekWindows, WriteError};
use backsync::{Cluster, ClusterError, Connection, ReplicationConfig, RestoreStrategy, Topology};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn cluster(t: &Topology) -> Cluster {
    Cluster::new(t, ReplicationConfig::default(), 1).expect("valid topology")
}

fn has(c: &Cluster, server: &str, dn: &str) -> bool {
    c.lookup(server, dn).unwrap().is_some()
}

#[test]
fn a_one_way_chain_carries_writes_downstream_only() {
    let t = Topology::new()
        .site("S", &["A", "B", "C"])
        .connection("A", "B")
        .connection("B", "C");
    let mut c = cluster(&t);
    c.create("A", "cn=FromA", &[]).unwrap();
    c.create("C", "cn=FromC", &[]).unwrap();
    c.wait(2 * DAY);
    assert!(has(&c, "B", "cn=FromA") && has(&c, "C", "cn=FromA"));
    // C is no one's source: its write stays on it.
    assert!(!has(&c, "B", "cn=FromC") && !has(&c, "A", "cn=FromC"));
    // One component (connections join either way), never converged.
    assert_eq!(c.components(), vec![vec![0, 1, 2]]);
    assert!(!c.converge(HOUR).unwrap().converged);
}

#[test]
fn a_server_with_no_inbound_connection_never_receives() {
    let t = Topology::new()
        .site("S", &["A", "B", "D"])
        .connection("A", "B")
        .connection("D", "A");
    let mut c = cluster(&t);
    c.create("A", "cn=X", &[]).unwrap();
    c.create("D", "cn=Y", &[]).unwrap();
    c.wait(2 * DAY);
    assert!(has(&c, "B", "cn=X") && has(&c, "A", "cn=Y") && has(&c, "B", "cn=Y"));
    assert!(!has(&c, "D", "cn=X"));
}

fn branch() -> Topology {
    Topology::new()
        .site("Hub", &["A", "B"])
        .site("Branch", &["R", "W"])
        .read_only(&["R"])
        .connection("A", "B")
        .connection("B", "A")
        .connection("A", "R")
}

#[test]
fn a_read_only_server_refuses_writes_but_pulls_and_applies() {
    let mut c = cluster(&branch());
    let e = c.create("R", "cn=Local", &[]).unwrap_err();
    assert!(
        matches!(e, ClusterError::Write(WriteError::ReadOnly(ref s)) if s == "R"),
        "{e}"
    );
    assert!(e.to_string().contains("read-only"), "{e}");
    c.create("A", "cn=FromA", &[]).unwrap();
    c.wait(2 * DAY);
    assert!(has(&c, "R", "cn=FromA"));
    // `load` without servers writes on writable servers only.
    let r = c
        .load(&backsync::LoadSpec {
            creates: 40,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.applied, r.refused), (40, 0));
}

#[test]
fn backsync_asks_every_writable_server_connected_or_not() {
    let mut c = cluster(&branch());
    c.backup("A", "nightly").unwrap();
    c.create("A", "cn=UserA", &[]).unwrap();
    c.wait(DAY);
    c.restore("A", "nightly", Some(RestoreStrategy::Backsync))
        .unwrap();
    c.wait(DAY);
    let mut answered = c.backsync_answered("A").unwrap().expect("a backsync ran");
    answered.sort();
    // W has no connection at all, and answers; R is read-only, not asked.
    assert_eq!(answered, ["B", "W"]);
    assert!(has(&c, "A", "cn=UserA"));
    assert_eq!(c.state("A").unwrap(), "running");
}

#[test]
fn a_connection_with_windows_replicates_only_inside_them() {
    // Open on Sunday (time 0 of the week) from 02:00 to 03:00 only.
    let mut windows = WeekWindows::never();
    for q in 8..12 {
        windows.open(q);
    }
    let mut t = Topology::new().site("S", &["A", "B"]);
    t.connections.push(Connection {
        from: "A".into(),
        to: "B".into(),
        schedule: Some(15 * MIN),
        windows: Some(windows),
        latency: None,
    });
    let mut c = cluster(&t);
    c.create("A", "cn=Night", &[]).unwrap();
    c.wait(2 * HOUR - MIN);
    assert!(!has(&c, "B", "cn=Night"), "replicated while closed");
    c.wait(2 * MIN);
    assert!(
        has(&c, "B", "cn=Night"),
        "not replicated at the window start"
    );
    // A write at 04:00 waits for next Sunday's window.
    c.wait(2 * HOUR);
    c.create("A", "cn=Later", &[]).unwrap();
    c.wait(6 * DAY);
    assert!(!has(&c, "B", "cn=Later"));
    c.wait(DAY);
    assert!(has(&c, "B", "cn=Later"));
}

fn run_cli(file: &str, text: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("backsync-conn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_backsync"))
        .args(["run", path.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn connections_and_connectors_do_not_mix() {
    let text = r#"name = "mixed"
[[site]]
name = "A"
servers = ["S1"]
[[site]]
name = "B"
servers = ["S2"]
[[connector]]
between = ["A", "B"]
bridgeheads = ["S1", "S2"]
[[connection]]
from = "S1"
to = "S2"
"#;
    let o = run_cli("mixed.toml", text);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mixed.toml:11:"), "{err}");
    assert!(err.contains("do not mix"), "{err}");
}

#[test]
fn a_refused_write_on_a_read_only_server_is_a_step_that_can_expect_it() {
    let text = r#"name = "rodc"
[[site]]
name = "A"
servers = ["S1", "R1"]
read_only = ["R1"]
[[connection]]
from = "S1"
to = "R1"
[[step]]
do = "create"
server = "R1"
dn = "cn=X"
expect_refused = true
"#;
    let o = run_cli("rodc_ok.toml", text);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run_cli(
        "rodc_fail.toml",
        &text.replace("expect_refused = true\n", ""),
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("read-only"));
}
