//! A device's items as an admin reads them, and where the device stands
//! over them.

use serde::Serialize;

use super::cell::{Cell, Columns};
use crate::daemon::InForce;
use crate::plan::{DevicePlan, ItemStatus, Plan};

/// One item of a device, as an admin reads it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRow {
    pub device: String,
    pub patch: String,
    pub title: String,
    pub severity: String,
    pub category: String,
    pub action: String,
    pub status: String,
    pub source: String,
    pub stage: Option<u16>,
    pub policy: String,
    pub windows: Vec<String>,
    pub not_before: jiff::Timestamp,
    pub deadline: Option<jiff::Timestamp>,
    /// Not installed and past its deadline.
    pub overdue: bool,
    /// The user may install it on demand: its deployment policy, or its
    /// SoftwareAssignment, says `selfService`.
    pub self_service: bool,
}

impl ItemRow {
    /// Not installed (or removed) yet.
    pub fn pending(&self) -> bool {
        self.status != "installed" && self.status != "removed"
    }
}

/// Where a device stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compliance {
    /// Every item installed (or removed).
    Compliant,
    /// Items outstanding, none past its deadline.
    Pending,
    /// An item past its deadline and not installed.
    NonCompliant,
}

impl Compliance {
    pub const fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "compliant",
            Compliance::Pending => "pending",
            Compliance::NonCompliant => "non-compliant",
        }
    }
}

/// What software items (SoftwareAssignments) show as their severity and
/// category: they are no vendor's patch, so they have no rating.
pub const SOFTWARE_SEVERITY: &str = "unrated";
pub const SOFTWARE_CATEGORY: &str = "software";

/// A device's items: its patches, then its software assignments, each as
/// the agent receives it in its desired state.
pub fn item_rows(in_force: &InForce, plan: &Plan, device: &DevicePlan, now: jiff::Timestamp) -> Vec<ItemRow> {
    let deployment = |name: &str| &in_force.policy.policy.deployment_policies[name].spec;
    let windows_of = |name: &str| deployment(name).windows.iter().map(|w| w.value.clone()).collect();
    let patches = device.items.iter().map(|item| {
        let grant = plan.grant(item);
        let patch = &in_force.catalog.patches[item.patch as usize].view.record;
        let (kind, name) = plan.source_name(grant.source);
        let policy_name = &plan.policy_names[grant.policy as usize];
        let done = matches!(item.status, ItemStatus::Installed | ItemStatus::Removed);
        ItemRow {
            device: device.id.clone(),
            patch: plan.patches[item.patch as usize].clone(),
            title: patch.patch.title.clone(),
            severity: patch.severity.as_str().to_owned(),
            category: patch.patch.category.as_str().to_owned(),
            action: grant.action.as_str().to_owned(),
            status: item.status.as_str().to_owned(),
            source: format!("{kind}/{name}"),
            stage: grant.stage.map(|s| s + 1),
            policy: policy_name.clone(),
            windows: windows_of(policy_name),
            not_before: grant.not_before,
            deadline: grant.deadline,
            overdue: !done && grant.deadline.is_some_and(|d| d <= now),
            self_service: deployment(policy_name).self_service,
        }
    });
    let software = device.software.iter().map(|item| {
        let assignment = &in_force.policy.assignments[item.assignment as usize];
        let policy_name = &plan.policy_names[assignment.policy];
        let package = &in_force.policy.policy.packages[&assignment.package];
        let title = package.spec.display_name.as_deref().unwrap_or(&assignment.package);
        ItemRow {
            device: device.id.clone(),
            patch: crate::plan::software_id(&assignment.package, &assignment.version),
            title: format!("{title} {}", assignment.version),
            severity: SOFTWARE_SEVERITY.to_owned(),
            category: SOFTWARE_CATEGORY.to_owned(),
            action: item.action.as_str().to_owned(),
            status: item.status.as_str().to_owned(),
            source: format!("assignment/{}", assignment.name),
            stage: None,
            policy: policy_name.clone(),
            windows: windows_of(policy_name),
            // As in the desired state: due once assigned, no deadline.
            not_before: plan.now,
            deadline: None,
            overdue: false,
            self_service: assignment.self_service || deployment(policy_name).self_service,
        }
    });
    patches.chain(software).collect()
}

pub fn compliance_of(rows: &[ItemRow]) -> Compliance {
    if rows.iter().any(|r| r.overdue) {
        Compliance::NonCompliant
    } else if rows.iter().any(ItemRow::pending) {
        Compliance::Pending
    } else {
        Compliance::Compliant
    }
}

impl Columns for ItemRow {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "device" => Cell::Text(&self.device),
            "patch" => Cell::Text(&self.patch),
            "title" => Cell::Text(&self.title),
            "severity" => Cell::Severity(&self.severity),
            "category" => Cell::Text(&self.category),
            "action" => Cell::Text(&self.action),
            "status" => Cell::Text(&self.status),
            "source" => Cell::Text(&self.source),
            "stage" => Cell::or_empty(self.stage, |s| Cell::Count(s.into())),
            "policy" => Cell::Text(&self.policy),
            "windows" => Cell::list(&self.windows),
            "notBefore" => Cell::Time(self.not_before),
            "deadline" => Cell::or_empty(self.deadline, Cell::Time),
            "overdue" => Cell::Flag(self.overdue),
            "selfService" => Cell::Flag(self.self_service),
            _ => return None,
        })
    }
}
