//! The engine's status conditions, in the manner of Kubernetes and Flux:
//! each says whether something holds, why (a stable word) and what
//! happened (a sentence), and since when. `GET /api/v1/status` serves them.

use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// The conditions the engine reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConditionType {
    /// The last attempted revision is the applied one.
    Reconciled,
    /// The policy at the last attempted revision validates.
    PolicyValid,
    /// The repository (or folder) could be read.
    SourceReachable,
    /// The attempted revision descends from the applied one and its
    /// signatures verify where that is required.
    SourceVerified,
    /// Every catalog source is within its expiry and its last sync worked.
    CatalogFresh,
    /// Withdrawn approvals are retracted; false while the policy grants
    /// nothing at all and the G3 guard withholds them.
    RetractionsAllowed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub since: jiff::Timestamp,
}

/// One catalog source as the engine last saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub name: String,
    pub url: String,
    pub revision: Option<u64>,
    pub last_checked: Option<jiff::Timestamp>,
    pub fresh: bool,
    /// Why the last sync refused the feed or failed.
    pub refused: Option<String>,
}

/// A revision with who made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    pub revision: String,
    pub author: Option<String>,
    pub committer: Option<String>,
    pub message: Option<String>,
    pub signature: Option<String>,
    pub at: jiff::Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Where the policy comes from (URL or folder) and the branch followed.
    pub source: String,
    pub branch: Option<String>,
    pub applied: Option<RevisionStatus>,
    pub attempted: Option<RevisionStatus>,
    /// The errors of the attempted revision, `path:line:col: message`.
    pub errors: Vec<String>,
    pub conditions: Vec<Condition>,
    pub catalog: Vec<SourceStatus>,
    pub catalog_revision: u64,
    /// The catalog is the bundled example feed: no source was synced yet.
    pub bundled_feed: bool,
    /// Devices enrolled: filled in as the status is read (`Engine::status`).
    pub devices: usize,
    pub replica: Replica,
}

/// Which replica answers, and which one leads (DESIGN: "Growing past one
/// machine"). With the embedded store the one replica is the leader.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    pub id: String,
    pub leader: bool,
    pub leader_id: Option<String>,
}

#[derive(Default)]
pub struct StatusBoard(RwLock<Status>);

impl StatusBoard {
    pub fn snapshot(&self) -> Status {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.0.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// Sets a condition; `since` moves only when its status flips.
    pub fn set(&self, kind: ConditionType, status: bool, reason: &str, message: String, now: jiff::Timestamp) {
        self.update(|s| {
            let condition = Condition { kind, status, reason: reason.to_owned(), message, since: now };
            match s.conditions.iter_mut().find(|c| c.kind == kind) {
                Some(existing) => {
                    let since = if existing.status == status { existing.since } else { now };
                    *existing = Condition { since, ..condition };
                }
                None => {
                    s.conditions.push(condition);
                    s.conditions.sort_by_key(|c| c.kind);
                }
            }
        });
    }

    pub fn condition(&self, kind: ConditionType) -> Option<Condition> {
        self.snapshot().conditions.into_iter().find(|c| c.kind == kind)
    }
}
