//! What replicas on one shared store tell each other: the leader's lease
//! (its epoch is the fencing token), the signed desired states every
//! replica serves, and the signals that wake the others.
//!
//! The embedded store has one replica, which always leads: it has no lease
//! to take, publishes nothing and hears nothing.

use serde::{Deserialize, Serialize};

/// The leader's lease as one replica holds it. The epoch goes up at every
/// change of holder, so a write made under an older epoch is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: u64,
}

/// What a claim found: the lease, when the claimer holds it now, and who
/// leads (by the database's clock) and where its API answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    pub lease: Option<Lease>,
    pub leader: Option<String>,
    pub leader_address: Option<String>,
}

/// Which writes a replica may make. Leader writes (catalog, ledger,
/// generations, signed states, exposure, the compliance trend, the audit
/// entries of the leader's own work) check the lease in their own
/// transaction, so a leader paused past its lease cannot make one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fencing {
    /// No lease is involved: one process on the store (a command, a test,
    /// the embedded store).
    #[default]
    Off,
    /// A replica that does not lead: leader writes are refused.
    Follower,
    /// The replica leads under this lease.
    Leader(Lease),
}

/// A device's desired state as served: signed, encoded, with its ETag.
/// Every replica answers these bytes, the leader's, unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedDesired {
    pub generation: u64,
    pub etag: String,
    /// The DSSE envelope, as JSON, held gzipped (an answer to an agent
    /// sends these bytes as they are, shared).
    pub body: super::signed_body::SignedBody,
    pub issued_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
    /// sha256 of the content (without generation and times).
    pub digest: String,
}

/// A device's served state, as published for the other replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDesired {
    pub device: String,
    pub state: ServedDesired,
}

/// What one replica tells the others, by NOTIFY on [`CHANNEL`]. A signal
/// can be lost (a replica reconnecting hears nothing meanwhile): each is a
/// hint that something in the store moved, never the thing itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Signal {
    /// Signed states were published, up to this sequence number.
    Desired { seq: u64 },
    /// A device's inputs (its inventory, a user's request) were committed
    /// at a follower: the leader plans it again.
    Replan { device: String },
    /// The leader planned a device again (asked by [`Signal::Replan`]);
    /// its generation now, changed or not.
    Planned { device: String, generation: u64 },
    /// Reports arrived at a follower: gates may pass.
    Reports,
    /// A sync was asked of a follower (a webhook, an admin): the leader
    /// reconciles now.
    Sync,
    /// The leader stepped down: whoever claims next leads.
    Released,
}

/// The NOTIFY channel of [`Signal`]s.
pub const CHANNEL: &str = "patchward";
