use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::yaml::Spanned;

/// A reference to another document by its `metadata.name`.
pub type Ref = Spanned<String>;

/// A CEL expression as written in the YAML, with the position of its scalar.
pub type CelExpr = Spanned<String>;

/// `metadata` of every document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Unique within its kind: lowercase letters, digits, `-` and `.`.
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An instant written in RFC 3339 with an offset, e.g.
/// `2026-12-20T00:00:00+02:00` or `2026-11-23T06:00:00Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub jiff::Timestamp);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse::<jiff::Timestamp>().map(Timestamp).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not an RFC 3339 instant with an offset (like 2026-12-20T00:00:00+02:00): {e}"
            ))
        })
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "An RFC 3339 instant with an offset, e.g. 2026-12-20T00:00:00+02:00."
        })
    }
}

/// Patch categories DESIGN.md names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Security,
    Bugfix,
    Feature,
    ServicePack,
    Driver,
    Firmware,
    ThirdParty,
    Os,
}

impl Category {
    /// The name as written in feeds and seen by CEL.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Security => "security",
            Category::Bugfix => "bugfix",
            Category::Feature => "feature",
            Category::ServicePack => "service-pack",
            Category::Driver => "driver",
            Category::Firmware => "firmware",
            Category::ThirdParty => "third-party",
            Category::Os => "os",
        }
    }
}

pub use patchward_api::PackageManager;

/// How a device proves an item is installed, as the catalog's `detect`
/// writes it; any one rule that holds is enough.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Detection {
    pub any_of: Vec<DetectionRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DetectionRule {
    /// A package at or above a version, by the manager's own ordering.
    Package(PackageDetection),
    /// A file whose version resource is at least this (Windows).
    FileVersion(FileVersionDetection),
    /// A registry value at least this (Windows).
    Registry(RegistryDetection),
    /// A file whose content has this sha256.
    File(FileHashDetection),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackageDetection {
    pub manager: PackageManager,
    pub name: String,
    pub at_least: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileVersionDetection {
    pub path: String,
    pub at_least: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryDetection {
    pub key: String,
    pub value: String,
    pub at_least: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileHashDetection {
    pub path: String,
    pub sha256: Spanned<String>,
}
