//! Scenarios run through `backsync::run`: what the steps report, checked
//! against the simulated clock.

use backsync::Scenario;
use backsync::run::{RunOptions, RunReport, run};

const DAY_MS: u64 = 86_400_000;

/// One site, no connector: few timers, so decades of simulated time are cheap.
const ONE_SITE: &str = r#"name = "t"
[[site]]
name = "Redmond"
servers = ["Server1", "Server2"]
[replication]
reply_timeout = "1d"
"#;

fn run_with(head: &str, steps: &str) -> RunReport {
    let s = Scenario::from_str(&format!("{head}{steps}"), "t.toml").expect("valid");
    run(&s, &RunOptions::default()).expect("runs")
}

fn step(body: &str) -> String {
    format!("[[step]]\n{body}\n")
}

const CONVERGE_1D: &str = "do = \"converge\"\nwithin = \"1d\"";

/// One site of two servers, then these steps.
fn pair(steps: &[&str]) -> String {
    let steps: String = steps.iter().map(|s| step(s)).collect();
    format!(
        "name = \"pair\"\n[[site]]\nname = \"Redmond\"\nservers = [\"Server1\", \"Server2\"]\n{steps}"
    )
}

#[test]
fn waits_past_the_timer_horizon_pass_as_their_sum() {
    // Four waits of ten years: 40 years, past tokio's 30-year horizon.
    let steps: String = (0..4)
        .map(|_| step("do = \"wait\"\nfor = \"3650d\""))
        .collect();
    let r = run_with(ONE_SITE, &steps);
    assert!(r.passed, "{:?}", r.failures);
    for (i, s) in r.steps.iter().enumerate() {
        assert_eq!(s.sim_ms, (i as u64 + 1) * 3650 * DAY_MS, "{s:?}");
        assert!(s.detail.starts_with("waited 3650d"), "{}", s.detail);
    }
    assert_eq!(r.sim_ms, 4 * 3650 * DAY_MS);
}

#[test]
fn a_long_converge_limit_is_waited_in_full_when_nothing_converges() {
    let steps = [
        step("do = \"partition\"\ngroups = [[\"Server1\"], [\"Server2\"]]"),
        step("do = \"create\"\nserver = \"Server1\"\ndn = \"cn=A\""),
        step("do = \"converge\"\nwithin = \"3650d\"\nexpect = \"diverged\""),
    ]
    .concat();
    let r = run_with(ONE_SITE, &steps);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.convergence[0].figures.sim_ms, 3650 * DAY_MS);
    assert_eq!(r.sim_ms, 3650 * DAY_MS);
}

/// Two sites of the KB story: Server1 is restored with backsync.
const KB: &str = r#"name = "kb"
[[site]]
name = "Redmond"
servers = ["Server1", "Server2"]
[[site]]
name = "Dublin"
servers = ["Server3", "Server4"]
[[connector]]
between = ["Redmond", "Dublin"]
bridgeheads = ["Server2", "Server3"]
[[step]]
do = "backup"
server = "Server1"
name = "nightly"
[[step]]
do = "create"
server = "Server1"
dn = "cn=UserA"
[[step]]
do = "converge"
within = "2h"
[[step]]
do = "crash"
server = "Server1"
[[step]]
do = "expect"
server = "Server1"
state = "down"
[[step]]
do = "restore"
server = "Server1"
backup = "nightly"
strategy = "backsync"
[[step]]
do = "expect"
server = "Server1"
state = "backsync"
[[step]]
do = "converge"
within = "2h"
[[step]]
do = "expect"
server = "Server1"
state = "running"
"#;

/// Runs `head` + `steps`; gives each step's (ok, detail) from the first
/// step of `steps` on.
fn outcomes(head: &str, steps: &str) -> Vec<(bool, String)> {
    let before = head.matches("[[step]]").count();
    let r = run_with(head, steps);
    let head_failures: Vec<_> = r.steps[..before].iter().filter(|s| !s.ok).collect();
    assert!(head_failures.is_empty(), "{head_failures:?}");
    r.steps[before..]
        .iter()
        .map(|s| (s.ok, s.detail.clone()))
        .collect()
}

#[test]
fn expect_state_follows_crash_restore_and_backsync() {
    let r = run_with(KB, "");
    assert!(r.passed, "{:?}", r.failures);
    let wrong = step("do = \"expect\"\nserver = \"Server2\"\nstate = \"quarantined\"");
    let o = outcomes(KB, &wrong);
    assert!(!o[0].0, "{o:?}");
    assert_eq!(o[0].1, "Server2 is running (expected quarantined)");
}

#[test]
fn expect_state_sees_a_quarantine() {
    let head = r#"name = "q"
[[site]]
name = "Redmond"
servers = ["Server1", "Server2"]
[replication]
rollback_detection = true
[[step]]
do = "backup"
server = "Server1"
name = "nightly"
[[step]]
do = "create"
server = "Server1"
dn = "cn=AfterBackup"
[[step]]
do = "converge"
within = "1d"
[[step]]
do = "restore"
server = "Server1"
backup = "nightly"
strategy = "naive"
[[step]]
do = "wait"
for = "1h"
"#;
    let o = outcomes(
        head,
        &[
            step("do = \"expect\"\nserver = \"Server1\"\nstate = \"quarantined\""),
            step("do = \"expect\"\nserver = \"Server1\"\nstate = \"running\""),
        ]
        .concat(),
    );
    assert_eq!(
        o[0],
        (true, "Server1 is quarantined (expected quarantined)".into())
    );
    assert!(!o[1].0, "{o:?}");
}

#[test]
fn expect_answered_by_compares_the_set_of_partners_that_replied() {
    let steps = [
        step("do = \"expect\"\nserver = \"Server1\"\nanswered_by = [\"Server4\", \"Server2\", \"Server3\"]"),
        step("do = \"expect\"\nserver = \"Server1\"\nanswered_by = [\"Server2\", \"Server3\"]"),
        step("do = \"expect\"\nserver = \"Server2\"\nanswered_by = []"),
    ]
    .concat();
    let o = outcomes(KB, &steps);
    assert!(o[0].0, "{o:?}");
    assert!(!o[1].0, "{o:?}");
    assert!(
        o[1].1
            .contains("got replies from [Server2, Server3, Server4]"),
        "{o:?}"
    );
    // Server2 never ran a backsync: no set of replies matches, not even none.
    assert!(!o[2].0, "{o:?}");
    assert!(o[2].1.contains("has run no backsync"), "{o:?}");
}

#[test]
fn expect_answered_by_is_empty_when_no_partner_answers_in_time() {
    // Server1's partners are all cut off: its backsync times out unanswered.
    let head = r#"name = "alone"
[[site]]
name = "Redmond"
servers = ["Server1", "Server2"]
[replication]
backsync_timeout = "1h"
[[step]]
do = "backup"
server = "Server1"
name = "nightly"
[[step]]
do = "partition"
groups = [["Server1"], ["Server2"]]
[[step]]
do = "restore"
server = "Server1"
backup = "nightly"
strategy = "backsync"
[[step]]
do = "wait"
for = "2h"
"#;
    let steps = [
        step("do = \"expect\"\nserver = \"Server1\"\nanswered_by = []"),
        step("do = \"expect\"\nserver = \"Server1\"\nanswered_by = [\"Server2\"]"),
    ]
    .concat();
    let o = outcomes(head, &steps);
    assert!(o[0].0, "{o:?}");
    assert!(!o[1].0, "{o:?}");
}

#[test]
fn expect_tombstone_of_a_deleted_object() {
    let head = pair(&[
        "do = \"create\"\nserver = \"Server1\"\ndn = \"cn=Gone\"",
        "do = \"create\"\nserver = \"Server1\"\ndn = \"cn=Kept\"",
        CONVERGE_1D,
        "do = \"delete\"\nserver = \"Server1\"\ndn = \"cn=Gone\"",
        CONVERGE_1D,
    ]);
    let head = head.as_str();
    let steps = [
        step("do = \"expect\"\nserver = \"Server2\"\ndn = \"cn=Gone\"\ntombstone = true"),
        step("do = \"expect\"\nserver = \"Server2\"\ndn = \"cn=Kept\"\ntombstone = true"),
        step("do = \"expect\"\nserver = \"Server2\"\ndn = \"cn=Never\"\ntombstone = true"),
    ]
    .concat();
    let o = outcomes(head, &steps);
    assert!(o[0].0, "{o:?}");
    assert_eq!(
        o[1],
        (false, "cn=Kept is live on Server2, not a tombstone".into())
    );
    assert_eq!(
        o[2],
        (false, "Server2 holds no tombstone of cn=Never".into())
    );
}

#[test]
fn lost_unreplicated_counts_what_is_lost_at_this_moment() {
    let head = pair(&[
        "do = \"create\"\nserver = \"Server1\"\ndn = \"cn=A\"",
        CONVERGE_1D,
        "do = \"backup\"\nserver = \"Server2\"\nname = \"b2\"",
    ]);
    let head = head.as_str();
    let steps = [
        // A is on Server1 and in Server2's backup.
        step("do = \"crash\"\nserver = \"Server2\""),
        step("do = \"crash\"\nserver = \"Server1\""),
        // No running server holds A, but a backup that can be restored does.
        step("do = \"expect\"\nlost_unreplicated = 0"),
        step("do = \"expect\"\nlost_unreplicated = 1"),
        // A comes back from the backup; B, written while Server1 is down,
        // is on Server2 only, and in no backup once Server2 crashes.
        step("do = \"restore\"\nserver = \"Server2\"\nbackup = \"b2\"\nstrategy = \"new-invocation\""),
        step("do = \"expect\"\nserver = \"Server2\"\ndn = \"cn=A\"\npresent = true"),
        step("do = \"create\"\nserver = \"Server2\"\ndn = \"cn=B\""),
        step("do = \"expect\"\nlost_unreplicated = 0"),
        step("do = \"crash\"\nserver = \"Server2\""),
        step("do = \"expect\"\nlost_unreplicated = 1"),
    ]
    .concat();
    let o = outcomes(head, &steps);
    for (i, (ok, detail)) in o.iter().enumerate() {
        assert_eq!(*ok, i != 3, "step {i}: {detail}");
    }
    assert_eq!(o[2].1, "0 acknowledged writes are lost (expected 0)");
    assert_eq!(o[9].1, "1 acknowledged writes are lost (expected 1)");
    let r = run_with(head, &steps);
    assert_eq!(r.lost_unreplicated, 1);
}

#[test]
fn converge_fails_past_max_sim_or_max_objects_sent() {
    let head = r#"name = "bounds"
[[site]]
name = "Redmond"
servers = ["Server1", "Server2", "Server3"]
[[step]]
do = "load"
creates = 10
"#;
    let r = run_with(head, &step("do = \"converge\"\nwithin = \"1d\""));
    let sent = r.convergence[0].figures.objects_sent;
    assert!(sent >= 20, "ten objects to two partners: {sent}");
    let o = outcomes(
        head,
        &step(&format!(
            "do = \"converge\"\nwithin = \"1d\"\nmax_sim = \"1h\"\nmax_objects_sent = {sent}"
        )),
    );
    assert!(o[0].0, "{o:?}");
    let o = outcomes(
        head,
        &step("do = \"converge\"\nwithin = \"1d\"\nmax_sim = \"1s\""),
    );
    assert!(!o[0].0, "{o:?}");
    assert!(o[0].1.contains("more than max_sim 1s"), "{o:?}");
    let o = outcomes(
        head,
        &step(&format!(
            "do = \"converge\"\nwithin = \"1d\"\nmax_objects_sent = {}",
            sent - 1
        )),
    );
    assert!(!o[0].0, "{o:?}");
    let want = format!(
        "sent {sent} objects, more than max_objects_sent {}",
        sent - 1
    );
    assert!(o[0].1.contains(&want), "{o:?}");
}

#[test]
fn every_step_reports_its_wall_time() {
    let r = run_with(KB, "");
    let json = serde_json::to_value(&r).unwrap();
    for s in json["steps"].as_array().unwrap() {
        let ms = s["wall_ms"].as_f64().expect("wall_ms is a number");
        assert!(ms >= 0.0, "{s}");
    }
}

/// quarantine.toml's story, then the operator's `release`: the server runs
/// again, and its first write reuses a USN its partner already saw, so the
/// partner never pulls it (the divergence the release risks).
const RELEASE: &str = r#"name = "Released after a USN rollback"
seed = 9
profile = "ad"

[replication]
rollback_detection = true

[[site]]
name = "Redmond"
servers = ["DC1", "DC2"]

[[step]]
do = "load"
creates = 100

[[step]]
do = "converge"
within = "1h"

[[step]]
do = "release"
server = "DC1"
expect_refused = true

[[step]]
do = "backup"
server = "DC1"
name = "snapshot"

[[step]]
do = "load"
servers = ["DC1"]
creates = 10
prefix = "late"

[[step]]
do = "converge"
within = "1h"

[[step]]
do = "restore"
server = "DC1"
backup = "snapshot"
strategy = "naive"

[[step]]
do = "wait"
for = "10m"

[[step]]
do = "expect"
server = "DC1"
state = "quarantined"

[[step]]
do = "release"
server = "DC1"

[[step]]
do = "expect"
server = "DC1"
state = "running"

[[step]]
do = "create"
server = "DC1"
dn = "cn=AfterRelease"

[[step]]
do = "converge"
within = "1h"
expect = "diverged"

[[step]]
do = "expect"
server = "DC2"
dn = "cn=AfterRelease"
present = false
"#;

#[test]
fn release_returns_a_quarantined_server_to_service_and_risks_divergence() {
    let s = Scenario::from_str(RELEASE, "release.toml").expect("valid");
    let r = run(&s, &RunOptions::default()).expect("runs");
    assert!(r.passed, "{:?}", r.failures);
    let details: Vec<&str> = r.steps.iter().map(|s| s.detail.as_str()).collect();
    assert!(
        details[2].starts_with("refused as expected: DC1 is not quarantined (it is running)"),
        "{}",
        details[2]
    );
    assert_eq!(details[9], "DC1 released from quarantine");
    assert!(
        r.events.iter().any(|e| e.text
            == "DC1: released from quarantine by an operator at USN 100: DC2 has seen its USNs up to 110, and writes made under USNs it already saw will never replicate to it"),
        "{:?}",
        r.events
    );
    // Without `expect_refused`, releasing a running server fails the step.
    let again = RELEASE.replace(
        "do = \"release\"\nserver = \"DC1\"\nexpect_refused = true",
        "do = \"release\"\nserver = \"DC1\"",
    );
    let s = Scenario::from_str(&again, "release.toml").expect("valid");
    let r = run(&s, &RunOptions::default()).expect("runs");
    assert!(!r.passed);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
}

#[test]
fn without_strict_replication_the_lingering_object_spreads_back() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/strict_replication.toml"
    ))
    .expect("shipped");
    let loose = text.replace("strict_replication = true", "strict_replication = false");
    assert_ne!(loose, text);
    let s = Scenario::from_str(&loose, "loose.toml").expect("valid");
    let r = run(&s, &RunOptions::default()).expect("runs");
    // The modify on Server3 carries the object back to both partners.
    let failed: Vec<usize> = r
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.ok)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, [7, 9, 10], "{:?}", r.failures);
    assert!(r.events.iter().all(|e| !e.text.contains("event 1988")));
}
