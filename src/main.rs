//! The `backsync` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Context as _;
use backsync::report::{self, CompareRow};
use backsync::run::{self, RunOptions, RunReport};
use backsync::{RestoreStrategy, Scenario, count};
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

// mimalloc, not the system allocator: a large directory is millions of
// small blocks (states, attributes, values, index chunks); under glibc's
// malloc a loaded week ran 30 to 40 % slower and slowed as it went
// (docs/PERFORMANCE.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Less output: no progress bars, only error logs.
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Colour in log output: auto (only on a terminal, and not when NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
    color: Color,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            // https://no-color.org: a set, non-empty NO_COLOR turns colour off.
            Color::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
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
    /// Read an Active Directory configuration-partition export (LDIF, as
    /// `ldifde` writes it) and write the equivalent scenario: sites, read-only
    /// DCs and connections spelled out, no steps (exit 0, or 2 invalid).
    #[command(
        after_help = "Examples:\n  ldifde -f forest.ldif -d \"CN=Sites,CN=Configuration,DC=example,DC=com\"   # on a DC\n  backsync import forest.ldif --out forest.toml\n  backsync check forest.toml\n\nThe summary (sites, servers, read-only servers, connections, site links) goes to stderr;\nwithout --out the scenario goes to stdout. A scenario can also name the export itself:\n`import = \"forest.ldif\"`."
    )]
    Import {
        /// The LDIF export.
        file: PathBuf,
        /// Write the scenario here (`-` or no --out: stdout).
        #[arg(long, value_name = "OUT.toml")]
        out: Option<PathBuf>,
        /// The scenario's name (default: "Imported from FILE").
        #[arg(long)]
        name: Option<String>,
    },
    /// Validate a scenario file without running it (exit 0 valid, 2 invalid).
    #[command(after_help = "Example:\n  backsync check scenarios/kb_q190703.toml")]
    Check {
        /// The scenario file.
        file: PathBuf,
    },
    /// Run a scenario once per restore strategy and print them side by side
    /// (exit 0 every strategy passed its steps, 1 at least one failed, 2 invalid).
    #[command(
        after_help = "Examples:\n  backsync compare scenarios/strategies.toml --json compare.json\n  backsync compare my.toml -q && echo \"every strategy passes\""
    )]
    Compare {
        /// The scenario file.
        file: PathBuf,
        /// Write the table as JSON here (`-` for stdout; the table then goes to stderr).
        #[arg(long, value_name = "OUT.json")]
        json: Option<PathBuf>,
        /// Seed to use instead of the file's.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run many seeded random fault schedules and check the invariants
    /// (exit 0 no violation, 1 a violation, 2 bad arguments); `campaign
    /// merge` joins the records of a campaign's shards.
    Campaign(Box<CampaignCommand>),
    /// Measure apply, backsync and cluster speed and memory against baselines
    /// measured in the same run.
    Bench(backsync::bench::BenchArgs),
    /// Run a scenario's steps, then keep its servers up as a live lab: an
    /// LDAP port per server, an HTTP admin API, on a real clock (stop with
    /// Ctrl-C or SIGTERM: exit 0; 2 invalid file or options).
    #[command(
        after_help = "Server number i (0-based, in the file's order) listens on the --ldap port + i.\n\
When every port is open it prints `NAME ldap://ADDR` per server, then `ready`.\n\n\
Examples:\n  backsync serve scenarios/lab.toml --speed 60\n  \
ldapsearch -x -H ldap://127.0.0.1:3890 -b \"\" -s base highestCommittedUSN\n  \
curl -s localhost:8080/status\n  \
curl -s -X POST 'localhost:8080/servers/S1/backup?name=nightly'"
    )]
    Serve {
        /// The scenario file: its topology and steps set the lab up.
        file: PathBuf,
        /// LDAP address of the first server; server i listens on its port + i
        /// (port 0: ports the system picks).
        #[arg(long, default_value = "127.0.0.1:3890", value_name = "ADDR:PORT")]
        ldap: std::net::SocketAddr,
        /// Admin API address (HTTP, JSON).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
        admin: std::net::SocketAddr,
        /// Simulated seconds per real second (more than 0, at most 1,000,000).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Writes need a simple bind with this password (reads stay open).
        #[arg(long, value_name = "PASSWORD")]
        bind_password: Option<String>,
        /// Allow addresses other than loopback without --bind-password.
        #[arg(long)]
        insecure: bool,
        /// Seed to use instead of the file's.
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// `campaign [OPTIONS]` runs one; `campaign merge FILES` merges shards.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct CampaignCommand {
    #[command(subcommand)]
    merge: Option<CampaignSub>,
    #[command(flatten)]
    args: backsync::campaign::CampaignArgs,
}

#[derive(Subcommand)]
enum CampaignSub {
    /// Merge the `--jsonl` records of a campaign's shards into one verdict: the
    /// summary, exit status and JSON of one process running the same seeds.
    Merge(backsync::campaign::MergeArgs),
}

#[derive(clap::Args)]
struct Outputs {
    /// Write the run as JSON here (`-` for stdout; the report then goes to stderr).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Write the report as Markdown here (`-` for stdout).
    #[arg(long, value_name = "OUT.md")]
    report: Option<PathBuf>,
    /// Plot each server's distance from the converged directory over simulated time
    /// (`-` for stdout).
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Write each server's inbound replication links at the end of the run
    /// as `repadmin /showrepl * /csv` does (`-` for stdout).
    #[arg(long, value_name = "OUT.csv")]
    showrepl: Option<PathBuf>,
}

/// `-` names standard output, as in most command-line tools.
fn is_stdout(p: &Path) -> bool {
    p.as_os_str() == "-"
}

impl Outputs {
    /// Whether one of the files is stdout; two would interleave, so that is refused.
    fn takes_stdout(&self) -> Result<bool, Invalid> {
        let n = [&self.json, &self.report, &self.svg, &self.showrepl]
            .into_iter()
            .flatten()
            .filter(|p| is_stdout(p))
            .count();
        if n > 1 {
            return Err(Invalid(
                "only one of --json, --report, --svg and --showrepl can be `-` (stdout)".into(),
            ));
        }
        Ok(n == 1)
    }
}

static BAR: OnceLock<ProgressBar> = OnceLock::new();
/// `-q`: no progress bars.
static QUIET: OnceLock<bool> = OnceLock::new();

fn progress(done: u64, total: u64) {
    // Small loads finish before a bar is worth drawing.
    if total < 10_000 || QUIET.get().copied().unwrap_or(false) {
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
    if is_stdout(path) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        return Ok(out.flush()?);
    }
    // `--svg out/run.svg` works on a fresh clone: the directory is made.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The human-readable text goes to stdout, or to stderr when a machine output took stdout.
fn show(text: &str, to_stderr: bool) {
    if to_stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn outputs(r: &RunReport, out: &Outputs) -> anyhow::Result<()> {
    if let Some(p) = &out.showrepl {
        write(p, &report::showrepl_csv(r))?;
    }
    if let Some(p) = &out.json {
        write(p, &serde_json::to_string_pretty(r)?)?;
    }
    if let Some(p) = &out.report {
        let plot = out.svg.as_deref().map(|s| report::link_from(p, s));
        write(p, &report::markdown_with_plot(r, plot.as_deref()))?;
    }
    if let Some(p) = &out.svg {
        write(p, &backsync::plot::svg(r)?)?;
    }
    Ok(())
}

fn run_scenario(s: &Scenario, out: &Outputs, seed: Option<u64>) -> Result<ExitCode, Failure> {
    let to_stderr = out.takes_stdout()?;
    let r = run::run(s, &options(seed, None, out.svg.is_some())).map_err(anyhow::Error::from)?;
    show(&report::text(&r), to_stderr);
    outputs(&r, out)?;
    Ok(if r.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `backsync serve`: the steps' report, one line per server, `ready`, then
/// serving until a signal.
fn serve(s: &Scenario, opts: &backsync::serve::ServeOptions) -> Result<ExitCode, Failure> {
    use std::io::Write as _;
    let fail = |e: backsync::serve::ServeError| -> Failure {
        if e.is_usage() {
            Invalid(e.to_string()).into()
        } else {
            Failure::Other(e.into())
        }
    };
    backsync::serve::check(opts, s.server_names().len()).map_err(fail)?;
    let lab = backsync::serve::start(s, opts).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    let report = report::text(lab.report());
    let listening: String = lab
        .ldap_addrs()
        .iter()
        .map(|(name, addr)| format!("{name} ldap://{addr}\n"))
        .collect();
    writeln!(out, "{report}{listening}ready")
        .and_then(|()| out.flush())
        .ok();
    drop(out);
    eprintln!(
        "admin API on http://{}; stop with Ctrl-C or SIGTERM",
        lab.admin_addr()
    );
    lab.serve_until_signal().map_err(anyhow::Error::from)?;
    Ok(ExitCode::SUCCESS)
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
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_ansi(cli.color.enabled())
        .with_writer(std::io::stderr)
        .init();
    QUIET
        .set(cli.quiet > 0)
        .expect("set once, before any progress");
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
        showrepl: None,
    };
    match cli.command {
        None => {
            let s = Scenario::from_str(KB_Q190703, "<built-in kb_q190703.toml>")
                .map_err(|e| Invalid(e.to_string()))?;
            run_scenario(&s, &none, None)
        }
        Some(Command::Run { file, out, seed }) => {
            let s = load(&file)?;
            run_scenario(&s, &out, seed)
        }
        Some(Command::Import { file, out, name }) => {
            let text = std::fs::read(&file)
                .map_err(|e| Invalid(format!("cannot read {}: {e}", file.display())))?;
            if text.len() > backsync::limits::MAX_LDIF_BYTES {
                return Err(Invalid(format!(
                    "{}: {} bytes, more than the {} an import reads",
                    file.display(),
                    text.len(),
                    backsync::limits::MAX_LDIF_BYTES
                ))
                .into());
            }
            let text = String::from_utf8(text)
                .map_err(|_| Invalid(format!("{}: not UTF-8 text", file.display())))?;
            let forest = backsync::import::Forest::from_ldif(&text).map_err(|e| {
                let dn =
                    e.dn.as_ref()
                        .map(|d| format!("entry `{d}`: "))
                        .unwrap_or_default();
                Invalid(format!("{}:{}: {dn}{}", file.display(), e.line, e.kind))
            })?;
            let name = name.unwrap_or_else(|| format!("Imported from {}", file.display()));
            let toml = forest.to_scenario(&name).to_toml();
            // What is written must be a valid scenario: check before writing.
            Scenario::from_str(&toml, "<import>").map_err(|e| Invalid(e.to_string()))?;
            write(out.as_deref().unwrap_or(Path::new("-")), &toml)?;
            eprintln!("{}: {}", file.display(), forest.summary());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Check { file }) => {
            let s = load(&file)?;
            println!(
                "{}: valid: `{}`, {} in {}, {}, {}",
                file.display(),
                s.name,
                count(s.server_names().len() as u64, "server"),
                count(s.sites.len() as u64, "site"),
                if s.connections.is_empty() {
                    count(s.connectors.len() as u64, "connector")
                } else {
                    count(s.connections.len() as u64, "connection")
                },
                count(s.steps.len() as u64, "step")
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Campaign(c)) => {
            let verdict = match &c.merge {
                Some(CampaignSub::Merge(m)) => backsync::campaign::merge::run_cli(m),
                None => {
                    backsync::campaign::run_cli(&c.args, !QUIET.get().copied().unwrap_or(false))
                }
            };
            match verdict {
                Ok(true) => Ok(ExitCode::SUCCESS),
                Ok(false) => Ok(ExitCode::from(1)),
                Err(e) => Err(Invalid(e.to_string()).into()),
            }
        }
        Some(Command::Serve {
            file,
            ldap,
            admin,
            speed,
            bind_password,
            insecure,
            seed,
        }) => {
            let s = load(&file)?;
            let opts = backsync::serve::ServeOptions {
                ldap,
                admin,
                speed,
                bind_password,
                insecure,
                seed,
            };
            serve(&s, &opts)
        }
        Some(Command::Bench(args)) => {
            if let Some(kind) = &args.child {
                backsync::bench::run_child(kind).map_err(|e| Failure::Other(e.into()))?;
                return Ok(ExitCode::SUCCESS);
            }
            let report = backsync::bench::run_cli(&args).map_err(|e| Failure::Other(e.into()))?;
            // With its baseline: two figures can share a title (one
            // restore against two baselines).
            let missed: Vec<String> = (report.figures.iter())
                .filter(|f| !f.met)
                .map(|f| format!("{} (against {})", f.name, f.baseline))
                .collect();
            if missed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "bench: {} missed:",
                    backsync::config::count(missed.len() as u64, "target")
                );
                for m in missed {
                    eprintln!("  {m}");
                }
                Ok(ExitCode::from(1))
            }
        }
        Some(Command::Compare { file, json, seed }) => {
            let s = load(&file)?;
            let mut rows = Vec::new();
            let mut all_passed = true;
            for st in RestoreStrategy::ALL {
                let r =
                    run::run(&s, &options(seed, Some(st), false)).map_err(anyhow::Error::from)?;
                all_passed &= r.passed;
                rows.push(CompareRow::from_run(st, &r));
            }
            let to_stderr = json.as_deref().is_some_and(is_stdout);
            show(&report::compare_table(&s.name, &rows), to_stderr);
            if let Some(p) = json {
                let v = serde_json::json!({ "schema_version": run::SCHEMA_VERSION, "scenario": s.name, "rows": rows });
                write(
                    &p,
                    &serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?,
                )?;
            }
            Ok(if all_passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
