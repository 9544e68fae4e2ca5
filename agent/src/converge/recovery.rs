//! Recovery (G6, T22, T43): on the first pass after a start, what a crash
//! left half done is resolved before anything else.
//!
//! First the package database, when the journal holds an unfinished
//! install or removal:
//! - dpkg: a package manager killed mid-transaction (power lost, kill -9 of
//!   the agent and its apt or dpkg) leaves packages unpacked or
//!   half-configured, and apt refuses to run until dpkg has finished them.
//!   `dpkg --configure -a` finishes what was unpacked (keeping
//!   configuration files), exactly as an admin would.
//! - rpm: a transaction installs each new version before it erases the one
//!   it replaces, so a kill leaves both in the database (dnf then reports
//!   duplicates). For the packages the interrupted item was replacing, the
//!   instance it was not heading to is erased, as the transaction would
//!   have (`dnf remove --duplicates` keeps the newest, which is wrong for
//!   an interrupted restore).
//!
//! Then every unfinished step is decided by detection on the repaired
//! database (the rules are in the converge module's doc).

use std::collections::BTreeMap;

use patchward_api::desired::{Action, DesiredItem};
use patchward_api::events::EventKind;
use patchward_api::{PackageManager, ReportStatus};

use super::{Agent, lock, policy_name};
use crate::detect::DetectionResult;
use crate::install::rpm::RpmRoot;
use crate::journal::Step;
use crate::outbox::NewEvent;
use crate::state::StateError;

/// `dpkg --configure -a`, as an event.
fn repaired_by_dpkg(dpkg: &crate::install::deb::DpkgRoot) -> (EventKind, String) {
    let timeout = std::time::Duration::from_secs(600);
    match dpkg.repair(timeout) {
        Ok(outcome) if outcome.succeeded() => {
            (EventKind::Step, "the package database was repaired after an interruption (dpkg --configure -a)".into())
        }
        Ok(outcome) => (EventKind::Error, format!("repairing the package database failed: {outcome:?}")),
        Err(e) => (EventKind::Error, format!("repairing the package database failed: {e}")),
    }
}

impl Agent {
    /// Finishes what a killed package manager left half done, when the
    /// journal says an install or a removal was under way: dpkg's unpacked
    /// packages, rpm's replaced packages. A held lock means someone else is
    /// repairing: detection decides either way.
    pub(super) fn repair_package_database(&self) {
        let interrupted: Vec<(String, Step)> = lock(&self.books)
            .journal
            .unfinished()
            .iter()
            .filter(|e| matches!(e.step, Step::Installing { .. } | Step::Uninstalling | Step::Verifying))
            .map(|e| (e.item.clone(), e.step.clone()))
            .collect();
        if interrupted.is_empty() {
            return;
        }
        let mut events = Vec::new();
        if let Some(dpkg) = self.platform.dpkg.as_ref() {
            events.push(repaired_by_dpkg(dpkg));
        }
        if let Some(rpm) = self.platform.repositories.iter().find_map(|r| r.rpm_root()) {
            events.extend(self.finish_rpm_replacements(rpm, &interrupted));
        }
        let now = self.now();
        let mut books = lock(&self.books);
        for (kind, message) in events {
            // Told to the engine; detection decides what the interruption did.
            let _ = books.outbox.push_event(NewEvent::new(kind, now).message(message));
        }
    }

    /// rpm installs a new version before it erases the one it replaces: for
    /// every package an interrupted repository transaction was replacing
    /// (its way back says which, and where it was heading), a duplicate
    /// left in the database is finished.
    fn finish_rpm_replacements(&self, rpm: &RpmRoot, interrupted: &[(String, Step)]) -> Vec<(EventKind, String)> {
        let installer = crate::install::rpm::RpmInstaller::new(rpm.clone());
        let way_back = lock(&self.books).memory.way_back.clone();
        let mut events = Vec::new();
        for (item, step) in interrupted {
            let Some(record) = way_back.get(item).filter(|w| w.manager == PackageManager::Rpm) else { continue };
            for restore in &record.packages {
                let kept = match step {
                    Step::Uninstalling => &restore.previous.version,
                    _ => &restore.upgraded_to,
                };
                let name = &restore.previous.name;
                match installer.finish_replacement(name, &restore.previous.arch, kept) {
                    Ok(erased) if erased.is_empty() => {}
                    Ok(erased) => events.push((
                        EventKind::Step,
                        format!(
                            "the package database was repaired after an interruption (rpm: {name} {} erased, \
                             {kept} kept, as the interrupted transaction would have)",
                            erased.join(", ")
                        ),
                    )),
                    Err(e) => events.push((EventKind::Error, format!("repairing the package database failed: {e}"))),
                }
            }
        }
        events
    }

    /// Resolves what a crash left half done (see the module docs).
    pub(super) fn recover(
        &mut self,
        inventory: &patchward_api::Inventory,
        facts: &patchward_api::Facts,
    ) -> Result<(), StateError> {
        let now = self.now();
        let unfinished: Vec<(String, u64, Step)> = {
            let books = lock(&self.books);
            books.journal.unfinished().into_iter().map(|e| (e.item.clone(), e.generation, e.step.clone())).collect()
        };
        let items: BTreeMap<String, DesiredItem> = {
            let books = lock(&self.books);
            books
                .memory
                .trusted
                .as_ref()
                .map(|t| t.state.items.iter().map(|i| (i.patch.clone(), i.clone())).collect())
                .unwrap_or_default()
        };
        for (item, generation, step) in unfinished {
            if matches!(step, Step::Downloading { .. }) {
                continue;
            }
            let removing = matches!(step, Step::Uninstalling);
            // Not applicable is neither answer: the interrupted step is
            // failed and the item decided again.
            let verdict = items.get(&item).map(|i| self.detection(i, inventory, facts));
            let done = match verdict {
                Some(DetectionResult::Present) => !removing,
                Some(DetectionResult::Absent) => removing,
                _ => false,
            };
            let mut books = lock(&self.books);
            if done {
                let (step, status) =
                    if removing { (Step::Uninstalled, "removed") } else { (Step::Installed, "installed") };
                let action = if removing { Action::Uninstall } else { Action::Install };
                let event = NewEvent::report(&item, ReportStatus::Succeeded, generation, now)
                    .outcome_of(action, items.get(&item).and_then(policy_name))
                    .message(format!("{status}: detection decided after a restart"));
                books.record(&item, generation, step, Some(event), now)?;
            } else {
                let reason = format!(
                    "interrupted while {}; detection says {}",
                    step.name(),
                    verdict.map_or("nothing (the item is no longer desired)".into(), |v| v.to_string())
                );
                books.record(&item, generation, Step::Failed { reason, outcome: None }, None, now)?;
                if let Some(local) = books.memory.items.get_mut(&item) {
                    local.install_attempts += 1;
                }
            }
        }
        lock(&self.books).save()
    }
}
