//! `patchward serve`: the engine daemon (see `crate::daemon`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::daemon::config::{Overrides, ServeConfig};

/// Run the engine: follow the policy repository, sync the catalog, plan,
/// and serve agents and admins over HTTP.
#[derive(Args)]
pub struct ServeArgs {
    /// The config file (YAML); its defaults are in examples/serve/patchward.yaml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the store, keys, admin token and blobs live [default: ./patchward-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The store of several replicas, `postgres://USER@HOST:PORT/DB`
    /// [default: the embedded store in DATA].
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The engine's signing key; created (mode 0600) if it does not exist,
    /// so replicas given the same FILE share it [default: DATA/engine-key].
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// A folder, a git repository's path, or a repository URL [default: ./policies].
    #[arg(long, value_name = "PATH|URL")]
    policies: Option<String>,
    /// The branch followed [default: main].
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// The API's address [default: 127.0.0.1:8420].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The Prometheus metrics address [default: 127.0.0.1:9420].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    let flags = Overrides {
        data: args.data,
        store: args.store,
        signing_key: args.signing_key,
        policies: args.policies,
        branch: args.branch,
        listen: args.listen,
        metrics_listen: args.metrics_listen,
    };
    let config = ServeConfig::load(args.config.as_deref(), flags)?;
    crate::daemon::serve::run(config)?;
    Ok(Outcome::Success)
}
