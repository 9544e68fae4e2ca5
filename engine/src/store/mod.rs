//! The engine's durable store. sled is the embedded backend; nothing
//! outside this module names sled, so another backend (PostgreSQL, for
//! several engine replicas) replaces this module and nothing else.
//!
//! Key layout of the `catalog` tree (values are JSON):
//!
//! | key | value |
//! | --- | --- |
//! | `format` | the layout version, `1` |
//! | `source/{name}` | [`SourceState`]: revision, times, validators, digest of its patches |
//! | `patch/{id}` | [`CatalogPatch`]: the patch and the engine's fields |
//!
//! Writes go through [`Store::commit_catalog`]: one sled batch (atomic),
//! then a flush; only then is the write acknowledged. After a crash the
//! catalog is therefore exactly the state before or after a commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::feed::{Patch, Severity};

const CATALOG_TREE: &str = "catalog";
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
    /// How many `patch/` records belong to this source, and the sha256 over
    /// them in id order: how a torn or corrupted store is recognised.
    pub patch_count: usize,
    pub patches_digest: String,
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
    /// The source revision that last wrote this record.
    pub revision: u64,
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

/// One atomic change to the catalog.
#[derive(Debug, Default)]
pub struct CatalogChange {
    pub sources: Vec<SourceState>,
    pub put: Vec<CatalogPatch>,
    pub delete: Vec<String>,
}

pub struct Store {
    path: PathBuf,
    db: sled::Db,
    catalog: sled::Tree,
}

fn patch_key(id: &str) -> Vec<u8> {
    format!("patch/{id}").into_bytes()
}

fn source_key(name: &str) -> Vec<u8> {
    format!("source/{name}").into_bytes()
}

/// The digest a source's patch records must have: sha256 over each id and
/// encoded record, in id order.
pub fn patches_digest<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for (id, bytes) in records {
        hasher.update((id.len() as u64).to_le_bytes());
        hasher.update(id.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hex::encode(hasher.finalize())
}

pub fn encode_patch(patch: &CatalogPatch) -> Vec<u8> {
    serde_json::to_vec(patch).expect("a catalog patch always serializes")
}

impl Store {
    /// Opens (or creates) the store in `dir`. A store that sled cannot open
    /// is reported with the way to recover, never silently recreated.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let unreadable = |reason: String| StoreError::Unreadable { path: dir.to_owned(), reason };
        std::fs::create_dir_all(dir).map_err(|e| unreadable(format!("cannot create it: {e}")))?;
        let db = sled::Config::new()
            .path(dir.join("store"))
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| unreadable(e.to_string()))?;
        let catalog = db.open_tree(CATALOG_TREE).map_err(|e| unreadable(e.to_string()))?;
        let store = Store { path: dir.to_owned(), db, catalog };
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
    /// nothing rotted. Returns the problems found.
    pub fn verify_catalog(&self) -> Result<(), StoreError> {
        let mut by_source: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for entry in self.catalog.scan_prefix(b"patch/") {
            let (key, value) = entry.map_err(|e| self.io("read", e))?;
            let patch = self.decode_patch(&key, &value)?;
            by_source.entry(patch.source).or_default().push((patch.patch.id, value.to_vec()));
        }
        let sources = self.catalog_sources()?;
        for state in &sources {
            let records = by_source.remove(&state.name).unwrap_or_default();
            if records.len() != state.patch_count {
                return Err(self.corrupted(format!(
                    "source `{}` should have {} patch records, it has {}",
                    state.name,
                    state.patch_count,
                    records.len()
                )));
            }
            let digest = patches_digest(records.iter().map(|(id, bytes)| (id.as_str(), bytes.as_slice())));
            if digest != state.patches_digest {
                return Err(
                    self.corrupted(format!("the patch records of source `{}` do not match their digest", state.name))
                );
            }
        }
        if let Some((source, records)) = by_source.into_iter().next() {
            return Err(self.corrupted(format!("{} patch records belong to unknown source `{source}`", records.len())));
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
        for patch in &change.put {
            batch.insert(patch_key(&patch.patch.id), encode_patch(patch));
        }
        for id in &change.delete {
            batch.remove(patch_key(id));
        }
        self.catalog.apply_batch(batch).map_err(|e| self.io("write", e))?;
        self.db.flush().map_err(|e| self.io("flush", e))?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
