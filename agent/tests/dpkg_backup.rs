//! Rebuilding an installed package from dpkg's database (`repo::backup`)
//! with the real dpkg on a sandbox root: packages are built by dpkg-deb and
//! installed by dpkg during the test, and the backup is installed back by
//! dpkg as a downgrade.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use patchward_agent::cache::Sha256Digest;
use patchward_agent::install::deb::DpkgRoot;
use patchward_agent::repo::backup::deb::rebuild as backup;
use patchward_agent::repo::backup::{Backup, BackupError};

const LIB: &str = "usr/lib/x86_64-linux-gnu/libpwdemo.so.1.0.0";
const LINK: &str = "usr/lib/x86_64-linux-gnu/libpwdemo.so.1";
const CONF: &str = "etc/pwdemo/pwdemo.conf";
const README: &str = "usr/share/doc/libpwdemo1/README";
const MARKER: &str = "var/lib/pwdemo/marker";

/// A package to build: control fields, files, symlinks, conffiles, postinst.
struct Pkg {
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    fields: Vec<String>,
    files: Vec<(&'static str, String)>,
    links: Vec<(&'static str, &'static str)>,
    conffiles: Vec<&'static str>,
    postinst: Option<String>,
}

/// `libpwdemo1` at `1:1.0-REVISION`: a library, its symlink, a conffile, a
/// README and a postinst that records which revision it configured.
fn libpwdemo(revision: &str) -> Pkg {
    let version: &'static str = Box::leak(format!("1:1.0-{revision}").into_boxed_str());
    Pkg {
        name: "libpwdemo1",
        version,
        arch: "amd64",
        fields: vec![
            "Multi-Arch: same".into(),
            "Source: pwdemo (1.0-1)".into(),
            "Description: patchward demo library\n a second line\n .\n and a paragraph".into(),
        ],
        files: vec![
            (LIB, format!("library code {revision}\n")),
            (CONF, format!("setting={revision}\n")),
            (README, format!("readme {revision}\n")),
        ],
        links: vec![(LINK, "libpwdemo.so.1.0.0")],
        conffiles: vec![CONF],
        postinst: Some(format!(
            "#!/bin/sh\nset -e\nmkdir -p \"$DPKG_ROOT/var/lib/pwdemo\"\necho 1.0-{revision} > \"$DPKG_ROOT/{MARKER}\"\n"
        )),
    }
}

/// `pwall` at `2.0`, `Architecture: all`, with one data file and a conffile.
fn pwall() -> Pkg {
    Pkg {
        name: "pwall",
        version: "2.0",
        arch: "all",
        fields: vec!["Description: patchward demo data".into()],
        files: vec![("usr/share/pwall/data", "data 2.0\n".into()), ("etc/pwall.conf", "all=1\n".into())],
        links: vec![],
        conffiles: vec!["etc/pwall.conf"],
        postinst: None,
    }
}

struct Sandbox {
    dir: tempfile::TempDir,
    root: DpkgRoot,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let root = DpkgRoot::sandbox(&dir.path().join("root")).unwrap();
    Sandbox { dir, root }
}

impl Sandbox {
    fn path(&self, relative: &str) -> PathBuf {
        self.root.root().join(relative)
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap()
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// Builds `pkg` with `dpkg-deb --root-owner-group --build`.
    fn build(&self, pkg: &Pkg) -> PathBuf {
        let stem = format!("{}_{}_{}", pkg.name, pkg.version.replace(':', "%3a"), pkg.arch);
        let tree = self.dir.path().join("build").join(&stem);
        let debian = tree.join("DEBIAN");
        std::fs::create_dir_all(&debian).unwrap();
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: patchward <noreply@patchward.invalid>\n",
            pkg.name, pkg.version, pkg.arch
        );
        for field in &pkg.fields {
            control.push_str(&format!("{field}\n"));
        }
        std::fs::write(debian.join("control"), control).unwrap();
        let conffiles: String = pkg.conffiles.iter().map(|c| format!("/{c}\n")).collect();
        if !conffiles.is_empty() {
            std::fs::write(debian.join("conffiles"), conffiles).unwrap();
        }
        if let Some(postinst) = &pkg.postinst {
            let path = debian.join("postinst");
            std::fs::write(&path, postinst).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for (path, content) in &pkg.files {
            std::fs::create_dir_all(tree.join(path).parent().unwrap()).unwrap();
            std::fs::write(tree.join(path), content).unwrap();
        }
        for (path, target) in &pkg.links {
            std::fs::create_dir_all(tree.join(path).parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, tree.join(path)).unwrap();
        }
        let deb = self.dir.path().join("build").join(format!("{stem}.deb"));
        run(Command::new("dpkg-deb").arg("--root-owner-group").arg("--build").arg(&tree).arg(&deb));
        deb
    }

    /// `dpkg [ROOT FLAGS] ARGS…`, which must succeed.
    fn dpkg(&self, args: &[&std::ffi::OsStr]) -> String {
        let argv: Vec<OsString> = self.root.dpkg_argv();
        run(Command::new(&argv[0]).args(&argv[1..]).args(args))
    }

    fn install(&self, deb: &Path) {
        self.dpkg(&["--install".as_ref(), deb.as_os_str()]);
    }

    /// `STATUS VERSION` of `package` as dpkg-query reports it.
    fn query(&self, package: &str) -> String {
        let admindir = format!("--admindir={}", self.root.admindir().display());
        run(Command::new("dpkg-query").args([&admindir, "--show", "--showformat=${Status} ${Version}", package]))
    }

    fn backup(&self, name: &str, arch: &str) -> Result<Backup, BackupError> {
        backup(&self.root, name, arch, &self.backups())
    }
}

/// Runs a command that must succeed; its stdout.
fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `dpkg-deb --field DEB FIELD`.
fn field(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name)).trim_end().to_owned()
}

/// `dpkg-deb --info DEB MEMBER`: a control member's content.
fn member(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("--info").arg(deb).arg(name))
}

/// The archive's entries as `MODE OWNER SIZE PATH [-> TARGET]`, sorted;
/// without dates, which a rebuild cannot keep.
fn contents(deb: &Path) -> Vec<String> {
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let mut entries: Vec<String> = listing
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            [&words[..3], &words[5..]].concat().join(" ")
        })
        .collect();
    entries.sort();
    entries
}

/// Extracts the archive's files into a fresh directory.
fn extract(deb: &Path, into: &Path) -> PathBuf {
    run(Command::new("dpkg-deb").arg("--extract").arg(deb).arg(into));
    into.to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn an_installed_package_is_rebuilt_whole_and_a_downgrade_to_it_restores_the_old_version() {
    let s = sandbox();
    let original = s.build(&libpwdemo("1"));
    s.install(&original);
    assert_eq!(s.read(MARKER), "1.0-1\n");

    let saved = s.backup("libpwdemo1", "amd64").unwrap();
    assert_eq!(saved.path, s.backups().join("libpwdemo1_1%3a1.0-1_amd64.deb"));
    assert_eq!((saved.name.as_str(), saved.arch.as_str(), saved.version.as_str()), ("libpwdemo1", "amd64", "1:1.0-1"));
    let bytes = std::fs::read(&saved.path).unwrap();
    assert_eq!(saved.sha256, Sha256Digest::of(&bytes));
    assert_eq!(saved.size, bytes.len() as u64);
    assert_eq!((saved.modified.len(), saved.missing.len()), (0, 0), "{saved:?}");
    assert_eq!(mode(&s.backups()), 0o700);
    assert_eq!(mode(&saved.path), 0o600);
    let left: Vec<_> = std::fs::read_dir(s.backups()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [saved.path.file_name().unwrap()], "only the .deb is left behind");

    assert_eq!(field(&saved.path, "Package"), "libpwdemo1");
    assert_eq!(field(&saved.path, "Version"), "1:1.0-1");
    assert_eq!(field(&saved.path, "Source"), "pwdemo (1.0-1)");
    assert_eq!(field(&saved.path, "Architecture"), "amd64");
    assert_eq!(field(&saved.path, "Multi-Arch"), "same");
    assert_eq!(field(&saved.path, "Description"), "patchward demo library\n a second line\n .\n and a paragraph");
    for status_only in ["Status", "Conffiles", "Config-Version"] {
        assert_eq!(field(&saved.path, status_only), "", "{status_only} stays in the status database");
    }
    assert_eq!(contents(&saved.path), contents(&original), "same entries, modes, owners, sizes and links");
    assert_eq!(member(&saved.path, "conffiles"), format!("/{CONF}\n"));
    assert_eq!(member(&saved.path, "postinst"), libpwdemo("1").postinst.unwrap());
    assert!(member(&saved.path, "md5sums").contains(LIB));

    s.install(&s.build(&libpwdemo("2")));
    assert_eq!(s.query("libpwdemo1:amd64"), "install ok installed 1:1.0-2");
    assert_eq!(s.read(LIB), "library code 2\n");

    s.install(&saved.path);
    assert_eq!(s.query("libpwdemo1:amd64"), "install ok installed 1:1.0-1");
    assert_eq!(s.read(LIB), "library code 1\n");
    assert_eq!(s.read(CONF), "setting=1\n");
    assert_eq!(s.read(README), "readme 1\n");
    assert_eq!(s.read(MARKER), "1.0-1\n", "the backup's own postinst ran");
    assert_eq!(std::fs::read_link(s.path(LINK)).unwrap(), Path::new("libpwdemo.so.1.0.0"));
    assert_eq!(s.dpkg(&["--verify".as_ref(), "libpwdemo1:amd64".as_ref()]), "", "dpkg finds every file as recorded");
}

#[test]
fn changed_and_missing_files_are_backed_up_as_they_are_and_named() {
    let s = sandbox();
    s.install(&s.build(&libpwdemo("1")));
    std::fs::write(s.path(CONF), "setting=mine\n").unwrap();
    std::fs::write(s.path(LIB), "patched in place\n").unwrap();
    std::fs::remove_file(s.path(README)).unwrap();

    let saved = s.backup("libpwdemo1", "amd64").unwrap();
    assert_eq!(saved.modified, [Path::new("/").join(LIB)], "a changed conffile is configuration, not damage");
    assert_eq!(saved.missing, [Path::new("/").join(README)]);
    let files = extract(&saved.path, &s.dir.path().join("extracted"));
    assert_eq!(std::fs::read_to_string(files.join(CONF)).unwrap(), "setting=mine\n");
    assert_eq!(std::fs::read_to_string(files.join(LIB)).unwrap(), "patched in place\n");
    assert!(!files.join(README).exists());
    assert_eq!(member(&saved.path, "conffiles"), format!("/{CONF}\n"));
}

#[test]
fn an_architecture_all_package_is_rebuilt_under_its_plain_name_without_a_deleted_conffile() {
    let s = sandbox();
    s.install(&s.build(&pwall()));
    assert!(s.root.admindir().join("info/pwall.list").is_file(), "not Multi-Arch: same, so no :all in the name");
    std::fs::remove_file(s.path("etc/pwall.conf")).unwrap();

    let saved = s.backup("pwall", "all").unwrap();
    assert_eq!(saved.path, s.backups().join("pwall_2.0_all.deb"));
    assert_eq!(field(&saved.path, "Architecture"), "all");
    assert_eq!(saved.missing, [PathBuf::from("/etc/pwall.conf")]);
    // dpkg-deb refuses a conffile the archive lacks: it is not listed.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&saved.path));
    assert!(!info.contains("conffiles"), "{info}");

    // Reinstalling the same version from the backup repairs a damaged file.
    std::fs::write(s.path("usr/share/pwall/data"), "damaged\n").unwrap();
    s.install(&saved.path);
    assert_eq!(s.query("pwall"), "install ok installed 2.0");
    assert_eq!(s.read("usr/share/pwall/data"), "data 2.0\n");
}

#[test]
fn a_package_that_is_not_fully_installed_is_refused_by_name() {
    let s = sandbox();
    let error = s.backup("libpwnothere", "amd64").unwrap_err();
    assert!(matches!(error, BackupError::NotInstalled { .. }), "{error:?}");
    assert!(error.to_string().contains("libpwnothere:amd64"), "{error}");

    s.install(&s.build(&libpwdemo("1")));
    let error = s.backup("libpwdemo1", "i386").unwrap_err();
    assert!(error.to_string().contains("package libpwdemo1:i386 is not installed"), "{error}");

    // Removed with its conffiles kept: dpkg still knows it, as config-files.
    s.install(&s.build(&pwall()));
    s.dpkg(&["--remove".as_ref(), "pwall".as_ref()]);
    let error = s.backup("pwall", "all").unwrap_err();
    assert!(matches!(error, BackupError::NotFullyInstalled { .. }), "{error:?}");
    assert!(error.to_string().contains("pwall:all") && error.to_string().contains("config-files"), "{error}");

    let error = s.backup("../pwall", "all").unwrap_err();
    assert!(matches!(error, BackupError::Invalid { .. }), "{error:?}");
    let left: Vec<_> = std::fs::read_dir(s.backups()).unwrap().collect();
    assert!(left.is_empty(), "no build tree is left behind: {left:?}");
}

#[test]
fn a_file_diverted_by_another_package_is_taken_from_where_the_diversion_put_it() {
    let s = sandbox();
    s.install(&s.build(&pwall()));
    let root = s.root.root();
    run(Command::new("dpkg-divert")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--admindir={}", s.root.admindir().display()))
        .args(["--package", "pwother", "--rename", "--divert", "/usr/share/pwall/data.distrib"])
        .args(["--add", "/usr/share/pwall/data"]));
    std::fs::write(s.path("usr/share/pwall/data"), "pwother's data\n").unwrap();

    let saved = s.backup("pwall", "all").unwrap();
    assert!(saved.modified.is_empty() && saved.missing.is_empty(), "{saved:?}");
    let files = extract(&saved.path, &s.dir.path().join("extracted"));
    assert_eq!(std::fs::read_to_string(files.join("usr/share/pwall/data")).unwrap(), "data 2.0\n");
    assert!(!files.join("usr/share/pwall/data.distrib").exists());
}

#[test]
fn owners_and_setgid_modes_survive_when_the_agent_is_root() {
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    assert!(is_root, "this test needs root, to give files other owners: `scripts/test` runs as root");
    let s = sandbox();
    s.install(&s.build(&pwall()));
    let data = s.path("usr/share/pwall/data");
    std::os::unix::fs::chown(&data, Some(0), Some(42)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o2755)).unwrap();

    let saved = s.backup("pwall", "all").unwrap();
    std::os::unix::fs::chown(&data, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.install(&saved.path);
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o7777), (42, 0o2755));
}
