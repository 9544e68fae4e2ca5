//! Software assignments on a device: which reach it through its scopes, and
//! whether the version they ask for is there.

use std::collections::HashSet;

use patchward_api::Device;
use patchward_api::fixes::PackageIndex;

use super::{CompiledPolicy, ItemStatus, SoftwareItem};
use crate::policy::model::ItemAction;

/// The id a device's inventory lists for an installed software version.
pub fn software_id(package: &str, version: &str) -> String {
    format!("{package}@{version}")
}

/// The software assignments whose scopes hold the device. A version is
/// present when the inventory lists `package@version`, or one of its
/// `package` detection rules holds against the inventory's packages (the
/// other detection rules need the device itself: the agent checks them).
pub(super) fn software_items(
    policy: &CompiledPolicy,
    device: &Device,
    in_scope: &dyn Fn(u32) -> bool,
) -> Vec<SoftwareItem> {
    if policy.assignments.is_empty() {
        return Vec::new();
    }
    let inventory: HashSet<&str> = device.inventory.patches.iter().map(String::as_str).collect();
    let packages = PackageIndex::new(&device.inventory.packages);
    let present = |package: &str, version: &crate::policy::model::PackageVersion| {
        inventory.contains(software_id(package, &version.version.value).as_str())
            || version.detection.iter().flat_map(|d| &d.any_of).any(|rule| match rule {
                crate::policy::model::DetectionRule::Package(p) => packages.at_least(p.manager, &p.name, &p.at_least),
                _ => false,
            })
    };
    let mut items = Vec::new();
    for (index, assignment) in policy.assignments.iter().enumerate() {
        if !assignment.scopes.iter().any(|s| in_scope(*s as u32)) {
            continue;
        }
        let Some(package) = policy.policy.packages.get(&assignment.package) else { continue };
        let versions = &package.spec.versions;
        let (action, status) = match assignment.state {
            crate::policy::model::AssignmentState::Present => {
                let wanted = versions.iter().find(|v| v.value.version.value == assignment.version);
                let installed = wanted.is_some_and(|v| present(&assignment.package, &v.value));
                (ItemAction::Install, if installed { ItemStatus::Installed } else { ItemStatus::Due })
            }
            // Absent: no version of the package may stay.
            crate::policy::model::AssignmentState::Absent => {
                let installed = versions.iter().any(|v| present(&assignment.package, &v.value));
                (ItemAction::Uninstall, if installed { ItemStatus::Due } else { ItemStatus::Removed })
            }
        };
        items.push(SoftwareItem { assignment: index as u32, action, status });
    }
    items
}
