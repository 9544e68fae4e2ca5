//! The way back from a `.deb` the catalog delivered by URL (our own feed
//! format), and the retraction that takes it (DESIGN, "Rollback restores,
//! it does not remove").
//!
//! Before such a package upgrades one already installed, the agent rebuilds
//! the installed version from the dpkg database (`repo::backup`), hashes it
//! and keeps it in the books: that backup is the way back, so the
//! repositories are never asked and never block the install. A package
//! that was not installed before is recorded as new. A retraction then:
//!
//! - reinstalls every backed-up version (a downgrade through the same
//!   verified path: re-hashed as it is staged, then dpkg);
//! - removes what the patch newly installed (undoing the patch is removing
//!   what it added);
//! - with no record at all (installed before this release, or by an rpm
//!   with no backup), reports the retraction unavailable and leaves the
//!   patch in place: a package patchward upgraded is never removed.

use patchward_api::desired::{DesiredItem, DesiredState};

use super::{Agent, AgentError, PassReport, lock};
use crate::install::{PackageType, VerifiedPackage};
use crate::repo::apt::PackageVersion;
use crate::repo::way_back::{Restore, RestoreFrom};

/// Why no way back could be secured before an install.
pub(super) enum Unsecured {
    /// dpkg is busy: retry later (G8).
    Busy(String),
    Failed(String),
}

/// What a retraction of a delivered package does.
pub(super) enum PackageRetraction {
    /// Reinstall these backups (downgrades).
    Restore(Vec<Restore>),
    /// The patch added the package: remove it as before.
    Remove,
    /// No way back was recorded.
    Unavailable,
}

impl Agent {
    /// Records the way back before `staged` (a `.deb`) is installed: a
    /// backup of the installed version it upgrades, or that it is new.
    pub(super) fn secure_deb_way_back(&self, item: &str, staged: &VerifiedPackage) -> Result<(), Unsecured> {
        let Some(dpkg) = self.platform.dpkg.as_ref() else { return Ok(()) };
        let field =
            |name| crate::install::deb::deb_field(staged.path(), name).map_err(|e| Unsecured::Failed(e.to_string()));
        let (name, arch, version) = (field("Package")?, field("Architecture")?, field("Version")?);
        let installed = dpkg.status(&name).map_err(|e| Unsecured::Failed(e.to_string()))?.filter(|s| s.is_installed());
        let from = match &installed {
            Some(status) if status.version == version => return Ok(()),
            Some(_) => {
                let dir = lock(&self.books).state.path().join("backups");
                // Copied under dpkg's frontend lock, released before the
                // installer takes it.
                let held = dpkg.try_lock_frontend().map_err(|e| Unsecured::Failed(e.to_string()))?;
                let Some(_held) = held else { return Err(Unsecured::Busy("dpkg's frontend lock is held".into())) };
                let backup =
                    tokio::task::block_in_place(|| crate::repo::backup::deb::rebuild(dpkg, &name, &arch, &dir))
                        .map_err(|e| Unsecured::Failed(format!("no way back for {name}: {e}")))?;
                RestoreFrom::Backup { path: backup.path, sha256: backup.sha256.to_hex(), size: backup.size }
            }
            None => RestoreFrom::NotInstalled,
        };
        let previous = PackageVersion { name, arch, version: installed.map(|s| s.version).unwrap_or_default() };
        let mut books = lock(&self.books);
        let kept = books.memory.way_back.entry(item.to_owned()).or_default();
        if !kept.packages.iter().any(|r| r.previous.name == previous.name && r.previous.arch == previous.arch) {
            kept.packages.push(Restore { previous, upgraded_to: version, from });
        }
        books.save().map_err(|e| Unsecured::Failed(e.to_string()))
    }

    /// How a retraction of `item`'s delivered packages goes.
    pub(super) fn package_retraction(&self, item: &str) -> PackageRetraction {
        let kept = lock(&self.books).memory.way_back.get(item).cloned().unwrap_or_default();
        let backups: Vec<Restore> =
            kept.packages.iter().filter(|r| matches!(r.from, RestoreFrom::Backup { .. })).cloned().collect();
        match (backups.is_empty(), kept.packages.is_empty()) {
            (false, _) => PackageRetraction::Restore(backups),
            (true, false) => PackageRetraction::Remove,
            (true, true) => PackageRetraction::Unavailable,
        }
    }

    /// Reinstalls `backups`, each re-hashed as it is staged (G1).
    pub(super) fn restore_backups(
        &self,
        state: &DesiredState,
        desired: &DesiredItem,
        backups: &[Restore],
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let item = desired.patch.as_str();
        let installer = match self.installer(PackageType::Deb.as_str()) {
            Ok((_, installer)) => installer,
            Err(reason) => return self.fail(state, item, reason, None, report),
        };
        lock(&self.books).record(item, state.generation, crate::journal::Step::Uninstalling, None, self.now())?;
        for restore in backups {
            let RestoreFrom::Backup { path, sha256, size } = &restore.from else { continue };
            let staged = match self.stage_backup(PackageType::Deb, path, sha256, *size) {
                Ok(staged) => staged,
                Err(reason) => return self.fail(state, item, reason, None, report),
            };
            match tokio::task::block_in_place(|| installer.install(&staged, &[])) {
                Ok(outcome) if outcome.succeeded() => {}
                Ok(outcome) => {
                    let reason = format!("restoring {} failed: {outcome:?}", restore.previous.name);
                    return self.fail(state, item, reason, Some(&outcome), report);
                }
                Err(e) => return self.fail(state, item, e.to_string(), None, report),
            }
        }
        {
            let mut books = lock(&self.books);
            super::repository::forget_way_back(&mut books.memory, item);
            books.save()?;
        }
        let restored: Vec<String> =
            backups.iter().map(|r| format!("{} {}", r.previous.name, r.previous.version)).collect();
        let message = format!("restored the previous versions: {}", restored.join(", "));
        self.succeeded(state, item, crate::journal::Step::Uninstalled, &message, report)?;
        Ok(true)
    }
}
