//! Recovery (G6, T22, T43): on the first pass after a start, what a crash
//! left half done is resolved before anything else.
//!
//! First the package database: a package manager killed mid-transaction
//! (power lost, kill -9 of the agent and its apt or dpkg) leaves packages
//! unpacked or half-configured, and apt refuses to run until dpkg has
//! finished them. When the journal holds an unfinished install or removal,
//! `dpkg --configure -a` finishes what was unpacked (keeping configuration
//! files), exactly as an admin would. Then every unfinished step is
//! decided by detection on the repaired database (the rules are in the
//! converge module's doc).

use std::collections::BTreeMap;

use patchward_api::ReportStatus;
use patchward_api::desired::{Action, DesiredItem};
use patchward_api::events::EventKind;

use super::{Agent, lock, policy_name};
use crate::detect::DetectionResult;
use crate::journal::Step;
use crate::outbox::NewEvent;
use crate::state::StateError;

impl Agent {
    /// Finishes what a killed package manager left unpacked, when the
    /// journal says an install or a removal was under way. A held lock
    /// means someone else is repairing: detection decides either way.
    pub(super) fn repair_package_database(&self) {
        let interrupted = lock(&self.books)
            .journal
            .unfinished()
            .iter()
            .any(|e| matches!(e.step, Step::Installing { .. } | Step::Uninstalling | Step::Verifying));
        let Some(dpkg) = self.platform.dpkg.as_ref().filter(|_| interrupted) else { return };
        let timeout = std::time::Duration::from_secs(600);
        let (kind, message) = match dpkg.repair(timeout) {
            Ok(outcome) if outcome.succeeded() => (
                EventKind::Step,
                "the package database was repaired after an interruption (dpkg --configure -a)".into(),
            ),
            Ok(outcome) => (EventKind::Error, format!("repairing the package database failed: {outcome:?}")),
            Err(e) => (EventKind::Error, format!("repairing the package database failed: {e}")),
        };
        // Told to the engine; detection decides what the interruption did.
        let _ = lock(&self.books).outbox.push_event(NewEvent::new(kind, self.now()).message(message));
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
