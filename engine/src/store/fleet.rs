//! The fleet side of the store: enrollment tokens, devices and their
//! credentials, agent events and the audit log, each operation one
//! transaction, durable before it is acknowledged.
//!
//! In sled they share one tree:
//! Key layout of the `fleet` tree (values are JSON):
//!
//! | key | value |
//! | --- | --- |
//! | `token/{sha256 of the token}` | [`EnrollmentToken`] |
//! | `device/{id}` | [`DeviceRecord`] |
//! | `credential/{sha256 of the credential}` | the device id |
//! | `event/{device}/{seq, 20 digits}` | [`StoredEvent`] |
//! | `audit/{seq, 20 digits}` | [`AuditEntry`] |
//! | `counter/audit` | the last audit sequence number |
//! | `desired/{device}` | [`Generation`]: the generation served and the digest of its content |
//! | `access/{sha256 of the token}` | [`AccessToken`]: an admin or user token |
//! | `state/{name}` | the engine's own durable state (what it follows, what it acknowledged) |
//!
//! Secrets (enrollment tokens, device credentials) are stored only as
//! their sha256: they are long random strings, so the hash cannot be
//! reversed, and a copy of the store does not let anyone in.

use super::StoreError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentToken {
    /// Enrollments left; a single-use token starts at 1.
    pub uses_left: u32,
    pub expires_at: Option<jiff::Timestamp>,
    pub created_at: jiff::Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub id: String,
    pub facts: patchward_api::Facts,
    pub inventory: patchward_api::Inventory,
    pub enrolled_at: jiff::Timestamp,
    pub last_seen: jiff::Timestamp,
    /// The highest event sequence number recorded.
    pub last_event: u64,
    /// The latest outcome the device reported per patch (from its events),
    /// by patch id: what gates count.
    #[serde(default)]
    pub reports: Vec<patchward_api::Report>,
}

impl DeviceRecord {
    /// Folds a newly recorded event into the record: its sequence number,
    /// and the latest outcome per patch it reports. True when it reports
    /// one. Both backends record events through this.
    pub(crate) fn take_event(&mut self, seq: u64, body: &serde_json::Value, received: jiff::Timestamp) -> bool {
        self.last_event = self.last_event.max(seq);
        let Some(report) = report_of(body, received) else { return false };
        match self.reports.iter_mut().find(|r| r.patch == report.patch) {
            Some(existing) if existing.at <= report.at => *existing = report,
            Some(_) => {}
            None => self.reports.push(report),
        }
        true
    }

    /// The device as the planner sees it.
    pub fn to_device(&self) -> patchward_api::Device {
        patchward_api::Device {
            id: self.id.clone(),
            facts: self.facts.clone(),
            inventory: self.inventory.clone(),
            reports: self.reports.clone(),
        }
    }
}

/// Who an access token speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, triggers a sync, acknowledges a rewrite.
    Admin,
    /// Bound to one device: its pending items and history, snoozes and
    /// self-service installs within the policy's limits.
    User,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    pub role: Role,
    /// The device a user token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub expires_at: Option<jiff::Timestamp>,
    pub created_at: jiff::Timestamp,
    #[serde(default)]
    pub revoked: bool,
}

/// An agent event as stored: its sequence number is the device's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub seq: u64,
    pub received_at: jiff::Timestamp,
    /// The event as the agent sent it.
    pub body: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: u64,
    pub at: jiff::Timestamp,
    /// Who: `commit:{author}`, `admin`, `device:{id}`, `user:{device}`.
    pub actor: String,
    /// What, in a word: `revision.applied`, `approval.gained`, `sync`, …
    pub action: String,
    pub detail: serde_json::Value,
}

/// What an audit filter reads of an entry: its actor and action, decoded
/// without the detail, so that a filter walking the whole log does not
/// build every entry's detail to throw most of them away.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuditHead<'a> {
    #[serde(borrow)]
    pub actor: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub action: std::borrow::Cow<'a, str>,
}

impl AuditEntry {
    pub fn head(&self) -> AuditHead<'_> {
        AuditHead { actor: self.actor.as_str().into(), action: self.action.as_str().into() }
    }
}

/// The generation of a device's desired state and what it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    pub generation: u64,
    /// sha256 of the state's content (everything but its generation and
    /// issue and expiry times).
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the enrollment token is unknown")]
    UnknownToken,
    #[error("the enrollment token expired at {0}")]
    Expired(jiff::Timestamp),
    #[error("the enrollment token has no uses left")]
    UsedUp,
    #[error("device id {0} is taken")]
    DeviceExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a batch of events was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordedEvents {
    pub recorded: usize,
    /// Events whose sequence number was recorded before (a retry after a
    /// lost response): acknowledged again, stored once.
    pub duplicates: usize,
    /// Recorded events that report a patch's outcome (what gates count).
    pub reports: usize,
    /// The sequence numbers recorded now (not the duplicates).
    pub new: Vec<u64>,
}

/// The outcome an event reports: `{patch, status: succeeded|failed, at?}`
/// (an event that names no patch or another status reports none).
fn report_of(body: &serde_json::Value, received: jiff::Timestamp) -> Option<patchward_api::Report> {
    let patch = body.get("patch")?.as_str()?.to_owned();
    let status = match body.get("status")?.as_str()? {
        "succeeded" => patchward_api::ReportStatus::Succeeded,
        "failed" => patchward_api::ReportStatus::Failed,
        _ => return None,
    };
    let at = body.get("at").and_then(|a| a.as_str()).and_then(|a| a.parse().ok()).unwrap_or(received);
    let action = body.get("action").and_then(|a| serde_json::from_value(a.clone()).ok());
    let policy = body.get("policy").and_then(|p| p.as_str()).map(str::to_owned);
    Some(patchward_api::Report { patch, status, at, action, policy })
}

/// The audit action of an agent event: `agent.KIND`.
pub(crate) fn event_action(body: &serde_json::Value) -> String {
    format!("agent.{}", body.get("kind").and_then(|k| k.as_str()).unwrap_or("event"))
}

pub fn secret_hash(secret: &str) -> String {
    crate::catalog::sha256_hex(secret.as_bytes())
}
