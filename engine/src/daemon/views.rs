//! The admin's read views, computed from the plan in force: each device's
//! items, and compliance by severity, category and policy. Pure functions
//! of the plan; the API turns their rows into JSON or CSV.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::InForce;
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

pub fn item_rows(in_force: &InForce, plan: &Plan, device: &DevicePlan, now: jiff::Timestamp) -> Vec<ItemRow> {
    device
        .items
        .iter()
        .map(|item| {
            let grant = plan.grant(item);
            let patch = &in_force.catalog.patches[item.patch as usize].view.record;
            let (kind, name) = plan.source_name(grant.source);
            let policy_name = &plan.policy_names[grant.policy as usize];
            let windows = in_force.policy.policy.deployment_policies[policy_name]
                .spec
                .windows
                .iter()
                .map(|w| w.value.clone())
                .collect();
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
                windows,
                not_before: grant.not_before,
                deadline: grant.deadline,
                overdue: !done && grant.deadline.is_some_and(|d| d <= now),
            }
        })
        .collect()
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
    fn add(&mut self, row: &ItemRow) {
        match row.status.as_str() {
            "installed" => self.installed += 1,
            "due" => self.due += 1,
            "scheduled" => self.scheduled += 1,
            "blocked" => self.blocked += 1,
            _ => self.removed += 1,
        }
        self.overdue += usize::from(row.overdue);
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
    /// Compliant devices, in percent of all (100 for an empty fleet).
    pub compliant_percent: f64,
    pub by_severity: BTreeMap<String, Counts>,
    pub by_category: BTreeMap<String, Counts>,
    pub by_policy: BTreeMap<String, Counts>,
}

pub fn compliance(in_force: &InForce, plan: &Plan, devices: &[&DevicePlan], now: jiff::Timestamp) -> ComplianceReport {
    let mut report = ComplianceReport {
        at: now,
        policy_revision: plan.policy_revision.clone(),
        devices: devices.len(),
        compliant: 0,
        pending: 0,
        non_compliant: 0,
        compliant_percent: 100.0,
        by_severity: BTreeMap::new(),
        by_category: BTreeMap::new(),
        by_policy: BTreeMap::new(),
    };
    for device in devices {
        let rows = item_rows(in_force, plan, device, now);
        match compliance_of(&rows) {
            Compliance::Compliant => report.compliant += 1,
            Compliance::Pending => report.pending += 1,
            Compliance::NonCompliant => report.non_compliant += 1,
        }
        for row in &rows {
            report.by_severity.entry(row.severity.clone()).or_default().add(row);
            report.by_category.entry(row.category.clone()).or_default().add(row);
            report.by_policy.entry(row.policy.clone()).or_default().add(row);
        }
    }
    if !devices.is_empty() {
        report.compliant_percent = (report.compliant as f64 * 1000.0 / devices.len() as f64).round() / 10.0;
    }
    report
}

/// Text for one CSV field: quoted when it holds a separator, a quote or a
/// line break; a leading `=`, `+`, `-` or `@` is defused so that a
/// spreadsheet does not run it as a formula.
pub fn csv_field(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if defused.contains([',', '"', '\n', '\r']) { format!("\"{}\"", defused.replace('"', "\"\"")) } else { defused }
}

/// Rows (each serializing to a JSON object) as CSV, with `columns` as the
/// header.
pub fn to_csv<T: Serialize>(columns: &[&str], rows: &[T]) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let row = serde_json::to_value(row).unwrap_or_default();
        let fields: Vec<String> = columns
            .iter()
            .map(|c| match &row[*c] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => csv_field(s),
                serde_json::Value::Array(items) => csv_field(
                    &items
                        .iter()
                        .map(|i| i.as_str().map_or(i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                other => csv_field(&other.to_string()),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        let rows = vec![serde_json::json!({"a": "x", "b": 3, "c": ["p", "q"]})];
        assert_eq!(to_csv(&["a", "b", "c", "d"], &rows), "a,b,c,d\nx,3,p q,\n");
    }
}
