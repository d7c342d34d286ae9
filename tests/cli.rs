//! The command line, run as a user would: every scenario in `scenarios/`,
//! the invalid corpus, outputs, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn backsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backsync"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scenario(name: &str) -> String {
    root().join("scenarios").join(name).display().to_string()
}

/// Every shipped scenario, its exit code and lines its report must show.
const SHIPPED: &[(&str, i32, &[&str])] = &[
    (
        "authoritative_ou.toml",
        0,
        &[
            "deleted the tree ou=Sales on Server3",
            "Server1: authoritative restore raised the version of 3 objects by 200,000",
            "cn=Ann,ou=Sales is present on Server3",
            "ou=Engineering is present on Server1",
            "PASSED: all 19 steps",
        ],
    ),
    (
        "lab.toml",
        0,
        &[
            "scenario: Live lab: three servers in Redmond, one in Dublin",
            "PASSED: all 0 steps",
        ],
    ),
    (
        "authoritative_restore.toml",
        0,
        &[
            "Server1 restored from `nightly` with authoritative of the subtree `ou=Sales`",
            // 1d 11h 59m after the backup: two days' worth.
            "Server1: authoritative restore raised the version of 2 objects by 200,000",
            "cn=Ann,ou=Sales is present on Server3",
            "Server3 holds a tombstone of cn=Carl,ou=Eng",
            "cn=Dora,ou=Sales is present on Server1",
            "PASSED: all 21 steps",
        ],
    ),
    (
        "conformance/replica_sync_conflicts.toml",
        0,
        &[
            "refused as expected: cannot delete `OU=Test Parent Remote Conflict,DC=samba,DC=example,DC=com` on DC1: it has 1 live children",
            "PASSED: all 30 steps",
        ],
    ),
    (
        "conformance/replica_sync_lost_and_found.toml",
        0,
        &[
            "OU=Test Child,CN=LostAndFound is present on DC1",
            "refused as expected: `CN=LostAndFound` is a fixed container",
            "PASSED: all 20 steps",
        ],
    ),
    (
        "conformance/replica_sync_renames.toml",
        0,
        &[
            "OU=Test CASE Child,OU=Original parent 2,DC=samba,DC=example,DC=com is present on DC1",
            "PASSED: all 43 steps",
        ],
    ),
    ("conformance/repl_move.toml", 0, &["PASSED: all 33 steps"]),
    (
        "conformance/ds389_nested_entries.toml",
        0,
        &["PASSED: all 26 steps"],
    ),
    (
        "strict_replication.toml",
        0,
        &[
            "Server1: strict replication consistency: refuses replication from Server3 for the rest of the run, not heard from for 3d, past the tombstone lifetime of 2d (event 1988)",
            "diverged as expected: not converged within 1d",
            "cn=Doomed is present on Server3",
            "cn=Doomed is absent from Server1, as expected",
            "cn=Doomed is absent from Server2, as expected",
            "PASSED: all 11 steps",
        ],
    ),
    (
        "forest_restore.toml",
        0,
        &[
            "refused as expected: RODC01 is read-only",
            "backsync of HUB01 from 1m 18s: answered by HUB02 (1 object back), WIN02",
            "got replies from [HUB02, WIN02, WIN05-CNF-7d3a4e61, WIN09]",
            "PASSED: all 12 steps",
        ],
    ),
    (
        "read_only_branch.toml",
        0,
        &[
            "refused as expected: RODC1 is read-only: originating writes are refused",
            "backsync of DC1 from 1m 9s: answered by DC2 (1 object back), DC3 (0 objects back)",
            "the last backsync of DC1 got replies from [DC2, DC3] (expected [DC2, DC3])",
            "cn=UserA,ou=Users is present on RODC1",
            "PASSED: all 11 steps",
        ],
    ),
    (
        "kb_q190703.toml",
        0,
        &[
            "backsync answer from Server2",
            "backsync complete, 3 partners answered",
            "  backsync of Server1 from 20m 4s: answered by Server2 (1 object back), Server4 (0 objects back), Server3 (0 objects back); complete at 45m 2s",
            "  came back by backsync: 1 object (Server2: 1)",
            "  end: converged at step 7 (after 24m 59s)",
            "cn=UserA,ou=Users is present on Server1",
            "PASSED: all 9 steps",
        ],
    ),
    (
        "remote_site.toml",
        0,
        &[
            "backsync answer from Server3",
            "refused as expected",
            "backsync timed out, 2 answered, 1 never did",
            "  backsync of Server1 from 20m 4s: answered by Server3 (1 object back), Server4 (0 objects back); gave up at 16h 20m without Server2",
            "  came back by backsync: 1 object (Server3: 1)",
            "  lost for good: 0 acknowledged writes",
            "hazard: backsync-timeout: Server1: backsync gave up waiting for Server2: its own writes above USN 200",
            "PASSED",
        ],
    ),
    (
        "deleted_connector.toml",
        0,
        &[
            "connector Redmond - Dublin deleted",
            "cn=UserB,ou=Users is absent from Server1",
            "PASSED",
        ],
    ),
    (
        "naive_rollback.toml",
        0,
        &[
            "  restore at 10m: Server1 restored from `snapshot` with naive",
            "  end: not converged at step 8 (within 6h; as expected)",
            "diverged as expected",
            "PASSED",
        ],
    ),
    ("strategies.toml", 0, &["PASSED: all 11 steps"]),
    (
        "lingering_object.toml",
        0,
        &[
            "diverged as expected",
            "cn=Doomed is present on Server3",
            "hazard: tombstone-lifetime-exceeded: Server3 replicated from Server1 for the first time in 3d 5h",
            "PASSED",
        ],
    ),
    (
        "load_100k.toml",
        0,
        &[
            "100,000 writes applied",
            "Server1 holds 101000 live objects",
            "PASSED",
        ],
    ),
    (
        "name_conflict.toml",
        0,
        &["cn=Printer is present on Server1", "PASSED"],
    ),
    (
        "write_in_flight.toml",
        0,
        &[
            "hazard: write-in-flight-at-restore: S3 got a reply S4 sent before its restore",
            "diverged as expected",
            "0 acknowledged writes are lost (expected 0)",
            "PASSED",
        ],
    ),
    (
        "safe_backsync.toml",
        0,
        &[
            "S4 restored from `nightly` with safe-backsync",
            "S4: safe backsync complete, 3 partners answered",
            "cn=Late is present on S4",
            "cn=After is present on S3",
            "0 acknowledged writes are lost (expected 0)",
            "PASSED: all 13 steps",
        ],
    ),
    (
        "same_value_modify.toml",
        0,
        &[
            // Not at once: the new version of `mail` has to reach DC2.
            "ok     4  converge               30.06s  converged after 15.03s",
            "DC1: USN rollback detected",
            "diverged as expected",
            "PASSED",
        ],
    ),
    (
        "backsync_checks.toml",
        0,
        &[
            "Server1 is backsync (expected backsync)",
            "the last backsync of Server1 got replies from [Server3, Server4]",
            "Server1 holds a tombstone of cn=UserA,ou=Users",
            "0 acknowledged writes are lost (expected 0)",
            "PASSED: all 23 steps",
        ],
    ),
    (
        "relay_chain.toml",
        0,
        &[
            "the last backsync of W1 got replies from [W2] (expected [W2])",
            "diverged as expected: not converged within 1h",
            "W1: backsync answer from Z1",
            "W1: backsync complete, 7 partners answered",
            "the last backsync of W1 got replies from [W2, X1, X2, Y1, Y2, Z1, Z2]",
            "PASSED: all 21 steps",
        ],
    ),
    (
        "quarantine.toml",
        0,
        &[
            "USN rollback detected",
            "quarantined",
            "refused as expected",
            "PASSED",
        ],
    ),
];

#[test]
fn every_shipped_scenario_runs_with_its_exit_code_and_key_lines() {
    let listed: Vec<&str> = SHIPPED.iter().map(|s| s.0).collect();
    for dir in ["", "conformance/"] {
        for entry in std::fs::read_dir(root().join("scenarios").join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name == "forests" || name == "conformance" {
                continue; // the LDIF exports the scenarios import; read next
            }
            let name = format!("{dir}{name}");
            assert!(
                listed.contains(&name.as_str()),
                "{name} is not covered by this test"
            );
        }
    }
    for (name, code, lines) in SHIPPED {
        let o = backsync(&["run", &scenario(name)]);
        let out = stdout(&o);
        assert_eq!(
            o.status.code(),
            Some(*code),
            "{name}:\n{out}\n{}",
            stderr(&o)
        );
        for l in *lines {
            assert!(out.contains(l), "{name}: report lacks `{l}`:\n{out}");
        }
        // The outcome comes first, right after the two header lines.
        let sections: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(sections.get(3), Some(&"outcome"), "{name}:\n{out}");
        assert!(
            out.find("\noutcome\n") < out.find("\nsteps\n"),
            "{name}: the outcome is not first:\n{out}"
        );
    }
}

#[test]
fn no_arguments_runs_the_built_in_kb_scenario() {
    let o = backsync(&[]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("KB Q190703"), "{out}");
    assert!(out.contains("PASSED"), "{out}");
    // What the binary embeds is what the shipped file says: the same report
    // (apart from wall times) as running the file.
    let file = backsync(&["run", &scenario("kb_q190703.toml")]);
    assert_eq!(file.status.code(), Some(0));
    assert_eq!(without_wall_times(&out), without_wall_times(&stdout(&file)));
}

/// A text report with the convergence table's wall-ms column (the fourth
/// field from the end of each row) blanked: the one figure that varies.
fn without_wall_times(report: &str) -> String {
    let mut in_table = false;
    let mut out = String::new();
    for line in report.lines() {
        if line.trim().is_empty() {
            in_table = false;
        }
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        if in_table && fields.len() >= 4 {
            let k = fields.len() - 4;
            fields[k] = "_";
        }
        out.push_str(&fields.join(" "));
        out.push('\n');
        if line == "convergence" {
            in_table = true;
        }
    }
    out
}

#[test]
fn every_invalid_file_exits_2_naming_problem_and_place() {
    let dir = root().join("tests/invalid_scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let o = backsync(&["run", path.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", path.display());
        assert!(!err.contains("panicked"), "{}: {err}", path.display());
        assert!(o.stdout.is_empty(), "{}: no run may start", path.display());
        assert!(
            err.contains(path.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        if let Some(want) = text.lines().find_map(|l| l.strip_prefix("# expect: ")) {
            assert!(
                err.contains(want.trim()),
                "{}: `{want}` not in {err}",
                path.display()
            );
        }
        let c = backsync(&["check", path.to_str().unwrap()]);
        assert_eq!(c.status.code(), Some(2));
        n += 1;
    }
    assert!(n >= 15, "the corpus has {n} files");
}

#[test]
fn a_missing_file_exits_2_naming_the_path() {
    let o = backsync(&["run", "no/such/scenario.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no/such/scenario.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_command_lines_exit_2() {
    assert_eq!(backsync(&["run"]).status.code(), Some(2));
    assert_eq!(backsync(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        backsync(&["run", &scenario("kb_q190703.toml"), "--seed", "x"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn help_explains_every_command_with_an_example() {
    for cmd in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["compare", "--help"],
        &["campaign", "--help"],
        &["bench", "--help"],
    ] {
        let o = backsync(cmd);
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains("Example"), "{cmd:?}: {}", stdout(&o));
    }
}

#[test]
fn bench_names_its_exit_statuses_and_refuses_an_unknown_measurement() {
    // No test runs the measurements (they time things); the exit statuses
    // and the child protocol's refusal are checked without timing.
    let o = backsync(&["bench", "--help"]);
    assert!(stdout(&o).contains("1 a target missed"), "{}", stdout(&o));
    let o = backsync(&["bench", "--child", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown child kind nonsense"),
        "{}",
        stderr(&o)
    );
    let o = backsync(&["bench", "--child", "growth:many:3"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn check_validates_without_running() {
    let o = backsync(&["check", &scenario("kb_q190703.toml")]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("valid"));
}

fn strip_wall(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("wall_ms");
            m.values_mut().for_each(strip_wall);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_wall),
        _ => {}
    }
}

#[test]
fn same_file_and_seed_give_the_same_json_apart_from_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let p = dir.path().join(name);
        let o = backsync(&[
            "run",
            &scenario("strategies.toml"),
            "--seed",
            seed,
            "--json",
            p.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0));
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        strip_wall(&mut v);
        v
    };
    let a = run("a.json", "11");
    assert_eq!(a, run("b.json", "11"));
    assert_ne!(a, run("c.json", "12"), "the seed drives the load");
    assert_eq!(a["schema_version"], 1);
    for field in [
        "backsyncs",
        "scenario",
        "seed",
        "passed",
        "steps",
        "convergence",
        "servers",
        "lost_unreplicated",
    ] {
        assert!(a.get(field).is_some(), "json lacks {field}");
    }
    let c = &a["convergence"][0];
    for field in [
        "step",
        "converged",
        "sim_ms",
        "messages",
        "objects_sent",
        "objects_repaired",
    ] {
        assert!(c.get(field).is_some(), "convergence lacks {field}");
    }
    assert_eq!(a["steps"][0]["do"], "load");
}

#[test]
fn failing_steps_exit_1_run_to_the_end_and_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("failing.toml");
    std::fs::write(
        &p,
        r#"name = "two failures"
[[site]]
name = "A"
servers = ["S1", "S2"]
[[step]]
do = "create"
server = "S1"
dn = "cn=x"
[[step]]
do = "expect"
server = "S2"
dn = "cn=x"
present = true
[[step]]
do = "converge"
within = "1s"
[[step]]
do = "converge"
within = "1h"
[[step]]
do = "expect"
server = "S2"
objects = 5
"#,
    )
    .unwrap();
    let o = backsync(&["run", p.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED: 3 of 5 steps"), "{out}");
    assert!(out.contains("cn=x is missing from S2"), "{out}");
    assert!(out.contains("not converged within 1s"), "{out}");
    assert!(
        out.contains("S2 holds 1 live objects (expected 5)"),
        "{out}"
    );
}

#[test]
fn report_and_svg_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("r.md");
    let svg = dir.path().join("r.svg");
    let o = backsync(&[
        "run",
        &scenario("kb_q190703.toml"),
        "--report",
        md.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.starts_with("# KB Q190703"), "{md}");
    assert!(md.contains("| step | result |"));
    // The outcome first, then the plot's link, then the steps.
    let outcome = md.find("## Outcome").expect("an outcome section");
    assert!(outcome < md.find("## Steps").unwrap(), "{md}");
    assert!(
        md.contains("- came back by backsync: 1 object (Server2: 1)"),
        "{md}"
    );
    assert!(md.contains("Plot: [r.svg](r.svg)."), "{md}");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("Server1") && svg.contains("restore"));
}

#[test]
fn compare_shows_the_five_strategies_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("c.json");
    let o = backsync(&[
        "compare",
        &scenario("strategies.toml"),
        "--json",
        j.to_str().unwrap(),
    ]);
    // Naive rollback fails the file's checks: 1, as documented in `--help`.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |s: &str| compare_row(&out, s);
    assert!(row("backsync ").contains("converged"));
    assert!(row("new-invocation").contains("converged"));
    assert!(row("naive").contains("diverged"));
    assert!(row("full-resync").contains("converged"));
    assert!(row("authoritative").contains("converged"));
    assert!(row("safe-backsync").contains("converged"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(j).unwrap()).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 6);
    assert_eq!(v["schema_version"], 1);
    // Full resync copies the whole directory; backsync only what was lost.
    let sent = |i: usize| v["rows"][i]["objects_sent"].as_u64().unwrap();
    assert!(
        sent(3) > 3 * sent(0),
        "full-resync {} vs backsync {}",
        sent(3),
        sent(0)
    );
}

/// The line of a compare table that starts with `strategy`.
fn compare_row(out: &str, strategy: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(strategy))
        .unwrap_or_else(|| panic!("{strategy}:\n{out}"))
        .to_string()
}

#[test]
fn compare_shows_safe_backsync_surviving_the_write_in_flight_that_backsync_loses() {
    let o = backsync(&["compare", &scenario("safe_backsync.toml")]);
    // Backsync and naive fail the file's checks.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |s: &str| compare_row(&out, s);
    assert!(row("backsync ").contains("diverged"), "{out}");
    assert!(row("naive").contains("diverged"), "{out}");
    assert!(row("safe-backsync").contains("all passed"), "{out}");
}

#[test]
fn outputs_are_not_written_for_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("x.json");
    let bad = root().join("tests/invalid_scenarios");
    let first = std::fs::read_dir(&bad)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = backsync(&[
        "run",
        first.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!Path::new(&j).exists());
}

#[test]
fn out_of_bounds_inputs_exit_2_quickly_without_a_panic() {
    let dir = root().join("tests/invalid_scenarios");
    for file in [
        "bound_load_creates_huge.toml",
        "bound_reply_timeout_zero.toml",
        "bound_wait_fifty_years.toml",
    ] {
        let path = dir.join(file);
        let start = std::time::Instant::now();
        let o = backsync(&["run", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{file}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(
            start.elapsed().as_secs() < 5,
            "{file} took {:?}",
            start.elapsed()
        );
    }
    for (arg, value) in [
        ("--seeds", "10000001"),
        ("--shrink", "1001"),
        ("--shrink-budget", "100001"),
        ("--objects", "1000001"),
        ("--servers", "65"),
        ("--jobs", "1025"),
        ("--shard", "0/1000001"),
        ("--shard", "2/2"),
    ] {
        let o = backsync(&["campaign", arg, value]);
        assert_eq!(o.status.code(), Some(2), "{arg} {value}: {}", stderr(&o));
        assert!(stderr(&o).contains(arg), "{arg}: {}", stderr(&o));
    }
}

#[test]
fn json_steps_carry_their_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kb.json");
    let o = backsync(&[
        "run",
        &scenario("kb_q190703.toml"),
        "--json",
        p.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 9);
    for s in steps {
        assert!(s["wall_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{s}");
    }
}

/// The campaign's JSON carries the hazards by kind and the oracle's counts;
/// `--no-hazards` generates none.
#[test]
fn campaign_json_counts_hazards_and_losses() {
    let dir = tempfile::tempdir().unwrap();
    let read = |name: &str, extra: &[&str]| {
        let p = dir.path().join(name);
        let mut args = vec![
            "campaign",
            "--seeds",
            "30",
            "--first-seed",
            "7000",
            "--servers",
            "4",
            "--objects",
            "60",
            "--shrink",
            "0",
            "--json",
        ];
        let path = p.to_str().unwrap().to_string();
        args.push(&path);
        args.extend_from_slice(extra);
        let o = backsync(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["summary"].clone()
    };
    let on = read("on.json", &[]);
    let kinds = on["hazards"].as_object().unwrap();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds.values().map(|n| n.as_u64().unwrap()).sum::<u64>() > 0);
    assert_eq!(on["silent_losses"], 0);
    let off = read("off.json", &["--no-hazards"]);
    assert!(off["hazards"].as_object().unwrap().values().all(|n| n == 0));
    assert_eq!(
        (
            off["announced_losses"].clone(),
            off["silent_losses"].clone()
        ),
        (0.into(), 0.into())
    );
}

/// Output piped into a reader that stops early ends quietly: no panic, no
/// message (the process ends by SIGPIPE, as other Unix filters do).
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_quietly() {
    let bin = env!("CARGO_BIN_EXE_backsync");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{bin}' campaign --seeds 300 --servers 2 --objects 5 --strategy naive --shrink 0 | head -1"
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

#[test]
fn compare_exits_0_only_when_every_strategy_passes() {
    let o = backsync(&["compare", &scenario("kb_q190703.toml"), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .lines()
            .filter(|l| l.ends_with("all passed"))
            .count()
            == 6
    );
    assert!(backsync(&["compare", "--help"]).status.success());
    let help = stdout(&backsync(&["compare", "--help"]));
    assert!(help.contains("exit 0 every strategy passed its steps, 1 at least one failed"));
}

#[test]
fn a_dash_sends_json_to_stdout_and_the_report_to_stderr() {
    let o = backsync(&["run", &scenario("kb_q190703.toml"), "--json", "-"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON alone");
    assert_eq!(v["passed"], true);
    assert!(stderr(&o).contains("PASSED: all 9 steps"));
    assert!(!Path::new("-").exists(), "no file named `-`");

    let o = backsync(&["compare", &scenario("kb_q190703.toml"), "--json", "-"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON alone");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(6));

    let o = backsync(&[
        "run",
        &scenario("kb_q190703.toml"),
        "--json",
        "-",
        "--report",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("only one of --json, --report, --svg and --showrepl can be `-`"));
    assert!(o.stdout.is_empty());
}

/// Logs at `-v` and above, with the colour setting and environment given.
fn logs(color: &[&str], no_color: Option<&str>) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_backsync"));
    c.args(["run", &scenario("kb_q190703.toml"), "-v"])
        .args(color)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let o = c.output().expect("the binary runs");
    assert!(o.status.success());
    stderr(&o)
}

#[test]
fn colour_only_on_a_terminal_unless_asked_and_never_with_no_color() {
    const ESC: char = '\u{1b}';
    // stderr is a pipe here: auto means no colour.
    let plain = logs(&[], None);
    assert!(plain.contains("INFO"), "-v shows info logs:\n{plain}");
    assert!(!plain.contains(ESC));
    assert!(logs(&["--color", "always"], None).contains(ESC));
    assert!(!logs(&["--color", "never"], None).contains(ESC));
    assert!(!logs(&["--color", "auto"], Some("1")).contains(ESC));
}

#[test]
fn quiet_and_verbose_set_the_log_level() {
    let quiet = backsync(&["-q", "run", &scenario("kb_q190703.toml")]);
    assert!(quiet.status.success());
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));
    assert!(stdout(&quiet).contains("PASSED"), "-q keeps the report");
    let normal = backsync(&["run", &scenario("kb_q190703.toml")]);
    assert!(!stderr(&normal).contains("INFO"));
    let debug = backsync(&["run", &scenario("kb_q190703.toml"), "-vv"]);
    assert!(stderr(&debug).contains("DEBUG"));
    assert!(!stderr(&backsync(&["run", &scenario("kb_q190703.toml"), "-v"])).contains("DEBUG"));
    let both = backsync(&["run", &scenario("kb_q190703.toml"), "-q", "-v"]);
    assert_eq!(both.status.code(), Some(2), "-q and -v conflict");
}

/// A small naive campaign (caught, exit 1) through the binary.
fn naive_campaign(extra: &[&str]) -> Output {
    let mut args = vec![
        "campaign",
        "--seeds",
        "12",
        "--servers",
        "4",
        "--objects",
        "60",
        "--strategy",
        "naive",
        "--shrink",
        "0",
    ];
    args.extend_from_slice(extra);
    let o = backsync(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    o
}

/// The lines naming a failing seed (`seed 3: 41 violations (...)`).
fn seed_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("seed ") && l.contains(" violation"))
        .collect()
}

/// The summary comes first; then at most `--show` failing seeds, one line
/// each naming its invariants, and a line saying how many more there are.
#[test]
fn campaign_shows_the_summary_then_at_most_show_failing_seeds() {
    let o = naive_campaign(&["--show", "2"]);
    let out = stdout(&o);
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle} in\n{out}"))
    };
    assert!(
        at("summary\n") < at("failing seeds: the lowest 2 of "),
        "{out}"
    );
    let seeds = seed_lines(&out);
    assert_eq!(seeds.len(), 2, "{out}");
    assert!(seeds[0].contains("convergence"), "{out}");
    let failing: usize = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("violations"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a violations line");
    assert!(failing > 2, "{out}");
    let more = format!("{} more failing seeds not shown", failing - 2);
    assert!(out.contains(&more), "{more} in\n{out}");
    assert!(out.contains("--json OUT.json (or --json - for stdout) has all of them"));
    // One reproduction command per seed shown, and every line but the
    // copyable commands fits 100 columns... as long as the details allow:
    // the summary's do.
    assert_eq!(out.matches("  reproduce: backsync campaign").count(), 2);
    let summary = &out[at("summary\n")..at("failing seeds")];
    for l in summary.lines().filter(|l| !l.contains("backsync campaign")) {
        assert!(l.chars().count() <= 100, "{l}");
    }

    let none = stdout(&naive_campaign(&["--show", "0"]));
    assert!(seed_lines(&none).is_empty(), "{none}");
    assert!(!none.contains("failing seeds:"), "{none}");
    assert!(
        none.contains(&format!("{failing} failing seeds not shown")),
        "{none}"
    );

    // The default shows 10 at most.
    let all = stdout(&naive_campaign(&[]));
    assert_eq!(seed_lines(&all).len(), failing.min(10), "{all}");
}

/// No raw milliseconds: simulated times are short durations (`13h 49m`).
#[test]
fn campaign_times_are_short_durations() {
    let out = stdout(&naive_campaign(&["--show", "12"]));
    let raw_ms = out
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0].chars().all(|c| c.is_ascii_digit()) && !w[0].is_empty() && w[1] == "ms");
    assert!(!raw_ms, "{out}");
    assert!(out.contains("after healing (bound "), "{out}");
    assert!(!out.contains(" ms"), "{out}");
}

/// `--json -` writes the JSON, all failing seeds included, to stdout and
/// the text to stderr.
#[test]
fn campaign_json_dash_is_valid_json_on_stdout() {
    let o = naive_campaign(&["--json", "-", "--show", "1"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(v["schema_version"], 1);
    let failing = v["summary"]["violating_seeds"].as_array().unwrap().len();
    assert!(failing > 1);
    assert_eq!(v["failures"].as_array().unwrap().len(), failing);
    let err = stderr(&o);
    assert!(err.contains("summary\n"), "{err}");
    assert_eq!(seed_lines(&err).len(), 1, "{err}");
    assert!(err.contains("the JSON on stdout has all of them"), "{err}");
}

/// A campaign's text and JSON do not depend on `--jobs` (wall times aside).
#[test]
fn campaign_output_does_not_depend_on_jobs() {
    let run = |jobs: &str| {
        let o = naive_campaign(&["--jobs", jobs, "--json", "-"]);
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for k in ["wall_s", "core_s", "seeds_per_core_s"] {
            v["summary"][k] = 0.into();
        }
        let text: Vec<String> = stderr(&o)
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                !l.starts_with("seeds ") && !l.starts_with("throughput ")
            })
            .map(str::to_string)
            .collect();
        (v, text)
    };
    assert_eq!(run("1"), run("2"));
}

/// Counts read "1 seed", "1 site", never "1 seeds".
#[test]
fn campaign_counts_are_singular_for_one() {
    let o = backsync(&[
        "campaign",
        "--seeds",
        "1",
        "--first-seed",
        "3",
        "--servers",
        "2",
        "--sites",
        "1",
        "--objects",
        "1",
        "--no-hazards",
    ]);
    let out = stdout(&o);
    assert!(
        out.starts_with("backsync campaign: 1 seed from 3, 2 servers in 1 site, 1 object,"),
        "{out}"
    );
    assert!(
        out.contains("  seeds          1 seed (seed 3) in "),
        "{out}"
    );
    assert!(out.contains("1 run"), "{out}");
    for wrong in [
        "1 seeds",
        "1 sites",
        "1 objects",
        "1 runs",
        "1 crashes",
        "1 restores",
    ] {
        assert!(!out.contains(&format!(" {wrong}")), "{wrong} in\n{out}");
    }
}

#[test]
fn showrepl_writes_repadmins_csv_with_failures_of_a_partner_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("down.toml");
    std::fs::write(
        &file,
        r#"name = "Server2 down at the end"
seed = 3
[[site]]
name = "Redmond"
servers = ["Server1", "Server2"]
[[site]]
name = "Dublin"
servers = ["Server3"]
[[connector]]
between = ["Redmond", "Dublin"]
bridgeheads = ["Server2", "Server3"]
[[step]]
do = "create"
server = "Server1"
dn = "cn=A"
[[step]]
do = "converge"
within = "1h"
[[step]]
do = "crash"
server = "Server2"
[[step]]
do = "wait"
for = "1d"
"#,
    )
    .unwrap();
    let csv = dir.path().join("showrepl.csv");
    let o = backsync(&[
        "run",
        file.to_str().unwrap(),
        "--showrepl",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "showrepl_COLUMNS,Destination DSA Site,Destination DSA,Naming Context,Source DSA Site,Source DSA,Transport Type,Number of Failures,Last Failure Time,Last Success Time,Last Failure Status"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // One row per inbound link: Server1<-Server2, Server2<-Server1,
    // Server2<-Server3, Server3<-Server2. The naming context is quoted, so
    // it splits into two fields here: 12 in all.
    assert_eq!(rows.len(), 4, "{text}");
    for r in &rows {
        assert_eq!(r.len(), 12, "{r:?}");
        assert_eq!(r[0], "showrepl_INFO");
        assert_eq!(r[7], "RPC");
    }
    let row = |dest: &str, src: &str| {
        rows.iter()
            .find(|r| r[2] == dest && r[6] == src)
            .unwrap_or_else(|| panic!("{dest} <- {src} in\n{text}"))
    };
    // Partners of the crashed Server2 keep failing: 1722, several failures.
    for dest in ["Server1", "Server3"] {
        let r = row(dest, "Server2");
        assert!(r[8].parse::<u32>().unwrap() >= 2, "{r:?}");
        assert!(r[9].starts_with("2026-01-0"), "{r:?}");
        assert_eq!(r[11], "1722", "{r:?}");
    }
    // The crashed server's own links last succeeded before the crash.
    let r = row("Server2", "Server1");
    assert_eq!((r[8], r[9], r[11]), ("0", "0", "0"), "{r:?}");
    assert!(r[10].starts_with("2026-01-04 00:"), "{r:?}");
}

#[test]
fn import_writes_a_scenario_that_check_accepts_and_summarises_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("forest.toml");
    let ldif = root().join("scenarios/forests/branch-offices.ldif");
    let o = backsync(&[
        "import",
        ldif.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains(
            "3 sites, 6 servers (1 read-only), 6 connections (1 disabled, 1 RODC-topology skipped), 2 site links"
        ),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("read_only = [\"RODC01\"]"), "{text}");
    assert!(!text.contains("[[step]]"));
    let c = backsync(&["check", out.to_str().unwrap()]);
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    assert!(stdout(&c).contains("6 servers in 3 sites, 6 connections, 0 steps"));
    // Without --out, the scenario is the whole of stdout.
    let o = backsync(&["import", ldif.to_str().unwrap()]);
    assert_eq!(stdout(&o), text);
}

#[test]
fn a_bad_forest_exits_2_naming_file_line_and_entry_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.toml");
    let bad = root().join("tests/fixtures/forests/invalid-schedule-size.ldif");
    let o = backsync(&[
        "import",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("invalid-schedule-size.ldif:79: entry `CN=1b6b9e01-0000-0000-0000-000000000001,CN=NTDS Settings,CN=WIN01"), "{e}");
    assert!(e.contains("a SCHEDULE of 180 bytes, not 188"), "{e}");
    assert!(!out.exists());

    // The same file named by a scenario's `import`: the scenario's line and
    // field, then the LDIF's file, line and entry.
    let scen = dir.path().join("s.toml");
    std::fs::write(
        &scen,
        format!("name = \"x\"\nimport = {:?}\n", bad.to_str().unwrap()),
    )
    .unwrap();
    let o = backsync(&["check", scen.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("s.toml:2:10: field `import`: "), "{e}");
    assert!(
        e.contains("invalid-schedule-size.ldif:79: entry `CN="),
        "{e}"
    );

    // `import` with a hand-written topology is refused at the table.
    std::fs::write(
        &scen,
        "name = \"x\"\nimport = \"f.ldif\"\n[[site]]\nname = \"A\"\nservers = [\"S1\"]\n",
    )
    .unwrap();
    let o = backsync(&["check", scen.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("field `site`: `[[site]]` cannot be used with `import`"),
        "{}",
        stderr(&o)
    );
}
