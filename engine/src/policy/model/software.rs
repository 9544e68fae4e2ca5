use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Detection, Ref};
use crate::policy::yaml::Spanned;

/// Software the organisation deploys itself, in one or more versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SoftwarePackageSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub versions: Vec<Spanned<PackageVersion>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackageVersion {
    pub version: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: InstallerType,
    pub url: Spanned<String>,
    /// 64 hex digits: the installer's bytes are checked against it before
    /// anything runs.
    pub sha256: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install_args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uninstall_args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
}

impl PackageVersion {
    /// The installer's arguments for installing or removing this version.
    pub fn args(&self, action: super::ItemAction) -> &[String] {
        match action {
            super::ItemAction::Install => &self.install_args,
            super::ItemAction::Uninstall => &self.uninstall_args,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstallerType {
    Msi,
    Exe,
    Deb,
    Rpm,
    Script,
}

impl InstallerType {
    /// The name as written in the YAML and in desired states.
    pub const fn as_str(self) -> &'static str {
        match self {
            InstallerType::Msi => "msi",
            InstallerType::Exe => "exe",
            InstallerType::Deb => "deb",
            InstallerType::Rpm => "rpm",
            InstallerType::Script => "script",
        }
    }
}

/// Puts a package version on (or takes it off) the devices of some scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SoftwareAssignmentSpec {
    pub package: Ref,
    /// One of the package's versions; the last one listed when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Spanned<String>>,
    pub scopes: Spanned<Vec<Ref>>,
    #[serde(default)]
    pub state: AssignmentState,
    pub policy: Ref,
    #[serde(default)]
    pub self_service: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentState {
    #[default]
    Present,
    Absent,
}
