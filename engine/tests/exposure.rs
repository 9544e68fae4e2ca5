//! Exposure through the engine: which devices are exposed to a CVE and since
//! when, whatever the policy decided; the record of "since" surviving a
//! restart; remediation closing an exposure into the mean time to
//! remediate; the console's Exposure view and catalog column against the
//! admin API's JSON and CSV (one function behind both).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use patchward::api::{ApiState, router};
use patchward::clock::FakeClock;
use patchward::daemon::config::Limits;
use patchward::daemon::media::BlobStore;
use patchward::daemon::{Engine, EngineSettings};
use patchward::store::Store;
use patchward::store::fleet::{AccessToken, EnrollmentToken, Role};
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod support;
use support::in_force;

const ADMIN: &str = "pwa_exposure-admin-token-0123456789";
const CVE: &str = "CVE-2024-6232";

/// Ubuntu's USN-7015-1 as it reaches the catalog: a source fix naming its
/// binaries, no download. And a Debian-style source fix nothing approves.
fn feed() -> Value {
    json!({"revision": 1, "generatedAt": "2026-11-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": [
        {"id": "USN-7015-1", "title": "Python vulnerabilities", "vendor": "Canonical", "product": "python3.8",
         "category": "security", "severity": "high", "cves": [CVE, "CVE-2024-4030"], "released": "2026-11-01T00:00:00Z",
         "applicability": {"platforms": ["ubuntu-20.04"]},
         "fixes": [{"manager": "dpkg", "package": "python3.8", "fixedVersion": "3.8.10-0ubuntu1~20.04.12",
                    "platform": "ubuntu-20.04", "kind": "source",
                    "binaries": ["libpython3.8-minimal", "libpython3.8-stdlib", "python3.8"]}]},
        {"id": "DSA-5800-1", "title": "util-linux security update", "vendor": "Debian", "product": "util-linux",
         "category": "security", "released": "2026-11-01T00:00:00Z", "cves": ["CVE-2024-28085"],
         "fixes": [{"manager": "dpkg", "package": "util-linux", "fixedVersion": "2.38.1-5+deb12u3", "kind": "source"}]}
    ]})
}

/// Approves high severity for the pilot ring only, so the production device
/// is exposed but unmatched, and the unrated Debian fix is unmatched.
const POLICY: &str = "apiVersion: patchward.dev/v1
kind: Scope
metadata: {name: pilot}
spec: {selector: 'device.labels[\"ring\"] == \"pilot\"'}
---
apiVersion: patchward.dev/v1
kind: DeploymentPolicy
metadata: {name: fast}
spec: {mode: immediate}
---
apiVersion: patchward.dev/v1
kind: ApprovalRule
metadata: {name: high-pilot}
spec: {match: 'patch.severity == \"high\"', action: approve, stages: [{scope: pilot, policy: fast}]}
";

struct Fixture {
    state: Arc<ApiState>,
    clock: Arc<FakeClock>,
}

impl Fixture {
    /// An engine on `dir`'s store (made on first use), with the policy and
    /// feed in force.
    fn start(dir: &Path, now: jiff::Timestamp) -> Fixture {
        let store = Arc::new(Store::open(&dir.join("data")).unwrap());
        let feed = serde_json::to_vec(&feed()).unwrap();
        if patchward::store::Store::wait(store.catalog_sources()).unwrap().is_empty() {
            let at = "2026-11-01T00:00:00Z".parse().unwrap();
            let token =
                AccessToken { role: Role::Admin, device: None, expires_at: None, created_at: at, revoked: false };
            patchward::store::Store::wait(store.create_access_token(ADMIN, &token)).unwrap();
            let enrollment = EnrollmentToken { uses_left: 10, expires_at: None, created_at: at };
            patchward::store::Store::wait(store.create_enrollment_token("pwe_exposure", &enrollment)).unwrap();
            let request = patchward::catalog::ImportRequest::snapshot(
                "bundled",
                patchward::policy::model::FeedFormat::Patchward,
                &feed,
                at,
            );
            let snapshot = patchward::catalog::CatalogSnapshot::default();
            patchward::store::Store::wait(
                store.commit_catalog(patchward::catalog::plan_import(&snapshot, &request).unwrap().0),
            )
            .unwrap();
        }
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("policy.yaml"), POLICY).unwrap();
        let clock = Arc::new(FakeClock::new(now));
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let engine = Arc::new(Engine::new(store, key, clock.clone(), EngineSettings::default()));
        // The catalog as the store keeps it: first seen at its import.
        let imported = "2026-11-01T00:00:00Z".parse().unwrap();
        engine.install(in_force(&policies, &feed, imported)).unwrap();
        let blobs = Arc::new(BlobStore::open(&dir.join("blobs")).unwrap());
        Fixture { state: Arc::new(ApiState::new(engine, blobs, Limits::default(), None)), clock }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = router(Arc::clone(&self.state)).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        self.send(request).await
    }

    async fn api(&self, path: &str) -> Value {
        let (status, text) = self.call("GET", path, ADMIN, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Enrolls a device and uploads its first inventory; its credential.
    async fn enroll(&self, host: &str, facts: Value, packages: Value) -> String {
        let (status, text) = self.call("POST", "/api/v1/enroll", "pwe_exposure", Some(json!({"facts": facts}))).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let credential = serde_json::from_str::<Value>(&text).unwrap()["credential"].as_str().unwrap().to_owned();
        self.inventory(&credential, facts, packages).await;
        assert!(!host.is_empty());
        credential
    }

    async fn inventory(&self, credential: &str, facts: Value, packages: Value) {
        let body = json!({"facts": facts, "inventory": {"patches": [], "packages": packages}});
        let (status, text) = self.call("PUT", "/api/v1/device/inventory", credential, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }

    /// A console page, signed in as the admin.
    async fn console(&self, path: &str) -> String {
        let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("token", ADMIN).finish();
        let signin = Request::builder()
            .method("POST")
            .uri("/signin")
            .header(header::HOST, "127.0.0.1:8420")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let response = router(Arc::clone(&self.state)).oneshot(signin).await.unwrap();
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        let request = Request::builder().uri(path).header(header::COOKIE, cookie).body(Body::empty()).unwrap();
        let (status, text) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        text
    }
}

fn focal(host: &str, ring: &str) -> Value {
    json!({"os": "linux", "platform": "ubuntu-20.04", "arch": "x86_64", "hostname": host, "labels": {"ring": ring}})
}

/// The binaries-only device of issue 14, as a new agent reports it.
fn python(version: &str) -> Value {
    json!([
        {"manager": "dpkg", "name": "libpython3.8-minimal", "version": version, "arch": "amd64", "source": "python3.8"},
        {"manager": "dpkg", "name": "libpython3.8-stdlib", "version": version, "arch": "amd64", "source": "python3.8"}
    ])
}

/// The values of `attribute` on the page's exposure table rows.
fn row_attributes(html: &str, attribute: &str) -> Vec<String> {
    let table = html.split("<table id=\"exposure\"").nth(1).unwrap_or("");
    let marker = format!("{attribute}=\"");
    table.split(&marker).skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn which_devices_are_exposed_to_a_cve_and_since_when() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled_at: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let fixture = Fixture::start(dir.path(), enrolled_at);
    let vulnerable = "3.8.10-0ubuntu1~20.04.11";
    let pilot = fixture.enroll("pilot-1", focal("pilot-1", "pilot"), python(vulnerable)).await;
    fixture.enroll("prod-1", focal("prod-1", "production"), python(vulnerable)).await;
    let prod_2 = fixture.enroll("prod-2", focal("prod-2", "production"), python("3.8.10-0ubuntu1~20.04.12")).await;
    let bookworm = json!({"os": "linux", "platform": "debian-12", "hostname": "deb-1"});
    let util_linux = json!([{"manager": "dpkg", "name": "bsdutils", "version": "1:2.38.1-5+deb12u1", "arch": "amd64",
        "source": "util-linux", "sourceVersion": "2.38.1-5+deb12u1"}]);
    fixture.enroll("deb-1", bookworm, util_linux).await;

    // Whatever the policy decided: approved in the pilot, unmatched in production.
    let exposed = fixture.api(&format!("/api/v1/exposure?cve={}", CVE.to_lowercase())).await;
    assert_eq!(exposed["total"], 2, "{exposed}");
    let rows = exposed["exposure"].as_array().unwrap();
    let devices: Vec<&str> = rows.iter().map(|r| r["device"].as_str().unwrap()).collect();
    let ids = fixture.api("/api/v1/devices").await;
    let id_of = |host: &str| {
        ids["devices"].as_array().unwrap().iter().find(|d| d["facts"]["hostname"] == host).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (pilot_id, prod_id) = (id_of("pilot-1"), id_of("prod-1"));
    let mut expected = vec![pilot_id.as_str(), prod_id.as_str()];
    expected.sort();
    assert_eq!(devices, expected);
    for row in rows {
        assert_eq!(row["patch"], "USN-7015-1");
        assert_eq!(row["since"], "2026-11-24T12:00:00Z");
        assert_eq!(
            (row["severity"].as_str(), row["target"].as_str(), row["overdue"].as_bool()),
            (Some("high"), Some("2d"), Some(false))
        );
        let decision = if row["device"] == pilot_id.as_str() { "approved" } else { "unmatched" };
        assert_eq!(row["decision"], decision, "{row}");
    }
    // The unrated Debian advisory: exposed through a binary with an epoch.
    let debian = fixture.api("/api/v1/exposure?patch=DSA-5800-1").await;
    assert_eq!((debian["total"].as_u64(), debian["exposure"][0]["severity"].as_str()), (Some(1), Some("unrated")));

    // Three days on, with a restart in between: the exposure is as old as
    // it was, so overdue against its 48 hours.
    drop(fixture);
    let later = enrolled_at.checked_add(jiff::SignedDuration::from_hours(72)).unwrap();
    let fixture = Fixture::start(dir.path(), later);
    let overdue = fixture.api(&format!("/api/v1/exposure?cve={CVE}&overdue=true")).await;
    assert_eq!(overdue["total"], 2, "{overdue}");
    assert_eq!(overdue["exposure"][0]["since"], "2026-11-24T12:00:00Z");
    let approved = fixture.api(&format!("/api/v1/exposure?cve={CVE}&decision=approved")).await;
    assert_eq!(approved["exposure"].as_array().unwrap().len(), 1);
    let refused = fixture.call("GET", "/api/v1/exposure?decision=maybe", ADMIN, None).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{}", refused.1);

    // The console's Exposure view shows the same rows, and exports the same CSV.
    let page = fixture.console(&format!("/console/exposure?cve={CVE}")).await;
    assert_eq!(row_attributes(&page, "data-device"), expected, "{page}");
    assert!(page.contains("2026-11-24T12:00:00Z"), "since is on the page");
    let api_csv = fixture.call("GET", &format!("/api/v1/exposure?cve={CVE}&format=csv"), ADMIN, None).await.1;
    let console_csv = fixture.console(&format!("/console/exposure?cve={CVE}&format=csv")).await;
    assert_eq!(api_csv, console_csv);
    assert!(api_csv.starts_with("device,patch,title,cves,severity,cvss,decision,reason,since,target,overdue\n"));
    // The catalog says how many devices miss each patch.
    let catalog = fixture.api("/api/v1/catalog").await;
    let missing =
        |id: &str| catalog["patches"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap()["missing"].clone();
    assert_eq!((missing("USN-7015-1"), missing("DSA-5800-1")), (json!(2), json!(1)));
    let catalog_page = fixture.console("/console/catalog").await;
    assert!(catalog_page.contains("/console/exposure?patch=USN-7015-1"), "the count links to its exposure");

    // The pilot device upgrades: its exposure closes after three days.
    fixture.clock.set(later);
    let pilot_fixed = python("3.8.10-0ubuntu1~20.04.12");
    fixture.inventory(&pilot, focal("pilot-1", "pilot"), pilot_fixed).await;
    let compliance = fixture.api("/api/v1/compliance").await;
    let exposure = &compliance["exposure"];
    assert_eq!(exposure["exposures"], 2, "{compliance}");
    assert_eq!(exposure["overdue"], 1, "prod-1's USN is overdue; the Debian advisory (unrated, 7d) is not");
    assert_eq!(exposure["overduePercent"], 50.0);
    assert_eq!((exposure["remediated"].as_u64(), exposure["meanTimeToRemediate"].as_str()), (Some(1), Some("3d")));
    let home = fixture.console("/console").await;
    assert!(home.contains("id=\"mttr\">3d<"), "{home}");

    // prod-2 was fixed from the start; rolled back now, it is exposed
    // since now, not since it enrolled.
    fixture.inventory(&prod_2, focal("prod-2", "production"), python(vulnerable)).await;
    let rolled_back = fixture.api(&format!("/api/v1/exposure?cve={CVE}&device=prod-2")).await;
    assert_eq!(rolled_back["exposure"][0]["since"], later.to_string(), "{rolled_back}");
    assert_eq!(rolled_back["exposure"][0]["overdue"], false);
}
