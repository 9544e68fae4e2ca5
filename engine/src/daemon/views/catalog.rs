//! The catalog view: every stored patch (active or not), the rules that
//! match it and the one that decides it, and how many devices miss it.

use std::collections::HashMap;

use serde::Serialize;

use super::cell::{Cell, Columns};
use super::{chosen, mentions, passes};
use crate::plan::{DevicePlan, Plan};

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
    let missing = crate::daemon::exposure_view::missing_by_patch(plan, devices);
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

impl Columns for CatalogRow {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "id" => Cell::Text(&self.id),
            "title" => Cell::Text(&self.title),
            "vendor" => Cell::Text(&self.vendor),
            "product" => Cell::Text(&self.product),
            "category" => Cell::Text(&self.category),
            "severity" => Cell::Severity(&self.severity),
            "cvss" => Cell::or_empty(self.cvss, Cell::Decimal),
            "cves" => Cell::list(&self.cves),
            "released" => Cell::Time(self.released),
            "supersedes" => Cell::list(&self.supersedes),
            "supersededBy" => Cell::list(&self.superseded_by),
            "active" => Cell::Flag(self.active),
            "obsoleteSince" => Cell::or_empty(self.obsolete_since, Cell::Time),
            "matchedBy" => Cell::list(&self.matched_by),
            "decidedBy" => Cell::or_empty(self.decided_by.as_deref(), Cell::Text),
            "missing" => Cell::count(self.missing),
            _ => return None,
        })
    }
}

impl Columns for crate::plan::exposure::ExposureRow {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "device" => Cell::Text(&self.device),
            "patch" => Cell::Text(&self.patch),
            "title" => Cell::Text(&self.title),
            "cves" => Cell::list(&self.cves),
            "severity" => Cell::Severity(&self.severity),
            "cvss" => Cell::or_empty(self.cvss, Cell::Decimal),
            "decision" => Cell::Text(self.decision.as_str()),
            "reason" => Cell::Text(&self.reason),
            "since" => Cell::Text(&self.since),
            "target" => Cell::or_empty(self.target.as_deref(), Cell::Text),
            "overdue" => Cell::Flag(self.overdue),
            _ => return None,
        })
    }
}
