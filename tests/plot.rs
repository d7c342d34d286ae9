//! The `--svg` plot measures every server against the reference of
//! `backsync::plot::REFERENCE`: these fail if it measured against a later
//! directory or against one server's table.

use backsync::Scenario;
use backsync::plot::{self, Series};
use backsync::run::{RunOptions, RunReport, run};

fn recorded(name: &str) -> RunReport {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::from_path(std::path::Path::new(&path)).expect("valid");
    let opts = RunOptions {
        record: true,
        ..RunOptions::default()
    };
    run(&s, &opts).expect("runs")
}

/// The distance of server `s` at `ms` (the last point at or before it).
fn at(data: &Series, s: usize, ms: u64) -> Option<usize> {
    data[s].iter().rev().find(|p| p.0 <= ms).expect("a point").1
}

fn idx(r: &RunReport, name: &str) -> usize {
    r.names.iter().position(|n| n == name).expect("a server")
}

fn step_ms(r: &RunReport, index: usize) -> u64 {
    r.steps[index].sim_ms
}

#[test]
fn naive_rollback_divergence_shows_until_the_end() {
    let r = recorded("naive_rollback.toml");
    let data = plot::series(&r);
    // From the write after the rollback (step 7) to the end, Server2 and
    // Server3 lack cn=AfterRollback: a reference taken from Server1's table
    // (or from the directory at the divergent end) would show them at 0.
    let after = step_ms(&r, 7);
    for s in ["Server2", "Server3"] {
        let i = idx(&r, s);
        for p in data[i].iter().filter(|p| p.0 >= after) {
            assert_eq!(p.1, Some(1), "{s} at {} ms: {:?}", p.0, data[i]);
        }
    }
    // Server1 holds every state any server holds: the merge.
    assert_eq!(at(&data, idx(&r, "Server1"), r.sim_ms), Some(0));
    // Right after the restore, Server1 lacks the 50 late objects.
    assert_eq!(at(&data, idx(&r, "Server1"), step_ms(&r, 5)), Some(50));
}

#[test]
fn remote_site_is_at_zero_between_its_convergences() {
    let r = recorded("remote_site.toml");
    let data = plot::series(&r);
    // Ten hours in, UserA is back on Server1, Server2 is down and nothing
    // else moves: every running server is at 0 (a reference taken from the
    // next converge step showed them all 1 apart for 17 hours).
    let ten_hours = 10 * 3_600_000;
    for (i, name) in r.names.iter().enumerate() {
        let want = if name == "Server2" { None } else { Some(0) };
        assert_eq!(at(&data, i, ten_hours), want, "{name}");
        assert_eq!(at(&data, i, r.sim_ms), Some(0), "{name} at the end");
    }
    // Just after its restore, Server1 lacks UserA.
    let restored = step_ms(&r, 8);
    assert!(
        data[idx(&r, "Server1")]
            .iter()
            .any(|p| p.0 >= restored && p.1 == Some(1))
    );
}

#[test]
fn periods_and_backsync_ends_come_from_the_run() {
    let r = recorded("remote_site.toml");
    let periods = plot::periods(&r);
    let restored = step_ms(&r, 8);
    let s1 = &periods[idx(&r, "Server1")];
    let b = s1
        .iter()
        .find(|p| p.mode == "backsync")
        .expect("a backsync period");
    assert_eq!(b.from, restored);
    // The 16 h timeout.
    assert_eq!(b.to - b.from, 16 * 3_600_000);
    let s2 = &periods[idx(&r, "Server2")];
    assert!(
        s2.iter()
            .any(|p| p.mode == "down" && p.to == step_ms(&r, 14))
    );
    assert_eq!(r.backsyncs[0].ended_ms, Some(b.to));
    assert_eq!(r.backsyncs[0].outcome, "gave up");
    let q = recorded("quarantine.toml");
    let p = plot::periods(&q);
    assert!(
        p[0].iter()
            .any(|p| p.mode == "quarantined" && p.to == q.sim_ms)
    );
    // And the quarantined server stays apart from the reference.
    assert!(at(&plot::series(&q), 0, q.sim_ms).unwrap() > 0);
}

#[test]
fn the_svg_states_its_reference_and_marks_steps_neutrally() {
    let r = recorded("naive_rollback.toml");
    let svg = plot::svg(&r).expect("draws");
    assert!(
        svg.contains("the merge (by the replication rules"),
        "reference"
    );
    // The divergent end is listed in the key as what it is.
    assert!(svg.contains("not converged within 6h"));
    // Markers in one neutral gray; no blue "converge" marker.
    assert!(svg.contains("#5A5A5A"));
    assert!(!svg.contains("#0000FF"), "no blue success marker");
    assert!(svg.contains("0:15"), "h:mm labels");
}
