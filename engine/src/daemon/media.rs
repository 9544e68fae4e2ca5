//! The media master: the engine's content-addressed package store.
//!
//! Following `Settings.download`, the engine fetches the packages it needs
//! from their vendor URLs, checks each against its sha256 while it streams,
//! and keeps it at `DATA/blobs/{sha256}` (`media.dir`); agents download it
//! from `/api/v1/blobs/{sha256}`. A mirror is any HTTP server holding the
//! same paths. What a blob is (its package, URL, size, digest) is in the
//! store's catalog; the directory holds only bytes named by their digest,
//! so replicas on a shared store share one directory (only the leader
//! fetches into it; a file is renamed into place whole, so a replica
//! serving from it never sees half of one).
//!
//! Architecture invariant: a file appears under its digest only after its
//! bytes hashed to that digest (written to a temporary file, fsynced, then
//! renamed); a path is built only from a validated 64-hex digest (T32).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::policy::model::DownloadPolicy;

pub struct BlobStore {
    dir: PathBuf,
}

/// A digest as a blob path accepts it: exactly 64 lowercase hex digits.
pub fn valid_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url}: sha256 mismatch: expected {expected}, got {actual}")]
    Mismatch { url: String, expected: String, actual: String },
    #[error("{url}: more than the declared {size} bytes")]
    TooLarge { url: String, size: u64 },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BlobStore {
    pub fn open(dir: &Path) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(BlobStore { dir: dir.to_owned() })
    }

    /// The file of `digest`, if the store holds it. `None` for anything
    /// that is not a digest: nothing outside the store is ever named.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        if !valid_digest(digest) {
            return None;
        }
        let path = self.dir.join(digest);
        path.is_file().then_some(path)
    }

    /// Stores `bytes` under `digest` if they hash to it.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), MediaError> {
        let actual = hex::encode(sha2::Sha256::digest(bytes));
        if actual != digest {
            return Err(MediaError::Mismatch { url: "upload".into(), expected: digest.into(), actual });
        }
        self.commit(digest, |file| file.write_all(bytes))
    }

    fn commit(
        &self,
        digest: &str,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), MediaError> {
        let tmp = self.dir.join("tmp").join(format!("{digest}.{}", std::process::id()));
        let failed = |source| MediaError::Write { path: tmp.clone(), source };
        let mut file = std::fs::File::create(&tmp).map_err(failed)?;
        write(&mut file).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&tmp, self.dir.join(digest))
            .map_err(|source| MediaError::Write { path: self.dir.join(digest), source })
    }

    /// Fetches `url`, checking its size and sha256 as it streams; stores it
    /// only when both hold.
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        url: &str,
        digest: &str,
        size: u64,
        timeout: std::time::Duration,
    ) -> Result<(), MediaError> {
        use futures_util::StreamExt as _;
        let fail = |reason: String| MediaError::Fetch { url: url.to_owned(), reason };
        if let Some(path) = url.strip_prefix("file://") {
            // A vendor share mounted locally: the same size and hash checks.
            let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            if bytes.len() as u64 > size {
                return Err(MediaError::TooLarge { url: url.to_owned(), size });
            }
            let actual = hex::encode(sha2::Sha256::digest(&bytes));
            if actual != digest {
                return Err(MediaError::Mismatch { url: url.to_owned(), expected: digest.to_owned(), actual });
            }
            return self.commit(digest, |file| file.write_all(&bytes));
        }
        let response = tokio::time::timeout(timeout, client.get(url).send())
            .await
            .map_err(|_| fail(format!("no answer within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let mut hasher = sha2::Sha256::new();
        let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
        let mut stream = response.bytes_stream();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .map_err(|_| fail(format!("not complete within {timeout:?}")))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| fail(e.to_string()))?;
            if bytes.len() as u64 + chunk.len() as u64 > size {
                return Err(MediaError::TooLarge { url: url.to_owned(), size });
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(MediaError::Mismatch { url: url.to_owned(), expected: digest.to_owned(), actual });
        }
        self.commit(digest, |file| file.write_all(&bytes))
    }
}

/// A package the engine should hold, and where the vendor serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub sha256: String,
    pub url: String,
    pub size: u64,
}

/// The packages `policy` says to fetch ahead: those of patches planned
/// for some device that lacks them (`approved-not-installed`), or of every
/// active patch some device lacks (`all-not-installed`); and in both, the
/// installers of software assigned to a device that lacks it (a version
/// without a declared size is left out: no agent could take it either).
/// Pure.
pub fn wanted(
    plan: &crate::plan::Plan,
    compiled: &crate::plan::CompiledPolicy,
    catalog: &crate::plan::PlanCatalog,
    devices: &[&crate::plan::DevicePlan],
    policy: DownloadPolicy,
) -> Vec<Wanted> {
    let mut out: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut add = |patch: u32| {
        for package in &catalog.patches[patch as usize].view.record.patch.packages {
            out.entry(package.sha256.clone()).or_insert_with(|| Wanted {
                sha256: package.sha256.clone(),
                url: package.url.clone(),
                size: package.size,
            });
        }
    };
    for device in devices {
        for item in device.items.iter() {
            let missing = !matches!(item.status, crate::plan::ItemStatus::Installed | crate::plan::ItemStatus::Removed);
            if missing && plan.grant(item).action == crate::policy::model::ItemAction::Install {
                add(item.patch);
            }
        }
    }
    if policy == DownloadPolicy::AllNotInstalled {
        for patch in 0..catalog.len() as u32 {
            add(patch);
        }
    }
    for item in devices.iter().flat_map(|d| &d.software) {
        if item.action != crate::policy::model::ItemAction::Install || item.status == crate::plan::ItemStatus::Installed
        {
            continue;
        }
        let assignment = &compiled.assignments[item.assignment as usize];
        let Some(package) = compiled.policy.packages.get(&assignment.package) else { continue };
        let version = package.spec.versions.iter().map(|v| &v.value).find(|v| v.version.value == assignment.version);
        if let Some((version, size)) = version.and_then(|v| Some((v, v.size?))) {
            out.entry(version.sha256.value.clone()).or_insert_with(|| Wanted {
                sha256: version.sha256.value.clone(),
                url: version.url.value.clone(),
                size,
            });
        }
    }
    out.into_values().collect()
}
