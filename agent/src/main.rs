//! `patchward-agent`: the endpoint agent. `enroll` once, then `run` (as a
//! service, or `--once`); the device's user asks the running agent with
//! `status`, `snooze`, `install` and `history`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use patchward_agent::config::{Overrides, Settings, config_file_to_read};
use patchward_agent::converge::{Agent, Books, IDENTITY_FILE, Identity};
use patchward_agent::local::{Request, Response};
use patchward_agent::observe::{Clock, SystemClock};
use patchward_agent::service::{FileClock, Handler, history_entries, status_view, system_platform};
use patchward_agent::state::StateDir;
use patchward_api::agent_config::LogFormat;
use patchward_api::logging::Output;

#[derive(Parser)]
#[command(
    name = "patchward-agent",
    version,
    about = "patchward's endpoint agent: reports inventory, pulls its desired state and converges",
    long_about = "patchward's endpoint agent: reports what the device is and has, pulls its signed \
desired state from the engine, and converges (sha256-verified downloads, installs under its \
deployment policy inside its maintenance windows, verification, reports)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// The config file (default: /etc/patchward-agent/config.yaml if it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The agent's state directory (default: /var/lib/patchward-agent).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The filesystem root package managers act on, and facts are read under.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// What to log: a level (`debug`), or levels by module
    /// (`info,patchward_agent::repo=debug`) [default: the PATCHWARD_LOG
    /// environment variable, else the config's `log.level`].
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Trade an enrollment token for this device's credential, and pin the engine's key.
    Enroll {
        #[arg(long, value_name = "URL")]
        server: String,
        #[arg(long, value_name = "T")]
        token: String,
        #[command(flatten)]
        common: Common,
    },
    /// Converge: as a service, or one full pass with --once.
    Run {
        /// One full pass (inventory, desired state, installs, reports), then exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        common: Common,
    },
    /// What the agent will do with each item.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Put an item's prompt off, within the policy's snoozes.
    Snooze {
        item: String,
        #[command(flatten)]
        common: Common,
    },
    /// Install a self-service item now (or accept its prompt).
    Install {
        item: String,
        #[command(flatten)]
        common: Common,
    },
    /// The latest steps and outcomes.
    History {
        item: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// Reads the settings, and starts logging as they say: the filter from
/// `--log`, else `PATCHWARD_LOG`, else the config's `log.level`; lines in
/// its `log.format`.
fn settings(common: &Common) -> anyhow::Result<Settings> {
    let file = config_file_to_read(common.config.as_deref());
    let overrides = Overrides { state: common.state.clone(), root: common.root.clone(), ..Overrides::default() };
    let settings = Settings::load(file.as_deref(), overrides)?;
    let output = match settings.log.format {
        LogFormat::Json => Output::Json,
        LogFormat::Text => Output::Human,
    };
    patchward_api::logging::init(common.log.as_deref(), settings.log.level.as_str(), output)
        .map_err(anyhow::Error::msg)?;
    Ok(settings)
}

/// The agent's clock: the system's, or (for tests and demos) the instant
/// in the file `PATCHWARD_AGENT_CLOCK_FILE` names.
fn clock() -> Arc<dyn Clock> {
    match std::env::var_os("PATCHWARD_AGENT_CLOCK_FILE") {
        Some(path) => Arc::new(FileClock(PathBuf::from(path))),
        None => Arc::new(SystemClock),
    }
}

async fn enroll(server: &str, token: &str, settings: &Settings) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let state = StateDir::open(&settings.state)?;
    let _lock = state.lock_exclusive()?;
    if state.read(IDENTITY_FILE)?.is_some() {
        anyhow::bail!(
            "{} already holds an enrolled identity; remove it to enroll this device again",
            state.path().join(IDENTITY_FILE).display()
        );
    }
    let sources = patchward_agent::facts::FactSources {
        route_probe: settings.root == Path::new("/"),
        ..patchward_agent::facts::FactSources::system(settings.root.clone())
    };
    let facts = patchward_agent::facts::collect_facts(&sources, settings.labels.clone(), settings.groups.clone());
    let client = patchward_agent::client::EngineClient::new(server, None, Duration::from_secs(60))?;
    let enrolled = client.enroll(token, facts.facts).await.context("enrollment failed")?;
    patchward_api::dsse::parse_public_key(&enrolled.engine_key).context("the engine's key is not ed25519:BASE64")?;
    let identity = Identity {
        server: server.trim_end_matches('/').to_owned(),
        device_id: enrolled.device_id.clone(),
        credential: enrolled.credential.into(),
        engine_key: enrolled.engine_key,
    };
    state.write_json(IDENTITY_FILE, &identity)?;
    println!("enrolled as {} with {}", enrolled.device_id, identity.server);
    Ok(())
}

async fn run(settings: &Settings, once: bool) -> anyhow::Result<()> {
    let clock = clock();
    let state = StateDir::open(&settings.state)?;
    let _lock = state.lock_exclusive()?;
    let platform = system_platform(settings, clock.clone()).map_err(anyhow::Error::msg)?;
    let mut agent = Agent::open(state, platform, settings.download.clone(), Duration::from_secs(60))?;
    if once {
        let report = agent.pass(None).await?;
        patchward_agent::service::log_report(&report);
        if let Some(refused) = report.refused {
            eprintln!("patchward-agent: refused a desired state: {refused}");
        }
        return Ok(());
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = patchward_agent::local::bind(&settings.socket())?;
    let zone = std::fs::read_to_string(settings.root.join("etc/timezone")).ok().map(|z| z.trim().to_owned());
    let handler = Arc::new(Handler {
        books: agent.books.clone(),
        clock: clock.clone(),
        device: agent.identity.device_id.clone(),
        zone,
        wake: wake.clone(),
    });
    tokio::spawn(patchward_agent::local::serve(listener, handler, Default::default()));
    tracing::info!(device = agent.identity.device_id, server = agent.identity.server, "running");
    // systemd stops a service with SIGTERM; a terminal with SIGINT.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = patchward_agent::service::run_loop(&mut agent, settings.poll_interval, wake) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        _ = terminate.recv() => tracing::info!("stopping"),
    }
    let _ = std::fs::remove_file(settings.socket());
    Ok(())
}

/// Asks the running agent, or (status and history) reads the state
/// directory when none runs.
fn ask(settings: &Settings, request: Request) -> anyhow::Result<Response> {
    match patchward_agent::local::request(&settings.socket(), &request, Duration::from_secs(30)) {
        Ok(response) => Ok(response),
        Err(patchward_agent::local::LocalError::NotRunning { .. })
            if matches!(request, Request::Status | Request::History { .. }) =>
        {
            let state = StateDir::open(&settings.state)?;
            // No agent runs: hold its lock while reading, so none starts midway.
            let _lock = state.lock_exclusive()?;
            let books = Books::open(state)?;
            let identity: Option<Identity> = books.state.read_json(IDENTITY_FILE)?;
            let now = clock().now();
            Ok(match request {
                Request::History { item, limit } => {
                    Response::History(history_entries(&books.journal, item.as_deref(), limit))
                }
                _ => Response::Status(status_view(&books, identity.as_ref().map(|i| i.device_id.as_str()), None, now)),
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn print(response: &Response, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(response).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match response {
        Response::Status(view) => {
            println!(
                "device {} (generation {})",
                view.device.as_deref().unwrap_or("-"),
                view.generation.map_or("-".into(), |g| g.to_string())
            );
            for item in &view.items {
                let snoozes = item.snoozes_left.map_or(String::new(), |n| format!(", {n} snoozes left"));
                println!("  {}  {:?} ({})  {}{snoozes}", item.patch, item.status, item.policy, item.next.text);
            }
        }
        Response::History(entries) => {
            for e in entries {
                println!("{}  {}  {}", e.at, e.item.as_deref().unwrap_or("-"), e.message.as_deref().unwrap_or(""));
            }
        }
        Response::Snoozed { item, until, snoozes_left } => {
            println!("{item} is snoozed until {until} ({snoozes_left} snoozes left)")
        }
        Response::InstallAccepted { item, .. } => println!("{item} will be installed now"),
        Response::Refused { item, reason } => {
            eprintln!("{item}: refused: {reason}");
            return ExitCode::from(1);
        }
        Response::Error { message } => {
            eprintln!("patchward-agent: {message}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("patchward-agent: failed to start: {e}");
            return ExitCode::from(2);
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        match cli.command {
            Command::Enroll { server, token, common } => {
                enroll(&server, &token, &settings(&common)?).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Run { once, common } => run(&settings(&common)?, once).await.map(|()| ExitCode::SUCCESS),
            Command::Status { json, common } => Ok(print(&ask(&settings(&common)?, Request::Status)?, json)),
            Command::Snooze { item, common } => Ok(print(&ask(&settings(&common)?, Request::Snooze { item })?, false)),
            Command::Install { item, common } => {
                Ok(print(&ask(&settings(&common)?, Request::Install { item })?, false))
            }
            Command::History { item, limit, json, common } => {
                Ok(print(&ask(&settings(&common)?, Request::History { item, limit })?, json))
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("patchward-agent: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
