//! Since when each device has been exposed to each patch, and how long
//! remediation took: what the security officer's figures need that no plan
//! can recompute.
//!
//! Key layout of the `exposure` tree: `{device}` → JSON [`DeviceExposure`]:
//! the device's baseline and the exposures that opened after it (see
//! `daemon::exposure` for the rule). The remediation tally lives in the
//! engine's state (`state/remediation`). Every change is one batch, durable
//! before it returns, like every other write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

impl DeviceExposure {
    /// A device first seen by a plan at `now`: its baseline.
    pub fn first_seen(now: jiff::Timestamp) -> DeviceExposure {
        DeviceExposure { baseline: now, opened: BTreeMap::new() }
    }
}

/// Remediations so far: how many exposures closed, and their total length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemediationTally {
    pub remediated: u64,
    pub total_seconds: u64,
}

impl std::ops::AddAssign for RemediationTally {
    fn add_assign(&mut self, more: RemediationTally) {
        self.remediated += more.remediated;
        self.total_seconds += more.total_seconds;
    }
}

impl RemediationTally {
    /// The mean time to remediate, in seconds; `None` before the first.
    pub fn mean_seconds(&self) -> Option<u64> {
        (self.remediated > 0).then(|| self.total_seconds / self.remediated)
    }
}
