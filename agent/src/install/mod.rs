//! Installers: one [`Installer`] per package type, behind one narrow trait.
//!
//! Architecture invariants:
//! - an installer only ever receives a [`VerifiedPackage`], and the only way
//!   to make one is [`VerifiedPackage::stage`]: it copies the cached blob
//!   into a private staging file while hashing the exact bytes it copies,
//!   and refuses when they do not hash to the expected digest (G1, T19);
//! - outcomes are classified, not guessed, into the closed [`Outcome`] enum
//!   (G8): 0 success, 3010 success with a reboot pending, 1641 success with a
//!   reboot started, 1618 or a held package-manager lock "retry later",
//!   anything else a failure with its exit code and the tail of stderr;
//! - arguments travel as argv vectors, never through a shell.

pub mod deb;
pub mod process;
pub mod rpm;
pub mod script;
pub mod windows;

use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest as _;

use crate::cache::{CacheError, CachedBlob, Sha256Digest, io_error, private_dir, remove_if_present};
pub use process::{ProcessExit, ProcessOutput};

/// The package types of the catalog and of `SoftwarePackage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PackageType {
    Deb,
    Rpm,
    Script,
    Msi,
    Msu,
    Exe,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown package type {0:?} (expected deb, rpm, script, msi, msu or exe)")]
pub struct UnknownPackageType(pub String);

impl std::str::FromStr for PackageType {
    type Err = UnknownPackageType;
    fn from_str(text: &str) -> Result<PackageType, UnknownPackageType> {
        Ok(match text {
            "deb" => PackageType::Deb,
            "rpm" => PackageType::Rpm,
            "script" => PackageType::Script,
            "msi" => PackageType::Msi,
            "msu" => PackageType::Msu,
            "exe" => PackageType::Exe,
            other => return Err(UnknownPackageType(other.chars().take(40).collect())),
        })
    }
}

impl PackageType {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Deb => "deb",
            PackageType::Rpm => "rpm",
            PackageType::Script => "script",
            PackageType::Msi => "msi",
            PackageType::Msu => "msu",
            PackageType::Exe => "exe",
        }
    }

    /// The staging file's extension: wusa and msiexec go by it.
    fn extension(self) -> &'static str {
        match self {
            PackageType::Script => "sh",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for PackageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an installer run came to (G8). Closed: the agent's decision and
/// reports match on it exhaustively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Succeeded,
    /// 3010 (ERROR_SUCCESS_REBOOT_REQUIRED): installed, a reboot is pending.
    SucceededRebootPending,
    /// 1641 (ERROR_SUCCESS_REBOOT_INITIATED): installed, the installer
    /// started a reboot.
    SucceededRebootStarted,
    /// 1618 (ERROR_INSTALL_ALREADY_RUNNING) or a held dpkg/rpm lock: not a
    /// failure, try again later.
    RetryLater { reason: String },
    /// Anything else.
    Failed { exit: ProcessExit, stderr_tail: String },
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::SucceededRebootPending | Outcome::SucceededRebootStarted)
    }
}

/// The G8 table, for every installer.
pub fn classify(exit: ProcessExit, stderr_tail: &str) -> Outcome {
    match exit {
        ProcessExit::Code(0) => Outcome::Succeeded,
        ProcessExit::Code(3010) => Outcome::SucceededRebootPending,
        ProcessExit::Code(1641) => Outcome::SucceededRebootStarted,
        ProcessExit::Code(1618) => {
            Outcome::RetryLater { reason: "another installation is in progress (exit code 1618)".into() }
        }
        exit => Outcome::Failed { exit, stderr_tail: stderr_tail.to_owned() },
    }
}

/// An installer that could not run at all (as opposed to one that ran and
/// failed, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("failed to start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to wait for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not available on this platform")]
    Unavailable { what: String },
    #[error("the {installer} installer was handed a {package} package")]
    WrongType { installer: PackageType, package: PackageType },
    #[error("the {installer} installer cannot remove by {removal}")]
    UnsupportedRemoval { installer: PackageType, removal: &'static str },
    #[error("{what} {value:?} is not valid: {why}")]
    InvalidName { what: &'static str, value: String, why: &'static str },
    #[error(transparent)]
    Storage(#[from] CacheError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("{program} {args}: {message}")]
    Tool { program: String, args: String, message: String },
}

/// The pre-install check refused the cached blob.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(
        "{}: the bytes to install do not match: expected sha256 {expected} ({expected_size} bytes), actual {actual} ({actual_size} bytes); nothing was installed",
        source_path.display()
    )]
    Mismatch { source_path: PathBuf, expected: String, expected_size: u64, actual: String, actual_size: u64 },
    #[error(transparent)]
    Storage(#[from] CacheError),
}

/// A private copy of a package whose exact bytes were hashed as they were
/// copied and matched the expected digest. Installers take nothing else.
/// The staging file is removed when this is dropped.
#[derive(Debug)]
pub struct VerifiedPackage {
    path: PathBuf,
    digest: Sha256Digest,
    size: u64,
    kind: PackageType,
}

static STAGING_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl VerifiedPackage {
    /// Copies `blob` into a new 0600 file under `staging_dir` (created 0700),
    /// hashing the bytes copied, and fsyncs it. Refuses (and removes the
    /// copy) when the bytes are not the blob's digest and size.
    pub fn stage(blob: &CachedBlob, kind: PackageType, staging_dir: &Path) -> Result<VerifiedPackage, StageError> {
        let sequence = STAGING_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}.{}.{sequence}.{}", blob.digest(), std::process::id(), kind.extension());
        VerifiedPackage::stage_as(blob, kind, staging_dir, &name)
    }

    /// As [`VerifiedPackage::stage`], under the file name a package manager
    /// looks for (apt finds an archive in its cache by
    /// `NAME_VERSION_ARCH.deb`). A file already there is replaced.
    pub fn stage_as(
        blob: &CachedBlob,
        kind: PackageType,
        staging_dir: &Path,
        name: &str,
    ) -> Result<VerifiedPackage, StageError> {
        private_dir(staging_dir)?;
        let path = staging_dir.join(name);
        remove_if_present(&path)?;
        let result = copy_hashing(blob.path(), &path);
        let (actual, actual_size) = match result {
            Ok(found) => found,
            Err(e) => {
                let _ = remove_if_present(&path);
                return Err(e.into());
            }
        };
        if actual != blob.digest() || actual_size != blob.size() {
            remove_if_present(&path)?;
            return Err(StageError::Mismatch {
                source_path: blob.path().to_owned(),
                expected: blob.digest().to_hex(),
                expected_size: blob.size(),
                actual: actual.to_hex(),
                actual_size,
            });
        }
        Ok(VerifiedPackage { path, digest: actual, size: actual_size, kind })
    }

    /// The staging file: the only path an installer is given.
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn kind(&self) -> PackageType {
        self.kind
    }

    fn expect_kind(&self, installer: PackageType) -> Result<(), InstallError> {
        if self.kind == installer { Ok(()) } else { Err(InstallError::WrongType { installer, package: self.kind }) }
    }
}

impl Drop for VerifiedPackage {
    fn drop(&mut self) {
        // Best effort: a leftover staging file is only disk space, and the
        // next stage uses a new name.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn copy_hashing(from: &Path, to: &Path) -> Result<(Sha256Digest, u64), CacheError> {
    let mut input = std::fs::File::open(from).map_err(io_error("failed to open", from))?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io_error("failed to create", to))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_error("failed to read", from))?;
        if n == 0 {
            break;
        }
        // The bytes hashed are the bytes written: one buffer for both.
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io_error("failed to write", to))?;
        size += n as u64;
    }
    output.sync_all().map_err(io_error("failed to fsync", to))?;
    Ok((Sha256Digest::from_hasher(hasher), size))
}

/// What to remove.
#[derive(Debug, Clone, Copy)]
pub enum Removal<'a> {
    /// A package manager's package name (deb, rpm).
    Package(&'a str),
    /// An MSI product code, `{GUID}`.
    ProductCode(&'a str),
    /// A Windows update by its KB number (`5032190` or `KB5032190`).
    Kb(&'a str),
    /// Run a verified uninstaller (script, exe) with these arguments.
    Run { package: &'a VerifiedPackage, args: &'a [String] },
}

impl Removal<'_> {
    fn name(&self) -> &'static str {
        match self {
            Removal::Package(_) => "package name",
            Removal::ProductCode(_) => "product code",
            Removal::Kb(_) => "KB number",
            Removal::Run { .. } => "running an uninstaller",
        }
    }
}

/// One package type's installer.
pub trait Installer {
    fn kind(&self) -> PackageType;
    /// Installs `package` with the package's own arguments.
    fn install(&self, package: &VerifiedPackage, args: &[String]) -> Result<Outcome, InstallError>;
    fn uninstall(&self, removal: Removal<'_>) -> Result<Outcome, InstallError>;
}

/// The pre-install check and the install, in the one order G1 allows:
/// stage (re-hash the exact bytes), then hand the staging file over.
pub fn install_blob(
    installer: &dyn Installer,
    blob: &CachedBlob,
    staging_dir: &Path,
    args: &[String],
) -> Result<Outcome, InstallError> {
    let package = VerifiedPackage::stage(blob, installer.kind(), staging_dir)?;
    installer.install(&package, args)
}

/// A package manager name as dpkg and rpm accept it; refuses anything that
/// could be read as an option.
pub(crate) fn check_package_name(name: &str) -> Result<(), InstallError> {
    let invalid = |why| InstallError::InvalidName { what: "package name", value: name.chars().take(80).collect(), why };
    let first = name.chars().next().ok_or_else(|| invalid("it is empty"))?;
    if !first.is_ascii_alphanumeric() {
        return Err(invalid("it must start with a letter or digit"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "+-._:~".contains(c)) || name.len() > 200 {
        return Err(invalid("it may hold only letters, digits and + - . _ : ~"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_classified_per_g8() {
        assert_eq!(classify(ProcessExit::Code(0), "x"), Outcome::Succeeded);
        assert_eq!(classify(ProcessExit::Code(3010), ""), Outcome::SucceededRebootPending);
        assert_eq!(classify(ProcessExit::Code(1641), ""), Outcome::SucceededRebootStarted);
        assert!(matches!(classify(ProcessExit::Code(1618), ""), Outcome::RetryLater { .. }));
        assert_eq!(
            classify(ProcessExit::Code(1603), "fatal"),
            Outcome::Failed { exit: ProcessExit::Code(1603), stderr_tail: "fatal".into() }
        );
        assert!(matches!(classify(ProcessExit::Signal(9), ""), Outcome::Failed { .. }));
        assert!(!classify(ProcessExit::Code(1), "").succeeded());
        assert!(classify(ProcessExit::Code(3010), "").succeeded());
    }

    #[test]
    fn package_types_parse_from_the_wire() {
        for kind in ["deb", "rpm", "script", "msi", "msu", "exe"] {
            assert_eq!(kind.parse::<PackageType>().unwrap().as_str(), kind);
        }
        assert!("zip".parse::<PackageType>().is_err());
    }

    #[test]
    fn package_names_cannot_be_options() {
        assert!(check_package_name("libssl3").is_ok());
        assert!(check_package_name("g++-12").is_ok());
        assert!(check_package_name("--purge").is_err());
        assert!(check_package_name("").is_err());
        assert!(check_package_name("a b").is_err());
    }
}
