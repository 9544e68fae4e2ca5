//! Items installed through the device's own repositories, and their
//! restoration (the spec is `crate::repo`'s module doc). Each step is
//! journaled like a download install: `downloading`/`downloaded` per file,
//! `installing` before apt runs (recovery decides by detection), then the
//! outcome. The way back is saved in the books before anything changes.

use std::path::{Path, PathBuf};

use patchward_api::desired::{DesiredItem, DesiredState};
use patchward_api::{PackageManager, ReportStatus};

use super::{Agent, AgentError, DownloadProblem, PassReport, lock, outcome_event};
use crate::cache::{CachedBlob, Sha256Digest};
use crate::detect::DetectionResult;
use crate::download::Source;
use crate::install::{PackageType, VerifiedPackage};
use crate::journal::Step;
use crate::repo::apt::{Direction, PackageVersion};
use crate::repo::resolve::{self, Affected, arch_of};
use crate::repo::way_back::{Restore, RestoreFrom, WayBack};
use crate::repo::{RepoError, Repositories};

/// What a repository transaction installed, for the report's detail.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Transaction {
    packages: Vec<InstalledFile>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InstalledFile {
    name: String,
    arch: String,
    version: String,
    sha256: String,
}

/// Why a repository transaction stopped before its outcome.
enum Stop {
    /// Something passing (a held lock): an attempt.
    Later(String),
    /// The repositories do not offer the fix yet.
    Lagging(String),
    Failed(String),
}

impl From<RepoError> for Stop {
    fn from(error: RepoError) -> Stop {
        match error.is_locked() {
            true => Stop::Later(error.to_string()),
            false => Stop::Failed(error.to_string()),
        }
    }
}

impl From<DownloadProblem> for Stop {
    fn from(problem: DownloadProblem) -> Stop {
        match problem {
            DownloadProblem::NotYetAvailable(reason) => Stop::Later(reason),
            DownloadProblem::Failed(reason) => Stop::Failed(reason),
        }
    }
}

/// Staged files, kept alive until apt has run.
#[derive(Default)]
struct Staged {
    packages: Vec<VerifiedPackage>,
    installed: Vec<InstalledFile>,
}

impl Agent {
    fn stopped(
        &self,
        state: &DesiredState,
        item: &str,
        stop: Stop,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        match stop {
            Stop::Later(reason) => self.retry_later(state, item, &reason, report),
            Stop::Lagging(reason) => self.put_off(state, item, &reason, super::Wait::ForTheRepositories, report),
            Stop::Failed(reason) => self.fail(state, item, reason, None, report),
        }
    }

    /// The repositories of `manager`'s packages.
    fn repositories(&self, manager: PackageManager) -> Result<&Repositories, Stop> {
        let found = self.platform.repositories.iter().find(|r| r.manager() == manager);
        let tool = match manager {
            PackageManager::Dpkg => "apt",
            PackageManager::Rpm => "dnf",
        };
        found.ok_or_else(|| Stop::Failed(format!("this device has no {tool} to install fixes with")))
    }

    /// The installed packages `desired`'s fixes upgrade, and their manager:
    /// the first manager with any (an advisory targets one distribution).
    fn affected_by<'a>(
        &self,
        desired: &'a DesiredItem,
        platform: Option<&str>,
        inventory: &'a patchward_api::Inventory,
    ) -> Option<(PackageManager, Vec<Affected<'a>>)> {
        [PackageManager::Dpkg, PackageManager::Rpm].into_iter().find_map(|manager| {
            let affected = resolve::affected(&desired.fixes, platform, manager, &inventory.packages);
            (!affected.is_empty()).then_some((manager, affected))
        })
    }

    fn block<T>(&self, f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }

    /// An item with package fixes and nothing to download: upgrades every
    /// affected binary through apt to a version that meets the fix.
    pub(super) async fn install_from_repository(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        facts: &patchward_api::Facts,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let item = desired.patch.as_str();
        match self.upgrade(state, desired, facts).await {
            Ok(staged) => self.conclude(state, desired, facts, staged, DetectionResult::Present, report),
            Err(stop) => self.stopped(state, item, stop, report),
        }
    }

    async fn upgrade(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        facts: &patchward_api::Facts,
    ) -> Result<Staged, Stop> {
        let inventory = self.fresh_inventory();
        let Some((manager, affected)) = self.affected_by(desired, facts.platform.as_deref(), &inventory) else {
            return Err(Stop::Failed("no installed package needs this fix".into()));
        };
        let repositories = self.repositories(manager)?;
        self.block(|| repositories.refresh())?;
        let mut targets = Vec::new();
        let mut way_back = WayBack { manager, packages: Vec::new() };
        for affected in &affected {
            let arch = arch_of(affected.package);
            let records = self.block(|| repositories.records(&affected.package.name, arch))?;
            let target = resolve::target(affected, &records).map_err(|lagging| Stop::Lagging(lagging.to_string()))?;
            let previous = PackageVersion {
                name: affected.package.name.to_string(),
                arch: arch.to_owned(),
                version: affected.package.version.to_string(),
            };
            let offered = records.iter().any(|r| r.version == previous.version && r.downloadable);
            let from = match offered {
                true => RestoreFrom::Repository,
                false => self.back_up(repositories, &previous)?,
            };
            way_back.packages.push(Restore { previous, upgraded_to: target.version.clone(), from });
            targets.push(target);
        }
        self.keep_way_back(&desired.patch, way_back)?;
        self.transact(state, &desired.patch, repositories, &targets, &[], Direction::Upgrade).await
    }

    /// Rebuilds `package` from its manager's database into the backups
    /// folder, under the manager's lock, as apt, dpkg and rpm take it: no
    /// one changes the package while it is copied (released before the
    /// transaction, which takes it itself).
    fn back_up(&self, repositories: &Repositories, package: &PackageVersion) -> Result<RestoreFrom, Stop> {
        let dir = lock(&self.books).state.path().join("backups");
        let no_way_back =
            |e: String| Stop::Failed(format!("no way back for {}: {e}; nothing was upgraded", package.name));
        let rebuilt = match repositories {
            Repositories::Apt(_) => {
                let dpkg = self.platform.dpkg.as_ref().ok_or_else(|| no_way_back("no dpkg database".into()))?;
                let held = dpkg.try_lock_frontend().map_err(|e| Stop::Failed(e.to_string()))?;
                let Some(_held) = held else { return Err(Stop::Later("dpkg's frontend lock is held".into())) };
                self.block(|| crate::repo::backup::deb::rebuild(dpkg, &package.name, &package.arch, &dir))
            }
            Repositories::Dnf(dnf) => {
                let held = dnf.rpm().try_lock_transaction().map_err(|e| Stop::Failed(e.to_string()))?;
                let Some(_held) = held else { return Err(Stop::Later("rpm's transaction lock is held".into())) };
                self.block(|| crate::repo::backup::rpm::rebuild(dnf.rpm(), &package.name, &package.arch, &dir))
            }
        };
        let backup = rebuilt.map_err(|e| no_way_back(e.to_string()))?;
        Ok(RestoreFrom::Backup { path: backup.path, sha256: backup.sha256.to_hex(), size: backup.size })
    }

    /// Saves the way back before the upgrade; a version recorded by an
    /// earlier attempt stays (it is the one the device had first).
    fn keep_way_back(&self, item: &str, found: WayBack) -> Result<(), Stop> {
        let mut books = lock(&self.books);
        let kept = books.memory.way_back.entry(item.to_owned()).or_default();
        kept.manager = found.manager;
        for restore in found.packages {
            let same =
                |r: &Restore| r.previous.name == restore.previous.name && r.previous.arch == restore.previous.arch;
            match kept.packages.iter_mut().find(|r| same(r)) {
                Some(earlier) => earlier.upgraded_to = restore.upgraded_to,
                None => kept.packages.push(restore),
            }
        }
        books.save().map_err(|e| Stop::Failed(e.to_string()))
    }

    /// Simulates, fetches and stages `targets`, then hands them and the
    /// staged `files` to apt.
    async fn transact(
        &self,
        state: &DesiredState,
        item: &str,
        repositories: &Repositories,
        targets: &[PackageVersion],
        files: &[(PackageVersion, VerifiedPackage)],
        direction: Direction,
    ) -> Result<Staged, Stop> {
        let archives = repositories.archives(&self.staging);
        std::fs::create_dir_all(archives.join("partial")).map_err(|e| Stop::Failed(e.to_string()))?;
        let paths: Vec<&Path> = files.iter().map(|(_, f)| f.path()).collect();
        self.block(|| repositories.simulate(targets, &paths, direction, &archives))?;
        let fetches = self.block(|| repositories.uris(targets, &paths, direction, &archives))?;
        let mut staged = Staged::default();
        for fetch in &fetches {
            let sources: Vec<Source> = state
                .mirrors
                .iter()
                .map(|m| Source::mirror(m, &fetch.sha256))
                .chain([Source::new(fetch.url.clone(), None)])
                .collect();
            let blob = self.download_from(state, item, fetch.sha256, fetch.size, &sources).await?;
            // G1: the bytes apt is handed are re-hashed as they are staged.
            let kind = repositories.package_type();
            let package = VerifiedPackage::stage_as(&blob, kind, &archives, &fetch.file)
                .map_err(|e| Stop::Failed(e.to_string()))?;
            staged.installed.push(installed_file(kind, &fetch.file, package.digest(), targets));
            staged.packages.push(package);
        }
        for (version, package) in files {
            staged.installed.push(InstalledFile {
                name: version.name.clone(),
                arch: version.arch.clone(),
                version: version.version.clone(),
                sha256: package.digest().to_hex(),
            });
        }
        let first = staged.packages.first().map(VerifiedPackage::digest);
        let first = first.or_else(|| files.first().map(|(_, f)| f.digest())).unwrap_or(Sha256Digest::of(b""));
        let step = match direction {
            Direction::Upgrade => Step::Installing { sha256: first },
            Direction::Downgrade => Step::Uninstalling,
        };
        lock(&self.books)
            .record(item, state.generation, step, None, self.now())
            .map_err(|e| Stop::Failed(e.to_string()))?;
        self.block(|| repositories.install(targets, &paths, direction, &archives))?;
        Ok(staged)
    }

    /// Verifies the transaction by detection and reports it.
    fn conclude(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        facts: &patchward_api::Facts,
        staged: Staged,
        expected: DetectionResult,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let item = desired.patch.as_str();
        drop(staged.packages);
        let after = self.fresh_inventory();
        let detected = self.detection(desired, &after, facts);
        if detected != expected {
            let reason = format!("apt succeeded but detection says {detected}");
            return self.fail(state, item, reason, None, report);
        }
        let (step, message) = match expected {
            DetectionResult::Present => (Step::Installed, "installed from the repositories and detected"),
            _ => (Step::Uninstalled, "restored the previous versions"),
        };
        let now = self.now();
        let detail = serde_json::to_value(Transaction { packages: staged.installed }).unwrap_or_default();
        let event = outcome_event(state, item, ReportStatus::Succeeded, now)
            .unwrap_or_else(|| crate::outbox::NewEvent::report(item, ReportStatus::Succeeded, state.generation, now))
            .message(message)
            .detail(detail);
        let mut books = lock(&self.books);
        if let Some(local) = books.memory.items.get_mut(item) {
            local.install_attempts += 1;
            local.detected_present = expected == DetectionResult::Present;
        }
        if step == Step::Uninstalled {
            forget_way_back(&mut books.memory, item);
            report.uninstalled.push(item.to_owned());
        } else {
            report.installed.push(item.to_owned());
        }
        books.record(item, state.generation, step, Some(event), now)?;
        books.save()?;
        Ok(true)
    }

    /// A retraction of a package fix: every package it upgraded goes back
    /// to the recorded version (a downgrade), from the repositories or the
    /// backup. Nothing is removed; without a way back the fix stays.
    pub(super) async fn restore_from_repository(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        facts: &patchward_api::Facts,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let item = desired.patch.as_str();
        let kept = lock(&self.books).memory.way_back.get(item).cloned();
        let Some(way_back) = kept.filter(|w| !w.packages.is_empty()) else {
            let reason = "retraction unavailable: no way back was recorded when this fix was installed; the fix stays";
            self.give_up_once(item, state.generation, reason.into(), self.now())?;
            return Ok(false);
        };
        match self.downgrade(state, item, &way_back).await {
            Ok(staged) => self.conclude(state, desired, facts, staged, DetectionResult::Absent, report),
            Err(stop) => self.stopped(state, item, stop, report),
        }
    }

    async fn downgrade(&self, state: &DesiredState, item: &str, way_back: &WayBack) -> Result<Staged, Stop> {
        let repositories = self.repositories(way_back.manager)?;
        let from_repository = way_back.packages.iter().any(|r| r.from == RestoreFrom::Repository);
        if from_repository {
            self.block(|| repositories.refresh())?;
        }
        let mut targets = Vec::new();
        let mut files = Vec::new();
        for restore in &way_back.packages {
            match &restore.from {
                RestoreFrom::Repository => targets.push(restore.previous.clone()),
                RestoreFrom::Backup { path, sha256, size } => {
                    let kind = repositories.package_type();
                    files.push((
                        restore.previous.clone(),
                        self.stage_backup(kind, path, sha256, *size).map_err(Stop::Failed)?,
                    ));
                }
                // A repository install upgrades only what is installed.
                RestoreFrom::NotInstalled => {}
            }
        }
        self.transact(state, item, repositories, &targets, &files, Direction::Downgrade).await
    }

    /// A backup, re-hashed as it is staged (G1), under a name the package
    /// manager reads as a file.
    pub(super) fn stage_backup(
        &self,
        kind: PackageType,
        path: &Path,
        sha256: &str,
        size: u64,
    ) -> Result<VerifiedPackage, String> {
        let digest = Sha256Digest::parse(sha256).map_err(|e| format!("the backup cannot be restored: {e}"))?;
        let blob = CachedBlob::claimed(PathBuf::from(path), digest, size);
        VerifiedPackage::stage(&blob, kind, &self.staging).map_err(|e| format!("the backup cannot be restored: {e}"))
    }
}

/// A fetched file as the report names it, from its archive name: apt's
/// `NAME_VERSION_ARCH.deb` (the epoch's `:` as `%3a`), rpm's
/// `NAME-VERSION-RELEASE.ARCH.rpm` (no epoch in the name, so a target's
/// version, which has it, wins).
fn installed_file(kind: PackageType, file: &str, digest: Sha256Digest, targets: &[PackageVersion]) -> InstalledFile {
    let (name, version, arch) = match kind {
        PackageType::Rpm => {
            let stem = file.trim_end_matches(".rpm");
            let (nvr, arch) = stem.rsplit_once('.').unwrap_or((stem, ""));
            let mut parts = nvr.rsplitn(3, '-');
            let (release, version) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            (parts.next().unwrap_or_default().to_owned(), format!("{version}-{release}"), arch.to_owned())
        }
        _ => {
            let mut parts = file.trim_end_matches(".deb").splitn(3, '_');
            let name = parts.next().unwrap_or_default().to_owned();
            let version = parts.next().unwrap_or_default().replace("%3a", ":");
            (name, version, parts.next().unwrap_or_default().to_owned())
        }
    };
    let target = targets.iter().find(|t| t.name == name && t.arch == arch);
    let version = target.map_or(version, |t| t.version.clone());
    InstalledFile { name, arch, version, sha256: digest.to_hex() }
}

/// Drops the way back of a restored item, and its backups.
pub(super) fn forget_way_back(memory: &mut super::Memory, item: &str) {
    if let Some(way_back) = memory.way_back.remove(item) {
        for restore in way_back.packages {
            if let RestoreFrom::Backup { path, .. } = restore.from {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
