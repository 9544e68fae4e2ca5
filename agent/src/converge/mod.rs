//! One convergence pass, and the books it keeps: collect facts and
//! inventory (upload them when they changed), fetch and verify the desired
//! state, decide each item (`decide`, pure), act on the decision (download,
//! re-hash, install, verify by detection, or prompt), journal every step,
//! and send the outbox.
//!
//! The decision is pure and the books are small; everything that takes
//! time (downloads, installers) runs outside the books' lock, so the local
//! socket answers the user while an install runs.
//!
//! Recovery (G6): on the first pass after a start, every item whose last
//! journal step is unfinished is resolved before anything else. A
//! `downloading` needs nothing (the partial file resumes when the item is
//! decided again); an `installing`, `verifying` or `uninstalling` is
//! decided by detection: present is journaled `installed` and reported
//! succeeded, anything else is journaled `failed` (interrupted) and counts
//! as an attempt, so the item is decided again and never reported
//! installed without detection saying so (T22).
//!
//! Not applicable (DESIGN, "Detection follows from the fixes"): an item
//! whose package fixes name nothing installed on this device (or none for
//! its platform) is not decided at all. Nothing is installed or removed,
//! no outcome is reported (so no gate counts it, and it never fails), and
//! one `step` event says it does not apply; it is reported again only if
//! it applied in between. The user's status shows it as nothing to do.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use patchward_api::ReportStatus;
use patchward_api::desired::{Action, DesiredItem, DesiredState};
use patchward_api::device::InventoryUpload;
use patchward_api::events::EventKind;

use crate::cache::{Cache, Sha256Digest};
use crate::client::{EngineClient, Fetched};
use crate::decide::{self, Decision, Item, LocalItemState, Observations, RestartBaseline};
use crate::detect::{DetectedBy, DetectionResult, DeviceView, detect_item, detected_by, package_to_remove};
use crate::download::{Bearer, Downloader, Limits, sources_for};
use crate::install::{Installer, Outcome, PackageType, Removal, VerifiedPackage};
use crate::journal::Step;
use crate::observe::Clock;
use crate::outbox::NewEvent;
use crate::state::{StateDir, StateError};
use crate::trust::{self, Trusted};

/// How long an item is put off when it cannot be done yet (the dpkg lock is
/// held, the package is not on any source yet).
const RETRY_LATER: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// How long an item waits for its repositories to offer its fix (a lagging
/// mirror, a subscription-only fix): they change on their own schedule.
const RETRY_REPOSITORIES: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// How an item put off counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Something local and passing (a held lock, a blob not fetched yet):
    /// an attempt, so an item that never gets through ends.
    Attempt,
    /// The repositories do not offer the fix yet: never a failure and no
    /// attempt spent, however long it takes (DESIGN).
    ForTheRepositories,
}

/// Why a package did not download.
enum DownloadProblem {
    /// No source has it yet (every one answered 404): try again later.
    NotYetAvailable(String),
    Failed(String),
}

mod books;
mod platform;
mod recovery;
mod repository;
mod rollback;

pub use books::{Books, Memory};
use platform::SharedCommands;
pub use platform::{NoReboot, Platform, Reboot, SystemReboot};

/// The device's identity, from enrollment (`identity.json`, 0600).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    pub server: String,
    pub device_id: String,
    /// Written to `identity.json` (0600) and sent as the bearer; never
    /// printed.
    #[serde(serialize_with = "patchward_api::logging::serialize_exposed")]
    pub credential: patchward_api::logging::Secret,
    /// `ed25519:BASE64`, pinned at enrollment.
    pub engine_key: String,
}

pub const IDENTITY_FILE: &str = "identity.json";
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Setup(String),
}

/// What a pass did, for the log and the run loop.
#[derive(Debug, Default)]
pub struct PassReport {
    pub installed: Vec<String>,
    pub uninstalled: Vec<String>,
    pub failed: Vec<String>,
    /// When some item's decision may change by itself.
    pub wake_at: Option<Timestamp>,
    /// The engine could not be reached (the last good state was used).
    pub engine_unreachable: Option<String>,
    /// A desired state refused, and why.
    pub refused: Option<String>,
    pub events_sent: usize,
}

/// The platform's clock as a value, for the samplers that own theirs.
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

/// CPU and network samples for the idle mode, kept by the run loop's
/// sampler between passes (an hour of them at most).
pub type Load = Arc<Mutex<crate::observe::LoadMonitor<SharedClock>>>;

pub fn load_monitor(clock: Arc<dyn Clock>, proc: &std::path::Path) -> Load {
    let keep = jiff::SignedDuration::from_hours(1);
    Arc::new(Mutex::new(crate::observe::LoadMonitor::new(SharedClock(clock), proc, keep, 512)))
}

pub struct Agent {
    pub identity: Identity,
    pub platform: Platform,
    pub books: Arc<Mutex<Books>>,
    /// Sampled by the run loop (and once per pass).
    pub load: Load,
    client: EngineClient,
    downloader: Downloader,
    staging: PathBuf,
    engine_key: ed25519_dalek::VerifyingKey,
    limits: Limits,
    recovered: bool,
    etag: Option<String>,
}

/// The books' lock; a panic elsewhere must not stop the agent reporting.
fn lock(books: &Mutex<Books>) -> std::sync::MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    pub fn open(
        state: StateDir,
        platform: Platform,
        limits: Limits,
        request_timeout: std::time::Duration,
    ) -> Result<Agent, AgentError> {
        let identity: Identity = state.read_json(IDENTITY_FILE)?.ok_or_else(|| {
            AgentError::Setup(format!(
                "{} has no identity: enroll first (`patchward-agent enroll --server URL --token T`)",
                state.path().display()
            ))
        })?;
        let engine_key = patchward_api::dsse::parse_public_key(&identity.engine_key)
            .map_err(|e| AgentError::Setup(format!("{IDENTITY_FILE}: engineKey: {e}")))?;
        let client = EngineClient::new(&identity.server, Some(identity.credential.clone()), request_timeout)
            .map_err(|e| AgentError::Setup(e.to_string()))?;
        let cache = Cache::open(state.path()).map_err(|e| AgentError::Setup(e.to_string()))?;
        let staging = cache.staging_dir().to_owned();
        // A staging copy outlives only an agent killed mid-install
        // (`VerifiedPackage` removes its own): none is in use while this
        // agent holds the state directory's lock.
        if let Ok(entries) = std::fs::read_dir(&staging) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let downloader = Downloader::new(cache).map_err(|e| AgentError::Setup(e.to_string()))?;
        let mut books = Books::open(state)?;
        // A state kept on disk is verified again: the file is no authority.
        if let Some(kept) = books.memory.trusted.clone() {
            let device = identity.device_id.clone();
            let valid =
                patchward_api::dsse::verify(&kept.envelope, patchward_api::dsse::DESIRED_STATE_TYPE, &engine_key)
                    .ok()
                    .and_then(|payload| serde_json::from_slice::<DesiredState>(&payload).ok())
                    .is_some_and(|s| s == kept.state && s.device == device);
            if !valid {
                books.memory.trusted = None;
            }
        }
        let etag = books.memory.trusted.as_ref().and_then(|t| t.etag.clone());
        let load = load_monitor(platform.clock.clone(), &platform.proc);
        Ok(Agent {
            load,
            identity,
            platform,
            books: Arc::new(Mutex::new(books)),
            client,
            downloader,
            staging,
            engine_key,
            limits,
            recovered: false,
            etag,
        })
    }

    fn now(&self) -> Timestamp {
        self.platform.clock.now()
    }

    /// Facts and inventory as the engine sees them; the inventory lists the
    /// items detection finds present (patch ids, and `package@version` for
    /// software detected by files or the registry, which the engine cannot
    /// see in the package list).
    fn collect(&self, desired: Option<&DesiredState>) -> (patchward_api::Facts, patchward_api::Inventory) {
        let sources = crate::facts::FactSources {
            root: self.platform.root.clone(),
            proc: self.platform.proc.clone(),
            lang: std::env::var("LANG").ok(),
            route_probe: self.platform.root == std::path::Path::new("/"),
        };
        let facts = crate::facts::collect_facts(&sources, self.platform.labels.clone(), self.platform.groups.clone());
        let report = self.inventory_report();
        let base = report.inventory(Vec::new());
        let mut patches: Vec<String> = desired
            .map(|d| {
                d.items
                    .iter()
                    .filter(|i| i.action == Action::Install)
                    .filter(|i| self.detection(i, &base, &facts.facts) == DetectionResult::Present)
                    .map(|i| i.patch.clone())
                    .collect()
            })
            .unwrap_or_default();
        patches.sort();
        (facts.facts, report.inventory(patches))
    }

    /// The item's detection on this device (its rules, or its fixes over
    /// the inventory and the `platform` fact: `detect`'s module docs).
    fn detection(
        &self,
        item: &DesiredItem,
        inventory: &patchward_api::Inventory,
        facts: &patchward_api::Facts,
    ) -> DetectionResult {
        let device = DeviceView { root: &self.platform.root, inventory, platform: facts.platform.as_deref() };
        detect_item(item, &device, self.platform.windows.as_ref())
    }

    fn observations(&self, state: &DesiredState) -> Observations {
        let boot_id = crate::observe::read_boot_id(&self.platform.proc).ok();
        let mut invocation_ids = BTreeMap::new();
        let units = state.items.iter().filter_map(|i| i.policy.restart.as_ref()).flat_map(|r| &r.services);
        for unit in units {
            if let Ok(Some(id)) = crate::observe::read_invocation_id(self.platform.commands.as_ref(), unit) {
                invocation_ids.insert(unit.clone(), id);
            }
        }
        let (cpu_busy_percent, network_kbps) = {
            let mut load = self.load.lock().unwrap_or_else(|p| p.into_inner());
            // A failed source leaves its series without a sample: an idle
            // condition it feeds does not hold.
            let _ = load.tick();
            (load.cpu_percent.samples(), load.network_kbps.samples())
        };
        // Only the idle and restart modes (or a fallback to them) look at
        // sessions and boots; only the real machine has them.
        let modes = |item: &DesiredItem| {
            let mut modes = vec![item.policy.mode];
            let mut next = item.fallback.as_deref();
            while let Some(fallback) = next.take() {
                modes.push(fallback.policy.mode);
                next = fallback.fallback.as_deref();
            }
            modes
        };
        use patchward_api::deployment::DeploymentMode;
        let wanted =
            state.items.iter().flat_map(modes).any(|m| matches!(m, DeploymentMode::Idle | DeploymentMode::Restart));
        let real_machine = self.platform.root == std::path::Path::new("/");
        let (input_idle_since, foreground_apps_present, cold_boot) = if wanted && real_machine {
            use crate::observe::{ForegroundApps as _, InputIdle as _};
            let logind =
                crate::observe::Logind::new(SharedCommands(self.platform.commands.clone()), &self.platform.proc);
            let cold = match crate::observe::read_boot_kind(self.platform.commands.as_ref()) {
                crate::observe::BootKind::Cold => Some(true),
                crate::observe::BootKind::Warm => Some(false),
                _ => None,
            };
            (logind.idle_since().ok().flatten(), logind.foreground_apps().ok().map(|apps| !apps.is_empty()), cold)
        } else {
            (None, None, None)
        };
        Observations {
            cpu_busy_percent,
            network_kbps,
            input_idle_since,
            foreground_apps_present,
            boot_id,
            cold_boot,
            invocation_ids,
        }
    }

    /// One full pass. `wait` long-polls the engine for a change first.
    #[tracing::instrument(name = "pass", skip_all)]
    pub async fn pass(&mut self, wait: Option<std::time::Duration>) -> Result<PassReport, AgentError> {
        let mut report = PassReport::default();
        let now = self.now();
        {
            let mut books = lock(&self.books);
            let latest = trust::expiry_clock(now, books.memory.latest_time);
            books.memory.latest_time = Some(latest);
        }
        let kept = lock(&self.books).memory.trusted.as_ref().map(|t| t.state.clone());
        if !self.recovered {
            self.repair_package_database();
        }
        let (facts, inventory) = self.collect(kept.as_ref());
        if !self.recovered {
            self.recover(&inventory, &facts)?;
            self.recovered = true;
        }
        self.upload_if_changed(&facts, &inventory, &mut report).await;
        self.fetch_desired(wait, &mut report).await?;

        let (trusted, expiry_now) = {
            let books = lock(&self.books);
            (books.memory.trusted.clone(), books.memory.latest_time.unwrap_or(now))
        };
        let mut changed = false;
        if let Some(trusted) = trusted.filter(|t| trust::fresh(t, expiry_now)) {
            let observations = self.observations(&trusted.state);
            for desired in &trusted.state.items {
                changed |=
                    self.converge_item(&trusted.state, desired, &facts, &inventory, &observations, &mut report).await?;
            }
            // Items no longer desired are forgotten (their history stays).
            let wanted: std::collections::BTreeSet<&str> =
                trusted.state.items.iter().map(|i| i.patch.as_str()).collect();
            let mut books = lock(&self.books);
            books.memory.items.retain(|k, _| wanted.contains(k.as_str()));
            books.memory.not_applicable.retain(|k| wanted.contains(k.as_str()));
        }
        if changed {
            let kept = lock(&self.books).memory.trusted.as_ref().map(|t| t.state.clone());
            let (facts, inventory) = self.collect(kept.as_ref());
            self.upload_if_changed(&facts, &inventory, &mut report).await;
        }
        self.flush_outbox(&mut report).await;
        lock(&self.books).save()?;
        Ok(report)
    }

    async fn upload_if_changed(
        &self,
        facts: &patchward_api::Facts,
        inventory: &patchward_api::Inventory,
        report: &mut PassReport,
    ) {
        let upload = InventoryUpload { facts: facts.clone(), inventory: inventory.clone() };
        let digest = Sha256Digest::of(&serde_json::to_vec(&upload).unwrap_or_default()).to_hex();
        if lock(&self.books).memory.uploaded.as_deref() == Some(digest.as_str()) {
            return;
        }
        match self.client.upload_inventory(&upload).await {
            Ok(_) => lock(&self.books).memory.uploaded = Some(digest),
            Err(e) => report.engine_unreachable = Some(e.to_string()),
        }
    }

    async fn fetch_desired(
        &mut self,
        wait: Option<std::time::Duration>,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let fetched = match self.client.desired_state(self.etag.as_deref(), wait).await {
            Ok(fetched) => fetched,
            Err(e) => {
                report.engine_unreachable = Some(e.to_string());
                return Ok(());
            }
        };
        let Fetched::Envelope { envelope, etag } = fetched else { return Ok(()) };
        let now = self.now();
        let mut books = lock(&self.books);
        let expiry_now = books.memory.latest_time.unwrap_or(now);
        match trust::accept(
            &envelope,
            &self.engine_key,
            &self.identity.device_id,
            books.memory.trusted.as_ref(),
            expiry_now,
        ) {
            Ok(state) => {
                self.etag = etag.clone();
                books.memory.trusted = Some(Trusted { state, envelope, etag });
                books.save()?;
            }
            Err(refusal) => {
                let message = refusal.to_string();
                books.outbox.push_event(NewEvent::new(EventKind::RefusedState, now).message(message.clone()))?;
                report.refused = Some(message);
            }
        }
        Ok(())
    }

    /// Decides one item and acts on it; true when the device changed.
    #[tracing::instrument(name = "item", skip_all, fields(patch = %desired.patch, generation = state.generation))]
    async fn converge_item(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        facts: &patchward_api::Facts,
        inventory: &patchward_api::Inventory,
        observations: &Observations,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let now = self.now();
        let generation = state.generation;
        let item = match Item::from_desired(desired, facts.timezone.clone()) {
            Ok(item) => item,
            Err(e) => {
                self.give_up_once(&desired.patch, generation, format!("the item's policy is unusable: {e}"), now)?;
                return Ok(false);
            }
        };
        let detected = self.detection(desired, inventory, facts);
        self.note_applicability(desired, generation, &detected, now)?;
        if detected == DetectionResult::NotApplicable {
            // Nothing to install and nothing to remove: no decision to take.
            return Ok(false);
        }
        let local = {
            let mut books = lock(&self.books);
            let baseline = RestartBaseline {
                boot_id: observations.boot_id.clone(),
                invocation_ids: observations.invocation_ids.clone(),
            };
            let local =
                books.memory.items.entry(desired.patch.clone()).or_insert_with(|| LocalItemState::new(now, baseline));
            local.detected_present = detected == DetectionResult::Present;
            local.clone()
        };
        let decision = decide::decide(&item, &local, observations, now);
        match decision {
            Decision::Nothing { .. } => Ok(false),
            Decision::WaitUntil { at, .. } => {
                if let Some(at) = at {
                    report.wake_at = Some(report.wake_at.map_or(at, |w| w.min(at)));
                }
                Ok(false)
            }
            Decision::GiveUp { reason } => {
                self.give_up_once(&desired.patch, generation, format!("{reason:?}"), now)?;
                Ok(false)
            }
            Decision::Prompt { message, snoozes_left, can_snooze, deadline, answer_by, display_for, .. } => {
                let notice = crate::notify::PromptNotice {
                    item: desired.patch.clone(),
                    title: format!("Update {} is ready", desired.patch),
                    message,
                    snoozes_left,
                    can_snooze,
                    deadline,
                    answer_by,
                    display_for: display_for.as_std(),
                };
                // Not shown to anyone is no reason to stop: the prompt's
                // timeout then counts it unanswered, as for an absent user.
                let _ = self.platform.notifier.prompt(&notice);
                let mut books = lock(&self.books);
                if let Some(local) = books.memory.items.get_mut(&desired.patch) {
                    local.record_prompt_shown(now);
                }
                books.record(&desired.patch, generation, Step::Prompted, None, now)?;
                report.wake_at = Some(report.wake_at.map_or(answer_by, |w| w.min(answer_by)));
                Ok(false)
            }
            Decision::CountIgnoredPromptAsSnooze { snooze } => {
                let mut books = lock(&self.books);
                if let Some(local) = books.memory.items.get_mut(&desired.patch) {
                    local.record_snooze(&snooze);
                }
                let event = NewEvent::new(EventKind::Snooze, now)
                    .patch(&desired.patch)
                    .generation(generation)
                    .message("the prompt went unanswered")
                    .detail(serde_json::json!({"until": snooze.until.to_string(), "snoozesUsed": snooze.snoozes_used}));
                books.record(&desired.patch, generation, Step::Snoozed { until: snooze.until }, Some(event), now)?;
                report.wake_at = Some(report.wake_at.map_or(snooze.until, |w| w.min(snooze.until)));
                Ok(false)
            }
            Decision::InstallNow { reboot, .. } => self.install(state, desired, facts, reboot, report).await,
            Decision::UninstallNow { .. } => self.uninstall(state, desired, inventory, facts, report).await,
        }
    }

    /// Reports an item not applicable to this device once (a `step` event:
    /// no outcome, so no gate counts it), and forgets that once it applies
    /// again, so that a later "not applicable" is reported anew.
    fn note_applicability(
        &self,
        desired: &DesiredItem,
        generation: u64,
        detected: &DetectionResult,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let mut books = lock(&self.books);
        if *detected != DetectionResult::NotApplicable {
            books.memory.not_applicable.remove(&desired.patch);
            return Ok(());
        }
        if !books.memory.not_applicable.insert(desired.patch.clone()) {
            return Ok(());
        }
        let event = NewEvent::new(EventKind::Step, now)
            .patch(&desired.patch)
            .generation(generation)
            .message("not applicable: none of the packages its fixes name is installed here")
            .detail(serde_json::json!({"detection": "not-applicable"}));
        books.outbox.push_event(event)?;
        Ok(())
    }

    fn give_up_once(&self, item: &str, generation: u64, reason: String, now: Timestamp) -> Result<(), StateError> {
        let mut books = lock(&self.books);
        if books.memory.gave_up.get(item) == Some(&reason) {
            return Ok(());
        }
        books.memory.gave_up.insert(item.to_owned(), reason.clone());
        let event = NewEvent::new(EventKind::Error, now).patch(item).generation(generation).message(reason);
        books.outbox.push_event(event)?;
        Ok(())
    }

    fn installer(&self, kind: &str) -> Result<(PackageType, &(dyn Installer + Send + Sync)), String> {
        let kind: PackageType = kind.parse().map_err(|e: crate::install::UnknownPackageType| e.to_string())?;
        let installer =
            self.platform.installers.get(&kind).ok_or_else(|| format!("no {kind} installer on this device"))?;
        Ok((kind, installer.as_ref()))
    }

    /// Downloads `package` (journaled) into the cache: mirrors by sha256,
    /// then the engine.
    async fn download(
        &self,
        state: &DesiredState,
        item: &str,
        package: &patchward_api::desired::DesiredPackage,
    ) -> Result<crate::cache::CachedBlob, DownloadProblem> {
        let digest =
            Sha256Digest::parse(&package.sha256).map_err(|e| DownloadProblem::Failed(format!("{item}: {e}")))?;
        let bearer = Bearer::new(&self.identity.credential);
        let sources = sources_for(&state.mirrors, &self.identity.server, &bearer, &digest);
        self.download_from(state, item, digest, package.size, &sources).await
    }

    /// Downloads `digest` (journaled) from the first of `sources` that has
    /// it, within the state's bandwidth cap, resuming a partial file.
    async fn download_from(
        &self,
        state: &DesiredState,
        item: &str,
        digest: Sha256Digest,
        size: u64,
        sources: &[crate::download::Source],
    ) -> Result<crate::cache::CachedBlob, DownloadProblem> {
        lock(&self.books)
            .record(item, state.generation, Step::Downloading { sha256: digest }, None, self.now())
            .map_err(|e| DownloadProblem::Failed(e.to_string()))?;
        let limits = Limits { max_bandwidth_kbps: state.max_bandwidth_kbps, ..self.limits.clone() };
        match self.downloader.fetch(sources, &digest, size, &limits).await {
            Ok(blob) => {
                lock(&self.books)
                    .record(item, state.generation, Step::Downloaded { sha256: digest }, None, self.now())
                    .map_err(|e| DownloadProblem::Failed(e.to_string()))?;
                Ok(blob)
            }
            // Every source answered 404: the engine's media master has not
            // fetched it yet, and no mirror holds it. Nothing is wrong with
            // the device; counting it a failed install would fail gates.
            Err(e @ crate::download::DownloadError::AllSourcesFailed { .. })
                if e.failures().iter().all(|f| f.failure == crate::download::Failure::Status { status: 404 }) =>
            {
                Err(DownloadProblem::NotYetAvailable(e.to_string()))
            }
            Err(e) => Err(DownloadProblem::Failed(e.to_string())),
        }
    }

    /// Puts `item` off for [`RETRY_LATER`]: journaled and reported as a
    /// step, counted as an attempt (so it ends), never as a failure.
    fn retry_later(
        &self,
        state: &DesiredState,
        item: &str,
        reason: &str,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        self.put_off(state, item, reason, Wait::Attempt, report)
    }

    /// Puts `item` off as `wait` says (see [`Wait`]).
    fn put_off(
        &self,
        state: &DesiredState,
        item: &str,
        reason: &str,
        wait: Wait,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let after = match wait {
            Wait::Attempt => RETRY_LATER,
            Wait::ForTheRepositories => RETRY_REPOSITORIES,
        };
        let until = self.now().checked_add(after).unwrap_or(self.now());
        tracing::info!(%until, reason, "retry later");
        let mut books = lock(&self.books);
        if let Some(local) = books.memory.items.get_mut(item) {
            if wait == Wait::Attempt {
                local.install_attempts += 1;
            }
            local.retry_not_before = Some(until);
        }
        let event = NewEvent::new(EventKind::Step, self.now())
            .patch(item)
            .generation(state.generation)
            .message(format!("retry later: {reason}"));
        books.record(item, state.generation, Step::RetryLater { until }, Some(event), self.now())?;
        report.wake_at = Some(report.wake_at.map_or(until, |w| w.min(until)));
        Ok(false)
    }

    fn fail(
        &self,
        state: &DesiredState,
        item: &str,
        reason: String,
        outcome: Option<&Outcome>,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let now = self.now();
        tracing::warn!(reason, "failed");
        let mut books = lock(&self.books);
        let mut event = outcome_event(state, item, ReportStatus::Failed, now)
            .unwrap_or_else(|| NewEvent::report(item, ReportStatus::Failed, state.generation, now))
            .message(reason.clone());
        if let Some(Outcome::Failed { exit, .. }) = outcome {
            event = event.detail(serde_json::json!({"exit": format!("{exit:?}")}));
        }
        if let Some(local) = books.memory.items.get_mut(item) {
            local.install_attempts += 1;
            local.failures += 1;
        }
        books.record(item, state.generation, Step::Failed { reason, outcome: None }, Some(event), now)?;
        report.failed.push(item.to_owned());
        Ok(false)
    }

    async fn install(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        facts: &patchward_api::Facts,
        reboot: patchward_api::deployment::RebootBehaviour,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let item = desired.patch.as_str();
        let mut restart_needed = false;
        if desired.packages.is_empty() && !desired.fixes.is_empty() {
            return self.install_from_repository(state, desired, facts, report).await;
        }
        if desired.packages.is_empty() {
            return self.fail(state, item, "the catalog offers no package for this item".into(), None, report);
        }
        for package in &desired.packages {
            let (kind, installer) = match self.installer(&package.kind) {
                Ok(found) => found,
                Err(reason) => return self.fail(state, item, reason, None, report),
            };
            let blob = match self.download(state, item, package).await {
                Ok(blob) => blob,
                Err(DownloadProblem::NotYetAvailable(reason)) => return self.retry_later(state, item, &reason, report),
                Err(DownloadProblem::Failed(reason)) => return self.fail(state, item, reason, None, report),
            };
            // G1: the bytes handed over are re-hashed right now.
            let staged = match VerifiedPackage::stage(&blob, kind, &self.staging) {
                Ok(staged) => staged,
                Err(e) => return self.fail(state, item, e.to_string(), None, report),
            };
            // Nothing is upgraded without a way back.
            if kind == PackageType::Deb {
                match self.secure_deb_way_back(item, &staged) {
                    Ok(()) => {}
                    Err(rollback::Unsecured::Busy(reason)) => return self.retry_later(state, item, &reason, report),
                    Err(rollback::Unsecured::Failed(reason)) => return self.fail(state, item, reason, None, report),
                }
            }
            lock(&self.books).record(
                item,
                state.generation,
                Step::Installing { sha256: staged.digest() },
                None,
                self.now(),
            )?;
            // Installers run for minutes: off the runtime's other work.
            let outcome = match tokio::task::block_in_place(|| installer.install(&staged, &package.args)) {
                Ok(outcome) => outcome,
                Err(e) => return self.fail(state, item, e.to_string(), None, report),
            };
            drop(staged);
            match &outcome {
                Outcome::RetryLater { reason } => return self.retry_later(state, item, reason, report),
                Outcome::Failed { exit, stderr_tail } => {
                    let reason = format!("the installer failed ({exit:?}): {}", stderr_tail.trim());
                    return self.fail(state, item, reason, Some(&outcome), report);
                }
                Outcome::SucceededRebootPending => restart_needed = true,
                Outcome::Succeeded | Outcome::SucceededRebootStarted => {}
            }
        }
        if restart_needed {
            self.restart_for(item, reboot);
        }
        lock(&self.books).record(item, state.generation, Step::Verifying, None, self.now())?;
        let after = self.fresh_inventory();
        if detected_by(desired, &after) == DetectedBy::Nothing {
            // Without rules or fixes, the installer's word is all there is.
            self.succeeded(state, item, Step::Installed, "installed (no detection rules)", report)?;
            return Ok(true);
        }
        match self.detection(desired, &after, facts) {
            DetectionResult::Present => {
                self.succeeded(state, item, Step::Installed, "installed and detected", report)?;
                Ok(true)
            }
            other => {
                self.fail(state, item, format!("the installer succeeded but detection says {other}"), None, report)
            }
        }
    }

    /// An install left a restart pending: `reboot: auto` restarts now,
    /// `prompt` asks the user to, `never` leaves it to them.
    fn restart_for(&self, item: &str, reboot: patchward_api::deployment::RebootBehaviour) {
        use patchward_api::deployment::RebootBehaviour;
        let restarted = match reboot {
            RebootBehaviour::Auto => self.platform.rebooter.reboot(&format!("{item} needs a restart")).is_ok(),
            RebootBehaviour::Prompt | RebootBehaviour::Never => false,
        };
        if !restarted && reboot != RebootBehaviour::Never {
            let notice = crate::notify::Notice {
                item: Some(item.to_owned()),
                title: "Restart needed".into(),
                message: format!("{item} is installed; restart the computer to finish it."),
                urgency: crate::notify::Urgency::Normal,
                display_for: std::time::Duration::from_secs(60),
            };
            let _ = self.platform.notifier.inform(&notice);
        }
    }

    fn succeeded(
        &self,
        state: &DesiredState,
        item: &str,
        step: Step,
        message: &str,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let now = self.now();
        tracing::info!(detail = message, "succeeded");
        let mut books = lock(&self.books);
        let event = outcome_event(state, item, ReportStatus::Succeeded, now)
            .unwrap_or_else(|| NewEvent::report(item, ReportStatus::Succeeded, state.generation, now))
            .message(message);
        if let Some(local) = books.memory.items.get_mut(item) {
            local.install_attempts += 1;
            local.detected_present = matches!(step, Step::Installed);
        }
        let uninstalled = matches!(step, Step::Uninstalled);
        books.record(item, state.generation, step, Some(event), now)?;
        if uninstalled {
            report.uninstalled.push(item.to_owned())
        } else {
            report.installed.push(item.to_owned())
        }
        Ok(())
    }

    fn inventory_report(&self) -> crate::inventory::InventoryReport {
        let sources = crate::inventory::InventorySources {
            root: self.platform.root.clone(),
            dpkg_admindir: None,
            rpm: self.platform.rpm,
        };
        crate::inventory::collect_inventory(&sources, self.platform.commands.as_ref())
    }

    /// The packages as they are now (after an install or a removal).
    fn fresh_inventory(&self) -> patchward_api::Inventory {
        self.inventory_report().inventory(Vec::new())
    }

    async fn uninstall(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        inventory: &patchward_api::Inventory,
        facts: &patchward_api::Facts,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let item = desired.patch.as_str();
        if !desired.fixes.is_empty() {
            // A package fix is undone by restoring, never by removing.
            return self.restore_from_repository(state, desired, facts, report).await;
        }
        let delivered = desired.packages.iter().any(|p| p.kind == PackageType::Deb.as_str());
        if desired.source.kind != patchward_api::desired::SourceKind::Assignment && delivered {
            match self.package_retraction(item) {
                rollback::PackageRetraction::Restore(backups) => {
                    return self.restore_backups(state, desired, &backups, report);
                }
                rollback::PackageRetraction::Remove => {}
                rollback::PackageRetraction::Unavailable => {
                    let reason =
                        "retraction unavailable: no way back was recorded when this patch was installed; it stays";
                    self.give_up_once(item, state.generation, reason.into(), self.now())?;
                    return Ok(false);
                }
            }
        }
        let Some(rules) = &desired.detect else {
            return self.fail(state, item, "no detection rules say what to remove".into(), None, report);
        };
        let Some(target) = package_to_remove(rules, inventory) else {
            return self.fail(state, item, "the detection rules name no package to remove".into(), None, report);
        };
        let kind = match target.manager {
            patchward_api::PackageManager::Dpkg => "deb",
            patchward_api::PackageManager::Rpm => "rpm",
        };
        let (_, installer) = match self.installer(kind) {
            Ok(found) => found,
            Err(reason) => return self.fail(state, item, reason, None, report),
        };
        lock(&self.books).record(item, state.generation, Step::Uninstalling, None, self.now())?;
        match tokio::task::block_in_place(|| installer.uninstall(Removal::Package(&target.name))) {
            Ok(outcome) if outcome.succeeded() => {}
            Ok(outcome) => {
                return self.fail(state, item, format!("the removal failed: {outcome:?}"), Some(&outcome), report);
            }
            Err(e) => return self.fail(state, item, e.to_string(), None, report),
        }
        let after = self.fresh_inventory();
        match self.detection(desired, &after, facts) {
            DetectionResult::Absent => {
                {
                    let mut books = lock(&self.books);
                    repository::forget_way_back(&mut books.memory, item);
                    books.save()?;
                }
                self.succeeded(state, item, Step::Uninstalled, "removed and no longer detected", report)?;
                Ok(true)
            }
            other => self.fail(state, item, format!("the removal ran but detection says {other}"), None, report),
        }
    }

    async fn flush_outbox(&self, report: &mut PassReport) {
        let now = self.now();
        let pending = {
            let books = lock(&self.books);
            if !books.outbox.due(now) {
                return;
            }
            books.outbox.pending(500)
        };
        let Some(last) = pending.last().map(|e| e.seq) else { return };
        let count = pending.len();
        match self.client.send_events(pending).await {
            Ok(_) => {
                let mut books = lock(&self.books);
                if books.outbox.acknowledge(last).is_ok() {
                    books.outbox.record_success();
                    report.events_sent += count;
                }
            }
            Err(e) => {
                lock(&self.books).outbox.record_failure(now);
                report.engine_unreachable.get_or_insert(e.to_string());
            }
        }
    }
}

/// The name of the deployment policy a desired item came under.
fn policy_name(item: &DesiredItem) -> Option<String> {
    Some(item.policy.name.clone())
}

/// The `report` of `item`'s outcome in `state`, saying what was done and
/// under which policy; `None` when the state no longer has the item.
fn outcome_event(state: &DesiredState, item: &str, status: ReportStatus, now: Timestamp) -> Option<NewEvent> {
    let desired = state.items.iter().find(|i| i.patch == item)?;
    Some(NewEvent::report(item, status, state.generation, now).outcome_of(desired.action, policy_name(desired)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchward_api::deployment::RebootBehaviour;

    #[derive(Default)]
    struct Calls(Mutex<Vec<String>>);

    impl Calls {
        fn push(&self, call: String) {
            self.0.lock().unwrap().push(call);
        }
        fn taken(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    struct RecordingReboot(Arc<Calls>, bool);
    impl Reboot for RecordingReboot {
        fn reboot(&self, reason: &str) -> Result<(), String> {
            self.0.push(format!("reboot: {reason}"));
            if self.1 { Ok(()) } else { Err("refused".into()) }
        }
    }

    struct RecordingNotifier(Arc<Calls>);
    impl crate::notify::Notifier for RecordingNotifier {
        fn prompt(
            &self,
            notice: &crate::notify::PromptNotice,
        ) -> Result<crate::notify::Delivery, crate::notify::NotifyError> {
            self.0.push(format!("prompt: {}", notice.item));
            Ok(crate::notify::Delivery::Logged)
        }
        fn inform(
            &self,
            notice: &crate::notify::Notice,
        ) -> Result<crate::notify::Delivery, crate::notify::NotifyError> {
            self.0.push(format!("inform: {}", notice.title));
            Ok(crate::notify::Delivery::Logged)
        }
    }

    fn test_agent(dir: &std::path::Path, calls: &Arc<Calls>, reboot_works: bool) -> Agent {
        let state = StateDir::open(dir.join("state")).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let identity = Identity {
            server: "http://127.0.0.1:1".into(),
            device_id: "ws-1".into(),
            credential: patchward_api::logging::Secret::new("pwd_x".into()),
            engine_key: patchward_api::dsse::public_key_text(&key.verifying_key()),
        };
        state.write_json(IDENTITY_FILE, &identity).unwrap();
        let platform = Platform {
            root: dir.join("root"),
            proc: "/proc".into(),
            clock: Arc::new(crate::observe::SystemClock),
            commands: Arc::new(crate::observe::SystemCommands),
            windows: Box::new(crate::windows::NoWindows),
            installers: BTreeMap::new(),
            notifier: Box::new(RecordingNotifier(calls.clone())),
            rebooter: Box::new(RecordingReboot(calls.clone(), reboot_works)),
            labels: BTreeMap::new(),
            groups: Vec::new(),
            rpm: false,
            repositories: Vec::new(),
            dpkg: None,
        };
        Agent::open(state, platform, Limits::default(), std::time::Duration::from_secs(5)).unwrap()
    }

    /// A restart an install left pending: `auto` restarts, `prompt` tells
    /// the user, `never` does neither; a restart that fails tells the user.
    #[test]
    fn a_pending_restart_follows_the_policys_reboot_setting() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(Calls::default());
        let agent = test_agent(dir.path(), &calls, true);
        agent.restart_for("PW-1", RebootBehaviour::Auto);
        assert_eq!(calls.taken(), ["reboot: PW-1 needs a restart"]);
        agent.restart_for("PW-1", RebootBehaviour::Prompt);
        assert_eq!(calls.taken(), ["inform: Restart needed"]);
        agent.restart_for("PW-1", RebootBehaviour::Never);
        assert!(calls.taken().is_empty());

        let dir = tempfile::tempdir().unwrap();
        let refusing = test_agent(dir.path(), &calls, false);
        refusing.restart_for("PW-1", RebootBehaviour::Auto);
        assert_eq!(calls.taken(), ["reboot: PW-1 needs a restart", "inform: Restart needed"]);
    }

    const BSDUTILS: &str = "Package: bsdutils\nStatus: install ok installed\nArchitecture: amd64\n\
        Source: util-linux (2.38.1-5+deb12u3)\nVersion: 1:2.38.1-5+deb12u3\n";

    /// A patch without packages, detected by a source fix for `source`.
    fn fixes_item(patch: &str, source: &str, fixed: &str) -> DesiredItem {
        serde_json::from_value(serde_json::json!({
            "patch": patch, "action": "install", "status": "due",
            "source": {"kind": "rule", "name": "linux", "commit": "c0ffee"}, "stage": null,
            "policy": {"name": "servers", "mode": "immediate"}, "windows": [],
            "notBefore": "2026-01-01T00:00:00Z", "deadline": null, "packages": [],
            "fixes": [{"manager": "dpkg", "package": source, "fixedVersion": fixed, "kind": "source"}]
        }))
        .unwrap()
    }

    fn state_of(items: Vec<DesiredItem>) -> DesiredState {
        DesiredState {
            device: "ws-1".into(),
            generation: 3,
            policy_revision: "c0ffee".into(),
            catalog_revision: 1,
            issued_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            expires_at: "2099-01-01T00:00:00Z".parse().unwrap(),
            mirrors: vec![],
            max_bandwidth_kbps: None,
            items,
        }
    }

    /// Fixes that name nothing installed: not applicable, so no decision,
    /// no install and no failure, and one `step` event saying so, reported
    /// again only after the item applied in between. Fixes that hold are
    /// present: nothing to do, and the patch is listed as installed.
    #[tokio::test]
    async fn fixes_decide_detection_and_not_applicable_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(Calls::default());
        let admindir = dir.path().join("root/var/lib/dpkg");
        std::fs::create_dir_all(&admindir).unwrap();
        std::fs::write(admindir.join("status"), BSDUTILS).unwrap();
        let agent = test_agent(dir.path(), &calls, true);
        let (nginx, util_linux) =
            (fixes_item("DSA-1", "nginx", "1.22.1-9+deb12u1"), fixes_item("DSA-2", "util-linux", "2.38.1-5+deb12u3"));
        let state = state_of(vec![nginx.clone(), util_linux.clone()]);
        let facts = patchward_api::Facts { platform: Some("debian-12".into()), ..Default::default() };
        let mut report = PassReport::default();
        for desired in [&nginx, &nginx, &util_linux] {
            let inventory = agent.fresh_inventory();
            let changed = agent
                .converge_item(&state, desired, &facts, &inventory, &Observations::default(), &mut report)
                .await
                .unwrap();
            assert!(!changed, "{}", desired.patch);
        }
        assert!(report.failed.is_empty() && report.installed.is_empty(), "{report:?}");
        {
            let books = lock(&agent.books);
            let events = books.outbox.pending(10);
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!((events[0].kind, events[0].patch.as_deref()), (EventKind::Step, Some("DSA-1")));
            assert!(events[0].message.as_deref().is_some_and(|m| m.starts_with("not applicable")), "{events:?}");
            assert!(books.memory.not_applicable.contains("DSA-1"));
            assert!(!books.memory.items.contains_key("DSA-1"), "no decision was taken");
            assert!(books.memory.items["DSA-2"].detected_present);
        }
        let (_, inventory) = agent.collect(Some(&state));
        assert_eq!(inventory.patches, ["DSA-2"]);

        // nginx arrives at the fixed version: present, and forgotten as
        // not applicable.
        let nginx_fixed =
            "\nPackage: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22.1-9+deb12u1\n";
        std::fs::write(admindir.join("status"), format!("{BSDUTILS}{nginx_fixed}")).unwrap();
        let inventory = agent.fresh_inventory();
        agent.converge_item(&state, &nginx, &facts, &inventory, &Observations::default(), &mut report).await.unwrap();
        let books = lock(&agent.books);
        assert!(books.memory.not_applicable.is_empty());
        assert!(books.memory.items["DSA-1"].detected_present);
        assert_eq!(books.outbox.pending(10).len(), 1);
    }
}
