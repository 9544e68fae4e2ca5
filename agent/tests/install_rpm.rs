//! The rpm installer on a sandbox root with the real rpm, packages built by
//! rpmbuild during the test. These tests need `rpm` (which brings rpmbuild
//! on Debian): without it they fail, loudly, rather than pass silently.

use std::os::fd::AsRawFd as _;

use patchward_agent::cache::Cache;
use patchward_agent::install::rpm::{RpmInstaller, RpmRoot, RpmSpec, rpm_package_name};
use patchward_agent::install::{Installer, Outcome, PackageType, ProcessExit, Removal, VerifiedPackage};

fn require_rpm() {
    for tool in ["rpm", "rpmbuild"] {
        let found = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(found, "`{tool}` is missing: `apt-get install rpm` (the rpm installer tests need the real rpm)");
    }
}

struct Sandbox {
    dir: tempfile::TempDir,
    cache: Cache,
    installer: RpmInstaller,
}

fn sandbox() -> Sandbox {
    require_rpm();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("state")).unwrap();
    let root = RpmRoot::sandbox(&dir.path().join("root")).unwrap();
    Sandbox { dir, cache, installer: RpmInstaller::new(root) }
}

impl Sandbox {
    fn staged(&self, spec: &RpmSpec) -> VerifiedPackage {
        let rpm = spec.build(&self.dir.path().join("rpmbuild")).unwrap();
        let blob = self.cache.put(&std::fs::read(rpm).unwrap()).unwrap();
        VerifiedPackage::stage(&blob, PackageType::Rpm, self.cache.staging_dir()).unwrap()
    }
}

#[test]
fn an_rpm_installs_into_the_sandbox_upgrades_and_erases() {
    let s = sandbox();
    let root = s.installer.root().clone();
    assert!(root.db_dir().starts_with(root.root()), "the database lives inside the root");
    let db_files = ["rpmdb.sqlite", "Packages"];
    assert!(
        db_files.iter().any(|f| root.db_dir().join(f).exists()),
        "rpm initialised its database at {}",
        root.db_dir().display()
    );
    let package = s.staged(&RpmSpec::new("pw-hello", "1.0"));
    assert_eq!(root.query("pw-hello").unwrap(), None);

    assert_eq!(s.installer.install(&package, &[]).unwrap(), Outcome::Succeeded);
    assert_eq!(root.query("pw-hello").unwrap().as_deref(), Some("pw-hello-1.0-1.noarch"));
    assert_eq!(std::fs::read_to_string(root.root().join("usr/share/pw-hello/version")).unwrap().trim(), "1.0");

    let newer = s.staged(&RpmSpec::new("pw-hello", "2.0"));
    assert_eq!(s.installer.install(&newer, &[]).unwrap(), Outcome::Succeeded);
    assert_eq!(root.query("pw-hello").unwrap().as_deref(), Some("pw-hello-2.0-1.noarch"));

    let name = rpm_package_name(newer.path()).unwrap();
    assert_eq!(name, "pw-hello");
    assert_eq!(s.installer.uninstall(Removal::Package(&name)).unwrap(), Outcome::Succeeded);
    assert_eq!(root.query("pw-hello").unwrap(), None);
    assert!(!root.root().join("usr/share/pw-hello/version").exists());
}

#[test]
fn an_rpm_that_rpm_refuses_is_a_failure_with_its_code_and_stderr() {
    let s = sandbox();
    let package = s.staged(&RpmSpec::new("pw-twice", "1.0"));
    assert_eq!(s.installer.install(&package, &[]).unwrap(), Outcome::Succeeded);
    // The same version again: rpm refuses it.
    let outcome = s.installer.install(&package, &[]).unwrap();
    let Outcome::Failed { exit, stderr_tail } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert!(matches!(exit, ProcessExit::Code(code) if code != 0), "{exit}");
    assert!(stderr_tail.contains("already installed"), "{stderr_tail}");

    // Not an rpm at all.
    let blob = s.cache.put(b"not an rpm").unwrap();
    let garbage = VerifiedPackage::stage(&blob, PackageType::Rpm, s.cache.staging_dir()).unwrap();
    assert!(matches!(s.installer.install(&garbage, &[]).unwrap(), Outcome::Failed { .. }));
}

#[test]
fn a_held_rpm_transaction_lock_means_retry_later() {
    let s = sandbox();
    let package = s.staged(&RpmSpec::new("pw-locked", "1.0"));
    let lock_path = s.installer.root().db_dir().join(".rpm.lock");
    let lock =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).unwrap();
    // SAFETY: a zeroed flock is valid; fcntl gets a live pointer and our fd.
    let mut flock: libc::flock = unsafe { std::mem::zeroed() };
    flock.l_type = libc::F_WRLCK as _;
    flock.l_whence = libc::SEEK_SET as _;
    assert_eq!(unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETLK, &flock) }, 0);

    let outcome = s.installer.install(&package, &[]).unwrap();
    assert!(matches!(&outcome, Outcome::RetryLater { reason } if reason.contains(".rpm.lock")), "{outcome:?}");
    assert_eq!(s.installer.root().query("pw-locked").unwrap(), None);
    drop(lock);
    assert_eq!(s.installer.install(&package, &[]).unwrap(), Outcome::Succeeded);
}
