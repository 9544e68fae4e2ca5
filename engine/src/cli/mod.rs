//! The `patchward` command line. Each subcommand lives in its own module;
//! this one parses arguments and turns results into exit codes.
//!
//! Exit codes: 0 success, 1 the input has problems (validation errors), 2
//! the command could not run (missing path, unreadable repository, usage).

mod catalog;
mod demo;
mod diff;
mod plan;
mod schemas;
mod serve;
mod store;
mod token;
mod validate;
mod window;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use patchward_api::logging::Output;

#[derive(Parser)]
#[command(
    name = "patchward",
    version,
    about = "patchward: GitOps patch management. Policy lives in git; the engine plans and serves it.",
    propagate_version = true
)]
struct Cli {
    /// What to log: a level (`debug`), or levels by module
    /// (`warn,patchward::daemon=debug`) [default: the PATCHWARD_LOG
    /// environment variable, else `info`].
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// How log lines are written.
    #[arg(long, global = true, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Validate(validate::ValidateArgs),
    Catalog(catalog::CatalogArgs),
    Plan(plan::PlanArgs),
    Diff(diff::DiffArgs),
    Window(window::WindowArgs),
    Schemas(schemas::SchemasArgs),
    Serve(serve::ServeArgs),
    Store(store::StoreArgs),
    Token(token::TokenArgs),
    AckRewrite(token::AckRewriteArgs),
    Demo(demo::DemoArgs),
}

/// `--log-format`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Human,
    /// JSON lines, for log shippers.
    Json,
}

/// What a command reports back to `main`.
pub enum Outcome {
    Success,
    /// The input has problems (exit 1).
    Problems,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match cli.log_format {
        LogFormat::Human => Output::Human,
        LogFormat::Json => Output::Json,
    };
    if let Err(error) = patchward_api::logging::init(cli.log.as_deref(), "info", output) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Catalog(args) => catalog::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Window(args) => window::run(args),
        Command::Schemas(args) => schemas::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Store(args) => store::run(args),
        Command::Token(args) => token::run(args),
        Command::AckRewrite(args) => token::run_ack(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
