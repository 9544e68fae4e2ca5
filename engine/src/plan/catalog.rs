//! The catalog as the planner reads it: the active patches (in the
//! coverage of the policy's CatalogSources, not obsolete), each converted
//! to a CEL value once per catalog revision.

use crate::catalog::coverage::CoverageSet;
use crate::catalog::view::{self, PatchView};
use crate::expr::eval::{CelValue, FieldValue, JsonRecord, PATCH_TIMESTAMPS, Record};
use crate::store::CatalogPatch;

pub struct PlanPatch {
    pub view: PatchView,
    /// What CEL sees as `patch` (its JSON, for the keys of shared
    /// evaluations and the fast path, is `cel.json()`).
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

/// The list fields of a patch, present (maybe empty) in what CEL sees.
pub const LIST_FIELDS: &[&str] = &["cves", "supersedes", "fixes", "fixedProducts", "packages", "references"];

/// The fast path reads a patch's common fields from its typed record;
/// the rest from its JSON. Both say what `PatchView::to_json` says.
impl Record for PlanPatch {
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        let record = &self.view.record;
        let patch = &record.patch;
        Some(match name {
            "id" => FieldValue::Str(&patch.id),
            "title" => FieldValue::Str(&patch.title),
            "vendor" => FieldValue::Str(&patch.vendor),
            "product" => FieldValue::Str(&patch.product),
            "category" => FieldValue::Str(patch.category.as_str()),
            "severity" => FieldValue::Str(record.severity.as_str()),
            "source" => FieldValue::Str(&record.source),
            "cves" => FieldValue::StrList(&patch.cves),
            "supersedes" => FieldValue::StrList(&patch.supersedes),
            "supersededBy" => FieldValue::StrList(&self.view.superseded_by),
            "released" => FieldValue::Time(patch.released.0),
            "firstSeen" => FieldValue::Time(record.first_seen),
            _ => return JsonRecord { json: self.cel.json(), timestamps: PATCH_TIMESTAMPS }.get(name),
        })
    }

    fn whole(&self) -> Option<&serde_json::Value> {
        Some(self.cel.json())
    }
}

/// Active patches sorted by id.
#[derive(Default)]
pub struct PlanCatalog {
    pub patches: Vec<PlanPatch>,
    index: foldhash::HashMap<String, u32>,
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
                let mut json = view.to_json();
                // Lists are always there for CEL, empty or not, so that
                // `patch.cves.exists(...)` is false for a patch without CVEs
                // rather than an error.
                if let serde_json::Value::Object(map) = &mut json {
                    for list in LIST_FIELDS {
                        map.entry(*list).or_insert_with(|| serde_json::Value::Array(Vec::new()));
                    }
                }
                let cel = CelValue::from_json(&json, PATCH_TIMESTAMPS);
                PlanPatch { view, cel }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed fields the fast path reads say what the JSON says.
    #[test]
    fn typed_fields_agree_with_the_json() {
        let feed = br#"{"revision": 1, "generatedAt": "2026-11-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": [
            {"id": "A", "title": "t", "vendor": "v", "product": "p", "category": "third-party",
             "cvss": {"vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}, "cves": ["CVE-2026-1"],
             "released": "2026-11-01T00:00:00+02:00", "supersedes": ["B"]},
            {"id": "B", "title": "u", "vendor": "v", "product": "q", "category": "security", "severity": "low",
             "released": "2026-10-01T00:00:00Z"}]}"#;
        let now = "2026-11-24T00:00:00Z".parse().unwrap();
        let (records, _) =
            crate::catalog::offline_catalog(crate::policy::model::FeedFormat::Patchward, feed, now).unwrap();
        let coverage = CoverageSet {
            sources: vec![crate::policy::model::Coverage {
                categories: Some(vec![
                    crate::policy::model::Category::Security,
                    crate::policy::model::Category::ThirdParty,
                ]),
                ..Default::default()
            }],
        };
        let catalog = PlanCatalog::new(records, &coverage);
        assert_eq!(catalog.len(), 2);
        for patch in &catalog.patches {
            let json = JsonRecord { json: patch.cel.json(), timestamps: PATCH_TIMESTAMPS };
            for field in [
                "id",
                "title",
                "vendor",
                "product",
                "category",
                "severity",
                "source",
                "cves",
                "supersedes",
                "supersededBy",
                "released",
                "firstSeen",
            ] {
                let typed = patch.field(field).unwrap_or_else(|| panic!("{field}"));
                let plain = json.get(field).unwrap_or_else(|| panic!("{field} in JSON"));
                let same = match (typed, plain) {
                    (FieldValue::Str(a), FieldValue::Json(serde_json::Value::String(b))) => a == b,
                    (FieldValue::StrList(a), FieldValue::Json(b)) => serde_json::json!(a) == *b,
                    (FieldValue::Time(a), FieldValue::Time(b)) => a == b,
                    _ => false,
                };
                assert!(same, "{} {field}", patch.id());
            }
        }
    }
}
