//! The recipes in deploy/ (issue 14), tested as far as this machine can:
//! the Kubernetes manifests parsed and their fields checked, then their
//! shard and merge commands run here with local processes; the Slurm
//! script run as its array's tasks would run it; the GNU parallel script
//! run on this machine (if `parallel` is installed); the image built if a
//! container engine answers. What cannot run says so on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// PATH with the built binary first, as the recipes call `backsync`.
fn path_with_binary() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_backsync")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A merged campaign's summary: exit 0, `seeds` seeds from `first`.
fn assert_merged(o: &Output, seeds: u64, first: u64) {
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    let want = format!(
        "  seeds          {seeds} seeds ({first} to {}) in",
        first + seeds - 1
    );
    assert!(out.contains(&want), "{want} in\n{out}");
    assert!(out.contains("backsync campaign merge: "), "{out}");
}

fn docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

use serde::Deserialize as _;

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("a {kind} named {name}"))
}

/// The one container's `sh -c` script.
fn script(job: &Value) -> String {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0].as_str(), Some("sh"));
    assert_eq!(c["command"][1].as_str(), Some("-c"));
    c["args"][0].as_str().expect("a script").to_string()
}

/// The value after `--flag` in a command line.
fn flag<'a>(line: &'a str, name: &str) -> &'a str {
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == name)
        .unwrap_or_else(|| panic!("{name} in {line}"));
    words.next().unwrap_or_else(|| panic!("a value for {name}"))
}

#[test]
fn the_kubernetes_job_is_indexed_and_its_commands_merge_into_one_campaign() {
    let campaign = docs("deploy/kubernetes/campaign.yaml");
    let merge = docs("deploy/kubernetes/merge.yaml");
    let pvc = kind(&campaign, "PersistentVolumeClaim", "backsync-campaign");
    assert_eq!(pvc["apiVersion"].as_str(), Some("v1"));
    assert_eq!(
        pvc["spec"]["accessModes"][0].as_str(),
        Some("ReadWriteMany"),
        "pods on several nodes write at once"
    );
    let job = kind(&campaign, "Job", "backsync-campaign");
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_u64().expect("completions");
    assert_eq!(spec["parallelism"].as_u64(), Some(n));
    assert_eq!(spec["podReplacementPolicy"].as_str(), Some("Failed"));
    assert_eq!(
        spec["template"]["spec"]["restartPolicy"].as_str(),
        Some("Never")
    );
    let shard_script = script(job);
    assert_eq!(
        flag(&shard_script, "--shard"),
        format!("\"${{JOB_COMPLETION_INDEX}}/{n}\""),
        "N of --shard is the Job's completions"
    );
    assert!(shard_script.contains("--resume"));
    // The records go to the volume the claim mounts, where merge.yaml reads.
    let pod = &spec["template"]["spec"];
    let mount = &pod["containers"][0]["volumeMounts"][0];
    let dir = mount["mountPath"].as_str().unwrap();
    assert_eq!(
        pod["volumes"][0]["name"].as_str(),
        mount["name"].as_str(),
        "the mount is the pod's volume"
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"].as_str(),
        Some("backsync-campaign")
    );
    // The image's user can write to the volume.
    let user = read("deploy/Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("USER ").map(str::to_string))
        .expect("a USER");
    let gid: u64 = user.split(':').nth(1).unwrap().parse().unwrap();
    assert_eq!(pod["securityContext"]["fsGroup"].as_u64(), Some(gid));
    let jsonl = flag(&shard_script, "--jsonl").trim_matches('"');
    assert!(jsonl.starts_with(&format!("{dir}/")), "{jsonl} under {dir}");

    let m = kind(&merge, "Job", "backsync-campaign-merge");
    let merge_script = script(m);
    let mpod = &m["spec"]["template"]["spec"];
    assert_eq!(
        mpod["volumes"][0]["persistentVolumeClaim"]["claimName"].as_str(),
        Some("backsync-campaign")
    );
    assert_eq!(
        mpod["containers"][0]["volumeMounts"][0]["mountPath"].as_str(),
        Some(dir)
    );
    assert!(merge_script.starts_with("backsync campaign merge "));

    // Run the pods' scripts here, as the Job would: index 0 to N - 1, the
    // volume a temporary directory, a small campaign instead of 100,000
    // seeds of 6 servers.
    let tmp = tempfile::tempdir().unwrap();
    let local = |s: &str| {
        s.replace(&format!("{dir}/"), &format!("{}/", tmp.path().display()))
            .replace(
                &format!("--seeds {}", flag(&shard_script, "--seeds")),
                "--seeds 24 --servers 3 --objects 30",
            )
    };
    for i in 0..n {
        let o = Command::new("sh")
            .arg("-c")
            .arg(local(&shard_script))
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("PATH", path_with_binary())
            .output()
            .unwrap();
        assert!(o.status.success(), "pod {i}: {}", text(&o.stderr));
    }
    let o = Command::new("sh")
        .arg("-c")
        .arg(local(&merge_script))
        .env("PATH", path_with_binary())
        .output()
        .unwrap();
    assert_merged(&o, 24, 0);
    assert!(tmp.path().join("campaign.json").exists());
}

#[test]
fn the_slurm_array_script_runs_its_tasks_and_merges() {
    let rel = "deploy/slurm/campaign.sbatch";
    let text_of = read(rel);
    assert!(text_of.starts_with("#!/bin/bash\n"));
    assert!(text_of.contains("SLURM_ARRAY_TASK_ID"));
    assert!(text_of.contains("#SBATCH --array="));
    let syntax = Command::new("bash")
        .args(["-n", root().join(rel).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));
    // Three tasks of an array numbered from 1 (--array=1-3), as Slurm
    // would start them; then the merge the script's header gives.
    let tmp = tempfile::tempdir().unwrap();
    for id in 1..=3 {
        let o = Command::new("bash")
            .arg(root().join(rel))
            .current_dir(tmp.path())
            .env("PATH", path_with_binary())
            .env("SLURM_ARRAY_TASK_ID", id.to_string())
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("SEEDS", "15")
            .env("FIRST_SEED", "40")
            .env("CAMPAIGN_ARGS", "--servers 3 --objects 30")
            .output()
            .unwrap();
        assert!(o.status.success(), "task {id}: {}", text(&o.stderr));
    }
    let files: Vec<String> = (0..3)
        .map(|i| format!("campaign/shard-{i}.jsonl"))
        .collect();
    let mut args = vec!["campaign", "merge"];
    args.extend(files.iter().map(String::as_str));
    let o = Command::new(env!("CARGO_BIN_EXE_backsync"))
        .args(&args)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_merged(&o, 15, 40);
    // Run outside sbatch, it says so.
    let bare = Command::new("bash")
        .arg(root().join(rel))
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(!bare.status.success());
    assert!(text(&bare.stderr).contains("run me with sbatch"));
}

fn have(tool: &str, probe: &[&str]) -> bool {
    Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_gnu_parallel_script_runs_on_this_machine() {
    let rel = "deploy/parallel.sh";
    let syntax = Command::new("bash")
        .args(["-n", root().join(rel).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));
    if !have("parallel", &["--version"]) {
        eprintln!(
            "skipped: GNU parallel is not installed (apt-get install parallel); {rel} only parsed"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(root().join(rel))
        .current_dir(tmp.path())
        .env("PATH", path_with_binary())
        .env("HOSTS", ":")
        .env("SHARDS", "3")
        .env("SEEDS", "12")
        .env("CAMPAIGN_ARGS", "--servers 3 --objects 30")
        .env("MERGE_ARGS", "--json campaign.json")
        .output()
        .unwrap();
    assert_merged(&o, 12, 0);
    assert!(tmp.path().join("campaign.json").exists());
}

#[test]
fn the_dockerfile_is_multi_stage_and_builds_where_an_engine_runs() {
    let file = read("deploy/Dockerfile");
    let froms: Vec<&str> = file.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(
        file.contains("COPY --from=build /src/target/release/backsync /usr/local/bin/backsync")
    );
    assert!(file.contains("ENTRYPOINT [\"backsync\"]"));
    // Every path the build stage copies exists, and .dockerignore keeps
    // none of them out.
    let ignored = read(".dockerignore");
    for l in file
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = l.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(root().join(src).exists(), "{src} of `{l}`");
            assert!(!ignored.lines().any(|i| i.trim() == *src), "{src} ignored");
        }
    }
    let engine = ["docker", "podman"]
        .into_iter()
        .find(|e| have(e, &["info"]));
    let Some(engine) = engine else {
        eprintln!(
            "skipped: no container engine answers (`docker info`, `podman info`); the image was not built"
        );
        return;
    };
    let tag = "backsync-deploy-test:latest";
    let build = Command::new(engine)
        .args(["build", "-f", "deploy/Dockerfile", "-t", tag, "."])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build.stderr));
    let run = Command::new(engine)
        .args([
            "run",
            "--rm",
            tag,
            "campaign",
            "--seeds",
            "2",
            "--servers",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("summary"));
}
