//! The engine's record of exposure over time: since when each device has
//! been exposed to each patch (persisted, so a restart does not reset the
//! clock on an overdue exposure), and the remediations that closed one.
//!
//! After every plan, full or of one device, [`ExposureBook::track`]
//! compares each device's exposures with the open ones on record: a new one
//! opens at the plan's instant, one no longer there closes and adds its
//! length to the remediation tally (when the patch is still active: a patch
//! that left the catalog was not remediated). Only devices whose set moved
//! touch the store.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::plan::exposure::ExposureSince;
use crate::plan::{DevicePlan, Plan};
use crate::store::exposure::{DeviceExposure, RemediationTally};
use crate::store::{Store, StoreError};

#[derive(Default)]
pub struct ExposureBook {
    /// `None` until first read from the store.
    open: RwLock<Option<HashMap<String, DeviceExposure>>>,
}

/// A read of the book, for rendering rows.
pub struct OpenExposures<'a>(std::sync::RwLockReadGuard<'a, Option<HashMap<String, DeviceExposure>>>);

impl ExposureSince for OpenExposures<'_> {
    fn since(&self, device: &str, patch: &str) -> Option<jiff::Timestamp> {
        self.0.as_ref()?.get(device)?.get(patch).copied()
    }
}

impl ExposureBook {
    fn load(&self, store: &Store) -> Result<(), StoreError> {
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if open.is_none() {
            *open = Some(store.exposures()?.into_iter().collect());
        }
        Ok(())
    }

    pub fn read(&self, store: &Store) -> Result<OpenExposures<'_>, StoreError> {
        self.load(store)?;
        Ok(OpenExposures(self.open.read().unwrap_or_else(|p| p.into_inner())))
    }

    /// Records what `devices` (planned in `plan`) are exposed to now. The
    /// caller holds the planning lock: there is one writer.
    pub fn track(
        &self,
        store: &Store,
        plan: &Plan,
        devices: &[&DevicePlan],
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.load(store)?;
        let mut guard = self.open.write().unwrap_or_else(|p| p.into_inner());
        let book = guard.get_or_insert_with(HashMap::new);
        let mut changed = Vec::new();
        let mut tally = RemediationTally::default();
        for device in devices {
            let before = book.get(&device.id);
            let now_open: DeviceExposure = device
                .exposure
                .iter()
                .map(|e| {
                    let id = &plan.patches[e.patch as usize];
                    (id.clone(), before.and_then(|b| b.get(id)).copied().unwrap_or(now))
                })
                .collect();
            if before.is_some_and(|b| *b == now_open) || (before.is_none() && now_open.is_empty()) {
                continue;
            }
            for (patch, since) in before.into_iter().flatten() {
                if !now_open.contains_key(patch) && plan.patches.binary_search(patch).is_ok() {
                    tally.remediated += 1;
                    tally.total_seconds += now.as_second().saturating_sub(since.as_second()).max(0) as u64;
                }
            }
            changed.push((device.id.clone(), now_open));
        }
        store.record_exposures(&changed, tally)?;
        for (device, open) in changed {
            if open.is_empty() {
                book.remove(&device);
            } else {
                book.insert(device, open);
            }
        }
        Ok(())
    }
}
