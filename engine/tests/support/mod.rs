//! What the engine's tests and benches share: git run as a user would run
//! it, and a policy repository made from the shipped example policies.
#![allow(dead_code)] // each test binary uses its own part

pub mod http;
pub mod postgres;

use std::path::Path;
use std::process::Command;

/// Runs `git args` in `dir` as Ada Admin, with no system or user config;
/// returns its trimmed stdout, and fails on a non-zero exit.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Admin")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Admin")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A git repository in `dir` holding the example policies, its catalog
/// source pointed at a closed port without retries (so the bundled feed
/// seeds the catalog at once); returns its first commit.
pub fn example_policy_repository(dir: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    copy_dir(&root.join("policies"), dir);
    let catalog = std::fs::read_to_string(dir.join("catalog.yaml")).unwrap();
    let catalog = catalog
        .replace("https://patches.example.com/feed.json", "http://127.0.0.1:1/feed.json")
        .replace("retries: 3", "retries: 0");
    std::fs::write(dir.join("catalog.yaml"), catalog).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "the example policies"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The workspace's root (the shipped `policies/` and `examples/` are there).
pub fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// What an engine has in force on the policy folder `policies` (compiled
/// as commit c0ffee…) and the example feed, imported at `now`.
pub fn example_in_force(policies: &Path, now: jiff::Timestamp) -> patchward::daemon::InForce {
    let feed = std::fs::read(workspace_root().join("examples/plan/feed.json")).unwrap();
    in_force(policies, &feed, now)
}

/// What an engine has in force on the policy folder `policies` (compiled
/// as commit c0ffee…) and a patchward `feed`, imported at `now`.
pub fn in_force(policies: &Path, feed: &[u8], now: jiff::Timestamp) -> patchward::daemon::InForce {
    use patchward::policy::{PolicyLimits, PolicySource, load_policy};
    let load = load_policy(&PolicySource::Folder(policies.to_owned()), &PolicyLimits::default()).unwrap();
    let policy = load.policy.unwrap_or_else(|| panic!("{}: {:?}", policies.display(), load.diagnostics));
    let policy = patchward::plan::CompiledPolicy::compile(policy, Some("c0ffee".repeat(6) + "c0ff")).unwrap();
    let (records, _) =
        patchward::catalog::offline_catalog(patchward::policy::model::FeedFormat::Patchward, feed, now).unwrap();
    let coverage = patchward::catalog::coverage::CoverageSet::of_policy(&policy.policy);
    let catalog = patchward::plan::PlanCatalog::new(records, &coverage);
    patchward::daemon::InForce {
        policy: std::sync::Arc::new(policy),
        catalog: std::sync::Arc::new(catalog),
        catalog_revision: 3,
        commit: None,
    }
}

/// The example fleet (`examples/plan/fleet.yaml`) enrolled in `store` with
/// its inventories; its device ids.
pub fn enroll_example_fleet(store: &patchward::store::Store, now: jiff::Timestamp) -> Vec<String> {
    use patchward::store::Store;
    let text = std::fs::read_to_string(workspace_root().join("examples/plan/fleet.yaml")).unwrap();
    let fleet: patchward_api::Fleet = serde_saphyr::from_str(&text).unwrap();
    let token = "pwe_example_fleet";
    let record = patchward::store::fleet::EnrollmentToken {
        uses_left: fleet.devices.len() as u32,
        expires_at: None,
        created_at: now,
    };
    Store::wait(store.create_enrollment_token(token, &record)).unwrap();
    let mut ids = Vec::new();
    for device in fleet.devices {
        let credential = format!("pwd_{}", device.id);
        Store::wait(store.enroll(token, &device.id, &credential, device.facts.clone(), now)).unwrap();
        Store::wait(store.update_inventory(&device.id, device.facts, device.inventory, now)).unwrap();
        ids.push(device.id);
    }
    ids
}
