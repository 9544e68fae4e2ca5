//! The fleet side of the PostgreSQL backend: the same operations as the
//! embedded one (`store::fleet`), each one transaction. Rows a transaction
//! reads to change are locked (`FOR UPDATE`), so two replicas doing the
//! same thing at once do it one after the other: a single-use token is
//! used once, an event batch is recorded once, and audit sequence numbers
//! come from one counter row, gap-free.

use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use super::PgStore;
use crate::store::StoreError;
use crate::store::directory::DeviceEntry;
use crate::store::fleet::{
    AccessToken, AuditEntry, AuditHead, DeviceRecord, EnrollError, EnrollmentToken, RecordedEvents, StoredEvent,
    event_action, secret_hash,
};

/// How many audit rows a backwards walk reads at a time.
const AUDIT_PAGE: i64 = 500;

/// Takes `n` audit sequence numbers in `tx`; returns the last one taken.
async fn take_audit_seqs(tx: &deadpool_postgres::Transaction<'_>, n: i64) -> Result<i64, tokio_postgres::Error> {
    let row = tx.query_one("UPDATE counter SET value = value + $1 WHERE name = 'audit' RETURNING value", &[&n]).await?;
    Ok(row.get(0))
}

async fn insert_audit(
    tx: &deadpool_postgres::Transaction<'_>,
    entry: &AuditEntry,
) -> Result<(), tokio_postgres::Error> {
    tx.execute("INSERT INTO audit (seq, record) VALUES ($1, $2)", &[&(entry.seq as i64), &Json(entry)]).await?;
    Ok(())
}

impl PgStore {
    pub async fn create_enrollment_token(&self, token: &str, record: &EnrollmentToken) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO enrollment_token (hash, record) VALUES ($1, $2) \
                 ON CONFLICT (hash) DO UPDATE SET record = EXCLUDED.record",
                &[&secret_hash(token), &Json(record)],
            )
            .await
            .map_err(self.db("write"))?;
        Ok(())
    }

    pub async fn enroll(
        &self,
        token: &str,
        device_id: &str,
        credential: &str,
        facts: patchward_api::Facts,
        now: jiff::Timestamp,
    ) -> Result<DeviceRecord, EnrollError> {
        let record = DeviceRecord {
            id: device_id.to_owned(),
            facts,
            inventory: patchward_api::Inventory::default(),
            enrolled_at: now,
            last_seen: now,
            last_event: 0,
            reports: Vec::new(),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        let hash = secret_hash(token);
        let row = tx
            .query_opt("SELECT record FROM enrollment_token WHERE hash = $1 FOR UPDATE", &[&hash])
            .await
            .map_err(self.db("read"))?
            .ok_or(EnrollError::UnknownToken)?;
        let mut stored: EnrollmentToken = row.get::<_, Json<EnrollmentToken>>(0).0;
        if let Some(expires_at) = stored.expires_at
            && expires_at <= now
        {
            return Err(EnrollError::Expired(expires_at));
        }
        if stored.uses_left == 0 {
            return Err(EnrollError::UsedUp);
        }
        stored.uses_left -= 1;
        tx.execute("UPDATE enrollment_token SET record = $2 WHERE hash = $1", &[&hash, &Json(&stored)])
            .await
            .map_err(self.db("write"))?;
        let inserted = tx
            .execute(
                "INSERT INTO device (id, record) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&device_id, &Json(&record)],
            )
            .await
            .map_err(self.db("write"))?;
        if inserted == 0 {
            return Err(EnrollError::DeviceExists(device_id.to_owned()));
        }
        tx.execute("INSERT INTO credential (hash, device) VALUES ($1, $2)", &[&secret_hash(credential), &device_id])
            .await
            .map_err(self.db("write"))?;
        tx.commit().await.map_err(|e| match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => EnrollError::DeviceExists(device_id.to_owned()),
            _ => EnrollError::Store(self.db("commit")(e)),
        })?;
        Ok(record)
    }

    pub async fn device_id_by_credential(&self, credential: &str) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT device FROM credential WHERE hash = $1", &[&secret_hash(credential)])
            .await
            .map_err(self.db("read"))?;
        Ok(row.map(|row| row.get(0)))
    }

    pub async fn device_by_credential(&self, credential: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT d.record FROM credential c JOIN device d ON d.id = c.device WHERE c.hash = $1",
                &[&secret_hash(credential)],
            )
            .await
            .map_err(self.db("read"))?;
        Ok(row.map(|row| row.get::<_, Json<DeviceRecord>>(0).0))
    }

    pub async fn device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT record FROM device WHERE id = $1", &[&id]).await.map_err(self.db("read"))?;
        Ok(row.map(|row| row.get::<_, Json<DeviceRecord>>(0).0))
    }

    pub async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT record FROM device ORDER BY id", &[]).await.map_err(self.db("read"))?;
        Ok(rows.iter().map(|row| row.get::<_, Json<DeviceRecord>>(0).0).collect())
    }

    /// Every device's directory entry, by id, caught up with the rows
    /// written since the last read (see `store::directory`).
    pub async fn device_entries(&self) -> Result<Vec<Arc<DeviceEntry>>, StoreError> {
        self.directory.catch_up(|since| self.device_entries_since(since)).await
    }

    /// The entries of the devices written by transaction `since` or later,
    /// and the oldest transaction running when they were read: one
    /// snapshot for both. Only the listed fields leave the database.
    async fn device_entries_since(&self, since: u64) -> Result<(Vec<DeviceEntry>, u64), StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.db("read"))?;
        let oldest: String = tx
            .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])
            .await
            .map_err(self.db("read"))?
            .get(0);
        let rows = tx
            .query(
                "SELECT jsonb_build_object('id', id, 'facts', record->'facts', 'enrolledAt', record->'enrolledAt', \
                 'lastSeen', record->'lastSeen', 'reports', coalesce(record->'reports', '[]'::jsonb)) \
                 FROM device WHERE written_by >= $1::text::xid8",
                &[&since.to_string()],
            )
            .await
            .map_err(self.db("read"))?;
        tx.commit().await.map_err(self.db("read"))?;
        let oldest = oldest.parse().map_err(|e| self.corrupted(format!("a transaction id {oldest}: {e}")))?;
        Ok((rows.iter().map(|row| row.get::<_, Json<DeviceEntry>>(0).0).collect(), oldest))
    }

    pub async fn device_count(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT count(*) FROM device", &[]).await.map_err(self.db("read"))?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    /// The device's record, locked for the rest of `tx`.
    async fn lock_device(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        id: &str,
        why: &str,
    ) -> Result<DeviceRecord, StoreError> {
        let row = tx
            .query_opt("SELECT record FROM device WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(self.db("read"))?
            .ok_or_else(|| self.corrupted(format!("no device {id} for {why}")))?;
        Ok(row.get::<_, Json<DeviceRecord>>(0).0)
    }

    async fn put_device(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        record: &DeviceRecord,
    ) -> Result<(), StoreError> {
        tx.execute(
            "UPDATE device SET record = $2, written_by = pg_current_xact_id() WHERE id = $1",
            &[&record.id, &Json(record)],
        )
        .await
        .map_err(self.db("write"))?;
        Ok(())
    }

    pub async fn update_inventory(
        &self,
        id: &str,
        facts: patchward_api::Facts,
        inventory: patchward_api::Inventory,
        now: jiff::Timestamp,
    ) -> Result<DeviceRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        let mut record = self.lock_device(&tx, id, "an inventory").await?;
        record.facts = facts;
        record.inventory = inventory;
        record.last_seen = now;
        self.put_device(&tx, &record).await?;
        tx.commit().await.map_err(self.db("commit"))?;
        Ok(record)
    }

    /// Moves each device's `lastSeen` forward to its check-in (never back),
    /// in one statement.
    pub async fn record_check_ins(&self, check_ins: &[(String, jiff::Timestamp)]) -> Result<(), StoreError> {
        if check_ins.is_empty() {
            return Ok(());
        }
        let devices: Vec<&str> = check_ins.iter().map(|(d, _)| d.as_str()).collect();
        let times: Vec<String> = check_ins.iter().map(|(_, at)| at.to_string()).collect();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE device SET record = jsonb_set(record, '{lastSeen}', to_jsonb(c.at)), written_by = pg_current_xact_id() \
                 FROM UNNEST($1::text[], $2::text[]) AS c(id, at) \
                 WHERE device.id = c.id AND (record->>'lastSeen')::timestamptz < c.at::timestamptz",
                &[&devices, &times],
            )
            .await
            .map_err(self.db("write"))?;
        Ok(())
    }

    /// The device's events, once each, with their audit entries, in one
    /// transaction (the device's row locked: a batch sent to two replicas
    /// at once is recorded by one and found duplicate by the other).
    pub async fn record_events(
        &self,
        id: &str,
        events: &[(u64, serde_json::Value)],
        now: jiff::Timestamp,
    ) -> Result<RecordedEvents, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        let mut record = self.lock_device(&tx, id, "events").await?;
        let mut outcome = RecordedEvents::default();
        let mut audits = Vec::new();
        for (seq, body) in events {
            let stored = StoredEvent { seq: *seq, received_at: now, body: body.clone() };
            let inserted = tx
                .execute(
                    "INSERT INTO event (device, seq, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&id, &(*seq as i64), &Json(&stored)],
                )
                .await
                .map_err(self.db("write"))?;
            if inserted == 0 {
                outcome.duplicates += 1;
                continue;
            }
            if record.take_event(*seq, body, now) {
                outcome.reports += 1;
            }
            outcome.recorded += 1;
            outcome.new.push(*seq);
            audits.push((event_action(body), body.clone()));
        }
        if !audits.is_empty() {
            self.append_audits_in(&tx, now, &format!("device:{id}"), &audits).await?;
        }
        record.last_seen = now;
        self.put_device(&tx, &record).await?;
        tx.commit().await.map_err(self.db("commit"))?;
        Ok(outcome)
    }

    pub async fn events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT record FROM event WHERE device = $1 ORDER BY seq", &[&id])
            .await
            .map_err(self.db("read"))?;
        Ok(rows.iter().map(|row| row.get::<_, Json<StoredEvent>>(0).0).collect())
    }

    pub async fn desired_generation(&self, device: &str, digest: &str) -> Result<u64, StoreError> {
        Ok(self.desired_generations(&[(device, digest)]).await?[0])
    }

    /// The generation for each (device, content digest): kept when the
    /// content is unchanged, else the next, all in one transaction with the
    /// rows locked, so a generation never goes back or names two contents.
    pub async fn desired_generations(&self, contents: &[(&str, &str)]) -> Result<Vec<u64>, StoreError> {
        let devices: Vec<&str> = contents.iter().map(|(d, _)| *d).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        self.fence(&tx).await?;
        let rows = tx
            .query("SELECT device, generation, digest FROM desired WHERE device = ANY($1) FOR UPDATE", &[&devices])
            .await
            .map_err(self.db("read"))?;
        let current: std::collections::HashMap<String, (i64, String)> =
            rows.into_iter().map(|row| (row.get(0), (row.get(1), row.get(2)))).collect();
        let mut out = Vec::with_capacity(contents.len());
        let (mut changed_devices, mut changed_generations, mut changed_digests) = (Vec::new(), Vec::new(), Vec::new());
        for (device, digest) in contents {
            match current.get(*device) {
                Some((generation, stored)) if stored == digest => out.push(*generation as u64),
                found => {
                    let next = found.map_or(1, |(generation, _)| generation + 1);
                    changed_devices.push(*device);
                    changed_generations.push(next);
                    changed_digests.push(*digest);
                    out.push(next as u64);
                }
            }
        }
        if !changed_devices.is_empty() {
            tx.execute(
                "INSERT INTO desired (device, generation, digest) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[]) \
                 ON CONFLICT (device) DO UPDATE SET generation = EXCLUDED.generation, digest = EXCLUDED.digest",
                &[&changed_devices, &changed_generations, &changed_digests],
            )
            .await
            .map_err(self.db("write"))?;
        }
        tx.commit().await.map_err(self.db("commit"))?;
        Ok(out)
    }

    async fn append_audits_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        at: jiff::Timestamp,
        actor: &str,
        entries: &[(String, serde_json::Value)],
    ) -> Result<u64, StoreError> {
        let last = take_audit_seqs(tx, entries.len() as i64).await.map_err(self.db("write"))?;
        let first = last - entries.len() as i64 + 1;
        for (offset, (action, detail)) in entries.iter().enumerate() {
            let entry = AuditEntry {
                seq: (first + offset as i64) as u64,
                at,
                actor: actor.to_owned(),
                action: action.clone(),
                detail: detail.clone(),
            };
            insert_audit(tx, &entry).await.map_err(self.db("write"))?;
        }
        Ok(last as u64)
    }

    pub async fn append_audit(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, StoreError> {
        self.append_audits(at, actor, &[(action.to_owned(), detail)]).await
    }

    pub async fn append_audits(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        entries: &[(String, serde_json::Value)],
    ) -> Result<u64, StoreError> {
        self.append_audits_fenced(at, actor, entries, false).await
    }

    /// [`PgStore::append_audits`]; `as_leader`: only under a current lease
    /// (what the leader records of its own work: revisions, approvals).
    pub async fn append_audits_fenced(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        entries: &[(String, serde_json::Value)],
        as_leader: bool,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        if as_leader {
            self.fence(&tx).await?;
        }
        let last = if entries.is_empty() {
            self.audit_len_in(&tx).await?
        } else {
            self.append_audits_in(&tx, at, actor, entries).await?
        };
        tx.commit().await.map_err(self.db("commit"))?;
        Ok(last)
    }

    pub async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query("SELECT record FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2", &[&(after as i64), &limit])
            .await
            .map_err(self.db("read"))?;
        Ok(rows.iter().map(|row| row.get::<_, Json<AuditEntry>>(0).0).collect())
    }

    /// Newest first from `before`, reading back a page at a time only as
    /// far as `keep` needs.
    pub async fn audit_newest(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&AuditHead<'_>) -> bool,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let client = self.client().await?;
        let mut below = before.map_or(i64::MAX, |b| b as i64);
        let mut out = Vec::new();
        loop {
            let rows = client
                .query("SELECT record FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2", &[&below, &AUDIT_PAGE])
                .await
                .map_err(self.db("read"))?;
            let Some(last) = rows.last() else { return Ok((out, false)) };
            below = last.get::<_, Json<AuditEntry>>(0).0.seq as i64;
            for row in &rows {
                let entry = row.get::<_, Json<AuditEntry>>(0).0;
                if keep(&entry.head()) {
                    if out.len() == limit {
                        return Ok((out, true));
                    }
                    out.push(entry);
                }
            }
        }
    }

    async fn audit_len_in(&self, client: &impl deadpool_postgres::GenericClient) -> Result<u64, StoreError> {
        let row =
            client.query_one("SELECT value FROM counter WHERE name = 'audit'", &[]).await.map_err(self.db("read"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        self.audit_len_in(&client).await
    }

    pub async fn create_access_token(&self, token: &str, record: &AccessToken) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO access_token (hash, record) VALUES ($1, $2) \
                 ON CONFLICT (hash) DO UPDATE SET record = EXCLUDED.record",
                &[&secret_hash(token), &Json(record)],
            )
            .await
            .map_err(self.db("write"))?;
        Ok(())
    }

    pub async fn access_token(&self, token: &str) -> Result<Option<AccessToken>, StoreError> {
        self.access_token_by_hash(&secret_hash(token)).await
    }

    pub async fn access_token_by_hash(&self, hash: &str) -> Result<Option<AccessToken>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT record FROM access_token WHERE hash = $1", &[&hash])
            .await
            .map_err(self.db("read"))?;
        Ok(row.map(|row| row.get::<_, Json<AccessToken>>(0).0))
    }

    pub async fn engine_states<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT name, value FROM engine_state WHERE left(name, length($1)) = $1 ORDER BY name", &[&prefix])
            .await
            .map_err(self.db("read"))?;
        rows.into_iter()
            .map(|row| {
                let name: String = row.get(0);
                let value = self.decode_engine_state(&name, row.get(1))?;
                Ok((name, value))
            })
            .collect()
    }

    fn decode_engine_state<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        value: serde_json::Value,
    ) -> Result<T, StoreError> {
        serde_json::from_value(value).map_err(|e| self.corrupted(format!("engine state {name} does not decode: {e}")))
    }

    pub async fn engine_state<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM engine_state WHERE name = $1", &[&name])
            .await
            .map_err(self.db("read"))?;
        row.map(|row| self.decode_engine_state(name, row.get(0))).transpose()
    }

    /// Changes the engine's state under `name` in one transaction, its row
    /// locked: two replicas changing it at once change it one after the
    /// other.
    pub async fn update_engine_state<R>(
        &self,
        name: &str,
        change: impl FnOnce(Option<serde_json::Value>) -> Result<(serde_json::Value, R), String>,
    ) -> Result<R, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        tx.execute(
            "INSERT INTO engine_state (name, value) VALUES ($1, 'null'::jsonb) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await
        .map_err(self.db("write"))?;
        let row = tx
            .query_one("SELECT value FROM engine_state WHERE name = $1 FOR UPDATE", &[&name])
            .await
            .map_err(self.db("read"))?;
        let current = Some(row.get::<_, serde_json::Value>(0)).filter(|v| !v.is_null());
        let (value, out) = change(current).map_err(|e| self.corrupted(format!("engine state {name}: {e}")))?;
        tx.execute("UPDATE engine_state SET value = $2 WHERE name = $1", &[&name, &value])
            .await
            .map_err(self.db("write"))?;
        tx.commit().await.map_err(self.db("commit"))?;
        Ok(out)
    }

    pub async fn remove_engine_state(&self, name: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("DELETE FROM engine_state WHERE name = $1", &[&name]).await.map_err(self.db("write"))?;
        Ok(())
    }

    pub async fn set_engine_state(&self, name: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.set_engine_state_fenced(name, value, false).await
    }

    /// [`PgStore::set_engine_state`]; `as_leader`: only under a current
    /// lease (the leader's own state: the compliance trend).
    pub async fn set_engine_state_fenced(
        &self,
        name: &str,
        value: &serde_json::Value,
        as_leader: bool,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        if as_leader {
            self.fence(&tx).await?;
        }
        tx.execute(
            "INSERT INTO engine_state (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, value],
        )
        .await
        .map_err(self.db("write"))?;
        tx.commit().await.map_err(self.db("commit"))
    }
}
