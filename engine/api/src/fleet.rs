//! What the engine knows of a device: its facts, its inventory and what it
//! reported. The agent uploads these; `patchward plan --fleet` reads a file
//! of them.
//!
//! What an agent uploads accepts fields it does not know: an older engine
//! ignores what a newer agent adds within v1. The fleet file itself (its
//! `devices` and each device's keys) stays strict, to catch typos.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The package managers whose version rules the engine and agent share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Dpkg,
    Rpm,
}

impl PackageManager {
    pub const fn scheme(self) -> crate::VersionScheme {
        match self {
            PackageManager::Dpkg => crate::VersionScheme::Dpkg,
            PackageManager::Rpm => crate::VersionScheme::Rpm,
        }
    }
}

/// A fleet file: `{devices: [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fleet {
    pub devices: Vec<Device>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub facts: Facts,
    #[serde(default)]
    pub inventory: Inventory,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<Report>,
}

/// Every fact is optional. `labels` and `groups` default to empty, so a
/// selector may ask `"ring" in device.labels` of any device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// `debian-12`, `windows-11-23h2`: what catalog applicability names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// A BCP 47 tag, `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: crate::Labels,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The device's IANA zone, for windows whose timezone is `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The primary address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// Ids of the catalog patches installed (KBs, advisories).
    #[serde(default)]
    pub patches: Vec<String>,
    #[serde(default)]
    pub packages: Vec<InstalledPackage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledPackage {
    pub manager: PackageManager,
    pub name: Box<str>,
    pub version: Box<str>,
    /// In the manager's own words: `amd64` for dpkg, `x86_64` for rpm.
    /// Architecture copies of one package are separate entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Box<str>>,
    /// The source package it was built from (dpkg's `Source:`, rpm's
    /// SOURCERPM); absent: the package is its own source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<str>>,
    /// The source's version, where it differs from the binary's (dpkg's
    /// `Source: x (1.2-3)`); absent: the binary's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<Box<str>>,
}

/// What the device said about one patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub patch: String,
    pub status: ReportStatus,
    #[schemars(with = "String")]
    pub at: jiff::Timestamp,
    /// Whether the device installed or removed the patch. Only a patch the
    /// device reports it installed can be withdrawn from it (a report
    /// without an action is never taken for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::desired::Action>,
    /// The deployment policy it was installed under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Succeeded,
    Failed,
}
