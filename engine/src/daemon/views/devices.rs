//! The devices list: which enrolled devices a filter keeps, with their
//! items that pass it, in the order asked.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::cell::{Cell, Columns};
use super::items::{Compliance, ItemKey, ItemRow, ItemSource, compliance_of};
use super::sort::SortOrder;
use super::{chosen, device_plans, mentions, passes};
use crate::plan::DevicePlan;
use crate::store::directory::DeviceEntry;

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

    pub fn keeps_item(&self, item: &ItemKey<'_>) -> bool {
        passes(&self.patch, item.patch)
            && passes(&self.severity, item.severity)
            && passes(&self.category, item.category)
            && passes(&self.policy, item.policy)
            && passes(&self.status, item.status)
    }

    /// Whether an item filter is set: then a device is listed only if one
    /// of its items passes it, with those items.
    pub fn filters_items(&self) -> bool {
        [&self.patch, &self.severity, &self.category, &self.policy, &self.status]
            .into_iter()
            .any(|f| chosen(f).is_some())
    }
}

/// An enrolled device as the lists show it: its directory entry, seen as
/// late as it last checked in.
#[derive(Clone, Debug)]
pub struct EnrolledDevice {
    pub entry: Arc<DeviceEntry>,
    pub last_seen: jiff::Timestamp,
}

/// A listed device: its entry, its plan as served, which of its items pass
/// the filter (by position, see [`ItemSource`]), and where it stands over
/// all its items. Rows are built only for what is shown ([`Self::rows`]).
pub struct DeviceLine<'a> {
    pub device: EnrolledDevice,
    /// None until the device is first planned.
    pub plan: Option<&'a DevicePlan>,
    /// The positions of its items the filter keeps.
    pub kept: Vec<usize>,
    /// How many of those are not installed yet.
    pub pending: usize,
    pub compliance: Compliance,
    /// The Location its address falls in, by name.
    pub location: Option<&'a str>,
}

/// The enrolled `devices` that `filter` keeps, in its order.
pub fn device_lines<'a>(
    items: &'a ItemSource<'a>,
    replanned: &'a HashMap<String, Arc<DevicePlan>>,
    devices: Vec<EnrolledDevice>,
    filter: &DeviceFilter,
) -> Vec<DeviceLine<'a>> {
    let plans = device_plans(items.plan, replanned);
    let by_id: HashMap<&str, &DevicePlan> = plans.iter().map(|p| (p.id.as_str(), *p)).collect();
    let mut lines: Vec<DeviceLine<'a>> = devices
        .into_iter()
        .filter(|d| mentions(&filter.q, std::iter::once(d.entry.id.as_str()).chain(d.entry.facts.hostname.as_deref())))
        .filter_map(|device| {
            let plan = by_id.get(device.entry.id.as_str()).copied();
            line(items, device, plan, filter)
        })
        .collect();
    lines.sort_by(|a, b| a.device.entry.id.cmp(&b.device.entry.id));
    filter.order().apply(lines)
}

/// The device's line, if the filter keeps it.
fn line<'a>(
    items: &ItemSource<'a>,
    device: EnrolledDevice,
    plan: Option<&'a DevicePlan>,
    filter: &DeviceFilter,
) -> Option<DeviceLine<'a>> {
    let keys: Vec<ItemKey<'_>> = plan.map(|p| items.keys(p).collect()).unwrap_or_default();
    let compliance = compliance_of(keys.iter().copied());
    if !passes(&filter.compliance, compliance.as_str()) {
        return None;
    }
    let kept: Vec<usize> = (0..keys.len()).filter(|&i| filter.keeps_item(&keys[i])).collect();
    if filter.filters_items() && kept.is_empty() {
        return None;
    }
    let pending = kept.iter().filter(|&&i| keys[i].pending()).count();
    let location = plan.and_then(|p| p.location).and_then(|l| items.plan.location_names.get(l as usize));
    Some(DeviceLine { device, plan, kept, pending, compliance, location: location.map(String::as_str) })
}

impl DeviceLine<'_> {
    /// Its items the filter kept, as an admin reads them.
    pub fn rows(&self, items: &ItemSource<'_>) -> Vec<ItemRow> {
        let Some(plan) = self.plan else { return Vec::new() };
        self.kept.iter().map(|&position| items.row(plan, position)).collect()
    }
}

impl Columns for DeviceLine<'_> {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        let entry = &self.device.entry;
        Some(match column {
            "id" => Cell::Text(&entry.id),
            "hostname" => Cell::or_empty(entry.facts.hostname.as_deref(), Cell::Text),
            "platform" => Cell::or_empty(entry.facts.platform.as_deref(), Cell::Text),
            "location" => Cell::or_empty(self.location, Cell::Text),
            // By how far from compliant: compliant, pending, non-compliant.
            "compliance" => Cell::Count(self.compliance as u64),
            "pending" => Cell::count(self.pending),
            "lastSeen" => Cell::Time(self.device.last_seen),
            _ => return None,
        })
    }
}
