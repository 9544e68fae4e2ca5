//! Since when each device has been exposed to each patch, and how long
//! remediation took: what the security officer's figures need that no plan
//! can recompute.
//!
//! Key layout of the `exposure` tree: `{device}` → JSON [`DeviceExposure`]:
//! the device's baseline and the exposures that opened after it (see
//! `daemon::exposure` for the rule). The remediation tally lives in the
//! engine's state (`state/remediation`). Every change is one sled batch and
//! a flush, like every other write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// What the engine records of one device's exposure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceExposure {
    /// The first plan that saw the device.
    pub baseline: jiff::Timestamp,
    /// Exposures that opened later than the rule dates them: patch id →
    /// when.
    #[serde(default)]
    pub opened: BTreeMap<String, jiff::Timestamp>,
}

/// Remediations so far: how many exposures closed, and their total length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemediationTally {
    pub remediated: u64,
    pub total_seconds: u64,
}

impl RemediationTally {
    /// The mean time to remediate, in seconds; `None` before the first.
    pub fn mean_seconds(&self) -> Option<u64> {
        (self.remediated > 0).then(|| self.total_seconds / self.remediated)
    }
}

const REMEDIATION_STATE: &str = "state/remediation";

impl Store {
    /// Every device's record.
    pub fn exposures(&self) -> Result<BTreeMap<String, DeviceExposure>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.exposure.iter() {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let device = String::from_utf8_lossy(&key).into_owned();
            let record: DeviceExposure = serde_json::from_slice(&value)
                .map_err(|e| self.corrupted(format!("exposure of device {device} does not decode: {e}")))?;
            out.insert(device, record);
        }
        Ok(out)
    }

    /// Replaces the records of the devices named and adds to the
    /// remediation tally, in one batch, durably.
    pub fn record_exposures(
        &self,
        changed: &[(String, DeviceExposure)],
        remediated: RemediationTally,
    ) -> Result<(), StoreError> {
        if changed.is_empty() && remediated.remediated == 0 {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (device, record) in changed {
            batch.insert(device.as_bytes(), serde_json::to_vec(record).expect("a record serializes"));
        }
        self.exposure.apply_batch(batch).map_err(|e| self.io("write", e))?;
        if remediated.remediated > 0 {
            let mut tally = self.remediation_tally()?;
            tally.remediated += remediated.remediated;
            tally.total_seconds += remediated.total_seconds;
            self.fleet
                .insert(REMEDIATION_STATE, serde_json::to_vec(&tally).expect("a tally serializes"))
                .map_err(|e| self.io("write", e))?;
        }
        self.db.flush().map_err(|e| self.io("flush", e))?;
        Ok(())
    }

    pub fn remediation_tally(&self) -> Result<RemediationTally, StoreError> {
        match self.fleet.get(REMEDIATION_STATE).map_err(|e| self.io("read", e))? {
            None => Ok(RemediationTally::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.corrupted(format!("the remediation tally does not decode: {e}"))),
        }
    }
}
