//! `store copy` into PostgreSQL: every table read out, and a whole
//! installation written in one transaction.

use tokio_postgres::types::Json;

use super::PgStore;
use crate::store::StoreError;
use crate::store::copy::Contents;

impl PgStore {
    /// Everything the database holds.
    pub async fn contents(&self) -> Result<Contents, StoreError> {
        let client = self.client().await?;
        let read = |e| self.db("read")(e);
        let rows = |sql: &'static str| {
            let client = &client;
            async move { client.query(sql, &[]).await }
        };
        let mut contents = Contents {
            catalog_sources: self.catalog_sources().await?,
            ledger: self.ledger().await?.entries().collect(),
            audit_counter: self.audit_len().await?,
            ..Contents::default()
        };
        for row in rows("SELECT id, record FROM catalog_patch").await.map_err(read)? {
            contents.catalog_records.push((row.get(0), row.get(1)));
        }
        for row in rows("SELECT hash, record FROM enrollment_token").await.map_err(read)? {
            contents.enrollment_tokens.push((row.get(0), row.get::<_, Json<_>>(1).0));
        }
        for row in rows("SELECT record FROM device").await.map_err(read)? {
            contents.devices.push(row.get::<_, Json<_>>(0).0);
        }
        for row in rows("SELECT hash, device FROM credential").await.map_err(read)? {
            contents.credentials.push((row.get(0), row.get(1)));
        }
        for row in rows("SELECT device, record FROM event").await.map_err(read)? {
            contents.events.push((row.get(0), row.get::<_, Json<_>>(1).0));
        }
        for row in rows("SELECT record FROM audit").await.map_err(read)? {
            contents.audit.push(row.get::<_, Json<_>>(0).0);
        }
        for row in rows("SELECT device, generation, digest FROM desired").await.map_err(read)? {
            let generation =
                crate::store::fleet::Generation { generation: row.get::<_, i64>(1) as u64, digest: row.get(2) };
            contents.desired.push((row.get(0), generation));
        }
        for row in rows("SELECT hash, record FROM access_token").await.map_err(read)? {
            contents.access_tokens.push((row.get(0), row.get::<_, Json<_>>(1).0));
        }
        for row in rows("SELECT name, value FROM engine_state").await.map_err(read)? {
            contents.engine_state.push((row.get(0), row.get(1)));
        }
        for row in rows("SELECT device, record FROM exposure").await.map_err(read)? {
            contents.exposures.push((row.get(0), row.get::<_, Json<_>>(1).0));
        }
        Ok(contents)
    }

    /// Writes `contents` into the (empty) database, in one transaction.
    pub async fn load(&self, contents: Contents) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        let write = |e| self.db("write")(e);
        for state in &contents.catalog_sources {
            tx.execute("INSERT INTO catalog_source (name, state) VALUES ($1, $2)", &[&state.name, &Json(state)])
                .await
                .map_err(write)?;
        }
        for (id, bytes) in &contents.catalog_records {
            tx.execute("INSERT INTO catalog_patch (id, record) VALUES ($1, $2)", &[id, bytes]).await.map_err(write)?;
        }
        for entry in &contents.ledger {
            tx.execute(
                "INSERT INTO ledger (rule, patch, first_matched) VALUES ($1, $2, $3)",
                &[&entry.rule, &entry.patch, &entry.at.to_string()],
            )
            .await
            .map_err(write)?;
        }
        for (hash, token) in &contents.enrollment_tokens {
            tx.execute("INSERT INTO enrollment_token (hash, record) VALUES ($1, $2)", &[hash, &Json(token)])
                .await
                .map_err(write)?;
        }
        for device in &contents.devices {
            tx.execute("INSERT INTO device (id, record) VALUES ($1, $2)", &[&device.id, &Json(device)])
                .await
                .map_err(write)?;
        }
        for (hash, device) in &contents.credentials {
            tx.execute("INSERT INTO credential (hash, device) VALUES ($1, $2)", &[hash, device])
                .await
                .map_err(write)?;
        }
        for (device, event) in &contents.events {
            tx.execute(
                "INSERT INTO event (device, seq, record) VALUES ($1, $2, $3)",
                &[device, &(event.seq as i64), &Json(event)],
            )
            .await
            .map_err(write)?;
        }
        for entry in &contents.audit {
            tx.execute("INSERT INTO audit (seq, record) VALUES ($1, $2)", &[&(entry.seq as i64), &Json(entry)])
                .await
                .map_err(write)?;
        }
        tx.execute("UPDATE counter SET value = $1 WHERE name = 'audit'", &[&(contents.audit_counter as i64)])
            .await
            .map_err(write)?;
        for (device, generation) in &contents.desired {
            tx.execute(
                "INSERT INTO desired (device, generation, digest) VALUES ($1, $2, $3)",
                &[device, &(generation.generation as i64), &generation.digest],
            )
            .await
            .map_err(write)?;
        }
        for (hash, token) in &contents.access_tokens {
            tx.execute("INSERT INTO access_token (hash, record) VALUES ($1, $2)", &[hash, &Json(token)])
                .await
                .map_err(write)?;
        }
        for (name, value) in &contents.engine_state {
            tx.execute("INSERT INTO engine_state (name, value) VALUES ($1, $2)", &[name, value])
                .await
                .map_err(write)?;
        }
        for (device, exposure) in &contents.exposures {
            tx.execute("INSERT INTO exposure (device, record) VALUES ($1, $2)", &[device, &Json(exposure)])
                .await
                .map_err(write)?;
        }
        tx.commit().await.map_err(self.db("commit"))
    }
}
