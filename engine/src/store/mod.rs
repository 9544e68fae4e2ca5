//! The engine's durable store. sled is the embedded backend; nothing
//! outside this module names sled, so another backend (PostgreSQL, for
//! several engine replicas) replaces this module and nothing else.
//!
//! Key layout of the `catalog` tree (values are JSON):
//!
//! | key | value |
//! | --- | --- |
//! | `format` | the layout version, `1` |
//! | `source/{name}` | [`SourceState`]: revision, times, validators, digest of its patches, its obsolete patches |
//! | `patch/{id}` | [`CatalogPatch`]: the patch and the engine's fields |
//!
//! A source's `patchesDigest` is the XOR of sha256(id, record) over its
//! records: order-free, so an import updates it from the records it
//! touches, and [`Store::verify_catalog`] recomputes it from all.
//!
//! Writes go through [`Store::commit_catalog`]: one sled batch (atomic),
//! then a flush; only then is the write acknowledged. After a crash the
//! catalog is therefore exactly the state before or after a commit.

pub mod exposure;
pub mod fleet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::feed::{Patch, Severity};
use crate::plan::{Ledger, LedgerEntry};

const CATALOG_TREE: &str = "catalog";
/// `{rule}\0{patch}` → the instant (JSON string) the rule first matched
/// the patch. Names cannot hold a NUL, so keys are unambiguous.
const LEDGER_TREE: &str = "ledger";
/// Devices, tokens, events and the audit log: see [`fleet`].
const FLEET_TREE: &str = "fleet";
/// Open exposures by device: see [`exposure`].
const EXPOSURE_TREE: &str = "exposure";
const LAYOUT_VERSION: &str = "1";

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
    #[error("the store at {path} failed to {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: sled::Error,
    },
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

pub struct Store {
    path: PathBuf,
    db: sled::Db,
    catalog: sled::Tree,
    ledger: sled::Tree,
    fleet: sled::Tree,
    exposure: sled::Tree,
}

fn patch_key(id: &str) -> Vec<u8> {
    format!("patch/{id}").into_bytes()
}

fn source_key(name: &str) -> Vec<u8> {
    format!("source/{name}").into_bytes()
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

/// How long `open` waits for sled's lock file. A store just dropped in this
/// process can hold the lock a moment longer, because sled's background IO
/// threads own the file until their last write ends (sled's own tests block
/// on the lock for that reason); another live process holds it for good.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(path).mode(sled::Mode::HighThroughput).open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(sled::Error::Io(std::io::Error::other(format!(
                        "{e} (is another patchward using this data directory?)"
                    ))));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`. A store that sled cannot open
    /// is reported with the way to recover, never silently recreated.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let unreadable = |reason: String| StoreError::Unreadable { path: dir.to_owned(), reason };
        std::fs::create_dir_all(dir).map_err(|e| unreadable(format!("cannot create it: {e}")))?;
        let db = open_sled(&dir.join("store")).map_err(|e| unreadable(e.to_string()))?;
        let catalog = db.open_tree(CATALOG_TREE).map_err(|e| unreadable(e.to_string()))?;
        let ledger = db.open_tree(LEDGER_TREE).map_err(|e| unreadable(e.to_string()))?;
        let fleet = db.open_tree(FLEET_TREE).map_err(|e| unreadable(e.to_string()))?;
        let exposure = db.open_tree(EXPOSURE_TREE).map_err(|e| unreadable(e.to_string()))?;
        let store = Store { path: dir.to_owned(), db, catalog, ledger, fleet, exposure };
        match store.catalog.get(b"format").map_err(|e| store.io("read", e))? {
            None => {
                store.catalog.insert(b"format", LAYOUT_VERSION.as_bytes()).map_err(|e| store.io("write", e))?;
                store.db.flush().map_err(|e| store.io("flush", e))?;
            }
            Some(v) if v.as_ref() == LAYOUT_VERSION.as_bytes() => {}
            Some(v) => return Err(unreadable(format!("unknown layout version {:?}", String::from_utf8_lossy(&v)))),
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, action: &'static str, source: sled::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), action, source }
    }

    fn corrupted(&self, reason: String) -> StoreError {
        StoreError::Corrupted { path: self.path.clone(), reason }
    }

    pub fn catalog_sources(&self) -> Result<Vec<SourceState>, StoreError> {
        let mut out = Vec::new();
        for entry in self.catalog.scan_prefix(b"source/") {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let state: SourceState = serde_json::from_slice(&value).map_err(|e| {
                self.corrupted(format!("record {} does not decode: {e}", String::from_utf8_lossy(&key)))
            })?;
            out.push(state);
        }
        Ok(out)
    }

    pub fn catalog_source(&self, name: &str) -> Result<Option<SourceState>, StoreError> {
        Ok(self.catalog_sources()?.into_iter().find(|s| s.name == name))
    }

    /// Every patch, in id order.
    pub fn catalog_patches(&self) -> Result<Vec<CatalogPatch>, StoreError> {
        let mut out = Vec::new();
        for entry in self.catalog.scan_prefix(b"patch/") {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            out.push(self.decode_patch(&key, &value)?);
        }
        Ok(out)
    }

    /// Every record's head and bytes, by id: what an import compares with.
    pub fn catalog_records(&self) -> Result<BTreeMap<String, StoredRecord>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.catalog.scan_prefix(b"patch/") {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let head: RecordHead = serde_json::from_slice(&value).map_err(|e| {
                self.corrupted(format!("record {} does not decode: {e}", String::from_utf8_lossy(&key)))
            })?;
            let id = String::from_utf8_lossy(&key["patch/".len()..]).into_owned();
            out.insert(id, StoredRecord { head, bytes: value.to_vec() });
        }
        Ok(out)
    }

    /// One record's bytes.
    pub fn catalog_record(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.catalog.get(patch_key(id)).map_err(|e| self.io("read", e))?.map(|v| v.to_vec()))
    }

    pub fn catalog_patch(&self, id: &str) -> Result<Option<CatalogPatch>, StoreError> {
        let key = patch_key(id);
        match self.catalog.get(&key).map_err(|e| self.io("read", e))? {
            Some(value) => Ok(Some(self.decode_patch(&key, &value)?)),
            None => Ok(None),
        }
    }

    fn decode_patch(&self, key: &[u8], value: &[u8]) -> Result<CatalogPatch, StoreError> {
        serde_json::from_slice(value)
            .map_err(|e| self.corrupted(format!("record {} does not decode: {e}", String::from_utf8_lossy(key))))
    }

    /// Checks that each source's patch records are exactly those its state
    /// describes (count and digest): the proof that no import was torn and
    /// nothing rotted. Fails with the first problem found.
    pub fn verify_catalog(&self) -> Result<(), StoreError> {
        let mut by_source: BTreeMap<String, (usize, PatchesDigest)> = BTreeMap::new();
        for (id, record) in self.catalog_records()? {
            let entry = by_source.entry(record.head.source).or_default();
            entry.0 += 1;
            entry.1.toggle(&id, &record.bytes);
        }
        let sources = self.catalog_sources()?;
        for state in &sources {
            let (count, digest) = by_source.remove(&state.name).unwrap_or_default();
            if count != state.patch_count {
                return Err(self.corrupted(format!(
                    "source `{}` should have {} patch records, it has {count}",
                    state.name, state.patch_count
                )));
            }
            if digest.to_hex() != state.patches_digest {
                return Err(
                    self.corrupted(format!("the patch records of source `{}` do not match their digest", state.name))
                );
            }
        }
        if let Some((source, (count, _))) = by_source.into_iter().next() {
            return Err(self.corrupted(format!("{count} patch records belong to unknown source `{source}`")));
        }
        Ok(())
    }

    /// Applies `change` atomically and durably: after this returns, a crash
    /// cannot lose it; if it fails or the process dies first, nothing of it
    /// is visible.
    pub fn commit_catalog(&self, change: CatalogChange) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for state in &change.sources {
            batch.insert(source_key(&state.name), serde_json::to_vec(state).expect("a source state serializes"));
        }
        for patch in change.put {
            batch.insert(patch_key(&patch.id), patch.bytes);
        }
        for id in &change.delete {
            batch.remove(patch_key(id));
        }
        self.catalog.apply_batch(batch).map_err(|e| self.io("write", e))?;
        self.db.flush().map_err(|e| self.io("flush", e))?;
        Ok(())
    }

    /// The planner's ledger: when each (rule, patch) pair first matched.
    pub fn ledger(&self) -> Result<Ledger, StoreError> {
        let mut entries = Vec::new();
        for entry in self.ledger.iter() {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let text = String::from_utf8_lossy(&key);
            let Some((rule, patch)) = text.split_once('\0') else {
                return Err(self.corrupted(format!("ledger key {text:?} has no separator")));
            };
            let at: jiff::Timestamp = serde_json::from_slice(&value)
                .map_err(|e| self.corrupted(format!("ledger entry {rule}/{patch} does not decode: {e}")))?;
            entries.push(LedgerEntry { rule: rule.to_owned(), patch: patch.to_owned(), at });
        }
        Ok(entries.into_iter().collect())
    }

    /// Records first matches, durably (one batch, then a flush). A pair
    /// already in the ledger keeps its instant: the first match never
    /// moves. Returns how many pairs were new. The reconciler is the one
    /// writer, so reading then writing cannot race.
    pub fn record_ledger(&self, entries: &[LedgerEntry]) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut added = std::collections::BTreeSet::new();
        for entry in entries {
            let key = format!("{}\0{}", entry.rule, entry.patch).into_bytes();
            if self.ledger.contains_key(&key).map_err(|e| self.io("read", e))? || !added.insert(key.clone()) {
                continue;
            }
            batch.insert(key, serde_json::to_vec(&entry.at).expect("a timestamp serializes"));
        }
        if added.is_empty() {
            return Ok(0);
        }
        self.ledger.apply_batch(batch).map_err(|e| self.io("write", e))?;
        self.db.flush().map_err(|e| self.io("flush", e))?;
        Ok(added.len())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
