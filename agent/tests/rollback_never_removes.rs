//! Issue 15: a package fix is undone by restoring the previous version,
//! never by removing the package. The rollback path's sources (the
//! repository installs and restores) must not hold a removal command of
//! dpkg, apt, rpm or dnf; software assignments set `absent` keep theirs,
//! in the installers, which this path does not call.

const ROLLBACK_PATH: [&str; 2] = ["src/converge/repository.rs", "src/converge/rollback.rs"];

/// Every source under these folders is on the rollback path too.
const ROLLBACK_FOLDERS: [&str; 1] = ["src/repo"];

/// Words that remove a package: dpkg's, apt's, rpm's and dnf's.
const REMOVALS: [&str; 11] = [
    "\"--remove\"",
    "\"--erase\"",
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
    let mut files: Vec<std::path::PathBuf> = ROLLBACK_PATH.iter().map(|f| root.join(f)).collect();
    for folder in ROLLBACK_FOLDERS {
        files.extend(sources(&root.join(folder)));
    }
    assert!(files.len() > 8, "the scan finds the rollback path's sources: {files:?}");
    for path in files {
        let file = path.strip_prefix(root).unwrap().display().to_string();
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

/// The `.rs` files under `dir`, at any depth.
fn sources(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}
