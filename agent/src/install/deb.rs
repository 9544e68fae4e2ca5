//! `.deb` packages through the real `dpkg`.
//!
//! [`DpkgRoot`] says which filesystem dpkg acts on: the system (`/`), a full
//! system tree (maintainer scripts chrooted into it), or a sandbox (an empty
//! tree for tests and demos: the admin directory skeleton is created, and
//! maintainer scripts run outside it with `DPKG_ROOT` set, since the tree has
//! no shell to chroot into).
//!
//! Locking follows apt's protocol: the installer takes the frontend lock
//! (`ADMINDIR/lock-frontend`) itself, without waiting, and runs dpkg with
//! `DPKG_FRONTEND_LOCKED` set; dpkg then takes the database lock
//! (`ADMINDIR/lock`). Either lock held by someone else is "retry later"
//! (G8, T23), never a failure.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{self, ProcessExit};
use super::{InstallError, Installer, Outcome, PackageType, Removal, VerifiedPackage, check_package_name, classify};
use crate::cache::io_error;

/// How maintainer scripts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptMode {
    /// Chrooted into the root, as dpkg does by default (the system, or a
    /// complete system tree).
    Chroot,
    /// Outside the root, with `DPKG_ROOT` set (`--force-script-chrootless`):
    /// for a sandbox tree that holds no shell.
    Chrootless,
}

/// The root and admin directory dpkg acts on, and the flags that need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgRoot {
    root: PathBuf,
    scripts: ScriptMode,
}

impl DpkgRoot {
    /// The machine's own dpkg database.
    pub fn system() -> DpkgRoot {
        DpkgRoot { root: PathBuf::from("/"), scripts: ScriptMode::Chroot }
    }

    /// A complete system tree at `root` (a container image): scripts are
    /// chrooted into it. `/` is the system.
    pub fn tree(root: &Path) -> Result<DpkgRoot, InstallError> {
        Ok(DpkgRoot { root: absolute(root)?, scripts: ScriptMode::Chroot })
    }

    /// An empty sandbox at `root`, created as needed with the admin
    /// directory dpkg expects (`var/lib/dpkg/{status,available,info,
    /// updates,triggers}`, `var/log`). Scripts run chrootless.
    pub fn sandbox(root: &Path) -> Result<DpkgRoot, InstallError> {
        let root = absolute(root)?;
        let dpkg = DpkgRoot { root, scripts: ScriptMode::Chrootless };
        let admin = dpkg.admindir();
        for dir in [admin.join("info"), admin.join("updates"), admin.join("triggers"), dpkg.root.join("var/log")] {
            std::fs::create_dir_all(&dir).map_err(io_error("failed to create directory", &dir))?;
        }
        for file in [admin.join("status"), admin.join("available")] {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&file)
                .map_err(io_error("failed to create", &file))?;
        }
        Ok(dpkg)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn admindir(&self) -> PathBuf {
        self.root.join("var/lib/dpkg")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("var/log/dpkg.log")
    }

    /// `dpkg` and the options every command on this root carries.
    pub fn dpkg_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["dpkg".into()];
        if self.root != Path::new("/") {
            argv.push(flag("--root=", &self.root));
            argv.push(flag("--admindir=", &self.admindir()));
            argv.push(flag("--log=", &self.log_path()));
        }
        if self.scripts == ScriptMode::Chrootless {
            // Chrootless scripts, and no refusal when a sandbox runs as a
            // user (dpkg otherwise insists on root for --root).
            argv.push("--force-script-chrootless".into());
            argv.push("--force-not-root".into());
        }
        argv
    }

    /// What the dpkg database says of `package`: `None` when it does not
    /// know it.
    pub fn status(&self, package: &str) -> Result<Option<DpkgStatus>, InstallError> {
        check_package_name(package)?;
        let argv: Vec<OsString> = vec![
            "dpkg-query".into(),
            flag("--admindir=", &self.admindir()),
            "--show".into(),
            "--showformat=${Status}\t${Version}".into(),
            package.into(),
        ];
        let out = process::run(&argv, &[], None, Duration::from_secs(60))?;
        match out.exit {
            ProcessExit::Code(0) => {}
            // 1: no such package.
            ProcessExit::Code(1) => return Ok(None),
            exit => {
                return Err(InstallError::Tool {
                    program: "dpkg-query".into(),
                    args: process::render(&argv[1..]),
                    message: format!("{exit}: {}", out.stderr_tail.trim()),
                });
            }
        }
        let (status, version) = out.stdout_tail.split_once('\t').unwrap_or((&out.stdout_tail, ""));
        let state = status.split_whitespace().last().unwrap_or_default().to_owned();
        if state == "not-installed" {
            return Ok(None);
        }
        Ok(Some(DpkgStatus { state, version: version.trim().to_owned() }))
    }

    /// `dpkg --configure -a`: finishes configuring every package a killed
    /// dpkg left unpacked or half-configured, keeping configuration files.
    /// A held lock is "retry later" (someone else is at it).
    pub fn repair(&self, timeout: Duration) -> Result<super::Outcome, InstallError> {
        let Some(_lock) = self.try_lock_frontend()? else {
            return Ok(super::Outcome::RetryLater { reason: "dpkg's frontend lock is held".into() });
        };
        let mut argv = self.dpkg_argv();
        argv.extend(["--force-confdef", "--force-confold", "--configure", "-a"].map(OsString::from));
        let out = process::run(&argv, &[("DPKG_FRONTEND_LOCKED", OsStr::new("1"))], None, timeout)?;
        if dpkg_lock_held(&out.stderr_tail) {
            return Ok(super::Outcome::RetryLater { reason: "dpkg's lock is held".into() });
        }
        Ok(classify(out.exit, &out.stderr_tail))
    }

    /// Takes the frontend lock without waiting; `None` when another process
    /// holds it.
    pub fn try_lock_frontend(&self) -> Result<Option<FrontendLock>, InstallError> {
        let path = self.admindir().join("lock-frontend");
        Ok(try_lock(&path)?.map(|file| FrontendLock { _file: file }))
    }
}

fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path.as_os_str());
    flag
}

fn absolute(path: &Path) -> Result<PathBuf, InstallError> {
    std::path::absolute(path).map_err(|e| io_error("failed to resolve", path)(e).into())
}

/// One package's state in the dpkg database: the last word of `${Status}`
/// (`installed`, `half-configured`, `config-files`, …) and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgStatus {
    pub state: String,
    pub version: String,
}

impl DpkgStatus {
    pub fn is_installed(&self) -> bool {
        self.state == "installed"
    }
}

/// The held frontend lock; released when dropped.
#[derive(Debug)]
pub struct FrontendLock {
    _file: std::fs::File,
}

/// A non-blocking write lock on the whole of `path` (created 0640 if
/// missing). An open-file-description lock: it conflicts with dpkg's and
/// apt's classic fcntl locks, and with other such locks in this process.
pub(crate) fn try_lock(path: &Path) -> Result<Option<std::fs::File>, InstallError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)
        .map_err(io_error("failed to open lock", path))?;
    // SAFETY: a zeroed flock is a valid value; we set the fields fcntl reads.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: fcntl on an fd we own with a pointer to a live flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
        _ => Err(io_error("failed to lock", path)(error).into()),
    }
}

/// Whether dpkg's stderr says a lock was held.
fn dpkg_lock_held(stderr: &str) -> bool {
    stderr.contains("locked by another process") || stderr.contains("unable to acquire the dpkg")
}

/// `Package:` of a .deb, read with `dpkg-deb -f FILE Package`.
pub fn deb_package_name(deb: &Path) -> Result<String, InstallError> {
    deb_field(deb, "Package")
}

/// One control field of a .deb (`Package`, `Version`, `Architecture`),
/// read with `dpkg-deb -f FILE FIELD`; it must read as a package name does.
pub fn deb_field(deb: &Path, field: &str) -> Result<String, InstallError> {
    let argv: Vec<OsString> = vec!["dpkg-deb".into(), "--field".into(), deb.into(), field.into()];
    let out = process::run(&argv, &[], None, Duration::from_secs(60))?;
    let name = out.stdout_tail.trim().to_owned();
    if out.exit != ProcessExit::Code(0) || name.is_empty() {
        return Err(InstallError::Tool {
            program: "dpkg-deb".into(),
            args: process::render(&argv[1..]),
            message: format!("{}: {}", out.exit, out.stderr_tail.trim()),
        });
    }
    check_package_name(&name)?;
    Ok(name)
}

/// Installs and removes .deb packages on one [`DpkgRoot`].
#[derive(Debug, Clone)]
pub struct DebInstaller {
    root: DpkgRoot,
    timeout: Duration,
}

/// dpkg runs at most this long by default.
pub const DEFAULT_DPKG_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl DebInstaller {
    pub fn new(root: DpkgRoot) -> DebInstaller {
        DebInstaller { root, timeout: DEFAULT_DPKG_TIMEOUT }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> DebInstaller {
        self.timeout = timeout;
        self
    }

    pub fn root(&self) -> &DpkgRoot {
        &self.root
    }

    fn run(&self, args: Vec<OsString>) -> Result<Outcome, InstallError> {
        let Some(_lock) = self.root.try_lock_frontend()? else {
            return Ok(Outcome::RetryLater {
                reason: format!(
                    "the dpkg frontend lock {} is held by another process",
                    self.root.admindir().join("lock-frontend").display()
                ),
            });
        };
        let mut argv = self.root.dpkg_argv();
        argv.extend(args);
        let env: [(&str, &OsStr); 2] =
            [("DPKG_FRONTEND_LOCKED", OsStr::new("1")), ("DEBIAN_FRONTEND", OsStr::new("noninteractive"))];
        let out = process::run(&argv, &env, None, self.timeout)?;
        if out.exit != ProcessExit::Code(0) && dpkg_lock_held(&out.stderr_tail) {
            return Ok(Outcome::RetryLater { reason: lock_line(&out.stderr_tail) });
        }
        Ok(classify(out.exit, &out.stderr_tail))
    }
}

/// The line of dpkg's stderr that says which lock was held.
fn lock_line(stderr: &str) -> String {
    stderr.lines().find(|l| dpkg_lock_held(l)).unwrap_or("a dpkg lock is held by another process").trim().to_owned()
}

impl Installer for DebInstaller {
    fn kind(&self) -> PackageType {
        PackageType::Deb
    }

    /// `dpkg [ARGS] --install FILE`; the package's args are dpkg options
    /// (e.g. `--force-confold`).
    fn install(&self, package: &VerifiedPackage, args: &[String]) -> Result<Outcome, InstallError> {
        package.expect_kind(PackageType::Deb)?;
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.push("--install".into());
        argv.push(package.path().into());
        self.run(argv)
    }

    /// `dpkg --remove NAME` (configuration files stay, as apt's remove).
    fn uninstall(&self, removal: Removal<'_>) -> Result<Outcome, InstallError> {
        let Removal::Package(name) = removal else {
            return Err(InstallError::UnsupportedRemoval { installer: PackageType::Deb, removal: removal.name() });
        };
        check_package_name(name)?;
        self.run(vec!["--remove".into(), name.into()])
    }
}

/// A small .deb to build with `dpkg-deb --build`: for tests and the demo's
/// sandboxes.
#[derive(Debug, Clone)]
pub struct DebSpec {
    pub name: String,
    pub version: String,
    /// Files to ship, by path inside the root (`usr/share/NAME/file`).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Maintainer scripts by name (`postinst`, `prerm`, …), shell text.
    pub scripts: Vec<(String, String)>,
    /// `all` unless set: an architecture copy needs its own (`amd64`).
    pub architecture: String,
    /// More control fields, in order (`Source`, `Multi-Arch`).
    pub fields: Vec<(String, String)>,
}

impl DebSpec {
    pub fn new(name: &str, version: &str) -> DebSpec {
        let file = PathBuf::from(format!("usr/share/{name}/version"));
        DebSpec {
            name: name.into(),
            version: version.into(),
            files: vec![(file, version.as_bytes().to_vec())],
            scripts: vec![],
            architecture: "all".into(),
            fields: vec![],
        }
    }

    pub fn architecture(mut self, architecture: &str) -> DebSpec {
        self.architecture = architecture.into();
        self
    }

    /// Adds the control field `name: value`.
    pub fn field(mut self, name: &str, value: &str) -> DebSpec {
        self.fields.push((name.into(), value.into()));
        self
    }

    pub fn script(mut self, name: &str, body: &str) -> DebSpec {
        self.scripts.push((name.into(), body.into()));
        self
    }

    /// The `DEBIAN/control` file.
    fn control(&self) -> String {
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: patchward <noreply@patchward.invalid>\n",
            self.name, self.version, self.architecture
        );
        for (name, value) in &self.fields {
            control.push_str(&format!("{name}: {value}\n"));
        }
        control.push_str(&format!("Description: patchward test package {}\n", self.name));
        control
    }

    /// Builds `OUT_DIR/NAME_VERSION_ARCH.deb` and returns its path.
    pub fn build(&self, out_dir: &Path) -> Result<PathBuf, InstallError> {
        check_package_name(&self.name)?;
        let stem = format!("{}_{}_{}", self.name, self.version, self.architecture);
        let tree = out_dir.join(format!("{stem}.tree"));
        let control_dir = tree.join("DEBIAN");
        std::fs::create_dir_all(&control_dir).map_err(io_error("failed to create directory", &control_dir))?;
        write(&control_dir.join("control"), self.control().as_bytes(), 0o644)?;
        for (name, body) in &self.scripts {
            write(&control_dir.join(name), body.as_bytes(), 0o755)?;
        }
        for (path, bytes) in &self.files {
            let target = tree.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io_error("failed to create directory", parent))?;
            }
            write(&target, bytes, 0o644)?;
        }
        let deb = out_dir.join(format!("{stem}.deb"));
        let argv: Vec<OsString> = vec![
            "dpkg-deb".into(),
            "--root-owner-group".into(),
            "--build".into(),
            tree.clone().into(),
            deb.clone().into(),
        ];
        let out = process::run(&argv, &[], None, Duration::from_secs(120))?;
        if out.exit != ProcessExit::Code(0) {
            return Err(InstallError::Tool {
                program: "dpkg-deb".into(),
                args: process::render(&argv[1..]),
                message: format!("{}: {}", out.exit, out.stderr_tail.trim()),
            });
        }
        Ok(deb)
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).map_err(io_error("failed to write", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_error("failed to set mode of", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_root_carries_root_admindir_log_and_chrootless_flags() {
        let dir = tempfile::tempdir().unwrap();
        let root = DpkgRoot::sandbox(dir.path()).unwrap();
        let argv: Vec<String> = root.dpkg_argv().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let r = dir.path().display();
        assert_eq!(
            argv,
            [
                "dpkg".to_string(),
                format!("--root={r}"),
                format!("--admindir={r}/var/lib/dpkg"),
                format!("--log={r}/var/log/dpkg.log"),
                "--force-script-chrootless".into(),
                "--force-not-root".into(),
            ]
        );
        assert!(dir.path().join("var/lib/dpkg/status").is_file());
        assert!(dir.path().join("var/lib/dpkg/info").is_dir());
        assert_eq!(DpkgRoot::system().dpkg_argv(), [OsString::from("dpkg")]);
    }

    #[test]
    fn lock_messages_of_dpkg_are_recognised() {
        assert!(dpkg_lock_held("dpkg: error: dpkg frontend lock was locked by another process with pid 7\n"));
        assert!(dpkg_lock_held("dpkg: error: dpkg status database is locked by another process\n"));
        assert!(!dpkg_lock_held("dpkg: error processing archive x.deb (--install):\n"));
    }
}
