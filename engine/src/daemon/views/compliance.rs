//! Compliance over the fleet: devices compliant, pending and not, and
//! their items counted by severity, category and policy.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cell::{Cell, Columns};
use super::csv::to_csv;
use super::items::{Compliance, ItemKey, ItemSource, compliance_of};
use crate::daemon::InForce;
use crate::plan::{DevicePlan, Plan};

/// Counts of one group of items or devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub installed: usize,
    pub due: usize,
    pub scheduled: usize,
    pub blocked: usize,
    pub removed: usize,
    pub overdue: usize,
}

impl Counts {
    fn add(&mut self, item: &ItemKey<'_>) {
        self.add_status(item.status, item.overdue);
    }

    pub(super) fn add_status(&mut self, status: &str, overdue: bool) {
        match status {
            "installed" => self.installed += 1,
            "due" => self.due += 1,
            "scheduled" => self.scheduled += 1,
            "blocked" => self.blocked += 1,
            _ => self.removed += 1,
        }
        self.overdue += usize::from(overdue);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceReport {
    pub at: jiff::Timestamp,
    pub policy_revision: Option<String>,
    pub devices: usize,
    pub compliant: usize,
    pub pending: usize,
    pub non_compliant: usize,
    /// Devices the policy plans nothing for: neither compliant nor not,
    /// and left out of the percentage (a fleet of such devices is not
    /// "fully patched", it is not managed yet).
    pub without_items: usize,
    /// Compliant devices, in percent of those with anything planned (100
    /// when none has: read it beside `withoutItems`).
    pub compliant_percent: f64,
    pub by_severity: BTreeMap<String, Counts>,
    pub by_category: BTreeMap<String, Counts>,
    pub by_policy: BTreeMap<String, Counts>,
    /// Beside deployment: the exposure past its remediation target and the
    /// mean time to remediate. Filled where the engine's record is at hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure: Option<crate::daemon::exposure_view::ExposureSummary>,
}

/// The compliance report's counts by group as CSV: one row per severity,
/// category and policy, as the console's tables show them.
pub fn compliance_csv(report: &ComplianceReport) -> String {
    let groups = [("severity", &report.by_severity), ("category", &report.by_category), ("policy", &report.by_policy)];
    let rows: Vec<GroupRow<'_>> = groups
        .into_iter()
        .flat_map(|(group, map)| map.iter().map(move |(name, counts)| GroupRow { group, name, counts }))
        .collect();
    to_csv(&["group", "name", "installed", "due", "scheduled", "blocked", "removed", "overdue"], &rows)
}

pub fn compliance(in_force: &InForce, plan: &Plan, devices: &[&DevicePlan], now: jiff::Timestamp) -> ComplianceReport {
    let mut report = ComplianceReport {
        at: now,
        policy_revision: plan.policy_revision.clone(),
        devices: devices.len(),
        compliant: 0,
        pending: 0,
        non_compliant: 0,
        without_items: 0,
        compliant_percent: 100.0,
        by_severity: BTreeMap::new(),
        by_category: BTreeMap::new(),
        by_policy: BTreeMap::new(),
        exposure: None,
    };
    let items = ItemSource::new(in_force, plan, now);
    for device in devices {
        let keys: Vec<ItemKey<'_>> = items.keys(device).collect();
        if keys.is_empty() {
            report.without_items += 1;
            continue;
        }
        match compliance_of(keys.iter().copied()) {
            Compliance::Compliant => report.compliant += 1,
            Compliance::Pending => report.pending += 1,
            Compliance::NonCompliant => report.non_compliant += 1,
        }
        for key in &keys {
            group(&mut report.by_severity, key.severity).add(key);
            group(&mut report.by_category, key.category).add(key);
            group(&mut report.by_policy, key.policy).add(key);
        }
    }
    let planned = devices.len() - report.without_items;
    if planned > 0 {
        report.compliant_percent = (report.compliant as f64 * 1000.0 / planned as f64).round() / 10.0;
    }
    report
}

/// The counts of group `name`, added if new (its name copied only then).
fn group<'m>(groups: &'m mut BTreeMap<String, Counts>, name: &str) -> &'m mut Counts {
    if !groups.contains_key(name) {
        groups.insert(name.to_owned(), Counts::default());
    }
    groups.get_mut(name).expect("inserted above")
}

/// One group's counts, as a line of [`compliance_csv`].
struct GroupRow<'a> {
    group: &'static str,
    name: &'a str,
    counts: &'a Counts,
}

impl Columns for GroupRow<'_> {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        let counts = self.counts;
        Some(match column {
            "group" => Cell::Text(self.group),
            "name" => Cell::Text(self.name),
            "installed" => Cell::count(counts.installed),
            "due" => Cell::count(counts.due),
            "scheduled" => Cell::count(counts.scheduled),
            "blocked" => Cell::count(counts.blocked),
            "removed" => Cell::count(counts.removed),
            "overdue" => Cell::count(counts.overdue),
            _ => return None,
        })
    }
}
