//! The local mirror of the policy repository: a bare git repository in the
//! engine's data folder, fetched into with git2. The policy is then read
//! from it by commit (`policy::source`), never from a work tree.

use std::path::{Path, PathBuf};

/// The fetched tip of the followed branch.
const TIP: &str = "refs/patchward/tip";
/// The commit in force, kept reachable whatever the remote rewrites.
const APPLIED: &str = "refs/patchward/applied";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("failed to open the policy mirror at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("failed to fetch branch `{branch}` of {url}")]
    Fetch {
        url: String,
        branch: String,
        #[source]
        source: git2::Error,
    },
    #[error("failed to read commit {commit} in the policy mirror")]
    Read {
        commit: String,
        #[source]
        source: git2::Error,
    },
}

/// Who made a commit and why: what the audit log records of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub commit: String,
    pub author: String,
    pub committer: String,
    pub message: String,
    pub time: jiff::Timestamp,
}

pub struct Mirror {
    path: PathBuf,
    repo: git2::Repository,
    credentials: super::transport::FetchCredentials,
}

/// Bounds every network fetch (T2: a server that accepts and never answers
/// must not stall the reconciler): `connect` to open the connection, `read`
/// for any one read from it.
///
/// libgit2 keeps these in process-wide settings. Call this before the first
/// fetch (serve does, at start); calls are serialized here, and libgit2 only
/// reads the values when it opens a connection.
pub fn set_network_timeouts(connect: std::time::Duration, read: std::time::Duration) {
    static SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SETTING.lock().unwrap_or_else(|p| p.into_inner());
    let millis = |d: std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: the options are plain integers in libgit2's global settings;
    // the lock above keeps our writes from racing each other, and the
    // values are written before the fetches that read them start.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(millis(read));
    }
}

impl Mirror {
    /// Opens the mirror at `path`, creating an empty bare repository there
    /// the first time.
    pub fn open(path: &Path) -> Result<Mirror, MirrorError> {
        let open = |source| MirrorError::Open { path: path.to_owned(), source };
        let repo = if path.join("HEAD").exists() {
            git2::Repository::open_bare(path).map_err(open)?
        } else {
            git2::Repository::init_bare(path).map_err(open)?
        };
        Ok(Mirror { path: path.to_owned(), repo, credentials: Default::default() })
    }

    /// Fetches authenticate with these (and check SSH host keys against them).
    pub fn with_credentials(self, credentials: super::transport::FetchCredentials) -> Mirror {
        Mirror { credentials, ..self }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn repository(&self) -> &git2::Repository {
        &self.repo
    }

    /// Fetches `branch` of `url` (a path or a `file://` URL) and returns the
    /// commit at its tip. History the remote rewrote is fetched too; whether
    /// to follow it is [`super::decide`]'s question.
    pub fn fetch(&self, url: &str, branch: &str) -> Result<String, MirrorError> {
        let failed =
            |source| MirrorError::Fetch { url: super::transport::redact_url(url), branch: branch.to_owned(), source };
        let mut remote = self.repo.remote_anonymous(url).map_err(failed)?;
        let mut options = git2::FetchOptions::new();
        options.download_tags(git2::AutotagOption::None);
        options.remote_callbacks(super::transport::callbacks(&self.credentials, url));
        let refspec = format!("+refs/heads/{branch}:{TIP}");
        remote.fetch(&[refspec.as_str()], Some(&mut options), None).map_err(failed)?;
        let tip = self.repo.refname_to_id(TIP).map_err(failed)?;
        Ok(tip.to_string())
    }

    fn oid(&self, commit: &str) -> Result<git2::Oid, MirrorError> {
        git2::Oid::from_str(commit).map_err(|source| MirrorError::Read { commit: commit.to_owned(), source })
    }

    /// Whether `commit` is `ancestor` or descends from it.
    pub fn descends(&self, commit: &str, ancestor: &str) -> Result<bool, MirrorError> {
        let (c, a) = (self.oid(commit)?, self.oid(ancestor)?);
        if c == a {
            return Ok(true);
        }
        self.repo.graph_descendant_of(c, a).map_err(|source| MirrorError::Read { commit: commit.to_owned(), source })
    }

    /// Keeps `commit` reachable in the mirror as the one in force.
    pub fn pin_applied(&self, commit: &str) -> Result<(), MirrorError> {
        let oid = self.oid(commit)?;
        self.repo
            .reference(APPLIED, oid, true, "patchward: applied")
            .map(|_| ())
            .map_err(|source| MirrorError::Read { commit: commit.to_owned(), source })
    }

    pub fn commit_info(&self, commit: &str) -> Result<CommitInfo, MirrorError> {
        let read = |source| MirrorError::Read { commit: commit.to_owned(), source };
        let found = self.repo.find_commit(self.oid(commit)?).map_err(read)?;
        let person = |s: git2::Signature| format!("{} <{}>", s.name().unwrap_or("?"), s.email().unwrap_or("?"));
        Ok(CommitInfo {
            commit: commit.to_owned(),
            author: person(found.author()),
            committer: person(found.committer()),
            message: found.message().unwrap_or("").trim_end().to_owned(),
            time: jiff::Timestamp::from_second(found.time().seconds()).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        })
    }
}
