//! The device directory: what the admin's lists show of every enrolled
//! device (its id, facts, when it enrolled and was last seen, what it
//! reported), held in memory by each backend.
//!
//! Why: the device list and the installs view read the whole fleet at each
//! request. Reading and decoding every device record (inventory included)
//! each time cost more than the rest of those views together, and grows
//! with the fleet. The directory is read by cloning its entries' `Arc`s.
//!
//! How it stays true:
//! - It is loaded at the first read, not at start: an engine whose console
//!   nobody opens pays nothing for it.
//! - The embedded store is its only writer, so after each acknowledged
//!   write of a device it reads that device's entry again, under the
//!   directory's lock ([`Directory::refresh`]). The last writer to take the
//!   lock reads the latest record, so the directory ends where the store
//!   does, whatever order the writers' commits and refreshes came in.
//! - On PostgreSQL other replicas write too. Every device row carries the
//!   id of the transaction that last wrote it; each read first takes the
//!   rows written since the oldest transaction still running at the last
//!   read ([`Directory::catch_up`]), so no commit is ever skipped, however
//!   late it lands.
//!
//! Architecture invariant: an entry is decoded from the device's stored
//! record and nothing else; the directory never holds what the store does
//! not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;

use super::StoreError;

/// A device as the admin's lists show it: its record without the
/// inventory (the largest part, which no list shows).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceEntry {
    pub id: String,
    pub facts: patchward_api::Facts,
    pub enrolled_at: jiff::Timestamp,
    pub last_seen: jiff::Timestamp,
    /// The latest outcome the device reported per patch.
    #[serde(default)]
    pub reports: Vec<patchward_api::Report>,
}

/// Every device's entry by id, once loaded.
#[derive(Debug, Default)]
pub struct Directory {
    loaded: Mutex<Option<Loaded>>,
    /// Held while a PostgreSQL catch-up reads and applies its rows, so two
    /// catch-ups never apply out of order.
    catching_up: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Loaded {
    entries: BTreeMap<String, Arc<DeviceEntry>>,
    /// PostgreSQL: the oldest transaction that may still have been running
    /// at the last catch-up. Rows written by it or later are read again.
    since: u64,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every entry by id, loading them with `load_all` the first time (the
    /// lock held meanwhile, so no write's refresh slips between).
    pub fn entries(
        &self,
        load_all: impl FnOnce() -> Result<Vec<DeviceEntry>, StoreError>,
    ) -> Result<Vec<Arc<DeviceEntry>>, StoreError> {
        let mut loaded = self.lock();
        if loaded.is_none() {
            let entries = load_all()?.into_iter().map(|e| (e.id.clone(), Arc::new(e))).collect();
            *loaded = Some(Loaded { entries, since: 0 });
        }
        Ok(loaded.as_ref().map(|l| l.entries.values().cloned().collect()).unwrap_or_default())
    }

    /// Reads `id`'s entry again with `read` after a write of it; nothing
    /// while the directory is not loaded (its load will read it).
    pub fn refresh(&self, id: &str, read: impl FnOnce() -> Result<Option<DeviceEntry>, StoreError>) {
        let mut guard = self.lock();
        let Some(loaded) = guard.as_mut() else { return };
        match read() {
            Ok(Some(entry)) => {
                loaded.entries.insert(id.to_owned(), Arc::new(entry));
            }
            Ok(None) => {
                loaded.entries.remove(id);
            }
            // The write stands; only the directory cannot follow it: load
            // it all again at the next read rather than show a stale entry.
            Err(e) => {
                tracing::warn!(device = id, error = %e, "the device directory will be loaded again");
                *guard = None;
            }
        }
    }

    /// Every entry by id, after taking in the rows written since the last
    /// catch-up (all of them the first time): `read_since(since)` returns
    /// those written by transaction `since` or later, and the oldest
    /// transaction still running when it read them.
    pub async fn catch_up<F, R>(&self, read_since: F) -> Result<Vec<Arc<DeviceEntry>>, StoreError>
    where
        F: FnOnce(u64) -> R,
        R: std::future::Future<Output = Result<(Vec<DeviceEntry>, u64), StoreError>>,
    {
        let _one_at_a_time = self.catching_up.lock().await;
        let since = self.lock().as_ref().map_or(0, |l| l.since);
        let (written, oldest_running) = read_since(since).await?;
        let mut guard = self.lock();
        let loaded = guard.get_or_insert_with(|| Loaded { entries: BTreeMap::new(), since: 0 });
        for entry in written {
            loaded.entries.insert(entry.id.clone(), Arc::new(entry));
        }
        loaded.since = oldest_running;
        Ok(loaded.entries.values().cloned().collect())
    }
}
