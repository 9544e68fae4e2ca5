//! A way back for a package the repositories no longer offer: the installed
//! package rebuilt from dpkg's own database.
//!
//! Before the agent upgrades a Debian package it secures the version it
//! replaces (step 3 of [`crate::repo`]). When the repositories still offer
//! that version, they are the way back; when they do not, [`rebuild`] rebuilds
//! a `.deb` of exactly what is installed, as dpkg-repack does, with nothing
//! beyond `dpkg`, `dpkg-query` and `dpkg-deb`:
//!
//! - `DEBIAN/control` is the package's stanza (`dpkg-query --status
//!   NAME:ARCH`, continuation lines intact) without the fields only the
//!   status database holds ([`STATUS_ONLY_FIELDS`]); its `Conffiles` become
//!   `DEBIAN/conffiles`;
//! - the other control members (maintainer scripts, `md5sums`, `triggers`,
//!   `shlibs`, …, [`CONTROL_MEMBERS`]) are dpkg's copies in `ADMINDIR/info/`;
//! - the files are those of the package's file list (`ADMINDIR/info/
//!   NAME.list`, or `NAME:ARCH.list` for a `Multi-Arch: same` package), copied
//!   from the root: directories with their modes, regular files with their
//!   content and modes, symlinks as symlinks. A file another package or the
//!   administrator diverted is taken from where the diversion put it, since
//!   what sits at the listed path is someone else's.
//!
//! The archive is hashed (sha256) and kept in the caller's directory as
//! `NAME_VERSION_ARCH.deb` (an epoch's `:` written `%3a`, as apt names its
//! archives), so a retraction can install exactly it: a downgrade, which
//! dpkg allows.
//!
//! Beyond the shared rules of [`super`]:
//! - only a package dpkg says is `ok installed` is rebuilt;
//! - dpkg's `md5sums` go in unchanged, so after a restore `dpkg --verify`
//!   still shows a change that was backed up;
//! - owners are kept when the agent runs as root (a setgid program's group
//!   matters: `crontab` without group `crontab` fails); a non-root caller
//!   (a sandbox) can own nothing but its own files, and builds with
//!   `--root-owner-group` instead;
//!
//! The caller keeps dpkg from running meanwhile (it holds the frontend lock
//! around the whole transaction): the database is read without a lock, as
//! dpkg-query reads it. Taking the lock here would fail against the caller's
//! own, since an open-file-description lock conflicts within a process too.
//!
//! Paths are joined to the root as dpkg joins them when it installs (the
//! kernel follows a directory symlink), so the files are read from where
//! dpkg wrote them. In the tree being built, a path that has entries of the
//! list beneath it is always a directory, even where the root has a symlink
//! (`/lib` → `usr/lib` on a merged-/usr system): dpkg's archive holds it as
//! a directory, and no copy is ever written through a link.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use super::{
    Backup, BackupError, Listed, Owners, QUERY_TIMEOUT, TOOL_TIMEOUT, WorkDir, capture, check_word, copy_files,
    create_dir, create_private_dir, flag, keep, parse_verify,
};
use crate::cache::io_error;
use crate::install::deb::DpkgRoot;
use crate::install::process::ProcessExit;

/// Fields of a status stanza that describe the installation, not the
/// package: dpkg-deb has no place for them (conffiles get their own member).
pub const STATUS_ONLY_FIELDS: [&str; 5] =
    ["Status", "Config-Version", "Conffiles", "Triggers-Pending", "Triggers-Awaited"];

/// Control members dpkg keeps in `ADMINDIR/info/`, and whether each is a
/// maintainer script (mode 0755, which dpkg-deb insists on).
pub const CONTROL_MEMBERS: [(&str, bool); 10] = [
    ("preinst", true),
    ("postinst", true),
    ("prerm", true),
    ("postrm", true),
    ("config", true),
    ("templates", false),
    ("triggers", false),
    ("shlibs", false),
    ("symbols", false),
    ("md5sums", false),
];

/// Rebuilds installed package `name` (architecture `arch`, dpkg's word) from
/// the dpkg database of `root` into `dir` (created, 0700) as
/// `NAME_VERSION_ARCH.deb`, replacing a file of that name.
pub fn rebuild(root: &DpkgRoot, name: &str, arch: &str, dir: &Path) -> Result<Backup, BackupError> {
    check_word("package name", name, "+-.")?;
    check_word("architecture", arch, "-")?;
    create_private_dir(dir)?;
    let work = WorkDir::create(dir, name, arch)?;
    let package = format!("{name}:{arch}");
    let stanza = installed_stanza(root, &package, &work.path)?;
    let fields = split_fields(&stanza);
    let version = simple_field(&fields, "Version")
        .ok_or_else(|| database(root.admindir().join("status"), format!("{package} has no Version field")))?;
    check_word("version", &version, "+-.~:")?;
    let infodb =
        if simple_field(&fields, "Multi-Arch").as_deref() == Some("same") { package.clone() } else { name.into() };

    let tree = work.path.join("tree");
    let owners = if is_root() { Owners::AsOnDisk } else { Owners::RootOnly };
    let listed = listed_paths(root, &infodb, name)?;
    let missing = copy_files(root.root(), &listed, &tree, owners)?;
    write_control(root, &infodb, &fields, &tree)?;
    let modified = modified_files(root, &package, &work.path)?;
    let built = build(&tree, &work.path, owners)?;
    let target = dir.join(deb_file_name(name, &version, arch));
    let (sha256, size) = keep(&built, &target, dir)?;
    Ok(Backup { path: target, sha256, size, name: name.into(), arch: arch.into(), version, modified, missing })
}

/// `NAME_VERSION_ARCH.deb`, the epoch's `:` written `%3a` as apt writes it
/// (a colon in a file name upsets scp, Windows shares and URLs).
pub fn deb_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

fn database(path: PathBuf, why: String) -> BackupError {
    BackupError::Database { path, why }
}

/// The package's stanza, refused unless dpkg says `ok installed`.
fn installed_stanza(root: &DpkgRoot, package: &str, work: &Path) -> Result<Vec<u8>, BackupError> {
    let argv: Vec<OsString> =
        vec!["dpkg-query".into(), flag("--admindir=", &root.admindir()), "--status".into(), package.into()];
    let out = capture(&argv, work, QUERY_TIMEOUT)?;
    match out.exit {
        ProcessExit::Code(0) => {}
        // dpkg-query's "no package found".
        ProcessExit::Code(1) => return Err(BackupError::NotInstalled { package: package.into() }),
        exit => return Err(out.failure(&argv, exit)),
    }
    let status = simple_field(&split_fields(&out.stdout), "Status").unwrap_or_default();
    let words: Vec<&str> = status.split_whitespace().collect();
    if !matches!(words.as_slice(), [_, "ok", "installed"]) {
        return Err(BackupError::NotFullyInstalled { package: package.into(), status });
    }
    Ok(out.stdout)
}

/// One field of a stanza: its name and all its lines, continuation lines
/// and newlines included, exactly as dpkg printed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field<'a> {
    name: &'a [u8],
    raw: &'a [u8],
}

/// The fields of one deb822 stanza, in order. A line starting with a space
/// or tab continues the field before it; blank lines end the stanza.
fn split_fields(stanza: &[u8]) -> Vec<Field<'_>> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in stanza.split_inclusive(|&b| b == b'\n') {
        let end = offset + line.len();
        if line.trim_ascii().is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(field) = fields.last_mut() {
                field.raw = &stanza[start..end];
            }
        } else {
            let name = line.split(|&b| b == b':').next().unwrap_or_default().trim_ascii();
            start = offset;
            fields.push(Field { name, raw: &stanza[start..end] });
        }
        offset = end;
    }
    fields
}

fn named<'a>(fields: &[Field<'a>], name: &str) -> Option<Field<'a>> {
    fields.iter().copied().find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
}

/// The one-line value of field `name`, trimmed.
fn simple_field(fields: &[Field<'_>], name: &str) -> Option<String> {
    let raw = named(fields, name)?.raw;
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let colon = first.iter().position(|&b| b == b':')?;
    Some(String::from_utf8_lossy(first[colon + 1..].trim_ascii()).into_owned())
}

/// `DEBIAN/control`: the stanza without [`STATUS_ONLY_FIELDS`].
fn control_text(fields: &[Field<'_>]) -> Vec<u8> {
    let mut control = Vec::new();
    for field in fields {
        if !STATUS_ONLY_FIELDS.iter().any(|f| field.name.eq_ignore_ascii_case(f.as_bytes())) {
            control.extend_from_slice(field.raw);
        }
    }
    if !control.ends_with(b"\n") {
        control.push(b'\n');
    }
    control
}

/// The conffiles that still belong to the package. Each `Conffiles` line is
/// ` PATH HASH [FLAG…]`, read from the right since a path may hold spaces; a
/// conffile marked `obsolete` or `remove-on-upgrade` is no longer shipped
/// by the installed version, so it is not one of the backup's.
fn current_conffiles(fields: &[Field<'_>]) -> Vec<PathBuf> {
    let Some(field) = named(fields, "Conffiles") else { return Vec::new() };
    let mut paths = Vec::new();
    for line in field.raw.split(|&b| b == b'\n').skip(1) {
        let mut words: Vec<&[u8]> = line.trim_ascii().split(|&b| b == b' ').filter(|w| !w.is_empty()).collect();
        let flagged = words.last().is_some_and(|w| *w == b"obsolete" || *w == b"remove-on-upgrade");
        if flagged || words.len() < 2 {
            continue;
        }
        words.pop();
        paths.push(PathBuf::from(OsStr::from_bytes(&words.join(&b' '))));
    }
    paths
}

/// The package's file list with diversions by others applied, without
/// dpkg's `/.` entry.
fn listed_paths(root: &DpkgRoot, infodb: &str, name: &str) -> Result<Vec<Listed>, BackupError> {
    let list = root.admindir().join("info").join(format!("{infodb}.list"));
    let text = std::fs::read(&list).map_err(io_error("failed to read", &list))?;
    let diversions = read_diversions(&root.admindir().join("diversions"))?;
    let mut listed = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty() && *l != b"/.") {
        let path = PathBuf::from(OsStr::from_bytes(line));
        let plain =
            path.is_absolute() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain {
            return Err(database(list.clone(), format!("{} is not a plain absolute path", path.display())));
        }
        let source = match diversions.get(&path) {
            Some((to, by)) if by != name => to.clone(),
            _ => path.clone(),
        };
        listed.push(Listed { path, source });
    }
    Ok(listed)
}

/// `ADMINDIR/diversions`: three lines per diversion (the diverted path,
/// where it went, the package that diverted it or `:` for the
/// administrator), keyed by the diverted path.
fn read_diversions(path: &Path) -> Result<HashMap<PathBuf, (PathBuf, String)>, BackupError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io_error("failed to read", path)(e).into()),
    };
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    if lines.len() % 3 != 0 {
        return Err(database(path.into(), "the diversions do not come in groups of three lines".into()));
    }
    let diversions = lines.chunks(3).map(|d| {
        let by = String::from_utf8_lossy(d[2]).into_owned();
        (PathBuf::from(OsStr::from_bytes(d[0])), (PathBuf::from(OsStr::from_bytes(d[1])), by))
    });
    Ok(diversions.collect())
}

/// `DEBIAN/`: control, conffiles (those present in the tree: dpkg-deb
/// refuses a conffile the archive lacks) and dpkg's copies of the other
/// members.
fn write_control(root: &DpkgRoot, infodb: &str, fields: &[Field<'_>], tree: &Path) -> Result<(), BackupError> {
    let debian = tree.join("DEBIAN");
    create_dir(&debian)?;
    write_file(&debian.join("control"), &control_text(fields), 0o644)?;
    let mut conffiles = Vec::new();
    for path in current_conffiles(fields) {
        let copied = tree.join(path.strip_prefix("/").unwrap_or(&path));
        if copied.symlink_metadata().is_ok_and(|m| m.is_file()) {
            conffiles.extend_from_slice(path.as_os_str().as_bytes());
            conffiles.push(b'\n');
        }
    }
    if !conffiles.is_empty() {
        write_file(&debian.join("conffiles"), &conffiles, 0o644)?;
    }
    let info = root.admindir().join("info");
    for (member, script) in CONTROL_MEMBERS {
        let source = info.join(format!("{infodb}.{member}"));
        match std::fs::read(&source) {
            Ok(bytes) => write_file(&debian.join(member), &bytes, if script { 0o755 } else { 0o644 })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("failed to read", &source)(e).into()),
        }
    }
    // dpkg-deb wants the control directory 0755 to 0775, whatever our umask.
    std::fs::set_permissions(&debian, std::fs::Permissions::from_mode(0o755))
        .map_err(io_error("failed to set mode of", &debian))?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    std::fs::write(path, bytes).map_err(io_error("failed to write", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_error("failed to set mode of", path))?;
    Ok(())
}

/// Files that are not conffiles whose md5 differs from dpkg's record, by
/// `dpkg --verify` (dpkg applies diversions and knows which are conffiles).
fn modified_files(root: &DpkgRoot, package: &str, work: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut argv = root.dpkg_argv();
    argv.extend(["--verify".into(), package.into()]);
    let out = capture(&argv, work, TOOL_TIMEOUT)?;
    if out.exit != ProcessExit::Code(0) {
        return Err(out.failure(&argv, out.exit));
    }
    Ok(parse_verify(&out.stdout, 1))
}

/// `dpkg-deb --build TREE WORK/backup.deb`. gzip: every dpkg reads it, and
/// it is many times faster than xz on a large package; a backup is kept on
/// the device, never shipped.
fn build(tree: &Path, work: &Path, owners: Owners) -> Result<PathBuf, BackupError> {
    let deb = work.join("backup.deb");
    let mut argv: Vec<OsString> = vec!["dpkg-deb".into()];
    if owners == Owners::RootOnly {
        argv.push("--root-owner-group".into());
    }
    argv.extend(["-Zgzip".into(), "--build".into(), tree.into(), deb.clone().into()]);
    let out = capture(&argv, work, TOOL_TIMEOUT)?;
    if out.exit != ProcessExit::Code(0) {
        return Err(out.failure(&argv, out.exit));
    }
    Ok(deb)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANZA: &[u8] = b"Package: libpwdemo1\n\
Status: install ok installed\n\
Multi-Arch: same\n\
Version: 1:1.0-1\n\
Conffiles:\n /etc/pw/a b.conf 61be4cef1be60b597394054986946e63\n\
\x20/etc/pw/old 0123 obsolete\n /etc/pw/gone newconffile remove-on-upgrade\n\
Description: demo\n two lines\n .\n and a paragraph\n\
Config-Version: 1:1.0-0\n";

    #[test]
    fn the_control_file_is_the_stanza_without_status_fields_and_with_its_continuations() {
        let fields = split_fields(STANZA);
        assert_eq!(simple_field(&fields, "version").as_deref(), Some("1:1.0-1"));
        assert_eq!(simple_field(&fields, "Multi-Arch").as_deref(), Some("same"));
        assert_eq!(
            String::from_utf8(control_text(&fields)).unwrap(),
            "Package: libpwdemo1\nMulti-Arch: same\nVersion: 1:1.0-1\n\
             Description: demo\n two lines\n .\n and a paragraph\n"
        );
    }

    #[test]
    fn only_current_conffiles_are_kept_and_a_path_may_hold_spaces() {
        assert_eq!(current_conffiles(&split_fields(STANZA)), [PathBuf::from("/etc/pw/a b.conf")]);
        assert_eq!(current_conffiles(&split_fields(b"Package: x\n")), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_blank_line_ends_the_stanza() {
        let fields = split_fields(b"Package: a\nVersion: 1\n\nPackage: b\n");
        assert_eq!(fields.len(), 2);
        assert_eq!(control_text(&fields), b"Package: a\nVersion: 1\n");
    }

    #[test]
    fn the_file_name_writes_the_epoch_as_apt_does() {
        assert_eq!(deb_file_name("libpwdemo1", "1:1.0-1", "amd64"), "libpwdemo1_1%3a1.0-1_amd64.deb");
        assert_eq!(deb_file_name("pw", "2.0", "all"), "pw_2.0_all.deb");
    }

    #[test]
    fn diversions_are_read_in_groups_of_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("diversions");
        assert!(read_diversions(&path).unwrap().is_empty());
        std::fs::write(&path, "/usr/bin/a\n/usr/bin/a.distrib\nother\n/etc/b\n/etc/b.local\n:\n").unwrap();
        let diversions = read_diversions(&path).unwrap();
        assert_eq!(diversions[Path::new("/usr/bin/a")], (PathBuf::from("/usr/bin/a.distrib"), "other".into()));
        assert_eq!(diversions[Path::new("/etc/b")].1, ":");
        std::fs::write(&path, "/usr/bin/a\n/usr/bin/a.distrib\n").unwrap();
        let error = read_diversions(&path).unwrap_err();
        assert!(error.to_string().contains("diversions"), "{error}");
    }
}
