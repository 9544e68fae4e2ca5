//! The engine's durable store, behind one boundary with two backends:
//! sled in the data directory (the embedded default, one engine), and
//! PostgreSQL (several engine replicas). Nothing outside this module names
//! either.
//!
//! [`Store`] is async all the way: the embedded backend's calls block, so
//! they run on tokio's blocking threads, never on its workers. Code that
//! runs on a blocking thread itself (the planner's) waits with
//! [`Store::wait`]. A write returns only after it is durable (flushed, or
//! committed), and either all of it is visible or none.

pub mod copy;
pub mod directory;
mod embedded;
pub mod exposure;
pub mod fleet;
mod postgres;
pub mod replicas;
pub mod signed_body;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::feed::{Patch, Severity};
use crate::plan::{Ledger, LedgerEntry};
pub use embedded::SledStore;
use exposure::{DeviceExposure, RemediationTally};
use fleet::{AccessToken, AuditEntry, DeviceRecord, EnrollError, EnrollmentToken, RecordedEvents, StoredEvent};
pub use postgres::{Listener, PgStore};
use replicas::{Fencing, Lease, LeaseState, Signal, SignedDesired};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} cannot be opened: {reason}. It may be corrupted or written by a newer patchward. \
         To recover, move the folder aside (keep it for inspection) and rebuild the catalog from its sources: \
         `patchward catalog rebuild --data {path}`"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "the store at {path} is corrupted: {reason}. It is not served. To recover, run \
         `patchward catalog rebuild --data {path}`, which re-imports every source"
    )]
    Corrupted { path: PathBuf, reason: String },
    #[error("a call to the store at {path} did not finish: {reason}")]
    Interrupted { path: PathBuf, reason: String },
    #[error("the database {location} failed to {action}")]
    Database {
        location: String,
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the database {location} cannot be reached: {reason}")]
    Unreachable { location: String, reason: String },
    #[error("a leader's write was refused: {reason}")]
    Fenced { reason: String },
    #[error("the store at {path} failed to {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: sled::Error,
    },
}

impl StoreError {
    /// The store could not be reached (a database down or unreachable), as
    /// opposed to refusing or failing an operation: what a replica may
    /// ride out on what it holds in memory.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Database { source, .. } => source.is_closed() || source.code().is_none(),
            _ => false,
        }
    }
}

/// What the catalog knows of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceState {
    pub name: String,
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<jiff::Timestamp>,
    pub imported_at: jiff::Timestamp,
    /// When the source was last checked (a 304 counts).
    pub checked_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// sha256 of the feed bytes in force.
    pub feed_sha256: String,
    /// How many `patch/` records belong to this source, and their digest
    /// (see the module docs): how a torn or corrupted store is recognised.
    pub patch_count: usize,
    pub patches_digest: String,
    /// This source's obsolete patches and since when, so retention needs
    /// no scan of the catalog.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub obsolete: BTreeMap<String, jiff::Timestamp>,
    /// For a CSAF provider: what its last sync read (absent in stores
    /// written before providers were synced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csaf_provider: Option<CsafProviderState>,
}

/// What a CSAF provider's last sync read (`catalog::provider`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsafProviderState {
    /// The newest time in the provider's `changes.csv` that is imported: the
    /// next sync fetches only the documents changed after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_through: Option<jiff::Timestamp>,
}

/// A patch as the catalog keeps it: the feed's description plus the
/// engine's own fields. Derived facts that span sources (`supersededBy`,
/// `active`) are computed when read, so one source's import never rewrites
/// another's records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPatch {
    pub patch: Patch,
    /// The source that published it.
    pub source: String,
    pub first_seen: jiff::Timestamp,
    /// The first sync whose feed omitted the patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obsolete_since: Option<jiff::Timestamp>,
    /// The effective base score: the feed's, or computed from the vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The effective severity: the feed's, or derived from the score.
    pub severity: Severity,
}

/// A record ready to write: encoding happens once, where it is planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPatch {
    pub id: String,
    pub bytes: Vec<u8>,
}

impl EncodedPatch {
    pub fn new(patch: &CatalogPatch) -> EncodedPatch {
        EncodedPatch { id: patch.patch.id.clone(), bytes: encode_patch(patch) }
    }
}

/// One atomic change to the catalog.
#[derive(Debug, Default)]
pub struct CatalogChange {
    pub sources: Vec<SourceState>,
    pub put: Vec<EncodedPatch>,
    pub delete: Vec<String>,
}

/// The fields of a record an import needs, read without decoding the patch.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordHead {
    pub source: String,
    pub first_seen: jiff::Timestamp,
    #[serde(default)]
    pub obsolete_since: Option<jiff::Timestamp>,
}

/// A stored record: its head, and its bytes as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    pub head: RecordHead,
    pub bytes: Vec<u8>,
}

/// The order-free digest of a set of records: XOR of sha256(id, record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchesDigest([u8; 32]);

impl PatchesDigest {
    /// Adds a record, or takes it out again (XOR is its own inverse).
    pub fn toggle(&mut self, id: &str, bytes: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update((id.len() as u64).to_le_bytes());
        hasher.update(id.as_bytes());
        hasher.update(bytes);
        for (acc, b) in self.0.iter_mut().zip(hasher.finalize().iter()) {
            *acc ^= *b;
        }
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<PatchesDigest> {
        let bytes = hex::decode(text).ok()?;
        Some(PatchesDigest(bytes.try_into().ok()?))
    }
}

pub fn encode_patch(patch: &CatalogPatch) -> Vec<u8> {
    serde_json::to_vec(patch).expect("a catalog patch always serializes")
}

/// The store: one backend, shared by every task of the engine (cheap to
/// clone).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sled(Arc<SledStore>),
    Postgres(Arc<PgStore>),
}

thread_local! {
    /// Set while [`Store::wait`] polls its future: the thread may block, so
    /// a call of the embedded backend runs right there rather than being
    /// handed to a blocking thread and back (two thread switches per call,
    /// in loops over the fleet).
    static MAY_BLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A future polled with [`MAY_BLOCK`] set.
struct MayBlock<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for MayBlock<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        /// Puts the flag back, even when the poll panics.
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                MAY_BLOCK.set(self.0);
            }
        }
        let _restore = Restore(MAY_BLOCK.replace(true));
        self.0.as_mut().poll(cx)
    }
}

/// Runs a call of the embedded backend: on a blocking thread, unless the
/// caller may block ([`Store::wait`]).
async fn on_sled<T: Send + 'static>(
    sled: &Arc<SledStore>,
    call: impl FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    if MAY_BLOCK.get() {
        return call(sled);
    }
    let sled = Arc::clone(sled);
    let path = sled.path().to_owned();
    tokio::task::spawn_blocking(move || call(&sled))
        .await
        .map_err(|e| StoreError::Interrupted { path, reason: e.to_string() })?
}

/// One facade method: the same call on whichever backend is open. `$arg`s
/// are cloned into the blocking call.
macro_rules! on_backend {
    ($self:ident, $method:ident($($arg:ident),*)) => {
        match &$self.backend {
            Backend::Sled(sled) => {
                $(let $arg = $arg.to_owned();)*
                on_sled(sled, move |sled| sled.$method($(&$arg),*)).await
            }
            Backend::Postgres(pg) => pg.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens (or creates) the embedded store in `dir` (see [`SledStore::open`]).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store::sled(SledStore::open(dir)?))
    }

    pub fn sled(sled: SledStore) -> Store {
        Store { backend: Backend::Sled(Arc::new(sled)) }
    }

    /// Connects to PostgreSQL at `url` and brings its schema up to date
    /// (see [`PgStore::connect`]).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Postgres(Arc::new(PgStore::connect(url).await?)) })
    }

    /// Opens what `spec` names: a `postgres://` URL, else the embedded
    /// store in the folder `spec`.
    pub async fn open_spec(spec: &str) -> Result<Store, StoreError> {
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            Store::connect(spec).await
        } else {
            Store::open(Path::new(spec))
        }
    }

    /// Waits for a store call from code that is not async: the planner's
    /// (on a blocking thread), a command's (no runtime yet), or a sync
    /// helper an async handler calls. On a multi-threaded runtime's worker
    /// the worker first hands its other tasks off (`block_in_place`), so
    /// the runtime never stalls; on a current-thread runtime the call runs
    /// on a thread of its own. Calls of the embedded backend run on the
    /// calling thread.
    pub fn wait<T: Send>(future: impl Future<Output = T> + Send) -> T {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let own_runtime = || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime starts")
        };
        let future = MayBlock(Box::pin(future));
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(future))
            }
            Ok(_) => std::thread::scope(|scope| {
                scope.spawn(|| own_runtime().block_on(future)).join().expect("a store call does not panic")
            }),
            Err(_) => own_runtime().block_on(future),
        }
    }

    /// Where the store is, for messages: the data directory, or the
    /// database's address without its password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sled(sled) => sled.path().display().to_string(),
            Backend::Postgres(pg) => pg.location().to_owned(),
        }
    }

    /// The embedded backend's data directory.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sled(sled) => Some(sled.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// Bytes the store occupies on disk (embedded only; 0 for a database).
    pub fn size_on_disk(&self) -> u64 {
        match &self.backend {
            Backend::Sled(sled) => sled.size_on_disk(),
            Backend::Postgres(_) => 0,
        }
    }

    pub async fn catalog_sources(&self) -> Result<Vec<SourceState>, StoreError> {
        on_backend!(self, catalog_sources())
    }

    pub async fn catalog_source(&self, name: &str) -> Result<Option<SourceState>, StoreError> {
        Ok(self.catalog_sources().await?.into_iter().find(|s| s.name == name))
    }

    /// Every patch, in id order.
    pub async fn catalog_patches(&self) -> Result<Vec<CatalogPatch>, StoreError> {
        on_backend!(self, catalog_patches())
    }

    /// Every record's head and bytes, by id: what an import compares with.
    pub async fn catalog_records(&self) -> Result<BTreeMap<String, StoredRecord>, StoreError> {
        on_backend!(self, catalog_records())
    }

    /// One record's bytes.
    pub async fn catalog_record(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        on_backend!(self, catalog_record(id))
    }

    pub async fn catalog_patch(&self, id: &str) -> Result<Option<CatalogPatch>, StoreError> {
        on_backend!(self, catalog_patch(id))
    }

    /// Checks that each source's patch records are exactly those its state
    /// describes (count and digest): the proof that no import was torn and
    /// nothing rotted. Fails with the first problem found.
    pub async fn verify_catalog(&self) -> Result<(), StoreError> {
        let records = self.catalog_records().await?;
        let sources = self.catalog_sources().await?;
        verify_catalog(&self.location(), records, &sources)
    }

    /// Applies `change` atomically and durably: after this returns, a crash
    /// cannot lose it; if it fails or the process dies first, nothing of it
    /// is visible.
    pub async fn commit_catalog(&self, change: CatalogChange) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.commit_catalog(change)).await,
            Backend::Postgres(pg) => pg.commit_catalog(change).await,
        }
    }

    /// The planner's ledger: when each (rule, patch) pair first matched.
    pub async fn ledger(&self) -> Result<Ledger, StoreError> {
        on_backend!(self, ledger())
    }

    /// Records first matches, durably. A pair already in the ledger keeps
    /// its instant: the first match never moves. Returns how many pairs
    /// were new.
    pub async fn record_ledger(&self, entries: &[LedgerEntry]) -> Result<usize, StoreError> {
        let entries = entries.to_vec();
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.record_ledger(&entries)).await,
            Backend::Postgres(pg) => pg.record_ledger(&entries).await,
        }
    }

    /// Stores an enrollment token (by its hash), durably.
    pub async fn create_enrollment_token(&self, token: &str, record: &EnrollmentToken) -> Result<(), StoreError> {
        on_backend!(self, create_enrollment_token(token, record))
    }

    /// Trades an enrollment token for a new device with `credential`: one
    /// transaction (the token's use, the device, its credential).
    pub async fn enroll(
        &self,
        token: &str,
        device_id: &str,
        credential: &str,
        facts: patchward_api::Facts,
        now: jiff::Timestamp,
    ) -> Result<DeviceRecord, EnrollError> {
        let (token, device_id, credential) = (token.to_owned(), device_id.to_owned(), credential.to_owned());
        match &self.backend {
            Backend::Sled(sled) => {
                let sled = Arc::clone(sled);
                let path = sled.path().to_owned();
                tokio::task::spawn_blocking(move || sled.enroll(&token, &device_id, &credential, facts, now))
                    .await
                    .map_err(|e| EnrollError::Store(StoreError::Interrupted { path, reason: e.to_string() }))?
            }
            Backend::Postgres(pg) => pg.enroll(&token, &device_id, &credential, facts, now).await,
        }
    }

    /// The id of the device a credential belongs to.
    pub async fn device_id_by_credential(&self, credential: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, device_id_by_credential(credential))
    }

    /// The device a credential belongs to.
    pub async fn device_by_credential(&self, credential: &str) -> Result<Option<DeviceRecord>, StoreError> {
        on_backend!(self, device_by_credential(credential))
    }

    pub async fn device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        on_backend!(self, device(id))
    }

    /// Every device, by id.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        on_backend!(self, devices())
    }

    /// Every device's directory entry, by id: what the admin's lists show
    /// of it, held in memory (see [`directory`]).
    pub async fn device_entries(&self) -> Result<Vec<Arc<directory::DeviceEntry>>, StoreError> {
        on_backend!(self, device_entries())
    }

    /// How many devices are enrolled.
    pub async fn device_count(&self) -> Result<usize, StoreError> {
        on_backend!(self, device_count())
    }

    /// Replaces a device's facts and inventory, durably.
    pub async fn update_inventory(
        &self,
        id: &str,
        facts: patchward_api::Facts,
        inventory: patchward_api::Inventory,
        now: jiff::Timestamp,
    ) -> Result<DeviceRecord, StoreError> {
        let id = id.to_owned();
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.update_inventory(&id, facts, inventory, now)).await,
            Backend::Postgres(pg) => pg.update_inventory(&id, facts, inventory, now).await,
        }
    }

    /// Records a device's events by their sequence numbers, once each (a
    /// retried batch records nothing twice), each with its audit entry in
    /// the same transaction.
    pub async fn record_events(
        &self,
        id: &str,
        events: &[(u64, serde_json::Value)],
        now: jiff::Timestamp,
    ) -> Result<RecordedEvents, StoreError> {
        let (id, events) = (id.to_owned(), events.to_vec());
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.record_events(&id, &events, now)).await,
            Backend::Postgres(pg) => pg.record_events(&id, &events, now).await,
        }
    }

    /// A device's events in sequence order.
    pub async fn events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        on_backend!(self, events(id))
    }

    /// The generation to serve for content with `digest`: the stored one
    /// when the content is unchanged, else the next one, durable before it
    /// is returned, so a generation never goes back (G4).
    pub async fn desired_generation(&self, device: &str, digest: &str) -> Result<u64, StoreError> {
        on_backend!(self, desired_generation(device, digest))
    }

    /// [`Store::desired_generation`] for many devices at once, in one
    /// transaction.
    pub async fn desired_generations(&self, contents: &[(&str, &str)]) -> Result<Vec<u64>, StoreError> {
        let owned: Vec<(String, String)> = contents.iter().map(|(d, c)| ((*d).to_owned(), (*c).to_owned())).collect();
        match &self.backend {
            Backend::Sled(sled) => {
                on_sled(sled, move |sled| {
                    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(d, c)| (d.as_str(), c.as_str())).collect();
                    sled.desired_generations(&borrowed)
                })
                .await
            }
            Backend::Postgres(pg) => pg.desired_generations(contents).await,
        }
    }

    /// Whether several replicas may share this store (PostgreSQL): then
    /// one leads by a lease and the others follow.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Which writes this replica may make from now on.
    pub fn set_fencing(&self, fencing: Fencing) {
        if let Backend::Postgres(pg) = &self.backend {
            pg.set_fencing(fencing);
        }
    }

    /// Renews `holder`'s lease, or takes the lease if it is free; says
    /// who leads, and where (`address`, the holder's API, is recorded with
    /// the lease). The embedded store's one replica always leads.
    pub async fn claim_lease(
        &self,
        holder: &str,
        address: &str,
        ttl: std::time::Duration,
    ) -> Result<LeaseState, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(LeaseState {
                lease: Some(Lease { holder: holder.to_owned(), epoch: 1 }),
                leader: Some(holder.to_owned()),
                leader_address: Some(address.to_owned()),
            }),
            Backend::Postgres(pg) => pg.claim_lease(holder, address, ttl).await,
        }
    }

    /// Gives the lease up at once, so another replica leads now.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(pg) => pg.release_lease(lease).await,
        }
    }

    /// Moves devices' last-seen times forward to their check-ins at this
    /// replica (nothing to do on the embedded store: its one replica holds
    /// them).
    pub async fn record_check_ins(&self, check_ins: &[(String, jiff::Timestamp)]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(pg) => pg.record_check_ins(check_ins).await,
        }
    }

    /// Stores signed states for the other replicas to serve (nothing to do
    /// on the embedded store: its one replica holds them).
    pub async fn publish_desired(&self, states: &[SignedDesired]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(pg) => pg.publish_desired(states).await,
        }
    }

    /// The signed states published after sequence number `after`, and the
    /// newest sequence number.
    pub async fn desired_since(&self, after: u64) -> Result<(Vec<SignedDesired>, u64), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok((Vec::new(), after)),
            Backend::Postgres(pg) => pg.desired_since(after).await,
        }
    }

    /// One device's published signed state.
    pub async fn signed_desired(&self, device: &str) -> Result<Option<SignedDesired>, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(None),
            Backend::Postgres(pg) => pg.signed_desired(device).await,
        }
    }

    /// Tells the other replicas (nobody listens on the embedded store).
    pub async fn signal(&self, signal: &Signal) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(pg) => pg.signal(signal).await,
        }
    }

    /// Listens for the other replicas' signals; `None` on the embedded
    /// store.
    pub async fn listen(&self) -> Result<Option<Listener>, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(None),
            Backend::Postgres(pg) => pg.listen().await.map(Some),
        }
    }

    /// Appends to the audit log, durably; returns the entry's sequence number.
    pub async fn append_audit(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, StoreError> {
        let (actor, action) = (actor.to_owned(), action.to_owned());
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.append_audit(at, &actor, &action, detail)).await,
            Backend::Postgres(pg) => pg.append_audit(at, &actor, &action, detail).await,
        }
    }

    /// [`Store::append_audit`] of what the leader records of its own work
    /// (a revision applied, approvals gained and lost): refused unless this
    /// replica holds a current lease.
    pub async fn append_leader_audit(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, StoreError> {
        self.append_leader_audits(at, actor, vec![(action.to_owned(), detail)]).await
    }

    /// [`Store::append_leader_audit`] of several entries, in one
    /// transaction.
    pub async fn append_leader_audits(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        entries: Vec<(String, serde_json::Value)>,
    ) -> Result<u64, StoreError> {
        let actor = actor.to_owned();
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.append_audits(at, &actor, &entries)).await,
            Backend::Postgres(pg) => pg.append_audits_fenced(at, &actor, &entries, true).await,
        }
    }

    /// [`Store::set_engine_state`] of the leader's own state (the
    /// compliance trend): refused unless this replica holds a current lease.
    pub async fn set_leader_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let value = serde_json::to_value(value).expect("engine state serializes");
        match &self.backend {
            Backend::Sled(sled) => {
                let name = name.to_owned();
                on_sled(sled, move |sled| sled.set_engine_state(&name, &value)).await
            }
            Backend::Postgres(pg) => pg.set_engine_state_fenced(name, &value, true).await,
        }
    }

    /// Appends several entries by one actor, in one transaction.
    pub async fn append_audits(
        &self,
        at: jiff::Timestamp,
        actor: &str,
        entries: &[(String, serde_json::Value)],
    ) -> Result<u64, StoreError> {
        let (actor, entries) = (actor.to_owned(), entries.to_vec());
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.append_audits(at, &actor, &entries)).await,
            Backend::Postgres(pg) => pg.append_audits(at, &actor, &entries).await,
        }
    }

    /// Audit entries after `after`, at most `limit`, oldest first.
    pub async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.audit(after, limit)).await,
            Backend::Postgres(pg) => pg.audit(after, limit).await,
        }
    }

    /// Audit entries older than `before` (from the newest when `None`),
    /// newest first, that `keep` accepts: at most `limit`, and whether an
    /// older one it accepts remains.
    pub async fn audit_newest(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&fleet::AuditHead<'_>) -> bool + Send + 'static,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.audit_newest(before, limit, keep)).await,
            Backend::Postgres(pg) => pg.audit_newest(before, limit, keep).await,
        }
    }

    /// How many entries the audit log holds.
    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        on_backend!(self, audit_len())
    }

    /// Stores an admin or user token (by its hash), durably.
    pub async fn create_access_token(&self, token: &str, record: &AccessToken) -> Result<(), StoreError> {
        on_backend!(self, create_access_token(token, record))
    }

    /// The admin or user token `token` is, if any.
    pub async fn access_token(&self, token: &str) -> Result<Option<AccessToken>, StoreError> {
        on_backend!(self, access_token(token))
    }

    /// An access token by the sha256 of its secret.
    pub async fn access_token_by_hash(&self, hash: &str) -> Result<Option<AccessToken>, StoreError> {
        on_backend!(self, access_token_by_hash(hash))
    }

    /// The engine's own states whose names start with `prefix`, by name.
    pub async fn engine_states<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        on_backend!(self, engine_states(prefix))
    }

    /// The engine's own state under `name`, if it was ever saved.
    pub async fn engine_state<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        on_backend!(self, engine_state(name))
    }

    /// Saves the engine's own state under `name`, durably.
    pub async fn set_engine_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let value = serde_json::to_value(value).expect("engine state serializes");
        match &self.backend {
            Backend::Sled(sled) => {
                let name = name.to_owned();
                on_sled(sled, move |sled| sled.set_engine_state(&name, &value)).await
            }
            Backend::Postgres(pg) => pg.set_engine_state(name, &value).await,
        }
    }

    /// Changes the engine's state under `name` (its default when there is
    /// none) with `change`, atomically: concurrent updates, at this replica
    /// or another, apply one after the other. Returns what `change` did.
    pub async fn update_engine_state<T, R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> Result<R, StoreError>
    where
        T: Serialize + serde::de::DeserializeOwned + Default,
        R: Send + 'static,
    {
        let apply = move |current: Option<serde_json::Value>| {
            let mut value: T = match current {
                None => T::default(),
                Some(stored) => serde_json::from_value(stored).map_err(|e| format!("does not decode: {e}"))?,
            };
            let out = change(&mut value);
            Ok((serde_json::to_value(&value).expect("engine state serializes"), out))
        };
        match &self.backend {
            Backend::Sled(sled) => {
                let name = name.to_owned();
                on_sled(sled, move |sled| sled.update_engine_state(&name, apply)).await
            }
            Backend::Postgres(pg) => pg.update_engine_state(name, apply).await,
        }
    }

    /// Forgets the engine's state under `name`, durably.
    pub async fn remove_engine_state(&self, name: &str) -> Result<(), StoreError> {
        on_backend!(self, remove_engine_state(name))
    }

    /// Every device's exposure record.
    pub async fn exposures(&self) -> Result<BTreeMap<String, DeviceExposure>, StoreError> {
        on_backend!(self, exposures())
    }

    /// Replaces the records of the devices named and adds to the
    /// remediation tally, in one transaction, durably.
    pub async fn record_exposures(
        &self,
        changed: &[(String, DeviceExposure)],
        remediated: RemediationTally,
    ) -> Result<(), StoreError> {
        let changed = changed.to_vec();
        match &self.backend {
            Backend::Sled(sled) => on_sled(sled, move |sled| sled.record_exposures(&changed, remediated)).await,
            Backend::Postgres(pg) => pg.record_exposures(&changed, remediated).await,
        }
    }

    pub async fn remediation_tally(&self) -> Result<RemediationTally, StoreError> {
        on_backend!(self, remediation_tally())
    }
}

impl Store {
    /// Everything the store holds (`store copy`).
    pub async fn contents(&self) -> Result<copy::Contents, StoreError> {
        on_backend!(self, contents())
    }

    /// Writes a whole installation into this store, which must be a
    /// database (`store copy` goes from the embedded store to PostgreSQL).
    pub async fn load(&self, contents: copy::Contents) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => Err(StoreError::Unreachable {
                location: sled.path().display().to_string(),
                reason: "a copy goes into PostgreSQL, not into an embedded store".into(),
            }),
            Backend::Postgres(pg) => pg.load(contents).await,
        }
    }
}

/// Each source's records against its state: counts and digests.
fn verify_catalog(
    location: &str,
    records: BTreeMap<String, StoredRecord>,
    sources: &[SourceState],
) -> Result<(), StoreError> {
    let corrupted = |reason: String| StoreError::Corrupted { path: PathBuf::from(location), reason };
    let mut by_source: BTreeMap<String, (usize, PatchesDigest)> = BTreeMap::new();
    for (id, record) in records {
        let entry = by_source.entry(record.head.source).or_default();
        entry.0 += 1;
        entry.1.toggle(&id, &record.bytes);
    }
    for state in sources {
        let (count, digest) = by_source.remove(&state.name).unwrap_or_default();
        if count != state.patch_count {
            return Err(corrupted(format!(
                "source `{}` should have {} patch records, it has {count}",
                state.name, state.patch_count
            )));
        }
        if digest.to_hex() != state.patches_digest {
            return Err(corrupted(format!("the patch records of source `{}` do not match their digest", state.name)));
        }
    }
    if let Some((source, (count, _))) = by_source.into_iter().next() {
        return Err(corrupted(format!("{count} patch records belong to unknown source `{source}`")));
    }
    Ok(())
}
