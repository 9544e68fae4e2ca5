//! Which installed binaries a fix upgrades, and to which exact versions:
//! pure, from the item's fixes, the inventory and the signed index.
//!
//! The affected binaries follow DESIGN's rule (`patchward_api::fixes`): for
//! a source fix every binary built from that source whose source version
//! is below the fix, every architecture copy (and, for an inventory that
//! names no sources, the binaries the advisory lists); for a binary fix the
//! named binary's copies below it. Each is upgraded to the highest version
//! its architecture's index offers that meets the fix, judged as the fix
//! judges (the source version for a source fix), so every binary of a
//! source moves together. None meeting it is a lagging repository: the
//! item waits, it does not fail.

use patchward_api::fixes::{FixKind, PackageFix, PackageIndex};
use patchward_api::{InstalledPackage, PackageManager, compare_versions};

use super::apt::{IndexRecord, PackageVersion};

/// An installed binary a fix upgrades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected<'a> {
    pub fix: &'a PackageFix,
    pub package: &'a InstalledPackage,
}

/// The installed binaries of `manager` that `fixes` (for `platform`) need
/// upgraded, each once, in name and architecture order.
pub fn affected<'a>(
    fixes: &'a [PackageFix],
    platform: Option<&str>,
    manager: PackageManager,
    installed: &'a [InstalledPackage],
) -> Vec<Affected<'a>> {
    let index = PackageIndex::new(installed);
    let mut found: Vec<Affected<'a>> = Vec::new();
    let scheme = manager.scheme();
    for fix in
        fixes.iter().filter(|f| f.manager == manager && (f.platform.is_none() || f.platform.as_deref() == platform))
    {
        let below = |version: &str| compare_versions(version, &fix.fixed_version, scheme).is_lt();
        let mut add = |package: &'a InstalledPackage| found.push(Affected { fix, package });
        match fix.kind {
            FixKind::Binary => index.binaries(manager, &fix.package).filter(|p| below(&p.version)).for_each(&mut add),
            FixKind::Source => {
                index.built_from(manager, &fix.package).filter(|p| below(p.source_version())).for_each(&mut add);
                for binary in fix.binaries.iter().filter(|b| **b != fix.package) {
                    index
                        .binaries(manager, binary)
                        .filter(|p| p.source.is_none() && below(&p.version))
                        .for_each(&mut add);
                }
            }
        }
    }
    found.sort_by(|a, b| (&a.package.name, &a.package.arch).cmp(&(&b.package.name, &b.package.arch)));
    found.dedup_by(|a, b| a.package == b.package);
    found
}

/// The installed package's architecture; dpkg's inventory always names it.
pub fn arch_of(package: &InstalledPackage) -> &str {
    package.arch.as_deref().unwrap_or("all")
}

/// Why a fix cannot be installed yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the repositories offer {package} up to {offered}, below the fix ({fix} {fixed})")]
pub struct Lagging {
    pub package: String,
    /// The highest version offered, or "nothing".
    pub offered: String,
    pub fix: String,
    pub fixed: String,
}

/// The version `affected` is upgraded to, among `records` (the index's
/// versions of its name and architecture).
pub fn target(affected: &Affected<'_>, records: &[IndexRecord]) -> Result<PackageVersion, Lagging> {
    let (fix, package) = (affected.fix, affected.package);
    let scheme = package.manager.scheme();
    let arch = arch_of(package);
    let meets = |record: &IndexRecord| match fix.kind {
        FixKind::Source => {
            record.source == fix.package
                && !compare_versions(&record.source_version, &fix.fixed_version, scheme).is_lt()
        }
        FixKind::Binary => !compare_versions(&record.version, &fix.fixed_version, scheme).is_lt(),
    };
    // The installed version is listed too, from the dpkg database: only
    // what a repository offers counts.
    let mine: Vec<&IndexRecord> =
        records.iter().filter(|r| *r.name == *package.name && r.arch == arch && r.downloadable).collect();
    let best = mine
        .iter()
        .filter(|r| meets(r) && compare_versions(&r.version, &package.version, scheme).is_gt())
        .max_by(|a, b| compare_versions(&a.version, &b.version, scheme));
    match best {
        Some(record) => Ok(PackageVersion {
            name: package.name.to_string(),
            arch: arch.to_owned(),
            version: record.version.clone(),
        }),
        None => Err(Lagging {
            package: format!("{}:{arch}", package.name),
            offered: mine
                .iter()
                .max_by(|a, b| compare_versions(&a.version, &b.version, scheme))
                .map_or_else(|| "nothing".to_owned(), |r| r.version.clone()),
            fix: fix.package.clone(),
            fixed: fix.fixed_version.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(name: &str, version: &str, source: Option<(&str, &str)>) -> InstalledPackage {
        InstalledPackage {
            manager: PackageManager::Dpkg,
            name: name.into(),
            version: version.into(),
            arch: Some("amd64".into()),
            source: source.map(|s| s.0.into()),
            source_version: source.map(|s| s.1.into()),
        }
    }

    fn record(name: &str, version: &str, source: &str, source_version: &str) -> IndexRecord {
        IndexRecord {
            name: name.into(),
            arch: "amd64".into(),
            version: version.into(),
            source: source.into(),
            source_version: source_version.into(),
            downloadable: true,
        }
    }

    fn source_fix(package: &str, fixed: &str) -> PackageFix {
        PackageFix {
            manager: PackageManager::Dpkg,
            package: package.into(),
            fixed_version: fixed.into(),
            platform: None,
            kind: FixKind::Source,
            binaries: vec![],
        }
    }

    #[test]
    fn every_binary_of_the_source_below_the_fix_is_affected() {
        let packages = [
            installed("libpw1", "1:1.0-1", Some(("pwlib", "1.0-1"))),
            installed("pw-tools", "1.0-1", Some(("pwlib", "1.0-1"))),
            installed("other", "1.0-1", None),
        ];
        let fixes = [source_fix("pwlib", "1.0-2")];
        let found = affected(&fixes, None, PackageManager::Dpkg, &packages);
        let names: Vec<&str> = found.iter().map(|a| &*a.package.name).collect();
        assert_eq!(names, ["libpw1", "pw-tools"]);
        assert!(affected(&[source_fix("pwlib", "1.0-1")], None, PackageManager::Dpkg, &packages).is_empty());
    }

    #[test]
    fn the_target_meets_the_fix_by_source_version_not_by_the_binarys_epoch() {
        let package = installed("libpw1", "1:1.0-1", Some(("pwlib", "1.0-1")));
        let fix = source_fix("pwlib", "1.0-2");
        let affected = Affected { fix: &fix, package: &package };
        let records = [record("libpw1", "1:1.0-1", "pwlib", "1.0-1"), record("libpw1", "1:1.0-2", "pwlib", "1.0-2")];
        assert_eq!(target(&affected, &records).unwrap().version, "1:1.0-2");
        let lagging = target(&affected, &records[..1]).unwrap_err();
        assert_eq!(lagging.offered, "1:1.0-1");
        assert!(lagging.to_string().contains("below the fix (pwlib 1.0-2)"), "{lagging}");
    }
}
