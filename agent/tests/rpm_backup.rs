//! Rebuilding an installed package from rpm's database
//! (`repo::backup::rpm`) with the real rpm and rpmbuild on a sandbox root:
//! packages are built by rpmbuild and installed by rpm during the test, and
//! the backup is read back by rpm and installed over a newer version as a
//! downgrade.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use patchward_agent::cache::Sha256Digest;
use patchward_agent::install::rpm::{DB_PATH, RpmRoot};
use patchward_agent::repo::backup::rpm::rebuild;
use patchward_agent::repo::backup::{Backup, BackupError};
use support::dnf::Rpm;

const LIB: &str = "/usr/lib64/libpw.so.1";
const CONF: &str = "/etc/pw/pw.conf";
const DOC: &str = "/usr/share/doc/libpw1/README";

/// `libpw1 1:1.0-RELEASE`: a library, a configuration file, a README, a
/// requirement and a `%post`.
fn libpw1(release: &str) -> Rpm {
    Rpm::new("libpw1", "1.0", release, std::env::consts::ARCH)
        .epoch(1)
        .requires("coreutils")
        .file(LIB, format!("libpw 1.0-{release}\n"))
        .config_file(CONF, "level = 1\n")
        .file(DOC, "read me\n")
        .post(&format!("echo configured 1.0-{release} > /var/lib/pw.marker"))
}

struct Sandbox {
    dir: tempfile::TempDir,
    root: RpmRoot,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = RpmRoot::sandbox(&dir.path().join("root")).unwrap();
        Sandbox { dir, root }
    }

    fn rpm(&self, args: &[&str], files: &[&Path]) -> std::process::Output {
        let output = Command::new("rpm")
            .env("LC_ALL", "C")
            .arg(format!("--root={}", self.root.root().display()))
            .arg(format!("--dbpath={DB_PATH}"))
            .args(args)
            .args(files)
            .output()
            .unwrap();
        assert!(output.status.success(), "rpm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    fn install(&self, rpm: &Rpm, extra: &[&str]) {
        let file = rpm.build(&self.dir.path().join("built"));
        let mut args = vec!["--upgrade", "--nodeps", "--noscripts", "--nosignature"];
        args.extend(extra);
        self.rpm(&args, &[&file]);
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.root().join(path.trim_start_matches('/'))
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn rebuild(&self, name: &str) -> Result<Backup, BackupError> {
        rebuild(&self.root, name, std::env::consts::ARCH, &self.backups())
    }
}

/// `rpm --query --package` of a file with `format`.
fn query_file(file: &Path, format: &str) -> String {
    let output = Command::new("rpm")
        .env("LC_ALL", "C")
        .args(["-qp", "--nosignature", "--queryformat", format])
        .arg(file)
        .output();
    let output = output.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_backup_is_the_installed_package_with_its_files_as_they_are_on_disk() {
    let sandbox = Sandbox::new();
    sandbox.install(&libpw1("1"), &[]);
    std::fs::write(sandbox.path(CONF), "level = 9 # the administrator's\n").unwrap();
    std::fs::write(sandbox.path(LIB), "patched by hand\n").unwrap();
    std::fs::remove_file(sandbox.path(DOC)).unwrap();

    let backup = sandbox.rebuild("libpw1").unwrap();
    assert_eq!(backup.path, sandbox.backups().join(format!("libpw1-1.0-1.{}.rpm", std::env::consts::ARCH)));
    assert_eq!((backup.name.as_str(), backup.version.as_str()), ("libpw1", "1:1.0-1"));
    let bytes = std::fs::read(&backup.path).unwrap();
    assert_eq!(backup.sha256, Sha256Digest::of(&bytes));
    assert_eq!(backup.size, bytes.len() as u64);
    assert_eq!(backup.modified, [PathBuf::from(LIB)], "a changed configuration file is not 'modified'");
    assert_eq!(backup.missing, [PathBuf::from(DOC)]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(sandbox.backups()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(std::fs::read_dir(sandbox.backups()).unwrap().count(), 1, "nothing but the package is left");

    let identity = "%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE} %{ARCH}\n";
    assert_eq!(query_file(&backup.path, identity), format!("libpw1 1:1.0-1 {}\n", std::env::consts::ARCH));
    assert!(query_file(&backup.path, "[%{REQUIRENEVRS}\n]").lines().any(|r| r == "coreutils"));
    assert_eq!(query_file(&backup.path, "%{POSTIN}"), "echo configured 1.0-1 > /var/lib/pw.marker");
    let files = query_file(&backup.path, "[%{FILENAMES} %{FILEFLAGS:fflags}\n]");
    assert!(files.lines().any(|l| l == format!("{CONF} cn")), "{files}");
    assert!(files.lines().any(|l| l == format!("{LIB} ")), "{files}");
    assert!(!files.contains(DOC), "a missing file is left out: {files}");
}

#[test]
fn the_backup_installs_over_the_upgrade_and_brings_back_what_was_on_disk() {
    let sandbox = Sandbox::new();
    sandbox.install(&libpw1("1"), &[]);
    std::fs::write(sandbox.path(CONF), "level = 9 # the administrator's\n").unwrap();
    let backup = sandbox.rebuild("libpw1").unwrap();
    sandbox.install(&libpw1("2"), &[]);
    assert_eq!(std::fs::read_to_string(sandbox.path(LIB)).unwrap(), "libpw 1.0-2\n");

    sandbox.rpm(&["--upgrade", "--oldpackage", "--nodeps", "--noscripts", "--nosignature"], &[&backup.path]);
    let installed = sandbox.rpm(&["--query", "--queryformat", "%{EPOCH}:%{VERSION}-%{RELEASE}", "libpw1"], &[]);
    assert_eq!(String::from_utf8_lossy(&installed.stdout), "1:1.0-1");
    assert_eq!(std::fs::read_to_string(sandbox.path(LIB)).unwrap(), "libpw 1.0-1\n");
    assert_eq!(std::fs::read_to_string(sandbox.path(CONF)).unwrap(), "level = 9 # the administrator's\n");
    let verify = Command::new("rpm")
        .arg(format!("--root={}", sandbox.root.root().display()))
        .arg(format!("--dbpath={DB_PATH}"))
        .args(["--verify", "--nodeps", "--noscripts", "libpw1"])
        .output()
        .unwrap();
    let findings = String::from_utf8_lossy(&verify.stdout);
    assert!(!findings.contains(LIB), "the restored library is the package's own: {findings}");
}

#[test]
fn a_package_that_is_not_installed_or_a_bad_name_is_refused() {
    let sandbox = Sandbox::new();
    let error = sandbox.rebuild("libpw1").unwrap_err();
    assert!(matches!(error, BackupError::NotInstalled { .. }), "{error:?}");
    let error = rebuild(&sandbox.root, "../libpw1", "x86_64", &sandbox.backups()).unwrap_err();
    assert!(matches!(error, BackupError::Invalid { .. }), "{error:?}");
    assert!(!sandbox.backups().join("..").join("libpw1").exists());
}
