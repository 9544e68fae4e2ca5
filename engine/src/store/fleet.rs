//! The fleet side of the store: enrollment tokens, devices and their
//! credentials, agent events and the audit log, in one sled tree so that
//! each operation is one transaction, flushed before it is acknowledged.
//!
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
//!
//! Secrets (enrollment tokens, device credentials) are stored only as
//! their sha256: they are long random strings, so the hash cannot be
//! reversed, and a copy of the store does not let anyone in.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Store, StoreError};

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordedEvents {
    pub recorded: usize,
    /// Events whose sequence number was recorded before (a retry after a
    /// lost response): acknowledged again, stored once.
    pub duplicates: usize,
}

pub fn secret_hash(secret: &str) -> String {
    crate::catalog::sha256_hex(secret.as_bytes())
}

fn seq_key(prefix: &str, seq: u64) -> Vec<u8> {
    format!("{prefix}{seq:020}").into_bytes()
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store values serialize")
}

/// An abort inside a transaction, carried out as our own error.
type Abort<E> = ConflictableTransactionError<E>;

impl Store {
    fn fleet_result<T, E>(&self, result: Result<T, TransactionError<E>>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match result {
            Ok(value) => {
                self.db.flush().map_err(|e| self.io("flush", e))?;
                Ok(value)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(self.io("write", e).into()),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupted(format!("fleet record {key} does not decode: {e}")))
    }

    /// Stores an enrollment token (by its hash), durably.
    pub fn create_enrollment_token(&self, token: &str, record: &EnrollmentToken) -> Result<(), StoreError> {
        self.fleet.insert(format!("token/{}", secret_hash(token)), json(record)).map_err(|e| self.io("write", e))?;
        self.db.flush().map_err(|e| self.io("flush", e))?;
        Ok(())
    }

    /// Trades an enrollment token for a new device with `credential`: one
    /// transaction (the token's use, the device, its credential), flushed.
    pub fn enroll(
        &self,
        token: &str,
        device_id: &str,
        credential: &str,
        facts: patchward_api::Facts,
        now: jiff::Timestamp,
    ) -> Result<DeviceRecord, EnrollError> {
        let token_key = format!("token/{}", secret_hash(token));
        let device_key = format!("device/{device_id}");
        let credential_key = format!("credential/{}", secret_hash(credential));
        let record = DeviceRecord {
            id: device_id.to_owned(),
            facts,
            inventory: patchward_api::Inventory::default(),
            enrolled_at: now,
            last_seen: now,
            last_event: 0,
        };
        let result = self.fleet.transaction(|tree| {
            let bytes = tree.get(&token_key)?.ok_or(Abort::Abort(EnrollError::UnknownToken))?;
            let mut token: EnrollmentToken = serde_json::from_slice(&bytes)
                .map_err(|e| Abort::Abort(EnrollError::Store(self.corrupted(format!("{token_key}: {e}")))))?;
            if let Some(expires_at) = token.expires_at
                && expires_at <= now
            {
                return Err(Abort::Abort(EnrollError::Expired(expires_at)));
            }
            if token.uses_left == 0 {
                return Err(Abort::Abort(EnrollError::UsedUp));
            }
            if tree.get(&device_key)?.is_some() {
                return Err(Abort::Abort(EnrollError::DeviceExists(device_id.to_owned())));
            }
            token.uses_left -= 1;
            tree.insert(token_key.as_bytes(), json(&token))?;
            tree.insert(device_key.as_bytes(), json(&record))?;
            tree.insert(credential_key.as_bytes(), device_id.as_bytes())?;
            Ok(())
        });
        self.fleet_result(result)?;
        Ok(record)
    }

    /// The device a credential belongs to.
    pub fn device_by_credential(&self, credential: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let key = format!("credential/{}", secret_hash(credential));
        let Some(id) = self.fleet.get(&key).map_err(|e| self.io("read", e))? else { return Ok(None) };
        self.device(&String::from_utf8_lossy(&id))
    }

    pub fn device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let key = format!("device/{id}");
        match self.fleet.get(&key).map_err(|e| self.io("read", e))? {
            None => Ok(None),
            Some(bytes) => self.decode(&key, &bytes).map(Some),
        }
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.fleet.scan_prefix(b"device/") {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            out.push(self.decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(out)
    }

    /// Replaces a device's facts and inventory, durably.
    pub fn update_inventory(
        &self,
        id: &str,
        facts: patchward_api::Facts,
        inventory: patchward_api::Inventory,
        now: jiff::Timestamp,
    ) -> Result<DeviceRecord, StoreError> {
        let key = format!("device/{id}");
        let result = self.fleet.transaction(|tree| {
            let bytes = tree
                .get(&key)?
                .ok_or_else(|| Abort::Abort(self.corrupted(format!("no device {id} for an inventory"))))?;
            let mut record: DeviceRecord =
                serde_json::from_slice(&bytes).map_err(|e| Abort::Abort(self.corrupted(format!("{key}: {e}"))))?;
            record.facts = facts.clone();
            record.inventory = inventory.clone();
            record.last_seen = now;
            tree.insert(key.as_bytes(), json(&record))?;
            Ok(record)
        });
        self.fleet_result(result)
    }

    /// Records a device's events by their sequence numbers, once each: a
    /// batch retried after a lost response records nothing twice (T26).
    pub fn record_events(
        &self,
        id: &str,
        events: &[(u64, serde_json::Value)],
        now: jiff::Timestamp,
    ) -> Result<RecordedEvents, StoreError> {
        let device_key = format!("device/{id}");
        let result = self.fleet.transaction(|tree| {
            let bytes = tree
                .get(&device_key)?
                .ok_or_else(|| Abort::Abort(self.corrupted(format!("no device {id} for events"))))?;
            let mut record: DeviceRecord = serde_json::from_slice(&bytes)
                .map_err(|e| Abort::Abort(self.corrupted(format!("{device_key}: {e}"))))?;
            let mut outcome = RecordedEvents::default();
            for (seq, body) in events {
                let key = seq_key(&format!("event/{id}/"), *seq);
                if tree.get(&key)?.is_some() {
                    outcome.duplicates += 1;
                    continue;
                }
                tree.insert(key, json(&StoredEvent { seq: *seq, received_at: now, body: body.clone() }))?;
                record.last_event = record.last_event.max(*seq);
                outcome.recorded += 1;
            }
            record.last_seen = now;
            tree.insert(device_key.as_bytes(), json(&record))?;
            Ok(outcome)
        });
        self.fleet_result(result)
    }

    /// A device's events in sequence order.
    pub fn events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let prefix = format!("event/{id}/");
        let mut out = Vec::new();
        for entry in self.fleet.scan_prefix(prefix.as_bytes()) {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            out.push(self.decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(out)
    }

    /// The generation to serve for content with `digest`: the stored one
    /// when the content is unchanged, else the next one, stored (and
    /// flushed) before it is returned, so a generation never goes back and
    /// never names two contents, across restarts too (G4).
    pub fn desired_generation(&self, device: &str, digest: &str) -> Result<u64, StoreError> {
        let key = format!("desired/{device}");
        let result = self.fleet.transaction(|tree| {
            let current: Option<Generation> = match tree.get(&key)? {
                Some(bytes) => Some(
                    serde_json::from_slice(&bytes).map_err(|e| Abort::Abort(self.corrupted(format!("{key}: {e}"))))?,
                ),
                None => None,
            };
            match current {
                Some(current) if current.digest == digest => Ok((current.generation, false)),
                current => {
                    let next = current.map_or(1, |c| c.generation + 1);
                    tree.insert(key.as_bytes(), json(&Generation { generation: next, digest: digest.to_owned() }))?;
                    Ok((next, true))
                }
            }
        });
        match result {
            Ok((generation, false)) => Ok(generation),
            other => self.fleet_result(other.map(|(generation, _)| generation)),
        }
    }

    /// Appends to the audit log, durably; returns the entry's sequence number.
    pub fn append_audit(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, StoreError> {
        let result = self.fleet.transaction(|tree| {
            let last = match tree.get(b"counter/audit")? {
                Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
                None => 0,
            };
            let seq = last + 1;
            let entry =
                AuditEntry { seq, at, actor: actor.to_owned(), action: action.to_owned(), detail: detail.clone() };
            tree.insert(seq_key("audit/", seq), json(&entry))?;
            tree.insert(b"counter/audit".as_slice(), seq.to_string().as_bytes())?;
            Ok::<u64, Abort<StoreError>>(seq)
        });
        self.fleet_result(result)
    }

    /// Audit entries after `after`, at most `limit`, oldest first.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.fleet.range(seq_key("audit/", after + 1)..seq_key("audit/", u64::MAX)).take(limit) {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            out.push(self.decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(out)
    }
}
