//! The demo vendor's signed apt repository, made in Rust: no `gpg`, no
//! `apt-ftparchive`, so a machine with only Rust, git and apt runs the demo.
//!
//! The layout, relative to the repository's base URL (`VENDOR/debian`):
//!
//! ```text
//! dists/SUITE/InRelease                  Release, clearsigned (what apt fetches)
//! dists/SUITE/Release                    the same text, unsigned
//! dists/SUITE/main/binary-ARCH/Packages  one stanza per package, uncompressed
//! pool/main/P/SOURCE/NAME_VERSION_ARCH.deb
//! ```
//!
//! `Packages` gives each package's Package, Source (when it has one),
//! Version, Architecture, Maintainer, Filename, Size, SHA256 and
//! Description. `Release` gives Origin, Label, Suite, Codename, Date (RFC
//! 2822, UTC), Architectures, Components, Description and the SHA256 list
//! of the index files; only the uncompressed `Packages` is listed, so apt
//! fetches exactly that file. Packages of `Architecture: all` go into the
//! one architecture's index, which is where an apt of that architecture
//! looks for them.
//!
//! The signing key ([`ArchiveKey`]) is an Ed25519 OpenPGP key made for the
//! run with rPGP; its armored public half is what the devices' sources line
//! trusts (`signed-by=KEY.asc`: apt 2.x reads an armored key from a file
//! named `.asc`).

use std::collections::BTreeMap;

use anyhow::Context as _;
use pgp::composed::{ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedSecretKey};
use pgp::types::{KeyDetails as _, Password};
use rand::SeedableRng as _;

use super::debian::Control;

/// The one component.
pub const COMPONENT: &str = "main";

/// The OpenPGP key the repository is signed with, made for one run.
pub struct ArchiveKey {
    secret: SignedSecretKey,
    /// The public key, armored: the `.asc` the devices trust.
    pub public_armored: String,
    /// The primary key's fingerprint, upper-case hex (as apt prints it).
    pub fingerprint: String,
}

impl ArchiveKey {
    /// A fresh Ed25519 signing key with the user id `uid`.
    pub fn generate(uid: &str) -> anyhow::Result<ArchiveKey> {
        let mut rng = rng()?;
        let params = SecretKeyParamsBuilder::default()
            // The v4 EdDSA key gpgv (Debian 12's apt) verifies.
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(uid.into())
            .build()
            .context("failed to describe the repository's signing key")?;
        let secret = params
            .generate(&mut rng)
            .and_then(|key| key.sign(&mut rng, &Password::empty()))
            .context("failed to make the repository's signing key")?;
        let public_armored = secret
            .signed_public_key()
            .to_armored_string(ArmorOptions::default())
            .context("failed to write the repository's public key")?;
        let fingerprint = format!("{:X}", secret.primary_key.fingerprint());
        Ok(ArchiveKey { secret, public_armored, fingerprint })
    }

    /// `text` as a cleartext-signed message: an `InRelease` file.
    pub fn clearsign(&self, text: &str) -> anyhow::Result<String> {
        let message = CleartextSignedMessage::sign(rng()?, text, &self.secret.primary_key, &Password::empty())
            .context("failed to sign the Release file")?;
        message.to_armored_string(ArmorOptions::default()).context("failed to write the InRelease file")
    }
}

/// An RNG for key generation and signatures, seeded by the OS.
fn rng() -> anyhow::Result<rand::rngs::StdRng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("failed to read random bytes: {e}"))?;
    Ok(rand::rngs::StdRng::from_seed(seed))
}

/// A `.deb` the repository publishes.
#[derive(Clone, Debug)]
pub struct PoolPackage {
    pub control: Control,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl PoolPackage {
    pub fn new(control: Control, bytes: Vec<u8>) -> PoolPackage {
        let sha256 = crate::catalog::sha256_hex(&bytes);
        PoolPackage { control, bytes, sha256 }
    }

    /// `pool/main/P/SOURCE/NAME_VERSION_ARCH.deb`, as `Filename:` says it
    /// (P is the source's first letter, or `libX` for a `lib` source).
    pub fn pool_path(&self) -> String {
        let source = self.control.source_name();
        let prefix = match source.strip_prefix("lib") {
            Some(rest) if !rest.is_empty() => &source[..4],
            _ => &source[..source.char_indices().nth(1).map_or(source.len(), |(i, _)| i)],
        };
        format!("pool/{COMPONENT}/{prefix}/{source}/{}", self.control.file_name())
    }
}

/// What `Release` says about the repository.
#[derive(Clone, Debug)]
pub struct Suite {
    pub origin: String,
    pub label: String,
    /// The suite and codename both: what the sources line names.
    pub suite: String,
    /// The one architecture indexed (`dpkg --print-architecture`).
    pub architecture: String,
    pub description: String,
    pub date: jiff::Timestamp,
}

impl Suite {
    /// `dists/SUITE/main/binary-ARCH/Packages`, relative to `dists/SUITE`.
    pub fn packages_path(&self) -> String {
        format!("{COMPONENT}/binary-{}/Packages", self.architecture)
    }
}

/// The `Packages` index of `packages`, in the given order.
pub fn packages_index(packages: &[PoolPackage]) -> String {
    let stanzas: Vec<String> = packages
        .iter()
        .map(|p| {
            let c = &p.control;
            let mut stanza = format!("Package: {}\n", c.package);
            if let Some(source) = &c.source {
                stanza.push_str(&format!("Source: {source}\n"));
            }
            stanza.push_str(&format!(
                "Version: {}\nArchitecture: {}\nMaintainer: {}\nFilename: {}\nSize: {}\nSHA256: {}\nDescription: {}\n",
                c.version,
                c.architecture,
                c.maintainer,
                p.pool_path(),
                p.bytes.len(),
                p.sha256,
                c.description
            ));
            stanza
        })
        .collect();
    stanzas.join("\n")
}

/// The `Release` file of `suite`, listing `indexes` (paths relative to
/// `dists/SUITE`, and their bytes) by SHA256 and size.
pub fn release(suite: &Suite, indexes: &[(String, &[u8])]) -> String {
    let mut text = format!(
        "Origin: {origin}\nLabel: {label}\nSuite: {name}\nCodename: {name}\nDate: {date}\nArchitectures: {arch}\n\
         Components: {COMPONENT}\nDescription: {description}\nSHA256:\n",
        origin = suite.origin,
        label = suite.label,
        name = suite.suite,
        date = suite.date.strftime("%a, %d %b %Y %H:%M:%S UTC"),
        arch = suite.architecture,
        description = suite.description,
    );
    for (path, bytes) in indexes {
        text.push_str(&format!(" {} {:>16} {path}\n", crate::catalog::sha256_hex(bytes), bytes.len()));
    }
    text
}

/// Every file of the repository, by its path relative to the base URL.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    /// Indexes `packages`, writes `Release` and signs it with `key`.
    pub fn build(suite: &Suite, packages: &[PoolPackage], key: &ArchiveKey) -> anyhow::Result<Archive> {
        let dists = format!("dists/{}", suite.suite);
        let index = packages_index(packages);
        let release = release(suite, &[(suite.packages_path(), index.as_bytes())]);
        let in_release = key.clearsign(&release)?;
        let mut files = BTreeMap::new();
        files.insert(format!("{dists}/{}", suite.packages_path()), index.into_bytes());
        files.insert(format!("{dists}/Release"), release.into_bytes());
        files.insert(format!("{dists}/InRelease"), in_release.into_bytes());
        for package in packages {
            files.insert(package.pool_path(), package.bytes.clone());
        }
        Ok(Archive { files })
    }

    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite() -> Suite {
        Suite {
            origin: "patchward demo".into(),
            label: "patchward demo".into(),
            suite: "bookworm-security".into(),
            architecture: "amd64".into(),
            description: "the demo vendor's packages".into(),
            date: "2026-12-01T12:00:00Z".parse().unwrap(),
        }
    }

    fn package(name: &str, version: &str, source: Option<&str>) -> PoolPackage {
        let mut control = Control::demo(name, version);
        control.source = source.map(str::to_owned);
        PoolPackage::new(control, format!("{name} {version}").into_bytes())
    }

    fn public_key(key: &ArchiveKey) -> pgp::composed::SignedPublicKey {
        use pgp::composed::Deserializable as _;
        pgp::composed::SignedPublicKey::from_string(&key.public_armored).unwrap().0
    }

    #[test]
    fn packages_name_every_field_apt_reads_and_the_pool_path_by_source() {
        let packages = [package("pw-hello", "1.0", None), package("libpw1", "1:1.0-2", Some("libpw (1.0-2)"))];
        let index = packages_index(&packages);
        let first = index.split("\n\n").next().unwrap();
        assert_eq!(
            first,
            format!(
                "Package: pw-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: {}\n\
                 Filename: pool/main/p/pw-hello/pw-hello_1.0_all.deb\nSize: 12\nSHA256: {}\n\
                 Description: patchward demo package pw-hello",
                packages[0].control.maintainer, packages[0].sha256
            )
        );
        assert!(index.contains("Package: libpw1\nSource: libpw (1.0-2)\nVersion: 1:1.0-2\n"), "{index}");
        assert!(index.contains("Filename: pool/main/libp/libpw/libpw1_1%3a1.0-2_all.deb\n"), "{index}");
    }

    #[test]
    fn release_lists_the_index_by_sha256_and_size() {
        let release = release(&suite(), &[("main/binary-amd64/Packages".into(), b"abc".as_slice())]);
        assert!(release.starts_with("Origin: patchward demo\nLabel: patchward demo\nSuite: bookworm-security\n"));
        assert!(release.contains("\nCodename: bookworm-security\nDate: Tue, 01 Dec 2026 12:00:00 UTC\n"), "{release}");
        assert!(release.contains("\nArchitectures: amd64\nComponents: main\n"), "{release}");
        let sha = crate::catalog::sha256_hex(b"abc");
        assert!(release.ends_with(&format!("SHA256:\n {sha}                3 main/binary-amd64/Packages\n")));
    }

    #[test]
    fn in_release_is_the_release_clearsigned_by_the_published_key() {
        let key = ArchiveKey::generate("patchward demo archive <demo@patchward.invalid>").unwrap();
        let archive = Archive::build(&suite(), &[package("pw-hello", "1.0", None)], &key).unwrap();
        let release = std::str::from_utf8(archive.file("dists/bookworm-security/Release").unwrap()).unwrap();
        let in_release = std::str::from_utf8(archive.file("dists/bookworm-security/InRelease").unwrap()).unwrap();
        assert!(in_release.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: "), "{in_release}");
        let (message, _) = CleartextSignedMessage::from_string(in_release).unwrap();
        assert_eq!(message.signed_text(), release.replace('\n', "\r\n"));
        // The engine's own reader takes the public key (self-signatures hold).
        crate::catalog::openpgp::PublicKey::parse(key.public_armored.as_bytes()).unwrap();
        message.verify(&public_key(&key).primary_key).unwrap();
        // Another key's signature does not pass.
        let other = ArchiveKey::generate("someone else <other@patchward.invalid>").unwrap();
        assert!(message.verify(&public_key(&other).primary_key).is_err());
        assert_eq!(key.fingerprint.len(), 40);
        assert!(archive.file("pool/main/p/pw-hello/pw-hello_1.0_all.deb").is_some());
    }

    /// apt verifies InRelease with gpgv: so does this test, with the
    /// public key as a binary keyring.
    #[test]
    fn gpgv_verifies_the_in_release_and_refuses_it_altered() {
        use pgp::ser::Serialize as _;
        let dir = tempfile::tempdir().unwrap();
        let key = ArchiveKey::generate("patchward demo archive <demo@patchward.invalid>").unwrap();
        let keyring = dir.path().join("key.gpg");
        std::fs::write(&keyring, key.secret.signed_public_key().to_bytes().unwrap()).unwrap();
        let archive = Archive::build(&suite(), &[package("pw-hello", "1.0", None)], &key).unwrap();
        let in_release = archive.file("dists/bookworm-security/InRelease").unwrap();
        let gpgv = |text: &[u8]| {
            let file = dir.path().join("InRelease");
            std::fs::write(&file, text).unwrap();
            let output = std::process::Command::new("gpgv")
                .arg("--homedir")
                .arg(dir.path())
                .arg("--keyring")
                .arg(&keyring)
                .arg(&file)
                .output()
                .expect("gpgv (apt's verifier) runs");
            (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
        };
        let (good, stderr) = gpgv(in_release);
        assert!(good, "{stderr}");
        assert!(stderr.contains(&key.fingerprint), "{stderr}");
        let altered =
            String::from_utf8_lossy(in_release).replace("Suite: bookworm-security", "Suite: bookworm-securitx");
        let (good, stderr) = gpgv(altered.as_bytes());
        assert!(!good, "an altered Release still verifies: {stderr}");
    }
}
