//! Syncing one CatalogSource: fetch its feed within the source's bounds
//! (with the validators of the last fetch, so an unchanged feed is a 304),
//! fetch the detached signature when the source pins a key, and import.
//! What `patchward catalog sync` and the daemon's catalog task both run.

use super::fetch::{self, FetchError, FetchLimits, Fetched, Progress, TokioSleeper, Validators};
use super::{FeedLimits, Freshness, ImportError, ImportMode, ImportReport, ImportRequest, import, record_not_modified};
use crate::policy::Named;
use crate::policy::model::{CatalogSourceSpec, Retention};
use crate::store::{Store, StoreError};

/// What a sync did.
#[derive(Debug)]
pub enum Synced {
    Imported(ImportReport),
    /// A 304: the check is recorded; the freshness says whether the feed in
    /// force is past its expiry (T12).
    NotModified(Freshness),
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("fetch failed: {0}")]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches `source` and imports it into `store`. `revalidate: false`
/// fetches the whole feed even if the store has validators (a rebuild).
pub async fn sync_source(
    store: &Store,
    client: &reqwest::Client,
    source: &Named<CatalogSourceSpec>,
    retention: Retention,
    revalidate: bool,
    now: jiff::Timestamp,
    progress: Progress<'_>,
) -> Result<Synced, SyncError> {
    let limits = FetchLimits {
        total_timeout: source.spec.timeout.value.as_std(),
        max_bytes: source.spec.max_bytes.value,
        retries: source.spec.retries,
        ..FetchLimits::default()
    };
    let validators = match store.catalog_source(&source.name)? {
        Some(state) if revalidate => Validators { etag: state.etag, last_modified: state.last_modified },
        _ => Validators::default(),
    };
    let url = source.spec.url.value.as_str();
    let (bytes, received) = match fetch::fetch(client, url, &validators, &limits, &TokioSleeper, progress).await? {
        Fetched::NotModified => return Ok(Synced::NotModified(record_not_modified(store, &source.name, now)?)),
        Fetched::Body { bytes, validators } => (bytes, validators),
    };
    let signature = match &source.spec.public_key {
        None => None,
        Some(_) => {
            // A missing signature is the import's refusal to name.
            let sig_limits = FetchLimits { max_bytes: 4096, ..limits };
            let sig_url = format!("{url}.sig");
            match fetch::fetch(client, &sig_url, &Validators::default(), &sig_limits, &TokioSleeper, &|_, _| {}).await {
                Ok(Fetched::Body { bytes, .. }) => Some(bytes),
                Ok(Fetched::NotModified) | Err(_) => None,
            }
        }
    };
    let request = ImportRequest {
        source: &source.name,
        format: source.spec.format,
        mode: ImportMode::Snapshot,
        bytes: &bytes,
        signature: signature.as_deref(),
        public_key: source.spec.public_key.as_ref().map(|k| k.value.as_str()),
        pinned_sha256: source.spec.sha256.as_ref().map(|s| s.value.as_str()),
        etag: received.etag,
        last_modified: received.last_modified,
        retention,
        limits: FeedLimits { max_bytes: limits.max_bytes, ..FeedLimits::default() },
        now,
    };
    Ok(Synced::Imported(import(store, &request)?))
}
