//! The desired state of one device: what the engine serves (signed, in a
//! DSSE envelope of type [`crate::dsse::DESIRED_STATE_TYPE`]) and what the
//! agent converges to. DESIGN fixes its fields.
//!
//! Within v1 fields are only added, and optional, so these types accept
//! fields they do not know (DESIGN, "Compatibility between releases").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredState {
    pub device: String,
    /// Increases with every change to this device's state; an agent refuses
    /// a lower one than it has seen.
    pub generation: u64,
    /// The policy commit planned.
    pub policy_revision: String,
    pub catalog_revision: u64,
    #[schemars(with = "String")]
    pub issued_at: jiff::Timestamp,
    /// After this the agent stops trusting the state (freeze).
    #[schemars(with = "String")]
    pub expires_at: jiff::Timestamp,
    /// Base URLs holding each blob at `MIRROR/{sha256}`, nearest first; the
    /// engine's `/api/v1/blobs/{sha256}` comes after them.
    pub mirrors: Vec<String>,
    pub max_bandwidth_kbps: Option<u64>,
    pub items: Vec<DesiredItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredItem {
    /// A catalog patch id, or `package@version` for software.
    pub patch: String,
    pub action: Action,
    pub status: Status,
    pub source: ItemSource,
    /// 1-based stage of a rule; null otherwise.
    pub stage: Option<u16>,
    /// The resolved DeploymentPolicy: its spec, with its `name`.
    pub policy: crate::deployment::DeploymentPolicy,
    /// The resolved MaintenanceWindows: each spec, with its `name`. A zone
    /// `device` means the device's own.
    pub windows: Vec<crate::deployment::MaintenanceWindow>,
    #[schemars(with = "String")]
    pub not_before: jiff::Timestamp,
    #[schemars(with = "Option<String>")]
    pub deadline: Option<jiff::Timestamp>,
    pub packages: Vec<DesiredPackage>,
    /// How the agent proves the item is installed (the catalog's `detect`,
    /// or the software version's `detection`); it verifies every install
    /// with it, and an uninstall learns from it what to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<crate::detection::Detection>,
    /// The patch's package fixes, when it has no packages to download: the
    /// agent detects the item by them where `detect` is absent, and
    /// installs them from the device's own repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<crate::fixes::PackageFix>,
    /// For a `scheduled-prompt` policy, the policy that applies outside its
    /// prompting hours: `{policy, windows, fallback}`, resolved like the
    /// item's own (and its own fallback in turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<crate::deployment::ResolvedDeployment>>,
    /// What the device's user asked for through the engine (the portal, or
    /// the agent's own reports): the agent combines it with its own record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_request: Option<crate::deployment::UserRequest>,
}

impl DesiredItem {
    /// The item's deployment, typed and checked: its policy, windows and
    /// fallback chain as [`crate::deployment::ResolvedDeployment::validate`]
    /// accepts them.
    pub fn deployment(&self) -> Result<crate::deployment::ResolvedDeployment, crate::deployment::DeploymentError> {
        let deployment = crate::deployment::ResolvedDeployment {
            policy: self.policy.clone(),
            windows: self.windows.clone(),
            fallback: self.fallback.clone(),
        };
        deployment.validate()?;
        Ok(deployment)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Install,
    Uninstall,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Installed,
    Due,
    Scheduled,
    Blocked,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemSource {
    pub kind: SourceKind,
    pub name: String,
    pub commit: String,
}

/// What brought an item to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An ApprovalRule's stage.
    Rule,
    /// An Approval.
    Approval,
    /// A SoftwareAssignment.
    Assignment,
    /// An approval withdrawn: undo what it installed.
    Retraction,
    /// A kind a later engine added (DESIGN's compatibility rule).
    #[serde(other)]
    Other,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Rule => "rule",
            SourceKind::Approval => "approval",
            SourceKind::Assignment => "assignment",
            SourceKind::Retraction => "retraction",
            SourceKind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredPackage {
    #[serde(rename = "type")]
    pub kind: String,
    /// 64 hex digits: the agent checks every byte against it before running it.
    pub sha256: String,
    pub size: u64,
    pub args: Vec<String>,
}
