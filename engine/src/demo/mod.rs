//! `patchward demo`'s building blocks: a whole office on loopback. A vendor
//! publishing a signed feed and a real `.deb` (`vendor`), a git policy
//! repository holding the shipped example policy (`repository`), a real
//! engine (`crate::daemon::serve::start`, on the wall clock), and real
//! `patchward-agent` processes in sandbox dpkg roots (`agents`, `debian`),
//! read back through the admin API as an admin would (`admin`).
//!
//! The tour itself, and everything it prints, is `crate::cli::demo`.

pub mod admin;
pub mod agents;
pub mod debian;
pub mod repository;
pub mod vendor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use self::admin::{AdminClient, DeviceView};
use self::agents::Agent;
use self::repository::{Endpoints, PolicyRepository};
use self::vendor::{Advisory, Package, Vendor};
use crate::clock::{Clock, SystemClock};
use crate::daemon::config::ServeConfig;
use crate::daemon::serve::Running;

/// The patch the tour rolls out.
pub const PATCH: &str = "PW-DEMO-0001";
/// The package it upgrades, from the version every sandbox starts with to
/// the fixed one.
pub const PACKAGE: &str = "pw-hello";
pub const OLD_VERSION: &str = "0.9";
pub const NEW_VERSION: &str = "1.0";
/// The patch's severity: the shipped playbook sends it to the review
/// queue, so nothing moves until the demo's commit approves it.
pub const SEVERITY: &str = "medium";

/// How long the agents' long polls wait: the engine answers them at once
/// when a device's desired state changes, so this only bounds idle polls.
pub const AGENT_POLL: patchward_api::Duration = patchward_api::Duration::from_secs(15);

/// How often the engine looks at the demo's repository.
pub const ENGINE_POLL: Duration = Duration::from_secs(5);

/// The office: vendor, policy repository, engine, agents.
pub struct Office {
    pub dir: PathBuf,
    pub vendor: Vendor,
    pub repository: PolicyRepository,
    /// The first commit: the shipped policy on the demo's feed.
    pub initial_commit: String,
    pub admin: AdminClient,
    /// The admin token (also in `DATA/admin-token`).
    pub admin_token: String,
    pub agents: Vec<Agent>,
    /// The vulnerable package every sandbox starts with.
    pub old_deb: PathBuf,
    /// The fixed package the feed offers.
    pub fix: Package,
    running: Option<Running>,
}

impl Office {
    /// Builds the packages, starts the vendor, commits the policy and
    /// starts the engine on `listen`, all under `dir`.
    pub async fn start(dir: &Path, listen: std::net::SocketAddr) -> anyhow::Result<Office> {
        let packages = dir.join("packages");
        std::fs::create_dir_all(&packages).with_context(|| format!("failed to create {}", packages.display()))?;
        let old_deb = debian::build_deb(&packages, PACKAGE, OLD_VERSION)?;
        let new_deb = debian::build_deb(&packages, PACKAGE, NEW_VERSION)?;
        let new_bytes = std::fs::read(&new_deb).with_context(|| format!("failed to read {}", new_deb.display()))?;
        let file = new_deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fix = Package::new(file, new_bytes);
        let advisory = Advisory {
            id: PATCH.into(),
            title: format!("{PACKAGE} {NEW_VERSION} fixes a remote crash in {PACKAGE} {OLD_VERSION}"),
            severity: SEVERITY.into(),
            product: PACKAGE.into(),
            fixed_version: NEW_VERSION.into(),
            package: fix.clone(),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let vendor = Vendor::start(&[advisory], clock.now()).await?;
        let endpoints = Endpoints {
            feed_url: vendor.feed_url(),
            feed_key: vendor.public_key.clone(),
            mirror_url: vendor.mirror_url(),
        };
        let (repository, initial_commit) = PolicyRepository::create(
            &dir.join("policies"),
            &repository::initial_files(&endpoints),
            "the shipped example policy, on the demo's loopback feed and mirror",
        )?;
        let config = ServeConfig {
            data: dir.join("engine"),
            listen,
            metrics_listen: "127.0.0.1:0".parse().expect("a literal address"),
            policies: repository.path().display().to_string(),
            // The example feed would take the source's first revision, and
            // its packages cannot be fetched from here.
            bundled_feed: false,
            // A commit made by hand in the demo's repository is picked up
            // without a sync; and the reconcile pass is what plans the
            // fleet again after agents' reports, which opens gates.
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
        Ok(Office {
            dir: dir.to_owned(),
            vendor,
            repository,
            initial_commit,
            admin,
            admin_token,
            agents: Vec::new(),
            old_deb,
            fix,
            running: Some(running),
        })
    }

    /// The engine's URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> &str {
        self.admin.base()
    }

    /// Waits until `commit` is in force with the feed imported; returns
    /// the catalog's revision.
    pub async fn wait_in_force(&self, commit: &str, limit: Duration) -> anyhow::Result<u64> {
        let start = Instant::now();
        loop {
            let (applied, catalog) = self.admin.in_force().await?;
            if applied.as_deref() == Some(commit) && catalog > 0 {
                return Ok(catalog);
            }
            if start.elapsed() >= limit {
                bail!(
                    "gave up after {}s waiting for the engine to apply {commit} and import the feed (GET {}/api/v1/status \
                     says why)",
                    limit.as_secs(),
                    self.base()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the engine's media master has the fix, so that no agent
    /// is told to install a package neither the engine nor a mirror holds
    /// yet. The master fetches when desired states change: once devices
    /// are enrolled.
    pub async fn wait_for_package(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.admin.has_blob(&self.fix.sha256).await? {
            if start.elapsed() >= limit {
                bail!(
                    "gave up after {}s waiting for the engine to fetch {PATCH}'s package from {}",
                    limit.as_secs(),
                    self.vendor.url("/packages/")
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
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
            let agent = Agent::prepare(&dir, &name, ring, AGENT_POLL)?;
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

/// How often the tour asks the engine.
pub const POLL: Duration = Duration::from_millis(250);
