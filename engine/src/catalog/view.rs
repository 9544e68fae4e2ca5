//! The catalog as admins and the planner read it: stored records plus the
//! facts derived across the whole catalog (`supersededBy`, `active`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::coverage::CoverageSet;
use super::supersedence;
use crate::store::CatalogPatch;

/// One patch as `catalog list` and `catalog show` print it.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchView {
    pub record: CatalogPatch,
    pub superseded_by: Vec<String>,
    pub active: bool,
}

impl PatchView {
    /// The feed's fields with the engine's own merged in, camelCase:
    /// `id`, `severity`, `cvss: {vector, score}` (or null), `active`,
    /// `firstSeen`, `obsoleteSince`, `supersededBy`, `source`.
    pub fn to_json(&self) -> Value {
        let record = &self.record;
        let mut object: Map<String, Value> = match serde_json::to_value(&record.patch) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        object.insert("severity".into(), json!(record.severity.as_str()));
        object.insert(
            "cvss".into(),
            match &record.patch.cvss {
                Some(cvss) => json!({"vector": cvss.vector, "score": record.score}),
                None => Value::Null,
            },
        );
        object.insert("active".into(), json!(self.active));
        object.insert("firstSeen".into(), json!(record.first_seen.to_string()));
        object.insert("obsoleteSince".into(), json!(record.obsolete_since.map(|t| t.to_string())));
        object.insert("supersededBy".into(), json!(self.superseded_by));
        object.insert("source".into(), json!(record.source));
        Value::Object(object)
    }
}

/// Derives the views of every record: supersedence over the whole catalog
/// (obsolete patches excluded: they are no longer published) and coverage.
pub fn views(records: Vec<CatalogPatch>, coverage: &CoverageSet) -> Vec<PatchView> {
    let live: Vec<&CatalogPatch> = records.iter().filter(|r| r.obsolete_since.is_none()).collect();
    let closure = supersedence::compute(live.iter().map(|r| (r.patch.id.as_str(), r.patch.supersedes.as_slice())));
    let mut superseded_by: BTreeMap<String, Vec<String>> = closure.superseded_by;
    records
        .into_iter()
        .map(|record| PatchView {
            superseded_by: superseded_by.remove(&record.patch.id).unwrap_or_default(),
            active: record.obsolete_since.is_none() && coverage.covers(&record.patch),
            record,
        })
        .collect()
}
