//! `patchward store copy --from DATA --to postgres://…`: an installation's
//! embedded store, every kind of record in it, moved into a real
//! PostgreSQL; the copy holds the same records, and a second copy into the
//! now non-empty database is refused.

mod support;

use patchward::plan::LedgerEntry;
use patchward::store::exposure::{DeviceExposure, RemediationTally};
use patchward::store::fleet::{AccessToken, EnrollmentToken, Role};
use patchward::store::{CatalogChange, EncodedPatch, PatchesDigest, SourceState, Store};

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// A store with a record of every kind.
async fn installation(data: &std::path::Path) {
    let store = Store::open(data).unwrap();
    let now = t("2026-11-24T12:00:00Z");
    let bytes = serde_json::to_vec(&serde_json::json!({"source": "vendor", "firstSeen": now, "id": "KB1"})).unwrap();
    let record = EncodedPatch { id: "KB1".into(), bytes };
    let mut digest = PatchesDigest::default();
    digest.toggle(&record.id, &record.bytes);
    let source: SourceState = serde_json::from_value(serde_json::json!({"name": "vendor", "revision": 3,
        "importedAt": now, "checkedAt": now, "feedSha256": "ab", "patchCount": 1, "patchesDigest": digest.to_hex()}))
    .unwrap();
    let change = CatalogChange { sources: vec![source], put: vec![record], delete: vec![] };
    store.commit_catalog(change).await.unwrap();
    store.record_ledger(&[LedgerEntry { rule: "critical".into(), patch: "KB1".into(), at: now }]).await.unwrap();
    let token = EnrollmentToken { uses_left: 3, expires_at: None, created_at: now };
    store.create_enrollment_token("pwe_copy-me", &token).await.unwrap();
    store.enroll("pwe_copy-me", "ws-1", "pwd_credential-of-ws-1", Default::default(), now).await.unwrap();
    let events = [(1, serde_json::json!({"kind": "report", "patch": "KB1", "status": "succeeded"}))];
    store.record_events("ws-1", &events, now).await.unwrap();
    store.append_audit(now, "admin", "sync.requested", serde_json::json!({"via": "api"})).await.unwrap();
    store.desired_generation("ws-1", "digest-1").await.unwrap();
    let admin = AccessToken { role: Role::Admin, device: None, expires_at: None, created_at: now, revoked: false };
    store.create_access_token("pwa_admin-copy", &admin).await.unwrap();
    store.set_engine_state("acknowledged", &vec!["abc"]).await.unwrap();
    let exposure = DeviceExposure { baseline: now, opened: Default::default() };
    store
        .record_exposures(&[("ws-1".into(), exposure)], RemediationTally { remediated: 1, total_seconds: 60 })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_into_postgres_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    installation(&data).await;
    let source = Store::open(&data).unwrap().contents().await.unwrap().sorted();
    assert!(source.devices.len() == 1 && source.audit.len() == 2 && source.engine_state.len() == 2, "{source:?}");

    let pg = support::postgres::Postgres::start();
    let url = pg.database("copied");
    let copy = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_patchward"))
            .args(["store", "copy", "--from"])
            .arg(&data)
            .args(["--to", &url])
            .output()
            .unwrap()
    };
    let copied = copy();
    let stdout = String::from_utf8_lossy(&copied.stdout);
    assert!(copied.status.success(), "{stdout}{}", String::from_utf8_lossy(&copied.stderr));
    assert!(stdout.contains("verified every section"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("devices") && l.contains(" 1 ")), "{stdout}");

    let target = Store::connect(&url).await.unwrap();
    assert_eq!(target.contents().await.unwrap().sorted(), source, "the same records");
    assert_eq!(target.device_by_credential("pwd_credential-of-ws-1").await.unwrap().unwrap().id, "ws-1");
    assert_eq!(
        target.append_audit(t("2026-11-25T00:00:00Z"), "admin", "next", serde_json::json!({})).await.unwrap(),
        3
    );

    let again = copy();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already holds data"), "{stderr}");
}
