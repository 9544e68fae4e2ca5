//! A device's items as an admin reads them, and where the device stands
//! over them.

use serde::Serialize;

use super::cell::{Cell, Columns};
use crate::daemon::InForce;
use crate::plan::{DeviceItem, DevicePlan, ItemStatus, Plan};

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

/// What a list reads of an item to filter, count and sort: borrowed from
/// the plan and the catalog, nothing built. Only the rows shown become
/// [`ItemRow`]s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemKey<'a> {
    pub patch: &'a str,
    pub severity: &'a str,
    pub category: &'a str,
    pub policy: &'a str,
    pub status: &'a str,
    /// Not installed and past its deadline.
    pub overdue: bool,
}

impl ItemKey<'_> {
    /// Not installed (or removed) yet.
    pub fn pending(&self) -> bool {
        self.status != "installed" && self.status != "removed"
    }
}

/// Where a device's items are read from: what is in force, its plan, and
/// the time they are judged at (for "overdue").
///
/// A device's items are its patches, then its software assignments, each
/// as the agent receives it in its desired state; a position counts
/// through both.
pub struct ItemSource<'a> {
    pub in_force: &'a InForce,
    pub plan: &'a Plan,
    pub now: jiff::Timestamp,
    /// Each SoftwareAssignment's item id (`package@version`), by index.
    software_ids: Vec<String>,
}

impl<'a> ItemSource<'a> {
    pub fn new(in_force: &'a InForce, plan: &'a Plan, now: jiff::Timestamp) -> ItemSource<'a> {
        let software_ids =
            in_force.policy.assignments.iter().map(|a| crate::plan::software_id(&a.package, &a.version)).collect();
        ItemSource { in_force, plan, now, software_ids }
    }

    /// The device's items' keys, in position order.
    pub fn keys<'s>(&'s self, device: &'s DevicePlan) -> impl Iterator<Item = ItemKey<'s>> + 's {
        let patches = device.items.iter().map(move |item| {
            let grant = self.plan.grant(item);
            let patch = &self.in_force.catalog.patches[item.patch as usize].view.record;
            ItemKey {
                patch: &self.plan.patches[item.patch as usize],
                severity: patch.severity.as_str(),
                category: patch.patch.category.as_str(),
                policy: &self.plan.policy_names[grant.policy as usize],
                status: item.status.as_str(),
                overdue: !is_done(item.status) && grant.deadline.is_some_and(|d| d <= self.now),
            }
        });
        let software = device.software.iter().map(move |item| {
            let assignment = &self.in_force.policy.assignments[item.assignment as usize];
            ItemKey {
                patch: &self.software_ids[item.assignment as usize],
                severity: SOFTWARE_SEVERITY,
                category: SOFTWARE_CATEGORY,
                policy: &self.plan.policy_names[assignment.policy],
                status: item.status.as_str(),
                overdue: false,
            }
        });
        patches.chain(software)
    }

    /// The device's item at `position`, as an admin reads it.
    pub fn row(&self, device: &DevicePlan, position: usize) -> ItemRow {
        match device.items.iter().nth(position) {
            Some(item) => self.patch_row(device, item),
            None => self.software_row(device, position - device.items.len()),
        }
    }

    /// Every item of the device, as an admin reads it.
    pub fn rows(&self, device: &DevicePlan) -> Vec<ItemRow> {
        let software = (0..device.software.len()).map(|index| self.software_row(device, index));
        device.items.iter().map(|item| self.patch_row(device, item)).chain(software).collect()
    }

    fn deployment(&self, name: &str) -> &crate::policy::model::DeploymentPolicySpec {
        &self.in_force.policy.policy.deployment_policies[name].spec
    }

    fn windows_of(&self, name: &str) -> Vec<String> {
        self.deployment(name).windows.iter().map(|w| w.value.clone()).collect()
    }

    fn patch_row(&self, device: &DevicePlan, item: DeviceItem) -> ItemRow {
        let plan = self.plan;
        let grant = plan.grant(item);
        let patch = &self.in_force.catalog.patches[item.patch as usize].view.record;
        let (kind, name) = plan.source_name(grant.source);
        let policy_name = &plan.policy_names[grant.policy as usize];
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
            windows: self.windows_of(policy_name),
            not_before: grant.not_before,
            deadline: grant.deadline,
            overdue: !is_done(item.status) && grant.deadline.is_some_and(|d| d <= self.now),
            self_service: self.deployment(policy_name).self_service,
        }
    }

    fn software_row(&self, device: &DevicePlan, index: usize) -> ItemRow {
        let item = &device.software[index];
        let assignment = &self.in_force.policy.assignments[item.assignment as usize];
        let policy_name = &self.plan.policy_names[assignment.policy];
        let package = &self.in_force.policy.policy.packages[&assignment.package];
        let title = package.spec.display_name.as_deref().unwrap_or(&assignment.package);
        ItemRow {
            device: device.id.clone(),
            patch: self.software_ids[item.assignment as usize].clone(),
            title: format!("{title} {}", assignment.version),
            severity: SOFTWARE_SEVERITY.to_owned(),
            category: SOFTWARE_CATEGORY.to_owned(),
            action: item.action.as_str().to_owned(),
            status: item.status.as_str().to_owned(),
            source: format!("assignment/{}", assignment.name),
            stage: None,
            policy: policy_name.clone(),
            windows: self.windows_of(policy_name),
            // As in the desired state: due once assigned, no deadline.
            not_before: self.plan.now,
            deadline: None,
            overdue: false,
            self_service: assignment.self_service || self.deployment(policy_name).self_service,
        }
    }
}

fn is_done(status: ItemStatus) -> bool {
    matches!(status, ItemStatus::Installed | ItemStatus::Removed)
}

/// A device's items (see [`ItemSource`]).
pub fn item_rows(in_force: &InForce, plan: &Plan, device: &DevicePlan, now: jiff::Timestamp) -> Vec<ItemRow> {
    ItemSource::new(in_force, plan, now).rows(device)
}

/// Where a device stands over its items.
pub fn compliance_of<'k>(keys: impl IntoIterator<Item = ItemKey<'k>>) -> Compliance {
    let mut pending = false;
    for key in keys {
        if key.overdue {
            return Compliance::NonCompliant;
        }
        pending |= key.pending();
    }
    if pending { Compliance::Pending } else { Compliance::Compliant }
}

impl ItemRow {
    /// The row's key, as the lists filter it.
    pub fn key(&self) -> ItemKey<'_> {
        ItemKey {
            patch: &self.patch,
            severity: &self.severity,
            category: &self.category,
            policy: &self.policy,
            status: &self.status,
            overdue: self.overdue,
        }
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
