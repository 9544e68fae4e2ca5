//! patchward's own feed format (schemas/feed.json) and the catalog's patch.
//!
//! Every importer (patchward, CSAF, OSV) produces an [`ImportedFeed`]; the
//! catalog never sees the source formats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::model::{Category, Detection, Timestamp};

/// The feed document a vendor publishes in patchward's format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Feed {
    /// The schema, for editors (`schemas/feed.json`); ignored.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Increases with every publication; a lower one than the engine holds
    /// is refused (rollback).
    pub revision: u64,
    pub generated_at: Timestamp,
    /// After this instant the feed is refused (freeze).
    pub expires_at: Timestamp,
    pub patches: Vec<Patch>,
}

/// One patch as a feed describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Patch {
    /// Unique within the catalog: a KB number, an advisory id.
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub vendor: String,
    pub product: String,
    pub category: Category,
    /// Omitted when `cvss.vector` is given: the engine derives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<Cvss>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    pub released: Timestamp,
    /// Ids of the patches this one replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    #[serde(default)]
    pub applicability: Applicability,
    /// Package-manager fixes: the device needs the patch while its package
    /// is below `fixedVersion`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<Fix>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_products: Vec<FixedProduct>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<Detection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PatchPackage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootRequirement>,
    /// Advisory pages, vendor fix pages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    /// A security advisory that carries neither a score nor a vendor
    /// severity (Debian's DSA records): never silently "informational",
    /// which means "not a security fix".
    Unrated,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Unrated,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Informational => "informational",
            Severity::Unrated => "unrated",
        }
    }

    /// DESIGN.md's ranges: 9.0–10 critical, 7.0–8.9 high, 4.0–6.9 medium,
    /// 0.1–3.9 low, none (0.0) informational.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score >= 0.1 {
            Severity::Low
        } else {
            Severity::Informational
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cvss {
    /// `CVSS:3.0/…`, `CVSS:3.1/…` or `CVSS:4.0/…`.
    pub vector: String,
    /// The base score; computed from the vector when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// Where a patch applies; an absent list means any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Applicability {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
}

/// A package fix: the wire type the agent shares, so engine and agent judge
/// it by one rule (`patchward_api::fixes`).
pub use patchward_api::fixes::{FixKind, PackageFix as Fix};

/// A product version an advisory names as fixed, when it is not a package
/// a package manager installs (CSAF `fixed` product versions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FixedProduct {
    pub product: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchPackage {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    /// 64 hex digits: checked before any byte runs.
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RebootRequirement {
    Never,
    May,
    Always,
}

/// What an importer hands the catalog, whatever the source format.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedFeed {
    /// Monotonic per source: the feed's revision, or for CSAF/OSV the newest
    /// modification time in seconds since the epoch.
    pub revision: u64,
    pub generated_at: Option<jiff::Timestamp>,
    /// None: the format carries no expiry (CSAF, OSV).
    pub expires_at: Option<jiff::Timestamp>,
    pub patches: Vec<Patch>,
    /// What the importer skipped and why (an OSV record that does not
    /// parse): reported with the import, which goes ahead without it.
    pub warnings: Vec<String>,
}
