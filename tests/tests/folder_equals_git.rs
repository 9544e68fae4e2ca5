//! Reading a folder and reading a git commit of the same files give the same
//! policy: same documents, same positions, same diagnostics.
//!
//! This binary holds one test because it sets the working directory, so that
//! both readers print the same (repository-relative) paths.

use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward_tests::{copy_tree, git, git_commit_all, git_init_commit, workspace_root};

#[test]
fn a_folder_and_a_commit_of_it_load_identically() {
    let temp = tempfile::tempdir().unwrap();
    let repo = temp.path().join("repo");
    copy_tree(&workspace_root().join("policies"), &repo);
    // Things both readers skip: hidden folders, non-YAML files, symlinks.
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::write(repo.join(".github/workflows/ci.yml"), "on: [push]\n").unwrap();
    std::os::unix::fs::symlink(repo.join("scopes.yaml"), repo.join("linked.yaml")).unwrap();
    let first = git_init_commit(&repo, "the example policies");

    std::env::set_current_dir(&repo).unwrap();
    let limits = PolicyLimits::default();
    let from_folder = load_policy(&PolicySource::Folder(".".into()), &limits).unwrap();
    let from_git = load_policy(&PolicySource::parse(&format!("{}@HEAD", repo.display())), &limits).unwrap();
    assert!(from_folder.diagnostics.is_empty(), "{:?}", from_folder.diagnostics);
    assert_eq!(from_git.commit.as_deref(), Some(first.as_str()));
    assert_eq!(from_folder.documents, from_git.documents);
    let policy = from_folder.policy.expect("the examples are valid");
    assert_eq!(Some(&policy), from_git.policy.as_ref());
    assert_eq!(policy.scopes.len(), 6);
    assert_eq!(policy.deployment_policies.len(), 6);

    // A later commit breaks a file; the earlier revision still reads clean,
    // and the working tree plays no part in a revision read.
    std::fs::write(
        repo.join("scopes.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: x}\nspec: {colour: 1}\n",
    )
    .unwrap();
    let second = git_commit_all(&repo, "break the scopes");
    std::fs::remove_dir_all(repo.join("rules")).unwrap();
    let at_first = load_policy(&PolicySource::parse(&format!("{}@{first}", repo.display())), &limits).unwrap();
    assert_eq!(at_first.policy.as_ref(), Some(&policy));
    let at_second = load_policy(&PolicySource::parse(&format!("{}@main", repo.display())), &limits).unwrap();
    assert_eq!(at_second.commit.as_deref(), Some(second.as_str()));
    assert!(at_second.policy.is_none());
    let folder_now = load_policy(&PolicySource::Folder(".".into()), &limits).unwrap();
    assert_ne!(folder_now.diagnostics, at_second.diagnostics, "the folder lost rules/ and the commit did not");

    // A revision that does not exist cannot be read.
    git(&repo, &["tag", "v1", &first]);
    assert!(load_policy(&PolicySource::parse(&format!("{}@v1", repo.display())), &limits).unwrap().policy.is_some());
    assert!(load_policy(&PolicySource::parse(&format!("{}@no-such-branch", repo.display())), &limits).is_err());
}
