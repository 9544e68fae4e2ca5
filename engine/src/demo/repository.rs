//! The demo's policy repository: a git repository holding a copy of the
//! shipped example policy (`policies/`, built into the binary so an
//! installed `patchward` has it too), pointed at the demo's loopback
//! advisories (an OSV source) and mirror; the commit that approves the
//! demo's patch, and its revert.
//!
//! Commits are made with git2, as the engine reads them: the demo needs no
//! `git` binary and is not bothered by the user's git configuration (a
//! signing requirement, hooks).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::PLATFORM;

/// The shipped example policy, file by file, copied as it is.
pub const SHIPPED: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../policies/README.md")),
    ("scopes.yaml", include_str!("../../../policies/scopes.yaml")),
    ("windows.yaml", include_str!("../../../policies/windows.yaml")),
    ("deployment-policies.yaml", include_str!("../../../policies/deployment-policies.yaml")),
    ("rules/severity-playbook.yaml", include_str!("../../../policies/rules/severity-playbook.yaml")),
    ("approvals/kb5032190-urgent.yaml", include_str!("../../../policies/approvals/kb5032190-urgent.yaml")),
    ("exclusions/finance-keeps-java8.yaml", include_str!("../../../policies/exclusions/finance-keeps-java8.yaml")),
    ("software/7zip.yaml", include_str!("../../../policies/software/7zip.yaml")),
    ("settings.yaml", include_str!("../../../policies/settings.yaml")),
];

/// Shipped files the demo writes its own version of: the advisories and
/// the mirrors are the demo's.
pub const REPLACED: &[&str] = &["catalog.yaml", "locations.yaml"];

/// The name of the demo's deployment policy.
pub const DEMO_POLICY: &str = "demo-at-once";

/// Where the demo's vendor is.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The OSV record (signed: URL + `.sig`).
    pub feed_url: String,
    /// `ed25519:BASE64`
    pub feed_key: String,
    pub mirror_url: String,
}

/// The files of the first commit: the shipped policy with the demo's
/// catalog, locations and deployment policy.
pub fn initial_files(endpoints: &Endpoints) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = SHIPPED.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    files.push((
        "catalog.yaml".into(),
        format!(
            "# The demo vendor's security advisories, on loopback: OSV records as\n\
             # Debian publishes them (the source package and the version that fixes\n\
             # it; no severity, no download URL: devices fetch the fix from their own\n\
             # signed apt repository). Like the shipped catalog.yaml, the feed is\n\
             # signed (URL + \".sig\"); the key was made for this run.\n\
             apiVersion: patchward.dev/v1\n\
             kind: CatalogSource\n\
             metadata:\n  name: vendor\n  description: the demo vendor's Debian-style security advisories\n\
             spec:\n  url: {feed}\n  format: osv\n  interval: 24h\n  publicKey: \"{key}\"\n  retries: 0\n\
             \x20 coverage:\n    platforms: [{PLATFORM}]\n    categories: [security, third-party]\n",
            feed = endpoints.feed_url,
            key = endpoints.feed_key,
        ),
    ));
    files.push((
        "locations.yaml".into(),
        format!(
            "# One installation point for every address: the demo's mirror, on loopback.\n\
             # Agents fetch each package by sha256 from it first, then from the URL\n\
             # the signed apt index names.\n\
             apiVersion: patchward.dev/v1\n\
             kind: Location\n\
             metadata:\n  name: demo-office\n  description: the demo's office mirror\n\
             spec:\n  networks: [0.0.0.0/0, \"::/0\"]\n  mirrors: [\"{mirror}\"]\n",
            mirror = endpoints.mirror_url,
        ),
    ));
    files.push((
        "rules/review-unrated.yaml".into(),
        "# Advisories that carry no severity (Debian's OSV records do not) wait in\n\
         # the review queue, where an admin sees them and the YAML that approves\n\
         # them, instead of waiting unseen. A rule of higher priority decides.\n\
         apiVersion: patchward.dev/v1\n\
         kind: ApprovalRule\n\
         metadata:\n  name: review-unrated\n  description: advisories without a severity, for an admin to decide\n\
         spec:\n  priority: 10\n  match: 'patch.severity == \"unrated\"'\n  action: review\n"
            .into(),
    ));
    files.push((
        "demo.yaml".into(),
        format!(
            "# The demo's deployment policy: install at once, any time. The shipped\n\
             # policies wait for maintenance windows, idle machines or users, which a\n\
             # tour on the wall clock cannot wait for.\n\
             apiVersion: patchward.dev/v1\n\
             kind: DeploymentPolicy\n\
             metadata:\n  name: {DEMO_POLICY}\n  description: silent install at once, no windows, never restart\n\
             spec:\n  mode: immediate\n  reboot: never\n"
        ),
    ));
    files
}

/// The approval the demo commits: a rule naming `patch`, which the
/// playbook's rules (they go by severity) leave undecided, to the pilot
/// ring at once and to production `production_after` later, once every one
/// of the `pilots` succeeded. Reverting it retracts the patch.
pub fn approval_file(patch: &str, pilots: usize, production_after: patchward_api::Duration) -> (String, String) {
    let text = format!(
        "# Approves {patch}, which no rule of the severity playbook decides (a\n\
         # Debian advisory carries no severity): the pilot ring at once, production\n\
         # {production_after} later and only if all {pilots} pilot device(s) installed it without\n\
         # a failure. Reverting this commit retracts it: the devices go back.\n\
         apiVersion: patchward.dev/v1\n\
         kind: ApprovalRule\n\
         metadata:\n  name: fast-track-{name}\n  description: reviewed and approved {patch}\n\
         spec:\n  priority: 90\n  match: 'patch.id == \"{patch}\"'\n  action: approve\n  stages:\n\
         \x20   - {{scope: pilot, after: 0s, policy: {DEMO_POLICY}}}\n\
         \x20   - scope: production\n      after: {production_after}\n      policy: {DEMO_POLICY}\n\
         \x20     gate: {{minSucceeded: {pilots}, maxFailureRate: 0}}\n",
        name = patch.to_lowercase(),
    );
    (format!("rules/fast-track-{}.yaml", patch.to_lowercase()), text)
}

/// A git repository on branch `main` in a folder of its own.
#[derive(Clone, Debug)]
pub struct PolicyRepository {
    path: PathBuf,
}

impl PolicyRepository {
    /// Makes `path` a repository holding `files`, committed.
    pub fn create(
        path: &Path,
        files: &[(String, String)],
        message: &str,
    ) -> anyhow::Result<(PolicyRepository, String)> {
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        git2::Repository::init_opts(path, &options)
            .with_context(|| format!("failed to make a git repository in {}", path.display()))?;
        let repository = PolicyRepository { path: path.to_owned() };
        let commit = repository.commit(files, message)?;
        Ok((repository, commit))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `files` into the work tree and commits everything on `main`;
    /// returns the commit's id.
    pub fn commit(&self, files: &[(String, String)], message: &str) -> anyhow::Result<String> {
        for (name, text) in files {
            let target = self.path.join(name);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
            }
            std::fs::write(&target, text).with_context(|| format!("failed to write {}", target.display()))?;
        }
        let repo = git2::Repository::open(&self.path)
            .with_context(|| format!("failed to open the repository {}", self.path.display()))?;
        let mut index = repo.index().context("failed to read the repository's index")?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).context("failed to stage the policy files")?;
        index.write().context("failed to write the repository's index")?;
        let tree = repo.find_tree(index.write_tree().context("failed to write the tree")?)?;
        let signature = git2::Signature::now("patchward demo", "demo@patchward.invalid")
            .context("failed to make the commit's signature")?;
        let parent = match repo.head() {
            Ok(head) => Some(head.peel_to_commit().context("failed to read the branch's tip")?),
            Err(_) => None,
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &signature, &signature, message, &tree, &parents)
            .with_context(|| format!("failed to commit to {}", self.path.display()))?;
        Ok(id.to_string())
    }

    /// Reverts `commit` on `main` as `git revert` does (the work tree and
    /// the index follow), committing "Revert "SUBJECT"". Returns the new
    /// commit's id and its message.
    pub fn revert(&self, commit: &str) -> anyhow::Result<(String, String)> {
        let repo = git2::Repository::open(&self.path)
            .with_context(|| format!("failed to open the repository {}", self.path.display()))?;
        let id = git2::Oid::from_str(commit).with_context(|| format!("{commit} is not a commit id"))?;
        let target = repo.find_commit(id).with_context(|| format!("no commit {commit} in {}", self.path.display()))?;
        repo.revert(&target, None).with_context(|| format!("failed to revert {commit} in {}", self.path.display()))?;
        let mut index = repo.index().context("failed to read the repository's index")?;
        if index.has_conflicts() {
            bail!("reverting {commit} in {} conflicts", self.path.display());
        }
        let tree = repo.find_tree(index.write_tree().context("failed to write the tree")?)?;
        let head = repo.head().and_then(|h| h.peel_to_commit()).context("failed to read the branch's tip")?;
        let signature = git2::Signature::now("patchward demo", "demo@patchward.invalid")
            .context("failed to make the commit's signature")?;
        let subject = target.summary().ok().flatten().unwrap_or("the approval");
        let message = format!("Revert \"{subject}\"\n\nThis reverts commit {commit}.\n");
        let id = repo
            .commit(Some("HEAD"), &signature, &signature, &message, &tree, &[&head])
            .with_context(|| format!("failed to commit the revert to {}", self.path.display()))?;
        repo.cleanup_state().context("failed to end the revert")?;
        Ok((id.to_string(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Severity;
    use crate::policy::{PolicyLimits, PolicySource, load_policy};

    fn endpoints() -> Endpoints {
        Endpoints {
            feed_url: "http://127.0.0.1:1/osv/DSA-DEMO-0001.json".into(),
            feed_key: "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into(),
            mirror_url: "http://127.0.0.1:1/mirror".into(),
        }
    }

    fn errors(source: &PolicySource) -> Vec<String> {
        let load = load_policy(source, &PolicyLimits::default()).unwrap();
        let errors: Vec<String> = load
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{}:{}:{}: {}", d.path, d.line, d.col, d.message))
            .collect();
        assert_eq!(load.policy.is_some(), errors.is_empty());
        errors
    }

    #[test]
    fn the_copy_covers_every_shipped_file() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut found = Vec::new();
        let mut folders = vec![shipped.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    found.push(path.strip_prefix(&shipped).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let mut known: Vec<String> = SHIPPED.iter().map(|(p, _)| p.to_string()).collect();
        known.extend(REPLACED.iter().map(|p| p.to_string()));
        found.sort();
        known.sort();
        assert_eq!(found, known, "a file of policies/ is neither copied nor replaced by the demo");
    }

    #[test]
    fn both_commits_are_valid_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policies");
        let (repository, first) = PolicyRepository::create(&path, &initial_files(&endpoints()), "first").unwrap();
        assert_eq!(errors(&PolicySource::GitRevision { repo: path.clone(), rev: first.clone() }), Vec::<String>::new());
        let approval = approval_file("PW-DEMO-0001", 2, "1m".parse().unwrap());
        let second = repository.commit(&[approval], "approve").unwrap();
        assert_ne!(first, second);
        assert_eq!(
            errors(&PolicySource::GitRevision { repo: path.clone(), rev: second.clone() }),
            Vec::<String>::new()
        );
        let rule = std::fs::read_to_string(path.join("rules/fast-track-pw-demo-0001.yaml")).unwrap();
        assert!(rule.contains("minSucceeded: 2"), "{rule}");
        // The revert: valid, the approval gone from the commit and the work tree.
        let (third, message) = repository.revert(&second).unwrap();
        assert!(message.starts_with("Revert \"approve\"\n\nThis reverts commit "), "{message}");
        assert_eq!(errors(&PolicySource::GitRevision { repo: path.clone(), rev: third.clone() }), Vec::<String>::new());
        let repo = git2::Repository::open(&path).unwrap();
        let tree = repo.find_commit(git2::Oid::from_str(&third).unwrap()).unwrap().tree().unwrap();
        assert!(tree.get_path(Path::new("rules/fast-track-pw-demo-0001.yaml")).is_err());
        assert!(tree.get_path(Path::new("catalog.yaml")).is_ok());
        assert!(!path.join("rules/fast-track-pw-demo-0001.yaml").exists());
        assert_eq!(repo.state(), git2::RepositoryState::Clean);
    }
}
