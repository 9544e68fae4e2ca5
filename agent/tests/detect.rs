//! Detection: package rules by the engine's version ordering (and dpkg's
//! own), file hashes under a sandbox root, the Windows rules through the
//! edge, how anyOf combines, the example feed's rules on the example
//! fleet's servers, and detection by an item's package fixes (source and
//! binary fixes, architecture copies, platforms, not applicable).

use std::path::Path;

use patchward_agent::detect::{
    DetectedBy, DetectionResult, DeviceView, PackageToRemove, detect, detect_each, detect_fixes, detect_item,
    detected_by, file_sha256_under, package_to_remove,
};
use patchward_agent::inventory::{PackageRecord, read_dpkg_packages};
use patchward_agent::windows::{InstalledProgram, NoWindows, WindowsProbe, WindowsProbeError};
use patchward_api::desired::DesiredItem;
use patchward_api::detection::{
    Detection, DetectionRule, FileHashDetection, FileVersionDetection, PackageDetection, RegistryDetection,
};
use patchward_api::{InstalledPackage, Inventory, PackageManager};
use serde_json::json;

fn inventory(packages: &[(PackageManager, &str, &str)]) -> Inventory {
    Inventory {
        patches: vec![],
        packages: packages
            .iter()
            .map(|(manager, name, version)| InstalledPackage {
                manager: *manager,
                name: (*name).into(),
                version: (*version).into(),
                arch: None,
                source: None,
                source_version: None,
            })
            .collect(),
    }
}

fn package(manager: PackageManager, name: &str, at_least: &str) -> DetectionRule {
    DetectionRule::Package(PackageDetection { manager, name: name.into(), at_least: at_least.into() })
}

fn any_of(rules: Vec<DetectionRule>) -> Detection {
    Detection { any_of: rules }
}

const NO_ROOT: &str = "/nonexistent-root";

#[test]
fn package_rules_compare_by_the_managers_own_order() {
    use PackageManager::{Dpkg, Rpm};
    let device = inventory(&[
        (Dpkg, "openssl", "3.0.15-1~deb12u1"),
        (Dpkg, "curl", "7.88.1-10+deb12u5"),
        (Rpm, "openssl", "1:3.0.7-27.el9"),
        (Rpm, "bash", "5.1.8-9.el9"),
    ]);
    let check = |rule| detect(&any_of(vec![rule]), Path::new(NO_ROOT), &device, &NoWindows);
    // dpkg: equal, `~` before the release, a later deb12u.
    assert_eq!(check(package(Dpkg, "openssl", "3.0.15-1~deb12u1")), DetectionResult::Present);
    assert_eq!(check(package(Dpkg, "openssl", "3.0.15-1")), DetectionResult::Absent);
    assert_eq!(check(package(Dpkg, "curl", "7.88.1-10+deb12u10")), DetectionResult::Absent);
    assert_eq!(check(package(Dpkg, "curl", "7.88.1-10+deb12u4")), DetectionResult::Present);
    // rpm: the epoch outranks a higher version; a missing epoch is 0.
    assert_eq!(check(package(Rpm, "openssl", "3.2.2-6.el9")), DetectionResult::Present);
    assert_eq!(check(package(Rpm, "openssl", "1:3.0.7-28.el9")), DetectionResult::Absent);
    assert_eq!(check(package(Rpm, "bash", "0:5.1.8-9.el9")), DetectionResult::Present);
    // The manager matters: dpkg's curl is not rpm's.
    assert_eq!(check(package(Rpm, "curl", "1")), DetectionResult::Absent);
    assert_eq!(check(package(Dpkg, "nginx", "1")), DetectionResult::Absent);
}

#[test]
fn every_installed_copy_must_be_at_least() {
    use PackageManager::Dpkg;
    let device = inventory(&[(Dpkg, "libssl3", "3.0.15-1~deb12u1"), (Dpkg, "libssl3", "3.0.11-1~deb12u2")]);
    let rules = any_of(vec![package(Dpkg, "libssl3", "3.0.15-1~deb12u1")]);
    assert_eq!(detect(&rules, Path::new(NO_ROOT), &device, &NoWindows), DetectionResult::Absent);
}

/// Against this machine's real packages, with `dpkg --compare-versions`
/// as the oracle of each answer.
#[test]
fn package_rules_agree_with_dpkg_on_this_machines_packages() {
    let records = read_dpkg_packages(Path::new("/var/lib/dpkg"))
        .expect("this test needs a Debian host with a dpkg database at /var/lib/dpkg");
    let device = Inventory { patches: vec![], packages: records.iter().map(|r| r.installed()).collect() };
    let mut checked = 0;
    for record in records.iter().filter(|r| ["dpkg", "libc6", "bash", "coreutils", "tar"].contains(&r.name.as_str())) {
        for at_least in [record.version.clone(), format!("{}.1", record.version), format!("{}~", record.version)] {
            let ours = detect(
                &any_of(vec![package(PackageManager::Dpkg, &record.name, &at_least)]),
                Path::new(NO_ROOT),
                &device,
                &NoWindows,
            );
            let dpkg_says = std::process::Command::new("dpkg")
                .args(["--compare-versions", &record.version, "ge", &at_least])
                .status()
                .expect("dpkg runs")
                .success();
            let expected = if dpkg_says { DetectionResult::Present } else { DetectionResult::Absent };
            assert_eq!(ours, expected, "{} {} >= {at_least}", record.name, record.version);
            checked += 1;
        }
    }
    assert!(checked >= 3, "dpkg itself is installed, so at least its three cases ran");
}

const SHA256_OF_HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

#[test]
fn file_rules_hash_the_file_under_the_root() {
    let root = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(root.path().join("usr/lib")).expect("mkdir");
    std::fs::write(root.path().join("usr/lib/libdemo.so"), "hello\n").expect("write");
    let file = |path: &str, sha256: &str| {
        any_of(vec![DetectionRule::File(FileHashDetection { path: path.into(), sha256: sha256.into() })])
    };
    let empty = Inventory::default();
    let check = |rules: Detection| detect(&rules, root.path(), &empty, &NoWindows);
    assert_eq!(check(file("/usr/lib/libdemo.so", SHA256_OF_HELLO)), DetectionResult::Present);
    assert_eq!(check(file("/usr/lib/libdemo.so", &SHA256_OF_HELLO.to_ascii_uppercase())), DetectionResult::Present);
    assert_eq!(check(file("/usr/lib/libdemo.so", &"0".repeat(64))), DetectionResult::Absent);
    assert_eq!(check(file("/usr/lib/missing.so", SHA256_OF_HELLO)), DetectionResult::Absent);
    // Out of the root, unreadable, or a Windows path on Linux: unknown, with the path.
    let DetectionResult::Unknown(reason) = check(file("/usr/../../etc/passwd", SHA256_OF_HELLO)) else {
        panic!("a path climbing out of the root must not be followed")
    };
    assert!(reason.contains(".."), "{reason}");
    let DetectionResult::Unknown(reason) = check(file("/usr/lib", SHA256_OF_HELLO)) else {
        panic!("a directory cannot be hashed")
    };
    assert!(reason.contains("usr/lib"), "{reason}");
    let DetectionResult::Unknown(reason) = check(file(r"C:\Windows\System32\ntdll.dll", SHA256_OF_HELLO)) else {
        panic!("a Windows path goes to the Windows edge")
    };
    assert!(reason.contains("needs Windows"), "{reason}");
    assert_eq!(file_sha256_under(root.path(), "usr/lib/libdemo.so"), Ok(Some(SHA256_OF_HELLO.to_owned())));
}

/// A Windows host as data.
struct FakeWindows {
    ubr: Option<&'static str>,
    ntoskrnl: Option<&'static str>,
}

impl WindowsProbe for FakeWindows {
    fn installed_hotfixes(&self) -> Result<Vec<String>, WindowsProbeError> {
        Ok(vec![])
    }
    fn installed_programs(&self) -> Result<Vec<InstalledProgram>, WindowsProbeError> {
        Ok(vec![])
    }
    fn registry_value(&self, key: &str, value: &str) -> Result<Option<String>, WindowsProbeError> {
        assert_eq!((key, value), (r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion", "UBR"));
        Ok(self.ubr.map(str::to_owned))
    }
    fn file_version(&self, path: &str) -> Result<Option<String>, WindowsProbeError> {
        assert_eq!(path, r"C:\Windows\System32\ntoskrnl.exe");
        Ok(self.ntoskrnl.map(str::to_owned))
    }
    fn file_sha256(&self, _: &str) -> Result<Option<String>, WindowsProbeError> {
        Ok(Some(SHA256_OF_HELLO.into()))
    }
}

fn registry_ubr(at_least: &str) -> DetectionRule {
    DetectionRule::Registry(RegistryDetection {
        key: r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion".into(),
        value: "UBR".into(),
        at_least: at_least.into(),
    })
}

fn ntoskrnl(at_least: &str) -> DetectionRule {
    DetectionRule::FileVersion(FileVersionDetection {
        path: r"C:\Windows\System32\ntoskrnl.exe".into(),
        at_least: at_least.into(),
    })
}

#[test]
fn windows_rules_go_through_the_edge() {
    let empty = Inventory::default();
    let root = Path::new(NO_ROOT);
    let host = FakeWindows { ubr: Some("4460"), ntoskrnl: Some("10.0.22631.4317") };
    // Numerically: 4460 is at least 4460 and not at least 10000.
    assert_eq!(detect(&any_of(vec![registry_ubr("4460")]), root, &empty, &host), DetectionResult::Present);
    assert_eq!(detect(&any_of(vec![registry_ubr("10000")]), root, &empty, &host), DetectionResult::Absent);
    assert_eq!(detect(&any_of(vec![ntoskrnl("10.0.22631.4460")]), root, &empty, &host), DetectionResult::Absent);
    assert_eq!(detect(&any_of(vec![ntoskrnl("10.0.22631.999")]), root, &empty, &host), DetectionResult::Present);
    let nothing = FakeWindows { ubr: None, ntoskrnl: None };
    assert_eq!(
        detect(&any_of(vec![registry_ubr("1"), ntoskrnl("1")]), root, &empty, &nothing),
        DetectionResult::Absent
    );
    // On Linux they cannot be checked: unknown, saying so.
    let DetectionResult::Unknown(reason) = detect(&any_of(vec![registry_ubr("1")]), root, &empty, &NoWindows) else {
        panic!("a registry rule on Linux is unknown")
    };
    assert!(reason.contains("UBR") && reason.contains("needs Windows"), "{reason}");
}

#[test]
fn any_rule_that_holds_is_enough_and_unknown_is_never_absent() {
    use PackageManager::Dpkg;
    let device = inventory(&[(Dpkg, "openssl", "3.0.15-1~deb12u1")]);
    let root = Path::new(NO_ROOT);
    let present = package(Dpkg, "openssl", "3.0.15-1~deb12u1");
    let absent = package(Dpkg, "openssl", "3.0.16-1");
    let unknown = registry_ubr("4460");
    let result = |rules: Vec<DetectionRule>| detect(&any_of(rules), root, &device, &NoWindows);
    assert_eq!(result(vec![unknown.clone(), present.clone()]), DetectionResult::Present);
    assert!(matches!(result(vec![unknown.clone(), absent.clone()]), DetectionResult::Unknown(_)));
    assert_eq!(result(vec![absent.clone(), absent.clone()]), DetectionResult::Absent);
    assert_eq!(result(vec![]), DetectionResult::Unknown("no detection rules".into()));
    let each = detect_each(&any_of(vec![absent, present]), root, &device, &NoWindows);
    assert_eq!(
        each.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        vec![DetectionResult::Absent, DetectionResult::Present]
    );
}

/// The example feed's `detect` blocks on the example fleet's two servers:
/// srv-db-01 has openssl below the fix, srv-web-01 at it.
#[test]
fn the_example_feeds_rules_on_the_example_servers() {
    let feed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/feeds/vendor-feed.json");
    let feed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&feed_path).expect("the example feed")).expect("JSON");
    let patches = feed["patches"].as_array().expect("patches");
    let detections: Vec<(String, Detection)> = patches
        .iter()
        .filter(|p| p.get("detect").is_some())
        .map(|p| {
            let id = p["id"].as_str().expect("an id").to_owned();
            (id, serde_json::from_value(p["detect"].clone()).expect("the engine's detect shape"))
        })
        .collect();
    assert!(detections.len() >= 2);
    let openssl = detections
        .iter()
        .find(|(_, d)| d.any_of.iter().any(|r| matches!(r, DetectionRule::Package(p) if p.name == "openssl")))
        .map(|(_, d)| d)
        .expect("a patch detected by openssl's version");
    use PackageManager::Dpkg;
    let db = inventory(&[(Dpkg, "openssl", "3.0.11-1~deb12u2"), (Dpkg, "libssl3", "3.0.11-1~deb12u2")]);
    let web = inventory(&[(Dpkg, "openssl", "3.0.15-1~deb12u1"), (Dpkg, "libssl3", "3.0.15-1~deb12u1")]);
    assert_eq!(detect(openssl, Path::new(NO_ROOT), &db, &NoWindows), DetectionResult::Absent);
    assert_eq!(detect(openssl, Path::new(NO_ROOT), &web, &NoWindows), DetectionResult::Present);
    // The Windows update, on Linux: unknown, not absent.
    let (id, windows) = &detections[0];
    assert!(matches!(detect(windows, Path::new(NO_ROOT), &web, &NoWindows), DetectionResult::Unknown(_)), "{id}");
}

#[test]
fn uninstall_removes_the_installed_package_a_rule_names() {
    use PackageManager::{Dpkg, Rpm};
    let rules = any_of(vec![
        registry_ubr("1"),
        package(Rpm, "demo-tools", "2.0-1"),
        package(Dpkg, "demo-tools", "2.0-1"),
        package(Dpkg, "demo-tools-extra", "2.0-1"),
    ]);
    let debian = inventory(&[(Dpkg, "demo-tools-extra", "2.0-1"), (Dpkg, "demo-tools", "2.0-1")]);
    assert_eq!(package_to_remove(&rules, &debian), Some(PackageToRemove { manager: Dpkg, name: "demo-tools".into() }));
    // Nothing installed: the first package rule (removing it is a no-op).
    assert_eq!(
        package_to_remove(&rules, &Inventory::default()),
        Some(PackageToRemove { manager: Rpm, name: "demo-tools".into() })
    );
    assert_eq!(package_to_remove(&any_of(vec![registry_ubr("1")]), &debian), None);
}

// --- detection by package fixes --------------------------------------------

/// A dpkg package as the inventory reads it: `(name, version, arch, source,
/// source version)`.
fn deb(name: &str, version: &str, arch: &str, source: &str, source_version: &str) -> InstalledPackage {
    PackageRecord::new(PackageManager::Dpkg, name, version, arch).built_from(source, source_version).installed()
}

/// A Debian 12 host: bsdutils with an epoch its source lacks, a binNMU in
/// two architecture copies, and libssl3 with an old i386 copy.
fn debian_host() -> Inventory {
    Inventory {
        patches: vec![],
        packages: vec![
            deb("bsdutils", "1:2.38.1-5+deb12u3", "amd64", "util-linux", "2.38.1-5+deb12u3"),
            deb("util-linux", "2.38.1-5+deb12u3", "amd64", "util-linux", "2.38.1-5+deb12u3"),
            deb("libfoo1", "1.2-3+b1", "amd64", "foo", "1.2-3"),
            deb("libfoo1", "1.2-3+b1", "i386", "foo", "1.2-3"),
            deb("libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", "3.0.15-1~deb12u1"),
            deb("libssl3", "3.0.11-1~deb12u2", "i386", "openssl", "3.0.11-1~deb12u2"),
        ],
    }
}

/// A desired item for a patch without packages, as the engine serves it:
/// its fixes, and no `detect`.
fn fixes_item(fixes: serde_json::Value) -> DesiredItem {
    serde_json::from_value(json!({
        "patch": "DSA-5999-1", "action": "install", "status": "due",
        "source": {"kind": "rule", "name": "linux-security", "commit": "c0ffee"}, "stage": null,
        "policy": {"name": "servers", "mode": "immediate"}, "windows": [],
        "notBefore": "2026-11-23T00:00:00Z", "deadline": null, "packages": [],
        "fixes": fixes
    }))
    .expect("a desired item with fixes")
}

fn source_fix(package: &str, fixed: &str) -> serde_json::Value {
    json!({"manager": "dpkg", "package": package, "fixedVersion": fixed, "kind": "source"})
}

fn on(inventory: Inventory, platform: Option<&'static str>) -> impl Fn(&DesiredItem) -> DetectionResult {
    move |item| {
        let device = DeviceView { root: Path::new(NO_ROOT), inventory: &inventory, platform };
        detect_item(item, &device, &NoWindows)
    }
}

#[test]
fn source_fixes_compare_source_versions_never_the_binaries() {
    let detect = on(debian_host(), Some("debian-12"));
    let item = |package, fixed| fixes_item(json!([source_fix(package, fixed)]));
    // bsdutils 1:2.38.1-5+deb12u3 comes from util-linux 2.38.1-5+deb12u3:
    // its epoch does not put it above a later source version.
    assert_eq!(detect(&item("util-linux", "2.38.1-5+deb12u3")), DetectionResult::Present);
    assert_eq!(detect(&item("util-linux", "2.38.1-5+deb12u4")), DetectionResult::Absent);
    // A binNMU (+b1) is its source's version, in either architecture.
    assert_eq!(detect(&item("foo", "1.2-3")), DetectionResult::Present);
    assert_eq!(detect(&item("foo", "1.2-3+deb12u1")), DetectionResult::Absent);
    // One architecture copy below the fix needs the patch.
    assert_eq!(detect(&item("openssl", "3.0.15-1~deb12u1")), DetectionResult::Absent);
    // A source nothing installed is built from: not applicable, not absent.
    assert_eq!(detect(&item("nginx", "1.22.1-9+deb12u1")), DetectionResult::NotApplicable);
    assert_eq!(DetectionResult::NotApplicable.to_string(), "not applicable");
}

#[test]
fn binary_fixes_compare_the_named_binarys_own_version() {
    let detect = on(debian_host(), Some("debian-12"));
    let binary = |package: &str, fixed: &str| {
        fixes_item(json!([{"manager": "dpkg", "package": package, "fixedVersion": fixed}]))
    };
    assert_eq!(detect(&binary("bsdutils", "1:2.38.1-5+deb12u3")), DetectionResult::Present);
    // Without its epoch the fix is below any epoch-1 version.
    assert_eq!(detect(&binary("bsdutils", "2.38.1-5+deb12u9")), DetectionResult::Present);
    assert_eq!(detect(&binary("libssl3", "3.0.15-1~deb12u1")), DetectionResult::Absent);
    assert_eq!(detect(&binary("libfoo1", "1.2-3+b2")), DetectionResult::Absent);
    // `foo` is a source, not a binary installed here.
    assert_eq!(detect(&binary("foo", "1.2-3")), DetectionResult::NotApplicable);
}

#[test]
fn only_the_fixes_for_the_devices_platform_count() {
    let host = debian_host();
    let fixes = json!([
        {"manager": "dpkg", "package": "util-linux", "fixedVersion": "2.38.1-5+deb12u4",
         "platform": "debian-13", "kind": "source"},
        {"manager": "dpkg", "package": "util-linux", "fixedVersion": "2.38.1-5+deb12u3",
         "platform": "debian-12", "kind": "source"}
    ]);
    let item = fixes_item(fixes);
    assert_eq!(on(host.clone(), Some("debian-12"))(&item), DetectionResult::Present);
    assert_eq!(on(host.clone(), Some("debian-13"))(&item), DetectionResult::Absent);
    // No fix for this platform: the patch does not apply here.
    assert_eq!(on(host.clone(), Some("ubuntu-22.04"))(&item), DetectionResult::NotApplicable);
    assert_eq!(on(host.clone(), None)(&item), DetectionResult::NotApplicable);
}

#[test]
fn rules_come_first_and_fixes_for_another_manager_say_nothing() {
    let host = debian_host();
    let detect = on(host.clone(), Some("debian-12"));
    let rpm_only = fixes_item(json!([{"manager": "rpm", "package": "openssl", "fixedVersion": "1:3.0.7-28.el9"}]));
    assert_eq!(detected_by(&rpm_only, &host), DetectedBy::Nothing);
    assert_eq!(detect(&rpm_only), DetectionResult::Unknown("the item has no detection rules".into()));
    // With a fix for dpkg too, the fixes decide (the rpm one finds nothing).
    let both = fixes_item(json!([
        {"manager": "rpm", "package": "openssl", "fixedVersion": "1:3.0.7-28.el9"},
        source_fix("util-linux", "2.38.1-5+deb12u3")
    ]));
    assert!(matches!(detected_by(&both, &host), DetectedBy::Fixes(fixes) if fixes.len() == 2));
    assert_eq!(detect(&both), DetectionResult::Present);
    // An item with rules is detected by them, whatever its fixes say.
    let mut ruled = fixes_item(json!([source_fix("util-linux", "2.38.1-5+deb12u3")]));
    ruled.detect = Some(any_of(vec![package(PackageManager::Dpkg, "bsdutils", "1:2.38.1-5+deb12u4")]));
    assert_eq!(detect(&ruled), DetectionResult::Absent);
    // Neither rules nor fixes: nothing is known.
    assert_eq!(detected_by(&fixes_item(json!([])), &host), DetectedBy::Nothing);
    // And the fixes' own verdict without an item.
    let fixes: Vec<patchward_api::fixes::PackageFix> =
        serde_json::from_value(json!([source_fix("foo", "1.2-4")])).expect("fixes");
    assert_eq!(detect_fixes(&fixes, Some("debian-12"), &host), DetectionResult::Absent);
    assert!(matches!(detect_fixes(&[], None, &host), DetectionResult::Unknown(_)));
}
