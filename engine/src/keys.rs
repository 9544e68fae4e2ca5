//! The engine's signing key: ed25519, generated on first start, kept in the
//! data folder readable by its owner only. Every desired state is signed
//! with it (DSSE); agents pin its public key at enrollment.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::SigningKey;

/// The file in the data folder: the 32-byte seed, base64, one line.
pub const KEY_FILE: &str = "engine-key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is readable by others (mode {mode:o}); a signing key must be 0600. Fix with `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} does not hold an engine key (the base64 of 32 bytes)")]
    Malformed { path: PathBuf },
    #[error("the system's random source failed: {0}")]
    Random(String),
}

/// Writes a new secret file readable by its owner only (mode 0600); an
/// existing file is never overwritten.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Loads the engine key from the file `path`, creating it (mode 0600, and
/// its folder) the first time: replicas given the same file share the key.
/// Returns the key and whether it was created now.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    let path = path.to_owned();
    let io = |action, source| KeyError::Io { action, path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path).map_err(|e| io("inspect", e))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed { path, mode });
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| KeyError::Malformed { path: path.clone() })?;
            let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed { path: path.clone() })?;
            Ok((SigningKey::from_bytes(&seed), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder).map_err(|e| io("create the folder of", e))?;
            }
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
            // create_new: two engines starting at once cannot both write one.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io("create", e))?;
            let text = base64::engine::general_purpose::STANDARD.encode(seed);
            file.write_all(format!("{text}\n").as_bytes()).map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("sync", e))?;
            Ok((SigningKey::from_bytes(&seed), true))
        }
        Err(e) => Err(io("read", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_owner_only_and_the_same_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (key, created) = load_or_create(&dir.path().join(KEY_FILE)).unwrap();
        assert!(created);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&dir.path().join(KEY_FILE)).unwrap();
        assert!(!created);
        assert_eq!(key.to_bytes(), again.to_bytes());
        let (other, _) = load_or_create(&tempfile::tempdir().unwrap().path().join(KEY_FILE)).unwrap();
        assert_ne!(key.to_bytes(), other.to_bytes(), "fresh randomness per engine");
    }

    #[test]
    fn an_exposed_or_malformed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(&dir.path().join(KEY_FILE)).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create(&dir.path().join(KEY_FILE)), Err(KeyError::Exposed { mode: 0o644, .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key\n").unwrap();
        assert!(matches!(load_or_create(&dir.path().join(KEY_FILE)), Err(KeyError::Malformed { .. })));
    }
}
