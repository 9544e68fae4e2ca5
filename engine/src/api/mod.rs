//! The HTTP API, versioned under `/api/v1`. [`router`] is the one place
//! routes are declared; authentication is an extractor ([`auth`]); every
//! failure is an [`ApiError`], which becomes `{error, message}` with its
//! status.
//!
//! Architecture invariant: only this module knows HTTP. An agent's routes
//! name no device: its identity comes from its credential (G7).

pub mod auth;
mod error;

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

pub use auth::{Admin, AgentDevice};
pub use error::ApiError;

use crate::clock::Clock;
use crate::plan::desired::{Envelope, desired_state};
use crate::plan::{CompiledPolicy, PlanCatalog, PlanInput, plan};
use crate::store::Store;

/// What is in force: the policy revision and the catalog the engine plans
/// with. Replaced whole when either changes.
pub struct InForce {
    pub policy: CompiledPolicy,
    pub catalog: PlanCatalog,
    pub catalog_revision: u64,
}

pub struct ApiState {
    pub store: Arc<Store>,
    pub key: SigningKey,
    /// sha256 of the admin token.
    pub admin_token_hash: String,
    pub clock: Arc<dyn Clock>,
    pub in_force: RwLock<Option<Arc<InForce>>>,
    /// How long a desired state stays valid for the agent.
    pub desired_ttl: jiff::SignedDuration,
}

impl ApiState {
    fn in_force(&self) -> Result<Arc<InForce>, ApiError> {
        self.in_force
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ApiError::unavailable("no valid policy revision is in force yet"))
    }
}

pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/device/inventory", put(inventory))
        .route("/api/v1/device/desired-state", get(desired))
        .route("/api/v1/device/events", post(events))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}", get(device))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Result<&'static str, ApiError> {
    state.in_force()?;
    Ok("ready\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    #[serde(default)]
    facts: patchward_api::Facts,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnrollResponse {
    device_id: String,
    credential: String,
    engine_key: String,
}

async fn enroll(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Json(request): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let token = auth::bearer(&headers)?;
    let now = state.clock.now();
    let credential = crate::clock::new_secret("pwd_").map_err(|e| ApiError::internal(e.to_string()))?;
    // The hostname when it is a good name and free, else a random id.
    let wanted = request.facts.hostname.clone().filter(|h| valid_device_id(h));
    let device_id = match wanted {
        Some(host) if state.store.device(&host).map_err(ApiError::store)?.is_none() => host,
        _ => {
            let secret = crate::clock::new_secret("").map_err(|e| ApiError::internal(e.to_string()))?;
            format!("dev-{}", &secret[..12].to_ascii_lowercase().replace(['-', '_'], "x"))
        }
    };
    let record = state.store.enroll(token, &device_id, &credential, request.facts, now).map_err(|e| match e {
        crate::store::fleet::EnrollError::Store(e) => ApiError::store(e),
        crate::store::fleet::EnrollError::DeviceExists(id) => ApiError::conflict(format!("device {id} exists")),
        // Unknown, expired or used up: the token is not (or no longer) a credential.
        other => ApiError::unauthorized(other.to_string()),
    })?;
    let _ = state.store.append_audit(now, &format!("device:{}", record.id), "device.enrolled", serde_json::json!({}));
    Ok(Json(EnrollResponse {
        device_id: record.id,
        credential,
        engine_key: patchward_api::dsse::public_key_text(&state.key.verifying_key()),
    }))
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryRequest {
    #[serde(default)]
    facts: patchward_api::Facts,
    #[serde(default)]
    inventory: patchward_api::Inventory,
}

#[derive(Serialize)]
struct InventoryResponse {
    generation: Option<u64>,
}

/// Stores the device's facts and inventory, then re-plans it, so that the
/// desired state the agent fetches next already reflects them.
async fn inventory(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    Json(request): Json<InventoryRequest>,
) -> Result<Json<InventoryResponse>, ApiError> {
    let now = state.clock.now();
    state.store.update_inventory(&device.id, request.facts, request.inventory, now).map_err(ApiError::store)?;
    let generation = match state.in_force() {
        Ok(in_force) => Some(signed_desired_state(&state, &in_force, &device.id)?.1),
        Err(_) => None,
    };
    Ok(Json(InventoryResponse { generation }))
}

/// Plans the fleet as the store holds it and builds `device`'s desired
/// state, with its generation. The whole fleet is planned because gates
/// count other devices.
fn signed_desired_state(
    state: &ApiState,
    in_force: &InForce,
    device: &str,
) -> Result<(patchward_api::dsse::Envelope, u64), ApiError> {
    let now = state.clock.now();
    let records = state.store.devices().map_err(ApiError::store)?;
    let fleet: Vec<patchward_api::Device> = records
        .into_iter()
        .map(|r| patchward_api::Device { id: r.id, facts: r.facts, inventory: r.inventory, reports: Vec::new() })
        .collect();
    let ledger = state.store.ledger().map_err(ApiError::store)?;
    let computed = plan(&PlanInput {
        policy: &in_force.policy,
        catalog: &in_force.catalog,
        fleet: &fleet,
        ledger: Some(&ledger),
        now,
    });
    state.store.record_ledger(&computed.ledger_additions).map_err(ApiError::store)?;
    let index = computed
        .devices
        .iter()
        .position(|d| d.id == device)
        .ok_or_else(|| ApiError::internal(format!("device {device} is enrolled but not planned")))?;
    // The content decides the generation; issue and expiry times do not.
    let content = desired_state(
        &computed,
        &in_force.policy,
        &in_force.catalog,
        index,
        &Envelope { generation: 0, catalog_revision: in_force.catalog_revision, issued_at: now, expires_at: now },
    );
    let mut digest_input = serde_json::to_value(&content).map_err(|e| ApiError::internal(e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut digest_input {
        map.remove("issuedAt");
        map.remove("expiresAt");
        map.remove("generation");
        // Software items are due from their issue time: keep it out too.
        if let Some(serde_json::Value::Array(items)) = map.get_mut("items") {
            for item in items.iter_mut().filter(|i| i["source"]["kind"] == "assignment") {
                if let serde_json::Value::Object(item) = item {
                    item.remove("notBefore");
                }
            }
        }
    }
    let digest = crate::catalog::sha256_hex(digest_input.to_string().as_bytes());
    let generation = state.store.desired_generation(device, &digest).map_err(ApiError::store)?;
    let expires_at = now.checked_add(state.desired_ttl).unwrap_or(now);
    let payload = patchward_api::desired::DesiredState { generation, expires_at, ..content };
    let body = serde_json::to_vec(&payload).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((patchward_api::dsse::sign(patchward_api::dsse::DESIRED_STATE_TYPE, &body, &state.key), generation))
}

async fn desired(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let in_force = state.in_force()?;
    let (envelope, generation) = signed_desired_state(&state, &in_force, &device.id)?;
    let etag = format!("\"{generation}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(e.to_string()))?;
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    Ok(([(header::ETAG, etag_value)], Json(envelope)).into_response())
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

/// Records a batch of events, each by its `seq`: a batch sent again after
/// a lost response is acknowledged and recorded once (T26).
async fn events(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    Json(request): Json<EventsRequest>,
) -> Result<Json<EventsResponse>, ApiError> {
    let mut batch = Vec::with_capacity(request.events.len());
    for (index, event) in request.events.into_iter().enumerate() {
        let seq = event
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .filter(|s| *s > 0)
            .ok_or_else(|| ApiError::bad_request(format!("events[{index}].seq must be a positive integer")))?;
        batch.push((seq, event));
    }
    let outcome = state.store.record_events(&device.id, &batch, state.clock.now()).map_err(ApiError::store)?;
    Ok(Json(EventsResponse { recorded: outcome.recorded, duplicates: outcome.duplicates }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceView {
    id: String,
    facts: patchward_api::Facts,
    inventory: patchward_api::Inventory,
    enrolled_at: String,
    last_seen: String,
}

fn view(record: crate::store::fleet::DeviceRecord) -> DeviceView {
    DeviceView {
        id: record.id,
        facts: record.facts,
        inventory: record.inventory,
        enrolled_at: record.enrolled_at.to_string(),
        last_seen: record.last_seen.to_string(),
    }
}

async fn devices(State(state): State<Arc<ApiState>>, _admin: Admin) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(state.store.devices().map_err(ApiError::store)?.into_iter().map(view).collect()))
}

async fn device(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let record = state
        .store
        .device(&id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    Ok(Json(view(record)))
}
