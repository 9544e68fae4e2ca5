//! The catalog through its library API, with a fake clock: the sample feeds
//! import into the expected patches; the engine's fields (`firstSeen`,
//! `obsoleteSince`, `supersededBy`, retention) follow time; every refused
//! feed (T9, T37) names its reason and leaves the store exactly as it was.

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use patchward::catalog::coverage::CoverageSet;
use patchward::catalog::feed::Severity;
use patchward::catalog::view::{PatchView, views};
use patchward::catalog::{
    FeedLimits, Freshness, ImportError, ImportMode, ImportRequest, Refusal, import, record_not_modified,
};
use patchward::policy::model::{Category, Coverage, FeedFormat};
use patchward::store::Store;
use patchward_tests::workspace_root;

fn t(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("examples/feeds").join(name)).unwrap()
}

fn request<'a>(source: &'a str, format: FeedFormat, bytes: &'a [u8], now: jiff::Timestamp) -> ImportRequest<'a> {
    ImportRequest::snapshot(source, format, bytes, now)
}

fn all(store: &Store) -> Vec<PatchView> {
    patchward::store::Store::wait(store.verify_catalog()).unwrap();
    views(patchward::store::Store::wait(store.catalog_patches()).unwrap(), &CoverageSet::default())
}

fn find<'a>(list: &'a [PatchView], id: &str) -> &'a PatchView {
    list.iter().find(|v| v.record.patch.id == id).unwrap_or_else(|| panic!("{id} is not in the catalog"))
}

/// The store's logical content: every source state and record, encoded.
fn digest(store: &Store) -> String {
    let sources = serde_json::to_string(&patchward::store::Store::wait(store.catalog_sources()).unwrap()).unwrap();
    let patches = serde_json::to_string(&patchward::store::Store::wait(store.catalog_patches()).unwrap()).unwrap();
    patchward::catalog::sha256_hex(format!("{sources}\n{patches}").as_bytes())
}

/// A feed in patchward's format with these (id, supersedes) patches.
fn feed(revision: u64, expires: &str, patches: &[(&str, &[&str])]) -> Vec<u8> {
    let patches: Vec<serde_json::Value> = patches
        .iter()
        .map(|(id, supersedes)| {
            serde_json::json!({
                "id": id, "title": format!("patch {id}"), "vendor": "Example", "product": "Example OS",
                "category": "security", "severity": "high", "released": "2026-01-01T00:00:00Z",
                "supersedes": supersedes,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "revision": revision, "generatedAt": "2026-01-01T00:00:00Z", "expiresAt": expires, "patches": patches,
    }))
    .unwrap()
}

#[test]
fn the_patchward_sample_imports_with_computed_severities_and_supersedence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = sample("vendor-feed.json");
    let report = import(&store, &request("vendor", FeedFormat::Patchward, &bytes, t("2026-11-21T00:00:00Z"))).unwrap();
    assert_eq!((report.revision, report.patches, report.added), (7, 5, 5));
    let list = all(&store);
    // Severity and score from the vector alone (CVSS 3.1 and 4.0).
    let openssl = find(&list, "DSA-5900-1");
    assert_eq!((openssl.record.score, openssl.record.severity), (Some(7.4), Severity::High));
    let firmware = find(&list, "FW-2026-0042");
    assert_eq!((firmware.record.score, firmware.record.severity), (Some(8.5), Severity::High));
    // Out of the default coverage (security only), stored but inactive.
    assert!(!firmware.active);
    assert!(find(&list, "KB5032190").active);
    assert_eq!(find(&list, "KB5031455").superseded_by, ["KB5032190"]);
    assert_eq!(find(&list, "KB5032190").record.first_seen, t("2026-11-21T00:00:00Z"));
    let json = find(&list, "KB5032190").to_json();
    assert_eq!(
        json["cvss"],
        serde_json::json!({"vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "score": 9.8})
    );
    assert_eq!(json["firstSeen"], "2026-11-21T00:00:00Z");
    assert_eq!(json["active"], true);
}

#[test]
fn the_csaf_sample_becomes_one_patch_with_its_fixes_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = sample("csaf-advisory.json");
    import(&store, &request("csaf", FeedFormat::Csaf, &bytes, t("2026-11-21T00:00:00Z"))).unwrap();
    let list = all(&store);
    assert_eq!(list.len(), 1);
    let json = list[0].to_json();
    assert_eq!(json["id"], "EXSA-2026:0117");
    assert_eq!(json["vendor"], "Example Linux");
    assert_eq!(json["cves"], serde_json::json!(["CVE-2026-4410", "CVE-2026-4411"]));
    // The highest score speaks for the advisory; the severity follows it.
    assert_eq!(json["cvss"]["score"], 7.5);
    assert_eq!(json["severity"], "high");
    // Source RPMs are not fixes; binary ones are, with their epoch.
    assert_eq!(
        json["fixes"],
        serde_json::json!([
            {"manager": "rpm", "package": "openssl", "fixedVersion": "1:3.2.2-6.el9_5.1"},
            {"manager": "rpm", "package": "openssl-libs", "fixedVersion": "1:3.2.2-6.el9_5.1"}
        ])
    );
    assert_eq!(json["fixedProducts"], serde_json::json!([{"product": "Example Appliance", "version": "4.2.1"}]));
    assert_eq!(
        json["references"],
        serde_json::json!([
            "https://security.example.org/EXSA-2026:0117",
            "https://support.example.org/appliance/4.2.1"
        ])
    );
    assert_eq!(json["released"], "2026-11-03T09:00:00Z");
}

#[test]
fn the_osv_sample_becomes_a_patch_per_record_with_platform_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = sample("osv-records.json");
    import(&store, &request("osv", FeedFormat::Osv, &bytes, t("2026-11-21T00:00:00Z"))).unwrap();
    let list = all(&store);
    let curl = find(&list, "DSA-5901-1").to_json();
    assert_eq!(curl["cves"], serde_json::json!(["CVE-2026-5101", "CVE-2026-5102"]));
    assert_eq!((curl["cvss"]["score"].as_f64(), curl["severity"].as_str()), (Some(8.8), Some("high")));
    // Debian's advisories name source packages.
    assert_eq!(
        curl["fixes"],
        serde_json::json!([
            {"manager": "dpkg", "package": "curl", "fixedVersion": "7.88.1-10+deb12u9", "platform": "debian-12", "kind": "source"},
            {"manager": "dpkg", "package": "curl", "fixedVersion": "7.74.0-1.3+deb11u15", "platform": "debian-11", "kind": "source"}
        ])
    );
    assert_eq!(curl["applicability"]["platforms"], serde_json::json!(["debian-11", "debian-12"]));
    let sudo = find(&list, "RLSA-2026:2211").to_json();
    // Rated in its summary; rpm rules for Rocky; the PyPI package is no OS fix.
    assert_eq!(sudo["severity"], "medium");
    assert_eq!(
        sudo["fixes"],
        serde_json::json!([{"manager": "rpm", "package": "sudo", "fixedVersion": "1:1.9.5p2-10.el9_6.1", "platform": "rocky-9"}])
    );
}

#[test]
fn engine_fields_follow_the_feeds_over_time_and_retention_purges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let far = "2099-01-01T00:00:00Z";
    let one = feed(1, far, &[("A", &[]), ("B", &[])]);
    import(&store, &request("v", FeedFormat::Patchward, &one, t("2026-01-01T00:00:00Z"))).unwrap();
    // B vanishes from the feed: obsolete from that sync on; A keeps its firstSeen.
    let two = feed(2, far, &[("A", &[]), ("C", &["A"])]);
    let report = import(&store, &request("v", FeedFormat::Patchward, &two, t("2026-01-10T00:00:00Z"))).unwrap();
    assert_eq!((report.added, report.obsoleted), (1, 1));
    let list = all(&store);
    assert_eq!(find(&list, "A").record.first_seen, t("2026-01-01T00:00:00Z"));
    assert_eq!(find(&list, "B").record.obsolete_since, Some(t("2026-01-10T00:00:00Z")));
    assert!(!find(&list, "B").active, "an obsolete patch is inactive");
    assert_eq!(find(&list, "C").record.first_seen, t("2026-01-10T00:00:00Z"));
    assert_eq!(find(&list, "A").superseded_by, ["C"]);
    // Still obsolete 89 days later (the obsolete time does not move)...
    let three = feed(3, far, &[("A", &[]), ("C", &["A"])]);
    import(&store, &request("v", FeedFormat::Patchward, &three, t("2026-04-09T00:00:00Z"))).unwrap();
    assert_eq!(find(&all(&store), "B").record.obsolete_since, Some(t("2026-01-10T00:00:00Z")));
    // ...and purged once obsolete for longer than obsoleteMetadataDays (90).
    let four = feed(4, far, &[("A", &[]), ("C", &["A"])]);
    let report = import(&store, &request("v", FeedFormat::Patchward, &four, t("2026-04-10T00:00:00Z"))).unwrap();
    assert_eq!(report.purged, 1);
    assert!(all(&store).iter().all(|v| v.record.patch.id != "B"));
    // An unchanged feed is recognised and rewrites nothing.
    let report = import(&store, &request("v", FeedFormat::Patchward, &four, t("2026-04-11T00:00:00Z"))).unwrap();
    assert!(report.unchanged);
}

#[test]
fn an_unchanged_feed_still_purges_what_retention_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let far = "2099-01-01T00:00:00Z";
    let one = feed(1, far, &[("A", &[]), ("B", &[])]);
    import(&store, &request("v", FeedFormat::Patchward, &one, t("2026-01-01T00:00:00Z"))).unwrap();
    let two = feed(2, far, &[("A", &[])]);
    import(&store, &request("v", FeedFormat::Patchward, &two, t("2026-01-02T00:00:00Z"))).unwrap();
    // The same bytes, synced again after the 90 days: nothing parsed, B purged.
    let report = import(&store, &request("v", FeedFormat::Patchward, &two, t("2026-05-01T00:00:00Z"))).unwrap();
    assert!(report.unchanged);
    assert_eq!(report.purged, 1);
    let ids: Vec<String> = all(&store).into_iter().map(|v| v.record.patch.id).collect();
    assert_eq!(ids, ["A"]);
    let state = patchward::store::Store::wait(store.catalog_source("v")).unwrap().unwrap();
    assert!(state.obsolete.is_empty());
    assert_eq!(state.checked_at, t("2026-05-01T00:00:00Z"));
}

#[test]
fn supersedence_cycles_are_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = feed(1, "2099-01-01T00:00:00Z", &[("A", &["B"]), ("B", &["A"])]);
    let report = import(&store, &request("v", FeedFormat::Patchward, &bytes, t("2026-01-01T00:00:00Z"))).unwrap();
    assert_eq!(report.warnings, ["supersedence cycle: A → B → A"]);
    assert_eq!(find(&all(&store), "A").superseded_by, ["B"]);
}

#[test]
fn widening_coverage_activates_stored_patches_without_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = sample("vendor-feed.json");
    import(&store, &request("vendor", FeedFormat::Patchward, &bytes, t("2026-11-21T00:00:00Z"))).unwrap();
    let narrow =
        CoverageSet { sources: vec![Coverage { platforms: Some(vec!["debian-12".into()]), ..Coverage::default() }] };
    let wide = CoverageSet {
        sources: vec![Coverage {
            categories: Some(vec![Category::Security, Category::Firmware]),
            ..Coverage::default()
        }],
    };
    let active = |coverage: &CoverageSet| -> Vec<String> {
        views(patchward::store::Store::wait(store.catalog_patches()).unwrap(), coverage)
            .into_iter()
            .filter(|v| v.active)
            .map(|v| v.record.patch.id)
            .collect()
    };
    assert_eq!(active(&narrow), ["DSA-5900-1"]);
    assert_eq!(active(&wide), ["DSA-5900-1", "FW-2026-0042", "KB5031455", "KB5032190", "KB5032300"]);
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn public_key(key: &SigningKey) -> String {
    format!("ed25519:{}", base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes()))
}

fn refused(store: &Store, request: &ImportRequest) -> Refusal {
    let before = digest(store);
    let revision = patchward::store::Store::wait(store.catalog_source(request.source)).unwrap().map(|s| s.revision);
    let refusal = match import(store, request) {
        Err(ImportError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(digest(store), before, "a refused feed changed the store ({refusal})");
    assert_eq!(
        patchward::store::Store::wait(store.catalog_source(request.source)).unwrap().map(|s| s.revision),
        revision
    );
    refusal
}

#[test]
fn tampered_stale_and_rolled_back_feeds_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = signing_key();
    let key_text = public_key(&key);
    let now = t("2026-06-01T00:00:00Z");
    let good = feed(5, "2026-12-01T00:00:00Z", &[("A", &[])]);
    let good_signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&good).to_bytes());
    let signed = |bytes: &'static [u8]| -> ImportRequest<'static> {
        let mut r = request("v", FeedFormat::Patchward, bytes, now);
        r.public_key = Some(Box::leak(key_text.clone().into_boxed_str()));
        r
    };
    let good: &'static [u8] = Box::leak(good.into_boxed_slice());
    let good_signature: &'static [u8] = Box::leak(good_signature.into_bytes().into_boxed_slice());
    let mut accepted = signed(good);
    accepted.signature = Some(good_signature);
    import(&store, &accepted).unwrap();

    // No signature, a signature over other bytes, another key's signature.
    assert!(matches!(refused(&store, &signed(good)), Refusal::Signature(reason) if reason.contains("no signature")));
    let mut tampered_bytes = good.to_vec();
    tampered_bytes[10] ^= 1;
    let tampered: &'static [u8] = Box::leak(tampered_bytes.into_boxed_slice());
    let mut r = signed(tampered);
    r.signature = Some(good_signature);
    assert!(matches!(refused(&store, &r), Refusal::Signature(_)));
    let other = SigningKey::from_bytes(&[9u8; 32]).sign(good).to_bytes();
    let mut r = signed(good);
    let other_signature: &'static [u8] = Box::leak(other.to_vec().into_boxed_slice());
    r.signature = Some(other_signature);
    assert!(matches!(refused(&store, &r), Refusal::Signature(_)));

    // A pinned sha256 that the bytes do not have.
    let mut r = request("v", FeedFormat::Patchward, good, now);
    r.pinned_sha256 = Some("00".repeat(32).leak());
    assert!(matches!(refused(&store, &r), Refusal::Hash { .. }));

    // Rollback: a lower revision; a rewrite: the same revision, other bytes.
    let older = feed(4, "2026-12-01T00:00:00Z", &[("A", &[]), ("Z", &[])]);
    assert_eq!(
        refused(&store, &request("v", FeedFormat::Patchward, &older, now)),
        Refusal::Rollback { offered: 4, in_force: 5 }
    );
    let rewritten = feed(5, "2026-12-01T00:00:00Z", &[("Z", &[])]);
    assert_eq!(
        refused(&store, &request("v", FeedFormat::Patchward, &rewritten, now)),
        Refusal::Rewritten { revision: 5 }
    );

    // Freeze: a newer revision that has already expired.
    let expired = feed(6, "2026-05-31T00:00:00Z", &[("A", &[])]);
    assert!(matches!(refused(&store, &request("v", FeedFormat::Patchward, &expired, now)), Refusal::Expired { .. }));

    // Malformed and oversized feeds.
    assert!(matches!(
        refused(&store, &request("v", FeedFormat::Patchward, b"{\"revision\": 9", now)),
        Refusal::Invalid { .. }
    ));
    let mut small = request("v", FeedFormat::Patchward, good, now);
    small.limits = FeedLimits { max_bytes: 10, ..FeedLimits::default() };
    assert!(matches!(refused(&store, &small), Refusal::TooLarge { .. }));
    let duplicate = feed(7, "2026-12-01T00:00:00Z", &[("A", &[]), ("A", &[])]);
    assert!(
        matches!(refused(&store, &request("v", FeedFormat::Patchward, &duplicate, now)), Refusal::Invalid { reason, .. } if reason.contains("twice"))
    );

    // Raw 64-byte signatures are accepted as well as base64.
    let next = feed(6, "2026-12-01T00:00:00Z", &[("A", &[]), ("B", &[])]);
    let raw = key.sign(&next).to_bytes();
    let mut r = request("v", FeedFormat::Patchward, &next, now);
    r.public_key = Some(&key_text);
    r.signature = Some(&raw);
    assert_eq!(import(&store, &r).unwrap().revision, 6);
}

#[test]
fn a_feed_past_its_expiry_with_nothing_newer_is_stale_never_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = feed(1, "2026-02-01T00:00:00Z", &[("A", &[])]);
    import(&store, &request("v", FeedFormat::Patchward, &bytes, t("2026-01-15T00:00:00Z"))).unwrap();
    assert_eq!(record_not_modified(&store, "v", t("2026-01-20T00:00:00Z")).unwrap(), Freshness::Fresh);
    // The server keeps answering 304; time passes the expiry.
    for day in ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2027-01-01T00:00:00Z"] {
        assert_eq!(
            record_not_modified(&store, "v", t(day)).unwrap(),
            Freshness::Stale { revision: 1, expired_at: t("2026-02-01T00:00:00Z") }
        );
    }
    assert_eq!(
        patchward::store::Store::wait(store.catalog_source("v")).unwrap().unwrap().checked_at,
        t("2027-01-01T00:00:00Z")
    );
    assert_eq!(record_not_modified(&store, "never-synced", t("2026-01-20T00:00:00Z")).unwrap(), Freshness::Unknown);
}

#[test]
fn csaf_and_osv_advisories_add_up_one_file_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let osv = |id: &str, modified: &str| {
        serde_json::to_vec(&serde_json::json!({"id": id, "modified": modified, "summary": "Low: x",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2"}]}]}]}))
        .unwrap()
    };
    let newer = osv("OSV-2", "2026-03-01T00:00:00Z");
    let older = osv("OSV-1", "2026-01-01T00:00:00Z");
    for bytes in [&newer, &older] {
        let mut r = request("osv", FeedFormat::Osv, bytes, t("2026-04-01T00:00:00Z"));
        r.mode = ImportMode::Merge;
        import(&store, &r).unwrap();
    }
    let ids: Vec<String> = all(&store).into_iter().map(|v| v.record.patch.id).collect();
    assert_eq!(ids, ["OSV-1", "OSV-2"]);
    assert_eq!(
        patchward::store::Store::wait(store.catalog_source("osv")).unwrap().unwrap().revision,
        jiff::Timestamp::from_second(1772323200).unwrap().as_second() as u64
    );
}
