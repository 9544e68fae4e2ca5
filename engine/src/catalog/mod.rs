//! The patch catalog: feeds in (patchward, CSAF, OSV), verified, stored
//! atomically, with the engine's own fields (`firstSeen`, `obsoleteSince`,
//! `supersededBy`) and retention.
//!
//! [`plan_import`] is pure: from what the store holds, a feed's bytes and
//! `now`, it decides to refuse (with a reason) or returns the one atomic
//! change to commit. [`import`] reads, plans and commits.

pub mod coverage;
pub mod cvss;
pub mod feed;
pub mod fetch;
pub mod import;
pub mod openpgp;
pub mod provider;
pub mod retention;
pub mod supersedence;
pub mod sync;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::policy::model::{FeedFormat, Retention};
use crate::store::{
    CatalogChange, CatalogPatch, CsafProviderState, EncodedPatch, PatchesDigest, SourceState, Store, StoreError,
    StoredRecord,
};
use feed::{ImportedFeed, Severity};

/// Why a feed was refused. A refused feed changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("sha256 mismatch: the source pins {expected}, the feed is {actual}")]
    Hash { expected: String, actual: String },
    #[error("signature does not verify: {0}")]
    Signature(String),
    #[error("{document}: checksum does not verify: {reason}")]
    Checksum { document: String, reason: String },
    #[error("rollback: the feed's revision {offered} is lower than revision {in_force} in force")]
    Rollback { offered: u64, in_force: u64 },
    #[error("revision {revision} is already in force with different content; a changed feed needs a new revision")]
    Rewritten { revision: u64 },
    #[error("freeze: the feed expired at {expires_at} (now {now})")]
    Expired { expires_at: jiff::Timestamp, now: jiff::Timestamp },
    #[error("the feed is {size} bytes; the limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("the feed is not valid {format}: {reason}")]
    Invalid { format: &'static str, reason: String },
}

/// Why an import did not happen: a refusal (the feed), or the store.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("feed refused: {0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bounds on one feed (RELIABILITY T5, T10).
#[derive(Clone, Copy, Debug)]
pub struct FeedLimits {
    pub max_bytes: u64,
    pub max_patches: usize,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits { max_bytes: 256 << 20, max_patches: 1_000_000 }
    }
}

/// How a feed relates to what its source published before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// The feed is the source's whole catalog: what it omits is obsolete,
    /// and a lower revision is a rollback. Every sync, and every import of
    /// patchward's own format.
    Snapshot,
    /// The feed adds to the source (importing CSAF or OSV advisories one
    /// file at a time): nothing becomes obsolete, and each advisory simply
    /// replaces its earlier copy.
    Merge,
}

/// Everything needed to judge and import one feed.
#[derive(Clone, Debug)]
pub struct ImportRequest<'a> {
    pub source: &'a str,
    pub format: FeedFormat,
    pub mode: ImportMode,
    pub bytes: &'a [u8],
    /// The detached signature (URL + ".sig"): base64 text or 64 raw bytes.
    pub signature: Option<&'a [u8]>,
    /// `ed25519:BASE64`; when set, a signature is required.
    pub public_key: Option<&'a str>,
    /// The sha256 the source pins, if any.
    pub pinned_sha256: Option<&'a str>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub retention: Retention,
    pub limits: FeedLimits,
    pub now: jiff::Timestamp,
    /// A CSAF provider's sync: what it read, recorded in the source's state
    /// in the same commit. None keeps what the state had.
    pub csaf_provider: Option<CsafProviderState>,
}

impl<'a> ImportRequest<'a> {
    /// A snapshot import of `bytes` with no pin, signature or validators,
    /// default retention and limits: what a test, a benchmark or an
    /// offline plan starts from.
    pub fn snapshot(source: &'a str, format: FeedFormat, bytes: &'a [u8], now: jiff::Timestamp) -> ImportRequest<'a> {
        ImportRequest {
            source,
            format,
            mode: ImportMode::Snapshot,
            bytes,
            signature: None,
            public_key: None,
            pinned_sha256: None,
            etag: None,
            last_modified: None,
            retention: Retention::default(),
            limits: FeedLimits::default(),
            now,
            csaf_provider: None,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    pub source: String,
    pub revision: u64,
    pub previous_revision: Option<u64>,
    pub patches: usize,
    pub added: usize,
    pub updated: usize,
    pub obsoleted: usize,
    pub purged: usize,
    /// The same content was already in force; only the check time moved.
    pub unchanged: bool,
    pub warnings: Vec<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a detached ed25519 signature over the exact feed bytes.
pub fn verify_signature(bytes: &[u8], signature: Option<&[u8]>, public_key: &str) -> Result<(), Refusal> {
    let key = public_key
        .strip_prefix("ed25519:")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
        .ok_or_else(|| Refusal::Signature("the source's publicKey is not `ed25519:BASE64` of 32 bytes".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|e| Refusal::Signature(format!("the source's publicKey is not a valid ed25519 key: {e}")))?;
    let signature = signature.ok_or_else(|| Refusal::Signature("the feed has no signature (URL + \".sig\")".into()))?;
    let raw: Vec<u8> = if signature.len() == 64 {
        signature.to_vec()
    } else {
        let text = std::str::from_utf8(signature).map(str::trim).unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| Refusal::Signature("the signature is neither 64 bytes nor base64 of them".into()))?
    };
    let raw = <[u8; 64]>::try_from(raw.as_slice())
        .map_err(|_| Refusal::Signature(format!("the signature is {} bytes; ed25519 signatures are 64", raw.len())))?;
    key.verify_strict(bytes, &ed25519_dalek::Signature::from_bytes(&raw))
        .map_err(|_| Refusal::Signature("it was not made by the source's key over these bytes".into()))
}

/// The catalog as an import sees it: every source's state, and every
/// record's head and stored bytes (patches are not decoded).
#[derive(Clone, Debug, Default)]
pub struct CatalogSnapshot {
    pub sources: BTreeMap<String, SourceState>,
    pub records: BTreeMap<String, StoredRecord>,
}

impl CatalogSnapshot {
    pub fn read(store: &Store) -> Result<CatalogSnapshot, StoreError> {
        Ok(CatalogSnapshot {
            sources: crate::store::Store::wait(store.catalog_sources())?
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            records: crate::store::Store::wait(store.catalog_records())?,
        })
    }
}

/// Judges a feed against the catalog and computes the change to commit.
/// Pure: no IO, `now` given.
pub fn plan_import(
    snapshot: &CatalogSnapshot,
    request: &ImportRequest,
) -> Result<(CatalogChange, ImportReport), Refusal> {
    let (digest, _) = judge_bytes(&snapshot.sources, request)?;
    plan_judged(snapshot, request, digest)
}

/// [`plan_import`] for bytes [`judge_bytes`] already accepted (`digest` is
/// their sha256): parse, freeze, rollback, and the change itself.
fn plan_judged(
    snapshot: &CatalogSnapshot,
    request: &ImportRequest,
    digest: String,
) -> Result<(CatalogChange, ImportReport), Refusal> {
    let feed = import::parse(request.format, request.bytes, &request.limits)?;
    plan_parsed(snapshot, request, feed, digest)
}

/// [`plan_judged`] for a feed already parsed: freeze, rollback, and the
/// change itself.
fn plan_parsed(
    snapshot: &CatalogSnapshot,
    request: &ImportRequest,
    feed: ImportedFeed,
    digest: String,
) -> Result<(CatalogChange, ImportReport), Refusal> {
    let previous = snapshot.sources.get(request.source);
    if let Some(expires_at) = feed.expires_at
        && expires_at <= request.now
    {
        return Err(Refusal::Expired { expires_at, now: request.now });
    }
    if let Some(previous) = previous.filter(|_| request.mode == ImportMode::Snapshot) {
        if feed.revision < previous.revision {
            return Err(Refusal::Rollback { offered: feed.revision, in_force: previous.revision });
        }
        if feed.revision == previous.revision && previous.feed_sha256 != digest {
            return Err(Refusal::Rewritten { revision: feed.revision });
        }
    }
    build_change(snapshot, request, feed, digest, previous).map_err(|e| Refusal::Invalid {
        format: import::format_name(request.format),
        reason: format!("the catalog holds a record that does not decode: {e}"),
    })
}

/// The checks that need only the bytes: size, pinned digest, signature.
fn judge_bytes<'s>(
    sources: &'s BTreeMap<String, SourceState>,
    request: &ImportRequest,
) -> Result<(String, Option<&'s SourceState>), Refusal> {
    let size = request.bytes.len() as u64;
    if size > request.limits.max_bytes {
        return Err(Refusal::TooLarge { size, limit: request.limits.max_bytes });
    }
    let digest = sha256_hex(request.bytes);
    if let Some(expected) = request.pinned_sha256
        && !expected.eq_ignore_ascii_case(&digest)
    {
        return Err(Refusal::Hash { expected: expected.to_lowercase(), actual: digest });
    }
    if let Some(key) = request.public_key {
        verify_signature(request.bytes, request.signature, key)?;
    }
    Ok((digest, sources.get(request.source)))
}

/// The same bytes as the feed in force: nothing to parse or rewrite. Only
/// the check time moves, and obsolete patches past retention are purged.
/// `obsolete_records` are the stored bytes of the source's obsolete patches.
pub fn plan_unchanged(
    previous: &SourceState,
    obsolete_records: &BTreeMap<String, Vec<u8>>,
    request: &ImportRequest,
) -> (CatalogChange, ImportReport) {
    let mut state = previous.clone();
    state.checked_at = request.now;
    state.etag = request.etag.clone().or(state.etag);
    state.last_modified = request.last_modified.clone().or(state.last_modified);
    let mut change = CatalogChange::default();
    let mut digest = PatchesDigest::from_hex(&previous.patches_digest).unwrap_or_default();
    for (id, since) in &previous.obsolete {
        if retention_expired(*since, &request.retention, request.now)
            && let Some(bytes) = obsolete_records.get(id)
        {
            digest.toggle(id, bytes);
            state.patch_count -= 1;
            state.obsolete.remove(id);
            change.delete.push(id.clone());
        }
    }
    state.patches_digest = digest.to_hex();
    let report = ImportReport {
        source: request.source.to_owned(),
        revision: previous.revision,
        previous_revision: Some(previous.revision),
        patches: previous.patch_count - previous.obsolete.len(),
        purged: change.delete.len(),
        unchanged: true,
        ..ImportReport::default()
    };
    change.sources.push(state);
    (change, report)
}

fn retention_expired(since: jiff::Timestamp, retention: &Retention, now: jiff::Timestamp) -> bool {
    let keep = jiff::SignedDuration::from_hours(24 * i64::from(retention.obsolete_metadata_days));
    since.checked_add(keep).is_ok_and(|until| until <= now)
}

/// The records a change keeps for a source: writes only what differs from
/// the stored bytes, and digests and counts everything it keeps.
#[derive(Default)]
struct Kept {
    change: CatalogChange,
    digest: PatchesDigest,
    count: usize,
    obsolete: BTreeMap<String, jiff::Timestamp>,
}

impl Kept {
    fn keep(&mut self, encoded: EncodedPatch, stored: Option<&StoredRecord>) {
        self.digest.toggle(&encoded.id, &encoded.bytes);
        self.count += 1;
        if stored.is_none_or(|s| s.bytes != encoded.bytes) {
            self.change.put.push(encoded);
        }
    }

    /// A stored record kept as it is.
    fn keep_stored(&mut self, id: &str, stored: &StoredRecord) {
        self.keep(EncodedPatch { id: id.to_owned(), bytes: stored.bytes.clone() }, Some(stored));
    }
}

fn build_change(
    snapshot: &CatalogSnapshot,
    request: &ImportRequest,
    feed: ImportedFeed,
    digest: String,
    previous: Option<&SourceState>,
) -> Result<(CatalogChange, ImportReport), serde_json::Error> {
    let revision = match (request.mode, previous) {
        (ImportMode::Merge, Some(previous)) => previous.revision.max(feed.revision),
        _ => feed.revision,
    };
    let mut report = ImportReport {
        source: request.source.to_owned(),
        revision,
        previous_revision: previous.map(|p| p.revision),
        patches: feed.patches.len(),
        warnings: feed.warnings,
        ..ImportReport::default()
    };
    let mut kept = Kept::default();
    let in_feed = keep_feed_patches(snapshot, request, feed.patches, &mut kept, &mut report);
    keep_absent_patches(snapshot, request, &in_feed, &mut kept, &mut report)?;

    report.unchanged = kept.change.put.is_empty() && kept.change.delete.is_empty();
    let now = request.now;
    let state = SourceState {
        name: request.source.to_owned(),
        revision,
        generated_at: feed.generated_at,
        expires_at: feed.expires_at,
        imported_at: if report.unchanged { previous.map(|p| p.imported_at).unwrap_or(now) } else { now },
        checked_at: now,
        etag: request.etag.clone(),
        last_modified: request.last_modified.clone(),
        feed_sha256: digest,
        patch_count: kept.count,
        patches_digest: kept.digest.to_hex(),
        obsolete: kept.obsolete,
        csaf_provider: request.csaf_provider.clone().or_else(|| previous.and_then(|p| p.csaf_provider.clone())),
    };
    let mut change = kept.change;
    change.sources.push(state);
    Ok((change, report))
}

/// Keeps the feed's patches (with the engine's fields) and returns their
/// ids. A patch another source already published is left to it.
fn keep_feed_patches(
    snapshot: &CatalogSnapshot,
    request: &ImportRequest,
    patches: Vec<feed::Patch>,
    kept: &mut Kept,
    report: &mut ImportReport,
) -> BTreeSet<String> {
    use rayon::prelude::*;
    let supersedence = supersedence::compute(patches.iter().map(|p| (p.id.as_str(), p.supersedes.as_slice())));
    for cycle in &supersedence.cycles {
        report.warnings.push(format!("supersedence cycle: {}", cycle.join(" → ")));
    }
    // Encoding is most of an import's work, and each patch's is its own:
    // done on every core, then kept in the feed's order.
    let prepared: Vec<Prepared> = patches.into_par_iter().map(|patch| prepare(snapshot, request, patch)).collect();
    let mut in_feed = BTreeSet::new();
    for prepared in prepared {
        match prepared {
            Prepared::Foreign { id, source } => {
                report.warnings.push(format!(
                    "patch {id} is already published by source `{source}`; this source's copy is ignored"
                ));
                in_feed.insert(id);
            }
            Prepared::Record { encoded, existing, warning } => {
                report.warnings.extend(warning);
                match existing {
                    None => report.added += 1,
                    Some(old) if old.bytes != encoded.bytes => report.updated += 1,
                    Some(_) => {}
                }
                in_feed.insert(encoded.id.clone());
                kept.keep(encoded, existing);
            }
        }
    }
    in_feed
}

/// One feed patch, ready to keep.
enum Prepared<'s> {
    /// Another source published it first.
    Foreign {
        id: String,
        source: String,
    },
    Record {
        encoded: EncodedPatch,
        existing: Option<&'s StoredRecord>,
        warning: Option<String>,
    },
}

fn prepare<'s>(snapshot: &'s CatalogSnapshot, request: &ImportRequest, patch: feed::Patch) -> Prepared<'s> {
    let existing = snapshot.records.get(&patch.id);
    if let Some(other) = existing.filter(|e| e.head.source != request.source) {
        return Prepared::Foreign { id: patch.id, source: other.head.source.clone() };
    }
    let (score, severity, warning) = effective_severity(&patch);
    let record = CatalogPatch {
        source: request.source.to_owned(),
        first_seen: existing.map(|e| e.head.first_seen).unwrap_or(request.now),
        obsolete_since: None,
        score,
        severity,
        patch,
    };
    Prepared::Record { encoded: EncodedPatch::new(&record), existing, warning }
}

/// The source's patches the feed does not list. A merge keeps them as they
/// are; a snapshot makes them obsolete (once), and purges them when
/// obsolete beyond the retention.
fn keep_absent_patches(
    snapshot: &CatalogSnapshot,
    request: &ImportRequest,
    in_feed: &BTreeSet<String>,
    kept: &mut Kept,
    report: &mut ImportReport,
) -> Result<(), serde_json::Error> {
    let now = request.now;
    let absent = snapshot.records.iter().filter(|(id, r)| r.head.source == request.source && !in_feed.contains(*id));
    for (id, old) in absent {
        if request.mode == ImportMode::Merge {
            // An earlier snapshot's obsolete patch stays obsolete, and
            // counted as such.
            if let Some(since) = old.head.obsolete_since {
                kept.obsolete.insert(id.clone(), since);
            }
            kept.keep_stored(id, old);
            continue;
        }
        let since = old.head.obsolete_since.unwrap_or(now);
        if old.head.obsolete_since.is_none() {
            report.obsoleted += 1;
        }
        if retention_expired(since, &request.retention, now) {
            report.purged += 1;
            kept.change.delete.push(id.clone());
            continue;
        }
        kept.obsolete.insert(id.clone(), since);
        if old.head.obsolete_since.is_some() {
            kept.keep_stored(id, old);
        } else {
            let mut record: CatalogPatch = serde_json::from_slice(&old.bytes)?;
            record.obsolete_since = Some(since);
            kept.keep(EncodedPatch::new(&record), Some(old));
        }
    }
    Ok(())
}

/// The severity a patch counts with: the feed's, or derived from its CVSS
/// vector's base score (computed when the feed gives none). A security
/// patch with neither is `unrated`, never "informational" (not a security
/// fix).
fn effective_severity(patch: &feed::Patch) -> (Option<f64>, Severity, Option<String>) {
    let given_score = patch.cvss.as_ref().and_then(|c| c.score);
    let computed = patch.cvss.as_ref().filter(|_| given_score.is_none()).map(|c| cvss::base_score(&c.vector));
    let (score, warning) = match computed {
        Some(Ok(score)) => (Some(score), None),
        Some(Err(e)) => (None, Some(format!("patch {}: {e}", patch.id))),
        None => (given_score, None),
    };
    let unscored = if patch.category == crate::policy::model::Category::Security {
        Severity::Unrated
    } else {
        Severity::Informational
    };
    let severity = patch.severity.or_else(|| score.map(Severity::from_score)).unwrap_or(unscored);
    (score, severity, warning)
}

/// Reads the catalog, judges the feed, and commits the change atomically.
///
/// A feed whose bytes are those in force is judged without reading the
/// whole catalog: a sync that finds nothing new costs a hash.
pub fn import(store: &Store, request: &ImportRequest) -> Result<ImportReport, ImportError> {
    let sources: BTreeMap<String, SourceState> =
        crate::store::Store::wait(store.catalog_sources())?.into_iter().map(|s| (s.name.clone(), s)).collect();
    let (digest, previous) = judge_bytes(&sources, request)?;
    if let Some(previous) = previous.filter(|p| p.feed_sha256 == digest && request.mode == ImportMode::Snapshot) {
        if let Some(expires_at) = previous.expires_at
            && expires_at <= request.now
        {
            return Err(Refusal::Expired { expires_at, now: request.now }.into());
        }
        let mut obsolete_records = BTreeMap::new();
        for id in previous.obsolete.keys() {
            if let Some(bytes) = crate::store::Store::wait(store.catalog_record(id))? {
                obsolete_records.insert(id.clone(), bytes);
            }
        }
        let (change, report) = plan_unchanged(previous, &obsolete_records, request);
        crate::store::Store::wait(store.commit_catalog(change))?;
        return Ok(report);
    }
    let snapshot = CatalogSnapshot { sources, records: crate::store::Store::wait(store.catalog_records())? };
    // The bytes were judged above; hashing and verifying them again would
    // only repeat the answer.
    let (change, report) = plan_judged(&snapshot, request, digest)?;
    crate::store::Store::wait(store.commit_catalog(change))?;
    Ok(report)
}

/// Imports advisories already fetched, checked and parsed one document at a
/// time (a CSAF provider's changed documents, see [`provider`]).
/// `request.bytes` are what the source's state is judged and digested by
/// (the provider's `changes.csv`); `feed` holds the patches. Checked like
/// any feed's, and committed in one change like [`import`]'s.
pub fn import_parsed(store: &Store, request: &ImportRequest, feed: ImportedFeed) -> Result<ImportReport, ImportError> {
    let sources: BTreeMap<String, SourceState> =
        crate::store::Store::wait(store.catalog_sources())?.into_iter().map(|s| (s.name.clone(), s)).collect();
    let (digest, _) = judge_bytes(&sources, request)?;
    import::check_patches(request.format, &feed, &request.limits)?;
    let snapshot = CatalogSnapshot { sources, records: crate::store::Store::wait(store.catalog_records())? };
    let (change, report) = plan_parsed(&snapshot, request, feed, digest)?;
    crate::store::Store::wait(store.commit_catalog(change))?;
    Ok(report)
}

/// Whether a source's feed in force may still be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Past its `expiresAt`: reported, never silently fresh (T12).
    Stale {
        revision: u64,
        expired_at: jiff::Timestamp,
    },
    /// Nothing was ever imported from this source.
    Unknown,
}

pub fn freshness(state: Option<&SourceState>, now: jiff::Timestamp) -> Freshness {
    match state {
        None => Freshness::Unknown,
        Some(state) => match state.expires_at {
            Some(expired_at) if expired_at <= now => Freshness::Stale { revision: state.revision, expired_at },
            _ => Freshness::Fresh,
        },
    }
}

/// Records that the source was checked and had nothing new (HTTP 304), and
/// says whether what is in force is still fresh.
pub fn record_not_modified(store: &Store, source: &str, now: jiff::Timestamp) -> Result<Freshness, StoreError> {
    let Some(mut state) = crate::store::Store::wait(store.catalog_source(source))? else {
        return Ok(Freshness::Unknown);
    };
    state.checked_at = now;
    crate::store::Store::wait(
        store.commit_catalog(CatalogChange { sources: vec![state.clone()], ..CatalogChange::default() }),
    )?;
    Ok(freshness(Some(&state), now))
}

/// A feed file read as a whole catalog, without a store: what an offline
/// plan (`patchward plan --catalog FILE`) works on. The feed is judged as
/// an import into an empty catalog would judge it (format, limits, expiry
/// at `now`), and the records are those that import would write.
pub fn offline_catalog(
    format: FeedFormat,
    bytes: &[u8],
    now: jiff::Timestamp,
) -> Result<(Vec<CatalogPatch>, ImportReport), Refusal> {
    let request = ImportRequest::snapshot("offline", format, bytes, now);
    let (change, report) = plan_import(&CatalogSnapshot::default(), &request)?;
    let records = change
        .put
        .iter()
        .map(|encoded| {
            serde_json::from_slice::<CatalogPatch>(&encoded.bytes).map_err(|e| Refusal::Invalid {
                format: import::format_name(format),
                reason: format!("a record does not decode: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((records, report))
}
