//! Retention of cached package files (Settings `unusedCacheDays`). The
//! metadata half (obsolete patches) is applied by every import.
//!
//! The cache holds one file per blob, named by its sha256; its modification
//! time is when it was last used (the blob server touches it on each use).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a purge removed and kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CachePurge {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub kept: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to purge the package cache {path}")]
pub struct PurgeError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn is_blob_name(name: &str) -> bool {
    let digest = name.strip_suffix(".part").unwrap_or(name);
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes cached files unused for longer than `unused_days` before `now`,
/// except those in `keep` (blobs some device still needs). Partial
/// downloads (`*.part`) follow the same rule. Other files are not touched.
pub fn purge_cache(
    dir: &Path,
    now: jiff::Timestamp,
    unused_days: u32,
    keep: &BTreeSet<String>,
) -> Result<CachePurge, PurgeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PurgeError { path, source }
    };
    let mut purge = CachePurge::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(purge),
        Err(e) => return Err(io(dir)(e)),
    };
    let horizon = now.as_second() - i64::from(unused_days) * 86_400;
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        names.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    names.sort();
    for (name, path) in names {
        if !is_blob_name(&name) {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if !meta.is_file() {
            continue;
        }
        let digest = name.strip_suffix(".part").unwrap_or(&name).to_lowercase();
        let last_used = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if keep.contains(&digest) || last_used > horizon {
            purge.kept += 1;
            continue;
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
        purge.freed_bytes += meta.len();
        purge.removed.push(name);
    }
    Ok(purge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn blob(dir: &Path, name: &str, last_used_secs: u64) {
        let path = dir.join(name);
        std::fs::write(&path, b"bytes").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(last_used_secs)).unwrap();
    }

    #[test]
    fn removes_only_blobs_unused_beyond_the_retention_and_not_needed() {
        let dir = tempfile::tempdir().unwrap();
        let now: jiff::Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let day = 86_400;
        let now_secs = now.as_second() as u64;
        let old = "a".repeat(64);
        let recent = "b".repeat(64);
        let needed = "c".repeat(64);
        let partial = format!("{}.part", "d".repeat(64));
        blob(dir.path(), &old, now_secs - 31 * day);
        blob(dir.path(), &recent, now_secs - 29 * day);
        blob(dir.path(), &needed, now_secs - 400 * day);
        blob(dir.path(), &partial, now_secs - 31 * day);
        blob(dir.path(), "README", now_secs - 400 * day);
        let keep = BTreeSet::from([needed.clone()]);
        let purge = purge_cache(dir.path(), now, 30, &keep).unwrap();
        assert_eq!(purge.removed, vec![old.clone(), partial.clone()]);
        assert_eq!(purge.freed_bytes, 10);
        assert_eq!(purge.kept, 2);
        assert!(dir.path().join(&recent).exists() && dir.path().join(&needed).exists());
        assert!(dir.path().join("README").exists());
        // Nothing left to do the second time.
        assert_eq!(purge_cache(dir.path(), now, 30, &keep).unwrap().removed, Vec::<String>::new());
    }

    #[test]
    fn a_missing_cache_is_empty() {
        let purge =
            purge_cache(Path::new("/no/such/cache"), jiff::Timestamp::UNIX_EPOCH, 30, &BTreeSet::new()).unwrap();
        assert_eq!(purge, CachePurge::default());
    }
}
