//! `patchward store copy`: an installation's whole store, read out of one
//! backend as typed records ([`Contents`]) and written into an empty other
//! one in one transaction, then read back and compared section by section
//! (how many records, and the sha256 of their canonical JSON). A copy that
//! does not compare equal is reported, never called done.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::exposure::DeviceExposure;
use super::fleet::{AccessToken, AuditEntry, DeviceRecord, EnrollmentToken, Generation, StoredEvent};
use super::{SourceState, StoreError};
use crate::plan::LedgerEntry;

/// Everything a store holds. Secrets stay hashed: tokens and credentials
/// are keyed by the sha256 the store keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contents {
    pub catalog_sources: Vec<SourceState>,
    /// Catalog records by id, as their exact bytes.
    pub catalog_records: Vec<(String, Vec<u8>)>,
    pub ledger: Vec<LedgerEntry>,
    pub enrollment_tokens: Vec<(String, EnrollmentToken)>,
    pub devices: Vec<DeviceRecord>,
    /// (sha256 of the credential, device id).
    pub credentials: Vec<(String, String)>,
    pub events: Vec<(String, StoredEvent)>,
    pub audit: Vec<AuditEntry>,
    /// The last audit sequence number taken.
    pub audit_counter: u64,
    pub desired: Vec<(String, Generation)>,
    pub access_tokens: Vec<(String, AccessToken)>,
    pub engine_state: Vec<(String, serde_json::Value)>,
    pub exposures: Vec<(String, DeviceExposure)>,
}

/// One section's figures: how many records, and their digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: &'static str,
    pub count: usize,
    pub sha256: String,
}

fn section<T: Serialize>(name: &'static str, records: &[T]) -> Section {
    let mut hasher = Sha256::new();
    for record in records {
        hasher.update(serde_json::to_vec(record).expect("store records serialize"));
        hasher.update(b"\n");
    }
    Section { name, count: records.len(), sha256: hex::encode(hasher.finalize()) }
}

impl Contents {
    /// Puts every section in its key order, so two backends' contents
    /// compare equal when they hold the same records.
    pub fn sorted(mut self) -> Contents {
        self.catalog_sources.sort_by(|a, b| a.name.cmp(&b.name));
        self.catalog_records.sort();
        self.ledger.sort_by(|a, b| (&a.rule, &a.patch).cmp(&(&b.rule, &b.patch)));
        self.enrollment_tokens.sort_by(|a, b| a.0.cmp(&b.0));
        self.devices.sort_by(|a, b| a.id.cmp(&b.id));
        self.credentials.sort();
        self.events.sort_by(|a, b| (&a.0, a.1.seq).cmp(&(&b.0, b.1.seq)));
        self.audit.sort_by_key(|e| e.seq);
        self.desired.sort_by(|a, b| a.0.cmp(&b.0));
        self.access_tokens.sort_by(|a, b| a.0.cmp(&b.0));
        self.engine_state.sort_by(|a, b| a.0.cmp(&b.0));
        self.exposures.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    /// Each section's count and digest (of the sorted contents).
    pub fn sections(&self) -> Vec<Section> {
        vec![
            section("catalog sources", &self.catalog_sources),
            section("catalog records", &self.catalog_records),
            section("ledger", &self.ledger),
            section("enrollment tokens", &self.enrollment_tokens),
            section("devices", &self.devices),
            section("credentials", &self.credentials),
            section("events", &self.events),
            section("audit", &self.audit),
            section("audit counter", &[self.audit_counter]),
            section("desired generations", &self.desired),
            section("access tokens", &self.access_tokens),
            section("engine state", &self.engine_state),
            section("exposures", &self.exposures),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self == &Contents::default()
    }
}

/// Where a copy differs from its source.
pub fn differences(from: &[Section], to: &[Section]) -> Vec<String> {
    from.iter()
        .zip(to)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| {
            format!("{}: {} records (sha256 {}) copied as {} (sha256 {})", a.name, a.count, a.sha256, b.count, b.sha256)
        })
        .collect()
}

/// Why a copy was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0} already holds data; a copy goes into an empty store only")]
    NotEmpty(String),
    #[error("the copy in {to} differs from {from}:\n  {}", .differences.join("\n  "))]
    Differs { from: String, to: String, differences: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Copies everything in `from` into the empty `to`, then reads `to` back
/// and compares: the sections as copied, or why not.
pub async fn copy(from: &super::Store, to: &super::Store) -> Result<Vec<Section>, CopyError> {
    if !to.contents().await?.is_empty() {
        return Err(CopyError::NotEmpty(to.location()));
    }
    let contents = from.contents().await?.sorted();
    let expected = contents.sections();
    to.load(contents).await?;
    let copied = to.contents().await?.sorted().sections();
    let differences = differences(&expected, &copied);
    if differences.is_empty() {
        Ok(copied)
    } else {
        Err(CopyError::Differs { from: from.location(), to: to.location(), differences })
    }
}
