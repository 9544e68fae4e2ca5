//! The catalog as the planner reads it: the active patches (in the
//! coverage of the policy's CatalogSources, not obsolete), each converted
//! to a CEL value once per catalog revision.

use std::collections::HashMap;

use crate::catalog::coverage::CoverageSet;
use crate::catalog::view::{self, PatchView};
use crate::expr::eval::{CelValue, PATCH_TIMESTAMPS};
use crate::store::CatalogPatch;

pub struct PlanPatch {
    pub view: PatchView,
    /// What CEL sees as `patch`, as JSON (for the field keys of shared
    /// evaluations) and as a CEL value.
    pub json: serde_json::Value,
    pub cel: CelValue,
}

impl PlanPatch {
    pub fn id(&self) -> &str {
        &self.view.record.patch.id
    }

    pub fn released(&self) -> jiff::Timestamp {
        self.view.record.patch.released.0
    }
}

/// Active patches sorted by id.
#[derive(Default)]
pub struct PlanCatalog {
    pub patches: Vec<PlanPatch>,
    index: HashMap<String, u32>,
    /// Ids of every stored patch, active or not (manual approvals of an
    /// inactive patch are reported as such, not as unknown).
    inactive: std::collections::BTreeSet<String>,
}

impl PlanCatalog {
    /// From the stored records: supersedence over the whole catalog, then
    /// only what `coverage` makes active.
    pub fn new(records: Vec<CatalogPatch>, coverage: &CoverageSet) -> PlanCatalog {
        PlanCatalog::from_views(view::views(records, coverage))
    }

    pub fn from_views(views: Vec<PatchView>) -> PlanCatalog {
        let (active, inactive): (Vec<PatchView>, Vec<PatchView>) = views.into_iter().partition(|v| v.active);
        let mut patches: Vec<PlanPatch> = active
            .into_iter()
            .map(|view| {
                let json = view.to_json();
                let cel = CelValue::from_json(&json, PATCH_TIMESTAMPS);
                PlanPatch { view, json, cel }
            })
            .collect();
        patches.sort_by(|a, b| a.id().cmp(b.id()));
        let index = patches.iter().enumerate().map(|(i, p)| (p.id().to_owned(), i as u32)).collect();
        let inactive = inactive.into_iter().map(|v| v.record.patch.id).collect();
        PlanCatalog { patches, index, inactive }
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn is_inactive(&self, id: &str) -> bool {
        self.inactive.contains(id)
    }

    pub fn len(&self) -> usize {
        self.patches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }
}
