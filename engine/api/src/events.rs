//! What an agent reports: a batch of events for `POST /api/v1/device/events`,
//! each with the device's own sequence number. The agent keeps each in its
//! durable outbox until the engine has acknowledged it; the engine records
//! each `seq` once (a batch sent again after a lost answer changes nothing).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body of `POST /api/v1/device/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventBatch {
    pub events: Vec<AgentEvent>,
}

/// The engine's answer: how many were new, how many it had already.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsRecorded {
    pub recorded: usize,
    pub duplicates: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEvent {
    /// Per device, from 1, never reused.
    pub seq: u64,
    #[schemars(with = "String")]
    pub at: jiff::Timestamp,
    pub kind: EventKind,
    /// The item (a patch id, or `package@version`) the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// For a `report`: the outcome the engine's gates count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::ReportStatus>,
    /// The desired-state generation the agent acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// For a `report`: whether the item was installed or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::desired::Action>,
    /// For a `report`: the deployment policy the item came under, which a
    /// withdrawn approval's removal goes under too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A human-readable account (the reason of a failure or refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Structured detail: an exit code, the expected and actual digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An install or uninstall finished: `status` says how.
    Report,
    /// A step of the convergence (downloaded, verified, installing, ...).
    Step,
    /// The user (or an unanswered prompt) put an item off.
    Snooze,
    /// The user asked for a self-service install.
    InstallRequest,
    /// A desired state the agent refused (bad signature, older, expired).
    RefusedState,
    /// Something went wrong that is no install outcome (a download, a disk).
    Error,
}
