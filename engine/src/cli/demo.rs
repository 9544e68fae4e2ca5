//! `patchward demo`: a self-contained tour on loopback. A vendor with a
//! Debian-style OSV advisory and a signed apt repository, a git policy
//! repository holding the shipped example policy, a real engine and real
//! agents in sandbox dpkg roots, each patching through its own apt. The
//! tour prints the console's URL and a sign-in token first; then a commit
//! approves the advisory and the tour prints its rollout as the admin API
//! reports it; then `git revert` of that commit retracts it and the tour
//! follows every device back to the version it had, checked against
//! dpkg's own database and log; then where to look. Ctrl-C (or SIGTERM)
//! stops the agents and the engine and removes the demo's files.
//!
//! The office's parts are library code (`crate::demo`); this module decides
//! the order, waits, and prints.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use super::Outcome;
use crate::demo::admin::DeviceView;
use crate::demo::agents::{AgentBinary, locate_agent};
use crate::demo::{Approved, NEW_VERSION, OLD_VERSION, Office, PACKAGE, PATCH, POLL, debian};

/// A tour on loopback: an engine, a git policy repository, a vendor's
/// advisory and apt repository, and agents in sandboxes; a commit rolls a
/// patch out through apt, and its revert rolls it back.
#[derive(Args)]
pub struct DemoArgs {
    /// The engine's API address [default: 127.0.0.1:8420, or a free port
    /// when that one is taken].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// How many devices (agents) to run; the first half, rounded down, is
    /// the pilot ring.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    agents: u8,
    /// How long after the pilot ring production's stage begins.
    #[arg(long, value_name = "DURATION", default_value = "1m")]
    production_after: patchward_api::Duration,
    /// How long the advisory waits in the review queue before the tour
    /// commits its approval: time to look at the queue and the YAML it
    /// offers in the console.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    review_for: patchward_api::Duration,
    /// Exit by itself this long after the rollout completed, rather than
    /// at Ctrl-C.
    #[arg(long = "for", value_name = "DURATION")]
    run_for: Option<patchward_api::Duration>,
    /// Keep the demo's files in DIR (new or empty) instead of a temporary
    /// folder removed on exit.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// How long the engine may take to apply a commit and import the advisory.
const IN_FORCE_LIMIT: Duration = Duration::from_secs(60);
/// How long the agents may take to enroll and report.
const ENROLL_LIMIT: Duration = Duration::from_secs(120);
/// How long the rollout may take beyond production's delay.
const ROLLOUT_SLACK: Duration = Duration::from_secs(180);
/// How long the devices may take to go back after the revert.
const RETRACTION_LIMIT: Duration = Duration::from_secs(180);

pub fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    debian::check_tools()?;
    let agent = agent_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start tokio")?;
    // The tour runs on this (the main) thread: the agents it starts end
    // with the thread that started them.
    runtime.block_on(demo(args, agent))
}

/// The agent beside this binary; built first under `cargo run`.
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to find the running patchward binary")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    match locate_agent(&exe, std::env::var_os("CARGO"), workspace) {
        AgentBinary::Found(path) => Ok(path),
        AgentBinary::Build(build) => {
            eprintln!("patchward demo: patchward-agent is not built yet; building it: {}", build.describe());
            build.run()
        }
        AgentBinary::Missing { expected } => bail!(
            "the demo runs real agents, and patchward-agent is not beside patchward (expected {}); build both \
             with `cargo build --workspace`, or run the demo with `cargo run -- demo`",
            expected.display()
        ),
    }
}

async fn demo(args: DemoArgs, agent: PathBuf) -> anyhow::Result<Outcome> {
    // Listening from the start: a Ctrl-C during set-up is kept until the
    // office can be stopped.
    let mut signals = Signals::new()?;
    let place = Place::new(args.dir.as_deref())?;
    let out = Printer { started: Instant::now() };
    println!("patchward demo: files in {} ({}); Ctrl-C stops the tour", place.path().display(), place.describe());
    let mut office = Office::start(place.path(), listen_address(args.listen)).await?;
    let ended = tokio::select! {
        result = tour(&mut office, &args, &agent, &out) => result.map(|()| None),
        signal = signals.recv() => Ok(Some(signal)),
    };
    match &ended {
        Ok(Some(signal)) => out.line(&format!("{signal}: stopping the agents and the engine")),
        Ok(None) => out.line("stopping the agents and the engine"),
        Err(_) => out.line("the tour failed; stopping the agents and the engine"),
    }
    office.shutdown().await;
    drop(office);
    if let Err(error) = ended {
        // The agents' logs say why, and the error names them.
        out.line(&place.keep());
        return Err(error);
    }
    out.line(&place.finish()?);
    Ok(Outcome::Success)
}

async fn tour(office: &mut Office, args: &DemoArgs, agent: &Path, out: &Printer) -> anyhow::Result<()> {
    introduce(office, out);
    let initial = office.initial_commit.clone();
    let catalog = office.wait_in_force(&initial, IN_FORCE_LIMIT).await?;
    let patch = office.admin.catalog_patch(PATCH).await?;
    out.line(&format!(
        "engine on {}: commit {} in force, catalog revision {catalog} imported from the OSV feed: {PATCH}, {}, {}",
        office.base(),
        short(&initial),
        patch.severity,
        if patch.active { "in coverage" } else { "NOT in coverage (the tour cannot roll it out)" }
    ));
    out.line(&format!(
        "console {}/ : sign in with the admin token {} to watch the tour as it runs",
        office.base(),
        office.admin_token
    ));
    let total = usize::from(args.agents);
    let pilots = (total / 2).max(1);
    office.start_agents(agent, pilots, total - pilots).await?;
    let names: Vec<String> = office.agents.iter().map(|a| format!("{} ({})", a.name, a.ring)).collect();
    out.line(&format!(
        "{total} patchward-agent processes, each in a sandbox dpkg root with {PACKAGE} {OLD_VERSION} and its own \
         apt (APT_CONFIG) trusting the vendor's key: {}",
        names.join(", ")
    ));
    wait_for_enrollments(office, total, out).await?;
    let patch = exposure(office, total).await?;
    let matched = match patch.matched_by.is_empty() {
        true => "no rule".to_owned(),
        false => patch.matched_by.join(", "),
    };
    out.line(&format!(
        "every agent is in, and {PATCH} is missing on {} of them. Nothing is approved for the devices: the shipped \
         playbook's rules go by severity, {PATCH} is {} (Debian's advisories carry none) and {matched} matches it, \
         so it waits in the review queue for an admin. The engine fetches nothing for it: it names a version, not a \
         file",
        patch.missing, patch.severity
    ));
    out.line(&format!(
        "review queue {}/console/review : {PATCH} with the YAML that approves it. The tour commits its own approval \
         in {} (--review-for)",
        office.base(),
        args.review_for
    ));
    tokio::time::sleep(args.review_for.as_std()).await;
    let approved = roll_out(office, args, total, out).await?;
    roll_back(office, &approved, total, out).await?;

    let portal_device = office.agents[0].name.clone();
    let user_token = office.user_token(&portal_device).await?;
    where_to_look(office, agent, &portal_device, &user_token);
    match args.run_for {
        Some(duration) => {
            println!("Exiting in {duration} (--for); Ctrl-C stops it sooner.");
            tokio::time::sleep(duration.as_std()).await;
        }
        None => {
            println!("Running until Ctrl-C.");
            std::future::pending::<()>().await;
        }
    }
    Ok(())
}

/// The vendor and the policy repository.
fn introduce(office: &Office, out: &Printer) {
    let vendor = &office.vendor;
    out.line(&format!(
        "vendor on {}: a signed apt repository ({} {} main, key {}) with {PACKAGE} {OLD_VERSION} and \
         {NEW_VERSION}, and the advisory {PATCH} as Debian writes it in OSV ({PACKAGE} fixed in {NEW_VERSION}, no \
         severity, no download URL), signed with {}",
        vendor.url(""),
        office.apt_source.url,
        office.apt_source.suite,
        vendor.archive_fingerprint,
        vendor.feed_key
    ));
    out.line(&format!(
        "policy repository {} (git): the shipped example policy on the demo's advisories, commit {}",
        office.repository.path().display(),
        short(&office.initial_commit)
    ));
}

/// The catalog's row of the tour's patch once the engine has planned every
/// device's inventory (each is missing it), or after a few seconds as it is.
async fn exposure(office: &Office, total: usize) -> anyhow::Result<crate::demo::admin::CatalogView> {
    let start = Instant::now();
    loop {
        let patch = office.admin.catalog_patch(PATCH).await?;
        if patch.missing >= total || start.elapsed() >= Duration::from_secs(10) {
            return Ok(patch);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Commits the approval and follows the rollout until every device runs
/// the fix, as the admin API and dpkg's database report it.
async fn roll_out(office: &mut Office, args: &DemoArgs, total: usize, out: &Printer) -> anyhow::Result<Approved> {
    let approved = office.approve(args.production_after).await?;
    out.line(&format!("commit {} \"{}\"", short(&approved.commit), approved.message));
    out.text(&format!("+ {}", approved.file), &approved.text);
    office.wait_in_force(&approved.commit, IN_FORCE_LIMIT).await?;
    out.line(&format!("synced (POST /api/v1/sync): commit {} in force; the rollout:", short(&approved.commit)));
    let rollout = Instant::now();
    follow_rollout(office, total, args.production_after.as_std() + ROLLOUT_SLACK, out).await?;
    let behind: Vec<String> = office
        .sandbox_versions()?
        .iter()
        .filter(|(_, v)| v.as_deref() != Some(NEW_VERSION))
        .map(|(name, v)| format!("{name} has {}", v.as_deref().unwrap_or("nothing")))
        .collect();
    if !behind.is_empty() {
        bail!("the engine reports the rollout done, but dpkg disagrees: {}", behind.join(", "));
    }
    out.line(&format!(
        "rollout complete in {:.0}s: all {total} devices run {PACKAGE} {NEW_VERSION}, installed by apt from the \
         vendor's signed repository, and dpkg's database in each sandbox says so",
        rollout.elapsed().as_secs_f64()
    ));
    let downloads = office.vendor.downloads(&office.new.sha256);
    out.line(&format!(
        "{} of {total} agents downloaded {} from the office mirror (their Location), {} from the vendor's \
         repository",
        downloads.mirror.min(total),
        office.new.control.file_name(),
        downloads.repository
    ));
    Ok(approved)
}

/// Reverts the approval and follows every device back to the version it
/// had; checks that dpkg agrees and removed nothing.
async fn roll_back(office: &mut Office, approved: &Approved, total: usize, out: &Printer) -> anyhow::Result<()> {
    let reverted = office.revert(approved).await?;
    out.line(&format!(
        "commit {} (git revert {}): {}",
        short(&reverted.commit),
        short(&approved.commit),
        reverted.message.lines().next().unwrap_or_default()
    ));
    office.wait_in_force(&reverted.commit, IN_FORCE_LIMIT).await?;
    out.line(&format!(
        "synced: commit {} in force; nothing grants {PATCH} any more, so the engine retracts it from every device \
         that reported installing it:",
        short(&reverted.commit)
    ));
    let started = Instant::now();
    follow_retraction(office, total, RETRACTION_LIMIT, out).await?;
    for agent in &office.agents {
        let removals = agent.sandbox.removals()?;
        if !removals.is_empty() {
            bail!("dpkg's log of {} records removals: {}", agent.name, removals.join(", "));
        }
    }
    let downloads = office.vendor.downloads(&office.old.sha256);
    out.line(&format!(
        "all {total} devices are back on {PACKAGE} {OLD_VERSION} in {:.1}s, restored by apt from the vendor's \
         repository ({} of {total} from the office mirror); nothing was removed: dpkg's log in each sandbox records \
         upgrades and downgrades only",
        started.elapsed().as_secs_f64(),
        downloads.mirror.min(total)
    ));
    Ok(())
}

/// Prints each device as it reports in, until all `total` have reported
/// the old package.
async fn wait_for_enrollments(office: &mut Office, total: usize, out: &Printer) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    loop {
        office.check_agents()?;
        let devices = office.devices().await?;
        for device in &devices {
            if let Some(version) = &device.package_version
                && seen.insert(device.id.clone())
            {
                out.line(&format!(
                    "{:<9} enrolled and reported its inventory: ring {}, {}, {PACKAGE} {version}",
                    device.id,
                    device.ring.as_deref().unwrap_or("none"),
                    device.platform.as_deref().unwrap_or("no platform")
                ));
            }
        }
        if seen.len() >= total {
            return Ok(());
        }
        if start.elapsed() >= ENROLL_LIMIT {
            let logs: Vec<String> = office.agents.iter().map(|a| a.log.display().to_string()).collect();
            bail!(
                "{} of {total} agents reported within {}s; their logs: {}",
                seen.len(),
                ENROLL_LIMIT.as_secs(),
                logs.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints every change of a device's item and of the compliance view until
/// every device has the patch installed and is compliant.
async fn follow_rollout(office: &mut Office, total: usize, limit: Duration, out: &Printer) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut last_compliance = String::new();
    loop {
        office.check_agents()?;
        let devices = office.devices().await?;
        for device in &devices {
            let state = describe(device);
            if last.get(&device.id) != Some(&state) {
                out.line(&format!("{:<9} {PATCH} {state}", device.id));
                last.insert(device.id.clone(), state);
            }
        }
        let compliance = office.admin.compliance().await?;
        let headline = format!(
            "compliance: {} of {} devices compliant ({}%)",
            compliance.compliant, compliance.devices, compliance.percent
        );
        if headline != last_compliance {
            out.line(&headline);
            last_compliance = headline;
        }
        let installed = devices.iter().filter(|d| d.item.as_ref().is_some_and(|i| i.status == "installed")).count();
        if installed >= total && compliance.compliant as usize >= total {
            return Ok(());
        }
        if start.elapsed() >= limit {
            let pending: Vec<String> = devices
                .iter()
                .filter(|d| d.item.as_ref().is_none_or(|i| i.status != "installed"))
                .map(|d| {
                    let log = office.agents.iter().find(|a| a.name == d.id).map(|a| a.log.display().to_string());
                    format!("{} ({}; log {})", d.id, describe(d), log.unwrap_or_default())
                })
                .collect();
            bail!("the rollout did not finish within {}s: {}", limit.as_secs(), pending.join(", "));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A device's item in a few words.
fn describe(device: &DeviceView) -> String {
    let Some(item) = &device.item else {
        return "not planned for it yet".into();
    };
    let stage = match item.stage {
        Some(stage) => format!("stage {stage} ({})", device.ring.as_deref().unwrap_or("no ring")),
        None => "no stage".into(),
    };
    let failed = if device.report.as_deref() == Some("failed") { ", its last install FAILED" } else { "" };
    match item.status.as_str() {
        "installed" => format!(
            "installed, {stage}: {PACKAGE} {}",
            device.package_version.as_deref().unwrap_or("(not in its inventory yet)")
        ),
        "blocked" => format!("blocked, {stage}: waiting for the pilot ring's gate{failed}"),
        "scheduled" => format!(
            "scheduled, {stage}: not before {}{failed}",
            item.not_before.as_deref().map_or_else(|| "its stage's time".into(), local_time)
        ),
        "due" => format!("due, {stage}: the agent installs it through apt now{failed}"),
        other => format!("{other}, {stage}{failed}"),
    }
}

/// Prints every change of a device's retraction until every device is
/// back on the old version, as the admin API reports it (its inventory
/// and its uninstall report) and as dpkg's database in its sandbox says.
async fn follow_retraction(office: &mut Office, total: usize, limit: Duration, out: &Printer) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut restored = BTreeSet::new();
    loop {
        office.check_agents()?;
        for device in &office.devices().await? {
            let state = describe_retraction(device);
            if last.get(&device.id) != Some(&state) {
                out.line(&format!("{:<9} {PATCH} {state}", device.id));
                last.insert(device.id.clone(), state);
            }
            if is_restored(device) && !restored.contains(&device.id) {
                let agent = office.agents.iter().find(|a| a.name == device.id);
                let dpkg = match agent {
                    Some(agent) => agent.sandbox.installed_version(PACKAGE)?,
                    None => bail!("the engine lists a device {} the demo did not start", device.id),
                };
                if dpkg.as_deref() != Some(OLD_VERSION) {
                    bail!(
                        "the engine reports {} restored to {PACKAGE} {OLD_VERSION}, but dpkg's database says {}",
                        device.id,
                        dpkg.as_deref().unwrap_or("it is not installed")
                    );
                }
                out.line(&format!(
                    "{:<9} back on {PACKAGE} {OLD_VERSION}: the admin API reports it (inventory, and its uninstall \
                     succeeded), and dpkg's database says {OLD_VERSION}",
                    device.id
                ));
                restored.insert(device.id.clone());
            }
        }
        if restored.len() >= total {
            return Ok(());
        }
        if start.elapsed() >= limit {
            let logs: Vec<String> = office.agents.iter().map(|a| a.log.display().to_string()).collect();
            bail!(
                "{} of {total} devices went back within {}s; the agents' logs: {}",
                restored.len(),
                limit.as_secs(),
                logs.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the admin API shows `device` back on the old version after an
/// uninstall it reported.
fn is_restored(device: &DeviceView) -> bool {
    device.package_version.as_deref() == Some(OLD_VERSION)
        && device.report.as_deref() == Some("succeeded")
        && device.report_action.as_deref() == Some("uninstall")
}

/// A device's retraction in a few words.
fn describe_retraction(device: &DeviceView) -> String {
    let version = device.package_version.as_deref().unwrap_or("(not in its inventory)");
    let failed = if device.report.as_deref() == Some("failed") { ", its last attempt FAILED" } else { "" };
    match &device.item {
        Some(item) if item.action == "uninstall" => match item.status.as_str() {
            "due" => format!("retracted: due, the agent restores {PACKAGE} {OLD_VERSION} through apt now{failed}"),
            status => format!("retracted: {status}, {PACKAGE} {version}{failed}"),
        },
        Some(item) => format!("still granted until the engine plans the revert: {}, {PACKAGE} {version}", item.status),
        None if is_restored(device) => {
            format!("retraction done: no item any more, its uninstall succeeded, {PACKAGE} {version}")
        }
        None => format!("no item, {PACKAGE} {version}{failed}"),
    }
}

/// An RFC 3339 instant as the local wall clock's `HH:MM:SS`.
fn local_time(instant: &str) -> String {
    instant
        .parse::<jiff::Timestamp>()
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::system()).strftime("%H:%M:%S").to_string())
        .unwrap_or_else(|_| instant.to_owned())
}

fn where_to_look(office: &Office, agent: &Path, portal_device: &str, user_token: &str) {
    let base = office.base();
    let first = &office.agents[0];
    println!();
    println!("Where to look");
    println!("  console      {base}/  (sign in with a token below)");
    println!("  admin token  {}", office.admin_token);
    println!("  user token   {user_token}  ({portal_device}'s user: its portal, and GET {base}/api/v1/user/device)");
    println!(
        "  retraction   {base}/console/devices/{}: \"Last report\" reads {PATCH} succeeded (uninstall); both of its \
         reports, the install and the uninstall with each package apt installed and its sha256, are in \
         {base}/console/audit?actor={}",
        first.name, first.name
    );
    println!("  API          curl -H 'Authorization: Bearer {}' {base}/api/v1/compliance", office.admin_token);
    println!("               (also /api/v1/status, /api/v1/devices, /api/v1/audit; ?format=csv)");
    println!("  policy       git -C {} log --stat", office.repository.path().display());
    println!(
        "               commit a change there: the engine follows it within {}s, or at once after POST {base}/api/v1/sync",
        crate::demo::ENGINE_POLL.as_secs()
    );
    println!("  an agent     {} status --config {}", agent.display(), first.config.display());
    println!(
        "  its apt      APT_CONFIG={} apt-cache policy {PACKAGE}  (the repository {} {} main, key {})",
        first.apt.file.display(),
        office.apt_source.url,
        office.apt_source.suite,
        office.apt_source.key.display()
    );
    println!(
        "  dpkg         dpkg-query --admindir={} -W {PACKAGE}; its log: {}",
        first.sandbox.admindir().display(),
        first.sandbox.root().join("var/log/dpkg.log").display()
    );
    println!("  agent logs   {}", office.dir.join("agents/*/agent.log").display());
    println!("  files        {}", office.dir.display());
    println!();
}

/// The first 12 hex digits of a commit.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `--listen`, or 127.0.0.1:8420 when free (the port `serve` uses), or any
/// free port.
fn listen_address(flag: Option<SocketAddr>) -> SocketAddr {
    if let Some(addr) = flag {
        return addr;
    }
    let preferred: SocketAddr = "127.0.0.1:8420".parse().expect("a literal address");
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => "127.0.0.1:0".parse().expect("a literal address"),
    }
}

/// Lines of the tour, stamped with the seconds since it began.
struct Printer {
    started: Instant,
}

impl Printer {
    fn line(&self, text: &str) {
        println!("[{:>6.1}s] {text}", self.started.elapsed().as_secs_f64());
    }

    /// A headline and a file's text, indented.
    fn text(&self, headline: &str, text: &str) {
        self.line(headline);
        for line in text.lines() {
            println!("           | {line}");
        }
    }
}

/// Where the demo's files live.
enum Place {
    /// Removed on exit.
    Temporary(tempfile::TempDir),
    /// `--dir`: kept.
    Kept(PathBuf),
}

impl Place {
    fn new(dir: Option<&Path>) -> anyhow::Result<Place> {
        match dir {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("patchward-demo-")
                    .tempdir()
                    .context("failed to make a temporary folder for the demo")?;
                Ok(Place::Temporary(dir))
            }
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
                let mut entries =
                    std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?;
                if entries.next().is_some() {
                    bail!("{} is not empty; the demo keeps its files in a new or empty folder", dir.display());
                }
                let dir = std::path::absolute(dir).with_context(|| format!("failed to resolve {}", dir.display()))?;
                Ok(Place::Kept(dir))
            }
        }
    }

    fn path(&self) -> &Path {
        match self {
            Place::Temporary(dir) => dir.path(),
            Place::Kept(dir) => dir,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Place::Temporary(_) => "removed on exit",
            Place::Kept(_) => "kept on exit",
        }
    }

    /// Keeps the files, temporary or not; says where they are.
    fn keep(self) -> String {
        let dir = match self {
            Place::Temporary(dir) => dir.keep(),
            Place::Kept(dir) => dir,
        };
        format!("the demo's files are kept in {}", dir.display())
    }

    /// Removes a temporary folder; says what became of the files.
    fn finish(self) -> anyhow::Result<String> {
        match self {
            Place::Temporary(dir) => {
                let path = dir.path().to_owned();
                dir.close().with_context(|| format!("failed to remove {}", path.display()))?;
                Ok(format!("removed {}", path.display()))
            }
            Place::Kept(dir) => Ok(format!("kept the files in {}", dir.display())),
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the start.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
