//! The `backsync` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Context as _;
use backsync::report::{self, CompareRow};
use backsync::run::{self, RunOptions, RunReport};
use backsync::{RestoreStrategy, Scenario};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// The built-in scenario: `cargo run --release` with no arguments runs it.
const KB_Q190703: &str = include_str!("../scenarios/kb_q190703.toml");

#[derive(Parser)]
#[command(
    name = "backsync",
    version,
    about = "Simulate multi-master directory replication and restores from backup",
    long_about = "Simulate multi-master directory replication (Exchange 5.5, Active Directory) in one \
process, restore servers from backups with backsync, a new invocation id, a naive rollback or a \
full resync, and measure convergence on a simulated clock.\n\nWith no command, runs the built-in \
KB Q190703 scenario and prints its report.",
    after_help = "Examples:\n  backsync                                 # the built-in KB Q190703 scenario\n  backsync run scenarios/remote_site.toml --svg run.svg\n  backsync compare scenarios/strategies.toml\n  RUST_LOG=backsync=debug backsync run scenarios/kb_q190703.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file and print its report (exit 0 passed, 1 a step failed, 2 invalid).
    #[command(
        after_help = "Example:\n  backsync run scenarios/kb_q190703.toml --json out.json --report out.md --svg out.svg"
    )]
    Run {
        /// The scenario file (TOML; see docs/scenarios.md).
        file: PathBuf,
        #[command(flatten)]
        out: Outputs,
        /// Seed to use instead of the file's.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Validate a scenario file without running it (exit 0 valid, 2 invalid).
    #[command(after_help = "Example:\n  backsync check scenarios/kb_q190703.toml")]
    Check {
        /// The scenario file.
        file: PathBuf,
    },
    /// Run a scenario once per restore strategy and print them side by side.
    #[command(
        after_help = "Example:\n  backsync compare scenarios/strategies.toml --json compare.json"
    )]
    Compare {
        /// The scenario file.
        file: PathBuf,
        /// Write the table as JSON here.
        #[arg(long, value_name = "OUT.json")]
        json: Option<PathBuf>,
        /// Seed to use instead of the file's.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run many seeded random fault schedules and check the invariants
    /// (exit 0 no violation, 1 a violation, 2 bad arguments).
    Campaign(backsync::campaign::CampaignArgs),
    /// Measure apply, backsync and cluster speed and memory against baselines
    /// measured in the same run.
    Bench(backsync::bench::BenchArgs),
}

#[derive(clap::Args)]
struct Outputs {
    /// Write the run as JSON here.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Write the report as Markdown here.
    #[arg(long, value_name = "OUT.md")]
    report: Option<PathBuf>,
    /// Plot each server's distance from the converged directory over simulated time.
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
}

static BAR: OnceLock<ProgressBar> = OnceLock::new();

fn progress(done: u64, total: u64) {
    // Small loads finish before a bar is worth drawing.
    if total < 10_000 {
        return;
    }
    let bar = BAR.get_or_init(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("load {bar:40} {pos}/{len} writes ({per_sec})")
                .expect("a valid template"),
        );
        b
    });
    bar.set_length(total);
    bar.set_position(done);
    if done >= total {
        bar.finish_and_clear();
    }
}

fn options(seed: Option<u64>, strategy: Option<RestoreStrategy>, record: bool) -> RunOptions {
    RunOptions {
        seed,
        strategy,
        record,
        progress: std::io::stderr()
            .is_terminal()
            .then_some(progress as fn(u64, u64)),
    }
}

/// An invalid input: exit 2.
struct Invalid(String);

fn load(file: &Path) -> Result<Scenario, Invalid> {
    Scenario::from_path(file).map_err(|e| Invalid(e.to_string()))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn outputs(r: &RunReport, out: &Outputs) -> anyhow::Result<()> {
    if let Some(p) = &out.json {
        write(p, &serde_json::to_string_pretty(r)?)?;
    }
    if let Some(p) = &out.report {
        write(p, &report::markdown(r))?;
    }
    if let Some(p) = &out.svg {
        write(p, &backsync::plot::svg(r)?)?;
    }
    Ok(())
}

fn run_scenario(s: &Scenario, out: &Outputs, seed: Option<u64>) -> anyhow::Result<ExitCode> {
    let r = run::run(s, &options(seed, None, out.svg.is_some()))?;
    print!("{}", report::text(&r));
    outputs(&r, out)?;
    Ok(if r.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`backsync ... |
    // head -1`) would panic; like other Unix filters, end quietly instead.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(Failure::Invalid(Invalid(m))) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

enum Failure {
    Invalid(Invalid),
    Other(anyhow::Error),
}

impl From<Invalid> for Failure {
    fn from(e: Invalid) -> Self {
        Failure::Invalid(e)
    }
}
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    let none = Outputs {
        json: None,
        report: None,
        svg: None,
    };
    match cli.command {
        None => {
            let s = Scenario::from_str(KB_Q190703, "<built-in kb_q190703.toml>")
                .map_err(|e| Invalid(e.to_string()))?;
            Ok(run_scenario(&s, &none, None)?)
        }
        Some(Command::Run { file, out, seed }) => {
            let s = load(&file)?;
            Ok(run_scenario(&s, &out, seed)?)
        }
        Some(Command::Check { file }) => {
            let s = load(&file)?;
            println!(
                "{}: valid: `{}`, {} servers in {} sites, {} connectors, {} steps",
                file.display(),
                s.name,
                s.server_names().len(),
                s.sites.len(),
                s.connectors.len(),
                s.steps.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Campaign(args)) => match backsync::campaign::run_cli(&args) {
            Ok(true) => Ok(ExitCode::SUCCESS),
            Ok(false) => Ok(ExitCode::from(1)),
            Err(e) => Err(Invalid(e.to_string()).into()),
        },
        Some(Command::Bench(args)) => {
            backsync::bench::run_cli(&args).map_err(|e| Failure::Other(e.into()))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Compare { file, json, seed }) => {
            let s = load(&file)?;
            let mut rows = Vec::new();
            for st in RestoreStrategy::ALL {
                let r =
                    run::run(&s, &options(seed, Some(st), false)).map_err(anyhow::Error::from)?;
                rows.push(CompareRow::from_run(st, &r));
            }
            print!("{}", report::compare_table(&s.name, &rows));
            if let Some(p) = json {
                let v = serde_json::json!({ "scenario": s.name, "rows": rows });
                write(
                    &p,
                    &serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?,
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
