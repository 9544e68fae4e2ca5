//! The devices list: which enrolled devices a filter keeps, with their
//! items that pass it, in the order asked.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::cell::{Cell, Columns};
use super::items::{Compliance, ItemRow, compliance_of, item_rows};
use super::sort::SortOrder;
use super::{chosen, device_plans, mentions, passes};
use crate::daemon::InForce;
use crate::plan::{DevicePlan, Plan};
use crate::store::fleet::DeviceRecord;

/// Which devices the list keeps, and in which order. Empty fields are
/// unset, as an HTML form sends them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeviceFilter {
    /// Part of the id or the hostname, any case.
    pub q: Option<String>,
    /// An item's id: a patch, or software as `package@version`.
    pub patch: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub policy: Option<String>,
    /// An item's status.
    pub status: Option<String>,
    /// compliant, pending or non-compliant.
    pub compliance: Option<String>,
    /// By id (the default), platform, location, compliance, pending or
    /// lastSeen. (Not a flattened [`SortOrder`]: serde loses the fields of
    /// a flatten within a flatten when the outer query denies unknown
    /// ones.)
    pub sort: Option<String>,
    /// asc (the default) or desc.
    pub order: Option<String>,
}

impl DeviceFilter {
    /// The filter as query pairs, for links that keep it.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("q", text(&self.q)),
            ("patch", text(&self.patch)),
            ("severity", text(&self.severity)),
            ("category", text(&self.category)),
            ("policy", text(&self.policy)),
            ("status", text(&self.status)),
            ("compliance", text(&self.compliance)),
        ]
        .into_iter()
        .chain([("sort", text(&self.sort)), ("order", text(&self.order))])
        .collect()
    }

    /// The list's order: by id unless another column is asked for.
    pub fn order(&self) -> SortOrder {
        let sort = chosen(&self.sort).unwrap_or("id").to_owned();
        SortOrder { sort: Some(sort), order: self.order.clone() }
    }

    pub fn keeps_row(&self, row: &ItemRow) -> bool {
        passes(&self.patch, &row.patch)
            && passes(&self.severity, &row.severity)
            && passes(&self.category, &row.category)
            && passes(&self.policy, &row.policy)
            && passes(&self.status, &row.status)
    }

    /// Whether an item filter is set: then a device is listed only if one
    /// of its items passes it, with those items.
    pub fn filters_items(&self) -> bool {
        [&self.patch, &self.severity, &self.category, &self.policy, &self.status]
            .into_iter()
            .any(|f| chosen(f).is_some())
    }
}

/// A listed device: its record, its items that pass the filter, and where
/// it stands over all its items.
pub struct DeviceLine {
    pub record: DeviceRecord,
    pub rows: Vec<ItemRow>,
    pub compliance: Compliance,
    /// The Location its address falls in, by name.
    pub location: Option<String>,
}

/// The enrolled devices (`records`) that `filter` keeps, in its order.
pub fn device_lines(
    in_force: &InForce,
    plan: &Plan,
    replanned: &HashMap<String, Arc<DevicePlan>>,
    records: Vec<DeviceRecord>,
    filter: &DeviceFilter,
    now: jiff::Timestamp,
) -> Vec<DeviceLine> {
    let plans = device_plans(plan, replanned);
    let by_id: HashMap<&str, &DevicePlan> = plans.iter().map(|p| (p.id.as_str(), *p)).collect();
    let mut lines: Vec<DeviceLine> = records
        .into_iter()
        .filter(|r| mentions(&filter.q, std::iter::once(r.id.as_str()).chain(r.facts.hostname.as_deref())))
        .filter_map(|record| {
            let device = by_id.get(record.id.as_str());
            let all = device.map(|p| item_rows(in_force, plan, p, now)).unwrap_or_default();
            let location = device.and_then(|p| p.location).and_then(|l| plan.location_names.get(l as usize)).cloned();
            let compliance = compliance_of(&all);
            if !passes(&filter.compliance, compliance.as_str()) {
                return None;
            }
            let rows: Vec<ItemRow> = all.into_iter().filter(|r| filter.keeps_row(r)).collect();
            if filter.filters_items() && rows.is_empty() {
                return None;
            }
            Some(DeviceLine { record, rows, compliance, location })
        })
        .collect();
    lines.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    filter.order().apply(lines)
}

impl DeviceLine {
    /// Its items (of those the filter kept) not installed yet.
    pub fn pending(&self) -> usize {
        self.rows.iter().filter(|r| r.pending()).count()
    }
}

impl Columns for DeviceLine {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "id" => Cell::Text(&self.record.id),
            "hostname" => Cell::or_empty(self.record.facts.hostname.as_deref(), Cell::Text),
            "platform" => Cell::or_empty(self.record.facts.platform.as_deref(), Cell::Text),
            "location" => Cell::or_empty(self.location.as_deref(), Cell::Text),
            // By how far from compliant: compliant, pending, non-compliant.
            "compliance" => Cell::Count(self.compliance as u64),
            "pending" => Cell::count(self.pending()),
            "lastSeen" => Cell::Time(self.record.last_seen),
            _ => return None,
        })
    }
}
