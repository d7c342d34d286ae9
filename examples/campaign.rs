//! Runs a fault campaign from the command line until `backsync campaign`
//! is wired into the CLI:
//!
//! ```sh
//! cargo run --release --example campaign -- --seeds 2000 --strategy backsync --jobs 2
//! ```
//!
//! Exit status: 0 no violation, 1 violations, 2 bad arguments.

use std::process::ExitCode;

use backsync::campaign::{CampaignArgs, run_cli};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "campaign",
    about = "Seeded fault campaigns checked by invariants"
)]
struct Cli {
    #[command(flatten)]
    args: CampaignArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_cli(&cli.args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("campaign: {e}");
            ExitCode::from(2)
        }
    }
}
