//! The fleet side of the embedded backend (its layout: `store::fleet`).

use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use std::sync::Arc;

use super::SledStore;
use crate::store::StoreError;
use crate::store::directory::DeviceEntry;
use crate::store::fleet::{
    AccessToken, AuditEntry, AuditHead, DeviceRecord, EnrollError, EnrollmentToken, Generation, RecordedEvents,
    StoredEvent, event_action, secret_hash,
};

fn seq_key(prefix: &str, seq: u64) -> Vec<u8> {
    format!("{prefix}{seq:020}").into_bytes()
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store values serialize")
}

/// An abort inside a transaction, carried out as our own error.
type Abort<E> = ConflictableTransactionError<E>;

impl SledStore {
    fn fleet_result<T, E>(&self, result: Result<T, TransactionError<E>>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match result {
            Ok(value) => {
                self.durable()?;
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
        self.durable()?;
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
            reports: Vec::new(),
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
        self.directory.refresh(device_id, || self.decode_device(device_id));
        Ok(record)
    }

    /// The id of the device a credential belongs to.
    pub fn device_id_by_credential(&self, credential: &str) -> Result<Option<String>, StoreError> {
        let key = format!("credential/{}", secret_hash(credential));
        let id = self.fleet.get(&key).map_err(|e| self.io("read", e))?;
        Ok(id.map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// The device a credential belongs to.
    pub fn device_by_credential(&self, credential: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let key = format!("credential/{}", secret_hash(credential));
        let Some(id) = self.fleet.get(&key).map_err(|e| self.io("read", e))? else { return Ok(None) };
        self.device(&String::from_utf8_lossy(&id))
    }

    pub fn device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.decode_device(id)
    }

    /// Device `id`'s record, decoded as `T` (the whole record, or the
    /// directory's entry).
    fn decode_device<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let key = format!("device/{id}");
        match self.fleet.get(&key).map_err(|e| self.io("read", e))? {
            None => Ok(None),
            Some(bytes) => self.decode(&key, &bytes).map(Some),
        }
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.decode_devices()
    }

    /// Every device's record, by id, decoded as `T`.
    fn decode_devices<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for entry in self.fleet.scan_prefix(b"device/") {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            out.push(self.decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(out)
    }

    /// Every device's directory entry, by id (see `store::directory`).
    pub fn device_entries(&self) -> Result<Vec<Arc<DeviceEntry>>, StoreError> {
        self.directory.entries(|| self.decode_devices())
    }

    /// How many devices are enrolled (their keys counted, nothing decoded).
    pub fn device_count(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in self.fleet.scan_prefix(b"device/").keys() {
            entry.map_err(|e| self.io("read", e))?;
            count += 1;
        }
        Ok(count)
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
        let record = self.fleet_result(result)?;
        self.directory.refresh(id, || self.decode_device(id));
        Ok(record)
    }

    /// Records a device's events by their sequence numbers, once each: a
    /// batch retried after a lost response records nothing twice (T26).
    /// Each new event's audit entry (`agent.KIND` by `device:ID`) is written
    /// in the same transaction: a crash between the two would leave an
    /// event the agent's resend can no longer audit (T14).
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
            let mut audit_seq = match tree.get(b"counter/audit")? {
                Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
                None => 0,
            };
            for (seq, body) in events {
                let key = seq_key(&format!("event/{id}/"), *seq);
                if tree.get(&key)?.is_some() {
                    outcome.duplicates += 1;
                    continue;
                }
                tree.insert(key, json(&StoredEvent { seq: *seq, received_at: now, body: body.clone() }))?;
                if record.take_event(*seq, body, now) {
                    outcome.reports += 1;
                }
                outcome.recorded += 1;
                outcome.new.push(*seq);
                audit_seq += 1;
                let entry = AuditEntry {
                    seq: audit_seq,
                    at: now,
                    actor: format!("device:{id}"),
                    action: event_action(body),
                    detail: body.clone(),
                };
                tree.insert(seq_key("audit/", audit_seq), json(&entry))?;
            }
            tree.insert(b"counter/audit".as_slice(), audit_seq.to_string().as_bytes())?;
            record.last_seen = now;
            tree.insert(device_key.as_bytes(), json(&record))?;
            Ok(outcome)
        });
        let outcome = self.fleet_result(result)?;
        self.directory.refresh(id, || self.decode_device(id));
        Ok(outcome)
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

    /// Appends several entries by one actor, in one transaction.
    pub fn append_audits(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        entries: &[(String, serde_json::Value)],
    ) -> Result<u64, StoreError> {
        let result = self.fleet.transaction(|tree| {
            let mut seq = match tree.get(b"counter/audit")? {
                Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
                None => 0,
            };
            for (action, detail) in entries {
                seq += 1;
                let entry =
                    AuditEntry { seq, at, actor: actor.to_owned(), action: action.clone(), detail: detail.clone() };
                tree.insert(seq_key("audit/", seq), json(&entry))?;
            }
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

    /// Audit entries older than `before` (from the newest when `None`),
    /// newest first, that `keep` accepts: at most `limit`, and whether an
    /// older one it accepts remains. Reading walks back from `before` only
    /// as far as it must, so a page of a long log costs the page.
    pub fn audit_newest(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&AuditHead<'_>) -> bool,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let end = seq_key("audit/", before.unwrap_or(u64::MAX));
        let mut out = Vec::new();
        for entry in self.fleet.range(seq_key("audit/", 0)..end).rev() {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let key = String::from_utf8_lossy(&key);
            let head: AuditHead<'_> = serde_json::from_slice(&value)
                .map_err(|e| self.corrupted(format!("fleet record {key} does not decode: {e}")))?;
            if keep(&head) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(self.decode(&key, &value)?);
            }
        }
        Ok((out, false))
    }

    /// How many entries the audit log holds.
    pub fn audit_len(&self) -> Result<u64, StoreError> {
        let counter = self.fleet.get(b"counter/audit").map_err(|e| self.io("read", e))?;
        counter
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .parse()
                    .map_err(|e| self.corrupted(format!("counter/audit does not decode: {e}")))
            })
            .unwrap_or(Ok(0))
    }

    /// [`SledStore::desired_generation`] for many devices at once: one
    /// transaction and one flush, whatever the fleet's size.
    pub fn desired_generations(&self, contents: &[(&str, &str)]) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::with_capacity(contents.len());
        let mut batch = sled::Batch::default();
        let mut changed = false;
        for (device, digest) in contents {
            let key = format!("desired/{device}");
            let current: Option<Generation> = match self.fleet.get(&key).map_err(|e| self.io("read", e))? {
                Some(bytes) => Some(self.decode(&key, &bytes)?),
                None => None,
            };
            match current {
                Some(current) if current.digest == *digest => out.push(current.generation),
                current => {
                    let next = current.map_or(1, |c| c.generation + 1);
                    batch.insert(key.as_bytes(), json(&Generation { generation: next, digest: (*digest).to_owned() }));
                    changed = true;
                    out.push(next);
                }
            }
        }
        if changed {
            self.fleet.apply_batch(batch).map_err(|e| self.io("write", e))?;
            self.durable()?;
        }
        Ok(out)
    }

    /// Stores an admin or user token (by its hash), durably.
    pub fn create_access_token(&self, token: &str, record: &AccessToken) -> Result<(), StoreError> {
        self.fleet.insert(format!("access/{}", secret_hash(token)), json(record)).map_err(|e| self.io("write", e))?;
        self.durable()?;
        Ok(())
    }

    /// The admin or user token `token` is, if any.
    pub fn access_token(&self, token: &str) -> Result<Option<AccessToken>, StoreError> {
        self.access_token_by_hash(&secret_hash(token))
    }

    /// An access token by the sha256 of its secret (what a console session
    /// keeps instead of the secret).
    pub fn access_token_by_hash(&self, hash: &str) -> Result<Option<AccessToken>, StoreError> {
        let key = format!("access/{hash}");
        match self.fleet.get(&key).map_err(|e| self.io("read", e))? {
            None => Ok(None),
            Some(bytes) => self.decode(&key, &bytes).map(Some),
        }
    }

    /// The engine's own states whose names start with `prefix`, by name.
    pub fn engine_states<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.fleet.scan_prefix(format!("state/{prefix}")) {
            let (key, bytes) = entry.map_err(|e| self.io("read", e))?;
            let key = String::from_utf8_lossy(&key);
            let name = key.strip_prefix("state/").unwrap_or(&key).to_owned();
            out.push((name, self.decode(&key, &bytes)?));
        }
        Ok(out)
    }

    /// The engine's own state under `name` (JSON), if it was ever saved.
    pub fn engine_state<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let key = format!("state/{name}");
        match self.fleet.get(&key).map_err(|e| self.io("read", e))? {
            None => Ok(None),
            Some(bytes) => self.decode(&key, &bytes).map(Some),
        }
    }

    /// Changes the engine's state under `name` with `change` (given what is
    /// stored, if anything), atomically and durably.
    pub fn update_engine_state<R>(
        &self,
        name: &str,
        change: impl FnOnce(Option<serde_json::Value>) -> Result<(serde_json::Value, R), String>,
    ) -> Result<R, StoreError> {
        let _one_at_a_time = self.state_updates.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.engine_state::<serde_json::Value>(name)?;
        let (value, out) = change(current).map_err(|e| self.corrupted(format!("engine state {name}: {e}")))?;
        self.set_engine_state(name, &value)?;
        Ok(out)
    }

    /// Forgets the engine's own state under `name`, durably.
    pub fn remove_engine_state(&self, name: &str) -> Result<(), StoreError> {
        self.fleet.remove(format!("state/{name}")).map_err(|e| self.io("write", e))?;
        self.durable()?;
        Ok(())
    }

    /// Saves the engine's own state under `name`, durably.
    pub fn set_engine_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        self.fleet.insert(format!("state/{name}"), json(value)).map_err(|e| self.io("write", e))?;
        self.durable()?;
        Ok(())
    }
}

impl SledStore {
    /// The fleet tree's records into `contents`, by key prefix.
    pub(super) fn fleet_contents(&self, contents: &mut crate::store::copy::Contents) -> Result<(), StoreError> {
        for entry in self.fleet.iter() {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let Some((kind, rest)) = key.split_once('/') else {
                return Err(self.corrupted(format!("fleet key {key:?} has no kind")));
            };
            let rest = rest.to_owned();
            match kind {
                "token" => contents.enrollment_tokens.push((rest, self.decode(&key, &value)?)),
                "device" => contents.devices.push(self.decode(&key, &value)?),
                "credential" => contents.credentials.push((rest, String::from_utf8_lossy(&value).into_owned())),
                "event" => {
                    let device = rest.rsplit_once('/').map_or(rest.as_str(), |(device, _)| device).to_owned();
                    contents.events.push((device, self.decode(&key, &value)?));
                }
                "audit" => contents.audit.push(self.decode(&key, &value)?),
                "counter" => contents.audit_counter = self.audit_len()?,
                "desired" => contents.desired.push((rest, self.decode(&key, &value)?)),
                "access" => contents.access_tokens.push((rest, self.decode(&key, &value)?)),
                "state" => contents.engine_state.push((rest, self.decode(&key, &value)?)),
                _ => return Err(self.corrupted(format!("fleet key {key:?} is of no known kind"))),
            }
        }
        Ok(())
    }
}
