//! Campaigns split into shards and merged (issue 14), through the binary
//! as a fleet runs it: local processes, one per shard, records files,
//! `campaign merge`. The reference is one process running the same seeds,
//! which never writes or reads a record: the merge must give its summary,
//! failing seeds, exit status and JSON, wall-clock figures aside.

use std::path::Path;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_backsync"));
    c.env_remove("RUST_LOG").env("NO_COLOR", "1");
    c
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small campaign's options (4 servers, 60 objects: a few ms per seed).
fn campaign(strategy: &str, seeds: u64) -> Vec<String> {
    [
        "campaign",
        "--seeds",
        &seeds.to_string(),
        "--first-seed",
        "500",
        "--servers",
        "4",
        "--objects",
        "60",
        "--strategy",
        strategy,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

fn run(dir: &Path, args: &[String]) -> Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in(dir, &a)
}

/// The text from `summary` on, without the two lines of wall-clock figures.
fn verdict(out: &str) -> String {
    let at = out
        .find("summary\n")
        .unwrap_or_else(|| panic!("a summary in\n{out}"));
    out[at..]
        .lines()
        .filter(|l| !l.starts_with("  seeds ") && !l.starts_with("  throughput "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON without the wall-clock figures.
fn json_verdict(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let s = v["summary"].as_object_mut().unwrap();
    for k in ["wall_s", "core_s", "seeds_per_core_s"] {
        assert!(
            s.remove(k).and_then(|x| x.as_f64()).is_some(),
            "{k} in {path:?}"
        );
    }
    v
}

/// The seeds recorded in a records file, in file order.
fn seeds_in(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["result"]["seed"].as_u64().unwrap()
        })
        .collect()
}

/// One process, then two shards merged, in two directories with the same
/// relative paths (so the shrunk files' names in the text and JSON agree).
fn single_and_merged(strategy: &str, seeds: u64) -> (Output, Output, TempDir, TempDir) {
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, two) = (one_dir.path(), two_dir.path());
    let base = campaign(strategy, seeds);
    let outputs = [
        "--json",
        "out.json",
        "--shrink",
        "2",
        "--shrink-dir",
        "shrunk",
        "--show",
        "4",
    ];
    let single = run(one, &with(&base, &outputs));
    for (i, f) in [(0, "a.jsonl"), (1, "b.jsonl")] {
        let shard = format!("{i}/2");
        let o = run(
            two,
            &with(
                &base,
                &[
                    "--shard", &shard, "--jsonl", f, "--shrink", "0", "--show", "0",
                ],
            ),
        );
        assert_eq!(
            o.status.code(),
            single.status.code(),
            "shard {shard}: {}",
            text(&o.stderr)
        );
    }
    // The shards split the range exactly: every index's parity is its shard.
    let (a, b) = (
        seeds_in(&two.join("a.jsonl")),
        seeds_in(&two.join("b.jsonl")),
    );
    assert!(a.iter().all(|s| (s - 500) % 2 == 0), "{a:?}");
    assert!(b.iter().all(|s| (s - 500) % 2 == 1), "{b:?}");
    let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (500..500 + seeds).collect::<Vec<_>>());
    let mut merge = vec!["campaign", "merge", "b.jsonl", "a.jsonl"];
    merge.extend(outputs);
    let merged = run_in(two, &merge);
    (single, merged, one_dir, two_dir)
}

fn check_same(single: &Output, merged: &Output, one: &Path, two: &Path) {
    assert_eq!(
        merged.status.code(),
        single.status.code(),
        "{}",
        text(&merged.stderr)
    );
    assert_eq!(
        verdict(&text(&merged.stdout)),
        verdict(&text(&single.stdout))
    );
    assert_eq!(
        json_verdict(&two.join("out.json")),
        json_verdict(&one.join("out.json"))
    );
}

#[test]
fn two_shards_merged_are_the_single_run_for_a_clean_strategy() {
    let (single, merged, one, two) = single_and_merged("backsync", 120);
    let (one, two) = (one.path(), two.path());
    assert_eq!(single.status.code(), Some(0), "{}", text(&single.stderr));
    check_same(&single, &merged, one, two);
    let out = text(&merged.stdout);
    assert!(
        out.contains("  seeds          120 seeds (500 to 619)"),
        "{out}"
    );
    assert!(out.contains("seeds per second per core"), "{out}");
}

#[test]
fn two_shards_merged_are_the_single_run_for_naive_with_its_signatures() {
    let (single, merged, one, two) = single_and_merged("naive", 60);
    let (one, two) = (one.path(), two.path());
    assert_eq!(single.status.code(), Some(1), "{}", text(&single.stderr));
    check_same(&single, &merged, one, two);
    // Violations grouped by signature; the lowest seed of the first two
    // groups shrunk, in both.
    let v = json_verdict(&two.join("out.json"));
    let groups = v["summary"]["signatures"].as_array().unwrap();
    assert!(groups.len() >= 2, "{groups:?}");
    let failing = v["failures"].as_array().unwrap();
    for g in groups {
        let sig = g["signature"].as_str().unwrap();
        let lowest = failing
            .iter()
            .filter(|f| {
                let names: Vec<&str> = f["violation_counts"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                // The signature lists the invariants broken, in report order.
                sig.split('+').all(|i| names.contains(&i)) && names.len() == sig.split('+').count()
            })
            .map(|f| f["seed"].as_u64().unwrap())
            .min();
        assert_eq!(lowest, g["lowest"].as_u64(), "{sig}");
    }
    let shrunk: Vec<u64> = v["summary"]["shrunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seed"].as_u64().unwrap())
        .collect();
    let heads: Vec<u64> = groups
        .iter()
        .take(2)
        .map(|g| g["lowest"].as_u64().unwrap())
        .collect();
    assert_eq!(shrunk, heads);
    for s in &shrunk {
        let f = two.join(format!("shrunk/campaign-shrunk-seed-{s}.toml"));
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            std::fs::read_to_string(one.join(format!("shrunk/campaign-shrunk-seed-{s}.toml")))
                .unwrap()
        );
    }
}

/// A shard killed while it runs, restarted with `--resume`: it keeps the
/// records it wrote, cuts a torn last line, runs only the rest, and the
/// merge is the single run's.
#[test]
fn a_killed_shard_resumes_without_running_a_seed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = campaign("naive", 400);
    let shard0 = with(
        &base,
        &[
            "--shard", "0/2", "--jsonl", "a.jsonl", "--shrink", "0", "--jobs", "1",
        ],
    );
    let records = d.join("a.jsonl");
    let mut child = bin()
        .current_dir(d)
        .args(&shard0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(&records).map_or(0, |t| t.lines().count()) < 15 {
        assert!(start.elapsed() < Duration::from_secs(120), "no records");
        assert!(child.try_wait().unwrap().is_none(), "the shard ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    // While it runs, a second process on the same file is refused.
    let twin = run(d, &with(&shard0, &["--resume"]));
    assert_eq!(twin.status.code(), Some(2));
    assert!(
        text(&twin.stderr).contains("a.jsonl is being written by another process"),
        "{}",
        text(&twin.stderr)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::read_to_string(&records).unwrap();
    // What a kill mid-write leaves: a last line without its newline.
    let whole = &kept[..kept.rfind('\n').map_or(0, |i| i + 1)];
    let done = whole.lines().count();
    assert!(done < 200, "killed before the end: {done} records");
    std::fs::write(&records, format!("{whole}{{\"campaign\":{{\"vers")).unwrap();

    // Without --resume the file is not overwritten.
    let refused = run(d, &shard0);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("--resume"),
        "{}",
        text(&refused.stderr)
    );

    let resumed = run(d, &with(&shard0, &["--resume"]));
    assert_eq!(resumed.status.code(), Some(1), "{}", text(&resumed.stderr));
    let err = text(&resumed.stderr);
    assert!(
        err.contains(&format!("{done} seeds already done, {} to run", 200 - done)),
        "{err}"
    );
    assert!(err.contains("torn last line"), "{err}");
    let after = std::fs::read_to_string(&records).unwrap();
    assert!(
        after.starts_with(whole),
        "the kept records are left as they were"
    );
    let seeds = seeds_in(&records);
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seeds.len(), "no seed recorded twice");
    assert_eq!(sorted, (500..900).step_by(2).collect::<Vec<u64>>());

    // The other shard, then the merge against one process.
    let shard1 = with(
        &base,
        &["--shard", "1/2", "--jsonl", "b.jsonl", "--shrink", "0"],
    );
    assert_eq!(run(d, &shard1).status.code(), Some(1));
    let merged = run_in(
        d,
        &[
            "campaign", "merge", "a.jsonl", "b.jsonl", "--shrink", "0", "--show", "3",
        ],
    );
    let single = run(d, &with(&base, &["--shrink", "0", "--show", "3"]));
    assert_eq!(merged.status.code(), Some(1));
    assert_eq!(
        verdict(&text(&merged.stdout)),
        verdict(&text(&single.stdout))
    );
}

/// Records of another campaign, missing seeds, a seed recorded twice.
#[test]
fn a_merge_refuses_mixed_or_incomplete_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = campaign("backsync", 20);
    for (i, f) in [(0, "a.jsonl"), (1, "b.jsonl")] {
        let s = format!("{i}/2");
        let o = run(d, &with(&base, &["--shard", &s, "--jsonl", f]));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    // The same shard of a campaign with another object count.
    let other: Vec<String> = campaign("backsync", 20)
        .into_iter()
        .map(|a| if a == "60" { "61".into() } else { a })
        .collect();
    let o = run(d, &with(&other, &["--shard", "1/2", "--jsonl", "c.jsonl"]));
    assert_eq!(o.status.code(), Some(0));

    let mixed = run_in(d, &["campaign", "merge", "a.jsonl", "b.jsonl", "c.jsonl"]);
    assert_eq!(mixed.status.code(), Some(2));
    let err = text(&mixed.stderr);
    assert!(err.contains("2 different campaigns"), "{err}");
    assert!(err.contains("a.jsonl, b.jsonl:"), "{err}");
    assert!(err.contains("c.jsonl: differs from the first"), "{err}");
    assert!(err.contains("objects 61 (60)"), "{err}");

    let half = run_in(d, &["campaign", "merge", "a.jsonl"]);
    assert_eq!(half.status.code(), Some(2));
    let err = text(&half.stderr);
    assert!(
        err.contains("10 seeds of the campaign's 20 missing: 501, 503,"),
        "{err}"
    );
    let partial = run_in(d, &["campaign", "merge", "a.jsonl", "--partial"]);
    assert_eq!(partial.status.code(), Some(0), "{}", text(&partial.stderr));
    assert!(
        text(&partial.stdout).contains("10 seeds (500 to 519, 10 missing)"),
        "{}",
        text(&partial.stdout)
    );

    let twice = run_in(d, &["campaign", "merge", "a.jsonl", "b.jsonl", "a.jsonl"]);
    assert_eq!(twice.status.code(), Some(0));
    assert!(
        text(&twice.stderr).contains("10 seeds recorded more than once, with the same results"),
        "{}",
        text(&twice.stderr)
    );
    // A record altered: the same seed with another result is refused.
    let a = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    let first = a.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    let sent = v["result"]["counts"]["objects_sent"].as_u64().unwrap();
    let changed = first.replace(
        &format!("\"objects_sent\":{sent}"),
        &format!("\"objects_sent\":{}", sent + 1),
    );
    assert_ne!(changed, first);
    std::fs::write(d.join("x.jsonl"), changed + "\n").unwrap();
    let differs = run_in(d, &["campaign", "merge", "a.jsonl", "b.jsonl", "x.jsonl"]);
    assert_eq!(differs.status.code(), Some(2));
    assert!(
        text(&differs.stderr).contains("has different results in a.jsonl:1 and x.jsonl:1"),
        "{}",
        text(&differs.stderr)
    );
    // Not a record at all: the file and line.
    std::fs::write(d.join("bad.jsonl"), format!("{first}\n{{\"seed\": 3}}\n")).unwrap();
    let bad = run_in(d, &["campaign", "merge", "bad.jsonl"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("bad.jsonl:2: "),
        "{}",
        text(&bad.stderr)
    );
}

/// `--keep-failures DIR`: per failing seed its record, the command that
/// reruns it (which fails again) and, for the seed shrunk for its
/// signature, a scenario that fails under `backsync run`.
#[test]
fn kept_failures_hold_a_record_a_command_and_a_shrunk_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(
        d,
        &with(
            &campaign("naive", 16),
            &[
                "--keep-failures",
                "kept",
                "--shrink",
                "1",
                "--json",
                "c.json",
            ],
        ),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("c.json")).unwrap()).unwrap();
    let failing: Vec<u64> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seed"].as_u64().unwrap())
        .collect();
    let mut kept: Vec<u64> = std::fs::read_dir(d.join("kept"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("seed-").unwrap().parse().unwrap()
        })
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, failing);
    let shrunk = v["summary"]["shrunk"][0]["seed"].as_u64().unwrap();
    for seed in &failing {
        let sub = d.join(format!("kept/seed-{seed}"));
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sub.join("record.json")).unwrap())
                .unwrap();
        assert_eq!(record["result"]["seed"].as_u64(), Some(*seed));
        assert_eq!(record["outcome"], "fail");
        let cmd = std::fs::read_to_string(sub.join("reproduce.txt")).unwrap();
        assert!(
            cmd.starts_with(&format!("backsync campaign --seeds 1 --first-seed {seed} ")),
            "{cmd}"
        );
        assert_eq!(
            sub.join("shrunk.toml").exists(),
            *seed == shrunk,
            "seed {seed}"
        );
        assert_eq!(
            sub.join("shrunk.txt").exists(),
            *seed != shrunk,
            "seed {seed}"
        );
    }
    // The lowest failing seed's command fails again; the shrunk scenario
    // fails as a scenario.
    let cmd =
        std::fs::read_to_string(d.join(format!("kept/seed-{}/reproduce.txt", failing[0]))).unwrap();
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    assert_eq!(run_in(d, &args).status.code(), Some(1));
    let scenario = d.join(format!("kept/seed-{shrunk}/shrunk.toml"));
    let again = run_in(d, &["run", scenario.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stdout));
}
