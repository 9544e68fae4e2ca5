//! The ledger in the store: first matches are durable, survive a reopen,
//! and never move (on sled and on PostgreSQL); a plan with the stored
//! ledger counts delays from them.

mod support;

use patchward::plan::{Ledger, LedgerEntry};
use patchward::store::Store;
use support::postgres::Place;

store_suite!(first_matches_are_kept_across_reopens_and_never_move);

fn entry(rule: &str, patch: &str, at: &str) -> LedgerEntry {
    LedgerEntry { rule: rule.into(), patch: patch.into(), at: at.parse().unwrap() }
}

async fn first_matches_are_kept_across_reopens_and_never_move(place: &Place) {
    {
        let store = place.open().await;
        assert!(store.ledger().await.unwrap().is_empty());
        let added = store
            .record_ledger(&[
                entry("critical", "KB1", "2026-11-01T00:00:00Z"),
                entry("critical", "KB2", "2026-11-02T00:00:00Z"),
                entry("critical", "KB1", "2026-11-03T00:00:00Z"),
            ])
            .await
            .unwrap();
        assert_eq!(added, 2, "the same pair twice in one batch counts once");
    }
    let store = place.open().await;
    assert_eq!(store.record_ledger(&[entry("critical", "KB1", "2026-11-20T00:00:00Z")]).await.unwrap(), 0);
    assert_eq!(store.record_ledger(&[entry("high", "KB1", "2026-11-20T00:00:00Z")]).await.unwrap(), 1);
    let ledger: Ledger = store.ledger().await.unwrap();
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.first_matched("critical", "KB1"), Some("2026-11-01T00:00:00Z".parse().unwrap()));
    assert_eq!(ledger.first_matched("high", "KB1"), Some("2026-11-20T00:00:00Z".parse().unwrap()));
    assert_eq!(ledger.first_matched("high", "KB2"), None);
}

/// `patchward plan --data DIR` plans as the engine would: the store's
/// catalog and the store's ledger.
#[test]
fn plan_with_the_store_uses_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (data, policies) = (dir.path().join("data"), dir.path().join("policies"));
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("policy.yaml"),
        "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n---\n\
         apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: staged}\n\
         spec: {match: 'true', action: approve, stages: [{scope: all, after: 2d, policy: fast}]}\n",
    )
    .unwrap();
    let feed = dir.path().join("feed.json");
    std::fs::write(
        &feed,
        r#"{"revision": 1, "generatedAt": "2026-11-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": [
            {"id": "OLD", "title": "t", "vendor": "v", "product": "p", "category": "security", "released": "2026-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    let fleet = dir.path().join("fleet.yaml");
    std::fs::write(&fleet, "devices: [{id: d1}]\n").unwrap();
    let patchward = env!("CARGO_BIN_EXE_patchward");
    let import = std::process::Command::new(patchward)
        .args(["catalog", "import"])
        .arg(&feed)
        .arg("--data")
        .arg(&data)
        .arg("--policies")
        .arg(&policies)
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let store = Store::open(&data).unwrap();
    Store::wait(store.record_ledger(&[entry("staged", "OLD", "2026-11-20T00:00:00Z")])).unwrap();
    drop(store);
    let plan = |extra: &[&str]| -> serde_json::Value {
        let output = std::process::Command::new(patchward)
            .arg("plan")
            .arg("--policies")
            .arg(&policies)
            .arg("--fleet")
            .arg(&fleet)
            .args(["--at", "2026-11-24T12:00:00Z", "--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let with_store = plan(&["--data", data.to_str().unwrap()]);
    assert_eq!(
        with_store["devices"][0]["items"][0]["notBefore"], "2026-11-22T00:00:00Z",
        "two days after the first match"
    );
    let offline = plan(&["--catalog", feed.to_str().unwrap()]);
    assert_eq!(offline["devices"][0]["items"][0]["notBefore"], "2026-01-03T00:00:00Z", "two days after the release");
}
