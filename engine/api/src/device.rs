//! The bodies of the agent's own routes besides the desired state and its
//! events: enrollment and the inventory upload.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/enroll`, with the enrollment token as the bearer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollRequest {
    #[serde(default)]
    pub facts: crate::Facts,
}

/// The device's identity: its id, its credential (shown once; the engine
/// keeps only a hash), and the key its desired states are signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    pub device_id: String,
    pub credential: String,
    /// `ed25519:BASE64`.
    pub engine_key: String,
}

/// `PUT /api/v1/device/inventory`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryUpload {
    #[serde(default)]
    pub facts: crate::Facts,
    #[serde(default)]
    pub inventory: crate::Inventory,
}

/// The generation of the desired state planned from the upload (none while
/// no policy is in force).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryAccepted {
    pub generation: Option<u64>,
}
