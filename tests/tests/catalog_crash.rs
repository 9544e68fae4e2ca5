//! Crash safety of the catalog store (RELIABILITY T13, T14, T16) with the
//! real binary and `kill -9`.
//!
//! T13/T14: imports are killed at pseudo-random instants; after each kill
//! the store opens, verifies (count and digest of every source's records),
//! and holds exactly the old or the new revision, never a mix; an import
//! that was acknowledged (exit 0) is always there. The loop runs
//! `PATCHWARD_CRASH_ITERATIONS` times (default 6; `.ci/run` runs a longer,
//! bounded loop).
//!
//! T16: a corrupted store is refused with the way to recover, never served
//! empty, and `catalog rebuild` recovers it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use patchward::store::{CatalogChange, EncodedPatch, Store};
use patchward_tests::{patchward, workspace_root};

fn big_feed(revision: u64, patches: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..patches)
        .map(|i| {
            serde_json::json!({
                "id": format!("P{i:06}"), "title": format!("patch {i} of revision {revision}"),
                "vendor": "Example", "product": "Example OS", "category": "security",
                "cvss": {"vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
                "cves": [format!("CVE-2026-{:05}", i % 99_999)], "released": "2026-01-01T00:00:00Z",
                "supersedes": if i % 10 == 0 || i < 1 { vec![] } else { vec![format!("P{:06}", i - 1)] },
                "applicability": {"platforms": ["debian-12"]},
                "fixes": [{"manager": "dpkg", "package": format!("pkg{i}"), "fixedVersion": format!("1.{revision}-1")}]
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"revision": revision, "generatedAt": "2026-01-01T00:00:00Z",
        "expiresAt": "2099-01-01T00:00:00Z", "patches": items}))
    .unwrap()
}

/// A small deterministic generator (xorshift), so a failing run repeats.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

fn revision_in_store(data: &Path) -> Option<u64> {
    let store = Store::open(data).expect("the store opens after a kill -9");
    patchward::store::Store::wait(store.verify_catalog()).expect("the catalog is whole after a kill -9");
    patchward::store::Store::wait(store.catalog_source("import")).unwrap().map(|s| s.revision)
}

#[test]
fn imports_killed_at_random_points_leave_the_old_or_the_new_revision() {
    let iterations: u64 = std::env::var("PATCHWARD_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed_path = dir.path().join("feed.json");
    let mut random = Random(0x5eed_cafe);
    let mut acknowledged: Option<u64> = None;
    let mut killed = 0;
    for iteration in 0..iterations {
        let revision = iteration + 1;
        std::fs::write(&feed_path, big_feed(revision, 20_000)).unwrap();
        let mut child = patchward()
            .args(["catalog", "import"])
            .arg(&feed_path)
            .arg("--data")
            .arg(&data)
            .args(["--policies", "/nonexistent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Pick the kill instant: anywhere from at once to after the import.
        std::thread::sleep(Duration::from_millis(random.below(2_500)));
        let finished = child.try_wait().unwrap();
        if finished.is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = child.wait().unwrap();
        let in_store = revision_in_store(&data);
        if finished.is_some() && status.success() {
            assert_eq!(in_store, Some(revision), "iteration {iteration}: an acknowledged import was lost");
            acknowledged = Some(revision);
        } else {
            assert!(
                in_store == acknowledged || in_store == Some(revision),
                "iteration {iteration}: revision {in_store:?} is neither the old {acknowledged:?} nor the new {revision}"
            );
            acknowledged = in_store;
        }
    }
    eprintln!("{iterations} imports, {killed} killed mid-way");
}

fn sample_policy(dir: &Path) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let feed = workspace_root().join("examples/feeds/vendor-feed.json");
    std::fs::write(
        policies.join("catalog.yaml"),
        format!("apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: vendor}}\nspec:\n  url: \"file://{}\"\n", feed.display()),
    )
    .unwrap();
    policies
}

fn list(data: &Path, policies: &Path) -> std::process::Output {
    patchward().args(["catalog", "list", "--data"]).arg(data).arg("--policies").arg(policies).output().unwrap()
}

#[test]
fn a_corrupted_store_is_refused_with_the_way_out_and_rebuild_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policies = sample_policy(dir.path());
    let sync =
        patchward().args(["catalog", "sync", "--data"]).arg(&data).arg("--policies").arg(&policies).output().unwrap();
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));

    // A record written behind the catalog's back (a torn or rotten store).
    {
        let store = Store::open(&data).unwrap();
        let mut stray = patchward::store::Store::wait(store.catalog_patches()).unwrap().remove(0);
        stray.patch.id = "STRAY".into();
        patchward::store::Store::wait(
            store.commit_catalog(CatalogChange { put: vec![EncodedPatch::new(&stray)], ..CatalogChange::default() }),
        )
        .unwrap();
    }
    let output = list(&data, &policies);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is corrupted") && stderr.contains("patchward catalog rebuild"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing may be served from a corrupted store");

    // Bytes of the database overwritten on disk.
    let db = data.join("store/db");
    let mut bytes = std::fs::read(&db).unwrap();
    for byte in bytes.iter_mut().take(4096) {
        *byte = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let output = list(&data, &policies);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("patchward catalog rebuild"), "{stderr}");
    assert!(output.stdout.is_empty());

    // Rebuild moves the store aside (nothing is deleted) and re-imports.
    let rebuild = patchward()
        .args(["catalog", "rebuild", "--data"])
        .arg(&data)
        .arg("--policies")
        .arg(&policies)
        .output()
        .unwrap();
    assert!(rebuild.status.success(), "{}", String::from_utf8_lossy(&rebuild.stderr));
    let aside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("store.set-aside-"))
        .collect();
    assert_eq!(aside.len(), 1);
    let output = list(&data, &policies);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("KB5032190"));
}
