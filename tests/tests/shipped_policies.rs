//! The policy repositories patchward ships are valid, with no warnings:
//! what the README's first command runs, and what a new admin copies.

use patchward_tests::{patchward, workspace_root};

#[test]
fn shipped_policy_repositories_validate_clean() {
    for folder in ["policies", "examples/minimal-policy"] {
        let output = patchward()
            .args(["validate", folder, "--format", "json"])
            .current_dir(workspace_root())
            .output()
            .expect("patchward runs");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(output.status.code(), Some(0), "{folder}: {report:#}");
        assert_eq!(report["diagnostics"], serde_json::json!([]), "{folder}: {report:#}");
        assert_eq!(report["valid"], true);
    }
}

#[test]
fn a_path_that_does_not_exist_exits_2_and_says_so() {
    let output = patchward().args(["validate", "/no/such/policies"]).output().expect("patchward runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("policy path /no/such/policies does not exist"), "{stderr}");
}

#[test]
fn a_repository_without_that_revision_exits_2() {
    let temp = tempfile::tempdir().unwrap();
    patchward_tests::git_init_commit(temp.path(), "empty");
    let output = patchward()
        .args(["validate", &format!("{}@no-such-branch", temp.path().display())])
        .output()
        .expect("patchward runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("revision `no-such-branch` not found"), "{stderr}");
}
