//! A way back for a package the repositories no longer offer: the installed
//! package rebuilt from its manager's own database, before it is upgraded
//! (step 3 of [`crate::repo`]).
//!
//! - [`deb`]: a `.deb` rebuilt from dpkg's database with nothing beyond
//!   `dpkg`, `dpkg-query` and `dpkg-deb`, as dpkg-repack does;
//! - [`rpm`]: an `.rpm` rebuilt from rpm's database with `rpmbuild`, as
//!   rpmrebuild does (Debian's `rpm` package carries it; on a Red Hat
//!   family system it is `rpm-build`, which the agent's package requires).
//!
//! Both share the rules below, and the [`Backup`] they return.
//!
//! - only a fully installed package is rebuilt: a half-installed one has no
//!   consistent set of files to go back to;
//! - what is on disk is what is backed up: a changed configuration file
//!   keeps its current content (the administrator's configuration is what a
//!   restore must bring back); a changed other file is kept too but named in
//!   [`Backup::modified`], and a listed path that is gone in
//!   [`Backup::missing`], so the caller decides whether such a way back is
//!   good enough;
//! - the directory is private (0700): the tree being packed holds copies of
//!   setuid programs and of configuration only root may read;
//! - nothing is left behind but the finished package: the build tree is
//!   removed on success and failure alike, and the package appears by
//!   rename, complete or not at all, hashed (sha256) as it is kept.

pub mod deb;
pub mod rpm;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::cache::{CacheError, Sha256Digest, io_error};
use crate::install::process::{ProcessExit, render};

/// A rebuilt package: where it is, its sha256, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// `DIR/NAME_VERSION_ARCH.deb` or `DIR/NAME-VERSION-RELEASE.ARCH.rpm`,
    /// mode 0600.
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    pub size: u64,
    pub name: String,
    /// The manager's word: `amd64`, `all`, `x86_64`, `noarch`, …
    pub arch: String,
    /// With its epoch, as the inventory spells it (`1:1.0-1`).
    pub version: String,
    /// Files (not configuration files) whose content differs from the
    /// database's digest: backed up as they are now.
    pub modified: Vec<PathBuf>,
    /// Listed paths absent from the root: not in the backup.
    pub missing: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid { what: &'static str, value: String, why: &'static str },
    #[error("package {package} is not installed: the package database knows no such package")]
    NotInstalled { package: String },
    #[error("package {package} is not fully installed (status: {status}): it has no consistent version to back up")]
    NotFullyInstalled { package: String, status: String },
    #[error("the package database at {}: {why}", path.display())]
    Database { path: PathBuf, why: String },
    #[error("{} is a {kind}: a backup holds only directories, regular files and symlinks", path.display())]
    UnsupportedFile { path: PathBuf, kind: &'static str },
    /// Something of the package the rebuild cannot carry over faithfully.
    #[error("package {package} cannot be rebuilt: {why}")]
    Unsupported { package: String, why: String },
    #[error("failed to start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args}: {message}")]
    Tool { program: String, args: String, message: String },
    #[error(transparent)]
    Storage(#[from] CacheError),
}

/// `NAME` and `path` as one argument (`--admindir=/x`, `HOME=/x`), the
/// path's bytes kept as they are.
pub(super) fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path.as_os_str());
    flag
}

/// A query answers from the database at once; anything longer is stuck.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// A verify hashes every file of the package, and a build compresses them:
/// generous enough for a firmware package on a slow disk.
pub(super) const TOOL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_millis(20);

/// A word that ends up in a file name or a package manager's argument: a letter or digit
/// first, then letters, digits and `extra` (so never `/`, `_` or a space).
pub(super) fn check_word(what: &'static str, value: &str, extra: &str) -> Result<(), BackupError> {
    let invalid = |why| BackupError::Invalid { what, value: value.chars().take(80).collect(), why };
    let first = value.chars().next().ok_or_else(|| invalid("it is empty"))?;
    if !first.is_ascii_alphanumeric() || value.len() > 200 {
        return Err(invalid("it must start with a letter or digit and be at most 200 characters"));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c)) {
        return Err(invalid("it holds a character dpkg does not allow there"));
    }
    Ok(())
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error("failed to create", dir))?;
    // An existing directory keeps its mode under DirBuilder: tighten it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error("failed to set mode of", dir))?;
    Ok(())
}

/// The private scratch directory of one backup, removed when dropped.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
}

impl WorkDir {
    pub(super) fn create(dir: &Path, name: &str, arch: &str) -> Result<WorkDir, BackupError> {
        // Unique per process and call, so two backups never share a tree; a
        // leftover of a killed process keeps its own name.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(".backup-{name}_{arch}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io_error("failed to remove", &path))?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(io_error("failed to create", &path))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover tree is disk space inside a private
        // directory, never something installed.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A path of the package's file list, and where its content is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// Absolute, as the package names it.
    pub(super) path: PathBuf,
    /// Absolute within the root: `path`, or where a diversion moved it.
    pub(super) source: PathBuf,
}

/// Whose owners the archive records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owners {
    /// The copies get the owners of the originals (the agent is root).
    AsOnDisk,
    /// Everything is root's (`--root-owner-group`): a non-root caller owns
    /// its copies, and that uid means nothing in an archive.
    RootOnly,
}

/// Copies the listed paths from `root` into `tree`; returns those absent.
/// Directory modes are set last, deepest first, so that a read-only
/// directory is still writable while its entries are copied.
pub(super) fn copy_files(
    root: &Path,
    listed: &[Listed],
    tree: &Path,
    owners: Owners,
) -> Result<Vec<PathBuf>, BackupError> {
    let parents: HashSet<&Path> = listed.iter().flat_map(|l| l.path.ancestors().skip(1)).collect();
    let mut missing = Vec::new();
    let mut dirs = Vec::new();
    create_dir(tree)?;
    for entry in listed {
        let source = root.join(entry.source.strip_prefix("/").unwrap_or(&entry.source));
        let target = tree.join(entry.path.strip_prefix("/").unwrap_or(&entry.path));
        let is_parent = parents.contains(entry.path.as_path());
        // A parent is a directory in the archive: follow a symlink to it.
        let found = if is_parent { std::fs::metadata(&source) } else { std::fs::symlink_metadata(&source) };
        let meta = match found {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(entry.path.clone());
                continue;
            }
            Err(e) => return Err(io_error("failed to inspect", &source)(e).into()),
        };
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        copy_entry(&source, &meta, &target)?;
        if meta.is_dir() {
            dirs.push((target, meta));
        } else {
            set_owner_and_mode(&target, &meta, owners)?;
        }
    }
    for (dir, meta) in dirs.iter().rev() {
        set_owner_and_mode(dir, meta, owners)?;
    }
    Ok(missing)
}

pub(super) fn create_dir(dir: &Path) -> Result<(), BackupError> {
    // Parents the list does not name (it always should) get dpkg's 0755.
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(io_error("failed to create", dir))?;
    Ok(())
}

/// One entry, by its type on disk; modes and owners come later.
fn copy_entry(source: &Path, meta: &std::fs::Metadata, target: &Path) -> Result<(), BackupError> {
    let kind = meta.file_type();
    if kind.is_dir() {
        create_dir(target)
    } else if kind.is_file() {
        std::fs::copy(source, target).map_err(io_error("failed to copy", source))?;
        Ok(())
    } else if kind.is_symlink() {
        let link = std::fs::read_link(source).map_err(io_error("failed to read link", source))?;
        std::os::unix::fs::symlink(&link, target).map_err(io_error("failed to create link", target))?;
        Ok(())
    } else {
        Err(BackupError::UnsupportedFile { path: source.into(), kind: special_kind(kind) })
    }
}

fn special_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_fifo() {
        "fifo"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else {
        "socket"
    }
}

/// The original's owners (when kept) and then its mode: chown clears the
/// setuid and setgid bits, so the mode comes second. A symlink has no mode.
fn set_owner_and_mode(target: &Path, meta: &std::fs::Metadata, owners: Owners) -> Result<(), BackupError> {
    if owners == Owners::AsOnDisk {
        std::os::unix::fs::lchown(target, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_error("failed to set owner of", target))?;
    }
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_error("failed to set mode of", target))?;
    }
    Ok(())
}

/// Hashes the built archive and moves it to `target`: 0600, fsynced,
/// renamed, and the directory fsynced, so the file is there complete or not
/// at all.
pub(super) fn keep(built: &Path, target: &Path, dir: &Path) -> Result<(Sha256Digest, u64), BackupError> {
    let mut file = std::fs::File::open(built).map_err(io_error("failed to open", built))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_error("failed to read", built))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error("failed to set mode of", built))?;
    file.sync_all().map_err(io_error("failed to fsync", built))?;
    std::fs::rename(built, target).map_err(io_error("failed to rename to", target))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("failed to fsync", dir))?;
    Ok((Sha256Digest::from_hasher(hasher), size))
}

/// What a tool printed, all of it: a stanza with hundreds of conffiles, or
/// a verify's findings, can pass the tail `install::process` keeps.
pub(super) struct Captured {
    pub(super) exit: ProcessExit,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: String,
}

impl Captured {
    pub(super) fn failure(&self, argv: &[OsString], exit: ProcessExit) -> BackupError {
        let program = argv.first().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        BackupError::Tool { program, args: render(&argv[1..]), message: format!("{exit}: {}", self.stderr.trim()) }
    }
}

/// Runs `argv` (no shell, stdin closed) with its output in files under
/// `work`, for at most `timeout`; then kills its process group.
pub(super) fn capture(argv: &[OsString], work: &Path, timeout: Duration) -> Result<Captured, BackupError> {
    use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
    let (out_path, err_path) = (work.join("stdout"), work.join("stderr"));
    let out = std::fs::File::create(&out_path).map_err(io_error("failed to create", &out_path))?;
    let err = std::fs::File::create(&err_path).map_err(io_error("failed to create", &err_path))?;
    let program = argv.first().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut child = std::process::Command::new(argv.first().map(OsString::as_os_str).unwrap_or_default())
        .args(argv.iter().skip(1))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| BackupError::Spawn { program: program.clone(), source })?;
    let started = Instant::now();
    let exit = loop {
        let waited = child.try_wait().map_err(|e| BackupError::Tool {
            program: program.clone(),
            args: render(&argv[1..]),
            message: format!("failed to wait for it: {e}"),
        })?;
        if let Some(status) = waited {
            break status.code().map(ProcessExit::Code).unwrap_or(ProcessExit::Signal(status.signal().unwrap_or(-1)));
        }
        if started.elapsed() >= timeout {
            // SAFETY: kill(2) on the process group we created for a child
            // not yet reaped, so its id cannot have been reused.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            break ProcessExit::TimedOut(timeout);
        }
        std::thread::sleep(POLL);
    };
    let stdout = std::fs::read(&out_path).map_err(io_error("failed to read", &out_path))?;
    let stderr = std::fs::read(&err_path).map_err(io_error("failed to read", &err_path))?;
    Ok(Captured { exit, stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() })
}

/// Files that are not configuration files and whose digest differs, from
/// the lines of `dpkg --verify` (rpm's format) or `rpm --verify`: nine
/// check columns (`?` unchecked, `5` digest differs, or the word
/// `missing`), then a gap (one space for dpkg, two for rpm), the attribute
/// (`c` for a configuration file), a space and the path.
pub(super) fn parse_verify(output: &[u8], gap: usize) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let kind_at = 9 + gap;
    let mut modified = Vec::new();
    for line in output.split(|&b| b == b'\n') {
        let (Some(checks), Some(&kind), Some(path)) = (line.get(..9), line.get(kind_at), line.get(kind_at + 2..))
        else {
            continue;
        };
        if checks.get(2) == Some(&b'5') && kind != b'c' {
            modified.push(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
        }
    }
    modified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        assert!(check_word("package name", "libc6", "+-.").is_ok());
        assert!(check_word("version", "1:2.36-9+deb12u4~bpo", "+-.~:").is_ok());
        for bad in ["", "../x", "a/b", "a_b", "-x", "a b"] {
            assert!(check_word("package name", bad, "+-.").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verify_output_names_changed_files_but_not_conffiles_or_missing_ones() {
        let dpkg = b"??5??????   /usr/lib/x/libpw.so.1\n??5?????? c /etc/pw/conf\n\
missing     /usr/share/doc/x/README\nmissing   c /etc/pw/other\n?????????   /usr/bin/unchecked\n";
        assert_eq!(parse_verify(dpkg, 1), [PathBuf::from("/usr/lib/x/libpw.so.1")]);
        let rpm = b"S.5....T.  c /etc/pw/pw.conf\nS.5....T.    /usr/lib/pw/lib.so\n\
missing     /usr/lib/pw/gone\n.M.......    /usr/bin/pw\n";
        assert_eq!(parse_verify(rpm, 2), [PathBuf::from("/usr/lib/pw/lib.so")]);
    }
}
