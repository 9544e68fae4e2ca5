//! The agent's content-addressed package cache: `STATE/cache/sha256/<hex>`.
//!
//! Architecture invariants:
//! - a file appears under its digest only by write → fsync → rename, followed
//!   by an fsync of the directory, so a crash leaves either no blob or a
//!   complete one (G6);
//! - an interrupted download stays beside it as `<hex>.partial`, so the next
//!   attempt (or the next process after a kill -9) resumes from its length
//!   with a `Range` request (T21);
//! - directories are 0700 and files 0600: the cache holds what root will
//!   execute, so nobody else may read or replace it;
//! - a path is only ever built from a parsed [`Sha256Digest`], never from a
//!   string off the wire.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A sha256 digest, parsed from exactly 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not a sha256 digest (64 hex digits)")]
pub struct InvalidDigest {
    pub text: String,
}

impl Sha256Digest {
    pub fn parse(text: &str) -> Result<Sha256Digest, InvalidDigest> {
        let invalid = || InvalidDigest { text: text.chars().take(80).collect() };
        if text.len() != 64 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| invalid())?;
        Ok(Sha256Digest(bytes))
    }

    /// The digest of `bytes` (for tests and small payloads).
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_hasher(hasher: sha2::Sha256) -> Sha256Digest {
        Sha256Digest(hasher.finalize().into())
    }

    /// Lowercase hex, as paths and messages spell it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = InvalidDigest;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Sha256Digest::parse(text)
    }
}

/// A local storage failure. `DiskFull` is its own case because the agent
/// reports it differently (T17: clear error, partial file deleted).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{action} {}: no space left on device", path.display())]
    DiskFull { action: &'static str, path: PathBuf },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CacheError {
    pub fn path(&self) -> &Path {
        match self {
            CacheError::DiskFull { path, .. } | CacheError::Io { path, .. } => path,
        }
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, CacheError::DiskFull { .. })
    }
}

/// Wraps an IO error with what was being done to which path, recognising a
/// full disk (ENOSPC) or an exhausted quota (EDQUOT).
pub(crate) fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |source| {
        let full = matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || source.kind() == std::io::ErrorKind::StorageFull;
        if full {
            CacheError::DiskFull { action, path: path.to_owned() }
        } else {
            CacheError::Io { action, path: path.to_owned(), source }
        }
    }
}

/// A complete, hash-verified blob in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedBlob {
    path: PathBuf,
    digest: Sha256Digest,
    size: u64,
}

impl CachedBlob {
    /// A file outside the cache said to hold `size` bytes hashing to
    /// `digest` (a backup the agent made and journaled). Only staging takes
    /// a blob, and staging re-hashes every byte it copies, so a claim that
    /// is false is refused there.
    pub fn claimed(path: PathBuf, digest: Sha256Digest, size: u64) -> CachedBlob {
        CachedBlob { path, digest, size }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The cache under a state directory.
#[derive(Debug, Clone)]
pub struct Cache {
    /// `STATE/cache/sha256`
    blobs: PathBuf,
    /// `STATE/cache/staging`: private copies handed to installers.
    staging: PathBuf,
}

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) as 0700 and makes sure an existing one is
/// 0700 too.
pub(crate) fn private_dir(dir: &Path) -> Result<(), CacheError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_error("failed to create directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
        .map_err(io_error("failed to restrict permissions of", dir))
}

/// fsync a directory, so that a rename inside it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("failed to fsync directory", dir))
}

impl Cache {
    /// Opens (creating as needed) the cache under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Cache, CacheError> {
        let root = state_dir.join("cache");
        let blobs = root.join("sha256");
        let staging = root.join("staging");
        private_dir(&root)?;
        private_dir(&blobs)?;
        private_dir(&staging)?;
        Ok(Cache { blobs, staging })
    }

    pub fn blob_dir(&self) -> &Path {
        &self.blobs
    }

    /// Where [`crate::install::VerifiedPackage::stage`] puts installer copies.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs.join(digest.to_hex())
    }

    pub fn partial_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs.join(format!("{}.partial", digest.to_hex()))
    }

    /// The cached blob of `digest` if a complete file of `size` bytes is
    /// there and still hashes to its name; a file that does not is removed
    /// (it would fail the pre-install check forever).
    pub fn verified(&self, digest: &Sha256Digest, size: u64) -> Result<Option<CachedBlob>, CacheError> {
        let path = self.blob_path(digest);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("failed to open", &path)(e)),
        };
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io_error("failed to read", &path))?;
            if n == 0 {
                break;
            }
            len += n as u64;
            hasher.update(&buf[..n]);
        }
        if len == size && Sha256Digest::from_hasher(hasher) == *digest {
            return Ok(Some(CachedBlob { path, digest: *digest, size }));
        }
        self.remove(digest)?;
        Ok(None)
    }

    /// Stores `bytes` under their own digest (write → fsync → rename), for
    /// packages that arrive by other means than a download (tests, local
    /// files).
    pub fn put(&self, bytes: &[u8]) -> Result<CachedBlob, CacheError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let digest = Sha256Digest::of(bytes);
        let tmp = self.blobs.join(format!("{digest}.put.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io_error("failed to create", &tmp))?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = remove_if_present(&tmp);
            return Err(io_error("failed to write", &tmp)(e));
        }
        let path = self.blob_path(&digest);
        std::fs::rename(&tmp, &path).map_err(io_error("failed to rename into place", &path))?;
        sync_dir(&self.blobs)?;
        Ok(CachedBlob { path, digest, size: bytes.len() as u64 })
    }

    /// Removes the blob and its partial download, if any.
    pub fn remove(&self, digest: &Sha256Digest) -> Result<(), CacheError> {
        for path in [self.blob_path(digest), self.partial_path(digest)] {
            remove_if_present(&path)?;
        }
        Ok(())
    }

    /// Opens the partial download of `digest` for appending, hashing what it
    /// already holds (the resumed prefix) first.
    pub(crate) async fn open_partial(&self, digest: &Sha256Digest) -> Result<PartialFile, CacheError> {
        let path = self.partial_path(digest);
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&path)
            .await
            .map_err(io_error("failed to open", &path))?;
        let mut hasher = sha2::Sha256::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(io_error("failed to read", &path))?;
            if n == 0 {
                break;
            }
            len += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok(PartialFile { path, final_path: self.blob_path(digest), dir: self.blobs.clone(), file, len, hasher })
    }
}

pub(crate) fn remove_if_present(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("failed to remove", path)(e)),
    }
}

/// A download in progress: `<hex>.partial`, its length and the running
/// sha256 of everything in it.
pub(crate) struct PartialFile {
    path: PathBuf,
    final_path: PathBuf,
    dir: PathBuf,
    file: tokio::fs::File,
    len: u64,
    hasher: sha2::Sha256,
}

impl PartialFile {
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The digest of the bytes so far.
    pub fn digest_so_far(&self) -> Sha256Digest {
        Sha256Digest::from_hasher(self.hasher.clone())
    }

    /// A copy of the running hasher, to hash a little past the file
    /// without changing it (the report of an oversized body).
    pub fn hasher_clone(&self) -> sha2::Sha256 {
        self.hasher.clone()
    }

    pub async fn append(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        self.file.write_all(bytes).await.map_err(io_error("failed to write", &self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Starts over from byte 0 (the server ignored the Range, or the prefix
    /// was not worth keeping).
    pub async fn truncate(&mut self) -> Result<(), CacheError> {
        self.file.flush().await.map_err(io_error("failed to write", &self.path))?;
        self.file.set_len(0).await.map_err(io_error("failed to truncate", &self.path))?;
        self.hasher = sha2::Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Flushes and fsyncs what has arrived, so a resume after a crash starts
    /// from bytes that are really on disk.
    pub async fn sync(&mut self) -> Result<(), CacheError> {
        self.file.flush().await.map_err(io_error("failed to write", &self.path))?;
        self.file.sync_all().await.map_err(io_error("failed to fsync", &self.path))
    }

    /// Removes the partial file (wrong bytes, disk full).
    pub async fn discard(self) -> Result<(), CacheError> {
        let PartialFile { path, file, .. } = self;
        drop(file);
        remove_if_present(&path)
    }

    /// write → fsync → rename → fsync(dir): the blob appears complete or not
    /// at all. The caller has checked the digest and size.
    pub async fn commit(mut self, digest: Sha256Digest) -> Result<CachedBlob, CacheError> {
        self.sync().await?;
        let PartialFile { path, final_path, dir, file, len, .. } = self;
        drop(file);
        std::fs::rename(&path, &final_path).map_err(io_error("failed to rename into place", &final_path))?;
        sync_dir(&dir)?;
        Ok(CachedBlob { path: final_path, digest, size: len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_from_64_hex_digits() {
        let hex = "ab".repeat(32);
        assert_eq!(Sha256Digest::parse(&hex).unwrap().to_hex(), hex);
        assert_eq!(Sha256Digest::parse(&hex.to_uppercase()).unwrap().to_hex(), hex);
        assert!(Sha256Digest::parse(&hex[..62]).is_err());
        assert!(Sha256Digest::parse(&format!("../{}", &hex[..61])).is_err());
        assert!(Sha256Digest::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn the_cache_is_private_to_root() {
        let state = tempfile::tempdir().unwrap();
        let cache = Cache::open(state.path()).unwrap();
        for dir in [state.path().join("cache"), cache.blob_dir().to_owned(), cache.staging_dir().to_owned()] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }

    #[tokio::test]
    async fn a_blob_appears_only_on_commit_and_a_partial_resumes_with_its_hash() {
        let state = tempfile::tempdir().unwrap();
        let cache = Cache::open(state.path()).unwrap();
        let bytes = b"hello, patchward".to_vec();
        let digest = Sha256Digest::of(&bytes);

        let mut partial = cache.open_partial(&digest).await.unwrap();
        partial.append(&bytes[..5]).await.unwrap();
        partial.sync().await.unwrap();
        drop(partial);
        assert!(!cache.blob_path(&digest).exists());
        assert_eq!(cache.verified(&digest, bytes.len() as u64).unwrap(), None);

        // A new opening (a restart) sees the prefix and its hash.
        let mut partial = cache.open_partial(&digest).await.unwrap();
        assert_eq!(partial.len(), 5);
        assert_eq!(partial.digest_so_far(), Sha256Digest::of(&bytes[..5]));
        partial.append(&bytes[5..]).await.unwrap();
        assert_eq!(partial.digest_so_far(), digest);
        let blob = partial.commit(digest).await.unwrap();
        assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
        assert!(!cache.partial_path(&digest).exists());
        let mode = std::fs::metadata(blob.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(cache.verified(&digest, bytes.len() as u64).unwrap(), Some(blob.clone()));

        // A cached file that no longer hashes to its name is dropped.
        std::fs::write(blob.path(), b"hello, PATCHWARD").unwrap();
        assert_eq!(cache.verified(&digest, bytes.len() as u64).unwrap(), None);
        assert!(!blob.path().exists());
    }
}
