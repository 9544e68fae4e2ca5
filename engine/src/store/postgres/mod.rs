//! The PostgreSQL backend, for several engine replicas on one database.
//!
//! tokio-postgres through a deadpool pool: async all the way, runtime
//! queries only, so nothing needs a database to build. (sqlx was the other
//! choice; its offline query checking wants a database or committed query
//! metadata at build time, and its macros hide the SQL we want to read.)
//!
//! The schema is embedded and versioned (`migrations/NNNN_*.sql`); opening
//! applies what is missing in one transaction, under an advisory lock, so
//! replicas starting together migrate once. Every operation is one
//! transaction, acknowledged only after PostgreSQL committed it
//! (`synchronous_commit` stays on: an immediate stop loses nothing
//! committed). Connecting, and waiting for a pooled connection, give up
//! after [`TIMEOUT`], so a write against an unreachable database fails
//! within it and is never acknowledged.

mod copy;
mod exposure;
mod fleet;
mod replicas;

pub use replicas::Listener;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;

use super::{CatalogChange, CatalogPatch, RecordHead, SourceState, StoreError, StoredRecord};
use crate::plan::{Ledger, LedgerEntry};

/// How long connecting, or waiting for a pooled connection, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Connections one replica keeps at most.
const POOL_SIZE: usize = 16;

/// The schema's versions, in order: each applied once, in its own
/// transaction with the version's row.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_replicas.sql")),
    (3, include_str!("migrations/0003_device_directory.sql")),
];

/// A pool of connections to one database.
pub struct PgStore {
    pool: Pool,
    /// `postgres://USER@HOST:PORT/DB`, without the password: for messages.
    location: String,
    /// For the listening connection, which is not pooled.
    config: tokio_postgres::Config,
    /// Which writes this replica may make (see `store::replicas::Fencing`).
    fencing: std::sync::RwLock<crate::store::replicas::Fencing>,
    /// What the admin's lists show of each device, caught up at each read.
    directory: crate::store::directory::Directory,
}

/// The address of `config` without its password.
fn location_of(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = config.get_hosts().first().map_or_else(String::new, |h| match h {
        tokio_postgres::config::Host::Tcp(name) => name.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    });
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}@{host}:{port}/{db}")
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`) and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Unreachable { location: "the --store URL".into(), reason: e.to_string() })?;
        config.connect_timeout(TIMEOUT);
        let location = location_of(&config);
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unreachable { location: location.clone(), reason: e.to_string() })?;
        let store = PgStore { pool, location, config, fencing: Default::default(), directory: Default::default() };
        store.migrate().await?;
        Ok(store)
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unreachable { location: self.location.clone(), reason: e.to_string() })
    }

    fn db(&self, action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
        move |source| StoreError::Database { location: self.location.clone(), action, source }
    }

    fn corrupted(&self, reason: String) -> StoreError {
        StoreError::Corrupted { path: self.location.clone().into(), reason }
    }

    /// Applies the migrations the database lacks, once, whoever else starts.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("migrate"))?;
        // Held to the end of the transaction: one replica migrates at a time.
        tx.execute("SELECT pg_advisory_xact_lock(7061746368)", &[]).await.map_err(self.db("migrate"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(self.db("migrate"))?;
        let applied: BTreeSet<i32> = tx
            .query("SELECT version FROM schema_version", &[])
            .await
            .map_err(self.db("migrate"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if let Some(newer) = applied.iter().find(|v| **v > MIGRATIONS.len() as i32) {
            return Err(StoreError::Unreachable {
                location: self.location.clone(),
                reason: format!("its schema is version {newer}, newer than this patchward knows; upgrade patchward"),
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
            tx.batch_execute(sql).await.map_err(self.db("migrate"))?;
            tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[version])
                .await
                .map_err(self.db("migrate"))?;
        }
        tx.commit().await.map_err(self.db("migrate"))
    }

    pub async fn catalog_sources(&self) -> Result<Vec<SourceState>, StoreError> {
        let client = self.client().await?;
        let rows =
            client.query("SELECT state FROM catalog_source ORDER BY name", &[]).await.map_err(self.db("read"))?;
        Ok(rows.iter().map(|row| row.get::<_, Json<SourceState>>(0).0).collect())
    }

    /// Every patch, in id order.
    pub async fn catalog_patches(&self) -> Result<Vec<CatalogPatch>, StoreError> {
        let client = self.client().await?;
        let rows =
            client.query("SELECT id, record FROM catalog_patch ORDER BY id", &[]).await.map_err(self.db("read"))?;
        rows.iter()
            .map(|row| {
                serde_json::from_slice(row.get(1))
                    .map_err(|e| self.corrupted(format!("record {} does not decode: {e}", row.get::<_, &str>(0))))
            })
            .collect()
    }

    pub async fn catalog_records(&self) -> Result<BTreeMap<String, StoredRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT id, record FROM catalog_patch", &[]).await.map_err(self.db("read"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (id, bytes): (String, Vec<u8>) = (row.get(0), row.get(1));
            let head: RecordHead = serde_json::from_slice(&bytes)
                .map_err(|e| self.corrupted(format!("record {id} does not decode: {e}")))?;
            out.insert(id, StoredRecord { head, bytes });
        }
        Ok(out)
    }

    pub async fn catalog_record(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT record FROM catalog_patch WHERE id = $1", &[&id])
            .await
            .map_err(self.db("read"))?;
        Ok(row.map(|row| row.get(0)))
    }

    pub async fn catalog_patch(&self, id: &str) -> Result<Option<CatalogPatch>, StoreError> {
        match self.catalog_record(id).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupted(format!("record {id} does not decode: {e}"))),
        }
    }

    /// One transaction: the sources' states, the records put and deleted.
    pub async fn commit_catalog(&self, change: CatalogChange) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        self.fence(&tx).await?;
        for state in &change.sources {
            tx.execute(
                "INSERT INTO catalog_source (name, state) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state",
                &[&state.name, &Json(state)],
            )
            .await
            .map_err(self.db("write"))?;
        }
        let (ids, records): (Vec<String>, Vec<Vec<u8>>) = change.put.into_iter().map(|p| (p.id, p.bytes)).unzip();
        if !ids.is_empty() {
            tx.execute(
                "INSERT INTO catalog_patch (id, record) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&ids, &records],
            )
            .await
            .map_err(self.db("write"))?;
        }
        if !change.delete.is_empty() {
            tx.execute("DELETE FROM catalog_patch WHERE id = ANY($1)", &[&change.delete])
                .await
                .map_err(self.db("write"))?;
        }
        tx.commit().await.map_err(self.db("commit"))
    }

    pub async fn ledger(&self) -> Result<Ledger, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT rule, patch, first_matched FROM ledger", &[]).await.map_err(self.db("read"))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let (rule, patch, at): (String, String, &str) = (row.get(0), row.get(1), row.get(2));
            let at =
                at.parse().map_err(|e| self.corrupted(format!("ledger entry {rule}/{patch} does not decode: {e}")))?;
            entries.push(LedgerEntry { rule, patch, at });
        }
        Ok(entries.into_iter().collect())
    }

    /// First matches, once each: a pair already recorded keeps its instant.
    pub async fn record_ledger(&self, entries: &[LedgerEntry]) -> Result<usize, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let rules: Vec<&str> = entries.iter().map(|e| e.rule.as_str()).collect();
        let patches: Vec<&str> = entries.iter().map(|e| e.patch.as_str()).collect();
        let at: Vec<String> = entries.iter().map(|e| e.at.to_string()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.db("write"))?;
        self.fence(&tx).await?;
        let added = tx
            .execute(
                "INSERT INTO ledger (rule, patch, first_matched) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
                &[&rules, &patches, &at],
            )
            .await
            .map_err(self.db("write"))?;
        tx.commit().await.map_err(self.db("commit"))?;
        Ok(added as usize)
    }
}
