//! Syncing one CatalogSource: fetch its feed within the source's bounds
//! (with the validators of the last fetch, so an unchanged feed is a 304),
//! fetch the detached signature when the source pins a key, and import.
//! What `patchward catalog sync` and the daemon's catalog task both run.
//!
//! A source of format `csaf` whose url names a provider's
//! `provider-metadata.json`, or serves one, is a CSAF provider: it is
//! synced document by document ([`super::provider`]). A single CSAF
//! document with an `openpgpKey` must carry its signature at URL + ".asc".

use super::fetch::{self, FetchError, FetchLimits, Fetched, Progress, TokioSleeper, Validators};
use super::openpgp::PublicKey;
use super::{
    FeedLimits, Freshness, ImportError, ImportMode, ImportReport, ImportRequest, Refusal, import, provider,
    record_not_modified,
};
use crate::policy::Named;
use crate::policy::model::{CatalogSourceSpec, FeedFormat, Retention};
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
    /// The source's own settings cannot be used (a key file that cannot be
    /// read); nothing was fetched or changed.
    #[error("the source's settings: {0}")]
    Config(String),
}

impl From<Refusal> for SyncError {
    fn from(refusal: Refusal) -> Self {
        SyncError::Import(ImportError::Refused(refusal))
    }
}

/// One sync's inputs.
pub struct SyncJob<'a> {
    pub store: &'a Store,
    pub client: &'a reqwest::Client,
    pub source: &'a Named<CatalogSourceSpec>,
    pub retention: Retention,
    /// False: fetch everything even if the store has validators (a rebuild).
    pub revalidate: bool,
    pub now: jiff::Timestamp,
    pub limits: FetchLimits,
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
    let job = SyncJob { store, client, source, retention, revalidate, now, limits };
    let csaf = source.spec.format == FeedFormat::Csaf;
    let url = source.spec.url.value.as_str();
    let state = crate::store::Store::wait(store.catalog_source(&source.name))?;
    // A provider's validators are its changes.csv's, never its metadata's.
    let metadata_url = csaf && (provider::is_metadata_url(url) || provider::was_provider(state.as_ref()));
    let validators = match state {
        Some(state) if revalidate && !metadata_url => {
            Validators { etag: state.etag, last_modified: state.last_modified }
        }
        _ => Validators::default(),
    };
    let (bytes, received) = match fetch::fetch(client, url, &validators, &limits, &TokioSleeper, progress).await? {
        Fetched::NotModified => return Ok(Synced::NotModified(record_not_modified(store, &source.name, now)?)),
        Fetched::Body { bytes, validators } => (bytes, validators),
    };
    if csaf && (metadata_url || provider::looks_like_metadata(&bytes)) {
        return provider::sync_provider(&job, &bytes).await;
    }
    let signature = signature(&job, url).await;
    if let Some(key) = &source.spec.openpgp_key {
        check_openpgp(&job, url, &bytes, &key.value).await?;
    }
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
        retention: job.retention.clone(),
        limits: FeedLimits { max_bytes: limits.max_bytes, ..FeedLimits::default() },
        now,
        csaf_provider: None,
    };
    Ok(Synced::Imported(import(store, &request)?))
}

/// The feed's detached ed25519 signature (URL + ".sig") when the source pins
/// a `publicKey`; a missing one is the import's refusal to name.
async fn signature(job: &SyncJob<'_>, url: &str) -> Option<Vec<u8>> {
    job.source.spec.public_key.as_ref()?;
    let limits = FetchLimits { max_bytes: 4096, ..job.limits };
    let sig_url = format!("{url}.sig");
    match fetch::fetch(job.client, &sig_url, &Validators::default(), &limits, &TokioSleeper, &|_, _| {}).await {
        Ok(Fetched::Body { bytes, .. }) => Some(bytes),
        Ok(Fetched::NotModified) | Err(_) => None,
    }
}

/// A single CSAF document's OpenPGP signature (URL + ".asc"), by the key
/// the source names: missing or wrong, the feed is refused.
async fn check_openpgp(job: &SyncJob<'_>, url: &str, bytes: &[u8], key: &str) -> Result<(), SyncError> {
    let key = PublicKey::load(key).map_err(|e| SyncError::Config(format!("`openpgpKey` {e}")))?;
    let limits = FetchLimits { max_bytes: 64 << 10, ..job.limits };
    let asc_url = format!("{url}.asc");
    let signature =
        match fetch::fetch(job.client, &asc_url, &Validators::default(), &limits, &TokioSleeper, &|_, _| {}).await {
            Ok(Fetched::Body { bytes, .. }) => bytes,
            Ok(Fetched::NotModified) | Err(FetchError::Status { status: 404, .. }) => {
                return Err(Refusal::Signature(format!("{asc_url}: missing; the source names an openpgpKey")).into());
            }
            Err(error) => return Err(error.into()),
        };
    key.verify(bytes, &signature).map_err(|e| Refusal::Signature(format!("{asc_url}: {e}")))?;
    Ok(())
}
