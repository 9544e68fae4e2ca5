//! The deb installer on a sandbox root with the real dpkg (T23's dpkg rows,
//! G1's staging path), with packages built by dpkg-deb during the test.

use std::os::fd::AsRawFd as _;
use std::path::Path;

use patchward_agent::cache::Cache;
use patchward_agent::install::deb::{DebInstaller, DebSpec, DpkgRoot, deb_package_name};
use patchward_agent::install::{InstallError, Installer, Outcome, PackageType, ProcessExit, Removal, VerifiedPackage};

struct Sandbox {
    dir: tempfile::TempDir,
    cache: Cache,
    installer: DebInstaller,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("state")).unwrap();
    let root = DpkgRoot::sandbox(&dir.path().join("root")).unwrap();
    Sandbox { dir, cache, installer: DebInstaller::new(root) }
}

impl Sandbox {
    /// Builds the package, caches it and stages it: what the agent hands over.
    fn staged(&self, spec: &DebSpec) -> VerifiedPackage {
        let out = self.dir.path().join("build");
        std::fs::create_dir_all(&out).unwrap();
        let deb = spec.build(&out).unwrap();
        let blob = self.cache.put(&std::fs::read(deb).unwrap()).unwrap();
        VerifiedPackage::stage(&blob, PackageType::Deb, self.cache.staging_dir()).unwrap()
    }

    fn root(&self) -> &DpkgRoot {
        self.installer.root()
    }

    fn file(&self, package: &str) -> std::path::PathBuf {
        self.root().root().join(format!("usr/share/{package}/version"))
    }
}

/// A classic fcntl write lock on `path`, as apt and dpkg take it, held until
/// the returned file is dropped.
fn hold_fcntl_lock(path: &Path) -> std::fs::File {
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
    // SAFETY: a zeroed flock is valid; fcntl gets a live pointer and our fd.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) };
    assert_eq!(rc, 0, "lock {}: {}", path.display(), std::io::Error::last_os_error());
    file
}

#[test]
fn a_deb_installs_into_the_sandbox_and_uninstalls() {
    let s = sandbox();
    let package = s.staged(&DebSpec::new("pw-hello", "1.0"));
    assert_eq!(s.root().status("pw-hello").unwrap(), None);

    assert_eq!(s.installer.install(&package, &[]).unwrap(), Outcome::Succeeded);
    let status = s.root().status("pw-hello").unwrap().expect("dpkg knows the package");
    assert!(status.is_installed(), "{status:?}");
    assert_eq!(status.version, "1.0");
    assert_eq!(std::fs::read_to_string(s.file("pw-hello")).unwrap(), "1.0");
    let log = std::fs::read_to_string(s.root().log_path()).unwrap();
    assert!(log.contains("status installed pw-hello:all 1.0"), "{log}");

    // An upgrade replaces the version.
    let newer = s.staged(&DebSpec::new("pw-hello", "2.0"));
    assert_eq!(s.installer.install(&newer, &[]).unwrap(), Outcome::Succeeded);
    assert_eq!(s.root().status("pw-hello").unwrap().unwrap().version, "2.0");

    let name = deb_package_name(newer.path()).unwrap();
    assert_eq!(name, "pw-hello");
    assert_eq!(s.installer.uninstall(Removal::Package(&name)).unwrap(), Outcome::Succeeded);
    assert_eq!(s.root().status("pw-hello").unwrap(), None);
    assert!(!s.file("pw-hello").exists());
}

#[test]
fn maintainer_scripts_run_chrootless_with_dpkg_root_set() {
    let s = sandbox();
    let marker = s.dir.path().join("postinst-ran");
    let spec = DebSpec::new("pw-scripted", "1.0")
        .script("postinst", &format!("#!/bin/sh\nset -e\necho \"$1 $DPKG_ROOT\" > {}\n", marker.display()));
    let package = s.staged(&spec);
    assert_eq!(s.installer.install(&package, &[]).unwrap(), Outcome::Succeeded);
    let seen = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(seen.trim(), format!("configure {}", s.root().root().display()));
}

#[test]
fn a_failing_postinst_is_a_failure_with_dpkgs_exit_code_and_stderr() {
    let s = sandbox();
    let spec = DebSpec::new("pw-broken", "1.0").script("postinst", "#!/bin/sh\necho 'cannot configure' >&2\nexit 1\n");
    let package = s.staged(&spec);

    let outcome = s.installer.install(&package, &[]).unwrap();
    let Outcome::Failed { exit, stderr_tail } = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert_eq!(exit, ProcessExit::Code(1));
    assert!(stderr_tail.contains("cannot configure"), "{stderr_tail}");
    assert!(stderr_tail.contains("post-installation script"), "{stderr_tail}");
    // dpkg's own record: unpacked but not configured — never "installed".
    let status = s.root().status("pw-broken").unwrap().unwrap();
    assert_eq!(status.state, "half-configured");
    assert!(!status.is_installed());
}

#[test]
fn a_held_frontend_lock_means_retry_later_and_dpkg_does_not_run() {
    let s = sandbox();
    let package = s.staged(&DebSpec::new("pw-locked", "1.0"));
    let lock = hold_fcntl_lock(&s.root().admindir().join("lock-frontend"));

    let outcome = s.installer.install(&package, &[]).unwrap();
    let Outcome::RetryLater { reason } = outcome else { panic!("expected retry later, got {outcome:?}") };
    assert!(reason.contains("lock-frontend"), "{reason}");
    assert_eq!(s.root().status("pw-locked").unwrap(), None);
    assert!(!s.file("pw-locked").exists());

    drop(lock);
    assert_eq!(s.installer.install(&package, &[]).unwrap(), Outcome::Succeeded);
}

#[test]
fn a_held_database_lock_is_reported_by_dpkg_and_means_retry_later() {
    let s = sandbox();
    let package = s.staged(&DebSpec::new("pw-dblock", "1.0"));
    // dpkg itself runs and finds its database locked: the classification
    // comes from the real dpkg's refusal.
    let _lock = hold_fcntl_lock(&s.root().admindir().join("lock"));

    let outcome = s.installer.install(&package, &[]).unwrap();
    let Outcome::RetryLater { reason } = outcome else { panic!("expected retry later, got {outcome:?}") };
    assert!(reason.contains("locked"), "{reason}");
    assert_eq!(s.root().status("pw-dblock").unwrap(), None);
}

#[test]
fn the_deb_installer_takes_only_deb_packages_and_valid_names() {
    let s = sandbox();
    let blob = s.cache.put(b"#!/bin/sh\nexit 0\n").unwrap();
    let script = VerifiedPackage::stage(&blob, PackageType::Script, s.cache.staging_dir()).unwrap();
    assert!(matches!(s.installer.install(&script, &[]), Err(InstallError::WrongType { .. })));
    assert!(matches!(s.installer.uninstall(Removal::Package("--purge")), Err(InstallError::InvalidName { .. })));
    assert!(matches!(s.installer.uninstall(Removal::Kb("5032190")), Err(InstallError::UnsupportedRemoval { .. })));
}
