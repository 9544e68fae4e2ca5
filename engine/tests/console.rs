//! The console through the router in process (`oneshot`): sign-in for
//! admins and users, the session cookie's flags, failures rate-limited,
//! CSRF, expiry, the user confined to their own device, and the figures
//! against the admin API's JSON. The browser drives the same pages in
//! `tests/tests/console_browser.rs`.

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
use tower::ServiceExt as _;

mod support;
use support::{copy_dir, example_in_force, workspace_root as root};

const ADMIN: &str = "pwa_console-admin-token-0123456789";
const USER: &str = "pwu_console-user-token-0123456789";

struct Console {
    state: Arc<ApiState>,
    clock: Arc<FakeClock>,
    /// The enrolled devices' agent credentials, by hostname.
    credentials: Vec<(String, String)>,
}

/// An engine on the shipped policy and the example feed, with two
/// enrolled devices and a user token bound to the first.
async fn console(dir: &std::path::Path) -> Console {
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let store = Arc::new(Store::open(&dir.join("data")).unwrap());
    patchward::store::Store::wait(
        store
            .create_enrollment_token("pwe_team", &EnrollmentToken { uses_left: 10, expires_at: None, created_at: now }),
    )
    .unwrap();
    let token = |role, device: Option<&str>, expires_at| AccessToken {
        role,
        device: device.map(str::to_owned),
        expires_at,
        created_at: now,
        revoked: false,
    };
    patchward::store::Store::wait(store.create_access_token(ADMIN, &token(Role::Admin, None, None))).unwrap();
    patchward::store::Store::wait(store.create_access_token(USER, &token(Role::User, Some("ws-0042"), None))).unwrap();
    // The shipped policy, and an Approval that puts one patch under a
    // prompting policy (three snoozes), so the portal has one to snooze.
    let policies = dir.join("policies");
    copy_dir(&root().join("policies"), &policies);
    std::fs::write(
        policies.join("approvals/console-test.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {name: prompt-for-two}\n\
         spec: {patches: [KB5033001, NPP-8.7.1], scopes: [all], policy: workstation-prompt}\n",
    )
    .unwrap();
    // 7-Zip under a policy that offers nothing on demand: only the
    // assignment's own selfService makes it installable from the portal.
    let seven_zip = policies.join("software/7zip.yaml");
    let text = std::fs::read_to_string(&seven_zip).unwrap();
    assert!(text.contains("policy: workstation-prompt\n  selfService: true"), "{text}");
    std::fs::write(
        &seven_zip,
        text.replace(
            "policy: workstation-prompt\n  selfService: true",
            "policy: workstation-idle\n  selfService: true",
        ),
    )
    .unwrap();
    let in_force = example_in_force(&policies, now);
    // The same feed in the store, as a sync leaves it: the catalog view's.
    let feed = std::fs::read(root().join("examples/plan/feed.json")).unwrap();
    let request = patchward::catalog::ImportRequest::snapshot(
        "bundled",
        patchward::policy::model::FeedFormat::Patchward,
        &feed,
        now,
    );
    let (change, _) =
        patchward::catalog::plan_import(&patchward::catalog::CatalogSnapshot::default(), &request).unwrap();
    patchward::store::Store::wait(store.commit_catalog(change)).unwrap();
    let clock = Arc::new(FakeClock::new(now));
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let engine = Arc::new(Engine::new(store, key, clock.clone(), EngineSettings::default()));
    engine.install(in_force).unwrap();
    let blobs = Arc::new(BlobStore::open(&dir.join("blobs")).unwrap());
    let state = Arc::new(ApiState::new(engine, blobs, Limits::default(), None));
    let mut console = Console { state, clock, credentials: Vec::new() };
    for (host, ip) in [("ws-0042", "10.20.1.42"), ("ws-0077", "10.20.1.77")] {
        let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
            "language": "en-US", "hostname": host, "labels": {"role": "workstation"}, "ip": ip});
        let enroll = serde_json::json!({"facts": facts.clone()});
        let reply = console.send(json_request("POST", "/api/v1/enroll", "pwe_team", enroll)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        // Its first inventory, as an agent sends it: the device is planned.
        let credential = reply.json()["credential"].as_str().unwrap().to_owned();
        let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
        let reply = console.send(json_request("PUT", "/api/v1/device/inventory", &credential, inventory)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        console.credentials.push((host.to_owned(), credential));
    }
    console
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

fn json_request(method: &str, path: &str, token: &str, body: serde_json::Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn form(path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Request<Body> {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, "127.0.0.1:8420")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(body)).unwrap()
}

fn page(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

impl Console {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = router(Arc::clone(&self.state)).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn api(&self, path: &str, token: &str) -> serde_json::Value {
        self.api_reply(path, token).await.json()
    }

    async fn api_reply(&self, path: &str, token: &str) -> Reply {
        let request = Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    /// Signs in with `token`: the session cookie (`name=value`) and where
    /// the sign-in sent the browser.
    async fn sign_in(&self, token: &str) -> (String, String) {
        let reply = self.send(form("/signin", None, &[("token", token)])).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
        let cookie = reply.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
        (cookie.split(';').next().unwrap().to_owned(), reply.location().unwrap().to_owned())
    }

    /// The CSRF token a page's forms carry.
    async fn csrf(&self, cookie: &str, path: &str) -> String {
        let reply = self.send(page(path, Some(cookie))).await;
        let marker = "name=\"csrf\" value=\"";
        let start =
            reply.text.find(marker).unwrap_or_else(|| panic!("no CSRF field on {path}: {}", reply.text)) + marker.len();
        reply.text[start..].split('"').next().unwrap().to_owned()
    }
}

#[tokio::test]
async fn an_admin_signs_in_with_a_token_for_an_http_only_strict_expiring_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let unsigned = console.send(page("/console", None)).await;
    assert_eq!((unsigned.status, unsigned.location()), (StatusCode::SEE_OTHER, Some("/signin")));

    let reply = console.send(form("/signin", None, &[("token", ADMIN)])).await;
    assert_eq!((reply.status, reply.location()), (StatusCode::SEE_OTHER, Some("/console")));
    let cookie = reply.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains(ADMIN), "the token itself never goes to the browser");
    let session = cookie.split(';').next().unwrap();
    let home = console.send(page("/console", Some(session))).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    for header in [header::CONTENT_SECURITY_POLICY, header::X_FRAME_OPTIONS] {
        assert!(home.headers.contains_key(&header), "{header}");
    }
    assert_eq!(home.headers[header::CACHE_CONTROL], "no-store");
    // Every asset is the engine's own: no CDN, no external font.
    assert!(!home.text.contains("http://") && !home.text.contains("https://"), "{}", home.text);
    let css = console.send(page("/assets/console.css", None)).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(!css.text.contains("url(") && !css.text.contains("@import"));
}

#[tokio::test]
async fn a_wrong_token_says_so_and_repeated_failures_wait() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let reply = console.send(form("/signin", None, &[("token", "pwa_guess")])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.text.contains("not an admin or user token of this engine"), "{}", reply.text);
    assert!(!reply.headers.contains_key(header::SET_COOKIE));
    for _ in 1..5 {
        console.send(form("/signin", None, &[("token", "pwa_guess")])).await;
    }
    // The fifth failure makes the client wait, even with the right token.
    let blocked = console.send(form("/signin", None, &[("token", ADMIN)])).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{}", blocked.text);
    assert!(blocked.text.contains("Too many failed sign-ins"), "{}", blocked.text);
    assert_eq!(blocked.headers[header::RETRY_AFTER], "60");
    console.clock.advance(jiff::SignedDuration::from_secs(61));
    let (_, to) = console.sign_in(ADMIN).await;
    assert_eq!(to, "/console");
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_or_from_another_origin_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let (cookie, _) = console.sign_in(ADMIN).await;
    let audit_before = console.api("/api/v1/audit", ADMIN).await["entries"].as_array().unwrap().len();
    for fields in [vec![("csrf", "forged")], vec![("csrf", "")]] {
        let reply = console.send(form("/console/sync", Some(&cookie), &fields)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        assert!(reply.text.contains("CSRF"), "{}", reply.text);
    }
    let csrf = console.csrf(&cookie, "/console/status").await;
    let mut cross = form("/console/sync", Some(&cookie), &[("csrf", &csrf)]);
    cross.headers_mut().insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(console.send(cross).await.status, StatusCode::FORBIDDEN);
    let entries = console.api("/api/v1/audit", ADMIN).await["entries"].as_array().unwrap().clone();
    // The API reads themselves are audited; no sync was requested.
    assert!(entries[audit_before..].iter().all(|e| e["action"] != "sync.requested"), "{entries:?}");

    let reply = console.send(form("/console/sync", Some(&cookie), &[("csrf", &csrf)])).await;
    assert_eq!((reply.status, reply.location()), (StatusCode::SEE_OTHER, Some("/console/status?done=Sync+requested.")));
    let entries = console.api("/api/v1/audit", ADMIN).await["entries"].as_array().unwrap().clone();
    assert!(entries.iter().any(|e| e["action"] == "sync.requested" && e["detail"]["via"] == "console"));
}

#[tokio::test]
async fn a_session_expires_and_the_sign_in_page_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let (cookie, _) = console.sign_in(ADMIN).await;
    console.clock.advance(jiff::SignedDuration::from_hours(8));
    let reply = console.send(page("/console/devices", Some(&cookie))).await;
    assert_eq!((reply.status, reply.location()), (StatusCode::SEE_OTHER, Some("/signin?expired=1")));
    let signin = console.send(page("/signin?expired=1", None)).await;
    assert!(signin.text.contains("Your session expired"), "{}", signin.text);
    // A form posted with the expired session does nothing either.
    let reply = console.send(form("/console/sync", Some(&cookie), &[("csrf", "x")])).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_user_sees_only_their_device_and_snoozes_within_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let (cookie, to) = console.sign_in(USER).await;
    assert_eq!(to, "/portal");
    let portal = console.send(page("/portal", Some(&cookie))).await;
    assert_eq!(portal.status, StatusCode::OK, "{}", portal.text);
    assert!(portal.text.contains("ws-0042"));
    assert!(!portal.text.contains("ws-0077"), "nothing of another device");
    for path in ["/console", "/console/devices", "/console/devices/ws-0077", "/console/audit"] {
        let reply = console.send(page(path, Some(&cookie))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!reply.text.contains("ws-0077"), "{path}");
    }

    // The portal shows what the user API says, and snoozes through it.
    let user = console.api("/api/v1/user/device", USER).await;
    let pending = user["pending"].as_array().unwrap();
    assert!(portal.text.contains(&format!("id=\"pending-count\">{}<", pending.len())), "{}", portal.text);
    let item = pending
        .iter()
        .find(|i| i["snoozesLeft"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("a snoozable item: {user}"));
    let patch = item["patch"].as_str().unwrap();
    let left = item["snoozesLeft"].as_u64().unwrap();
    let csrf = console.csrf(&cookie, "/portal").await;
    let forged = console.send(form("/portal/snooze", Some(&cookie), &[("csrf", "forged"), ("item", patch)])).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let reply = console.send(form("/portal/snooze", Some(&cookie), &[("csrf", &csrf), ("item", patch)])).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location().unwrap().starts_with("/portal?done="), "{:?}", reply.location());
    let after = console.api("/api/v1/user/device", USER).await;
    let snoozed = after["pending"].as_array().unwrap().iter().find(|i| i["patch"] == patch).unwrap();
    assert_eq!(snoozed["snoozesLeft"].as_u64(), Some(left - 1), "the API shows the snooze");
    let audit = console.api("/api/v1/audit", ADMIN).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user.snooze" && e["actor"] == "user:ws-0042")
    );

    // The other device's item cannot be named through the portal.
    let other = console.api("/api/v1/devices/ws-0077", ADMIN).await;
    let theirs = other["items"][0]["patch"].as_str().unwrap().to_owned();
    if !after["pending"].as_array().unwrap().iter().any(|i| i["patch"] == theirs.as_str()) {
        let reply = console.send(form("/portal/snooze", Some(&cookie), &[("csrf", &csrf), ("item", &theirs)])).await;
        assert!(reply.location().unwrap().starts_with("/portal?error="), "{:?}", reply.location());
    }
}

/// Software assignments are items like patches: the admin's device view
/// and compliance count them, and the user installs one on demand from the
/// portal when its assignment (or its policy) says selfService, and no
/// other item.
#[tokio::test]
async fn a_user_installs_self_service_software_from_the_portal_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let device = console.api("/api/v1/devices/ws-0042", ADMIN).await;
    let items = device["items"].as_array().unwrap();
    let software = items.iter().find(|i| i["patch"] == "7zip@24.08").unwrap_or_else(|| panic!("{device}"));
    let picked: serde_json::Map<_, _> = ["category", "policy", "source", "status", "selfService"]
        .into_iter()
        .map(|key| (key.to_owned(), software[key].clone()))
        .collect();
    assert_eq!(
        serde_json::Value::Object(picked),
        serde_json::json!({"category": "software", "policy": "workstation-idle",
            "source": "assignment/7zip-on-windows-workstations", "status": "due", "selfService": true})
    );
    let compliance = console.api("/api/v1/compliance", ADMIN).await;
    assert_eq!(compliance["byCategory"]["software"]["due"], 2, "one per Windows workstation: {compliance}");

    // The agent is told the same: its policy, as sent, offers it on demand.
    let credential = &console.credentials.iter().find(|(host, _)| host == "ws-0042").unwrap().1;
    let reply = console.api_reply("/api/v1/device/desired-state", credential).await;
    let envelope: patchward_api::dsse::Envelope = serde_json::from_str(&reply.text).unwrap();
    let desired: patchward_api::desired::DesiredState = {
        use base64::Engine as _;
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(&envelope.payload).unwrap()).unwrap()
    };
    let sent = desired.items.iter().find(|i| i.patch == "7zip@24.08").unwrap();
    assert_eq!((sent.policy.name.as_str(), sent.policy.self_service), ("workstation-idle", true));

    let (cookie, _) = console.sign_in(USER).await;
    let portal = console.send(page("/portal", Some(&cookie))).await;
    let row_of = |patch: &str| -> String {
        let start = portal.text.find(&format!("data-patch=\"{patch}\"")).unwrap_or_else(|| panic!("{patch}"));
        portal.text[start..].split("</tr>").next().unwrap().to_owned()
    };
    assert!(row_of("7zip@24.08").contains("Install now"), "{}", row_of("7zip@24.08"));
    let user = console.api("/api/v1/user/device", USER).await;
    let fixed = user["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["selfService"] == false)
        .unwrap_or_else(|| panic!("an item not offered on demand: {user}"));
    let fixed = fixed["patch"].as_str().unwrap();
    assert!(!row_of(fixed).contains("Install now"), "{}", row_of(fixed));

    let csrf = console.csrf(&cookie, "/portal").await;
    let refused = console.send(form("/portal/install", Some(&cookie), &[("csrf", &csrf), ("item", fixed)])).await;
    let location = refused.location().unwrap();
    assert!(location.starts_with("/portal?error=") && location.contains("not+self-service"), "{location}");
    let accepted =
        console.send(form("/portal/install", Some(&cookie), &[("csrf", &csrf), ("item", "7zip@24.08")])).await;
    assert!(accepted.location().unwrap().starts_with("/portal?done="), "{:?}", accepted.location());
    let after = console.api("/api/v1/user/device", USER).await;
    let requests = after["requests"].as_array().unwrap();
    assert_eq!(
        requests.iter().map(|r| (r["item"].as_str().unwrap(), r["kind"].as_str().unwrap())).collect::<Vec<_>>(),
        [("7zip@24.08", "install")],
        "only the accepted request: {after}"
    );
    let audit = console.api("/api/v1/audit", ADMIN).await;
    let installs: Vec<_> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "user.install").collect();
    assert_eq!(installs.len(), 1, "{audit}");
    assert_eq!(installs[0]["detail"]["item"], "7zip@24.08");
}

/// The software library: each assignment's devices by status, as the API
/// counts them, drilling down to exactly those devices.
#[tokio::test]
async fn the_software_view_counts_each_assignments_devices_as_the_api_does() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let (cookie, _) = console.sign_in(ADMIN).await;
    let api = console.api("/api/v1/software", ADMIN).await;
    let assignment = &api["assignments"][0];
    assert_eq!(assignment["name"], "7zip-on-windows-workstations", "{api}");
    assert_eq!((&assignment["devices"]["due"], &assignment["devices"]["installed"]), (&2.into(), &0.into()));
    let version = &api["packages"].as_array().unwrap().iter().find(|p| p["name"] == "7zip").unwrap()["versions"];
    assert!(version.as_array().unwrap().iter().any(|v| v["version"] == "24.08"
        && v["assignments"] == serde_json::json!(["7zip-on-windows-workstations"])));

    let view = console.send(page("/console/software", Some(&cookie))).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    let row = view.text.split("data-assignment=\"7zip-on-windows-workstations\"").nth(1).unwrap();
    let row = row.split("</tr>").next().unwrap();
    let due_cell = row.split("class=\"num due\">").nth(1).unwrap();
    let marker = "href=\"";
    let href =
        due_cell[due_cell.find(marker).unwrap() + marker.len()..].split('"').next().unwrap().replace("&amp;", "&");
    assert!(due_cell.contains(&format!(">{}<", assignment["devices"]["due"])), "{row}");
    assert_eq!(href, "/console/devices?patch=7zip%4024.08&status=due");
    let listed = console.send(page(&href, Some(&cookie))).await;
    let api_listed = console.api("/api/v1/devices?patch=7zip%4024.08&status=due", ADMIN).await;
    assert_eq!(api_listed["total"], assignment["devices"]["due"]);
    assert_eq!(listed.text.matches("data-device=\"").count(), 2);
    for device in api_listed["devices"].as_array().unwrap() {
        assert_eq!(device["items"].as_array().unwrap().len(), 1, "only the one item: {device}");
    }
}

/// Every list view filters, sorts and exports CSV as its API twin does:
/// the same items in the same order, and the same CSV bytes.
#[tokio::test]
async fn every_list_view_filters_sorts_and_exports_as_its_api_twin() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    // Both devices report an install, so the time view has rows.
    for (n, (_, credential)) in console.credentials.iter().enumerate() {
        let events = serde_json::json!({"events": [{"seq": 1, "at": format!("2026-11-24T11:0{n}:00Z"), "kind": "report",
            "patch": "KB5033001", "status": "succeeded", "action": "install", "policy": "workstation-prompt"}]});
        let reply = console.send(json_request("POST", "/api/v1/device/events", credential, events)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let (cookie, _) = console.sign_in(ADMIN).await;
    // (console path, API path, the API's list, the field naming a row, the
    // attribute the console's rows carry it in).
    let cases = [
        ("/console/catalog", "/api/v1/catalog", "patches", "id", "data-patch"),
        ("/console/review", "/api/v1/review", "reviewQueue", "patch", "data-patch"),
        ("/console/rollouts", "/api/v1/rollouts", "rollouts", "patch", "data-patch"),
        ("/console/installed", "/api/v1/installed", "installed", "device", "data-device"),
        ("/console/software", "/api/v1/software", "assignments", "name", "data-assignment"),
    ];
    let queries = [
        ("catalog", "sort=cvss&order=desc"),
        ("catalog", "severity=high&sort=released"),
        ("catalog", "q=windows&sort=severity"),
        ("review", "sort=severity&order=desc"),
        ("review", "q=dsa&sort=patch"),
        ("rollouts", "sort=severity"),
        ("rollouts", "sort=patch&order=desc"),
        ("installed", "from=2026-11-24&to=2026-11-25&sort=device&order=desc"),
        ("installed", "from=2026-11-24&to=2026-11-25&q=0077"),
        ("software", "sort=name&order=desc"),
    ];
    let mut seen_rows = 0;
    for (view, query) in queries {
        let (path, api_path, list, field, attribute) = cases.iter().find(|c| c.0.ends_with(view)).unwrap();
        let api = console.api(&format!("{api_path}?{query}"), ADMIN).await;
        let expected: Vec<&str> = api[*list].as_array().unwrap().iter().map(|r| r[*field].as_str().unwrap()).collect();
        let shown_page = console.send(page(&format!("{path}?{query}"), Some(&cookie))).await;
        assert_eq!(shown_page.status, StatusCode::OK, "{path}?{query}: {}", shown_page.text);
        // The first table (or sections) of the page holds the list.
        let body = match view {
            "review" => shown_page.text.split("id=\"held\"").next().unwrap().to_owned(),
            "software" => shown_page.text.split("id=\"packages\"").next().unwrap().to_owned(),
            "installed" => shown_page.text.split("id=\"installed\"").nth(1).unwrap().to_owned(),
            _ => shown_page.text.clone(),
        };
        let marker = format!("{attribute}=\"");
        let shown: Vec<&str> = body.split(&marker).skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
        assert_eq!(shown, expected[..expected.len().min(50)], "{path}?{query}");
        seen_rows += shown.len();

        let csv = console.send(page(&format!("{path}?{query}&format=csv"), Some(&cookie))).await;
        let api_csv = console.api_reply(&format!("{api_path}?{query}&format=csv"), ADMIN).await;
        assert_eq!(csv.text, api_csv.text, "{path}?{query} as CSV");
        assert!(csv.text.lines().count() > 1 || expected.is_empty(), "{path}?{query}: {}", csv.text);
    }
    assert!(seen_rows > 20, "the cases list rows: {seen_rows}");
    let installed = console.api("/api/v1/installed?from=2026-11-24&to=2026-11-25&sort=device&order=desc", ADMIN).await;
    assert_eq!(installed["total"], 2);
    assert_eq!(installed["installed"][0]["device"], "ws-0077");
}

/// The audit view pages newest first by sequence number: following
/// "older" from the first page walks the whole log once, in order, with
/// the API's entries, and a filter pages the same way.
#[tokio::test]
async fn the_audit_log_pages_newest_first_through_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let at: jiff::Timestamp = "2026-11-24T12:30:00Z".parse().unwrap();
    for n in 0..230 {
        let actor = if n % 10 == 0 { "commit:Ada Admin <ada@example.com>" } else { "device:ws-0042" };
        patchward::store::Store::wait(console.state.engine.store.append_audit(
            at,
            actor,
            "test.entry",
            serde_json::json!({"n": n}),
        ))
        .unwrap();
    }
    let (cookie, _) = console.sign_in(ADMIN).await;
    let api = console.api("/api/v1/audit?limit=100000", ADMIN).await;
    let mut expected: Vec<u64> =
        api["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    expected.reverse();
    let (seen, pages) = walk_audit(&console, &cookie, "/console/audit?kind=all").await;
    assert!(expected.len() > 230 && pages == expected.len().div_ceil(100), "{pages} pages");
    assert_eq!(seen, expected, "every entry once, newest first, as the API has them");
    // By default the view shows changes: the admin's reads through the API
    // are recorded apart, and left out.
    let reads: Vec<u64> = api["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "api.read")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(!reads.is_empty(), "the API read above is recorded");
    let (changes, _) = walk_audit(&console, &cookie, "/console/audit").await;
    assert_eq!(changes.len(), expected.len() - reads.len());
    assert!(changes.iter().all(|seq| !reads.contains(seq)));
    let first = console.send(page("/console/audit", Some(&cookie))).await.text;
    let (newest, oldest) = (changes[0], changes[99]);
    let range = format!("#<span class=\"from\">{oldest}</span> to #<span class=\"to\">{newest}</span>");
    assert!(first.contains(&format!("100 entries shown, {range}")), "{first}");
    assert!(first.contains("<dt>n</dt><dd>229</dd>"), "details as fields: {first}");

    let (commits, _) = walk_audit(&console, &cookie, "/console/audit?actor=commit%3AAda&limit=7").await;
    let expected_commits: Vec<u64> = api["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["actor"].as_str().unwrap().contains("commit:Ada"))
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(commits.len(), 23);
    assert_eq!(commits, expected_commits);
}

/// Follows the audit view's "older" links from `first`: the sequence
/// numbers shown, in order, and how many pages it took.
async fn walk_audit(console: &Console, cookie: &str, first: &str) -> (Vec<u64>, usize) {
    let (mut seen, mut next, mut pages) = (Vec::new(), Some(first.to_owned()), 0);
    while let Some(path) = next {
        let reply = console.send(page(&path, Some(cookie))).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        let table = reply.text.split("id=\"audit\"").nth(1).unwrap();
        let seqs: Vec<u64> = table
            .split("<tr><td class=\"num\">")
            .skip(1)
            .map(|cell| cell.split('<').next().unwrap().parse().unwrap())
            .collect();
        assert!(seqs.len() <= 100 && !seqs.is_empty(), "{path}");
        seen.extend(seqs);
        let marker = "rel=\"next\" href=\"";
        next = reply
            .text
            .find(marker)
            .map(|i| reply.text[i + marker.len()..].split('"').next().unwrap().replace("&amp;", "&"));
        pages += 1;
    }
    (seen, pages)
}

#[tokio::test]
async fn the_compliance_and_device_views_show_the_admin_apis_figures() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let (cookie, _) = console.sign_in(ADMIN).await;
    let api = console.api("/api/v1/compliance", ADMIN).await;
    let view = console.send(page("/console", Some(&cookie))).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert!(view.text.contains(&format!("id=\"devices\">{}<", api["devices"])), "{}", view.text);
    assert!(view.text.contains(&format!("id=\"pending\">{}<", api["pending"])));
    assert!(view.text.contains(&format!("id=\"non-compliant\">{}<", api["nonCompliant"])));
    let percent = format!("id=\"compliant-percent\">{:.1}%<", api["compliantPercent"].as_f64().unwrap());
    assert!(view.text.contains(&percent), "{percent}");
    for (severity, counts) in api["bySeverity"].as_object().unwrap() {
        let row = format!("data-name=\"{severity}\"");
        assert!(view.text.contains(&row), "{severity}");
        assert!(view.text.contains(&format!(">{}<", counts["due"])));
    }

    let listed = console.send(page("/console/devices?sort=id&order=desc", Some(&cookie))).await;
    let first = listed.text.find("data-device=\"ws-0077\"").unwrap();
    let second = listed.text.find("data-device=\"ws-0042\"").unwrap();
    assert!(first < second, "sorted by id, descending");
    let device = console.api("/api/v1/devices/ws-0042", ADMIN).await;
    let page_text = console.send(page("/console/devices/ws-0042", Some(&cookie))).await.text;
    for item in device["items"].as_array().unwrap() {
        assert!(page_text.contains(&format!("data-patch=\"{}\"", item["patch"].as_str().unwrap())));
    }
    assert!(page_text.contains(&format!("data-compliance=\"{}\"", device["compliance"].as_str().unwrap())));
    // CSV export is the API's.
    let csv = console.send(page("/console/devices/ws-0042?format=csv", Some(&cookie))).await;
    let api_csv = console.api_reply("/api/v1/devices?format=csv", ADMIN).await;
    for line in csv.text.lines().skip(1) {
        assert!(api_csv.text.contains(line), "{line}");
    }
    // Paging: one device per page.
    let paged = console.send(page("/console/devices?limit=1&offset=1", Some(&cookie))).await;
    assert!(paged.text.contains("data-device=\"ws-0077\"") && !paged.text.contains("data-device=\"ws-0042\""));
    assert!(paged.text.contains("rel=\"prev\""));

    // Filters and sorting: the same devices, in the same order, and the
    // same total as the API's answer to the same query.
    for query in [
        "severity=critical",
        "category=software",
        "status=due&sort=pending&order=desc",
        "compliance=pending",
        "q=0077",
        "policy=workstation-idle&sort=id&order=desc",
        "severity=none-such",
        "sort=id&order=desc&limit=1&offset=1",
    ] {
        let api = console.api(&format!("/api/v1/devices?{query}"), ADMIN).await;
        let api_ids: Vec<&str> = api["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
        let view = console.send(page(&format!("/console/devices?{query}"), Some(&cookie))).await;
        let view_ids: Vec<&str> =
            view.text.split("data-device=\"").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
        assert_eq!(view_ids, api_ids, "{query}");
        if api["total"] != 0 {
            assert!(view.text.contains(&format!("class=\"total\">{}<", api["total"])), "{query}: {api}");
        }
    }
    let typo = console.api_reply("/api/v1/devices?severty=critical", ADMIN).await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    assert!(typo.text.contains("unknown parameter `severty`"), "{}", typo.text);
}

/// Every "Export CSV" link the console shows works from the console: with
/// the session cookie alone (no API token), it answers CSV whose cells
/// never start a formula.
#[tokio::test]
async fn every_export_link_of_the_console_answers_csv_to_the_signed_in_admin() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path()).await;
    let (cookie, _) = console.sign_in(ADMIN).await;
    let mut exports = Vec::new();
    for path in ["/console", "/console/devices", "/console/review", "/console/exposure", "/console/catalog"] {
        let reply = console.send(page(path, Some(&cookie))).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        for (at, _) in reply.text.match_indices(">Export CSV<") {
            let href = reply.text[..at].rsplit("href=\"").next().unwrap().split('"').next().unwrap();
            exports.push(href.replace("&amp;", "&"));
        }
    }
    assert!(exports.len() >= 4, "the console's exports: {exports:?}");
    for href in exports {
        assert!(href.starts_with("/console"), "{href} is a console route, not the API's");
        let reply = console.send(page(&href, Some(&cookie))).await;
        assert_eq!(reply.status, StatusCode::OK, "{href}: {}", reply.text);
        let kind = reply.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap();
        assert!(kind.starts_with("text/csv"), "{href}: {kind}");
        let cells = reply.text.lines().flat_map(|l| l.split(',')).map(|c| c.trim_start_matches('"'));
        assert!(cells.clone().all(|c| !c.starts_with(['=', '+', '-', '@', '\t', '\r'])), "{href}: {}", reply.text);
    }
}
