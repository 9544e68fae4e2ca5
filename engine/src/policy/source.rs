//! Where policy comes from: a folder tree, or a commit read straight from a
//! git object database (no checkout). Both yield the same list of files, so
//! everything after this module cannot tell them apart.

use std::fs;
use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, Pos};

/// Bounds checked before any file is parsed (RELIABILITY T5).
#[derive(Clone, Copy, Debug)]
pub struct SourceLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
    /// Folder depth, so a deep tree cannot exhaust the walk.
    pub max_depth: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits { max_file_bytes: 1 << 20, max_total_bytes: 64 << 20, max_files: 10_000, max_depth: 32 }
    }
}

/// A policy repository as the user named it on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// A folder read as it is (a git work tree included).
    Folder(PathBuf),
    /// A revision of a git repository: `REPO@REV`.
    GitRevision { repo: PathBuf, rev: String },
}

impl PolicySource {
    /// `PATH` is a folder; `REPO@REV` a revision, unless a folder of that
    /// whole name exists.
    pub fn parse(arg: &str) -> PolicySource {
        if !Path::new(arg).exists()
            && let Some((repo, rev)) = arg.rsplit_once('@')
            && !repo.is_empty()
            && !rev.is_empty()
        {
            return PolicySource::GitRevision { repo: PathBuf::from(repo), rev: rev.to_owned() };
        }
        PolicySource::Folder(PathBuf::from(arg))
    }

    pub fn describe(&self) -> String {
        match self {
            PolicySource::Folder(path) => path.display().to_string(),
            PolicySource::GitRevision { repo, rev } => format!("{}@{rev}", repo.display()),
        }
    }
}

/// One YAML file of the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The path diagnostics print: the folder as the user wrote it joined with
    /// the file's path inside it (`policies/rules/critical.yaml`).
    pub display_path: String,
    /// The file's path inside the repository, `/`-separated.
    pub relative_path: String,
    pub bytes: Vec<u8>,
}

/// The files of a source, plus what was refused before parsing.
#[derive(Debug, Default)]
pub struct SourceFiles {
    pub files: Vec<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
    /// The commit read, for a git revision.
    pub commit: Option<String>,
}

/// The source could not be read at all: `validate` exits 2.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("policy path {0} does not exist")]
    Missing(PathBuf),
    #[error("failed to read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open git repository {path}")]
    GitOpen {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("revision `{rev}` not found in {repo}")]
    GitRevision {
        repo: PathBuf,
        rev: String,
        #[source]
        source: git2::Error,
    },
    #[error("failed to read {what} from git repository {repo}")]
    GitRead {
        repo: PathBuf,
        what: String,
        #[source]
        source: git2::Error,
    },
}

fn is_policy_file(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Hidden folders (`.git`, `.github`, editor state) hold no policy: a
/// workflow file is YAML too, and must not be read as a document.
fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn join_display(root: &str, relative: &str) -> String {
    if root == "." || root.is_empty() {
        relative.to_owned()
    } else {
        format!("{}/{relative}", root.trim_end_matches('/'))
    }
}

/// Budget shared by both readers, so both refuse the same things the same way.
struct Admission<'a> {
    limits: &'a SourceLimits,
    root_display: String,
    total: u64,
    /// Set once the file count is reached: one diagnostic says so, and the
    /// walk stops reading.
    full: bool,
    out: SourceFiles,
}

impl Admission<'_> {
    /// Decides whether a file of `size` bytes may be read.
    fn admit(&mut self, relative: &str, size: u64) -> bool {
        let display = join_display(&self.root_display, relative);
        if self.full {
            return false;
        }
        if self.out.files.len() >= self.limits.max_files {
            self.full = true;
            self.refuse(
                display,
                format!(
                    "too many policy files: the limit is {}; this file and those after it are not read",
                    self.limits.max_files
                ),
            );
            return false;
        }
        if size > self.limits.max_file_bytes {
            self.refuse(
                display,
                format!("file is {size} bytes; a policy file may be at most {} bytes", self.limits.max_file_bytes),
            );
            return false;
        }
        if self.total + size > self.limits.max_total_bytes {
            self.refuse(
                display,
                format!("policy files add up to more than {} bytes; this one is not read", self.limits.max_total_bytes),
            );
            return false;
        }
        self.total += size;
        true
    }

    fn refuse(&mut self, display: String, message: String) {
        self.out.diagnostics.push(Diagnostic::error(display, Pos::new(1, 1), message));
    }

    fn accept(&mut self, relative: String, bytes: Vec<u8>) {
        self.out.files.push(SourceFile {
            display_path: join_display(&self.root_display, &relative),
            relative_path: relative,
            bytes,
        });
    }
}

/// Reads every `*.yaml` and `*.yml` of the source, in path order.
pub fn read_source(source: &PolicySource, limits: &SourceLimits) -> Result<SourceFiles, SourceError> {
    let mut admission = Admission {
        limits,
        root_display: source_root_display(source),
        total: 0,
        full: false,
        out: SourceFiles::default(),
    };
    match source {
        PolicySource::Folder(root) => read_folder(root, &mut admission)?,
        PolicySource::GitRevision { repo, rev } => read_git(repo, rev, &mut admission)?,
    }
    admission.out.files.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    Ok(admission.out)
}

fn source_root_display(source: &PolicySource) -> String {
    match source {
        PolicySource::Folder(path) => path.display().to_string(),
        // Inside a repository, paths are the repository's own, as a pull
        // request shows them.
        PolicySource::GitRevision { .. } => String::new(),
    }
}

fn read_folder(root: &Path, admission: &mut Admission) -> Result<(), SourceError> {
    let meta = fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::Missing(root.to_owned()),
        _ => SourceError::Io { path: root.to_owned(), source: e },
    })?;
    if meta.is_file() {
        // A single file names itself.
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        admission.root_display = root.parent().map(|p| p.display().to_string()).unwrap_or_default();
        if admission.admit(&name, meta.len()) {
            let bytes = fs::read(root).map_err(|e| SourceError::Io { path: root.to_owned(), source: e })?;
            admission.accept(name, bytes);
        }
        return Ok(());
    }
    walk_folder(root, "", 0, admission)
}

fn walk_folder(dir: &Path, prefix: &str, depth: usize, admission: &mut Admission) -> Result<(), SourceError> {
    if depth > admission.limits.max_depth {
        let display = join_display(&admission.root_display, prefix);
        admission.refuse(display, format!("folders nest deeper than {}; not read", admission.limits.max_depth));
        return Ok(());
    }
    let io = |e| SourceError::Io { path: dir.to_owned(), source: e };
    let mut entries = fs::read_dir(dir).map_err(io)?.collect::<Result<Vec<_>, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_hidden(&name) {
            continue;
        }
        let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        // Symlinks are skipped, as git stores them as links, not content.
        let file_type = entry.file_type().map_err(|e| SourceError::Io { path: entry.path(), source: e })?;
        if file_type.is_dir() {
            walk_folder(&entry.path(), &relative, depth + 1, admission)?;
        } else if file_type.is_file() && is_policy_file(&name) {
            let size = entry.metadata().map_err(|e| SourceError::Io { path: entry.path(), source: e })?.len();
            if admission.admit(&relative, size) {
                let bytes = fs::read(entry.path()).map_err(|e| SourceError::Io { path: entry.path(), source: e })?;
                admission.accept(relative, bytes);
            }
        }
    }
    Ok(())
}

fn read_git(repo_path: &Path, rev: &str, admission: &mut Admission) -> Result<(), SourceError> {
    if !repo_path.exists() {
        return Err(SourceError::Missing(repo_path.to_owned()));
    }
    let repo = git2::Repository::open(repo_path)
        .map_err(|e| SourceError::GitOpen { path: repo_path.to_owned(), source: e })?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|object| object.peel_to_commit())
        .map_err(|e| SourceError::GitRevision { repo: repo_path.to_owned(), rev: rev.to_owned(), source: e })?;
    admission.out.commit = Some(commit.id().to_string());
    let git_err = |what: String| {
        let repo = repo_path.to_owned();
        move |source| SourceError::GitRead { repo, what, source }
    };
    let tree = commit.tree().map_err(git_err(format!("the tree of {}", commit.id())))?;
    let odb = repo.odb().map_err(git_err("the object database".into()))?;
    walk_tree(&repo, &odb, &tree, "", 0, admission, repo_path)
}

fn walk_tree(
    repo: &git2::Repository,
    odb: &git2::Odb,
    tree: &git2::Tree,
    prefix: &str,
    depth: usize,
    admission: &mut Admission,
    repo_path: &Path,
) -> Result<(), SourceError> {
    if depth > admission.limits.max_depth {
        let display = join_display(&admission.root_display, prefix);
        admission.refuse(display, format!("folders nest deeper than {}; not read", admission.limits.max_depth));
        return Ok(());
    }
    let read_err = |what: String, source| SourceError::GitRead { repo: repo_path.to_owned(), what, source };
    for entry in tree.iter() {
        let Ok(name) = entry.name().map(str::to_owned) else { continue };
        if is_hidden(&name) {
            continue;
        }
        let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        match entry.kind() {
            Some(git2::ObjectType::Tree) => {
                let subtree = repo.find_tree(entry.id()).map_err(|e| read_err(relative.clone(), e))?;
                walk_tree(repo, odb, &subtree, &relative, depth + 1, admission, repo_path)?;
            }
            // Mode 120000 is a symlink: its blob is the target, not content.
            Some(git2::ObjectType::Blob) if entry.filemode() != 0o120000 && is_policy_file(&name) => {
                // The header gives the size without inflating the object.
                let (size, _) = odb.read_header(entry.id()).map_err(|e| read_err(relative.clone(), e))?;
                if admission.admit(&relative, size as u64) {
                    let blob = repo.find_blob(entry.id()).map_err(|e| read_err(relative.clone(), e))?;
                    admission.accept(relative, blob.content().to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "a: 1\n").unwrap();
        }
        dir
    }

    #[test]
    fn reads_yaml_files_in_path_order_and_skips_the_rest() {
        let dir = folder_with(&["b.yaml", "a/c.yml", "a/notes.txt", ".github/w.yml", "z.json"]);
        let files = read_source(&PolicySource::Folder(dir.path().into()), &SourceLimits::default()).unwrap();
        let paths: Vec<&str> = files.files.iter().map(|f| f.relative_path.as_str()).collect();
        assert_eq!(paths, ["a/c.yml", "b.yaml"]);
        assert!(files.diagnostics.is_empty());
    }

    #[test]
    fn the_file_count_limit_stops_the_walk_with_one_diagnostic() {
        let dir = folder_with(&["1.yaml", "2.yaml", "3.yaml", "4.yaml", "5.yaml"]);
        let limits = SourceLimits { max_files: 2, ..SourceLimits::default() };
        let files = read_source(&PolicySource::Folder(dir.path().into()), &limits).unwrap();
        assert_eq!(files.files.len(), 2);
        assert_eq!(files.diagnostics.len(), 1, "{:?}", files.diagnostics);
        assert!(files.diagnostics[0].message.starts_with("too many policy files"));
    }

    #[test]
    fn deep_folders_and_large_totals_are_refused() {
        let dir = folder_with(&["a/b/c/d/deep.yaml", "top.yaml"]);
        let limits = SourceLimits { max_depth: 2, ..SourceLimits::default() };
        let files = read_source(&PolicySource::Folder(dir.path().into()), &limits).unwrap();
        assert_eq!(files.files.len(), 1);
        assert!(files.diagnostics[0].message.contains("nest deeper than 2"), "{:?}", files.diagnostics);

        let limits = SourceLimits { max_total_bytes: 7, ..SourceLimits::default() };
        let files = read_source(&PolicySource::Folder(dir.path().into()), &limits).unwrap();
        assert_eq!(files.files.len(), 1, "only the first 5-byte file fits in 7 bytes");
        assert!(files.diagnostics[0].message.contains("add up to more than 7 bytes"));
    }

    #[test]
    fn names_parse_as_folders_unless_they_name_a_revision() {
        assert_eq!(PolicySource::parse("policies"), PolicySource::Folder("policies".into()));
        assert_eq!(
            PolicySource::parse("/srv/repo@main"),
            PolicySource::GitRevision { repo: "/srv/repo".into(), rev: "main".into() }
        );
        let dir = folder_with(&["x@y/a.yaml"]);
        let with_at = dir.path().join("x@y").to_string_lossy().into_owned();
        assert_eq!(PolicySource::parse(&with_at), PolicySource::Folder(with_at.clone().into()));
    }
}
