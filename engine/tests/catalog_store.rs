//! The catalog, exposure records, engine state and access tokens in the
//! store, on both backends: a catalog commit is whole and verifies, a
//! record keeps its exact bytes, and everything survives a reopen.

mod support;

use patchward::store::exposure::{DeviceExposure, RemediationTally};
use patchward::store::fleet::{AccessToken, Role};
use patchward::store::{CatalogChange, EncodedPatch, PatchesDigest, SourceState};
use support::postgres::Place;

store_suite!(a_catalog_commit_is_whole_and_verifies, exposure_state_and_tokens_survive_a_reopen);

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// A record as an import writes it: JSON bytes with the head fields.
fn record(id: &str, source: &str) -> EncodedPatch {
    let bytes = serde_json::to_vec(&serde_json::json!({
        "source": source, "firstSeen": "2026-11-01T00:00:00Z", "id": id, "extra": [1, 2, 3]
    }))
    .unwrap();
    EncodedPatch { id: id.into(), bytes }
}

fn source(name: &str, records: &[&EncodedPatch]) -> SourceState {
    let mut digest = PatchesDigest::default();
    for r in records {
        digest.toggle(&r.id, &r.bytes);
    }
    serde_json::from_value(serde_json::json!({
        "name": name, "revision": 1, "importedAt": "2026-11-01T00:00:00Z", "checkedAt": "2026-11-01T00:00:00Z",
        "feedSha256": "00", "patchCount": records.len(), "patchesDigest": digest.to_hex()
    }))
    .unwrap()
}

async fn a_catalog_commit_is_whole_and_verifies(place: &Place) {
    let (a, b, c) = (record("KB1", "vendor"), record("KB2", "vendor"), record("USN-1", "ubuntu"));
    {
        let store = place.open().await;
        let change = CatalogChange {
            sources: vec![source("vendor", &[&a, &b]), source("ubuntu", &[&c])],
            put: vec![a.clone(), b.clone(), c.clone()],
            delete: vec![],
        };
        store.commit_catalog(change).await.unwrap();
        store.verify_catalog().await.unwrap();
    }
    let store = place.open().await;
    assert_eq!(store.catalog_record("KB2").await.unwrap(), Some(b.bytes.clone()), "the exact bytes");
    let records = store.catalog_records().await.unwrap();
    assert_eq!(records.keys().collect::<Vec<_>>(), ["KB1", "KB2", "USN-1"]);
    assert_eq!(records["USN-1"].head.source, "ubuntu");
    let names: Vec<String> = store.catalog_sources().await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["ubuntu", "vendor"]);

    // KB2 leaves the vendor's feed: its record goes with the new state.
    let change = CatalogChange { sources: vec![source("vendor", &[&a])], put: vec![], delete: vec!["KB2".into()] };
    store.commit_catalog(change).await.unwrap();
    store.verify_catalog().await.unwrap();
    assert_eq!(store.catalog_record("KB2").await.unwrap(), None);

    // A state that does not describe the records is found out.
    let wrong = CatalogChange { sources: vec![source("vendor", &[&a, &b])], ..CatalogChange::default() };
    store.commit_catalog(wrong).await.unwrap();
    let error = store.verify_catalog().await.unwrap_err().to_string();
    assert!(error.contains("should have 2 patch records, it has 1"), "{error}");
}

async fn exposure_state_and_tokens_survive_a_reopen(place: &Place) {
    let now = t("2026-11-24T12:00:00Z");
    {
        let store = place.open().await;
        let exposure = DeviceExposure { baseline: now, opened: [("KB1".to_owned(), now)].into() };
        store
            .record_exposures(&[("dev-1".into(), exposure)], RemediationTally { remediated: 2, total_seconds: 600 })
            .await
            .unwrap();
        store.record_exposures(&[], RemediationTally { remediated: 1, total_seconds: 300 }).await.unwrap();
        store.set_engine_state("followed", &serde_json::json!({"commit": "abc"})).await.unwrap();
        let admin = AccessToken { role: Role::Admin, device: None, expires_at: None, created_at: now, revoked: false };
        store.create_access_token("pwa_secret-admin-token", &admin).await.unwrap();
    }
    let store = place.open().await;
    assert_eq!(store.exposures().await.unwrap()["dev-1"].opened["KB1"], now);
    assert_eq!(store.remediation_tally().await.unwrap(), RemediationTally { remediated: 3, total_seconds: 900 });
    let followed: Option<serde_json::Value> = store.engine_state("followed").await.unwrap();
    assert_eq!(followed, Some(serde_json::json!({"commit": "abc"})));
    let missing: Option<serde_json::Value> = store.engine_state("nothing").await.unwrap();
    assert_eq!(missing, None);
    assert_eq!(store.access_token("pwa_secret-admin-token").await.unwrap().map(|t| t.role), Some(Role::Admin));
    assert_eq!(store.access_token("pwa_other").await.unwrap(), None);
    let bytes = place.bytes_at_rest();
    assert!(!bytes.windows(22).any(|w| w == b"pwa_secret-admin-token"), "a token is kept as its hash");
}
