//! `patchward-agent`: the endpoint agent.
//!
//! A skeleton until issue 7: it builds, links only the wire-types crate, and
//! answers `--help` and `--version`. Its subcommands (`enroll`, `run`,
//! `status`, `snooze`, `install`, `history`) arrive with the agent itself.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "patchward-agent",
    version,
    about = "patchward's endpoint agent: reports inventory, pulls its desired state and converges",
    long_about = "patchward's endpoint agent: reports what the device is and has, pulls its signed \
desired state from the engine, and converges (sha256-verified downloads, installs under its \
deployment policy inside its maintenance windows, verification, reports).\n\n\
This build is the skeleton from the foundations issue; enrollment and convergence are not in it yet."
)]
struct Cli {}

fn main() {
    // Parsing alone gives --help, --version and a clear error for anything else.
    let Cli {} = Cli::parse();
}
