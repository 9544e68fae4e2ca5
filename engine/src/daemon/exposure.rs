//! The engine's record of exposure over time: since when each device has
//! been exposed to each patch (persisted, so a restart does not reset the
//! clock on an overdue exposure), and the remediations that closed one.
//!
//! A fleet is exposed to millions of (device, patch) pairs, so the record
//! keeps the rule and its exceptions, not every pair. A device is exposed to
//! a patch since the later of its **baseline** (the first plan that saw it:
//! its first inventory) and the patch's `firstSeen`, unless the pair
//! **opened** later than that, which happens only when an inventory shows a
//! device newly vulnerable to a patch it had (a downgrade, a package
//! installed, a patch removed); those are recorded one by one. An inventory
//! that no longer shows an exposure closes it: its length goes to the
//! remediation tally, the mean time to remediate.
//!
//! Only an inventory changes what a device is exposed to (a policy change
//! changes decisions, not exposure; a new patch opens at its `firstSeen`),
//! so only [`ExposureBook::track_devices`] compares before and after. A
//! catalog revision that raises a fixed version therefore dates the newly
//! exposed devices from the patch's `firstSeen`: earlier, never later, than
//! the truth.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::plan::exposed::{Moved, diff_ascending};
use crate::plan::exposure::{DatingRule, ExposureSince};
use crate::plan::{DevicePlan, Plan, PlanCatalog};
use crate::store::exposure::{DeviceExposure, RemediationTally};
use crate::store::{Store, StoreError};

#[derive(Default)]
pub struct ExposureBook {
    /// `None` until first read from the store.
    devices: RwLock<Option<HashMap<String, DeviceExposure>>>,
}

/// A read of the book, for rendering rows.
pub struct ExposureRecord<'a>(std::sync::RwLockReadGuard<'a, Option<HashMap<String, DeviceExposure>>>);

impl ExposureSince for ExposureRecord<'_> {
    fn since(&self, device: &str, patch: &str, first_seen: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let record = self.0.as_ref()?.get(device)?;
        Some(record.opened.get(patch).copied().unwrap_or(record.by_rule(first_seen)))
    }

    fn rule(&self, device: &str) -> DatingRule<'_> {
        match self.0.as_ref().and_then(|devices| devices.get(device)) {
            None => DatingRule::FromPlan,
            Some(record) => DatingRule::LaterOf {
                baseline: record.baseline,
                exceptions: record.opened.keys().map(String::as_str).collect(),
            },
        }
    }
}

impl DeviceExposure {
    /// When the rule dates an exposure to a patch first seen at
    /// `first_seen`: the later of that and the device's baseline.
    fn by_rule(&self, first_seen: jiff::Timestamp) -> jiff::Timestamp {
        self.baseline.max(first_seen)
    }
}

impl ExposureBook {
    fn load(&self, store: &Store) -> Result<(), StoreError> {
        let mut devices = self.devices.write().unwrap_or_else(|p| p.into_inner());
        if devices.is_none() {
            *devices = Some(crate::store::Store::wait(store.exposures())?.into_iter().collect());
        }
        Ok(())
    }

    pub fn read(&self, store: &Store) -> Result<ExposureRecord<'_>, StoreError> {
        self.load(store)?;
        Ok(ExposureRecord(self.devices.read().unwrap_or_else(|p| p.into_inner())))
    }

    /// Gives every device the plan is the first to see its baseline, `now`.
    pub fn track_plan(&self, store: &Store, devices: &[&DevicePlan], now: jiff::Timestamp) -> Result<(), StoreError> {
        self.load(store)?;
        let mut guard = self.devices.write().unwrap_or_else(|p| p.into_inner());
        let book = guard.get_or_insert_with(HashMap::new);
        let new: Vec<(String, DeviceExposure)> = devices
            .iter()
            .filter(|d| !book.contains_key(&d.id))
            .map(|d| (d.id.clone(), DeviceExposure::first_seen(now)))
            .collect();
        crate::store::Store::wait(store.record_exposures(&new, RemediationTally::default()))?;
        book.extend(new);
        Ok(())
    }

    /// Devices planned again after their inventories (each `after`, with
    /// its plan `before` against the same full plan `plan`): exposures a
    /// device gained open now (where the rule would date them earlier),
    /// those it lost are remediated. One store write for all of them.
    pub fn track_devices(
        &self,
        store: &Store,
        plan: &Plan,
        catalog: &PlanCatalog,
        replanned: &[(Option<&DevicePlan>, &DevicePlan)],
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.load(store)?;
        let mut guard = self.devices.write().unwrap_or_else(|p| p.into_inner());
        let book = guard.get_or_insert_with(HashMap::new);
        let mut changed = Vec::new();
        let mut tally = RemediationTally::default();
        for (before, after) in replanned {
            let record = match (book.get(&after.id), before) {
                (Some(record), Some(before)) => {
                    let mut record = record.clone();
                    tally += compare(&mut record, plan, catalog, before, after, now);
                    record
                }
                (None, _) => DeviceExposure::first_seen(now),
                (Some(_), None) => continue,
            };
            if book.get(&after.id) != Some(&record) {
                changed.push((after.id.clone(), record));
            }
        }
        crate::store::Store::wait(store.record_exposures(&changed, tally))?;
        book.extend(changed);
        Ok(())
    }
}

/// Brings one device's `record` from its plan `before` to `after`: the
/// exposures it lost, tallied as remediated.
fn compare(
    record: &mut DeviceExposure,
    plan: &Plan,
    catalog: &PlanCatalog,
    before: &DevicePlan,
    after: &DevicePlan,
    now: jiff::Timestamp,
) -> RemediationTally {
    let first_seen = |p: u32| catalog.patches[p as usize].view.record.first_seen;
    let was: Vec<u32> = before.exposure.patches().collect();
    let is: Vec<u32> = after.exposure.patches().collect();
    let mut tally = RemediationTally::default();
    diff_ascending(&was, &is, |patch, moved| match moved {
        Moved::Lost => {
            let id = &plan.patches[patch as usize];
            let since = record.opened.remove(id).unwrap_or(record.by_rule(first_seen(patch)));
            tally.remediated += 1;
            tally.total_seconds += now.as_second().saturating_sub(since.as_second()).max(0) as u64;
        }
        Moved::Gained if record.by_rule(first_seen(patch)) < now => {
            record.opened.insert(plan.patches[patch as usize].clone(), now);
        }
        Moved::Gained => {}
    });
    tally
}
