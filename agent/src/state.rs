//! The agent's state directory (`/var/lib/patchward-agent` by default): the
//! credential, the pinned engine key, the last good desired state, the step
//! journal, the report outbox and the package cache all live under it.
//!
//! Architecture invariants:
//! - the directory is 0700 and owned by the agent's user, files are 0600: it
//!   holds the device's credential and what root will execute. A directory
//!   that is group- or world-writable, or owned by someone else, is refused,
//!   not repaired: somebody else may already have put files in it;
//! - a file is only ever replaced whole, by [`StateDir::write_atomic`]
//!   (temp file → write → fsync → rename → fsync the directory), so a crash
//!   or power loss leaves the old content or the new, never a mix (G6);
//! - a file that does not parse is an error naming it, never read as empty
//!   (G3: an unreadable state must not turn into "nothing was done");
//! - one agent per directory: [`StateDir::lock_exclusive`] takes a `flock`
//!   on `agent.lock` for the life of the process.
//!
//! The append-only JSON-lines files of the journal and the outbox share
//! [`JsonLines`], which drops a torn last line (a crash mid-append: the line
//! was never acknowledged) and refuses every other damage with file:line.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the agent keeps its state unless told otherwise (`--state`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/patchward-agent";

/// The single-instance lock file, `STATE/agent.lock`.
pub const LOCK_FILE: &str = "agent.lock";

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// What [`StateDir::write_atomic`] calls its temporary files: hidden, and
/// recognisable so that a crash's leftovers can be removed under the lock.
const TEMP_MARKER: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// ENOSPC or EDQUOT: its own case because the agent reports it
    /// differently (T17), and the state on disk is unchanged.
    #[error("{action} {}: no space left on device", path.display())]
    DiskFull { action: &'static str, path: PathBuf },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory is not safe to keep root's state in.
    #[error("refusing state directory {}: {problem}", path.display())]
    Insecure { path: PathBuf, problem: String },
    /// A file that does not parse. `line` is set for JSON-lines files.
    #[error("{}{}: {reason}", path.display(), line.map(|line| format!(":{line}")).unwrap_or_default())]
    Corrupt { path: PathBuf, line: Option<usize>, reason: String },
    /// Another agent holds the state directory.
    #[error(
        "{} is locked by another patchward-agent{}; only one agent may use a state directory",
        path.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked { path: PathBuf, holder: Option<u32> },
    /// A name that is not one plain file name inside the directory.
    #[error("{name:?} is not a file name inside the state directory")]
    InvalidName { name: String },
    /// An append after a failed fsync: what is on disk is unknown until the
    /// file is opened (and so re-read) again.
    #[error("{}: an earlier write failed to reach the disk; reopen it before writing again", path.display())]
    Poisoned { path: PathBuf },
    /// A write through a handle opened read-only (`status`, `history`).
    #[error("{}: opened read-only", path.display())]
    ReadOnly { path: PathBuf },
}

impl StateError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StateError::DiskFull { .. })
    }

    /// The file or directory the error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StateError::DiskFull { path, .. }
            | StateError::Io { path, .. }
            | StateError::Insecure { path, .. }
            | StateError::Corrupt { path, .. }
            | StateError::Locked { path, .. }
            | StateError::Poisoned { path }
            | StateError::ReadOnly { path } => Some(path),
            StateError::InvalidName { .. } => None,
        }
    }
}

/// Wraps an IO error with what was being done to which path, recognising a
/// full disk (ENOSPC) or an exhausted quota (EDQUOT).
pub(crate) fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| {
        let full = matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || source.kind() == io::ErrorKind::StorageFull;
        if full {
            StateError::DiskFull { action, path: path.to_owned() }
        } else {
            StateError::Io { action, path: path.to_owned(), source }
        }
    }
}

/// An opened, checked state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
}

/// The single-instance lock; released when dropped (or when the process
/// dies, however it dies: the kernel drops a `flock` with its last fd).
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    // Held only for the lock it carries.
    _file: File,
}

impl StateLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateDir {
    /// Opens `path`, creating it (and missing parents) 0700. An existing
    /// directory must be owned by this process's effective user and not
    /// group- or world-writable; one that others may merely read is
    /// tightened to 0700 (it may have been made by hand with a umask).
    pub fn open(path: impl Into<PathBuf>) -> Result<StateDir, StateError> {
        let path = path.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&path)
            .map_err(io_error("failed to create state directory", &path))?;
        let metadata = std::fs::metadata(&path).map_err(io_error("failed to inspect state directory", &path))?;
        if !metadata.is_dir() {
            return Err(StateError::Insecure { path, problem: "not a directory".into() });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if metadata.uid() != euid {
            let problem = format!("owned by uid {}, not by this agent's user (uid {euid})", metadata.uid());
            return Err(StateError::Insecure { path, problem });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            let problem = format!(
                "it is group- or world-writable (mode {mode:04o}), so its contents cannot be trusted; \
                 check them, then `chmod 0700 {}`",
                path.display()
            );
            return Err(StateError::Insecure { path, problem });
        }
        if mode & 0o777 != DIR_MODE {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_error("failed to restrict permissions of", &path))?;
        }
        Ok(StateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `STATE/name`, for a plain file name (no separators, not `.`/`..`).
    pub fn file_path(&self, name: &str) -> Result<PathBuf, StateError> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0')
            && !name.contains(TEMP_MARKER);
        if !plain {
            return Err(StateError::InvalidName { name: name.chars().take(80).collect() });
        }
        Ok(self.path.join(name))
    }

    /// Takes the single-instance lock, for the agent's life. A second taker
    /// (another process, or another open of the file in this one: `flock`
    /// locks belong to the open file, not the process) gets
    /// [`StateError::Locked`] with the holder's pid when it is known.
    ///
    /// Under the lock, the temporary files a crash left behind are removed.
    pub fn lock_exclusive(&self) -> Result<StateLock, StateError> {
        let path = self.path.join(LOCK_FILE);
        // No truncation on open: the holder's pid is in there.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_error("failed to open lock file", &path))?;
        // SAFETY: flock on an fd we own; it only reads its arguments.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let source = io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let holder = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse::<u32>().ok());
                return Err(StateError::Locked { path, holder });
            }
            return Err(StateError::Io { action: "failed to lock", path, source });
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io_error("failed to write the pid into", &path))?;
        self.remove_stale_temp_files()?;
        Ok(StateLock { path, _file: file })
    }

    fn remove_stale_temp_files(&self) -> Result<(), StateError> {
        let entries = std::fs::read_dir(&self.path).map_err(io_error("failed to list", &self.path))?;
        for entry in entries {
            let entry = entry.map_err(io_error("failed to list", &self.path))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(TEMP_MARKER) {
                let stale = entry.path();
                match std::fs::remove_file(&stale) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("failed to remove stale temporary file", &stale)(e)),
                }
            }
        }
        Ok(())
    }

    /// Replaces `STATE/name` with `bytes` so that a crash at any point
    /// leaves the old content or the new: a 0600 temporary file in the same
    /// directory, written and fsync'd, renamed over the name, and the
    /// directory fsync'd so the rename itself survives a power loss. On a
    /// failure (a full disk among others) the temporary file is removed and
    /// the old content is untouched.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.file_path(name)?;
        let temp = self.path.join(format!(
            ".{name}{TEMP_MARKER}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)
            .map_err(io_error("failed to create", &temp))?;
        let written = file
            .write_all(bytes)
            .map_err(io_error("failed to write", &temp))
            .and_then(|()| file.sync_all().map_err(io_error("failed to fsync", &temp)));
        drop(file);
        let renamed = written
            .and_then(|()| std::fs::rename(&temp, &path).map_err(io_error("failed to rename into place", &path)));
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        self.sync()
    }

    /// fsync the directory itself: makes renames and new files in it durable.
    pub fn sync(&self) -> Result<(), StateError> {
        File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(io_error("failed to fsync directory", &self.path))
    }

    /// The content of `STATE/name`, or `None` when there is no such file.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.file_path(name)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("failed to read", &path)(e)),
        }
    }

    /// Removes `STATE/name` (durably); `false` when it was not there.
    pub fn remove(&self, name: &str) -> Result<bool, StateError> {
        let path = self.file_path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync().map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("failed to remove", &path)(e)),
        }
    }

    /// `STATE/name` parsed as JSON; `None` when absent, an error naming the
    /// file (and where in it) when it does not parse.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(bytes) = self.read(name)? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StateError::Corrupt {
            path: self.path.join(name),
            line: None,
            reason: format!("not valid JSON for this file: {e}"),
        })
    }

    /// Replaces `STATE/name` with `value` as pretty JSON, atomically.
    pub fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Io {
            action: "failed to encode",
            path: self.path.join(name),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        self.write_atomic(name, &bytes)
    }
}

/// An append-only file of JSON records, one a line, each fsync'd before
/// [`JsonLines::append`] returns.
///
/// A line is written with its newline in one `write` at the end of the
/// file (`O_APPEND`), so a crash leaves at most one incomplete last line:
/// one that was never acknowledged, which opening drops (and truncates
/// away, so the next append starts on a line of its own). A complete line
/// that does not parse is damage of another kind and is refused with
/// file:line.
#[derive(Debug)]
pub(crate) struct JsonLines {
    path: PathBuf,
    /// `None` when opened read-only.
    file: Option<File>,
    /// The length of the complete lines: where a failed append is cut back to.
    len: u64,
    /// Set when an fsync failed: the kernel may have dropped the dirty pages,
    /// so nothing about the file's content is certain until it is re-read.
    poisoned: bool,
}

/// What [`JsonLines::open`] found.
pub(crate) struct Opened<T> {
    pub log: JsonLines,
    /// Each record with its 1-based line number.
    pub records: Vec<(usize, T)>,
    /// The bytes of an incomplete last line that were dropped (0: none).
    pub torn_tail_bytes: u64,
}

impl JsonLines {
    /// Opens `STATE/name` for appending (creating it 0600), reading every
    /// record and cutting a torn last line off the file.
    pub fn open<T: DeserializeOwned>(state: &StateDir, name: &str) -> Result<Opened<T>, StateError> {
        let path = state.file_path(name)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_error("failed to open", &path))?;
        // The file may be new: make its directory entry durable.
        state.sync()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error("failed to read", &path))?;
        let (records, complete) = parse_lines(&path, &bytes)?;
        let torn_tail_bytes = (bytes.len() - complete) as u64;
        if torn_tail_bytes > 0 {
            file.set_len(complete as u64).map_err(io_error("failed to cut the torn last line off", &path))?;
            file.sync_all().map_err(io_error("failed to fsync", &path))?;
        }
        Ok(Opened {
            log: JsonLines { path, file: Some(file), len: complete as u64, poisoned: false },
            records,
            torn_tail_bytes,
        })
    }

    /// Reads `STATE/name` without changing it (while an agent may be
    /// appending): a torn last line is skipped, not cut off. An absent file
    /// reads as no records.
    pub fn open_read_only<T: DeserializeOwned>(state: &StateDir, name: &str) -> Result<Opened<T>, StateError> {
        let path = state.file_path(name)?;
        let bytes = state.read(name)?.unwrap_or_default();
        let (records, complete) = parse_lines(&path, &bytes)?;
        Ok(Opened {
            log: JsonLines { path, file: None, len: complete as u64, poisoned: false },
            records,
            torn_tail_bytes: (bytes.len() - complete) as u64,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it. On an error the record is not in
    /// the file: a partial write is cut back off.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<(), StateError> {
        let line = encode_line(&self.path, record)?;
        if self.poisoned {
            return Err(StateError::Poisoned { path: self.path.clone() });
        }
        let Some(file) = self.file.as_mut() else { return Err(StateError::ReadOnly { path: self.path.clone() }) };
        if let Err(e) = file.write_all(&line) {
            // A short write (a full disk) would leave half a line that the
            // next append would glue onto: cut it off, or refuse to go on.
            if file.set_len(self.len).is_err() {
                self.poisoned = true;
            }
            return Err(io_error("failed to append to", &self.path)(e));
        }
        if let Err(e) = file.sync_data() {
            self.poisoned = true;
            return Err(io_error("failed to fsync", &self.path)(e));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Replaces the whole file with `records` through
    /// [`StateDir::write_atomic`], then appends go to the new file.
    pub fn replace<'a, T: Serialize + 'a>(
        &mut self,
        state: &StateDir,
        name: &str,
        records: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), StateError> {
        if self.file.is_none() {
            return Err(StateError::ReadOnly { path: self.path.clone() });
        }
        let mut bytes = Vec::new();
        for record in records {
            bytes.extend(encode_line(&self.path, record)?);
        }
        state.write_atomic(name, &bytes)?;
        // The old handle points at the replaced file; appends through it
        // would be lost.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io_error("failed to reopen", &self.path))?;
        self.file = Some(file);
        self.len = bytes.len() as u64;
        self.poisoned = false;
        Ok(())
    }

    /// Empties the file durably (after its records went into a snapshot).
    pub fn clear(&mut self) -> Result<(), StateError> {
        let Some(file) = self.file.as_mut() else { return Err(StateError::ReadOnly { path: self.path.clone() }) };
        file.set_len(0).map_err(io_error("failed to truncate", &self.path))?;
        if let Err(e) = file.sync_all() {
            self.poisoned = true;
            return Err(io_error("failed to fsync", &self.path)(e));
        }
        self.len = 0;
        self.poisoned = false;
        Ok(())
    }
}

fn encode_line<T: Serialize>(path: &Path, record: &T) -> Result<Vec<u8>, StateError> {
    let mut line = serde_json::to_vec(record).map_err(|e| StateError::Io {
        action: "failed to encode a record for",
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    line.push(b'\n');
    Ok(line)
}

/// Every complete line parsed, and the length of the complete lines.
fn parse_lines<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<(Vec<(usize, T)>, usize), StateError> {
    let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else { return Ok((Vec::new(), 0)) };
    let mut records = Vec::new();
    for (index, line) in bytes[..last_newline].split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        if line.is_empty() {
            return Err(StateError::Corrupt { path: path.to_owned(), line: Some(number), reason: "empty line".into() });
        }
        let record = serde_json::from_slice(line).map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            line: Some(number),
            reason: format!("not a valid record: {e}"),
        })?;
        records.push((number, record));
    }
    Ok((records, last_newline + 1))
}
