//! The demo's policy repository: a git repository holding a copy of the
//! shipped example policy (`policies/`, built into the binary so an
//! installed `patchward` has it too), pointed at the demo's loopback feed
//! and mirror, and the commit that approves the demo's patch.
//!
//! Commits are made with git2, as the engine reads them: the demo needs no
//! `git` binary and is not bothered by the user's git configuration (a
//! signing requirement, hooks).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

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
];

/// Shipped files the demo writes its own version of: the feed and the
/// mirrors are the demo's, and so is the download setting.
pub const REPLACED: &[&str] = &["catalog.yaml", "locations.yaml", "settings.yaml"];

/// The name of the demo's deployment policy.
pub const DEMO_POLICY: &str = "demo-at-once";

/// Where the demo's vendor is.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub feed_url: String,
    /// `ed25519:BASE64`
    pub feed_key: String,
    pub mirror_url: String,
}

/// The files of the first commit: the shipped policy with the demo's
/// catalog, locations, settings and deployment policy.
pub fn initial_files(endpoints: &Endpoints) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = SHIPPED.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    files.push((
        "catalog.yaml".into(),
        format!(
            "# The demo's vendor feed, on loopback. Like the shipped catalog.yaml, the\n\
             # feed is signed (URL + \".sig\"); the key was made for this run.\n\
             apiVersion: patchward.dev/v1\n\
             kind: CatalogSource\n\
             metadata:\n  name: vendor\n  description: the demo's signed patch feed\n\
             spec:\n  url: {feed}\n  format: patchward\n  interval: 24h\n  publicKey: \"{key}\"\n  retries: 0\n\
             \x20 coverage:\n    platforms: [debian-12]\n    categories: [security, third-party]\n",
            feed = endpoints.feed_url,
            key = endpoints.feed_key,
        ),
    ));
    files.push((
        "locations.yaml".into(),
        format!(
            "# One installation point for every address: the demo's mirror, on loopback.\n\
             # A device whose address the agent cannot read has no Location; it\n\
             # downloads from the engine.\n\
             apiVersion: patchward.dev/v1\n\
             kind: Location\n\
             metadata:\n  name: demo-office\n  description: the demo's office mirror\n\
             spec:\n  networks: [0.0.0.0/0, \"::/0\"]\n  mirrors: [\"{mirror}\"]\n",
            mirror = endpoints.mirror_url,
        ),
    ));
    files.push((
        "settings.yaml".into(),
        "# As the shipped settings.yaml, except that the engine fetches every active\n\
         # patch ahead: the demo's package is then in the engine before any agent\n\
         # is told to install it.\n\
         apiVersion: patchward.dev/v1\n\
         kind: Settings\n\
         metadata:\n  name: settings\n\
         spec:\n  retention:\n    obsoleteMetadataDays: 90\n    unusedCacheDays: 30\n  download: all-not-installed\n"
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

/// The approval the demo commits: a rule that takes `patch` out of the
/// playbook's review queue, to the pilot ring at once and to production
/// `production_after` later, once every one of the `pilots` succeeded.
pub fn approval_file(patch: &str, pilots: usize, production_after: patchward_api::Duration) -> (String, String) {
    let text = format!(
        "# Approves {patch} ahead of the playbook's review queue: the pilot ring at\n\
         # once, production {production_after} later and only if all {pilots} pilot device(s)\n\
         # installed it without a failure.\n\
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Severity;
    use crate::policy::{PolicyLimits, PolicySource, load_policy};

    fn endpoints() -> Endpoints {
        Endpoints {
            feed_url: "http://127.0.0.1:1/feed.json".into(),
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
        assert_eq!(errors(&PolicySource::GitRevision { repo: path.clone(), rev: second }), Vec::<String>::new());
        let rule = std::fs::read_to_string(path.join("rules/fast-track-pw-demo-0001.yaml")).unwrap();
        assert!(rule.contains("minSucceeded: 2"), "{rule}");
    }
}
