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
        assert!(s.detail.starts_with("waited 9years"), "{}", s.detail);
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
