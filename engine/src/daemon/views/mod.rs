//! The admin's read views, computed from the plan in force: each device's
//! items, compliance by severity, category and policy, rollouts, the
//! catalog, the review queue, the software library and the installs over
//! time. Pure functions of the plan; the API turns their rows into JSON or
//! CSV and the console into pages.
//!
//! Every view has its own file. What they share: the filters' rules (an
//! empty field is unset, as an HTML form sends "any"), and the [`Columns`]
//! of a row, which sorting ([`SortOrder`]) and CSV ([`to_csv`]) read typed,
//! by the same camelCase names the JSON uses.

mod catalog;
mod cell;
mod compliance;
mod csv;
mod devices;
mod installed;
mod items;
mod review;
mod rollouts;
mod software;
mod sort;

use std::collections::HashMap;
use std::sync::Arc;

pub use catalog::{CatalogFilter, CatalogRow, catalog_rows};
pub use cell::{Cell, Columns};
pub use compliance::{ComplianceReport, Counts, compliance, compliance_csv};
pub use csv::{FORMULA_PREFIXES, csv_field, to_csv};
pub use devices::{DeviceFilter, DeviceLine, EnrolledDevice, device_lines};
pub use installed::{InstalledFilter, InstalledRow, installed_between};
pub use items::{
    Compliance, ItemKey, ItemRow, ItemSource, SOFTWARE_CATEGORY, SOFTWARE_SEVERITY, compliance_of, item_rows,
};
pub use review::{ReviewFilter, ReviewRow, review_rows};
pub use rollouts::{
    GateRollout, ROLLOUT_COLUMNS, Rollout, RolloutFilter, StageLine, StageRollout, rollout_lines, rollouts,
};
pub use software::{ASSIGNMENT_COLUMNS, AssignmentRow, PackageRow, PackageVersionRow, SoftwareLibrary, software};
pub use sort::SortOrder;

use crate::plan::{DevicePlan, Plan};

/// A list filter's choice: `None` when unset or empty (as an HTML form
/// sends "any").
fn chosen(filter: &Option<String>) -> Option<&str> {
    filter.as_deref().filter(|f| !f.is_empty())
}

/// Whether `value` passes an equality filter: unset, or equal.
fn passes(filter: &Option<String>, value: &str) -> bool {
    chosen(filter).is_none_or(|f| f == value)
}

/// Whether a search passes: unset, or a part of one of `fields`, any case.
fn mentions<'a>(query: &Option<String>, fields: impl IntoIterator<Item = &'a str>) -> bool {
    let Some(query) = chosen(query).map(str::to_lowercase) else { return true };
    fields.into_iter().any(|field| field.to_lowercase().contains(&query))
}

/// The devices' plans as served: the full plan's, with those planned since
/// in their place, then those enrolled since (by id).
pub fn device_plans<'a>(plan: &'a Plan, replanned: &'a HashMap<String, Arc<DevicePlan>>) -> Vec<&'a DevicePlan> {
    let mut devices: Vec<&DevicePlan> =
        plan.devices.iter().map(|d| replanned.get(&d.id).map_or(d, |r| r.as_ref())).collect();
    let mut enrolled_since: Vec<&DevicePlan> = replanned
        .values()
        .map(|d| d.as_ref())
        .filter(|d| plan.devices.binary_search_by(|p| p.id.as_str().cmp(&d.id)).is_err())
        .collect();
    enrolled_since.sort_by(|a, b| a.id.cmp(&b.id));
    devices.extend(enrolled_since);
    devices
}

/// One device's plan as served (see [`device_plans`]).
pub fn device_plan<'a>(
    plan: &'a Plan,
    replanned: &'a HashMap<String, Arc<DevicePlan>>,
    id: &str,
) -> Option<&'a DevicePlan> {
    match replanned.get(id) {
        Some(planned) => Some(planned.as_ref()),
        None => plan.devices.binary_search_by(|d| d.id.as_str().cmp(id)).ok().map(|i| &plan.devices[i]),
    }
}
