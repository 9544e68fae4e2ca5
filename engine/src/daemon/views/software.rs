//! The software library: each SoftwarePackage with its versions, and each
//! SoftwareAssignment with where it stands across the devices it reaches.

use serde::Serialize;

use super::cell::{Cell, Columns};
use super::compliance::Counts;
use crate::daemon::InForce;
use crate::plan::{DevicePlan, Plan};

/// The software library: each SoftwarePackage with its versions, and each
/// SoftwareAssignment with where it stands across the devices it reaches.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareLibrary {
    pub packages: Vec<PackageRow>,
    pub assignments: Vec<AssignmentRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRow {
    pub name: String,
    pub display_name: Option<String>,
    pub vendor: Option<String>,
    pub versions: Vec<PackageVersionRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageVersionRow {
    pub version: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha256: String,
    pub size: Option<u64>,
    /// The assignments that deploy (or remove) this version.
    pub assignments: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentRow {
    pub name: String,
    pub package: String,
    pub version: String,
    /// present or absent.
    pub state: String,
    pub scopes: Vec<String>,
    pub policy: String,
    pub self_service: bool,
    /// The devices it reaches, by their item's status.
    pub devices: Counts,
}

pub fn software(in_force: &InForce, plan: &Plan, devices: &[&DevicePlan]) -> SoftwareLibrary {
    let policy = &in_force.policy;
    let mut counts = vec![Counts::default(); policy.assignments.len()];
    for device in devices {
        for item in &device.software {
            counts[item.assignment as usize].add_status(item.status.as_str(), false);
        }
    }
    let assignments: Vec<AssignmentRow> = policy
        .assignments
        .iter()
        .zip(counts)
        .map(|(a, devices)| AssignmentRow {
            name: a.name.clone(),
            package: a.package.clone(),
            version: a.version.clone(),
            state: match a.state {
                crate::policy::model::AssignmentState::Present => "present",
                crate::policy::model::AssignmentState::Absent => "absent",
            }
            .to_owned(),
            scopes: a.scopes.iter().map(|s| plan.scope_names[*s].clone()).collect(),
            policy: plan.policy_names[a.policy].clone(),
            self_service: a.self_service,
            devices,
        })
        .collect();
    let packages = policy
        .policy
        .packages
        .iter()
        .map(|(name, doc)| PackageRow {
            name: name.clone(),
            display_name: doc.spec.display_name.clone(),
            vendor: doc.spec.vendor.clone(),
            versions: doc
                .spec
                .versions
                .iter()
                .map(|v| {
                    let version = &v.value.version.value;
                    PackageVersionRow {
                        version: version.clone(),
                        kind: v.value.kind.as_str().to_owned(),
                        sha256: v.value.sha256.value.clone(),
                        size: v.value.size,
                        assignments: assignments
                            .iter()
                            .filter(|a| &a.package == name && &a.version == version)
                            .map(|a| a.name.clone())
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    SoftwareLibrary { packages, assignments }
}

/// The CSV columns of the assignments: each with its devices' counts.
pub const ASSIGNMENT_COLUMNS: &[&str] =
    &["name", "package", "version", "state", "scopes", "policy", "selfService", "installed", "due", "removed"];

impl Columns for AssignmentRow {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "name" => Cell::Text(&self.name),
            "package" => Cell::Text(&self.package),
            "version" => Cell::Text(&self.version),
            "state" => Cell::Text(&self.state),
            "scopes" => Cell::list(&self.scopes),
            "policy" => Cell::Text(&self.policy),
            "selfService" => Cell::Flag(self.self_service),
            "installed" => Cell::count(self.devices.installed),
            "due" => Cell::count(self.devices.due),
            "scheduled" => Cell::count(self.devices.scheduled),
            "blocked" => Cell::count(self.devices.blocked),
            "removed" => Cell::count(self.devices.removed),
            _ => return None,
        })
    }
}
