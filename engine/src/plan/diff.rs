//! What a pull request changes: the plans of its base and head compared
//! item by item, and its documents compared kind by kind. Pure: both plans
//! are computed by the caller with the same catalog, fleet and instant.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::report::{ItemReport, PlanReport};
use crate::policy::Policy;

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanDiff {
    /// Items a device gains (a patch newly approved for it).
    pub gained: Vec<PatchChange>,
    /// Items a device loses (no longer approved, excluded, or out of scope).
    pub lost: Vec<PatchChange>,
    /// Items kept with another status, source, stage, policy, not-before
    /// or deadline.
    pub changed: Vec<PatchChange>,
    /// Devices with any gained, lost or changed item.
    pub devices_affected: Vec<String>,
    pub devices_total: usize,
    pub rules: Vec<RuleChange>,
    pub review_queue: ListChange,
    pub held: ListChange,
    pub documents: Vec<DocumentChange>,
}

/// One patch's change across devices.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchChange {
    pub patch: String,
    pub devices: Vec<String>,
    /// For changed items: what changed, as `field: old → new`, with the
    /// devices each change applies to.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleChange {
    pub name: String,
    /// Patches the rule's match newly selects, or no longer selects.
    pub matches_gained: Vec<String>,
    pub matches_lost: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct ListChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentChange {
    pub kind: String,
    pub name: String,
    /// `added`, `removed` or `modified`.
    pub change: String,
    /// For a modified document, each value of its spec that differs, by
    /// path (`stages[1].after`): `{field, base, head}` (absent as null).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct FieldChange {
    pub field: String,
    pub base: Value,
    pub head: Value,
}

/// The devices whose item for one patch changed, and each change with its devices.
type ChangedItems = (BTreeSet<String>, BTreeMap<String, Vec<String>>);

/// The fields of an item a reviewer cares about when it changes.
fn item_fields(item: &ItemReport) -> [(&'static str, String); 7] {
    [
        ("action", item.action.as_str().to_owned()),
        ("status", item.status.as_str().to_owned()),
        ("source", format!("{} {}", item.source.kind, item.source.name)),
        ("stage", item.stage.map(|s| s.to_string()).unwrap_or_else(|| "-".into())),
        ("policy", item.policy.clone()),
        ("notBefore", item.not_before.clone()),
        ("deadline", item.deadline.clone().unwrap_or_else(|| "-".into())),
    ]
}

/// Compares the plans of base and head. `base` is `None` when the base
/// revision itself is invalid: every item of head is then a gain.
pub fn diff(base: Option<(&PlanReport, &Policy)>, head: (&PlanReport, &Policy)) -> PlanDiff {
    let (head_plan, head_policy) = head;
    let empty = PlanReport { at: head_plan.at.clone(), ..PlanReport::default() };
    let empty_policy = Policy::default();
    let (base_plan, base_policy) = base.unwrap_or((&empty, &empty_policy));

    let items = |plan: &PlanReport| -> BTreeMap<(String, String), ItemReport> {
        plan.devices
            .iter()
            .flat_map(|d| d.items.iter().map(move |i| ((i.patch.clone(), d.id.clone()), i.clone())))
            .collect()
    };
    let before = items(base_plan);
    let after = items(head_plan);
    let mut gained: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lost: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut changed: BTreeMap<String, ChangedItems> = BTreeMap::new();
    let mut affected = BTreeSet::new();
    for ((patch, device), item) in &after {
        match before.get(&(patch.clone(), device.clone())) {
            None => {
                gained.entry(patch.clone()).or_default().push(device.clone());
                affected.insert(device.clone());
            }
            Some(old) => {
                let differences: Vec<String> = item_fields(old)
                    .into_iter()
                    .zip(item_fields(item))
                    .filter(|(a, b)| a.1 != b.1)
                    .map(|((field, a), (_, b))| format!("{field}: {a} → {b}"))
                    .collect();
                if !differences.is_empty() {
                    let entry = changed.entry(patch.clone()).or_default();
                    entry.0.insert(device.clone());
                    for difference in differences {
                        entry.1.entry(difference).or_default().push(device.clone());
                    }
                    affected.insert(device.clone());
                }
            }
        }
    }
    for (patch, device) in before.keys() {
        if !after.contains_key(&(patch.clone(), device.clone())) {
            lost.entry(patch.clone()).or_default().push(device.clone());
            affected.insert(device.clone());
        }
    }
    let to_changes = |map: BTreeMap<String, Vec<String>>| -> Vec<PatchChange> {
        map.into_iter().map(|(patch, devices)| PatchChange { patch, devices, changes: BTreeMap::new() }).collect()
    };

    let matches = |plan: &PlanReport| -> BTreeMap<String, BTreeSet<String>> {
        plan.rules.iter().map(|r| (r.name.clone(), r.matched.iter().cloned().collect())).collect()
    };
    let (rules_before, rules_after) = (matches(base_plan), matches(head_plan));
    let names: BTreeSet<&String> = rules_before.keys().chain(rules_after.keys()).collect();
    let none = BTreeSet::new();
    let rules = names
        .into_iter()
        .filter_map(|name| {
            let old = rules_before.get(name).unwrap_or(&none);
            let new = rules_after.get(name).unwrap_or(&none);
            let change = RuleChange {
                name: name.clone(),
                matches_gained: new.difference(old).cloned().collect(),
                matches_lost: old.difference(new).cloned().collect(),
            };
            (!change.matches_gained.is_empty() || !change.matches_lost.is_empty()).then_some(change)
        })
        .collect();

    let list_change = |old: &[super::report::ListedReport], new: &[super::report::ListedReport]| {
        let old: BTreeSet<&String> = old.iter().map(|l| &l.patch).collect();
        let new: BTreeSet<&String> = new.iter().map(|l| &l.patch).collect();
        ListChange {
            added: new.difference(&old).map(|s| (*s).clone()).collect(),
            removed: old.difference(&new).map(|s| (*s).clone()).collect(),
        }
    };

    PlanDiff {
        gained: to_changes(gained),
        lost: to_changes(lost),
        changed: changed
            .into_iter()
            .map(|(patch, (devices, changes))| PatchChange { patch, devices: devices.into_iter().collect(), changes })
            .collect(),
        devices_affected: affected.into_iter().collect(),
        devices_total: head_plan.devices.len(),
        rules,
        review_queue: list_change(&base_plan.review_queue, &head_plan.review_queue),
        held: list_change(&base_plan.held, &head_plan.held),
        documents: document_changes(base_policy, head_policy),
    }
}

/// Every document of a policy as `(kind, name) → spec` JSON.
fn documents(policy: &Policy) -> BTreeMap<(&'static str, String), Value> {
    fn add<T: Serialize>(
        out: &mut BTreeMap<(&'static str, String), Value>,
        kind: &'static str,
        docs: &BTreeMap<String, super::super::policy::Named<T>>,
    ) {
        for (name, doc) in docs {
            out.insert((kind, name.clone()), serde_json::to_value(&doc.spec).unwrap_or(Value::Null));
        }
    }
    let mut out = BTreeMap::new();
    add(&mut out, "ApprovalRule", &policy.rules);
    add(&mut out, "Approval", &policy.approvals);
    add(&mut out, "Exclusion", &policy.exclusions);
    add(&mut out, "DeploymentPolicy", &policy.deployment_policies);
    add(&mut out, "MaintenanceWindow", &policy.windows);
    add(&mut out, "Scope", &policy.scopes);
    add(&mut out, "CatalogSource", &policy.catalog_sources);
    add(&mut out, "Location", &policy.locations);
    add(&mut out, "SoftwarePackage", &policy.packages);
    add(&mut out, "SoftwareAssignment", &policy.assignments);
    if let Some(settings) = &policy.settings {
        out.insert(("Settings", settings.name.clone()), serde_json::to_value(&settings.spec).unwrap_or(Value::Null));
    }
    out
}

fn document_changes(base: &Policy, head: &Policy) -> Vec<DocumentChange> {
    let (before, after) = (documents(base), documents(head));
    let keys: BTreeSet<&(&'static str, String)> = before.keys().chain(after.keys()).collect();
    let mut changes = Vec::new();
    for key in keys {
        let (kind, name) = (key.0.to_owned(), key.1.clone());
        match (before.get(key), after.get(key)) {
            (None, Some(_)) => changes.push(DocumentChange { kind, name, change: "added".into(), fields: Vec::new() }),
            (Some(_), None) => {
                changes.push(DocumentChange { kind, name, change: "removed".into(), fields: Vec::new() })
            }
            (Some(old), Some(new)) if old != new => {
                let mut fields = Vec::new();
                leaf_changes(String::new(), old, new, &mut fields);
                changes.push(DocumentChange { kind, name, change: "modified".into(), fields });
            }
            _ => {}
        }
    }
    changes
}

/// The paths where two spec values differ: into objects key by key, into
/// lists of equal length item by item; anything else is one change.
fn leaf_changes(path: String, old: &Value, new: &Value, out: &mut Vec<FieldChange>) {
    if old == new {
        return;
    }
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                leaf_changes(join(key), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                leaf_changes(format!("{path}[{index}]"), x, y, out);
            }
        }
        _ => out.push(FieldChange { field: path, base: old.clone(), head: new.clone() }),
    }
}
