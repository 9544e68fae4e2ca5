//! The HTTP API, versioned under `/api/v1`. [`router`] is the one place
//! routes are declared; authentication is an extractor ([`auth`]); every
//! failure is an [`ApiError`], which becomes `{error, message}` with its
//! status.
//!
//! Architecture invariant: only this module knows HTTP. An agent's routes
//! name no device: its identity comes from its credential (G7); a user
//! token reaches only the device it is bound to.

pub mod auth;
mod blobs;
pub mod console;
mod error;
pub mod limits;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, body::Bytes};
use serde::{Deserialize, Serialize};

pub use auth::{Admin, AgentDevice, UserDevice};
pub use error::ApiError;
use error::ApiQuery;
use limits::{BoundedJson, RateLimiter};

use crate::daemon::config::Limits;
use crate::daemon::media::BlobStore;
use crate::daemon::{Engine, ServedDesired, UserRequest, UserRequestKind};
use crate::daemon::{exposure_view, views};
use crate::store::fleet::{AccessToken, EnrollmentToken, Role};

pub struct ApiState {
    pub engine: Arc<Engine>,
    pub blobs: Arc<BlobStore>,
    pub limits: Limits,
    /// The HMAC secret of `POST /api/v1/sync` webhooks.
    pub webhook_secret: Option<Vec<u8>>,
    pub rate: RateLimiter,
    /// The console's signed-in browsers.
    pub sessions: console::session::Sessions,
}

impl ApiState {
    pub fn new(engine: Arc<Engine>, blobs: Arc<BlobStore>, limits: Limits, webhook_secret: Option<Vec<u8>>) -> Self {
        let rate = RateLimiter::new(limits.device_requests_per_minute);
        ApiState { engine, blobs, limits, webhook_secret, rate, sessions: Default::default() }
    }

    /// Takes one request from `caller`'s rate budget (T31).
    pub fn admit(&self, caller: &str) -> Result<(), ApiError> {
        self.rate.take(caller, self.engine.clock.now()).map_err(|seconds| {
            self.engine.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError { retry_after: Some(seconds), ..ApiError::too_many("too many requests from this device") }
        })
    }
}

pub fn router(state: Arc<ApiState>) -> axum::Router {
    let body_limit = state.limits.max_body_bytes;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/device/inventory", put(inventory))
        .route("/api/v1/device/desired-state", get(desired))
        .route("/api/v1/device/events", post(events))
        .route("/api/v1/blobs/{sha256}", get(blob))
        .route("/api/v1/sync", post(sync))
        .route("/api/v1/ack-rewrite", post(ack_rewrite))
        .route("/api/v1/status", get(status))
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}", get(device))
        .route("/api/v1/compliance", get(compliance))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/rollouts", get(rollouts))
        .route("/api/v1/software", get(software))
        .route("/api/v1/catalog", get(catalog))
        .route("/api/v1/installed", get(installed))
        .route("/api/v1/review", get(review))
        .route("/api/v1/exposure", get(exposure))
        .route("/api/v1/user/device", get(user_device))
        .route("/api/v1/user/snooze", post(user_snooze))
        .route("/api/v1/user/install", post(user_install))
        .merge(console::routes())
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Result<&'static str, ApiError> {
    state.engine.in_force().ok_or_else(|| ApiError::unavailable("no valid policy revision is in force yet"))?;
    Ok("ready\n")
}

/// Runs store or planning work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(internal)
}

use patchward_api::device::{EnrollRequest, EnrollResponse, InventoryAccepted, InventoryUpload};

async fn enroll(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    BoundedJson(request): BoundedJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let token = auth::bearer(&headers)?.to_owned();
    let engine = state.engine.clone();
    let now = engine.clock.now();
    let credential = crate::clock::new_secret("pwd_").map_err(internal)?;
    // The hostname when it is a good name and free, else a random id.
    let wanted = request.facts.hostname.clone().filter(|h| valid_device_id(h));
    let device_id = match wanted {
        Some(host) if crate::store::Store::wait(engine.store.device(&host)).map_err(ApiError::store)?.is_none() => host,
        _ => {
            let secret = crate::clock::new_secret("").map_err(internal)?;
            format!("dev-{}", &secret[..12].to_ascii_lowercase().replace(['-', '_'], "x"))
        }
    };
    let store = engine.store.clone();
    let secret = credential.clone();
    let record =
        blocking(move || crate::store::Store::wait(store.enroll(&token, &device_id, &secret, request.facts, now)))
            .await?
            .map_err(|e| match e {
                crate::store::fleet::EnrollError::Store(e) => ApiError::store(e),
                crate::store::fleet::EnrollError::DeviceExists(id) => ApiError::conflict(format!("device {id} exists")),
                // Unknown, expired or used up: the token is not (or no longer) a credential.
                other => ApiError::unauthorized(other.to_string()),
            })?;
    engine.metrics.enrollments.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = crate::store::Store::wait(engine.store.append_audit(
        now,
        &format!("device:{}", record.id),
        "device.enrolled",
        serde_json::json!({}),
    ));
    Ok(Json(EnrollResponse {
        device_id: record.id,
        credential,
        engine_key: patchward_api::dsse::public_key_text(&engine.key.verifying_key()),
    }))
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Stores the device's facts and inventory, then plans it again, so that
/// the desired state the agent fetches next already reflects them.
async fn inventory(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    BoundedJson(request): BoundedJson<InventoryUpload>,
) -> Result<Json<InventoryAccepted>, ApiError> {
    let engine = state.engine.clone();
    let generation = blocking(move || {
        let now = engine.clock.now();
        crate::store::Store::wait(engine.store.update_inventory(&device, request.facts, request.inventory, now))?;
        engine.metrics.inventories.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        engine.replan_device(&device)
    })
    .await?
    .map_err(ApiError::store)?;
    Ok(Json(InventoryAccepted { generation }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<u64>,
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
}

async fn current_desired(state: &Arc<ApiState>, device: &str) -> Result<Arc<ServedDesired>, ApiError> {
    let engine = state.engine.clone();
    let id = device.to_owned();
    blocking(move || engine.desired(&id))
        .await?
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::unavailable("no valid policy revision is in force yet"))
}

/// The signed desired state; `If-None-Match` answers 304 when nothing
/// changed, and with `?wait=SECONDS` the answer waits (up to the limit)
/// for a change before saying so.
async fn desired(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    ApiQuery(query): ApiQuery<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut changes = state.engine.subscribe();
    let mut served = current_desired(&state, &device).await?;
    let wait = std::time::Duration::from_secs(query.wait.unwrap_or(0)).min(state.limits.max_wait);
    if matches_etag(&headers, &served.etag) && !wait.is_zero() {
        state.engine.metrics.long_polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + wait;
        while matches_etag(&headers, &served.etag) {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) if !state.engine.stopping() => served = current_desired(&state, &device).await?,
                // Timed out, or the engine is shutting down.
                _ => break,
            }
        }
    }
    let etag = HeaderValue::from_str(&served.etag).map_err(internal)?;
    if matches_etag(&headers, &served.etag) {
        state.engine.metrics.desired_not_modified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    state.engine.metrics.desired_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let content_type = HeaderValue::from_static("application/json");
    Ok(([(header::ETAG, etag), (header::CONTENT_TYPE, content_type)], served.body.clone()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsRequest {
    events: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct EventsResponse {
    recorded: usize,
    duplicates: usize,
}

/// How many events one batch may carry.
const MAX_EVENTS: usize = 1000;

/// Records a batch of events, each by its `seq`: a batch sent again after
/// a lost response is acknowledged and recorded once (T26). Every event
/// recorded goes to the audit log too.
async fn events(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    BoundedJson(request): BoundedJson<EventsRequest>,
) -> Result<Json<EventsResponse>, ApiError> {
    if request.events.len() > MAX_EVENTS {
        return Err(ApiError::too_large(format!("at most {MAX_EVENTS} events per batch")));
    }
    let mut batch = Vec::with_capacity(request.events.len());
    for (index, event) in request.events.into_iter().enumerate() {
        let seq = event
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .filter(|s| *s > 0)
            .ok_or_else(|| ApiError::bad_request(format!("events[{index}].seq must be a positive integer")))?;
        batch.push((seq, event));
    }
    let engine = state.engine.clone();
    let outcome = blocking(move || {
        let now = engine.clock.now();
        // The events and their audit entries are one transaction.
        let outcome = crate::store::Store::wait(engine.store.record_events(&device, &batch, now))?;
        // Snoozes and self-service requests made at the device count
        // against the same limits as the portal's.
        for (_, event) in batch.iter().filter(|(seq, _)| outcome.new.contains(seq)) {
            if let Some(request) = user_request_of(event, now) {
                engine.add_user_request(&device, request)?;
            }
        }
        engine.metrics.events.fetch_add(outcome.recorded as u64, std::sync::atomic::Ordering::Relaxed);
        if outcome.reports > 0 {
            engine.note_reports();
        }
        Ok::<_, crate::store::StoreError>(outcome)
    })
    .await?
    .map_err(ApiError::store)?;
    Ok(Json(EventsResponse { recorded: outcome.recorded, duplicates: outcome.duplicates }))
}

/// The user request an agent's event reports, if it is one: a `snooze`
/// (with `detail.until`) or an `install-request`.
fn user_request_of(event: &serde_json::Value, received: jiff::Timestamp) -> Option<UserRequest> {
    let kind = match event.get("kind")?.as_str()? {
        "snooze" => UserRequestKind::Snooze,
        "install-request" => UserRequestKind::Install,
        _ => return None,
    };
    let item = event.get("patch")?.as_str()?.to_owned();
    let time = |value: Option<&serde_json::Value>| value.and_then(|v| v.as_str()).and_then(|v| v.parse().ok());
    let at = time(event.get("at")).unwrap_or(received);
    let until = time(event.get("detail").and_then(|d| d.get("until")));
    Some(UserRequest { item, kind, at, until })
}

/// Package bytes by sha256, for agents and admins. Only a 64-hex digest
/// names a file (T32).
async fn blob(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = auth::bearer(&headers)?;
    let store = &state.engine.store;
    let device = crate::store::Store::wait(store.device_id_by_credential(secret)).map_err(ApiError::store)?;
    match &device {
        Some(id) => state.admit(id)?,
        None => match crate::store::Store::wait(store.access_token(secret)).map_err(ApiError::store)? {
            Some(t) if t.role == Role::Admin && !t.revoked => {}
            Some(_) => return Err(ApiError::forbidden("only agents and admins download packages")),
            None => return Err(ApiError::unauthorized("unknown credential")),
        },
    }
    if !crate::daemon::media::valid_digest(&digest) {
        return Err(ApiError::bad_request("a blob is named by its sha256: 64 lowercase hex digits"));
    }
    let path = state.blobs.path(&digest).ok_or_else(|| ApiError::not_found(format!("no blob {digest}")))?;
    state.engine.metrics.blobs_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    blobs::serve_file(path, &digest, &headers).await
}

/// `X-Hub-Signature-256: sha256=HEX` over the body with the webhook secret.
fn webhook_signed(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    use hmac::{KeyInit as _, Mac as _};
    let Some(given) = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()) else { return false };
    let Some(hex_sig) = given.strip_prefix("sha256=") else { return false };
    let Ok(signature) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Reconcile now: an admin, or a webhook signed with the shared secret.
async fn sync(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let actor = if headers.contains_key(header::AUTHORIZATION) {
        let mut parts = axum::http::Request::builder()
            .uri("/api/v1/sync")
            .method("POST")
            .body(())
            .map_err(internal)?
            .into_parts()
            .0;
        parts.headers = headers.clone();
        <Admin as axum::extract::FromRequestParts<Arc<ApiState>>>::from_request_parts(&mut parts, &state).await?;
        "admin"
    } else {
        let secret = state.webhook_secret.as_deref().ok_or_else(|| {
            ApiError::unauthorized("no credential, and no webhook secret is configured (policies.webhookSecretFile)")
        })?;
        if !webhook_signed(secret, &headers, &body) {
            return Err(ApiError::unauthorized("the webhook signature (X-Hub-Signature-256) does not verify"));
        }
        "webhook"
    };
    request_sync(&state, actor, serde_json::json!({}));
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": true}))).into_response())
}

/// Wakes the reconciler now, audited as `actor` (the API, the webhook and
/// the console all come here).
pub(crate) fn request_sync(state: &ApiState, actor: &str, detail: serde_json::Value) {
    let now = state.engine.clock.now();
    let _ = crate::store::Store::wait(state.engine.store.append_audit(now, actor, "sync.requested", detail));
    state.engine.sync_requests.notify_one();
}

/// Acknowledges a rewrite to `commit` (a full 40-hex sha, any case) and
/// reconciles now; the acknowledged sha, or why it was refused.
pub(crate) fn acknowledge_rewrite(
    state: &ApiState,
    commit: &str,
    detail: serde_json::Value,
) -> Result<String, ApiError> {
    let commit = commit.trim().to_ascii_lowercase();
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("commit must be a full 40-hex commit sha"));
    }
    state.engine.acknowledge_rewrite(&commit).map_err(ApiError::store)?;
    let now = state.engine.clock.now();
    let mut detail = detail;
    detail["commit"] = commit.clone().into();
    let _ = crate::store::Store::wait(state.engine.store.append_audit(now, "admin", "rewrite.acknowledged", detail));
    state.engine.sync_requests.notify_one();
    Ok(commit)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    commit: String,
}

async fn ack_rewrite(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    BoundedJson(request): BoundedJson<AckRequest>,
) -> Result<Response, ApiError> {
    let commit = acknowledge_rewrite(&state, &request.commit, serde_json::json!({}))?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"acknowledged": commit}))).into_response())
}

async fn status(State(state): State<Arc<ApiState>>, _admin: Admin) -> Json<crate::daemon::status::Status> {
    Json(state.engine.status())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenRequest {
    kind: String,
    uses: Option<u32>,
    expires: Option<patchward_api::Duration>,
    device: Option<String>,
}

async fn create_token(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    BoundedJson(request): BoundedJson<TokenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = &state.engine;
    let now = engine.clock.now();
    let expires_at = request
        .expires
        .map(|d| now.checked_add(jiff::SignedDuration::from_secs(d.as_secs() as i64)))
        .transpose()
        .map_err(|_| ApiError::bad_request("expires is too far away"))?;
    let token = match request.kind.as_str() {
        "enrollment" => {
            if request.device.is_some() {
                return Err(ApiError::bad_request("an enrollment token is bound to no device"));
            }
            let token = crate::clock::new_secret("pwe_").map_err(internal)?;
            let record = EnrollmentToken { uses_left: request.uses.unwrap_or(1).max(1), expires_at, created_at: now };
            crate::store::Store::wait(engine.store.create_enrollment_token(&token, &record))
                .map_err(ApiError::store)?;
            token
        }
        "admin" | "user" => {
            let role = if request.kind == "admin" { Role::Admin } else { Role::User };
            if request.uses.is_some() {
                return Err(ApiError::bad_request("--uses is for enrollment tokens"));
            }
            match (role, &request.device) {
                (Role::User, None) => return Err(ApiError::bad_request("a user token needs --device ID")),
                (Role::Admin, Some(_)) => return Err(ApiError::bad_request("an admin token is bound to no device")),
                (Role::User, Some(id))
                    if crate::store::Store::wait(engine.store.device(id)).map_err(ApiError::store)?.is_none() =>
                {
                    return Err(ApiError::not_found(format!("no device {id}")));
                }
                _ => {}
            }
            let prefix = if role == Role::Admin { "pwa_" } else { "pwu_" };
            let token = crate::clock::new_secret(prefix).map_err(internal)?;
            let record =
                AccessToken { role, device: request.device.clone(), expires_at, created_at: now, revoked: false };
            crate::store::Store::wait(engine.store.create_access_token(&token, &record)).map_err(ApiError::store)?;
            token
        }
        other => {
            return Err(ApiError::bad_request(format!("unknown token kind `{other}`: enrollment, admin or user")));
        }
    };
    let detail = serde_json::json!({"kind": request.kind, "uses": request.uses, "device": request.device,
        "expiresAt": expires_at});
    let _ = crate::store::Store::wait(engine.store.append_audit(now, "admin", "token.created", detail));
    Ok(Json(serde_json::json!({"token": token, "kind": request.kind, "expiresAt": expires_at})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ViewQuery {
    format: Option<String>,
}

fn wants_csv(format: &Option<String>) -> Result<bool, ApiError> {
    match format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("unknown format `{other}`: json or csv"))),
    }
}

fn csv_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], text).into_response()
}

const ITEM_COLUMNS: &[&str] = &[
    "device",
    "patch",
    "title",
    "severity",
    "category",
    "action",
    "status",
    "source",
    "stage",
    "policy",
    "windows",
    "notBefore",
    "deadline",
    "overdue",
];

fn plan_or_unavailable(state: &ApiState) -> Result<crate::daemon::PlanView, ApiError> {
    state.engine.plan_view().ok_or_else(|| ApiError::unavailable("no valid policy revision is in force yet"))
}

/// The device list's query: the console's filters and sort, then the page
/// and the format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesQuery {
    #[serde(flatten)]
    filter: views::DeviceFilter,
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The devices the filter keeps (as the console's list: the same query,
/// order and figures), paged, with their items that pass it; or every such
/// item as CSV.
async fn devices(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<DevicesQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, replanned) = plan_or_unavailable(&state)?;
    let now = state.engine.clock.now();
    let records = state.engine.devices().map_err(ApiError::store)?;
    let lines = views::device_lines(&in_force, &plan, &replanned, records, &query.filter, now);
    if csv {
        let rows: Vec<&views::ItemRow> = lines.iter().flat_map(|l| &l.rows).collect();
        return Ok(csv_response(views::to_csv(ITEM_COLUMNS, &rows)));
    }
    let (total, offset) = (lines.len(), query.offset.unwrap_or(0));
    let limit = query.limit.unwrap_or(100).min(10_000);
    let devices: Vec<DeviceView> = lines.into_iter().skip(offset).take(limit).map(DeviceView::new).collect();
    Ok(Json(DevicePage { total, offset, devices }).into_response())
}

/// One page of the device list.
#[derive(Serialize)]
struct DevicePage {
    total: usize,
    offset: usize,
    devices: Vec<DeviceView>,
}

/// A device as the API shows it: what it reported, and its items
/// (`compliance` is over all of them, `items` those the filter keeps).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceView {
    id: String,
    facts: patchward_api::Facts,
    inventory: patchward_api::Inventory,
    reports: Vec<patchward_api::Report>,
    enrolled_at: jiff::Timestamp,
    last_seen: jiff::Timestamp,
    compliance: views::Compliance,
    /// The Location its address falls in, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    items: Vec<views::ItemRow>,
}

impl DeviceView {
    fn new(line: views::DeviceLine) -> DeviceView {
        let record = line.record;
        DeviceView {
            id: record.id,
            facts: record.facts,
            inventory: record.inventory,
            reports: record.reports,
            enrolled_at: record.enrolled_at,
            last_seen: record.last_seen,
            compliance: line.compliance,
            location: line.location,
            items: line.rows,
        }
    }
}

async fn device(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let record = state
        .engine
        .device(&id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let rows = device_rows(&state, &id)?;
    if csv {
        return Ok(csv_response(views::to_csv(ITEM_COLUMNS, &rows)));
    }
    let compliance = views::compliance_of(&rows);
    let location = device_location(&state, &id);
    Ok(Json(DeviceView::new(views::DeviceLine { record, rows, compliance, location })).into_response())
}

/// The name of the Location a device's address falls in, by its plan.
fn device_location(state: &ApiState, id: &str) -> Option<String> {
    let (_, plan, replanned) = plan_or_unavailable(state).ok()?;
    let device = views::device_plans(&plan, &replanned).into_iter().find(|p| p.id == id)?;
    device.location.and_then(|l| plan.location_names.get(l as usize)).cloned()
}

fn device_rows(state: &ApiState, id: &str) -> Result<Vec<views::ItemRow>, ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let now = state.engine.clock.now();
    let planned = views::device_plan(&plan, &replanned, id);
    Ok(planned.map(|p| views::item_rows(&in_force, &plan, p, now)).unwrap_or_default())
}

async fn compliance(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, replanned) = plan_or_unavailable(&state)?;
    let now = state.engine.clock.now();
    let devices = views::device_plans(&plan, &replanned);
    let mut report = views::compliance(&in_force, &plan, &devices, now);
    report.exposure = Some(exposure_summary(&state, &in_force, &plan, &devices)?);
    if csv {
        return Ok(csv_response(views::compliance_csv(&report)));
    }
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
    /// Only entries of this kind among the page (every kind when left out).
    kind: Option<crate::daemon::audit::AuditKind>,
}

async fn audit(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let mut entries = state
        .engine
        .store
        .audit(query.after.unwrap_or(0), query.limit.unwrap_or(1000).min(100_000))
        .await
        .map_err(ApiError::store)?;
    if let Some(kind) = query.kind {
        entries.retain(|e| kind.keeps(&e.action));
    }
    if csv {
        return Ok(audit_csv(&entries));
    }
    Ok(Json(serde_json::json!({"entries": entries})).into_response())
}

/// Audit entries as CSV, their detail as one JSON field.
pub(crate) fn audit_csv(entries: &[crate::store::fleet::AuditEntry]) -> Response {
    csv_response(views::to_csv(&["seq", "at", "actor", "action", "detail"], entries))
}

/// Every approving rule's rollout of every patch it decides, stage by
/// stage, with each gate's counts.
async fn rollouts(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<RolloutQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, replanned) = plan_or_unavailable(&state)?;
    let rollouts = rollout_rows(&in_force, &plan, &replanned, &query.filter, &query.order);
    if csv {
        return Ok(csv_response(views::to_csv(views::ROLLOUT_COLUMNS, &views::rollout_lines(&rollouts))));
    }
    let (total, offset) = (rollouts.len(), query.offset.unwrap_or(0));
    let page: Vec<_> = rollouts.into_iter().skip(offset).take(query.limit.unwrap_or(usize::MAX)).collect();
    Ok(Json(serde_json::json!({"total": total, "offset": offset, "rollouts": page})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutQuery {
    #[serde(flatten)]
    pub(crate) filter: views::RolloutFilter,
    #[serde(flatten)]
    pub(crate) order: views::SortOrder,
    pub(crate) offset: Option<usize>,
    pub(crate) limit: Option<usize>,
    pub(crate) format: Option<String>,
}

/// The rollouts `filter` keeps, in `order`: the API's and the console's.
pub(crate) fn rollout_rows(
    in_force: &crate::daemon::InForce,
    plan: &crate::plan::Plan,
    replanned: &std::collections::HashMap<String, Arc<crate::plan::DevicePlan>>,
    filter: &views::RolloutFilter,
    order: &views::SortOrder,
) -> Vec<views::Rollout> {
    let rollouts = views::rollouts(in_force, plan, &views::device_plans(plan, replanned));
    order.apply(rollouts.into_iter().filter(|r| filter.keeps(r)).collect())
}

/// The software library: packages and their versions, and each
/// assignment's devices by status.
async fn software(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<SoftwareQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let library = software_library(&state, &query.order)?;
    if csv {
        return Ok(assignments_csv(&library.assignments));
    }
    Ok(Json(library).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoftwareQuery {
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

/// The software library with its assignments in `order`.
pub(crate) fn software_library(state: &ApiState, order: &views::SortOrder) -> Result<views::SoftwareLibrary, ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let mut library = views::software(&in_force, &plan, &views::device_plans(&plan, &replanned));
    library.assignments = order.apply(library.assignments);
    Ok(library)
}

/// The assignments as CSV, one line each with its devices' counts.
pub(crate) fn assignments_csv(assignments: &[views::AssignmentRow]) -> Response {
    csv_response(views::to_csv(views::ASSIGNMENT_COLUMNS, assignments))
}

/// The stored catalog with the engine's fields and the rules matching each
/// patch, filtered; `?rule=NAME` shows what a rule matches.
pub(crate) fn catalog_rows(
    state: &ApiState,
    filter: &views::CatalogFilter,
) -> Result<Vec<views::CatalogRow>, ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let records = crate::store::Store::wait(state.engine.store.catalog_patches()).map_err(ApiError::store)?;
    let coverage = crate::catalog::coverage::CoverageSet::of_policy(&in_force.policy.policy);
    let views = crate::catalog::view::views(records, &coverage);
    let mut rows: Vec<views::CatalogRow> = views::catalog_rows(&views, &plan, &views::device_plans(&plan, &replanned))
        .into_iter()
        .filter(|r| filter.keeps(r))
        .collect();
    rows.sort_by(|a, b| b.released.cmp(&a.released).then_with(|| a.id.cmp(&b.id)));
    Ok(rows)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogQuery {
    #[serde(flatten)]
    filter: views::CatalogFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

const CATALOG_COLUMNS: &[&str] = &[
    "id",
    "title",
    "vendor",
    "product",
    "category",
    "severity",
    "cvss",
    "cves",
    "released",
    "supersedes",
    "supersededBy",
    "active",
    "obsoleteSince",
    "matchedBy",
    "missing",
];

async fn catalog(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<CatalogQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let rows = query.order.apply(catalog_rows(&state, &query.filter)?);
    if csv {
        return Ok(csv_response(views::to_csv(CATALOG_COLUMNS, &rows)));
    }
    Ok(Json(serde_json::json!({"total": rows.len(), "patches": rows})).into_response())
}

/// What compliance shows of exposure, from the engine's record.
pub(crate) fn exposure_summary(
    state: &ApiState,
    in_force: &crate::daemon::InForce,
    plan: &crate::plan::Plan,
    devices: &[&crate::plan::DevicePlan],
) -> Result<exposure_view::ExposureSummary, ApiError> {
    let engine = &state.engine;
    let since = engine.exposure.read(&engine.store).map_err(ApiError::store)?;
    let tally = crate::store::Store::wait(engine.store.remediation_tally()).map_err(ApiError::store)?;
    let remediation = in_force.policy.remediation();
    let context = exposure_context(in_force, &remediation, &since, engine.clock.now());
    Ok(exposure_view::exposure_summary(plan, devices, &context, tally))
}

/// How exposure rows are judged and rendered now, with the engine's record
/// of since when.
fn exposure_context<'a>(
    in_force: &'a crate::daemon::InForce,
    remediation: &'a crate::policy::model::Remediation,
    since: &'a dyn crate::plan::exposure::ExposureSince,
    now: jiff::Timestamp,
) -> crate::plan::exposure::RowContext<'a> {
    crate::plan::exposure::RowContext { catalog: &in_force.catalog, remediation, since, now }
}

/// The exposure rows a query keeps: how many, and those of the page
/// `offset..offset + limit` in the query's order (every one with no limit).
/// The API's and the console's Exposure view alike. Without a sort only the
/// page's rows are rendered.
pub(crate) fn exposure_page(
    state: &ApiState,
    filter: &exposure_view::ExposureFilter,
    order: &views::SortOrder,
    offset: usize,
    limit: Option<usize>,
) -> Result<(usize, Vec<crate::plan::exposure::ExposureRow>), ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let engine = &state.engine;
    let since = engine.exposure.read(&engine.store).map_err(ApiError::store)?;
    let remediation = in_force.policy.remediation();
    let context = exposure_context(&in_force, &remediation, &since, engine.clock.now());
    let devices = views::device_plans(&plan, &replanned);
    let select = |offset, limit| {
        exposure_view::select(&plan, &devices, filter, &context, offset, limit)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    };
    if order.key().is_none() {
        let selection = select(offset, limit)?;
        return Ok((selection.total, exposure_view::render(&plan, &selection.picks, &context)));
    }
    // A sort reads every row: bounded, so a query over the whole estate
    // asks to be narrowed instead of rendering millions of rows.
    let counted = select(0, Some(0))?;
    if counted.total > MAX_SORTED_EXPOSURE {
        return Err(ApiError::bad_request(format!(
            "{} exposures match: narrow the query (cve, patch, severity, decision, device) to {MAX_SORTED_EXPOSURE} or fewer to sort them",
            counted.total
        )));
    }
    let selection = select(0, None)?;
    let sorted = order.apply(exposure_view::render(&plan, &selection.picks, &context));
    let page = sorted.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).collect();
    Ok((selection.total, page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExposureQuery {
    #[serde(flatten)]
    filter: exposure_view::ExposureFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The most rows a sorted exposure query renders.
const MAX_SORTED_EXPOSURE: usize = 100_000;

#[derive(serde::Serialize)]
struct ExposureList {
    total: usize,
    offset: usize,
    exposure: Vec<crate::plan::exposure::ExposureRow>,
}

pub(crate) const EXPOSURE_COLUMNS: &[&str] =
    &["device", "patch", "title", "cves", "severity", "cvss", "decision", "reason", "since", "target", "overdue"];

/// `GET /api/v1/exposure`: which devices are exposed to what, since when.
async fn exposure(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ExposureQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    if csv {
        let (_, rows) = exposure_page(&state, &query.filter, &query.order, 0, None)?;
        return Ok(csv_response(views::to_csv(EXPOSURE_COLUMNS, &rows)));
    }
    let offset = query.offset.unwrap_or(0);
    let (total, page) = exposure_page(&state, &query.filter, &query.order, offset, query.limit)?;
    Ok(Json(ExposureList { total, offset, exposure: page }).into_response())
}

pub(crate) const INSTALLED_COLUMNS: &[&str] = &["at", "device", "patch", "action", "policy"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RangeQuery {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    #[serde(flatten)]
    pub(crate) filter: views::InstalledFilter,
    #[serde(flatten)]
    pub(crate) order: views::SortOrder,
    pub(crate) offset: Option<usize>,
    pub(crate) limit: Option<usize>,
    pub(crate) format: Option<String>,
}

/// `from` and `to` as instants: RFC 3339, or a date (midnight UTC); `to`
/// defaults to now, `from` to seven days before it.
pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    now: jiff::Timestamp,
) -> Result<(jiff::Timestamp, jiff::Timestamp), ApiError> {
    let parse = |name: &str, text: &str| -> Result<jiff::Timestamp, ApiError> {
        text.parse::<jiff::Timestamp>()
            .or_else(|_| {
                text.parse::<jiff::civil::Date>()
                    .and_then(|d| jiff::tz::TimeZone::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight())))
            })
            .map_err(|_| {
                ApiError::bad_request(format!("{name}: `{text}` is not an RFC 3339 instant or a YYYY-MM-DD date"))
            })
    };
    let to = match to.filter(|t| !t.is_empty()) {
        Some(text) => parse("to", text)?,
        None => now,
    };
    let from = match from.filter(|f| !f.is_empty()) {
        Some(text) => parse("from", text)?,
        None => to.checked_sub(jiff::SignedDuration::from_hours(7 * 24)).unwrap_or(to),
    };
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    Ok((from, to))
}

/// What devices reported installed or removed in a date range.
async fn installed(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (from, to) = time_range(query.from.as_deref(), query.to.as_deref(), state.engine.clock.now())?;
    let records = state.engine.devices().map_err(ApiError::store)?;
    let rows: Vec<_> =
        views::installed_between(&records, from, to).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if csv {
        return Ok(csv_response(views::to_csv(INSTALLED_COLUMNS, &rows)));
    }
    let (total, offset) = (rows.len(), query.offset.unwrap_or(0));
    let page: Vec<_> = rows.into_iter().skip(offset).take(query.limit.unwrap_or(usize::MAX)).collect();
    Ok(Json(serde_json::json!({"from": from, "to": to, "total": total, "offset": offset, "installed": page}))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewQuery {
    #[serde(flatten)]
    filter: views::ReviewFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

pub(crate) const REVIEW_COLUMNS: &[&str] = &["list", "patch", "title", "severity", "released", "rule"];

/// The review queue and the held list (each patch with the rule that put
/// it there), filtered and sorted; CSV has both, with a `list` column.
async fn review(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ReviewQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, _) = plan_or_unavailable(&state)?;
    let rows: Vec<_> = views::review_rows(&in_force, &plan).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if csv {
        return Ok(csv_response(views::to_csv(REVIEW_COLUMNS, &rows)));
    }
    let (queue, held): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.list == "review");
    Ok(Json(serde_json::json!({"reviewQueue": queue, "held": held})).into_response())
}

/// The user's own device: its pending items with their snoozes left, and
/// its history (the agent's events).
async fn user_device(State(state): State<Arc<ApiState>>, UserDevice(id): UserDevice) -> Result<Response, ApiError> {
    let rows = device_rows(&state, &id)?;
    let requests = state.engine.user_requests(&id).map_err(ApiError::store)?;
    let (in_force, ..) = plan_or_unavailable(&state)?;
    let pending: Vec<serde_json::Value> = rows
        .iter()
        .filter(|r| r.pending())
        .map(|row| {
            let spec = &in_force.policy.policy.deployment_policies[&row.policy].spec;
            let (allowed, used) = UserRequest::snoozes(spec, &requests, &row.patch);
            let mut value = serde_json::to_value(row).unwrap_or_default();
            value["snoozesLeft"] = allowed.saturating_sub(used).into();
            value
        })
        .collect();
    let history = crate::store::Store::wait(state.engine.store.events(&id)).map_err(ApiError::store)?;
    let history: Vec<serde_json::Value> = history
        .into_iter()
        .rev()
        .take(200)
        .map(|e| serde_json::json!({"seq": e.seq, "at": e.received_at, "event": e.body}))
        .collect();
    Ok(Json(serde_json::json!({"device": id, "pending": pending, "requests": requests, "history": history}))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemRequest {
    item: String,
}

async fn user_snooze(
    State(state): State<Arc<ApiState>>,
    UserDevice(id): UserDevice,
    BoundedJson(request): BoundedJson<ItemRequest>,
) -> Result<Response, ApiError> {
    user_request(&state, &id, &request.item, UserRequestKind::Snooze)
}

async fn user_install(
    State(state): State<Arc<ApiState>>,
    UserDevice(id): UserDevice,
    BoundedJson(request): BoundedJson<ItemRequest>,
) -> Result<Response, ApiError> {
    user_request(&state, &id, &request.item, UserRequestKind::Install)
}

fn user_request(state: &ApiState, device: &str, item: &str, kind: UserRequestKind) -> Result<Response, ApiError> {
    take_user_request(state, device, item, kind, &format!("user:{device}"))?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": kind, "item": item}))).into_response())
}

/// A user's snooze or self-service install of `item` on `device`, under
/// the admin's limits (the item's deployment policy): recorded and audited
/// as `actor`, or refused with why. The user API, the console's portal and
/// (through its events) the agent's CLI all come here.
pub(crate) fn take_user_request(
    state: &ApiState,
    device: &str,
    item: &str,
    kind: UserRequestKind,
    actor: &str,
) -> Result<UserRequest, ApiError> {
    let (in_force, ..) = plan_or_unavailable(state)?;
    let rows = device_rows(state, device)?;
    let row = rows
        .iter()
        .find(|r| r.patch == item && r.pending())
        .ok_or_else(|| ApiError::not_found(format!("{item} is not pending on this device")))?;
    let spec = &in_force.policy.policy.deployment_policies[&row.policy].spec;
    let requests = state.engine.user_requests(device).map_err(ApiError::store)?;
    match kind {
        UserRequestKind::Snooze => {
            if spec.admin_only {
                return Err(ApiError::forbidden(format!("policy {} is admin-only: no snoozes", row.policy)));
            }
            let (max, used) = UserRequest::snoozes(spec, &requests, item);
            if used >= max {
                return Err(ApiError::conflict(format!("{item}: all {max} snoozes of policy {} are used", row.policy)));
            }
            if row.overdue {
                return Err(ApiError::conflict(format!("{item} is past its deadline: it is mandatory now")));
            }
        }
        UserRequestKind::Install => {
            if !row.self_service {
                return Err(ApiError::forbidden(format!(
                    "{item} is not self-service: neither policy {} nor an assignment offers it on demand",
                    row.policy
                )));
            }
        }
    }
    let now = state.engine.clock.now();
    let until = (kind == UserRequestKind::Snooze).then(|| {
        let snooze_for = spec.prompt.as_ref().map_or(4 * 3600, |p| p.value.snooze_for.value.as_secs());
        now.checked_add(jiff::SignedDuration::from_secs(snooze_for as i64)).unwrap_or(now)
    });
    let request = UserRequest { item: item.to_owned(), kind, at: now, until };
    state.engine.add_user_request(device, request.clone()).map_err(ApiError::store)?;
    let _ = crate::store::Store::wait(state.engine.store.append_audit(
        now,
        actor,
        &format!("user.{}", kind.as_str()),
        serde_json::json!({"item": item, "policy": row.policy, "device": device}),
    ));
    Ok(request)
}
