use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use crate::schema::{stale_schemas, write_schemas};

/// Write the JSON Schemas of every policy kind, the feed and the reports.
///
/// With `--check`, write nothing: exit 1 if the folder differs from what
/// this build generates (CI's drift check).
#[derive(Args)]
pub struct SchemasArgs {
    /// The folder to write (or check).
    #[arg(default_value = "schemas")]
    dir: PathBuf,
    #[arg(long)]
    check: bool,
}

pub fn run(args: SchemasArgs) -> anyhow::Result<Outcome> {
    if args.check {
        let stale = stale_schemas(&args.dir).with_context(|| format!("failed to read {}", args.dir.display()))?;
        for problem in &stale {
            println!("{}: {problem}", args.dir.display());
        }
        if !stale.is_empty() {
            println!("run `cargo run -- schemas {}` to regenerate", args.dir.display());
            return Ok(Outcome::Problems);
        }
        return Ok(Outcome::Success);
    }
    write_schemas(&args.dir).with_context(|| format!("failed to write schemas to {}", args.dir.display()))?;
    Ok(Outcome::Success)
}
