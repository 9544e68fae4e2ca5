//! `patchward plan` and `patchward diff` as a reviewer runs them: the
//! example policy repository through `plan` against the example fleet and
//! feed (snapshots in `tests/snapshots/`, the JSON checked against
//! `schemas/plan.json`), and `diff` between commits of a real git
//! repository.
//!
//! `PATCHWARD_UPDATE_SNAPSHOTS=1 cargo test --test plan_cli` rewrites the
//! snapshots; review the change like any other.

use std::path::Path;

use patchward_tests::{copy_tree, git, git_commit_all, git_init_commit, patchward, workspace_root};

const AT: &str = "2026-11-24T12:00:00Z";

fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let output = patchward().args(args).current_dir(dir).output().expect("patchward runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn example_plan(format: &str) -> String {
    let args = [
        "plan",
        "--policies",
        "policies",
        "--catalog",
        "examples/plan/feed.json",
        "--fleet",
        "examples/plan/fleet.yaml",
        "--at",
        AT,
        "--format",
        format,
    ];
    let (code, stdout, stderr) = run(&args, &workspace_root());
    assert_eq!(code, 0, "plan --format {format} failed: {stderr}");
    stdout
}

fn snapshot(name: &str, actual: &str) {
    let path = workspace_root().join("tests/snapshots").join(name);
    if std::env::var_os("PATCHWARD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with PATCHWARD_UPDATE_SNAPSHOTS=1", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from its snapshot from line {}:\n  expected: {:?}\n  actual:   {:?}\n(PATCHWARD_UPDATE_SNAPSHOTS=1 rewrites it)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn the_example_policy_plans_as_its_snapshots_say() {
    for (format, file) in
        [("json", "plan-example.json"), ("table", "plan-example.txt"), ("markdown", "plan-example.md")]
    {
        snapshot(file, &example_plan(format));
    }
}

#[test]
fn the_json_plan_follows_its_schema_and_design_fields() {
    let plan: serde_json::Value = serde_json::from_str(&example_plan("json")).expect("JSON");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("schemas/plan.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(&plan).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // DESIGN's minimum: rules with matched, the queues, and device items.
    assert!(plan["rules"].as_array().unwrap().iter().all(|r| r["name"].is_string() && r["matched"].is_array()));
    assert!(plan["reviewQueue"].is_array() && plan["held"].is_array());
    let item = &plan["devices"][1]["items"][0];
    for field in ["patch", "action", "status", "source", "scope", "stage", "policy", "notBefore", "deadline"] {
        assert!(item.get(field).is_some(), "items carry {field}: {item}");
    }
}

/// A policy repository with the example policy on `main`.
fn repository(dir: &Path) -> String {
    copy_tree(&workspace_root().join("policies"), dir);
    git_init_commit(dir, "the example policy")
}

fn diff(repo: &Path, base: &str, head: &str) -> (i32, String, String) {
    let root = workspace_root();
    let feed = root.join("examples/plan/feed.json");
    let fleet = root.join("examples/plan/fleet.yaml");
    let args = [
        "diff",
        "--policies",
        repo.to_str().unwrap(),
        "--base",
        base,
        "--head",
        head,
        "--catalog",
        feed.to_str().unwrap(),
        "--fleet",
        fleet.to_str().unwrap(),
        "--at",
        AT,
    ];
    run(&args, &root)
}

#[test]
fn diff_shows_approvals_devices_documents_and_windows_a_pull_request_changes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    repository(repo);
    git(repo, &["checkout", "-q", "-b", "pr"]);
    let rules = repo.join("rules/severity-playbook.yaml");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(
        &rules,
        text.replacen("      after: 7d\n      policy: emergency", "      after: 2d\n      policy: emergency", 1),
    )
    .unwrap();
    let windows = repo.join("windows.yaml");
    let text = std::fs::read_to_string(&windows).unwrap();
    std::fs::write(&windows, text.replace("start: \"22:00\", end: \"04:00\"", "start: \"21:00\", end: \"04:00\""))
        .unwrap();
    std::fs::write(
        repo.join("exclusions/servers-no-curl.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {name: servers-no-curl}\nspec: {patches: [DSA-5915-1], scopes: [servers]}\n",
    )
    .unwrap();
    git_commit_all(repo, "production a week sooner, curl held on servers, a longer night window");

    let (code, markdown, stderr) = diff(repo, "main", "pr");
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        ":white_check_mark: Head is valid",
        "**3 of 8 devices affected**: 0 patch(es) gained, 1 lost, 2 changed.",
        "| DSA-5915-1 | lost | 1 | srv-db-01 |",
        "| KB5032190 | notBefore: 2026-11-17T17:00:00Z → 2026-11-12T17:00:00Z | 2 | ws-0200, ws-0201 |",
        "| ApprovalRule | `critical-security` | modified | `stages[1].after`: `\"7d\"` → `\"2d\"` |",
        "| Exclusion | `servers-no-curl` | added |  |",
        "`intervals[0].start`: `\"22:00\"` → `\"21:00\"`",
        "| `servers-night` | opens 2026-11-24T20:00:00Z",
    ] {
        assert!(markdown.contains(expected), "missing {expected:?} in\n{markdown}");
    }

    // The same revision on both sides changes nothing.
    let (code, markdown, _) = diff(repo, "pr", "pr");
    assert_eq!(code, 0);
    assert!(markdown.contains("No device's desired state changes."), "{markdown}");
}

#[test]
fn diff_of_an_invalid_head_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    repository(repo);
    git(repo, &["checkout", "-q", "-b", "broken"]);
    let rules = repo.join("rules/severity-playbook.yaml");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&rules, text.replace("match: 'patch.severity == \"medium\"'", "match: 'patch.severity =='"))
        .unwrap();
    std::fs::write(
        repo.join("scopes-extra.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: x}\nspec: {selektor: 'true'}\n",
    )
    .unwrap();
    git_commit_all(repo, "two mistakes");
    let (code, markdown, _) = diff(repo, "main", "broken");
    assert_eq!(code, 1, "{markdown}");
    assert!(markdown.contains(":x: **Head is invalid** (2 errors"), "{markdown}");
    assert!(markdown.contains("`rules/severity-playbook.yaml:70:"), "{markdown}");
    assert!(markdown.contains("`scopes-extra.yaml:4:"), "{markdown}");
    assert!(!markdown.contains("devices affected"), "an invalid head is not planned: {markdown}");
}
