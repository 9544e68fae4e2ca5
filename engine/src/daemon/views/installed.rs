//! The installs over time: what devices reported installed or removed in
//! a range.

use serde::{Deserialize, Serialize};

use super::cell::{Cell, Columns};
use super::{mentions, passes};

/// One install (or removal) a device reported, for the time view.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstalledRow {
    pub at: jiff::Timestamp,
    pub device: String,
    pub patch: String,
    pub action: String,
    pub policy: Option<String>,
}

/// Which installs the time view keeps, besides its range.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct InstalledFilter {
    /// Part of the device's id or of the item's (any case).
    pub q: Option<String>,
    /// install or uninstall.
    pub action: Option<String>,
}

impl InstalledFilter {
    pub fn keeps(&self, row: &InstalledRow) -> bool {
        mentions(&self.q, [row.device.as_str(), &row.patch]) && passes(&self.action, &row.action)
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![("q", self.q.clone().unwrap_or_default()), ("action", self.action.clone().unwrap_or_default())]
    }
}

/// What devices reported installed or removed in `[from, to)`, newest
/// first: each device's latest successful report per patch.
pub fn installed_between(
    devices: &[super::EnrolledDevice],
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Vec<InstalledRow> {
    let mut rows: Vec<InstalledRow> = devices
        .iter()
        .map(|device| device.entry.as_ref())
        .flat_map(|record| {
            record
                .reports
                .iter()
                .filter(|r| r.status == patchward_api::ReportStatus::Succeeded && r.at >= from && r.at < to)
                .map(|r| InstalledRow {
                    at: r.at,
                    device: record.id.clone(),
                    patch: r.patch.clone(),
                    action: match r.action {
                        Some(patchward_api::desired::Action::Uninstall) => "uninstall".into(),
                        _ => "install".into(),
                    },
                    policy: r.policy.clone(),
                })
        })
        .collect();
    rows.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.device.cmp(&b.device)).then_with(|| a.patch.cmp(&b.patch)));
    rows
}

impl Columns for InstalledRow {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "at" => Cell::Time(self.at),
            "device" => Cell::Text(&self.device),
            "patch" => Cell::Text(&self.patch),
            "action" => Cell::Text(&self.action),
            "policy" => Cell::or_empty(self.policy.as_deref(), Cell::Text),
            _ => return None,
        })
    }
}
