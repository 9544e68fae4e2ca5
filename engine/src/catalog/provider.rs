//! A CSAF provider as a CatalogSource (CSAF 2.0 §7.1): a source of format
//! `csaf` whose `url` ends in `provider-metadata.json`, or serves that
//! document, is synced document by document:
//!
//! 1. **Metadata.** The provider's `provider-metadata.json` names its
//!    distributions; the first one with a `directory_url` is read.
//!    ROLIE-only providers are refused with that said.
//! 2. **Changes.** The directory's `changes.csv` lists every document as
//!    `"path","timestamp"` (RFC 3339), path relative to the directory. It
//!    is fetched with the last sync's validators (a 304 costs nothing
//!    more). A malformed line refuses the sync, naming the line.
//! 3. **Documents.** Only the documents whose timestamp is after the newest
//!    one the last sync imported (`changesThrough` in the source's state)
//!    are fetched, [`CONCURRENCY`] at a time; a first sync fetches all. A
//!    path listed twice counts with its newest time. A path outside the
//!    directory, or not a `.json` file, refuses the sync.
//! 4. **Checks.** Each document is checked against its `.sha256` (else its
//!    `.sha512`) file, `HEX  filename`; a provider that publishes neither is
//!    refused. When the source names an `openpgpKey`, each document's
//!    `.asc` must be a signature by that key over its bytes (see
//!    [`super::openpgp`]); without one, signatures are not fetched.
//! 5. **Import.** The changed documents' advisories are merged into the
//!    source ([`ImportMode::Merge`]): documents not changed keep their
//!    patches. The new `changesThrough` (the newest time in `changes.csv`)
//!    is committed with them, in one change.
//!
//! Any failed fetch, checksum or signature refuses the whole sync: nothing
//! is written, the last good state stays, and the next sync tries the same
//! documents again. A document that verifies but is no CSAF advisory is
//! skipped with a warning naming its path.
//!
//! A document changed at exactly the instant `changesThrough` records, but
//! listed only after that sync, would be missed: providers stamp a change
//! with its document's `current_release_date`, which moves forward.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::Digest as _;

use super::feed::ImportedFeed;
use super::fetch::{self, FetchError, FetchLimits, Fetched, TokioSleeper, Validators};
use super::openpgp::PublicKey;
use super::sync::{SyncError, SyncJob, Synced};
use super::{FeedLimits, ImportMode, ImportRequest, Refusal, import, import_parsed, record_not_modified};
use crate::policy::model::{CatalogSourceSpec, FeedFormat};
use crate::store::{CsafProviderState, SourceState};

/// Documents fetched at once.
pub const CONCURRENCY: usize = 8;

/// A checksum file or signature larger than this is no checksum or
/// signature.
const MAX_SIDE_FILE_BYTES: u64 = 64 << 10;

const METADATA: &str = "CSAF provider metadata";
const CHANGES: &str = "CSAF provider changes.csv";
const PROVIDER: &str = "CSAF provider";

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    distributions: Vec<Distribution>,
}

#[derive(Deserialize)]
struct Distribution {
    #[serde(default)]
    directory_url: Option<String>,
    #[serde(default)]
    rolie: Option<serde::de::IgnoredAny>,
}

/// Whether a source's url names a provider's metadata.
pub fn is_metadata_url(url: &str) -> bool {
    url.split(['?', '#']).next().is_some_and(|path| path.ends_with("/provider-metadata.json"))
}

/// Whether `bytes` are a provider's metadata rather than an advisory.
pub fn looks_like_metadata(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[allow(dead_code)] // its presence is the test
        metadata_version: String,
        #[allow(dead_code)]
        distributions: serde::de::IgnoredAny,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok()
}

/// The provider's directory, from its metadata: the first distribution's
/// `directory_url`, resolved against `metadata_url` and ending in `/`.
pub fn directory(metadata: &[u8], metadata_url: &str) -> Result<url::Url, Refusal> {
    let invalid = |reason: String| Refusal::Invalid { format: METADATA, reason };
    let parsed: Metadata = serde_json::from_slice(metadata).map_err(|e| invalid(e.to_string()))?;
    let Some(directory) = parsed.distributions.iter().find_map(|d| d.directory_url.as_deref()) else {
        let reason = if parsed.distributions.iter().any(|d| d.rolie.is_some()) {
            "the provider publishes only ROLIE feeds; patchward reads a provider's directory \
             (`distributions[].directory_url`)"
        } else {
            "no distribution names a `directory_url`"
        };
        return Err(invalid(reason.into()));
    };
    let base = url::Url::parse(metadata_url).map_err(|e| invalid(format!("{metadata_url}: {e}")))?;
    let mut url = base.join(directory).map_err(|e| invalid(format!("`directory_url` {directory}: {e}")))?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// One line of `changes.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub changed: jiff::Timestamp,
}

/// Parses `changes.csv`: `"path","timestamp"` per line, blank lines
/// ignored. The error names the line.
pub fn parse_changes(bytes: &[u8]) -> Result<Vec<Change>, Refusal> {
    let invalid = |reason: String| Refusal::Invalid { format: CHANGES, reason };
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let mut changes = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |reason: String| invalid(format!("line {}: {reason}", index + 1));
        let fields = csv_fields(line.trim_end_matches('\r')).map_err(at)?;
        let [path, changed] = fields.as_slice() else {
            return Err(at(format!("{} fields; a line is \"path\",\"timestamp\"", fields.len())));
        };
        let changed = changed.parse().map_err(|e| at(format!("`{changed}` is not an RFC 3339 instant: {e}")))?;
        changes.push(Change { path: path.clone(), changed });
    }
    Ok(changes)
}

/// The fields of one CSV line: quoted (`""` for a quote) or bare.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => field.push(chars.next().unwrap_or('"')),
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                field.push(c);
            }
        }
        fields.push(field);
        match chars.next() {
            None => return Ok(fields),
            Some(',') => {}
            Some(c) => return Err(format!("`{c}` after a quoted field; fields are separated by commas")),
        }
    }
}

/// The documents to fetch, sorted by path: those changed after `since`
/// (all without it), each once with its newest time.
pub fn changed_since(changes: &[Change], since: Option<jiff::Timestamp>) -> Vec<Change> {
    let mut newest: BTreeMap<&str, jiff::Timestamp> = BTreeMap::new();
    for change in changes {
        let entry = newest.entry(change.path.as_str()).or_insert(change.changed);
        *entry = (*entry).max(change.changed);
    }
    newest
        .into_iter()
        .filter(|(_, changed)| since.is_none_or(|since| *changed > since))
        .map(|(path, changed)| Change { path: path.to_owned(), changed })
        .collect()
}

/// A document's URL: `path` under the directory, and a `.json` file.
pub fn document_url(directory: &url::Url, path: &str) -> Result<url::Url, Refusal> {
    let invalid = |reason: String| Refusal::Invalid { format: CHANGES, reason };
    let url = directory.join(path).map_err(|e| invalid(format!("`{path}`: {e}")))?;
    if !url.as_str().starts_with(directory.as_str()) || !url.path().ends_with(".json") {
        return Err(invalid(format!("`{path}` is not a .json document under the directory {directory}")));
    }
    Ok(url)
}

/// The digests a provider publishes beside a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    Sha256,
    Sha512,
}

impl Checksum {
    pub const fn extension(self) -> &'static str {
        match self {
            Checksum::Sha256 => "sha256",
            Checksum::Sha512 => "sha512",
        }
    }

    fn digest(self, bytes: &[u8]) -> String {
        match self {
            Checksum::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Checksum::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        }
    }

    /// Checks `document` (served at `url`) against the checksum file's
    /// `HEX  filename` (or `HEX *filename`, or `HEX` alone).
    pub fn check(self, url: &url::Url, document: &[u8], file: &[u8]) -> Result<(), Refusal> {
        let refuse = |reason: String| Refusal::Checksum { document: url.to_string(), reason };
        let text = std::str::from_utf8(file).unwrap_or_default();
        let mut words = text.split_whitespace();
        let expected = words.next().unwrap_or_default().to_ascii_lowercase();
        let length = self.digest(b"").len();
        if expected.len() != length || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(format!("its .{} file holds no {length}-digit hex digest", self.extension())));
        }
        let own_name = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default();
        if let Some(named) = words.next().map(|n| n.trim_start_matches('*'))
            && named.rsplit('/').next() != Some(own_name)
        {
            return Err(refuse(format!("its .{} file is for `{named}`", self.extension())));
        }
        let actual = self.digest(document);
        if actual != expected {
            return Err(refuse(format!("its .{} file says {expected}, the document is {actual}", self.extension())));
        }
        Ok(())
    }
}

/// What one provider sync works with.
struct Provider<'a> {
    client: &'a reqwest::Client,
    limits: FetchLimits,
    key: Option<PublicKey>,
}

/// Syncs the provider whose metadata `metadata` was fetched from the
/// source's url (the steps of the module doc).
pub async fn sync_provider(job: &SyncJob<'_>, metadata: &[u8]) -> Result<Synced, SyncError> {
    let spec = &job.source.spec;
    refuse_feed_checks(spec)?;
    let key = match &spec.openpgp_key {
        Some(value) => Some(PublicKey::load(&value.value).map_err(|e| SyncError::Config(format!("`openpgpKey` {e}")))?),
        None => None,
    };
    let provider = Provider { client: job.client, limits: job.limits, key };
    let directory = directory(metadata, &spec.url.value)?;
    let state = crate::store::Store::wait(job.store.catalog_source(&job.source.name))?.filter(|_| job.revalidate);
    let since = state.as_ref().and_then(|s| s.csaf_provider.as_ref()).and_then(|p| p.changes_through);
    let validators = match state.filter(|s| s.csaf_provider.is_some()) {
        Some(state) => Validators { etag: state.etag, last_modified: state.last_modified },
        None => Validators::default(),
    };
    let changes_url = directory.join("changes.csv").map_err(|e| SyncError::Config(e.to_string()))?;
    let (changes_bytes, received) = match provider.get(changes_url.as_str(), &validators).await? {
        Fetched::NotModified => {
            return Ok(Synced::NotModified(record_not_modified(job.store, &job.source.name, job.now)?));
        }
        Fetched::Body { bytes, validators } => (bytes, validators),
    };
    let changes = parse_changes(&changes_bytes)?;
    let feed = provider.fetch_changed(&directory, &changed_since(&changes, since)).await?;
    let newest = changes.iter().map(|c| c.changed).max();
    let feed = ImportedFeed { revision: newest.map_or(0, import::revision_of), generated_at: newest, ..feed };
    let request = ImportRequest {
        etag: received.etag,
        last_modified: received.last_modified,
        retention: job.retention.clone(),
        limits: FeedLimits { max_bytes: job.limits.max_bytes, ..FeedLimits::default() },
        mode: ImportMode::Merge,
        csaf_provider: Some(CsafProviderState { changes_through: since.max(newest) }),
        ..ImportRequest::snapshot(&job.source.name, FeedFormat::Csaf, &changes_bytes, job.now)
    };
    Ok(Synced::Imported(import_parsed(job.store, &request, feed)?))
}

/// A provider's documents are checked by their own checksums and
/// signatures; a pin or an ed25519 key of one feed's bytes has nothing to
/// apply to.
fn refuse_feed_checks(spec: &CatalogSourceSpec) -> Result<(), SyncError> {
    if spec.sha256.is_some() || spec.public_key.is_some() {
        let reason = "a CSAF provider's documents are checked against their own .sha256/.sha512 files and \
                      the source's `openpgpKey`; `sha256` and `publicKey` do not apply to it"
            .into();
        return Err(Refusal::Invalid { format: PROVIDER, reason }.into());
    }
    Ok(())
}

/// Whether the state says the source is a provider (its url may not say).
pub fn was_provider(state: Option<&SourceState>) -> bool {
    state.is_some_and(|s| s.csaf_provider.is_some())
}

impl Provider<'_> {
    async fn get(&self, url: &str, validators: &Validators) -> Result<Fetched, FetchError> {
        fetch::fetch(self.client, url, validators, &self.limits, &TokioSleeper, &|_, _| {}).await
    }

    /// A checksum file or signature beside a document; None when the
    /// provider has none (404).
    async fn side_file(&self, url: &str) -> Result<Option<Vec<u8>>, FetchError> {
        let limits = FetchLimits { max_bytes: MAX_SIDE_FILE_BYTES, ..self.limits };
        match fetch::fetch(self.client, url, &Validators::default(), &limits, &TokioSleeper, &|_, _| {}).await {
            Ok(Fetched::Body { bytes, .. }) => Ok(Some(bytes)),
            Ok(Fetched::NotModified) => Ok(None),
            Err(FetchError::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Fetches and checks every changed document and reads its advisory as
    /// it arrives (so only the advisories stay in memory); the patches come
    /// in path order. The first failure refuses them all.
    async fn fetch_changed(&self, directory: &url::Url, changed: &[Change]) -> Result<ImportedFeed, SyncError> {
        let mut fetches = futures_util::stream::iter(changed.iter().map(|c| self.document(directory, c)))
            .buffer_unordered(CONCURRENCY);
        let mut read = BTreeMap::new();
        while let Some(fetched) = fetches.next().await {
            let (path, bytes) = fetched?;
            let advisory = import::parse_csaf(&bytes);
            read.insert(path, advisory);
        }
        let mut feed = ImportedFeed {
            revision: 0,
            generated_at: None,
            expires_at: None,
            patches: Vec::new(),
            warnings: Vec::new(),
        };
        for (path, advisory) in read {
            match advisory {
                Ok(parsed) => {
                    feed.patches.extend(parsed.patches);
                    feed.warnings.extend(parsed.warnings.into_iter().map(|w| format!("{path}: {w}")));
                }
                Err(refusal) => feed.warnings.push(format!("{path}: skipped: {refusal}")),
            }
        }
        Ok(feed)
    }

    /// One document, checked: its bytes, by path.
    async fn document(&self, directory: &url::Url, change: &Change) -> Result<(String, Vec<u8>), SyncError> {
        let url = document_url(directory, &change.path)?;
        let bytes = match self.get(url.as_str(), &Validators::default()).await? {
            Fetched::Body { bytes, .. } => bytes,
            Fetched::NotModified => Vec::new(),
        };
        self.check_checksum(&url, &bytes).await?;
        if let Some(key) = &self.key {
            let signature_url = format!("{url}.asc");
            let signature = self.side_file(&signature_url).await?.ok_or_else(|| {
                Refusal::Signature(format!(
                    "{signature_url}: missing; the source's openpgpKey requires every document to be signed"
                ))
            })?;
            key.verify(&bytes, &signature).map_err(|e| Refusal::Signature(format!("{signature_url}: {e}")))?;
        }
        Ok((change.path.clone(), bytes))
    }

    async fn check_checksum(&self, url: &url::Url, bytes: &[u8]) -> Result<(), SyncError> {
        for checksum in [Checksum::Sha256, Checksum::Sha512] {
            if let Some(file) = self.side_file(&format!("{url}.{}", checksum.extension())).await? {
                return Ok(checksum.check(url, bytes, &file)?);
            }
        }
        let reason = "the provider publishes neither a .sha256 nor a .sha512 file for it".into();
        Err(Refusal::Checksum { document: url.to_string(), reason }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn reads_changes_csv_and_names_a_bad_line() {
        let text = b"\"2024/b.json\",\"2024-02-01T00:00:00+00:00\"\n\n\"2024/a.json\",\"2024-01-01T00:00:00Z\"\r\n";
        let changes = parse_changes(text).unwrap();
        assert_eq!(changes[0], Change { path: "2024/b.json".into(), changed: t("2024-02-01T00:00:00Z") });
        assert_eq!(changes.len(), 2);
        let bad = parse_changes(b"\"a.json\",\"2024-01-01T00:00:00Z\"\n\"b.json\",\"yesterday\"\n").unwrap_err();
        assert!(matches!(&bad, Refusal::Invalid { reason, .. } if reason.starts_with("line 2: `yesterday`")), "{bad}");
        let bad = parse_changes(b"\"a.json\"\n").unwrap_err();
        assert!(bad.to_string().contains("line 1: 1 fields"), "{bad}");
    }

    #[test]
    fn fetches_only_what_changed_after_the_last_sync() {
        let changes = [
            Change { path: "b.json".into(), changed: t("2024-03-01T00:00:00Z") },
            Change { path: "a.json".into(), changed: t("2024-01-01T00:00:00Z") },
            Change { path: "a.json".into(), changed: t("2024-04-01T00:00:00Z") },
            Change { path: "c.json".into(), changed: t("2024-02-01T00:00:00Z") },
        ];
        let paths = |since| changed_since(&changes, since).into_iter().map(|c| c.path).collect::<Vec<_>>();
        assert_eq!(paths(None), ["a.json", "b.json", "c.json"]);
        assert_eq!(paths(Some(t("2024-02-01T00:00:00Z"))), ["a.json", "b.json"]);
        assert!(paths(Some(t("2024-04-01T00:00:00Z"))).is_empty());
    }

    #[test]
    fn documents_stay_under_the_directory() {
        let directory = url::Url::parse("https://example.com/csaf/white/").unwrap();
        assert_eq!(
            document_url(&directory, "2024/rhsa-2024_0001.json").unwrap().as_str(),
            "https://example.com/csaf/white/2024/rhsa-2024_0001.json"
        );
        assert!(document_url(&directory, "../../secret.json").is_err());
        assert!(document_url(&directory, "https://elsewhere.example/a.json").is_err());
        assert!(document_url(&directory, "2024/index.html").is_err());
    }

    #[test]
    fn finds_the_directory_or_says_why_not() {
        let metadata = br#"{"metadata_version": "2.0", "distributions": [{"directory_url": "white"}]}"#;
        let url = "https://example.com/.well-known/csaf/provider-metadata.json";
        assert_eq!(directory(metadata, url).unwrap().as_str(), "https://example.com/.well-known/csaf/white/");
        assert!(looks_like_metadata(metadata));
        assert!(!looks_like_metadata(br#"{"document": {}}"#));
        let rolie = br#"{"metadata_version": "2.0", "distributions": [{"rolie": {"feeds": []}}]}"#;
        assert!(directory(rolie, url).unwrap_err().to_string().contains("only ROLIE"));
        assert!(is_metadata_url(url));
        assert!(!is_metadata_url("https://example.com/csaf/rhsa-2024_0001.json"));
    }

    #[test]
    fn checks_a_checksum_file() {
        let url = url::Url::parse("https://example.com/csaf/2024/a.json").unwrap();
        let digest = hex::encode(sha2::Sha256::digest(b"doc"));
        assert!(Checksum::Sha256.check(&url, b"doc", format!("{digest}  a.json\n").as_bytes()).is_ok());
        assert!(Checksum::Sha256.check(&url, b"doc", digest.to_uppercase().as_bytes()).is_ok());
        let other = Checksum::Sha256.check(&url, b"doc", format!("{digest}  b.json").as_bytes()).unwrap_err();
        assert!(other.to_string().contains("is for `b.json`"), "{other}");
        let tampered = Checksum::Sha256.check(&url, b"dox", format!("{digest}  a.json").as_bytes()).unwrap_err();
        assert!(tampered.to_string().contains("the document is"), "{tampered}");
        let digest = hex::encode(sha2::Sha512::digest(b"doc"));
        assert!(Checksum::Sha512.check(&url, b"doc", format!("{digest} *a.json").as_bytes()).is_ok());
        assert!(Checksum::Sha512.check(&url, b"doc", b"not hex").is_err());
    }
}
