//! Whether an item is installed, by the catalog's `detect` rules (or a
//! software version's `detection`): any one rule that holds is enough.
//! Packages compare with the engine's own version ordering, files hash
//! under the agent's root, and the Windows rules go through the Windows
//! edge, which on Linux can only say it does not know.
//!
//! An item without `detect` rules but with package fixes for a manager the
//! device has (one its inventory lists packages of) is detected by the
//! fixes (DESIGN, "Detection follows from the fixes"), by the very rule the
//! engine plans with ([`patchward_api::fixes::fix_state`]) over the
//! device's own inventory and `platform` fact: every affected package at
//! or above its fixed version is present, any below is absent, and none
//! installed (or no fix for this platform) is *not applicable*, a result
//! of its own: there is nothing to install and nothing to remove, and it
//! is never read as absent. Fixes only for managers the device lacks (rpm
//! fixes on a Debian host) say nothing here: the item is left to its rules,
//! as an item without fixes.

use std::fmt;
use std::io::{self, Read};
use std::path::{Component, Path};

use patchward_api::desired::DesiredItem;
use patchward_api::detection::{Detection, DetectionRule, PackageDetection};
use patchward_api::fixes::{FixState, PackageFix, PackageIndex, fix_state};
use patchward_api::{Inventory, PackageManager, VersionScheme, version_at_least};
use sha2::{Digest, Sha256};

use crate::facts::under_root;
use crate::windows::{WindowsProbe, WindowsProbeError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectionResult {
    Present,
    Absent,
    /// The item's package fixes name nothing installed on this device (or
    /// none is for its platform): nothing to install, nothing to remove.
    NotApplicable,
    /// The rules could not be checked here; never read as either answer.
    Unknown(String),
}

impl fmt::Display for DetectionResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectionResult::Present => f.write_str("present"),
            DetectionResult::Absent => f.write_str("absent"),
            DetectionResult::NotApplicable => f.write_str("not applicable"),
            DetectionResult::Unknown(reason) => write!(f, "unknown: {reason}"),
        }
    }
}

/// What detection reads of the device.
#[derive(Clone, Copy, Debug)]
pub struct DeviceView<'a> {
    /// Where files are looked for.
    pub root: &'a Path,
    pub inventory: &'a Inventory,
    /// The `platform` fact (`debian-12`): which fixes are for this device.
    pub platform: Option<&'a str>,
}

/// What an item is detected by, on a device with this inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectedBy<'a> {
    Rules(&'a Detection),
    /// The item's fixes, some of them for a manager the device has.
    Fixes(&'a [PackageFix]),
    /// Neither: only an installer's word says anything.
    Nothing,
}

/// The rules when the item has them; else its fixes when one is for a
/// manager the device has; else nothing.
pub fn detected_by<'a>(item: &'a DesiredItem, inventory: &Inventory) -> DetectedBy<'a> {
    if let Some(rules) = &item.detect {
        return DetectedBy::Rules(rules);
    }
    let has = |manager: PackageManager| inventory.packages.iter().any(|p| p.manager == manager);
    if item.fixes.iter().any(|fix| has(fix.manager)) {
        return DetectedBy::Fixes(&item.fixes);
    }
    DetectedBy::Nothing
}

/// An item's detection on a device: by [`detected_by`].
pub fn detect_item(item: &DesiredItem, device: &DeviceView<'_>, windows: &dyn WindowsProbe) -> DetectionResult {
    match detected_by(item, device.inventory) {
        DetectedBy::Rules(rules) => detect(rules, device.root, device.inventory, windows),
        DetectedBy::Fixes(fixes) => detect_fixes(fixes, device.platform, device.inventory),
        DetectedBy::Nothing => DetectionResult::Unknown("the item has no detection rules".into()),
    }
}

/// The fixes' verdict on these packages, for a device of `platform`.
pub fn detect_fixes(fixes: &[PackageFix], platform: Option<&str>, inventory: &Inventory) -> DetectionResult {
    match fix_state(fixes, platform, &PackageIndex::new(&inventory.packages)) {
        FixState::Fixed => DetectionResult::Present,
        FixState::Needed => DetectionResult::Absent,
        FixState::NotApplicable => DetectionResult::NotApplicable,
        FixState::NoFixes => DetectionResult::Unknown("the item has no package fixes".into()),
    }
}

/// The outcome of all the rules: Present if any rule holds; else Unknown
/// if any could not be checked (it might hold); else Absent. No rules at
/// all prove nothing: Unknown.
pub fn detect(rules: &Detection, root: &Path, inventory: &Inventory, windows: &dyn WindowsProbe) -> DetectionResult {
    combine(detect_each(rules, root, inventory, windows))
}

/// Each rule's own outcome, in order (for the logs and the report).
pub fn detect_each(
    rules: &Detection,
    root: &Path,
    inventory: &Inventory,
    windows: &dyn WindowsProbe,
) -> Vec<(DetectionRule, DetectionResult)> {
    rules.any_of.iter().map(|rule| (rule.clone(), detect_rule(rule, root, inventory, windows))).collect()
}

fn combine(outcomes: Vec<(DetectionRule, DetectionResult)>) -> DetectionResult {
    if outcomes.is_empty() {
        return DetectionResult::Unknown("no detection rules".to_owned());
    }
    if outcomes.iter().any(|(_, r)| *r == DetectionResult::Present) {
        return DetectionResult::Present;
    }
    let unknown: Vec<String> = outcomes
        .iter()
        .filter_map(|(_, r)| match r {
            DetectionResult::Unknown(reason) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    if unknown.is_empty() { DetectionResult::Absent } else { DetectionResult::Unknown(unknown.join("; ")) }
}

pub fn detect_rule(
    rule: &DetectionRule,
    root: &Path,
    inventory: &Inventory,
    windows: &dyn WindowsProbe,
) -> DetectionResult {
    match rule {
        DetectionRule::Package(package) => detect_package(package, inventory),
        DetectionRule::File(file) => {
            let actual = if is_windows_path(&file.path) {
                windows.file_sha256(&file.path).map_err(|e| windows_reason(&e))
            } else {
                file_sha256_under(root, &file.path)
            };
            match actual {
                Ok(Some(actual)) if actual.eq_ignore_ascii_case(file.sha256.trim()) => DetectionResult::Present,
                Ok(_) => DetectionResult::Absent,
                Err(reason) => DetectionResult::Unknown(reason),
            }
        }
        DetectionRule::FileVersion(file) => match windows.file_version(&file.path) {
            Ok(Some(version)) => at_least(&version, &file.at_least, VersionScheme::Windows),
            Ok(None) => DetectionResult::Absent,
            Err(e) => DetectionResult::Unknown(windows_reason(&e)),
        },
        DetectionRule::Registry(registry) => match windows.registry_value(&registry.key, &registry.value) {
            Ok(Some(data)) => at_least(&data, &registry.at_least, VersionScheme::Windows),
            Ok(None) => DetectionResult::Absent,
            Err(e) => DetectionResult::Unknown(windows_reason(&e)),
        },
    }
}

fn at_least(actual: &str, wanted: &str, scheme: VersionScheme) -> DetectionResult {
    if version_at_least(actual, wanted, scheme) { DetectionResult::Present } else { DetectionResult::Absent }
}

fn windows_reason(error: &WindowsProbeError) -> String {
    error.to_string()
}

/// Installed at or above `atLeast`, by the manager's own ordering (the
/// engine's comparison). A name installed more than once (dpkg's
/// multi-arch copies) counts only when every copy is at or above: one old
/// copy still carries the flaw.
/// Every architecture copy at least the version, by the rule the engine
/// judges `package` detection with ([`PackageIndex::at_least`]).
fn detect_package(rule: &PackageDetection, inventory: &Inventory) -> DetectionResult {
    if PackageIndex::new(&inventory.packages).at_least(rule.manager, &rule.name, &rule.at_least) {
        DetectionResult::Present
    } else {
        DetectionResult::Absent
    }
}

/// `C:\…`, `C:/…` or `\\server\share\…`.
fn is_windows_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    path.starts_with(r"\\")
        || (bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' && matches!(bytes[2], b'\\' | b'/'))
}

/// The sha256 of the file at `path` as seen from inside `root`; `Ok(None)`
/// when there is no such file. A path that climbs out of the root (`..`)
/// is refused rather than followed.
pub fn file_sha256_under(root: &Path, path: &str) -> Result<Option<String>, String> {
    if Path::new(path).components().any(|c| c == Component::ParentDir) {
        return Err(format!("{path}: a detection path may not contain `..`"));
    }
    let full = under_root(root, path);
    let mut file = match std::fs::File::open(&full) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", full.display())),
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{}: {e}", full.display())),
        }
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// The package an uninstall of this item should remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageToRemove {
    pub manager: PackageManager,
    pub name: String,
}

/// For an item detected by `package` rules: the package an uninstall
/// removes. The first package rule whose package this device has
/// installed, in rule order; if none is installed, the first package rule
/// (removing it is then a no-op the installer reports). `None` when the
/// rules name no package.
pub fn package_to_remove(rules: &Detection, inventory: &Inventory) -> Option<PackageToRemove> {
    let packages = rules.any_of.iter().filter_map(|rule| match rule {
        DetectionRule::Package(package) => Some(package),
        _ => None,
    });
    let mut first = None;
    for package in packages {
        first.get_or_insert(package);
        if inventory.packages.iter().any(|p| p.manager == package.manager && *p.name == *package.name) {
            return Some(PackageToRemove { manager: package.manager, name: package.name.clone() });
        }
    }
    first.map(|package| PackageToRemove { manager: package.manager, name: package.name.clone() })
}
