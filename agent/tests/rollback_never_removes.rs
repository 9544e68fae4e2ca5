//! Issue 15: a package fix is undone by restoring the previous version,
//! never by removing the package. The rollback path's sources (the
//! repository installs and restores) must not hold a removal command of
//! dpkg, apt, rpm or dnf; software assignments set `absent` keep theirs,
//! in the installers, which this path does not call.

const ROLLBACK_PATH: [&str; 7] = [
    "src/converge/repository.rs",
    "src/converge/rollback.rs",
    "src/repo/mod.rs",
    "src/repo/apt.rs",
    "src/repo/resolve.rs",
    "src/repo/way_back.rs",
    "src/repo/backup.rs",
];

/// Words that remove a package: dpkg's, apt's, rpm's and dnf's.
const REMOVALS: [&str; 10] = [
    "\"--remove\"",
    "\"--purge\"",
    "\"-r\"",
    "\"-P\"",
    "\"remove\"",
    "\"purge\"",
    "\"autoremove\"",
    "\"erase\"",
    "\"-e\"",
    "Removal::",
];

#[test]
fn the_rollback_path_holds_no_removal_command() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ROLLBACK_PATH {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (number, line) in text.lines().enumerate() {
            for word in REMOVALS {
                assert!(!line.contains(word), "{file}:{}: {word} on the rollback path: {line}", number + 1);
            }
        }
    }
}

#[test]
fn the_scan_sees_a_removal_when_there_is_one() {
    // The scan itself must be able to fail.
    let line = r#"argv.extend(["--remove".into(), name.into()]);"#;
    assert!(REMOVALS.iter().any(|w| line.contains(w)));
}
