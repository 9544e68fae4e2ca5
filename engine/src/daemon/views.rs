//! The admin's read views, computed from the plan in force: each device's
//! items, and compliance by severity, category and policy. Pure functions
//! of the plan; the API turns their rows into JSON or CSV.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::InForce;
use crate::plan::{DevicePlan, ItemStatus, Plan};
use crate::store::fleet::DeviceRecord;

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
    /// id (the default), platform, compliance, pending or lastSeen.
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
            ("sort", text(&self.sort)),
            ("order", text(&self.order)),
        ]
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

    pub fn sort_key(&self) -> String {
        self.sort.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "id".into())
    }

    pub fn descending(&self) -> bool {
        self.order.as_deref() == Some("desc")
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
    let (sort, descending) = (filter.sort_key(), filter.descending());
    lines.sort_by(|a, b| {
        let pending = |l: &DeviceLine| l.rows.iter().filter(|r| r.pending()).count();
        let order = match sort.as_str() {
            "lastSeen" => a.record.last_seen.cmp(&b.record.last_seen),
            "compliance" => a.compliance.cmp(&b.compliance),
            "pending" => pending(a).cmp(&pending(b)),
            "platform" => a.record.facts.platform.cmp(&b.record.facts.platform),
            "location" => a.location.cmp(&b.location),
            _ => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.record.id.cmp(&b.record.id));
        if descending { order.reverse() } else { order }
    });
    lines
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
        self.add_status(&row.status, row.overdue);
    }

    fn add_status(&mut self, status: &str, overdue: bool) {
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
    pub exposure: Option<super::exposure_view::ExposureSummary>,
}

/// The compliance report's counts by group as CSV: one row per severity,
/// category and policy, as the console's tables show them.
pub fn compliance_csv(report: &ComplianceReport) -> String {
    #[derive(Serialize)]
    struct GroupRow<'a> {
        group: &'static str,
        name: &'a str,
        #[serde(flatten)]
        counts: &'a Counts,
    }
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
    for device in devices {
        let rows = item_rows(in_force, plan, device, now);
        if rows.is_empty() {
            report.without_items += 1;
            continue;
        }
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
    let planned = devices.len() - report.without_items;
    if planned > 0 {
        report.compliant_percent = (report.compliant as f64 * 1000.0 / planned as f64).round() / 10.0;
    }
    report
}

/// One stage of a rule's rollout of one patch: where it stands across the
/// devices of its scope, and its gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRollout {
    /// 1-based, as in the plan.
    pub stage: u16,
    pub scope: String,
    pub policy: String,
    pub not_before: jiff::Timestamp,
    pub deadline: Option<jiff::Timestamp>,
    /// Devices whose item comes from this stage, by status.
    pub done: usize,
    pub due: usize,
    pub scheduled: usize,
    pub blocked: usize,
    /// The gate this stage waits on, counted over the stage before.
    pub gate: Option<GateRollout>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRollout {
    pub succeeded: u32,
    pub failed: u32,
    pub min_succeeded: u32,
    pub max_failure_rate: f64,
    pub passed: bool,
}

/// A rule's rollout of one patch, stage by stage (pilot, then production).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub rule: String,
    pub patch: String,
    pub title: String,
    pub severity: String,
    pub stages: Vec<StageRollout>,
}

/// Every approving rule's rollout of every patch it decides.
pub fn rollouts(in_force: &InForce, plan: &Plan, devices: &[&DevicePlan]) -> Vec<Rollout> {
    use crate::plan::Source;
    // (patch, grant index) -> counts by status, over the devices served.
    let mut counts: HashMap<(u32, u32), [usize; 4]> = HashMap::new();
    for device in devices {
        for item in device.items.iter().filter(|i| !i.retracted) {
            let slot = match item.status {
                ItemStatus::Installed | ItemStatus::Removed => 0,
                ItemStatus::Due => 1,
                ItemStatus::Scheduled => 2,
                ItemStatus::Blocked => 3,
            };
            counts.entry((item.patch, item.grant)).or_default()[slot] += 1;
        }
    }
    let mut out = Vec::new();
    for (rule_index, rule) in plan.rules.iter().enumerate() {
        if rule.action != crate::policy::model::RuleAction::Approve {
            continue;
        }
        let compiled = &in_force.policy.rules[rule_index];
        for &patch in &rule.decided {
            let grants = &plan.grants[patch as usize];
            let stages: Vec<StageRollout> = grants
                .iter()
                .enumerate()
                .filter(|(_, g)| g.source == Source::Rule(rule_index as u32))
                .map(|(index, grant)| {
                    let [done, due, scheduled, blocked] =
                        counts.get(&(patch, index as u32)).copied().unwrap_or_default();
                    let stage = grant.stage.unwrap_or(0);
                    let gate = grant.gate.map(|g| {
                        let outcome = &plan.gates[g as usize];
                        let spec = compiled.stages[stage as usize]
                            .gate
                            .unwrap_or(crate::plan::compile::GateSpec { max_failure_rate: 0.0, min_succeeded: 0 });
                        GateRollout {
                            succeeded: outcome.succeeded,
                            failed: outcome.failed,
                            min_succeeded: spec.min_succeeded,
                            max_failure_rate: spec.max_failure_rate,
                            passed: outcome.passed,
                        }
                    });
                    StageRollout {
                        stage: stage + 1,
                        scope: plan.scope_names[grant.scope as usize].clone(),
                        policy: plan.policy_names[grant.policy as usize].clone(),
                        not_before: grant.not_before,
                        deadline: grant.deadline,
                        done,
                        due,
                        scheduled,
                        blocked,
                        gate,
                    }
                })
                .collect();
            let mut stages = stages;
            stages.sort_by_key(|s| s.stage);
            let record = &in_force.catalog.patches[patch as usize].view.record;
            out.push(Rollout {
                rule: rule.name.clone(),
                patch: plan.patches[patch as usize].clone(),
                title: record.patch.title.clone(),
                severity: record.severity.as_str().to_owned(),
                stages,
            });
        }
    }
    out
}

/// A patch of the catalog as the catalog view lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRow {
    pub id: String,
    pub title: String,
    pub vendor: String,
    pub product: String,
    pub category: String,
    pub severity: String,
    pub cvss: Option<f64>,
    pub cves: Vec<String>,
    pub released: jiff::Timestamp,
    pub supersedes: Vec<String>,
    pub superseded_by: Vec<String>,
    /// In coverage and not obsolete: what rules see.
    pub active: bool,
    pub obsolete_since: Option<jiff::Timestamp>,
    /// The rules whose `match` is true for it (whether or not they decide it).
    pub matched_by: Vec<String>,
    /// The rule that decides the patch (approve, review or hold): the
    /// highest-ranked rule that matches it. The others matched and were
    /// outranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// How many devices it applies to and do not have it, whatever the
    /// policy decided (0 for an inactive patch).
    pub missing: usize,
}

/// Every stored patch (active or not), with the rules that match it.
pub fn catalog_rows(
    views: &[crate::catalog::view::PatchView],
    plan: &Plan,
    devices: &[&DevicePlan],
) -> Vec<CatalogRow> {
    let missing = super::exposure_view::missing_by_patch(plan, devices);
    let mut matched: HashMap<&str, Vec<String>> = HashMap::new();
    let mut decided: HashMap<&str, &str> = HashMap::new();
    for rule in &plan.rules {
        for &patch in &rule.matched {
            matched.entry(plan.patches[patch as usize].as_str()).or_default().push(rule.name.clone());
        }
        for &patch in &rule.decided {
            decided.insert(plan.patches[patch as usize].as_str(), rule.name.as_str());
        }
    }
    views
        .iter()
        .map(|view| {
            let record = &view.record;
            CatalogRow {
                id: record.patch.id.clone(),
                title: record.patch.title.clone(),
                vendor: record.patch.vendor.clone(),
                product: record.patch.product.clone(),
                category: record.patch.category.as_str().to_owned(),
                severity: record.severity.as_str().to_owned(),
                cvss: record.score,
                cves: record.patch.cves.clone(),
                released: record.patch.released.0,
                supersedes: record.patch.supersedes.clone(),
                superseded_by: view.superseded_by.clone(),
                active: view.active,
                obsolete_since: record.obsolete_since,
                matched_by: matched.get(record.patch.id.as_str()).cloned().unwrap_or_default(),
                decided_by: decided.get(record.patch.id.as_str()).map(|r| (*r).to_owned()),
                missing: plan.patches.binary_search(&record.patch.id).map_or(0, |p| missing[p]),
            }
        })
        .collect()
}

/// The catalog view's filters, the same for the API and the console.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogFilter {
    /// A substring of the id, title, product or a CVE (any case).
    pub q: Option<String>,
    pub severity: Option<String>,
    /// Only the patches this rule's `match` selects ("show matching patches").
    pub rule: Option<String>,
    /// `active`, `inactive` (out of coverage) or `obsolete`.
    pub state: Option<String>,
}

impl CatalogFilter {
    pub fn keeps(&self, row: &CatalogRow) -> bool {
        let text = [row.id.as_str(), &row.title, &row.product].into_iter().chain(row.cves.iter().map(String::as_str));
        mentions(&self.q, text)
            && passes(&self.severity, &row.severity)
            && chosen(&self.rule).is_none_or(|r| row.matched_by.iter().any(|m| m == r))
            && chosen(&self.state).is_none_or(|state| match state {
                "active" => row.active,
                "obsolete" => row.obsolete_since.is_some(),
                "inactive" => !row.active && row.obsolete_since.is_none(),
                _ => true,
            })
    }
}

/// Which rollouts a view keeps.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RolloutFilter {
    /// Part of the patch's id or title (any case).
    pub q: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<String>,
}

impl RolloutFilter {
    pub fn keeps(&self, rollout: &Rollout) -> bool {
        mentions(&self.q, [rollout.patch.as_str(), &rollout.title])
            && passes(&self.rule, &rollout.rule)
            && passes(&self.severity, &rollout.severity)
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![("q", text(&self.q)), ("rule", text(&self.rule)), ("severity", text(&self.severity))]
    }
}

/// The CSV columns of [`rollout_csv_rows`]: one line per stage.
pub const ROLLOUT_COLUMNS: &[&str] = &[
    "rule",
    "patch",
    "title",
    "severity",
    "stage",
    "scope",
    "policy",
    "notBefore",
    "deadline",
    "done",
    "due",
    "scheduled",
    "blocked",
    "gatePassed",
    "gateSucceeded",
    "gateFailed",
];

pub fn rollout_csv_rows(rollouts: &[Rollout]) -> Vec<serde_json::Value> {
    rollouts
        .iter()
        .flat_map(|r| {
            r.stages.iter().map(move |s| {
                serde_json::json!({"rule": r.rule, "patch": r.patch, "title": r.title, "severity": r.severity,
                    "stage": s.stage, "scope": s.scope, "policy": s.policy, "notBefore": s.not_before.to_string(),
                    "deadline": s.deadline.map(|d| d.to_string()), "done": s.done, "due": s.due,
                    "scheduled": s.scheduled, "blocked": s.blocked, "gatePassed": s.gate.as_ref().map(|g| g.passed),
                    "gateSucceeded": s.gate.as_ref().map(|g| g.succeeded),
                    "gateFailed": s.gate.as_ref().map(|g| g.failed)})
            })
        })
        .collect()
}

/// A patch in the review queue or the held list, and the rule that put it
/// there.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRow {
    /// review or held.
    pub list: &'static str,
    pub patch: String,
    pub title: String,
    pub severity: String,
    pub released: jiff::Timestamp,
    pub rule: String,
}

/// Which review rows a view keeps.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReviewFilter {
    /// Part of the patch's id or title, or the rule's name (any case).
    pub q: Option<String>,
    pub severity: Option<String>,
}

impl ReviewFilter {
    pub fn keeps(&self, row: &ReviewRow) -> bool {
        mentions(&self.q, [row.patch.as_str(), &row.title, &row.rule]) && passes(&self.severity, &row.severity)
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![("q", self.q.clone().unwrap_or_default()), ("severity", self.severity.clone().unwrap_or_default())]
    }
}

/// The review queue, then the held list, as rows.
pub fn review_rows(in_force: &InForce, plan: &Plan) -> Vec<ReviewRow> {
    let rows = |list: &'static str, listed: &[crate::plan::Listed]| -> Vec<ReviewRow> {
        listed
            .iter()
            .map(|entry| {
                let patch = &in_force.catalog.patches[entry.patch as usize];
                ReviewRow {
                    list,
                    patch: plan.patches[entry.patch as usize].clone(),
                    title: patch.view.record.patch.title.clone(),
                    severity: patch.view.record.severity.as_str().to_owned(),
                    released: patch.released(),
                    rule: plan.rules[entry.rule as usize].name.clone(),
                }
            })
            .collect()
    };
    [rows("review", &plan.review_queue), rows("held", &plan.held)].concat()
}

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

/// What devices reported installed or removed in `[from, to)`, newest
/// first: each device's latest successful report per patch.
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

pub fn installed_between(
    records: &[crate::store::fleet::DeviceRecord],
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Vec<InstalledRow> {
    let mut rows: Vec<InstalledRow> = records
        .iter()
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

/// Text for one CSV field: quoted when it holds a separator, a quote or a
/// line break; a leading `=`, `+`, `-` or `@` is defused so that a
/// spreadsheet does not run it as a formula.
/// How a list view is sorted: by one of its rows' fields (as serialized,
/// camelCase), ascending unless `order=desc`. Every list takes it, the
/// API's and the console's alike.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SortOrder {
    pub sort: Option<String>,
    pub order: Option<String>,
}

impl SortOrder {
    pub fn key(&self) -> Option<&str> {
        self.sort.as_deref().filter(|s| !s.is_empty())
    }

    pub fn descending(&self) -> bool {
        self.order.as_deref() == Some("desc")
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![("sort", self.sort.clone().unwrap_or_default()), ("order", self.order.clone().unwrap_or_default())]
    }

    /// `rows` sorted by [`SortOrder::key`] (stable: equal rows keep their
    /// order; no key, or one the rows lack, keeps it all). Severities sort
    /// by rank, critical first; numbers by value; missing values last.
    pub fn apply<T: Serialize>(&self, rows: Vec<T>) -> Vec<T> {
        let Some(key) = self.key() else { return rows };
        let mut keyed: Vec<(serde_json::Value, T)> = rows
            .into_iter()
            .map(|row| {
                let value = serde_json::to_value(&row).ok().and_then(|mut v| v.get_mut(key).map(std::mem::take));
                (value.unwrap_or(serde_json::Value::Null), row)
            })
            .collect();
        let rank = |v: &serde_json::Value| -> Option<usize> {
            let text = v.as_str()?;
            let found = crate::catalog::feed::Severity::ALL.iter().position(|s| s.as_str() == text);
            found.or((text == SOFTWARE_SEVERITY).then_some(crate::catalog::feed::Severity::ALL.len()))
        };
        let by_severity = key == "severity";
        keyed.sort_by(|(a, _), (b, _)| {
            use serde_json::Value;
            let order = match (a, b) {
                (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
                (Value::Null, _) => return std::cmp::Ordering::Greater,
                (_, Value::Null) => return std::cmp::Ordering::Less,
                _ if by_severity => rank(a).cmp(&rank(b)),
                (Value::Number(x), Value::Number(y)) => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
                (Value::String(x), Value::String(y)) => x.cmp(y),
                (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
                (Value::Array(x), Value::Array(y)) => x.len().cmp(&y.len()),
                (x, y) => x.to_string().cmp(&y.to_string()),
            };
            if self.descending() { order.reverse() } else { order }
        });
        keyed.into_iter().map(|(_, row)| row).collect()
    }
}

/// The characters a spreadsheet reads as the start of a formula (OWASP's
/// CSV injection list): a cell starting with one is prefixed with `'`, so
/// it shows as the text it is and never runs.
pub const FORMULA_PREFIXES: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV cell: formulas defused, then quoted when it holds a separator,
/// a quote or a line break.
pub fn csv_field(text: &str) -> String {
    let defused = if text.starts_with(FORMULA_PREFIXES) { format!("'{text}") } else { text.to_owned() };
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
    fn lists_sort_by_a_field_with_severities_by_rank_and_missing_values_last() {
        #[derive(Serialize)]
        struct Row {
            id: &'static str,
            severity: &'static str,
            cvss: Option<f64>,
        }
        let rows = || {
            vec![
                Row { id: "b", severity: "low", cvss: Some(3.1) },
                Row { id: "a", severity: "critical", cvss: None },
                Row { id: "c", severity: "unrated", cvss: Some(9.8) },
                Row { id: "d", severity: "high", cvss: Some(10.0) },
            ]
        };
        let ids = |sort: &str, order: &str| -> Vec<&str> {
            let by = SortOrder { sort: Some(sort.into()), order: Some(order.into()) };
            by.apply(rows()).iter().map(|r| r.id).collect()
        };
        assert_eq!(ids("severity", ""), ["a", "d", "b", "c"]);
        assert_eq!(ids("severity", "desc"), ["c", "b", "d", "a"]);
        assert_eq!(ids("cvss", ""), ["b", "c", "d", "a"], "numbers by value, none last");
        assert_eq!(ids("cvss", "desc"), ["d", "c", "b", "a"], "none last either way");
        assert_eq!(ids("id", "desc"), ["d", "c", "b", "a"]);
        assert_eq!(ids("nonesuch", ""), ["b", "a", "c", "d"], "an unknown key keeps the order");
        assert_eq!(SortOrder::default().apply(rows()).iter().map(|r| r.id).collect::<Vec<_>>(), ["b", "a", "c", "d"]);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        for formula in ["=cmd()", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            let cell = csv_field(formula);
            let unquoted = cell.trim_matches('"');
            assert!(unquoted.starts_with('\''), "{formula:?} is defused: {cell:?}");
        }
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\"'\r=cmd()\"", "defused, then quoted for its line break");
        assert_eq!(csv_field("a=b"), "a=b", "only a leading character starts a formula");
        let rows = vec![serde_json::json!({"a": "x", "b": 3, "c": ["p", "q"]})];
        assert_eq!(to_csv(&["a", "b", "c", "d"], &rows), "a,b,c,d\nx,3,p q,\n");
    }
}
