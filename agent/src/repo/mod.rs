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
pub mod resolve;
pub mod way_back;
