//! Runs `backsync bench` until the CLI wires it:
//! `cargo run --release --example bench -- --quick --json bench.json`.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Measure apply, backsync, restore, throughput, memory and simulated speed")]
struct Cli {
    #[command(flatten)]
    args: backsync::bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    match backsync::bench::run_cli(&Cli::parse().args) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
