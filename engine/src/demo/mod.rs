//! `patchward demo`'s building blocks: a whole office on loopback, patched
//! the way Debian machines are. A vendor publishing a Debian-style OSV
//! advisory (signed) and a signed apt repository holding the vulnerable
//! and the fixed package, plus an office mirror (`vendor`, `archive`); a
//! git policy repository holding the shipped example policy
//! (`repository`); a real engine (`crate::daemon::serve::start`, on the
//! wall clock); and real `patchward-agent` processes in sandbox dpkg roots,
//! each with its own apt configuration trusting the vendor's key (`agents`,
//! `debian`), read back through the admin API as an admin would (`admin`).
//!
//! The advisory carries no download URL, so the engine fetches nothing:
//! each agent resolves the fix against the repository's signed index,
//! fetches the exact file (from the office mirror by sha256 first), and
//! apt installs it. Reverting the approval commit retracts the patch, and
//! the agents restore the version they had from the same repository.
//!
//! The tour itself, and everything it prints, is `crate::cli::demo`.

pub mod admin;
pub mod agents;
pub mod archive;
pub mod debian;
pub mod repository;
pub mod vendor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use self::admin::{AdminClient, DeviceView};
use self::agents::Agent;
use self::archive::{PoolPackage, Suite};
use self::debian::{AptSource, Control};
use self::repository::{Endpoints, PolicyRepository};
use self::vendor::{Advisory, Vendor};
use crate::clock::{Clock, SystemClock};
use crate::daemon::config::ServeConfig;
use crate::daemon::serve::Running;

/// The advisory the tour rolls out, and back.
pub const PATCH: &str = "DSA-DEMO-0001";
/// The package it upgrades (a binary built from the source package of the
/// same name), from the version every sandbox starts with to the fixed one.
pub const PACKAGE: &str = "pw-hello";
pub const OLD_VERSION: &str = "0.9";
pub const NEW_VERSION: &str = "1.0";
/// The advisory's ecosystem, and the platform the engine makes of it: the
/// one the sandboxes report.
pub const ECOSYSTEM: &str = "Debian:12";
pub const PLATFORM: &str = "debian-12";
/// The apt repository's suite.
pub const SUITE: &str = "bookworm-security";

/// How long the agents' long polls wait: the engine answers them at once
/// when a device's desired state changes, so this only bounds idle polls.
pub const AGENT_POLL: patchward_api::Duration = patchward_api::Duration::from_secs(15);

/// How often the engine looks at the demo's repository.
pub const ENGINE_POLL: Duration = Duration::from_secs(5);

/// The office: vendor, policy repository, engine, agents.
pub struct Office {
    pub dir: PathBuf,
    pub vendor: Vendor,
    /// The repository the devices' apt trusts.
    pub apt_source: AptSource,
    /// dpkg's architecture here: the vendor's index and the devices' apt.
    pub architecture: String,
    pub repository: PolicyRepository,
    /// The first commit: the shipped policy on the demo's feed.
    pub initial_commit: String,
    pub admin: AdminClient,
    /// The admin token (also in `DATA/admin-token`).
    pub admin_token: String,
    pub agents: Vec<Agent>,
    /// The vulnerable package every sandbox starts with.
    pub old_deb: PathBuf,
    /// The vulnerable and the fixed package, as the repository holds them.
    pub old: PoolPackage,
    pub new: PoolPackage,
    running: Option<Running>,
}

impl Office {
    /// Builds the packages, starts the vendor, commits the policy and
    /// starts the engine on `listen`, all under `dir`.
    pub async fn start(dir: &Path, listen: std::net::SocketAddr) -> anyhow::Result<Office> {
        let architecture = debian::native_architecture()?;
        let (old_deb, old) = package(&dir.join("packages"), OLD_VERSION)?;
        let (_, new) = package(&dir.join("packages"), NEW_VERSION)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let vendor =
            Vendor::start(&advisory(), &[old.clone(), new.clone()], &suite(&architecture, clock.now())).await?;
        let key = dir.join("vendor/archive-key.asc");
        write_file(&key, vendor.archive_key.as_bytes())?;
        let apt_source = AptSource {
            url: vendor.repository_url(),
            suite: vendor.suite.clone(),
            component: archive::COMPONENT.into(),
            key: std::path::absolute(&key).with_context(|| format!("failed to resolve {}", key.display()))?,
        };
        // Refused here, before anything runs, if the path cannot be named.
        apt_source.line()?;
        let endpoints = Endpoints {
            feed_url: vendor.feed_url(),
            feed_key: vendor.feed_key.clone(),
            mirror_url: vendor.mirror_url(),
        };
        let (repository, initial_commit) = PolicyRepository::create(
            &dir.join("policies"),
            &repository::initial_files(&endpoints),
            "the shipped example policy, on the demo's loopback advisories and mirror",
        )?;
        let (running, admin, admin_token) = start_engine(dir, listen, &repository, clock).await?;
        Ok(Office {
            dir: dir.to_owned(),
            vendor,
            apt_source,
            architecture,
            repository,
            initial_commit,
            admin,
            admin_token,
            agents: Vec::new(),
            old_deb,
            old,
            new,
            running: Some(running),
        })
    }

    /// The engine's URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> &str {
        self.admin.base()
    }

    /// Waits until `commit` is in force with the advisory imported;
    /// returns the catalog's revision.
    pub async fn wait_in_force(&self, commit: &str, limit: Duration) -> anyhow::Result<u64> {
        let start = Instant::now();
        loop {
            let (applied, catalog) = self.admin.in_force().await?;
            if applied.as_deref() == Some(commit) && catalog > 0 {
                return Ok(catalog);
            }
            if start.elapsed() >= limit {
                bail!(
                    "gave up after {}s waiting for the engine to apply {commit} and import the advisory (GET \
                     {}/api/v1/status says why)",
                    limit.as_secs(),
                    self.base()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Prepares `pilots + production` sandboxes with the old package,
    /// enrolls an agent in each and starts it (`binary`).
    ///
    /// Starts processes that end with the calling thread (see
    /// [`Agent::start`]): call it from the main thread.
    pub async fn start_agents(&mut self, binary: &Path, pilots: usize, production: usize) -> anyhow::Result<()> {
        let dir = self.dir.join("agents");
        let names = (1..=pilots)
            .map(|i| (format!("pilot-{i:02}"), "pilot"))
            .chain((1..=production).map(|i| (format!("prod-{i:02}"), "production")));
        for (name, ring) in names {
            let agent = Agent::prepare(&dir, &name, ring, AGENT_POLL, &self.apt_source, &self.architecture)?;
            agent.sandbox.install(&self.old_deb)?;
            self.agents.push(agent);
        }
        let uses = self.agents.len();
        let token =
            self.admin.create_token(serde_json::json!({"kind": "enrollment", "uses": uses, "expires": "1h"})).await?;
        let server = self.base().to_owned();
        for agent in &mut self.agents {
            agent.enroll(binary, &server, &token).await?;
            agent.start(binary)?;
        }
        Ok(())
    }

    /// Every device the engine knows, with the tour's patch and package.
    pub async fn devices(&self) -> anyhow::Result<Vec<DeviceView>> {
        self.admin.devices(PATCH, PACKAGE).await
    }

    /// Fails when an agent process has ended: nothing would converge.
    pub fn check_agents(&mut self) -> anyhow::Result<()> {
        for agent in &mut self.agents {
            if let Some(status) = agent.exited() {
                bail!("the agent of {} ended ({status}); its log is {}", agent.name, agent.log.display());
            }
        }
        Ok(())
    }

    /// Commits the approval of [`PATCH`] and asks the engine to sync, as
    /// a webhook would. Returns the commit, the file and its text.
    pub async fn approve(&self, production_after: patchward_api::Duration) -> anyhow::Result<Approved> {
        let pilots = self.agents.iter().filter(|a| a.ring == "pilot").count();
        let (file, text) = repository::approval_file(PATCH, pilots, production_after);
        let message = format!(
            "Approve {PATCH} ({PACKAGE} {NEW_VERSION}): pilot at once, production after {production_after} once the pilot succeeded"
        );
        let commit = self.repository.commit(&[(file.clone(), text.clone())], &message)?;
        self.admin.sync().await?;
        Ok(Approved { commit, message, file, text })
    }

    /// Reverts the approval commit (a new commit on `main`, as `git
    /// revert` makes it) and asks the engine to sync.
    pub async fn revert(&self, approved: &Approved) -> anyhow::Result<Reverted> {
        let (commit, message) = self.repository.revert(&approved.commit)?;
        self.admin.sync().await?;
        Ok(Reverted { commit, message })
    }

    /// A user token bound to `device`: its user's portal.
    pub async fn user_token(&self, device: &str) -> anyhow::Result<String> {
        self.admin.create_token(serde_json::json!({"kind": "user", "device": device})).await
    }

    /// What dpkg's own database says each sandbox has of [`PACKAGE`].
    pub fn sandbox_versions(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        self.agents.iter().map(|a| Ok((a.name.clone(), a.sandbox.installed_version(PACKAGE)?))).collect()
    }

    /// Stops the agents, then the engine, then the vendor.
    pub async fn shutdown(&mut self) {
        let grace = Duration::from_secs(10);
        futures_util::future::join_all(self.agents.iter_mut().map(|a| a.stop(grace))).await;
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        self.vendor.shutdown().await;
    }
}

/// The approval commit.
#[derive(Clone, Debug)]
pub struct Approved {
    pub commit: String,
    pub message: String,
    pub file: String,
    pub text: String,
}

/// The revert of the approval commit.
#[derive(Clone, Debug)]
pub struct Reverted {
    pub commit: String,
    pub message: String,
}

/// The advisory the vendor publishes.
fn advisory() -> Advisory {
    Advisory {
        id: PATCH.into(),
        summary: format!("{PACKAGE} - security update"),
        details: format!(
            "{PACKAGE} {NEW_VERSION} fixes a remote crash in every earlier version. It is a demo package: it \
             installs usr/share/{PACKAGE}/version and nothing else."
        ),
        ecosystem: ECOSYSTEM.into(),
        package: PACKAGE.into(),
        fixed_version: NEW_VERSION.into(),
    }
}

/// What the vendor's `Release` says.
fn suite(architecture: &str, now: jiff::Timestamp) -> Suite {
    Suite {
        origin: "patchward demo".into(),
        label: "patchward demo".into(),
        suite: SUITE.into(),
        architecture: architecture.to_owned(),
        description: format!("the demo vendor's security updates for {ECOSYSTEM}"),
        date: now,
    }
}

/// Builds [`PACKAGE`] at `version` into `dir`: the file and the package as
/// the repository holds it.
fn package(dir: &Path, version: &str) -> anyhow::Result<(PathBuf, PoolPackage)> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let control = Control::demo(PACKAGE, version);
    let deb = debian::build(dir, &control)?;
    let bytes = std::fs::read(&deb).with_context(|| format!("failed to read {}", deb.display()))?;
    Ok((deb, PoolPackage::new(control, bytes)))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("failed to write {}", path.display()))
}

/// Starts the engine on `listen`, following `repository`; returns it, an
/// admin client and the admin token.
async fn start_engine(
    dir: &Path,
    listen: std::net::SocketAddr,
    repository: &PolicyRepository,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Running, AdminClient, String)> {
    let config = ServeConfig {
        data: dir.join("engine"),
        listen,
        metrics_listen: "127.0.0.1:0".parse().expect("a literal address"),
        policies: repository.path().display().to_string(),
        // The example feed would take the source's first revision, and
        // its packages cannot be fetched from here.
        bundled_feed: false,
        // A commit made by hand in the demo's repository is picked up
        // without a sync; and the reconcile pass is what plans the fleet
        // again after agents' reports, which opens gates.
        poll_interval: ENGINE_POLL,
        ..ServeConfig::default()
    };
    let running = crate::daemon::serve::start(config, clock).await?;
    let admin_token = std::fs::read_to_string(&running.admin_token_file)
        .with_context(|| format!("failed to read {}", running.admin_token_file.display()))?
        .trim()
        .to_owned();
    let host = if running.api.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), running.api.port())
    } else {
        running.api
    };
    let admin = AdminClient::new(&format!("http://{host}"), &admin_token)?;
    Ok((running, admin, admin_token))
}

/// How often the tour asks the engine.
pub const POLL: Duration = Duration::from_millis(250);
