//! The agent and admin API through the router in process (`oneshot`):
//! enrollment, inventory, the signed desired state with ETag and 304,
//! events recorded once, and the authentication matrix (T27, T28 in part).

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
use support::{example_in_force, workspace_root as root};

const ADMIN: &str = "pwa_admin-token-for-tests-0123456789";

fn state(dir: &std::path::Path, in_force: bool) -> Arc<ApiState> {
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    state_on(dir, in_force, Arc::new(FakeClock::new(now)))
}

fn state_on(dir: &std::path::Path, in_force: bool, clock: Arc<FakeClock>) -> Arc<ApiState> {
    let now = patchward::clock::Clock::now(&*clock);
    let store = Arc::new(Store::open(dir).unwrap());
    for (token, uses) in [("pwe_single", 1), ("pwe_team", 10)] {
        patchward::store::Store::wait(
            store.create_enrollment_token(
                token,
                &EnrollmentToken { uses_left: uses, expires_at: None, created_at: now },
            ),
        )
        .unwrap();
    }
    patchward::store::Store::wait(store.create_access_token(
        ADMIN,
        &AccessToken { role: Role::Admin, device: None, expires_at: None, created_at: now, revoked: false },
    ))
    .unwrap();
    let in_force = in_force.then(|| example_in_force(&root().join("policies"), now));
    let settings =
        EngineSettings { desired_ttl: jiff::SignedDuration::from_hours(24 * 7), ..EngineSettings::default() };
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let engine = Arc::new(Engine::new(store, key, clock, settings));
    if let Some(in_force) = in_force {
        engine.install(in_force).unwrap();
    }
    let blobs = Arc::new(BlobStore::open(&dir.join("blobs")).unwrap());
    Arc::new(ApiState::new(engine, blobs, Limits::default(), None))
}

/// The generation an ETag names (`"GENERATION-ISSUED"`).
fn generation_of(etag: Option<&str>) -> Option<u64> {
    etag?.trim_matches('"').split('-').next()?.parse().ok()
}

struct Reply {
    status: StatusCode,
    etag: Option<String>,
    json: serde_json::Value,
}

async fn call(
    state: &Arc<ApiState>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    if_none_match: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let request = match body {
        Some(body) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router(Arc::clone(state)).oneshot(request).await.unwrap();
    let status = response.status();
    let etag = response.headers().get(header::ETAG).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Reply { status, etag, json }
}

async fn enroll(state: &Arc<ApiState>, token: &str, facts: serde_json::Value) -> (String, String) {
    let reply =
        call(state, "POST", "/api/v1/enroll", Some(token), Some(serde_json::json!({"facts": facts})), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    (reply.json["deviceId"].as_str().unwrap().to_owned(), reply.json["credential"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_agent_enrolls_reports_and_receives_its_signed_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), true);
    assert_eq!(call(&state, "GET", "/healthz", None, None, None).await.status, StatusCode::OK);
    assert_eq!(call(&state, "GET", "/readyz", None, None, None).await.status, StatusCode::OK);

    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64", "language": "en-US",
        "hostname": "ws-0042", "labels": {"role": "workstation"}, "ip": "10.20.1.42"});
    let reply =
        call(&state, "POST", "/api/v1/enroll", Some("pwe_single"), Some(serde_json::json!({"facts": facts})), None)
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["deviceId"], "ws-0042", "named by its hostname");
    let credential = reply.json["credential"].as_str().unwrap().to_owned();
    let engine_key = patchward_api::dsse::parse_public_key(reply.json["engineKey"].as_str().unwrap()).unwrap();
    // A single-use token is spent.
    let again =
        call(&state, "POST", "/api/v1/enroll", Some("pwe_single"), Some(serde_json::json!({"facts": {}})), None).await;
    assert_eq!((again.status, again.json["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": ["KB5031455"], "packages": []}});
    let reply = call(&state, "PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory), None).await;
    assert_eq!((reply.status, reply.json["generation"].as_u64()), (StatusCode::OK, Some(1)));

    let reply = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, None).await;
    assert_eq!((reply.status, generation_of(reply.etag.as_deref())), (StatusCode::OK, Some(1)));
    let first_tag = reply.etag.clone().unwrap();
    let envelope: patchward_api::dsse::Envelope = serde_json::from_value(reply.json).unwrap();
    let body = patchward_api::dsse::verify(&envelope, patchward_api::dsse::DESIRED_STATE_TYPE, &engine_key).unwrap();
    let desired: patchward_api::desired::DesiredState = serde_json::from_slice(&body).unwrap();
    assert_eq!((desired.device.as_str(), desired.generation, desired.catalog_revision), ("ws-0042", 1, 3));
    assert_eq!(desired.mirrors, ["http://ip-hel-01:8080/blobs"]);
    let shown = call(&state, "GET", "/api/v1/devices/ws-0042", Some(ADMIN), None, None).await;
    assert_eq!((&shown.json["location"], &shown.json["facts"]["ip"]), (&"helsinki".into(), &"10.20.1.42".into()));
    assert!(desired.items.iter().any(|i| i.patch == "KB5032190"), "{:?}", desired.items);

    // Unchanged: 304 with the same tag.
    let reply = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, Some(&first_tag)).await;
    assert_eq!((reply.status, reply.etag.as_deref()), (StatusCode::NOT_MODIFIED, Some(first_tag.as_str())));
    // The device installed the update: its state changes, so does the tag.
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": ["KB5032190"], "packages": []}});
    let reply = call(&state, "PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory), None).await;
    assert_eq!(reply.json["generation"].as_u64(), Some(2));
    let reply = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, Some(&first_tag)).await;
    assert_eq!((reply.status, generation_of(reply.etag.as_deref())), (StatusCode::OK, Some(2)));
}

/// A desired-state answer with its headers and raw bytes.
async fn desired_raw(state: &Arc<ApiState>, credential: &str, headers: &[(&str, &str)]) -> axum::response::Response {
    let mut request = Request::builder().uri("/api/v1/device/desired-state");
    request = request.header(header::AUTHORIZATION, format!("Bearer {credential}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    router(Arc::clone(state)).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}

/// States are held gzipped: an agent that accepts gzip gets them so, with
/// their own ETag; any other client the same JSON inflated; an agent
/// holding either ETag is answered 304.
#[tokio::test]
async fn the_desired_state_is_sent_gzipped_to_a_client_that_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), true);
    let (_, credential) = enroll(&state, "pwe_team", serde_json::json!({"hostname": "ws-0042", "os": "windows"})).await;
    let header_of = |response: &axum::response::Response, name| {
        response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
    };
    let plain = desired_raw(&state, &credential, &[]).await;
    let gzipped = desired_raw(&state, &credential, &[("accept-encoding", "br, gzip;q=0.8")]).await;
    assert_eq!((plain.status(), gzipped.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(header_of(&plain, header::CONTENT_ENCODING), None);
    assert_eq!(header_of(&gzipped, header::CONTENT_ENCODING).as_deref(), Some("gzip"));
    assert_eq!(header_of(&gzipped, header::VARY).as_deref(), Some("accept-encoding"));
    let (tag, gzip_tag) = (header_of(&plain, header::ETAG).unwrap(), header_of(&gzipped, header::ETAG).unwrap());
    assert_eq!(gzip_tag, format!("{}-gz\"", tag.trim_end_matches('"')));
    let json = plain.into_body().collect().await.unwrap().to_bytes();
    let gzip = gzipped.into_body().collect().await.unwrap().to_bytes();
    assert!(gzip.len() < json.len(), "{} gzipped, {} as JSON", gzip.len(), json.len());
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gzip.as_ref()), &mut inflated).unwrap();
    assert_eq!(inflated, json, "the same envelope either way");
    assert!(serde_json::from_slice::<patchward_api::dsse::Envelope>(&json).is_ok());
    // Either tag names the state held; the answer carries the tag of the
    // representation asked for.
    for held in [&tag, &gzip_tag] {
        let fresh = desired_raw(&state, &credential, &[("if-none-match", held), ("accept-encoding", "gzip")]).await;
        assert_eq!(
            (fresh.status(), header_of(&fresh, header::ETAG)),
            (StatusCode::NOT_MODIFIED, Some(gzip_tag.clone()))
        );
        let fresh = desired_raw(&state, &credential, &[("if-none-match", held)]).await;
        assert_eq!((fresh.status(), header_of(&fresh, header::ETAG)), (StatusCode::NOT_MODIFIED, Some(tag.clone())));
    }
    // A zero weight refuses gzip.
    let refused = desired_raw(&state, &credential, &[("accept-encoding", "gzip;q=0")]).await;
    assert_eq!((header_of(&refused, header::CONTENT_ENCODING), header_of(&refused, header::ETAG)), (None, Some(tag)));
}

#[tokio::test]
async fn events_retried_after_a_lost_response_are_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), true);
    let (_, credential) = enroll(&state, "pwe_team", serde_json::json!({"hostname": "srv-db-01"})).await;
    let batch = serde_json::json!({"events": [{"seq": 1, "patch": "DSA-5900-1", "status": "downloading"}, {"seq": 2, "patch": "DSA-5900-1", "status": "succeeded"}]});
    let first = call(&state, "POST", "/api/v1/device/events", Some(&credential), Some(batch.clone()), None).await;
    assert_eq!((first.json["recorded"].as_u64(), first.json["duplicates"].as_u64()), (Some(2), Some(0)));
    let retry = call(&state, "POST", "/api/v1/device/events", Some(&credential), Some(batch), None).await;
    assert_eq!((retry.json["recorded"].as_u64(), retry.json["duplicates"].as_u64()), (Some(0), Some(2)));
    let bad = call(
        &state,
        "POST",
        "/api/v1/device/events",
        Some(&credential),
        Some(serde_json::json!({"events": [{"patch": "x"}]})),
        None,
    )
    .await;
    assert_eq!(
        (bad.status, bad.json["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("events[0].seq must be a positive integer"))
    );
    assert_eq!(patchward::store::Store::wait(state.engine.store.events("srv-db-01")).unwrap().len(), 2);
    // A succeeded event is the device's report for the patch; the audit
    // log has every event once.
    let record = patchward::store::Store::wait(state.engine.store.device("srv-db-01")).unwrap().unwrap();
    assert_eq!(record.reports.len(), 1);
    assert_eq!(record.reports[0].status, patchward_api::ReportStatus::Succeeded);
    let audit = patchward::store::Store::wait(state.engine.store.audit(0, 100)).unwrap();
    assert_eq!(audit.iter().filter(|e| e.actor == "device:srv-db-01" && e.action.starts_with("agent.")).count(), 2);
}

#[tokio::test]
async fn credentials_reach_only_their_own_routes_and_device() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), true);
    let (a, credential_a) = enroll(&state, "pwe_team", serde_json::json!({"hostname": "ws-a"})).await;
    let (b, _) = enroll(&state, "pwe_team", serde_json::json!({"hostname": "ws-b"})).await;
    let desired_of = |reply: Reply| {
        let envelope: patchward_api::dsse::Envelope = serde_json::from_value(reply.json).unwrap();
        let body = base64_payload(&envelope);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["device"].as_str().unwrap().to_owned()
    };
    // The agent's routes name no device: A's credential gets A's state.
    let reply = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential_a), None, None).await;
    assert_eq!(desired_of(reply), a);

    for (method, path) in [("GET", "/api/v1/device/desired-state"), ("GET", "/api/v1/devices")] {
        assert_eq!(call(&state, method, path, None, None, None).await.status, StatusCode::UNAUTHORIZED, "{path}: none");
        assert_eq!(
            call(&state, method, path, Some("pwd_forged"), None, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}: unknown"
        );
    }
    let malformed = call(&state, "GET", "/api/v1/devices", Some(""), None, None).await;
    assert_eq!(malformed.status, StatusCode::UNAUTHORIZED);
    // Known credentials without the right: 403.
    assert_eq!(
        call(&state, "GET", "/api/v1/devices", Some(&credential_a), None, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&state, "GET", "/api/v1/device/desired-state", Some(ADMIN), None, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&state, "GET", &format!("/api/v1/devices/{b}"), Some(&credential_a), None, None).await.status,
        StatusCode::FORBIDDEN
    );
    // The admin sees every device.
    let list = call(&state, "GET", "/api/v1/devices", Some(ADMIN), None, None).await;
    let ids: Vec<&str> = list.json["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ws-a", "ws-b"]);
    let one = call(&state, "GET", "/api/v1/devices/ws-b", Some(ADMIN), None, None).await;
    assert_eq!((one.status, one.json["id"].as_str()), (StatusCode::OK, Some("ws-b")));
    assert_eq!(
        call(&state, "GET", "/api/v1/devices/nope", Some(ADMIN), None, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn without_a_policy_in_force_nothing_is_served_and_readyz_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), false);
    assert_eq!(call(&state, "GET", "/readyz", None, None, None).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, credential) = enroll(&state, "pwe_team", serde_json::json!({})).await;
    let reply = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, None).await;
    assert_eq!((reply.status, reply.json["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
}

fn base64_payload(envelope: &patchward_api::dsse::Envelope) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(&envelope.payload).unwrap()
}

/// A snooze and a self-service request made at the device (reported as
/// events) are relayed back in its desired state, counted once however
/// often the batch is sent, so every agent pass and the portal see the
/// same count.
#[tokio::test]
async fn the_users_requests_come_back_in_the_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), true);
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64", "language": "en-US",
        "hostname": "ws-0042", "labels": {"role": "workstation"}, "ip": "10.20.1.42"});
    let (_, credential) = enroll(&state, "pwe_team", facts).await;
    let before = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, None).await;
    let desired = |reply: &Reply| -> patchward_api::desired::DesiredState {
        let envelope: patchward_api::dsse::Envelope = serde_json::from_value(reply.json.clone()).unwrap();
        serde_json::from_slice(&base64_decode(&envelope.payload)).unwrap()
    };
    let first = desired(&before);
    assert!(first.items.iter().all(|i| i.user_request.is_none()));

    let batch = serde_json::json!({"events": [
        {"seq": 1, "at": "2026-11-24T12:00:00Z", "kind": "snooze", "patch": "KB5032190",
         "detail": {"until": "2026-11-24T16:00:00Z"}},
        {"seq": 2, "at": "2026-11-24T12:01:00Z", "kind": "install-request", "patch": "7zip@24.08"}]});
    for _ in 0..2 {
        let reply = call(&state, "POST", "/api/v1/device/events", Some(&credential), Some(batch.clone()), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    }
    let after =
        call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, before.etag.as_deref()).await;
    assert_eq!(after.status, StatusCode::OK, "a new generation");
    let second = desired(&after);
    assert!(second.generation > first.generation);
    let kb = second.items.iter().find(|i| i.patch == "KB5032190").unwrap();
    let request = kb.user_request.as_ref().expect("the snooze is relayed");
    assert_eq!(request.snoozes_used, 1, "counted once though the batch came twice");
    assert_eq!(request.snoozed_until, Some("2026-11-24T16:00:00Z".parse().unwrap()));
    let software = second.items.iter().find(|i| i.patch == "7zip@24.08").unwrap();
    let request = software.user_request.as_ref().expect("the install request is relayed");
    assert_eq!(request.install_requested_at, Some("2026-11-24T12:01:00Z".parse().unwrap()));
    assert_eq!(request.snoozes_used, 0);

    // A plan of the whole fleet relays them too: the same content, so the
    // same state.
    state.engine.replan_all().unwrap();
    let again =
        call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, after.etag.as_deref()).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{}", again.json);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// "Last seen" moves with every check-in, a poll of the desired state
/// included, and the status counts a device as soon as it enrolls.
#[tokio::test]
async fn a_poll_moves_last_seen_and_the_status_counts_devices_as_they_enroll() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let state = state_on(dir.path(), true, Arc::clone(&clock));
    let status = call(&state, "GET", "/api/v1/status", Some(ADMIN), None, None).await;
    assert_eq!(status.json["devices"], 0);
    let facts = serde_json::json!({"os": "linux", "hostname": "ws-7"});
    let (id, credential) = enroll(&state, "pwe_team", facts.clone()).await;
    let status = call(&state, "GET", "/api/v1/status", Some(ADMIN), None, None).await;
    assert_eq!(status.json["devices"], 1, "counted at once, not at the next reconcile");
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
    call(&state, "PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory), None).await;

    clock.advance(jiff::SignedDuration::from_hours(3));
    let poll = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, None).await;
    assert_eq!(poll.status, StatusCode::OK);
    let listed = call(&state, "GET", "/api/v1/devices", Some(ADMIN), None, None).await;
    let device = listed.json["devices"].as_array().unwrap().iter().find(|d| d["id"] == id.as_str()).unwrap().clone();
    assert_eq!(device["lastSeen"], "2026-11-24T15:00:00Z", "{device}");
}

/// A served state is renewed once half its validity has passed (a week
/// here), by a full plan, and not before: the same generation, signed
/// again with a later expiry. States planned one device at a time after
/// the full plan count too.
#[tokio::test]
async fn states_are_renewed_at_half_their_validity_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let state = state_on(dir.path(), true, Arc::clone(&clock));
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "hostname": "ws-9"});
    let (_, credential) = enroll(&state, "pwe_team", facts.clone()).await;
    // A day after the full plan, so that this device's state expires last.
    clock.advance(jiff::SignedDuration::from_hours(24));
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
    call(&state, "PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory), None).await;
    let first = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, None).await;
    let engine = &state.engine;
    let now = patchward::clock::Clock::now(&*clock);
    let renew_at = now.checked_add(jiff::SignedDuration::from_hours(84)).unwrap();
    assert!(!engine.replan_due(renew_at.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap()), "renewed early");
    assert!(engine.replan_due(renew_at), "not renewed at half its validity");
    clock.advance(jiff::SignedDuration::from_hours(84));
    assert!(engine.replan_if_due().unwrap());
    assert!(!engine.replan_due(patchward::clock::Clock::now(&*clock)), "every state renewed by the full plan");
    let renewed = call(&state, "GET", "/api/v1/device/desired-state", Some(&credential), None, None).await;
    assert_eq!(generation_of(renewed.etag.as_deref()), generation_of(first.etag.as_deref()), "same content");
    assert_ne!(renewed.etag, first.etag, "signed again");
    let expires_at = |reply: &Reply| {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD.decode(reply.json["payload"].as_str().unwrap());
        let state: serde_json::Value = serde_json::from_slice(&payload.unwrap()).unwrap();
        state["expiresAt"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap()
    };
    assert_eq!(expires_at(&renewed), expires_at(&first).checked_add(jiff::SignedDuration::from_hours(84)).unwrap());
}
