//! The embedded backend: sled in `DATA/store`, one process at a time.
//! Its calls block (a write flushes before it returns), so the [`crate::store::Store`]
//! facade runs them on tokio's blocking threads.
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
//! touches, and [`crate::store::Store::verify_catalog`] recomputes it from all.
//!
//! Writes go through [`SledStore::commit_catalog`]: one sled batch (atomic),
//! then a flush; only then is the write acknowledged. After a crash the
//! catalog is therefore exactly the state before or after a commit.

mod durable;
mod exposure;
mod fleet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CatalogChange, CatalogPatch, RecordHead, SourceState, StoreError, StoredRecord};
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

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    catalog: sled::Tree,
    ledger: sled::Tree,
    fleet: sled::Tree,
    exposure: sled::Tree,
    /// Serializes read-modify-write updates of the engine's state.
    state_updates: std::sync::Mutex<()>,
    /// Concurrent writers' flushes, shared ([`durable`]).
    flushes: durable::GroupFlush,
    /// What the admin's lists show of each device, kept with every write.
    directory: crate::store::directory::Directory,
}

fn patch_key(id: &str) -> Vec<u8> {
    format!("patch/{id}").into_bytes()
}

fn source_key(name: &str) -> Vec<u8> {
    format!("source/{name}").into_bytes()
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

impl SledStore {
    /// Opens (or creates) the store in `dir`. A store that sled cannot open
    /// is reported with the way to recover, never silently recreated.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let unreadable = |reason: String| StoreError::Unreadable { path: dir.to_owned(), reason };
        std::fs::create_dir_all(dir).map_err(|e| unreadable(format!("cannot create it: {e}")))?;
        let db = open_sled(&dir.join("store")).map_err(|e| unreadable(e.to_string()))?;
        let catalog = db.open_tree(CATALOG_TREE).map_err(|e| unreadable(e.to_string()))?;
        let ledger = db.open_tree(LEDGER_TREE).map_err(|e| unreadable(e.to_string()))?;
        let fleet = db.open_tree(FLEET_TREE).map_err(|e| unreadable(e.to_string()))?;
        let exposure = db.open_tree(EXPOSURE_TREE).map_err(|e| unreadable(e.to_string()))?;
        let store = SledStore {
            path: dir.to_owned(),
            db,
            catalog,
            ledger,
            fleet,
            exposure,
            state_updates: Default::default(),
            flushes: Default::default(),
            directory: Default::default(),
        };
        match store.catalog.get(b"format").map_err(|e| store.io("read", e))? {
            None => {
                store.catalog.insert(b"format", LAYOUT_VERSION.as_bytes()).map_err(|e| store.io("write", e))?;
                store.durable()?;
            }
            Some(v) if v.as_ref() == LAYOUT_VERSION.as_bytes() => {}
            Some(v) => return Err(unreadable(format!("unknown layout version {:?}", String::from_utf8_lossy(&v)))),
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every write this thread made so far durable (a flush shared
    /// with concurrent writers: [`durable`]).
    fn durable(&self) -> Result<(), StoreError> {
        self.flushes
            .flush(|| self.db.flush().map(drop).map_err(|e| e.to_string()))
            .map_err(|reason| self.io("flush", sled::Error::Io(std::io::Error::other(reason))))
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
        self.durable()?;
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
        self.durable()?;
        Ok(added.len())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl SledStore {
    /// Everything the store holds, for `store copy`.
    pub fn contents(&self) -> Result<crate::store::copy::Contents, StoreError> {
        use crate::store::copy::Contents;
        let mut contents = Contents {
            catalog_sources: self.catalog_sources()?,
            ledger: self.ledger()?.entries().collect(),
            exposures: self.exposures()?.into_iter().collect(),
            ..Contents::default()
        };
        for (id, record) in self.catalog_records()? {
            contents.catalog_records.push((id, record.bytes));
        }
        self.fleet_contents(&mut contents)?;
        Ok(contents)
    }
}
