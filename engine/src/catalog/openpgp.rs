//! OpenPGP detached signatures (a CSAF document's `.asc`), checked against
//! the key a CatalogSource names in `openpgpKey`, with rPGP (the `pgp`
//! crate: pure Rust, no gpg binary or keyring).
//!
//! `openpgpKey` is the armored public key itself (`-----BEGIN PGP PUBLIC
//! KEY BLOCK-----`, a YAML block scalar) or the absolute path of a key file
//! on the engine's machine (armored or binary). The key's self-signatures
//! must verify. A signature verifies when the primary key or one of its
//! signing subkeys made it over the exact document bytes.

use std::path::Path;

use pgp::composed::{Deserializable as _, DetachedSignature, SignedPublicKey};
use pgp::types::PublicKeyTrait as _;

const ARMOR_HEADER: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// A key file larger than this is no public key of a publisher.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Where an `openpgpKey` value says the key is.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRef<'a> {
    Armored(&'a str),
    Path(&'a Path),
}

impl<'a> KeyRef<'a> {
    /// Reads an `openpgpKey` value; the error says what it must be.
    pub fn of(value: &'a str) -> Result<KeyRef<'a>, String> {
        let trimmed = value.trim();
        if trimmed.starts_with(ARMOR_HEADER) {
            return Ok(KeyRef::Armored(trimmed));
        }
        let path = Path::new(trimmed);
        if path.is_absolute() {
            return Ok(KeyRef::Path(path));
        }
        Err(format!("must be an armored public key ({ARMOR_HEADER} …) or the absolute path of a key file"))
    }
}

/// A publisher's public key, self-signatures checked.
#[derive(Debug, Clone)]
pub struct PublicKey(SignedPublicKey);

impl PublicKey {
    /// Parses an armored or binary public key.
    pub fn parse(bytes: &[u8]) -> Result<PublicKey, String> {
        let (key, _) =
            SignedPublicKey::from_reader_single(bytes).map_err(|e| format!("is not an OpenPGP public key: {e}"))?;
        key.verify().map_err(|e| format!("is an OpenPGP key whose self-signatures do not verify: {e}"))?;
        Ok(PublicKey(key))
    }

    /// The key an `openpgpKey` value names: parsed inline, or read from its
    /// file. The error names the file.
    pub fn load(value: &str) -> Result<PublicKey, String> {
        match KeyRef::of(value)? {
            KeyRef::Armored(text) => PublicKey::parse(text.as_bytes()),
            KeyRef::Path(path) => {
                let bytes = read_key_file(path)?;
                PublicKey::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }

    /// Whether `signature` (armored or binary) is this key's over `data`.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), String> {
        let (signature, _) = DetachedSignature::from_reader_single(signature)
            .map_err(|e| format!("is not an OpenPGP signature: {e}"))?;
        let key = &self.0;
        let by_primary = signature.verify(&key.primary_key, data).is_ok();
        let by_subkey = || {
            key.public_subkeys.iter().filter(|s| s.key.is_signing_key()).any(|s| signature.verify(&s.key, data).is_ok())
        };
        if by_primary || by_subkey() {
            Ok(())
        } else {
            Err("was not made by the source's openpgpKey over these bytes".into())
        }
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!("{}: more than {MAX_KEY_FILE_BYTES} bytes; no public key is that large", path.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_armored_text_or_an_absolute_path() {
        assert!(matches!(KeyRef::of("  -----BEGIN PGP PUBLIC KEY BLOCK-----\n…"), Ok(KeyRef::Armored(_))));
        assert_eq!(KeyRef::of("/etc/patchward/redhat.asc"), Ok(KeyRef::Path(Path::new("/etc/patchward/redhat.asc"))));
        assert!(KeyRef::of("keys/redhat.asc").is_err());
    }

    #[test]
    fn refuses_what_is_no_key() {
        let error = PublicKey::parse(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n").unwrap_err();
        assert!(error.starts_with("is not an OpenPGP public key"), "{error}");
        let error = PublicKey::load("/nonexistent/patchward-test.asc").unwrap_err();
        assert!(error.starts_with("/nonexistent/patchward-test.asc: cannot be read"), "{error}");
    }
}
