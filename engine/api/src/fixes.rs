//! Package fixes and what they say about one device: the rule DESIGN fixes
//! ("Applicability of a source fix") in one place, so that the engine's
//! planner and the agent's detection cannot disagree.
//!
//! A fix names a package of a manager and the version that fixes it, on one
//! platform or on any. Its `kind` says which package it names:
//!
//! - **binary** (the default): the named binary's own versions are compared,
//!   every architecture copy;
//! - **source**: the affected packages are the device's installed binaries
//!   built from that source (every architecture copy), and their *source*
//!   versions are compared, never the binaries' own: `bsdutils
//!   1:2.38.1-5+deb12u3` comes from `util-linux 2.38.1-5+deb12u3`. A binary
//!   whose inventory names no source is its own source at its own version.
//!   An older agent sends no sources at all; a binary it lists that the fix's
//!   `binaries` names still counts, by its own version.
//!
//! The device needs the patch when any affected package is below its fixed
//! version, has it when there is at least one and all are at or above, and
//! the patch does not apply when there is none (nor when no fix is for the
//! device's platform). A patch without fixes is left to its other rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{InstalledPackage, PackageManager, compare_versions};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FixKind {
    /// The fix names a binary package (Red Hat's NEVRAs, AlmaLinux's and
    /// Rocky's records, patchward's own feed).
    #[default]
    Binary,
    /// The fix names a source package (Debian and Ubuntu advisories).
    Source,
}

impl FixKind {
    fn is_binary(&self) -> bool {
        *self == FixKind::Binary
    }
}

/// `{manager, package, fixedVersion, platform?, kind?, binaries?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackageFix {
    pub manager: PackageManager,
    pub package: String,
    pub fixed_version: String,
    /// The platform this fix is for (`ubuntu-22.04`), when one advisory
    /// fixes several releases with different versions; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Whether `package` is a source or a binary package.
    #[serde(default, skip_serializing_if = "FixKind::is_binary")]
    pub kind: FixKind,
    /// For a source fix, the binaries the advisory says it builds (Ubuntu's
    /// `ecosystem_specific.binaries`): how a device whose inventory names no
    /// sources is still matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binaries: Vec<String>,
}

/// What a patch's package fixes say about a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FixState {
    /// The patch has no package fixes: other rules decide.
    NoFixes,
    /// None of the fixed packages is installed: the patch does not apply.
    NotApplicable,
    /// Some affected package is below its fixed version.
    Needed,
    /// Every affected package is at or above its fixed version.
    Fixed,
}

/// A device's installed packages, looked up by binary name and by source
/// name. Architecture copies stay distinct entries. Two sorted lists, not
/// maps of lists: the planner builds one per device, so it allocates twice.
#[derive(Debug, Default)]
pub struct PackageIndex<'a> {
    by_name: Vec<Entry<'a>>,
    by_source: Vec<Entry<'a>>,
}

type Entry<'a> = ((PackageManager, &'a str), &'a InstalledPackage);

fn range<'s, 'a>(entries: &'s [Entry<'a>], manager: PackageManager, name: &str) -> &'s [Entry<'a>] {
    let start = entries.partition_point(|((m, n), _)| (*m, *n) < (manager, name));
    let len = entries[start..].partition_point(|((m, n), _)| (*m, *n) == (manager, name));
    &entries[start..start + len]
}

impl<'a> PackageIndex<'a> {
    pub fn new(packages: &'a [InstalledPackage]) -> Self {
        let mut by_name: Vec<Entry<'a>> = packages.iter().map(|p| ((p.manager, &*p.name), p)).collect();
        let mut by_source: Vec<Entry<'a>> = packages.iter().map(|p| ((p.manager, p.source_name()), p)).collect();
        by_name.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        by_source.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        PackageIndex { by_name, by_source }
    }

    /// Every copy of the binary `name`.
    pub fn binaries(&self, manager: PackageManager, name: &str) -> impl Iterator<Item = &'a InstalledPackage> + '_ {
        range(&self.by_name, manager, name).iter().map(|(_, p)| *p)
    }

    /// Every installed binary built from `source`.
    pub fn built_from(&self, manager: PackageManager, source: &str) -> impl Iterator<Item = &'a InstalledPackage> + '_ {
        range(&self.by_source, manager, source).iter().map(|(_, p)| *p)
    }

    /// Whether every copy of `name` is at least `version` (and one exists).
    pub fn at_least(&self, manager: PackageManager, name: &str, version: &str) -> bool {
        let mut copies = self.binaries(manager, name).peekable();
        copies.peek().is_some() && copies.all(|p| crate::version_at_least(&p.version, version, manager.scheme()))
    }
}

impl InstalledPackage {
    /// The source package this binary was built from: itself when the
    /// inventory names none.
    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }

    /// The source's version: the binary's own when the inventory names none.
    pub fn source_version(&self) -> &str {
        self.source_version.as_deref().unwrap_or(&self.version)
    }
}

/// The rule of the module doc, over the fixes for `platform` (a fix without
/// a platform is for any).
pub fn fix_state(fixes: &[PackageFix], platform: Option<&str>, packages: &PackageIndex<'_>) -> FixState {
    if fixes.is_empty() {
        return FixState::NoFixes;
    }
    let mut state = FixState::NotApplicable;
    for fix in fixes.iter().filter(|f| f.platform.is_none() || f.platform.as_deref() == platform) {
        let scheme = fix.manager.scheme();
        let below = |version: &str| compare_versions(version, &fix.fixed_version, scheme).is_lt();
        let mut affected = false;
        let mut needed = false;
        match fix.kind {
            FixKind::Binary => {
                for package in packages.binaries(fix.manager, &fix.package) {
                    affected = true;
                    needed |= below(&package.version);
                }
            }
            FixKind::Source => {
                for package in packages.built_from(fix.manager, &fix.package) {
                    affected = true;
                    needed |= below(package.source_version());
                }
                // An older agent names no sources: the advisory's binaries
                // list is how its packages are still found.
                for binary in &fix.binaries {
                    for package in packages.binaries(fix.manager, binary).filter(|p| p.source.is_none()) {
                        if *package.name != *fix.package {
                            affected = true;
                            needed |= below(&package.version);
                        }
                    }
                }
            }
        }
        if needed {
            return FixState::Needed;
        }
        if affected {
            state = FixState::Fixed;
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dpkg(name: &str, version: &str, arch: &str, source: Option<(&str, Option<&str>)>) -> InstalledPackage {
        InstalledPackage {
            manager: PackageManager::Dpkg,
            name: name.into(),
            version: version.into(),
            arch: Some(arch.into()),
            source: source.map(|s| s.0.into()),
            source_version: source.and_then(|s| s.1.map(Into::into)),
        }
    }

    fn source_fix(package: &str, fixed: &str, binaries: &[&str]) -> PackageFix {
        PackageFix {
            manager: PackageManager::Dpkg,
            package: package.into(),
            fixed_version: fixed.into(),
            platform: None,
            kind: FixKind::Source,
            binaries: binaries.iter().map(|b| (*b).into()).collect(),
        }
    }

    #[test]
    fn source_versions_are_compared_not_the_binaries_epoch() {
        let fixed = [dpkg("bsdutils", "1:2.38.1-5+deb12u3", "amd64", Some(("util-linux", Some("2.38.1-5+deb12u3"))))];
        let fix = [source_fix("util-linux", "2.38.1-5+deb12u3", &[])];
        assert_eq!(fix_state(&fix, None, &PackageIndex::new(&fixed)), FixState::Fixed);
        let old = [dpkg("bsdutils", "1:2.38.1-5+deb12u2", "amd64", Some(("util-linux", Some("2.38.1-5+deb12u2"))))];
        assert_eq!(fix_state(&fix, None, &PackageIndex::new(&old)), FixState::Needed);
    }

    #[test]
    fn a_binnmu_is_judged_by_its_source_version() {
        let installed = [dpkg("libfoo1", "1.2-3+b1", "amd64", Some(("foo", Some("1.2-3"))))];
        assert_eq!(
            fix_state(&[source_fix("foo", "1.2-4", &[])], None, &PackageIndex::new(&installed)),
            FixState::Needed
        );
        assert_eq!(
            fix_state(&[source_fix("foo", "1.2-3", &[])], None, &PackageIndex::new(&installed)),
            FixState::Fixed
        );
    }

    #[test]
    fn any_architecture_copy_below_needs_the_patch() {
        let installed = [
            dpkg("libssl3", "3.0.15-1~deb12u1", "amd64", Some(("openssl", None))),
            dpkg("libssl3", "3.0.11-1~deb12u2", "i386", Some(("openssl", None))),
        ];
        let fix = [source_fix("openssl", "3.0.15-1~deb12u1", &[])];
        assert_eq!(fix_state(&fix, None, &PackageIndex::new(&installed)), FixState::Needed);
    }

    #[test]
    fn an_older_agent_is_matched_through_the_binaries_list() {
        let old_agent = [InstalledPackage {
            manager: PackageManager::Dpkg,
            name: "libpython3.8-minimal".into(),
            version: "3.8.10-0ubuntu1~20.04.11".into(),
            arch: None,
            source: None,
            source_version: None,
        }];
        let fix = [source_fix("python3.8", "3.8.10-0ubuntu1~20.04.12", &["libpython3.8-minimal", "python3.8"])];
        assert_eq!(fix_state(&fix, None, &PackageIndex::new(&old_agent)), FixState::Needed);
        assert_eq!(
            fix_state(
                &[source_fix("python3.8", "3.8.10-0ubuntu1~20.04.12", &[])],
                None,
                &PackageIndex::new(&old_agent)
            ),
            FixState::NotApplicable
        );
    }

    #[test]
    fn a_fix_for_another_platform_does_not_apply() {
        let mut fix = source_fix("openssl", "3.0.15", &[]);
        fix.platform = Some("debian-12".into());
        let none: [InstalledPackage; 0] = [];
        assert_eq!(fix_state(&[fix.clone()], Some("ubuntu-22.04"), &PackageIndex::new(&none)), FixState::NotApplicable);
        assert_eq!(fix_state(&[], Some("ubuntu-22.04"), &PackageIndex::new(&none)), FixState::NoFixes);
        assert_eq!(fix_state(&[fix], Some("debian-12"), &PackageIndex::new(&none)), FixState::NotApplicable);
    }
}
