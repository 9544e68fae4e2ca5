//! The way back from a repository install, secured before it runs and
//! kept in the agent's books until the item is retracted: for every package
//! upgraded, the version it had and where that version can come from again
//! (the repositories, or a backup the agent rebuilt, hashed).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::apt::PackageVersion;

/// Every package one item upgraded, as it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WayBack {
    /// Whose packages: apt restores dpkg's, dnf rpm's.
    #[serde(default = "dpkg")]
    pub manager: patchward_api::PackageManager,
    pub packages: Vec<Restore>,
}

impl Default for WayBack {
    fn default() -> WayBack {
        WayBack { manager: patchward_api::PackageManager::Dpkg, packages: Vec::new() }
    }
}

fn dpkg() -> patchward_api::PackageManager {
    patchward_api::PackageManager::Dpkg
}

/// One package's previous version and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    /// The version installed before the upgrade.
    pub previous: PackageVersion,
    /// The version the upgrade installed.
    pub upgraded_to: String,
    pub from: RestoreFrom,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RestoreFrom {
    /// The repositories offered the previous version when it was upgraded.
    Repository,
    /// A package rebuilt from the package database before the upgrade.
    Backup { path: PathBuf, sha256: String, size: u64 },
    /// It was not installed: the patch added it (a delivered package).
    NotInstalled,
}
