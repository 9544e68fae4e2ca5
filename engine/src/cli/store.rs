//! `patchward store copy --from DATA_DIR --to postgres://…`: moves an
//! installation's embedded store into PostgreSQL, then reads the copy back
//! and compares it, section by section, with what was copied.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Outcome;
use crate::store::Store;

/// Move a store between backends.
#[derive(Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy an embedded store into an empty PostgreSQL database, and
    /// verify the copy (counts and digests). Stop the engine first.
    Copy(CopyArgs),
}

#[derive(Args)]
struct CopyArgs {
    /// The data folder of the installation (its store is DIR/store).
    #[arg(long, value_name = "DATA_DIR")]
    from: PathBuf,
    /// postgres://USER@HOST:PORT/DB; its schema is created if missing.
    #[arg(long, value_name = "URL")]
    to: String,
}

pub fn run(args: StoreArgs) -> anyhow::Result<Outcome> {
    match args.command {
        StoreCommand::Copy(copy) => run_copy(copy),
    }
}

fn run_copy(args: CopyArgs) -> anyhow::Result<Outcome> {
    if !args.from.join("store").exists() {
        anyhow::bail!("{} holds no store (no {}/store)", args.from.display(), args.from.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let sections = runtime.block_on(async {
        let from = Store::open(&args.from)?;
        let to = Store::connect(&args.to).await?;
        crate::store::copy::copy(&from, &to).await.with_context(|| format!("failed to copy {}", args.from.display()))
    })?;
    for section in &sections {
        println!("{:<20} {:>8}  sha256 {}", section.name, section.count, section.sha256);
    }
    println!("copied {} into {} and verified every section", args.from.display(), redacted(&args.to));
    Ok(Outcome::Success)
}

/// `url` without its password, for printing.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
