//! `logicore`: parses the command line and hands over to the library crates.

mod cli;
mod events;
mod import;
mod run;

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

/// mimalloc instead of glibc's malloc: a request allocates and frees dozens of small blocks (headers,
/// futures, buffers), and glibc's arenas spent about a tenth of the gateway's CPU on them (perf profile,
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    platform::install_crypto_provider();
    match run::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(run::Failure::Config(error)) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
        Err(run::Failure::Other(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
