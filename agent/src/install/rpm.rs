//! `.rpm` packages through the real `rpm`.
//!
//! [`RpmRoot`] names the root and database: `rpm --root R --dbpath
//! /var/lib/rpm` (the database path is inside the root; it is given
//! explicitly because distributions differ in their default — Debian's rpm
//! keeps it in `~/.rpmdb`). A sandbox root (tests, demos) is an empty tree:
//! its database is initialised, and since rpm has no chrootless mode and the
//! tree no shell, its scriptlets are not run (`--noscripts`) and
//! dependencies are not checked against the empty database (`--nodeps`).
//!
//! rpm waits for its transaction lock (`DBPATH/.rpm.lock`) instead of
//! failing; the installer tests the lock first, without waiting, and answers
//! "retry later" when another process holds it (G8).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::deb::try_lock;
use super::process::{self, ProcessExit};
use super::{InstallError, Installer, Outcome, PackageType, Removal, VerifiedPackage, check_package_name, classify};
use crate::cache::io_error;

/// The database path inside the root.
pub const DB_PATH: &str = "/var/lib/rpm";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmRoot {
    root: PathBuf,
    sandbox: bool,
}

impl RpmRoot {
    pub fn system() -> RpmRoot {
        RpmRoot { root: PathBuf::from("/"), sandbox: false }
    }

    /// A complete system tree (scriptlets chrooted into it).
    pub fn tree(root: &Path) -> Result<RpmRoot, InstallError> {
        Ok(RpmRoot { root: absolute(root)?, sandbox: false })
    }

    /// An empty sandbox at `root`, its database initialised if missing.
    pub fn sandbox(root: &Path) -> Result<RpmRoot, InstallError> {
        let rpm = RpmRoot { root: absolute(root)?, sandbox: true };
        let db = rpm.db_dir();
        std::fs::create_dir_all(&db).map_err(io_error("failed to create directory", &db))?;
        if std::fs::read_dir(&db).map_err(io_error("failed to read", &db))?.next().is_none() {
            let mut argv = rpm.rpm_argv();
            argv.push("--initdb".into());
            let out = process::run(&argv, &[], None, Duration::from_secs(120))?;
            if out.exit != ProcessExit::Code(0) {
                return Err(tool_error(&argv, &out));
            }
        }
        Ok(rpm)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database directory as seen from outside the root.
    pub fn db_dir(&self) -> PathBuf {
        self.root.join(DB_PATH.trim_start_matches('/'))
    }

    /// `rpm --root R --dbpath /var/lib/rpm`.
    pub fn rpm_argv(&self) -> Vec<OsString> {
        let mut root = OsString::from("--root=");
        root.push(self.root.as_os_str());
        vec!["rpm".into(), root, format!("--dbpath={DB_PATH}").into()]
    }

    /// rpm's transaction lock (`DBPATH/.rpm.lock`), taken without waiting:
    /// `None` while another process holds it. While held, no rpm
    /// transaction changes the database (queries still read it).
    pub fn try_lock_transaction(&self) -> Result<Option<TransactionLock>, InstallError> {
        let path = self.db_dir().join(".rpm.lock");
        Ok(try_lock(&path)?.map(|file| TransactionLock { _file: file }))
    }

    /// `NAME-VERSION-RELEASE.ARCH` of an installed package, `None` when it
    /// is not installed.
    pub fn query(&self, name: &str) -> Result<Option<String>, InstallError> {
        check_package_name(name)?;
        let mut argv = self.rpm_argv();
        argv.extend(["--query".into(), name.into()]);
        let out = process::run(&argv, &[], None, Duration::from_secs(60))?;
        match out.exit {
            ProcessExit::Code(0) => Ok(Some(out.stdout_tail.trim().to_owned())),
            ProcessExit::Code(1) if out.stdout_tail.contains("is not installed") => Ok(None),
            _ => Err(tool_error(&argv, &out)),
        }
    }
}

/// rpm's transaction lock, released when dropped.
#[derive(Debug)]
pub struct TransactionLock {
    _file: std::fs::File,
}

fn absolute(path: &Path) -> Result<PathBuf, InstallError> {
    std::path::absolute(path).map_err(|e| io_error("failed to resolve", path)(e).into())
}

fn tool_error(argv: &[OsString], out: &process::ProcessOutput) -> InstallError {
    InstallError::Tool {
        program: "rpm".into(),
        args: process::render(&argv[1..]),
        message: format!("{}: {}", out.exit, out.stderr_tail.trim()),
    }
}

/// `Name` of an .rpm file, read with `rpm --query --package`.
pub fn rpm_package_name(rpm: &Path) -> Result<String, InstallError> {
    let argv: Vec<OsString> =
        vec!["rpm".into(), "--query".into(), "--package".into(), "--queryformat=%{NAME}".into(), rpm.into()];
    let out = process::run(&argv, &[], None, Duration::from_secs(60))?;
    let name = out.stdout_tail.trim().to_owned();
    if out.exit != ProcessExit::Code(0) || name.is_empty() {
        return Err(tool_error(&argv, &out));
    }
    check_package_name(&name)?;
    Ok(name)
}

#[derive(Debug, Clone)]
pub struct RpmInstaller {
    root: RpmRoot,
    timeout: Duration,
}

impl RpmInstaller {
    pub fn new(root: RpmRoot) -> RpmInstaller {
        RpmInstaller { root, timeout: super::deb::DEFAULT_DPKG_TIMEOUT }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> RpmInstaller {
        self.timeout = timeout;
        self
    }

    pub fn root(&self) -> &RpmRoot {
        &self.root
    }

    fn run(&self, args: Vec<OsString>) -> Result<Outcome, InstallError> {
        let lock = self.root.db_dir().join(".rpm.lock");
        if lock.parent().is_some_and(Path::is_dir) && try_lock(&lock)?.is_none() {
            return Ok(Outcome::RetryLater {
                reason: format!("the rpm transaction lock {} is held by another process", lock.display()),
            });
        }
        let mut argv = self.root.rpm_argv();
        if self.root.sandbox {
            argv.extend(["--noscripts".into(), "--nodeps".into()]);
        }
        argv.extend(args);
        let out = process::run(&argv, &[], None, self.timeout)?;
        Ok(classify(out.exit, &out.stderr_tail))
    }
}

impl RpmInstaller {
    /// Finishes a replacement a kill cut short. rpm installs the new
    /// version of a package before it erases the one it replaces, so an
    /// interrupted upgrade or downgrade leaves both in the database. When
    /// `name.arch` is installed more than once and one instance is `kept`
    /// (`[EPOCH:]VERSION-RELEASE`, the version the transaction was heading
    /// to), the others are erased, as the transaction would have: files the
    /// kept instance owns stay. Returns the versions erased; nothing when
    /// there are no such duplicates (detection decides).
    pub fn finish_replacement(&self, name: &str, arch: &str, kept: &str) -> Result<Vec<String>, InstallError> {
        check_package_name(name)?;
        check_package_name(arch)?;
        let mut argv = self.root.rpm_argv();
        let format = "%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\\n";
        argv.extend(["--query".into(), "--queryformat".into(), format.into(), format!("{name}.{arch}").into()]);
        let out = process::run(&argv, &[], None, Duration::from_secs(60))?;
        if out.exit != ProcessExit::Code(0) {
            return Ok(Vec::new());
        }
        let instances: Vec<&str> = out.stdout_tail.lines().collect();
        if instances.len() < 2 || !instances.contains(&kept) {
            return Ok(Vec::new());
        }
        let mut erased = Vec::new();
        for evr in instances.into_iter().filter(|evr| *evr != kept) {
            check_package_name(evr)?;
            match self.run(vec!["--erase".into(), format!("{name}-{evr}.{arch}").into()])? {
                outcome if outcome.succeeded() => erased.push(evr.to_owned()),
                other => {
                    return Err(InstallError::Tool {
                        program: "rpm".into(),
                        args: format!("--erase {name}-{evr}.{arch}"),
                        message: format!("{other:?}"),
                    });
                }
            }
        }
        Ok(erased)
    }
}

impl Installer for RpmInstaller {
    fn kind(&self) -> PackageType {
        PackageType::Rpm
    }

    /// `rpm [ARGS] --upgrade FILE`: installs, or replaces an older version
    /// (a patch is usually an update of an installed package).
    fn install(&self, package: &VerifiedPackage, args: &[String]) -> Result<Outcome, InstallError> {
        package.expect_kind(PackageType::Rpm)?;
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.push("--upgrade".into());
        argv.push(package.path().into());
        self.run(argv)
    }

    /// `rpm --erase NAME`.
    fn uninstall(&self, removal: Removal<'_>) -> Result<Outcome, InstallError> {
        let Removal::Package(name) = removal else {
            return Err(InstallError::UnsupportedRemoval { installer: PackageType::Rpm, removal: removal.name() });
        };
        check_package_name(name)?;
        self.run(vec!["--erase".into(), name.into()])
    }
}

/// A small noarch .rpm to build with `rpmbuild`: for tests and demos.
#[derive(Debug, Clone)]
pub struct RpmSpec {
    pub name: String,
    pub version: String,
    pub release: String,
}

impl RpmSpec {
    pub fn new(name: &str, version: &str) -> RpmSpec {
        RpmSpec { name: name.into(), version: version.into(), release: "1".into() }
    }

    /// Builds the package under `work_dir` (rpmbuild's top directory) and
    /// returns the .rpm's path. It ships `/usr/share/NAME/version`.
    pub fn build(&self, work_dir: &Path) -> Result<PathBuf, InstallError> {
        check_package_name(&self.name)?;
        let spec_path = work_dir.join(format!("{}.spec", self.name));
        let spec = format!(
            "Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: patchward test package\nLicense: Apache-2.0\nBuildArch: noarch\n\
             %description\npatchward test package\n\
             %install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {version} > %{{buildroot}}/usr/share/{name}/version\n\
             %files\n/usr/share/{name}/version\n",
            name = self.name,
            version = self.version,
            release = self.release,
        );
        std::fs::create_dir_all(work_dir).map_err(io_error("failed to create directory", work_dir))?;
        std::fs::write(&spec_path, spec).map_err(io_error("failed to write", &spec_path))?;
        let mut topdir = OsString::from("_topdir ");
        topdir.push(work_dir.as_os_str());
        let argv: Vec<OsString> = vec![
            "rpmbuild".into(),
            "--define".into(),
            topdir,
            // No brp scripts or build-id links: a fast, deterministic build.
            "--define".into(),
            "__os_install_post %{nil}".into(),
            "--define".into(),
            "_build_id_links none".into(),
            "-bb".into(),
            spec_path.clone().into(),
        ];
        let out = process::run(&argv, &[], None, Duration::from_secs(300))?;
        if out.exit != ProcessExit::Code(0) {
            return Err(InstallError::Tool {
                program: "rpmbuild".into(),
                args: process::render(&argv[1..]),
                message: format!("{}: {}", out.exit, out.stderr_tail.trim()),
            });
        }
        Ok(work_dir.join("RPMS/noarch").join(format!("{}-{}-{}.noarch.rpm", self.name, self.version, self.release)))
    }
}
