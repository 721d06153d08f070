//! `logicore`: parses the command line and hands over to the library crates.

mod cli;
mod events;
mod import;
mod run;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};
use logicore::services;
use mimalloc::MiMalloc;

/// mimalloc instead of glibc's malloc: a request allocates and frees dozens of small blocks (headers,
/// futures, buffers), and glibc's arenas spent about a tenth of the gateway's CPU on them (perf profile,
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = parse();
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

/// The command line, with the services of [`services::SERVICES`] listed in the help, and a service name
/// that is not among them refused as clap refuses any unknown command.
fn parse() -> cli::Cli {
    let mut command = cli::Cli::command().after_help(format!(
        "Services, each run alone with `logicore <service>`: {}.",
        services::names()
    ));
    let matches = command.get_matches_mut();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let cli::Command::Service(words) = &cli.command {
        let known = words.first().and_then(|name| services::named(name));
        if known.is_none() || words.len() > 1 {
            command
                .error(
                    ErrorKind::InvalidSubcommand,
                    format!(
                        "unrecognized command '{}'; the services are {}",
                        words.join(" "),
                        services::names()
                    ),
                )
                .exit();
        }
    }
    cli
}
