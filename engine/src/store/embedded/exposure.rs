//! Exposure records in the embedded backend (`store::exposure`).

use std::collections::BTreeMap;

use super::SledStore;
use crate::store::StoreError;
use crate::store::exposure::{DeviceExposure, RemediationTally};

const REMEDIATION_STATE: &str = "state/remediation";

impl SledStore {
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
            tally += remediated;
            self.fleet
                .insert(REMEDIATION_STATE, serde_json::to_vec(&tally).expect("a tally serializes"))
                .map_err(|e| self.io("write", e))?;
        }
        self.durable()?;
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
