//! Installs through the device's own signed repositories (DESIGN, "Linux
//! patches from the distributions' own advisories and repositories").
//!
//! A real advisory carries no download URL: it says which package is fixed
//! in which version. For such an item (fixes for the device's manager, no
//! package of a kind the device runs) the agent:
//!
//! 1. refreshes the repositories' metadata and stops on any signature
//!    failure;
//! 2. resolves, for every affected installed binary (DESIGN's rule,
//!    `patchward_api::fixes`), the exact version that meets the fix, every
//!    binary of a source together; a fix the repositories do not offer yet
//!    is retried later, never failed;
//! 3. secures a way back for every package it will upgrade: the installed
//!    version from the repositories, or else a backup rebuilt from the
//!    package database ([`backup`]), hashed and journaled;
//! 4. simulates the transaction and refuses one that removes anything;
//! 5. fetches the exact files itself (URL and sha256 from the signed index)
//!    through its verified download, re-hashes them, and hands them to the
//!    package manager, which installs exactly those versions;
//! 6. verifies by detection and reports every package's name, version and
//!    sha256.
//!
//! A retraction restores the recorded versions through the same path (a
//! downgrade); it never removes a package.

pub mod apt;
pub mod backup;
pub mod dnf;
pub mod resolve;
pub mod way_back;

use std::path::{Path, PathBuf};

use patchward_api::PackageManager;

use self::apt::{Apt, Direction, Fetch, IndexRecord, PackageVersion};
use self::dnf::Dnf;
use crate::install::process::ProcessExit;
use crate::install::{InstallError, PackageType};

/// The client of the device's own repositories, one per package manager:
/// apt on dpkg systems, dnf on rpm systems. An item goes to the one whose
/// manager its affected packages have.
#[derive(Debug, Clone)]
pub enum Repositories {
    Apt(Apt),
    Dnf(Dnf),
}

/// A repository client's (apt's or dnf's) refusal or failure.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The metadata did not refresh cleanly: a signature that does not
    /// verify, an unreachable or tampered repository. Nothing was changed.
    #[error("the repositories' metadata did not refresh: {message}")]
    Refresh { message: String },
    /// The package manager's lock is held by someone else: retry later (G8).
    #[error("the package manager is busy: {message}")]
    Locked { message: String },
    #[error("the transaction would remove {}: refused", .packages.join(", "))]
    WouldRemove { packages: Vec<String> },
    /// The signed index names the file by another checksum only (dnf).
    #[error("the index of {repo} gives no sha256 for {package}, only {found}")]
    NoSha256 { package: String, repo: String, found: String },
    /// The transaction needs a file of a repository that was not staged (dnf).
    #[error("{package} is not staged at {}", .path.display())]
    NotStaged { package: String, path: PathBuf },
    #[error("{command}: {exit}: {message}")]
    Failed { command: String, exit: ProcessExit, message: String },
    #[error("{command}: unexpected output line {line:?}")]
    Unparsed { command: String, line: String },
    #[error(transparent)]
    Tool(#[from] InstallError),
}

impl RepoError {
    /// A lock held by someone else: retry later (G8), never a failure.
    pub fn is_locked(&self) -> bool {
        matches!(self, RepoError::Locked { .. })
    }
}

impl Repositories {
    pub fn manager(&self) -> PackageManager {
        match self {
            Repositories::Apt(_) => PackageManager::Dpkg,
            Repositories::Dnf(_) => PackageManager::Rpm,
        }
    }

    /// The rpm database dnf acts on; none for apt.
    pub fn rpm_root(&self) -> Option<&crate::install::rpm::RpmRoot> {
        match self {
            Repositories::Apt(_) => None,
            Repositories::Dnf(dnf) => Some(dnf.rpm()),
        }
    }

    pub fn package_type(&self) -> PackageType {
        match self {
            Repositories::Apt(_) => PackageType::Deb,
            Repositories::Dnf(_) => PackageType::Rpm,
        }
    }

    /// Where one transaction's fetched files are staged.
    pub fn archives(&self, staging: &Path) -> PathBuf {
        match self {
            Repositories::Apt(_) => apt::archives_dir(staging),
            Repositories::Dnf(_) => dnf::archives_dir(staging),
        }
    }

    pub fn refresh(&self) -> Result<(), RepoError> {
        match self {
            Repositories::Apt(apt) => apt.refresh(),
            Repositories::Dnf(dnf) => dnf.refresh(),
        }
    }

    pub fn records(&self, name: &str, arch: &str) -> Result<Vec<IndexRecord>, RepoError> {
        match self {
            Repositories::Apt(apt) => apt.records(name, arch),
            Repositories::Dnf(dnf) => dnf.records(name, arch),
        }
    }

    pub fn simulate(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<(), RepoError> {
        match self {
            Repositories::Apt(apt) => apt.simulate(targets, files, direction, archives),
            Repositories::Dnf(dnf) => dnf.simulate(targets, files, direction, archives),
        }
    }

    /// The files to fetch for `targets`, resolved together with the local
    /// `files` (which are not fetched).
    pub fn uris(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<Vec<Fetch>, RepoError> {
        match self {
            Repositories::Apt(apt) => apt.uris(targets, files, direction, archives),
            Repositories::Dnf(dnf) => dnf.uris(targets, files, direction, archives),
        }
    }

    pub fn install(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<(), RepoError> {
        match self {
            Repositories::Apt(apt) => apt.install(targets, files, direction, archives),
            Repositories::Dnf(dnf) => dnf.install(targets, files, direction, archives),
        }
    }
}
