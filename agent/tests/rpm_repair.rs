//! Finishing a replacement a kill cut short (`RpmInstaller::
//! finish_replacement`) with the real rpm on a sandbox root: two instances
//! of one package are made with `rpm --install --justdb`, as an interrupted
//! transaction leaves them, and the one the transaction was heading to is
//! kept, whichever way it was going.

mod support;

use std::path::Path;
use std::process::Command;

use patchward_agent::install::rpm::{DB_PATH, RpmInstaller, RpmRoot};
use support::dnf::Rpm;

fn libpw1(release: &str) -> Rpm {
    Rpm::new("libpw1", "1.0", release, std::env::consts::ARCH).epoch(1).file("/usr/lib64/libpw.so.1", release)
}

fn rpm(root: &RpmRoot, args: &[&str], file: Option<&Path>) -> String {
    let output = Command::new("rpm")
        .env("LC_ALL", "C")
        .arg(format!("--root={}", root.root().display()))
        .arg(format!("--dbpath={DB_PATH}"))
        .args(args)
        .args(file)
        .output()
        .unwrap();
    assert!(output.status.success(), "rpm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A root with `installed` installed and `beside` recorded next to it.
fn duplicated(dir: &Path, installed: &str, beside: &str) -> RpmRoot {
    let root = RpmRoot::sandbox(&dir.join("root")).unwrap();
    let built = dir.join("built");
    rpm(&root, &["--install", "--nodeps", "--noscripts", "--nosignature"], Some(&libpw1(installed).build(&built)));
    let flags = ["--install", "--justdb", "--force", "--nodeps", "--noscripts", "--nosignature"];
    rpm(&root, &flags, Some(&libpw1(beside).build(&built)));
    root
}

fn instances(root: &RpmRoot) -> Vec<String> {
    let text = rpm(root, &["--query", "--queryformat", "%{EPOCH}:%{VERSION}-%{RELEASE}\\n", "libpw1"], None);
    let mut found: Vec<String> = text.lines().map(str::to_owned).collect();
    found.sort();
    found
}

#[test]
fn an_interrupted_upgrade_keeps_the_new_version_and_a_restore_the_old_one() {
    let arch = std::env::consts::ARCH;
    for (kept, erased) in [("1:1.0-2", "1:1.0-1"), ("1:1.0-1", "1:1.0-2")] {
        let dir = tempfile::tempdir().unwrap();
        let root = duplicated(dir.path(), "2", "1");
        assert_eq!(instances(&root), ["1:1.0-1", "1:1.0-2"]);
        let installer = RpmInstaller::new(root.clone());
        assert_eq!(installer.finish_replacement("libpw1", arch, kept).unwrap(), [erased]);
        assert_eq!(instances(&root), [kept]);
        assert!(installer.finish_replacement("libpw1", arch, kept).unwrap().is_empty(), "nothing left to finish");
    }
}

#[test]
fn duplicates_without_the_version_the_transaction_was_heading_to_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = duplicated(dir.path(), "2", "1");
    let installer = RpmInstaller::new(root.clone());
    assert!(installer.finish_replacement("libpw1", std::env::consts::ARCH, "1:1.0-3").unwrap().is_empty());
    assert_eq!(instances(&root), ["1:1.0-1", "1:1.0-2"]);
    assert!(installer.finish_replacement("--all", std::env::consts::ARCH, "1:1.0-3").is_err());
}
