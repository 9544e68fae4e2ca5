//! The agent's routes: enrollment, inventory, the desired state (long
//! poll, ETag), events, blobs. None names a device: the credential does
//! (G7).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use patchward_api::device::{EnrollRequest, EnrollResponse, InventoryAccepted, InventoryUpload};
use serde::{Deserialize, Serialize};

use crate::api::desired_answer::{desired_answer, matches_etag, seen_generation};
use crate::api::error::ApiQuery;
use crate::api::limits::BoundedJson;
use crate::api::{AgentDevice, ApiError, ApiState, blocking, internal};
use crate::api::{auth, blobs};
use crate::daemon::{ServedDesired, UserRequest, UserRequestKind};
use crate::store::fleet::Role;

pub(super) async fn enroll(
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

pub(super) fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Stores the device's facts and inventory, then plans it again, so that
/// the desired state the agent fetches next already reflects them.
pub(super) async fn inventory(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    BoundedJson(request): BoundedJson<InventoryUpload>,
) -> Result<Json<InventoryAccepted>, ApiError> {
    let engine = state.engine.clone();
    let now = engine.clock.now();
    engine.store.update_inventory(&device, request.facts, request.inventory, now).await.map_err(ApiError::store)?;
    engine.metrics.inventories.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !engine.is_leader() {
        // Committed here; the leader plans it. Without its answer in time,
        // the state held is the one to fetch (the next pass converges).
        let planned = engine.await_leader_plan(&device).await.map_err(ApiError::store)?;
        let held = move || engine.desired_from_store(&device, 0).map(|d| d.map(|d| d.generation));
        let generation = match planned {
            Some(generation) => Some(generation),
            None => blocking(held).await?.map_err(ApiError::store)?,
        };
        return Ok(Json(InventoryAccepted { generation }));
    }
    let generation = blocking(move || engine.replan_device(&device)).await?.map_err(ApiError::store)?;
    Ok(Json(InventoryAccepted { generation }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitQuery {
    wait: Option<u64>,
}

pub(super) async fn current_desired(state: &Arc<ApiState>, device: &str) -> Result<Arc<ServedDesired>, ApiError> {
    current_desired_since(state, device, 0).await
}

/// The state for `device`; at a follower, never older than `seen` (an
/// agent that saw a newer generation elsewhere gets the store's row). One
/// held in memory is read without blocking; only a miss plans or reads the
/// store, off the async workers.
async fn current_desired_since(state: &Arc<ApiState>, device: &str, seen: u64) -> Result<Arc<ServedDesired>, ApiError> {
    if let Some(held) = state.engine.held_desired(device, seen) {
        return Ok(held);
    }
    let engine = state.engine.clone();
    let id = device.to_owned();
    blocking(move || match engine.is_leader() {
        true => engine.desired(&id),
        false if seen > 0 => engine.desired_from_store(&id, seen),
        false => engine.desired(&id),
    })
    .await?
    .map_err(ApiError::store)?
    .ok_or_else(|| ApiError::unavailable("no valid policy revision is in force yet"))
}

/// The signed desired state; `If-None-Match` answers 304 when nothing
/// changed, and with `?wait=SECONDS` the answer waits (up to the limit)
/// for a change before saying so.
pub(super) async fn desired(
    State(state): State<Arc<ApiState>>,
    AgentDevice(device): AgentDevice,
    ApiQuery(query): ApiQuery<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let seen = seen_generation(&headers);
    let mut served = current_desired_since(&state, &device, seen).await?;
    let wait = std::time::Duration::from_secs(query.wait.unwrap_or(0)).min(state.limits.max_wait);
    if matches_etag(&headers, &served.etag) && !wait.is_zero() {
        state.engine.metrics.long_polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Subscribed before reading again: no change slips between.
        let mut changes = state.engine.subscribe();
        served = current_desired_since(&state, &device, seen).await?;
        let deadline = tokio::time::Instant::now() + wait;
        while matches_etag(&headers, &served.etag) {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) if !state.engine.stopping() => served = current_desired(&state, &device).await?,
                // Timed out, or the engine is shutting down.
                _ => break,
            }
        }
    }
    desired_answer(&state, &headers, &served)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsRequest {
    events: Vec<serde_json::Value>,
}

#[derive(Serialize)]
pub(crate) struct EventsResponse {
    recorded: usize,
    duplicates: usize,
}

/// How many events one batch may carry.
pub(super) const MAX_EVENTS: usize = 1000;

/// Records a batch of events, each by its `seq`: a batch sent again after
/// a lost response is acknowledged and recorded once (T26). Every event
/// recorded goes to the audit log too.
pub(super) async fn events(
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
        if outcome.reports > 0 && engine.is_leader() {
            engine.note_reports();
        } else if outcome.reports > 0 {
            // Committed: the leader's next plan sees the reports anyway.
            let signal = engine.store.signal(&crate::store::replicas::Signal::Reports);
            if let Err(e) = crate::store::Store::wait(signal) {
                tracing::warn!(error = %e, "could not tell the leader of new reports");
            }
        }
        Ok::<_, crate::store::StoreError>(outcome)
    })
    .await?
    .map_err(ApiError::store)?;
    Ok(Json(EventsResponse { recorded: outcome.recorded, duplicates: outcome.duplicates }))
}

/// The user request an agent's event reports, if it is one: a `snooze`
/// (with `detail.until`) or an `install-request`.
pub(super) fn user_request_of(event: &serde_json::Value, received: jiff::Timestamp) -> Option<UserRequest> {
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
pub(super) async fn blob(
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
