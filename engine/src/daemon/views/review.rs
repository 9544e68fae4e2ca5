//! The review queue and the held list: patches a rule leaves to a person,
//! and the rule that did.

use serde::{Deserialize, Serialize};

use super::cell::{Cell, Columns};
use super::{mentions, passes};
use crate::daemon::InForce;
use crate::plan::Plan;

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

impl Columns for ReviewRow {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "list" => Cell::Text(self.list),
            "patch" => Cell::Text(&self.patch),
            "title" => Cell::Text(&self.title),
            "severity" => Cell::Severity(&self.severity),
            "released" => Cell::Time(self.released),
            "rule" => Cell::Text(&self.rule),
            _ => return None,
        })
    }
}
