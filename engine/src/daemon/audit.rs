//! How the audit log is read: its entries by kind, and their details as
//! fields a person reads.
//!
//! Admin reads through the API are recorded as `api.read`, apart from
//! changes (`api.call`): a security officer can still see who exported
//! what, but a console that polls the API no longer buries the changes.
//! The log view shows changes unless asked for reads.

use serde::Deserialize;

use super::views::{Cell, Columns};
use crate::store::fleet::AuditEntry;

/// The kinds of entry the log view filters by, each a set of actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// Everything but reads.
    #[default]
    Changes,
    /// Revisions applied or refused, approvals gained and lost, rewrites
    /// acknowledged.
    Policy,
    /// Catalog imports.
    Catalog,
    /// Enrollments and what agents reported.
    Devices,
    /// Sign-ins, users' requests, tokens, syncs and admin API changes.
    People,
    /// Admin reads through the API.
    Reads,
    All,
}

impl AuditKind {
    pub const ALL: [AuditKind; 7] = [
        AuditKind::Changes,
        AuditKind::Policy,
        AuditKind::Catalog,
        AuditKind::Devices,
        AuditKind::People,
        AuditKind::Reads,
        AuditKind::All,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Changes => "changes",
            AuditKind::Policy => "policy",
            AuditKind::Catalog => "catalog",
            AuditKind::Devices => "devices",
            AuditKind::People => "people",
            AuditKind::Reads => "reads",
            AuditKind::All => "all",
        }
    }

    /// Whether an entry with `action` is of this kind.
    pub fn keeps(self, action: &str) -> bool {
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| action.starts_with(p));
        match self {
            AuditKind::Changes => action != READ,
            AuditKind::Policy => starts(&["revision.", "approval.", "rewrite."]),
            AuditKind::Catalog => starts(&["catalog."]),
            AuditKind::Devices => starts(&["agent.", "device."]),
            AuditKind::People => starts(&["console.", "user.", "token.", "sync.", "api.call"]),
            AuditKind::Reads => action == READ,
            AuditKind::All => true,
        }
    }
}

/// The action of an admin's read through the API.
pub const READ: &str = "api.read";
/// The action of an admin's change through the API.
pub const CHANGE: &str = "api.call";

/// An entry's detail as `name: value` fields, in the detail's order: a
/// text as it is, a list joined with commas, anything nested as compact
/// JSON. A detail that is not an object is one field, `detail`.
pub fn detail_fields(detail: &serde_json::Value) -> Vec<(String, String)> {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".to_owned(),
        serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    };
    match detail {
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![("detail".to_owned(), text(other))],
    }
}

/// An entry as a line of the audit log's CSV, its detail as JSON text.
impl Columns for AuditEntry {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "seq" => Cell::Count(self.seq),
            "at" => Cell::Time(self.at),
            "actor" => Cell::Text(&self.actor),
            "action" => Cell::Text(&self.action),
            "detail" => Cell::Json(&self.detail),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_leave_reads_out_and_each_kind_keeps_its_actions() {
        assert!(AuditKind::Changes.keeps("approval.gained") && !AuditKind::Changes.keeps(READ));
        assert!(AuditKind::Reads.keeps(READ) && !AuditKind::Reads.keeps(CHANGE));
        assert!(AuditKind::Devices.keeps("agent.report") && AuditKind::Devices.keeps("device.enrolled"));
        assert!(AuditKind::People.keeps(CHANGE) && AuditKind::People.keeps("console.signin"));
        assert!(AuditKind::Policy.keeps("revision.refused") && !AuditKind::Policy.keeps("catalog.imported"));
        assert!(AuditKind::ALL.iter().all(|k| AuditKind::All.keeps(k.as_str()) || *k != AuditKind::All));
    }

    #[test]
    fn a_detail_reads_as_fields() {
        let detail =
            serde_json::json!({"patch": "KB1", "devices": 3, "first": ["a", "b"], "nested": {"x": 1}, "none": null});
        let fields = detail_fields(&detail);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("patch"), Some("KB1"));
        assert_eq!(get("devices"), Some("3"));
        assert_eq!(get("first"), Some("a, b"));
        assert_eq!(get("nested"), Some("{\"x\":1}"));
        assert_eq!(get("none"), Some("—"));
        assert_eq!(detail_fields(&serde_json::json!("text")), [("detail".to_owned(), "text".to_owned())]);
    }
}
